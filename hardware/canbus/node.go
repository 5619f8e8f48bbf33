package canbus

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/brutella/can"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// NodeConfig configures a Node. Only Addr is required.
type NodeConfig struct {
	// Addr is the node's address: GatewayAddr for the site's gateway, a
	// controller address for a door controller (or its simulation).
	Addr Addr
	// Timeout is the reassembly timeout, the longest time between two
	// frames of a message received (DefaultTimeout when zero).
	Timeout time.Duration
	// FlowTimeout is how long Send waits for each flow control frame
	// (DefaultFlowTimeout when zero).
	FlowTimeout time.Duration
	// BlockSize is the block size the node asks of senders in its flow
	// control frames (see ReassemblerConfig; 0: no blocks).
	BlockSize uint8
	// STmin is the separation time the node asks of senders, 0 to 127 ms.
	STmin time.Duration
	// Logger receives refused frames (debug) and given-up or undecodable
	// messages (warn); nil discards.
	Logger *slog.Logger
	// OnError, when set, is also called with every receive-side error and
	// the address it came from, on the bus's read loop; it must not block.
	OnError func(from Addr, err error)
}

// Received is a message a Node received.
type Received struct {
	// From is the sender's address.
	From Addr
	// Type is the message type it came with.
	Type MsgType
	// Priority is the priority of its frames.
	Priority uint8
	// Msg is the decoded message: an mqttproto.Tap, Decision, DoorEvent,
	// State or DoorCmd, as Type says.
	Msg mqttproto.Message
}

// NodeStats are a Node's counters since it started.
type NodeStats struct {
	// FramesIn counts frames addressed to the node.
	FramesIn uint64
	// BadFrames counts frames refused by DecodeFrame (addressed to anyone).
	BadFrames uint64
	// MessagesIn counts messages received and decoded.
	MessagesIn uint64
	// Errors counts receive-side errors: given-up reassemblies, messages
	// that do not decode, and replies that could not be sent.
	Errors uint64
	// FramesOut counts frames published, flow control included.
	FramesOut uint64
	// MessagesOut counts messages sent completely.
	MessagesOut uint64
}

// sendKey identifies one outgoing stream: messages of one type to one
// peer. Only one message per stream is in flight at a time.
type sendKey struct {
	peer Addr
	typ  MsgType
}

// Node is one participant of the protocol on a Bus: it sends messages to
// other nodes, segmented and paced by their flow control, and reassembles,
// checks and decodes the messages sent to its address, answering their
// first frames with flow control. Gateway and Controller are built on it.
//
// The handler given to NewNode runs on the bus's read loop, one message at
// a time in the order they completed, and must not block. Send may be
// called from any number of goroutines; messages of one type to one peer
// are sent one after the other, others interleave frame by frame.
type Node struct {
	bus     *Bus
	cfg     NodeConfig
	log     *slog.Logger
	handler func(Received)

	mu    sync.Mutex // guards reasm
	reasm *Reassembler

	smu   sync.Mutex
	locks map[sendKey]chan struct{}
	flows map[sendKey]chan FlowParams

	replies chan can.Frame
	closed  chan struct{}
	once    sync.Once
	unsub   func()
	wg      sync.WaitGroup

	framesIn, badFrames, messagesIn, errs, framesOut, messagesOut atomic.Uint64
}

// NewNode starts a node on bus with configuration cfg, delivering the
// messages it receives to handler (which may be nil). It returns an error
// wrapping ErrBadFrame when cfg.Addr is 0xFF or cfg.STmin is out of range.
// Close stops the node; it does not close the bus.
func NewNode(bus *Bus, cfg NodeConfig, handler func(Received)) (*Node, error) {
	if cfg.Addr != GatewayAddr && !cfg.Addr.IsController() {
		return nil, errorf(ErrBadFrame, "node address %s is reserved", cfg.Addr)
	}
	reasm, err := NewReassembler(ReassemblerConfig{Timeout: cfg.Timeout, BlockSize: cfg.BlockSize, STmin: cfg.STmin})
	if err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.FlowTimeout <= 0 {
		cfg.FlowTimeout = DefaultFlowTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if handler == nil {
		handler = func(Received) {}
	}
	n := &Node{
		bus: bus, cfg: cfg, log: log.With("can_addr", cfg.Addr.String()), handler: handler, reasm: reasm,
		locks: map[sendKey]chan struct{}{}, flows: map[sendKey]chan FlowParams{},
		replies: make(chan can.Frame, 256), closed: make(chan struct{}),
	}
	n.wg.Add(2)
	go n.writeReplies()
	go n.expire()
	n.unsub = bus.Subscribe(n.receive)
	return n, nil
}

// Addr returns the node's address.
func (n *Node) Addr() Addr { return n.cfg.Addr }

// Stats returns the node's counters.
func (n *Node) Stats() NodeStats {
	return NodeStats{
		FramesIn: n.framesIn.Load(), BadFrames: n.badFrames.Load(), MessagesIn: n.messagesIn.Load(),
		Errors: n.errs.Load(), FramesOut: n.framesOut.Load(), MessagesOut: n.messagesOut.Load(),
	}
}

// fail counts and reports a receive-side error.
func (n *Node) fail(from Addr, err error) {
	n.errs.Add(1)
	n.log.Warn("can receive", "from", from.String(), "err", err)
	if n.cfg.OnError != nil {
		n.cfg.OnError(from, err)
	}
}

// receive handles one frame from the bus, on the read loop.
func (n *Node) receive(cf can.Frame) {
	f, err := DecodeFrame(cf)
	if err != nil {
		n.badFrames.Add(1)
		n.log.Debug("can frame refused", "err", err)
		return
	}
	if f.ID.Dst != n.cfg.Addr {
		return
	}
	n.framesIn.Add(1)
	if f.Kind() == FlowControl {
		n.smu.Lock()
		ch := n.flows[sendKey{peer: f.ID.Src, typ: f.ID.Type}]
		n.smu.Unlock()
		if ch != nil {
			select {
			case ch <- f.Flow():
			default: // a burst of stale flow control: the sender has enough
			}
		}
		return
	}
	n.mu.Lock()
	res := n.reasm.Feed(time.Now(), f)
	n.mu.Unlock()
	if res.Reply != nil {
		select {
		case n.replies <- res.Reply.CAN():
		default:
			n.fail(f.ID.Src, errorf(ErrTimeout, "%s from %s: flow control dropped, %d replies queued", f.ID.Type, f.ID.Src, cap(n.replies)))
		}
	}
	if res.Err != nil {
		n.fail(f.ID.Src, res.Err)
	}
	if res.Message == nil {
		return
	}
	m, err := Decode(f.ID.Type, res.Message)
	if err != nil {
		n.fail(f.ID.Src, err)
		return
	}
	n.messagesIn.Add(1)
	n.handler(Received{From: f.ID.Src, Type: f.ID.Type, Priority: f.ID.Priority, Msg: m})
}

// writeReplies publishes flow control frames off the read loop, so that a
// transport that blocks on write never stalls reading.
func (n *Node) writeReplies() {
	defer n.wg.Done()
	for {
		select {
		case f := <-n.replies:
			if err := n.bus.Publish(f); err != nil {
				n.fail(Addr(f.ID>>dstShift), err)
				continue
			}
			n.framesOut.Add(1)
		case <-n.closed:
			return
		}
	}
}

// expire gives up overdue reassemblies.
func (n *Node) expire() {
	defer n.wg.Done()
	t := time.NewTicker(max(n.cfg.Timeout/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			n.mu.Lock()
			errs := n.reasm.Expire(now)
			n.mu.Unlock()
			for _, err := range errs {
				n.fail(0, err)
			}
		case <-n.closed:
			return
		}
	}
}

// Send encodes m, picks its priority (Priority) and sends it to node to.
// See SendBytes for the errors it returns, besides those of Encode.
func (n *Node) Send(ctx context.Context, to Addr, m mqttproto.Message) error {
	typ, b, err := Encode(m)
	if err != nil {
		return err
	}
	return n.SendBytes(ctx, to, Priority(m), typ, b)
}

// SendBytes sends the message bytes msg of type typ to node to with
// priority prio: one single frame, or a first frame, then consecutive
// frames as the receiver's flow control allows. It returns once the last
// frame is published, or with an error: those of Segment (ErrBadFrame for
// a type that does not travel from this node to to, ErrTooLarge,
// ErrBadMessage); ErrTimeout when a flow control frame does not come
// within the flow timeout or waits pass MaxWaits; ErrOverflow when the
// receiver refuses the length; ErrClosed when the node or bus closes; the
// transport's error; or ctx.Err().
func (n *Node) SendBytes(ctx context.Context, to Addr, prio uint8, typ MsgType, msg []byte) error {
	id := FrameID{Priority: prio, Type: typ, Dst: to, Src: n.cfg.Addr}
	frames, err := Segment(id, msg)
	if err != nil {
		return err
	}
	key := sendKey{peer: to, typ: typ}
	lock := n.lock(key)
	select {
	case lock <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-n.closed:
		return errorf(ErrClosed, "send %s to %s: node closed", typ, to)
	}
	defer func() { <-lock }()
	if len(frames) == 1 {
		return n.publish(frames[0], true)
	}
	flow := make(chan FlowParams, 4)
	n.smu.Lock()
	n.flows[key] = flow
	n.smu.Unlock()
	defer func() {
		n.smu.Lock()
		delete(n.flows, key)
		n.smu.Unlock()
	}()
	if err := n.publish(frames[0], false); err != nil {
		return err
	}
	timer := time.NewTimer(n.cfg.FlowTimeout)
	defer timer.Stop()
	next, waits := 1, 0
	for next < len(frames) {
		var fc FlowParams
		select {
		case fc = <-flow:
		case <-timer.C:
			return errorf(ErrTimeout, "send %s to %s: no flow control within %v after frame %d of %d", typ, to, n.cfg.FlowTimeout, next, len(frames))
		case <-ctx.Done():
			return ctx.Err()
		case <-n.closed:
			return errorf(ErrClosed, "send %s to %s: node closed", typ, to)
		case <-n.bus.Done():
			return n.bus.Err()
		}
		switch fc.Status {
		case FlowOverflow:
			return errorf(ErrOverflow, "send %s to %s: %d bytes refused", typ, to, len(msg))
		case FlowWait:
			if waits++; waits > MaxWaits {
				return errorf(ErrTimeout, "send %s to %s: more than %d waits", typ, to, MaxWaits)
			}
			timer.Reset(n.cfg.FlowTimeout)
			continue
		}
		waits = 0
		end := len(frames)
		if fc.BlockSize > 0 {
			end = min(end, next+int(fc.BlockSize))
		}
		for first := true; next < end; next, first = next+1, false {
			if fc.STmin > 0 && !first {
				time.Sleep(fc.STmin)
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if err := n.publish(frames[next], next == len(frames)-1); err != nil {
				return err
			}
		}
		timer.Reset(n.cfg.FlowTimeout)
	}
	return nil
}

// lock returns the send lock of key.
func (n *Node) lock(key sendKey) chan struct{} {
	n.smu.Lock()
	defer n.smu.Unlock()
	l := n.locks[key]
	if l == nil {
		l = make(chan struct{}, 1)
		n.locks[key] = l
	}
	return l
}

// publish writes one frame of a message; last counts the message as sent.
func (n *Node) publish(f Frame, last bool) error {
	select {
	case <-n.closed:
		return errorf(ErrClosed, "send: node closed")
	default:
	}
	if err := n.bus.Publish(f.CAN()); err != nil {
		return err
	}
	n.framesOut.Add(1)
	if last {
		n.messagesOut.Add(1)
	}
	return nil
}

// Close stops the node: it stops receiving, and sends in progress return
// ErrClosed. It does not close the bus. It is idempotent and returns nil.
func (n *Node) Close() error {
	n.once.Do(func() {
		n.unsub()
		close(n.closed)
		n.wg.Wait()
	})
	return nil
}

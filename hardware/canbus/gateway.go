package canbus

import (
	"context"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// Handler is what a Gateway needs from the site: the edge implements it.
// Its methods are called from one goroutine per controller address, in the
// order that controller's messages arrived, so a controller's events reach
// HandleEvent in the order it sent them; different controllers are handled
// concurrently. ctx ends when the Gateway closes, and for HandleTap also
// when the device stops waiting (after GatewayConfig.DecisionTimeout).
type Handler interface {
	// HandleTap decides a tap from the controller at address from and
	// returns the decision, which the gateway sends back to that
	// controller. A decision that fails Validate or has another RequestID
	// is not sent (and is logged): the controller then times out and
	// decides alone.
	HandleTap(ctx context.Context, from Addr, t mqttproto.Tap) mqttproto.Decision
	// HandleEvent records an event of the controller at address from. The
	// site acknowledges recorded events itself, with an ack command sent
	// by Gateway.Send; an error is logged, and the controller sends the
	// event again since no ack covers it.
	HandleEvent(ctx context.Context, from Addr, e mqttproto.DoorEvent) error
	// HandleState takes the state of the controller at address from, which
	// it sends after it starts, whenever it changes and at least every
	// mqttproto.HeartbeatInterval. An error is logged.
	HandleState(ctx context.Context, from Addr, s mqttproto.State) error
}

// GatewayConfig configures a Gateway. The zero value is usable.
type GatewayConfig struct {
	// Node configures the gateway's node; its Addr is ignored (the gateway
	// is GatewayAddr).
	Node NodeConfig
	// Queue is how many received messages per controller wait for the
	// handler; more are dropped and logged (64 when zero).
	Queue int
	// DecisionTimeout bounds HandleTap and sending the decision, counted
	// from the tap's arrival (mqttproto.DecisionTimeout when zero): the
	// controller decides alone after that anyway.
	DecisionTimeout time.Duration
}

// received is a message queued for the handler, with its arrival time.
type received struct {
	Received
	at time.Time
}

// Gateway is the site's end of a CAN bus: it receives taps, events and
// states from the door controllers on the bus and hands them to a Handler,
// sends each tap's decision back, and sends the site's commands. The edge
// wires it to its decision service and device registry; it knows nothing
// of the edge.
//
// Lifecycle: NewGateway, then Open, then Close. All methods are safe for
// concurrent use.
type Gateway struct {
	bus *Bus
	h   Handler
	cfg GatewayConfig

	mu       sync.Mutex
	node     *Node
	ctx      context.Context
	cancel   context.CancelFunc
	workers  map[Addr]chan received
	lastSeen map[Addr]time.Time
	closed   bool
	wg       sync.WaitGroup
}

// NewGateway returns a gateway for bus and handler h; it does nothing
// until Open.
func NewGateway(bus *Bus, h Handler, cfg GatewayConfig) *Gateway {
	cfg.Node.Addr = GatewayAddr
	if cfg.Queue <= 0 {
		cfg.Queue = 64
	}
	if cfg.DecisionTimeout <= 0 {
		cfg.DecisionTimeout = mqttproto.DecisionTimeout
	}
	return &Gateway{bus: bus, h: h, cfg: cfg, workers: map[Addr]chan received{}, lastSeen: map[Addr]time.Time{}}
}

// Open starts receiving. ctx is the parent of the contexts the handler
// gets; the gateway stops when Close is called, not when ctx ends. It
// returns an error wrapping ErrClosed after Close or when called twice, and
// NewNode's error for a bad configuration.
func (g *Gateway) Open(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || g.node != nil {
		return errorf(ErrClosed, "gateway: open twice or after close")
	}
	g.ctx, g.cancel = context.WithCancel(ctx)
	node, err := NewNode(g.bus, g.cfg.Node, g.enqueue)
	if err != nil {
		g.cancel()
		return err
	}
	g.node = node
	return nil
}

// enqueue queues a received message for its controller's worker; it runs
// on the bus's read loop.
func (g *Gateway) enqueue(r Received) {
	now := time.Now()
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.lastSeen[r.From] = now
	ch := g.workers[r.From]
	if ch == nil {
		ch = make(chan received, g.cfg.Queue)
		g.workers[r.From] = ch
		g.wg.Add(1)
		go g.work(r.From, ch)
	}
	var full bool
	select {
	case ch <- received{Received: r, at: now}:
	default:
		full = true
	}
	node := g.node
	g.mu.Unlock()
	if full {
		node.fail(r.From, errorf(ErrTimeout, "gateway: %s from %s dropped, %d messages wait for the handler", r.Type, r.From, g.cfg.Queue))
	}
}

// work hands one controller's messages to the handler, in order.
func (g *Gateway) work(from Addr, ch chan received) {
	defer g.wg.Done()
	for r := range ch {
		if g.ctx.Err() != nil {
			continue // closing: drop what is queued
		}
		switch m := r.Msg.(type) {
		case mqttproto.Tap:
			g.tap(from, r.at, m)
		case mqttproto.DoorEvent:
			if err := g.h.HandleEvent(g.ctx, from, m); err != nil {
				g.node.log.Warn("can event not recorded", "from", from.String(), "seq", m.Seq, "err", err)
			}
		case mqttproto.State:
			if err := g.h.HandleState(g.ctx, from, m); err != nil {
				g.node.log.Warn("can state not taken", "from", from.String(), "err", err)
			}
		}
	}
}

// tap decides tap t from controller from, which arrived at at, and sends
// the decision.
func (g *Gateway) tap(from Addr, at time.Time, t mqttproto.Tap) {
	ctx, cancel := context.WithDeadline(g.ctx, at.Add(g.cfg.DecisionTimeout))
	defer cancel()
	d := g.h.HandleTap(ctx, from, t)
	if err := d.Validate(); err != nil {
		g.node.log.Warn("can decision not sent", "from", from.String(), "request_id", t.RequestID, "err", err)
		return
	}
	if d.RequestID != t.RequestID {
		g.node.log.Warn("can decision not sent", "from", from.String(), "request_id", t.RequestID,
			"err", "the handler answered request "+d.RequestID)
		return
	}
	if err := g.node.Send(ctx, from, d); err != nil {
		g.node.log.Warn("can decision not sent", "from", from.String(), "request_id", t.RequestID, "err", err)
	}
}

// Send sends command c to the controller at address to and returns once
// its last frame is on the bus. It returns an error wrapping ErrClosed
// before Open and after Close, and otherwise the errors of Node.Send.
func (g *Gateway) Send(ctx context.Context, to Addr, c mqttproto.DoorCmd) error {
	g.mu.Lock()
	node := g.node
	closed := g.closed
	g.mu.Unlock()
	if node == nil || closed {
		return errorf(ErrClosed, "gateway: send %s to %s: not open", c.Type, to)
	}
	return node.Send(ctx, to, c)
}

// LastSeen returns when the gateway last received a complete message from
// the controller at address a, and false if never. A controller that sends
// nothing (not even its state) for 3 heartbeat intervals is gone.
func (g *Gateway) LastSeen(a Addr) (time.Time, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	t, ok := g.lastSeen[a]
	return t, ok
}

// Stats returns the counters of the gateway's node (zero before Open).
func (g *Gateway) Stats() NodeStats {
	g.mu.Lock()
	node := g.node
	g.mu.Unlock()
	if node == nil {
		return NodeStats{}
	}
	return node.Stats()
}

// Close stops the gateway in this order: it stops receiving (the node),
// cancels the handler's contexts, then waits for the handler calls in
// progress to return; queued messages not yet handled are dropped. It does
// not close the bus. It is idempotent and returns nil.
func (g *Gateway) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	node := g.node
	g.mu.Unlock()
	if node == nil {
		return nil
	}
	node.Close()
	g.cancel()
	g.mu.Lock()
	for a, ch := range g.workers {
		close(ch)
		delete(g.workers, a)
	}
	g.mu.Unlock()
	g.wg.Wait()
	return nil
}

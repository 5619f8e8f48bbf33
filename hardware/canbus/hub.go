package canbus

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/brutella/can"
)

// HubQueue is how many frames a Hub holds for one participant. When it is
// full the hub waits (every sender slows to the slowest reader, as on a
// bus) for up to HubStall, and then cuts that participant off.
const HubQueue = 4096

// HubStall is how long a Hub waits for a participant whose queue is full
// before it cuts that participant off.
const HubStall = 5 * time.Second

// Hub is a virtual CAN bus over TCP: every participant connects to it with
// the stream bridge (Config with TransportTCP, or NewStream over a dialled
// connection), and each frame a participant writes is relayed, in order,
// to every other participant, not back to its sender. Frames are relayed
// as they are, valid or not, like a bus. The simulator and an edge node's
// gateway meet on a Hub when there is no real bus.
//
// All methods are safe for concurrent use.
type Hub struct {
	ln  net.Listener
	log *slog.Logger

	mu     sync.Mutex
	peers  map[*hubPeer]struct{}
	list   atomic.Pointer[[]*hubPeer] // a copy of peers for the relays
	closed bool
	wg     sync.WaitGroup
}

type hubPeer struct {
	s    *Stream
	out  chan can.Frame
	once sync.Once
	gone chan struct{}
}

func (p *hubPeer) close() {
	p.once.Do(func() { close(p.gone); p.s.Close() })
}

// NewHub returns a hub that will accept participants on ln; log, which may
// be nil, receives connects and disconnects. Call Serve to run it.
func NewHub(ln net.Listener, log *slog.Logger) *Hub {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	h := &Hub{ln: ln, log: log, peers: map[*hubPeer]struct{}{}}
	h.list.Store(&[]*hubPeer{})
	return h
}

// updateList refreshes the relays' copy of the participants; h.mu is held.
func (h *Hub) updateList() {
	list := make([]*hubPeer, 0, len(h.peers))
	for p := range h.peers {
		list = append(list, p)
	}
	h.list.Store(&list)
}

// Addr returns the address participants dial.
func (h *Hub) Addr() net.Addr { return h.ln.Addr() }

// Serve accepts participants until Close, and then returns an error
// wrapping ErrClosed; it returns the listener's error if accepting fails
// otherwise.
func (h *Hub) Serve() error {
	for {
		conn, err := h.ln.Accept()
		if err != nil {
			h.mu.Lock()
			closed := h.closed
			h.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return errorf(ErrClosed, "hub closed")
			}
			return err
		}
		p := &hubPeer{s: NewStream(conn), out: make(chan can.Frame, HubQueue), gone: make(chan struct{})}
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			p.close()
			continue
		}
		h.peers[p] = struct{}{}
		h.updateList()
		h.wg.Add(2)
		h.mu.Unlock()
		h.log.Info("can hub: participant joined", "remote", conn.RemoteAddr().String())
		go h.read(p)
		go h.write(p)
	}
}

// read relays p's frames to every other participant, in order.
func (h *Hub) read(p *hubPeer) {
	defer h.wg.Done()
	defer h.drop(p, "left")
	var f can.Frame
	for {
		if err := p.s.ReadFrame(&f); err != nil {
			return
		}
		for _, q := range *h.list.Load() {
			if q == p {
				continue
			}
			select {
			case q.out <- f:
				continue
			default:
			}
			t := time.NewTimer(HubStall)
			select {
			case q.out <- f:
			case <-q.gone:
			case <-p.gone:
			case <-t.C:
				h.drop(q, "cut off: not reading")
			}
			t.Stop()
		}
	}
}

// write sends p its queued frames.
func (h *Hub) write(p *hubPeer) {
	defer h.wg.Done()
	for {
		select {
		case f := <-p.out:
			if err := p.s.WriteFrame(f); err != nil {
				h.drop(p, "write failed")
				return
			}
		case <-p.gone:
			return
		}
	}
}

func (h *Hub) drop(p *hubPeer, why string) {
	h.mu.Lock()
	_, ok := h.peers[p]
	delete(h.peers, p)
	h.updateList()
	h.mu.Unlock()
	if ok {
		h.log.Info("can hub: participant gone", "why", why)
	}
	p.close()
}

// Participants returns how many participants are connected.
func (h *Hub) Participants() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.peers)
}

// Close stops accepting, disconnects every participant and waits for the
// hub's goroutines. It is idempotent and returns the listener's close
// error the first time.
func (h *Hub) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	peers := make([]*hubPeer, 0, len(h.peers))
	for p := range h.peers {
		peers = append(peers, p)
	}
	h.peers = map[*hubPeer]struct{}{}
	h.updateList()
	h.mu.Unlock()
	err := h.ln.Close()
	for _, p := range peers {
		p.close()
	}
	h.wg.Wait()
	return err
}

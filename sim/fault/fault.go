// Package fault is the simulator's fault injection. Proxy is a TCP proxy
// that a device's connection (MQTT, or the CAN stream bridge) goes through,
// so that a scenario or a test can cut the device off and restore it: a
// cut closes every live connection and refuses new ones, which is what a
// device sees of a WAN cut, a pulled cable or a dead switch port. Faults is
// what a scenario runner needs from the site itself for the faults that
// only the site can cause (restarting a broker, killing or restarting an
// edge node); Unsupported is the Faults of a site that offers none, such as
// a real site reached over the network.
//
// Every method is safe for concurrent use; Close is idempotent.
package fault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// ErrUnsupported reports a fault the site at hand cannot cause.
var ErrUnsupported = errors.New("fault: unsupported here")

// ErrClosed reports a call on a closed Proxy.
var ErrClosed = errors.New("fault: proxy closed")

// Faults is what a scenario runner asks of the site for faults that need
// its cooperation. Nodes and brokers are numbered from 1 in the order the
// runner was given them. Each method returns once the fault has happened
// (for a restart: once the thing is back and serving), or with an error,
// wrapping ErrUnsupported when the site cannot do it.
type Faults interface {
	// RestartBroker stops the MQTT broker number n and starts it again at
	// the same address; devices on it lose their connection and come back.
	RestartBroker(ctx context.Context, n int) error
	// KillNode stops edge node number n abruptly.
	KillNode(ctx context.Context, n int) error
	// RestartNode starts edge node number n again after KillNode, on its
	// data, and returns once it serves again.
	RestartNode(ctx context.Context, n int) error
}

// Unsupported is the Faults of a site that offers none: every method
// returns an error wrapping ErrUnsupported.
type Unsupported struct{}

// RestartBroker returns an error wrapping ErrUnsupported.
func (Unsupported) RestartBroker(context.Context, int) error {
	return fmt.Errorf("%w: restarting a broker needs a site run by the test (go test ./sim)", ErrUnsupported)
}

// KillNode returns an error wrapping ErrUnsupported.
func (Unsupported) KillNode(context.Context, int) error {
	return fmt.Errorf("%w: killing a node needs a site run by the test (go test ./sim)", ErrUnsupported)
}

// RestartNode returns an error wrapping ErrUnsupported.
func (Unsupported) RestartNode(context.Context, int) error {
	return fmt.Errorf("%w: restarting a node needs a site run by the test (go test ./sim)", ErrUnsupported)
}

var _ Faults = Unsupported{}

// Proxy forwards TCP connections from its own address to a target
// address, byte for byte, until it is cut. Make it with Listen.
type Proxy struct {
	ln  net.Listener
	log *slog.Logger

	mu      sync.Mutex
	target  string
	cut     bool
	conns   map[net.Conn]struct{} // both sides of every live connection
	closed  bool
	accepts int
	refused int

	wg   sync.WaitGroup
	once sync.Once
}

// Listen starts a proxy on addr (such as 127.0.0.1:0) to target. log,
// which may be nil, receives cuts, restores and connection errors. It
// returns the listener's error.
func Listen(addr, target string, log *slog.Logger) (*Proxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("fault: proxy listen %s: %w", addr, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{ln: ln, target: target, log: log.With("proxy", ln.Addr().String(), "target", target), conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr returns the address devices dial instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target returns the address the proxy forwards to.
func (p *Proxy) Target() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.target
}

// SetTarget makes new connections go to target (live ones stay where they
// are): for a broker that came back on another address.
func (p *Proxy) SetTarget(target string) {
	p.mu.Lock()
	p.target = target
	p.mu.Unlock()
}

// Cut cuts the link: it closes every live connection and refuses new ones
// (accepting and closing them at once) until Restore. It returns how many
// connections it closed, or ErrClosed.
func (p *Proxy) Cut() (int, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return 0, ErrClosed
	}
	p.cut = true
	conns := p.conns
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
	for c := range conns {
		c.Close()
	}
	p.log.Info("link cut", "closed", len(conns)/2)
	return len(conns) / 2, nil
}

// Restore ends a cut: new connections are forwarded again. It returns
// ErrClosed after Close.
func (p *Proxy) Restore() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	p.cut = false
	p.log.Info("link restored")
	return nil
}

// IsCut reports whether the link is cut.
func (p *Proxy) IsCut() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut
}

// Stats are a proxy's counters.
type Stats struct {
	// Live counts the connections forwarded now.
	Live int
	// Accepted counts the connections forwarded since the start; Refused
	// those refused during a cut.
	Accepted, Refused int
}

// Stats returns the proxy's counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{Live: len(p.conns) / 2, Accepted: p.accepts, Refused: p.refused}
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		cut, target := p.cut, p.target
		if cut {
			p.refused++
		}
		p.mu.Unlock()
		if cut {
			c.Close()
			continue
		}
		p.wg.Add(1)
		go p.forward(c, target)
	}
}

// forward joins c to a new connection to target until either side ends
// or the proxy cuts them.
func (p *Proxy) forward(c net.Conn, target string) {
	defer p.wg.Done()
	d := net.Dialer{Timeout: 5 * time.Second}
	u, err := d.Dial("tcp", target)
	if err != nil {
		p.log.Warn("proxy cannot reach its target", "err", err)
		c.Close()
		return
	}
	p.mu.Lock()
	if p.cut || p.closed {
		p.mu.Unlock()
		c.Close()
		u.Close()
		return
	}
	p.accepts++
	p.conns[c], p.conns[u] = struct{}{}, struct{}{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		// One direction ended: end both, as a cable would.
		dst.Close()
		src.Close()
	}
	wg.Go(func() { pipe(u, c) })
	wg.Go(func() { pipe(c, u) })
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, u)
	p.mu.Unlock()
}

// Close stops listening and closes every connection. It is idempotent and
// returns nil.
func (p *Proxy) Close() error {
	p.once.Do(func() {
		p.mu.Lock()
		p.closed = true
		conns := p.conns
		p.conns = map[net.Conn]struct{}{}
		p.mu.Unlock()
		p.ln.Close()
		for c := range conns {
			c.Close()
		}
		p.wg.Wait()
	})
	return nil
}

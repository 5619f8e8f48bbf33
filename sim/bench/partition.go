package bench

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// raftNet carries a site's Raft traffic through one TCP proxy per node, so
// that a node can be cut off from every peer at once: the in-process
// stand-in for a crash. (Closing a node is not a crash: a clean Close hands
// leadership over first. A crash, to the other nodes, is a peer that goes
// silent; cutting its Raft connections before closing it is exactly that.)
//
// Each node advertises its proxy's address as its Raft address, so every
// connection to the node passes its proxy. hashicorp/raft dials one way
// (the leader dials its followers; a candidate dials its voters), and every
// request is a msgpack map whose keys come sorted, the first being "Addr":
// the sender's advertised address, that is its proxy's. So the proxy reads
// the first bytes of a connection, finds which node opened it, and from
// then on knows both ends. A connection whose sender it cannot find makes
// Cut refuse rather than cut half-way.
type raftNet struct {
	mu      sync.Mutex
	addrs   map[string]string   // proxy (advertised) address → node ID
	cut     map[string]bool     // nodes cut off
	conns   map[*proxied]string // open connections → origin node ID, "" if unknown
	proxies []*raftProxy
	wg      sync.WaitGroup
}

// proxied is one connection through a proxy: in from the origin, out to
// the proxy's node.
type proxied struct {
	in, out net.Conn
	dest    string
}

func (p *proxied) close() {
	p.in.Close()
	if p.out != nil {
		p.out.Close()
	}
}

func newRaftNet() *raftNet {
	return &raftNet{addrs: map[string]string{}, cut: map[string]bool{}, conns: map[*proxied]string{}}
}

// raftProxy forwards connections to one node's Raft transport.
type raftProxy struct {
	rn     *raftNet
	ln     net.Listener
	node   string // the node behind it
	target string // its Raft transport's real address
}

// proxy starts the proxy in front of node id, whose Raft transport listens
// on target; its Addr is what the node advertises.
func (rn *raftNet) proxy(id, target string) (*raftProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &raftProxy{rn: rn, ln: ln, node: id, target: target}
	rn.mu.Lock()
	rn.proxies = append(rn.proxies, p)
	rn.addrs[p.Addr()] = id
	rn.mu.Unlock()
	rn.wg.Add(1)
	go p.serve()
	return p, nil
}

func (p *raftProxy) Addr() string { return p.ln.Addr().String() }

func (p *raftProxy) serve() {
	defer p.rn.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.rn.wg.Add(1)
		go func() {
			defer p.rn.wg.Done()
			p.handle(in)
		}()
	}
}

// handle reads until the sender's address shows (or 4 KiB or a second passed),
// then forwards the connection unless either end is cut off.
func (p *raftProxy) handle(in net.Conn) {
	buf := make([]byte, 0, 4096)
	origin := ""
	_ = in.SetReadDeadline(time.Now().Add(time.Second))
	for origin == "" && len(buf) < cap(buf) {
		n, err := in.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		origin = p.rn.sender(buf)
		if err != nil {
			break
		}
	}
	_ = in.SetReadDeadline(time.Time{})
	if len(buf) == 0 {
		in.Close()
		return
	}
	c := &proxied{in: in, dest: p.node}
	if !p.rn.track(c, origin) {
		in.Close()
		return
	}
	out, err := net.Dial("tcp", p.target)
	if err == nil {
		_, err = out.Write(buf)
	}
	if err != nil {
		if out != nil {
			out.Close()
		}
		p.rn.untrack(c)
		in.Close()
		return
	}
	if !p.rn.attach(c, out) {
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _, _ = io.Copy(out, in); out.Close() }()
	go func() { defer wg.Done(); _, _ = io.Copy(in, out); in.Close() }()
	wg.Wait()
	p.rn.untrack(c)
}

// sender returns the node whose address appears first in buf (the
// request's "Addr" key comes first), or "". An address counts only when
// followed by a non-digit, so that 127.0.0.1:3887 does not match
// 127.0.0.1:38871.
func (rn *raftNet) sender(buf []byte) string {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	best, at := "", -1
	for addr, id := range rn.addrs {
		for off := 0; ; {
			i := bytes.Index(buf[off:], []byte(addr))
			if i < 0 {
				break
			}
			i += off
			end := i + len(addr)
			if end < len(buf) && (buf[end] < '0' || buf[end] > '9') {
				if at < 0 || i < at {
					best, at = id, i
				}
				break
			}
			off = i + 1
		}
	}
	return best
}

// track records c from origin; false if either end is cut off.
func (rn *raftNet) track(c *proxied, origin string) bool {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	if rn.cut[origin] || rn.cut[c.dest] || rn.conns == nil {
		return false
	}
	rn.conns[c] = origin
	return true
}

// attach sets c's outgoing half; false (and both closed) if c was cut
// meanwhile.
func (rn *raftNet) attach(c *proxied, out net.Conn) bool {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	if _, ok := rn.conns[c]; !ok {
		out.Close()
		c.in.Close()
		return false
	}
	c.out = out
	return true
}

func (rn *raftNet) untrack(c *proxied) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	delete(rn.conns, c)
}

// errCutBlind means the proxies could not tell whose connections they
// carried, so cutting a node off would not be reliable.
var errCutBlind = errors.New("raft proxy: connections of unknown origin; cannot cut a node off")

// Cut isolates node id: every Raft connection it opened or that leads to it
// is closed, and new ones are refused, until Heal. It returns the peers the
// node had connections open to.
func (rn *raftNet) Cut(id string) (map[string]bool, error) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	for _, origin := range rn.conns {
		if origin == "" {
			return nil, errCutBlind
		}
	}
	rn.cut[id] = true
	peers := map[string]bool{}
	for c, origin := range rn.conns {
		if origin == id || c.dest == id {
			if origin == id {
				peers[c.dest] = true
			}
			c.close()
			delete(rn.conns, c)
		}
	}
	return peers, nil
}

// Heal lets node id's connections through again.
func (rn *raftNet) Heal(id string) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	delete(rn.cut, id)
}

// Close stops every proxy and closes every connection.
func (rn *raftNet) Close() {
	rn.mu.Lock()
	for _, p := range rn.proxies {
		p.ln.Close()
	}
	for c := range rn.conns {
		c.close()
	}
	rn.conns = nil
	rn.mu.Unlock()
	rn.wg.Wait()
}

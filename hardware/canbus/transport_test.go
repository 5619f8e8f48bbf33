package canbus

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/brutella/can"
	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// transport makes two connected buses.
type transport struct {
	name string
	open func(t *testing.T) (a, b *Bus)
}

// transports are the implementations of the contract: the in-memory pipe,
// the stream bridge over one TCP connection, and two stream bridges
// through a Hub.
var transports = []transport{
	{"pipe", func(t *testing.T) (*Bus, *Bus) {
		x, y := NewPipe()
		a, b := NewBus(x), NewBus(y)
		t.Cleanup(func() { a.Close(); b.Close() })
		return a, b
	}},
	{"tcp", func(t *testing.T) (*Bus, *Bus) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}()
		a, err := Open(context.Background(), Config{Transport: TransportTCP, Address: ln.Addr().String()})
		if err != nil {
			t.Fatal(err)
		}
		c, ok := <-accepted
		if !ok {
			t.Fatal("accept failed")
		}
		b := NewBus(NewStream(c))
		t.Cleanup(func() { a.Close(); b.Close() })
		return a, b
	}},
	{"hub", func(t *testing.T) (*Bus, *Bus) {
		h := mustHub(t)
		a := mustDial(t, h)
		b := mustDial(t, h)
		waitFor(t, func() bool { return h.Participants() == 2 })
		return a, b
	}},
}

func mustHub(t *testing.T) *Hub {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := NewHub(ln, nil)
	done := make(chan error, 1)
	go func() { done <- h.Serve() }()
	t.Cleanup(func() {
		h.Close()
		if err := <-done; !errors.Is(err, ErrClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return h
}

func mustDial(t *testing.T, h *Hub) *Bus {
	t.Helper()
	b, err := Open(context.Background(), Config{Transport: TransportTCP, Address: h.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// collector records frames a bus reads.
type collector struct {
	mu     sync.Mutex
	frames []can.Frame
}

func (c *collector) add(f can.Frame) { c.mu.Lock(); c.frames = append(c.frames, f); c.mu.Unlock() }
func (c *collector) len() int        { c.mu.Lock(); defer c.mu.Unlock(); return len(c.frames) }

// TestTransportFrames: 5,000 frames from each of 4 writers arrive whole,
// each writer's in order, none lost; and 5,000 from one writer arrive in
// order in the other direction at the same time.
func TestTransportFrames(t *testing.T) {
	const n, writers = 5000, 4
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			a, b := tr.open(t)
			var atB, atA collector
			b.Subscribe(atB.add)
			a.Subscribe(atA.add)
			var wg sync.WaitGroup
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range n {
						f := can.Frame{ID: uint32(w) | can.MaskEff, Length: 8}
						binary.BigEndian.PutUint32(f.Data[:], uint32(i))
						binary.BigEndian.PutUint32(f.Data[4:], ^uint32(i))
						if err := a.Publish(f); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			for i := range n {
				f := can.Frame{ID: 0x7FF, Length: 4}
				binary.BigEndian.PutUint32(f.Data[:], uint32(i))
				if err := b.Publish(f); err != nil {
					t.Fatal(err)
				}
			}
			wg.Wait()
			waitFor(t, func() bool { return atB.len() == n*writers && atA.len() == n })
			next := make([]uint32, writers)
			for _, f := range atB.frames {
				w := f.ID &^ can.MaskEff
				i := binary.BigEndian.Uint32(f.Data[:])
				if f.Length != 8 || w >= writers || i != next[w] || binary.BigEndian.Uint32(f.Data[4:]) != ^i {
					t.Fatalf("frame %+v out of order or torn (writer %d expects %d)", f, w, next[w])
				}
				next[w]++
			}
			for i, f := range atA.frames {
				if got := binary.BigEndian.Uint32(f.Data[:]); got != uint32(i) || f.ID != 0x7FF {
					t.Fatalf("reverse frame %d: %+v", i, f)
				}
			}
			time.Sleep(20 * time.Millisecond)
			if got := atB.len(); got != n*writers {
				t.Fatalf("%d frames, more than sent", got)
			}
		})
	}
}

// recorder is a Handler that records what it gets and decides every tap
// with a fixed decision.
type recorder struct {
	mu     sync.Mutex
	got    []mqttproto.Message
	from   []Addr
	decide func(mqttproto.Tap) mqttproto.Decision
	block  chan struct{}
}

func (r *recorder) record(from Addr, m mqttproto.Message) {
	r.mu.Lock()
	r.got = append(r.got, m)
	r.from = append(r.from, from)
	r.mu.Unlock()
}

func (r *recorder) messages() []mqttproto.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]mqttproto.Message(nil), r.got...)
}

func (r *recorder) HandleTap(ctx context.Context, from Addr, t mqttproto.Tap) mqttproto.Decision {
	r.record(from, t)
	if r.block != nil {
		select {
		case <-r.block:
		case <-ctx.Done():
		}
	}
	if r.decide != nil {
		return r.decide(t)
	}
	return grant(t)
}

func (r *recorder) HandleEvent(ctx context.Context, from Addr, e mqttproto.DoorEvent) error {
	r.record(from, e)
	return nil
}

func (r *recorder) HandleState(ctx context.Context, from Addr, s mqttproto.State) error {
	r.record(from, s)
	return nil
}

func grant(t mqttproto.Tap) mqttproto.Decision {
	return mqttproto.Decision{RequestID: t.RequestID, Door: t.Door, Grant: true, Reason: 1, Unlock: 5 * time.Second,
		Mode: 1, Node: "edge-1", Time: t0, CacheVersion: 17}
}

func mustGateway(t *testing.T, bus *Bus, h Handler, cfg GatewayConfig) *Gateway {
	t.Helper()
	g := NewGateway(bus, h, cfg)
	if err := g.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

func mustController(t *testing.T, bus *Bus, cfg NodeConfig, onCmd func(mqttproto.DoorCmd)) *Controller {
	t.Helper()
	c, err := NewController(bus, cfg, onCmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestMessagesOverTransports: every sample message round-trips between a
// controller and the gateway over every transport: taps get their
// decision, events and states reach the handler, commands reach the
// controller, each exactly as sent.
func TestMessagesOverTransports(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			site, field := tr.open(t)
			rec := &recorder{}
			g := mustGateway(t, site, rec, GatewayConfig{Node: NodeConfig{OnError: func(a Addr, err error) { t.Errorf("gateway: %v", err) }}})
			cmds := make(chan mqttproto.DoorCmd, 100)
			// A controller that asks for blocks of 3 frames 0.1 ms apart.
			c := mustController(t, field, NodeConfig{Addr: 0x0A, BlockSize: 3, STmin: 100 * time.Microsecond,
				OnError: func(a Addr, err error) { t.Errorf("controller: %v", err) }}, func(c mqttproto.DoorCmd) { cmds <- c })
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var up []mqttproto.Message
			for _, s := range samples() {
				switch m := s.msg.(type) {
				case mqttproto.Tap:
					d, err := c.Tap(ctx, m)
					if err != nil {
						t.Fatalf("%s: %v", s.name, err)
					}
					if want := grant(m); !reflect.DeepEqual(d, want) {
						t.Fatalf("%s: decision %#v, want %#v", s.name, d, want)
					}
					up = append(up, m)
				case mqttproto.DoorEvent, mqttproto.State:
					if err := c.Send(ctx, m); err != nil {
						t.Fatalf("%s: %v", s.name, err)
					}
					up = append(up, m)
				case mqttproto.DoorCmd:
					if err := g.Send(ctx, 0x0A, m); err != nil {
						t.Fatalf("%s: %v", s.name, err)
					}
					select {
					case got := <-cmds:
						if !reflect.DeepEqual(got, m) {
							t.Fatalf("%s: got %#v", s.name, got)
						}
					case <-ctx.Done():
						t.Fatalf("%s: not received", s.name)
					}
				}
			}
			waitFor(t, func() bool { return len(rec.messages()) == len(up) })
			for i, m := range rec.messages() {
				if !reflect.DeepEqual(m, up[i]) || rec.from[i] != 0x0A {
					t.Fatalf("handler message %d from %s: %#v, want %#v", i, rec.from[i], m, up[i])
				}
			}
			if seen, ok := g.LastSeen(0x0A); !ok || time.Since(seen) > time.Minute {
				t.Fatalf("LastSeen %v %t", seen, ok)
			}
			if _, ok := g.LastSeen(0x0B); ok {
				t.Fatal("LastSeen of a silent address")
			}
			if st := g.Stats(); st.Errors != 0 || st.BadFrames != 0 || st.MessagesIn != uint64(len(up)) {
				t.Fatalf("gateway stats %+v", st)
			}
		})
	}
}

// TestManyControllers: taps from 20 controllers at once, each with its own
// decision, over the stream bridge.
func TestManyControllers(t *testing.T) {
	site, field := transports[1].open(t)
	rec := &recorder{decide: func(tp mqttproto.Tap) mqttproto.Decision {
		d := grant(tp)
		d.CacheVersion = uint64(tp.Card)
		return d
	}}
	mustGateway(t, site, rec, GatewayConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for a := Addr(1); a <= 20; a++ {
		c := mustController(t, field, NodeConfig{Addr: a}, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				card := uint64(a)*1000 + uint64(i)
				tp := mqttproto.Tap{RequestID: fmt.Sprintf("r-%s-%d", a, i), Door: tDoor, Card: access.CardNumber(card), Time: t0}
				d, err := c.Tap(ctx, tp)
				if err != nil {
					t.Error(err)
					return
				}
				if d.RequestID != tp.RequestID || d.CacheVersion != card {
					t.Errorf("controller %s got %+v for %s", a, d, tp.RequestID)
				}
			}
		}()
	}
	wg.Wait()
	if got := len(rec.messages()); got != 400 {
		t.Fatalf("%d taps handled", got)
	}
}

// TestNaiveReaderOnTCP shows why Stream exists: package can's own
// ReadWriteCloser reads once per frame, which on a TCP stream returns
// several frames at once (all but the first dropped) or part of one (the
// read loop stops). Stream delivers all of them. The naive count is only
// logged: how many it loses depends on timing.
func TestNaiveReaderOnTCP(t *testing.T) {
	const n = 5000
	count := func(wrap func(net.Conn) can.ReadWriteCloser) int {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			buf := make([]byte, WireFrameLen)
			for i := range n {
				MarshalFrame(buf, can.Frame{ID: uint32(i) | can.MaskEff, Length: 8})
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		}()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		b := NewBus(wrap(c))
		defer b.Close()
		var got collector
		b.Subscribe(got.add)
		select {
		case <-b.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("read loop did not end")
		}
		intact := 0
		for i, f := range got.frames {
			if f.ID == uint32(i)|can.MaskEff && f.Length == 8 {
				intact++
			}
		}
		return intact
	}
	naive := count(func(c net.Conn) can.ReadWriteCloser { return can.NewReadWriteCloser(c) })
	ours := count(func(c net.Conn) can.ReadWriteCloser { return NewStream(c) })
	t.Logf("frames delivered in order: can.NewReadWriteCloser %d of %d, Stream %d of %d", naive, n, ours, n)
	if ours != n {
		t.Fatalf("Stream delivered %d of %d frames in order", ours, n)
	}
}

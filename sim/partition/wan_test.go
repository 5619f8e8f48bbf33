package partition

import (
	"bufio"
	"io"
	"net"
	"testing"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/edge/node"
)

// echoServer answers every line with itself, until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(t *testing.T, r *bufio.Reader, c net.Conn, line string) error {
	t.Helper()
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return err
	}
	got, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if got != line+"\n" {
		t.Fatalf("echo %q, want %q", got, line)
	}
	return nil
}

// TestWAN: bytes are counted in each direction; a cut closes the live
// connection and refuses new ones; a heal serves again on the same
// address; toxics can be set and removed.
func TestWAN(t *testing.T) {
	w, err := NewWAN(echoServer(t))
	must(t, err)
	t.Cleanup(w.Close)
	addr := w.Addr()
	c, err := net.Dial("tcp", addr)
	must(t, err)
	defer c.Close()
	r := bufio.NewReader(c)
	must(t, roundTrip(t, r, c, "hello"))
	must(t, w.SetLatency(5))
	must(t, roundTrip(t, r, c, "slow"))
	must(t, w.SetLatency(0))
	must(t, roundTrip(t, r, c, "fast"))
	waitFor(t, "both directions counted", func() bool {
		up, down := w.Bytes()
		return up == int64(len("hello\nslow\nfast\n")) && down == up
	})

	w.Cut()
	if !w.IsCut() {
		t.Fatal("IsCut false after Cut")
	}
	if err := roundTrip(t, r, c, "after the cut"); err == nil {
		t.Fatal("a live connection survived the cut")
	}
	if c2, err := net.Dial("tcp", addr); err == nil {
		// The listener is closed: a connect may still succeed in the
		// kernel's backlog race, but nothing is served.
		_, err = bufio.NewReader(c2).ReadString('\n')
		c2.Close()
		if err == nil {
			t.Fatal("a new connection was served during the cut")
		}
	}

	must(t, w.Heal())
	if w.Addr() != addr {
		t.Fatalf("healed on %s, want %s", w.Addr(), addr)
	}
	c3, err := net.Dial("tcp", addr)
	must(t, err)
	defer c3.Close()
	must(t, roundTrip(t, bufio.NewReader(c3), c3, "healed"))
	must(t, w.Heal()) // healing a healthy link is fine
}

// TestTapperRefusesTooFewReaders: a tapper needs a reader per node; with
// fewer it fails with an invalid error and dials nothing.
func TestTapperRefusesTooFewReaders(t *testing.T) {
	s := &Site{cfg: SiteConfig{ID: "S"}, nodes: []*node.Node{nil}, dead: map[*node.Node]chan struct{}{}}
	_, err := StartTapper(ctx, s, &History{}, nil, func() []access.CardNumber { return nil })
	if access.ErrorCode(err) != access.Invalid {
		t.Fatalf("tapper with too few readers: %v, want an invalid error", err)
	}
}

package fault_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
	"github.com/gatehouse/gatehouse/sim/device"
	"github.com/gatehouse/gatehouse/sim/fault"
)

// mustEcho starts a TCP server that echoes lines back.
func mustEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
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

func mustProxy(t *testing.T, target string) *fault.Proxy {
	t.Helper()
	p, err := fault.Listen("127.0.0.1:0", target, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// roundTrip sends a line over c and reads it back.
func roundTrip(c net.Conn, r *bufio.Reader, line string) error {
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return err
	}
	got, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if got != line+"\n" {
		return errors.New("echo mismatch: " + got)
	}
	return nil
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestProxy(t *testing.T) {
	p := mustProxy(t, mustEcho(t))
	t.Run("OK", func(t *testing.T) {
		c, r := dial(t, p.Addr())
		if err := roundTrip(c, r, "hello"); err != nil {
			t.Fatal(err)
		}
		if st := p.Stats(); st.Live != 1 || st.Accepted < 1 {
			t.Fatalf("stats %+v", st)
		}
	})
	t.Run("CutClosesLiveAndRefusesNew", func(t *testing.T) {
		c, r := dial(t, p.Addr())
		if err := roundTrip(c, r, "before"); err != nil {
			t.Fatal(err)
		}
		n, err := p.Cut()
		if err != nil || n < 1 || !p.IsCut() {
			t.Fatalf("cut: %d, %v", n, err)
		}
		if _, err := r.ReadString('\n'); err == nil {
			t.Fatal("live connection still open after the cut")
		}
		c2, r2 := dial(t, p.Addr()) // accepted by the kernel, then closed
		if err := roundTrip(c2, r2, "during"); err == nil {
			t.Fatal("a new connection got through the cut")
		}
		waitFor(t, "refusal counted", func() bool { return p.Stats().Refused >= 1 })
		if err := p.Restore(); err != nil {
			t.Fatal(err)
		}
		c3, r3 := dial(t, p.Addr())
		if err := roundTrip(c3, r3, "after"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("SetTarget", func(t *testing.T) {
		other := mustEcho(t)
		p.SetTarget(other)
		if p.Target() != other {
			t.Fatal("target not set")
		}
		c, r := dial(t, p.Addr())
		if err := roundTrip(c, r, "moved"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ErrClosed", func(t *testing.T) {
		q := mustProxy(t, mustEcho(t))
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		if err := q.Close(); err != nil {
			t.Fatal("second close:", err)
		}
		if _, err := q.Cut(); !errors.Is(err, fault.ErrClosed) {
			t.Fatalf("cut after close: %v", err)
		}
		if err := q.Restore(); !errors.Is(err, fault.ErrClosed) {
			t.Fatalf("restore after close: %v", err)
		}
		if _, err := net.DialTimeout("tcp", q.Addr(), time.Second); err == nil {
			t.Fatal("closed proxy still accepts")
		}
	})
}

func TestUnsupported(t *testing.T) {
	var f fault.Faults = fault.Unsupported{}
	ctx := context.Background()
	for name, err := range map[string]error{
		"RestartBroker": f.RestartBroker(ctx, 1),
		"KillNode":      f.KillNode(ctx, 1),
		"RestartNode":   f.RestartNode(ctx, 1),
	} {
		if !errors.Is(err, fault.ErrUnsupported) {
			t.Errorf("%s: %v, want ErrUnsupported", name, err)
		}
	}
}

// allowHook lets every client in.
type allowHook struct{ mqtt.HookBase }

func (h *allowHook) ID() string { return "allow" }
func (h *allowHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}
func (h *allowHook) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }
func (h *allowHook) OnACLCheck(*mqtt.Client, string, bool) bool              { return true }

// TestProxyCutsDevice puts a real MQTT door controller behind a proxy: a
// cut makes it lose its broker and decide alone, a restore brings it back.
func TestProxyCutsDevice(t *testing.T) {
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(new(allowHook), nil); err != nil {
		t.Fatal(err)
	}
	ln := listeners.NewTCP(listeners.Config{ID: "t", Address: "127.0.0.1:0"})
	if err := srv.AddListener(ln); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	p := mustProxy(t, ln.Address())
	c, err := device.DialController(context.Background(), device.ControllerConfig{
		Config:   device.Config{Broker: p.Addr(), Device: mqttproto.Device{Site: "s1", Kind: mqttproto.KindDoor, ID: "d1"}, Secret: "x"},
		Doors:    []access.ID{"01JD8X5Q4K3M2N1P0R9S8T7V6A"},
		StateDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, "connected", func() bool { return c.Status().LinkUp })
	if _, err := p.Cut(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "cut off", func() bool { st := c.Status(); return !st.LinkUp && st.Offline })
	res, err := c.Tap(context.Background(), "01JD8X5Q4K3M2N1P0R9S8T7V6A", 42, 0)
	if err != nil || !res.Alone || res.Decision.Reason != access.ReasonUnknownCard {
		t.Fatalf("tap while cut: %+v, %v", res.Decision, err)
	}
	if err := p.Restore(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "reconnected", func() bool { return c.Status().LinkUp && c.Conn().Stats().Connects >= 2 })
}

package canbus

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

func pipeBuses(t *testing.T) (*Bus, *Bus) { return transports[0].open(t) }

func TestGatewayRefusesBadDecisions(t *testing.T) {
	for _, tc := range []struct {
		name   string
		decide func(mqttproto.Tap) mqttproto.Decision
	}{
		{"zero decision", func(mqttproto.Tap) mqttproto.Decision { return mqttproto.Decision{} }},
		{"other request", func(tp mqttproto.Tap) mqttproto.Decision {
			d := grant(tp)
			d.RequestID = "other"
			return d
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			site, field := pipeBuses(t)
			mustGateway(t, site, &recorder{decide: tc.decide}, GatewayConfig{})
			c := mustController(t, field, NodeConfig{Addr: 1}, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			tp := mqttproto.Tap{RequestID: "r-1", Door: tDoor, Card: 5}
			if _, err := c.Tap(ctx, tp); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Tap: %v", err)
			}
		})
	}
}

// TestGatewayOrderAndIsolation: one controller's events reach the handler
// in order, while another controller's slow tap does not hold them up.
func TestGatewayOrderAndIsolation(t *testing.T) {
	site, field := pipeBuses(t)
	rec := &recorder{block: make(chan struct{})}
	g := mustGateway(t, site, rec, GatewayConfig{DecisionTimeout: 5 * time.Second})
	slow := mustController(t, field, NodeConfig{Addr: 1}, nil)
	fast := mustController(t, field, NodeConfig{Addr: 2}, nil)
	ctx := context.Background()
	tapDone := make(chan error, 1)
	go func() {
		_, err := slow.Tap(ctx, mqttproto.Tap{RequestID: "slow", Door: tDoor, Card: 1})
		tapDone <- err
	}()
	waitFor(t, func() bool { return len(rec.messages()) == 1 })
	for i := uint64(1); i <= 50; i++ {
		if err := fast.Send(ctx, mqttproto.DoorEvent{Type: mqttproto.DoorOpened, Seq: i, Time: t0, Door: tDoor}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return len(rec.messages()) == 51 })
	for i, m := range rec.messages()[1:] {
		if e := m.(mqttproto.DoorEvent); e.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d", i, e.Seq)
		}
	}
	close(rec.block)
	if err := <-tapDone; err != nil {
		t.Fatal(err)
	}
	if st := g.Stats(); st.MessagesIn != 51 || st.MessagesOut != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestGatewayQueueFull(t *testing.T) {
	site, field := pipeBuses(t)
	errs := make(chan error, 100)
	rec := &recorder{block: make(chan struct{})}
	defer close(rec.block)
	mustGateway(t, site, rec, GatewayConfig{Queue: 2, DecisionTimeout: 10 * time.Second,
		Node: NodeConfig{OnError: func(_ Addr, err error) { errs <- err }}})
	c := mustController(t, field, NodeConfig{Addr: 1}, nil)
	ctx := context.Background()
	go c.Tap(ctx, mqttproto.Tap{RequestID: "blocks", Door: tDoor, Card: 1})
	waitFor(t, func() bool { return len(rec.messages()) == 1 })
	for i := uint64(1); i <= 3; i++ {
		if err := c.Send(ctx, mqttproto.DoorEvent{Type: mqttproto.DoorOfflineStarted, Seq: i, Time: t0}); err != nil {
			t.Fatal(err)
		}
	}
	checkError(t, <-errs, ErrTimeout)
}

func TestGatewayLifecycle(t *testing.T) {
	site, field := pipeBuses(t)
	rec := &recorder{block: make(chan struct{})}
	g := NewGateway(site, rec, GatewayConfig{DecisionTimeout: time.Minute})
	cmd := mqttproto.DoorCmd{Type: mqttproto.DoorHeartbeat, RequestID: "h", Time: t0}
	checkError(t, g.Send(context.Background(), 1, cmd), ErrClosed)
	if err := g.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkError(t, g.Open(context.Background()), ErrClosed)
	c := mustController(t, field, NodeConfig{Addr: 1}, nil)
	go c.Tap(context.Background(), mqttproto.Tap{RequestID: "r", Door: tDoor, Card: 1})
	waitFor(t, func() bool { return len(rec.messages()) == 1 })
	// Close cancels the handler's context and waits for it.
	done := make(chan struct{})
	go func() { g.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	g.Close()
	checkError(t, g.Send(context.Background(), 1, cmd), ErrClosed)
	checkError(t, g.Open(context.Background()), ErrClosed)
	if _, err := NewController(field, NodeConfig{Addr: GatewayAddr}, nil); err == nil {
		t.Fatal("controller at the gateway's address")
	}
}

func TestControllerDuplicateTap(t *testing.T) {
	site, field := pipeBuses(t)
	rec := &recorder{block: make(chan struct{})}
	defer close(rec.block)
	mustGateway(t, site, rec, GatewayConfig{})
	c := mustController(t, field, NodeConfig{Addr: 1}, nil)
	tp := mqttproto.Tap{RequestID: "same", Door: tDoor, Card: 1}
	go c.Tap(context.Background(), tp)
	waitFor(t, func() bool { return len(rec.messages()) == 1 })
	_, err := c.Tap(context.Background(), tp)
	checkError(t, err, ErrBadMessage)
}

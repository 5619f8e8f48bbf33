package canbus

import (
	"context"
	"sync"

	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// Controller is the door controller's end of the protocol, for the
// simulator, tests and benchmarks (and a reference for vendors): it sends
// taps and waits for their decisions, sends events and states, and hands
// the site's commands to a callback. It does not implement a controller's
// behaviour (offline cache, event buffer); the simulator does.
//
// All methods are safe for concurrent use.
type Controller struct {
	node  *Node
	onCmd func(mqttproto.DoorCmd)

	mu      sync.Mutex
	waiting map[string]chan mqttproto.Decision
}

// NewController starts a controller at address cfg.Addr (1..254) on bus.
// onCmd, which may be nil, receives each command from the gateway; it runs
// on the bus's read loop and must not block. It returns an error wrapping
// ErrBadFrame when cfg.Addr is not a controller address, and NewNode's
// errors.
func NewController(bus *Bus, cfg NodeConfig, onCmd func(mqttproto.DoorCmd)) (*Controller, error) {
	if !cfg.Addr.IsController() {
		return nil, errorf(ErrBadFrame, "controller address %s is not 01..fe", cfg.Addr)
	}
	c := &Controller{onCmd: onCmd, waiting: map[string]chan mqttproto.Decision{}}
	node, err := NewNode(bus, cfg, c.receive)
	if err != nil {
		return nil, err
	}
	c.node = node
	return c, nil
}

func (c *Controller) receive(r Received) {
	switch m := r.Msg.(type) {
	case mqttproto.Decision:
		c.mu.Lock()
		ch := c.waiting[m.RequestID]
		delete(c.waiting, m.RequestID)
		c.mu.Unlock()
		if ch != nil {
			ch <- m // buffered for one
		}
		// A decision nobody waits for is late or repeated: ignored.
	case mqttproto.DoorCmd:
		if c.onCmd != nil {
			c.onCmd(m)
		}
	}
}

// Tap sends tap t and waits for the decision with its RequestID. It
// returns the decision, or ctx.Err() when ctx ends first (give ctx the
// device's decision timeout, mqttproto.DecisionTimeout), or an error of
// Node.Send. A second Tap with a RequestID still waited for gets an error
// wrapping ErrBadMessage.
func (c *Controller) Tap(ctx context.Context, t mqttproto.Tap) (mqttproto.Decision, error) {
	ch := make(chan mqttproto.Decision, 1)
	c.mu.Lock()
	if _, dup := c.waiting[t.RequestID]; dup {
		c.mu.Unlock()
		return mqttproto.Decision{}, errorf(ErrBadMessage, "tap %q is already waiting for its decision", t.RequestID)
	}
	c.waiting[t.RequestID] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		if c.waiting[t.RequestID] == ch {
			delete(c.waiting, t.RequestID)
		}
		c.mu.Unlock()
	}()
	if err := c.node.Send(ctx, GatewayAddr, t); err != nil {
		return mqttproto.Decision{}, err
	}
	select {
	case d := <-ch:
		return d, nil
	case <-ctx.Done():
		return mqttproto.Decision{}, ctx.Err()
	}
}

// Send sends m (a Tap without waiting, a DoorEvent or a State) to the
// gateway; see Node.Send for the errors.
func (c *Controller) Send(ctx context.Context, m mqttproto.Message) error {
	return c.node.Send(ctx, GatewayAddr, m)
}

// Node returns the controller's node, for its address and counters.
func (c *Controller) Node() *Node { return c.node }

// Close stops the controller; it does not close the bus. It is idempotent
// and returns nil.
func (c *Controller) Close() error { return c.node.Close() }

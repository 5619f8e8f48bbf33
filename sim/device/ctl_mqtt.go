package device

import (
	"context"
	"fmt"
	"sync"

	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// mqttLink is a controller's link over MQTT: a Conn that connects in the
// background (a controller works cut off from the start when it must) and
// reconnects by itself.
type mqttLink struct {
	c    *Controller
	conn *Conn

	mu      sync.Mutex
	pending map[string]chan mqttproto.Decision
}

// DialController starts a door controller on MQTT (cfg.Device.Kind must be
// mqttproto.KindDoor): it loads its storage from cfg.StateDir and connects
// to its broker in the background, reconnecting by itself; after every
// connect it subscribes to its decision and command topics, publishes its
// state and replays its unacknowledged events. It decides alone while it
// cannot reach its site. It returns an error wrapping ErrConnect for a bad
// configuration, or the storage's error (another controller holding the
// same StateDir, for one).
func DialController(ctx context.Context, cfg ControllerConfig) (*Controller, error) {
	if cfg.Device.Kind != mqttproto.KindDoor {
		return nil, fmt.Errorf("%w: device %s is not a door controller", ErrConnect, cfg.Device)
	}
	c, err := newController(cfg)
	if err != nil {
		return nil, err
	}
	l := &mqttLink{c: c, pending: map[string]chan mqttproto.Decision{}}
	conf := c.cfg.Config
	conf.Background = true
	conf.OnConnect = c.onUp
	conf.OnConnectionLost = func(error) { c.onDown() }
	conn, err := Dial(ctx, conf, c.state, l.onMessage)
	if err != nil {
		c.st.close()
		return nil, err
	}
	l.conn = conn
	c.start(l)
	return c, nil
}

func (l *mqttLink) onMessage(_ mqttproto.Topic, m mqttproto.Message) {
	switch m := m.(type) {
	case mqttproto.Decision:
		l.mu.Lock()
		ch := l.pending[m.RequestID]
		delete(l.pending, m.RequestID)
		l.mu.Unlock()
		l.c.heard()
		if ch != nil {
			ch <- m // buffered for one
		}
	case mqttproto.DoorCmd:
		l.c.receive(m)
	}
}

func (l *mqttLink) tap(ctx context.Context, t mqttproto.Tap) (mqttproto.Decision, error) {
	ch := make(chan mqttproto.Decision, 1)
	l.mu.Lock()
	l.pending[t.RequestID] = ch
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.pending, t.RequestID)
		l.mu.Unlock()
	}()
	tok, err := l.conn.PublishAsync(mqttproto.ChannelTap, t)
	if err != nil {
		return mqttproto.Decision{}, err
	}
	published := tok.Done()
	for {
		select {
		case d := <-ch:
			return d, nil
		case <-published:
			if err := tok.Error(); err != nil {
				return mqttproto.Decision{}, fmt.Errorf("publish tap: %w", err)
			}
			published = nil
		case <-ctx.Done():
			return mqttproto.Decision{}, fmt.Errorf("%w: %w", ErrNoDecision, ctx.Err())
		}
	}
}

func (l *mqttLink) send(ctx context.Context, m mqttproto.Message) error {
	if _, ok := m.(mqttproto.State); ok {
		return l.conn.PublishState()
	}
	return l.conn.Publish(ctx, mqttproto.ChannelEvent, m)
}

func (l *mqttLink) up() bool { return l.conn.Connected() }

func (l *mqttLink) close() error { return l.conn.Close() }

// Conn returns the MQTT connection of a controller dialled with
// DialController, nil for a CAN controller.
func (c *Controller) Conn() *Conn {
	if l, ok := c.link().(*mqttLink); ok {
		return l.conn
	}
	return nil
}

package device

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/hardware/canbus"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// CANConfig is where a CAN door controller sits: its bus and its address.
type CANConfig struct {
	// Bus is the bus's transport: usually the stream bridge
	// (canbus.TransportTCP) to a canbus.Hub or an edge gateway.
	Bus canbus.Config
	// Addr is the controller's address on the bus, 01 to fe.
	Addr canbus.Addr
}

// canLink is a controller's link over CAN. CAN has no connection: the link
// is up while the bus's transport is; the controller learns its site is
// there from what the gateway sends. When the transport fails (a stream
// bridge cut) the link opens it again, at most 2 s apart.
type canLink struct {
	c   *Controller
	cfg CANConfig

	mu   sync.Mutex
	bus  *canbus.Bus
	ctl  *canbus.Controller
	stop chan struct{}
	once sync.Once
	done chan struct{}
}

// OpenCANController starts a door controller on a CAN bus: it loads its
// storage from cfg.StateDir, opens the bus (in the background, again and
// again while it fails) and, each time the bus is up, sends its state and
// then its unacknowledged events in seq order; it sends its state at least
// every heartbeat interval. cfg.Config's Broker, Secret and TLS are not
// used. It returns an error wrapping ErrConnect for a bad configuration
// (including can's), or the storage's error.
func OpenCANController(cfg ControllerConfig, can CANConfig) (*Controller, error) {
	if err := can.Bus.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConnect, err)
	}
	if !can.Addr.IsController() {
		return nil, fmt.Errorf("%w: CAN address %s is not 01..fe", ErrConnect, can.Addr)
	}
	c, err := newController(cfg)
	if err != nil {
		return nil, err
	}
	l := &canLink{c: c, cfg: can, stop: make(chan struct{}), done: make(chan struct{})}
	c.start(l)
	go l.run()
	return c, nil
}

// run keeps the bus open and sends the state every heartbeat interval.
func (l *canLink) run() {
	defer close(l.done)
	backoff := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-l.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		bus, err := canbus.Open(ctx, l.cfg.Bus)
		var ctl *canbus.Controller
		if err == nil {
			ctl, err = canbus.NewController(bus, canbus.NodeConfig{Addr: l.cfg.Addr, Logger: l.c.log}, l.c.receive)
			if err != nil {
				bus.Close()
			}
		}
		if err != nil {
			cancel()
			l.c.log.Debug("can bus not open; trying again", "err", err)
			select {
			case <-l.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, maxReconnectInterval)
			continue
		}
		backoff = 50 * time.Millisecond
		l.mu.Lock()
		l.bus, l.ctl = bus, ctl
		l.mu.Unlock()
		// Start-up order (docs/protocol-can.md §6.1): state, then the
		// unacknowledged events (onUp makes the pump send them).
		if err := ctl.Send(ctx, l.c.state()); err != nil {
			l.c.log.Debug("can state not sent", "err", err)
		}
		l.c.onUp()
		tick := time.NewTicker(l.c.cfg.Heartbeat)
	alive:
		for {
			select {
			case <-tick.C:
				if err := ctl.Send(ctx, l.c.state()); err != nil {
					l.c.log.Debug("can state not sent", "err", err)
				}
			case <-bus.Done():
				break alive
			case <-l.stop:
				break alive
			}
		}
		tick.Stop()
		l.mu.Lock()
		l.bus, l.ctl = nil, nil
		l.mu.Unlock()
		l.c.onDown()
		ctl.Close()
		bus.Close()
		cancel()
		select {
		case <-l.stop:
			return
		default:
		}
	}
}

func (l *canLink) current() (*canbus.Bus, *canbus.Controller) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bus, l.ctl
}

var errCANDown = errors.New("can bus down")

func (l *canLink) tap(ctx context.Context, t mqttproto.Tap) (mqttproto.Decision, error) {
	_, ctl := l.current()
	if ctl == nil {
		return mqttproto.Decision{}, errCANDown
	}
	d, err := ctl.Tap(ctx, t)
	if err != nil {
		return d, fmt.Errorf("%w: %w", ErrNoDecision, err)
	}
	l.c.heard()
	return d, nil
}

func (l *canLink) send(ctx context.Context, m mqttproto.Message) error {
	_, ctl := l.current()
	if ctl == nil {
		return errCANDown
	}
	return ctl.Send(ctx, m)
}

func (l *canLink) up() bool {
	bus, _ := l.current()
	if bus == nil {
		return false
	}
	select {
	case <-bus.Done():
		return false
	default:
		return true
	}
}

func (l *canLink) close() error {
	l.once.Do(func() { close(l.stop) })
	<-l.done
	return nil
}

package mqttgw

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
)

// Site is what the gateway needs from its edge node. Its methods are called
// from many goroutines at once (one per connected device with the embedded
// broker, one per message with an external one) and must be safe for
// concurrent use.
type Site interface {
	// Decide answers a tap from the node's applied state; the node picks
	// the online or offline rule from its lease.
	Decide(card access.CardNumber, door access.ID, at time.Time) access.Decision
	// Device returns a device registered at the site.
	Device(id access.ID) (access.Device, bool)
	// RecordEvents commits door decisions to the site's replicated event
	// log (through Raft; may take milliseconds; may fail when the site has
	// no quorum).
	RecordEvents(ctx context.Context, events []*accessv1.AccessEvent) error
}

// ModeDecider is implemented by a Site that can also say under which rule
// (online or offline) it decided. The decision sent to a device names that
// rule; when the Site does not implement ModeDecider the gateway reports
// access.Offline for a ReasonNoOfflineAccess denial (only the offline rule
// gives it) and access.Online otherwise, which is wrong for an offline grant
// or an offline denial for another reason. Implementations must be safe
// for concurrent use.
type ModeDecider interface {
	// DecideWithMode is Site.Decide that also returns the rule it applied.
	DecideWithMode(card access.CardNumber, door access.ID, at time.Time) (access.Decision, access.Mode)
}

// DoorManager takes what door controllers send besides taps: it manages
// their offline caches, heartbeats and event acknowledgements
// (edge/doors.Manager implements it). send publishes a command on the
// controller's cmd topic with QoS 1. Its methods are called from the
// gateway's message handlers, concurrently for different devices, and must
// not block for long.
type DoorManager interface {
	// State takes a controller's state (online, or its offline will).
	State(dev access.Device, st mqttproto.State, send func(ctx context.Context, cmd mqttproto.DoorCmd) error)
	// Event takes a controller's event.
	Event(dev access.Device, e mqttproto.DoorEvent, send func(ctx context.Context, cmd mqttproto.DoorCmd) error)
}

// DeviceStatus is what the gateway knows about one device from its MQTT
// traffic: its retained state (online, or offline by its last will) and when
// it was last heard from. It is a plain value.
type DeviceStatus struct {
	// ID is the device's ID.
	ID access.ID
	// Kind is the device's kind.
	Kind access.DeviceKind
	// Online is the Online of the device's latest state message.
	Online bool
	// LastSeen is when the gateway last received a valid message from the
	// device (its retained state counts when the gateway subscribes).
	LastSeen time.Time
	// Firmware is the firmware version of the device's latest online state.
	Firmware string
}

// transport is the MQTT side of the gateway: the embedded broker's inline
// client or the external broker's client.
type transport interface {
	// publish sends payload on topic with QoS 1, not retained. wait, when
	// not nil, waits (for a bounded time) for the broker to acknowledge
	// it and returns the outcome.
	publish(topic string, payload []byte) (wait func() error, err error)
	// stopTaps removes the subscriptions to taps and events (best effort),
	// so that the broker stops sending them to this node.
	stopTaps()
	// close disconnects from (or stops) the broker.
	close()
}

// Lifecycle states of a Gateway.
const (
	stateNew = iota
	stateOpen
	stateClosed
)

// doorSender returns the function that sends commands to door controller
// d on its cmd topic.
func (g *Gateway) doorSender(d mqttproto.Device) func(context.Context, mqttproto.DoorCmd) error {
	topic := d.Topic(mqttproto.ChannelCmd).String()
	return func(ctx context.Context, cmd mqttproto.DoorCmd) error {
		b, err := cmd.Marshal()
		if err != nil {
			return err
		}
		wait, err := g.tr.publish(topic, b)
		if err != nil || wait == nil {
			return err
		}
		return wait()
	}
}

// Gateway connects a site's devices over MQTT to its edge node: it answers
// taps with decisions (and unlock commands), queues every decision as an
// access event for the site's replicated log, and tracks device state. With
// the embedded broker it also authenticates devices and enforces their
// access rules.
//
// Create it with New, start it with Open and stop it with Close. All
// methods are safe for concurrent use.
type Gateway struct {
	cfg   Config
	site  Site
	modes ModeDecider // site, when it implements it
	log   *slog.Logger
	m     *metrics

	dedup  *dedup
	rec    *recorder
	doors  doorIndex
	status statusTable
	gate   gate

	// tr is set by Open before the first message can arrive and never
	// changed after; handlers read it without locking.
	tr   transport
	addr atomic.Pointer[string] // the embedded broker's address

	mu       sync.Mutex // guards the fields below
	state    int
	closeErr error
}

// New returns a gateway for site (which must not be nil), configured by cfg
// (defaults applied with Config.WithDefaults), logging to log (nil:
// discard). It does not start anything and cannot fail; Open validates cfg.
// Each call makes an independent gateway.
func New(cfg Config, site Site, log *slog.Logger) *Gateway {
	cfg = cfg.WithDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("site", cfg.SiteID, "node", cfg.NodeID)
	g := &Gateway{
		cfg:   cfg,
		site:  site,
		log:   log,
		m:     newMetrics(cfg.SiteID, cfg.NodeID),
		dedup: newDedup(cfg.DedupTTL, cfg.DedupSize),
	}
	g.modes, _ = site.(ModeDecider)
	g.rec = newRecorder(site.RecordEvents, cfg, g.m, log)
	g.doors.init()
	g.status.init()
	g.gate.init()
	return g
}

// Open validates the config, registers the metrics and starts the gateway:
// the event recorder, then either the embedded broker (listening on
// cfg.ListenAddr, with the gateway's subscriptions in place before it
// returns) or the client of the external broker at cfg.BrokerURL (connected
// and subscribed before it returns; Open waits for that until ctx ends).
// It returns an error wrapping ErrBadConfig for a bad config, ErrClosed when
// called twice or after Close, ErrBroker when the broker cannot be started
// or reached, or the Registerer's error; after an error the gateway is
// closed. Open is safe for concurrent use.
func (g *Gateway) Open(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state != stateNew {
		return ErrClosed
	}
	g.state = stateOpen
	fail := func(err error) error {
		g.state = stateClosed
		g.gate.shut()
		g.rec.stop(0)
		g.m.unregister()
		return err
	}
	if err := g.cfg.Validate(); err != nil {
		return fail(err)
	}
	if err := g.m.register(g.cfg.Registerer); err != nil {
		return fail(fmt.Errorf("mqttgw: register metrics: %w", err))
	}
	g.rec.start()
	if g.cfg.BrokerURL == "" {
		b, err := g.newEmbedded()
		if err != nil {
			return fail(err)
		}
		// The transport is in place before the first message can arrive.
		g.tr = b
		addr := b.addr()
		g.addr.Store(&addr)
		if err := b.subscribe(g); err != nil {
			b.close()
			return fail(err)
		}
		g.log.Info("device gateway open with embedded broker", "addr", addr)
		return nil
	}
	x, err := g.newExternal()
	if err != nil {
		return fail(err)
	}
	g.tr = x
	if err := x.connect(ctx); err != nil {
		return fail(err)
	}
	g.log.Info("device gateway open with external broker", "broker", g.cfg.BrokerURL)
	return nil
}

// Addr returns the address the embedded broker listens on (with the port
// chosen when cfg.ListenAddr asked for port 0; still after Close), or ""
// before Open and in external broker mode. It is safe for concurrent use.
func (g *Gateway) Addr() string {
	if a := g.addr.Load(); a != nil {
		return *a
	}
	return ""
}

// Close stops the gateway, in this order: it stops taking taps and other
// messages (it unsubscribes from taps and events, so that the site's other
// nodes sharing an external broker get them all; anything still arriving is
// not answered) and waits for the ones being handled; it waits up to
// cfg.CloseTimeout for queued access events to be recorded; it disconnects
// from the external broker or stops the embedded one (disconnecting every
// device); and it unregisters the metrics. It returns an error wrapping
// ErrEventsLost when events were still unrecorded at the deadline. Close is
// idempotent (later calls return the first call's result) and safe for
// concurrent use; a Close during Open waits for Open to return.
func (g *Gateway) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch g.state {
	case stateClosed:
		return g.closeErr
	case stateNew:
		g.state = stateClosed
		g.gate.shut()
		g.rec.stop(0)
		return nil
	}
	g.state = stateClosed

	// 1. Stop taking taps: unsubscribe from taps and events, so that an
	// external broker sends them to the site's other nodes; ignore what
	// still arrives; let the handlers in progress (which may still publish
	// and queue events) finish.
	g.tr.stopTaps()
	g.gate.shut()
	// 2. Flush: record what is queued, for a bounded time.
	if lost := g.rec.stop(g.cfg.CloseTimeout); lost > 0 {
		g.closeErr = fmt.Errorf("%w: %d access events not recorded within %v", ErrEventsLost, lost, g.cfg.CloseTimeout)
		g.log.Error("closing: access events lost", "events", lost, "timeout", g.cfg.CloseTimeout)
	}
	// 3. Disconnect from the external broker, or stop the embedded one.
	g.tr.close()
	// 4. Metrics go last so that the flush above is still counted.
	g.m.unregister()
	g.log.Info("device gateway closed")
	return g.closeErr
}

// Devices returns the status of every device of the site that the gateway
// has heard from, sorted by ID. Devices no longer registered at the site are
// left out (and forgotten). It is safe for concurrent use.
func (g *Gateway) Devices() []DeviceStatus {
	return g.status.list(func(id access.ID) bool {
		d, ok := g.site.Device(id)
		return ok && string(d.SiteID) == g.cfg.SiteID
	})
}

// gate lets message handlers in until it is shut, and lets shut wait for
// the handlers already in.
type gate struct {
	mu     sync.Mutex
	idle   sync.Cond
	shutIn bool
	active int
}

func (x *gate) init() { x.idle.L = &x.mu }

// enter reports whether a handler may run; if so it must call leave.
func (x *gate) enter() bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.shutIn {
		return false
	}
	x.active++
	return true
}

// leave ends a handler that entered.
func (x *gate) leave() {
	x.mu.Lock()
	x.active--
	if x.active == 0 && x.shutIn {
		x.idle.Broadcast()
	}
	x.mu.Unlock()
}

// shut refuses new handlers and waits for those in progress.
func (x *gate) shut() {
	x.mu.Lock()
	x.shutIn = true
	for x.active > 0 {
		x.idle.Wait()
	}
	x.mu.Unlock()
}

// closed reports whether shut was called.
func (x *gate) closed() bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.shutIn
}

// Package cangw connects door controllers on a CAN bus (hardware/canbus) to
// an edge node: it implements canbus.Handler, deciding taps with the node's
// decision function (each request ID once per controller, every decision an
// access event in the replicated log, recorded in batches without delaying
// the answer) and handing states and events to the node's door manager
// (edge/doors), whose commands it sends with canbus.Gateway.Send.
//
// CAN addresses are mapped to device IDs by configuration
// (Config.Controllers): the address is a property of the bus wiring, set
// when the controller is commissioned, and the device record (with its
// door) is the same as over MQTT. A message from an address not in the map,
// or whose device is unknown, disabled, not a door controller or (for a
// tap) not at the tap's door, is refused: logged and not answered.
//
// Exactly one gateway may transmit on a bus (docs/protocol-can.md §1), so
// exactly one edge node of a site is configured with a given bus.
package cangw

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/canbus"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
)

// Site is what the CAN gateway needs from its edge node. Its methods must
// be safe for concurrent use.
type Site interface {
	// DecideWithMode answers a tap from the node's applied state and says
	// under which rule (online or offline) it decided.
	DecideWithMode(card access.CardNumber, door access.ID, at time.Time) (access.Decision, access.Mode)
	// Device returns a device registered at the site.
	Device(id access.ID) (access.Device, bool)
	// RecordEvents commits access events to the site's replicated log.
	RecordEvents(ctx context.Context, events []*accessv1.AccessEvent) error
}

// DoorManager takes door controllers' states and events (edge/doors.Manager
// implements it); send sends a command to the controller over the bus.
type DoorManager interface {
	State(dev access.Device, st mqttproto.State, send func(ctx context.Context, cmd mqttproto.DoorCmd) error)
	Event(dev access.Device, e mqttproto.DoorEvent, send func(ctx context.Context, cmd mqttproto.DoorCmd) error)
}

// Config configures a Gateway.
type Config struct {
	// SiteID is the site served; devices of other sites are refused.
	SiteID access.ID
	// NodeID names this node in decisions and access events.
	NodeID string
	// Bus selects the transport: SocketCAN or the TCP stream bridge.
	Bus canbus.Config
	// Controllers maps each controller address on the bus to its device.
	Controllers map[canbus.Addr]access.ID
	// Unlock is how long a grant releases the lock (5 s when zero).
	Unlock time.Duration
	// DedupTTL is how long a tap's decision is remembered for repeats of
	// its request ID (10 min when zero).
	DedupTTL time.Duration
	// Doors takes states and events; nil: they are only logged.
	Doors DoorManager
	// Gateway tunes the canbus gateway (queue, decision timeout).
	Gateway canbus.GatewayConfig
}

// Validate checks the config; it returns canbus's ErrConfig errors for the
// transport, and an error for a bad controller map.
func (c Config) Validate() error {
	if err := c.Bus.Validate(); err != nil {
		return err
	}
	for a, id := range c.Controllers {
		if !a.IsController() {
			return fmt.Errorf("cangw: address %s is not a controller address (01..fe)", a)
		}
		if _, err := access.ParseID(string(id)); err != nil {
			return fmt.Errorf("cangw: controller %s: %w", a, err)
		}
	}
	if c.Unlock < 0 || c.Unlock > mqttproto.MaxUnlock {
		return fmt.Errorf("cangw: unlock %v is outside 1ms..%v", c.Unlock, mqttproto.MaxUnlock)
	}
	return nil
}

// Gateway is an edge node's CAN gateway. Create it with New, start it with
// Open, stop it with Close. It is safe for concurrent use.
type Gateway struct {
	cfg  Config
	site Site
	log  *slog.Logger

	bus *canbus.Bus
	gw  *canbus.Gateway

	dmu   sync.Mutex
	dedup map[string]dedupEntry

	rec *recorder

	closeOnce sync.Once
}

type dedupEntry struct {
	d       mqttproto.Decision
	expires time.Time
}

var _ canbus.Handler = (*Gateway)(nil)

// New returns a gateway for site; it does nothing until Open.
func New(cfg Config, site Site, log *slog.Logger) *Gateway {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Unlock == 0 {
		cfg.Unlock = 5 * time.Second
	}
	if cfg.DedupTTL <= 0 {
		cfg.DedupTTL = 10 * time.Minute
	}
	log = log.With("transport", "can")
	return &Gateway{cfg: cfg, site: site, log: log, dedup: map[string]dedupEntry{},
		rec: newRecorder(site.RecordEvents, log)}
}

// Open validates the config, opens the bus and starts the gateway. It
// returns the config's or the transport's error.
func (g *Gateway) Open(ctx context.Context) error {
	if err := g.cfg.Validate(); err != nil {
		return err
	}
	bus, err := canbus.Open(ctx, g.cfg.Bus)
	if err != nil {
		return err
	}
	g.bus = bus
	g.gw = canbus.NewGateway(bus, g, g.cfg.Gateway)
	if err := g.gw.Open(context.Background()); err != nil {
		_ = bus.Close()
		return err
	}
	g.rec.start()
	g.log.Info("can gateway open", "transport", string(g.cfg.Bus.Transport), "controllers", len(g.cfg.Controllers))
	return nil
}

// Close stops taking messages, records what is queued (for up to 5 s) and
// closes the bus. It is idempotent.
func (g *Gateway) Close() error {
	g.closeOnce.Do(func() {
		if g.gw != nil {
			_ = g.gw.Close()
		}
		g.rec.stop(5 * time.Second)
		if g.bus != nil {
			_ = g.bus.Close()
		}
	})
	return nil
}

// device returns the door controller at address a, or why it is refused.
func (g *Gateway) device(a canbus.Addr) (access.Device, string) {
	id, ok := g.cfg.Controllers[a]
	if !ok {
		return access.Device{}, "address not configured"
	}
	d, ok := g.site.Device(id)
	switch {
	case !ok:
		return d, "unknown device"
	case d.SiteID != g.cfg.SiteID:
		return d, "device of another site"
	case d.Kind != access.DeviceDoor:
		return d, "device is not a door controller"
	case d.Disabled:
		return d, "device disabled"
	}
	return d, ""
}

// sender returns the function that sends commands to address a.
func (g *Gateway) sender(a canbus.Addr) func(context.Context, mqttproto.DoorCmd) error {
	return func(ctx context.Context, cmd mqttproto.DoorCmd) error { return g.gw.Send(ctx, a, cmd) }
}

// HandleTap decides a tap, once per (controller, request ID), and queues
// its access event. A refused tap gets the zero Decision, which the canbus
// gateway does not send.
func (g *Gateway) HandleTap(_ context.Context, from canbus.Addr, t mqttproto.Tap) mqttproto.Decision {
	now := time.Now()
	dev, reason := g.device(from)
	if reason == "" && dev.DoorID != t.Door {
		reason = "door is not the controller's (" + string(dev.DoorID) + ")"
	}
	if reason != "" {
		g.log.Warn("tap refused", "from", from.String(), "device", string(dev.ID), "request_id", t.RequestID, "reason", reason)
		return mqttproto.Decision{}
	}
	key := from.String() + "/" + t.RequestID
	g.dmu.Lock()
	if e, ok := g.dedup[key]; ok && now.Before(e.expires) {
		g.dmu.Unlock()
		return e.d
	}
	g.dmu.Unlock()

	d, mode := g.site.DecideWithMode(t.Card, t.Door, now)
	dec := mqttproto.Decision{RequestID: t.RequestID, Door: t.Door, Grant: d.Grant, Reason: d.Reason,
		Mode: mode, Node: g.cfg.NodeID, Time: now}
	if d.Grant {
		dec.Unlock = g.cfg.Unlock
	}
	g.dmu.Lock()
	if len(g.dedup) > 10_000 {
		for k, e := range g.dedup {
			if !now.Before(e.expires) {
				delete(g.dedup, k)
			}
		}
	}
	g.dedup[key] = dedupEntry{d: dec, expires: now.Add(g.cfg.DedupTTL)}
	g.dmu.Unlock()
	reasonPB := accessv1.Reason_REASON_UNSPECIFIED
	if d.Reason <= access.ReasonNoOfflineAccess {
		reasonPB = accessv1.Reason(d.Reason)
	}
	g.rec.enqueue(&accessv1.AccessEvent{
		AtMs: now.UnixMilli(), DoorId: string(t.Door), Card: uint64(t.Card), HolderId: string(d.Holder),
		Granted: d.Grant, Reason: reasonPB, RequestId: t.RequestID, Node: g.cfg.NodeID,
		Offline: mode == access.Offline,
	})
	return dec
}

// HandleEvent hands a controller's event to the door manager.
func (g *Gateway) HandleEvent(_ context.Context, from canbus.Addr, e mqttproto.DoorEvent) error {
	dev, reason := g.device(from)
	if reason != "" {
		return fmt.Errorf("event refused: %s", reason)
	}
	if g.cfg.Doors != nil {
		g.cfg.Doors.Event(dev, e, g.sender(from))
	}
	return nil
}

// HandleState hands a controller's state to the door manager.
func (g *Gateway) HandleState(_ context.Context, from canbus.Addr, s mqttproto.State) error {
	dev, reason := g.device(from)
	if reason != "" {
		return fmt.Errorf("state refused: %s", reason)
	}
	if g.cfg.Doors != nil {
		g.cfg.Doors.State(dev, s, g.sender(from))
	}
	return nil
}

// Controllers returns the configured address of each controller device.
func (g *Gateway) Controllers() map[access.ID]canbus.Addr {
	out := make(map[access.ID]canbus.Addr, len(g.cfg.Controllers))
	for a, id := range g.cfg.Controllers {
		out[id] = a
	}
	return out
}

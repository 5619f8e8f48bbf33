// Package doors is the site's side of its door controllers, whatever
// transport reaches them (MQTT through edge/mqttgw, CAN through edge/cangw):
// it keeps each controller's offline cache up to date, sends heartbeats,
// records the controller's events in the site's replicated log exactly once
// each and acknowledges them, and keeps what the controller reports about
// its doors for the node's status.
//
// # Offline cache
//
// The cache of a controller is access.BuildOfflineCache of the door its
// device record serves (access.Device.DoorID), with entries ending at the
// refresh horizon: the start of the current Config.Refresh period plus
// Config.Horizon (default: the current hour plus 24 h), so every entry
// expires and the cache is rebuilt at least every Refresh. The manager
// always sends full caches (never deltas): right after the controller comes
// online, and whenever the applied state changes it (the state's Changed
// signal, debounced by Config.Debounce) or the horizon moves. A version is
// the site's clock in Unix milliseconds when it was built, raised above the
// last version sent and the version the controller reports holding, so
// versions only grow, across nodes and restarts, as long as clocks are
// roughly right; a controller accepts a complete full cache of any version
// anyway (docs/protocol-mqtt.md §9.3).
//
// # Events and acknowledgements
//
// A controller's events are recorded through Raft with RecordDeviceEvents,
// which keeps per device, in the replicated state, the highest contiguous
// sequence number recorded (the watermark). The manager acknowledges with
// an ack command carrying the watermark as this node has applied it, only
// after the entry committed, so an ack never covers an event that is not
// in the replicated log, and acks and duplicate detection survive a leader
// change or a restart. An event at or below the watermark (or already
// queued) is a duplicate: it is not recorded again, but acknowledged again.
// An event beyond the next expected one is a gap: it is dropped and an ack
// with Resend asks for everything after the watermark. When the device then
// replays (sends a sequence number it had sent before) starting above the
// watermark plus one, it no longer holds the missing events, and the gap is
// recorded as permanent (RecordDeviceEvents.skip_to). A device whose
// watermark is 0 is taken to start at its first event.
//
// Offline decisions become access events with Offline set, like any
// decision; every other door event (door open/closed, alarms, rejected
// commands) becomes an access event with its Type.
package doors

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
)

// Site is what the manager needs from its edge node. Its methods must be
// safe for concurrent use.
type Site interface {
	// View calls fn with the node's applied state; fn must not keep it.
	View(fn func(st *access.State))
	// Changed returns a channel closed at the next change of the applied
	// state that may change a door's cache (sitestate.Machine.Changed).
	Changed() <-chan struct{}
	// DeviceSeq returns the device's event watermark in this node's
	// applied state.
	DeviceSeq(device access.ID) uint64
	// RecordDeviceEvents commits a RecordDeviceEvents command through Raft
	// and returns once this node has applied it.
	RecordDeviceEvents(ctx context.Context, device access.ID, events []*accessv1.AccessEvent, skipTo uint64) error
}

// Sender sends a command to one controller over its transport (QoS 1 on
// MQTT); it returns when the transport took it.
type Sender = func(ctx context.Context, cmd mqttproto.DoorCmd) error

// Config configures a Manager. The zero value is usable.
type Config struct {
	// NodeID names this node in command request IDs.
	NodeID string
	// Heartbeat is the longest time without a command to a controller
	// before a heartbeat is sent (mqttproto.HeartbeatInterval when zero).
	Heartbeat time.Duration
	// Debounce is how long after a state change the caches are rebuilt,
	// gathering the changes meanwhile (200 ms when zero).
	Debounce time.Duration
	// Horizon is how far past the current refresh period cache entries
	// may reach (24 h when zero).
	Horizon time.Duration
	// Refresh is the period at which caches are rebuilt even without a
	// change (1 h when zero).
	Refresh time.Duration
	// BatchMax bounds the events of one RecordDeviceEvents (256 when
	// zero).
	BatchMax int
	// Active, when set, says whether this node manages controllers now;
	// an inactive manager tracks state but sends nothing and records no
	// event. It is polled; nil means always active.
	Active func() bool
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Heartbeat <= 0 {
		c.Heartbeat = mqttproto.HeartbeatInterval
	}
	if c.Debounce <= 0 {
		c.Debounce = 200 * time.Millisecond
	}
	if c.Horizon <= 0 {
		c.Horizon = 24 * time.Hour
	}
	if c.Refresh <= 0 {
		c.Refresh = time.Hour
	}
	if c.BatchMax <= 0 {
		c.BatchMax = 256
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Status is what the manager knows about one door controller.
type Status struct {
	// ID is the controller's device ID; Door the door it serves.
	ID   access.ID
	Door access.ID
	// Online is the Online of its latest state.
	Online bool
	// Managed reports that this node pushes caches and acks to it.
	Managed bool
	// State is its latest online state (nil before one).
	State *mqttproto.State
	// Alarms lists the active alarms reported by its events, such as
	// "forced_open", "held_open", "tamper", "fail_secure", sorted.
	Alarms []string
	// Acked is the event watermark last acknowledged.
	Acked uint64
	// CacheVersion and CacheEntries describe the last cache sent.
	CacheVersion uint64
	CacheEntries int
}

// Manager manages the door controllers that this node talks to. Create it
// with New, start it with Open, stop it with Close. All methods are safe
// for concurrent use.
type Manager struct {
	cfg    Config
	site   Site
	log    *slog.Logger
	prefix string // of request IDs

	mu     sync.Mutex
	ctls   map[access.ID]*controller
	closed bool
	n      uint64 // request ID counter

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a manager for site, logging to log (nil: discard).
func New(cfg Config, site Site, log *slog.Logger) *Manager {
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	node := strings.Map(func(r rune) rune {
		if r < 0x80 && (r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return r
		}
		return -1
	}, cfg.NodeID)
	if len(node) > 16 {
		node = node[:16]
	}
	return &Manager{
		cfg: cfg, site: site, log: log, ctls: map[access.ID]*controller{},
		prefix: node + "." + strconv.FormatInt(cfg.Now().UnixMilli(), 36),
		ctx:    ctx, cancel: cancel,
	}
}

// Open starts watching the site for state changes.
func (m *Manager) Open() {
	m.wg.Add(1)
	go m.watch()
}

// Close stops every controller's loop and waits for them; events queued
// but not recorded are dropped (the controllers resend what is not acked).
// It is idempotent.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
	return nil
}

// requestID returns a fresh command request ID with prefix kind.
func (m *Manager) requestID(kind string) string {
	m.mu.Lock()
	m.n++
	n := m.n
	m.mu.Unlock()
	return kind + "." + m.prefix + "." + strconv.FormatUint(n, 36)
}

// watch rebuilds every controller's cache after each (debounced) change of
// the applied state.
func (m *Manager) watch() {
	defer m.wg.Done()
	ch := m.site.Changed()
	for {
		select {
		case <-ch:
		case <-m.ctx.Done():
			return
		}
		t := time.NewTimer(m.cfg.Debounce)
		select {
		case <-t.C:
		case <-m.ctx.Done():
			t.Stop()
			return
		}
		// Take the next channel first: a change from here on is seen.
		ch = m.site.Changed()
		m.mu.Lock()
		for _, c := range m.ctls {
			c.mu.Lock()
			c.rebuild = true
			c.mu.Unlock()
			c.poke()
		}
		m.mu.Unlock()
	}
}

// ctl returns dev's controller, started if new; nil after Close.
func (m *Manager) ctl(dev access.Device) *controller {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	c := m.ctls[dev.ID]
	if c == nil {
		c = &controller{m: m, id: dev.ID, wake: make(chan struct{}, 1), alarms: map[string]bool{}}
		m.ctls[dev.ID] = c
		m.wg.Add(1)
		go c.run()
	}
	c.mu.Lock()
	c.dev = dev
	c.mu.Unlock()
	return c
}

// State takes a state message of door controller dev, which send reaches.
// An online state after none (or after an offline one) attaches the
// controller: it gets a heartbeat and its full cache. An offline state
// detaches it: nothing is sent to it until it is back.
func (m *Manager) State(dev access.Device, st mqttproto.State, send Sender) {
	c := m.ctl(dev)
	if c == nil {
		return
	}
	c.mu.Lock()
	if st.Online {
		if !c.online {
			c.attach = true
		}
		s := st
		c.state = &s
	}
	c.online, c.send = st.Online, send
	c.mu.Unlock()
	c.poke()
}

// Detach marks controller id gone (its transport lost it), as an offline
// state does.
func (m *Manager) Detach(id access.ID) {
	m.mu.Lock()
	c := m.ctls[id]
	m.mu.Unlock()
	if c != nil {
		c.mu.Lock()
		c.online = false
		c.mu.Unlock()
	}
}

// Event takes an event of door controller dev (already decoded and
// validated), which send reaches. It queues the event for recording, or
// answers a duplicate or a gap as the package doc says. It never blocks on
// the site.
func (m *Manager) Event(dev access.Device, e mqttproto.DoorEvent, send Sender) {
	if m.cfg.Active != nil && !m.cfg.Active() {
		return // the active node records it (it gets every event too)
	}
	c := m.ctl(dev)
	if c == nil {
		return
	}
	ev := m.accessEvent(dev, e)
	mark := m.site.DeviceSeq(dev.ID)
	c.mu.Lock()
	c.send = send
	if !c.online {
		// Only a connected controller sends events: the offline state
		// was stale (a last will the broker published after the
		// controller had already connected again).
		c.online, c.attach = true, true
	}
	expect := max(mark, c.queued) + 1
	replay := e.Seq <= c.maxSeen
	c.maxSeen = max(c.maxSeen, e.Seq)
	switch {
	case e.Seq < expect:
		c.ackDue = true
	case e.Seq == expect:
		c.queue(ev, e)
	case expect == 1 || (replay && c.resendAt == expect-1):
		// The device never sent its first events to this site, or it
		// replays after a resend without the missing ones: permanent.
		c.skipTo = e.Seq - 1
		c.queued = e.Seq - 1
		c.queue(ev, e)
		m.log.Warn("door controller events lost for good", "device", string(dev.ID), "from", expect, "to", e.Seq-1)
	default:
		if c.resendAt != expect-1 || !c.resendDue {
			c.resendAt, c.resendDue = expect-1, true
		}
	}
	c.mu.Unlock()
	c.poke()
}

// accessEvent converts a door event to the access event recorded for it.
func (m *Manager) accessEvent(dev access.Device, e mqttproto.DoorEvent) *accessv1.AccessEvent {
	ev := &accessv1.AccessEvent{
		AtMs: e.Time.UnixMilli(), DoorId: string(e.Door), RequestId: e.RequestID,
		DeviceId: string(dev.ID), DeviceSeq: e.Seq, Detail: e.Error,
	}
	if e.Type != mqttproto.DoorOfflineDecision {
		ev.Type = string(e.Type)
		return ev
	}
	ev.Card, ev.Granted, ev.Offline = uint64(e.Card), e.Grant, true
	if e.Reason <= access.ReasonNoOfflineAccess {
		ev.Reason = accessv1.Reason(e.Reason)
	}
	m.site.View(func(st *access.State) {
		if c, ok := st.CardByNumber(e.Card); ok {
			ev.HolderId = string(c.PersonID)
			if !c.VisitID.IsZero() {
				ev.HolderId = string(c.VisitID)
			}
		}
	})
	return ev
}

// Devices returns the status of every controller the manager has heard
// from, sorted by ID.
func (m *Manager) Devices() []Status {
	m.mu.Lock()
	ctls := make([]*controller, 0, len(m.ctls))
	for _, c := range m.ctls {
		ctls = append(ctls, c)
	}
	m.mu.Unlock()
	out := make([]Status, 0, len(ctls))
	for _, c := range ctls {
		out = append(out, c.status())
	}
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(string(a.ID), string(b.ID)) })
	return out
}

// active reports whether this node manages controllers now.
func (m *Manager) active() bool { return m.cfg.Active == nil || m.cfg.Active() }

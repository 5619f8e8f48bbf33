package device

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// Defaults of ControllerConfig.
const (
	// DefaultMaxEvents is the size of a controller's event buffer: the
	// protocol's minimum.
	DefaultMaxEvents = 10000
	// rememberedCmds is how many command request IDs a controller
	// remembers so as not to act twice on one (the protocol's minimum).
	rememberedCmds = 64
	// cutOffIntervals is how many heartbeat intervals of silence make a
	// controller cut off.
	cutOffIntervals = 3
)

// ErrUnknownDoor reports a tap or door event at a door the controller does
// not drive.
var ErrUnknownDoor = errors.New("device: not a door of this controller")

// ControllerConfig configures a simulated door controller.
type ControllerConfig struct {
	// Config is the MQTT connection (DialController); Device.Kind must be
	// mqttproto.KindDoor. For OpenCANController only Device (its ID names
	// the controller in logs and offline decisions) and Log are used.
	Config
	// Doors are the doors the controller drives, 1 to mqttproto.MaxDoors.
	Doors []access.ID
	// StateDir is the controller's own storage: its offline caches, event
	// counter, event buffer, door modes and cut-off state live there and
	// survive a restart (a new controller on the same directory).
	StateDir string
	// Heartbeat is the site's heartbeat interval (default
	// mqttproto.HeartbeatInterval); the controller is cut off after
	// hearing nothing from its site for 3 of them. Tests shorten it.
	Heartbeat time.Duration
	// DecisionTimeout is how long a tap waits for the site's decision
	// before the controller decides alone (default
	// mqttproto.DecisionTimeout).
	DecisionTimeout time.Duration
	// MaxEvents is the event buffer's size; beyond it the oldest events
	// are dropped (default DefaultMaxEvents).
	MaxEvents int
	// Now is the controller's clock (default time.Now).
	Now func() time.Time
}

func (c ControllerConfig) withDefaults() ControllerConfig {
	c.Config = c.Config.withDefaults()
	if c.Heartbeat <= 0 {
		c.Heartbeat = mqttproto.HeartbeatInterval
	}
	if c.DecisionTimeout <= 0 {
		c.DecisionTimeout = mqttproto.DecisionTimeout
	}
	if c.MaxEvents <= 0 {
		c.MaxEvents = DefaultMaxEvents
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c ControllerConfig) validate() error {
	if err := c.Device.Validate(); err != nil {
		return err
	}
	if c.Device.Kind != mqttproto.KindDoor {
		return fmt.Errorf("device %s is not a door controller", c.Device)
	}
	if len(c.Doors) == 0 || len(c.Doors) > mqttproto.MaxDoors {
		return fmt.Errorf("door controller %s: %d doors, want 1 to %d", c.Device, len(c.Doors), mqttproto.MaxDoors)
	}
	for i, d := range c.Doors {
		if _, err := access.ParseID(string(d)); err != nil {
			return fmt.Errorf("door controller %s: door %d: %v", c.Device, i+1, err)
		}
		if slices.Contains(c.Doors[:i], d) {
			return fmt.Errorf("door controller %s: door %s listed twice", c.Device, d)
		}
	}
	if c.StateDir == "" {
		return fmt.Errorf("door controller %s: no state directory", c.Device)
	}
	return nil
}

// link is how a controller reaches its site: MQTT or CAN. It calls the
// controller's up, down and receive as things happen.
type link interface {
	// tap sends t and waits for its decision until ctx ends.
	tap(ctx context.Context, t mqttproto.Tap) (mqttproto.Decision, error)
	// send sends an event or a state and waits until it has left.
	send(ctx context.Context, m mqttproto.Message) error
	// up reports whether the link to the site is up now.
	up() bool
	// close stops the link; offline reports a clean stop (an MQTT device
	// then publishes its offline state).
	close() error
}

// assembly is an offline cache version being collected.
type assembly struct {
	first mqttproto.DoorCmd // header of the version: the first part seen
	parts map[int]mqttproto.DoorCmd
}

// doorRT is a door's state in memory.
type doorRT struct {
	rec        doorRecord
	open       bool
	failSecure bool
	collecting *assembly
	unlocks    int
}

// Controller is a simulated door controller that behaves as
// docs/protocol-mqtt.md §9 asks of a real one: it sends taps to its site
// and uses the site's decision; when the site is unreachable (the link is
// down, or nothing came from the site for 3 heartbeat intervals) or a
// decision does not come in time, it decides alone from the door's offline
// cache; it numbers its events, keeps them on its own storage until the
// site acknowledges them and replays them in order after every connect and
// on a resend; it assembles offline cache versions from their parts and
// applies them atomically and durably; it keeps door modes across
// restarts; and a high-security door fails secure once the controller has
// been cut off longer than the door's maximum offline time.
//
// Make one with DialController (MQTT) or OpenCANController (CAN). All
// methods are safe for concurrent use; Close is idempotent.
type Controller struct {
	cfg  ControllerConfig
	dev  mqttproto.Device
	log  *slog.Logger
	now  func() time.Time
	st   *store
	boot string

	linkMu sync.Mutex
	lnk    link

	mu        sync.Mutex
	doors     map[access.ID]*doorRT
	meta      metaRecord
	buffered  []mqttproto.DoorEvent // unacknowledged, in seq order
	history   []EventRecord         // every event made since this Controller started
	lastHeard time.Time
	sentTo    uint64 // events up to this seq were sent since the link came up
	rewinds   uint64 // times sentTo was moved back (a connect, a resend, the site heard again)
	linkUp    bool
	everUp    bool     // the link has been up since the controller started
	ups       int      // times the link came up
	upsAtCut  int      // ups when the current cut-off started
	recent    []string // request IDs of the last commands acted on
	taps      uint64
	rejected  []string // errors of commands refused, for tests and logs
	storeErr  error

	kick     chan struct{} // wakes the supervisor
	pumpKick chan struct{} // wakes the event pump
	stopOnce sync.Once
	stop     chan struct{}
	wg       sync.WaitGroup
}

// EventRecord is an event the controller made, and whether the site has
// acknowledged it.
type EventRecord struct {
	mqttproto.DoorEvent
	// Acked reports that an ack from the site covers the event.
	Acked bool
}

// newController loads the controller's storage; the caller attaches a
// link and calls start.
func newController(cfg ControllerConfig) (*Controller, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConnect, err)
	}
	st, err := openStore(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	meta, recs, events, err := st.load()
	if err != nil {
		st.close()
		return nil, fmt.Errorf("door controller %s: %w", cfg.Device, err)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	c := &Controller{
		cfg: cfg, dev: cfg.Device, now: cfg.Now, st: st, boot: hex.EncodeToString(b[:]),
		log:      cfg.Log.With("device", cfg.Device.ID, "kind", "door"),
		doors:    map[access.ID]*doorRT{},
		meta:     meta,
		buffered: events,
		kick:     make(chan struct{}, 1),
		pumpKick: make(chan struct{}, 1),
		stop:     make(chan struct{}),
	}
	for _, d := range cfg.Doors {
		rec, ok := recs[d]
		if !ok || !rec.Mode.Valid() {
			rec.Mode = mqttproto.DoorNormal
		}
		c.doors[d] = &doorRT{rec: rec, failSecure: meta.Offline && slices.Contains(meta.FailSecure, d)}
	}
	// Silence is counted from the last message heard before a cut-off
	// that outlived a restart, or else from now: a controller that just
	// started gives its site the usual 3 intervals to speak.
	c.lastHeard = c.now()
	if meta.Offline && !meta.Since.IsZero() {
		c.lastHeard = meta.Since
	}
	return c, nil
}

// start runs the supervisor and the event pump.
func (c *Controller) start(l link) {
	c.linkMu.Lock()
	c.lnk = l
	c.linkMu.Unlock()
	c.wg.Add(2)
	go c.supervise()
	go c.pump()
	c.poke()
}

func (c *Controller) link() link {
	c.linkMu.Lock()
	defer c.linkMu.Unlock()
	return c.lnk
}

// poke wakes the supervisor and the pump.
func (c *Controller) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
	select {
	case c.pumpKick <- struct{}{}:
	default:
	}
}

// Device returns the controller's identity.
func (c *Controller) Device() mqttproto.Device { return c.dev }

// Doors returns the doors the controller drives.
func (c *Controller) Doors() []access.ID { return slices.Clone(c.cfg.Doors) }

// onUp is called by the link once it is up (for MQTT: subscribed, state
// published): every unacknowledged event is sent again, in order.
func (c *Controller) onUp() {
	c.mu.Lock()
	c.linkUp, c.everUp = true, true
	c.ups++
	c.rewindLocked(c.meta.Acked)
	c.mu.Unlock()
	c.log.Debug("door controller link up")
	c.poke()
}

// onDown is called by the link when it goes down.
func (c *Controller) onDown() {
	c.mu.Lock()
	c.linkUp = false
	c.mu.Unlock()
	c.log.Debug("door controller link down")
	c.poke()
}

// heard notes a message from the site, which ends a cut-off.
func (c *Controller) heard() {
	now := c.now()
	c.mu.Lock()
	c.lastHeard = now
	c.mu.Unlock()
	c.poke()
}

// supervise decides when the controller is cut off and when a
// high-security door fails secure, and ends a cut-off when the site is
// heard again. It wakes on every change and at the next deadline.
func (c *Controller) supervise() {
	defer c.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := c.check()
		timer.Reset(max(next, time.Millisecond))
		select {
		case <-c.stop:
			return
		case <-c.kick:
		case <-timer.C:
		}
	}
}

// check applies the cut-off rules now and returns how long until the next
// deadline.
func (c *Controller) check() time.Duration {
	l := c.link()
	up := l != nil && l.up()
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	silence := c.cfg.Heartbeat * cutOffIntervals
	next := time.Hour
	// A link that has not come up yet since the start is not a cut-off
	// (the connection takes a moment); silence is.
	cut := !up && c.everUp || now.Sub(c.lastHeard) >= silence
	changed := false
	switch {
	case cut && !c.meta.Offline:
		c.meta.Offline, c.meta.Since, c.meta.FailSecure = true, c.lastHeard, nil
		c.upsAtCut = c.ups
		c.log.Info("door controller cut off from its site; deciding alone", "since", c.lastHeard)
		c.emitLocked(mqttproto.DoorEvent{Type: mqttproto.DoorOfflineStarted})
		changed = true
	case !cut && c.meta.Offline && c.lastHeard.After(c.meta.Since):
		c.meta.Offline, c.meta.Since, c.meta.FailSecure = false, time.Time{}, nil
		for _, d := range c.doors {
			d.failSecure = false
		}
		// Cut off by silence with the link up all along: whatever was sent
		// while the site was not listening is sent again (after a
		// reconnect it was, already). The site records each seq once.
		if c.ups == c.upsAtCut {
			c.rewindLocked(c.meta.Acked)
		}
		c.log.Info("door controller has its site again")
		c.emitLocked(mqttproto.DoorEvent{Type: mqttproto.DoorOfflineEnded})
		changed = true
	}
	if !c.meta.Offline {
		next = min(next, c.lastHeard.Add(silence).Sub(now))
	} else {
		for _, id := range c.cfg.Doors {
			d := c.doors[id]
			if !d.rec.HighSecurity || d.failSecure {
				continue
			}
			due := c.meta.Since.Add(d.rec.MaxOffline)
			if !now.Before(due) {
				c.failSecureLocked(id)
				changed = true
				continue
			}
			next = min(next, due.Sub(now))
		}
	}
	if changed {
		c.saveMetaLocked()
		go c.publishState()
	}
	return next
}

// failSecureLocked makes door id fail secure and reports it once.
func (c *Controller) failSecureLocked(id access.ID) {
	d := c.doors[id]
	d.failSecure = true
	c.meta.FailSecure = append(c.meta.FailSecure, id)
	c.log.Warn("high-security door fails secure", "door", string(id), "max_offline", d.rec.MaxOffline)
	c.emitLocked(mqttproto.DoorEvent{Type: mqttproto.DoorFailSecure, Door: id})
}

func (c *Controller) saveMetaLocked() {
	if err := c.st.saveMeta(c.meta); err != nil {
		c.storeFailedLocked(err)
	}
}

func (c *Controller) storeFailedLocked(err error) {
	if c.storeErr == nil {
		c.storeErr = err
	}
	c.log.Error("door controller storage failed", "err", err)
}

// emitLocked numbers e, stamps its time, stores it durably and queues it
// for the site.
func (c *Controller) emitLocked(e mqttproto.DoorEvent) mqttproto.DoorEvent {
	c.meta.Seq++
	e.Seq = c.meta.Seq
	if e.Time.IsZero() {
		e.Time = c.now()
	}
	if err := c.st.addEvent(e, c.meta, c.cfg.MaxEvents); err != nil {
		c.storeFailedLocked(err)
	}
	c.buffered = append(c.buffered, e)
	if n := len(c.buffered) - c.cfg.MaxEvents; n > 0 {
		c.buffered = slices.Delete(c.buffered, 0, n)
	}
	c.history = append(c.history, EventRecord{DoorEvent: e})
	select {
	case c.pumpKick <- struct{}{}:
	default:
	}
	return e
}

// pump sends buffered events in seq order while the link is up: after
// every connect from the first unacknowledged one, and after a resend from
// the one the site asked for.
func (c *Controller) pump() {
	defer c.wg.Done()
	for {
		select {
		case <-c.stop:
			return
		case <-c.pumpKick:
		}
		for {
			l := c.link()
			c.mu.Lock()
			var next *mqttproto.DoorEvent
			rewinds := c.rewinds
			if c.linkUp && l != nil {
				for i := range c.buffered {
					if c.buffered[i].Seq > c.sentTo {
						e := c.buffered[i]
						next = &e
						break
					}
				}
			}
			c.mu.Unlock()
			if next == nil {
				break
			}
			if !l.up() {
				break // the next onUp sends it
			}
			ctx, cancel := context.WithTimeout(context.Background(), min(c.cfg.ConnectTimeout, 2*time.Second))
			err := l.send(ctx, *next)
			cancel()
			if err != nil {
				c.log.Debug("event not sent; kept for the next connect", "seq", next.Seq, "err", err)
				break // the next onUp sends it again
			}
			c.mu.Lock()
			if next.Seq > c.sentTo && c.rewinds == rewinds {
				c.sentTo = next.Seq
			}
			c.mu.Unlock()
		}
	}
}

// receive handles a message from the site: a command (decisions are the
// link's).
func (c *Controller) receive(cmd mqttproto.DoorCmd) {
	c.heard()
	c.mu.Lock()
	defer c.mu.Unlock()
	if slices.Contains(c.recent, cmd.RequestID) {
		return // a repeat: acted on already
	}
	c.recent = append(c.recent, cmd.RequestID)
	if len(c.recent) > rememberedCmds {
		c.recent = c.recent[1:]
	}
	switch cmd.Type {
	case mqttproto.DoorHeartbeat:
	case mqttproto.DoorAck:
		c.ackLocked(cmd.Seq, cmd.Resend)
	case mqttproto.DoorSetMode:
		d, ok := c.doors[cmd.Door]
		if !ok {
			c.rejectLocked(cmd, "unknown door "+string(cmd.Door))
			return
		}
		if d.rec.Mode != cmd.Mode {
			d.rec.Mode = cmd.Mode
			if err := c.st.saveDoor(cmd.Door, d.rec); err != nil {
				c.storeFailedLocked(err)
			}
			go c.publishState()
		}
	case mqttproto.DoorUnlock:
		d, ok := c.doors[cmd.Door]
		switch {
		case !ok:
			c.rejectLocked(cmd, "unknown door "+string(cmd.Door))
		case d.rec.Mode == mqttproto.DoorLocked:
			c.rejectLocked(cmd, "door is locked")
		case c.now().After(cmd.Expires):
			c.rejectLocked(cmd, "unlock expired")
		default:
			d.unlocks++
		}
	case mqttproto.DoorOfflineCache:
		c.cachePartLocked(cmd)
	}
}

// rejectLocked reports a refused command with a cmd_rejected event.
func (c *Controller) rejectLocked(cmd mqttproto.DoorCmd, why string) {
	c.rejected = append(c.rejected, why)
	c.log.Warn("command rejected", "request_id", cmd.RequestID, "type", string(cmd.Type), "err", why)
	c.emitLocked(mqttproto.DoorEvent{Type: mqttproto.DoorCmdRejected, RequestID: cmd.RequestID, Error: why})
}

// ackLocked drops the events up to seq; with resend, it sends every later
// one again.
func (c *Controller) ackLocked(seq uint64, resend bool) {
	if seq > c.meta.Seq {
		seq = c.meta.Seq // an ack of events never made acknowledges what exists
	}
	if seq > c.meta.Acked {
		c.meta.Acked = seq
		if err := c.st.ack(seq, c.meta); err != nil {
			c.storeFailedLocked(err)
		}
		i := 0
		for i < len(c.buffered) && c.buffered[i].Seq <= seq {
			i++
		}
		c.buffered = slices.Delete(c.buffered, 0, i)
		for i := range c.history {
			if c.history[i].Seq <= seq {
				c.history[i].Acked = true
			}
		}
	}
	if resend {
		c.rewindLocked(seq)
		c.log.Info("site asked for events again", "after", seq)
	} else if c.sentTo < seq {
		c.sentTo = seq
	}
	select {
	case c.pumpKick <- struct{}{}:
	default:
	}
}

// rewindLocked makes the pump send every event after seq again. A send
// in flight when this happens does not move sentTo past seq once it
// returns: the rewind asked for that event again too.
func (c *Controller) rewindLocked(seq uint64) {
	c.sentTo = seq
	c.rewinds++
}

// cachePartLocked collects one part of an offline cache version and
// applies the version once it is complete (docs/protocol-mqtt.md §9.3).
func (c *Controller) cachePartLocked(cmd mqttproto.DoorCmd) {
	d, ok := c.doors[cmd.Door]
	if !ok {
		c.rejectLocked(cmd, "unknown door "+string(cmd.Door))
		return
	}
	a := d.collecting
	switch {
	case a != nil && cmd.Version < a.first.Version:
		c.log.Debug("stale offline cache part dropped", "door", string(cmd.Door), "version", cmd.Version, "collecting", a.first.Version)
		return
	case a == nil || cmd.Version > a.first.Version:
		a = &assembly{first: cmd, parts: map[int]mqttproto.DoorCmd{}}
		d.collecting = a
	}
	h := a.first
	if cmd.Base != h.Base || cmd.Parts != h.Parts || cmd.HighSecurity != h.HighSecurity || cmd.MaxOffline != h.MaxOffline {
		d.collecting = nil
		c.rejectLocked(cmd, fmt.Sprintf("part %d of cache version %d does not match its other parts", cmd.Part, cmd.Version))
		return
	}
	a.parts[cmd.Part] = cmd
	if len(a.parts) < h.Parts {
		return
	}
	d.collecting = nil
	if h.Version == d.rec.Version && d.rec.Version != 0 {
		return // held already: a repeat of the whole version
	}
	rec := doorRecord{Mode: d.rec.Mode, Version: h.Version, HighSecurity: h.HighSecurity, MaxOffline: h.MaxOffline}
	byCard := map[access.CardNumber]cacheEntry{}
	if h.Base != 0 {
		if d.rec.Version != h.Base {
			c.rejectLocked(cmd, "base version "+strconv.FormatUint(h.Base, 10)+" does not match held version "+strconv.FormatUint(d.rec.Version, 10))
			return
		}
		for _, e := range d.rec.Entries {
			byCard[e.Card] = e
		}
	}
	for p := 1; p <= h.Parts; p++ {
		for _, n := range a.parts[p].Remove {
			delete(byCard, n)
		}
	}
	for p := 1; p <= h.Parts; p++ {
		for _, e := range a.parts[p].Entries {
			byCard[e.Card] = cacheEntry{Card: e.Card, From: e.From, Until: e.Until}
		}
	}
	for _, e := range byCard {
		rec.Entries = append(rec.Entries, e)
	}
	slices.SortFunc(rec.Entries, func(a, b cacheEntry) int {
		switch {
		case a.Card < b.Card:
			return -1
		case a.Card > b.Card:
			return 1
		}
		return 0
	})
	if err := c.st.saveDoor(cmd.Door, rec); err != nil {
		c.storeFailedLocked(err)
		return // not durable: not applied
	}
	d.rec = rec
	c.log.Info("offline cache applied", "door", string(cmd.Door), "version", rec.Version, "entries", len(rec.Entries))
	go c.publishState()
}

// state is the controller's state as its state topic reports it.
func (c *Controller) state() mqttproto.State {
	c.mu.Lock()
	defer c.mu.Unlock()
	ds := &mqttproto.DoorStatus{Offline: c.meta.Offline}
	for _, id := range c.cfg.Doors {
		d := c.doors[id]
		ds.Doors = append(ds.Doors, mqttproto.DoorState{Door: id, Mode: d.rec.Mode, Open: d.open,
			CacheVersion: d.rec.Version, FailSecure: d.failSecure})
	}
	return mqttproto.State{Online: true, Firmware: c.cfg.Firmware, Time: c.now(), LastSeq: c.meta.Seq, Door: ds}
}

// publishState sends the state when the link is up.
func (c *Controller) publishState() {
	select {
	case <-c.stop:
		return
	default:
	}
	l := c.link()
	if l == nil || !l.up() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.ConnectTimeout)
	defer cancel()
	if err := l.send(ctx, c.state()); err != nil {
		c.log.Debug("state not published", "err", err)
	}
}

// TapResult is the outcome of a tap at a controller.
type TapResult struct {
	// RequestID is the tap's request ID.
	RequestID string
	// Sent is when the card was presented.
	Sent time.Time
	// Latency is the time from the tap to the decision.
	Latency time.Duration
	// Decision is the decision the controller acted on: the site's, or
	// its own (Mode access.Offline, Node the controller's ID).
	Decision mqttproto.Decision
	// Alone reports that the controller decided alone from its cache.
	Alone bool
	// Event is the offline_decision event of a decision made alone.
	Event mqttproto.DoorEvent
}

// Tap presents card at door: when the controller is not cut off it sends
// the tap to its site and waits up to its decision timeout (or timeout,
// when longer) for the decision; when it is cut off, or no decision comes,
// it decides alone from the door's cache and reports an offline_decision
// event. It returns an error wrapping ErrUnknownDoor, ErrClosed after
// Close, or ctx's error.
func (c *Controller) Tap(ctx context.Context, door access.ID, card access.CardNumber, timeout time.Duration) (TapResult, error) {
	select {
	case <-c.stop:
		return TapResult{}, ErrClosed
	default:
	}
	c.mu.Lock()
	_, ok := c.doors[door]
	c.taps++
	n := c.taps
	offline := c.meta.Offline
	c.mu.Unlock()
	if !ok {
		return TapResult{}, fmt.Errorf("%w: %s", ErrUnknownDoor, door)
	}
	res := TapResult{RequestID: "sim." + c.boot + "." + strconv.FormatUint(n, 10), Sent: c.now()}
	sentID := ""
	if l := c.link(); !offline && l != nil && l.up() {
		sentID = res.RequestID
		tctx, cancel := context.WithTimeout(ctx, max(timeout, c.cfg.DecisionTimeout))
		d, err := l.tap(tctx, mqttproto.Tap{RequestID: res.RequestID, Door: door, Card: card, Time: res.Sent})
		cancel()
		if err == nil {
			c.heard()
			res.Decision, res.Latency = d, c.now().Sub(res.Sent)
			return res, nil
		}
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		c.log.Info("no decision from the site; deciding alone", "request_id", res.RequestID, "err", err)
	}
	c.mu.Lock()
	e := c.decideLocked(door, card, res.Sent)
	e.RequestID = sentID
	e = c.emitLocked(e)
	c.mu.Unlock()
	res.Alone, res.Event = true, e
	res.Latency = c.now().Sub(res.Sent)
	res.Decision = mqttproto.Decision{RequestID: res.RequestID, Door: door, Grant: e.Grant, Reason: e.Reason,
		Mode: access.Offline, Node: c.dev.ID, Time: e.Time, CacheVersion: e.CacheVersion}
	if e.Grant {
		res.Decision.Unlock = 5 * time.Second
	}
	return res, nil
}

// decideLocked applies docs/protocol-mqtt.md §9.4 and returns the
// offline_decision event (not yet numbered).
func (c *Controller) decideLocked(door access.ID, card access.CardNumber, at time.Time) mqttproto.DoorEvent {
	d := c.doors[door]
	e := mqttproto.DoorEvent{Type: mqttproto.DoorOfflineDecision, Door: door, Card: card, Time: at, CacheVersion: d.rec.Version}
	deny := func(r access.Reason) mqttproto.DoorEvent { e.Reason = r; return e }
	switch d.rec.Mode {
	case mqttproto.DoorLocked:
		return deny(access.ReasonNoOfflineAccess)
	case mqttproto.DoorUnlocked:
		e.Grant, e.Reason = true, access.ReasonGranted
		return e
	}
	if d.rec.HighSecurity && c.meta.Offline && at.Sub(c.meta.Since) >= d.rec.MaxOffline {
		if !d.failSecure {
			c.failSecureLocked(door)
			c.saveMetaLocked()
			go c.publishState()
		}
		return deny(access.ReasonNoOfflineAccess)
	}
	if d.failSecure {
		return deny(access.ReasonNoOfflineAccess)
	}
	i, found := slices.BinarySearchFunc(d.rec.Entries, card, func(x cacheEntry, n access.CardNumber) int {
		switch {
		case x.Card < n:
			return -1
		case x.Card > n:
			return 1
		}
		return 0
	})
	if !found {
		return deny(access.ReasonUnknownCard)
	}
	x := d.rec.Entries[i]
	if (!x.From.IsZero() && at.Before(x.From)) || !at.Before(x.Until) {
		return deny(access.ReasonCardOutsideValidity)
	}
	e.Grant, e.Reason = true, access.ReasonGranted
	return e
}

// DoorEvent reports something that happened at door: the door sensor
// (mqttproto.DoorOpened, DoorClosed), the request-to-exit button
// (DoorRequestToExit), an alarm (DoorForcedOpen, DoorHeldOpen) or tamper
// (DoorTamper, DoorTamperCleared). The event is numbered, stored and sent
// like every other (buffered while cut off). It returns the event, or an
// error wrapping ErrUnknownDoor, or one for a type that is not a door
// event a person can cause.
func (c *Controller) DoorEvent(door access.ID, typ mqttproto.DoorEventType) (mqttproto.DoorEvent, error) {
	switch typ {
	case mqttproto.DoorOpened, mqttproto.DoorClosed, mqttproto.DoorRequestToExit, mqttproto.DoorForcedOpen,
		mqttproto.DoorHeldOpen, mqttproto.DoorTamper, mqttproto.DoorTamperCleared:
	default:
		return mqttproto.DoorEvent{}, fmt.Errorf("device: %q is not a door sensor event", typ)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.doors[door]
	if !ok {
		return mqttproto.DoorEvent{}, fmt.Errorf("%w: %s", ErrUnknownDoor, door)
	}
	changed := false
	switch typ {
	case mqttproto.DoorOpened, mqttproto.DoorForcedOpen:
		changed, d.open = !d.open, true
	case mqttproto.DoorClosed:
		changed, d.open = d.open, false
	}
	if changed {
		go c.publishState()
	}
	return c.emitLocked(mqttproto.DoorEvent{Type: typ, Door: door}), nil
}

// ControllerStatus is a snapshot of a controller.
type ControllerStatus struct {
	// Offline reports that the controller considers itself cut off.
	Offline bool
	// LinkUp reports that its link to the site is up.
	LinkUp bool
	// LastSeq is the latest event's seq, Acked the highest acknowledged.
	LastSeq, Acked uint64
	// Buffered counts the events not yet acknowledged.
	Buffered int
	// Doors are the doors' states.
	Doors []mqttproto.DoorState
	// Unlocks counts unlock commands obeyed per door.
	Unlocks map[access.ID]int
	// Rejected lists why commands were refused, oldest first.
	Rejected []string
	// StoreErr is the first storage error, if any.
	StoreErr error
}

// Status returns a snapshot of the controller.
func (c *Controller) Status() ControllerStatus {
	st := c.state()
	c.mu.Lock()
	defer c.mu.Unlock()
	s := ControllerStatus{Offline: c.meta.Offline, LinkUp: c.linkUp, LastSeq: c.meta.Seq, Acked: c.meta.Acked,
		Buffered: len(c.buffered), Doors: st.Door.Doors, Unlocks: map[access.ID]int{},
		Rejected: slices.Clone(c.rejected), StoreErr: c.storeErr}
	for id, d := range c.doors {
		s.Unlocks[id] = d.unlocks
	}
	return s
}

// Events returns every event this Controller made since it started
// (events of an earlier run on the same storage are in Buffered only),
// with whether the site acknowledged each.
func (c *Controller) Events() []EventRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.history)
}

// Buffered returns the events kept until the site acknowledges them, in
// seq order.
func (c *Controller) Buffered() []mqttproto.DoorEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.buffered)
}

// Cache returns the offline cache the controller holds for door: its
// version and entries (nil when it holds none).
func (c *Controller) Cache(door access.ID) (uint64, []mqttproto.CacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.doors[door]
	if !ok {
		return 0, nil
	}
	var out []mqttproto.CacheEntry
	for _, e := range d.rec.Entries {
		out = append(out, mqttproto.CacheEntry{Card: e.Card, From: e.From, Until: e.Until})
	}
	return d.rec.Version, out
}

// Close stops the controller: it stops deciding, closes its link (an MQTT
// controller publishes its offline state first) and its storage. What it
// stored stays for the next controller on the same StateDir. It is
// idempotent and returns the link's or storage's error.
func (c *Controller) Close() error {
	var err error
	c.stopOnce.Do(func() {
		close(c.stop)
		if l := c.link(); l != nil {
			err = l.close()
		}
		c.wg.Wait()
		c.mu.Lock()
		defer c.mu.Unlock()
		err = errors.Join(err, c.st.close())
	})
	return err
}

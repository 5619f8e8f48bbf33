package site

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/edge/mqttgw"
	"github.com/gatehouse/gatehouse/hardware/canbus"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// Errors returned by this package.
var (
	// ErrConfig reports an unusable Config.
	ErrConfig = errors.New("site: bad configuration")
	// ErrListen reports a listener that could not be opened.
	ErrListen = errors.New("site: cannot listen")
	// ErrClosed reports a call on a closed or unopened Site.
	ErrClosed = errors.New("site: not running")
	// ErrNoDevice reports an operator command with no device to send it
	// to (none serves the door, or none is online).
	ErrNoDevice = errors.New("site: no device to send to")
)

// DefaultNode is the node name the simulated site puts in its decisions.
const DefaultNode = "sim-site"

// unlockExpiry is how long after it is sent an unlock command may still be
// carried out.
const unlockExpiry = 10 * time.Second

// Config configures a Site.
type Config struct {
	// File is the parsed site file (required).
	File *File
	// MQTTListen is the host:port of the embedded broker, such as
	// 127.0.0.1:1883 (127.0.0.1:0 picks a port); empty for no broker.
	MQTTListen string
	// CANListen is the host:port of the CAN stream-bridge hub that CAN
	// controllers connect to; empty for no CAN.
	CANListen string
	// Out receives the timeline as it happens; nil discards it.
	Out io.Writer
	// Log receives diagnostics; nil discards them.
	Log *slog.Logger
	// Node is the node name in decisions (DefaultNode when empty).
	Node string
}

// Validate checks c. It returns an error wrapping ErrConfig.
func (c Config) Validate() error {
	switch {
	case c.File == nil:
		return fmt.Errorf("%w: no site file", ErrConfig)
	case c.MQTTListen == "" && c.CANListen == "":
		return fmt.Errorf("%w: listen on MQTT, CAN or both", ErrConfig)
	case c.Node != "" && !validRequestID(c.Node):
		return fmt.Errorf("%w: node %q: want 1 to 64 characters of A-Z a-z 0-9 . _ : -", ErrConfig, c.Node)
	}
	return nil
}

func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > mqttproto.MaxRequestID {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == ':' || r == '-') {
			return false
		}
	}
	return true
}

// Site is a simulated site. Lifecycle: New, Open, then Close, which ends
// the run; Report may be called at any time. All methods are safe for
// concurrent use.
type Site struct {
	cfg  Config
	f    *File
	log  *slog.Logger
	node string

	mu         sync.Mutex
	start      time.Time
	devs       []*devState
	byName     map[string]*devState // by KIND/ID
	byCAN      map[canbus.Addr]*devState
	others     map[string]*devState // identities not in the file
	doors      map[access.ID]*doorState
	doorByName map[string]*doorState
	cards      map[access.CardNumber]Card
	entries    []Entry
	violations []Violation
	changed    chan struct{}
	nextReq    uint64
	opened     bool
	ended      bool

	srv       *mqtt.Server
	mqttLn    *listeners.TCP
	pubMu     sync.RWMutex // held to publish; Close takes it to stop publishing
	pubClosed bool
	hub       *canbus.Hub
	bus       *canbus.Bus
	gw        *canbus.Gateway

	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup // tick and script
	delayed sync.WaitGroup // decisions held back
	once    sync.Once
}

// doorState is a door at run time.
type doorState struct {
	*Door
	version uint64
	entries []mqttproto.CacheEntry
	ctrls   []*devState
}

// tapRecord is a tap already decided, for dedup.
type tapRecord struct {
	canon string
	d     mqttproto.Decision
}

// heldEvent is an event that arrived after a gap, waiting for it to fill.
type heldEvent struct {
	canon string
	act   func(*batch)
}

// expectation is something the site waits for a device to do.
type expectation struct {
	rule    string
	reqIDs  []string
	door    access.ID
	version uint64
	mode    mqttproto.DoorMode
	card    access.CardNumber
	full    bool // a full cache
	text    string
	sentAt  time.Duration
	tapAt   time.Time
	done    bool
}

// devState is a device at run time.
type devState struct {
	d    *Device
	dev  mqttproto.Device
	name string

	// MQTT connection
	cl          *mqtt.Client
	connected   bool
	connectedAt time.Time
	gotState    bool
	stateWarned bool
	subs        map[string]byte

	online    bool
	lastSent  time.Time
	lastHeard time.Time // CAN: last state
	refreshed bool      // CAN: state_refresh reported for this silence

	taps     map[string]tapRecord
	last     uint64
	recorded map[uint64]string
	held     map[uint64]heldEvent
	gapAsked bool
	stateSeq uint64

	versions map[access.ID]uint64
	modes    map[access.ID]mqttproto.DoorMode
	expect   []*expectation
	sentReqs map[string]access.CardNumber // dispenser commands sent, with the card of an encode

	sum DeviceSummary
}

// New returns a site for cfg; it does nothing until Open. It returns an
// error wrapping ErrConfig for a bad cfg.
func New(cfg Config) (*Site, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	node := cfg.Node
	if node == "" {
		node = DefaultNode
	}
	s := &Site{cfg: cfg, f: cfg.File, log: cfg.Log, node: node,
		byName: map[string]*devState{}, byCAN: map[canbus.Addr]*devState{}, others: map[string]*devState{},
		doors: map[access.ID]*doorState{}, doorByName: map[string]*doorState{}, cards: map[access.CardNumber]Card{},
		changed: make(chan struct{})}
	for _, d := range s.f.Doors {
		ds := &doorState{Door: d, version: d.Version}
		s.doors[d.ID] = ds
		s.doorByName[d.Name] = ds
	}
	for _, d := range s.f.Devices {
		ds := newDevState(d, s.f.Site)
		s.devs = append(s.devs, ds)
		s.byName[ds.name] = ds
		if d.CAN != 0 {
			s.byCAN[d.CAN] = ds
		}
		if d.Kind == mqttproto.KindDoor {
			for _, n := range d.Doors {
				s.doorByName[n].ctrls = append(s.doorByName[n].ctrls, ds)
			}
		}
	}
	for _, c := range s.f.Cards {
		s.cards[c.Number] = c
	}
	return s, nil
}

func newDevState(d *Device, site string) *devState {
	dev := d.Dev(site)
	transport := "mqtt"
	if d.CAN != 0 {
		transport = "can"
	}
	name := string(d.Kind) + "/" + d.ID
	return &devState{d: d, dev: dev, name: name, subs: map[string]byte{}, taps: map[string]tapRecord{},
		last: d.Acked, recorded: map[uint64]string{}, held: map[uint64]heldEvent{},
		versions: map[access.ID]uint64{}, modes: map[access.ID]mqttproto.DoorMode{}, sentReqs: map[string]access.CardNumber{},
		sum: DeviceSummary{Device: name, Transport: transport, LastSeq: d.Acked}}
}

// Open starts the run: it prints the doors' IDs, starts the broker and
// the CAN hub and gateway, the heartbeats and the script. ctx bounds the
// run's goroutines (Close stops them too). It returns an error wrapping
// ErrListen when a listener cannot be opened, or ErrClosed when called
// twice.
func (s *Site) Open(ctx context.Context) error {
	s.mu.Lock()
	if s.opened {
		s.mu.Unlock()
		return fmt.Errorf("%w: open twice", ErrClosed)
	}
	s.opened = true
	s.start = time.Now()
	s.ctx, s.cancel = context.WithCancel(ctx)
	for _, d := range s.f.Doors {
		ds := s.doorByName[d.Name]
		for _, c := range s.f.Cache {
			if c.Door != d.Name {
				continue
			}
			e := mqttproto.CacheEntry{Card: c.Card, Until: c.Until.At(s.start).Truncate(time.Millisecond)}
			if c.HasFrom {
				e.From = c.From.At(s.start).Truncate(time.Millisecond)
			}
			ds.entries = append(ds.entries, e)
		}
		how := "given"
		if d.Derived {
			how = "derived from its name"
		}
		hs := ""
		if d.HighSecurity {
			hs = fmt.Sprintf(", high-security, max offline %s", d.MaxOffline)
		}
		var ctrls []string
		for _, c := range ds.ctrls {
			ctrls = append(ctrls, c.d.ID)
		}
		s.noteLocked("site", "--", "door", fmt.Sprintf("door %s = %s (%s); cache version %d with %d entries%s; controllers %v",
			d.Name, d.ID, how, ds.version, len(ds.entries), hs, ctrls))
	}
	s.mu.Unlock()

	if s.cfg.MQTTListen != "" {
		if err := s.openMQTT(); err != nil {
			s.Close()
			return err
		}
	}
	if s.cfg.CANListen != "" {
		if err := s.openCAN(); err != nil {
			s.Close()
			return err
		}
	}
	s.mu.Lock()
	for _, d := range s.devs {
		if d.d.CAN != 0 && s.cfg.CANListen == "" {
			s.noteLocked(d.name, "--", "conn", "CAN controller, but no CAN listener: it cannot take part")
		}
	}
	s.mu.Unlock()
	s.wg.Add(2)
	go s.tick()
	go s.script()
	return nil
}

// MQTTAddr returns the broker's bound address ("" without one).
func (s *Site) MQTTAddr() string {
	if s.mqttLn == nil {
		return ""
	}
	return s.mqttLn.Address()
}

// CANAddr returns the CAN hub's bound address ("" without one).
func (s *Site) CANAddr() string {
	if s.hub == nil {
		return ""
	}
	return s.hub.Addr().String()
}

// Close ends the run in this order: it stops the script and heartbeats,
// the MQTT broker (disconnecting every device), the CAN gateway, bus and
// hub; then it adds the violations only the end of a run shows. It is
// idempotent and returns nil.
func (s *Site) Close() error {
	s.once.Do(func() {
		if s.cancel != nil {
			s.cancel()
		}
		s.wg.Wait()
		s.pubMu.Lock()
		s.pubClosed = true
		s.pubMu.Unlock()
		s.delayed.Wait()
		if s.srv != nil {
			_ = mqttgw.CloseBroker(s.srv, "devices")
		}
		if s.gw != nil {
			_ = s.gw.Close()
		}
		if s.bus != nil {
			_ = s.bus.Close()
		}
		if s.hub != nil {
			_ = s.hub.Close()
		}
		s.mu.Lock()
		if s.opened {
			s.finish()
		}
		s.ended = true
		s.notify()
		s.mu.Unlock()
	})
	return nil
}

// Report returns a copy of the report so far.
func (s *Site) Report() *Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reportLocked()
}

func (s *Site) reportLocked() *Report {
	r := &Report{Site: s.f.Site, Entries: slices.Clone(s.entries), Violations: slices.Clone(s.violations), Ended: s.ended}
	for _, d := range s.devs {
		sum := d.sum
		sum.LastSeq, sum.Online = d.last, d.online
		r.Devices = append(r.Devices, sum)
	}
	var names []string
	for n := range s.others {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		r.Devices = append(r.Devices, s.others[n].sum)
	}
	return r
}

// Await waits until cond holds for the report, re-checking after every
// change, and returns nil; or ctx.Err() when ctx ends first.
func (s *Site) Await(ctx context.Context, cond func(*Report) bool) error {
	for {
		s.mu.Lock()
		r, ch := s.reportLocked(), s.changed
		s.mu.Unlock()
		if cond(r) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// notify wakes Await; s.mu is held.
func (s *Site) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// now returns the wall clock.
func (s *Site) now() time.Time { return time.Now() }

// since returns the time since the start; s.mu is held.
func (s *Site) since() time.Duration {
	if s.start.IsZero() {
		return 0
	}
	return time.Since(s.start)
}

// noteLocked adds a timeline entry and prints it; s.mu is held.
func (s *Site) noteLocked(device, dir, channel, summary string) {
	e := Entry{At: s.since(), Device: device, Dir: dir, Channel: channel, Summary: summary}
	s.entries = append(s.entries, e)
	fmt.Fprintln(s.cfg.Out, e.String())
	s.notify()
}

// violateLocked adds a violation by device and prints it; s.mu is held.
func (s *Site) violateLocked(ds *devState, device, rule, format string, args ...any) {
	if ds != nil {
		device = ds.name
		ds.sum.Violations++
	}
	v := Violation{At: s.since(), Device: device, Rule: rule, Detail: fmt.Sprintf(format, args...)}
	s.violations = append(s.violations, v)
	fmt.Fprintln(s.cfg.Out, v.String())
	s.notify()
}

// other returns the summary row of an identity the file does not name.
func (s *Site) other(name string) *devState {
	if len(name) > 80 {
		name = name[:80] + "..."
	}
	o := s.others[name]
	if o == nil {
		o = &devState{name: name, sum: DeviceSummary{Device: name, Transport: "mqtt"}}
		s.others[name] = o
	}
	return o
}

// reqID returns a new request ID of the site with prefix.
func (s *Site) reqID(prefix string) string {
	s.nextReq++
	return prefix + "-" + strconv.FormatUint(s.nextReq, 10)
}

// doorName returns the name of door id for the timeline.
func (s *Site) doorName(id access.ID) string {
	if d := s.doors[id]; d != nil {
		return d.Name
	}
	return string(id)
}

// tick sends heartbeats and checks liveness until the run ends.
func (s *Site) tick() {
	defer s.wg.Done()
	every := min(max(s.f.Heartbeat/10, 10*time.Millisecond), time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		now := time.Now()
		b := &batch{}
		for _, d := range s.devs {
			if d.d.Kind == mqttproto.KindDoor && d.online && now.Sub(d.lastSent) >= s.f.Heartbeat {
				b.heartbeat(s, d)
			}
			if d.d.CAN == 0 && d.connected && !d.gotState && !d.stateWarned && now.Sub(d.connectedAt) > s.f.Heartbeat {
				d.stateWarned = true
				s.violateLocked(d, "", RuleNoState, "connected %s ago and has published no online state (a device publishes it right after connecting)",
					now.Sub(d.connectedAt).Round(time.Millisecond))
			}
			if d.d.CAN != 0 && d.online {
				silent := now.Sub(d.lastHeard)
				if silent > s.f.Heartbeat*3/2 && !d.refreshed {
					d.refreshed = true
					s.violateLocked(d, "", RuleStateRefresh, "no state for %s (a CAN controller sends it at least every %s)",
						silent.Round(time.Millisecond), s.f.Heartbeat)
				}
				if silent > 3*s.f.Heartbeat {
					d.online = false
					s.noteLocked(d.name, "--", "conn", fmt.Sprintf("gone: nothing received for %s", silent.Round(time.Millisecond)))
				}
			}
		}
		s.mu.Unlock()
		s.send(b)
	}
}

// script runs the file's operator commands on their times.
func (s *Site) script() {
	defer s.wg.Done()
	for _, c := range s.f.Script {
		wait := time.Until(s.start.Add(c.At))
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-s.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		if err := s.Do(c); err != nil {
			s.mu.Lock()
			s.noteLocked("site", "--", "script", fmt.Sprintf("line %d: %s: %v", c.Line, c.Text, err))
			s.mu.Unlock()
		}
	}
}

// Do runs operator command c now. It returns an error wrapping ErrClosed
// when the site is not running, or ErrNoDevice when no device could be
// sent the command (the command is still noted in the timeline).
func (s *Site) Do(c Command) error {
	s.mu.Lock()
	if !s.opened || s.ended || s.ctx.Err() != nil {
		s.mu.Unlock()
		return ErrClosed
	}
	s.noteLocked("site", "--", "operator", c.Text)
	b := &batch{}
	var err error
	switch c.Op {
	case OpUnlock, OpSetMode:
		door := s.doorByName[c.Door]
		if door == nil {
			err = fmt.Errorf("%w: no door %q", ErrNoDevice, c.Door)
			break
		}
		sent := 0
		for _, d := range door.ctrls {
			if !d.online {
				continue
			}
			sent++
			cmd := mqttproto.DoorCmd{Type: mqttproto.DoorCmdType(c.Op), RequestID: s.reqID("op"), Door: door.ID}
			if c.Op == OpUnlock {
				cmd.Unlock = c.Dur
				if cmd.Unlock == 0 {
					cmd.Unlock = s.f.Unlock
				}
				cmd.Expires = time.Now().Add(unlockExpiry)
			} else {
				cmd.Mode = c.Mode
				d.expect = append(d.expect, &expectation{rule: RuleModeReport, reqIDs: []string{cmd.RequestID}, door: door.ID,
					mode: c.Mode, sentAt: s.since(), text: fmt.Sprintf("set_mode %s on door %s", c.Mode, door.Name)})
			}
			b.add(d, cmd)
		}
		if sent == 0 {
			err = fmt.Errorf("%w: no controller of door %s is online", ErrNoDevice, c.Door)
		}
	case OpPushCache:
		for _, door := range s.f.Doors {
			if c.Door != "" && door.Name != c.Door {
				continue
			}
			ds := s.doorByName[door.Name]
			ds.version++
			online := 0
			for _, d := range ds.ctrls {
				if d.online {
					online++
					b.pushCache(s, d, ds)
				}
			}
			if online == 0 {
				s.noteLocked("site", "--", "operator", fmt.Sprintf("door %s: cache version %d, no controller online to push it to now", door.Name, ds.version))
			}
		}
	case OpHeartbeat:
		for _, d := range s.devs {
			if d.d.Kind == mqttproto.KindDoor && d.online {
				b.heartbeat(s, d)
			}
		}
	case OpEncode, OpDispense, OpCapture:
		d := s.byName["dispenser/"+c.Device]
		if d == nil || !d.online {
			err = fmt.Errorf("%w: dispenser %s is not online", ErrNoDevice, c.Device)
			break
		}
		b.dispenserCmd(s, d, mqttproto.DispenserCmdType(c.Op), c.Card.Number)
	case OpCard:
		s.cards[c.Card.Number] = c.Card
	}
	s.mu.Unlock()
	s.send(b)
	return err
}

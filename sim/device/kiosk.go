package device

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// DefaultAnswerTimeout is how long a kiosk request waits for the site's
// show_result when no timeout is given.
const DefaultAnswerTimeout = 5 * time.Second

// KioskConfig configures a simulated kiosk.
type KioskConfig struct {
	// Config is the MQTT connection; Device.Kind must be
	// mqttproto.KindKiosk.
	Config
	// Now is the kiosk's clock (default time.Now).
	Now func() time.Time
}

// KioskRequest is a request a kiosk made (a scan, a check-in or a
// check-out) and what the site answered.
type KioskRequest struct {
	// Event is the request as published (its RequestID, Seq, Type...).
	Event mqttproto.KioskEvent
	// Answered reports that a show_result came; Answer is it, and Latency
	// the time from making the request to receiving it.
	Answered bool
	Answer   mqttproto.KioskCmd
	Latency  time.Duration
	// Dispenser is the dispenser a dispensing command named for the
	// request ("" when none came).
	Dispenser string
}

// KioskStatus is a snapshot of a kiosk.
type KioskStatus struct {
	// Connected reports that the kiosk is connected, subscribed and has
	// published its state.
	Connected bool
	// Faults are the kiosk's current faults, sorted.
	Faults []string
	// Requests are the requests made, oldest first.
	Requests []KioskRequest
	// Visit is the visit named by the latest answer that named one: what
	// CheckIn and CheckOut use when given none.
	Visit access.ID
	// LastSeq is the latest event's seq, Acked the highest acknowledged,
	// Buffered the number not yet acknowledged.
	LastSeq, Acked uint64
	Buffered       int
	// Refused lists why commands were refused (malformed, or for a
	// request the kiosk never made), oldest first.
	Refused []string
}

// Last returns the latest request, if any.
func (s KioskStatus) Last() (KioskRequest, bool) {
	if len(s.Requests) == 0 {
		return KioskRequest{}, false
	}
	return s.Requests[len(s.Requests)-1], true
}

// Kiosk is a simulated visitor kiosk that behaves as docs/protocol-mqtt.md
// §10 asks of a real one: it publishes its retained state (with its faults)
// after every connect and whenever a fault changes, behind the last will
// that marks it offline; it publishes scans of QR codes and identity
// documents, check-ins and check-outs as numbered events, each with a
// request ID of its own, keeps them until the site acknowledges them and
// replays them after a reconnect or on a resend; it matches the site's
// show_result and dispensing commands to its requests by request ID and
// acts once on each; it refuses a command it cannot decode, or one for a
// request it never made, with cmd_rejected, changing nothing else.
//
// Make one with DialKiosk. Every method is safe for concurrent use; Close
// is idempotent.
type Kiosk struct {
	ev   *eventDevice
	dev  mqttproto.Device
	boot string
	n    atomic.Uint64

	// guarded by ev.mu
	requests []*KioskRequest
	byID     map[string]*KioskRequest
	faults   []string
	visit    access.ID
}

// DialKiosk connects a kiosk (cfg.Device.Kind must be mqttproto.KindKiosk)
// and returns once it has subscribed to its command topic and published its
// online state; it reconnects by itself after a lost connection. It returns
// Dial's errors.
func DialKiosk(ctx context.Context, cfg KioskConfig) (*Kiosk, error) {
	if cfg.Device.Kind != mqttproto.KindKiosk {
		return nil, fmt.Errorf("%w: device %s is not a kiosk", ErrConnect, cfg.Device)
	}
	conf := cfg.Config.withDefaults()
	var b [4]byte
	_, _ = rand.Read(b[:])
	k := &Kiosk{dev: cfg.Device, boot: hex.EncodeToString(b[:]), byID: map[string]*KioskRequest{}}
	k.ev = newEventDevice(conf.Log.With("device", cfg.Device.ID, "kind", "kiosk"), cfg.Now,
		func(id, why string) mqttproto.Message {
			return mqttproto.KioskEvent{Type: mqttproto.KioskCmdRejected, RequestID: id, Error: why}
		})
	conf.OnConnect, conf.OnConnectionLost, conf.OnRefused = k.ev.onUp, func(error) { k.ev.onDown() }, k.ev.onRefused
	c, err := Dial(ctx, conf, k.state, k.onMessage)
	if err != nil {
		return nil, err
	}
	k.ev.start(c)
	return k, nil
}

// Device returns the kiosk's identity.
func (k *Kiosk) Device() mqttproto.Device { return k.dev }

// Conn returns the kiosk's connection.
func (k *Kiosk) Conn() *Conn { return k.ev.conn }

// state is the kiosk's state as its state topic reports it.
func (k *Kiosk) state() mqttproto.State {
	last, _, _ := k.ev.counters()
	k.ev.mu.Lock()
	defer k.ev.mu.Unlock()
	return mqttproto.State{Online: true, LastSeq: last, Kiosk: &mqttproto.KioskStatus{Faults: slices.Clone(k.faults)}}
}

// onMessage handles a command from the site.
func (k *Kiosk) onMessage(_ mqttproto.Topic, m mqttproto.Message) {
	cmd, ok := m.(mqttproto.KioskCmd)
	if !ok {
		return
	}
	now := k.ev.now()
	k.ev.mu.Lock()
	defer k.ev.mu.Unlock()
	if cmd.Type == mqttproto.KioskAck {
		k.ev.ackLocked(cmd.Seq, cmd.Resend)
		return
	}
	if k.ev.seenLocked(string(cmd.Type) + "/" + cmd.RequestID) {
		return // a repeat (QoS 1): acted on already
	}
	r := k.byID[cmd.RequestID]
	if r == nil {
		k.ev.rejectLocked(cmd.RequestID, "no request "+cmd.RequestID+" made by this kiosk")
		return
	}
	switch cmd.Type {
	case mqttproto.KioskShowResult:
		r.Answered, r.Answer, r.Latency = true, cmd, now.Sub(r.Event.Time)
		if cmd.Visit != "" {
			k.visit = cmd.Visit
		}
		k.ev.log.Info("kiosk shows", "request_id", cmd.RequestID, "ok", cmd.OK, "code", cmd.Code)
	case mqttproto.KioskDispensing:
		r.Dispenser = cmd.Dispenser
	}
	k.ev.notifyLocked()
}

// request validates e, numbers and queues it, and waits until it reached
// the broker (at most DefaultConnectTimeout). It returns the request ID.
func (k *Kiosk) request(ctx context.Context, e mqttproto.KioskEvent, fault string) (string, error) {
	e.RequestID = "k." + k.boot + "." + strconv.FormatUint(k.n.Add(1), 10)
	probe := e
	probe.Seq, probe.Time = 1, k.ev.now()
	if err := probe.Validate(); err != nil {
		return "", err
	}
	k.ev.mu.Lock()
	if fault != "" && slices.Contains(k.faults, fault) {
		k.ev.mu.Unlock()
		return "", fmt.Errorf("%w: %s", ErrFault, fault)
	}
	m := k.ev.emitLocked(func(seq uint64, at time.Time) mqttproto.Message {
		e.Seq, e.Time = seq, at
		return e
	})
	r := &KioskRequest{Event: m.(mqttproto.KioskEvent)}
	k.requests = append(k.requests, r)
	k.byID[e.RequestID] = r
	k.ev.mu.Unlock()
	return e.RequestID, k.ev.awaitSent(ctx, r.Event.Seq, k.ev.conn.cfg.ConnectTimeout)
}

// ScanQR reports a scanned QR code (an invitation token as text: 1 to
// mqttproto.MaxToken bytes of UTF-8) with a qr_scanned event. It returns
// the request's ID once the event reached the broker, or an error: the
// event's validation error, one wrapping ErrFault when the QR scanner is
// faulty (nothing is sent), ErrNotSent (the event stays buffered), ctx's
// or ErrClosed.
func (k *Kiosk) ScanQR(ctx context.Context, token string) (string, error) {
	if token == "" || len(token) > mqttproto.MaxToken || !utf8.ValidString(token) {
		return "", fmt.Errorf("device: QR token: want 1 to %d bytes of UTF-8", mqttproto.MaxToken)
	}
	return k.request(ctx, mqttproto.KioskEvent{Type: mqttproto.KioskQRScanned, Token: token}, "qr_scanner")
}

// ScanDocument reports an identity document read by the scanner: the
// lines of its machine-readable zone (see Document.MRZ), of the type
// DocTypeOf gives, for visit (or none). The kiosk does not check the zone;
// the site does. Errors are as for ScanQR (the fault is id_scanner).
func (k *Kiosk) ScanDocument(ctx context.Context, mrz []string, visit access.ID) (string, error) {
	if len(mrz) == 0 {
		return "", fmt.Errorf("device: no MRZ lines")
	}
	return k.request(ctx, mqttproto.KioskEvent{Type: mqttproto.KioskIDScanned, DocType: DocTypeOf(mrz), MRZ: slices.Clone(mrz), Visit: visit}, "id_scanner")
}

// CheckIn asks the site to check the visitor in to visit (when empty, the
// visit of the latest answer that named one). Errors are as for ScanQR,
// and one for no visit.
func (k *Kiosk) CheckIn(ctx context.Context, visit access.ID) (string, error) {
	if visit == "" {
		visit = k.Status().Visit
	}
	if visit == "" {
		return "", fmt.Errorf("device: check-in: the kiosk knows no visit (no answer has named one)")
	}
	return k.request(ctx, mqttproto.KioskEvent{Type: mqttproto.KioskCheckIn, Visit: visit}, "")
}

// CheckOut asks the site to check a visitor out by the card handed back
// (when card is not zero), else by visit (when empty, the visit of the
// latest answer that named one). Errors are as for CheckIn.
func (k *Kiosk) CheckOut(ctx context.Context, visit access.ID, card access.CardNumber) (string, error) {
	e := mqttproto.KioskEvent{Type: mqttproto.KioskCheckOut, Card: card}
	if card == 0 {
		if visit == "" {
			visit = k.Status().Visit
		}
		if visit == "" {
			return "", fmt.Errorf("device: check-out: no card and the kiosk knows no visit (no answer has named one)")
		}
		e.Visit = visit
	}
	return k.request(ctx, e, "")
}

// Answer waits for the site's show_result for request id, at most
// timeout (DefaultAnswerTimeout when zero or less), and returns the
// request with it. It returns an error wrapping ErrNoAnswer when none
// came in time, ctx's error or ErrClosed; one for an unknown request.
func (k *Kiosk) Answer(ctx context.Context, id string, timeout time.Duration) (KioskRequest, error) {
	if timeout <= 0 {
		timeout = DefaultAnswerTimeout
	}
	get := func() (KioskRequest, bool) {
		k.ev.mu.Lock()
		defer k.ev.mu.Unlock()
		r := k.byID[id]
		if r == nil {
			return KioskRequest{}, false
		}
		return *r, true
	}
	if _, ok := get(); !ok {
		return KioskRequest{}, fmt.Errorf("device: no request %s made by this kiosk", id)
	}
	ctx2, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := k.ev.await(ctx2, func() bool { r, _ := get(); return r.Answered })
	r, _ := get()
	if err != nil && ctx.Err() == nil && ctx2.Err() != nil {
		return r, fmt.Errorf("%w within %v (request %s)", ErrNoAnswer, timeout, id)
	}
	return r, err
}

// SetFault sets (on) or clears a fault code (a-z 0-9 _, such as
// id_scanner, qr_scanner, printer or screen) and publishes the new state.
// A kiosk with a scanner fault refuses scans with that scanner.
func (k *Kiosk) SetFault(code string, on bool) error {
	probe := mqttproto.State{Online: true, Firmware: "x", Kiosk: &mqttproto.KioskStatus{Faults: []string{code}}}
	if err := probe.Validate(); err != nil {
		return err
	}
	k.ev.mu.Lock()
	has := slices.Contains(k.faults, code)
	switch {
	case on && !has:
		if len(k.faults) == mqttproto.MaxFaults {
			k.ev.mu.Unlock()
			return fmt.Errorf("device: at most %d faults", mqttproto.MaxFaults)
		}
		k.faults = append(k.faults, code)
		slices.Sort(k.faults)
	case !on && has:
		k.faults = slices.DeleteFunc(k.faults, func(f string) bool { return f == code })
	default:
		k.ev.mu.Unlock()
		return nil
	}
	k.ev.notifyLocked()
	k.ev.mu.Unlock()
	go k.ev.publishState()
	return nil
}

// ClearFaults clears every fault and publishes the new state.
func (k *Kiosk) ClearFaults() {
	k.ev.mu.Lock()
	had := len(k.faults) > 0
	k.faults = nil
	k.ev.notifyLocked()
	k.ev.mu.Unlock()
	if had {
		go k.ev.publishState()
	}
}

// Status returns a snapshot of the kiosk.
func (k *Kiosk) Status() KioskStatus {
	last, acked, buffered := k.ev.counters()
	k.ev.mu.Lock()
	defer k.ev.mu.Unlock()
	s := KioskStatus{Faults: slices.Clone(k.faults), Visit: k.visit, LastSeq: last, Acked: acked, Buffered: buffered,
		Refused: slices.Clone(k.ev.refusals)}
	for _, r := range k.requests {
		s.Requests = append(s.Requests, *r)
	}
	if k.ev.conn != nil {
		s.Connected = k.ev.conn.Connected()
	}
	return s
}

// Events returns every event the kiosk made, oldest first.
func (k *Kiosk) Events() []mqttproto.KioskEvent {
	k.ev.mu.Lock()
	defer k.ev.mu.Unlock()
	out := make([]mqttproto.KioskEvent, 0, len(k.ev.history))
	for _, m := range k.ev.history {
		out = append(out, m.(mqttproto.KioskEvent))
	}
	return out
}

// Await waits until cond holds for the kiosk's status, re-checking after
// every change (a command, an event sent or acknowledged, a connect or a
// lost connection), and returns nil; or ctx's error, or ErrClosed.
func (k *Kiosk) Await(ctx context.Context, cond func(KioskStatus) bool) error {
	return k.ev.await(ctx, func() bool { return cond(k.Status()) })
}

// Close publishes the offline state and disconnects (see Conn.Close). It
// is idempotent.
func (k *Kiosk) Close() error { return k.ev.close() }

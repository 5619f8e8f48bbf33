package device

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// Errors of kiosks and dispensers.
var (
	// ErrNoAnswer reports a kiosk request the site did not answer in time.
	ErrNoAnswer = errors.New("no answer from the site")
	// ErrNotSent reports an event that did not reach the broker in time
	// (the device is disconnected; the event stays buffered and is sent
	// after the next connect).
	ErrNotSent = errors.New("event not sent")
	// ErrFault reports an action a device cannot do because of a fault
	// (a kiosk's scanner out of order).
	ErrFault = errors.New("device fault")
)

// eventDevice is what kiosks and dispensers share: an event counter and
// the buffer of events the site has not acknowledged, sent in seq order
// while connected and again after every connect and on a resend
// (docs/protocol-mqtt.md §6.3); the request IDs of the commands acted on
// (§6.2); and a change notification that Await waits on. Unlike a door
// controller's, the buffer lives in memory: a simulated kiosk or
// dispenser lasts one run.
type eventDevice struct {
	conn *Conn
	log  *slog.Logger
	now  func() time.Time

	// rejected builds the kind's cmd_rejected event.
	rejected func(requestID, why string) mqttproto.Message

	mu       sync.Mutex
	changed  chan struct{}
	seq      uint64
	acked    uint64
	sentTo   uint64 // events up to this seq were sent since the link came up
	rewinds  uint64 // times sentTo was moved back (a connect, a resend)
	linkUp   bool
	buf      []mqttproto.Message // unacknowledged, in seq order
	history  []mqttproto.Message // every event made
	recent   []string            // keys of the last commands acted on
	refusals []string            // why commands were refused

	kick     chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

func newEventDevice(log *slog.Logger, now func() time.Time, rejected func(requestID, why string) mqttproto.Message) *eventDevice {
	if now == nil {
		now = time.Now
	}
	return &eventDevice{log: log, now: now, rejected: rejected, changed: make(chan struct{}),
		kick: make(chan struct{}, 1), stop: make(chan struct{})}
}

// seqOf returns the seq of an event of a kiosk or dispenser.
func seqOf(m mqttproto.Message) uint64 {
	switch e := m.(type) {
	case mqttproto.KioskEvent:
		return e.Seq
	case mqttproto.DispenserEvent:
		return e.Seq
	}
	return 0
}

// start runs the pump once conn is set.
func (d *eventDevice) start(conn *Conn) {
	d.conn = conn
	d.wg.Add(1)
	go d.pump()
	d.poke()
}

func (d *eventDevice) poke() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// notifyLocked wakes every Await; d.mu is held.
func (d *eventDevice) notifyLocked() {
	close(d.changed)
	d.changed = make(chan struct{})
}

// await waits until cond holds, re-checking after every change, or until
// ctx ends (ctx's error) or the device closes (ErrClosed).
func (d *eventDevice) await(ctx context.Context, cond func() bool) error {
	for {
		d.mu.Lock()
		ch := d.changed
		d.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-d.stop:
			return ErrClosed
		}
	}
}

// onUp is the connection's OnConnect: every unacknowledged event is sent
// again, in order.
func (d *eventDevice) onUp() {
	d.mu.Lock()
	d.linkUp = true
	d.rewindLocked(d.acked)
	d.notifyLocked()
	d.mu.Unlock()
	d.poke()
}

// onDown is the connection's OnConnectionLost.
func (d *eventDevice) onDown() {
	d.mu.Lock()
	d.linkUp = false
	d.notifyLocked()
	d.mu.Unlock()
}

// emitLocked numbers the event build makes, keeps it until the site
// acknowledges it and queues it for sending; d.mu is held.
func (d *eventDevice) emitLocked(build func(seq uint64, at time.Time) mqttproto.Message) mqttproto.Message {
	d.seq++
	m := build(d.seq, d.now())
	d.buf = append(d.buf, m)
	d.history = append(d.history, m)
	d.notifyLocked()
	d.poke()
	return m
}

// ackLocked drops the events up to seq; with resend, it sends every later
// one again; d.mu is held.
func (d *eventDevice) ackLocked(seq uint64, resend bool) {
	seq = min(seq, d.seq) // an ack of events never made acknowledges what exists
	if seq > d.acked {
		d.acked = seq
		i := 0
		for i < len(d.buf) && seqOf(d.buf[i]) <= seq {
			i++
		}
		d.buf = slices.Delete(d.buf, 0, i)
	}
	if resend {
		d.rewindLocked(seq)
	} else {
		d.sentTo = max(d.sentTo, seq)
	}
	d.notifyLocked()
	d.poke()
}

// rewindLocked makes the pump send every event after seq again. A send
// in flight when this happens does not move sentTo past seq once it
// returns: the rewind asked for that event again too; d.mu is held.
func (d *eventDevice) rewindLocked(seq uint64) {
	d.sentTo = seq
	d.rewinds++
}

// seenLocked reports whether a command with key was acted on already, and
// remembers it otherwise (the last rememberedCmds); d.mu is held.
func (d *eventDevice) seenLocked(key string) bool {
	if slices.Contains(d.recent, key) {
		return true
	}
	d.recent = append(d.recent, key)
	if len(d.recent) > rememberedCmds {
		d.recent = d.recent[1:]
	}
	return false
}

// rejectLocked refuses a command with a cmd_rejected event; d.mu is held.
func (d *eventDevice) rejectLocked(requestID, why string) mqttproto.Message {
	why = errorText(why)
	d.refusals = append(d.refusals, why)
	d.log.Warn("command rejected", "request_id", requestID, "err", why)
	return d.emitLocked(func(seq uint64, at time.Time) mqttproto.Message {
		m := d.rejected(requestID, why)
		switch e := m.(type) {
		case mqttproto.KioskEvent:
			e.Seq, e.Time = seq, at
			return e
		case mqttproto.DispenserEvent:
			e.Seq, e.Time = seq, at
			return e
		}
		return m
	})
}

// onRefused answers a command that does not decode with cmd_rejected,
// when its request ID can be read (docs/protocol-mqtt.md §5.5); nothing
// else changes.
func (d *eventDevice) onRefused(_ string, payload []byte, err error) {
	var probe struct {
		RequestID string `json:"request_id"`
	}
	if json.Unmarshal(payload, &probe) != nil || !validRequestID(probe.RequestID) {
		d.mu.Lock()
		d.refusals = append(d.refusals, errorText(err.Error()))
		d.notifyLocked()
		d.mu.Unlock()
		return
	}
	d.mu.Lock()
	d.rejectLocked(probe.RequestID, err.Error())
	d.mu.Unlock()
}

// validRequestID reports whether s is a request ID of the protocol.
func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > mqttproto.MaxRequestID {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// errorText makes s fit the protocol's error text: no control characters,
// at most MaxErrorText bytes.
func errorText(s string) string {
	b := make([]rune, 0, len(s))
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			r = ' '
		}
		b = append(b, r)
	}
	s = string(b)
	for len(s) > mqttproto.MaxErrorText {
		_, n := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-n]
	}
	if s == "" {
		s = "refused"
	}
	return s
}

// pump sends buffered events in seq order while the link is up.
func (d *eventDevice) pump() {
	defer d.wg.Done()
	for {
		select {
		case <-d.stop:
			return
		case <-d.kick:
		}
		for {
			d.mu.Lock()
			var next mqttproto.Message
			rewinds := d.rewinds
			if d.linkUp {
				for _, m := range d.buf {
					if seqOf(m) > d.sentTo {
						next = m
						break
					}
				}
			}
			d.mu.Unlock()
			if next == nil || !d.conn.Connected() {
				break // the next onUp sends it
			}
			ctx, cancel := context.WithTimeout(context.Background(), min(d.conn.cfg.ConnectTimeout, 2*time.Second))
			err := d.conn.Publish(ctx, mqttproto.ChannelEvent, next)
			cancel()
			if err != nil {
				d.log.Debug("event not sent; kept for the next connect", "seq", seqOf(next), "err", err)
				break
			}
			d.mu.Lock()
			if d.rewinds == rewinds {
				d.sentTo = max(d.sentTo, seqOf(next))
			}
			d.notifyLocked()
			d.mu.Unlock()
		}
	}
}

// awaitSent waits until the event seq has reached the broker (or was
// acknowledged by the site), at most timeout. It returns an error
// wrapping ErrNotSent, ctx's error or ErrClosed.
func (d *eventDevice) awaitSent(ctx context.Context, seq uint64, timeout time.Duration) error {
	ctx2, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := d.await(ctx2, func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.sentTo >= seq || d.acked >= seq
	})
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w within %v (seq %d; kept for the next connect)", ErrNotSent, timeout, seq)
	}
	return err
}

// republish publishes an event made earlier again, as it was (the answer
// to a repeated command), without waiting.
func (d *eventDevice) republish(m mqttproto.Message) {
	if _, err := d.conn.PublishAsync(mqttproto.ChannelEvent, m); err != nil {
		d.log.Debug("repeat answer not sent", "err", err)
	}
}

// publishState publishes the device's state when connected.
func (d *eventDevice) publishState() {
	select {
	case <-d.stop:
		return
	default:
	}
	if d.conn == nil || !d.conn.Connected() {
		return
	}
	if err := d.conn.PublishState(); err != nil {
		d.log.Debug("state not published", "err", err)
	}
}

// counters returns the event counters: latest seq, highest acknowledged,
// events not yet acknowledged.
func (d *eventDevice) counters() (last, acked uint64, buffered int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.seq, d.acked, len(d.buf)
}

// close stops the pump and closes the connection (publishing the offline
// state). It is idempotent.
func (d *eventDevice) close() error {
	var err error
	d.stopOnce.Do(func() {
		close(d.stop)
		if d.conn != nil {
			err = d.conn.Close()
		}
		d.wg.Wait()
	})
	return err
}

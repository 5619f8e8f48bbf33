package device

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// Defaults of DispenserConfig.
const (
	// DefaultStack is the number of blank cards a dispenser starts with.
	DefaultStack = 100
	// DefaultLowAt is the stack size at and below which the stack is low.
	DefaultLowAt = 5
	// DefaultCaptureCapacity is how many cards the capture bin holds.
	DefaultCaptureCapacity = 50
)

// DispenserConfig configures a simulated card dispenser and encoder.
type DispenserConfig struct {
	// Config is the MQTT connection; Device.Kind must be
	// mqttproto.KindDispenser.
	Config
	// Stack is the number of blank cards at the start (default
	// DefaultStack); Refill fills the stack up to it again.
	Stack int
	// LowAt is the stack size at and below which the state reports the
	// stack low (default DefaultLowAt).
	LowAt int
	// CaptureCapacity is how many cards the capture bin holds (default
	// DefaultCaptureCapacity); a full bin refuses capture.
	CaptureCapacity int
	// Now is the dispenser's clock (default time.Now).
	Now func() time.Time
}

// DispenserStatus is a snapshot of a dispenser.
type DispenserStatus struct {
	// Connected reports that the dispenser is connected, subscribed and
	// has published its state.
	Connected bool
	// Stack is the number of cards in the stack, Level its level as the
	// state reports it.
	Stack int
	Level mqttproto.StackLevel
	// CardHeld reports a card held in the encoder, HeldCard its number
	// (zero for a blank card).
	CardHeld bool
	HeldCard access.CardNumber
	// Slot is the card in the return slot (zero: none).
	Slot access.CardNumber
	// Jammed reports the jam fault; CaptureFull a full capture bin.
	Jammed, CaptureFull bool
	// Faults are the fault codes the state reports.
	Faults []string
	// Encoded, Dispensed and Captured list the cards encoded, handed out
	// (zero for a blank card) and taken into the capture bin (zero for an
	// unreadable one), oldest first.
	Encoded, Dispensed, Captured []access.CardNumber
	// LastSeq is the latest event's seq, Acked the highest acknowledged,
	// Buffered the number not yet acknowledged.
	LastSeq, Acked uint64
	Buffered       int
	// Refused lists why commands were refused (malformed, or impossible
	// now), oldest first.
	Refused []string
}

// Dispenser is a simulated card dispenser and encoder that behaves as
// docs/protocol-mqtt.md §11 asks of a real one: a stack of blank cards, an
// encoder that writes the card number the site commands and holds the
// card, a slot that presents it to the visitor, a return slot, and a
// capture bin. It answers every command but ack with an event carrying the
// command's request ID (encoded, dispensed, captured, or the fault empty or
// jam, or cmd_rejected when the command is malformed or impossible now),
// and a repeated request ID with the original answer again, without
// acting. Its events are numbered and kept until the site acknowledges
// them, and replayed after a reconnect or on a resend. Its retained state
// reports the stack level, a held card, a full capture bin and a jam.
// Faults are caused from outside: Jam, Empty and Clear.
//
// Make one with DialDispenser. Every method is safe for concurrent use;
// Close is idempotent.
type Dispenser struct {
	ev  *eventDevice
	dev mqttproto.Device
	cfg DispenserConfig

	// guarded by ev.mu
	stack      int
	held       bool
	heldCard   access.CardNumber
	slot       access.CardNumber
	jammed     bool
	binCount   int
	answers    map[string]mqttproto.Message // the answer to each recent command, for repeats
	answerKeys []string
	encoded    []access.CardNumber
	dispensed  []access.CardNumber
	captured   []access.CardNumber
}

// DialDispenser connects a dispenser (cfg.Device.Kind must be
// mqttproto.KindDispenser) and returns once it has subscribed to its
// command topic and published its online state; it reconnects by itself
// after a lost connection. It returns Dial's errors, or one wrapping
// ErrConnect for a negative Stack, LowAt or CaptureCapacity.
func DialDispenser(ctx context.Context, cfg DispenserConfig) (*Dispenser, error) {
	if cfg.Device.Kind != mqttproto.KindDispenser {
		return nil, fmt.Errorf("%w: device %s is not a dispenser", ErrConnect, cfg.Device)
	}
	if cfg.Stack < 0 || cfg.LowAt < 0 || cfg.CaptureCapacity < 0 {
		return nil, fmt.Errorf("%w: dispenser %s: negative stack, low level or capture capacity", ErrConnect, cfg.Device)
	}
	if cfg.Stack == 0 {
		cfg.Stack = DefaultStack
	}
	if cfg.LowAt == 0 {
		cfg.LowAt = DefaultLowAt
	}
	if cfg.CaptureCapacity == 0 {
		cfg.CaptureCapacity = DefaultCaptureCapacity
	}
	conf := cfg.Config.withDefaults()
	d := &Dispenser{dev: cfg.Device, cfg: cfg, stack: cfg.Stack, answers: map[string]mqttproto.Message{}}
	d.ev = newEventDevice(conf.Log.With("device", cfg.Device.ID, "kind", "dispenser"), cfg.Now,
		func(id, why string) mqttproto.Message {
			return mqttproto.DispenserEvent{Type: mqttproto.DispenserCmdRejected, RequestID: id, Error: why}
		})
	conf.OnConnect, conf.OnConnectionLost, conf.OnRefused = d.ev.onUp, func(error) { d.ev.onDown() }, d.ev.onRefused
	c, err := Dial(ctx, conf, d.state, d.onMessage)
	if err != nil {
		return nil, err
	}
	d.ev.start(c)
	return d, nil
}

// Device returns the dispenser's identity.
func (d *Dispenser) Device() mqttproto.Device { return d.dev }

// Conn returns the dispenser's connection.
func (d *Dispenser) Conn() *Conn { return d.ev.conn }

// levelLocked is the stack level; ev.mu is held.
func (d *Dispenser) levelLocked() mqttproto.StackLevel {
	switch {
	case d.stack == 0:
		return mqttproto.StackEmpty
	case d.stack <= d.cfg.LowAt:
		return mqttproto.StackLow
	}
	return mqttproto.StackOK
}

func (d *Dispenser) faultsLocked() []string {
	if d.jammed {
		return []string{"jam"}
	}
	return nil
}

// state is the dispenser's state as its state topic reports it.
func (d *Dispenser) state() mqttproto.State {
	last, _, _ := d.ev.counters()
	d.ev.mu.Lock()
	defer d.ev.mu.Unlock()
	return mqttproto.State{Online: true, LastSeq: last, Dispenser: &mqttproto.DispenserStatus{
		Stack: d.levelLocked(), CardHeld: d.held, CaptureFull: d.binCount >= d.cfg.CaptureCapacity, Faults: d.faultsLocked()}}
}

// emitLocked makes an event of the dispenser; ev.mu is held.
func (d *Dispenser) emitLocked(e mqttproto.DispenserEvent) mqttproto.Message {
	return d.ev.emitLocked(func(seq uint64, at time.Time) mqttproto.Message {
		e.Seq, e.Time = seq, at
		return e
	})
}

// onMessage handles a command from the site.
func (d *Dispenser) onMessage(_ mqttproto.Topic, m mqttproto.Message) {
	cmd, ok := m.(mqttproto.DispenserCmd)
	if !ok {
		return
	}
	d.ev.mu.Lock()
	if cmd.Type == mqttproto.DispenserAck {
		d.ev.ackLocked(cmd.Seq, cmd.Resend)
		d.ev.mu.Unlock()
		return
	}
	if prev, ok := d.answers[cmd.RequestID]; ok {
		d.ev.mu.Unlock()
		d.ev.republish(prev) // a repeat: the original answer again, without acting
		return
	}
	before := d.snapshotLocked()
	answer := d.actLocked(cmd)
	d.answers[cmd.RequestID] = answer
	d.answerKeys = append(d.answerKeys, cmd.RequestID)
	if len(d.answerKeys) > rememberedCmds {
		delete(d.answers, d.answerKeys[0])
		d.answerKeys = d.answerKeys[1:]
	}
	changed := before != d.snapshotLocked()
	d.ev.mu.Unlock()
	if changed {
		go d.ev.publishState()
	}
}

// reported is what the state reports, to tell whether it changed.
type reported struct {
	level              mqttproto.StackLevel
	held, full, jammed bool
}

func (d *Dispenser) snapshotLocked() reported {
	return reported{d.levelLocked(), d.held, d.binCount >= d.cfg.CaptureCapacity, d.jammed}
}

// actLocked carries out a command and returns its answer; ev.mu is held.
func (d *Dispenser) actLocked(cmd mqttproto.DispenserCmd) mqttproto.Message {
	id := cmd.RequestID
	if d.jammed {
		return d.emitLocked(mqttproto.DispenserEvent{Type: mqttproto.DispenserJam, RequestID: id})
	}
	switch cmd.Type {
	case mqttproto.DispenserEncode:
		if !d.held {
			if d.stack == 0 {
				return d.emitLocked(mqttproto.DispenserEvent{Type: mqttproto.DispenserEmpty, RequestID: id})
			}
			d.stack--
			d.held = true
		}
		d.heldCard = cmd.Card
		d.encoded = append(d.encoded, cmd.Card)
		return d.emitLocked(mqttproto.DispenserEvent{Type: mqttproto.DispenserEncoded, RequestID: id, Card: cmd.Card})
	case mqttproto.DispenserDispense:
		card := d.heldCard
		switch {
		case d.held:
			d.held, d.heldCard = false, 0
		case d.stack == 0:
			return d.emitLocked(mqttproto.DispenserEvent{Type: mqttproto.DispenserEmpty, RequestID: id})
		default:
			d.stack--
		}
		d.dispensed = append(d.dispensed, card)
		return d.emitLocked(mqttproto.DispenserEvent{Type: mqttproto.DispenserDispensed, RequestID: id, Card: card})
	case mqttproto.DispenserCapture:
		var card access.CardNumber
		switch {
		case d.binCount >= d.cfg.CaptureCapacity:
			return d.ev.rejectLocked(id, "capture bin full")
		case d.slot != 0:
			card, d.slot = d.slot, 0
		case d.held:
			card, d.held, d.heldCard = d.heldCard, false, 0
		default:
			return d.ev.rejectLocked(id, "no card in the return slot or the encoder")
		}
		d.binCount++
		d.captured = append(d.captured, card)
		return d.emitLocked(mqttproto.DispenserEvent{Type: mqttproto.DispenserCaptured, RequestID: id, Card: card})
	}
	return d.ev.rejectLocked(id, "unknown command "+string(cmd.Type))
}

// InsertCard is a visitor putting card into the return slot: the
// dispenser reports card_inserted, and the site is expected to answer
// with capture. It returns an error when the slot is occupied or the card
// number is zero.
func (d *Dispenser) InsertCard(card access.CardNumber) error {
	if card == 0 {
		return fmt.Errorf("device: card number 0")
	}
	d.ev.mu.Lock()
	defer d.ev.mu.Unlock()
	if d.slot != 0 {
		return fmt.Errorf("device: the return slot holds card %s already", d.slot.Redacted())
	}
	d.slot = card
	d.emitLocked(mqttproto.DispenserEvent{Type: mqttproto.DispenserCardInserted, Card: card})
	return nil
}

// Jam makes a card jam: the dispenser reports a jam event, its state
// reports the fault, and every command is answered with jam until Clear.
func (d *Dispenser) Jam() {
	d.ev.mu.Lock()
	if d.jammed {
		d.ev.mu.Unlock()
		return
	}
	d.jammed = true
	d.emitLocked(mqttproto.DispenserEvent{Type: mqttproto.DispenserJam})
	d.ev.mu.Unlock()
	go d.ev.publishState()
}

// Empty takes every card out of the stack: the dispenser reports an empty
// event, its state reports the stack empty, and encode and dispense (with
// no card held) are answered with empty until Clear or Refill.
func (d *Dispenser) Empty() {
	d.ev.mu.Lock()
	if d.stack == 0 {
		d.ev.mu.Unlock()
		return
	}
	d.stack = 0
	d.emitLocked(mqttproto.DispenserEvent{Type: mqttproto.DispenserEmpty})
	d.ev.mu.Unlock()
	go d.ev.publishState()
}

// Clear clears the jam and refills an empty stack (an engineer's visit),
// and publishes the new state.
func (d *Dispenser) Clear() {
	d.ev.mu.Lock()
	d.jammed = false
	if d.stack == 0 {
		d.stack = d.cfg.Stack
	}
	d.ev.notifyLocked()
	d.ev.mu.Unlock()
	go d.ev.publishState()
}

// Refill fills the stack up to its configured size and publishes the new
// state.
func (d *Dispenser) Refill() {
	d.ev.mu.Lock()
	d.stack = d.cfg.Stack
	d.ev.notifyLocked()
	d.ev.mu.Unlock()
	go d.ev.publishState()
}

// Status returns a snapshot of the dispenser.
func (d *Dispenser) Status() DispenserStatus {
	last, acked, buffered := d.ev.counters()
	d.ev.mu.Lock()
	defer d.ev.mu.Unlock()
	s := DispenserStatus{Stack: d.stack, Level: d.levelLocked(), CardHeld: d.held, HeldCard: d.heldCard, Slot: d.slot,
		Jammed: d.jammed, CaptureFull: d.binCount >= d.cfg.CaptureCapacity, Faults: d.faultsLocked(),
		Encoded: slices.Clone(d.encoded), Dispensed: slices.Clone(d.dispensed), Captured: slices.Clone(d.captured),
		LastSeq: last, Acked: acked, Buffered: buffered, Refused: slices.Clone(d.ev.refusals)}
	if d.ev.conn != nil {
		s.Connected = d.ev.conn.Connected()
	}
	return s
}

// Events returns every event the dispenser made, oldest first.
func (d *Dispenser) Events() []mqttproto.DispenserEvent {
	d.ev.mu.Lock()
	defer d.ev.mu.Unlock()
	out := make([]mqttproto.DispenserEvent, 0, len(d.ev.history))
	for _, m := range d.ev.history {
		out = append(out, m.(mqttproto.DispenserEvent))
	}
	return out
}

// Await waits until cond holds for the dispenser's status, re-checking
// after every change, and returns nil; or ctx's error, or ErrClosed.
func (d *Dispenser) Await(ctx context.Context, cond func(DispenserStatus) bool) error {
	return d.ev.await(ctx, func() bool { return cond(d.Status()) })
}

// Close publishes the offline state and disconnects (see Conn.Close). It
// is idempotent.
func (d *Dispenser) Close() error { return d.ev.close() }

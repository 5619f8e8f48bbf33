package mqttproto

import (
	"time"

	"github.com/gatehouse/gatehouse/access"
)

// DispenserEventType is the type of a DispenserEvent.
type DispenserEventType string

// The dispenser event types. RequestID ties a result to the command that
// caused it.
const (
	// DispenserDispensed reports that a card was presented to the visitor,
	// answering a dispense command. It needs RequestID; Card is the number read from the
	// card when the dispenser can read it.
	DispenserDispensed DispenserEventType = "dispensed"
	// DispenserEncoded reports that the card number was written to the
	// card now held in the encoder, answering an encode command. It needs
	// RequestID and Card (the number written and read back).
	DispenserEncoded DispenserEventType = "encoded"
	// DispenserEncodeFailed is a fault: writing or verifying the number
	// failed, and the card went to the capture bin. It needs RequestID;
	// Card is the number asked for, Error a detail.
	DispenserEncodeFailed DispenserEventType = "encode_failed"
	// DispenserCaptured reports that a card was taken into the capture
	// bin. RequestID
	// is the capture command's; Card is the number read from the card
	// when readable.
	DispenserCaptured DispenserEventType = "captured"
	// DispenserCardInserted reports that a visitor inserted a card into
	// the return slot; the site answers with a capture (or dispense, to give it
	// back) command. Card is the number read from it when readable.
	DispenserCardInserted DispenserEventType = "card_inserted"
	// DispenserEmpty is a fault: the card stack is empty. RequestID is set
	// when a command failed because of it.
	DispenserEmpty DispenserEventType = "empty"
	// DispenserJam is a fault: a card is jammed. RequestID is set when a
	// command failed because of it.
	DispenserJam DispenserEventType = "jam"
	// DispenserCmdRejected reports that the dispenser refused a command
	// (malformed, or impossible in its present state). It needs RequestID
	// and Error.
	DispenserCmdRejected DispenserEventType = "cmd_rejected"
)

var dispenserEvents = newFamily("dispenser event", eventCommon,
	typeSpec{string(DispenserDispensed), spec{req: []string{"request_id"}, opt: []string{"card"}}},
	typeSpec{string(DispenserEncoded), spec{req: []string{"request_id", "card"}}},
	typeSpec{string(DispenserEncodeFailed), spec{req: []string{"request_id"}, opt: []string{"card", "error"}}},
	typeSpec{string(DispenserCaptured), spec{opt: []string{"request_id", "card"}}},
	typeSpec{string(DispenserCardInserted), spec{opt: []string{"card"}}},
	typeSpec{string(DispenserEmpty), spec{opt: []string{"request_id"}}},
	typeSpec{string(DispenserJam), spec{opt: []string{"request_id"}}},
	typeSpec{string(DispenserCmdRejected), spec{req: []string{"request_id", "error"}}},
)

// DispenserEvent is a result or fault of a card dispenser and encoder: topic
// gh/{site}/dispenser/{device}/event, device to site, with the device's
// sequence number and time like every event (see DoorEvent). Which of the
// other fields an event has depends on its Type (see the constants).
type DispenserEvent struct {
	// Type says what happened and which other fields the event has.
	Type DispenserEventType
	// Seq is the device's event sequence number, 1 to MaxInteger.
	Seq uint64
	// Time is when it happened, by the device's clock.
	Time time.Time
	// RequestID is the command's that the event answers.
	RequestID string
	// Card is the card number written, read or asked for.
	Card access.CardNumber
	// Error is a detail of a failure, up to MaxErrorText bytes.
	Error string
}

func (e DispenserEvent) has(k string) bool {
	switch k {
	case "seq":
		return e.Seq != 0
	case "time":
		return !e.Time.IsZero()
	case "request_id":
		return e.RequestID != ""
	case "card":
		return e.Card != 0
	case "error":
		return e.Error != ""
	}
	return false
}

func (e DispenserEvent) put(w *enc, k string) {
	switch k {
	case "seq":
		w.uintField(k, e.Seq)
	case "time":
		w.timeField(k, e.Time)
	case "request_id":
		w.strField(k, e.RequestID)
	case "card":
		w.cardField(k, uint64(e.Card))
	case "error":
		w.strField(k, e.Error)
	}
}

// Validate checks e against the schema of its type. It returns an error
// wrapping ErrMissingField, ErrUnknownField (a field its type does not
// have) or ErrBadValue.
func (e DispenserEvent) Validate() error {
	const what = "dispenser event"
	if err := checkSeq(what, "seq", e.Seq); err != nil {
		return err
	}
	if err := checkTime(what, "time", e.Time); err != nil {
		return err
	}
	if err := dispenserEvents.checkSet(string(e.Type), e.has); err != nil {
		return err
	}
	if e.RequestID != "" {
		if err := checkRequestID(what, "request_id", e.RequestID); err != nil {
			return err
		}
	}
	return checkText(what, "error", e.Error, MaxErrorText, false)
}

// Marshal validates e and returns its payload.
func (e DispenserEvent) Marshal() ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return dispenserEvents.encode(string(e.Type), e.has, e.put)
}

// DecodeDispenserEvent decodes a dispenser event payload. It returns an
// error wrapping ErrTooLarge, ErrSyntax, ErrVersion, ErrUnknownField,
// ErrMissingField or ErrBadValue. It is safe for concurrent use.
func DecodeDispenserEvent(b []byte) (DispenserEvent, error) {
	var d decoder
	typ, err := dispenserEvents.begin(&d, b)
	if err != nil {
		return DispenserEvent{}, err
	}
	e := DispenserEvent{Type: DispenserEventType(typ)}
	for _, m := range d.o.members() {
		switch string(m.key) {
		case "seq":
			e.Seq = d.uint(m)
		case "time":
			e.Time = d.time(m)
		case "request_id":
			e.RequestID = d.str(m)
		case "card":
			e.Card = d.card(m)
		case "error":
			e.Error = d.str(m)
		}
	}
	if d.err != nil {
		return DispenserEvent{}, d.err
	}
	if err := e.Validate(); err != nil {
		return DispenserEvent{}, err
	}
	return e, nil
}

// DispenserCmdType is the type of a DispenserCmd.
type DispenserCmdType string

// The dispenser command types. The dispenser answers each (but ack) with an
// event carrying the command's RequestID: the result, a fault or
// cmd_rejected.
const (
	// DispenserDispense asks the dispenser to present a card to the
	// visitor: the card held in the encoder after an encode, else one from
	// the stack. It is answered by dispensed.
	DispenserDispense DispenserCmdType = "dispense"
	// DispenserEncode asks the dispenser to take a card from the stack
	// into the encoder (unless one is held already), write Card to it,
	// verify it and hold it. It is answered by encoded or encode_failed,
	// and needs Card.
	DispenserEncode DispenserCmdType = "encode"
	// DispenserCapture asks the dispenser to take the card in the return
	// slot (or held in the encoder) into the capture bin. It is answered by
	// captured.
	DispenserCapture DispenserCmdType = "capture"
	// DispenserAck acknowledges the dispenser's events up to Seq, as
	// DoorAck does. It needs Seq.
	DispenserAck DispenserCmdType = "ack"
)

var dispenserCmds = newFamily("dispenser cmd", cmdCommon,
	typeSpec{string(DispenserDispense), spec{}},
	typeSpec{string(DispenserEncode), spec{req: []string{"card"}}},
	typeSpec{string(DispenserCapture), spec{}},
	typeSpec{string(DispenserAck), spec{req: []string{"seq"}, opt: []string{"resend"}}},
)

// DispenserCmd is a command from the site to a card dispenser and encoder:
// topic gh/{site}/dispenser/{device}/cmd, site to device. A dispenser that
// sees a RequestID again does not act again but publishes its result
// again. Which of the other fields a command has depends on its Type (see
// the constants).
type DispenserCmd struct {
	// Type says what to do and which other fields the command has.
	Type DispenserCmdType
	// RequestID is chosen by the site, unique per command.
	RequestID string
	// Card is the card number an encode command writes.
	Card access.CardNumber
	// Seq is the last event an ack acknowledges.
	Seq uint64
	// Resend asks the dispenser to publish every event after Seq again.
	Resend bool
}

func (c DispenserCmd) has(k string) bool {
	switch k {
	case "request_id":
		return c.RequestID != ""
	case "card":
		return c.Card != 0
	case "seq":
		return c.Seq != 0
	case "resend":
		return c.Resend
	}
	return false
}

func (c DispenserCmd) put(w *enc, k string) {
	switch k {
	case "request_id":
		w.strField(k, c.RequestID)
	case "card":
		w.cardField(k, uint64(c.Card))
	case "seq":
		w.uintField(k, c.Seq)
	case "resend":
		w.boolField(k, c.Resend)
	}
}

// Validate checks c against the schema of its type. It returns an error
// wrapping ErrMissingField, ErrUnknownField (a field its type does not
// have) or ErrBadValue.
func (c DispenserCmd) Validate() error {
	const what = "dispenser cmd"
	if err := checkRequestID(what, "request_id", c.RequestID); err != nil {
		return err
	}
	if err := dispenserCmds.checkSet(string(c.Type), c.has); err != nil {
		return err
	}
	if c.Type == DispenserAck {
		return checkSeq(what, "seq", c.Seq)
	}
	return nil
}

// Marshal validates c and returns its payload.
func (c DispenserCmd) Marshal() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return dispenserCmds.encode(string(c.Type), c.has, c.put)
}

// DecodeDispenserCmd decodes a dispenser command payload. It returns an
// error wrapping ErrTooLarge, ErrSyntax, ErrVersion, ErrUnknownField,
// ErrMissingField or ErrBadValue. It is safe for concurrent use.
func DecodeDispenserCmd(b []byte) (DispenserCmd, error) {
	var d decoder
	typ, err := dispenserCmds.begin(&d, b)
	if err != nil {
		return DispenserCmd{}, err
	}
	c := DispenserCmd{Type: DispenserCmdType(typ)}
	for _, m := range d.o.members() {
		switch string(m.key) {
		case "request_id":
			c.RequestID = d.str(m)
		case "card":
			c.Card = d.card(m)
		case "seq":
			c.Seq = d.uint(m)
		case "resend":
			c.Resend = d.bool(m)
		}
	}
	if d.err != nil {
		return DispenserCmd{}, d.err
	}
	if err := c.Validate(); err != nil {
		return DispenserCmd{}, err
	}
	return c, nil
}

package mqttproto

import (
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

// Wiegand is a raw Wiegand frame as a reader received it: Bits bits held in
// the low bits of Frame, the first bit on the wire most significant (the
// layout of access.DecodeWiegand). The zero value means "no frame".
type Wiegand struct {
	// Frame holds the frame's bits in its low Bits bits.
	Frame uint64
	// Bits is the frame's length in bits.
	Bits int
}

// IsZero reports whether w is the zero value, meaning no frame.
func (w Wiegand) IsZero() bool { return w == Wiegand{} }

// Credential decodes w with access.DecodeWiegand. It returns that function's
// errors: access.Invalid errors wrapping access.ErrUnknownFormat for an
// unsupported length, access.ErrBadLength for bits set above the length and
// access.ErrBadParity for a parity mismatch.
func (w Wiegand) Credential() (access.WiegandCredential, error) {
	return access.DecodeWiegand(w.Frame, w.Bits)
}

// Tap is a credential presented at a reader: topic gh/{site}/{reader or
// door}/{device}/tap, device to site. The site answers with a Decision on
// the device's decision topic carrying the same RequestID, and treats a
// repeated RequestID from the same device as the same tap.
//
// The credential is either a card number (Card, with Wiegand zero) or a raw
// Wiegand frame (Wiegand). DecodeTap checks the frame's parity and sets Card
// to the number of the decoded credential (access.WiegandCredential.Number),
// so a receiver always finds the card number in Card. Marshal sends the
// frame when Wiegand is set, and then Card must be zero or that same number.
type Tap struct {
	// RequestID is chosen by the device, unique per tap: 1 to
	// MaxRequestID characters of A-Z a-z 0-9 . _ : -.
	RequestID string
	// Door is the door the reader is at.
	Door access.ID
	// Card is the card number presented.
	Card access.CardNumber
	// Wiegand is the raw frame, when the reader sends one.
	Wiegand Wiegand
	// Time is when the device read the credential, by its clock (sent to
	// the millisecond). It is optional so that a reader whose clock is not
	// set still gets answers (it can set its clock from Decision.Time);
	// the site decides by its own clock either way.
	Time time.Time
	// PIN reports that a PIN was entered with the card.
	PIN bool
}

var (
	tapSpec     = spec{req: []string{"request_id", "door"}, opt: []string{"card", "wiegand", "time", "pin"}}
	wiegandSpec = spec{req: []string{"frame", "bits"}}
)

// Validate checks t against the tap schema: a valid request ID, a
// canonical door ID, a time within [MinTime, MaxTime) if set, and either a card
// number or a Wiegand frame that decodes (with Card zero or equal to its
// number). It returns an error wrapping ErrMissingField or ErrBadValue (and
// the access error of a bad frame).
func (t Tap) Validate() error {
	const what = "tap"
	if err := checkRequestID(what, "request_id", t.RequestID); err != nil {
		return err
	}
	if err := checkID(what, "door", t.Door); err != nil {
		return err
	}
	if err := checkOptionalTime(what, "time", t.Time); err != nil {
		return err
	}
	if t.Wiegand.IsZero() {
		if t.Card == 0 {
			return errorf(what, ErrMissingField, "one of \"card\" and \"wiegand\" is required")
		}
		return nil
	}
	cred, err := t.Wiegand.Credential()
	if err != nil {
		return badValue(what, "wiegand", "%w", err)
	}
	if n := cred.Number(); t.Card != 0 && t.Card != n {
		return badValue(what, "card", "%d does not match the number %d of the Wiegand frame", uint64(t.Card), uint64(n))
	}
	return nil
}

// Marshal validates t and returns its payload.
func (t Tap) Marshal() ([]byte, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	e := newEnc()
	e.open()
	e.uintField("v", Version)
	e.strField("request_id", t.RequestID)
	e.strField("door", string(t.Door))
	if t.Wiegand.IsZero() {
		e.cardField("card", uint64(t.Card))
	} else {
		e.key("wiegand")
		e.open()
		e.key("frame")
		e.b = append(e.b, '"')
		e.b = strconv.AppendUint(e.b, t.Wiegand.Frame, 16)
		e.b = append(e.b, '"')
		e.uintField("bits", uint64(t.Wiegand.Bits))
		e.close()
	}
	if !t.Time.IsZero() {
		e.timeField("time", t.Time)
	}
	if t.PIN {
		e.boolField("pin", true)
	}
	e.close()
	return finish("tap", e.b)
}

// DecodeTap decodes a tap payload. It returns an error wrapping ErrTooLarge,
// ErrSyntax, ErrVersion, ErrUnknownField, ErrMissingField or ErrBadValue
// (with access.ErrBadID, access.ErrBadCardNumber or a Wiegand error of
// package access where one applies). On success Card holds the card number,
// decoded from the Wiegand frame when one was sent. DecodeTap is safe for
// concurrent use.
func DecodeTap(b []byte) (Tap, error) {
	d := decoder{what: "tap"}
	if err := d.top(b); err != nil {
		return Tap{}, err
	}
	if err := d.checkKeys(true, tapSpec, nil, ""); err != nil {
		return Tap{}, err
	}
	var t Tap
	for _, m := range d.o.members() {
		switch string(m.key) {
		case "request_id":
			t.RequestID = d.str(m)
		case "door":
			t.Door = d.id(m)
		case "card":
			t.Card = d.card(m)
		case "wiegand":
			t.Wiegand = d.wiegand(m)
		case "time":
			t.Time = d.time(m)
		case "pin":
			t.PIN = d.bool(m)
		}
	}
	if d.err != nil {
		return Tap{}, d.err
	}
	switch card, wg := d.o.has("card"), d.o.has("wiegand"); {
	case card && wg:
		return Tap{}, errorf(d.what, ErrBadValue, "give either \"card\" or \"wiegand\", not both")
	case !card && !wg:
		return Tap{}, errorf(d.what, ErrMissingField, "one of \"card\" and \"wiegand\" is required")
	case wg:
		cred, err := t.Wiegand.Credential()
		if err != nil {
			return Tap{}, badValue(d.what, "wiegand", "%w", err)
		}
		t.Card = cred.Number()
	}
	if err := t.Validate(); err != nil {
		return Tap{}, err
	}
	return t, nil
}

// wiegand returns member m, a Wiegand object.
func (d *decoder) wiegand(m member) Wiegand {
	var nd decoder
	// "wiegand" is a top-level member, so its path is constant.
	if !d.nested(m, "wiegand.", 2, &nd) {
		return Wiegand{}
	}
	if err := nd.checkKeys(false, wiegandSpec, nil, ""); err != nil {
		d.err = err
		return Wiegand{}
	}
	var w Wiegand
	for _, f := range nd.o.members() {
		switch string(f.key) {
		case "frame":
			b := nd.strBytes(f)
			if nd.err != nil {
				break
			}
			n, ok := parseHex(b)
			if !ok {
				nd.fail(f, "%s is not 1 to 16 hexadecimal digits", quoteShort(b))
			}
			w.Frame = n
		case "bits":
			n := nd.uint(f)
			if nd.err == nil && (n < 1 || n > 64) {
				nd.fail(f, "%d is not a frame length of 1 to 64 bits", n)
			}
			w.Bits = int(n)
		}
	}
	d.err = nd.err
	return w
}

// parseHex parses 1 to 16 hexadecimal digits of either case.
func parseHex(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		n = n<<4 | uint64(c)
	}
	return n, true
}

// DecisionTimeout is how long a device waits for the decision on its tap.
// A door controller that has no decision by then decides alone from its
// offline cache (reporting an offline_decision event) and ignores the
// decision if it comes later; a reader shows a failure.
const DecisionTimeout = time.Second

// Decision is the site's answer to a Tap: topic gh/{site}/{reader or
// door}/{device}/decision, site to device. The site sends it to the device
// that sent the tap and, when the door's controller is another device, to
// that controller too. A device acts on a decision only while it still
// waits for the answer to RequestID; a late or repeated decision is
// ignored.
type Decision struct {
	// RequestID is the RequestID of the tap answered.
	RequestID string
	// Door is the door of the tap.
	Door access.ID
	// Grant says whether the door opens. It is true exactly when Reason is
	// access.ReasonGranted.
	Grant bool
	// Reason explains the decision.
	Reason access.Reason
	// Unlock is how long to release the lock on a grant, 1 ms to
	// MaxUnlock (sent in milliseconds); zero on a deny.
	Unlock time.Duration
	// Mode is the rule the site decided under: access.Online normally,
	// access.Offline when the deciding node was fenced.
	Mode access.Mode
	// Node names the edge node that decided (A-Z a-z 0-9 . _ : -, up to
	// 64 characters).
	Node string
	// Time is the site's time of the decision. Devices may use it to
	// check their clock.
	Time time.Time
	// CacheVersion, when not zero, is the current version of the door's
	// offline cache at the site; a controller holding another version
	// should expect an offline_cache command (see DoorCmd).
	CacheVersion uint64
}

var decisionSpec = spec{
	req: []string{"request_id", "door", "grant", "reason", "mode", "node", "time"},
	opt: []string{"unlock_ms", "cache_version"},
}

// validReason reports whether r is one of the reasons of package access.
func validReason(r access.Reason) bool {
	return r != 0 && !strings.HasPrefix(r.String(), "unknown(")
}

// Validate checks d against the decision schema. It returns an error
// wrapping ErrMissingField or ErrBadValue.
func (d Decision) Validate() error {
	const what = "decision"
	if err := checkRequestID(what, "request_id", d.RequestID); err != nil {
		return err
	}
	if err := checkID(what, "door", d.Door); err != nil {
		return err
	}
	if !validReason(d.Reason) {
		return badValue(what, "reason", "unknown reason %d", uint8(d.Reason))
	}
	if d.Grant != (d.Reason == access.ReasonGranted) {
		return badValue(what, "grant", "%t contradicts reason %q", d.Grant, d.Reason)
	}
	if d.Grant {
		if d.Unlock == 0 {
			return errorf(what, ErrMissingField, "field \"unlock_ms\" is required on a grant")
		}
		if err := checkMillis(what, "unlock_ms", d.Unlock, time.Millisecond, MaxUnlock); err != nil {
			return err
		}
	} else if d.Unlock != 0 {
		return badValue(what, "unlock_ms", "must be left out on a deny")
	}
	if d.Mode != access.Online && d.Mode != access.Offline {
		return badValue(what, "mode", "unknown mode %d", uint8(d.Mode))
	}
	if err := checkRequestID(what, "node", d.Node); err != nil {
		return err
	}
	if err := checkTime(what, "time", d.Time); err != nil {
		return err
	}
	return checkInteger(what, "cache_version", d.CacheVersion)
}

// Marshal validates d and returns its payload.
func (d Decision) Marshal() ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	e := newEnc()
	e.open()
	e.uintField("v", Version)
	e.strField("request_id", d.RequestID)
	e.strField("door", string(d.Door))
	e.boolField("grant", d.Grant)
	e.strField("reason", d.Reason.String())
	if d.Unlock != 0 {
		e.msField("unlock_ms", d.Unlock)
	}
	e.strField("mode", d.Mode.String())
	e.strField("node", d.Node)
	e.timeField("time", d.Time)
	if d.CacheVersion != 0 {
		e.uintField("cache_version", d.CacheVersion)
	}
	e.close()
	return finish("decision", e.b)
}

// DecodeDecision decodes a decision payload. It returns an error wrapping
// ErrTooLarge, ErrSyntax, ErrVersion, ErrUnknownField, ErrMissingField or
// ErrBadValue. It is safe for concurrent use.
func DecodeDecision(b []byte) (Decision, error) {
	d := decoder{what: "decision"}
	if err := d.top(b); err != nil {
		return Decision{}, err
	}
	if err := d.checkKeys(true, decisionSpec, nil, ""); err != nil {
		return Decision{}, err
	}
	var x Decision
	for _, m := range d.o.members() {
		switch string(m.key) {
		case "request_id":
			x.RequestID = d.str(m)
		case "door":
			x.Door = d.id(m)
		case "grant":
			x.Grant = d.bool(m)
		case "reason":
			x.Reason = d.reason(m)
		case "unlock_ms":
			x.Unlock = d.ms(m)
		case "mode":
			if b := d.strBytes(m); d.err == nil {
				if err := x.Mode.UnmarshalText(b); err != nil {
					d.fail(m, "%w", err)
				}
			}
		case "node":
			x.Node = d.str(m)
		case "time":
			x.Time = d.time(m)
		case "cache_version":
			x.CacheVersion = d.uint(m)
		}
	}
	if d.err != nil {
		return Decision{}, d.err
	}
	if err := x.Validate(); err != nil {
		return Decision{}, err
	}
	return x, nil
}

// reason returns member m as an access.Reason.
func (d *decoder) reason(m member) access.Reason {
	var r access.Reason
	if b := d.strBytes(m); d.err == nil {
		if err := r.UnmarshalText(b); err != nil {
			d.fail(m, "%w", err)
		}
	}
	return r
}

package mqttproto

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/access"
)

// KioskEventType is the type of a KioskEvent.
type KioskEventType string

// The kiosk event types. Each but KioskCmdRejected is a request the site
// answers with a show_result command (KioskCmd) carrying the event's
// RequestID.
const (
	// KioskQRScanned reports that a visitor showed a QR code. It needs
	// RequestID and Token, the code's content as scanned.
	KioskQRScanned KioskEventType = "qr_scanned"
	// KioskIDScanned reports that a visitor's identity document was read.
	// It needs RequestID, DocType and MRZ (the raw machine-readable-zone lines);
	// Visit is set when the kiosk scans the document for a visit it knows
	// from an earlier answer.
	KioskIDScanned KioskEventType = "id_scanned"
	// KioskCheckIn asks to check the visitor in to Visit. It needs
	// RequestID and Visit.
	KioskCheckIn KioskEventType = "check_in"
	// KioskCheckOut asks to check the visitor out, by Visit or by the Card
	// handed back (exactly one of them). It needs RequestID.
	KioskCheckOut KioskEventType = "check_out"
	// KioskCmdRejected reports that the kiosk refused a command. It needs
	// RequestID (the command's) and Error.
	KioskCmdRejected KioskEventType = "cmd_rejected"
)

// DocType is the type of an identity document scanned at a kiosk.
type DocType string

// The document types, with the MRZ shapes (ICAO 9303) each may have.
const (
	// DocPassport is a passport, with a TD3 MRZ (2 lines of 44).
	DocPassport DocType = "passport"
	// DocIDCard is an identity card, with a TD1 (3 lines of 30) or TD2
	// (2 of 36) MRZ.
	DocIDCard DocType = "id_card"
	// DocResidencePermit is a residence permit, with a TD1 or TD2 MRZ.
	DocResidencePermit DocType = "residence_permit"
	// DocVisa is a visa, with an MRV-A (2 lines of 44) or MRV-B (2 of 36)
	// MRZ.
	DocVisa DocType = "visa"
	// DocOther is another document with a TD1, TD2 or TD3 shaped MRZ.
	DocOther DocType = "other"
)

// mrzShapes returns the allowed line lengths (with their line counts) of t.
func (t DocType) mrzShapes() []int {
	switch t {
	case DocPassport:
		return []int{44}
	case DocIDCard, DocResidencePermit:
		return []int{30, 36}
	case DocVisa:
		return []int{44, 36}
	case DocOther:
		return []int{30, 36, 44}
	}
	return nil
}

// Valid reports whether t is one of the document types.
func (t DocType) Valid() bool { return t.mrzShapes() != nil }

var kioskEvents = newFamily("kiosk event", eventCommon,
	typeSpec{string(KioskQRScanned), spec{req: []string{"request_id", "token"}}},
	typeSpec{string(KioskIDScanned), spec{req: []string{"request_id", "doc_type", "mrz"}, opt: []string{"visit"}}},
	typeSpec{string(KioskCheckIn), spec{req: []string{"request_id", "visit"}}},
	typeSpec{string(KioskCheckOut), spec{req: []string{"request_id"}, opt: []string{"visit", "card"}}},
	typeSpec{string(KioskCmdRejected), spec{req: []string{"request_id", "error"}}},
)

// KioskEvent is a scan or request from a kiosk: topic
// gh/{site}/kiosk/{device}/event, device to site. Events carry the kiosk's
// sequence number and time like every event (see DoorEvent); requests also
// carry a RequestID chosen by the kiosk, which the site's answer repeats
// and by which the site treats a repeated request as the same one. Which of
// the other fields an event has depends on its Type (see the constants).
type KioskEvent struct {
	// Type says what happened and which other fields the event has.
	Type KioskEventType
	// Seq is the device's event sequence number, 1 to MaxInteger.
	Seq uint64
	// Time is when it happened, by the device's clock.
	Time time.Time
	// RequestID is chosen by the kiosk for a request, or is the rejected
	// command's.
	RequestID string
	// Token is the content of a scanned QR code, 1 to MaxToken bytes.
	Token string
	// DocType is the type of a scanned identity document.
	DocType DocType
	// MRZ holds the raw lines of the document's machine-readable zone.
	MRZ []string
	// Visit is the visit a request concerns.
	Visit access.ID
	// Card is the card handed back at a check-out.
	Card access.CardNumber
	// Error says why a command was rejected, up to MaxErrorText bytes.
	Error string
}

func (e KioskEvent) has(k string) bool {
	switch k {
	case "seq":
		return e.Seq != 0
	case "time":
		return !e.Time.IsZero()
	case "request_id":
		return e.RequestID != ""
	case "token":
		return e.Token != ""
	case "doc_type":
		return e.DocType != ""
	case "mrz":
		return len(e.MRZ) != 0
	case "visit":
		return e.Visit != ""
	case "card":
		return e.Card != 0
	case "error":
		return e.Error != ""
	}
	return false
}

func (e KioskEvent) put(w *enc, k string) {
	switch k {
	case "seq":
		w.uintField(k, e.Seq)
	case "time":
		w.timeField(k, e.Time)
	case "request_id":
		w.strField(k, e.RequestID)
	case "token":
		w.strField(k, e.Token)
	case "doc_type":
		w.strField(k, string(e.DocType))
	case "mrz":
		w.key(k)
		w.openArray()
		for _, l := range e.MRZ {
			w.str(l)
		}
		w.closeArray()
	case "visit":
		w.strField(k, string(e.Visit))
	case "card":
		w.cardField(k, uint64(e.Card))
	case "error":
		w.strField(k, e.Error)
	}
}

// Validate checks e against the schema of its type. It returns an error
// wrapping ErrMissingField, ErrUnknownField (a field its type does not
// have) or ErrBadValue.
func (e KioskEvent) Validate() error {
	const what = "kiosk event"
	if err := checkSeq(what, "seq", e.Seq); err != nil {
		return err
	}
	if err := checkTime(what, "time", e.Time); err != nil {
		return err
	}
	if err := kioskEvents.checkSet(string(e.Type), e.has); err != nil {
		return err
	}
	if err := checkRequestID(what, "request_id", e.RequestID); err != nil {
		return err
	}
	if e.Token != "" && (len(e.Token) > MaxToken || !utf8.ValidString(e.Token)) {
		return badValue(what, "token", "want 1 to %d bytes of UTF-8", MaxToken)
	}
	if e.Type == KioskIDScanned {
		if err := checkMRZ(what, e.DocType, e.MRZ); err != nil {
			return err
		}
	}
	if err := checkOptionalID(what, "visit", e.Visit); err != nil {
		return err
	}
	if e.Type == KioskCheckOut && (e.Visit == "") == (e.Card == 0) {
		return badValue(what, "visit", "a check_out has exactly one of \"visit\" and \"card\"")
	}
	return checkText(what, "error", e.Error, MaxErrorText, false)
}

// checkMRZ checks the lines of a machine-readable zone against the shapes
// allowed for document type t: 3 lines of 30 characters (TD1) or 2 lines of
// 36 (TD2, MRV-B) or 44 (TD3, MRV-A), of A-Z 0-9 and '<'.
func checkMRZ(what string, t DocType, lines []string) error {
	shapes := t.mrzShapes()
	if shapes == nil {
		return badValue(what, "doc_type", "unknown document type %q (want passport, id_card, residence_permit, visa or other)", t)
	}
	n := len(lines[0])
	want := 2
	if n == 30 {
		want = 3
	}
	if !containsInt(shapes, n) || len(lines) != want {
		return badValue(what, "mrz", "%d lines of %d characters is not an MRZ shape of a %s", len(lines), n, t)
	}
	for i, l := range lines {
		f := "mrz[" + strconv.Itoa(i) + "]"
		if len(l) != n {
			return badValue(what, f, "%d characters, want %d like the first line", len(l), n)
		}
		for j := 0; j < len(l); j++ {
			if c := l[j]; !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '<') {
				return badValue(what, f, "character %d is not one of A-Z 0-9 <", j)
			}
		}
	}
	return nil
}

func containsInt(list []int, n int) bool {
	for _, x := range list {
		if x == n {
			return true
		}
	}
	return false
}

// Marshal validates e and returns its payload.
func (e KioskEvent) Marshal() ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return kioskEvents.encode(string(e.Type), e.has, e.put)
}

// DecodeKioskEvent decodes a kiosk event payload. It returns an error
// wrapping ErrTooLarge, ErrSyntax, ErrVersion, ErrUnknownField,
// ErrMissingField or ErrBadValue. It is safe for concurrent use.
func DecodeKioskEvent(b []byte) (KioskEvent, error) {
	var d decoder
	typ, err := kioskEvents.begin(&d, b)
	if err != nil {
		return KioskEvent{}, err
	}
	e := KioskEvent{Type: KioskEventType(typ)}
	for _, m := range d.o.members() {
		switch string(m.key) {
		case "seq":
			e.Seq = d.uint(m)
		case "time":
			e.Time = d.time(m)
		case "request_id":
			e.RequestID = d.str(m)
		case "token":
			e.Token = d.str(m)
		case "doc_type":
			e.DocType = DocType(d.str(m))
		case "mrz":
			e.MRZ = d.strings(m)
			if d.err == nil && len(e.MRZ) == 0 {
				d.fail(m, "empty array")
			}
		case "visit":
			e.Visit = d.id(m)
		case "card":
			e.Card = d.card(m)
		case "error":
			e.Error = d.str(m)
		}
	}
	if d.err != nil {
		return KioskEvent{}, d.err
	}
	if err := e.Validate(); err != nil {
		return KioskEvent{}, err
	}
	return e, nil
}

// KioskCmdType is the type of a KioskCmd.
type KioskCmdType string

// The kiosk command types.
const (
	// KioskShowResult asks the kiosk to show the visitor the outcome of
	// the request RequestID. It needs OK and Code; Message is the text to display and
	// Visit the visit the request concerned, once known.
	KioskShowResult KioskCmdType = "show_result"
	// KioskDispensing tells the kiosk that a card for the request RequestID
	// is being handed out by the dispenser whose device ID is Dispenser, so
	// that it guides the visitor there. It needs Dispenser.
	KioskDispensing KioskCmdType = "dispensing"
	// KioskAck acknowledges the kiosk's events up to Seq, as DoorAck does.
	// It needs Seq.
	KioskAck KioskCmdType = "ack"
)

var kioskCmds = newFamily("kiosk cmd", cmdCommon,
	typeSpec{string(KioskShowResult), spec{req: []string{"ok", "code"}, opt: []string{"message", "visit"}}},
	typeSpec{string(KioskDispensing), spec{req: []string{"dispenser"}}},
	typeSpec{string(KioskAck), spec{req: []string{"seq"}, opt: []string{"resend"}}},
)

// KioskCmd is a command from the site to a kiosk: topic
// gh/{site}/kiosk/{device}/cmd, site to device. For show_result and
// dispensing, RequestID is that of the kiosk request answered; for ack it
// is the site's own. Which of the other fields a command has depends on its
// Type (see the constants).
type KioskCmd struct {
	// Type says what to do and which other fields the command has.
	Type KioskCmdType
	// RequestID is the answered kiosk request's, or the site's own for
	// an ack.
	RequestID string
	// OK says whether the request succeeded.
	OK bool
	// Code is a stable machine-readable outcome such as "checked_in" or
	// "visit_not_found" (a-z 0-9 _, up to 64 characters).
	Code string
	// Message is display text of up to MaxText bytes.
	Message string
	// Visit is the visit the request concerned, once known.
	Visit access.ID
	// Dispenser is the device ID of the dispenser handing out a card.
	Dispenser string
	// Seq is the last event an ack acknowledges.
	Seq uint64
	// Resend asks the kiosk to publish every event after Seq again.
	Resend bool
}

func (c KioskCmd) has(k string) bool {
	switch k {
	case "request_id":
		return c.RequestID != ""
	case "ok":
		return c.OK || c.Type == KioskShowResult
	case "code":
		return c.Code != ""
	case "message":
		return c.Message != ""
	case "visit":
		return c.Visit != ""
	case "dispenser":
		return c.Dispenser != ""
	case "seq":
		return c.Seq != 0
	case "resend":
		return c.Resend
	}
	return false
}

func (c KioskCmd) put(w *enc, k string) {
	switch k {
	case "request_id":
		w.strField(k, c.RequestID)
	case "ok":
		w.boolField(k, c.OK)
	case "code":
		w.strField(k, c.Code)
	case "message":
		w.strField(k, c.Message)
	case "visit":
		w.strField(k, string(c.Visit))
	case "dispenser":
		w.strField(k, c.Dispenser)
	case "seq":
		w.uintField(k, c.Seq)
	case "resend":
		w.boolField(k, c.Resend)
	}
}

// Validate checks c against the schema of its type. It returns an error
// wrapping ErrMissingField, ErrUnknownField (a field its type does not
// have) or ErrBadValue.
func (c KioskCmd) Validate() error {
	const what = "kiosk cmd"
	if err := checkRequestID(what, "request_id", c.RequestID); err != nil {
		return err
	}
	if err := kioskCmds.checkSet(string(c.Type), c.has); err != nil {
		return err
	}
	if c.Code != "" {
		if err := checkCode(what, "code", c.Code); err != nil {
			return err
		}
	}
	if err := checkText(what, "message", c.Message, MaxText, false); err != nil {
		return err
	}
	if err := checkOptionalID(what, "visit", c.Visit); err != nil {
		return err
	}
	if c.Dispenser != "" {
		if err := checkName(what, "dispenser", c.Dispenser); err != nil {
			return err
		}
	}
	if c.Type == KioskAck {
		return checkSeq(what, "seq", c.Seq)
	}
	return nil
}

// Marshal validates c and returns its payload.
func (c KioskCmd) Marshal() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return kioskCmds.encode(string(c.Type), c.has, c.put)
}

// DecodeKioskCmd decodes a kiosk command payload. It returns an error
// wrapping ErrTooLarge, ErrSyntax, ErrVersion, ErrUnknownField,
// ErrMissingField or ErrBadValue. It is safe for concurrent use.
func DecodeKioskCmd(b []byte) (KioskCmd, error) {
	var d decoder
	typ, err := kioskCmds.begin(&d, b)
	if err != nil {
		return KioskCmd{}, err
	}
	c := KioskCmd{Type: KioskCmdType(typ)}
	for _, m := range d.o.members() {
		switch string(m.key) {
		case "request_id":
			c.RequestID = d.str(m)
		case "ok":
			c.OK = d.bool(m)
		case "code":
			c.Code = d.str(m)
		case "message":
			c.Message = d.str(m)
		case "visit":
			c.Visit = d.id(m)
		case "dispenser":
			c.Dispenser = d.str(m)
		case "seq":
			c.Seq = d.uint(m)
		case "resend":
			c.Resend = d.bool(m)
		}
	}
	if d.err != nil {
		return KioskCmd{}, d.err
	}
	if err := c.Validate(); err != nil {
		return KioskCmd{}, err
	}
	return c, nil
}

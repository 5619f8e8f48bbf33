package replication

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/access"
)

// EventRecord is one access event as it travels in its origin's events lane
// (a KindEvent delta): a tap and its decision, or a door controller's own
// event. The origin (a site) and the sequence number are the delta's.
type EventRecord struct {
	// At is the time of the tap, as the deciding node or device saw it.
	At time.Time
	// Door is the door tapped; Device the device that recorded the event
	// itself (a door controller's offline decisions), zero for decisions
	// made by a node.
	Door, Device access.ID
	// Card is the card number presented (0: none, such as a door event).
	Card access.CardNumber
	// Holder is the person the card resolved to at the site, if any.
	Holder access.ID
	// Granted and Reason are the decision (Reason zero for a door event).
	Granted bool
	Reason  access.Reason
	// Offline is set for a decision made under the offline rule.
	Offline bool
	// RequestID is the tap's request ID; Node the node that decided.
	RequestID, Node string
	// Type is empty for a decision, else the device event type (such as
	// "forced_open"); Detail its detail.
	Type, Detail string
	// DeviceSeq is the device's own sequence number of the event.
	DeviceSeq uint64
}

// Canonical makes r encodable whatever it holds: IDs that are not
// canonical ULIDs become zero, and text longer than MaxValueLen bytes is
// cut at a character boundary. A site converts its recorded events with
// it, so that no event can block its lane.
func (r EventRecord) Canonical() EventRecord {
	id := func(v access.ID) access.ID {
		if checkIDValue(string(v)) != nil {
			return ""
		}
		return v
	}
	text := func(s string) string {
		s = strings.ToValidUTF8(s, "\uFFFD")
		if len(s) <= MaxValueLen {
			return s
		}
		cut := MaxValueLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return s[:cut]
	}
	if r.At.IsZero() {
		r.At = time.Unix(0, 0)
	}
	r.At = time.Unix(0, r.At.UnixNano()).UTC() // what round-trips
	r.Door, r.Device, r.Holder = id(r.Door), id(r.Device), id(r.Holder)
	if r.Reason != 0 {
		var known access.Reason
		if known.UnmarshalText([]byte(r.Reason.String())) != nil {
			r.Reason = 0
		}
	}
	r.RequestID, r.Node, r.Type, r.Detail = text(r.RequestID), text(r.Node), text(r.Type), text(r.Detail)
	return r
}

// Ops returns the operations of r's event delta: one OpSet per field, in
// a fixed order, the time always and the other fields when not zero. The
// time of a zero At is the Unix epoch.
func (r EventRecord) Ops() []Op {
	at := r.At
	if at.IsZero() {
		at = time.Unix(0, 0)
	}
	ops := []Op{SetOp("at", strconv.FormatInt(at.UnixNano(), 10))}
	add := func(field, v string) {
		if v != "" {
			ops = append(ops, SetOp(field, v))
		}
	}
	add("door", string(r.Door))
	add("device", string(r.Device))
	if r.Card != 0 {
		add("card", r.Card.String())
	}
	add("holder", string(r.Holder))
	if r.Granted {
		add("granted", "true")
	}
	if r.Reason != 0 {
		add("reason", r.Reason.String())
	}
	if r.Offline {
		add("offline", "true")
	}
	add("request", r.RequestID)
	add("node", r.Node)
	add("type", r.Type)
	add("detail", r.Detail)
	if r.DeviceSeq != 0 {
		add("device_seq", strconv.FormatUint(r.DeviceSeq, 10))
	}
	return ops
}

// EventDelta returns the event delta numbered seq in origin's events lane
// holding r. Its stamp is r's time (0 when before 1970): events are
// ordered by sequence, and their stamps are exempt from the skew guard.
// It returns the error of Delta.Validate for a malformed origin, a zero
// seq, or a record Canonical would have changed.
func EventDelta(origin string, seq uint64, r EventRecord) (Delta, error) {
	wall := int64(0)
	if !r.At.IsZero() {
		wall = max(r.At.UnixNano(), 0)
	}
	d := Delta{Origin: origin, Lane: LaneEvents, Seq: seq, Stamp: Stamp{Wall: wall, Origin: origin},
		Kind: KindEvent, Ops: r.Ops()}
	if err := d.Validate(); err != nil {
		return Delta{}, err
	}
	return d, nil
}

// ParseEvent returns the event record of an event delta. It returns the
// Invalid error of Delta.Validate for a malformed delta and an Invalid
// error wrapping ErrBadDelta for a delta that is not an event.
func ParseEvent(d Delta) (EventRecord, error) {
	if err := d.Validate(); err != nil {
		return EventRecord{}, err
	}
	if d.Kind != KindEvent {
		return EventRecord{}, access.Errorf(access.Invalid, "delta %s/%d: a %s delta, not an event: %w", d.Source(), d.Seq, d.Kind, ErrBadDelta)
	}
	r, _ := EventOf(d)
	return r, nil
}

// EventOf returns the event record of d without validating it again, and
// false when d is not an event. Use it only on a delta already validated
// (by Delta.Validate, or decoded by UnmarshalBinary): its values are then
// canonical.
func EventOf(d Delta) (EventRecord, bool) {
	if d.Kind != KindEvent {
		return EventRecord{}, false
	}
	var r EventRecord
	for _, op := range d.Ops {
		v := op.Value // canonical: Validate checked every value
		switch op.Field {
		case "at":
			r.At, _ = ParseTimeValue(v)
		case "door":
			r.Door = access.ID(v)
		case "device":
			r.Device = access.ID(v)
		case "card":
			n, _ := strconv.ParseUint(v, 10, 64)
			r.Card = access.CardNumber(n)
		case "holder":
			r.Holder = access.ID(v)
		case "granted":
			r.Granted = v == "true"
		case "reason":
			_ = r.Reason.UnmarshalText([]byte(v))
		case "offline":
			r.Offline = v == "true"
		case "request":
			r.RequestID = v
		case "node":
			r.Node = v
		case "type":
			r.Type = v
		case "detail":
			r.Detail = v
		case "device_seq":
			r.DeviceSeq, _ = strconv.ParseUint(v, 10, 64)
		}
	}
	return r, true
}

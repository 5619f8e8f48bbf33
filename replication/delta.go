package replication

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/access"
)

// Kind is the kind of entity a delta changes.
type Kind uint8

// The kinds of entity.
const (
	KindSite Kind = iota + 1
	KindZone
	KindDoor
	KindGroup
	KindPerson
	KindCard
	KindGrant
	KindVisit
	// KindEvent is an access event: a fact in its origin's grow-only
	// event log, carried in LaneEvents with an empty ID and one OpSet per
	// field (see EventRecord). It changes no entity.
	KindEvent
)

var kindNames = []string{KindSite: "site", KindZone: "zone", KindDoor: "door", KindGroup: "group",
	KindPerson: "person", KindCard: "card", KindGrant: "grant", KindVisit: "visit", KindEvent: "event"}

// String returns the lower-case name of k, such as "card".
func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// OpType is the kind of one field-level operation of a delta.
type OpType uint8

// The operations. Each names the CRDT it acts on; those marked revocation
// make their delta travel in the priority lane.
const (
	// OpSet writes Value to the LWW register Field.
	OpSet OpType = iota + 1
	// OpEnable enables the entity's disable-wins "active" flag; Observed
	// lists every disable of the flag its origin knew (Replica.EnableOp).
	OpEnable
	// OpDisable disables the "active" flag with the reason Value (for a
	// card, the status it leaves: suspended, lost or returned).
	// Revocation.
	OpDisable
	// OpAdd adds the element Value to the observed-remove set Field.
	OpAdd
	// OpRemove removes the element Value from the set Field, removing the
	// add tags listed in Observed (Replica.RemoveOp). Revocation.
	OpRemove
	// OpGrant creates the grant whose ID is the delta's; Value holds its
	// holder, group and window (see GrantValue); Observed lists the
	// revocations of that membership its origin knew (Replica.GrantOp).
	OpGrant
	// OpRemoveGrant removes, forever, the grant whose ID is the delta's.
	// Revocation.
	OpRemoveGrant
	// OpRevoke revokes the membership of the holder (the delta's person or
	// visit) of the group Value: every grant of it made without knowledge
	// of this revocation is removed. Revocation.
	OpRevoke
	// OpAdvance moves the visit's lifecycle to the state Value (an
	// access.VisitState name); it never moves back. Revocation when the
	// state is final (checked out, expired, cancelled, denied).
	OpAdvance
	// OpDelete deletes the entity, forever. Revocation.
	OpDelete
)

var opNames = []string{OpSet: "set", OpEnable: "enable", OpDisable: "disable", OpAdd: "add", OpRemove: "remove",
	OpGrant: "grant", OpRemoveGrant: "remove_grant", OpRevoke: "revoke", OpAdvance: "advance", OpDelete: "delete"}

// String returns the snake_case name of t, such as "remove_grant".
func (t OpType) String() string {
	if int(t) < len(opNames) && opNames[t] != "" {
		return opNames[t]
	}
	return "op(" + strconv.Itoa(int(t)) + ")"
}

// Op is one field-level operation of a delta. Which of Field, Value and
// Observed it uses depends on Type.
type Op struct {
	Type     OpType
	Field    string
	Value    string
	Observed []Stamp
}

// Revocation reports whether op takes access away and so travels in the
// priority lane.
func (op Op) Revocation() bool {
	switch op.Type {
	case OpDisable, OpRemove, OpRemoveGrant, OpRevoke, OpDelete:
		return true
	case OpAdvance:
		var s access.VisitState
		return s.UnmarshalText([]byte(op.Value)) == nil && s.Final()
	}
	return false
}

// LaneOf returns the lane of an entity delta holding ops: LanePriority when
// any op is a revocation, LaneNormal otherwise. Event deltas (KindEvent)
// are always in LaneEvents; see LaneFor.
func LaneOf(ops []Op) Lane {
	for _, op := range ops {
		if op.Revocation() {
			return LanePriority
		}
	}
	return LaneNormal
}

// LaneFor returns the lane of a delta of kind k holding ops: LaneEvents for
// KindEvent, LaneOf(ops) for every other kind.
func LaneFor(k Kind, ops []Op) Lane {
	if k == KindEvent {
		return LaneEvents
	}
	return LaneOf(ops)
}

// Delta is one change to one entity, made at Stamp by Origin, numbered Seq
// in its origin's Lane (counting from 1 with no gaps), holding field-level
// operations. ID is the entity's ID: a ULID, or for a card its decimal card
// number. Deltas are immutable once made; applying one twice is the same as
// applying it once.
type Delta struct {
	Origin string
	Lane   Lane
	Seq    uint64
	Stamp  Stamp
	Kind   Kind
	ID     string
	Ops    []Op
}

// Source returns the source (origin and lane) of d.
func (d Delta) Source() Source { return Source{Origin: d.Origin, Lane: d.Lane} }

// Revocation reports whether d travels in the priority lane.
func (d Delta) Revocation() bool { return d.Lane == LanePriority }

// Limits of a delta's contents.
const (
	MaxOps       = 256
	MaxObserved  = 4096
	MaxValueLen  = 4096
	maxFieldName = 32
)

// fieldType is the type of a field's value, which fixes its canonical
// text encoding.
type fieldType uint8

const (
	ftID       fieldType = iota + 1 // "" or a canonical ULID
	ftText                          // UTF-8 text
	ftBool                          // "true" or "false"
	ftTime                          // "" (zero) or Unix nanoseconds in decimal
	ftDuration                      // nanoseconds in decimal
	ftPersonKind
	ftDirection
	ftGroupKind
	ftDates // "" or comma-separated 2006-01-02 dates
	ftUint  // an unsigned integer in decimal, without leading zeros
	ftReason
)

// schema is what one kind of entity accepts.
type schema struct {
	fields map[string]fieldType
	sets   map[string]func(string) error // set name → element check
	ops    []OpType
	reason func(string) error // check of a disable's reason
}

var schemas = map[Kind]schema{
	KindSite: {
		fields: map[string]fieldType{"name": ftText, "time_zone": ftText, "holidays": ftDates},
		sets:   map[string]func(string) error{"groups": checkIDValue},
		ops:    []OpType{OpSet, OpAdd, OpRemove, OpDelete},
	},
	KindZone: {
		fields: map[string]fieldType{"site": ftID, "name": ftText, "anti_passback": ftBool},
		ops:    []OpType{OpSet, OpDelete},
	},
	KindDoor: {
		fields: map[string]fieldType{"site": ftID, "zone": ftID, "name": ftText, "direction": ftDirection,
			"high_security": ftBool, "max_offline": ftDuration},
		ops: []OpType{OpSet, OpDelete},
	},
	KindGroup: {
		fields: map[string]fieldType{"site": ftID, "name": ftText, "schedule": ftID, "kind": ftGroupKind},
		sets:   map[string]func(string) error{"doors": checkIDValue},
		ops:    []OpType{OpSet, OpAdd, OpRemove, OpDelete},
	},
	KindPerson: {
		fields: map[string]fieldType{"kind": ftPersonKind, "occupier": ftID, "name": ftText, "email": ftText,
			"offline_access": ftBool, "valid_from": ftTime, "valid_until": ftTime},
		ops:    []OpType{OpSet, OpEnable, OpDisable, OpRevoke, OpDelete},
		reason: checkText,
	},
	KindCard: {
		fields: map[string]fieldType{"site": ftID, "valid_from": ftTime, "valid_until": ftTime},
		sets:   map[string]func(string) error{"holders": checkHolderValue},
		ops:    []OpType{OpSet, OpAdd, OpRemove, OpEnable, OpDisable},
		reason: checkCardReason,
	},
	KindGrant: {
		ops: []OpType{OpGrant, OpRemoveGrant},
	},
	KindVisit: {
		fields: map[string]fieldType{"site": ftID, "host": ftID, "visitor": ftID, "type": ftID,
			"from": ftTime, "until": ftTime, "escort": ftBool},
		ops: []OpType{OpSet, OpAdvance, OpRevoke},
	},
	KindEvent: {
		fields: map[string]fieldType{"at": ftTime, "door": ftID, "device": ftID, "card": ftUint, "holder": ftID,
			"granted": ftBool, "reason": ftReason, "offline": ftBool, "request": ftText, "node": ftText,
			"type": ftText, "detail": ftText, "device_seq": ftUint},
		ops: []OpType{OpSet},
	},
}

// Validate returns an Invalid error wrapping ErrBadDelta (or ErrBadStamp)
// describing the first problem with d: a malformed origin or unknown lane,
// a zero sequence number, a zero stamp or one of another origin, an unknown
// kind, a malformed ID, no operations or too many, an operation the kind
// does not take, an unknown field or set, a value not in its field's
// canonical encoding, a field set twice, or a lane that does not match the
// operations (see LaneOf).
func (d Delta) Validate() error {
	if err := d.Source().Validate(); err != nil {
		return access.Errorf(access.Invalid, "delta: %w: %w", ErrBadDelta, err)
	}
	what := "delta " + d.Source().String() + "/" + strconv.FormatUint(d.Seq, 10)
	bad := func(format string, args ...any) error {
		return access.Errorf(access.Invalid, "%s: %s: %w", what, fmt.Sprintf(format, args...), ErrBadDelta)
	}
	if d.Seq == 0 {
		return bad("sequence 0")
	}
	if err := d.Stamp.Validate(); err != nil {
		return access.Errorf(access.Invalid, "%s: %w", what, err)
	}
	if d.Stamp.Origin != d.Origin {
		return bad("stamp %s is not of origin %s", d.Stamp, d.Origin)
	}
	sc, ok := schemas[d.Kind]
	if !ok {
		return bad("unknown kind %d", d.Kind)
	}
	if err := checkEntityID(d.Kind, d.ID); err != nil {
		return bad("%s id: %v", d.Kind, err)
	}
	if len(d.Ops) == 0 || len(d.Ops) > MaxOps {
		return bad("%d operations, want 1..%d", len(d.Ops), MaxOps)
	}
	set := make(map[string]bool)
	for i, op := range d.Ops {
		if err := sc.checkOp(op); err != nil {
			return bad("%s %s: op %d (%s): %v", d.Kind, d.ID, i, op.Type, err)
		}
		if op.Type == OpSet {
			if set[op.Field] {
				return bad("%s %s: field %s set twice", d.Kind, d.ID, op.Field)
			}
			set[op.Field] = true
		}
	}
	if want := LaneFor(d.Kind, d.Ops); d.Lane != want {
		return bad("lane %s, but its operations belong in the %s lane", d.Lane, want)
	}
	if d.Kind == KindEvent && !set["at"] {
		return bad("event without its time (at)")
	}
	return nil
}

// checkOp checks one operation against the schema.
func (sc schema) checkOp(op Op) error {
	if !slices.Contains(sc.ops, op.Type) {
		return errorf("operation not allowed on this kind")
	}
	if len(op.Value) > MaxValueLen || len(op.Field) > maxFieldName || len(op.Observed) > MaxObserved {
		return errorf("too long")
	}
	usesField := op.Type == OpSet || op.Type == OpAdd || op.Type == OpRemove
	usesObserved := op.Type == OpEnable || op.Type == OpRemove || op.Type == OpGrant
	usesValue := op.Type != OpEnable && op.Type != OpRemoveGrant && op.Type != OpDelete
	switch {
	case !usesField && op.Field != "":
		return errorf("unexpected field %q", op.Field)
	case !usesValue && op.Value != "":
		return errorf("unexpected value")
	case !usesObserved && len(op.Observed) != 0:
		return errorf("unexpected observed stamps")
	}
	for i, s := range op.Observed {
		if err := s.Validate(); err != nil || s.IsZero() {
			return errorf("observed stamp %d malformed", i)
		}
		if i > 0 && !op.Observed[i-1].Less(s) {
			return errorf("observed stamps not sorted and distinct")
		}
	}
	switch op.Type {
	case OpSet:
		ft, ok := sc.fields[op.Field]
		if !ok {
			return errorf("unknown field %q", op.Field)
		}
		if err := checkValue(ft, op.Value); err != nil {
			return errorf("field %s: %v", op.Field, err)
		}
	case OpAdd, OpRemove:
		check, ok := sc.sets[op.Field]
		if !ok {
			return errorf("unknown set %q", op.Field)
		}
		if err := check(op.Value); err != nil {
			return errorf("set %s: %v", op.Field, err)
		}
	case OpDisable:
		if err := sc.reason(op.Value); err != nil {
			return errorf("reason: %v", err)
		}
	case OpGrant:
		if _, err := ParseGrantValue(op.Value); err != nil {
			return err
		}
	case OpRevoke:
		if err := checkIDValue(op.Value); err != nil || op.Value == "" {
			return errorf("group id %q malformed", op.Value)
		}
	case OpAdvance:
		var s access.VisitState
		if err := s.UnmarshalText([]byte(op.Value)); err != nil {
			return err
		}
	}
	return nil
}

// errorf returns a plain error for the messages of checkOp.
func errorf(format string, args ...any) error {
	return &access.Error{Code: access.Invalid, Msg: fmt.Sprintf(format, args...)}
}

// checkEntityID checks an entity ID: a card number for cards, empty for
// events, a canonical ULID otherwise.
func checkEntityID(k Kind, id string) error {
	if k == KindEvent {
		if id != "" {
			return errorf("an event has no id")
		}
		return nil
	}
	if k == KindCard {
		n, err := access.ParseCardNumber(id)
		if err != nil || n.String() != id {
			return errorf("malformed card number")
		}
		return nil
	}
	if id == "" {
		return errorf("missing")
	}
	return checkIDValue(id)
}

// checkIDValue accepts "" and canonical ULIDs.
func checkIDValue(v string) error {
	if v == "" {
		return nil
	}
	id, err := access.ParseID(v)
	if err != nil || string(id) != v {
		return errorf("malformed id %q", v)
	}
	return nil
}

// checkText accepts UTF-8 text.
func checkText(v string) error {
	if !utf8.ValidString(v) {
		return errorf("not UTF-8")
	}
	return nil
}

// checkCardReason accepts the card statuses a disable can leave.
func checkCardReason(v string) error {
	var s access.CardStatus
	if err := s.UnmarshalText([]byte(v)); err != nil || s == access.CardActive {
		return errorf("card disable reason %q: want suspended, lost or returned", v)
	}
	return nil
}

// checkHolderValue accepts a card holder: a person ID, or a person ID and
// a visit ID separated by '/'.
func checkHolderValue(v string) error {
	_, _, err := ParseHolderValue(v)
	return err
}

// checkValue checks that v is the canonical encoding of a value of type ft.
func checkValue(ft fieldType, v string) error {
	switch ft {
	case ftID:
		return checkIDValue(v)
	case ftText:
		return checkText(v)
	case ftBool:
		if v != "true" && v != "false" {
			return errorf("want true or false")
		}
	case ftTime:
		if _, err := ParseTimeValue(v); err != nil {
			return err
		}
	case ftDuration:
		if n, err := strconv.ParseInt(v, 10, 64); err != nil || strconv.FormatInt(n, 10) != v {
			return errorf("malformed duration %q", v)
		}
	case ftPersonKind:
		var k access.PersonKind
		return k.UnmarshalText([]byte(v))
	case ftDirection:
		var d access.Direction
		return d.UnmarshalText([]byte(v))
	case ftGroupKind:
		var k access.GroupKind
		return k.UnmarshalText([]byte(v))
	case ftDates:
		if _, err := ParseDatesValue(v); err != nil {
			return err
		}
	case ftUint:
		if n, err := strconv.ParseUint(v, 10, 64); err != nil || strconv.FormatUint(n, 10) != v {
			return errorf("malformed number %q", v)
		}
	case ftReason:
		var r access.Reason
		if err := r.UnmarshalText([]byte(v)); err != nil {
			return errorf("unknown reason %q", v)
		}
	}
	return nil
}

// TimeValue returns the field encoding of t: "" for the zero time, Unix
// nanoseconds in decimal otherwise.
func TimeValue(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return strconv.FormatInt(t.UnixNano(), 10)
}

// ParseTimeValue parses the field encoding of a time (see TimeValue),
// returning times in UTC and an Invalid error for a non-canonical encoding.
func ParseTimeValue(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || strconv.FormatInt(n, 10) != v {
		return time.Time{}, errorf("malformed time %q", v)
	}
	return time.Unix(0, n).UTC(), nil
}

// BoolValue returns the field encoding of b.
func BoolValue(b bool) string { return strconv.FormatBool(b) }

// DurationValue returns the field encoding of d.
func DurationValue(d time.Duration) string { return strconv.FormatInt(int64(d), 10) }

// DatesValue returns the field encoding of a list of dates.
func DatesValue(ds []access.Date) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = d.String()
	}
	return strings.Join(parts, ",")
}

// ParseDatesValue parses the field encoding of a list of dates.
func ParseDatesValue(v string) ([]access.Date, error) {
	if v == "" {
		return nil, nil
	}
	var out []access.Date
	for _, p := range strings.Split(v, ",") {
		d, err := access.ParseDate(p)
		if err != nil || d.String() != p {
			return nil, errorf("malformed date %q", p)
		}
		out = append(out, d)
	}
	return out, nil
}

// HolderValue returns the element of a card's "holders" set binding it to
// person, and for a visitor card to visit.
func HolderValue(person, visit access.ID) string {
	if visit.IsZero() {
		return string(person)
	}
	return string(person) + "/" + string(visit)
}

// ParseHolderValue parses an element of a card's "holders" set.
func ParseHolderValue(v string) (person, visit access.ID, err error) {
	p, vis, _ := strings.Cut(v, "/")
	if p == "" || checkIDValue(p) != nil || checkIDValue(vis) != nil || HolderValue(access.ID(p), access.ID(vis)) != v {
		return "", "", errorf("malformed holder %q", v)
	}
	return access.ID(p), access.ID(vis), nil
}

// GrantValue returns the Value of an OpGrant for g: holder, group, valid
// from and valid until, separated by spaces, times as in TimeValue.
func GrantValue(g access.Grant) string {
	return string(g.HolderID) + " " + string(g.GroupID) + " " + TimeValue(g.ValidFrom) + " " + TimeValue(g.ValidUntil)
}

// ParseGrantValue parses the Value of an OpGrant into a grant without ID.
// It returns an Invalid error for a non-canonical value or a window that
// ends before it starts.
func ParseGrantValue(v string) (access.Grant, error) {
	parts := strings.Split(v, " ")
	if len(parts) != 4 {
		return access.Grant{}, errorf("malformed grant %q", v)
	}
	var g access.Grant
	var err error
	if parts[0] == "" || parts[1] == "" || checkIDValue(parts[0]) != nil || checkIDValue(parts[1]) != nil {
		return access.Grant{}, errorf("malformed grant holder or group in %q", v)
	}
	g.HolderID, g.GroupID = access.ID(parts[0]), access.ID(parts[1])
	if g.ValidFrom, err = ParseTimeValue(parts[2]); err != nil {
		return access.Grant{}, err
	}
	if g.ValidUntil, err = ParseTimeValue(parts[3]); err != nil {
		return access.Grant{}, err
	}
	if !g.ValidFrom.IsZero() && !g.ValidUntil.IsZero() && !g.ValidUntil.After(g.ValidFrom) {
		return access.Grant{}, errorf("grant window ends before it starts")
	}
	return g, nil
}

// deltaVersion is the first byte of the binary form of a delta.
const deltaVersion = 1

// AppendBinary appends d's binary form to b: version byte 1, origin
// (length-prefixed), lane byte, sequence number (varint), stamp (its binary
// form), kind byte, ID (length-prefixed), the number of operations
// (varint), and per operation its type byte, field and value
// (length-prefixed) and observed stamps (a varint count, then each stamp).
// It returns the error of Validate for an invalid delta.
func (d Delta) AppendBinary(b []byte) ([]byte, error) {
	if err := d.Validate(); err != nil {
		return b, err
	}
	b = append(b, deltaVersion)
	b = appendString(b, d.Origin)
	b = append(b, byte(d.Lane))
	b = appendUvarint(b, d.Seq)
	b = d.Stamp.appendBinary(b)
	b = append(b, byte(d.Kind))
	b = appendString(b, d.ID)
	b = appendUvarint(b, uint64(len(d.Ops)))
	for _, op := range d.Ops {
		b = append(b, byte(op.Type))
		b = appendString(b, op.Field)
		b = appendString(b, op.Value)
		b = appendUvarint(b, uint64(len(op.Observed)))
		for _, s := range op.Observed {
			b = s.appendBinary(b)
		}
	}
	return b, nil
}

// MarshalBinary returns d's binary form; see AppendBinary.
func (d Delta) MarshalBinary() ([]byte, error) { return d.AppendBinary(nil) }

// UnmarshalBinary decodes exactly one delta from data strictly, then
// validates it. It returns an Invalid error wrapping ErrBadEncoding or
// ErrBadDelta otherwise and leaves d unchanged.
func (d *Delta) UnmarshalBinary(data []byte) error {
	dec := decoder{what: "delta", b: data}
	if v := dec.byte(); dec.err == nil && v != deltaVersion {
		dec.fail("unknown version")
	}
	var v Delta
	v.Origin = dec.string(MaxOriginLen, "origin")
	v.Lane = Lane(dec.byte())
	v.Seq = dec.uvarint()
	v.Stamp = dec.stamp()
	v.Kind = Kind(dec.byte())
	v.ID = dec.string(64, "id")
	n := dec.count(MaxOps, "operation count")
	for i := 0; i < n && dec.err == nil; i++ {
		op := Op{Type: OpType(dec.byte())}
		op.Field = dec.string(maxFieldName, "field")
		op.Value = dec.string(MaxValueLen, "value")
		m := dec.count(MaxObserved, "observed count")
		for j := 0; j < m && dec.err == nil; j++ {
			op.Observed = append(op.Observed, dec.stamp())
		}
		v.Ops = append(v.Ops, op)
	}
	if err := dec.finish(); err != nil {
		return err
	}
	if err := v.Validate(); err != nil {
		return err
	}
	*d = v
	return nil
}

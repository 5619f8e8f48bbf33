package mqttproto

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/access"
)

// errorf returns an access.Invalid error about message what, with text
// "mqttproto: WHAT: FORMAT: SENTINEL", wrapping sentinel and every %w
// operand of format.
func errorf(what string, sentinel error, format string, args ...any) error {
	return access.Errorf(access.Invalid, "mqttproto: "+what+": "+format+": %w", append(args, sentinel)...)
}

// badValue returns an ErrBadValue error about field of message what.
func badValue(what, field, format string, args ...any) error {
	return errorf(what, ErrBadValue, "field %q: "+format, append([]any{field}, args...)...)
}

// quoteShort quotes b for an error message, cut to 64 bytes.
func quoteShort(b []byte) string {
	if len(b) > 64 {
		return strconv.Quote(string(b[:64])) + "..."
	}
	return strconv.Quote(string(b))
}

// spec lists the required and optional keys of one message type or nested
// object, besides the keys common to its family.
type spec struct {
	req []string
	opt []string
}

// allows reports whether k is one of sp's keys.
func (sp spec) allows(k []byte) bool {
	return containsKey(sp.req, k) || containsKey(sp.opt, k)
}

// requires reports whether k is one of sp's required keys.
func (sp spec) requires(k string) bool {
	for _, r := range sp.req {
		if r == k {
			return true
		}
	}
	return false
}

func containsKey(list []string, k []byte) bool {
	for _, s := range list {
		if s == string(k) {
			return true
		}
	}
	return false
}

// decoder reads one JSON object of a message. It keeps the first error it
// meets, so a decoding function can read every field and check once.
type decoder struct {
	what string // the message, for errors: "tap", "door event"
	path string // the prefix of nested field names: "", "wiegand.", "entries[2]."
	o    object
	err  error
}

// top parses payload b as a message of the current version into d.
func (d *decoder) top(b []byte) error {
	if len(b) > MaxPayload {
		return errorf(d.what, ErrTooLarge, "%d bytes, more than the limit of %d", len(b), MaxPayload)
	}
	if je := parseObject(b, 0, 1, &d.o); je != nil {
		return errorf(d.what, ErrSyntax, "at byte %d: %s", je.off, je.msg)
	}
	m, ok := d.o.get("v")
	if !ok {
		return errorf(d.what, ErrMissingField, "field \"v\" (the protocol version) is required")
	}
	v, ok := rawUint(m.val)
	if !ok {
		return errorf(d.what, ErrVersion, "field \"v\": want an integer version, got %s", quoteShort(m.val))
	}
	if v != Version {
		return errorf(d.what, ErrVersion, "version %d is not supported (this side speaks version %d)", v, Version)
	}
	return nil
}

// nested parses the member m, which must be an object, into a new decoder
// whose field names are prefixed with path.
func (d *decoder) nested(m member, path string, depth int, nd *decoder) bool {
	nd.what, nd.path = d.what, path
	if d.err != nil {
		return false
	}
	if len(m.val) == 0 || m.val[0] != '{' {
		d.fail(m, "want an object, got %s", jsonType(m.val))
		return false
	}
	if je := parseObject(m.val, m.off, depth, &nd.o); je != nil {
		// Unreachable: the payload was checked as a whole already.
		d.err = errorf(d.what, ErrSyntax, "at byte %d: %s", je.off, je.msg)
		return false
	}
	return true
}

// field returns the full name of the member m.
func (d *decoder) field(m member) string { return d.path + string(m.key) }

// fail records an ErrBadValue error about member m unless d has one already.
func (d *decoder) fail(m member, format string, args ...any) {
	if d.err == nil {
		d.err = badValue(d.what, d.field(m), format, args...)
	}
}

// checkKeys checks d's members against sp: each must be one of sp's keys
// (or "v" in a top-level object), and each required key must be present.
// family lists the keys that other types of the same family have, so that
// such a key gets "not allowed in a TYPE" rather than "unknown"; typ names
// the type for that message ("" when the object has no type).
func (d *decoder) checkKeys(top bool, sp spec, family []string, typ string) error {
	if d.err != nil {
		return d.err
	}
	for _, m := range d.o.members() {
		if top && string(m.key) == "v" || sp.allows(m.key) {
			continue
		}
		if typ != "" && containsKey(family, m.key) {
			return errorf(d.what, ErrUnknownField, "field %q is not allowed in type %q", d.field(m), typ)
		}
		return errorf(d.what, ErrUnknownField, "unknown field %q", d.field(m))
	}
	for _, k := range sp.req {
		if !d.o.has(k) {
			if typ != "" {
				return errorf(d.what, ErrMissingField, "field %q is required in type %q", d.path+k, typ)
			}
			return errorf(d.what, ErrMissingField, "field %q is required", d.path+k)
		}
	}
	return nil
}

// typeOf returns the "type" member's value, checked against names.
func (d *decoder) typeOf(names []string) (string, error) {
	m, ok := d.o.get("type")
	if !ok {
		return "", errorf(d.what, ErrMissingField, "field \"type\" is required")
	}
	s, ok := rawString(m.val)
	if !ok {
		return "", badValue(d.what, "type", "want a string, got %s", jsonType(m.val))
	}
	for _, n := range names {
		if n == string(s) {
			return n, nil
		}
	}
	return "", badValue(d.what, "type", "unknown type %s (want one of %s)", quoteShort(s), joinNames(names))
}

func joinNames(names []string) string {
	var s string
	for i, n := range names {
		if i > 0 {
			s += ", "
		}
		s += n
	}
	return s
}

// str returns member m as a string.
func (d *decoder) str(m member) string {
	b := d.strBytes(m)
	if b == nil {
		return ""
	}
	return string(b)
}

// strBytes returns the content of member m, which must be a string; the
// result is nil after an error.
func (d *decoder) strBytes(m member) []byte {
	if d.err != nil {
		return nil
	}
	b, ok := rawString(m.val)
	if !ok {
		d.fail(m, "want a string, got %s", jsonType(m.val))
		return nil
	}
	if len(b) == 0 {
		d.fail(m, "empty string (leave an optional field out instead)")
		return nil
	}
	return b
}

// uint returns member m as an integer in 0..MaxInteger.
func (d *decoder) uint(m member) uint64 {
	if d.err != nil {
		return 0
	}
	n, ok := rawUint(m.val)
	switch {
	case !ok && (len(m.val) == 0 || m.val[0] != '-' && !isDigit(m.val[0])):
		d.fail(m, "want an integer, got %s", jsonType(m.val))
	case !ok && allDigits(m.val):
		d.fail(m, "%s is out of range (at most 2^53-1)", quoteShort(m.val))
	case !ok:
		d.fail(m, "want a non-negative integer without fraction or exponent, got %s", quoteShort(m.val))
	case n > MaxInteger:
		d.fail(m, "%d is out of range (at most 2^53-1)", n)
	default:
		return n
	}
	return 0
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if !isDigit(c) {
			return false
		}
	}
	return len(b) > 0
}

// bool returns member m as a boolean.
func (d *decoder) bool(m member) bool {
	if d.err != nil {
		return false
	}
	v, ok := rawBool(m.val)
	if !ok {
		d.fail(m, "want true or false, got %s", jsonType(m.val))
	}
	return v
}

// time returns member m, Unix milliseconds, as a UTC time.
func (d *decoder) time(m member) time.Time {
	ms := d.uint(m)
	if d.err != nil {
		return time.Time{}
	}
	return time.UnixMilli(int64(ms)).UTC()
}

// ms returns member m, a count of milliseconds, as a duration.
func (d *decoder) ms(m member) time.Duration {
	n := d.uint(m)
	if n > math.MaxInt64/uint64(time.Millisecond) {
		d.fail(m, "%d milliseconds is out of range", n)
		return 0
	}
	return time.Duration(n) * time.Millisecond
}

// id returns member m as a canonical access.ID.
func (d *decoder) id(m member) access.ID {
	b := d.strBytes(m)
	if d.err != nil {
		return ""
	}
	if canonicalID(b) {
		return access.ID(b)
	}
	id, err := access.ParseID(string(b))
	if err != nil {
		d.fail(m, "%s is not a ULID (26 Crockford base32 characters): %w", quoteShort(b), access.ErrBadID)
		return ""
	}
	return id
}

// card returns member m, a decimal string, as a card number.
func (d *decoder) card(m member) access.CardNumber {
	b := d.strBytes(m)
	if d.err != nil {
		return 0
	}
	n, ok := parseCard(b)
	if !ok {
		d.fail(m, "%s is not a card number (a decimal string 1 to 18446744073709551615 without leading zeros): %w",
			quoteShort(b), access.ErrBadCardNumber)
	}
	return n
}

// parseCard parses a card number in canonical decimal form.
func parseCard(b []byte) (access.CardNumber, bool) {
	if len(b) == 0 || b[0] == '0' {
		return 0, false
	}
	n, ok := rawUint(b)
	return access.CardNumber(n), ok
}

// strings returns member m, an array of strings.
func (d *decoder) strings(m member) []string {
	var out []string
	d.array(m, func(i int, e member) {
		s := d.str(e)
		if d.err == nil {
			out = append(out, s)
		}
	})
	return out
}

// array calls fn for each element of member m, which must be an array,
// with the element as a member named m's key and its index.
func (d *decoder) array(m member, fn func(i int, e member)) {
	if d.err != nil {
		return
	}
	if len(m.val) == 0 || m.val[0] != '[' {
		d.fail(m, "want an array, got %s", jsonType(m.val))
		return
	}
	err := eachElem(m.val, m.off, func(i int, elem []byte, off int) error {
		fn(i, member{key: []byte(string(m.key) + "[" + strconv.Itoa(i) + "]"), val: elem, off: off})
		return d.err
	})
	if d.err == nil {
		d.err = err
	}
}

// crockfordUpper is the upper-case Crockford base32 alphabet of ULIDs.
const crockfordUpper = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// canonicalID reports whether b is a ULID in canonical (upper-case) form,
// as access.ParseID returns it; access.ParseID stays the authority for
// anything else, this is only a fast path that avoids its allocation.
func canonicalID(b []byte) bool {
	if len(b) != 26 || b[0] > '7' {
		return false
	}
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' && c != 'I' && c != 'L' && c != 'O' && c != 'U') {
			return false
		}
	}
	return true
}

// The checks below are shared by the Validate methods. Each returns an
// ErrBadValue error naming the JSON field.

// checkRequestID checks a request ID: 1 to MaxRequestID characters of
// A-Z a-z 0-9 . _ : -.
func checkRequestID(what, field, s string) error {
	if s == "" {
		return errorf(what, ErrMissingField, "field %q is required", field)
	}
	if len(s) > MaxRequestID {
		return badValue(what, field, "%d characters, more than %d", len(s), MaxRequestID)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(isNameChar(c) || c == '.' || c == ':') {
			return badValue(what, field, "%s: character %d is not one of A-Z a-z 0-9 . _ : -", strconv.Quote(s), i)
		}
	}
	return nil
}

// isNameChar reports whether c may appear in a topic level: A-Z a-z 0-9 _ -.
func isNameChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// checkName checks a site or device ID as used in a topic level.
func checkName(what, field, s string) error {
	if s == "" {
		return errorf(what, ErrMissingField, "field %q is required", field)
	}
	if !ValidName(s) {
		return badValue(what, field, "%s is not 1 to %d characters of A-Z a-z 0-9 _ -", quoteShort([]byte(s)), MaxNameLen)
	}
	return nil
}

// checkID checks that id is set and a canonical ULID.
func checkID(what, field string, id access.ID) error {
	if id == "" {
		return errorf(what, ErrMissingField, "field %q is required", field)
	}
	return checkOptionalID(what, field, id)
}

// checkOptionalID checks that id is empty or a canonical ULID.
func checkOptionalID(what, field string, id access.ID) error {
	if id != "" && !canonicalID([]byte(id)) {
		return badValue(what, field, "%s is not a canonical ULID (26 upper-case Crockford base32 characters): %w",
			quoteShort([]byte(id)), access.ErrBadID)
	}
	return nil
}

// checkCard checks that n is set.
func checkCard(what, field string, n access.CardNumber) error {
	if n == 0 {
		return errorf(what, ErrMissingField, "field %q is required: %w", field, access.ErrBadCardNumber)
	}
	return nil
}

// checkTime checks that t is set and within [MinTime, MaxTime).
func checkTime(what, field string, t time.Time) error {
	if t.IsZero() {
		return errorf(what, ErrMissingField, "field %q is required", field)
	}
	return checkOptionalTime(what, field, t)
}

// checkOptionalTime checks that t is zero or within [MinTime, MaxTime).
func checkOptionalTime(what, field string, t time.Time) error {
	if t.IsZero() {
		return nil
	}
	if t.Before(MinTime) {
		hint := ""
		if ms := t.UnixMilli(); ms >= 0 && ms < 1e11 {
			hint = " (seconds instead of milliseconds?)"
		}
		return badValue(what, field, "%d is before %s%s; times are Unix milliseconds",
			t.UnixMilli(), MinTime.Format(time.DateOnly), hint)
	}
	if !t.Before(MaxTime) {
		return badValue(what, field, "%d is not before %s; times are Unix milliseconds", t.UnixMilli(), MaxTime.Format(time.DateOnly))
	}
	return nil
}

// checkSeq checks an event sequence number: 1 to MaxInteger.
func checkSeq(what, field string, n uint64) error {
	if n == 0 {
		return errorf(what, ErrMissingField, "field %q is required (sequence numbers start at 1)", field)
	}
	if n > MaxInteger {
		return badValue(what, field, "%d is out of range (at most 2^53-1)", n)
	}
	return nil
}

// checkInteger checks that an optional integer is at most MaxInteger.
func checkInteger(what, field string, n uint64) error {
	if n > MaxInteger {
		return badValue(what, field, "%d is out of range (at most 2^53-1)", n)
	}
	return nil
}

// checkMillis checks that d is a duration from min to max that the wire can
// carry (whole milliseconds are sent, the rest is dropped).
func checkMillis(what, field string, d, min, max time.Duration) error {
	if d < min || d > max {
		return badValue(what, field, "%d ms is outside %d..%d ms", d.Milliseconds(), min.Milliseconds(), max.Milliseconds())
	}
	return nil
}

// checkText checks free text: valid UTF-8 without control characters, at
// most max bytes, and not empty when required.
func checkText(what, field, s string, max int, required bool) error {
	if s == "" {
		if required {
			return errorf(what, ErrMissingField, "field %q is required", field)
		}
		return nil
	}
	if len(s) > max {
		return badValue(what, field, "%d bytes, more than %d", len(s), max)
	}
	if !utf8.ValidString(s) {
		return badValue(what, field, "invalid UTF-8")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 {
			return badValue(what, field, "control character %U", r)
		}
	}
	return nil
}

// checkCode checks a machine-readable code: 1 to 64 characters of a-z 0-9 _.
func checkCode(what, field, s string) error {
	if s == "" {
		return errorf(what, ErrMissingField, "field %q is required", field)
	}
	if len(s) > 64 {
		return badValue(what, field, "%d characters, more than 64", len(s))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return badValue(what, field, "%s is not a code of a-z 0-9 _", quoteShort([]byte(s)))
		}
	}
	return nil
}

// checkCodes checks a list of codes of at most max entries without repeats.
func checkCodes(what, field string, codes []string, max int) error {
	if len(codes) > max {
		return badValue(what, field, "%d entries, more than %d", len(codes), max)
	}
	for i, c := range codes {
		f := field + "[" + strconv.Itoa(i) + "]"
		if err := checkCode(what, f, c); err != nil {
			return err
		}
		for _, p := range codes[:i] {
			if p == c {
				return badValue(what, f, "%q is listed twice", c)
			}
		}
	}
	return nil
}

package mqttproto

import (
	"bytes"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/access"
)

// This file holds the strict JSON profile every payload follows, read and
// written without reflection so that decoding a tap stays cheap and every
// rule is explicit:
//
//   - the payload is exactly one JSON object, with optional white space
//     around it and nothing else;
//   - object keys are 1 to maxKeyLen lower-case ASCII letters, digits and
//     '_', written without escapes, and unique within their object, so that
//     a key can neither be smuggled past a check by case folding nor be
//     given twice with the second value winning;
//   - null is not allowed anywhere (an optional field is left out);
//   - strings are valid UTF-8 without raw control characters, and \u
//     escapes of surrogates come in pairs;
//   - arrays and objects nest at most maxDepth deep, and an object has at
//     most maxMembers members.

const (
	// maxDepth is the deepest nesting of objects and arrays in a payload,
	// the outer object being depth 1.
	maxDepth = 6
	// maxMembers is the largest number of members of one object.
	maxMembers = 16
	// maxKeyLen is the longest object key, in bytes.
	maxKeyLen = 32
)

// member is one member of a JSON object: its key (without quotes), its raw
// value and the offset of the value in the payload.
type member struct {
	key []byte
	val []byte
	off int
}

// object holds the members of one JSON object in order. It lives on the
// stack of its decoder, so parsing allocates nothing.
type object struct {
	n  int
	ms [maxMembers]member
}

// members returns the members of o.
func (o *object) members() []member { return o.ms[:o.n] }

// get returns the member of o with key k.
func (o *object) get(k string) (member, bool) {
	for _, m := range o.ms[:o.n] {
		if string(m.key) == k {
			return m, true
		}
	}
	return member{}, false
}

// has reports whether o has a member with key k.
func (o *object) has(k string) bool {
	_, ok := o.get(k)
	return ok
}

// jsonError is a violation of the JSON profile at byte offset off of the
// payload.
type jsonError struct {
	off int
	msg string
}

// scanner checks JSON text against the profile. base is the offset of b in
// the payload, so that errors in nested values report payload offsets.
type scanner struct {
	b    []byte
	i    int
	base int
}

func (s *scanner) fail(msg string) *jsonError { return &jsonError{off: s.base + s.i, msg: msg} }

func (s *scanner) eof() *jsonError { return s.fail("unexpected end of payload (truncated?)") }

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// parseObject checks that b is exactly one JSON object, optionally
// surrounded by white space, nested depth-1 levels deep in the payload at
// offset base, and stores its members in o.
func parseObject(b []byte, base, depth int, o *object) *jsonError {
	s := scanner{b: b, base: base}
	s.ws()
	if s.i >= len(b) {
		if len(b) == 0 {
			return s.fail("empty payload")
		}
		return s.eof()
	}
	if b[s.i] != '{' {
		return s.fail("want a JSON object")
	}
	if err := s.object(depth, o); err != nil {
		return err
	}
	s.ws()
	if s.i != len(b) {
		return s.fail("data after the end of the object")
	}
	return nil
}

// value checks the value at s.i, which is nested inside depth levels.
func (s *scanner) value(depth int) *jsonError {
	if s.i >= len(s.b) {
		return s.eof()
	}
	switch c := s.b[s.i]; {
	case c == '{':
		var o object
		return s.object(depth+1, &o)
	case c == '[':
		return s.array(depth + 1)
	case c == '"':
		return s.str()
	case c == '-' || c >= '0' && c <= '9':
		return s.num()
	case c == 't':
		return s.lit("true")
	case c == 'f':
		return s.lit("false")
	case c == 'n':
		return s.fail("null is not allowed: leave an optional field out instead")
	default:
		return s.fail("unexpected character " + strconv.QuoteRune(rune(c)))
	}
}

// object checks the object at s.i (at depth depth) and stores its members
// in o.
func (s *scanner) object(depth int, o *object) *jsonError {
	if depth > maxDepth {
		return s.fail("objects and arrays nested more than " + strconv.Itoa(maxDepth) + " deep")
	}
	s.i++ // '{'
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return nil
	}
	for {
		s.ws()
		if s.i >= len(s.b) {
			return s.eof()
		}
		if s.b[s.i] != '"' {
			return s.fail("want a quoted object key")
		}
		off := s.i
		k, err := s.key()
		if err != nil {
			return err
		}
		for _, m := range o.ms[:o.n] {
			if bytes.Equal(m.key, k) {
				return &jsonError{off: s.base + off, msg: "duplicate key \"" + string(k) + "\""}
			}
		}
		if o.n == maxMembers {
			return &jsonError{off: s.base + off, msg: "more than " + strconv.Itoa(maxMembers) + " members in one object"}
		}
		s.ws()
		if s.i >= len(s.b) {
			return s.eof()
		}
		if s.b[s.i] != ':' {
			return s.fail("want ':' after an object key")
		}
		s.i++
		s.ws()
		start := s.i
		if err := s.value(depth); err != nil {
			return err
		}
		o.ms[o.n] = member{key: k, val: s.b[start:s.i], off: s.base + start}
		o.n++
		s.ws()
		if s.i >= len(s.b) {
			return s.eof()
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return s.fail("want ',' or '}' after an object member")
		}
	}
}

// key reads the object key at s.i and returns it without its quotes.
func (s *scanner) key() ([]byte, *jsonError) {
	start := s.i + 1
	for j := start; j < len(s.b); j++ {
		c := s.b[j]
		if c == '"' {
			if j == start {
				return nil, s.fail("empty object key")
			}
			s.i = j + 1
			return s.b[start:j], nil
		}
		if j-start == maxKeyLen {
			return nil, s.fail("object key longer than " + strconv.Itoa(maxKeyLen) + " bytes")
		}
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			shown := s.b[start:]
			if q := bytes.IndexByte(shown, '"'); q >= 0 {
				shown = shown[:q]
			}
			if len(shown) > maxKeyLen {
				shown = shown[:maxKeyLen]
			}
			return nil, &jsonError{off: s.base + j, msg: "object key " + strconv.Quote(string(shown)) +
				": keys are lower-case ASCII letters, digits and '_' without escapes"}
		}
	}
	s.i = len(s.b)
	return nil, s.eof()
}

// array checks the array at s.i (at depth depth).
func (s *scanner) array(depth int) *jsonError {
	if depth > maxDepth {
		return s.fail("objects and arrays nested more than " + strconv.Itoa(maxDepth) + " deep")
	}
	s.i++ // '['
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		return nil
	}
	for {
		s.ws()
		if err := s.value(depth); err != nil {
			return err
		}
		s.ws()
		if s.i >= len(s.b) {
			return s.eof()
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil
		default:
			return s.fail("want ',' or ']' after an array element")
		}
	}
}

// str checks the string at s.i.
func (s *scanner) str() *jsonError {
	s.i++ // opening quote
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return nil
		case c == '\\':
			if err := s.escape(); err != nil {
				return err
			}
		case c < 0x20:
			return s.fail("control character in a string (escape it)")
		case c < utf8.RuneSelf:
			s.i++
		default:
			r, n := utf8.DecodeRune(s.b[s.i:])
			if r == utf8.RuneError && n <= 1 {
				return s.fail("invalid UTF-8 in a string")
			}
			s.i += n
		}
	}
	return s.eof()
}

// escape checks the escape sequence at s.i.
func (s *scanner) escape() *jsonError {
	if s.i+1 >= len(s.b) {
		return s.eof()
	}
	switch s.b[s.i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		s.i += 2
		return nil
	case 'u':
	default:
		return s.fail("invalid escape sequence in a string")
	}
	r, ok := hex4(s.b, s.i+2)
	if !ok {
		return s.fail("invalid \\u escape in a string")
	}
	if !utf16.IsSurrogate(r) {
		s.i += 6
		return nil
	}
	if r >= 0xdc00 {
		return s.fail("unpaired surrogate in a \\u escape")
	}
	if s.i+7 >= len(s.b) || s.b[s.i+6] != '\\' || s.b[s.i+7] != 'u' {
		return s.fail("unpaired surrogate in a \\u escape")
	}
	r2, ok := hex4(s.b, s.i+8)
	if !ok || r2 < 0xdc00 || r2 > 0xdfff {
		return s.fail("unpaired surrogate in a \\u escape")
	}
	s.i += 12
	return nil
}

// hex4 decodes the four hex digits at b[i:i+4].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
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
		r = r<<4 | rune(c)
	}
	return r, true
}

// num checks the number at s.i.
func (s *scanner) num() *jsonError {
	if s.b[s.i] == '-' {
		s.i++
	}
	if s.i >= len(s.b) {
		return s.eof()
	}
	switch c := s.b[s.i]; {
	case c == '0':
		s.i++
		if s.i < len(s.b) && isDigit(s.b[s.i]) {
			return s.fail("number with a leading zero")
		}
	case isDigit(c):
		for s.i < len(s.b) && isDigit(s.b[s.i]) {
			s.i++
		}
	default:
		return s.fail("malformed number")
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if s.i >= len(s.b) || !isDigit(s.b[s.i]) {
			return s.fail("malformed number")
		}
		for s.i < len(s.b) && isDigit(s.b[s.i]) {
			s.i++
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if s.i >= len(s.b) || !isDigit(s.b[s.i]) {
			return s.fail("malformed number")
		}
		for s.i < len(s.b) && isDigit(s.b[s.i]) {
			s.i++
		}
	}
	return nil
}

// lit checks the literal word at s.i.
func (s *scanner) lit(word string) *jsonError {
	if len(s.b)-s.i < len(word) {
		if string(s.b[s.i:]) == word[:len(s.b)-s.i] {
			return s.eof()
		}
		return s.fail("malformed literal")
	}
	if string(s.b[s.i:s.i+len(word)]) != word {
		return s.fail("malformed literal")
	}
	s.i += len(word)
	return nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// eachElem calls fn for every element of the raw array val, which starts at
// offset off in the payload, with the element's index, raw text and offset.
// val must already have passed the scanner.
func eachElem(val []byte, off int, fn func(i int, elem []byte, off int) error) error {
	s := scanner{b: val, base: off}
	s.i = 1
	s.ws()
	if s.i < len(val) && val[s.i] == ']' {
		return nil
	}
	for i := 0; ; i++ {
		s.ws()
		start := s.i
		if je := s.value(1); je != nil {
			// Unreachable for an array that passed the scanner.
			return access.Errorf(access.Invalid, "mqttproto: at byte %d: %s: %w", je.off, je.msg, ErrSyntax)
		}
		if err := fn(i, val[start:s.i], off+start); err != nil {
			return err
		}
		s.ws()
		if s.i >= len(val) || val[s.i] == ']' {
			return nil
		}
		s.i++ // ','
	}
}

// jsonType names the JSON type of the raw value val, for error messages.
func jsonType(val []byte) string {
	if len(val) == 0 {
		return "nothing"
	}
	switch val[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	default:
		return "a number"
	}
}

// rawUint returns the raw number val as an unsigned integer. It reports
// false for anything but a plain non-negative integer within 64 bits.
func rawUint(val []byte) (uint64, bool) {
	if len(val) == 0 || len(val) > 20 {
		return 0, false
	}
	var n uint64
	for _, c := range val {
		if !isDigit(c) {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (1<<64-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// rawBool returns the raw literal val as a boolean.
func rawBool(val []byte) (v, ok bool) {
	switch string(val) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

// rawString returns the content of the raw string val with its escapes
// decoded. It reports false when val is not a string. The result aliases
// val when val has no escapes.
func rawString(val []byte) ([]byte, bool) {
	if len(val) < 2 || val[0] != '"' {
		return nil, false
	}
	in := val[1 : len(val)-1]
	if bytes.IndexByte(in, '\\') < 0 {
		return in, true
	}
	out := make([]byte, 0, len(in))
	for i := 0; i < len(in); {
		c := in[i]
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		switch e := in[i+1]; e {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, _ := hex4(in, i+2)
			if utf16.IsSurrogate(r) {
				r2, _ := hex4(in, i+8)
				r = utf16.DecodeRune(r, r2)
				i += 6
			}
			out = utf8.AppendRune(out, r)
			i += 6
			continue
		default: // '"', '\\', '/'
			out = append(out, e)
		}
		i += 2
	}
	return out, true
}

// enc writes a JSON object. Values are separated automatically: a value
// written after another one gets a comma.
type enc struct{ b []byte }

func newEnc() enc { return enc{b: make([]byte, 0, 256)} }

func (e *enc) sep() {
	if n := len(e.b); n > 0 {
		switch e.b[n-1] {
		case '{', '[', ':':
		default:
			e.b = append(e.b, ',')
		}
	}
}

func (e *enc) open()       { e.sep(); e.b = append(e.b, '{') }
func (e *enc) close()      { e.b = append(e.b, '}') }
func (e *enc) openArray()  { e.sep(); e.b = append(e.b, '[') }
func (e *enc) closeArray() { e.b = append(e.b, ']') }

// key writes an object key; k must need no escaping.
func (e *enc) key(k string) {
	e.sep()
	e.b = append(e.b, '"')
	e.b = append(e.b, k...)
	e.b = append(e.b, '"', ':')
}

// str writes s as a JSON string, escaping it as needed.
func (e *enc) str(s string) {
	e.sep()
	e.b = appendQuoted(e.b, s)
}

func (e *enc) uint(n uint64) { e.sep(); e.b = strconv.AppendUint(e.b, n, 10) }

func (e *enc) bool(v bool) { e.sep(); e.b = strconv.AppendBool(e.b, v) }

// The field writers write one member each.

func (e *enc) strField(k, v string)         { e.key(k); e.str(v) }
func (e *enc) uintField(k string, n uint64) { e.key(k); e.uint(n) }
func (e *enc) boolField(k string, v bool)   { e.key(k); e.bool(v) }

// cardField writes a card number as a quoted decimal string.
func (e *enc) cardField(k string, n uint64) {
	e.key(k)
	e.b = append(e.b, '"')
	e.b = strconv.AppendUint(e.b, n, 10)
	e.b = append(e.b, '"')
}

// timeField writes t as Unix milliseconds.
func (e *enc) timeField(k string, t time.Time) {
	e.key(k)
	e.b = strconv.AppendInt(e.b, t.UnixMilli(), 10)
}

// msField writes d as whole milliseconds.
func (e *enc) msField(k string, d time.Duration) {
	e.key(k)
	e.b = strconv.AppendInt(e.b, d.Milliseconds(), 10)
}

const hexDigits = "0123456789abcdef"

// appendQuoted appends s, which must be valid UTF-8, to b as a JSON string.
func appendQuoted(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

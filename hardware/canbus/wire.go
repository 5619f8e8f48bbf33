package canbus

import (
	"encoding/binary"
	"math"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

// The primitives of message bodies. Integers are big-endian; uv is an
// unsigned LEB128 varint (7 bits per byte, least significant group first,
// high bit set on every byte but the last) in its shortest form; a time is
// Unix milliseconds in 6 bytes; an ID is a ULID's 128-bit value in 16 bytes.

// writer appends the primitives to b.
type writer struct{ b []byte }

func (w *writer) u8(v byte)     { w.b = append(w.b, v) }
func (w *writer) u16(v uint16)  { w.b = binary.BigEndian.AppendUint16(w.b, v) }
func (w *writer) u32(v uint32)  { w.b = binary.BigEndian.AppendUint32(w.b, v) }
func (w *writer) uv(v uint64)   { w.b = binary.AppendUvarint(w.b, v) }
func (w *writer) str8(s string) { w.u8(byte(len(s))); w.b = append(w.b, s...) }
func (w *writer) str16(s string) {
	w.u16(uint16(len(s)))
	w.b = append(w.b, s...)
}

func (w *writer) u48(v uint64) {
	w.b = append(w.b, byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// time appends t as Unix milliseconds; callers have validated t.
func (w *writer) time(t time.Time) { w.u48(uint64(t.UnixMilli())) }

// id appends a canonical ULID, validated by the caller, as 16 bytes.
func (w *writer) id(id access.ID) {
	var hi, lo uint64
	for i := 0; i < len(id); i++ {
		v := uint64(crockfordValue[id[i]] - 1)
		hi = hi<<5 | lo>>59
		lo = lo<<5 | v
	}
	w.b = binary.BigEndian.AppendUint64(w.b, hi)
	w.b = binary.BigEndian.AppendUint64(w.b, lo)
}

// crockford is the alphabet of ULIDs; crockfordValue maps a canonical
// character to its value plus one (zero: not canonical).
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

var crockfordValue = func() (t [256]byte) {
	for i := 0; i < len(crockford); i++ {
		t[crockford[i]] = byte(i) + 1
	}
	return t
}()

// idFromBytes returns the canonical ULID of a 128-bit value.
func idFromBytes(b []byte) access.ID {
	hi, lo := binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])
	var s [26]byte
	for i := 25; i >= 0; i-- {
		s[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return access.ID(s[:])
}

// reader reads the primitives from b. It keeps the first error and then
// returns zero values, so a decoder reads every field and checks once.
type reader struct {
	what string // the message, for errors: "tap"
	b    []byte
	off  int
	err  error
}

// fail records an ErrBadMessage error about field unless r has one.
func (r *reader) fail(field, format string, args ...any) {
	if r.err == nil {
		r.err = errorf(ErrBadMessage, "%s: field %s at byte %d: "+format, append([]any{r.what, field, r.off}, args...)...)
	}
}

// take returns the next n bytes, or nil after an error or at the end.
func (r *reader) take(field string, n int) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b)-r.off {
		r.fail(field, "truncated: %d bytes needed, %d left", n, len(r.b)-r.off)
		return nil
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p
}

func (r *reader) u8(field string) byte {
	if p := r.take(field, 1); p != nil {
		return p[0]
	}
	return 0
}

func (r *reader) u16(field string) uint16 {
	if p := r.take(field, 2); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (r *reader) u32(field string) uint32 {
	if p := r.take(field, 4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (r *reader) u48(field string) uint64 {
	p := r.take(field, 6)
	if p == nil {
		return 0
	}
	return uint64(p[0])<<40 | uint64(p[1])<<32 | uint64(p[2])<<24 | uint64(p[3])<<16 | uint64(p[4])<<8 | uint64(p[5])
}

// uv reads a varint in its shortest form.
func (r *reader) uv(field string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.off:])
	switch {
	case n == 0:
		r.fail(field, "truncated varint")
		return 0
	case n < 0:
		r.fail(field, "varint overflows 64 bits")
		return 0
	case n != varintLen(v):
		r.fail(field, "varint of %d bytes is not in its shortest form (%d)", n, varintLen(v))
		return 0
	}
	r.off += n
	return v
}

// varintLen returns the length of v's shortest varint.
func varintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// nonZero reads a varint that must not be zero (a field whose presence
// flag is set).
func (r *reader) nonZero(field string) uint64 {
	v := r.uv(field)
	if r.err == nil && v == 0 {
		r.fail(field, "zero, but its presence flag is set")
	}
	return v
}

// time reads Unix milliseconds as a UTC time; the decoder's Validate
// checks the range.
func (r *reader) time(field string) time.Time {
	v := r.u48(field)
	if r.err != nil {
		return time.Time{}
	}
	return time.UnixMilli(int64(v)).UTC()
}

// ms reads a duration in milliseconds as a varint.
func (r *reader) ms(field string) time.Duration {
	v := r.uv(field)
	if v > math.MaxInt64/uint64(time.Millisecond) {
		r.fail(field, "%d milliseconds is out of range", v)
		return 0
	}
	return time.Duration(v) * time.Millisecond
}

func (r *reader) id(field string) access.ID {
	p := r.take(field, 16)
	if p == nil {
		return ""
	}
	return idFromBytes(p)
}

// str reads a string of n bytes (1 to max) whose length was read already.
func (r *reader) str(field string, n, max int) string {
	if r.err != nil {
		return ""
	}
	if n < 1 || n > max {
		r.fail(field, "length %d is outside 1..%d", n, max)
		return ""
	}
	return string(r.take(field, n))
}

func (r *reader) str8(field string, max int) string  { return r.str(field, int(r.u8(field)), max) }
func (r *reader) str16(field string, max int) string { return r.str(field, int(r.u16(field)), max) }

// flags reads a flags byte and refuses bits outside allowed.
func (r *reader) flags(field string, allowed byte) byte {
	v := r.u8(field)
	if r.err == nil && v&^allowed != 0 {
		r.fail(field, "reserved bits 0x%02x set", v&^allowed)
	}
	return v
}

// end refuses bytes after the last field.
func (r *reader) end() error {
	if r.err == nil && r.off != len(r.b) {
		r.err = errorf(ErrBadMessage, "%s: %d bytes left after the last field", r.what, len(r.b)-r.off)
	}
	return r.err
}

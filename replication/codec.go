package replication

import (
	"encoding/binary"
	"math/bits"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/access"
)

// This file holds the helpers of the binary encodings. Every encoding is
// canonical: a value has exactly one encoding, and decoders accept only
// that one (minimal varints, no trailing bytes, fields in range), so
// decode-then-encode gives back the input bytes.

// appendUvarint appends v as a minimal unsigned varint.
func appendUvarint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

// appendString appends s preceded by its length as a varint.
func appendString(b []byte, s string) []byte {
	b = appendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads a binary encoding, remembering the first error; once it has
// failed, every read returns a zero value.
type decoder struct {
	what string // the type being decoded, for error messages
	b    []byte
	err  error
}

// fail records a decoding error unless one is recorded already.
func (d *decoder) fail(why string) {
	if d.err == nil {
		d.err = access.Errorf(access.Invalid, "%s: %s: %w", d.what, why, ErrBadEncoding)
	}
	d.b = nil
}

// failErr records err unless an error is recorded already.
func (d *decoder) failErr(err error) {
	if d.err == nil {
		d.err = access.Errorf(access.Invalid, "%s: %w", d.what, err)
	}
	d.b = nil
}

// byte reads one byte.
func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail("truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// fixed reads n bytes.
func (d *decoder) fixed(n int) []byte {
	if len(d.b) < n {
		d.fail("truncated")
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

// uvarint reads a minimal unsigned varint.
func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("malformed varint")
		return 0
	}
	if n != uvarintLen(v) {
		d.fail("non-minimal varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// uvarintLen returns the length of v's minimal varint encoding.
func uvarintLen(v uint64) int {
	if v == 0 {
		return 1
	}
	return (bits.Len64(v) + 6) / 7
}

// count reads a varint count of at most max.
func (d *decoder) count(max int, what string) int {
	v := d.uvarint()
	if v > uint64(max) {
		d.fail(what + " too large")
		return 0
	}
	return int(v)
}

// string reads a length-prefixed UTF-8 string of at most max bytes.
func (d *decoder) string(max int, what string) string {
	n := d.count(max, what)
	p := d.fixed(n)
	if d.err != nil {
		return ""
	}
	if !utf8.Valid(p) {
		d.fail(what + " not UTF-8")
		return ""
	}
	return string(p)
}

// stamp reads a stamp in its binary form.
func (d *decoder) stamp() Stamp {
	if d.err != nil {
		return Stamp{}
	}
	s, rest, err := decodeStamp(d.b)
	if err != nil {
		d.failErr(err)
		return Stamp{}
	}
	d.b = rest
	return s
}

// finish records an error when bytes are left over and returns the error.
func (d *decoder) finish() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	return d.err
}

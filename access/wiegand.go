package access

import (
	"math/bits"
	"strconv"
	"strings"
)

// WiegandFormat is a supported Wiegand card data format. The zero value is
// not a valid format.
//
// A frame of n bits is held in the low n bits of a uint64 with the first bit
// on the wire as the most significant: wire position p (1-based, 1 sent
// first) is value bit n-p. In every supported format the card number occupies
// the value bits just above the last parity bit and the facility (or
// company) code the bits just above the card number.
//
// The layouts below show one character per wire position, position 1 on the
// left. The first line names the fields (E even parity, O odd parity, F
// facility or company code, C card number); each following line marks with X
// the positions one parity bit covers.
//
// H10301, 26 bits (the open "standard 26-bit" format):
//
//	EFFFFFFFFCCCCCCCCCCCCCCCCO   F: 8 bits (0-255), C: 16 bits (0-65535)
//	EXXXXXXXXXXXX.............   position 1: even parity over 2-13
//	.............XXXXXXXXXXXXO   position 26: odd parity over 14-25
//
// Corporate 1000, 35 bits (HID's format reserved to one end user):
//
//	OEFFFFFFFFFFFFCCCCCCCCCCCCCCCCCCCCO   F: company ID, 12 bits (0-4095)
//	                                      C: card number, 20 bits (0-1048575)
//	.EXX.XX.XX.XX.XX.XX.XX.XX.XX.XX.XX.   position 2: even parity over 3-34
//	                                      except 5, 8, ..., 32 (p mod 3 = 2)
//	.XX.XX.XX.XX.XX.XX.XX.XX.XX.XX.XX.O   position 35: odd parity over 2-33
//	                                      except 4, 7, ..., 31 (p mod 3 = 1)
//	OXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX   position 1: odd parity over 2-35
//
// Position 2 is computed first, then position 35 (which covers position 2),
// then position 1 (which covers every other position, so any single flipped
// bit is detected).
//
// H10304, 37 bits (the open 37-bit format with facility code):
//
//	EFFFFFFFFFFFFFFFFCCCCCCCCCCCCCCCCCCCO   F: 16 bits (0-65535)
//	                                        C: 19 bits (0-524287)
//	EXXXXXXXXXXXXXXXXXX..................   position 1: even parity over 2-19
//	..................XXXXXXXXXXXXXXXXXXO   position 37: odd parity over 19-36
//
// Position 19, the middle data bit, is covered by both parity bits.
type WiegandFormat uint8

// The supported Wiegand formats.
const (
	// H10301 is the 26-bit format: 8-bit facility, 16-bit card.
	H10301 WiegandFormat = iota + 1
	// Corporate1000 is the 35-bit HID Corporate 1000 format: 12-bit
	// company ID, 20-bit card.
	Corporate1000
	// H10304 is the 37-bit format: 16-bit facility, 19-bit card.
	H10304
)

// wiegandLayout describes one format: its length, its field widths and its
// parity rules in the order they are computed.
type wiegandLayout struct {
	name     string
	n        int
	facBits  int
	cardBits int
	parity   []parityRule
}

// parityRule says that the bit at wire position pos makes the number of
// ones over itself and the positions in mask even (odd false) or odd.
type parityRule struct {
	pos  int
	mask uint64 // value bits covered, excluding the parity bit itself
	odd  bool
}

// wiegandLayouts is indexed by WiegandFormat.
var wiegandLayouts = []wiegandLayout{
	H10301: {
		name: "H10301", n: 26, facBits: 8, cardBits: 16,
		parity: []parityRule{
			{pos: 1, mask: positions(26, 2, 13, nil)},
			{pos: 26, mask: positions(26, 14, 25, nil), odd: true},
		},
	},
	Corporate1000: {
		name: "Corporate1000", n: 35, facBits: 12, cardBits: 20,
		parity: []parityRule{
			{pos: 2, mask: positions(35, 3, 34, func(p int) bool { return p%3 != 2 })},
			{pos: 35, mask: positions(35, 2, 33, func(p int) bool { return p%3 != 1 }), odd: true},
			{pos: 1, mask: positions(35, 2, 35, nil), odd: true},
		},
	},
	H10304: {
		name: "H10304", n: 37, facBits: 16, cardBits: 19,
		parity: []parityRule{
			{pos: 1, mask: positions(37, 2, 19, nil)},
			{pos: 37, mask: positions(37, 19, 36, nil), odd: true},
		},
	},
}

// positions returns the value-bit mask of wire positions from..to of an
// n-bit frame for which keep returns true (all of them when keep is nil).
func positions(n, from, to int, keep func(int) bool) uint64 {
	var m uint64
	for p := from; p <= to; p++ {
		if keep == nil || keep(p) {
			m |= posBit(n, p)
		}
	}
	return m
}

// posBit returns the value bit of wire position p in an n-bit frame.
func posBit(n, p int) uint64 { return 1 << (n - p) }

// layout returns f's layout, or false for an unknown format.
func (f WiegandFormat) layout() (*wiegandLayout, bool) {
	if f < H10301 || f > H10304 {
		return nil, false
	}
	return &wiegandLayouts[f], true
}

// Bits returns the frame length of f in bits, or 0 for an unknown format.
func (f WiegandFormat) Bits() int {
	if l, ok := f.layout(); ok {
		return l.n
	}
	return 0
}

// String returns "H10301", "Corporate1000" or "H10304".
func (f WiegandFormat) String() string {
	if l, ok := f.layout(); ok {
		return l.name
	}
	return "unknown(" + strconv.Itoa(int(f)) + ")"
}

// ParseWiegandFormat parses the String form of a format. It returns an
// Invalid error wrapping ErrUnknownFormat for any other text.
func ParseWiegandFormat(s string) (WiegandFormat, error) {
	for f := H10301; f <= H10304; f++ {
		if wiegandLayouts[f].name == s {
			return f, nil
		}
	}
	return 0, Errorf(Invalid, "wiegand format %q: %w", s, ErrUnknownFormat)
}

// WiegandCredential is the content of a Wiegand card: its format, facility
// code (the company ID for Corporate 1000) and card number.
type WiegandCredential struct {
	Format   WiegandFormat
	Facility uint32
	Card     uint64
}

// Layout of CardNumber values made from Wiegand credentials.
const (
	numberCardBits     = 24 // above the widest card field (20 bits)
	numberFacilityBits = 24 // above the widest facility field (16 bits)
	numberFormatShift  = numberCardBits + numberFacilityBits
)

// Number returns the platform card number of c: the format in bits 48 and
// up, the facility code in bits 24-47 and the card number in bits 0-23,
//
//	Number = Format<<48 | Facility<<24 | Card
//
// so credentials differing in format, facility or card never share a
// number, and the number is never zero. It does not check c's ranges; use
// EncodeWiegand or WiegandFromNumber for that. For example H10301 facility 1
// card 1 is 1<<48 | 1<<24 | 1 = 281474993487873.
func (c WiegandCredential) Number() CardNumber {
	return CardNumber(uint64(c.Format)<<numberFormatShift |
		(uint64(c.Facility)&(1<<numberFacilityBits-1))<<numberCardBits |
		c.Card&(1<<numberCardBits-1))
}

// WiegandFromNumber returns the Wiegand credential whose Number is n. It
// returns an Invalid error wrapping ErrUnknownFormat when n's format bits name
// no format, and one wrapping ErrOutOfRange when its facility or card bits do
// not fit that format.
func WiegandFromNumber(n CardNumber) (WiegandCredential, error) {
	c := WiegandCredential{
		Format:   WiegandFormat(uint64(n) >> numberFormatShift),
		Facility: uint32(uint64(n) >> numberCardBits & (1<<numberFacilityBits - 1)),
		Card:     uint64(n) & (1<<numberCardBits - 1),
	}
	if uint64(n)>>numberFormatShift > uint64(H10304) {
		return WiegandCredential{}, Errorf(Invalid, "card number %d: %w", uint64(n), ErrUnknownFormat)
	}
	if err := c.check(); err != nil {
		return WiegandCredential{}, err
	}
	return c, nil
}

// String returns c as "FORMAT:FACILITY:CARD", such as "H10301:1:1".
func (c WiegandCredential) String() string {
	return c.Format.String() + ":" + strconv.FormatUint(uint64(c.Facility), 10) + ":" + strconv.FormatUint(c.Card, 10)
}

// ParseWiegandCredential parses the String form of a credential and checks
// that its values fit its format. It returns an Invalid error wrapping
// ErrUnknownFormat for an unknown format, ErrOutOfRange for values that do
// not fit, and an Invalid error for any other malformed text.
func ParseWiegandCredential(s string) (WiegandCredential, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return WiegandCredential{}, Errorf(Invalid, "wiegand credential %q: want FORMAT:FACILITY:CARD", s)
	}
	f, err := ParseWiegandFormat(parts[0])
	if err != nil {
		return WiegandCredential{}, err
	}
	fac, err1 := strconv.ParseUint(parts[1], 10, 32)
	card, err2 := strconv.ParseUint(parts[2], 10, 64)
	if err1 != nil || err2 != nil {
		return WiegandCredential{}, Errorf(Invalid, "wiegand credential %q: facility and card must be decimal numbers", s)
	}
	c := WiegandCredential{Format: f, Facility: uint32(fac), Card: card}
	if err := c.check(); err != nil {
		return WiegandCredential{}, err
	}
	return c, nil
}

// check returns an Invalid error when c's format is unknown or its values do
// not fit the format.
func (c WiegandCredential) check() error {
	l, ok := c.Format.layout()
	if !ok {
		return Errorf(Invalid, "wiegand format %d: %w", c.Format, ErrUnknownFormat)
	}
	if uint64(c.Facility) >= 1<<l.facBits {
		return Errorf(Invalid, "%s facility %d exceeds %d bits: %w", l.name, c.Facility, l.facBits, ErrOutOfRange)
	}
	if c.Card >= 1<<l.cardBits {
		return Errorf(Invalid, "%s card %d exceeds %d bits: %w", l.name, c.Card, l.cardBits, ErrOutOfRange)
	}
	return nil
}

// EncodeWiegand returns the frame of c, in the low n bits of the result with
// the first bit on the wire most significant, where n is the format's length.
// It returns an Invalid error wrapping ErrUnknownFormat for an unknown format
// and one wrapping ErrOutOfRange when the facility or card does not fit.
func EncodeWiegand(c WiegandCredential) (frame uint64, n int, err error) {
	if err := c.check(); err != nil {
		return 0, 0, opError("access.EncodeWiegand", Invalid, err)
	}
	l, _ := c.Format.layout()
	frame = c.Card<<1 | uint64(c.Facility)<<(1+l.cardBits)
	for _, r := range l.parity {
		ones := bits.OnesCount64(frame & r.mask)
		if (ones%2 == 1) != r.odd {
			frame |= posBit(l.n, r.pos)
		}
	}
	return frame, l.n, nil
}

// DecodeWiegand decodes an n-bit frame held in the low n bits of frame, the
// first bit on the wire most significant. The format is chosen by n. It
// returns an Invalid error wrapping ErrUnknownFormat when no supported format
// has n bits, one wrapping ErrBadLength when frame has bits set above bit
// n-1, and one wrapping ErrBadParity when a parity bit does not match.
func DecodeWiegand(frame uint64, n int) (WiegandCredential, error) {
	var f WiegandFormat
	for g := H10301; g <= H10304; g++ {
		if wiegandLayouts[g].n == n {
			f = g
		}
	}
	if f == 0 {
		return WiegandCredential{}, Errorf(Invalid, "access.DecodeWiegand: %d bits: %w", n, ErrUnknownFormat)
	}
	l := &wiegandLayouts[f]
	if frame>>l.n != 0 {
		return WiegandCredential{}, Errorf(Invalid, "access.DecodeWiegand: bits set above bit %d of a %d-bit frame: %w", l.n, l.n, ErrBadLength)
	}
	for _, r := range l.parity {
		ones := bits.OnesCount64(frame & (r.mask | posBit(l.n, r.pos)))
		if (ones%2 == 1) != r.odd {
			return WiegandCredential{}, Errorf(Invalid, "access.DecodeWiegand: %s parity bit %d: %w", l.name, r.pos, ErrBadParity)
		}
	}
	return WiegandCredential{
		Format:   f,
		Facility: uint32(frame >> (1 + l.cardBits) & (1<<l.facBits - 1)),
		Card:     frame >> 1 & (1<<l.cardBits - 1),
	}, nil
}

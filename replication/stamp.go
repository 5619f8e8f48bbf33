package replication

import (
	"cmp"
	"encoding/binary"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

// MaxOriginLen is the longest origin name, in bytes.
const MaxOriginLen = 64

// Stamp is a hybrid logical clock timestamp: the wall time in Unix
// nanoseconds at which its origin made it, a counter that orders stamps made
// within one wall value, and the origin (a site ID or "hub") that made it.
// Stamps are totally ordered by (Wall, Counter, Origin), so two stamps are
// equal only when one origin made both, and an origin never makes the same
// stamp twice (see Clock). The zero Stamp is below every other stamp and
// means "none".
type Stamp struct {
	Wall    int64
	Counter uint32
	Origin  string
}

// IsZero reports whether s is the zero stamp.
func (s Stamp) IsZero() bool { return s == Stamp{} }

// Compare returns -1, 0 or +1 as s is before, equal to or after t in the
// total order of stamps: by wall time, then counter, then origin.
func (s Stamp) Compare(t Stamp) int {
	if c := cmp.Compare(s.Wall, t.Wall); c != 0 {
		return c
	}
	if c := cmp.Compare(s.Counter, t.Counter); c != 0 {
		return c
	}
	return strings.Compare(s.Origin, t.Origin)
}

// Less reports whether s is before t.
func (s Stamp) Less(t Stamp) bool { return s.Compare(t) < 0 }

// Time returns the wall time of s in UTC.
func (s Stamp) Time() time.Time { return time.Unix(0, s.Wall).UTC() }

// Validate returns an Invalid error wrapping ErrBadStamp when s is neither
// the zero stamp nor a stamp with a non-negative wall time and a valid
// origin (see ValidateOrigin).
func (s Stamp) Validate() error {
	if s.IsZero() {
		return nil
	}
	if s.Wall < 0 {
		return access.Errorf(access.Invalid, "stamp %s: negative wall time: %w", s, ErrBadStamp)
	}
	if err := ValidateOrigin(s.Origin); err != nil {
		return access.Errorf(access.Invalid, "stamp: %w: %w", ErrBadStamp, err)
	}
	return nil
}

// ValidateOrigin returns an Invalid error wrapping ErrBadStamp unless origin
// is 1 to MaxOriginLen bytes of ASCII letters, digits, '.', '_', ':' or '-'.
// Site IDs (ULIDs) and "hub" are valid origins.
func ValidateOrigin(origin string) error {
	if origin == "" || len(origin) > MaxOriginLen {
		return access.Errorf(access.Invalid, "origin %q: length %d not in 1..%d: %w", origin, len(origin), MaxOriginLen, ErrBadStamp)
	}
	for i := 0; i < len(origin); i++ {
		if !originByte(origin[i]) {
			return access.Errorf(access.Invalid, "origin %q: byte %d not allowed: %w", origin, i, ErrBadStamp)
		}
	}
	return nil
}

// originByte reports whether c may appear in an origin.
func originByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == '_' || c == ':' || c == '-'
}

// String returns the text form of s; see MarshalText.
func (s Stamp) String() string { return string(s.AppendText(nil)) }

// AppendText appends the text form of s to b: the wall time and the counter
// in decimal, separated by '.', then '@' and the origin, as in
// "1732412345000000000.3@hub". The zero stamp is "0.0@".
func (s Stamp) AppendText(b []byte) []byte {
	b = strconv.AppendInt(b, s.Wall, 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, uint64(s.Counter), 10)
	b = append(b, '@')
	return append(b, s.Origin...)
}

// MarshalText returns the text form of s. It never fails for a valid stamp
// and returns the error of Validate otherwise.
func (s Stamp) MarshalText() ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s.AppendText(nil), nil
}

// ParseStamp parses the text form of a stamp strictly: decimal numbers
// without sign, leading zeros or spaces, and a valid origin (or the zero
// stamp "0.0@"). It returns an Invalid error wrapping ErrBadEncoding or
// ErrBadStamp otherwise. For every s it accepts, ParseStamp(s).String() == s.
func ParseStamp(text string) (Stamp, error) {
	bad := func(why string) (Stamp, error) {
		return Stamp{}, access.Errorf(access.Invalid, "stamp %q: %s: %w", text, why, ErrBadEncoding)
	}
	wall, rest, ok := strings.Cut(text, ".")
	if !ok {
		return bad("no '.'")
	}
	counter, origin, ok := strings.Cut(rest, "@")
	if !ok {
		return bad("no '@'")
	}
	w, ok := parseDecimal(wall, 63)
	if !ok {
		return bad("malformed wall time")
	}
	c, ok := parseDecimal(counter, 32)
	if !ok {
		return bad("malformed counter")
	}
	s := Stamp{Wall: int64(w), Counter: uint32(c), Origin: origin}
	if err := s.Validate(); err != nil {
		return Stamp{}, err
	}
	return s, nil
}

// parseDecimal parses a canonical unsigned decimal number of at most bits
// bits: digits only, no leading zero unless the number is 0.
func parseDecimal(s string, bits int) (uint64, bool) {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(s, 10, bits)
	return v, err == nil
}

// UnmarshalText parses text as ParseStamp does into s.
func (s *Stamp) UnmarshalText(text []byte) error {
	v, err := ParseStamp(string(text))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// stampVersion is the first byte of the binary form of a stamp.
const stampVersion = 1

// AppendBinary appends the binary form of s to b: a version byte (1), the
// wall time as 8 bytes big-endian, the counter as 4 bytes big-endian, the
// origin's length as one byte and the origin. It never fails for a valid
// stamp and returns the error of Validate otherwise.
func (s Stamp) AppendBinary(b []byte) ([]byte, error) {
	if err := s.Validate(); err != nil {
		return b, err
	}
	return s.appendBinary(b), nil
}

// appendBinary appends the binary form of s, which must be valid.
func (s Stamp) appendBinary(b []byte) []byte {
	b = append(b, stampVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(s.Wall))
	b = binary.BigEndian.AppendUint32(b, s.Counter)
	b = append(b, byte(len(s.Origin)))
	return append(b, s.Origin...)
}

// MarshalBinary returns the binary form of s; see AppendBinary.
func (s Stamp) MarshalBinary() ([]byte, error) { return s.AppendBinary(nil) }

// UnmarshalBinary decodes the binary form of a stamp into s strictly: the
// whole of data must be one valid stamp. It returns an Invalid error wrapping
// ErrBadEncoding or ErrBadStamp otherwise and leaves s unchanged.
func (s *Stamp) UnmarshalBinary(data []byte) error {
	v, rest, err := decodeStamp(data)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return access.Errorf(access.Invalid, "stamp: %d trailing bytes: %w", len(rest), ErrBadEncoding)
	}
	*s = v
	return nil
}

// stampFixedLen is the length of the binary form of a stamp without its
// origin.
const stampFixedLen = 1 + 8 + 4 + 1

// decodeStamp decodes one stamp from the front of b and returns the rest.
func decodeStamp(b []byte) (Stamp, []byte, error) {
	if len(b) < stampFixedLen {
		return Stamp{}, nil, access.Errorf(access.Invalid, "stamp: %d bytes, want at least %d: %w", len(b), stampFixedLen, ErrBadEncoding)
	}
	if b[0] != stampVersion {
		return Stamp{}, nil, access.Errorf(access.Invalid, "stamp: version %d: %w", b[0], ErrBadEncoding)
	}
	n := int(b[13])
	if len(b) < stampFixedLen+n {
		return Stamp{}, nil, access.Errorf(access.Invalid, "stamp: origin truncated: %w", ErrBadEncoding)
	}
	s := Stamp{
		Wall:    int64(binary.BigEndian.Uint64(b[1:9])),
		Counter: binary.BigEndian.Uint32(b[9:13]),
		Origin:  string(b[stampFixedLen : stampFixedLen+n]),
	}
	if err := s.Validate(); err != nil {
		return Stamp{}, nil, err
	}
	return s, b[stampFixedLen+n:], nil
}

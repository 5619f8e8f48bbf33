package access

import (
	"crypto/rand"
	"io"
	"sync"
	"time"
)

// ID is the globally unique identifier of an entity: a ULID in its canonical
// text form of 26 upper-case Crockford base32 characters. The first 48 bits
// are the Unix time in milliseconds at which the ID was made and the remaining
// 80 bits are random, so IDs sort by creation time as plain strings. The zero
// ID (the empty string) means "none".
type ID string

// idLen is the length of an ID in characters.
const idLen = 26

// maxIDMillis is the largest millisecond timestamp a ULID can hold.
const maxIDMillis = 1<<48 - 1

// crockford is the Crockford base32 alphabet, in ascending ASCII order so
// that the string order of IDs matches their numeric order.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// crockfordValue maps an ASCII byte to its base32 digit value plus one, so
// that zero marks a byte outside the alphabet. Lower-case letters decode like
// upper-case ones; I, L, O and U are not accepted.
var crockfordValue = func() [256]byte {
	var t [256]byte
	for i := 0; i < len(crockford); i++ {
		c := crockford[i]
		t[c] = byte(i) + 1
		if c >= 'A' && c <= 'Z' {
			t[c+'a'-'A'] = byte(i) + 1
		}
	}
	return t
}()

// NewID returns a new ID for time t with 80 bits of randomness read from
// entropy (crypto/rand when entropy is nil). It returns an error wrapping
// ErrIDTime when t is before 1970 or beyond the 48-bit millisecond range, and
// an Internal error when entropy fails. NewID is safe for concurrent use when
// entropy is.
func NewID(t time.Time, entropy io.Reader) (ID, error) {
	ms := t.UnixMilli()
	if ms < 0 || ms > maxIDMillis {
		return "", opError("access.NewID", Invalid, ErrIDTime)
	}
	if entropy == nil {
		entropy = rand.Reader
	}
	var r [10]byte
	if _, err := io.ReadFull(entropy, r[:]); err != nil {
		return "", &Error{Code: Internal, Op: "access.NewID", Msg: "read entropy", Err: err}
	}
	return encodeID(uint64(ms), r), nil
}

// MustNewID returns a new ID for the current wall-clock time with
// cryptographic randomness, and panics if that fails. It is a convenience for
// tests, tools and request handlers. Code that must be deterministic, such as
// a replicated state machine applying a command, must not call it: the time
// and ID of a change come in the command.
func MustNewID() ID {
	id, err := NewID(time.Now(), nil)
	if err != nil {
		panic(err)
	}
	return id
}

// ParseID parses s as a ULID, accepting lower-case letters, and returns it in
// canonical upper-case form. It returns an error wrapping ErrBadID when s is
// not 26 characters long, holds a character outside the Crockford base32
// alphabet, or encodes a value above 128 bits (a first character above '7').
func ParseID(s string) (ID, error) {
	if len(s) != idLen {
		return "", Errorf(Invalid, "access.ParseID: %q: length %d, want %d: %w", s, len(s), idLen, ErrBadID)
	}
	var buf [idLen]byte
	for i := 0; i < idLen; i++ {
		v := crockfordValue[s[i]]
		if v == 0 {
			return "", Errorf(Invalid, "access.ParseID: %q: character %d not in base32 alphabet: %w", s, i, ErrBadID)
		}
		buf[i] = crockford[v-1]
	}
	if buf[0] > '7' {
		return "", Errorf(Invalid, "access.ParseID: %q: value overflows 128 bits: %w", s, ErrBadID)
	}
	if string(buf[:]) == s {
		return ID(s), nil // already canonical (the usual case): no copy
	}
	return ID(buf[:]), nil
}

// IsZero reports whether id is the zero ID, meaning "none".
func (id ID) IsZero() bool { return id == "" }

// String returns id as a string.
func (id ID) String() string { return string(id) }

// Time returns the creation time encoded in id, in UTC with millisecond
// precision, or the zero time when id is not a valid ID.
func (id ID) Time() time.Time {
	if !id.valid() {
		return time.Time{}
	}
	var ms uint64
	// The first 10 characters hold 50 bits: 2 zero bits and 48 bits of time.
	for i := 0; i < 10; i++ {
		ms = ms<<5 | uint64(crockfordValue[id[i]]-1)
	}
	return time.UnixMilli(int64(ms)).UTC()
}

// valid reports whether id is a canonical ULID.
func (id ID) valid() bool {
	if len(id) != idLen || id[0] > '7' {
		return false
	}
	for i := 0; i < idLen; i++ {
		c := id[i]
		if v := crockfordValue[c]; v == 0 || crockford[v-1] != c {
			return false
		}
	}
	return true
}

// encodeID encodes a 48-bit millisecond time and 80 random bits as an ID.
func encodeID(ms uint64, r [10]byte) ID {
	// The 128-bit value as two halves: hi holds the time and the first two
	// random bytes, lo the remaining eight.
	hi := ms<<16 | uint64(r[0])<<8 | uint64(r[1])
	var lo uint64
	for _, b := range r[2:] {
		lo = lo<<8 | uint64(b)
	}
	// 26 characters of 5 bits are 130 bits; the first character carries
	// only the top 3 bits, so it is at most '7'.
	var buf [idLen]byte
	for i := idLen - 1; i >= 0; i-- {
		buf[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return ID(buf[:])
}

// IDGen makes IDs that increase strictly, even within one millisecond: when
// asked for an ID in the same millisecond as the last one (or an earlier
// one, if the clock stepped back), it reuses the last time and increments the
// last random part by one instead of drawing a new one. An IDGen is safe for
// concurrent use. With a deterministic entropy source and deterministic
// times it yields a deterministic sequence, which a state machine may rely
// on.
type IDGen struct {
	mu      sync.Mutex
	entropy io.Reader
	started bool
	lastMs  uint64
	last    [10]byte
}

// NewIDGen returns a generator that draws randomness from entropy, or from
// crypto/rand when entropy is nil. The generator serialises its reads of
// entropy, so entropy need not be safe for concurrent use.
func NewIDGen(entropy io.Reader) *IDGen {
	if entropy == nil {
		entropy = rand.Reader
	}
	return &IDGen{entropy: entropy}
}

// New returns the next ID for time t. It returns an error wrapping ErrIDTime
// when t is outside the ULID time range, one wrapping ErrIDOverflow when
// 2^80 IDs were already made in the current millisecond, and an Internal
// error when reading entropy fails.
func (g *IDGen) New(t time.Time) (ID, error) {
	ms := t.UnixMilli()
	if ms < 0 || ms > maxIDMillis {
		return "", opError("access.IDGen.New", Invalid, ErrIDTime)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.started || uint64(ms) > g.lastMs {
		var r [10]byte
		if _, err := io.ReadFull(g.entropy, r[:]); err != nil {
			return "", &Error{Code: Internal, Op: "access.IDGen.New", Msg: "read entropy", Err: err}
		}
		g.started, g.lastMs, g.last = true, uint64(ms), r
		return encodeID(g.lastMs, g.last), nil
	}
	next := g.last
	for i := len(next) - 1; i >= 0; i-- {
		next[i]++
		if next[i] != 0 {
			g.last = next
			return encodeID(g.lastMs, g.last), nil
		}
	}
	return "", opError("access.IDGen.New", Unavailable, ErrIDOverflow)
}

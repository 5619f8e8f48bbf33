package replication

import (
	"cmp"
	"slices"
	"strconv"
	"strings"

	"github.com/gatehouse/gatehouse/access"
)

// Lane is one of the streams of deltas each origin produces. Each lane has
// its own sequence numbers, so revocations can travel ahead of ordinary
// changes, and access events behind both, without any lane ever being
// applied past a gap.
type Lane uint8

// The lanes, in the order a session sends them.
const (
	// LanePriority carries revocations: grant removals, membership
	// revocations, disables, removals from sets, final visit states and
	// deletions. It is sent before LaneNormal.
	LanePriority Lane = iota + 1
	// LaneNormal carries every other change.
	LaneNormal
	// LaneEvents carries an origin's access events (KindEvent deltas): a
	// grow-only log keyed (origin, sequence), whose sequence numbers are
	// the site's event sequence numbers. It is sent after the other two
	// lanes and never changes the materialised state (DESIGN.md §4).
	LaneEvents
)

var laneNames = []string{LanePriority: "priority", LaneNormal: "normal", LaneEvents: "events"}

// String returns "priority", "normal" or "events".
func (l Lane) String() string {
	if l == LanePriority || l == LaneNormal || l == LaneEvents {
		return laneNames[l]
	}
	return "lane(" + strconv.Itoa(int(l)) + ")"
}

// Source is the stream of deltas of one origin in one lane. Sequence numbers
// count from 1 per source.
type Source struct {
	Origin string
	Lane   Lane
}

// Validate returns an Invalid error for a malformed origin or unknown lane.
func (s Source) Validate() error {
	if err := ValidateOrigin(s.Origin); err != nil {
		return err
	}
	if s.Lane != LanePriority && s.Lane != LaneNormal && s.Lane != LaneEvents {
		return access.Errorf(access.Invalid, "source %s: unknown lane %d", s.Origin, s.Lane)
	}
	return nil
}

// String returns s as "origin/lane".
func (s Source) String() string { return s.Origin + "/" + s.Lane.String() }

// compareSources orders sources as sessions send them: priority lane
// first, then by origin.
func compareSources(a, b Source) int {
	if c := cmp.Compare(a.Lane, b.Lane); c != 0 {
		return c
	}
	return strings.Compare(a.Origin, b.Origin)
}

// Vector is a version vector: per source, the highest sequence number up to
// which every delta has been applied (or, for a durable vector, made
// durable). A missing source counts as 0. Vectors are values: methods that
// return a Vector never modify their receiver, except Advance.
type Vector map[Source]uint64

// Get returns v's sequence number for src.
func (v Vector) Get(src Source) uint64 { return v[src] }

// Advance raises v's entry for src to seq if seq is greater. v must not be
// nil.
func (v Vector) Advance(src Source, seq uint64) {
	if seq > v[src] {
		v[src] = seq
	}
}

// Clone returns a copy of v without zero entries; the copy of a nil vector
// is an empty, non-nil one.
func (v Vector) Clone() Vector {
	out := make(Vector, len(v))
	for s, n := range v {
		if n > 0 {
			out[s] = n
		}
	}
	return out
}

// Merge returns the pointwise maximum of v and o.
func (v Vector) Merge(o Vector) Vector {
	out := v.Clone()
	for s, n := range o {
		out.Advance(s, n)
	}
	return out
}

// Covers reports whether v is at least o at every source.
func (v Vector) Covers(o Vector) bool {
	for s, n := range o {
		if v[s] < n {
			return false
		}
	}
	return true
}

// Equal reports whether v and o are equal at every source.
func (v Vector) Equal(o Vector) bool { return v.Covers(o) && o.Covers(v) }

// Ordering is the result of comparing two version vectors.
type Ordering int

// The orderings of two vectors.
const (
	// Same means the vectors are equal.
	Same Ordering = iota
	// Before means the first vector is behind the second.
	Before
	// After means the first vector is ahead of the second.
	After
	// Concurrent means each vector has something the other lacks.
	Concurrent
)

// Compare returns how v relates to o.
func (v Vector) Compare(o Vector) Ordering {
	vo, ov := v.Covers(o), o.Covers(v)
	switch {
	case vo && ov:
		return Same
	case vo:
		return After
	case ov:
		return Before
	default:
		return Concurrent
	}
}

// Sources returns the sources with a non-zero entry in session order
// (priority lane first, then by origin).
func (v Vector) Sources() []Source {
	out := make([]Source, 0, len(v))
	for s, n := range v {
		if n > 0 {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, compareSources)
	return out
}

// Range is the sequence numbers From..To (inclusive) of one source.
type Range struct {
	Source   Source
	From, To uint64
}

// Missing returns what a peer whose vector is peer lacks of what v holds:
// per source, the range after the peer's entry up to v's, in session order.
func (v Vector) Missing(peer Vector) []Range {
	var out []Range
	for _, s := range v.Sources() {
		if have := peer[s]; v[s] > have {
			out = append(out, Range{Source: s, From: have + 1, To: v[s]})
		}
	}
	return out
}

// String returns v as space-separated "origin/lane:seq" entries in session
// order, or "{}" when empty.
func (v Vector) String() string {
	srcs := v.Sources()
	if len(srcs) == 0 {
		return "{}"
	}
	parts := make([]string, len(srcs))
	for i, s := range srcs {
		parts[i] = s.String() + ":" + strconv.FormatUint(v[s], 10)
	}
	return strings.Join(parts, " ")
}

// vectorVersion is the first byte of the binary form of a vector.
const vectorVersion = 1

// maxVectorEntries bounds the entries a decoded vector may have.
const maxVectorEntries = 1 << 16

// MarshalBinary returns v's binary form: version byte 1, the number of
// non-zero entries as a varint, then per entry in session order the lane
// byte, the origin (length-prefixed) and the sequence number as a varint.
// It returns an Invalid error when a source is malformed.
func (v Vector) MarshalBinary() ([]byte, error) {
	srcs := v.Sources()
	b := []byte{vectorVersion}
	b = appendUvarint(b, uint64(len(srcs)))
	for _, s := range srcs {
		if err := s.Validate(); err != nil {
			return nil, err
		}
		b = append(b, byte(s.Lane))
		b = appendString(b, s.Origin)
		b = appendUvarint(b, v[s])
	}
	return b, nil
}

// UnmarshalBinary decodes a vector's binary form strictly into v, replacing
// its contents: entries must be in session order without repeats, with
// valid sources and non-zero sequence numbers. It returns an Invalid error
// wrapping ErrBadEncoding otherwise, leaving v unchanged.
func (v *Vector) UnmarshalBinary(data []byte) error {
	d := decoder{what: "vector", b: data}
	if x := d.byte(); d.err == nil && x != vectorVersion {
		d.fail("unknown version")
	}
	n := d.count(maxVectorEntries, "entry count")
	out := make(Vector, min(n, 64))
	var prev Source
	for i := 0; i < n && d.err == nil; i++ {
		s := Source{Lane: Lane(d.byte())}
		s.Origin = d.string(MaxOriginLen, "origin")
		seq := d.uvarint()
		if d.err != nil {
			break
		}
		if err := s.Validate(); err != nil {
			d.failErr(err)
			break
		}
		if seq == 0 {
			d.fail("zero sequence")
		}
		if i > 0 && compareSources(prev, s) >= 0 {
			d.fail("entries out of order")
		}
		out[s], prev = seq, s
	}
	if err := d.finish(); err != nil {
		return err
	}
	*v = out
	return nil
}

package replication

import (
	"bytes"
	"maps"
	"slices"

	"github.com/gatehouse/gatehouse/access"
)

// LogEntry is one fact in a grow-only event log: an access event, a
// check-in or a checkout, encoded by its producer into Data. It is keyed by
// (Origin, Seq), where Seq counts from 1 per origin, and is never edited.
type LogEntry struct {
	Origin string
	Seq    uint64
	Stamp  Stamp
	Data   []byte
}

// compareEntries orders two entries with one key deterministically.
func compareEntries(a, b LogEntry) int {
	if c := a.Stamp.Compare(b.Stamp); c != 0 {
		return c
	}
	return bytes.Compare(a.Data, b.Data)
}

// EventLog is a grow-only log per origin, keyed (origin, sequence). Entries
// may arrive in any order; Prefix tells, per origin, the highest sequence
// up to which no entry is missing. Two different entries under one key
// (which a correct origin never makes) are resolved by keeping the smaller
// (by stamp, then data), so Merge stays deterministic, and reported by Add.
// The zero EventLog is empty and ready to use. It is not safe for
// concurrent use.
type EventLog struct {
	origins map[string]*originLog
}

// originLog is the part of an EventLog of one origin.
type originLog struct {
	entries map[uint64]LogEntry
	prefix  uint64
}

// Add records e. It returns an Invalid error for a malformed origin or a
// zero sequence number (recording nothing), and a Conflict error wrapping
// ErrLogConflict when another entry is already recorded under e's key
// (after keeping the smaller of the two). Adding an entry already recorded
// changes nothing.
func (l *EventLog) Add(e LogEntry) error {
	if err := ValidateOrigin(e.Origin); err != nil {
		return err
	}
	if e.Seq == 0 {
		return access.Errorf(access.Invalid, "event log %s: sequence 0", e.Origin)
	}
	if l.origins == nil {
		l.origins = make(map[string]*originLog)
	}
	o := l.origins[e.Origin]
	if o == nil {
		o = &originLog{entries: make(map[uint64]LogEntry)}
		l.origins[e.Origin] = o
	}
	if old, ok := o.entries[e.Seq]; ok {
		c := compareEntries(old, e)
		if c == 0 {
			return nil
		}
		if c > 0 {
			e.Data = slices.Clone(e.Data)
			o.entries[e.Seq] = e
		}
		return access.Errorf(access.Conflict, "event log %s/%d: %w", e.Origin, e.Seq, ErrLogConflict)
	}
	e.Data = slices.Clone(e.Data)
	o.entries[e.Seq] = e
	for {
		if _, ok := o.entries[o.prefix+1]; !ok {
			break
		}
		o.prefix++
	}
	return nil
}

// Prefix returns the highest n such that entries 1..n of origin are all
// recorded.
func (l *EventLog) Prefix(origin string) uint64 {
	if o := l.origins[origin]; o != nil {
		return o.prefix
	}
	return 0
}

// Get returns the entry under (origin, seq).
func (l *EventLog) Get(origin string, seq uint64) (LogEntry, bool) {
	if o := l.origins[origin]; o != nil {
		e, ok := o.entries[seq]
		return e, ok
	}
	return LogEntry{}, false
}

// Origins returns the origins with entries, sorted.
func (l *EventLog) Origins() []string { return slices.Sorted(maps.Keys(l.origins)) }

// Len returns the number of entries recorded.
func (l *EventLog) Len() int {
	n := 0
	for _, o := range l.origins {
		n += len(o.entries)
	}
	return n
}

// Contiguous returns, in sequence order, up to max entries of origin after
// sequence after, stopping at the first missing one: never past a gap. A
// max of zero or less means no limit.
func (l *EventLog) Contiguous(origin string, after uint64, max int) []LogEntry {
	o := l.origins[origin]
	if o == nil {
		return nil
	}
	var out []LogEntry
	for seq := after + 1; max <= 0 || len(out) < max; seq++ {
		e, ok := o.entries[seq]
		if !ok {
			break
		}
		out = append(out, e)
	}
	return out
}

// Merge returns the union of l and o.
func (l EventLog) Merge(o EventLog) EventLog {
	var out EventLog
	for _, x := range []EventLog{l, o} {
		for _, ol := range x.origins {
			for _, e := range ol.entries {
				_ = out.Add(e) // entries in a log are valid; conflicts resolve deterministically
			}
		}
	}
	return out
}

// Equal reports whether l and o hold the same entries.
func (l EventLog) Equal(o EventLog) bool {
	if l.Len() != o.Len() {
		return false
	}
	for origin, ol := range l.origins {
		for seq, e := range ol.entries {
			f, ok := o.Get(origin, seq)
			if !ok || compareEntries(e, f) != 0 {
				return false
			}
		}
	}
	return true
}

package replication

import (
	"maps"
	"slices"
	"strings"

	"github.com/gatehouse/gatehouse/access"
)

// This file holds the small conflict-free replicated data types. Each has a
// Merge that returns the join of two states without changing either; Merge
// is commutative, associative and idempotent (tested in crdt_test.go), so
// replicas that have seen the same changes, in any order and any number of
// times, hold equal states. Values are not safe for concurrent use.

// Register is a last-writer-wins register holding the canonical encoding of
// one scalar field. The write with the greater Stamp wins; two writes with
// one stamp (which a correct origin never makes) are ordered by value, so
// Merge stays deterministic even then. The zero Register holds "" with the
// zero stamp and loses to every write.
type Register struct {
	Value string
	Stamp Stamp
}

// Merge returns the winner of r and o.
func (r Register) Merge(o Register) Register {
	switch c := o.Stamp.Compare(r.Stamp); {
	case c > 0:
		return o
	case c == 0 && o.Value > r.Value:
		return o
	default:
		return r
	}
}

// Set makes r the winner of r and a write of v at s.
func (r *Register) Set(v string, s Stamp) { *r = r.Merge(Register{Value: v, Stamp: s}) }

// ORSet is an observed-remove (add-wins) set of strings. Each add is tagged
// with the stamp of the change that made it; a remove names the tags it
// observed and removes only those, so an add concurrent with a remove
// survives it. Tags removed are remembered forever (tombstones), so a late
// copy of an observed add never brings the element back. The zero ORSet is
// empty and ready to use.
type ORSet struct {
	adds    map[string]map[Stamp]struct{}
	removed map[string]map[Stamp]struct{}
}

// Add adds elem with tag, the stamp of the change adding it.
func (s *ORSet) Add(elem string, tag Stamp) {
	if s.adds == nil {
		s.adds = make(map[string]map[Stamp]struct{})
	}
	addTag(s.adds, elem, tag)
}

// Remove removes the given tags of elem, whether or not they were seen
// added yet.
func (s *ORSet) Remove(elem string, tags []Stamp) {
	if s.removed == nil {
		s.removed = make(map[string]map[Stamp]struct{})
	}
	for _, t := range tags {
		addTag(s.removed, elem, t)
	}
}

// addTag adds tag to m[elem].
func addTag(m map[string]map[Stamp]struct{}, elem string, tag Stamp) {
	set := m[elem]
	if set == nil {
		set = make(map[Stamp]struct{})
		m[elem] = set
	}
	set[tag] = struct{}{}
}

// Tags returns the live tags of elem (added and not removed), sorted. A
// remove that should remove elem as seen now names these tags.
func (s *ORSet) Tags(elem string) []Stamp {
	var tags []Stamp
	for t := range s.adds[elem] {
		if _, gone := s.removed[elem][t]; !gone {
			tags = append(tags, t)
		}
	}
	slices.SortFunc(tags, Stamp.Compare)
	return tags
}

// Contains reports whether elem has a live tag.
func (s *ORSet) Contains(elem string) bool {
	for t := range s.adds[elem] {
		if _, gone := s.removed[elem][t]; !gone {
			return true
		}
	}
	return false
}

// Elements returns the elements with a live tag, sorted.
func (s *ORSet) Elements() []string {
	var out []string
	for e := range s.adds {
		if s.Contains(e) {
			out = append(out, e)
		}
	}
	slices.Sort(out)
	return out
}

// Merge returns the union of s and o.
func (s ORSet) Merge(o ORSet) ORSet {
	return ORSet{adds: unionTags(s.adds, o.adds), removed: unionTags(s.removed, o.removed)}
}

// Equal reports whether s and o hold the same tags and tombstones.
func (s ORSet) Equal(o ORSet) bool {
	return equalTags(s.adds, o.adds) && equalTags(s.removed, o.removed)
}

// unionTags returns a new map holding the tags of a and of b.
func unionTags(a, b map[string]map[Stamp]struct{}) map[string]map[Stamp]struct{} {
	out := make(map[string]map[Stamp]struct{}, len(a)+len(b))
	for _, m := range []map[string]map[Stamp]struct{}{a, b} {
		for e, tags := range m {
			for t := range tags {
				addTag(out, e, t)
			}
		}
	}
	return out
}

// equalTags compares tag maps, treating missing and empty entries alike.
func equalTags(a, b map[string]map[Stamp]struct{}) bool {
	for _, pair := range [][2]map[string]map[Stamp]struct{}{{a, b}, {b, a}} {
		for e, tags := range pair[0] {
			if len(tags) != len(pair[1][e]) {
				return false
			}
			for t := range tags {
				if _, ok := pair[1][e][t]; !ok {
					return false
				}
			}
		}
	}
	return true
}

// Flag is a disable-wins flag, the "active" of a card or person. Enables and
// disables are events identified by their stamps. Each enable names the
// disables its origin knew when it made it, and an enable counts only if
// every disable this replica knows is among them: so an enable concurrent
// with a disable never overrides it, while an enable made after seeing the
// disable does. Each disable carries a reason (for a card, the card status
// it leaves: suspended, lost, returned). The zero Flag has seen nothing and
// is not enabled: a card or person is inactive until enabled.
type Flag struct {
	enables  map[Stamp][]Stamp // enable → disables observed, sorted
	disables map[Stamp]string  // disable → reason
}

// Enable records an enable made at s by an origin that knew the disables
// observed (the result of Disables at that origin).
func (f *Flag) Enable(s Stamp, observed []Stamp) {
	if f.enables == nil {
		f.enables = make(map[Stamp][]Stamp)
	}
	obs := sortedStamps(observed)
	if old, ok := f.enables[s]; ok {
		obs = intersectStamps(old, obs)
	}
	f.enables[s] = obs
}

// Disable records a disable made at s with the given reason.
func (f *Flag) Disable(s Stamp, reason string) {
	if f.disables == nil {
		f.disables = make(map[Stamp]string)
	}
	if old, ok := f.disables[s]; !ok || reason > old {
		f.disables[s] = reason
	}
}

// Disables returns the stamps of every disable recorded, sorted: the
// observed set of an enable made now.
func (f *Flag) Disables() []Stamp {
	return slices.SortedFunc(maps.Keys(f.disables), Stamp.Compare)
}

// Enabled reports whether some enable observed every disable recorded.
func (f *Flag) Enabled() bool {
	for _, obs := range f.enables {
		covered := true
		for d := range f.disables {
			if _, found := slices.BinarySearchFunc(obs, d, Stamp.Compare); !found {
				covered = false
				break
			}
		}
		if covered {
			return true
		}
	}
	return false
}

// Reason returns the reason of the latest disable recorded, or "" when
// there is none.
func (f *Flag) Reason() string {
	var last Stamp
	var reason string
	for s, r := range f.disables {
		if last.Less(s) {
			last, reason = s, r
		}
	}
	return reason
}

// Merge returns the union of f's and o's events. An enable known to both
// with different observed sets (which a correct origin never makes) keeps
// the intersection, the less enabling of the two.
func (f Flag) Merge(o Flag) Flag {
	var out Flag
	for _, x := range []Flag{f, o} {
		for s, obs := range x.enables {
			out.Enable(s, obs)
		}
		for s, r := range x.disables {
			out.Disable(s, r)
		}
	}
	return out
}

// Equal reports whether f and o hold the same events.
func (f Flag) Equal(o Flag) bool {
	if len(f.enables) != len(o.enables) || !maps.Equal(f.disables, o.disables) {
		return false
	}
	for s, obs := range f.enables {
		if other, ok := o.enables[s]; !ok || !slices.Equal(obs, other) {
			return false
		}
	}
	return true
}

// sortedStamps returns a sorted copy of s without duplicates.
func sortedStamps(s []Stamp) []Stamp {
	out := slices.Clone(s)
	slices.SortFunc(out, Stamp.Compare)
	return slices.Compact(out)
}

// intersectStamps returns the stamps in both sorted slices, sorted.
func intersectStamps(a, b []Stamp) []Stamp {
	var out []Stamp
	for _, s := range a {
		if _, ok := slices.BinarySearchFunc(b, s, Stamp.Compare); ok {
			out = append(out, s)
		}
	}
	return out
}

// Lifecycle is the max-register of a visit's state: of two states the later
// in the order of access.VisitState wins (requested < invited <
// pre-registered < checked-in < picked-up < checked-out < expired <
// cancelled < denied), so a checkout, expiry, cancellation or denial
// anywhere is final and a visit is never reopened. At is the stamp of the
// earliest change that reached State, kept so that Merge is deterministic.
// The zero Lifecycle has no state.
type Lifecycle struct {
	State access.VisitState
	At    Stamp
}

// Merge returns the greater of l and o.
func (l Lifecycle) Merge(o Lifecycle) Lifecycle {
	switch {
	case o.State > l.State:
		return o
	case o.State == l.State && o.At.Less(l.At):
		return o
	default:
		return l
	}
}

// Advance makes l the greater of l and state reached at s.
func (l *Lifecycle) Advance(state access.VisitState, s Stamp) {
	*l = l.Merge(Lifecycle{State: state, At: s})
}

// Tombstone is a monotonic deletion mark: once deleted, always deleted. At
// is the stamp of the earliest deletion seen. The zero Tombstone is not
// deleted.
type Tombstone struct {
	Deleted bool
	At      Stamp
}

// Merge returns the union of t and o.
func (t Tombstone) Merge(o Tombstone) Tombstone {
	switch {
	case !o.Deleted:
		return t
	case !t.Deleted || o.At.Less(t.At):
		return o
	default:
		return t
	}
}

// Delete marks t deleted by a change stamped s.
func (t *Tombstone) Delete(s Stamp) { *t = t.Merge(Tombstone{Deleted: true, At: s}) }

// compareStrings orders strings for deterministic tie-breaks.
var compareStrings = strings.Compare

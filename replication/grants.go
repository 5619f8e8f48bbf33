package replication

import (
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

// GrantSet is the set of access grants with remove-wins tombstones
// (DESIGN.md §4). Each grant is immutable under its own ID; removing it
// records a tombstone of that ID forever, so a stale or late copy of the
// grant never resurrects it, and granting the same membership again makes a
// new ID.
//
// A membership (a holder and a group) can also be revoked as a whole:
// Revoke records a revocation event, and a grant of that membership counts
// only if its origin knew every revocation of the membership when it made
// the grant (the observed set passed to Add, from Revokes). So a grant made
// concurrently with a revocation of its membership ends removed, whichever
// arrives first, while a grant made after seeing the revocation is live.
//
// The zero GrantSet is empty and ready to use. It is not safe for concurrent
// use.
type GrantSet struct {
	grants  map[access.ID]grantEntry
	removed map[access.ID]Stamp
	revokes map[membership]map[Stamp]struct{}
}

// membership is a holder's membership of a group.
type membership struct{ holder, group access.ID }

// grantEntry is a grant's immutable contents with the stamp of the change
// that made it and the membership revocations it observed.
type grantEntry struct {
	grant    access.Grant
	at       Stamp
	observed []Stamp
}

// key returns a string that orders grant contents deterministically.
func (e grantEntry) key() string {
	g := e.grant
	return string(g.HolderID) + "|" + string(g.GroupID) + "|" +
		strconv.FormatInt(timeNanos(g.ValidFrom), 10) + "|" + strconv.FormatInt(timeNanos(g.ValidUntil), 10)
}

// Add records grant g (its Removed field is ignored) made at s by an origin
// that knew the membership revocations observed. Adding a grant whose ID is
// already a tombstone is recorded but the grant stays removed.
func (s *GrantSet) Add(g access.Grant, at Stamp, observed []Stamp) {
	g.Removed = false
	s.addEntry(g.ID, grantEntry{grant: g, at: at, observed: sortedStamps(observed)})
}

// addEntry merges e into the entry for id: of two different contents, the
// one made earlier (then the smaller by key) is kept, so Merge stays
// deterministic even if an origin broke immutability.
func (s *GrantSet) addEntry(id access.ID, e grantEntry) {
	if s.grants == nil {
		s.grants = make(map[access.ID]grantEntry)
	}
	old, ok := s.grants[id]
	if ok {
		c := old.at.Compare(e.at)
		if c == 0 {
			c = compareStrings(old.key(), e.key())
		}
		switch {
		case c < 0:
			return
		case c == 0:
			e.observed = intersectStamps(old.observed, e.observed)
		}
	}
	s.grants[id] = e
}

// Remove records the removal of the grant with the given ID at s, whether or
// not the grant itself was seen yet. The earliest removal's stamp is kept.
func (s *GrantSet) Remove(id access.ID, at Stamp) {
	if s.removed == nil {
		s.removed = make(map[access.ID]Stamp)
	}
	if old, ok := s.removed[id]; !ok || at.Less(old) {
		s.removed[id] = at
	}
}

// Revoke records a revocation, at s, of holder's membership of group: every
// grant of that membership not made with knowledge of it is removed.
func (s *GrantSet) Revoke(holder, group access.ID, at Stamp) {
	if s.revokes == nil {
		s.revokes = make(map[membership]map[Stamp]struct{})
	}
	m := membership{holder, group}
	if s.revokes[m] == nil {
		s.revokes[m] = make(map[Stamp]struct{})
	}
	s.revokes[m][at] = struct{}{}
}

// Revokes returns the stamps of the revocations of holder's membership of
// group, sorted: the observed set of a grant of that membership made now.
func (s *GrantSet) Revokes(holder, group access.ID) []Stamp {
	return slices.SortedFunc(maps.Keys(s.revokes[membership{holder, group}]), Stamp.Compare)
}

// Get returns the grant with the given ID. Its Removed field is set when
// the ID has a tombstone or the grant's membership has a revocation the
// grant did not observe. A tombstone whose grant was not seen yet is
// returned as a Grant with only its ID and Removed set.
func (s *GrantSet) Get(id access.ID) (access.Grant, bool) {
	e, ok := s.grants[id]
	_, tomb := s.removed[id]
	switch {
	case !ok && !tomb:
		return access.Grant{}, false
	case !ok:
		return access.Grant{ID: id, Removed: true}, true
	}
	g := e.grant
	g.Removed = tomb || !s.observedAll(e)
	return g, true
}

// observedAll reports whether e observed every revocation of its membership.
func (s *GrantSet) observedAll(e grantEntry) bool {
	for r := range s.revokes[membership{e.grant.HolderID, e.grant.GroupID}] {
		if _, ok := slices.BinarySearchFunc(e.observed, r, Stamp.Compare); !ok {
			return false
		}
	}
	return true
}

// Live reports whether the grant with the given ID is known and not removed.
func (s *GrantSet) Live(id access.ID) bool {
	g, ok := s.Get(id)
	return ok && !g.Removed
}

// IDs returns the IDs of every grant and tombstone recorded, sorted.
func (s *GrantSet) IDs() []access.ID {
	ids := make([]access.ID, 0, len(s.grants)+len(s.removed))
	for id := range s.grants {
		ids = append(ids, id)
	}
	for id := range s.removed {
		if _, ok := s.grants[id]; !ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// Merge returns the union of s and o.
func (s GrantSet) Merge(o GrantSet) GrantSet {
	var out GrantSet
	for _, x := range []GrantSet{s, o} {
		for id, e := range x.grants {
			out.addEntry(id, e)
		}
		for id, at := range x.removed {
			out.Remove(id, at)
		}
		for m, set := range x.revokes {
			for at := range set {
				out.Revoke(m.holder, m.group, at)
			}
		}
	}
	return out
}

// Equal reports whether s and o hold the same grants, tombstones and
// revocations.
func (s GrantSet) Equal(o GrantSet) bool {
	if len(s.grants) != len(o.grants) || !maps.Equal(s.removed, o.removed) || len(s.revokes) != len(o.revokes) {
		return false
	}
	for id, e := range s.grants {
		f, ok := o.grants[id]
		if !ok || e.at != f.at || e.key() != f.key() || !slices.Equal(e.observed, f.observed) {
			return false
		}
	}
	for m, set := range s.revokes {
		if !maps.Equal(set, o.revokes[m]) {
			return false
		}
	}
	return true
}

// timeNanos returns t as Unix nanoseconds, and 0 for the zero time.
func timeNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

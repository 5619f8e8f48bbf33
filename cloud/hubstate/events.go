package hubstate

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/store"
	"github.com/gatehouse/gatehouse/replication"
)

// Access events at the hub (docs/sync.md "Events", docs/cardholders.md
// "Access logs"): each site's events arrive in its events lane
// (replication.LaneEvents) and are committed to the store like any delta,
// in the log "<site>/events", but never applied to the replica: they
// change no entity and are never relayed. In memory the hub keeps an index
// of them, built on Open from the store and kept in step by Apply: every
// event's query fields, ordered by time, and per card number the taps of
// cards the site did not know.

// Event is one access event held by the hub: its site (the origin that
// recorded it), its sequence number in the site's event log, and what the
// site recorded.
type Event struct {
	Site access.ID
	Seq  uint64
	replication.EventRecord
}

// EventKey is the position of an event in the hub's time order: its time,
// then its site, then its sequence number. It is the cursor of QueryEvents.
type EventKey struct {
	At   time.Time
	Site access.ID
	Seq  uint64
}

// ResultFilter selects events by their decision.
type ResultFilter uint8

// The result filters.
const (
	AnyResult ResultFilter = iota
	OnlyGranted
	OnlyDenied
)

// EventQuery selects access events; zero fields match everything.
type EventQuery struct {
	// Site, Door and Holder select events of that site, door or card
	// holder.
	Site, Door, Holder access.ID
	// Result selects granted or denied decisions.
	Result ResultFilter
	// From (inclusive) and Until (exclusive) bound the events' times.
	From, Until time.Time
	// Before, when not zero, keeps only events strictly before that key
	// in the time order: the cursor of the next page.
	Before EventKey
	// Holders, when set, keeps only events whose holder it accepts (an
	// occupier admin's scope); it is called at most once per holder per
	// query, never with the zero ID (events without a holder are left out).
	Holders func(access.ID) bool
	// Limit is the most events returned (default and at most MaxEventPage).
	Limit int
}

// MaxEventPage is the most events one QueryEvents returns.
const MaxEventPage = 10_000

// UnknownCard is a card number tapped at a site that did not know it
// (reason unknown_card), with its first and last tap and how many taps the
// hub holds.
type UnknownCard struct {
	Card        access.CardNumber
	First, Last time.Time
	Count       int
	// Site and Door are those of the last tap.
	Site, Door access.ID
}

// evEntry is one event in the index: its query fields, with names interned.
type evEntry struct {
	at     int64 // Unix ns
	seq    uint64
	card   uint64
	site   uint32
	door   uint32
	holder uint32
	device uint32
	node   uint32
	typ    uint32
	detail uint32
	reason access.Reason
	flags  uint8
	req    string
}

const (
	flagGranted = 1 << iota
	flagOffline
)

// compare orders entries by time, then site name, then sequence.
func (x *eventIndex) compare(a, b *evEntry) int {
	if c := cmp.Compare(a.at, b.at); c != 0 {
		return c
	}
	if a.site != b.site {
		return strings.Compare(x.names[a.site], x.names[b.site])
	}
	return cmp.Compare(a.seq, b.seq)
}

// evBlock is the number of entries a block of the index holds after a
// split or a bulk build; a block splits at twice as many.
const evBlock = 256

// eventIndex is the in-memory index of the events the hub holds: entries
// in time order, in blocks (so an event arriving late is inserted in place
// by moving at most one block), the interned names, the contiguous vector
// per site and the unknown cards. Its own lock serialises writers and lets
// readers share.
type eventIndex struct {
	mu      sync.RWMutex
	blocks  [][]evEntry
	n       int
	names   []string          // interned strings; names[0] == ""
	ids     map[string]uint32 // the inverse of names
	vec     map[string]uint64 // per site origin, the highest sequence held
	unknown map[access.CardNumber]*UnknownCard
	// pending holds entries added in bulk (on open), unsorted, until
	// settle sorts them into the blocks.
	pending []evEntry
	// added is closed and replaced after add indexes events (EventsAdded).
	added chan struct{}
}

func newEventIndex() *eventIndex {
	return &eventIndex{names: []string{""}, ids: map[string]uint32{"": 0}, vec: map[string]uint64{},
		unknown: map[access.CardNumber]*UnknownCard{}, added: make(chan struct{})}
}

// intern returns the number of s. x.mu must be held for writing.
func (x *eventIndex) intern(s string) uint32 {
	if id, ok := x.ids[s]; ok {
		return id
	}
	id := uint32(len(x.names))
	x.names = append(x.names, s)
	x.ids[s] = id
	return id
}

// lookup returns the number of s, and false when no event holds it.
func (x *eventIndex) lookup(s string) (uint32, bool) {
	id, ok := x.ids[s]
	return id, ok
}

// add indexes the events ds, all of origin's events lane, consecutive and
// following x.vec (the caller checked it, and committed them). In bulk,
// they wait in pending until settle.
func (x *eventIndex) add(origin string, ds []replication.Delta, bulk bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, d := range ds {
		r, ok := replication.EventOf(d) // validated by the caller
		if !ok {
			continue
		}
		e := evEntry{at: r.At.UnixNano(), seq: d.Seq, card: uint64(r.Card), site: x.intern(origin),
			door: x.intern(string(r.Door)), holder: x.intern(string(r.Holder)), device: x.intern(string(r.Device)),
			node: x.intern(r.Node), typ: x.intern(r.Type), detail: x.intern(r.Detail), reason: r.Reason, req: r.RequestID}
		if r.Granted {
			e.flags |= flagGranted
		}
		if r.Offline {
			e.flags |= flagOffline
		}
		if bulk {
			x.pending = append(x.pending, e)
			x.n++
		} else {
			x.insert(e)
		}
		if r.Reason == access.ReasonUnknownCard && r.Card != 0 {
			u := x.unknown[r.Card]
			if u == nil {
				u = &UnknownCard{Card: r.Card, First: r.At}
				x.unknown[r.Card] = u
			}
			u.Count++
			if r.At.Before(u.First) {
				u.First = r.At
			}
			if !r.At.Before(u.Last) {
				u.Last, u.Site, u.Door = r.At, access.ID(origin), r.Door
			}
		}
		x.vec[origin] = d.Seq
	}
	if len(ds) > 0 {
		close(x.added)
		x.added = make(chan struct{})
	}
}

// settle sorts the entries added in bulk into the blocks: one sort of
// everything, then blocks of evBlock.
func (x *eventIndex) settle() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.pending) == 0 {
		return
	}
	all := x.pending
	for _, b := range x.blocks {
		all = append(all, b...)
	}
	x.pending = nil
	slices.SortFunc(all, func(a, b evEntry) int { return x.compare(&a, &b) })
	x.blocks = x.blocks[:0]
	for len(all) > 0 {
		n := min(evBlock, len(all))
		x.blocks = append(x.blocks, all[:n:n])
		all = all[n:]
	}
}

// insert puts e in its place in time order.
func (x *eventIndex) insert(e evEntry) {
	x.n++
	nb := len(x.blocks)
	if nb == 0 {
		x.blocks = append(x.blocks, make([]evEntry, 0, evBlock))
		nb = 1
	}
	// The usual case: the newest event so far goes last.
	bi := nb - 1
	last := x.blocks[bi]
	if len(last) > 0 && x.compare(&e, &last[len(last)-1]) < 0 {
		bi, _ = slices.BinarySearchFunc(x.blocks, e, func(b []evEntry, t evEntry) int {
			return x.compare(&b[len(b)-1], &t)
		})
		bi = min(bi, nb-1)
	}
	b := x.blocks[bi]
	i, _ := slices.BinarySearchFunc(b, e, func(a, t evEntry) int { return x.compare(&a, &t) })
	b = slices.Insert(b, i, e)
	if len(b) < 2*evBlock {
		x.blocks[bi] = b
		return
	}
	// Split a full block in two.
	lo := slices.Clone(b[:evBlock])
	hi := slices.Clone(b[evBlock:])
	x.blocks = slices.Replace(x.blocks, bi, bi+1, lo, hi)
}

// event returns the full event of an entry.
func (x *eventIndex) event(e *evEntry) Event {
	return Event{Site: access.ID(x.names[e.site]), Seq: e.seq, EventRecord: replication.EventRecord{
		At: time.Unix(0, e.at).UTC(), Door: access.ID(x.names[e.door]), Device: access.ID(x.names[e.device]),
		Card: access.CardNumber(e.card), Holder: access.ID(x.names[e.holder]), Granted: e.flags&flagGranted != 0,
		Reason: e.reason, Offline: e.flags&flagOffline != 0, RequestID: e.req, Node: x.names[e.node],
		Type: x.names[e.typ], Detail: x.names[e.detail]}}
}

// query returns up to limit events matching q, newest first, and whether
// more follow.
func (x *eventIndex) query(q EventQuery) ([]Event, bool) {
	limit := q.Limit
	if limit <= 0 || limit > MaxEventPage {
		limit = MaxEventPage
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	// A name no event holds matches nothing.
	want := func(id access.ID) (uint32, bool) {
		if id == "" {
			return 0, true
		}
		n, ok := x.lookup(string(id))
		return n, ok && n != 0
	}
	site, ok1 := want(q.Site)
	door, ok2 := want(q.Door)
	holder, ok3 := want(q.Holder)
	if !ok1 || !ok2 || !ok3 {
		return nil, false
	}
	// The newest entry to look at: before the cursor and Until.
	top := evKey{at: 1<<63 - 1}
	if !q.Until.IsZero() {
		top = evKey{at: q.Until.UnixNano(), strict: true} // at < Until: site "" sorts first
	}
	if !q.Before.At.IsZero() {
		c := evKey{at: q.Before.At.UnixNano(), site: string(q.Before.Site), seq: q.Before.Seq, strict: true}
		if x.cmpKey(&evEntry{at: c.at, seq: c.seq}, c.site, top) <= 0 {
			top = c
		}
	}
	from := int64(-1 << 63)
	if !q.From.IsZero() {
		from = q.From.UnixNano()
	}
	bi, i := x.seekBefore(top)
	scope := map[uint32]bool{}
	var out []Event
	for ; bi >= 0; bi-- {
		b := x.blocks[bi]
		if i < 0 {
			i = len(b) - 1
		}
		for ; i >= 0; i-- {
			e := &b[i]
			if e.at < from {
				return out, false
			}
			switch {
			case q.Site != "" && e.site != site, q.Door != "" && e.door != door, q.Holder != "" && e.holder != holder,
				q.Result == OnlyGranted && e.flags&flagGranted == 0, q.Result == OnlyDenied && e.flags&flagGranted != 0:
				continue
			}
			if q.Holders != nil {
				in, seen := scope[e.holder]
				if !seen {
					in = e.holder != 0 && q.Holders(access.ID(x.names[e.holder]))
					scope[e.holder] = in
				}
				if !in {
					continue
				}
			}
			if len(out) == limit {
				return out, true
			}
			out = append(out, x.event(e))
		}
	}
	return out, false
}

// evKey is a bound in the time order: entries above it (or at it, when
// strict) are out.
type evKey struct {
	at     int64
	site   string
	seq    uint64
	strict bool
}

// cmpKey compares e (whose site is named site, or e.site when site is "")
// with k.
func (x *eventIndex) cmpKey(e *evEntry, site string, k evKey) int {
	if c := cmp.Compare(e.at, k.at); c != 0 {
		return c
	}
	if site == "" {
		site = x.names[e.site]
	}
	if c := strings.Compare(site, k.site); c != 0 {
		return c
	}
	return cmp.Compare(e.seq, k.seq)
}

// seekBefore returns the position of the newest entry below top: a block
// and an index in it (-1: from the end of the block); a negative block
// when there is none.
func (x *eventIndex) seekBefore(top evKey) (int, int) {
	above := func(e *evEntry) bool {
		c := x.cmpKey(e, "", top)
		return c > 0 || top.strict && c == 0
	}
	// The first block whose last entry is above top.
	bi, _ := slices.BinarySearchFunc(x.blocks, true, func(b []evEntry, _ bool) int {
		if above(&b[len(b)-1]) {
			return 1
		}
		return -1
	})
	if bi == len(x.blocks) {
		return bi - 1, -1
	}
	b := x.blocks[bi]
	i, _ := slices.BinarySearchFunc(b, true, func(e evEntry, _ bool) int {
		if above(&e) {
			return 1
		}
		return -1
	})
	if i == 0 {
		return bi - 1, -1
	}
	return bi, i - 1
}

// unknownCards returns the unknown cards matching site and since whose
// number known does not report as held now, latest tap first.
func (x *eventIndex) unknownCards(site access.ID, since time.Time, held func(access.CardNumber) bool) []UnknownCard {
	x.mu.RLock()
	var out []UnknownCard
	for _, u := range x.unknown {
		if site != "" && u.Site != site || !since.IsZero() && u.Last.Before(since) {
			continue
		}
		out = append(out, *u)
	}
	x.mu.RUnlock()
	out = slices.DeleteFunc(out, func(u UnknownCard) bool { return held(u.Card) })
	slices.SortFunc(out, func(a, b UnknownCard) int {
		if c := b.Last.Compare(a.Last); c != 0 {
			return c
		}
		return cmp.Compare(a.Card, b.Card)
	})
	return out
}

// vector returns the events lanes' part of the hub's durable vector.
func (x *eventIndex) vector() replication.Vector {
	x.mu.RLock()
	defer x.mu.RUnlock()
	v := make(replication.Vector, len(x.vec))
	for o, n := range x.vec {
		v[replication.Source{Origin: o, Lane: replication.LaneEvents}] = n
	}
	return v
}

// head returns how far the hub holds origin's events.
func (x *eventIndex) head(origin string) uint64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.vec[origin]
}

// QueryEvents returns the access events matching q, newest first (by time,
// then site, then sequence), at most q.Limit of them, and whether more
// follow: then the key of the last event returned is the Before of the
// next page. It reads the in-memory index and is safe for concurrent use.
func (s *State) QueryEvents(q EventQuery) (evs []Event, more bool) {
	return s.events.query(q)
}

// EventsAdded returns a channel that is closed the next time events are
// indexed (an events-lane Apply), which Changed does not signal. Take it
// before querying what you wait for.
func (s *State) EventsAdded() <-chan struct{} {
	s.events.mu.RLock()
	defer s.events.mu.RUnlock()
	return s.events.added
}

// UnknownCards returns the card numbers tapped at a site that did not know
// them (reason unknown_card) and that no live holder holds at the hub now,
// latest tap first: of site (zero: every site), last tapped at or after
// since (zero: ever). A number assigned to someone drops off the list.
func (s *State) UnknownCards(site access.ID, since time.Time) []UnknownCard {
	return s.events.unknownCards(site, since, func(n access.CardNumber) bool {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return len(s.rep.CardHolders(n)) > 0
	})
}

// EventCount returns how many access events the hub holds.
func (s *State) EventCount() int {
	s.events.mu.RLock()
	defer s.events.mu.RUnlock()
	return s.events.n
}

// SyncVector returns the hub's durable vector as sync sessions see it:
// Vector (the replica's sources) and, per site, how far the hub holds its
// events lane. It is the Vector of SessionStore.
func (s *State) SyncVector() replication.Vector {
	v := s.Vector()
	for src, n := range s.events.vector() {
		v[src] = n
	}
	return v
}

// EventDeltas returns up to max (at most store.MaxLimit) deltas of site's
// events lane after sequence number after, read back from the store as the
// site sent them. The hub keeps events outside its replica, so this is how
// digests of the lane (docs/replication.md §11) read them; it returns
// nothing past what the hub holds, and an Invalid error for a stored record
// that does not decode as that event.
func (s *State) EventDeltas(ctx context.Context, site string, after uint64, max int) ([]replication.Delta, error) {
	src := replication.Source{Origin: site, Lane: replication.LaneEvents}
	if max <= 0 || max > store.MaxLimit {
		max = store.MaxLimit
	}
	recs, err := s.st.Read(ctx, StoreOrigin(src), after, max, store.AllLanes)
	if err != nil {
		return nil, fmt.Errorf("hubstate: read %s: %w", src, err)
	}
	return decodeRecords("read", src, recs)
}

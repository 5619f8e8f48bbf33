package hubstate_test

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/replication"
)

var evT0 = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

// eventDeltas makes the event deltas first..first+len(recs)-1 of origin.
func eventDeltas(t testing.TB, origin string, first int, recs []replication.EventRecord) []replication.Delta {
	t.Helper()
	out := make([]replication.Delta, len(recs))
	for i, r := range recs {
		d, err := replication.EventDelta(origin, uint64(first+i), r)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = d
	}
	return out
}

func evSrc(site access.ID) replication.Source {
	return replication.Source{Origin: string(site), Lane: replication.LaneEvents}
}

// allEvents pages through q newest first and returns every (site, seq).
func allEvents(t *testing.T, s *hubstate.State, q hubstate.EventQuery, page int) []hubstate.Event {
	t.Helper()
	var out []hubstate.Event
	q.Limit = page
	for range 10_000 {
		evs, more := s.QueryEvents(q)
		out = append(out, evs...)
		if !more {
			return out
		}
		last := evs[len(evs)-1]
		q.Before = hubstate.EventKey{At: last.At, Site: last.Site, Seq: last.Seq}
	}
	t.Fatal("paging does not end")
	return nil
}

// TestEvents: events of two sites, arriving out of time order and with
// ties, are stored, indexed newest first, paged exactly once, filtered,
// kept out of the replica, and found again after a reopen.
func TestEvents(t *testing.T) {
	dir := t.TempDir()
	s, st := MustOpen(t, dir)
	siteA, siteB := tid(1), tid(2)
	doors := []access.ID{tid(10), tid(11)}
	ann := tid(30)
	rng := rand.New(rand.NewPCG(1, 2))
	mk := func(n int) []replication.EventRecord {
		var out []replication.EventRecord
		for i := range n {
			r := replication.EventRecord{At: evT0.Add(time.Duration(rng.IntN(200)) * time.Second), Door: doors[i%2],
				Card: access.CardNumber(1000 + i%7), Granted: i%3 != 0, Reason: access.ReasonGranted, RequestID: "r"}
			if !r.Granted {
				r.Reason = access.ReasonNoGroup
			}
			if i%5 == 0 {
				r.Holder = ann
			}
			out = append(out, r)
		}
		return out
	}
	recA, recB := mk(3000), mk(1500)
	vec, changed := s.Vector(), s.Changed()
	for i := 0; i < len(recA); i += 700 {
		j := min(i+700, len(recA))
		if err := s.Apply(ctx, evSrc(siteA), eventDeltas(t, string(siteA), i+1, recA[i:j]), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Apply(ctx, evSrc(siteB), eventDeltas(t, string(siteB), 1, recB), nil); err != nil {
		t.Fatal(err)
	}
	// Again: a duplicate changes nothing.
	if err := s.Apply(ctx, evSrc(siteB), eventDeltas(t, string(siteB), 1, recB[:10]), nil); err != nil {
		t.Fatal(err)
	}
	if !s.Vector().Equal(vec) {
		t.Fatalf("events changed the replica's vector: %v", s.Vector())
	}
	select {
	case <-changed:
		t.Fatal("events signalled a change of the replica")
	default:
	}
	if got := s.SyncVector(); got[evSrc(siteA)] != 3000 || got[evSrc(siteB)] != 1500 {
		t.Fatalf("sync vector %v", got)
	}
	check := func(s *hubstate.State) {
		t.Helper()
		all := allEvents(t, s, hubstate.EventQuery{}, 97)
		if len(all) != 4500 || s.EventCount() != 4500 {
			t.Fatalf("%d events paged, %d held, want 4500", len(all), s.EventCount())
		}
		seen := map[hubstate.EventKey]bool{}
		for i, e := range all {
			k := hubstate.EventKey{Site: e.Site, Seq: e.Seq}
			if seen[k] {
				t.Fatalf("event %v twice", k)
			}
			seen[k] = true
			if i > 0 {
				p := all[i-1]
				if e.At.After(p.At) || e.At.Equal(p.At) && (e.Site > p.Site || e.Site == p.Site && e.Seq > p.Seq) {
					t.Fatalf("not newest first at %d: %v after %v", i, e, p)
				}
			}
			want := recA
			if e.Site == siteB {
				want = recB
			}
			if w := want[e.Seq-1].Canonical(); e.EventRecord != w {
				t.Fatalf("event %s/%d = %+v, want %+v", e.Site, e.Seq, e.EventRecord, w)
			}
		}
		// Filters, against a scan of what was sent.
		from, until := evT0.Add(50*time.Second), evT0.Add(150*time.Second)
		q := hubstate.EventQuery{Site: siteA, Door: doors[1], Holder: ann, Result: hubstate.OnlyDenied, From: from, Until: until}
		got := allEvents(t, s, q, 3)
		n := 0
		for i, r := range recA {
			if r.Door == doors[1] && r.Holder == ann && !r.Granted && !r.At.Before(from) && r.At.Before(until) {
				n++
				if !slices.ContainsFunc(got, func(e hubstate.Event) bool { return e.Seq == uint64(i+1) }) {
					t.Fatalf("filtered query misses %d", i+1)
				}
			}
		}
		if len(got) != n || n == 0 {
			t.Fatalf("filtered query: %d events, want %d", len(got), n)
		}
		// Scope: only events of the holders accepted.
		scoped := allEvents(t, s, hubstate.EventQuery{Holders: func(h access.ID) bool { return h == ann }}, 500)
		if len(scoped) != 900 {
			t.Fatalf("scoped to Ann: %d events, want 900", len(scoped))
		}
		if evs, _ := s.QueryEvents(hubstate.EventQuery{Door: tid(99)}); len(evs) != 0 {
			t.Fatalf("an unknown door matched %d events", len(evs))
		}
	}
	check(s)
	s.Close()
	st.Close()
	s2, _ := MustOpen(t, dir)
	check(s2)
}

// TestEventsRefused: a malformed or out-of-place events batch is refused
// whole and changes nothing.
func TestEventsRefused(t *testing.T) {
	s, st := MustOpen(t, t.TempDir())
	site, other := tid(1), tid(2)
	recs := []replication.EventRecord{{At: evT0, Door: tid(10), Card: 5}, {At: evT0, Door: tid(10), Card: 6}}
	good := eventDeltas(t, string(site), 1, recs)
	person := replication.Delta{Origin: string(site), Lane: replication.LaneNormal, Seq: 1, Stamp: good[0].Stamp,
		Kind: replication.KindPerson, ID: string(tid(3)), Ops: []replication.Op{replication.SetOp("name", "x")}}
	for name, c := range map[string]struct {
		src replication.Source
		ds  []replication.Delta
	}{
		"another origin's event": {evSrc(site), append(eventDeltas(t, string(other), 1, recs[:1]), good[1])},
		"a gap":                  {evSrc(site), good[1:]},
		"a person in the lane":   {evSrc(site), []replication.Delta{person}},
		"an event mis-numbered":  {evSrc(site), []replication.Delta{good[1], good[0]}},
	} {
		if err := s.Apply(ctx, c.src, c.ds, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if s.EventCount() != 0 || len(s.SyncVector()) != 0 {
		t.Fatalf("refused batches left %d events, vector %v", s.EventCount(), s.SyncVector())
	}
	v, err := st.Vector(ctx)
	if err != nil || len(v) != 0 {
		t.Fatalf("store vector %v %v", v, err)
	}
	if err := s.Apply(ctx, evSrc(site), good, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, evSrc(site), eventDeltas(t, string(site), 4, recs[:1]), nil); !errors.Is(err, replication.ErrGap) {
		t.Fatalf("gap: %v", err)
	}
}

// TestUnknownCards: taps of a card the site did not know are listed with
// their first and last time and count, until the number is assigned.
func TestUnknownCards(t *testing.T) {
	s, _ := MustOpen(t, t.TempDir())
	site := tid(1)
	recs := []replication.EventRecord{
		{At: evT0.Add(2 * time.Minute), Door: tid(10), Card: 4242, Reason: access.ReasonUnknownCard},
		{At: evT0, Door: tid(11), Card: 4242, Reason: access.ReasonUnknownCard},
		{At: evT0.Add(time.Minute), Door: tid(11), Card: 77, Reason: access.ReasonUnknownCard},
		{At: evT0.Add(time.Minute), Door: tid(11), Card: 88, Reason: access.ReasonNoGroup, Holder: tid(30)},
	}
	if err := s.Apply(ctx, evSrc(site), eventDeltas(t, string(site), 1, recs), nil); err != nil {
		t.Fatal(err)
	}
	got := s.UnknownCards("", time.Time{})
	want := []hubstate.UnknownCard{
		{Card: 4242, First: evT0, Last: evT0.Add(2 * time.Minute), Count: 2, Site: site, Door: tid(10)},
		{Card: 77, First: evT0.Add(time.Minute), Last: evT0.Add(time.Minute), Count: 1, Site: site, Door: tid(11)},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("unknown cards %+v, want %+v", got, want)
	}
	if got := s.UnknownCards(tid(2), time.Time{}); len(got) != 0 {
		t.Fatalf("another site's: %v", got)
	}
	if got := s.UnknownCards("", evT0.Add(90*time.Second)); len(got) != 1 || got[0].Card != 4242 {
		t.Fatalf("since: %v", got)
	}
	if err := addPerson(t, s, tid(31), 4242); err != nil {
		t.Fatal(err)
	}
	if got := s.UnknownCards("", time.Time{}); len(got) != 1 || got[0].Card != 77 {
		t.Fatalf("after assigning 4242: %v", got)
	}
}

// TestEventsConcurrent: queries and unknown-card listings run while two
// sites' batches are applied (run with -race); every event lands once.
func TestEventsConcurrent(t *testing.T) {
	s, _ := MustOpen(t, t.TempDir())
	done := make(chan error, 2)
	for si, site := range []access.ID{tid(1), tid(2)} {
		go func() {
			for b := range 20 {
				recs := make([]replication.EventRecord, 50)
				for i := range recs {
					recs[i] = replication.EventRecord{At: evT0.Add(time.Duration(b*50+i+si) * time.Second), Door: tid(10),
						Card: access.CardNumber(1 + i), Reason: access.ReasonUnknownCard}
				}
				ds := make([]replication.Delta, len(recs))
				for i, r := range recs {
					d, err := replication.EventDelta(string(site), uint64(b*50+i+1), r)
					if err != nil {
						done <- err
						return
					}
					ds[i] = d
				}
				if err := s.Apply(ctx, evSrc(site), ds, nil); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	finished := 0
	for finished < 2 {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			finished++
		default:
			s.QueryEvents(hubstate.EventQuery{Door: tid(10), Limit: 10})
			s.UnknownCards("", time.Time{})
		}
	}
	if got := allEvents(t, s, hubstate.EventQuery{}, 333); len(got) != 2000 {
		t.Fatalf("%d events, want 2000", len(got))
	}
}

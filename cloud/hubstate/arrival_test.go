package hubstate_test

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/cloud/store"
	"github.com/gatehouse/gatehouse/replication"
)

// siteWriter makes deltas of a site's own normal lane, as the site would.
type siteWriter struct {
	t      *testing.T
	origin string
	w      *replication.Writer
}

func newSiteWriter(t *testing.T, origin string) *siteWriter {
	w, err := replication.NewWriter(origin, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &siteWriter{t: t, origin: origin, w: w}
}

func (sw *siteWriter) make(k replication.Kind, id string, ops ...replication.Op) replication.Delta {
	sw.t.Helper()
	d, err := sw.w.Make(replication.Stamp{Wall: time.Now().UnixNano(), Origin: sw.origin}, k, id, ops...)
	if err != nil {
		sw.t.Fatal(err)
	}
	return d
}

// apply applies a batch of the site's normal lane to the hub.
func apply(t *testing.T, s *hubstate.State, ds ...replication.Delta) {
	t.Helper()
	if err := s.Apply(ctx, ds[0].Source(), ds, nil); err != nil {
		t.Fatal(err)
	}
}

// The tests below grant groups the hub does not know (the people API
// refuses that; replication must not rely on it).

func TestScopeOnArrival(t *testing.T) {
	dir := t.TempDir()
	s, st := MustOpen(t, dir)
	group, visit := tid(9201), tid(9202) // made at site A, not at the hub yet
	p1, p2 := tid(1), tid(2)
	for i, p := range []access.ID{p1, p2} {
		if err := addPerson(t, s, p, access.CardNumber(601+i)); err != nil {
			t.Fatal(err)
		}
	}
	grant(t, s, tid(11), p1, group)
	grant(t, s, tid(12), p2, group)
	if _, err := s.Write(ctx, func(tx *hubstate.Tx) error { // P2's grant removed: final
		tx.Change(replication.KindGrant, string(tid(12)), replication.RemoveGrantOp())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	grant(t, s, tid(13), visit, tid(9101)) // a group the hub does not know either
	if n := s.ScopedLen(scopeA); n != 0 {
		t.Fatalf("before the group arrives, site A's scoped log holds %d deltas", n)
	}

	// Site A's group arrives, with another change in the same batch.
	sw := newSiteWriter(t, scopeA)
	apply(t, s,
		sw.make(replication.KindDoor, string(tid(9203)), replication.SetOp("site", scopeA), replication.SetOp("name", "Main")),
		sw.make(replication.KindGroup, string(group), replication.SetOp("site", scopeA), replication.SetOp("name", "A staff"),
			replication.SetOp("kind", "access")))
	want := []string{ent(replication.KindPerson, p1), ent(replication.KindCard, access.CardNumber(601)), ent(replication.KindGrant, tid(11))}
	if got := scopedEntities(t, s, scopeA); !reflect.DeepEqual(got, want) {
		t.Fatalf("site A's scoped log once its group arrived: %v, want %v", got, want)
	}
	// Durable in the same commit as the group: the store's scoped log.
	if v, err := st.Vector(ctx); err != nil || v["scope/"+scopeA] != 1 {
		t.Fatalf("stored scoped log of A: %v, %v", v, err)
	}
	// Concern grows from there: P1's later change reaches A.
	before := s.ScopedLen(scopeA)
	if _, err := s.Write(ctx, func(tx *hubstate.Tx) error {
		tx.Change(replication.KindPerson, string(p1), replication.SetOp("email", "p1@example.com"))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if s.ScopedLen(scopeA) != before+1 {
		t.Fatalf("P1's change after the arrival: A's scoped log %d → %d", before, s.ScopedLen(scopeA))
	}
	// Resent (a duplicate batch after a cut): nothing more.
	before = s.ScopedLen(scopeA)
	sw2 := newSiteWriter(t, scopeA)
	apply(t, s,
		sw2.make(replication.KindDoor, string(tid(9203)), replication.SetOp("site", scopeA), replication.SetOp("name", "Main")))
	if s.ScopedLen(scopeA) != before {
		t.Fatal("a duplicate batch extended the scoped log")
	}

	// A visit made at site B arrives: the hub's grant it holds reaches B,
	// and nothing of it reaches A.
	swB := newSiteWriter(t, scopeB)
	apply(t, s, swB.make(replication.KindVisit, string(visit), replication.SetOp("site", scopeB),
		replication.SetOp("visitor", string(p2)), replication.AdvanceOp(access.VisitInvited)))
	gotB := scopedEntities(t, s, scopeB)
	if !slices.Contains(gotB, ent(replication.KindGrant, tid(13))) || !slices.Contains(gotB, ent(replication.KindPerson, p2)) {
		t.Fatalf("site B's scoped log once its visit arrived: %v, want the visit's grant and its visitor", gotB)
	}
	if got := scopedEntities(t, s, scopeA); slices.Contains(got, ent(replication.KindGrant, tid(13))) {
		t.Fatal("site A received a grant held by site B's visit")
	}

	// A restart finds the same scoped logs, and reconciling adds nothing.
	wantLogs := map[string][]replication.Delta{}
	for _, site := range []string{scopeA, scopeB} {
		wantLogs[site], _ = s.ScopedDeltas(site, 0, 0)
	}
	headBefore, _ := st.Vector(ctx)
	s.Close()
	st.Close()
	s2, st2 := MustOpen(t, dir)
	for site, want := range wantLogs {
		if got, _ := s2.ScopedDeltas(site, 0, 0); !reflect.DeepEqual(got, want) {
			t.Fatalf("site %s's scoped log after reopening: %d deltas, want %d", site, len(got), len(want))
		}
	}
	if headAfter, _ := st2.Vector(ctx); !reflect.DeepEqual(headAfter, headBefore) {
		t.Fatalf("reopening wrote: store vector %v, was %v", headAfter, headBefore)
	}
}

func TestScopeReconciledOnOpen(t *testing.T) {
	// A store whose site batch was committed without the scoped records
	// it brings (by a hub from before re-scoping, or lost): Open adds
	// them, once.
	dir := t.TempDir()
	s, st := MustOpen(t, dir)
	scopeGroups(t, s) // the sites have scoped logs already: no migration
	group := tid(9201)
	if err := addPerson(t, s, tid(1), 701); err != nil {
		t.Fatal(err)
	}
	grant(t, s, tid(11), tid(1), group)
	s.Close()
	sw := newSiteWriter(t, scopeA)
	d := sw.make(replication.KindGroup, string(group), replication.SetOp("site", scopeA), replication.SetOp("name", "A staff"))
	data, _ := d.MarshalBinary()
	if err := st.Append(ctx, hubstate.StoreOrigin(d.Source()), store.Record{Seq: 1, Lane: store.Normal, Data: data}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	s2, st2 := MustOpen(t, dir)
	want := []string{ent(replication.KindGroup, tid(9101)), ent(replication.KindPerson, tid(1)), ent(replication.KindCard, access.CardNumber(701)),
		ent(replication.KindGrant, tid(11))}
	if got := scopedEntities(t, s2, scopeA); !reflect.DeepEqual(got, want) {
		t.Fatalf("site A's scoped log after reconciling: %v, want %v", got, want)
	}
	head, _ := st2.Vector(ctx)
	s2.Close()
	st2.Close()
	s3, st3 := MustOpen(t, dir)
	if got := scopedEntities(t, s3, scopeA); !reflect.DeepEqual(got, want) {
		t.Fatalf("site A's scoped log after a second open: %v, want %v", got, want)
	}
	if again, _ := st3.Vector(ctx); !reflect.DeepEqual(again, head) {
		t.Fatalf("a second open reconciled again: %v, was %v", again, head)
	}
}

func TestScopeArrivalRefusedBatchChangesNothing(t *testing.T) {
	// A site batch that fails (a gap) brings nothing into scope.
	s, _ := MustOpen(t, t.TempDir())
	group := tid(9201)
	if err := addPerson(t, s, tid(1), 801); err != nil {
		t.Fatal(err)
	}
	grant(t, s, tid(11), tid(1), group)
	sw := newSiteWriter(t, scopeA)
	_ = sw.make(replication.KindDoor, string(tid(9203)), replication.SetOp("site", scopeA))
	d := sw.make(replication.KindGroup, string(group), replication.SetOp("site", scopeA))
	if err := s.Apply(ctx, d.Source(), []replication.Delta{d}, nil); access.ErrorCode(err) != access.Conflict {
		t.Fatalf("a batch past a gap: %v, want conflict", err)
	}
	if n := s.ScopedLen(scopeA); n != 0 {
		t.Fatalf("a refused batch scoped %d deltas", n)
	}
}

func TestScopeRelaysAnotherSitesPerson(t *testing.T) {
	// A visitor registered at site B (B's normal lane) and granted at site
	// A by the hub: A receives what B made of the visitor, as A's scoped
	// log of B's normal lane, and B's later changes of them; nothing else
	// of B's.
	dir := t.TempDir()
	s, st := MustOpen(t, dir)
	scopeGroups(t, s)
	vera := tid(50)
	srcB := replication.Source{Origin: scopeB, Lane: replication.LaneNormal}
	sw := newSiteWriter(t, scopeB)
	apply(t, s,
		sw.make(replication.KindDoor, string(tid(9203)), replication.SetOp("site", scopeB), replication.SetOp("name", "Kiosk")),
		sw.make(replication.KindPerson, string(vera), replication.SetOp("name", "Vera"), replication.SetOp("kind", "visitor"),
			replication.Op{Type: replication.OpEnable}),
		sw.make(replication.KindCard, "901", replication.SetOp("site", scopeB), replication.AddOp("holders", string(vera)),
			replication.Op{Type: replication.OpEnable}))
	if n := s.ScopedSourceLen(scopeA, srcB); n != 0 {
		t.Fatalf("before the grant, A's scoped log of B holds %d", n)
	}
	grant(t, s, tid(51), vera, tid(9101))
	relayedTo := func(s *hubstate.State, site string) []string {
		t.Helper()
		ds, err := s.ScopedSourceDeltas(site, srcB, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for i, d := range ds {
			if d.Seq != uint64(i+1) || d.Source() != srcB {
				t.Fatalf("relayed delta %d is %s/%d", i, d.Source(), d.Seq)
			}
			out = append(out, ent(d.Kind, d.ID))
		}
		if uint64(len(out)) != s.ScopedSourceLen(site, srcB) || s.ScopedVector(site)[srcB] != uint64(len(out)) {
			t.Fatalf("A's scoped log of B: %d deltas, len %d, vector %v", len(out), s.ScopedSourceLen(site, srcB), s.ScopedVector(site))
		}
		return out
	}
	want := []string{ent(replication.KindPerson, vera), ent(replication.KindCard, "901")}
	if got := relayedTo(s, scopeA); !reflect.DeepEqual(got, want) {
		t.Fatalf("A's scoped log of B after the grant: %v, want %v", got, want)
	}
	if !slices.Contains(scopedEntities(t, s, scopeA), ent(replication.KindGrant, tid(51))) {
		t.Fatal("the grant did not reach A")
	}
	// B's later change of Vera follows; B's door does not; B never gets
	// its own back.
	apply(t, s,
		sw.make(replication.KindPerson, string(vera), replication.SetOp("email", "vera@example.com")),
		sw.make(replication.KindDoor, string(tid(9203)), replication.SetOp("name", "Kiosk 2")))
	want = append(want, ent(replication.KindPerson, vera))
	if got := relayedTo(s, scopeA); !reflect.DeepEqual(got, want) {
		t.Fatalf("A's scoped log of B after B's changes: %v, want %v", got, want)
	}
	if n := s.ScopedSourceLen(scopeB, srcB); n != 0 {
		t.Fatalf("B's scoped log of its own lane holds %d", n)
	}
	if v := s.ScopedVector(scopeB); v[srcB] != 5 {
		t.Fatalf("B's own lane in its vector: %v, want 5", v)
	}
	s.Close()
	st.Close()
	s2, _ := MustOpen(t, dir)
	if got := relayedTo(s2, scopeA); !reflect.DeepEqual(got, want) {
		t.Fatalf("A's scoped log of B after reopening: %v, want %v", got, want)
	}
	// And it goes on after the reopen.
	apply(t, s2, sw.make(replication.KindPerson, string(vera), replication.SetOp("name", "Vera K")))
	if n := s2.ScopedSourceLen(scopeA, srcB); n != 4 {
		t.Fatalf("A's scoped log of B after a change following the reopen: %d, want 4", n)
	}
}

func TestScopeArrivalApart(t *testing.T) {
	// Scoped records too large to ride with the site's batch are committed
	// right after it: the same scoped log, as durable.
	defer hubstate.ScopeApart()()
	dir := t.TempDir()
	s, st := MustOpen(t, dir)
	group := tid(9201)
	if err := addPerson(t, s, tid(1), 901); err != nil {
		t.Fatal(err)
	}
	grant(t, s, tid(11), tid(1), group)
	sw := newSiteWriter(t, scopeA)
	apply(t, s, sw.make(replication.KindGroup, string(group), replication.SetOp("site", scopeA)))
	want := []string{ent(replication.KindPerson, tid(1)), ent(replication.KindCard, access.CardNumber(901)), ent(replication.KindGrant, tid(11))}
	if got := scopedEntities(t, s, scopeA); !reflect.DeepEqual(got, want) {
		t.Fatalf("site A's scoped log: %v, want %v", got, want)
	}
	if v, err := st.Vector(ctx); err != nil || v["scope/"+scopeA] != 1 {
		t.Fatalf("stored scoped log of A: %v, %v", v, err)
	}
	s.Close()
	st.Close()
	s2, _ := MustOpen(t, dir)
	if got := scopedEntities(t, s2, scopeA); !reflect.DeepEqual(got, want) {
		t.Fatalf("site A's scoped log after reopening: %v, want %v", got, want)
	}
}

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

var (
	scopeA = string(tid(9001))
	scopeB = string(tid(9002))
)

// scopeGroups writes, at the hub, a group at each of the two sites:
// tid(9101) at A and tid(9102) at B.
func scopeGroups(t *testing.T, s *hubstate.State) {
	t.Helper()
	if _, err := s.Write(ctx, func(tx *hubstate.Tx) error {
		tx.Change(replication.KindGroup, string(tid(9101)), replication.SetOp("site", scopeA), replication.SetOp("name", "A staff"),
			replication.SetOp("kind", "access"))
		tx.Change(replication.KindGroup, string(tid(9102)), replication.SetOp("site", scopeB), replication.SetOp("name", "B staff"),
			replication.SetOp("kind", "access"))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// grant writes a grant of group to person.
func grant(t *testing.T, s *hubstate.State, id, person, group access.ID) {
	t.Helper()
	if _, err := s.Write(ctx, func(tx *hubstate.Tx) error {
		tx.Change(replication.KindGrant, string(id), tx.Replica().GrantOp(access.Grant{HolderID: person, GroupID: group}))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// scopedEntities returns the entities of site's scoped log, and checks
// that it is numbered 1, 2, 3... and holds only hub/normal deltas.
func scopedEntities(t *testing.T, s *hubstate.State, site string) []string {
	t.Helper()
	ds, err := s.ScopedDeltas(site, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := uint64(len(ds)); got != s.ScopedLen(site) || s.ScopedVector(site)[replication.Source{Origin: hubstate.Origin, Lane: replication.LaneNormal}] != got {
		t.Fatalf("scoped log of %s: %d deltas, ScopedLen %d, vector %v", site, got, s.ScopedLen(site), s.ScopedVector(site))
	}
	var out []string
	for i, d := range ds {
		if d.Seq != uint64(i+1) || d.Origin != hubstate.Origin || d.Lane != replication.LaneNormal {
			t.Fatalf("scoped delta %d of %s is %s/%d", i, site, d.Source(), d.Seq)
		}
		if k := d.Kind.String() + " " + d.ID; !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

func ent(k replication.Kind, id any) string {
	switch v := id.(type) {
	case access.ID:
		return k.String() + " " + string(v)
	case access.CardNumber:
		return k.String() + " " + v.String()
	}
	return k.String() + " " + id.(string)
}

func TestScopedLogs(t *testing.T) {
	dir := t.TempDir()
	s, st := MustOpen(t, dir)
	scopeGroups(t, s)
	groupA, groupB := tid(9101), tid(9102)
	// P1 at A, P2 at B, P3 nowhere (yet).
	for i, p := range []access.ID{tid(1), tid(2), tid(3)} {
		if err := addPerson(t, s, p, access.CardNumber(501+i)); err != nil {
			t.Fatal(err)
		}
	}
	grant(t, s, tid(11), tid(1), groupA)
	grant(t, s, tid(12), tid(2), groupB)
	wantA := []string{ent(replication.KindGroup, groupA), ent(replication.KindPerson, tid(1)), ent(replication.KindCard, access.CardNumber(501)),
		ent(replication.KindGrant, tid(11))}
	wantB := []string{ent(replication.KindGroup, groupB), ent(replication.KindPerson, tid(2)), ent(replication.KindCard, access.CardNumber(502)),
		ent(replication.KindGrant, tid(12))}
	if got := scopedEntities(t, s, scopeA); !reflect.DeepEqual(got, wantA) {
		t.Fatalf("site A's scoped log: %v, want %v", got, wantA)
	}
	if got := scopedEntities(t, s, scopeB); !reflect.DeepEqual(got, wantB) {
		t.Fatalf("site B's scoped log: %v, want %v", got, wantB)
	}
	if got := s.ScopedLen(string(tid(9003))); got != 0 {
		t.Fatalf("a site nothing concerns has %d scoped deltas", got)
	}

	// A later change of P1 reaches A only; P3's changes reach nobody.
	before := s.ScopedLen(scopeB)
	for _, p := range []access.ID{tid(1), tid(3)} {
		if _, err := s.Write(ctx, func(tx *hubstate.Tx) error {
			tx.Change(replication.KindPerson, string(p), replication.SetOp("email", "x@example.com"))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if s.ScopedLen(scopeB) != before {
		t.Fatal("site B received changes of people it has nothing to do with")
	}

	// P3 granted at B: B receives P3's earlier deltas (name, email) and
	// card first, then the grant.
	grant(t, s, tid(13), tid(3), groupB)
	ds, _ := s.ScopedDeltas(scopeB, before, 0)
	var got []string
	for _, d := range ds {
		got = append(got, d.Kind.String()+" "+d.ID)
	}
	want := []string{ent(replication.KindPerson, tid(3)), ent(replication.KindPerson, tid(3)), ent(replication.KindCard, access.CardNumber(503)),
		ent(replication.KindGrant, tid(13))}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("site B on P3's entry received %v, want %v", got, want)
	}
	if ds[0].Seq != before+1 {
		t.Fatalf("backfill numbered from %d, want %d", ds[0].Seq, before+1)
	}

	// P1's card moves to P2: both sites receive it (A once had it).
	lenA, lenB := s.ScopedLen(scopeA), s.ScopedLen(scopeB)
	if _, err := s.Write(ctx, func(tx *hubstate.Tx) error {
		r := tx.Replica()
		tx.Change(replication.KindCard, "501", r.RemoveOp(replication.KindCard, "501", "holders", string(tid(1))))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(ctx, func(tx *hubstate.Tx) error {
		tx.Change(replication.KindCard, "501", replication.AddOp("holders", string(tid(2))))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if s.ScopedLen(scopeA) != lenA+3 || s.ScopedLen(scopeB) != lenB+2 {
		// A: its new holder P2 enters A with P2's card (a site names who
		// holds a card it knows), then the add (the remove is a
		// revocation: priority lane, sent everywhere); B: the card's
		// earlier delta, then the add.
		t.Fatalf("after the move: A %d→%d, B %d→%d", lenA, s.ScopedLen(scopeA), lenB, s.ScopedLen(scopeB))
	}

	// A restart finds the same scoped logs.
	wantLogs := map[string][]replication.Delta{}
	for _, site := range []string{scopeA, scopeB} {
		wantLogs[site], _ = s.ScopedDeltas(site, 0, 0)
	}
	s.Close()
	st.Close()
	s2, _ := MustOpen(t, dir)
	for site, want := range wantLogs {
		got, _ := s2.ScopedDeltas(site, 0, 0)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("site %s's scoped log after reopening: %d deltas, want %d", site, len(got), len(want))
		}
	}
	// And extends them from where they were.
	grant(t, s2, tid(14), tid(1), groupB)
	if s2.ScopedLen(scopeB) <= uint64(len(wantLogs[scopeB])) {
		t.Fatal("P1's grant at B did not reach B after the reopen")
	}
}

func TestScopedLogLargeWrite(t *testing.T) {
	// A bulk write (larger than one store commit) scopes the same way, and
	// its scoped records are durable with it.
	dir := t.TempDir()
	s, st := MustOpen(t, dir)
	scopeGroups(t, s)
	const n = 3000 // 3 deltas each: past one commit's 4096 records
	if _, err := s.Write(ctx, func(tx *hubstate.Tx) error {
		for i := range n {
			p := tid(20_000 + i)
			tx.Change(replication.KindPerson, string(p), replication.SetOp("name", "Bulk"), replication.SetOp("kind", "occupier"))
			tx.Change(replication.KindCard, access.CardNumber(100_000+i).String(), replication.AddOp("holders", string(p)))
			group := tid(9101)
			if i%2 == 1 {
				group = tid(9102)
			}
			tx.Change(replication.KindGrant, string(tid(40_000+i)), tx.Replica().GrantOp(access.Grant{HolderID: p, GroupID: group}))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := uint64(1 + 3*n/2)
	if a, b := s.ScopedLen(scopeA), s.ScopedLen(scopeB); a != want || b != want {
		t.Fatalf("scoped logs after the bulk write: A %d, B %d, want %d each", a, b, want)
	}
	s.Close()
	st.Close()
	s2, _ := MustOpen(t, dir)
	if a := s2.ScopedLen(scopeA); a != want {
		t.Fatalf("site A's scoped log after reopening: %d, want %d", a, want)
	}
}

func TestScopedLogsBuiltForOldStore(t *testing.T) {
	// A store written before scoped logs existed: the hub's deltas are in
	// its log, no scoped log. Open builds them.
	dir := t.TempDir()
	st := MustOpenStore(t, dir)
	w, err := replication.NewWriter(hubstate.Origin, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixNano()
	var recs []store.Record
	for i, c := range []struct {
		k   replication.Kind
		id  string
		ops []replication.Op
	}{
		{replication.KindGroup, string(tid(9101)), []replication.Op{replication.SetOp("site", scopeA), replication.SetOp("name", "A")}},
		{replication.KindPerson, string(tid(1)), []replication.Op{replication.SetOp("name", "P1")}},
		{replication.KindPerson, string(tid(2)), []replication.Op{replication.SetOp("name", "P2")}},
		{replication.KindGrant, string(tid(11)), []replication.Op{{Type: replication.OpGrant, Value: replication.GrantValue(access.Grant{HolderID: tid(1), GroupID: tid(9101)})}}},
	} {
		d, err := w.Make(replication.Stamp{Wall: now + int64(i), Origin: hubstate.Origin}, c.k, c.id, c.ops...)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := d.MarshalBinary()
		recs = append(recs, store.Record{Seq: d.Seq, Lane: store.Normal, Data: data})
	}
	if err := st.Append(ctx, "hub/normal", recs...); err != nil {
		t.Fatal(err)
	}
	s, err := hubstate.Open(ctx, st, hubstate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := []string{ent(replication.KindGroup, tid(9101)), ent(replication.KindPerson, tid(1)), ent(replication.KindGrant, tid(11))}
	if got := scopedEntities(t, s, scopeA); !reflect.DeepEqual(got, want) {
		t.Fatalf("built scoped log: %v, want %v", got, want)
	}
	if v, err := st.Vector(ctx); err != nil || v["scope/"+scopeA] != 1 {
		t.Fatalf("stored scoped log: %v, %v", v, err)
	}
}

func TestScopedLogMalformedRecord(t *testing.T) {
	// A scoped record naming a hub delta the hub does not hold is refused
	// on open with a clear error.
	dir := t.TempDir()
	st := MustOpenStore(t, dir)
	if err := st.Append(ctx, "scope/"+scopeA, store.Record{Seq: 1, Lane: store.Normal, Data: []byte{5}}); err != nil {
		t.Fatal(err)
	}
	if _, err := hubstate.Open(ctx, st, hubstate.Options{}); access.ErrorCode(err) != access.Invalid {
		t.Fatalf("open over a dangling scoped record: %v, want invalid", err)
	}
}

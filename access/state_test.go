package access_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"pgregory.net/rapid"
)

func TestState_PutGrant(t *testing.T) {
	t0 := time.Date(2026, 3, 4, 9, 0, 0, 0, time.UTC)
	live := access.Grant{ID: idA, HolderID: idB, GroupID: idC, ValidFrom: t0}
	removed := live
	removed.Removed = true
	bare := access.Grant{ID: idA, Removed: true}
	changed := live
	changed.GroupID = idD

	tests := []struct {
		name     string
		puts     []access.Grant
		wantLive bool
		wantErr  error
	}{
		{"OK", []access.Grant{live}, true, nil},
		{"OK/Idempotent", []access.Grant{live, live}, true, nil},
		{"OK/Removed", []access.Grant{live, removed}, false, nil},
		{"OK/RemovedByBareTombstone", []access.Grant{live, bare}, false, nil},
		{"OK/NotResurrected", []access.Grant{live, removed, live}, false, nil},
		{"OK/TombstoneFirst", []access.Grant{bare, live}, false, nil},
		{"OK/ChangedAfterRemovalIgnored", []access.Grant{removed, changed}, false, nil},
		{"ErrGrantImmutable", []access.Grant{live, changed}, true, access.ErrGrantImmutable},
		{"ErrInvalid", []access.Grant{{ID: idA, HolderID: idB}}, false, access.ErrBadID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := access.NewState()
			var err error
			for _, g := range tt.puts {
				if e := st.PutGrant(g); e != nil {
					err = e
				}
			}
			if tt.wantErr == nil && err != nil {
				t.Fatalf("PutGrant: %v", err)
			}
			if tt.wantErr == access.ErrBadID {
				if got, want := access.ErrorCode(err), access.Invalid; got != want {
					t.Fatalf("ErrorCode = %q, want %q (err %v)", got, want, err)
				}
			} else if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			got := st.GrantsOf(idB)
			if tt.wantLive {
				if len(got) != 1 || got[0] != live {
					t.Errorf("GrantsOf = %+v, want [%+v]", got, live)
				}
			} else if len(got) != 0 {
				t.Errorf("GrantsOf = %+v, want none", got)
			}
			c := st.Counts()
			if tt.wantLive && (c.Grants != 1 || c.Tombstones != 0) {
				t.Errorf("Counts = %+v, want 1 grant", c)
			}
		})
	}
}

func TestState_GrantsOfSortedAndStable(t *testing.T) {
	st := access.NewState()
	ids := []access.ID{idD, idA, idC}
	for _, id := range ids {
		must(t, st.PutGrant(access.Grant{ID: id, HolderID: idB, GroupID: idC}))
	}
	before := st.GrantsOf(idB)
	var got []access.ID
	for _, g := range before {
		got = append(got, g.ID)
	}
	if want := []access.ID{idA, idC, idD}; !slices.Equal(got, want) {
		t.Errorf("GrantsOf IDs = %v, want %v", got, want)
	}
	must(t, st.RemoveGrant(idC))
	if got, want := len(before), 3; got != want || before[1].ID != idC {
		t.Errorf("a slice returned earlier changed: %+v", before)
	}
	if got, want := len(st.GrantsOf(idB)), 2; got != want {
		t.Errorf("after removal len(GrantsOf) = %d, want %d", got, want)
	}
	if c := st.Counts(); c.Grants != 2 || c.Tombstones != 1 {
		t.Errorf("Counts = %+v, want 2 grants and 1 tombstone", c)
	}
	if g, ok := st.Grant(idC); !ok || !g.Removed || g.HolderID != idB {
		t.Errorf("Grant(%s) = %+v, %v; want the tombstone with its contents", idC, g, ok)
	}
}

func TestState_PutVisit(t *testing.T) {
	t0 := time.Date(2026, 3, 4, 9, 0, 0, 0, time.UTC)
	v := access.Visit{ID: idA, SiteID: idB, HostID: idC, VisitorID: idD, From: t0, Until: t0.Add(time.Hour)}
	tests := []struct {
		name   string
		states []access.VisitState
		want   access.VisitState
	}{
		{"OK", []access.VisitState{access.VisitInvited}, access.VisitInvited},
		{"OK/Forward", []access.VisitState{access.VisitInvited, access.VisitCheckedIn}, access.VisitCheckedIn},
		{"OK/NeverBackwards", []access.VisitState{access.VisitCheckedOut, access.VisitCheckedIn}, access.VisitCheckedOut},
		{"OK/DeniedWins", []access.VisitState{access.VisitDenied, access.VisitPickedUp, access.VisitCancelled}, access.VisitDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := access.NewState()
			for _, s := range tt.states {
				v.State = s
				must(t, st.PutVisit(v))
			}
			got, ok := st.Visit(idA)
			if !ok || got.State != tt.want {
				t.Errorf("state = %v (found %v), want %v", got.State, ok, tt.want)
			}
		})
	}
}

func TestState_PutPersonDeletionIsForever(t *testing.T) {
	st := access.NewState()
	p := access.Person{ID: idA, Kind: access.AccessUser, Name: "Pat", Active: true}
	must(t, st.PutPerson(p))
	p.Deleted = true
	must(t, st.PutPerson(p))
	p.Deleted = false
	p.Name = "Pat again"
	must(t, st.PutPerson(p))
	got, _ := st.Person(idA)
	if !got.Deleted {
		t.Errorf("person %+v came back after deletion", got)
	}
	if got.Name != "Pat again" {
		t.Errorf("name = %q, want the latest put's", got.Name)
	}
}

func TestState_ErrInvalidChangesNothing(t *testing.T) {
	st := access.NewState()
	tests := []struct {
		name string
		put  func() error
	}{
		{"ErrSite", func() error { return st.PutSite(access.Site{ID: idA, Name: "x", TimeZone: "Nowhere/Land"}) }},
		{"ErrZone", func() error { return st.PutZone(access.Zone{ID: idA}) }},
		{"ErrDoor", func() error { return st.PutDoor(access.Door{ID: idA, SiteID: idB}) }},
		{"ErrSchedule", func() error { return st.PutSchedule(access.Schedule{ID: idA, SiteID: idB}) }},
		{"ErrGroup", func() error { return st.PutGroup(access.Group{ID: idA, SiteID: idB, Name: "g"}) }},
		{"ErrPerson", func() error { return st.PutPerson(access.Person{ID: idA, Name: "p"}) }},
		{"ErrCard", func() error { return st.PutCard(access.Card{Number: 5, PersonID: idA}) }},
		{"ErrVisit", func() error { return st.PutVisit(access.Visit{ID: idA}) }},
		{"ErrVisitorType", func() error { return st.PutVisitorType(access.VisitorType{ID: idA}) }},
		{"ErrGrant", func() error { return st.PutGrant(access.Grant{ID: idA, GroupID: idB}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.put()
			if got, want := access.ErrorCode(err), access.Invalid; got != want {
				t.Errorf("ErrorCode = %q, want %q (err %v)", got, want, err)
			}
		})
	}
	if got, want := st.Counts(), (access.Counts{}); got != want {
		t.Errorf("Counts = %+v, want all zero", got)
	}
}

func TestState_PutCopiesSlices(t *testing.T) {
	st := access.NewState()
	doors := []access.ID{idC}
	must(t, st.PutGroup(access.Group{ID: idA, SiteID: idB, Name: "g", Doors: doors, Kind: access.GroupAccess}))
	doors[0] = idD
	g, _ := st.Group(idA)
	if !g.HasDoor(idC) || g.HasDoor(idD) {
		t.Errorf("group doors = %v, want the slice as put", g.Doors)
	}
}

func TestState_CloneIsIndependent(t *testing.T) {
	f := newFixture(t)
	c := f.st.Clone()
	must(t, c.RemoveGrant(f.aliceGrantAll))
	c.RemoveCard(cardBob)
	c.RecordPassage(access.Passage{CardNumber: cardAlice, ZoneID: f.lab, Direction: access.DirIn, At: f.now})
	if got := len(f.st.GrantsOf(f.alice)); got != 1 {
		t.Errorf("original lost a grant: %d", got)
	}
	if _, ok := f.st.CardByNumber(cardBob); !ok {
		t.Error("original lost a card")
	}
	if _, ok := f.st.ZonePassage(cardAlice, f.lab); ok {
		t.Error("original gained a passage")
	}
	if got, want := c.Counts().Cards, f.st.Counts().Cards-1; got != want {
		t.Errorf("clone has %d cards, want %d", got, want)
	}
}

func TestState_Passages(t *testing.T) {
	st := access.NewState()
	t0 := time.Date(2026, 3, 4, 9, 0, 0, 0, time.UTC)
	in := access.Passage{CardNumber: 7, DoorID: idA, ZoneID: idC, Direction: access.DirIn, At: t0}
	out := access.Passage{CardNumber: 7, DoorID: idB, ZoneID: idC, Direction: access.DirOut, At: t0.Add(time.Hour)}
	other := access.Passage{CardNumber: 7, DoorID: idD, ZoneID: idD, Direction: access.DirIn, At: t0.Add(30 * time.Minute)}
	st.RecordPassage(out)
	st.RecordPassage(in) // older, replayed late: ignored
	st.RecordPassage(other)
	st.RecordPassage(access.Passage{}) // zero card: ignored
	if got, _ := st.ZonePassage(7, idC); got != out {
		t.Errorf("ZonePassage(zone C) = %+v, want %+v", got, out)
	}
	if got, _ := st.ZonePassage(7, idD); got != other {
		t.Errorf("ZonePassage(zone D) = %+v, want %+v", got, other)
	}
	if got, _ := st.LastPassage(7); got != out {
		t.Errorf("LastPassage = %+v, want %+v", got, out)
	}
	must(t, st.PutCard(access.Card{Number: 7, PersonID: idA, Status: access.CardActive}))
	st.RemoveCard(7)
	if _, ok := st.LastPassage(7); ok {
		t.Error("passages survived RemoveCard")
	}
	if _, ok := st.ZonePassage(7, idC); ok {
		t.Error("zone passages survived RemoveCard")
	}
	if _, ok := st.CardByNumber(7); ok {
		t.Error("card survived RemoveCard")
	}
}

func TestState_Iterators(t *testing.T) {
	f := newFixture(t)
	c := f.st.Counts()
	tests := []struct {
		name string
		got  int
		want int
	}{
		{"Cards", countSeq(f.st.Cards()), c.Cards},
		{"People", countSeq(f.st.People()), c.People},
		{"Doors", countSeq(f.st.Doors()), c.Doors},
		{"Groups", countSeq(f.st.Groups()), c.Groups},
		{"Grants", countSeq(f.st.Grants()), c.Grants + c.Tombstones},
		{"Visits", countSeq(f.st.Visits()), c.Visits},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want || tt.got == 0 {
				t.Errorf("got %d, want %d (non-zero)", tt.got, tt.want)
			}
		})
	}
	// Breaking out of an iteration stops it.
	n := 0
	for range f.st.Cards() {
		n++
		break
	}
	if n != 1 {
		t.Errorf("iterated %d times after break, want 1", n)
	}
}

// countSeq counts the values of an iterator.
func countSeq[V any](seq func(func(V) bool)) int {
	n := 0
	for range seq {
		n++
	}
	return n
}

// TestState_GrantTombstonesNeverResurrected puts grants and their removals
// in random orders, with duplicates, and checks that a grant is live at the
// end exactly when it was put and never removed, whatever the order.
func TestState_GrantTombstonesNeverResurrected(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		holders := []access.ID{idA, idB}
		groups := []access.ID{idC, idD}
		t0 := time.Date(2026, 3, 4, 9, 0, 0, 0, time.UTC)
		ids := newIDSource(t0)
		n := rapid.IntRange(1, 6).Draw(t, "grants")
		grants := make([]access.Grant, n)
		for i := range grants {
			grants[i] = access.Grant{
				ID:       ids.New(t),
				HolderID: rapid.SampledFrom(holders).Draw(t, "holder"),
				GroupID:  rapid.SampledFrom(groups).Draw(t, "group"),
			}
			if rapid.Bool().Draw(t, "bounded") {
				grants[i].ValidUntil = t0.Add(time.Duration(rapid.IntRange(1, 48).Draw(t, "hours")) * time.Hour)
			}
		}
		type op struct {
			grant  int
			remove bool
			bare   bool
		}
		ops := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) op {
			return op{
				grant:  rapid.IntRange(0, n-1).Draw(t, "grant"),
				remove: rapid.Bool().Draw(t, "remove"),
				bare:   rapid.Bool().Draw(t, "bare"),
			}
		}), 1, 20).Draw(t, "ops")

		apply := func(ops []op) *access.State {
			st := access.NewState()
			for _, o := range ops {
				g := grants[o.grant]
				if o.remove {
					g.Removed = true
					if o.bare {
						g = access.Grant{ID: g.ID, Removed: true}
					}
				}
				if err := st.PutGrant(g); err != nil {
					t.Fatalf("PutGrant(%+v): %v", g, err)
				}
			}
			return st
		}
		a := apply(ops)
		b := apply(rapid.Permutation(ops).Draw(t, "order"))

		for i, g := range grants {
			put, removed := false, false
			for _, o := range ops {
				if o.grant == i {
					put = put || !o.remove
					removed = removed || o.remove
				}
			}
			for name, st := range map[string]*access.State{"first": a, "second": b} {
				live := slices.ContainsFunc(st.GrantsOf(g.HolderID), func(x access.Grant) bool { return x.ID == g.ID })
				if want := put && !removed; live != want {
					t.Fatalf("%s order: grant %d live = %v, want %v (put %v, removed %v)", name, i, live, want, put, removed)
				}
				stored, ok := st.Grant(g.ID)
				if ok != (put || removed) || stored.Removed != removed {
					t.Fatalf("%s order: grant %d stored %+v (found %v), want removed %v", name, i, stored, ok, removed)
				}
			}
		}
		for _, h := range holders {
			if got, want := a.GrantsOf(h), b.GrantsOf(h); !slices.Equal(got, want) {
				t.Fatalf("holder %s: grants differ by order: %+v vs %+v", h, got, want)
			}
		}
		if a.Counts() != b.Counts() {
			t.Fatalf("counts differ by order: %+v vs %+v", a.Counts(), b.Counts())
		}
	})
}

// TestState_PutVisitIsMax puts a visit with random states in random orders
// and checks that the stored state is always the greatest put.
func TestState_PutVisitIsMax(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		t0 := time.Date(2026, 3, 4, 9, 0, 0, 0, time.UTC)
		base := access.Visit{ID: idA, SiteID: idB, HostID: idC, VisitorID: idD, From: t0, Until: t0.Add(time.Hour)}
		states := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) access.VisitState {
			return access.VisitState(rapid.IntRange(int(access.VisitRequested), int(access.VisitDenied)).Draw(t, "state"))
		}), 1, 12).Draw(t, "states")
		want := slices.Max(states)
		for _, order := range [][]access.VisitState{states, rapid.Permutation(states).Draw(t, "order")} {
			st := access.NewState()
			for _, s := range order {
				v := base
				v.State = s
				if err := st.PutVisit(v); err != nil {
					t.Fatalf("PutVisit: %v", err)
				}
			}
			got, _ := st.Visit(idA)
			if got.State != want {
				t.Fatalf("puts %v: state %v, want %v", order, got.State, want)
			}
		}
	})
}

package hubstate_test

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/replication"
)

// pendingWorld is two sites A and B with a group each, and people:
// pa (granted A's group, card 2001), pb (granted B's group), pv (visitor
// of a visit at A), pn (no access anywhere).
type pendingWorld struct {
	siteA, siteB, groupA, groupB, grantA, grantB, visitA access.ID
	pa, pb, pv, pn                                       access.ID
	card                                                 access.CardNumber
}

func newPendingWorld(t *testing.T, s *hubstate.State) pendingWorld {
	t.Helper()
	w := pendingWorld{siteA: tid(501), siteB: tid(502), groupA: tid(511), groupB: tid(512), grantA: tid(521), grantB: tid(522),
		visitA: tid(531), pa: tid(541), pb: tid(542), pv: tid(543), pn: tid(544), card: 2001}
	_, err := s.Write(ctx, func(tx *hubstate.Tx) error {
		r := tx.Replica()
		tx.Change(replication.KindSite, string(w.siteA), replication.SetOp("name", "Site A"))
		tx.Change(replication.KindSite, string(w.siteB), replication.SetOp("name", "Site B"))
		tx.Change(replication.KindGroup, string(w.groupA), replication.SetOp("site", string(w.siteA)), replication.SetOp("name", "A staff"))
		tx.Change(replication.KindGroup, string(w.groupB), replication.SetOp("site", string(w.siteB)), replication.SetOp("name", "B staff"))
		for _, p := range []access.ID{w.pa, w.pb, w.pv, w.pn} {
			tx.Change(replication.KindPerson, string(p), replication.SetOp("name", "Person "+string(p[len(p)-3:])),
				replication.SetOp("kind", "occupier"), r.EnableOp(replication.KindPerson, string(p)))
		}
		ga := access.Grant{ID: w.grantA, HolderID: w.pa, GroupID: w.groupA}
		gb := access.Grant{ID: w.grantB, HolderID: w.pb, GroupID: w.groupB}
		tx.Change(replication.KindGrant, string(ga.ID), r.GrantOp(ga))
		tx.Change(replication.KindGrant, string(gb.ID), r.GrantOp(gb))
		tx.Change(replication.KindCard, w.card.String(), replication.AddOp("holders", replication.HolderValue(w.pa, "")),
			r.EnableOp(replication.KindCard, w.card.String()))
		tx.Change(replication.KindVisit, string(w.visitA), replication.SetOp("site", string(w.siteA)),
			replication.SetOp("visitor", string(w.pv)), replication.AdvanceOp(access.VisitCheckedIn))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// mustPending lists what is pending at site.
func mustPending(t *testing.T, s *hubstate.State, site access.ID) hubstate.SitePending {
	t.Helper()
	p, err := s.PendingRevocations(ctx, string(site), 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if p.Total != len(p.Items) {
		t.Fatalf("total %d, %d items", p.Total, len(p.Items))
	}
	return p
}

// whats returns "what entity" of each item.
func whats(p hubstate.SitePending) []string {
	var out []string
	for _, it := range p.Items {
		out = append(out, it.What+" "+it.EntityID)
	}
	return out
}

func TestPendingRevocations(t *testing.T) {
	dir := t.TempDir()
	s, st := MustOpen(t, dir)
	w := newPendingWorld(t, s)

	t.Run("NothingPendingBeforeRevocations", func(t *testing.T) {
		for _, site := range []access.ID{w.siteA, w.siteB} {
			if p := mustPending(t, s, site); p.Total != 0 {
				t.Fatalf("pending at %s before any revocation: %v", site, whats(p))
			}
		}
	})

	// Revocations at the hub, one per kind; pn's disable concerns no site.
	_, err := s.Write(ctx, func(tx *hubstate.Tx) error {
		tx.Change(replication.KindGrant, string(w.grantA), replication.RemoveGrantOp())
		tx.Change(replication.KindPerson, string(w.pb), replication.DisableOp("left the company"))
		tx.Change(replication.KindCard, w.card.String(), replication.DisableOp("lost"))
		tx.Change(replication.KindVisit, string(w.visitA), replication.AdvanceOp(access.VisitCheckedOut))
		tx.Change(replication.KindPerson, string(w.pn), replication.DisableOp("never had access"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	a := mustPending(t, s, w.siteA)
	wantA := []string{"grant removed " + string(w.grantA), "card lost " + w.card.String(), "visit checked_out " + string(w.visitA)}
	if got := whats(a); !slices.Equal(got, wantA) {
		t.Fatalf("pending at A = %q, want %q", got, wantA)
	}
	if a.Name != "Site A" {
		t.Errorf("site name %q", a.Name)
	}
	g := a.Items[0]
	if g.PersonID != w.pa || g.PersonName == "" || g.GroupID != w.groupA || g.GroupName != "A staff" ||
		g.Source != (replication.Source{Origin: hubstate.Origin, Lane: replication.LanePriority}) || g.Seq != 1 ||
		g.Made.IsZero() || g.For < 0 || g.Unresolved {
		t.Errorf("grant removal item = %+v", g)
	}
	if c := a.Items[1]; c.CardMasked != w.card.Redacted() || c.PersonID != w.pa {
		t.Errorf("card item = %+v", c)
	}
	if v := a.Items[2]; v.VisitID != w.visitA || v.PersonID != w.pv {
		t.Errorf("visit item = %+v", v)
	}
	b := mustPending(t, s, w.siteB)
	if got, want := whats(b), []string{"person disabled " + string(w.pb)}; !slices.Equal(got, want) {
		t.Fatalf("pending at B = %q, want %q", got, want)
	}

	t.Run("Limit", func(t *testing.T) {
		p, err := s.PendingRevocations(ctx, string(w.siteA), 2, time.Now())
		if err != nil || p.Total != 3 || len(p.Items) != 2 || p.Items[0].EntityID != string(w.grantA) {
			t.Fatalf("limit 2: %+v, %v", p, err)
		}
	})

	t.Run("AnotherSitesRevocationIsRelayed", func(t *testing.T) {
		// Site B disables pa (a person with access at A) at its reception.
		src := replication.Source{Origin: string(w.siteB), Lane: replication.LanePriority}
		wr, err := replication.NewWriter(src.Origin, nil)
		if err != nil {
			t.Fatal(err)
		}
		d, err := wr.Make(replication.Stamp{Wall: time.Now().UnixNano(), Origin: src.Origin}, replication.KindPerson, string(w.pa),
			replication.DisableOp("badge confiscated"))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Apply(ctx, src, []replication.Delta{d}, nil); err != nil {
			t.Fatal(err)
		}
		if got := whats(mustPending(t, s, w.siteA)); !slices.Contains(got, "person disabled "+string(w.pa)) {
			t.Fatalf("B's disable of pa not pending at A: %q", got)
		}
		if got := whats(mustPending(t, s, w.siteB)); slices.Contains(got, "person disabled "+string(w.pa)) {
			t.Fatalf("B's own disable pending at B: %q", got)
		}
	})

	// A acknowledges everything the hub holds: nothing is pending there.
	if err := s.RecordAck(ctx, string(w.siteA), s.Vector()); err != nil {
		t.Fatal(err)
	}
	if p := mustPending(t, s, w.siteA); p.Total != 0 {
		t.Fatalf("pending at A after its ack: %q", whats(p))
	}

	t.Run("SurvivesRestart", func(t *testing.T) {
		s.Close()
		st.Close()
		s2, _ := MustOpen(t, dir)
		if p := mustPending(t, s2, w.siteA); p.Total != 0 {
			t.Fatalf("pending at A after restart: %q", whats(p))
		}
		if got, want := whats(mustPending(t, s2, w.siteB)), []string{"person disabled " + string(w.pb)}; !slices.Equal(got, want) {
			t.Fatalf("pending at B after restart = %q, want %q", got, want)
		}
		// A partial ack (below the disable) leaves it pending.
		hubPrio := replication.Source{Origin: hubstate.Origin, Lane: replication.LanePriority}
		if err := s2.RecordAck(ctx, string(w.siteB), replication.Vector{hubPrio: 1}); err != nil {
			t.Fatal(err)
		}
		if got := mustPending(t, s2, w.siteB); got.Total != 1 {
			t.Fatalf("pending at B after a partial ack: %q", whats(got))
		}
		if err := s2.RecordAck(ctx, string(w.siteB), s2.Vector()); err != nil {
			t.Fatal(err)
		}
		if got := mustPending(t, s2, w.siteB); got.Total != 0 {
			t.Fatalf("pending at B after its ack: %q", whats(got))
		}
	})
}

func TestPendingRevocationsBadInput(t *testing.T) {
	s, _ := MustOpen(t, t.TempDir())
	for _, tc := range []struct {
		name, site string
		limit      int
	}{
		{"ErrEmptySite", "", 0},
		{"ErrHubIsNoSite", hubstate.Origin, 0},
		{"ErrMalformedSite", "a site", 0},
		{"ErrNegativeLimit", string(tid(1)), -1},
		{"ErrLimitTooLarge", string(tid(1)), hubstate.MaxPendingLimit + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.PendingRevocations(ctx, tc.site, tc.limit, time.Now())
			if access.ErrorCode(err) != access.Invalid {
				t.Fatalf("err = %v, want an invalid error", err)
			}
		})
	}
	t.Run("ErrClosed", func(t *testing.T) {
		s.Close()
		if _, err := s.PendingRevocations(ctx, string(tid(1)), 0, time.Now()); !errors.Is(err, hubstate.ErrClosed) {
			t.Fatalf("err = %v, want ErrClosed", err)
		}
	})
}

// TestPendingRevocationsConcurrent lists while hub writes revoke: run with
// -race; every revocation ends up listed once.
func TestPendingRevocationsConcurrent(t *testing.T) {
	s, _ := MustOpen(t, t.TempDir())
	w := newPendingWorld(t, s)
	const writers, each = 4, 20
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			for j := range each {
				p := tid(10_000 + i*each + j)
				_, err := s.Write(ctx, func(tx *hubstate.Tx) error {
					g := access.Grant{ID: tid(20_000 + i*each + j), HolderID: p, GroupID: w.groupA}
					tx.Change(replication.KindGrant, string(g.ID), tx.Replica().GrantOp(g))
					return nil
				})
				if err == nil {
					_, err = s.Write(ctx, func(tx *hubstate.Tx) error {
						tx.Change(replication.KindPerson, string(p), replication.DisableOp("left"))
						return nil
					})
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for listing := true; listing; {
		select {
		case <-done:
			listing = false
		default:
		}
		if _, err := s.PendingRevocations(ctx, string(w.siteA), 0, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	p, err := s.PendingRevocations(ctx, string(w.siteA), hubstate.MaxPendingLimit, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if p.Total != writers*each || len(p.Items) != writers*each {
		t.Fatalf("pending at A: %d (%d items), want %d", p.Total, len(p.Items), writers*each)
	}
	if b, _ := s.PendingRevocations(ctx, string(w.siteB), 0, time.Now()); b.Total != 0 {
		t.Fatalf("pending at B: %q", whats(b))
	}
}

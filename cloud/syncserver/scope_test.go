package syncserver_test

import (
	"testing"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/cloud/synctest"
	syncv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/sync/v1"
	"github.com/gatehouse/gatehouse/replication"
	"github.com/gatehouse/gatehouse/syncwire"
)

// TestScopedHubChanges: over real streams, each of two sites receives the
// hub's changes that concern it and nothing else; a person the hub made
// earlier arrives whole at a site once granted there.
func TestScopedHubChanges(t *testing.T) {
	h := MustOpenHub(t, t.TempDir())
	a, b := newSite(t, siteA, tokenA), newSite(t, siteB, tokenB)
	_, groupA := seedSite(t, a)
	_, groupB := seedSite(t, b)
	stopA, stopB := a.Start(h.client()), b.Start(h.client())
	defer stopA()
	defer stopB()
	converged(t, h, a)
	converged(t, h, b)
	hubCardholder(t, h, tid(300), groupA, 3001)
	hubCardholder(t, h, tid(301), groupB, 3002)
	// A person the hub made, granted nowhere yet.
	if _, err := h.state.Write(ctx, func(tx *hubstate.Tx) error {
		tx.Change(replication.KindPerson, string(tid(302)), replication.SetOp("name", "Nadia"), replication.SetOp("kind", "occupier"),
			tx.Replica().EnableOp(replication.KindPerson, string(tid(302))))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	converged(t, h, a)
	converged(t, h, b)
	holds := func(ts *synctest.Site, p access.ID) bool { _, ok := snapshotPerson(ts, p); return ok }
	for _, c := range []struct {
		ts   *synctest.Site
		p    access.ID
		want bool
	}{{a, tid(300), true}, {a, tid(301), false}, {a, tid(302), false}, {b, tid(300), false}, {b, tid(301), true}, {b, tid(302), false}} {
		if got := holds(c.ts, c.p); got != c.want {
			t.Errorf("site %s holds person %s: %v, want %v", c.ts.ID(), c.p, got, c.want)
		}
	}
	if _, ok := findCard(b.Snapshot(), 3001); ok {
		t.Error("site B holds site A's card")
	}
	hubNormalA := h.state.ScopedLen(siteA)
	if all := h.state.Vector()[hubNormal]; hubNormalA >= all {
		t.Fatalf("site A's scoped log holds %d of the hub's %d changes", hubNormalA, all)
	}

	// Granted at A: Nadia arrives at A with the name the hub gave her before.
	if _, err := h.state.Write(ctx, func(tx *hubstate.Tx) error {
		tx.Change(replication.KindGrant, string(tid(303)), tx.Replica().GrantOp(access.Grant{HolderID: tid(302), GroupID: groupA}))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	converged(t, h, a)
	if p, ok := snapshotPerson(a, tid(302)); !ok || p.Name != "Nadia" {
		t.Fatalf("site A holds %+v (%v), want Nadia", p, ok)
	}
	if holds(b, tid(302)) {
		t.Fatal("site B received Nadia")
	}
}

// TestSiteAheadOfScopeRefused: a site naming more of the hub's normal lane
// than its scoped log (synced with another numbering) is refused, on the
// stream and on Pull, and nothing is sent to it.
func TestSiteAheadOfScopeRefused(t *testing.T) {
	h := MustOpenHub(t, t.TempDir())
	ts := newSite(t, siteA, tokenA)
	_, group := seedSite(t, ts) // the site's group: the hub learns its site from hubCardholder
	hubCardholder(t, h, tid(300), group, 3001)
	ahead := replication.Vector{hubNormal: h.state.ScopedLen(siteA) + 5}
	vb, _ := ahead.MarshalBinary()
	req := connect.NewRequest(&syncv1.PullRequest{Origin: siteA, Vector: vb})
	req.Header().Set("Authorization", "Bearer "+tokenA)
	if _, err := h.client().Pull(ctx, req); connectCode(err) != connect.CodeFailedPrecondition {
		t.Fatalf("pull ahead of the scoped log: %v, want FailedPrecondition", err)
	}
	stream := h.client().Sync(ctx)
	stream.RequestHeader().Set("Authorization", "Bearer "+tokenA)
	hello, _ := syncwire.ToWire(siteA, replication.Message{Type: replication.MsgHello, Vector: ahead})
	if err := stream.Send(&syncv1.SyncRequest{Message: hello}); err != nil {
		t.Fatal(err)
	}
	var err error
	for err == nil {
		var res *syncv1.SyncResponse
		if res, err = stream.Receive(); err == nil {
			if m, _ := syncwire.FromWire(hubstate.Origin, res.GetMessage()); m.Type == replication.MsgBatch {
				t.Fatalf("the hub sent a site ahead of its scoped log a batch of %s", m.Source)
			}
		}
	}
	if connectCode(err) != connect.CodeFailedPrecondition {
		t.Fatalf("stream ahead of the scoped log: %v, want FailedPrecondition", err)
	}
	stream.CloseRequest()
	stream.CloseResponse()
}

// TestScopedGrantBeforeGroup: the hub grants a group it does not know yet
// (made at site A, not synced). Nothing reaches A until A's group arrives
// over A's own stream; then A receives the grant, its holder and the
// holder's card over that same stream, and B receives none of it.
func TestScopedGrantBeforeGroup(t *testing.T) {
	h := MustOpenHub(t, t.TempDir())
	a, b := newSite(t, siteA, tokenA), newSite(t, siteB, tokenB)
	seedSite(t, b)
	stopB := b.Start(h.client())
	defer stopB()
	converged(t, h, b)
	group := tid(101) // seedSite's group of A, written at A below
	person, grantID := tid(400), tid(401)
	if _, err := h.state.Write(ctx, func(tx *hubstate.Tx) error {
		r := tx.Replica()
		tx.Change(replication.KindPerson, string(person), replication.SetOp("name", "Greta"), replication.SetOp("kind", "occupier"),
			r.EnableOp(replication.KindPerson, string(person)))
		tx.Change(replication.KindCard, "4001", replication.AddOp("holders", string(person)), r.EnableOp(replication.KindCard, "4001"))
		tx.Change(replication.KindGrant, string(grantID), r.GrantOp(access.Grant{HolderID: person, GroupID: group}))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n := h.state.ScopedLen(siteA); n != 0 {
		t.Fatalf("the hub scoped %d changes to A before knowing A's group", n)
	}
	stopA := a.Start(h.client())
	defer stopA()
	converged(t, h, a) // A holds nothing of the hub's yet
	if _, ok := snapshotPerson(a, person); ok {
		t.Fatal("A received Greta before its group reached the hub")
	}

	// A makes its group (the stream is open): the hub re-scopes on arrival.
	if seeded, _ := seedSite(t, a); seeded == "" {
		t.Fatal("no door")
	}
	a.Wait(t, "Greta's grant at A", func() bool {
		for _, g := range a.Snapshot().Grants {
			if g.ID == grantID {
				return true
			}
		}
		return false
	})
	converged(t, h, a)
	if p, ok := snapshotPerson(a, person); !ok || p.Name != "Greta" {
		t.Fatalf("site A holds %+v (%v), want Greta", p, ok)
	}
	if c, ok := findCard(a.Snapshot(), 4001); !ok || c.Status != access.CardActive || c.PersonID != person {
		t.Fatalf("site A's card 4001 = %+v, %v", c, ok)
	}
	converged(t, h, b)
	if _, ok := snapshotPerson(b, person); ok {
		t.Fatal("site B received Greta")
	}
	if _, ok := findCard(b.Snapshot(), 4001); ok {
		t.Fatal("site B received Greta's card")
	}
}

// TestScopedPersonOfAnotherSite: a visitor registered at site B (B's
// normal lane, B's card) and later granted at site A by the hub reaches A
// whole over real streams — B's deltas of them renumbered as A's scoped
// log of B's normal lane — and so do B's later changes of them; nothing
// else of B's normal lane does, and B receives none of its own back.
func TestScopedPersonOfAnotherSite(t *testing.T) {
	h := MustOpenHub(t, t.TempDir())
	a, b := newSite(t, siteA, tokenA), newSite(t, siteB, tokenB)
	_, groupA := seedSite(t, a)
	seedSite(t, b)
	vera := tid(500)
	b.Write(t, replication.KindPerson, string(vera), replication.SetOp("name", "Vera"), replication.SetOp("kind", "visitor"),
		replication.Op{Type: replication.OpEnable})
	b.Write(t, replication.KindCard, "5001", replication.SetOp("site", siteB), replication.AddOp("holders", string(vera)),
		replication.Op{Type: replication.OpEnable})
	stopA, stopB := a.Start(h.client()), b.Start(h.client())
	defer stopA()
	defer stopB()
	converged(t, h, a)
	converged(t, h, b)
	if _, ok := snapshotPerson(a, vera); ok {
		t.Fatal("site A received B's visitor before any grant at A")
	}
	if _, err := h.state.Write(ctx, func(tx *hubstate.Tx) error {
		tx.Change(replication.KindGrant, string(tid(501)), tx.Replica().GrantOp(access.Grant{HolderID: vera, GroupID: groupA}))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	a.Wait(t, "Vera at A", func() bool { p, ok := snapshotPerson(a, vera); return ok && p.Name == "Vera" })
	converged(t, h, a)
	if c, ok := findCard(a.Snapshot(), 5001); !ok || c.PersonID != vera || c.Status != access.CardActive {
		t.Fatalf("site A's card 5001 = %+v, %v", c, ok)
	}
	// A's replica decides with Vera: she is complete there.
	var st *access.State
	a.View(func(r *replication.Replica) { st, _ = r.State() })
	if p, ok := st.Person(vera); !ok || p.Name != "Vera" {
		t.Fatal("Vera is not part of site A's state (incomplete person)")
	}
	srcB := replication.Source{Origin: siteB, Lane: replication.LaneNormal}
	if got, all := a.Vector()[srcB], h.state.Vector()[srcB]; got != 2 || all <= got {
		t.Fatalf("site A holds %d of B's normal lane (the hub %d), want its 2 deltas of Vera", got, all)
	}

	// B renames Vera and its door: the rename reaches A, the door does not.
	b.Write(t, replication.KindPerson, string(vera), replication.SetOp("name", "Vera K"))
	b.Write(t, replication.KindDoor, string(tid(1100)), replication.SetOp("name", "Kiosk"))
	a.Wait(t, "Vera's new name at A", func() bool { p, _ := snapshotPerson(a, vera); return p.Name == "Vera K" })
	converged(t, h, b)
	converged(t, h, a)
	if got := a.Vector()[srcB]; got != 3 {
		t.Fatalf("site A holds %d of B's normal lane, want 3", got)
	}
	for _, v := range a.Received() {
		for src := range v {
			if src.Origin == siteB && src.Lane != replication.LanePriority && src != srcB {
				t.Fatalf("site A was told of %s", src)
			}
		}
	}
}

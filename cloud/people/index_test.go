package people

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/cloud/store"
	"github.com/gatehouse/gatehouse/cloud/store/badgerstore"
	"github.com/gatehouse/gatehouse/replication"
)

// dump is a canonical text of a view's people, for comparing views.
func dump(v *view) string {
	var b strings.Builder
	for _, e := range v.entries {
		fmt.Fprintf(&b, "%s active=%v kind=%s occ=%s", e.key, e.p.Active, e.p.Kind, e.p.OccupierID)
		for _, c := range e.cards {
			fmt.Fprintf(&b, " card=%d/%s", c.Number, c.Status)
		}
		gs := slices.Clone(e.grants)
		slices.SortFunc(gs, func(a, b access.Grant) int { return strings.Compare(string(a.ID), string(b.ID)) })
		for _, g := range gs {
			fmt.Fprintf(&b, " grant=%s/%s", g.ID, g.GroupID)
		}
		sites := slices.Clone(e.sites)
		slices.Sort(sites)
		fmt.Fprintf(&b, " sites=%v\n", sites)
	}
	for c, e := range v.byCard {
		if v.byID[e.p.ID] != e {
			fmt.Fprintf(&b, "stale card %d\n", c)
		}
	}
	var gl []string
	for g, es := range v.members {
		gl = append(gl, fmt.Sprintf("group %s: %d\n", g, len(es)))
	}
	slices.Sort(gl)
	b.WriteString(strings.Join(gl, ""))
	return b.String()
}

// The index patched change by change reads the same as one rebuilt from a
// snapshot, through creates, renames, (de)activations, card moves, grant
// removals, revocations and deletes.
func TestIndexPatchMatchesRebuild(t *testing.T) {
	ctx := context.Background()
	st, err := badgerstore.Open(ctx, t.TempDir(), store.Options{Kinds: hubstate.Kinds})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	state, err := hubstate.Open(ctx, st, hubstate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer state.Close()
	ids := access.NewIDGen(nil)
	newID := func() access.ID { return access.MustNewID() }
	_ = ids
	site, door := newID(), newID()
	groups := []access.ID{newID(), newID(), newID()}
	write := func(fn func(tx *hubstate.Tx, r *replication.Replica)) {
		t.Helper()
		if _, err := state.Write(ctx, func(tx *hubstate.Tx) error { fn(tx, tx.Replica()); return nil }); err != nil && !strings.Contains(err.Error(), "card number held") {
			t.Fatal(err)
		}
	}
	write(func(tx *hubstate.Tx, r *replication.Replica) {
		tx.Change(replication.KindSite, string(site), replication.SetOp("name", "S"))
		tx.Change(replication.KindDoor, string(door), replication.SetOp("site", string(site)), replication.SetOp("name", "D"))
		for i, g := range groups {
			tx.Change(replication.KindGroup, string(g), replication.SetOp("site", string(site)), replication.SetOp("name", fmt.Sprint("G", i)),
				replication.SetOp("kind", "access"), replication.AddOp("doors", string(door)))
		}
	})
	ix := newIndex(state)
	ix.current()
	rng := rand.New(rand.NewPCG(1, 2))
	var people []access.ID
	var grants []access.Grant
	patched := 0
	for step := range 300 {
		write(func(tx *hubstate.Tx, r *replication.Replica) {
			switch op := rng.IntN(9); {
			case op < 3 || len(people) == 0:
				id := newID()
				people = append(people, id)
				tx.Change(replication.KindPerson, string(id), replication.SetOp("kind", "occupier"), replication.SetOp("occupier", string(site)),
					replication.SetOp("name", fmt.Sprintf("P%03d", rng.IntN(1000))), r.EnableOp(replication.KindPerson, string(id)))
				n := access.CardNumber(1 + rng.IntN(40))
				tx.Change(replication.KindCard, n.String(), replication.AddOp("holders", string(id)), r.EnableOp(replication.KindCard, n.String()))
				g := access.Grant{ID: newID(), HolderID: id, GroupID: groups[rng.IntN(len(groups))]}
				grants = append(grants, g)
				tx.Change(replication.KindGrant, string(g.ID), r.GrantOp(g))
			case op == 3:
				id := people[rng.IntN(len(people))]
				tx.Change(replication.KindPerson, string(id), replication.SetOp("name", fmt.Sprintf("R%03d", rng.IntN(1000))))
			case op == 4:
				id := people[rng.IntN(len(people))]
				tx.Change(replication.KindPerson, string(id), replication.DisableOp("off"))
			case op == 5:
				id := people[rng.IntN(len(people))]
				tx.Change(replication.KindPerson, string(id), replication.DeleteOp())
			case op == 6 && len(grants) > 0:
				g := grants[rng.IntN(len(grants))]
				tx.Change(replication.KindGrant, string(g.ID), replication.RemoveGrantOp())
			case op == 7:
				id := people[rng.IntN(len(people))]
				tx.Change(replication.KindPerson, string(id), replication.RevokeOp(groups[rng.IntN(len(groups))]))
			default:
				n := access.CardNumber(1 + rng.IntN(40))
				for _, h := range r.CardHolders(n) {
					tx.Change(replication.KindCard, n.String(), r.RemoveOp(replication.KindCard, n.String(), "holders", string(h.PersonID)))
				}
			}
		})
		before := ix.last()
		got := ix.current()
		if got != before {
			patched++
		}
		var snap replication.Snapshot
		var vec replication.Vector
		state.View(func(r *replication.Replica) { snap, vec = r.Snapshot(), r.Vector() })
		want := build(snap, vec)
		if a, b := dump(got), dump(want); a != b {
			t.Fatalf("step %d: patched index differs from a rebuild:\npatched:\n%s\nrebuilt:\n%s", step, a, b)
		}
	}
	if patched == 0 {
		t.Fatal("never patched")
	}
}

package replication

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"pgregory.net/rapid"
)

// tid returns a canonical test ID numbered n.
func tid(n int) access.ID { return access.ID(fmt.Sprintf("01JBX%021d", n)) }

// The fixed universe of entities the random tests work on.
var (
	uSite    = tid(1)
	uZone    = tid(2)
	uDoors   = []access.ID{tid(10), tid(11), tid(12)}
	uGroups  = []access.ID{tid(20), tid(21)}
	uPeople  = []access.ID{tid(30), tid(31), tid(32)}
	uVisits  = []access.ID{tid(40), tid(41)}
	uCards   = []access.CardNumber{1001, 1002, 1003}
	uOrigins = []string{"hub", "site-a", "site-b", "site-c"}
)

// node is one replica with its own clock, writer and wall.
type node struct {
	origin  string
	wall    *fakeWall
	clock   *Clock
	writer  *Writer
	rep     *Replica
	pending []Delta // received but not yet applicable (beyond a gap)
	grants  int     // grants made, for fresh IDs
}

// newNode returns an empty node for origin.
func newNode(tb fataler, origin string) *node {
	tb.Helper()
	w := &fakeWall{t: t0}
	n := &node{origin: origin, wall: w, clock: mustClock(tb, origin, time.Minute, w), rep: NewReplica()}
	var err error
	if n.writer, err = NewWriter(origin, nil); err != nil {
		tb.Fatalf("NewWriter: %v", err)
	}
	return n
}

// do makes a local change and applies it.
func (n *node) do(tb fataler, k Kind, id string, ops ...Op) Delta {
	tb.Helper()
	n.wall.t = n.wall.t.Add(time.Millisecond)
	d, err := n.writer.Make(n.clock.Now(), k, id, ops...)
	if err != nil {
		tb.Fatalf("%s: Make(%s %s %+v): %v", n.origin, k, id, ops, err)
	}
	if ok, err := n.rep.Apply(d); !ok || err != nil {
		tb.Fatalf("%s: Apply own delta: %v, %v", n.origin, ok, err)
	}
	return d
}

// allDeltas returns every delta n's replica holds, of every source.
func (n *node) allDeltas() []Delta {
	var out []Delta
	for _, src := range n.rep.Vector().Sources() {
		ds, _ := n.rep.Deltas(src, 0, 0)
		out = append(out, ds...)
	}
	return out
}

// receive takes in deltas in the order given, as a gossip peer would:
// deltas beyond a gap wait in pending until the gap is filled; duplicates
// are ignored.
func (n *node) receive(tb fataler, ds []Delta) {
	tb.Helper()
	n.pending = append(n.pending, ds...)
	for progress := true; progress; {
		progress = false
		rest := n.pending[:0]
		for _, d := range n.pending {
			ok, err := n.rep.Apply(d)
			switch {
			case errors.Is(err, ErrGap):
				rest = append(rest, d)
			case err != nil:
				tb.Fatalf("%s: Apply: %v", n.origin, err)
			case ok:
				progress = true
				_ = n.clock.Observe(d.Stamp)
			}
		}
		n.pending = rest
	}
}

// seedBase makes, at n, a site with a zone, doors and groups, people with
// cards and grants, and visits, all active.
func seedBase(tb fataler, n *node) {
	tb.Helper()
	n.do(tb, KindSite, string(uSite), SetOp("name", "HQ"), SetOp("time_zone", "UTC"), AddOp("groups", string(uGroups[0])), AddOp("groups", string(uGroups[1])))
	n.do(tb, KindZone, string(uZone), SetOp("site", string(uSite)), SetOp("name", "Lobby"))
	for i, d := range uDoors {
		n.do(tb, KindDoor, string(d), SetOp("site", string(uSite)), SetOp("name", fmt.Sprintf("Door %d", i)))
	}
	for _, g := range uGroups {
		n.do(tb, KindGroup, string(g), SetOp("site", string(uSite)), SetOp("name", "Staff"), SetOp("kind", "access"),
			AddOp("doors", string(uDoors[0])), AddOp("doors", string(uDoors[1])))
	}
	for i, p := range uPeople {
		n.do(tb, KindPerson, string(p), SetOp("kind", "access_user"), SetOp("name", fmt.Sprintf("Person %d", i)),
			n.rep.EnableOp(KindPerson, string(p)))
		n.do(tb, KindCard, uCards[i].String(), AddOp("holders", HolderValue(p, "")), n.rep.EnableOp(KindCard, uCards[i].String()))
		g := access.Grant{HolderID: p, GroupID: uGroups[0]}
		n.do(tb, KindGrant, string(n.newGrantID()), n.rep.GrantOp(g))
	}
}

// newGrantID returns a grant ID no other node makes.
func (n *node) newGrantID() access.ID {
	n.grants++
	return tid(1000000 + slices.Index(uOrigins, n.origin)*10000 + n.grants)
}

// randomOp makes a random local change at n, drawn by t.
func randomOp(t *rapid.T, n *node) {
	person := rapid.SampledFrom(uPeople).Draw(t, "person")
	pid := string(person)
	card := rapid.SampledFrom(uCards).Draw(t, "card").String()
	group := rapid.SampledFrom(uGroups).Draw(t, "group")
	door := rapid.SampledFrom(uDoors).Draw(t, "door")
	visit := rapid.SampledFrom(uVisits).Draw(t, "visit")
	switch rapid.IntRange(0, 17).Draw(t, "op") {
	case 0:
		n.do(t, KindPerson, pid, SetOp("name", rapid.SampledFrom([]string{"Ann", "Bob", "Cy"}).Draw(t, "name")))
	case 1:
		n.do(t, KindPerson, pid, SetOp("offline_access", BoolValue(rapid.Bool().Draw(t, "offline"))))
	case 2:
		n.do(t, KindPerson, pid, n.rep.EnableOp(KindPerson, pid))
	case 3:
		n.do(t, KindPerson, pid, DisableOp("left"))
	case 4:
		if rapid.IntRange(0, 5).Draw(t, "delete") == 0 {
			n.do(t, KindPerson, pid, DeleteOp())
		}
	case 5:
		n.do(t, KindCard, card, AddOp("holders", HolderValue(person, "")))
	case 6:
		if hs := n.rep.lookup(KindCard, card); hs != nil && hs.sets["holders"] != nil {
			if el := hs.sets["holders"].Elements(); len(el) > 0 {
				n.do(t, KindCard, card, n.rep.RemoveOp(KindCard, card, "holders", rapid.SampledFrom(el).Draw(t, "holder")))
			}
		}
	case 7:
		n.do(t, KindCard, card, n.rep.EnableOp(KindCard, card))
	case 8:
		n.do(t, KindCard, card, DisableOp(rapid.SampledFrom([]string{"suspended", "lost", "returned"}).Draw(t, "reason")))
	case 9:
		g := access.Grant{HolderID: person, GroupID: group}
		n.do(t, KindGrant, string(n.newGrantID()), n.rep.GrantOp(g))
	case 10:
		if ids := n.rep.grants.IDs(); len(ids) > 0 {
			n.do(t, KindGrant, string(rapid.SampledFrom(ids).Draw(t, "grant")), RemoveGrantOp())
		}
	case 11:
		n.do(t, KindPerson, pid, RevokeOp(group))
	case 12:
		n.do(t, KindGroup, string(group), AddOp("doors", string(door)))
	case 13:
		n.do(t, KindGroup, string(group), n.rep.RemoveOp(KindGroup, string(group), "doors", string(door)))
	case 14:
		n.do(t, KindVisit, string(visit), SetOp("site", string(uSite)), SetOp("visitor", pid), SetOp("host", string(uPeople[0])),
			SetOp("from", TimeValue(t0)), SetOp("until", TimeValue(t0.Add(8*time.Hour))))
	case 15:
		st := access.VisitState(rapid.IntRange(1, 9).Draw(t, "state"))
		n.do(t, KindVisit, string(visit), AdvanceOp(st))
	case 16:
		n.do(t, KindDoor, string(door), SetOp("name", rapid.SampledFrom([]string{"Front", "Back"}).Draw(t, "door name")))
	case 17:
		n.do(t, KindVisit, string(visit), RevokeOp(group))
	}
}

// sameState fails t unless every node holds the same vector and the same
// materialised state.
func sameState(t fataler, nodes []*node) {
	t.Helper()
	want := nodes[0].rep.Snapshot()
	for _, n := range nodes[1:] {
		if !n.rep.Vector().Equal(nodes[0].rep.Vector()) {
			t.Fatalf("vectors differ: %s has %s, %s has %s", nodes[0].origin, nodes[0].rep.Vector(), n.origin, n.rep.Vector())
		}
		if got := n.rep.Snapshot(); !reflect.DeepEqual(got, want) {
			t.Fatalf("states differ between %s and %s:\n%+v\n%+v", nodes[0].origin, n.origin, want, got)
		}
	}
}

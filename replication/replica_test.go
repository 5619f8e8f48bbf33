package replication

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"pgregory.net/rapid"
)

// decide returns the decision at n for card at door, online, at t0+1h.
func decide(tb fataler, n *node, card access.CardNumber, door access.ID) access.Decision {
	tb.Helper()
	st, _ := n.rep.State()
	return access.Decide(st, access.Request{Door: door, Card: card, At: t0.Add(time.Hour), Mode: access.Online})
}

func TestReplicaMaterialise(t *testing.T) {
	n := newNode(t, "hub")
	seedBase(t, n)
	st, errs := n.rep.State()
	if len(errs) != 0 {
		t.Fatalf("State: %v", errs)
	}
	if c := st.Counts(); c.People != 3 || c.Cards != 3 || c.Grants != 3 || c.Doors != 3 || c.Groups != 2 || c.Sites != 1 {
		t.Fatalf("counts %+v", c)
	}
	if d := decide(t, n, uCards[0], uDoors[0]); !d.Grant {
		t.Fatalf("seeded card denied: %s", d.Reason)
	}
	if d := decide(t, n, uCards[0], uDoors[2]); d.Grant || d.Reason != access.ReasonNoGroup {
		t.Fatalf("door outside group: %+v", d)
	}
	if got := n.rep.SiteGroups(uSite); !reflect.DeepEqual(got, uGroups) {
		t.Errorf("SiteGroups = %v", got)
	}

	t.Run("CardDisabled", func(t *testing.T) {
		n := newNode(t, "hub")
		seedBase(t, n)
		n.do(t, KindCard, uCards[0].String(), DisableOp("lost"))
		if c, _ := n.rep.Card(uCards[0]); c.Status != access.CardLost {
			t.Errorf("status %s, want lost", c.Status)
		}
		if d := decide(t, n, uCards[0], uDoors[0]); d.Grant || d.Reason != access.ReasonCardSuspended {
			t.Errorf("decision %+v", d)
		}
		n.do(t, KindCard, uCards[0].String(), n.rep.EnableOp(KindCard, uCards[0].String()))
		if d := decide(t, n, uCards[0], uDoors[0]); !d.Grant {
			t.Errorf("re-enabled card denied: %s", d.Reason)
		}
	})
	t.Run("MembershipRevoked", func(t *testing.T) {
		n := newNode(t, "hub")
		seedBase(t, n)
		d := n.do(t, KindPerson, string(uPeople[0]), RevokeOp(uGroups[0]))
		if d.Lane != LanePriority {
			t.Errorf("revocation in lane %s", d.Lane)
		}
		if d := decide(t, n, uCards[0], uDoors[0]); d.Grant || d.Reason != access.ReasonNoGroup {
			t.Errorf("decision %+v", d)
		}
	})
	t.Run("RevokeUnknownHolder", func(t *testing.T) {
		n := newNode(t, "hub")
		n.do(t, KindPerson, string(uPeople[0]), RevokeOp(uGroups[0]))
		if _, ok := n.rep.Person(uPeople[0]); ok {
			t.Errorf("revoking a membership made an unknown person appear")
		}
	})
	t.Run("DoorRemovedFromGroup", func(t *testing.T) {
		n := newNode(t, "hub")
		seedBase(t, n)
		n.do(t, KindGroup, string(uGroups[0]), n.rep.RemoveOp(KindGroup, string(uGroups[0]), "doors", string(uDoors[0])))
		if d := decide(t, n, uCards[0], uDoors[0]); d.Grant {
			t.Errorf("door removed from group still granted")
		}
	})
	t.Run("PersonDeletedFreesCard", func(t *testing.T) {
		n := newNode(t, "hub")
		seedBase(t, n)
		n.do(t, KindPerson, string(uPeople[0]), DeleteOp())
		if _, ok := n.rep.Card(uCards[0]); ok {
			t.Errorf("card of a deleted person is still bound")
		}
		if p, _ := n.rep.Person(uPeople[0]); !p.Deleted {
			t.Errorf("person not deleted")
		}
		// The number is free: binding it to someone else is no conflict.
		n.do(t, KindCard, uCards[0].String(), AddOp("holders", HolderValue(uPeople[1], "")))
		if c, ok := n.rep.Card(uCards[0]); !ok || c.PersonID != uPeople[1] || c.Status != access.CardActive {
			t.Errorf("reissued card = %+v, %v", c, ok)
		}
		if len(n.rep.Conflicts()) != 0 {
			t.Errorf("conflicts %v", n.rep.Conflicts())
		}
	})
}

// TestCardConflict binds one card number to two holders on two partitioned
// replicas: after the merge both see the card suspended and a conflict
// listed, and every door denies it; removing one binding resolves it.
func TestCardConflict(t *testing.T) {
	hub, site := newNode(t, "hub"), newNode(t, "site-a")
	seedBase(t, hub)
	site.receive(t, hub.allDeltas())
	const num access.CardNumber = 5005
	hub.do(t, KindCard, num.String(), AddOp("holders", HolderValue(uPeople[1], "")), hub.rep.EnableOp(KindCard, num.String()))
	site.do(t, KindCard, num.String(), AddOp("holders", HolderValue(uPeople[2], "")), site.rep.EnableOp(KindCard, num.String()))
	hub.receive(t, site.allDeltas())
	site.receive(t, hub.allDeltas())
	sameState(t, []*node{hub, site})
	for _, n := range []*node{hub, site} {
		c, ok := n.rep.Card(num)
		if !ok || c.Status != access.CardSuspended {
			t.Fatalf("%s: card = %+v, want suspended", n.origin, c)
		}
		want := []Conflict{{Card: num, Holders: []Holder{{PersonID: uPeople[1]}, {PersonID: uPeople[2]}}}}
		if got := n.rep.Conflicts(); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: conflicts %+v, want %+v", n.origin, got, want)
		}
		for _, door := range uDoors {
			if d := decide(t, n, num, door); d.Grant {
				t.Fatalf("%s: conflicting card granted at %s", n.origin, door)
			}
		}
	}
	// Security resolves it at the hub: the card stays with person 1.
	hub.do(t, KindCard, num.String(), hub.rep.RemoveOp(KindCard, num.String(), "holders", HolderValue(uPeople[2], "")))
	site.receive(t, hub.allDeltas())
	if c, _ := site.rep.Card(num); c.Status != access.CardActive || c.PersonID != uPeople[1] {
		t.Fatalf("after resolution card = %+v", c)
	}
	if len(site.rep.Conflicts()) != 0 {
		t.Fatalf("conflict not cleared")
	}
}

func TestApplyGapAndDuplicate(t *testing.T) {
	a := newNode(t, "hub")
	seedBase(t, a)
	ds, _ := a.rep.Deltas(Source{"hub", LaneNormal}, 0, 0)
	b := NewReplica()
	if _, err := b.Apply(ds[1]); !errors.Is(err, ErrGap) {
		t.Fatalf("apply past a gap: err = %v", err)
	}
	if len(b.Vector()) != 0 || len(b.ents) != 0 {
		t.Fatalf("delta past a gap changed the replica")
	}
	if err := b.ApplyBatch(ds[0].Source(), []Delta{ds[0], ds[2]}); !errors.Is(err, ErrGap) {
		t.Fatalf("batch with a gap: err = %v", err)
	}
	if len(b.ents) != 0 {
		t.Fatalf("batch with a gap was partly applied")
	}
	if err := b.ApplyBatch(ds[0].Source(), ds[:3]); err != nil {
		t.Fatal(err)
	}
	if err := b.ApplyBatch(ds[0].Source(), ds[:4]); err != nil {
		t.Fatalf("batch overlapping what was applied: %v", err)
	}
	if ok, err := b.Apply(ds[2]); ok || err != nil {
		t.Fatalf("duplicate: %v, %v", ok, err)
	}
	if got := b.Vector().Get(ds[0].Source()); got != 4 {
		t.Fatalf("vector %d, want 4", got)
	}
}

// TestConvergence makes random changes on four replicas (a hub and three
// sites) under a random schedule of partitions, partial, reordered and
// duplicated deliveries and relays, then heals: every replica ends with the
// same vector and the same materialised state, equal to that of a replica
// that applied every delta in order.
func TestConvergence(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		nodes := make([]*node, rapid.IntRange(3, 4).Draw(t, "replicas"))
		for i := range nodes {
			nodes[i] = newNode(t, uOrigins[i])
		}
		seedBase(t, nodes[0])
		side := make([]bool, len(nodes)) // partition: side[i] tells which side i is on
		for range rapid.IntRange(1, 60).Draw(t, "steps") {
			switch rapid.IntRange(0, 3).Draw(t, "action") {
			case 0, 1:
				randomOp(t, rapid.SampledFrom(nodes).Draw(t, "at"))
			case 2:
				from := rapid.IntRange(0, len(nodes)-1).Draw(t, "from")
				to := rapid.IntRange(0, len(nodes)-1).Draw(t, "to")
				if from == to || side[from] != side[to] {
					continue
				}
				// Deliver some of what from holds (its own and relayed
				// deltas), shuffled, some twice.
				all := nodes[from].allDeltas()
				ds := rapid.Permutation(all).Draw(t, "order")
				ds = ds[:rapid.IntRange(0, len(ds)).Draw(t, "delivered")]
				if len(ds) > 0 && rapid.Bool().Draw(t, "dup") {
					ds = append(ds, ds[rapid.IntRange(0, len(ds)-1).Draw(t, "dup which")])
				}
				nodes[to].receive(t, ds)
			case 3:
				for i := range side {
					side[i] = rapid.Bool().Draw(t, "side")
				}
			}
		}
		// Heal: everyone hears everything.
		for range 2 {
			for _, from := range nodes {
				for _, to := range nodes {
					to.receive(t, from.allDeltas())
				}
			}
		}
		sameState(t, nodes)
		ref := newNode(t, "ref")
		ref.receive(t, nodes[0].allDeltas())
		if got, want := ref.rep.Snapshot(), nodes[0].rep.Snapshot(); !reflect.DeepEqual(got, want) {
			t.Fatalf("state differs from in-order application")
		}
	})
}

// TestRevocationWins revokes on one replica while the others, partitioned
// from it, concurrently re-grant, re-enable and advance the same targets;
// after healing, in any order, the revocation holds everywhere and no door
// grants the card.
func TestRevocationWins(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		nodes := []*node{newNode(t, "hub"), newNode(t, "site-a"), newNode(t, "site-b")}
		seedBase(t, nodes[0])
		visit := uVisits[0]
		visitor := uPeople[2]
		vcard := access.CardNumber(7007)
		nodes[0].do(t, KindVisit, string(visit), SetOp("site", string(uSite)), SetOp("host", string(uPeople[0])),
			SetOp("visitor", string(visitor)), SetOp("from", TimeValue(t0)), SetOp("until", TimeValue(t0.Add(8*time.Hour))),
			AdvanceOp(access.VisitCheckedIn))
		nodes[0].do(t, KindGrant, string(tid(900)), nodes[0].rep.GrantOp(access.Grant{HolderID: visit, GroupID: uGroups[1]}))
		nodes[0].do(t, KindCard, vcard.String(), AddOp("holders", HolderValue(visitor, visit)), nodes[0].rep.EnableOp(KindCard, vcard.String()))
		for _, n := range nodes[1:] {
			n.receive(t, nodes[0].allDeltas())
		}
		person, card, pcard := uPeople[0], uCards[0].String(), uCards[0]
		if d := decide(t, nodes[1], pcard, uDoors[0]); !d.Grant {
			t.Fatalf("before: person's card denied: %s", d.Reason)
		}
		if d := decide(t, nodes[1], vcard, uDoors[0]); !d.Grant {
			t.Fatalf("before: visitor card denied: %s", d.Reason)
		}

		// The revoker is partitioned from the others from now on.
		rev := rapid.IntRange(0, 2).Draw(t, "revoker")
		kind := rapid.IntRange(0, 6).Draw(t, "revocation")
		grantID := nodes[rev].rep.grants.IDs()[0] // person 0's seeded grant
		switch kind {
		case 0:
			nodes[rev].do(t, KindCard, card, DisableOp("suspended"))
		case 1:
			nodes[rev].do(t, KindPerson, string(person), DisableOp("left"))
		case 2:
			nodes[rev].do(t, KindPerson, string(person), DeleteOp())
		case 3:
			nodes[rev].do(t, KindGrant, string(grantID), RemoveGrantOp())
		case 4:
			nodes[rev].do(t, KindPerson, string(person), RevokeOp(uGroups[0]))
		case 5:
			nodes[rev].do(t, KindVisit, string(visit), AdvanceOp(rapid.SampledFrom([]access.VisitState{
				access.VisitCheckedOut, access.VisitExpired, access.VisitCancelled, access.VisitDenied}).Draw(t, "final")))
		case 6:
			nodes[rev].do(t, KindVisit, string(visit), RevokeOp(uGroups[1]))
		}
		// The others fight it, concurrently, with everything positive.
		var others []*node
		for i, n := range nodes {
			if i != rev {
				others = append(others, n)
			}
		}
		for range rapid.IntRange(1, 8).Draw(t, "fights") {
			n := rapid.SampledFrom(others).Draw(t, "fighter")
			switch rapid.IntRange(0, 5).Draw(t, "fight") {
			case 0:
				n.do(t, KindCard, card, n.rep.EnableOp(KindCard, card))
			case 1:
				n.do(t, KindPerson, string(person), n.rep.EnableOp(KindPerson, string(person)))
			case 2:
				n.do(t, KindGrant, string(n.newGrantID()), n.rep.GrantOp(access.Grant{HolderID: person, GroupID: uGroups[0]}))
			case 3:
				n.do(t, KindGrant, string(grantID), n.rep.GrantOp(access.Grant{HolderID: person, GroupID: uGroups[0]}))
			case 4:
				n.do(t, KindVisit, string(visit), AdvanceOp(access.VisitPickedUp))
			case 5:
				n.do(t, KindGrant, string(n.newGrantID()), n.rep.GrantOp(access.Grant{HolderID: visit, GroupID: uGroups[1]}))
			}
			other := rapid.SampledFrom(others).Draw(t, "gossip to")
			other.receive(t, rapid.Permutation(n.allDeltas()).Draw(t, "gossip"))
		}
		// Heal, in a random order of pairs.
		for range 3 {
			for _, i := range rapid.Permutation([]int{0, 1, 2}).Draw(t, "heal from") {
				for _, j := range []int{0, 1, 2} {
					nodes[j].receive(t, rapid.Permutation(nodes[i].allDeltas()).Draw(t, "heal"))
				}
			}
		}
		sameState(t, nodes)
		for _, n := range nodes {
			switch kind {
			case 0:
				if c, _ := n.rep.Card(pcard); c.Status == access.CardActive {
					t.Fatalf("%s: card re-enabled over a concurrent disable", n.origin)
				}
			case 1, 2:
				if p, _ := n.rep.Person(person); p.CanPass(t0.Add(time.Hour)) {
					t.Fatalf("%s: person active over a concurrent disable/delete", n.origin)
				}
			case 3:
				if n.rep.grants.Live(grantID) {
					t.Fatalf("%s: removed grant resurrected", n.origin)
				}
			case 4:
				for _, id := range n.rep.grants.IDs() {
					if g, _ := n.rep.Grant(id); !g.Removed && g.HolderID == person && g.GroupID == uGroups[0] {
						t.Fatalf("%s: grant %s concurrent with the membership revocation is live", n.origin, id)
					}
				}
			case 5:
				if v, _ := n.rep.Visit(visit); !v.State.Final() {
					t.Fatalf("%s: visit reopened: %s", n.origin, v.State)
				}
			}
			door := uDoors[0]
			if kind == 3 {
				continue // person 0 may hold concurrently made grants of other IDs
			}
			if kind >= 5 {
				if d := decide(t, n, vcard, door); d.Grant {
					t.Fatalf("%s: visitor card granted after revocation %d", n.origin, kind)
				}
				continue
			}
			if d := decide(t, n, pcard, door); d.Grant {
				t.Fatalf("%s: card granted after revocation %d", n.origin, kind)
			}
		}
	})
}

func TestDeltaValidate(t *testing.T) {
	ok := Delta{Origin: "hub", Lane: LaneNormal, Seq: 1, Stamp: Stamp{5, 0, "hub"}, Kind: KindPerson, ID: string(uPeople[0]),
		Ops: []Op{SetOp("name", "Ann")}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid delta: %v", err)
	}
	for name, mutate := range map[string]func(*Delta){
		"SetTwice":     func(d *Delta) { d.Ops = []Op{SetOp("name", "a"), SetOp("name", "b")} },
		"Seq0":         func(d *Delta) { d.Seq = 0 },
		"StampOrigin":  func(d *Delta) { d.Stamp.Origin = "site-a" },
		"ZeroStamp":    func(d *Delta) { d.Stamp = Stamp{} },
		"Lane":         func(d *Delta) { d.Lane = LanePriority },
		"RevokeNormal": func(d *Delta) { d.Ops = []Op{RevokeOp(uGroups[0])} },
		"Kind":         func(d *Delta) { d.Kind = 99 },
		"ID":           func(d *Delta) { d.ID = "nope" },
		"LowerID":      func(d *Delta) { d.ID = "01jbx000000000000000000030" },
		"NoOps":        func(d *Delta) { d.Ops = nil },
		"Field":        func(d *Delta) { d.Ops = []Op{SetOp("colour", "red")} },
		"Bool":         func(d *Delta) { d.Ops = []Op{SetOp("offline_access", "yes")} },
		"Time":         func(d *Delta) { d.Ops = []Op{SetOp("valid_from", "012")} },
		"Enum":         func(d *Delta) { d.Ops = []Op{SetOp("kind", "alien")} },
		"OpForKind":    func(d *Delta) { d.Ops = []Op{AdvanceOp(access.VisitInvited)} },
		"Observed":     func(d *Delta) { d.Ops = []Op{{Type: OpEnable, Observed: []Stamp{{2, 0, "a"}, {1, 0, "a"}}}} },
		"CardReason": func(d *Delta) {
			d.Kind, d.ID, d.Lane, d.Ops = KindCard, "1001", LanePriority, []Op{DisableOp("active")}
		},
		"CardID": func(d *Delta) { d.Kind, d.ID = KindCard, "01001" },
		"Holder": func(d *Delta) { d.Kind, d.ID, d.Ops = KindCard, "1001", []Op{AddOp("holders", "x/y")} },
		"GrantWindow": func(d *Delta) {
			d.Kind, d.Ops = KindGrant, []Op{{Type: OpGrant, Value: string(uPeople[0]) + " " + string(uGroups[0]) + " 5 4"}}
		},
		"UnexpectedVal": func(d *Delta) { d.Lane, d.Ops = LanePriority, []Op{{Type: OpDelete, Value: "x"}} },
	} {
		t.Run(name, func(t *testing.T) {
			d := ok
			d.Ops = append([]Op(nil), ok.Ops...)
			mutate(&d)
			err := d.Validate()
			if err == nil {
				t.Fatalf("invalid delta accepted: %+v", d)
			}
			if access.ErrorCode(err) != access.Invalid {
				t.Fatalf("code %s: %v", access.ErrorCode(err), err)
			}
		})
	}
}

// sampleDeltas returns the deltas of a seeded replica plus one of each
// revocation, covering every operation type.
func sampleDeltas(tb fataler) []Delta {
	tb.Helper()
	n := newNode(tb, "hub")
	seedBase(tb, n)
	n.do(tb, KindPerson, string(uPeople[0]), DisableOp("left"), RevokeOp(uGroups[0]))
	n.do(tb, KindGrant, string(tid(1000001)), RemoveGrantOp())
	n.do(tb, KindVisit, string(uVisits[0]), SetOp("from", TimeValue(t0)), AdvanceOp(access.VisitCheckedOut))
	n.do(tb, KindGroup, string(uGroups[0]), n.rep.RemoveOp(KindGroup, string(uGroups[0]), "doors", string(uDoors[0])))
	n.do(tb, KindDoor, string(uDoors[2]), DeleteOp())
	n.do(tb, KindSite, string(uSite), SetOp("holidays", "2026-12-25,2026-12-26"))
	n.do(tb, KindDoor, string(uDoors[1]), SetOp("max_offline", DurationValue(time.Hour)), SetOp("direction", "in"), SetOp("zone", string(uZone)))
	return n.allDeltas()
}

func TestDeltaBinary(t *testing.T) {
	for _, d := range sampleDeltas(t) {
		b, err := d.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary(%+v): %v", d, err)
		}
		var got Delta
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatalf("UnmarshalBinary: %v", err)
		}
		if !reflect.DeepEqual(got, d) {
			t.Fatalf("round trip:\n%+v\n%+v", got, d)
		}
		for _, i := range []int{0, 1, len(b) / 2, len(b) - 1} {
			if err := got.UnmarshalBinary(b[:i]); !errors.Is(err, ErrBadEncoding) {
				t.Fatalf("truncated at %d: %v", i, err)
			}
		}
	}
}

func FuzzDelta(f *testing.F) {
	for _, d := range sampleDeltas(f) {
		b, _ := d.MarshalBinary()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var d Delta
		if err := d.UnmarshalBinary(data); err != nil {
			if access.ErrorCode(err) != access.Invalid {
				t.Fatalf("code %s: %v", access.ErrorCode(err), err)
			}
			return
		}
		b, err := d.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded delta does not encode: %v", err)
		}
		if !bytes.Equal(b, data) {
			t.Fatalf("not canonical")
		}
		// A decoded delta applies to an empty replica (sequence 1) or is
		// refused for its gap, never panics.
		r := NewReplica()
		if _, err := r.Apply(d); err != nil && !errors.Is(err, ErrGap) {
			t.Fatalf("Apply: %v", err)
		}
		r.Snapshot()
	})
}

func TestVector(t *testing.T) {
	a, b := Source{"hub", LanePriority}, Source{"site-a", LaneNormal}
	v := Vector{a: 3, b: 5}
	w := Vector{a: 4, b: 2}
	if got := v.Compare(w); got != Concurrent {
		t.Errorf("Compare = %d, want Concurrent", got)
	}
	m := v.Merge(w)
	if !m.Equal(Vector{a: 4, b: 5}) || m.Compare(v) != After || v.Compare(m) != Before || m.Compare(m.Clone()) != Same {
		t.Errorf("Merge = %s", m)
	}
	want := []Range{{Source: a, From: 4, To: 4}}
	if got := m.Missing(v); !reflect.DeepEqual(got, want) {
		t.Errorf("Missing = %+v, want %+v", got, want)
	}
	if got := m.Missing(nil); len(got) != 2 || got[0].Source != a {
		t.Errorf("Missing(nil) = %+v, want priority lane first", got)
	}
	b2, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got Vector
	if err := got.UnmarshalBinary(b2); err != nil || !got.Equal(m) {
		t.Fatalf("round trip %s, %v", got, err)
	}
}

func TestVectorLaws(t *testing.T) {
	gen := func(t *rapid.T, l string) Vector {
		v := Vector{}
		for range rapid.IntRange(0, 4).Draw(t, l+" n") {
			src := Source{rapid.SampledFrom([]string{"a", "b"}).Draw(t, l+" o"), Lane(rapid.IntRange(1, 2).Draw(t, l+" lane"))}
			v.Advance(src, uint64(rapid.IntRange(0, 5).Draw(t, l+" seq")))
		}
		return v
	}
	checkLaws(t, gen, Vector.Merge, Vector.Equal)
}

func FuzzVector(f *testing.F) {
	v := Vector{{"hub", LanePriority}: 3, {"hub", LaneNormal}: 300, {"site-a", LaneNormal}: 1}
	b, _ := v.MarshalBinary()
	f.Add(b)
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		var v Vector
		if err := v.UnmarshalBinary(data); err != nil {
			if access.ErrorCode(err) != access.Invalid {
				t.Fatalf("code %s: %v", access.ErrorCode(err), err)
			}
			return
		}
		b, err := v.MarshalBinary()
		if err != nil || !bytes.Equal(b, data) {
			t.Fatalf("not canonical: %v", err)
		}
	})
}

func TestFieldAndCardHolders(t *testing.T) {
	n := newNode(t, "hub")
	seedBase(t, n)
	const num access.CardNumber = 6006
	if _, ok := n.rep.Field(KindCard, num.String(), "site"); ok {
		t.Fatal("Field of an unknown card reported set")
	}
	if got := n.rep.CardHolders(num); got != nil {
		t.Fatalf("holders of an unknown card = %v", got)
	}
	n.do(t, KindCard, num.String(), SetOp("site", string(uSite)), AddOp("holders", HolderValue(uPeople[0], "")))
	if got, want := n.rep.CardHolders(num), []Holder{{PersonID: uPeople[0]}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("holders = %v, want %v", got, want)
	}
	n.do(t, KindPerson, string(uPeople[0]), DeleteOp())
	if got := n.rep.CardHolders(num); len(got) != 0 {
		t.Fatalf("holders after the holder's deletion = %v, want none", got)
	}
	// The card is free, yet its site is still known.
	if got, ok := n.rep.Field(KindCard, num.String(), "site"); !ok || got != string(uSite) {
		t.Fatalf("Field(card site) = %q, %v; want %q", got, ok, uSite)
	}
	if _, ok := n.rep.Field(KindCard, num.String(), "valid_from"); ok {
		t.Fatal("Field of a field never set reported set")
	}
}

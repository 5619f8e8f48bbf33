package replication

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"pgregory.net/rapid"
)

// side is one end of a session in the wire tests: a node, its session and
// its durable vector (what survives a crash).
type side struct {
	n       *node
	sess    *Session
	durable Vector
	inbox   []Message // messages in flight towards this side
}

// open starts a new session for s, as after a (re)connection.
func (s *side) open(tb fataler) {
	tb.Helper()
	var err error
	s.sess, err = NewSession(SessionConfig{Log: s.n.rep, Store: s.n.rep, Authorizer: AllowAll, Clock: s.n.clock,
		Durable: s.durable, MaxBatch: 3, Window: 8, MaxPending: 4})
	if err != nil {
		tb.Fatalf("NewSession: %v", err)
	}
	s.inbox = nil
}

// markOwnDurable makes the node's own deltas durable, as a local write is
// durable once committed.
func (s *side) markOwnDurable() {
	v := s.n.rep.Vector()
	for src, seq := range v {
		if src.Origin == s.n.origin {
			s.durable.Advance(src, seq)
		}
	}
	s.sess.MarkDurable(s.durable)
}

// markDurable makes everything applied so far durable.
func (s *side) markDurable() {
	s.durable = s.durable.Merge(s.n.rep.Vector())
	s.sess.MarkDurable(s.durable)
}

// crash rebuilds the node's replica from what was durable: deltas applied
// but not yet durable are lost.
func (s *side) crash(tb fataler) {
	tb.Helper()
	old := s.n.rep
	s.n.rep = NewReplica()
	s.n.pending = nil
	for _, src := range old.Vector().Sources() {
		keep := s.durable[src]
		if src.Origin == s.n.origin {
			keep = old.Vector()[src]
		}
		ds, _ := old.Deltas(src, 0, int(keep))
		if keep == 0 {
			continue
		}
		if err := s.n.rep.ApplyBatch(src, ds); err != nil {
			tb.Fatalf("crash replay: %v", err)
		}
	}
}

// pump moves one message from from's session onto the wire to to.
func pump(tb fataler, from, to *side) bool {
	tb.Helper()
	m, ok, err := from.sess.Next()
	if err != nil {
		tb.Fatalf("%s: Next: %v", from.n.origin, err)
	}
	if ok {
		to.inbox = append(to.inbox, m)
	}
	return ok
}

// deliver hands message i of s's inbox to s's session.
func deliver(tb fataler, s *side, i int, keep bool) {
	tb.Helper()
	m := s.inbox[i]
	if !keep {
		s.inbox = append(s.inbox[:i:i], s.inbox[i+1:]...)
	}
	if err := s.sess.Receive(m); err != nil {
		tb.Fatalf("%s: Receive(%s): %v", s.n.origin, m.Type, err)
	}
}

// checkAcks fails unless what each side's peer believes acknowledged is
// durable at that side.
func checkAcks(tb fataler, a, b *side) {
	tb.Helper()
	for _, p := range [][2]*side{{a, b}, {b, a}} {
		if acked := p[1].sess.PeerAcked(); !p[0].durable.Covers(acked) {
			tb.Fatalf("%s believes %s acknowledged %s, but only %s is durable there", p[1].n.origin, p[0].n.origin, acked, p[0].durable)
		}
	}
}

// heal runs both sessions over a perfect wire until each side has
// acknowledged everything the other holds.
func heal(tb fataler, a, b *side) {
	tb.Helper()
	for range 10000 {
		moved := false
		for pump(tb, a, b) {
			moved = true
		}
		for pump(tb, b, a) {
			moved = true
		}
		for _, s := range []*side{a, b} {
			for len(s.inbox) > 0 {
				deliver(tb, s, 0, false)
				moved = true
			}
			s.markDurable()
		}
		if a.sess.Synced() && b.sess.Synced() && len(a.inbox) == 0 && len(b.inbox) == 0 {
			return
		}
		if !moved {
			a.sess.Resend()
			b.sess.Resend()
		}
	}
	tb.Fatalf("sessions did not converge")
}

// TestSessionLossyWire runs a hub and a site through sessions over a wire
// that loses, duplicates and reorders messages, with local changes on both
// sides, cuts that drop everything in flight, crashes that lose what was
// applied but not durable, and resumption from the durable vectors. It
// checks throughout that nothing is acknowledged that is not durable and
// that no Receive fails (so nothing is applied past a gap); after healing,
// both replicas hold the same state, including what the hub relays from a
// third origin.
func TestSessionLossyWire(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		third := newNode(t, "site-b")
		seedBase(t, third)
		for range rapid.IntRange(0, 10).Draw(t, "third ops") {
			randomOp(t, third)
		}
		a := &side{n: newNode(t, "hub"), durable: Vector{}}
		b := &side{n: newNode(t, "site-a"), durable: Vector{}}
		a.n.receive(t, third.allDeltas())
		a.durable = a.n.rep.Vector()
		a.open(t)
		b.open(t)
		sides := []*side{a, b}
		other := func(s *side) *side {
			if s == a {
				return b
			}
			return a
		}
		for range rapid.IntRange(1, 150).Draw(t, "steps") {
			s := rapid.SampledFrom(sides).Draw(t, "side")
			switch rapid.IntRange(0, 9).Draw(t, "action") {
			case 0:
				randomOp(t, s.n)
				s.markOwnDurable()
			case 1, 2, 3:
				pump(t, s, other(s))
			case 4, 5, 6:
				if len(s.inbox) == 0 {
					continue
				}
				i := rapid.IntRange(0, len(s.inbox)-1).Draw(t, "which") // reorder
				switch rapid.IntRange(0, 5).Draw(t, "fate") {
				case 0: // lost
					s.inbox = append(s.inbox[:i:i], s.inbox[i+1:]...)
				case 1: // duplicated
					deliver(t, s, i, true)
				default:
					deliver(t, s, i, false)
				}
			case 7:
				s.markDurable()
			case 8:
				s.sess.Resend()
			case 9: // the WAN is cut; maybe a side crashes; both reconnect
				if rapid.Bool().Draw(t, "crash") {
					s.crash(t)
				}
				a.open(t)
				b.open(t)
			}
			checkAcks(t, a, b)
		}
		a.open(t)
		b.open(t)
		heal(t, a, b)
		checkAcks(t, a, b)
		sameState(t, []*node{a.n, b.n})
		if !b.n.rep.Vector().Covers(third.rep.Vector()) {
			t.Fatalf("relayed deltas missing: %s lacks %s", b.n.rep.Vector(), third.rep.Vector())
		}
	})
}

// TestSessionPriorityFirst checks that revocations are sent before the
// ordinary changes queued ahead of them, including one made mid-stream.
func TestSessionPriorityFirst(t *testing.T) {
	hub := newNode(t, "hub")
	seedBase(t, hub)
	hub.do(t, KindCard, uCards[0].String(), DisableOp("lost"))
	hub.do(t, KindPerson, string(uPeople[1]), RevokeOp(uGroups[0]))
	site := newNode(t, "site-a")
	a := &side{n: hub, durable: hub.rep.Vector()}
	b := &side{n: site, durable: Vector{}}
	a.open(t)
	b.open(t)
	a.sess.cfg.MaxBatch = 1
	pump(t, b, a) // site's hello
	deliver(t, a, 0, false)
	var lanes []Lane
	for i := 0; ; i++ {
		m, ok, err := a.sess.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if m.Type == MsgBatch {
			lanes = append(lanes, m.Source.Lane)
		}
		if i == 4 { // a revocation made mid-stream overtakes the queue
			hub.do(t, KindCard, uCards[1].String(), DisableOp("suspended"))
		}
	}
	want := []Lane{LanePriority, LanePriority}
	if fmt.Sprint(lanes[:2]) != fmt.Sprint(want) {
		t.Fatalf("first lanes %v, want priority first", lanes[:2])
	}
	// With MaxBatch 1: hello, 2 priority, 2 normal, then the new revocation.
	if lanes[4] != LanePriority {
		t.Fatalf("lanes %v: mid-stream revocation not sent next", lanes)
	}
	for _, l := range lanes[5:] {
		if l != LaneNormal {
			t.Fatalf("lanes %v", lanes)
		}
	}
}

// TestSessionResumeAfterCut sends part of a backlog, makes only the first
// batch durable, cuts the link and crashes the receiver: after resuming,
// the sender sends exactly what is not durable, and both converge.
func TestSessionResumeAfterCut(t *testing.T) {
	hub := newNode(t, "hub")
	seedBase(t, hub)
	total := len(hub.allDeltas())
	a := &side{n: hub, durable: hub.rep.Vector()}
	b := &side{n: newNode(t, "site-a"), durable: Vector{}}
	a.open(t)
	b.open(t)
	pump(t, b, a)
	deliver(t, a, 0, false)
	pump(t, a, b) // hub's hello
	for range 3 {
		pump(t, a, b)
	}
	deliver(t, b, 0, false) // hello
	deliver(t, b, 0, false) // first batch (3 deltas)
	b.markDurable()
	deliver(t, b, 0, false) // second batch, applied but not durable
	b.crash(t)              // ... and lost
	if got := len(b.n.allDeltas()); got != 3 {
		t.Fatalf("after crash site holds %d deltas, want 3", got)
	}
	a.open(t)
	b.open(t)
	sentBefore := a.sess.Stats().DeltasSent
	heal(t, a, b)
	if got := a.sess.Stats().DeltasSent - sentBefore; got != total-3 {
		t.Errorf("resumed session sent %d deltas, want exactly the %d missing", got, total-3)
	}
	sameState(t, []*node{a.n, b.n})
}

// TestSessionNeverPastGap delivers the second batch before the first: it is
// held back, not applied, until the first arrives.
func TestSessionNeverPastGap(t *testing.T) {
	hub := newNode(t, "hub")
	seedBase(t, hub)
	a := &side{n: hub, durable: hub.rep.Vector()}
	b := &side{n: newNode(t, "site-a"), durable: Vector{}}
	a.open(t)
	b.open(t)
	pump(t, b, a)
	deliver(t, a, 0, false)
	pump(t, a, b) // hello
	pump(t, a, b) // batch 1
	pump(t, a, b) // batch 2
	deliver(t, b, 0, false)
	deliver(t, b, 1, false) // batch 2 first
	if v := b.n.rep.Vector(); len(v) != 0 {
		t.Fatalf("batch past a gap applied: %s", v)
	}
	if st := b.sess.Stats(); st.Held != 1 {
		t.Fatalf("stats %+v", st)
	}
	deliver(t, b, 0, false) // batch 1 fills the gap; batch 2 follows
	if got := b.n.rep.Vector()[Source{"hub", LaneNormal}]; got != 6 {
		t.Fatalf("vector %d, want 6", got)
	}
}

// siteAuthorizer is the rule the hub applies to a site's link: the site
// may send only its own deltas, and may change doors only of its own site.
func siteAuthorizer(peer string, hub *Replica, siteOf map[string]access.ID) Authorizer {
	return func(origin string, d Delta) error {
		if origin != peer {
			return fmt.Errorf("site %s may not relay changes of %s", peer, origin)
		}
		if d.Kind != KindDoor {
			return nil
		}
		own := siteOf[origin]
		if door, ok := hub.Door(access.ID(d.ID)); ok && door.SiteID != own {
			return fmt.Errorf("door %s belongs to site %s", d.ID, door.SiteID)
		}
		for _, op := range d.Ops {
			if op.Type == OpSet && op.Field == "site" && access.ID(op.Value) != own {
				return fmt.Errorf("door %s moved to site %s", d.ID, op.Value)
			}
		}
		return nil
	}
}

// TestSessionAuthorizer sends the hub a batch from site-a holding a change
// to its own door and one to a door of site-b: the batch is refused whole,
// and so is a batch claiming another origin.
func TestSessionAuthorizer(t *testing.T) {
	hub := newNode(t, "hub")
	seedBase(t, hub) // doors of uSite, which is site-b's
	siteA := newNode(t, "site-a")
	siteA.receive(t, hub.allDeltas())
	siteOf := map[string]access.ID{"site-a": tid(2), "site-b": uSite}
	own := tid(13)
	siteA.do(t, KindDoor, string(own), SetOp("site", string(tid(2))), SetOp("name", "A door"))
	siteA.do(t, KindDoor, string(uDoors[0]), SetOp("name", "Hijacked"))

	sess, err := NewSession(SessionConfig{Store: hub.rep, Authorizer: siteAuthorizer("site-a", hub.rep, siteOf)})
	if err != nil {
		t.Fatal(err)
	}
	src := Source{"site-a", LaneNormal}
	ds, _ := siteA.rep.Deltas(src, 0, 0)
	before := hub.rep.Vector()
	err = sess.Receive(Message{Type: MsgBatch, Source: src, Deltas: ds})
	if !errors.Is(err, ErrUnauthorized) || access.ErrorCode(err) != access.Denied {
		t.Fatalf("err = %v, want ErrUnauthorized (denied)", err)
	}
	t.Logf("refused: %v", err)
	if !hub.rep.Vector().Equal(before) {
		t.Fatalf("part of a refused batch was applied")
	}
	if _, ok := hub.rep.Door(own); ok {
		t.Fatalf("the allowed delta of a refused batch was applied")
	}
	if d, _ := hub.rep.Door(uDoors[0]); d.Name == "Hijacked" {
		t.Fatalf("site-a renamed a door of another site")
	}
	// The allowed delta alone passes.
	if err := sess.Receive(Message{Type: MsgBatch, Source: src, Deltas: ds[:1]}); err != nil {
		t.Fatalf("allowed batch: %v", err)
	}
	if _, ok := hub.rep.Door(own); !ok {
		t.Fatalf("allowed delta not applied")
	}
	// A batch claiming another origin is refused.
	forger := newNode(t, "site-b")
	forger.do(t, KindPerson, string(uPeople[0]), DisableOp("forged"))
	fs, _ := forger.rep.Deltas(Source{"site-b", LanePriority}, 0, 0)
	if err := sess.Receive(Message{Type: MsgBatch, Source: fs[0].Source(), Deltas: fs}); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("forged origin: err = %v", err)
	}
	if st := sess.Stats(); st.Rejected != 2 || st.BatchesApplied != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestSessionSkew refuses a batch whose stamps are an hour ahead of the
// receiver's clock, and counts the refusal.
func TestSessionSkew(t *testing.T) {
	hub := newNode(t, "hub")
	site := newNode(t, "site-a")
	site.wall.t = t0.Add(time.Hour) // the site's clock is an hour ahead
	site.do(t, KindPerson, string(uPeople[0]), SetOp("name", "Ann"))
	sess, err := NewSession(SessionConfig{Store: hub.rep, Authorizer: AllowAll, Clock: hub.clock})
	if err != nil {
		t.Fatal(err)
	}
	src := Source{"site-a", LaneNormal}
	ds, _ := site.rep.Deltas(src, 0, 0)
	err = sess.Receive(Message{Type: MsgBatch, Source: src, Deltas: ds})
	if !errors.Is(err, ErrClockSkew) {
		t.Fatalf("err = %v, want ErrClockSkew", err)
	}
	if len(hub.rep.Vector()) != 0 {
		t.Fatalf("skewed batch applied")
	}
	if n, _ := hub.clock.Rejected(); n != 1 {
		t.Fatalf("refusals counted %d", n)
	}
}

func TestSessionMalformedBatch(t *testing.T) {
	hub := newNode(t, "hub")
	seedBase(t, hub)
	src := Source{"hub", LaneNormal}
	ds, _ := hub.rep.Deltas(src, 0, 0)
	r := newNode(t, "site-a")
	sess, err := NewSession(SessionConfig{Store: r.rep, Authorizer: AllowAll})
	if err != nil {
		t.Fatal(err)
	}
	for name, m := range map[string]Message{
		"Empty":       {Type: MsgBatch, Source: src},
		"OtherSource": {Type: MsgBatch, Source: Source{"site-b", LaneNormal}, Deltas: ds[:2]},
		"NotConsec":   {Type: MsgBatch, Source: src, Deltas: []Delta{ds[0], ds[2]}},
		"BadLane":     {Type: MsgBatch, Source: Source{"hub", 7}, Deltas: ds[:1]},
	} {
		if err := sess.Receive(m); !errors.Is(err, ErrBadBatch) {
			t.Errorf("%s: err = %v, want ErrBadBatch", name, err)
		}
	}
	if err := sess.Receive(Message{Type: 9}); !errors.Is(err, ErrSession) {
		t.Errorf("unknown message: %v", err)
	}
	if len(r.rep.Vector()) != 0 {
		t.Fatalf("malformed batches applied")
	}
}

// TestSessionStar runs two sites that never talk to each other, linked
// only through the hub, over lossy, duplicating, reordering wires with cuts
// and crashes: the hub relays each site's changes to the other, and all
// three converge.
func TestSessionStar(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		hub, sa, sb := newNode(t, "hub"), newNode(t, "site-a"), newNode(t, "site-b")
		seedBase(t, hub)
		// Each node's sides (one per link) share its durable vector.
		sides := map[*node][]*side{}
		link := func(x, y *node) [2]*side {
			l := [2]*side{{n: x, durable: x.rep.Vector()}, {n: y, durable: y.rep.Vector()}}
			l[0].open(t)
			l[1].open(t)
			sides[x] = append(sides[x], l[0])
			sides[y] = append(sides[y], l[1])
			return l
		}
		links := [][2]*side{link(hub, sa), link(hub, sb)}
		nodes := []*node{hub, sa, sb}
		markDurable := func(n *node, all bool) {
			v := Vector{}
			for _, s := range sides[n] {
				v = v.Merge(s.durable)
			}
			for src, seq := range n.rep.Vector() {
				if all || src.Origin == n.origin {
					v.Advance(src, seq)
				}
			}
			for _, s := range sides[n] {
				s.durable = v.Clone()
				s.sess.MarkDurable(v)
			}
		}
		for range rapid.IntRange(1, 200).Draw(t, "steps") {
			l := rapid.SampledFrom(links).Draw(t, "link")
			dir := rapid.IntRange(0, 1).Draw(t, "dir")
			from, to := l[dir], l[1-dir]
			switch rapid.IntRange(0, 9).Draw(t, "action") {
			case 0:
				n := rapid.SampledFrom(nodes).Draw(t, "at")
				randomOp(t, n)
				markDurable(n, false)
			case 1, 2, 3:
				pump(t, from, to)
			case 4, 5, 6:
				if len(to.inbox) == 0 {
					continue
				}
				i := rapid.IntRange(0, len(to.inbox)-1).Draw(t, "which")
				switch rapid.IntRange(0, 5).Draw(t, "fate") {
				case 0:
					to.inbox = append(to.inbox[:i:i], to.inbox[i+1:]...)
				case 1:
					deliver(t, to, i, true)
				default:
					deliver(t, to, i, false)
				}
			case 7:
				markDurable(to.n, true)
			case 8:
				from.sess.Resend()
			case 9:
				if rapid.Bool().Draw(t, "crash") {
					to.crash(t)
					for _, s := range sides[to.n] {
						for _, l := range links {
							if l[0] == s || l[1] == s {
								l[0].open(t)
								l[1].open(t)
							}
						}
					}
				} else {
					l[0].open(t)
					l[1].open(t)
				}
			}
			for _, l := range links {
				checkAcks(t, l[0], l[1])
			}
		}
		for _, l := range links {
			l[0].open(t)
			l[1].open(t)
		}
		for range 3 {
			for _, l := range links {
				heal(t, l[0], l[1])
				markDurable(l[0].n, true)
				markDurable(l[1].n, true)
			}
		}
		sameState(t, nodes)
	})
}

// TestSessionSkewRevocation takes a revocation-only delta stamped an hour
// ahead (its effect does not rest on its stamp) without the clock observing
// it, counts and reports it, and still refuses a priority delta that also
// sets a field, and a normal-lane one.
func TestSessionSkewRevocation(t *testing.T) {
	hub := newNode(t, "hub")
	site := newNode(t, "site-a")
	site.wall.t = t0.Add(time.Hour) // the site's clock is an hour ahead
	site.do(t, KindPerson, string(uPeople[0]), DisableOp("left"))
	site.do(t, KindPerson, string(uPeople[1]), DisableOp("left"), SetOp("name", "Ben"))
	site.do(t, KindPerson, string(uPeople[2]), SetOp("name", "Cy"))
	var reports []bool
	sess, err := NewSession(SessionConfig{Store: hub.rep, Authorizer: AllowAll, Clock: hub.clock,
		OnSkew: func(se *SkewError, d Delta, accepted bool) {
			if se.Ahead() < 59*time.Minute {
				t.Errorf("reported skew %s, want about an hour", se.Ahead())
			}
			reports = append(reports, accepted)
		}})
	if err != nil {
		t.Fatal(err)
	}
	prio := Source{"site-a", LanePriority}
	ds, _ := site.rep.Deltas(prio, 0, 0)
	if len(ds) != 2 || !RevocationOnly(ds[0]) || RevocationOnly(ds[1]) {
		t.Fatalf("priority deltas %+v: want a revocation-only one then a mixed one", ds)
	}
	if err := sess.Receive(Message{Type: MsgBatch, Source: prio, Deltas: ds[:1]}); err != nil {
		t.Fatalf("revocation beyond the guard: %v", err)
	}
	if got := hub.rep.Vector()[prio]; got != 1 {
		t.Fatalf("hub holds priority lane up to %d, want 1", got)
	}
	if p, ok := hub.rep.Person(uPeople[0]); ok && p.Active {
		t.Fatalf("person still active after the skewed disable")
	}
	if last := hub.clock.Last(); last.Wall >= ds[0].Stamp.Wall-int64(30*time.Minute) {
		t.Fatalf("hub clock at %d observed the skewed stamp %d", last.Wall, ds[0].Stamp.Wall)
	}
	if st := sess.Stats(); st.SkewedRevocations != 1 || st.Rejected != 0 {
		t.Fatalf("stats %+v, want 1 skewed revocation, 0 rejected", st)
	}
	// A priority delta that also sets a field rests on its stamp: refused.
	if err := sess.Receive(Message{Type: MsgBatch, Source: prio, Deltas: ds[1:]}); !errors.Is(err, ErrClockSkew) {
		t.Fatalf("mixed priority delta: err = %v, want ErrClockSkew", err)
	}
	normal := Source{"site-a", LaneNormal}
	nds, _ := site.rep.Deltas(normal, 0, 0)
	if err := sess.Receive(Message{Type: MsgBatch, Source: normal, Deltas: nds}); !errors.Is(err, ErrClockSkew) {
		t.Fatalf("normal delta: err = %v, want ErrClockSkew", err)
	}
	if got := hub.rep.Vector(); got[prio] != 1 || got[normal] != 0 {
		t.Fatalf("hub vector %v after refusals", got)
	}
	if want := []bool{true, false, false}; !slices.Equal(reports, want) {
		t.Fatalf("OnSkew reports %v, want %v", reports, want)
	}
}

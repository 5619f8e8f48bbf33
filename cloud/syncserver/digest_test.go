package syncserver_test

import (
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/cloud/syncserver"
	"github.com/gatehouse/gatehouse/replication"
)

// pollUntil polls cond until it holds or the wait times out.
func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, not waiting for time to pass
	}
}

// TestDigestsOverStream: over a real stream, the hub's digest as each
// stream opens finds nothing on equal logs; when the site's store holds
// one of its own deltas silently changed (same sequence number, other
// contents), the next stream's digest exchange narrows it to that delta,
// the hub reports the divergence (Divergences, an error log), and nothing
// is replaced on either side; the sync itself goes on.
func TestDigestsOverStream(t *testing.T) {
	h := MustOpenHub(t, t.TempDir(), func(c *syncserver.Config) { c.DigestInterval = time.Hour })
	a := newSite(t, siteA, tokenA)
	_, group := seedSite(t, a)
	visits(t, a, 0, 200)
	hubCardholder(t, h, tid(200), group, 4711)
	stop := a.Start(h.client())
	converged(t, h, a)
	// The digest was queued as the stream opened; an ack after it shows
	// it was exchanged (messages are handled in order on each side).
	a.Write(t, replication.KindZone, string(tid(500)), replication.SetOp("site", siteA), replication.SetOp("name", "z"))
	converged(t, h, a)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if d := h.server.Divergences(siteA); len(d) != 0 {
		t.Fatalf("divergences %v on equal logs", d)
	}

	// The site's store silently holds another delta under seq 77.
	src := replication.Source{Origin: siteA, Lane: replication.LaneNormal}
	const bad = 77
	if err := a.Corrupt(src, bad, replication.SetOp("until", replication.TimeValue(time.Unix(1_950_000_000, 0)))); err != nil {
		t.Fatal(err)
	}

	stop = a.Start(h.client())
	want := replication.Divergence{Source: src, Seq: bad}
	pollUntil(t, "the hub to report the divergence", func() bool { return len(h.server.Divergences(siteA)) > 0 })
	if d := h.server.Divergences(siteA); len(d) != 1 || d[0] != want {
		t.Fatalf("divergences %v, want %v", d, want)
	}
	a.Write(t, replication.KindZone, string(tid(501)), replication.SetOp("site", siteA), replication.SetOp("name", "after"))
	converged2 := func() bool { return h.state.Vector()[src] == a.Vector()[src] }
	pollUntil(t, "the site's next change at the hub", converged2)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// Nothing replaced: the hub keeps its delta 77, the site its own.
	hd, _ := h.state.Deltas(src, bad-1, 1)
	sd, _ := siteDeltas(a, src, bad-1, 1)
	if len(hd) != 1 || len(sd) != 1 || hd[0].Ops[0].Field == sd[0].Ops[0].Field && hd[0].Ops[0].Value == sd[0].Ops[0].Value && len(hd[0].Ops) == len(sd[0].Ops) {
		t.Fatalf("delta %d: hub %+v, site %+v: want both kept, different", bad, hd, sd)
	}
}

// TestDigestsOfRelayedLane: the digests of a site's link chain another
// site's normal lane over the site's scoped log of it, as the site holds
// it: equal copies report nothing; the site's copy of a relayed delta
// silently changed is found at that delta's place in the scoped log.
func TestDigestsOfRelayedLane(t *testing.T) {
	h := MustOpenHub(t, t.TempDir(), func(c *syncserver.Config) { c.DigestInterval = time.Hour })
	a, b := newSite(t, siteA, tokenA), newSite(t, siteB, tokenB)
	_, groupA := seedSite(t, a)
	seedSite(t, b)
	vera := tid(600)
	b.Write(t, replication.KindPerson, string(vera), replication.SetOp("name", "Vera"), replication.SetOp("kind", "visitor"))
	stopB := b.Start(h.client())
	converged(t, h, b)
	if err := stopB(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.state.Write(ctx, func(tx *hubstate.Tx) error {
		tx.Change(replication.KindGrant, string(tid(601)), tx.Replica().GrantOp(access.Grant{HolderID: vera, GroupID: groupA}))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	srcB := replication.Source{Origin: siteB, Lane: replication.LaneNormal}
	stop := a.Start(h.client())
	converged(t, h, a)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := a.Vector()[srcB]; got != 1 {
		t.Fatalf("site A holds %d of B's normal lane, want 1", got)
	}
	// A new stream digests every source A receives, B's lane included;
	// an ack after the digest shows it was exchanged.
	stop = a.Start(h.client())
	a.Write(t, replication.KindZone, string(tid(602)), replication.SetOp("site", siteA), replication.SetOp("name", "z"))
	converged(t, h, a)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if d := h.server.Divergences(siteA); len(d) != 0 {
		t.Fatalf("divergences %v on equal copies", d)
	}

	if err := a.Corrupt(srcB, 1, replication.SetOp("name", "Mallory"), replication.SetOp("kind", "visitor")); err != nil {
		t.Fatal(err)
	}
	stop = a.Start(h.client())
	defer stop()
	pollUntil(t, "the hub to report the divergence", func() bool { return len(h.server.Divergences(siteA)) > 0 })
	if d, want := h.server.Divergences(siteA), (replication.Divergence{Source: srcB, Seq: 1}); len(d) != 1 || d[0] != want {
		t.Fatalf("divergences %v, want %v", d, want)
	}
}

// TestDigestsOfEventsLane: the site's access events are digested too,
// although the hub keeps them outside its replica: equal logs report
// nothing; an event the site's store silently holds with another card
// under one sequence number is found there, and nothing is replaced.
func TestDigestsOfEventsLane(t *testing.T) {
	h := MustOpenHub(t, t.TempDir(), func(c *syncserver.Config) { c.DigestInterval = time.Hour })
	a := newSite(t, siteA, tokenA)
	door, _ := seedSite(t, a)
	events(t, a, door, 300)
	stop := a.Start(h.client())
	waitEvents(t, h, evA, 300)
	// A change after the events, acknowledged: the digest queued at the
	// open (sent once the site had sent everything) has been exchanged.
	a.Write(t, replication.KindZone, string(tid(500)), replication.SetOp("site", siteA), replication.SetOp("name", "z"))
	pollUntil(t, "the zone's ack", func() bool { n := a.Vector()[srcA]; return h.state.Vector()[srcA] == n && a.Acked()[srcA] == n })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if d := h.server.Divergences(siteA); len(d) != 0 {
		t.Fatalf("divergences %v on equal logs", d)
	}

	const bad = 123
	forged, err := replication.EventDelta(siteA, bad, replication.EventRecord{At: time.Now(), Door: door, Card: 4242,
		Granted: true, Reason: access.ReasonGranted, RequestID: "forged", Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Corrupt(evA, bad, forged.Ops...); err != nil {
		t.Fatal(err)
	}
	stop = a.Start(h.client())
	pollUntil(t, "the hub to report the events lane's divergence", func() bool { return len(h.server.Divergences(siteA)) > 0 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if d, want := h.server.Divergences(siteA), (replication.Divergence{Source: evA, Seq: bad}); len(d) != 1 || d[0] != want {
		t.Fatalf("divergences %v, want %v", d, want)
	}
	hd, err := h.state.EventDeltas(t.Context(), siteA, bad-1, 1)
	if err != nil || len(hd) != 1 {
		t.Fatalf("hub's event %d: %v %v", bad, hd, err)
	}
	if r, _ := replication.ParseEvent(hd[0]); r.Card == 4242 {
		t.Fatalf("the hub's event %d was replaced by the site's copy", bad)
	}
}

package syncserver_test

import (
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/cloud/syncserver"
	"github.com/gatehouse/gatehouse/cloud/synctest"
	syncv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/sync/v1"
	"github.com/gatehouse/gatehouse/replication"
)

var (
	evA = replication.Source{Origin: siteA, Lane: replication.LaneEvents}
	evB = replication.Source{Origin: siteB, Lane: replication.LaneEvents}
)

// events records n access events at the site, numbered after what it
// holds, a door tapped by card 9000+i (19000+i at site B); every fifth an
// unknown card. Their
// tap times run a day ahead of the hub's clock: a device's clock may be
// wrong, and events are exempt from the skew guard.
func events(tb testing.TB, ts *synctest.Site, door access.ID, n int) {
	tb.Helper()
	next := ts.Vector()[replication.Source{Origin: ts.ID(), Lane: replication.LaneEvents}] + 1
	base := uint64(9000)
	if ts.ID() == siteB {
		base = 19000
	}
	for i := range n {
		seq := next + uint64(i)
		r := replication.EventRecord{At: time.Now().Add(24 * time.Hour).Add(time.Duration(seq) * time.Millisecond), Door: door,
			Card: access.CardNumber(base + seq), Granted: true, Reason: access.ReasonGranted, RequestID: "req", Node: "n1"}
		if seq%5 == 0 {
			r.Granted, r.Reason = false, access.ReasonUnknownCard
		}
		d, err := replication.EventDelta(ts.ID(), seq, r)
		if err != nil {
			tb.Fatal(err)
		}
		ts.Apply(tb, d)
	}
}

// waitEvents polls, with a deadline, until the hub holds the events of
// src up to n (events do not signal State.Changed).
func waitEvents(tb testing.TB, h *testHub, src replication.Source, n uint64) {
	tb.Helper()
	deadline := time.Now().Add(waitTimeout)
	for h.state.SyncVector()[src] < n {
		if time.Now().After(deadline) {
			tb.Fatalf("hub holds events of %s up to %d, want %d", src, h.state.SyncVector()[src], n)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition with a deadline
	}
}

// TestEventsReachHub: a site's events reach the hub after its changes,
// exactly once across a cut and a resume, are acknowledged only once
// durable there, are indexed, are never sent to another site, and stay out
// of the replica.
func TestEventsReachHub(t *testing.T) {
	h := MustOpenHub(t, t.TempDir(), func(c *syncserver.Config) { c.MaxBatch = 8 })
	a := newSite(t, siteA, tokenA)
	a.MaxBatch = 7
	door, _ := seedSite(t, a)
	events(t, a, door, 300)

	stop := a.Start(h.client())
	waitEvents(t, h, evA, 50)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// The site's changes went first: the hub holds them all.
	if got, want := h.state.Vector()[srcA], a.Vector()[srcA]; got != want {
		t.Fatalf("hub holds the site's normal lane up to %d, want %d before events", got, want)
	}
	events(t, a, door, 100)
	b := newSite(t, siteB, tokenB)
	seedSite(t, b)
	events(t, b, tid(1100), 10)
	stopB := b.Start(h.client())
	stop = a.Start(h.client())
	a.Wait(t, "the hub's ack of every event", func() bool { return a.Acked()[evA] == 400 })
	b.Wait(t, "the hub's ack of B's events", func() bool { return b.Acked()[evB] == 10 })
	// A's own hub-bound changes and B's: B receives neither A's events nor
	// its normal lane; A does not receive B's events.
	b.Wait(t, "the hub's scoped log", func() bool { return b.Vector().Covers(scoped(siteB, h.state.ScopedVector(siteB))) })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if err := stopB(); err != nil {
		t.Fatal(err)
	}
	if got := b.Vector()[evA]; got != 0 {
		t.Fatalf("site B received %d of A's events", got)
	}
	if got := a.Vector()[evB]; got != 0 {
		t.Fatalf("site A received %d of B's events", got)
	}
	logIsExact(t, h, evA, 400)
	logIsExact(t, h, evB, 10)
	if _, ok := h.state.Vector()[evA]; ok || h.state.EventCount() != 410 {
		t.Fatalf("replica vector %v, %d events indexed", h.state.Vector(), h.state.EventCount())
	}
	evs, _ := h.state.QueryEvents(hubstate.EventQuery{Site: access.ID(siteA), Limit: 1})
	if len(evs) != 1 || evs[0].Seq != 400 || evs[0].Door != door || evs[0].Node != "n1" {
		t.Fatalf("newest event of A: %+v", evs)
	}
	if u := h.state.UnknownCards(access.ID(siteA), time.Time{}); len(u) != 80 {
		t.Fatalf("%d unknown cards at A, want 80", len(u))
	}
	// After a restart the hub still holds them, and a resumed session
	// sends none again.
	h.Close()
	h2 := MustOpenHub(t, h.dir)
	if h2.state.EventCount() != 410 || h2.state.SyncVector()[evA] != 400 {
		t.Fatalf("after restart: %d events, vector %v", h2.state.EventCount(), h2.state.SyncVector())
	}
	stop = a.Start(h2.client())
	a.Wait(t, "the restarted hub's ack", func() bool { return a.Acked()[evA] == 400 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	logIsExact(t, h2, evA, 400)
}

// TestEventsRefused: a site cannot send another site's events, and a
// malformed event batch is refused whole; neither changes anything.
func TestEventsRefused(t *testing.T) {
	h := MustOpenHub(t, t.TempDir())
	b := newSite(t, siteB, tokenB)
	events(t, b, tid(1100), 3)
	forged, _ := siteDeltas(b, evB, 0, 0)
	a := newSite(t, siteA, tokenA)
	events(t, a, tid(100), 3)
	own, _ := siteDeltas(a, evA, 0, 0)
	bad := batchMsg(t, siteA, own...)
	bad.GetBatch().Deltas[1] = append([]byte(nil), bad.GetBatch().Deltas[1][:20]...) // truncated
	normal := batchMsg(t, siteA, own...)
	normal.GetBatch().Lane = 2 // events in the normal lane: not what they are
	gap := batchMsg(t, siteA, own[1:]...)
	c := h.client()
	for _, tc := range []struct {
		name string
		err  error
		code connect.Code
	}{
		{"ErrOtherSitesEvents", rawStream(t, c, tokenA, siteA, batchMsg(t, siteA, forged...)), connect.CodePermissionDenied},
		{"ErrTruncatedEvent", rawStream(t, c, tokenA, siteA, bad), connect.CodeInvalidArgument},
		{"ErrEventsInNormalLane", rawStream(t, c, tokenA, siteA, normal), connect.CodeInvalidArgument},
	} {
		if got := connectCode(tc.err); got != tc.code {
			t.Errorf("%s: %v (code %v), want %v", tc.name, tc.err, got, tc.code)
		}
	}
	// A batch after a gap is never applied: pushed, it is refused.
	req := connect.NewRequest(&syncv1.PushRequest{Origin: siteA, Batch: gap.GetBatch()})
	req.Header().Set("Authorization", "Bearer "+tokenA)
	if _, err := c.Push(ctx, req); connectCode(err) != connect.CodeFailedPrecondition {
		t.Errorf("push after a gap: %v", err)
	}
	if n, v := h.state.EventCount(), h.state.SyncVector(); n != 0 || len(v) != 0 {
		t.Fatalf("refused batches left %d events, vector %v", n, v)
	}
}

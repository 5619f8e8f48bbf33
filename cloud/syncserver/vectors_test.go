package syncserver_test

import (
	"testing"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/cloud/syncserver"
	"github.com/gatehouse/gatehouse/cloud/synctest"
	syncv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/sync/v1"
	"github.com/gatehouse/gatehouse/replication"
	"github.com/gatehouse/gatehouse/syncwire"
)

// TestVectorsScoped: the vectors the hub sends a site over a real stream
// (hellos, acks) and in a push answer name only the sources the site
// receives and its own, however much another site sends meanwhile; the
// sync still converges, resumes after a cut, and acknowledges the site's
// own lanes.
func TestVectorsScoped(t *testing.T) {
	h := MustOpenHub(t, t.TempDir())
	a, b := newSite(t, siteA, tokenA), newSite(t, siteB, tokenB)
	_, groupA := seedSite(t, a)
	doorB, _ := seedSite(t, b)
	visits(t, b, 5000, 5)
	b.Write(t, replication.KindCard, "4712", replication.DisableOp("lost")) // B's priority lane: relayed to A
	hubCardholder(t, h, tid(200), groupA, 4711)
	stopB := b.Start(h.client())
	converged(t, h, b)
	events(t, b, doorB, 20)
	waitEvents(t, h, evB, 20)
	synced := func(ts *synctest.Site) {
		t.Helper()
		ts.Wait(t, "the site and the hub in sync", func() bool {
			sv := ts.Vector()
			return sv.Covers(scoped(ts.ID(), h.state.ScopedVector(ts.ID()))) && ts.Acked().Covers(sv)
		})
	}

	// Nothing of B's normal lane concerns A here, so A's vectors never
	// name it (its scoped log of it stays empty).
	allowed := func(src replication.Source) bool {
		if src.Origin == siteB && src.Lane == replication.LaneNormal {
			return false
		}
		return src.Origin == siteA || syncserver.Scope(siteA, src)
	}
	checkReceived := func() {
		t.Helper()
		received := a.Received()
		if len(received) == 0 {
			t.Fatal("site A received no vector")
		}
		for _, v := range received {
			for src := range v {
				if !allowed(src) {
					t.Fatalf("site A received a vector naming %s: %v", src, v)
				}
			}
		}
	}

	stopA := a.Start(h.client())
	visits(t, a, 0, 10)
	events(t, a, tid(100), 5)
	visits(t, b, 6000, 5) // B's traffic while A is connected
	events(t, b, doorB, 10)
	synced(a)
	waitEvents(t, h, evA, 5)
	a.Wait(t, "the hub's ack of A's events", func() bool { return a.Acked()[evA] == 5 })
	if err := stopA(); err != nil {
		t.Fatal(err)
	}
	checkReceived()

	// Resume after a cut: A's later changes are acknowledged.
	visits(t, a, 100, 5)
	stopA = a.Start(h.client())
	synced(a)
	if err := stopA(); err != nil {
		t.Fatal(err)
	}
	checkReceived()
	srcA := replication.Source{Origin: siteA, Lane: replication.LaneNormal}
	if got, want := a.Acked()[srcA], a.Vector()[srcA]; got != want {
		t.Fatalf("hub acked A's normal lane to %d, want %d", got, want)
	}
	if err := stopB(); err != nil {
		t.Fatal(err)
	}

	// A push answer: the same scoping.
	visits(t, a, 200, 1)
	ds, _ := siteDeltas(a, srcA, a.Acked()[srcA], 0)
	bw, err := syncwire.BatchToWire(srcA, ds)
	if err != nil {
		t.Fatal(err)
	}
	req := connect.NewRequest(&syncv1.PushRequest{Origin: siteA, Batch: bw})
	req.Header().Set("Authorization", "Bearer "+tokenA)
	res, err := h.client().Push(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	v, err := syncwire.VectorFromWire(res.Msg.GetVector())
	if err != nil {
		t.Fatal(err)
	}
	for src := range v {
		if !allowed(src) {
			t.Fatalf("push answer names %s: %v", src, v)
		}
	}
	if v[srcA] != a.Vector()[srcA] {
		t.Fatalf("push answer holds A's normal lane to %d, want %d", v[srcA], a.Vector()[srcA])
	}
}

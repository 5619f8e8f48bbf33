package syncserver_test

import (
	"testing"

	"connectrpc.com/connect"

	syncv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/sync/v1"
	"github.com/gatehouse/gatehouse/replication"
	"github.com/gatehouse/gatehouse/syncwire"
)

// Batches sent back to back reach the hub whole and in order, however the
// hub grouped them into store commits, and each acknowledgement of the hub
// ends on a batch boundary (a group is acknowledged only once committed).
func TestGroupCommit(t *testing.T) {
	h := MustOpenHub(t, t.TempDir())
	a := newSite(t, siteA, tokenA)
	const nb, per = 24, 50
	var msgs []*syncv1.SessionMessage
	for b := 0; b < nb; b++ {
		var ds []replication.Delta
		for i := 0; i < per; i++ {
			ds = append(ds, a.Write(t, replication.KindVisit, string(tid(1000+b*per+i)), replication.SetOp("site", siteA)))
		}
		msgs = append(msgs, batchMsg(t, siteA, ds...))
	}
	stream := h.client().Sync(ctx)
	stream.RequestHeader().Set("Authorization", "Bearer "+tokenA)
	defer stream.CloseResponse()
	hello, err := syncwire.ToWire(siteA, replication.Message{Type: replication.MsgHello, Vector: replication.Vector{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range append([]*syncv1.SessionMessage{hello}, msgs...) {
		if err := stream.Send(&syncv1.SyncRequest{Message: m}); err != nil {
			t.Fatal(err)
		}
	}
	var acks []uint64
	for len(acks) == 0 || acks[len(acks)-1] < nb*per {
		res, err := stream.Receive()
		if err != nil {
			t.Fatalf("stream ended before the hub acknowledged every batch (acks %v): %v", acks, err)
		}
		m, err := syncwire.FromWire("hub", res.GetMessage())
		if err != nil {
			t.Fatal(err)
		}
		if m.Type != replication.MsgAck {
			continue
		}
		if n := m.Vector[srcA]; n > 0 && (len(acks) == 0 || n > acks[len(acks)-1]) {
			if n%per != 0 {
				t.Fatalf("the hub acknowledged %s up to %d: not a batch boundary (%d per batch)", srcA, n, per)
			}
			if h.state.Vector()[srcA] < n {
				t.Fatalf("the hub acknowledged %d before holding it", n)
			}
			acks = append(acks, n)
		}
	}
	_ = stream.CloseRequest()
	logIsExact(t, h, srcA, nb*per)
	t.Logf("%d batches acknowledged in %d acks: %v", nb, len(acks), acks)
}

// A refused batch queued behind others refuses the group it joined: the
// hub holds whole batches before it at most, nothing of it nor after it,
// and the stream ends with the refusal's code.
func TestGroupRefusedWhole(t *testing.T) {
	h := MustOpenHub(t, t.TempDir())
	b := newSite(t, siteB, tokenB)
	doorB := tid(500)
	b.Write(t, replication.KindDoor, string(doorB), replication.SetOp("site", siteB), replication.SetOp("name", "B door"))
	stop := b.Start(h.client())
	converged(t, h, b)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	a := newSite(t, siteA, tokenA)
	const per = 20
	batch := func(bad bool) *syncv1.SessionMessage {
		var ds []replication.Delta
		for i := 0; i < per; i++ {
			if bad && i == per/2 {
				ds = append(ds, a.Write(t, replication.KindDoor, string(doorB), replication.SetOp("name", "mine now")))
				continue
			}
			ds = append(ds, a.Write(t, replication.KindVisit, string(tid(2000+int(a.Vector()[srcA]))), replication.SetOp("site", siteA)))
		}
		return batchMsg(t, siteA, ds...)
	}
	msgs := []*syncv1.SessionMessage{batch(false), batch(false), batch(true), batch(false)}
	snapDoor := h.state.Doors()
	err := rawStream(t, h.client(), tokenA, siteA, msgs...)
	if got := connectCode(err); got != connect.CodePermissionDenied {
		t.Fatalf("stream ended with %v (code %v), want PermissionDenied", err, got)
	}
	if got := h.state.Vector()[srcA]; got%per != 0 || got > 2*per {
		t.Fatalf("the hub holds %d of A's deltas: want whole batches before the refused one (at most %d)", got, 2*per)
	}
	for i, d := range h.state.Doors() {
		if d.Name != snapDoor[i].Name {
			t.Fatalf("door %s renamed %q by a refused batch", d.ID, d.Name)
		}
	}
}

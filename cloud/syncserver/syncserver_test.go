package syncserver_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/cloud/store"
	"github.com/gatehouse/gatehouse/cloud/syncserver"
	"github.com/gatehouse/gatehouse/cloud/synctest"
	syncv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/sync/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/sync/v1/syncv1connect"
	"github.com/gatehouse/gatehouse/replication"
	"github.com/gatehouse/gatehouse/syncwire"
)

var (
	srcA  = replication.Source{Origin: siteA, Lane: replication.LaneNormal}
	srcAp = replication.Source{Origin: siteA, Lane: replication.LanePriority}
)

// seedSite makes the site's own configuration at the site: the site, a
// door and a group with that door.
func seedSite(t *testing.T, ts *synctest.Site) (door, group access.ID) {
	base := 100
	if ts.ID() == siteB {
		base = 1100
	}
	door, group = tid(base), tid(base+1)
	ts.Write(t, replication.KindSite, ts.ID(), replication.SetOp("name", "A"), replication.SetOp("time_zone", "UTC"),
		replication.AddOp("groups", string(group)))
	ts.Write(t, replication.KindDoor, string(door), replication.SetOp("site", ts.ID()), replication.SetOp("name", "Main"))
	ts.Write(t, replication.KindGroup, string(group), replication.SetOp("site", ts.ID()), replication.SetOp("name", "Staff"),
		replication.SetOp("kind", "access"), replication.AddOp("doors", string(door)))
	return door, group
}

// groupSite is the site of seedSite's groups.
func groupSite(group access.ID) string {
	if group == tid(1101) {
		return siteB
	}
	return siteA
}

// hubCardholder writes, at the hub, a person with a card and a grant. The
// hub scopes its changes by what it knows when it makes them (a grant
// reaches the site of its group): if the site's group has not reached the
// hub yet, the hub's write says which site the group is of, as the hub's
// console would when it defines a group.
func hubCardholder(t *testing.T, h *testHub, person, group access.ID, card access.CardNumber) {
	t.Helper()
	if _, err := h.state.Write(ctx, func(tx *hubstate.Tx) error {
		r := tx.Replica()
		if _, ok := r.Field(replication.KindGroup, string(group), "site"); !ok {
			tx.Change(replication.KindGroup, string(group), replication.SetOp("site", groupSite(group)))
		}
		tx.Change(replication.KindPerson, string(person), replication.SetOp("name", "Pat"), replication.SetOp("kind", "occupier"),
			r.EnableOp(replication.KindPerson, string(person)))
		tx.Change(replication.KindCard, card.String(), replication.AddOp("holders", string(person)), r.EnableOp(replication.KindCard, card.String()))
		tx.Change(replication.KindGrant, string(tid(int(card))), r.GrantOp(access.Grant{HolderID: person, GroupID: group}))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

var hubNormal = replication.Source{Origin: hubstate.Origin, Lane: replication.LaneNormal}

// scoped returns what of v the hub sends site.
func scoped(site string, v replication.Vector) replication.Vector {
	out := replication.Vector{}
	for src, seq := range v {
		if syncserver.Scope(site, src) {
			out[src] = seq
		}
	}
	return out
}

// converged waits until the site holds what the hub sends it and the hub
// has acknowledged the site's deltas. With only this site's and the hub's
// sources at the hub, it compares their materialised states too.
func converged(t *testing.T, h *testHub, ts *synctest.Site) {
	t.Helper()
	ts.Wait(t, "the hub's deltas and its ack of the site's", func() bool {
		sv := ts.Vector()
		return sv.Covers(scoped(ts.ID(), h.state.ScopedVector(ts.ID()))) && ts.Acked().Covers(sv)
	})
	hv, sv := h.state.ScopedVector(ts.ID()), ts.Vector()
	want := scoped(ts.ID(), hv)
	for _, l := range []replication.Lane{replication.LanePriority, replication.LaneNormal} {
		if seq := hv[replication.Source{Origin: ts.ID(), Lane: l}]; seq > 0 {
			want[replication.Source{Origin: ts.ID(), Lane: l}] = seq
		}
	}
	if got := want; !got.Equal(sv) {
		t.Fatalf("vectors differ: hub %v (scoped %v), site %v", hv, got, sv)
	}
	if !hv.Equal(sv) {
		return
	}
	for src, seq := range h.state.Vector() {
		if src.Lane == replication.LaneNormal && src.Origin != ts.ID() && hv[src] != seq {
			return // changes of the hub or other sites that are not the site's
		}
	}
	if hs, ss := h.state.Snapshot(), ts.Snapshot(); !reflect.DeepEqual(hs, ss) {
		t.Fatalf("states differ:\nhub  %+v\nsite %+v", hs, ss)
	}
}

// logIsExact checks that the hub's store holds exactly sequence numbers
// 1..want of src, once each.
func logIsExact(t *testing.T, h *testHub, src replication.Source, want uint64) {
	t.Helper()
	var seqs []uint64
	for after := uint64(0); ; {
		recs, err := h.store.Read(ctx, hubstate.StoreOrigin(src), after, store.MaxLimit, store.AllLanes)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			seqs = append(seqs, r.Seq)
		}
		after = recs[len(recs)-1].Seq
	}
	if uint64(len(seqs)) != want {
		t.Fatalf("store holds %d deltas of %s, want %d", len(seqs), src, want)
	}
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("store log of %s: position %d holds %d", src, i, s)
		}
	}
}

func TestConvergence(t *testing.T) {
	h := MustOpenHub(t, t.TempDir())
	ts := newSite(t, siteA, tokenA)
	_, group := seedSite(t, ts)
	visits(t, ts, 0, 5)
	visitor := tid(300)
	ts.Write(t, replication.KindPerson, string(visitor), replication.SetOp("kind", "visitor"), replication.SetOp("name", "Vic"))
	stop := ts.Start(h.client())

	// site → hub
	waitHub(t, h, "the site's deltas", func() bool { return h.state.Vector().Covers(ts.Vector()) })
	// hub → site, while the stream is open
	hubCardholder(t, h, tid(200), group, 4711)
	converged(t, h, ts)
	if c, ok := findCard(ts.Snapshot(), 4711); !ok || c.Status != access.CardActive {
		t.Fatalf("site's card 4711 = %+v, %v", c, ok)
	}
	// A revocation at the hub reaches the site.
	if _, err := h.state.Write(ctx, func(tx *hubstate.Tx) error {
		tx.Change(replication.KindCard, "4711", replication.DisableOp("lost"))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	converged(t, h, ts)
	if c, _ := findCard(ts.Snapshot(), 4711); c.Status != access.CardLost {
		t.Fatalf("site's card after the hub's disable = %+v", c)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// snapshotPerson returns the person id of the site's replica.
func snapshotPerson(ts *synctest.Site, id access.ID) (access.Person, bool) {
	for _, p := range ts.Snapshot().People {
		if p.ID == id {
			return p, true
		}
	}
	return access.Person{}, false
}

func findCard(s replication.Snapshot, n access.CardNumber) (access.Card, bool) {
	for _, c := range s.Cards {
		if c.Number == n {
			return c, true
		}
	}
	return access.Card{}, false
}

func TestResumeAfterCut(t *testing.T) {
	h := MustOpenHub(t, t.TempDir(), func(c *syncserver.Config) { c.MaxBatch = 8 })
	ts := newSite(t, siteA, tokenA)
	ts.MaxBatch = 4
	_, group := seedSite(t, ts)
	visits(t, ts, 0, 400)
	for i := range 100 {
		hubCardholder(t, h, tid(2000+i), group, access.CardNumber(7000+i))
	}

	// Cut the stream in the middle of both directions.
	stop := ts.Start(h.client())
	waitHub(t, h, "part of the site's deltas", func() bool { return h.state.Vector()[srcA] >= 100 })
	ts.Wait(t, "part of the hub's deltas", func() bool {
		return ts.Vector()[replication.Source{Origin: hubstate.Origin, Lane: replication.LaneNormal}] >= 50
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := h.state.Vector()[srcA]; got >= 403 {
		t.Logf("the whole log went through before the cut (%d); the resume is still checked", got)
	}
	// Both sides change more while cut, then resume.
	visits(t, ts, 400, 50)
	if _, err := h.state.Write(ctx, func(tx *hubstate.Tx) error {
		tx.Change(replication.KindPerson, string(tid(2000)), replication.DisableOp("left"))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	stop = ts.Start(h.client())
	converged(t, h, ts)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	logIsExact(t, h, srcA, ts.Vector()[srcA])
	if got, want := ts.Vector()[srcA], uint64(453); got != want {
		t.Fatalf("site normal lane at %d, want %d", got, want)
	}
}

// rawStream opens a stream as site with token, sends msgs after its hello,
// and returns the error that ends the stream.
func rawStream(t *testing.T, c syncv1connect.SyncServiceClient, token, origin string, msgs ...*syncv1.SessionMessage) error {
	t.Helper()
	stream := c.Sync(ctx)
	stream.RequestHeader().Set("Authorization", "Bearer "+token)
	hello, err := syncwire.ToWire(origin, replication.Message{Type: replication.MsgHello, Vector: replication.Vector{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range append([]*syncv1.SessionMessage{hello}, msgs...) {
		if err := stream.Send(&syncv1.SyncRequest{Message: m}); err != nil {
			break // the hub ended the stream; Receive says why
		}
	}
	defer stream.CloseResponse()
	for {
		if _, err := stream.Receive(); err != nil {
			_ = stream.CloseRequest()
			return err
		}
	}
}

// batchMsg is the wire form of a batch of ds sent by origin.
func batchMsg(t *testing.T, origin string, ds ...replication.Delta) *syncv1.SessionMessage {
	t.Helper()
	m, err := syncwire.ToWire(origin, replication.Message{Type: replication.MsgBatch, Source: ds[0].Source(), Deltas: ds})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRefusals(t *testing.T) {
	h := MustOpenHub(t, t.TempDir(), func(c *syncserver.Config) { c.MaxMessageBytes = 64 << 10 })
	// Site B's door is known at the hub.
	b := newSite(t, siteB, tokenB)
	doorB := tid(500)
	b.Write(t, replication.KindDoor, string(doorB), replication.SetOp("site", siteB), replication.SetOp("name", "B door"))
	stop := b.Start(h.client())
	converged(t, h, b)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	before, snap := h.state.Vector(), h.state.Snapshot()
	a := newSite(t, siteA, tokenA)
	c := h.client()

	// B's deltas, as if A relayed or forged them.
	forged := newSite(t, siteB, tokenB)
	forged.Write(t, replication.KindVisit, string(tid(501)), replication.SetOp("site", siteB))
	// (Its first delta is a duplicate of B's, which the hub holds and would
	// ignore; the second is new.)
	forgedDelta := forged.Write(t, replication.KindVisit, string(tid(501)), replication.SetOp("escort", "true"))
	// A's own delta changing B's door.
	doorDelta := a.Write(t, replication.KindDoor, string(doorB), replication.SetOp("name", "mine now"))
	// A's own delta, valid, after the refused one in the same batch.
	a2 := newSite(t, siteA, tokenA)
	okThenBad := []replication.Delta{
		a2.Write(t, replication.KindVisit, string(tid(502)), replication.SetOp("site", siteA)),
		a2.Write(t, replication.KindDoor, string(doorB), replication.SetOp("name", "x")),
	}
	// A's own delta, stamped an hour ahead of the hub's clock.
	a3 := newSite(t, siteA, tokenA)
	fast, _ := replication.NewClock(siteA, 0, func() time.Time { return time.Now().Add(time.Hour) })
	a3.SetClock(fast)
	skewed := a3.Write(t, replication.KindVisit, string(tid(503)), replication.SetOp("site", siteA))
	badBytes := batchMsg(t, siteA, okThenBad[0])
	badBytes.GetBatch().Deltas[0] = []byte{0x01, 0xff, 0xff}
	noLane := batchMsg(t, siteA, okThenBad[0])
	noLane.GetBatch().Lane = syncv1.Lane_LANE_UNSPECIFIED
	huge := batchMsg(t, siteA, okThenBad[0])
	huge.GetBatch().Deltas[0] = bytes.Repeat([]byte{1}, 100<<10)

	for _, tc := range []struct {
		name  string
		token string
		msg   *syncv1.SessionMessage
		code  connect.Code
	}{
		{"ErrOtherOrigin", tokenA, batchMsg(t, siteA, forgedDelta), connect.CodePermissionDenied},
		{"ErrOtherSitesDoor", tokenA, batchMsg(t, siteA, doorDelta), connect.CodePermissionDenied},
		{"ErrOneBadDeltaRefusesBatch", tokenA, batchMsg(t, siteA, okThenBad...), connect.CodePermissionDenied},
		{"ErrClockSkew", tokenA, batchMsg(t, siteA, skewed), connect.CodeInvalidArgument},
		{"ErrMessageOfAnotherOrigin", tokenA, batchMsg(t, siteB, forgedDelta), connect.CodeInvalidArgument},
		{"ErrMalformedDelta", tokenA, badBytes, connect.CodeInvalidArgument},
		{"ErrNoLane", tokenA, noLane, connect.CodeInvalidArgument},
		{"ErrEmptyMessage", tokenA, &syncv1.SessionMessage{Origin: siteA}, connect.CodeInvalidArgument},
		{"ErrOversized", tokenA, huge, connect.CodeResourceExhausted},
		{"ErrBadToken", "not-a-token-of-any-site", batchMsg(t, siteA, okThenBad[0]), connect.CodeUnauthenticated},
		{"ErrNoToken", "", batchMsg(t, siteA, okThenBad[0]), connect.CodeUnauthenticated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			origin := siteA
			if tc.msg.GetOrigin() != "" {
				origin = tc.msg.GetOrigin()
			}
			err := rawStream(t, c, tc.token, origin, tc.msg)
			if got := connectCode(err); got != tc.code {
				t.Fatalf("stream ended with %v (code %v), want code %v", err, got, tc.code)
			}
			t.Logf("refused: %v", err)
			if got := h.state.Vector(); !got.Equal(before) {
				t.Fatalf("hub vector %v after a refusal, want %v", got, before)
			}
		})
	}
	t.Run("Unary", func(t *testing.T) {
		push := func(token, origin string, b *syncv1.Batch) error {
			req := connect.NewRequest(&syncv1.PushRequest{Origin: origin, Batch: b})
			req.Header().Set("Authorization", "Bearer "+token)
			_, err := c.Push(ctx, req)
			return err
		}
		for _, tc := range []struct {
			name string
			err  error
			code connect.Code
		}{
			{"ErrOtherOrigin", push(tokenA, siteA, batchMsg(t, siteA, forgedDelta).GetBatch()), connect.CodePermissionDenied},
			{"ErrOtherSitesDoor", push(tokenA, siteA, batchMsg(t, siteA, doorDelta).GetBatch()), connect.CodePermissionDenied},
			{"ErrOriginNotCaller", push(tokenA, siteB, batchMsg(t, siteA, doorDelta).GetBatch()), connect.CodeInvalidArgument},
			{"ErrMalformed", push(tokenA, siteA, badBytes.GetBatch()), connect.CodeInvalidArgument},
			{"ErrOversized", push(tokenA, siteA, huge.GetBatch()), connect.CodeResourceExhausted},
			{"ErrBadToken", push("wrong-token-wrong-token", siteA, batchMsg(t, siteA, okThenBad[0]).GetBatch()), connect.CodeUnauthenticated},
		} {
			if got := connectCode(tc.err); got != tc.code {
				t.Errorf("%s: %v (code %v), want code %v", tc.name, tc.err, got, tc.code)
			}
		}
		req := connect.NewRequest(&syncv1.PullRequest{Origin: siteA})
		req.Header().Set("Authorization", "Bearer nope-nope-nope-nope")
		if _, err := c.Pull(ctx, req); connectCode(err) != connect.CodeUnauthenticated {
			t.Errorf("pull with a bad token: %v", err)
		}
	})
	if got := h.state.Vector(); !got.Equal(before) {
		t.Fatalf("hub vector %v after refusals, want %v", got, before)
	}
	if !reflect.DeepEqual(h.state.Snapshot(), snap) {
		t.Fatal("hub state changed by refused messages")
	}
}

func TestHubRestart(t *testing.T) {
	dir := t.TempDir()
	h := MustOpenHub(t, dir)
	ts := newSite(t, siteA, tokenA)
	ts.MaxBatch = 4
	seedSite(t, ts)
	visits(t, ts, 0, 300)
	stop := ts.Start(h.client())
	ts.Wait(t, "the hub's acknowledgement of part of the log", func() bool { return ts.Acked()[srcA] >= 60 })
	// The hub stops in the middle of the stream.
	h.Close()
	err := stop()
	acked := ts.Acked()
	t.Logf("session ended with %v; the hub had acknowledged %v", err, acked)

	h2 := MustOpenHub(t, dir)
	if got := h2.state.Vector(); !got.Covers(acked) {
		t.Fatalf("after restart the hub holds %v, less than it acknowledged (%v)", got, acked)
	}
	visits(t, ts, 300, 10)
	stop = ts.Start(h2.client())
	converged(t, h2, ts)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	logIsExact(t, h2, srcA, ts.Vector()[srcA])
	logIsExact(t, h2, srcAp, ts.Vector()[srcAp])
}

func TestPushPull(t *testing.T) {
	h := MustOpenHub(t, t.TempDir())
	c := h.client()
	ts := newSite(t, siteA, tokenA)
	_, group := seedSite(t, ts)
	visits(t, ts, 0, 3)
	hubCardholder(t, h, tid(200), group, 4711)

	push := func(ds []replication.Delta) (*connect.Response[syncv1.PushResponse], error) {
		b, err := syncwire.BatchToWire(ds[0].Source(), ds)
		if err != nil {
			t.Fatal(err)
		}
		req := connect.NewRequest(&syncv1.PushRequest{Origin: siteA, Batch: b})
		req.Header().Set("Authorization", "Bearer "+tokenA)
		return c.Push(ctx, req)
	}
	all, _ := siteDeltas(ts, srcA, 0, 0)
	// A batch beyond what the hub holds: refused, nothing applied.
	if _, err := push(all[2:]); connectCode(err) != connect.CodeFailedPrecondition {
		t.Fatalf("push past a gap: %v, want FailedPrecondition", err)
	}
	if got := h.state.Vector()[srcA]; got != 0 {
		t.Fatalf("hub holds %d of the site after a refused push", got)
	}
	res, err := push(all)
	if err != nil {
		t.Fatal(err)
	}
	v, err := syncwire.VectorFromWire(res.Msg.GetVector())
	if err != nil || v[srcA] != uint64(len(all)) {
		t.Fatalf("push acknowledged %v, %v; want %s at %d", v, err, srcA, len(all))
	}
	// A duplicate push is harmless.
	if _, err := push(all[:2]); err != nil {
		t.Fatalf("duplicate push: %v", err)
	}

	// Pull what the site lacks, a few deltas at a time.
	for {
		vb, _ := ts.Vector().MarshalBinary()
		req := connect.NewRequest(&syncv1.PullRequest{Origin: siteA, Vector: vb, MaxDeltas: 2})
		req.Header().Set("Authorization", "Bearer "+tokenA)
		res, err := c.Pull(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range res.Msg.GetBatches() {
			_, ds, err := syncwire.BatchFromWire(b)
			if err != nil {
				t.Fatal(err)
			}
			ts.Apply(t, ds...)
		}
		if !res.Msg.GetMore() {
			break
		}
	}
	if hv, sv := h.state.Vector(), ts.Vector(); !hv.Equal(sv) {
		t.Fatalf("after pulls: hub %v, site %v", hv, sv)
	}
	if !reflect.DeepEqual(h.state.Snapshot(), ts.Snapshot()) {
		t.Fatal("states differ after push and pull")
	}
	acked, err := h.state.Acked(ctx, siteA)
	if err != nil || len(acked) == 0 {
		t.Fatalf("acked after pulls = %v, %v", acked, err)
	}
}

func TestOneStreamPerSite(t *testing.T) {
	h := MustOpenHub(t, t.TempDir())
	c := h.client()
	t.Run("ErrLeaseHeldElsewhere", func(t *testing.T) {
		l, err := h.store.Acquire(ctx, siteB, "another-hub-process", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		defer h.store.Release(ctx, l)
		b := newSite(t, siteB, tokenB)
		b.Write(t, replication.KindVisit, string(tid(600)), replication.SetOp("site", siteB))
		if err := b.Run(ctx, c); connectCode(err) != connect.CodeUnavailable {
			t.Fatalf("stream while another process holds the lease: %v, want Unavailable", err)
		}
		if got := h.state.Vector()[replication.Source{Origin: siteB, Lane: replication.LaneNormal}]; got != 0 {
			t.Fatalf("hub applied %d deltas of a site whose stream it does not own", got)
		}
	})
	t.Run("NewerStreamTakesOver", func(t *testing.T) {
		a := newSite(t, siteA, tokenA)
		seedSite(t, a)
		first := make(chan error, 1)
		go func() { first <- a.Run(ctx, c) }()
		waitHub(t, h, "the first stream's deltas", func() bool { return h.state.Vector().Covers(a.Vector()) })
		// The same site connects again (a new leader, say) while the first
		// stream is still open at the hub.
		if _, err := h.state.Write(ctx, func(tx *hubstate.Tx) error {
			tx.Change(replication.KindPerson, string(tid(650)), replication.SetOp("name", "Late"))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		a2 := newSite(t, siteA, tokenA)
		stop := a2.Start(c)
		if err := <-first; connectCode(err) != connect.CodeUnavailable {
			t.Fatalf("older stream ended with %v, want Unavailable", err)
		}
		a2.Wait(t, "the hub's state", func() bool { return a2.Vector().Covers(scoped(siteA, h.state.ScopedVector(siteA))) })
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestTwoSites(t *testing.T) {
	// Two sites sync at once; the hub relays each one's revocations to the
	// other, and keeps their other changes (docs/sync.md, scoping).
	h := MustOpenHub(t, t.TempDir())
	a, b := newSite(t, siteA, tokenA), newSite(t, siteB, tokenB)
	_, groupA := seedSite(t, a)
	seedSite(t, b)
	visits(t, a, 0, 20)
	visits(t, b, 5000, 20)
	stopA, stopB := a.Start(h.client()), b.Start(h.client())
	hubCardholder(t, h, tid(200), groupA, 4711)
	// The site revokes the hub's grant and disables the card during the
	// sync: revocations travel in the priority lane.
	a.Wait(t, "the hub's grant", func() bool { _, ok := findCard(a.Snapshot(), 4711); return ok })
	a.Write(t, replication.KindPerson, string(tid(200)), replication.RevokeOp(groupA))
	a.Write(t, replication.KindCard, "4711", replication.DisableOp("lost"))
	converged(t, h, a)
	converged(t, h, b)
	if got := len(b.Snapshot().Visits); got != 20 {
		t.Fatalf("site B holds %d visits, want its own 20", got)
	}
	if got := len(h.state.Visits()); got != 40 {
		t.Fatalf("hub holds %d visits, want 40", got)
	}
	// The hub's cardholder concerns site A only (a grant of A's group):
	// site B never receives the person or the card, but A's revocation
	// of the card reaches B anyway (priority lanes go everywhere), as a
	// bare entity that takes part in no decision.
	if c, ok := findCard(b.Snapshot(), 4711); ok {
		t.Fatalf("site B holds site A's card %+v", c)
	}
	if _, ok := snapshotPerson(b, tid(200)); ok {
		t.Fatal("site B holds site A's cardholder")
	}
	if got := b.Vector()[srcAp]; got != h.state.Vector()[srcAp] || got == 0 {
		t.Fatalf("site B holds %d of site A's revocations, hub %d", got, h.state.Vector()[srcAp])
	}
	if c, _ := findCard(a.Snapshot(), 4711); c.Status != access.CardLost {
		t.Fatalf("card at site A = %+v, want lost", c)
	}
	for _, g := range h.state.Grants() {
		if g.HolderID == tid(200) && !g.Removed {
			t.Fatalf("grant %+v survived its revocation", g)
		}
	}
	for _, stop := range []func() error{stopA, stopB} {
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRevokedCredentialCutsStream(t *testing.T) {
	var revoked atomic.Bool
	h := MustOpenHub(t, t.TempDir(), func(c *syncserver.Config) {
		inner := c.Authenticate
		c.Authenticate = func(ctx context.Context, hd http.Header, conn *tls.ConnectionState) (string, error) {
			if revoked.Load() {
				return "", errors.New("credential revoked")
			}
			return inner(ctx, hd, conn)
		}
	})
	a := newSite(t, siteA, tokenA)
	seedSite(t, a)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, h.client()) }()
	converged(t, h, a)
	before := h.state.Vector()
	revoked.Store(true)
	visits(t, a, 0, 1)
	if err := <-done; connectCode(err) != connect.CodeUnauthenticated {
		t.Fatalf("stream after revocation ended with %v, want Unauthenticated", err)
	}
	if got := h.state.Vector(); !got.Equal(before) {
		t.Fatalf("hub applied a batch after the credential was revoked: %v, was %v", got, before)
	}
}

// TestRevokedCredentialCutsIdleStream: a site that sends nothing more is
// still cut once its credential is revoked (ReauthInterval), and receives
// nothing the hub makes after that.
func TestRevokedCredentialCutsIdleStream(t *testing.T) {
	var revoked atomic.Bool
	checked := make(chan struct{}, 1)
	h := MustOpenHub(t, t.TempDir(), func(c *syncserver.Config) {
		c.ReauthInterval = 50 * time.Millisecond
		inner := c.Authenticate
		c.Authenticate = func(ctx context.Context, hd http.Header, conn *tls.ConnectionState) (string, error) {
			if revoked.Load() {
				select {
				case checked <- struct{}{}:
				default:
				}
				return "", errors.New("credential revoked")
			}
			return inner(ctx, hd, conn)
		}
	})
	a := newSite(t, siteA, tokenA)
	seedSite(t, a)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, h.client()) }()
	converged(t, h, a)
	revoked.Store(true)
	<-checked // the hub checked the credential again with no batch from the site
	if err := <-done; connectCode(err) != connect.CodeUnauthenticated {
		t.Fatalf("idle stream after revocation ended with %v, want Unauthenticated", err)
	}
}

// TestCardClaimedAtSite: a number the hub homes (bound to its cardholder)
// is bound at the site to a visitor of the site, as during a partition.
// The hub takes the site's batch as a conflicting claim instead of
// refusing it: the card has two live holders at the hub and the site,
// is suspended for both, the conflict is listed, the hub suspends the card
// itself, and the site's later changes still reach the hub.
func TestCardClaimedAtSite(t *testing.T) {
	h := MustOpenHub(t, t.TempDir())
	a := newSite(t, siteA, tokenA)
	_, group := seedSite(t, a)
	const card = access.CardNumber(9001)
	hubCardholder(t, h, tid(300), group, card)
	// The site, not having seen the hub's binding, binds the number.
	visit, visitor := tid(301), tid(302)
	a.Write(t, replication.KindPerson, string(visitor), replication.SetOp("kind", "visitor"), replication.SetOp("name", "Guest"),
		replication.Op{Type: replication.OpEnable})
	a.Write(t, replication.KindVisit, string(visit), replication.SetOp("site", siteA), replication.SetOp("visitor", string(visitor)),
		replication.SetOp("until", replication.TimeValue(time.Unix(1_900_000_000, 0))), replication.AdvanceOp(access.VisitCheckedIn))
	a.Write(t, replication.KindCard, card.String(), replication.SetOp("site", siteA),
		replication.AddOp("holders", replication.HolderValue(visitor, visit)), replication.Op{Type: replication.OpEnable})
	stop := a.Start(h.client())
	a.Write(t, replication.KindZone, string(tid(303)), replication.SetOp("site", siteA), replication.SetOp("name", "after the claim"))
	converged(t, h, a)
	if err := stop(); err != nil {
		t.Fatalf("stream: %v (want the claim taken, not refused)", err)
	}
	for name, s := range map[string]replication.Snapshot{"hub": h.state.Snapshot(), "site": a.Snapshot()} {
		c, ok := findCard(s, card)
		if !ok || c.Status != access.CardSuspended {
			t.Errorf("%s: card %+v (found %v), want suspended", name, c, ok)
		}
	}
	cs := h.state.Conflicts()
	if len(cs) != 1 || cs[0].Card != card || len(cs[0].Holders) != 2 {
		t.Fatalf("hub conflicts %+v, want card %d with 2 holders", cs, card)
	}
	// The hub's own suspension, in its priority lane, keeps the card
	// suspended once security removes one holder.
	var suspended bool
	hubPrio := replication.Source{Origin: hubstate.Origin, Lane: replication.LanePriority}
	ds, err := h.state.Deltas(hubPrio, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if d.Kind == replication.KindCard && d.ID == card.String() && d.Ops[0].Type == replication.OpDisable && d.Ops[0].Value == syncserver.ClaimReason {
			suspended = true
		}
	}
	if !suspended {
		t.Fatalf("the hub wrote no suspension of card %d: %+v", card, ds)
	}
}

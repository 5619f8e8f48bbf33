package uplink_test

// Tests of merging the hub's queued batches into one Raft command
// (merge.go): a scripted hub, a real Connect SyncService handler over
// loopback HTTP/2 that sends batches of its choosing (made by a real
// cloud/hubstate), and a real 3-node site.

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/edge/node"
	"github.com/gatehouse/gatehouse/edge/uplink"
	syncv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/sync/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/sync/v1/syncv1connect"
	"github.com/gatehouse/gatehouse/replication"
	"github.com/gatehouse/gatehouse/syncwire"
)

var hubNormal = replication.Source{Origin: hubstate.Origin, Lane: replication.LaneNormal}

// scriptedHub serves SyncService.Sync: it answers the site's hello with an
// empty one, then sends, back to back, the batches of its deltas that the
// site's hello lacks (corrupt, when set, damages them on the first stream),
// and records the site's acks of the hub's normal lane.
type scriptedHub struct {
	syncv1connect.UnimplementedSyncServiceHandler
	batches [][]replication.Delta
	corrupt func(b int, pm *syncv1.SessionMessage)

	mu      sync.Mutex
	streams int
	acks    []ack
}

// ack is what the site declared durable of the hub's normal lane on a
// stream: in its hello or an ack.
type ack struct {
	stream int
	seq    uint64
}

func (h *scriptedHub) Sync(ctx context.Context, st *connect.BidiStream[syncv1.SyncRequest, syncv1.SyncResponse]) error {
	h.mu.Lock()
	h.streams++
	stream := h.streams
	first := stream == 1
	h.mu.Unlock()
	req, err := st.Receive()
	if err != nil {
		return err
	}
	hello, err := syncwire.FromWire(testSite, req.GetMessage())
	if err != nil || hello.Type != replication.MsgHello {
		return connect.NewError(connect.CodeInvalidArgument, errors.New("want the site's hello"))
	}
	h.mu.Lock()
	h.acks = append(h.acks, ack{stream, hello.Vector[hubNormal]})
	h.mu.Unlock()
	send := func(m replication.Message) (*syncv1.SessionMessage, error) {
		return syncwire.ToWire(hubstate.Origin, m)
	}
	pm, err := send(replication.Message{Type: replication.MsgHello, Vector: replication.Vector{}})
	if err != nil {
		return err
	}
	if err := st.Send(&syncv1.SyncResponse{Message: pm}); err != nil {
		return err
	}
	for b, ds := range h.batches {
		if ds[len(ds)-1].Seq <= hello.Vector[hubNormal] {
			continue
		}
		pm, err := send(replication.Message{Type: replication.MsgBatch, Source: hubNormal, Deltas: ds})
		if err != nil {
			return err
		}
		if first && h.corrupt != nil {
			h.corrupt(b, pm)
		}
		if err := st.Send(&syncv1.SyncResponse{Message: pm}); err != nil {
			return err
		}
	}
	for {
		req, err := st.Receive()
		if err != nil {
			return nil // the site ended the stream
		}
		m, err := syncwire.FromWire(testSite, req.GetMessage())
		if err != nil {
			return connect.NewError(connect.CodeInvalidArgument, err)
		}
		if m.Type == replication.MsgAck {
			h.mu.Lock()
			h.acks = append(h.acks, ack{stream, m.Vector[hubNormal]})
			h.mu.Unlock()
		}
	}
}

func (h *scriptedHub) ackList() []ack {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.acks)
}

// serveScripted starts h on a loopback port and returns its URL; its
// batches are nb batches of per deltas made by a real hubstate.
func serveScripted(t *testing.T, h *scriptedHub, nb, per int) string {
	t.Helper()
	src := openHub(t, filepath.Join(t.TempDir(), "hub"))
	site := []byte(testSite)
	for range nb {
		ds := src.writeDeltas(t, func(tx *hubstate.Tx) {
			for range per {
				tx.Change(replication.KindZone, newID(t), replication.SetOp("site", string(site)),
					replication.SetOp("name", "zone from the hub"))
			}
		})
		if len(ds) != per {
			t.Fatalf("hub write made %d deltas, want %d", len(ds), per)
		}
		h.batches = append(h.batches, ds)
	}
	mux := http.NewServeMux()
	mux.Handle(syncv1connect.NewSyncServiceHandler(h))
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, Protocols: &p,
		ErrorLog: slog.NewLogLogger(testLogger(t, slog.LevelWarn).Handler(), slog.LevelWarn)}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// hubSeq is what every node of nodes has applied of the hub's normal lane
// (the least of them), and what the most advanced node applied (the
// leader, whose applied entries are committed: all the site may ack).
func hubSeq(nodes []*node.Node) (least, most uint64) {
	least = ^uint64(0)
	for _, n := range nodes {
		v := n.Machine().Vector()[hubNormal]
		least, most = min(least, v), max(most, v)
	}
	return least, most
}

func allApplied(nodes []*node.Node, want uint64) bool {
	least, _ := hubSeq(nodes)
	return least == want
}

func mostApplied(nodes []*node.Node) uint64 {
	_, most := hubSeq(nodes)
	return most
}

// checkAcks checks that acks only grow within a stream, fall on the end
// of a hub batch (a run is acknowledged whole, never part of it) and never
// pass what the site applied.
func checkAcks(t *testing.T, acks []ack, per int, applied uint64) {
	t.Helper()
	for i, a := range acks {
		if a.seq%uint64(per) != 0 {
			t.Errorf("ack %d covers %d deltas: not the end of a hub batch of %d", i, a.seq, per)
		}
		if i > 0 && a.stream == acks[i-1].stream && a.seq < acks[i-1].seq {
			t.Errorf("ack %d went back from %d to %d", i, acks[i-1].seq, a.seq)
		}
		if a.seq > applied {
			t.Errorf("ack %d covers %d deltas, the site applied %d", i, a.seq, applied)
		}
	}
}

// lastAck is the last of acks (0 without any).
func lastAck(acks []ack) uint64 {
	if len(acks) == 0 {
		return 0
	}
	return acks[len(acks)-1].seq
}

// Many hub batches sent back to back reach every node whole, and the
// site's acknowledgements end on batch boundaries and never pass what it
// applied, however the uplink merged them (logged).
func TestQueuedHubBatchesMerged(t *testing.T) {
	const nb, per = 24, 100
	h := &scriptedHub{}
	url := serveScripted(t, h, nb, per)
	nodes := openSite(t, url)
	waitFor(t, "every node to apply the hub's batches", func() bool { return allApplied(nodes, nb*per) })
	waitFor(t, "the site to acknowledge them all", func() bool {
		return lastAck(h.ackList()) == nb*per
	})
	acks := h.ackList()
	checkAcks(t, acks, per, mostApplied(nodes))
	// Counted over every node's uplink: leadership may move under load.
	var applied, merged int
	for _, n := range nodes {
		st := n.Uplink().Status()
		applied, merged = applied+st.Applied, merged+st.Merged
		if st.LastError != "" {
			t.Logf("a session ended: %s", st.LastError)
		}
	}
	// How many batches were merged depends on how many were queued when
	// each commit began, which is timing: TestMergeRun checks the merging
	// itself deterministically; this test checks that merged runs are
	// applied whole and acknowledged correctly.
	nonzero := len(slices.DeleteFunc(slices.Clone(acks), func(a ack) bool { return a.seq == 0 }))
	t.Logf("%d hub batches: %d Raft commands, %d merged, %d acks %v", nb, applied, merged, nonzero, acks)
}

// A malformed delta in a batch queued behind others refuses the whole run:
// nothing of the batches merged with it is applied or acknowledged, every
// node holds the same prefix of whole batches, and the next session (the
// hub sending sound batches again) brings the site up to date.
func TestMalformedDeltaRefusesMergedRun(t *testing.T) {
	const nb, per, bad = 24, 100, 12
	h := &scriptedHub{corrupt: func(b int, pm *syncv1.SessionMessage) {
		if b == bad {
			ds := pm.GetBatch().GetDeltas()
			ds[per/2] = ds[per/2][:len(ds[per/2])/2] // truncated: does not decode
		}
	}}
	url := serveScripted(t, h, nb, per)
	// A refused session waits MaxBackoff before the next: long enough to
	// look at what the refusal left.
	nodes := openSite(t, url, func(c *uplink.Config) { c.MaxBackoff = 2 * time.Second })
	waitFor(t, "the uplink to report the refusal", func() bool {
		for _, n := range nodes {
			if st := n.Uplink().Status(); st.Refused {
				return true
			}
		}
		return false
	})
	// What the first stream left: whole batches before the bad one, the
	// same at every node once the followers caught up.
	waitFor(t, "every node to hold what the leader applied", func() bool {
		least, most := hubSeq(nodes)
		return least == most
	})
	for i, n := range nodes {
		if got := n.Machine().Vector()[hubNormal]; got%per != 0 || got >= bad*per+1 {
			t.Errorf("node %d holds %d hub deltas after the refusal: want whole batches before batch %d (at most %d)",
				i, got, bad+1, bad*per)
		}
	}
	checkAcks(t, h.ackList(), per, mostApplied(nodes))
	// The site reconnects; the hub sends from its hello, soundly this time.
	waitFor(t, "every node to apply all the hub's batches", func() bool { return allApplied(nodes, nb*per) })
	waitFor(t, "the site to acknowledge them all", func() bool {
		return lastAck(h.ackList()) == nb*per
	})
	checkAcks(t, h.ackList(), per, mostApplied(nodes))
	h.mu.Lock()
	streams := h.streams
	h.mu.Unlock()
	if streams < 2 {
		t.Errorf("%d streams: want the refused one and another", streams)
	}
	waitFor(t, "the uplink to report a connected session", func() bool { return leader(t, nodes).Uplink().Status().Connected })
}

package sitestate_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/edge/raftnode"
	"github.com/gatehouse/gatehouse/edge/sitestate"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

const raftSite = access.ID("01J00000000000000000000S1T")

// siteNode is a real Raft member running a sitestate Machine.
type siteNode struct {
	n *raftnode.Node
	m *sitestate.Machine
}

// openRaftSite starts a 3-node site over TCP on loopback, each machine
// with the given dedup window.
func openRaftSite(t *testing.T, window time.Duration) []siteNode {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var nodes []siteNode
	var first string // the first node's API address, to join through
	for i := range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("n%d", i+1)
		cfg := raftnode.Config{NodeID: id, SiteID: string(raftSite), DataDir: filepath.Join(t.TempDir(), id),
			RaftAddr: "127.0.0.1:0", APIAddr: ln.Addr().String(), ClusterToken: "secret",
			HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond,
			LeaderLeaseTimeout: 250 * time.Millisecond, Logger: log}
		if i == 0 {
			cfg.Bootstrap = true
		} else {
			cfg.JoinAddr = first
		}
		if i == 0 {
			first = cfg.APIAddr
		}
		m := sitestate.New(raftSite, log)
		m.SetDedupWindow(window)
		n, err := raftnode.New(cfg, m)
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		mux.Handle(n.ClusterHandler())
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close(); _ = n.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err = n.Open(ctx)
		cancel()
		if err != nil {
			t.Fatalf("open %s: %v", id, err)
		}
		nodes = append(nodes, siteNode{n, m})
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok := true
		for _, sn := range nodes {
			st := sn.n.Status()
			ok = ok && st.LeaderAPIAddr != "" && len(st.Members) == 3
		}
		if ok {
			return nodes
		}
		if time.Now().After(deadline) {
			t.Fatal("the cluster did not form within 20 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// records returns the request IDs a node holds a record of.
func records(t *testing.T, sn siteNode) []string {
	t.Helper()
	var ids []string
	err := sn.n.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("r/")})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			ids = append(ids, string(it.Item().Key()[2:]))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestRequestPruningAgreesOverRaft: on a real 3-node site, commands
// stamped past the dedup window prune the same records on every node, and
// a retry within the window is still answered with its first result.
func TestRequestPruningAgreesOverRaft(t *testing.T) {
	nodes := openRaftSite(t, time.Hour)
	t0 := time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)
	tap := func(rid string, at time.Time) *raftv1.Command {
		return &raftv1.Command{RequestId: rid, Stamp: &accessv1.Stamp{WallUnixNano: at.UnixNano(), Origin: "test"},
			Op: &raftv1.Command_RecordEvents{RecordEvents: &raftv1.RecordEvents{Events: []*accessv1.AccessEvent{
				{AtMs: at.UnixMilli(), DoorId: string(raftSite), Card: 7, RequestId: rid}}}}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	propose := func(via siteNode, cmds ...*raftv1.Command) {
		t.Helper()
		res, err := via.n.Propose(ctx, cmds...)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range res {
			if r.GetErrorCode() != "" {
				t.Fatalf("command %d: %s", i, r.GetError())
			}
		}
	}
	var old []*raftv1.Command
	for i := range 12 {
		old = append(old, tap(fmt.Sprintf("old-%02d", i), t0.Add(time.Duration(i)*time.Second)))
	}
	propose(nodes[0], old...) // one entry
	later := t0.Add(2 * time.Hour)
	propose(nodes[1], tap("new-0", later))                    // prunes old-00..07
	propose(nodes[2], tap("new-1", later.Add(time.Second)))   // prunes old-08..11
	propose(nodes[0], tap("new-0", later.Add(2*time.Second))) // a retry: deduplicated
	res, err := nodes[1].n.Propose(ctx, tap("new-1", later.Add(3*time.Second)))
	if err != nil || res[0].GetFirstSeq() != 14 {
		t.Fatalf("a retry within the window: %v %v (want its first result, first seq 14)", res, err)
	}
	idx := nodes[0].n.Status().CommitIndex
	for _, sn := range nodes {
		if err := sn.n.WaitApplied(ctx, idx); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"new-0", "new-1"}
	for i, sn := range nodes {
		if got := records(t, sn); !slices.Equal(got, want) {
			t.Errorf("node %d holds records %v, want %v", i+1, got, want)
		}
		if got := sn.m.LastSeq(); got != 14 {
			t.Errorf("node %d: last event seq %d, want 14", i+1, got)
		}
	}
}

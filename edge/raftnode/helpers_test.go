package raftnode

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	edgev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

// testApplier stores "kv/<request id>" = "actor|stamp origin" and, like the
// real applier, deduplicates request IDs: a request ID seen before at another
// log index (a client retry) changes nothing. Applying the same request at
// the same index again (the bug the applied index guards against) increments
// "cnt/<request id>" past 1. Actor "reject" yields a domain error; actor
// "bulk:N" also writes N extra keys (to overflow a Badger transaction).
type testApplier struct {
	mu         sync.Mutex
	applyCalls int
	minIndex   uint64
	loads      int
	committed  int
}

func newTestApplier() *testApplier { return &testApplier{} }

func (a *testApplier) Apply(txn *badger.Txn, index uint64, cmd *raftv1.Command) (*edgev1.CommandResult, error) {
	a.mu.Lock()
	a.applyCalls++
	if a.minIndex == 0 || index < a.minIndex {
		a.minIndex = index
	}
	a.mu.Unlock()
	if cmd.GetActor() == "reject" {
		return &edgev1.CommandResult{ErrorCode: "invalid", Error: "rejected by test applier"}, nil
	}
	id := cmd.GetRequestId()
	idxKey := []byte("idx/" + id)
	var first uint64
	item, err := txn.Get(idxKey)
	switch {
	case err == nil:
		if err := item.Value(func(v []byte) error { first = binary.BigEndian.Uint64(v); return nil }); err != nil {
			return nil, err
		}
		if first != index {
			return nil, nil // a retried request, applied before
		}
	case !errors.Is(err, badger.ErrKeyNotFound):
		return nil, err
	}
	var ib [8]byte
	binary.BigEndian.PutUint64(ib[:], index)
	if err := txn.Set(idxKey, ib[:]); err != nil {
		return nil, err
	}
	cntKey := []byte("cnt/" + id)
	var cnt uint64
	item, err = txn.Get(cntKey)
	switch {
	case err == nil:
		if err := item.Value(func(v []byte) error { cnt = binary.BigEndian.Uint64(v); return nil }); err != nil {
			return nil, err
		}
	case !errors.Is(err, badger.ErrKeyNotFound):
		return nil, err
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], cnt+1)
	if err := txn.Set(cntKey, b[:]); err != nil {
		return nil, err
	}
	val := cmd.GetActor() + "|" + cmd.GetStamp().GetOrigin()
	if err := txn.Set([]byte("kv/"+id), []byte(val)); err != nil {
		return nil, err
	}
	if n, ok := strings.CutPrefix(cmd.GetActor(), "bulk:"); ok {
		count, _ := strconv.Atoi(n)
		for i := range count {
			if err := txn.Set(fmt.Appendf(nil, "bulk/%s/%05d", id, i), bytes.Repeat([]byte{'x'}, 100)); err != nil {
				return nil, err
			}
		}
	}
	return nil, nil
}

func (a *testApplier) Load(*badger.DB) error {
	a.mu.Lock()
	a.loads++
	a.mu.Unlock()
	return nil
}

func (a *testApplier) Committed(uint64, []*raftv1.Command, []*edgev1.CommandResult) {
	a.mu.Lock()
	a.committed++
	a.mu.Unlock()
}

func (a *testApplier) stats() (calls int, minIndex uint64, loads int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.applyCalls, a.minIndex, a.loads
}

// testLogger sends logs to t.Log until the test's cleanups are done.
func testLogger(t testing.TB) *slog.Logger {
	w := &tWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	level := slog.LevelWarn
	if os.Getenv("RAFTNODE_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type tWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// testConfig returns a config with fast timeouts and a small Badger.
func testConfig(t testing.TB, id string) Config {
	return Config{
		NodeID:       id,
		SiteID:       "site-test",
		DataDir:      filepath.Join(t.TempDir(), id),
		RaftAddr:     "127.0.0.1:0",
		ClusterToken: "test-token",
		// Fast enough for quick failovers, slow enough that -race on two
		// busy cores does not make leaders step down all the time.
		HeartbeatTimeout:   300 * time.Millisecond,
		ElectionTimeout:    300 * time.Millisecond,
		LeaderLeaseTimeout: 250 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
		LeaseDuration:      900 * time.Millisecond,
		ApplyTimeout:       5 * time.Second,
		LeaveTimeout:       5 * time.Second,
		TuneBadger: func(o badger.Options) badger.Options {
			return o.WithMemTableSize(8 << 20).WithValueThreshold(1 << 10).WithNumMemtables(2).
				WithBlockCacheSize(2 << 20).WithIndexCacheSize(2 << 20).WithNumCompactors(2)
		},
		Logger: testLogger(t),
	}
}

// testNode is a Node with its applier and the HTTP server of its API.
type testNode struct {
	cfg  Config
	n    *Node
	app  *testApplier
	srv  *http.Server
	once sync.Once
}

// startNode opens a node for cfg with its ClusterService on cfg.APIAddr
// (127.0.0.1:0 when empty) and registers its stop as a cleanup.
func startNode(t testing.TB, cfg Config) *testNode {
	t.Helper()
	addr := cfg.APIAddr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen api: %v", err)
	}
	cfg.APIAddr = ln.Addr().String()
	app := newTestApplier()
	n, err := New(cfg, app)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	mux := http.NewServeMux()
	mux.Handle(n.ClusterHandler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	tn := &testNode{cfg: cfg, n: n, app: app, srv: srv}
	t.Cleanup(tn.stop)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.Open(ctx); err != nil {
		t.Fatalf("Open %s: %v", cfg.NodeID, err)
	}
	return tn
}

// stop closes the node (without leaving: to the cluster it looks like a
// crash) and its API server.
func (tn *testNode) stop() {
	tn.once.Do(func() {
		_ = tn.srv.Close()
		_ = tn.n.Close()
	})
}

func (tn *testNode) stopped() bool { return tn.n.state.Load() == stateClosed }

// restart stops tn and opens a new node on the same files and addresses.
func (tn *testNode) restart(t testing.TB) *testNode {
	t.Helper()
	tn.stop()
	cfg := tn.cfg
	cfg.RaftAddr = tn.n.RaftAddr()
	cfg.Bootstrap, cfg.JoinAddr = false, ""
	return startNode(t, cfg)
}

// mustCluster starts n nodes: the first bootstraps, the others join through
// it. It returns once every node sees all n voters and a leader.
func mustCluster(t testing.TB, n int, tweak func(*Config)) []*testNode {
	t.Helper()
	nodes := make([]*testNode, 0, n)
	for i := range n {
		cfg := testConfig(t, fmt.Sprintf("node%d", i+1))
		if i == 0 {
			cfg.Bootstrap = true
		} else {
			cfg.JoinAddr = nodes[0].cfg.APIAddr
		}
		if tweak != nil {
			tweak(&cfg)
		}
		nodes = append(nodes, startNode(t, cfg))
	}
	waitFor(t, 20*time.Second, "cluster formed", func() bool {
		for _, tn := range nodes {
			st := tn.n.Status()
			if st.LeaderAPIAddr == "" || len(st.Members) != n {
				return false
			}
		}
		return true
	})
	return nodes
}

// waitFor polls cond every few milliseconds until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// leaderOf waits for a leader among the running nodes and returns it.
func leaderOf(t testing.TB, nodes []*testNode) *testNode {
	t.Helper()
	var l *testNode
	waitFor(t, 10*time.Second, "a leader", func() bool {
		for _, tn := range nodes {
			if !tn.stopped() && tn.n.Status().State == StateLeader {
				l = tn
				return true
			}
		}
		return false
	})
	return l
}

func running(nodes []*testNode) []*testNode {
	var out []*testNode
	for _, tn := range nodes {
		if !tn.stopped() {
			out = append(out, tn)
		}
	}
	return out
}

func cmd(id string) *raftv1.Command { return &raftv1.Command{Actor: "test", RequestId: id} }

// propose proposes commands as a careful client does (retrying with the
// same request IDs while the outcome is unknown or there is no leader) and
// fails the test on any other error or a command error. It may be called
// from any goroutine.
func propose(t testing.TB, tn *testNode, cmds ...*raftv1.Command) []*edgev1.CommandResult {
	t.Helper()
	res, err := proposeRetry(tn, 15*time.Second, cmds...)
	if err != nil {
		t.Errorf("Propose on %s: %v", tn.cfg.NodeID, err)
		runtime.Goexit()
	}
	for i, r := range res {
		if r.GetErrorCode() != "" {
			t.Errorf("command %d: %s: %s", i, r.GetErrorCode(), r.GetError())
			runtime.Goexit()
		}
	}
	return res
}

// proposeRetry retries Propose with the same commands while the error is
// ErrIndeterminate or ErrNoLeader, until timeout.
func proposeRetry(tn *testNode, timeout time.Duration, cmds ...*raftv1.Command) ([]*edgev1.CommandResult, error) {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		res, err := tn.n.Propose(ctx, cmds...)
		cancel()
		if err == nil || time.Now().After(deadline) ||
			!errors.Is(err, ErrIndeterminate) && !errors.Is(err, ErrNoLeader) {
			return res, err
		}
	}
}

// waitApplied waits until every running node applied index.
func waitApplied(t testing.TB, nodes []*testNode, index uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, tn := range running(nodes) {
		if err := tn.n.WaitApplied(ctx, index); err != nil {
			t.Fatalf("%s: %v (status %+v)", tn.cfg.NodeID, err, tn.n.Status())
		}
	}
}

// dump returns the test applier's keys ("kv/" and "cnt/") of a node.
func dump(t testing.TB, tn *testNode) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := tn.n.View(func(txn *badger.Txn) error {
		for _, prefix := range []string{"kv/", "cnt/"} {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix), PrefetchValues: true})
			for it.Rewind(); it.Valid(); it.Next() {
				v, err := it.Item().ValueCopy(nil)
				if err != nil {
					it.Close()
					return err
				}
				if prefix == "cnt/" {
					out[string(it.Item().Key())] = strconv.FormatUint(binary.BigEndian.Uint64(v), 10)
				} else {
					out[string(it.Item().Key())] = string(v)
				}
			}
			it.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("dump %s: %v", tn.cfg.NodeID, err)
	}
	return out
}

// checkSame checks that all running nodes hold the same applier state, that
// no request was applied twice, and returns that state.
func checkSame(t testing.TB, nodes []*testNode) map[string]string {
	t.Helper()
	rn := running(nodes)
	want := dump(t, rn[0])
	for k, v := range want {
		if strings.HasPrefix(k, "cnt/") && v != "1" {
			t.Errorf("%s on %s: applied %s times", k, rn[0].cfg.NodeID, v)
		}
	}
	for _, tn := range rn[1:] {
		got := dump(t, tn)
		if len(got) != len(want) {
			t.Errorf("%s has %d keys, %s has %d", tn.cfg.NodeID, len(got), rn[0].cfg.NodeID, len(want))
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: %s = %q, %s has %q", tn.cfg.NodeID, k, got[k], rn[0].cfg.NodeID, v)
				break
			}
		}
	}
	return want
}

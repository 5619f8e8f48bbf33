package raftnode

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/dgraph-io/badger/v4"

	"github.com/gatehouse/gatehouse/access"
	edgev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1/edgev1connect"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

func TestSingleNode(t *testing.T) {
	nodes := mustCluster(t, 1, nil)
	tn := nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("OK", func(t *testing.T) {
		before := tn.n.Status().AppliedIndex
		res, err := tn.n.Propose(ctx, cmd("a"), cmd("b"), &raftv1.Command{Actor: "reject", RequestId: "c"})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := len(res), 3; got != want {
			t.Fatalf("got %d results, want %d", got, want)
		}
		idx := res[0].GetIndex()
		for i, r := range res {
			if r.GetIndex() != idx {
				t.Errorf("result %d: index %d, want %d (one entry)", i, r.GetIndex(), idx)
			}
		}
		if idx <= before {
			t.Errorf("entry index %d, applied before %d", idx, before)
		}
		if res[0].GetErrorCode() != "" || res[1].GetErrorCode() != "" {
			t.Errorf("unexpected errors: %v %v", res[0], res[1])
		}
		if got, want := res[2].GetErrorCode(), "invalid"; got != want {
			t.Errorf("rejected command: code %q, want %q", got, want)
		}
		if err := tn.n.WaitApplied(ctx, idx); err != nil {
			t.Fatal(err)
		}
		if got := tn.n.Status().AppliedIndex; got < idx {
			t.Errorf("applied index %d < %d", got, idx)
		}
		state := dump(t, tn)
		if got, want := state["kv/a"], "test|site-test"; got != want {
			t.Errorf("kv/a = %q, want %q (leader stamps with the site origin)", got, want)
		}
		if _, ok := state["kv/c"]; ok {
			t.Error("rejected command wrote state")
		}
	})

	t.Run("KeepsCallerStamp", func(t *testing.T) {
		c := cmd("stamped")
		propose(t, tn, c)
		if c.Stamp != nil {
			t.Error("Propose modified the caller's command")
		}
	})

	t.Run("ErrTooLarge", func(t *testing.T) {
		cmds := make([]*raftv1.Command, DefaultMaxBatchCommands+1)
		for i := range cmds {
			cmds[i] = cmd(fmt.Sprint("big", i))
		}
		_, err := tn.n.Propose(ctx, cmds...)
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("got %v, want ErrTooLarge", err)
		}
		if got, want := access.ErrorCode(err), access.Invalid; got != want {
			t.Errorf("code %q, want %q", got, want)
		}
	})

	t.Run("Lease", func(t *testing.T) {
		waitFor(t, 5*time.Second, "leader lease", func() bool { return tn.n.LeaseValid(time.Now()) })
		if tn.n.LeaseValid(time.Now().Add(time.Hour)) {
			t.Error("lease valid an hour from now")
		}
		if tn.n.LastLeaderContact().IsZero() {
			t.Error("leader reports no leader contact")
		}
	})
}

func TestClusterConcurrentProposals(t *testing.T) {
	nodes := mustCluster(t, 3, nil)
	const goroutines, perG = 64, 10
	var (
		mu      sync.Mutex
		entries = map[uint64]int{}
		maxIdx  uint64
		wg      sync.WaitGroup
		failed  atomic.Int32
	)
	for g := range goroutines {
		wg.Go(func() {
			tn := nodes[g%len(nodes)]
			for i := range perG {
				res, err := proposeRetry(tn, 15*time.Second, cmd(fmt.Sprintf("g%02d-%02d", g, i)))
				if err != nil || res[0].GetErrorCode() != "" {
					failed.Add(1)
					t.Errorf("propose on %s: %v %v", tn.cfg.NodeID, err, res)
					return
				}
				mu.Lock()
				entries[res[0].GetIndex()]++
				maxIdx = max(maxIdx, res[0].GetIndex())
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.FailNow()
	}
	if got, total := len(entries), goroutines*perG; got >= total {
		t.Errorf("%d commands took %d entries: no group commit", total, got)
	} else {
		t.Logf("%d commands in %d entries", total, got)
	}
	waitApplied(t, nodes, maxIdx)
	state := checkSame(t, nodes)
	if got, want := len(state), 2*goroutines*perG; got != want {
		t.Errorf("state has %d keys, want %d", got, want)
	}

	t.Run("FollowerAnswersWithLeader", func(t *testing.T) {
		l := leaderOf(t, nodes)
		var f *testNode
		for _, tn := range nodes {
			if tn != l {
				f = tn
				break
			}
		}
		c := edgev1connect.NewClusterServiceClient(http.DefaultClient, "http://"+f.cfg.APIAddr,
			connect.WithInterceptors(clientAuth("test-token")))
		_, err := c.Propose(context.Background(), connect.NewRequest(&edgev1.ProposeRequest{Commands: []*raftv1.Command{cmd("direct")}}))
		if got, want := connect.CodeOf(err), connect.CodeFailedPrecondition; got != want {
			t.Fatalf("code %v, want %v (%v)", got, want, err)
		}
		var ce *connect.Error
		if !errors.As(err, &ce) || ce.Meta().Get(LeaderHeader) != l.cfg.APIAddr {
			t.Errorf("leader hint %q, want %q", ce.Meta().Get(LeaderHeader), l.cfg.APIAddr)
		}
	})
}

func TestLeaderFailover(t *testing.T) {
	nodes := mustCluster(t, 3, nil)
	var (
		mu     sync.Mutex
		acked  = map[string]uint64{}
		killed atomic.Pointer[testNode]
		stop   = make(chan struct{})
		wg     sync.WaitGroup
		seq    atomic.Int64
	)
	ackedCount := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	for w := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for {
				select {
				case <-stop:
					return
				default:
				}
				tn := nodes[rng.IntN(len(nodes))]
				if tn == killed.Load() {
					continue
				}
				id := fmt.Sprintf("w%d-%d", w, seq.Add(1))
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				res, err := tn.n.Propose(ctx, cmd(id))
				cancel()
				if err == nil && res[0].GetErrorCode() == "" {
					mu.Lock()
					acked[id] = res[0].GetIndex()
					mu.Unlock()
				}
			}
		})
	}
	waitFor(t, 10*time.Second, "writes before the kill", func() bool { return ackedCount() >= 100 })
	old := leaderOf(t, nodes)
	killed.Store(old)
	old.stop()
	atKill := ackedCount()
	l := leaderOf(t, nodes)
	if l == old {
		t.Fatal("killed leader still leads")
	}
	waitFor(t, 15*time.Second, "writes after the failover", func() bool { return ackedCount() >= atKill+100 })
	close(stop)
	wg.Wait()

	var maxIdx uint64
	for _, idx := range acked {
		maxIdx = max(maxIdx, idx)
	}
	waitApplied(t, nodes, maxIdx)
	state := checkSame(t, nodes)
	for id := range acked {
		if _, ok := state["kv/"+id]; !ok {
			t.Errorf("acknowledged write %s lost", id)
		}
	}
	t.Logf("%d acknowledged writes, %d at the kill; new leader %s", len(acked), atKill, l.cfg.NodeID)
}

func TestRestartSkipsApplied(t *testing.T) {
	t.Run("SingleNode", func(t *testing.T) {
		nodes := mustCluster(t, 1, nil)
		var last uint64
		for i := range 20 {
			last = propose(t, nodes[0], cmd(fmt.Sprint("r", i)))[0].GetIndex()
		}
		applied := nodes[0].n.Status().AppliedIndex
		tn := nodes[0].restart(t)
		if got := tn.n.Status().AppliedIndex; got < applied {
			t.Fatalf("applied index after restart %d, before %d", got, applied)
		}
		// The new term's first entry is applied after the replay of the old log.
		waitFor(t, 10*time.Second, "replay", func() bool { return tn.n.Status().AppliedIndex > applied })
		if calls, _, loads := tn.app.stats(); calls != 0 || loads != 1 {
			t.Errorf("after restart: %d Apply calls (want 0: all replayed entries <= %d), %d loads (want 1)", calls, applied, loads)
		}
		res := propose(t, tn, cmd("after"))
		if res[0].GetIndex() <= last {
			t.Errorf("new entry index %d <= %d", res[0].GetIndex(), last)
		}
		checkSame(t, []*testNode{tn})
	})

	t.Run("Follower", func(t *testing.T) {
		nodes := mustCluster(t, 3, nil)
		l := leaderOf(t, nodes)
		var f *testNode
		for _, tn := range nodes {
			if tn != l {
				f = tn
			}
		}
		var last uint64
		for i := range 50 {
			last = propose(t, nodes[i%3], cmd(fmt.Sprint("a", i)))[0].GetIndex()
		}
		waitApplied(t, nodes, last)
		applied := f.n.Status().AppliedIndex
		f.stop()
		for i := range 50 {
			last = propose(t, l, cmd(fmt.Sprint("b", i)))[0].GetIndex()
		}
		f2 := f.restart(t)
		nodes = running(append(nodes, f2))
		waitApplied(t, nodes, last)
		calls, minIdx, _ := f2.app.stats()
		if calls == 0 || minIdx <= applied {
			t.Errorf("restarted follower applied %d commands from index %d; everything <= %d must be skipped", calls, minIdx, applied)
		}
		state := checkSame(t, nodes)
		if got, want := len(state), 2*100; got != want {
			t.Errorf("state has %d keys, want %d", got, want)
		}
	})
}

func TestSnapshotCatchUp(t *testing.T) {
	nodes := mustCluster(t, 3, func(c *Config) {
		c.SnapshotThreshold = 64
		c.TrailingLogs = 32
		c.SnapshotInterval = 50 * time.Millisecond
	})
	l := leaderOf(t, nodes)
	var f *testNode
	for _, tn := range nodes {
		if tn != l {
			f = tn
		}
	}
	propose(t, l, cmd("first"))
	fLast := f.n.Status().LastIndex
	f.stop()

	// 16 writers × 63 proposals × 10 commands: the follower misses
	// 10,080 commands, far past the trailing logs.
	const writers, perW, perCall = 16, 63, 10
	var wg sync.WaitGroup
	var maxIdx atomic.Uint64
	for w := range writers {
		wg.Go(func() {
			for i := range perW {
				var cmds []*raftv1.Command
				for k := range perCall {
					cmds = append(cmds, cmd(fmt.Sprintf("s%02d-%03d-%d", w, i, k)))
				}
				res := propose(t, l, cmds...)
				for {
					cur := maxIdx.Load()
					if res[0].GetIndex() <= cur || maxIdx.CompareAndSwap(cur, res[0].GetIndex()) {
						break
					}
				}
			}
		})
	}
	wg.Wait()
	waitFor(t, 10*time.Second, "log compaction past the stopped follower", func() bool {
		first, err := l.n.logStore.FirstIndex()
		return err == nil && first > fLast+1
	})

	f2 := f.restart(t)
	live := []*testNode{nodes[0], nodes[1], nodes[2]}
	for i, tn := range live {
		if tn == f {
			live[i] = f2
		}
	}
	waitApplied(t, live, maxIdx.Load())
	if got := f2.n.fsm.restores.Load(); got < 1 {
		t.Errorf("follower restored %d snapshots, want >= 1", got)
	}
	if _, _, loads := f2.app.stats(); loads < 2 {
		t.Errorf("applier loaded %d times, want >= 2 (open and restore)", loads)
	}
	state := checkSame(t, live)
	if got, want := len(state), 2*(1+writers*perW*perCall); got != want {
		t.Errorf("state has %d keys, want %d", got, want)
	}
}

func TestFiveNodesSurviveTwoFailures(t *testing.T) {
	nodes := mustCluster(t, 5, nil)
	for i := range 10 {
		propose(t, nodes[i%5], cmd(fmt.Sprint("p", i)))
	}
	l := leaderOf(t, nodes)
	l.stop()
	for _, tn := range nodes {
		if tn != l {
			tn.stop()
			break
		}
	}
	live := running(nodes)
	var last uint64
	for i := range 10 {
		last = propose(t, live[i%len(live)], cmd(fmt.Sprint("q", i)))[0].GetIndex()
	}
	waitApplied(t, live, last)
	if got, want := len(checkSame(t, live)), 2*20; got != want {
		t.Errorf("state has %d keys, want %d", got, want)
	}
}

func TestUnknownEntryVersion(t *testing.T) {
	tn := mustCluster(t, 1, nil)[0]
	propose(t, tn, cmd("before"))
	before := dump(t, tn)
	applyRaw := func(t *testing.T, data []byte) (*entryResult, uint64) {
		t.Helper()
		f := tn.n.raft.Apply(data, 5*time.Second)
		if err := f.Error(); err != nil {
			t.Fatal(err)
		}
		res, _ := f.Response().(*entryResult)
		if res == nil {
			t.Fatalf("no result: %#v", f.Response())
		}
		return res, f.Index()
	}

	t.Run("Version2", func(t *testing.T) {
		data, err := encodeEntry(&raftv1.Entry{Version: 2, Commands: []*raftv1.Command{cmd("x"), cmd("y")}})
		if err != nil {
			t.Fatal(err)
		}
		res, idx := applyRaw(t, data)
		if res.err != nil || len(res.results) != 2 {
			t.Fatalf("got err %v and %d results, want 2 error results", res.err, len(res.results))
		}
		for i, r := range res.results {
			if r.GetErrorCode() != "invalid" || !strings.Contains(r.GetError(), "unsupported entry version 2") {
				t.Errorf("result %d: %q %q", i, r.GetErrorCode(), r.GetError())
			}
		}
		if got := tn.n.Status().AppliedIndex; got < idx {
			t.Errorf("applied %d < %d", got, idx)
		}
	})

	t.Run("BadTag", func(t *testing.T) {
		for _, data := range [][]byte{{0x7f, 1, 2}, {tagEntry, 0xff, 0xff, 0xff}, {tagMember, '{'}} {
			res, _ := applyRaw(t, data)
			if !errors.Is(res.err, ErrBadEntry) {
				t.Errorf("% x: got %v, want ErrBadEntry", data, res.err)
			}
		}
	})

	after := dump(t, tn)
	if len(after) != len(before) {
		t.Errorf("state changed: %d keys before, %d after", len(before), len(after))
	}
	propose(t, tn, cmd("after"))
}

func TestUnauthenticated(t *testing.T) {
	tn := mustCluster(t, 1, nil)[0]
	for _, tc := range []struct {
		name, token string
		want        connect.Code
	}{
		{"NoToken", "", connect.CodeUnauthenticated},
		{"WrongToken", "guess", connect.CodeUnauthenticated},
		{"OK", "test-token", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []connect.ClientOption
			if tc.token != "" {
				opts = append(opts, connect.WithInterceptors(clientAuth(tc.token)))
			}
			c := edgev1connect.NewClusterServiceClient(http.DefaultClient, "http://"+tn.cfg.APIAddr, opts...)
			_, err := c.Propose(context.Background(), connect.NewRequest(&edgev1.ProposeRequest{Commands: []*raftv1.Command{cmd("auth-" + tc.name)}}))
			if got := connect.CodeOf(err); err != nil && got != tc.want || err == nil && tc.want != 0 {
				t.Fatalf("got %v, want code %v", err, tc.want)
			}
			if tc.want == 0 {
				return
			}
			_, err = c.Join(context.Background(), connect.NewRequest(&edgev1.JoinRequest{NodeId: "intruder", RaftAddr: "127.0.0.1:1", ApiAddr: "127.0.0.1:2"}))
			if connect.CodeOf(err) != tc.want {
				t.Fatalf("join: got %v, want code %v", err, tc.want)
			}
		})
	}
	if _, ok := dump(t, tn)["kv/auth-NoToken"]; ok {
		t.Error("unauthenticated proposal was applied")
	}
	for _, m := range tn.n.Status().Members {
		if m.ID == "intruder" {
			t.Error("unauthenticated join was applied")
		}
	}
}

func TestTxnTooBigSplits(t *testing.T) {
	tn := mustCluster(t, 1, func(c *Config) {
		c.TuneBadger = func(o badger.Options) badger.Options {
			// maxBatchSize = 15% of 1 MiB: about 1,000 of the applier's bulk keys.
			return o.WithMemTableSize(1 << 20).WithValueThreshold(512).WithBlockCacheSize(1 << 20)
		}
	})[0]
	cmds := []*raftv1.Command{}
	for i := range 10 {
		cmds = append(cmds, &raftv1.Command{Actor: "bulk:300", RequestId: fmt.Sprint("bulk", i)})
	}
	cmds = append(cmds, &raftv1.Command{Actor: "bulk:5000", RequestId: "huge"}, cmd("tail"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := tn.n.Propose(ctx, cmds...)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		wantErr := cmds[i].GetRequestId() == "huge"
		if gotErr := r.GetErrorCode() != ""; gotErr != wantErr {
			t.Errorf("command %s: error %q %q, want error %v", cmds[i].GetRequestId(), r.GetErrorCode(), r.GetError(), wantErr)
		}
	}
	if calls, _, _ := tn.app.stats(); calls <= len(cmds) {
		t.Errorf("%d Apply calls for %d commands: the entry was not split", calls, len(cmds))
	}
	state := checkSame(t, []*testNode{tn})
	if _, ok := state["kv/huge"]; ok {
		t.Error("too-large command wrote state")
	}
	var bulk int
	err = tn.n.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("bulk/")})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			bulk++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := bulk, 10*300; got != want {
		t.Errorf("%d bulk keys, want %d", got, want)
	}
	applied, _, err := readState(tn.n.db)
	if err != nil || applied < res[0].GetIndex() {
		t.Errorf("applied index in Badger %d (%v), want >= %d", applied, err, res[0].GetIndex())
	}
}

func TestCloseIdempotentAndLeave(t *testing.T) {
	nodes := mustCluster(t, 3, func(c *Config) { c.LeaveOnClose = true })
	l := leaderOf(t, nodes)
	if err := l.n.Close(); err != nil {
		t.Fatalf("Close leader with leave: %v", err)
	}
	if err := l.n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	l.stop()
	live := running(nodes)
	waitFor(t, 10*time.Second, "leader removed from the configuration", func() bool {
		st := live[0].n.Status()
		return len(st.Members) == 2 && st.State != ""
	})
	propose(t, live[1], cmd("after-leave"))

	// A follower leaving on close leaves a one-node cluster that still commits.
	fl := live[0]
	if live[0].n.Status().State == StateLeader {
		fl = live[1]
	}
	if err := fl.n.Close(); err != nil {
		t.Fatalf("Close follower with leave: %v", err)
	}
	fl.stop()
	last := running(nodes)[0]
	waitFor(t, 10*time.Second, "follower removed", func() bool { return len(last.n.Status().Members) == 1 })
	propose(t, last, cmd("alone"))
	if _, err := l.n.Propose(context.Background(), cmd("closed")); !errors.Is(err, ErrClosed) {
		t.Errorf("Propose after Close: %v, want ErrClosed", err)
	}
	if got := l.n.Status().State; got != StateShutdown {
		t.Errorf("state after Close %q", got)
	}
}

func TestOpenRecoversState(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string)
	}{
		{"WipedState", func(t *testing.T, dir string) {
			// Badger lost everything (worse than a power loss without fsync).
			if err := os.RemoveAll(filepath.Join(dir, "state")); err != nil {
				t.Fatal(err)
			}
		}},
		{"InterruptedRestore", func(t *testing.T, dir string) {
			// A restore died after dropping part of the state.
			db, err := badger.Open(badger.DefaultOptions(filepath.Join(dir, "state")).
				WithLogger(nil).WithMemTableSize(8 << 20).WithValueThreshold(1 << 10))
			if err != nil {
				t.Fatal(err)
			}
			err = db.Update(func(txn *badger.Txn) error {
				if err := txn.Delete([]byte("kv/c000")); err != nil {
					return err
				}
				return txn.Set(keyRestoring, []byte{1})
			})
			if cerr := db.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn := mustCluster(t, 1, func(c *Config) {
				c.SnapshotThreshold = 32
				c.TrailingLogs = 16
				c.SnapshotInterval = 20 * time.Millisecond
			})[0]
			const total = 200
			for i := range total {
				propose(t, tn, cmd(fmt.Sprintf("c%03d", i)))
			}
			waitFor(t, 10*time.Second, "a snapshot and a compacted log", func() bool {
				first, err := tn.n.logStore.FirstIndex()
				return err == nil && first > 1
			})
			tn.stop()
			tc.damage(t, tn.cfg.DataDir)

			tn2 := tn.restart(t)
			if got := tn2.n.fsm.restores.Load(); got != 1 {
				t.Errorf("restored %d snapshots on open, want 1", got)
			}
			waitFor(t, 10*time.Second, "log replay", func() bool { return len(dump(t, tn2)) == 2*total })
			checkSame(t, []*testNode{tn2})
		})
	}
}

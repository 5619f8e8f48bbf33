package raftnode

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// stuckPipeline is a raft.AppendPipeline whose AppendEntries blocks until
// the pipeline is closed, as hashicorp/raft's netPipeline does once its
// response consumer has stopped.
type stuckPipeline struct {
	closed chan struct{}
	once   sync.Once
}

func newStuckPipeline() *stuckPipeline { return &stuckPipeline{closed: make(chan struct{})} }

func (p *stuckPipeline) AppendEntries(*raft.AppendEntriesRequest, *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	<-p.closed
	return nil, raft.ErrPipelineShutdown
}

func (p *stuckPipeline) Consumer() <-chan raft.AppendFuture { return nil }

func (p *stuckPipeline) Close() error {
	p.once.Do(func() { close(p.closed) })
	return nil
}

// guard registers a guarded pipeline over inner with t, as
// AppendEntriesPipeline does.
func guard(t *pipeTransport, inner raft.AppendPipeline) *guardedPipeline {
	gp := &guardedPipeline{AppendPipeline: inner, t: t}
	t.mu.Lock()
	t.pipes[gp] = struct{}{}
	t.mu.Unlock()
	return gp
}

func TestGuardedPipeline(t *testing.T) {
	t.Run("ClosePipelinesUnblocksSend", func(t *testing.T) {
		pt := newPipeTransport(nil, time.Hour)
		gp := guard(pt, newStuckPipeline())
		done := make(chan error, 1)
		go func() {
			_, err := gp.AppendEntries(&raft.AppendEntriesRequest{}, &raft.AppendEntriesResponse{})
			done <- err
		}()
		pt.closePipelines()
		if err := <-done; !errors.Is(err, raft.ErrPipelineShutdown) {
			t.Fatalf("AppendEntries = %v, want ErrPipelineShutdown", err)
		}
		if n := pt.openPipelines(); n != 0 {
			t.Errorf("%d pipelines still open", n)
		}
		// No new pipeline once closed: Raft replicates without one.
		if _, err := pt.AppendEntriesPipeline("x", "127.0.0.1:1"); !errors.Is(err, raft.ErrPipelineReplicationNotSupported) {
			t.Errorf("AppendEntriesPipeline after close = %v, want ErrPipelineReplicationNotSupported", err)
		}
		pt.closePipelines() // idempotent
	})
	t.Run("StalledSendClosesPipeline", func(t *testing.T) {
		pt := newPipeTransport(nil, time.Millisecond)
		inner := newStuckPipeline()
		gp := guard(pt, inner)
		// Only the stall watchdog can end this call.
		if _, err := gp.AppendEntries(&raft.AppendEntriesRequest{}, &raft.AppendEntriesResponse{}); !errors.Is(err, raft.ErrPipelineShutdown) {
			t.Fatalf("AppendEntries = %v, want ErrPipelineShutdown", err)
		}
		if n := pt.openPipelines(); n != 0 {
			t.Errorf("%d pipelines still open", n)
		}
		if err := gp.Close(); err != nil { // idempotent
			t.Errorf("second Close: %v", err)
		}
	})
}

// TestCloseUnderLoad closes the nodes of a 3-node cluster one after the
// other while clients keep writing through every node, with pipelined
// replication: first a follower (the leader's pipeline to it breaks), then
// the leader, then the last one. Every Close must return, and every write
// acknowledged before must be on the nodes' files. Run it many times with
// -race (`go test -race -run TestCloseUnderLoad -count 20 ./edge/raftnode`)
// to look for shutdown hangs.
func TestCloseUnderLoad(t *testing.T) {
	nodes := mustCluster(t, 3, func(c *Config) { c.MaxRPCsInFlight = 8 })
	var (
		mu    sync.Mutex
		acked = map[string]bool{}
		seq   atomic.Int64
		stop  = make(chan struct{})
		wg    sync.WaitGroup
	)
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	for w := range 12 {
		tn := nodes[w%len(nodes)]
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("w%d-%d", w, seq.Add(1))
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				res, err := tn.n.Propose(ctx, cmd(id))
				cancel()
				if errors.Is(err, ErrClosed) {
					return
				}
				if err == nil && res[0].GetErrorCode() == "" {
					mu.Lock()
					acked[id] = true
					mu.Unlock()
				}
			}
		})
	}
	// closeNode closes tn and fails the test if Close does not return: a
	// shutdown hang. The bound is a liveness check, far above any Close.
	closeNode := func(tn *testNode) {
		t.Helper()
		done := make(chan struct{})
		go func() { tn.stop(); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Fatalf("Close of %s did not return: shutdown hang", tn.cfg.NodeID)
		}
	}
	waitFor(t, 20*time.Second, "writes before the first close", func() bool { return count() >= 200 })
	leader := leaderOf(t, nodes)
	var follower *testNode
	for _, tn := range nodes {
		if tn != leader {
			follower = tn
			break
		}
	}
	closeNode(follower)
	at := count()
	waitFor(t, 20*time.Second, "writes with a follower down", func() bool { return count() >= at+200 })
	closeNode(leader)
	for _, tn := range nodes {
		closeNode(tn)
	}
	close(stop)
	wg.Wait()

	// Every acknowledged write is in the files: reopen the first follower
	// closed and the old leader, and read what they hold once they agree.
	a, b := follower.restart(t), leader.restart(t)
	both := []*testNode{a, b}
	waitFor(t, 20*time.Second, "a leader after the restart", func() bool {
		st := a.n.Status()
		return st.LeaderID != "" && st.LeaderAPIAddr != ""
	})
	l := leaderOf(t, both)
	idx := propose(t, l, cmd("after-restart"))[0].GetIndex()
	waitApplied(t, both, idx)
	state := checkSame(t, both)
	for id := range acked {
		if _, ok := state["kv/"+id]; !ok {
			t.Errorf("acknowledged write %s lost", id)
		}
	}
	t.Logf("%d acknowledged writes", len(acked))
}

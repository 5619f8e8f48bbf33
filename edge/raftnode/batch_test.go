package raftnode

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

// TestGroupCommitResultsPerCaller runs waves of callers, each proposing a
// few commands of which some the applier rejects, and checks that every
// caller gets exactly its own results, in order, and that the batching
// counters add up.
func TestGroupCommitResultsPerCaller(t *testing.T) {
	nodes := mustCluster(t, 1, nil)
	tn := nodes[0]
	before := tn.n.BatchStats()
	total := proposeWaves(t, tn, 48, 20, false)
	st := tn.n.BatchStats().Sub(before)
	if st.Commands != uint64(total) {
		t.Errorf("batcher counted %d commands, callers proposed %d", st.Commands, total)
	}
	var hist uint64
	for _, n := range st.EntrySizes {
		hist += n
	}
	if hist != st.Entries || st.Entries == 0 || st.Entries > st.Commands {
		t.Errorf("entries %d, histogram total %d, commands %d", st.Entries, hist, st.Commands)
	}
	if st.LogWrites == 0 || st.LogEntries < st.Entries || st.Applied < st.Entries {
		t.Errorf("log writes %d of %d entries, %d applied, for %d group-commit entries", st.LogWrites, st.LogEntries, st.Applied, st.Entries)
	}
	t.Logf("%d commands in %d entries (%.1f per entry), %d log writes", st.Commands, st.Entries, float64(st.Commands)/float64(st.Entries), st.LogWrites)
}

// TestForwardCoalescing does the same through a follower, which coalesces
// concurrent callers into shared calls to the leader; some callers' calls
// hold a fencing command, which is forwarded alone and fenced.
func TestForwardCoalescing(t *testing.T) {
	nodes := mustCluster(t, 3, func(c *Config) {
		c.IsFencing = func(cmd *raftv1.Command) bool { return strings.HasSuffix(cmd.GetRequestId(), "-fence") }
	})
	l := leaderOf(t, nodes)
	var f *testNode
	for _, tn := range nodes {
		if tn != l {
			f = tn
			break
		}
	}
	before := l.n.BatchStats()
	total := proposeWaves(t, f, 48, 10, true)
	st := l.n.BatchStats().Sub(before)
	if st.Commands != uint64(total) {
		t.Errorf("leader's batcher counted %d commands, callers proposed %d", st.Commands, total)
	}
	t.Logf("%d commands through a follower in %d entries", total, st.Entries)
}

// proposeWaves runs callers concurrent callers on tn, each making rounds
// calls of 1 to 3 commands of which some the test applier rejects (and,
// with fencing, some are fencing), and checks that every caller gets
// exactly its own results, in one entry. It returns the commands proposed.
func proposeWaves(t *testing.T, tn *testNode, callers, rounds int, fencing bool) int {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int
	)
	for c := range callers {
		wg.Go(func() {
			for r := range rounds {
				k := 1 + (c+r)%3 // 1 to 3 commands per call
				cmds := make([]*raftv1.Command, k)
				for i := range cmds {
					actor := "test"
					if (c+r+i)%4 == 0 {
						actor = "reject"
					}
					id := fmt.Sprintf("c%02d-r%02d-%d", c, r, i)
					if fencing && (c+r)%7 == 0 && i == 0 {
						id += "-fence"
					}
					cmds[i] = &raftv1.Command{Actor: actor, RequestId: id}
				}
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				res, err := tn.n.Propose(ctx, cmds...)
				cancel()
				if err != nil {
					t.Errorf("caller %d round %d: %v", c, r, err)
					return
				}
				if len(res) != k {
					t.Errorf("caller %d round %d: %d results for %d commands", c, r, len(res), k)
					return
				}
				for i, rs := range res {
					rejected := cmds[i].GetActor() == "reject"
					if got := rs.GetErrorCode() != ""; got != rejected {
						t.Errorf("caller %d round %d command %d: error code %q, rejected %v: another caller's result", c, r, i, rs.GetErrorCode(), rejected)
					}
					if rs.GetIndex() != res[0].GetIndex() {
						t.Errorf("caller %d round %d: commands of one call in entries %d and %d", c, r, res[0].GetIndex(), rs.GetIndex())
					}
				}
				mu.Lock()
				total += k
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return total
}

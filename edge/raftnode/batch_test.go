package raftnode

import (
	"context"
	"fmt"
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
	const callers, rounds = 48, 20
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
					cmds[i] = &raftv1.Command{Actor: actor, RequestId: fmt.Sprintf("c%02d-r%02d-%d", c, r, i)}
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

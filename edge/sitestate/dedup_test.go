package sitestate

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	edgev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

// tapCmd is a tap's recorded event with request ID rid, stamped at wall.
func tapCmd(rid string, wall time.Time) *raftv1.Command {
	return &raftv1.Command{RequestId: rid, Stamp: &accessv1.Stamp{WallUnixNano: wall.UnixNano(), Origin: "n1"},
		Op: &raftv1.Command_RecordEvents{RecordEvents: &raftv1.RecordEvents{Events: []*accessv1.AccessEvent{
			{AtMs: wall.UnixMilli(), DoorId: string(doorID), Card: 7, RequestId: rid}}}}}
}

// requestIDs returns the request IDs that have a record, and checks that
// each has exactly one time index entry.
func requestIDs(t *testing.T, db *badger.DB) []string {
	t.Helper()
	var ids, timed []string
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixRequest)})
		for it.Rewind(); it.Valid(); it.Next() {
			ids = append(ids, string(it.Item().Key()[len(prefixRequest):]))
		}
		it.Close()
		it = txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixRequestTime)})
		for it.Rewind(); it.Valid(); it.Next() {
			timed = append(timed, string(it.Item().Key()[len(prefixRequestTime)+8:]))
		}
		it.Close()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	slices.Sort(timed)
	if !slices.Equal(ids, timed) {
		t.Fatalf("records %v, time index %v", ids, timed)
	}
	return ids
}

// TestRequestRecordsPruned: records older than the dedup window go, a few
// per command with a request ID; recent ones still deduplicate; a reload
// (as after a snapshot restore) keeps pruning; and two machines applying the
// same commands, one reloaded and one re-applying a discarded transaction,
// end with the same records.
func TestRequestRecordsPruned(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)
	a, b := newFixture(t), newFixture(t)
	for _, f := range []*fixture{a, b} {
		f.m.SetDedupWindow(time.Hour)
		if err := f.m.Load(f.db); err != nil {
			t.Fatal(err)
		}
	}
	var cmds []*raftv1.Command
	for i := range 20 {
		cmds = append(cmds, tapCmd(fmt.Sprintf("old-%02d", i), t0.Add(time.Duration(i)*time.Second)))
	}
	later := t0.Add(2 * time.Hour)
	for i := range 3 {
		cmds = append(cmds, tapCmd(fmt.Sprintf("new-%d", i), later.Add(time.Duration(i)*time.Second)))
	}
	cmds = append(cmds, tapCmd("new-0", later.Add(time.Minute))) // a retry within the window
	for i, c := range cmds {
		a.mustApply(c)
		// b discards a first attempt of every command, then applies it
		// (raftnode's split transactions), and reloads halfway.
		b.index++
		txn := b.db.NewTransaction(true)
		if _, err := b.m.Apply(txn, b.index, c); err != nil {
			t.Fatal(err)
		}
		txn.Discard()
		b.index--
		b.mustApply(c)
		b.m.Committed(b.index, []*raftv1.Command{c}, nil)
		if i == 21 {
			fresh := New(siteID, b.m.log)
			fresh.SetDedupWindow(time.Hour)
			if err := fresh.Load(b.db); err != nil {
				t.Fatal(err)
			}
			b.m = fresh
		}
	}
	// Three commands past the window pruned 3×8 = 24 ≥ 20 old records.
	want := []string{"new-0", "new-1", "new-2"}
	for _, f := range []*fixture{a, b} {
		if got := requestIDs(t, f.db); !slices.Equal(got, want) {
			t.Errorf("records %v, want %v", got, want)
		}
		// The retry of new-0 was answered with its first result: one
		// event each for 23 distinct commands.
		if got := f.m.LastSeq(); got != 23 {
			t.Errorf("last event seq %d, want 23", got)
		}
	}
	// A pruned request ID is new again; a recent one still deduplicates.
	res := applyResult(t, a, tapCmd("old-00", later.Add(2*time.Minute)))
	if res.GetFirstSeq() != 24 {
		t.Errorf("a pruned request ID was not applied afresh: %v", res)
	}
	res = applyResult(t, a, tapCmd("new-1", later.Add(3*time.Minute)))
	if res.GetFirstSeq() != 22 {
		t.Errorf("a recent request ID was not deduplicated: %v", res)
	}
}

// applyResult applies one command as its own entry and returns its result.
func applyResult(t *testing.T, f *fixture, c *raftv1.Command) *edgev1.CommandResult {
	t.Helper()
	f.index++
	txn := f.db.NewTransaction(true)
	defer txn.Discard()
	res, err := f.m.Apply(txn, f.index, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	return res
}

// TestPruneWaysAgree: pruning from the committed records (the fast way)
// deletes exactly the records that iterating the transaction does, over
// entries of many sizes, retries, commands stamped out of order (older
// than the window before a later command of the same entry, which makes
// the fast way step aside), jumps in time after which the budget of each
// command binds, and entries applied a second time after a discarded first
// attempt.
func TestPruneWaysAgree(t *testing.T) {
	t.Cleanup(func() { pruneFromCommitted = true })
	t0 := time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)
	fast, slow := newFixture(t), newFixture(t)
	for _, f := range []*fixture{fast, slow} {
		f.m.SetDedupWindow(time.Minute)
		if err := f.m.Load(f.db); err != nil {
			t.Fatal(err)
		}
	}
	apply := func(f *fixture, useFast, discardFirst bool, cmds []*raftv1.Command) {
		t.Helper()
		pruneFromCommitted = useFast
		if discardFirst {
			txn := f.db.NewTransaction(true)
			for _, c := range cmds {
				if _, err := f.m.Apply(txn, f.index+1, c); err != nil {
					t.Fatal(err)
				}
			}
			txn.Discard()
		}
		f.index++
		txn := f.db.NewTransaction(true)
		defer txn.Discard()
		results := make([]*edgev1.CommandResult, len(cmds))
		for i, c := range cmds {
			res, err := f.m.Apply(txn, f.index, c)
			if err != nil {
				t.Fatal(err)
			}
			results[i] = res
		}
		if err := txn.Commit(); err != nil {
			t.Fatal(err)
		}
		f.m.Committed(f.index, cmds, results)
	}
	wall, n := t0, 0
	sizes := []int{1, 5, 40, 2, 17, 64, 3, 1, 30, 9}
	for round := range 30 {
		size := sizes[round%len(sizes)]
		if round%6 == 5 {
			// Everything so far expires: the budget of 8 per command binds.
			wall = wall.Add(10 * time.Minute)
		}
		var cmds []*raftv1.Command
		for i := range size {
			wall = wall.Add(time.Duration(1+(i*7)%5) * time.Second)
			at := wall
			if round%7 == 3 && i == size/2 {
				at = wall.Add(-2 * time.Minute) // stamped out of order
			}
			rid := fmt.Sprintf("r-%04d", n)
			if round%5 == 4 && i == 0 && n > 3 {
				rid = fmt.Sprintf("r-%04d", n-3) // a retry
			}
			n++
			cmds = append(cmds, tapCmd(rid, at))
		}
		apply(fast, true, round%4 == 1, cmds)
		apply(slow, false, round%4 == 1, cmds)
		got, want := requestIDs(t, fast.db), requestIDs(t, slow.db)
		if !slices.Equal(got, want) {
			t.Fatalf("round %d: pruning from the committed records left %d records, iterating left %d:\n%v\n%v",
				round, len(got), len(want), got, want)
		}
		if round == 29 && len(got) >= n {
			t.Fatalf("nothing was pruned (%d records of %d commands)", len(got), n)
		}
	}
}

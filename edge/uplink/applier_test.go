package uplink

import (
	"testing"

	"github.com/gatehouse/gatehouse/replication"
)

// TestApplierNext checks, deterministically, the runs the applier commits:
// per source in the order queued, the priority lane's first when both are
// queued, consecutive batches of one source joined up to MaxMergeDeltas.
func TestApplierNext(t *testing.T) {
	N, P := replication.LaneNormal, replication.LanePriority
	batch := func(lane replication.Lane, from, to uint64) replication.Message {
		m, _, err := mergeRun(hubBatch(t, lane, from, to), func() (received, bool) { return received{}, false }, func() {})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	a := &applier{queued: replication.Vector{}, wake: make(chan struct{}, 1)}
	for _, m := range []replication.Message{batch(N, 1, 10), batch(N, 11, 20), batch(P, 1, 3), batch(N, 21, 30), batch(P, 4, 5),
		batch(N, 31, 30+MaxMergeDeltas)} {
		if err := a.enqueue(m.Source, m.Deltas); err != nil {
			t.Fatal(err)
		}
	}
	type run struct {
		lane          replication.Lane
		first, last   uint64
		batches, left int
	}
	want := []run{
		{P, 1, 5, 2, 4},                    // the priority lane first, both its batches
		{N, 1, 30, 3, 1},                   // then the normal lane, joined
		{N, 31, 30 + MaxMergeDeltas, 1, 0}, // beyond the bound: a run of its own
	}
	for i, w := range want {
		m, n := a.next()
		got := run{m.Source.Lane, m.Deltas[0].Seq, m.Deltas[len(m.Deltas)-1].Seq, n, len(a.queue)}
		if got != w {
			t.Fatalf("run %d: %+v, want %+v", i, got, w)
		}
		for j := 1; j < len(m.Deltas); j++ {
			if m.Deltas[j].Seq != m.Deltas[j-1].Seq+1 {
				t.Fatalf("run %d not consecutive at %d", i, j)
			}
		}
	}
	if _, n := a.next(); n != 0 {
		t.Fatal("a run after the queue emptied")
	}
	if got := a.queued[replication.Source{Origin: HubOrigin, Lane: N}]; got != 30+MaxMergeDeltas {
		t.Fatalf("queued vector at %d, want %d", got, 30+MaxMergeDeltas)
	}
}

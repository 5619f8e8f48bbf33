package uplink

import (
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/replication"
	"github.com/gatehouse/gatehouse/syncwire"
)

// hubBatch is the wire form of a hub batch of lane's deltas from..to.
func hubBatch(t *testing.T, lane replication.Lane, from, to uint64) received {
	t.Helper()
	var ds []replication.Delta
	for seq := from; seq <= to; seq++ {
		d := replication.Delta{Origin: HubOrigin, Lane: lane, Seq: seq,
			Stamp: replication.Stamp{Wall: time.Unix(1_800_000_000, int64(seq)).UnixNano(), Origin: HubOrigin},
			Kind:  replication.KindGroup, ID: "01JBX000000000000000000001",
			Ops: []replication.Op{replication.SetOp("name", "g")}}
		if lane == replication.LanePriority {
			d.Kind, d.Ops = replication.KindPerson, []replication.Op{replication.DisableOp("test")}
		}
		ds = append(ds, d)
	}
	pm, err := syncwire.ToWire(HubOrigin, replication.Message{Type: replication.MsgBatch, Source: ds[0].Source(), Deltas: ds})
	if err != nil {
		t.Fatal(err)
	}
	return received{msg: pm}
}

// queue is a FIFO of received messages with mergeRun's peek and pop.
type queue []received

func (q *queue) peek() (received, bool) {
	if len(*q) == 0 {
		return received{}, false
	}
	return (*q)[0], true
}
func (q *queue) pop() { *q = (*q)[1:] }

// TestMergeRun checks, deterministically, which queued hub batches mergeRun
// joins to the first: consecutive batches of the same source, up to the
// bounds; another source or a gap ends the run and stays queued; a
// malformed batch refuses the run.
func TestMergeRun(t *testing.T) {
	N, P := replication.LaneNormal, replication.LanePriority
	t.Run("consecutive", func(t *testing.T) {
		q := queue{hubBatch(t, N, 11, 20), hubBatch(t, N, 21, 30), hubBatch(t, P, 1, 1), hubBatch(t, N, 31, 40)}
		m, n, err := mergeRun(hubBatch(t, N, 1, 10), q.peek, q.pop)
		if err != nil || n != 3 || len(m.Deltas) != 30 || m.Deltas[29].Seq != 30 {
			t.Fatalf("merged %d batches, %d deltas, err %v; want 3 batches, deltas 1..30", n, len(m.Deltas), err)
		}
		if len(q) != 2 {
			t.Fatalf("%d left queued, want the priority batch and the one behind it", len(q))
		}
	})
	t.Run("gap", func(t *testing.T) {
		q := queue{hubBatch(t, N, 12, 20)}
		if _, n, err := mergeRun(hubBatch(t, N, 1, 10), q.peek, q.pop); err != nil || n != 1 || len(q) != 1 {
			t.Fatalf("a batch after a gap: merged %d, err %v, %d queued; want it left for the session to judge", n, err, len(q))
		}
	})
	t.Run("bound", func(t *testing.T) {
		q := queue{hubBatch(t, N, MaxMergeDeltas, MaxMergeDeltas+9)}
		if _, n, err := mergeRun(hubBatch(t, N, 1, MaxMergeDeltas-1), q.peek, q.pop); err != nil || n != 1 || len(q) != 1 {
			t.Fatalf("past MaxMergeDeltas: merged %d, err %v", n, err)
		}
	})
	t.Run("malformed", func(t *testing.T) {
		bad := hubBatch(t, N, 11, 20)
		b := bad.msg.GetBatch()
		b.Deltas[3] = b.Deltas[3][:len(b.Deltas[3])/2]
		q := queue{bad, hubBatch(t, N, 21, 30)}
		_, _, err := mergeRun(hubBatch(t, N, 1, 10), q.peek, q.pop)
		if err == nil || access.ErrorCode(err) != access.Invalid || !strings.Contains(err.Error(), "nothing of the run applied") {
			t.Fatalf("a malformed queued batch: err %v, want the run refused", err)
		}
		if len(q) != 1 {
			t.Fatalf("%d queued after the refusal, want the malformed batch taken", len(q))
		}
	})
	t.Run("not a batch", func(t *testing.T) {
		hello, err := syncwire.ToWire(HubOrigin, replication.Message{Type: replication.MsgHello, Vector: replication.Vector{}})
		if err != nil {
			t.Fatal(err)
		}
		q := queue{hubBatch(t, N, 1, 10)}
		if m, n, err := mergeRun(received{msg: hello}, q.peek, q.pop); err != nil || n != 1 || m.Type != replication.MsgHello || len(q) != 1 {
			t.Fatalf("a hello: %v %d %v", m.Type, n, err)
		}
	})
}

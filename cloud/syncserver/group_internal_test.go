package syncserver

import (
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/replication"
)

// gbatch is a batch of origin's lane, deltas from..to.
func gbatch(lane replication.Lane, from, to uint64) replication.Message {
	const origin = "01JBX000000000000000000001"
	var ds []replication.Delta
	for seq := from; seq <= to; seq++ {
		ds = append(ds, replication.Delta{Origin: origin, Lane: lane, Seq: seq,
			Stamp: replication.Stamp{Wall: time.Unix(1_800_000_000, int64(seq)).UnixNano(), Origin: origin},
			Kind:  replication.KindGroup, ID: "01JBX000000000000000000009", Ops: []replication.Op{replication.SetOp("name", "g")}})
	}
	return replication.Message{Type: replication.MsgBatch, Source: ds[0].Source(), Deltas: ds}
}

// TestGroupBatches checks which received batches the hub joins into one
// commit: consecutive batches of one source, up to groupMaxDeltas; another
// source, a gap, a duplicate or another message type ends a group, and
// order is kept.
func TestGroupBatches(t *testing.T) {
	N, P := replication.LaneNormal, replication.LanePriority
	ack := replication.Message{Type: replication.MsgAck, Vector: replication.Vector{}}
	lens := func(ms []replication.Message) (out []int) {
		for _, m := range ms {
			out = append(out, len(m.Deltas))
		}
		return out
	}
	for _, tc := range []struct {
		name string
		in   []replication.Message
		want []int // deltas per message out (0: not a batch)
	}{
		{"Consecutive", []replication.Message{gbatch(N, 1, 10), gbatch(N, 11, 20), gbatch(N, 21, 25)}, []int{25}},
		{"OtherSourceEnds", []replication.Message{gbatch(N, 1, 10), gbatch(P, 1, 2), gbatch(N, 11, 20)}, []int{10, 2, 10}},
		{"GapEnds", []replication.Message{gbatch(N, 1, 10), gbatch(N, 12, 20)}, []int{10, 9}},
		{"DuplicateEnds", []replication.Message{gbatch(N, 1, 10), gbatch(N, 1, 10)}, []int{10, 10}},
		{"AckEnds", []replication.Message{gbatch(N, 1, 10), ack, gbatch(N, 11, 20)}, []int{10, 0, 10}},
		{"Bound", []replication.Message{gbatch(N, 1, groupMaxDeltas-5), gbatch(N, groupMaxDeltas-4, groupMaxDeltas+5)}, []int{groupMaxDeltas - 5, 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := make([]replication.Message, len(tc.in))
			copy(in, tc.in)
			firstLen := len(in[0].Deltas)
			out := groupBatches(in)
			got := lens(out)
			if len(got) != len(tc.want) {
				t.Fatalf("groups %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("groups %v, want %v", got, tc.want)
				}
			}
			for _, m := range out {
				for i := 1; i < len(m.Deltas); i++ {
					if m.Deltas[i].Seq != m.Deltas[i-1].Seq+1 || m.Deltas[i].Source() != m.Source {
						t.Fatalf("group of %s not consecutive at %d", m.Source, i)
					}
				}
			}
			if len(tc.in[0].Deltas) != firstLen {
				t.Fatal("the first received batch was modified")
			}
		})
	}
}

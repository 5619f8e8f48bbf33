package uplink

import (
	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/replication"
	"github.com/gatehouse/gatehouse/syncwire"
)

// Bounds of one merged run of the hub's batches (see mergeRun): at most
// MaxMergeDeltas deltas and about MaxMergeBytes bytes of encoded deltas
// are proposed to the site's Raft as one ApplyDeltas and acknowledged
// together.
const (
	MaxMergeDeltas = 4096
	MaxMergeBytes  = 4 << 20
)

// mergeRun decodes first, a message received from the hub, and when it
// is a batch appends to it the batches queued right behind it (taken with
// peek and pop) that continue it: of the same source, their first delta
// following its last, while the run stays within MaxMergeDeltas and
// MaxMergeBytes. The session then judges and applies the run as one batch,
// in one Raft command (more than one only when edge/node splits large
// deltas), and acknowledges it once, instead of one command and one ack
// per hub batch. Per-source order and the gap checks are the session's,
// unchanged; a batch of another source (such as the priority lane) ends
// the run and is taken next, as without merging.
//
// It returns the run and how many hub batches it holds. When a queued
// batch is malformed, that batch is popped and its error returned: the
// whole run is refused and nothing of it is applied or acknowledged.
func mergeRun(first received, peek func() (received, bool), pop func()) (replication.Message, int, error) {
	m, err := syncwire.FromWire(HubOrigin, first.msg)
	if err != nil || m.Type != replication.MsgBatch || len(m.Deltas) == 0 {
		return m, 1, err
	}
	n := 1
	size := wireSize(first)
	for len(m.Deltas) < MaxMergeDeltas {
		r, ok := peek()
		if !ok || r.err != nil || r.msg.GetBatch() == nil {
			break
		}
		rs := wireSize(r)
		if len(m.Deltas)+len(r.msg.GetBatch().GetDeltas()) > MaxMergeDeltas || size+rs > MaxMergeBytes {
			break
		}
		next, err := syncwire.FromWire(HubOrigin, r.msg)
		if err != nil {
			pop()
			return replication.Message{}, n + 1, access.Errorf(access.ErrorCode(err),
				"uplink: hub batch %d of a merged run refused, nothing of the run applied: %w", n+1, err)
		}
		if next.Source != m.Source || next.Deltas[0].Seq != m.Deltas[len(m.Deltas)-1].Seq+1 {
			break
		}
		pop()
		m.Deltas = append(m.Deltas, next.Deltas...)
		size += rs
		n++
	}
	return m, n, nil
}

// wireSize is the size of the encoded deltas of a received batch.
func wireSize(r received) int {
	n := 0
	for _, b := range r.msg.GetBatch().GetDeltas() {
		n += len(b)
	}
	return n
}

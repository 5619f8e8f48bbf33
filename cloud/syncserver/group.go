package syncserver

import (
	"context"
	"log/slog"
	"time"

	"github.com/gatehouse/gatehouse/access"
	syncv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/sync/v1"
	"github.com/gatehouse/gatehouse/replication"
	"github.com/gatehouse/gatehouse/syncwire"
)

// Bounds of the hub's group commit of a site's batches.
const (
	// inQueue is how many received messages wait for the stream's loop
	// while it commits: what the next group commit can take (each message
	// is bounded by Config.MaxMessageBytes).
	inQueue = 16
	// groupMaxDeltas is the most deltas of one source joined into one
	// group (one store commit: hubstate's commit bound).
	groupMaxDeltas = 4096
	// sendWindow is the most deltas of one source the hub sends a site
	// ahead of its acknowledgements: two of the site's merged Raft
	// commits (uplink.MaxMergeDeltas), so that the next is queued at the
	// site while it commits one.
	sendWindow = 8192
)

// drain returns first and the messages queued behind it in in, without
// waiting, until they hold groupMaxDeltas deltas: what one group commit
// takes (the rest stays queued for the next).
func drain(first *syncv1.SessionMessage, in <-chan *syncv1.SessionMessage) []*syncv1.SessionMessage {
	pms := []*syncv1.SessionMessage{first}
	n := len(first.GetBatch().GetDeltas())
	for n < groupMaxDeltas {
		select {
		case pm := <-in:
			pms = append(pms, pm)
			n += len(pm.GetBatch().GetDeltas())
		default:
			return pms
		}
	}
	return pms
}

// hasBatch reports whether pms holds a batch.
func hasBatch(pms []*syncv1.SessionMessage) bool {
	for _, pm := range pms {
		if pm.GetBatch() != nil {
			return true
		}
	}
	return false
}

// groupBatches joins each batch of ms with the batches right behind it
// that continue it (same source, first sequence number following its
// last), up to groupMaxDeltas deltas, so that the session judges and
// applies them as one batch: one store commit, fsynced, and one
// acknowledgement. A batch that does not continue the one before (another
// source, a gap, a duplicate) and every other message stay as they are, in
// order.
func groupBatches(ms []replication.Message) []replication.Message {
	out := make([]replication.Message, 0, len(ms))
	owned := false // out's last batch holds a slice of our own (copied)
	for _, m := range ms {
		if n := len(out); n > 0 && m.Type == replication.MsgBatch && len(m.Deltas) > 0 {
			last := &out[n-1]
			if last.Type == replication.MsgBatch && last.Source == m.Source && len(last.Deltas) > 0 &&
				m.Deltas[0].Seq == last.Deltas[len(last.Deltas)-1].Seq+1 &&
				len(last.Deltas)+len(m.Deltas) <= groupMaxDeltas {
				if !owned {
					// Copy first: the decoded message's slice is not ours to grow.
					last.Deltas = append(make([]replication.Delta, 0, len(last.Deltas)+len(m.Deltas)), last.Deltas...)
					owned = true
				}
				last.Deltas = append(last.Deltas, m.Deltas...)
				continue
			}
		}
		out = append(out, m)
		owned = false
	}
	return out
}

// receiveGroup hands the site's messages pms, received back to back, to
// the session: decoded in order (a malformed message, or a hello or ack
// naming a source the site does not receive, ends the stream after the
// messages before it were handed over), consecutive batches joined
// (groupBatches). A refused batch ends the stream with the refusal's code:
// nothing of it, nor of the batches joined with it, was applied (the site
// sends them again in its next session). The site's acknowledgements among
// pms are recorded once, the latest vector (RecordAck: a store commit).
func (s *Server) receiveGroup(ctx context.Context, log *slog.Logger, site string, sess *replication.Session, pms []*syncv1.SessionMessage) error {
	ms := make([]replication.Message, 0, len(pms))
	var bad error
	for _, pm := range pms {
		m, err := syncwire.FromWire(site, pm)
		if err == nil && (m.Type == replication.MsgHello || m.Type == replication.MsgAck) {
			err = s.checkScope(site, m.Vector)
		}
		if err != nil {
			log.Warn("sync message refused", "code", access.ErrorCode(err), "err", err)
			bad = connectError(err)
			break
		}
		ms = append(ms, m)
	}
	var acked replication.Vector
	record := func() {
		if acked == nil {
			return
		}
		if err := s.cfg.State.RecordAck(ctx, site, acked); err != nil && ctx.Err() == nil {
			log.Warn("recording the site's ack failed", "err", err)
		}
	}
	for _, m := range groupBatches(ms) {
		start := time.Now()
		if err := sess.Receive(m); err != nil {
			log.Warn("sync batch refused", "code", access.ErrorCode(err), "source", m.Source.String(), "deltas", len(m.Deltas), "err", err)
			record()
			return connectError(err)
		}
		if m.Type == replication.MsgHello || m.Type == replication.MsgAck {
			acked = acked.Merge(m.Vector)
		}
		if m.Type == replication.MsgBatch {
			log.Debug("site batches committed", "source", m.Source.String(), "deltas", len(m.Deltas),
				"last", m.Deltas[len(m.Deltas)-1].Seq, "took", time.Since(start))
		}
	}
	record()
	return bad
}

package syncserver

import (
	"context"
	"log/slog"

	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/replication"
)

// ClaimReason is the disable reason of the hub's suspension of a card that
// a site claimed while it was homed elsewhere (docs/sync.md §3).
const ClaimReason = "suspended"

// suspendClaims answers the conflicting claims a applied since the last
// call (those between the hub's vector before the batch, before, and now):
// for each claimed card the hub writes a disable (reason ClaimReason) in
// its priority lane. The replica already suspends a card with two live
// holders; the hub's disable keeps it suspended after security removes one
// holder, until security enables the card again, and it wins over the
// claim's enable, which never observed it. A failed write is logged, not
// returned: the card stays suspended by the conflict meanwhile.
func (s *Server) suspendClaims(ctx context.Context, log *slog.Logger, a *authorizer, before replication.Vector) {
	claims := a.takeClaims()
	if len(claims) == 0 {
		return
	}
	now := s.cfg.State.Vector()
	seen := map[string]bool{}
	for _, c := range claims {
		if c.Seq <= before[c.Source] || c.Seq > now[c.Source] {
			continue // a duplicate, or not applied (held back behind a gap)
		}
		id := c.Card.String()
		if seen[id] {
			continue
		}
		seen[id] = true
		_, err := s.cfg.State.Write(ctx, func(tx *hubstate.Tx) error {
			tx.Change(replication.KindCard, id, replication.DisableOp(ClaimReason))
			return nil
		})
		if err != nil {
			log.Warn("suspending a claimed card failed", "card", maskCard(id), "source", c.Source.String(), "seq", c.Seq, "err", err)
			continue
		}
		log.Warn("card number claimed by a site while homed elsewhere: conflict, card suspended",
			"card", maskCard(id), "source", c.Source.String(), "seq", c.Seq)
	}
}

// maskCard keeps the last four digits of a card number, for logs.
func maskCard(n string) string {
	if len(n) <= 4 {
		return n
	}
	return "…" + n[len(n)-4:]
}

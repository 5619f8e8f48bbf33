package syncserver

import (
	"log/slog"
	"slices"

	"github.com/gatehouse/gatehouse/replication"
)

// diverged returns the replication.SessionConfig.OnDivergence of a session
// with site: it logs the divergence at error level and records it for
// Divergences. Nothing is replaced (docs/replication.md §11).
func (s *Server) diverged(log *slog.Logger, site string) func(replication.Divergence) {
	return func(d replication.Divergence) {
		s.divergedMu.Lock()
		if s.divergences == nil {
			s.divergences = map[string][]replication.Divergence{}
		}
		known := slices.Contains(s.divergences[site], d)
		if !known {
			s.divergences[site] = append(s.divergences[site], d)
		}
		s.divergedMu.Unlock()
		log.Error("sync divergence: the hub and the site hold different deltas under one sequence number; an operator must decide",
			"site", site, "source", d.Source.String(), "seq", d.Seq)
	}
}

// Divergences returns the divergences found with site by digest exchanges
// in this process (each a source and the first sequence number at which
// the hub's and the site's deltas differ), oldest first; empty when none.
// They stay listed until the process restarts.
func (s *Server) Divergences(site string) []replication.Divergence {
	s.divergedMu.Lock()
	defer s.divergedMu.Unlock()
	return slices.Clone(s.divergences[site])
}

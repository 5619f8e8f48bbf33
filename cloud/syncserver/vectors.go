package syncserver

import "github.com/gatehouse/gatehouse/replication"

// Visible reports whether the hub names src in the vectors it sends site
// (its hellos, acks and push answers): a source the site receives (Scope,
// or every source but events with relayAll) or one of the site's own,
// whose entries tell the site what the hub holds of it. A site learns
// nothing from vectors about the sources it does not receive: not another
// site's normal or events lane, nor how many events any other site
// recorded.
func Visible(site string, src replication.Source, relayAll bool) bool {
	if src.Origin == site {
		return true
	}
	if relayAll {
		return src.Lane != replication.LaneEvents
	}
	return Scope(site, src)
}

// visibleVector returns the entries of v that site may see (Visible),
// with the hub's normal lane as the length of the site's scoped log
// (unless RelayAll).
func (s *Server) visibleVector(site string, v replication.Vector) replication.Vector {
	out := make(replication.Vector, len(v))
	for src, seq := range v {
		if Visible(site, src, s.cfg.RelayAll) {
			out[src] = seq
		}
	}
	if !s.cfg.RelayAll {
		delete(out, hubNormal)
		if n := s.cfg.State.ScopedLen(site); n > 0 {
			out[hubNormal] = n
		}
	}
	return out
}

package syncserver

import (
	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/replication"
)

// Visible reports whether the hub names src in the vectors it sends site
// (its hellos, acks and push answers): a source the site receives (Scope)
// or one of the site's own, whose entries tell the site what the hub holds
// of it. A normal lane of another origin is named as the length of the
// site's scoped log of it, and only once that is not empty (the vectors
// the hub sends are built by visibleVector). A site learns nothing from
// vectors about the sources it does not receive: not another site's events
// lane, nor how many changes of any other origin do not concern it.
func Visible(site string, src replication.Source) bool {
	if src.Origin == site {
		return true
	}
	return Scope(site, src)
}

// visibleVector returns the entries of v that site may see (Visible),
// with every normal lane of another origin as the length of the site's
// scoped log of it (absent when empty).
func (s *Server) visibleVector(site string, v replication.Vector) replication.Vector {
	out := make(replication.Vector, len(v))
	for src, seq := range v {
		if Visible(site, src) && !scopedLane(site, src) {
			out[src] = seq
		}
	}
	for src, seq := range s.cfg.State.ScopedVector(site) {
		if scopedLane(site, src) {
			out[src] = seq
		}
	}
	return out
}

// ErrAheadOfScope (conflict) reports a site whose vector holds more of a
// normal lane (the hub's, or another site's) than the site's scoped log of
// it: the site was synced with another numbering (by a hub from before
// scoped logs, or from another hub's store). The hub refuses it rather than
// skip changes the site lacks; the site's replicated state must be reset
// (docs/sync.md §4).
var ErrAheadOfScope error = &access.Error{Code: access.Conflict, Msg: "the site holds more of the hub's changes than the hub's scoped log for it"}

// checkScope returns ErrAheadOfScope when peer, a site's vector, is ahead
// of one of the site's scoped logs.
func (s *Server) checkScope(site string, peer replication.Vector) error {
	for src, have := range peer {
		if !scopedLane(site, src) {
			continue
		}
		if n := s.cfg.State.ScopedSourceLen(site, src); have > n {
			return access.Errorf(access.Conflict, "sync: site %s names %d of %s, its scoped log holds %d; reset the site's replicated state: %w",
				site, have, src, n, ErrAheadOfScope)
		}
	}
	return nil
}

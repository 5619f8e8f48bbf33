package syncserver

import (
	"log/slog"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/replication"
)

// SkewReport is what the hub saw of one site's clock: deltas of the site
// stamped beyond the hub's skew guard (docs/sync.md "Clock skew").
type SkewReport struct {
	// Accepted counts revocation-only deltas taken although their stamp
	// was beyond the guard (their stamps are not observed).
	Accepted uint64
	// Refused counts deltas whose batch was refused for their stamp.
	Refused uint64
	// Ahead is how far ahead of the hub's clock the last such stamp was.
	Ahead time.Duration
	// At is when the hub saw the last such stamp.
	At time.Time
}

// skews keeps a SkewReport per site. It is safe for concurrent use.
type skews struct {
	mu   sync.Mutex
	site map[string]SkewReport
}

// hook returns the replication.SessionConfig.OnSkew of a session with site:
// it counts and logs every delta beyond the guard.
func (k *skews) hook(log *slog.Logger, site string) func(*replication.SkewError, replication.Delta, bool) {
	return func(se *replication.SkewError, d replication.Delta, accepted bool) {
		k.mu.Lock()
		if k.site == nil {
			k.site = map[string]SkewReport{}
		}
		r := k.site[site]
		if accepted {
			r.Accepted++
		} else {
			r.Refused++
		}
		r.Ahead, r.At = se.Ahead(), time.Now()
		k.site[site] = r
		k.mu.Unlock()
		log.Warn("site clock ahead of the hub's skew guard", "site", site, "source", d.Source().String(),
			"seq", d.Seq, "ahead", se.Ahead().String(), "max_skew", se.MaxSkew.String(), "revocation_taken", accepted)
	}
}

// Skew returns what the hub saw of site's clock in this process: deltas
// stamped beyond the skew guard, taken (revocations) or refused. The zero
// report means none.
func (s *Server) Skew(site string) SkewReport {
	s.skews.mu.Lock()
	defer s.skews.mu.Unlock()
	return s.skews.site[site]
}

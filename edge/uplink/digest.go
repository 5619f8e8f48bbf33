package uplink

import (
	"slices"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/replication"
)

// DefaultDigestInterval is Config.DigestInterval's default: how often a
// running session sends the hub a digest of the sources both hold (and
// once as each session opens; docs/replication.md §11).
const DefaultDigestInterval = 5 * time.Minute

// digestState holds the divergences the uplink's sessions found.
type digestState struct {
	mu    sync.Mutex
	found []replication.Divergence
}

// digestLog is what the site's digests are computed over: every source
// the site holds, its own (with its events lane) and those it receives
// (the session's Log is its own sources only).
type digestLog struct{ site Site }

func (l digestLog) Vector() replication.Vector {
	v := l.site.Vector()
	for src, n := range l.site.OwnVector() {
		if src.Lane == replication.LaneEvents {
			v[src] = n
		}
	}
	return v
}
func (l digestLog) Deltas(src replication.Source, after uint64, max int) ([]replication.Delta, error) {
	return l.site.Deltas(src, after, max)
}

// digestTicker queues a digest on sess now (sent once the hub's hello has
// arrived) and returns the channel on which to queue the next ones, every
// Config.DigestInterval, and the function that stops it. A negative
// interval turns the site's own digests off (it still answers the hub's).
func (u *Uplink) digestTicker(sess *replication.Session) (<-chan time.Time, func()) {
	every := u.cfg.DigestInterval
	if every == 0 {
		every = DefaultDigestInterval
	}
	if every < 0 {
		return nil, func() {}
	}
	sess.QueueDigest()
	t := time.NewTicker(every)
	return t.C, t.Stop
}

// diverged is the sessions' replication.SessionConfig.OnDivergence: the
// site and the hub hold different deltas under one sequence number. It logs
// at error level and records it (Divergences); nothing is replaced.
func (u *Uplink) diverged(d replication.Divergence) {
	u.digest.mu.Lock()
	if !slices.Contains(u.digest.found, d) {
		u.digest.found = append(u.digest.found, d)
	}
	u.digest.mu.Unlock()
	u.log.Error("sync divergence: the site and the hub hold different deltas under one sequence number; an operator must decide",
		"site", u.cfg.SiteID, "source", d.Source.String(), "seq", d.Seq)
}

// Divergences returns the divergences this uplink's sessions found (each a
// source and the first sequence number at which the site's and the hub's
// deltas differ), oldest first; empty when none. It is safe for concurrent
// use; they are kept until the node restarts.
func (u *Uplink) Divergences() []replication.Divergence {
	u.digest.mu.Lock()
	defer u.digest.mu.Unlock()
	return slices.Clone(u.digest.found)
}

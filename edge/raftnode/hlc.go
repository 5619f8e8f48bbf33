package raftnode

import (
	"math"
	"sync"
	"time"

	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
)

// hlc is a minimal hybrid logical clock: wall time from now, a logical
// counter for stamps within the same wall value, and a fixed origin. Stamps it
// hands out strictly increase, even if the wall clock steps back. The
// replication package will own the real HLC (skew guard, persistence); this
// one only has to stamp what the leader proposes. It is safe for concurrent
// use.
type hlc struct {
	mu      sync.Mutex
	origin  string
	now     func() time.Time
	wall    int64
	logical uint32
}

func newHLC(origin string, now func() time.Time) *hlc {
	if now == nil {
		now = time.Now
	}
	return &hlc{origin: origin, now: now}
}

// stamp returns a new stamp greater than every stamp returned or observed
// before.
func (c *hlc) stamp() *accessv1.Stamp {
	pt := c.now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case pt > c.wall:
		c.wall, c.logical = pt, 0
	case c.logical == math.MaxUint32:
		c.wall, c.logical = c.wall+1, 0
	default:
		c.logical++
	}
	return &accessv1.Stamp{WallUnixNano: c.wall, Logical: c.logical, Origin: c.origin}
}

// observe moves the clock up to s if s carries this clock's origin and is
// ahead; stamps of other origins (the hub's, another site's) are left to the
// replication layer's skew guard and ignored here. A new leader has observed
// every stamp committed before it, so it never stamps below them.
func (c *hlc) observe(s *accessv1.Stamp) {
	if s == nil || s.GetOrigin() != c.origin {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.GetWallUnixNano() > c.wall || (s.GetWallUnixNano() == c.wall && s.GetLogical() > c.logical) {
		c.wall, c.logical = s.GetWallUnixNano(), s.GetLogical()
	}
}

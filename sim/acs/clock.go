package acs

import (
	"sync"
	"time"
)

// Clock is a simulator's clock: a base clock (the wall clock, or a manual
// one in tests) plus a skew that the fault layer sets. It is safe for
// concurrent use.
type Clock struct {
	base func() time.Time
	mu   sync.Mutex
	skew time.Duration
}

// NewClock returns a clock reading base (time.Now when nil) with no skew.
func NewClock(base func() time.Time) *Clock {
	if base == nil {
		base = time.Now
	}
	return &Clock{base: base}
}

// Now returns the simulator's time: the base clock plus the skew.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	s := c.skew
	c.mu.Unlock()
	return c.base().Add(s)
}

// SetSkew sets how far the simulator's clock is ahead of (or, negative,
// behind) its base clock.
func (c *Clock) SetSkew(d time.Duration) {
	c.mu.Lock()
	c.skew = d
	c.mu.Unlock()
}

// Skew returns the current skew.
func (c *Clock) Skew() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.skew
}

// ManualClock is a base clock for tests that moves only when told to. It is
// safe for concurrent use.
type ManualClock struct {
	mu sync.Mutex
	t  time.Time
}

// NewManualClock returns a manual clock standing at t.
func NewManualClock(t time.Time) *ManualClock { return &ManualClock{t: t} }

// Now returns the clock's time.
func (m *ManualClock) Now() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.t
}

// Advance moves the clock forward by d.
func (m *ManualClock) Advance(d time.Duration) {
	m.mu.Lock()
	m.t = m.t.Add(d)
	m.mu.Unlock()
}

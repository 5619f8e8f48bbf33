package replication

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

// DefaultMaxSkew is the skew guard of a Clock made with a zero MaxSkew: a
// remote stamp more than this far ahead of the local wall clock is refused.
const DefaultMaxSkew = 5 * time.Minute

// SkewError is the error of Clock.Observe for a stamp too far ahead. It
// wraps ErrClockSkew, so errors.Is(err, ErrClockSkew) matches it and
// access.ErrorCode reports Invalid.
type SkewError struct {
	// Remote is the refused stamp.
	Remote Stamp
	// Local is the local wall time, in Unix nanoseconds, when it was refused.
	Local int64
	// MaxSkew is the guard that was exceeded.
	MaxSkew time.Duration
}

// Ahead returns how far Remote is ahead of Local.
func (e *SkewError) Ahead() time.Duration { return time.Duration(e.Remote.Wall - e.Local) }

// Error names the stamp, how far ahead it is and the limit.
func (e *SkewError) Error() string {
	return fmt.Sprintf("replication: stamp %s from %q is %s ahead of local clock (max skew %s): %v",
		e.Remote, e.Remote.Origin, e.Ahead(), e.MaxSkew, ErrClockSkew)
}

// Unwrap returns ErrClockSkew.
func (e *SkewError) Unwrap() error { return ErrClockSkew }

// Clock is a hybrid logical clock for one origin. Every stamp it makes is
// greater than every stamp it made or observed before, even when the wall
// clock steps back; the wall part stays close to real time when clocks are
// roughly in sync. Its skew guard refuses remote stamps more than MaxSkew
// ahead of the local wall clock, so one peer with a clock far in the future
// cannot drag every clock (and every later last-writer-wins merge) along
// with it; refusals are counted. A Clock is safe for concurrent use.
type Clock struct {
	origin  string
	maxSkew time.Duration
	now     func() time.Time

	mu       sync.Mutex
	wall     int64
	counter  uint32
	rejected uint64
	lastErr  *SkewError
}

// NewClock returns a clock for origin that reads wall time from now
// (time.Now when nil) and refuses stamps more than maxSkew ahead
// (DefaultMaxSkew when zero). It returns the error of ValidateOrigin for a
// malformed origin and an Invalid error for a negative maxSkew.
func NewClock(origin string, maxSkew time.Duration, now func() time.Time) (*Clock, error) {
	if err := ValidateOrigin(origin); err != nil {
		return nil, err
	}
	if maxSkew < 0 {
		return nil, access.Errorf(access.Invalid, "clock %q: negative max skew %s", origin, maxSkew)
	}
	if maxSkew == 0 {
		maxSkew = DefaultMaxSkew
	}
	if now == nil {
		now = time.Now
	}
	return &Clock{origin: origin, maxSkew: maxSkew, now: now}, nil
}

// Origin returns the clock's origin.
func (c *Clock) Origin() string { return c.origin }

// MaxSkew returns the clock's skew guard.
func (c *Clock) MaxSkew() time.Duration { return c.maxSkew }

// Now returns a new stamp of the clock's origin, greater than every stamp
// Now returned and every stamp Observe or Witness accepted before.
func (c *Clock) Now() Stamp {
	pt := c.now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case pt > c.wall:
		c.wall, c.counter = pt, 0
	case c.counter == math.MaxUint32:
		c.wall, c.counter = c.wall+1, 0
	default:
		c.counter++
	}
	return Stamp{Wall: c.wall, Counter: c.counter, Origin: c.origin}
}

// Observe takes in a stamp received from another replica so that every
// later Now is greater than it. It returns a *SkewError wrapping
// ErrClockSkew, counts the refusal and leaves the clock unchanged when
// remote's wall time is more than MaxSkew ahead of the local wall clock, and
// the error of Stamp.Validate for a malformed stamp. The zero stamp is
// accepted and changes nothing.
func (c *Clock) Observe(remote Stamp) error {
	if err := remote.Validate(); err != nil {
		return err
	}
	pt := c.now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	if remote.Wall > pt && time.Duration(remote.Wall-pt) > c.maxSkew {
		c.rejected++
		c.lastErr = &SkewError{Remote: remote, Local: pt, MaxSkew: c.maxSkew}
		return c.lastErr
	}
	c.advance(remote)
	return nil
}

// Check reports, without changing the clock, the error Observe would return
// for remote. A receiver uses it to refuse a whole batch before applying any
// of it; Check does not count refusals.
func (c *Clock) Check(remote Stamp) error {
	if err := remote.Validate(); err != nil {
		return err
	}
	pt := c.now().UnixNano()
	if remote.Wall > pt && time.Duration(remote.Wall-pt) > c.maxSkew {
		return &SkewError{Remote: remote, Local: pt, MaxSkew: c.maxSkew}
	}
	return nil
}

// Witness moves the clock past s without the skew guard. It is for stamps
// the replica itself made or already accepted, such as those replayed from
// its own log after a restart, where the wall clock may have stepped back.
// It returns the error of Stamp.Validate for a malformed stamp.
func (c *Clock) Witness(s Stamp) error {
	if err := s.Validate(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advance(s)
	return nil
}

// advance moves the clock's (wall, counter) up to s's when s's is greater.
// c.mu must be held.
func (c *Clock) advance(s Stamp) {
	if s.Wall > c.wall || s.Wall == c.wall && s.Counter > c.counter {
		c.wall, c.counter = s.Wall, s.Counter
	}
}

// Last returns the greatest (wall, counter) the clock has made or accepted,
// as a stamp of the clock's origin, or the zero stamp when there is none.
// Persisting it and passing it to Witness after a restart keeps stamps
// increasing across restarts.
func (c *Clock) Last() Stamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.wall == 0 && c.counter == 0 {
		return Stamp{}
	}
	return Stamp{Wall: c.wall, Counter: c.counter, Origin: c.origin}
}

// Rejected returns how many stamps Observe refused for skew, and the last
// refusal (nil when none), for metrics and for reporting a peer whose clock
// is off.
func (c *Clock) Rejected() (uint64, *SkewError) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rejected, c.lastErr
}

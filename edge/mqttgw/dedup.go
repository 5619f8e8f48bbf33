package mqttgw

import (
	"container/list"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// dedup remembers the decision of each tap by (device, request ID) for a
// bounded time and number of taps, so that a repeated tap is answered with
// the same decision and recorded once.
//
// Entries are evicted oldest first: when the cache is full, and when an
// entry is older than the TTL. A hit does not refresh an entry, because an
// entry is worth keeping for a fixed time after its tap whatever happens
// later (a device retries within seconds; QoS 1 redelivery after a broker
// restart within minutes), so insertion order is also expiry order and both
// evictions pop the back of one list.
//
// The first tap of a key reserves its entry before deciding, and repeats
// that arrive meanwhile (concurrent redelivery on an external broker) wait
// for it to be filled instead of deciding again. dedup is safe for
// concurrent use.
type dedup struct {
	ttl time.Duration
	max int

	mu sync.Mutex
	m  map[string]*list.Element // of *dedupEntry
	ll list.List                // front: newest
}

// dedupEntry is one remembered tap. done is closed once res is set (or the
// tap was abandoned, with ok false); res and ok are not written after that.
type dedupEntry struct {
	key  string
	at   time.Time
	done chan struct{}
	res  tapResult
	ok   bool
}

// tapResult is what was answered to a tap: the decision, and the door
// controllers that were sent the unlock command (when it granted).
type tapResult struct {
	decision mqttproto.Decision
	unlock   mqttproto.DoorCmd
	targets  []mqttproto.Device
}

// newDedup returns an empty cache of at most max entries of at most ttl age.
func newDedup(ttl time.Duration, max int) *dedup {
	return &dedup{ttl: ttl, max: max, m: make(map[string]*list.Element)}
}

// reserve returns the live entry for key, or makes one at now. fresh
// reports a new entry, which the caller must settle with fill or abandon.
func (c *dedup) reserve(key string, now time.Time) (e *dedupEntry, fresh bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(now)
	if el, ok := c.m[key]; ok {
		return el.Value.(*dedupEntry), false
	}
	e = &dedupEntry{key: key, at: now, done: make(chan struct{})}
	c.m[key] = c.ll.PushFront(e)
	for c.ll.Len() > c.max {
		c.remove(c.ll.Back())
	}
	return e, true
}

// fill settles a fresh entry with its result and wakes its waiters.
func (c *dedup) fill(e *dedupEntry, res tapResult) {
	e.res, e.ok = res, true
	close(e.done)
}

// abandon forgets a fresh entry that could not be answered, so that the
// next repeat is decided afresh, and wakes its waiters.
func (c *dedup) abandon(e *dedupEntry) {
	c.mu.Lock()
	if el, ok := c.m[e.key]; ok && el.Value.(*dedupEntry) == e {
		c.remove(el)
	}
	c.mu.Unlock()
	close(e.done)
}

// len returns the number of entries, expired ones included until the next
// reserve.
func (c *dedup) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}

// expire drops entries older than the TTL; c.mu is held.
func (c *dedup) expire(now time.Time) {
	for el := c.ll.Back(); el != nil; el = c.ll.Back() {
		if now.Sub(el.Value.(*dedupEntry).at) < c.ttl {
			return
		}
		c.remove(el)
	}
}

// remove drops el; c.mu is held.
func (c *dedup) remove(el *list.Element) {
	delete(c.m, el.Value.(*dedupEntry).key)
	c.ll.Remove(el)
}

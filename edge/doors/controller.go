package doors

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
)

// Timing of a controller's loop.
const (
	// retryAfter is the pause before retrying a failed recording or send.
	retryAfter = 500 * time.Millisecond
	// pollActive is how often an Active rule is polled.
	pollActive = 250 * time.Millisecond
	// recordTimeout bounds one RecordDeviceEvents.
	recordTimeout = 10 * time.Second
	// sendTimeout bounds one command send.
	sendTimeout = 5 * time.Second
)

// controller is one door controller and the goroutine that talks to it:
// everything sent to the controller is sent from run, in order, so the
// heartbeat timer sees every send.
type controller struct {
	m    *Manager
	id   access.ID
	wake chan struct{} // capacity 1

	mu        sync.Mutex
	dev       access.Device
	send      Sender
	online    bool
	attach    bool // push a heartbeat and the full cache
	rebuild   bool // the state changed: rebuild the cache
	state     *mqttproto.State
	pending   []*accessv1.AccessEvent // in device seq order, contiguous
	queued    uint64                  // highest seq queued so far
	skipTo    uint64                  // permanent gap to record
	maxSeen   uint64                  // highest seq received
	resendAt  uint64                  // watermark of the last resend asked
	resendDue bool
	ackDue    bool
	alarms    map[string]bool
	acked     uint64
	version   uint64 // of the last cache sent
	entries   int
	managed   bool

	// Owned by run.
	wasActive bool
	retry     bool // a send or recording failed: retry soon
	lastSent  time.Time
	cache     access.OfflineCache
	built     bool
	period    int64
}

// poke wakes the controller's loop.
func (c *controller) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// queue appends an in-order event; c.mu is held.
func (c *controller) queue(ev *accessv1.AccessEvent, e mqttproto.DoorEvent) {
	c.pending = append(c.pending, ev)
	c.queued = e.Seq
	switch e.Type {
	case mqttproto.DoorForcedOpen, mqttproto.DoorHeldOpen, mqttproto.DoorTamper, mqttproto.DoorFailSecure:
		c.alarms[string(e.Type)] = true
	case mqttproto.DoorClosed:
		delete(c.alarms, string(mqttproto.DoorForcedOpen))
		delete(c.alarms, string(mqttproto.DoorHeldOpen))
	case mqttproto.DoorTamperCleared:
		delete(c.alarms, string(mqttproto.DoorTamper))
	case mqttproto.DoorOfflineEnded:
		delete(c.alarms, string(mqttproto.DoorFailSecure))
	}
}

// status returns c's Status.
func (c *controller) status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Status{ID: c.id, Door: c.dev.DoorID, Online: c.online, Managed: c.managed, Acked: c.acked,
		CacheVersion: c.version, CacheEntries: c.entries}
	if c.state != nil {
		st := *c.state
		if st.Door != nil {
			d := *st.Door
			d.Doors = slices.Clone(d.Doors)
			st.Door = &d
		}
		s.State = &st
	}
	for a := range c.alarms {
		s.Alarms = append(s.Alarms, a)
	}
	slices.Sort(s.Alarms)
	return s
}

// run is the controller's loop.
func (c *controller) run() {
	defer c.m.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		t.Reset(c.step())
		select {
		case <-c.wake:
		case <-t.C:
		case <-c.m.ctx.Done():
			return
		}
	}
}

// step does what is due and returns how long until something else is.
func (c *controller) step() time.Duration {
	m := c.m
	active := m.active()
	c.mu.Lock()
	c.managed = active
	if active && !c.wasActive && c.online {
		c.attach = true // newly in charge: treat as a fresh connect
	}
	c.wasActive = active
	if !active {
		c.pending, c.queued, c.skipTo, c.resendDue, c.ackDue = nil, 0, 0, false, false
		c.mu.Unlock()
		return pollActive
	}
	batch := c.pending[:min(len(c.pending), m.cfg.BatchMax)]
	skip := c.skipTo
	c.mu.Unlock()

	c.retry = false
	if len(batch) > 0 || skip > 0 {
		c.record(batch, skip)
	}

	c.mu.Lock()
	online, send, dev := c.online, c.send, c.dev
	attach, rebuild := c.attach, c.rebuild
	resend, resendAt, ackDue := c.resendDue, c.resendAt, c.ackDue
	more := len(c.pending) > 0
	c.attach, c.rebuild, c.resendDue, c.ackDue = false, false, false, false
	c.mu.Unlock()
	if !online || send == nil {
		return c.next(more)
	}

	if resend {
		c.sendCmd(send, mqttproto.DoorCmd{Type: mqttproto.DoorAck, RequestID: m.requestID("a"), Seq: resendAt, Resend: true})
	} else if ackDue {
		if mark := m.site.DeviceSeq(c.id); mark > 0 {
			if c.sendCmd(send, mqttproto.DoorCmd{Type: mqttproto.DoorAck, RequestID: m.requestID("a"), Seq: mark}) {
				c.mu.Lock()
				c.acked = mark
				c.mu.Unlock()
			}
		}
	}
	now := m.cfg.Now()
	if attach {
		c.sendCmd(send, mqttproto.DoorCmd{Type: mqttproto.DoorHeartbeat, RequestID: m.requestID("h"), Time: now})
	}
	period := now.UnixNano() / int64(m.cfg.Refresh)
	if attach || rebuild || period != c.period || !c.built {
		c.push(dev, send, now, attach || !c.built)
		c.period = period
	}
	if now.Sub(c.lastSent) >= m.cfg.Heartbeat {
		c.sendCmd(send, mqttproto.DoorCmd{Type: mqttproto.DoorHeartbeat, RequestID: m.requestID("h"), Time: now})
	}
	if c.retry {
		c.mu.Lock()
		if attach {
			c.attach = true
		}
		c.mu.Unlock()
	}
	return c.next(more)
}

// next returns how long to wait before the next step.
func (c *controller) next(more bool) time.Duration {
	m := c.m
	if more {
		return 0
	}
	d := m.cfg.Heartbeat - m.cfg.Now().Sub(c.lastSent)
	now := m.cfg.Now()
	boundary := now.Truncate(m.cfg.Refresh).Add(m.cfg.Refresh)
	d = min(d, boundary.Sub(now))
	if c.retry {
		d = min(d, retryAfter)
	}
	if m.cfg.Active != nil {
		d = min(d, pollActive)
	}
	return max(d, time.Millisecond)
}

// record commits batch (and a permanent gap up to skip) and drops from the
// queue what the watermark now covers.
func (c *controller) record(batch []*accessv1.AccessEvent, skip uint64) {
	m := c.m
	ctx, cancel := context.WithTimeout(m.ctx, recordTimeout)
	err := m.site.RecordDeviceEvents(ctx, c.id, batch, skip)
	cancel()
	if err != nil {
		if m.ctx.Err() == nil {
			m.log.Warn("recording door controller events failed; retrying", "device", string(c.id), "events", len(batch), "err", err)
		}
		c.retry = true
		return
	}
	mark := m.site.DeviceSeq(c.id)
	c.mu.Lock()
	defer c.mu.Unlock()
	i := 0
	for i < len(c.pending) && c.pending[i].GetDeviceSeq() <= mark {
		i++
	}
	c.pending = slices.Delete(c.pending, 0, i)
	if c.skipTo <= mark {
		c.skipTo = 0
	}
	if len(c.pending) > 0 && c.pending[0].GetDeviceSeq() != mark+1 {
		// Cannot happen while this node alone records the device's
		// events; start over from the watermark.
		m.log.Warn("door controller event queue out of step with the watermark; asking for a resend",
			"device", string(c.id), "watermark", mark, "next", c.pending[0].GetDeviceSeq())
		c.pending, c.queued, c.skipTo = nil, mark, 0
		if mark > 0 {
			c.resendAt, c.resendDue = mark, true
		}
	}
	c.ackDue = true
}

// push builds the cache and sends it when it changed (or always, with
// force).
func (c *controller) push(dev access.Device, send Sender, now time.Time, force bool) {
	m := c.m
	horizon := now.Truncate(m.cfg.Refresh).Add(m.cfg.Horizon)
	var (
		cache access.OfflineCache
		ok    bool
	)
	m.site.View(func(st *access.State) {
		d, found := st.Device(c.id)
		if !found || d.Disabled || d.Kind != access.DeviceDoor {
			return
		}
		dev = d
		cache, ok = access.BuildOfflineCache(st, d.DoorID, now, horizon)
	})
	if !ok {
		return // not a door controller of a known door (any more)
	}
	c.built = true
	if !force && cache.Equal(c.cache) {
		return
	}
	c.mu.Lock()
	version := max(uint64(now.UnixMilli()), c.version+1)
	if c.state != nil && c.state.Door != nil {
		for _, d := range c.state.Door.Doors {
			if d.Door == dev.DoorID {
				version = max(version, d.CacheVersion+1)
			}
		}
	}
	c.mu.Unlock()
	oc := mqttproto.OfflineCache{Door: cache.Door, Version: version,
		HighSecurity: cache.HighSecurity, MaxOffline: min(cache.MaxOffline, mqttproto.MaxOfflineLimit)}
	for _, e := range cache.Entries {
		oc.Entries = append(oc.Entries, mqttproto.CacheEntry{Card: e.Card, From: e.From, Until: e.Until})
	}
	cmds, err := oc.Cmds(m.requestID("c"))
	if err != nil {
		m.log.Error("offline cache not sent: cannot encode", "device", string(c.id), "door", string(cache.Door), "err", err)
		return
	}
	for _, cmd := range cmds {
		if !c.sendCmd(send, cmd) {
			c.built = false // the next step sends it again, whole
			return
		}
	}
	c.cache = cache
	c.mu.Lock()
	c.version, c.entries = version, len(cache.Entries)
	c.mu.Unlock()
	m.log.Info("offline cache sent", "device", string(c.id), "door", string(cache.Door), "version", version,
		"entries", len(cache.Entries), "parts", len(cmds))
}

// sendCmd sends cmd and reports whether the transport took it; a failure
// is logged and retried by the next step.
func (c *controller) sendCmd(send Sender, cmd mqttproto.DoorCmd) bool {
	ctx, cancel := context.WithTimeout(c.m.ctx, sendTimeout)
	err := send(ctx, cmd)
	cancel()
	if err != nil {
		if c.m.ctx.Err() == nil {
			c.m.log.Warn("command to door controller not sent", "device", string(c.id), "type", string(cmd.Type), "err", err)
		}
		c.retry = true
		return false
	}
	c.lastSent = c.m.cfg.Now()
	return true
}

package runner

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
	"github.com/gatehouse/gatehouse/sim/device"
	"github.com/gatehouse/gatehouse/sim/scenario"
)

// execDevice runs a step about door controllers, links and faults.
func (d *deployment) execDevice(ctx context.Context, st *scenario.Step, res *StepResult) {
	c := d.ctls[st.Controller]
	fail := func(outcome, why string) { res.Outcome, res.Failure = outcome, why }
	switch st.Kind {
	case scenario.StepBadge:
		d.badge(ctx, c, st, res)
	case scenario.StepSensor:
		e, err := c.ctl.DoorEvent(access.ID(c.doorID), mqttproto.DoorEventType(st.Event))
		if err != nil {
			fail("not reported", err.Error())
			return
		}
		res.Outcome, res.Pass = "event seq "+strconv.FormatUint(e.Seq, 10), true
	case scenario.StepCut, scenario.StepRestore:
		target := c
		if st.Reader != "" {
			target = d.byName[st.Reader]
		}
		if target == nil || target.proxy == nil {
			fail("?", "no fault proxy for this device")
			return
		}
		if st.Kind == scenario.StepCut {
			n, err := target.proxy.Cut()
			if err != nil {
				fail("not cut", err.Error())
				return
			}
			res.Outcome, res.Pass = "link cut, "+plural(n, "connection")+" closed", true
			return
		}
		if err := target.proxy.Restore(); err != nil {
			fail("not restored", err.Error())
			return
		}
		res.Outcome, res.Pass = "link restored", true
	case scenario.StepRestart:
		start := time.Now()
		c.past = append(c.past, eventsOf(c.ctl)...)
		if err := c.ctl.Close(); err != nil {
			fail("not stopped", err.Error())
			return
		}
		cctx, cancel := context.WithTimeout(ctx, DefaultConnectTimeout)
		defer cancel()
		if err := d.startController(cctx, c); err != nil {
			fail("not started", err.Error())
			return
		}
		res.Latency = time.Since(start)
		res.Outcome, res.Pass = "restarted on its storage", true
		if c.proxy.IsCut() {
			res.Outcome += " (cut off)"
		}
	case scenario.StepRestartBroker, scenario.StepKillNode, scenario.StepRestartNode:
		cctx, cancel := context.WithTimeout(ctx, d.r.cfg.ChangeTimeout+DefaultConnectTimeout)
		defer cancel()
		start := time.Now()
		var err error
		switch st.Kind {
		case scenario.StepRestartBroker:
			err = d.r.cfg.Faults.RestartBroker(cctx, st.N)
		case scenario.StepKillNode:
			err = d.r.cfg.Faults.KillNode(cctx, st.N)
		default:
			err = d.r.cfg.Faults.RestartNode(cctx, st.N)
		}
		res.Latency = time.Since(start)
		if err != nil {
			fail("not done", err.Error())
			return
		}
		res.Outcome, res.Pass = "done", true
	case scenario.StepExpectEvent, scenario.StepExpectState, scenario.StepExpectCache:
		d.expect(ctx, c, st, res)
	default:
		fail("?", fmt.Sprintf("unknown step kind %d", st.Kind))
	}
}

// badge presents a card at a door controller.
func (d *deployment) badge(ctx context.Context, c *commissioned, st *scenario.Step, res *StepResult) {
	tr, err := c.ctl.Tap(ctx, access.ID(c.doorID), st.Card, 0)
	if err != nil {
		res.Outcome, res.Failure = "no decision", err.Error()
		return
	}
	dec := tr.Decision
	res.Decision, res.Latency = &dec, tr.Latency
	if tr.Alone {
		res.Outcome = shortDecision(dec) + " alone, cache v" + strconv.FormatUint(tr.Event.CacheVersion, 10)
	} else {
		res.Outcome = decisionText(dec)
	}
	switch {
	case !st.Expect.Match(dec.Grant, dec.Reason):
		res.Failure = "want " + st.Expect.String() + ", got " + shortDecision(dec)
		if tr.Alone {
			res.Failure += " (decided alone)"
		}
	case st.Within != 0 && tr.Latency > st.Within:
		res.Failure = "latency " + fmtLatency(tr.Latency) + " is over the bound of " + fmtDuration(st.Within)
	default:
		res.Pass = true
	}
}

// expect waits until the condition of an expect step holds, polling, at
// most its "within" (or Config.ExpectTimeout).
func (d *deployment) expect(ctx context.Context, c *commissioned, st *scenario.Step, res *StepResult) {
	wait := st.Within
	if wait == 0 {
		wait = d.r.cfg.ExpectTimeout
	}
	start := time.Now()
	deadline := start.Add(wait)
	poll := time.Millisecond
	for {
		outcome, ok := d.check(c, st)
		res.Outcome = outcome
		if ok {
			res.Pass, res.Latency = true, time.Since(start)
			return
		}
		if time.Now().After(deadline) {
			res.Failure = "not within " + fmtDuration(wait)
			return
		}
		if err := sleep(ctx, poll); err != nil {
			res.Failure = err.Error()
			return
		}
		poll = min(2*poll, 20*time.Millisecond)
	}
}

// check evaluates an expect step once: what it sees, and whether that
// meets the step.
func (d *deployment) check(c *commissioned, st *scenario.Step) (string, bool) {
	if st.Kind == scenario.StepExpectState && st.Reader != "" {
		now := "offline"
		if rd := d.byName[st.Reader].reader; rd != nil && rd.Conn().Connected() {
			now = "online"
		}
		return now, now == st.State
	}
	status := c.ctl.Status()
	switch st.Kind {
	case scenario.StepExpectState:
		now := "online"
		if status.Offline {
			now = "offline"
		}
		return now, now == st.State
	case scenario.StepExpectCache:
		v, es := c.ctl.Cache(access.ID(c.doorID))
		if v == 0 {
			return "no cache", false
		}
		n := strconv.Itoa(len(es)) + " entries"
		if len(es) == 1 {
			n = "1 entry"
		}
		return "cache v" + strconv.FormatUint(v, 10) + ", " + n, true
	}
	// An event: those of earlier runs of the controller (before a
	// restart) count too; acknowledgement is by seq, which the
	// controller's storage keeps.
	events := append(c.past, eventsOf(c.ctl)...)
	seen := ""
	for _, e := range events {
		if string(e.Type) != st.Event || st.Door != "" && e.Door != access.ID(c.doorID) || st.Card != 0 && e.Card != st.Card ||
			!st.Expect.Match(e.Grant, e.Reason) && st.Expect.Set {
			continue
		}
		acked := e.Seq <= status.Acked
		seen = st.Event + " seq " + strconv.FormatUint(e.Seq, 10)
		if e.Type == mqttproto.DoorOfflineDecision {
			seen = shortDecision(mqttproto.Decision{Grant: e.Grant, Reason: e.Reason}) + " " + seen
		}
		if acked {
			seen += ", acked"
		}
		if !st.Acked || acked {
			return seen, true
		}
	}
	if seen == "" {
		return "no such event", false
	}
	return seen, false
}

func eventsOf(c *device.Controller) []mqttproto.DoorEvent {
	var out []mqttproto.DoorEvent
	for _, e := range c.Events() {
		out = append(out, e.DoorEvent)
	}
	return out
}

package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
	"github.com/gatehouse/gatehouse/sim/device"
	"github.com/gatehouse/gatehouse/sim/scenario"
)

// StepResult is the outcome of one step.
type StepResult struct {
	// Step is the scenario's step.
	Step *scenario.Step
	// At is when the step started, from the start of the run.
	At time.Duration
	// Outcome says what happened: the decision of a tap ("deny no_group
	// by n2"), or how far a change got.
	Outcome string
	// Latency is a tap's time from tap to decision, or a change's time
	// until the site acknowledged it; zero when there was none.
	Latency time.Duration
	// Decision is a tap's decision, when one came.
	Decision *mqttproto.Decision
	// Pass reports that the step did what it should: a tap got a decision
	// that met its expectation within its bound, a change was applied.
	Pass bool
	// Failure says why the step failed.
	Failure string
}

// Report is the outcome of a run of one scenario.
type Report struct {
	// Scenario is the scenario's name.
	Scenario string
	// Steps are the results, in order. A run cut short has fewer than the
	// scenario's steps.
	Steps []StepResult
	// Elapsed is the length of the run, setup excluded.
	Elapsed time.Duration
}

// Passed and Failed count the steps that passed and failed.
func (r *Report) Passed() int { return r.count(true) }

// Failed counts the steps that failed.
func (r *Report) Failed() int { return r.count(false) }

func (r *Report) count(pass bool) int {
	n := 0
	for _, s := range r.Steps {
		if s.Pass == pass {
			n++
		}
	}
	return n
}

// OK reports that every step ran and passed.
func (r *Report) OK() bool { return r.Failed() == 0 }

// TapLatencies returns the latencies of the taps that got a decision.
func (r *Report) TapLatencies() []time.Duration {
	var ls []time.Duration
	for _, s := range r.Steps {
		if s.Decision != nil {
			ls = append(ls, s.Latency)
		}
	}
	return ls
}

// Run applies scn's setup to the site, connects its readers, runs its steps
// on its clock, printing a timeline line per step as it goes, and removes
// what it made (see Config.Keep). It returns the report, whose OK says
// whether every expectation held, or an error wrapping ErrSetup when the
// run could not start, or ctx's error when it was cancelled (with the
// report so far).
func (r *Runner) Run(ctx context.Context, scn *scenario.Scenario) (*Report, error) {
	cut := map[string]bool{} // readers the scenario cuts: behind a proxy
	for _, st := range scn.Steps {
		if st.Kind == scenario.StepCut && st.Reader != "" {
			cut[st.Reader] = true
		}
	}
	var specs []readerSpec
	for _, rd := range scn.Readers {
		specs = append(specs, readerSpec{name: rd.Name, door: rd.Door, broker: rd.Broker, proxy: cut[rd.Name]})
	}
	for _, c := range scn.Controllers {
		specs = append(specs, readerSpec{name: c.Name, door: c.Door, broker: c.Broker, controller: true, proxy: true})
	}
	specs = append(specs, visitorSpecs(scn)...)
	d, err := r.deploy(ctx, scn, specs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", scn.Name, err)
	}
	defer d.teardown(ctx)

	out := r.cfg.Out
	devices := plural(len(d.readers), "reader")
	if len(d.controllers) > 0 {
		devices += ", " + plural(len(d.controllers), "door controller")
	}
	if len(d.kiosks) > 0 {
		devices += ", " + plural(len(d.kiosks), "kiosk")
	}
	if len(d.dispensers) > 0 {
		devices += ", " + plural(len(d.dispensers), "dispenser")
	}
	all := append(append(append(slices.Clone(d.readers), d.controllers...), d.kiosks...), d.dispensers...)
	fmt.Fprintf(out, "\n== %s: site %s (%s), %s on %s, %s over %s\n",
		scn.Name, d.site.name, d.site.id, devices, plural(len(distinct(all)), "broker"),
		plural(len(scn.Steps), "step"), fmtDuration(scn.Span()))
	fmt.Fprintf(out, "   setup: %s applied at %d/%d nodes in %s; devices connected in %s\n",
		plural(d.setupCmds, "command"), d.setupNodes, len(d.site.members), fmtLatency(d.setupTook), fmtLatency(d.connectTook))
	return d.steps(ctx, out)
}

// steps runs the scenario's steps on its clock from now, printing a
// timeline line per step, and returns the report, or ctx's error with the
// report so far.
func (d *deployment) steps(ctx context.Context, out io.Writer) (*Report, error) {
	scn := d.scn
	tl := newTimeline(out, scn)
	tl.header()
	rep := &Report{Scenario: scn.Name}
	start := time.Now()
	defer func() { rep.Elapsed = time.Since(start) }()
	for _, st := range scn.Steps {
		if err := sleep(ctx, time.Until(start.Add(st.At))); err != nil {
			return rep, err
		}
		res := StepResult{Step: st, At: time.Since(start)}
		d.exec(ctx, st, &res)
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
		rep.Steps = append(rep.Steps, res)
		tl.line(res)
	}
	return rep, nil
}

// plural returns "1 reader", "3 readers".
func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// distinct returns the broker addresses readers use.
func distinct(cs []*commissioned) map[string]bool {
	m := map[string]bool{}
	for _, c := range cs {
		m[c.addr] = true
	}
	return m
}

// exec runs one step and fills in res.
func (d *deployment) exec(ctx context.Context, st *scenario.Step, res *StepResult) {
	if st.Kiosk != "" || st.Dispenser != "" {
		d.execVisitor(ctx, st, res)
		return
	}
	switch st.Kind {
	case scenario.StepTap:
		d.tap(ctx, st, res)
		return
	case scenario.StepBadge, scenario.StepSensor, scenario.StepCut, scenario.StepRestore, scenario.StepRestart,
		scenario.StepRestartBroker, scenario.StepKillNode, scenario.StepRestartNode,
		scenario.StepExpectEvent, scenario.StepExpectState, scenario.StepExpectCache:
		d.execDevice(ctx, st, res)
		return
	case scenario.StepWait:
		res.Outcome, res.Pass = "waiting "+fmtDuration(st.Wait), true
		return
	}
	var cmd *raftv1.Command
	key := [2]string{st.Person, st.Group}
	switch st.Kind {
	case scenario.StepGrant:
		id := d.r.newID()
		cmd = &raftv1.Command{Op: &raftv1.Command_PutGrant{PutGrant: &accessv1.Grant{Id: id, HolderId: d.people[st.Person].GetId(), GroupId: d.groups[st.Group]}}}
		defer func() {
			if res.Pass {
				d.grants[key] = id
			}
		}()
	case scenario.StepRevoke:
		cmd = &raftv1.Command{Op: &raftv1.Command_RemoveGrant{RemoveGrant: &raftv1.RemoveGrant{GrantId: d.grants[key]}}}
		defer func() {
			if res.Pass {
				delete(d.grants, key)
			}
		}()
	case scenario.StepSuspendCard, scenario.StepActivateCard:
		status := accessv1.CardStatus_CARD_STATUS_SUSPENDED
		if st.Kind == scenario.StepActivateCard {
			status = accessv1.CardStatus_CARD_STATUS_ACTIVE
		}
		cmd = &raftv1.Command{Op: &raftv1.Command_SetCardStatus{SetCardStatus: &raftv1.SetCardStatus{Number: uint64(st.Card), Status: status}}}
	case scenario.StepDeactivate, scenario.StepActivate:
		p := d.clonePerson(st.Person)
		p.Active = st.Kind == scenario.StepActivate
		cmd = &raftv1.Command{Op: &raftv1.Command_PutPerson{PutPerson: p}}
		defer func() {
			if res.Pass {
				d.people[st.Person] = p
			}
		}()
	default:
		res.Outcome, res.Failure = "?", fmt.Sprintf("unknown step kind %d", st.Kind)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, d.r.cfg.ChangeTimeout)
	defer cancel()
	a, err := d.r.change(cctx, d.site, []*raftv1.Command{cmd})
	res.Latency = a.ack
	switch {
	case a.results == nil:
		res.Outcome, res.Failure = "not applied", err.Error()
	case a.results[0].GetErrorCode() != "":
		res.Outcome = "refused: " + a.results[0].GetErrorCode()
		res.Failure = a.results[0].GetError()
	case err != nil:
		res.Outcome = fmt.Sprintf("applied at %d/%d nodes", a.nodes, a.of)
		res.Failure = err.Error()
	default:
		res.Outcome = fmt.Sprintf("applied at %d/%d nodes", a.nodes, a.of)
		res.Pass = true
	}
}

// tap runs a tap step.
func (d *deployment) tap(ctx context.Context, st *scenario.Step, res *StepResult) {
	c := d.byName[st.Reader]
	wait := max(d.r.cfg.DecisionTimeout, st.Within)
	tr, err := c.reader.Tap(ctx, st.Card, wait)
	if err != nil {
		res.Outcome = "no decision"
		if errors.Is(err, device.ErrNoDecision) {
			res.Failure = "no decision within " + fmtDuration(wait)
		} else {
			res.Failure = err.Error()
		}
		return
	}
	dec := tr.Decision
	res.Decision, res.Latency = &dec, tr.Latency
	res.Outcome = decisionText(dec)
	want := st.Expect
	switch {
	case !want.Match(dec.Grant, dec.Reason):
		res.Failure = "want " + want.String() + ", got " + shortDecision(dec)
	case st.Within != 0 && tr.Latency > st.Within:
		res.Failure = "latency " + fmtLatency(tr.Latency) + " is over the bound of " + fmtDuration(st.Within)
	default:
		res.Pass = true
	}
}

// shortDecision is "grant" or "deny REASON".
func shortDecision(d mqttproto.Decision) string {
	if d.Grant {
		return "grant"
	}
	return "deny " + d.Reason.String()
}

// decisionText is a decision as the timeline shows it: "grant by n1",
// "deny no_group by n2 (offline)".
func decisionText(d mqttproto.Decision) string {
	s := shortDecision(d) + " by " + d.Node
	if d.Mode != access.Online {
		s += " (" + d.Mode.String() + ")"
	}
	return s
}

// timeline prints one line per step as it runs.
type timeline struct {
	out     io.Writer
	actionW int
}

const outcomeW = 34

func newTimeline(out io.Writer, scn *scenario.Scenario) *timeline {
	w := len("STEP")
	for _, st := range scn.Steps {
		w = max(w, len(st.Action()))
	}
	return &timeline{out: out, actionW: min(w, 64)}
}

func (t *timeline) header() {
	fmt.Fprintf(t.out, "%9s  %5s  %-*s  %-*s  %8s  %s\n", "TIME", "LINE", t.actionW, "STEP", outcomeW, "OUTCOME", "LATENCY", "RESULT")
}

func (t *timeline) line(r StepResult) {
	verdict := "ok"
	if !r.Pass {
		verdict = "FAIL: " + r.Failure
	}
	lat := ""
	if r.Latency > 0 {
		lat = fmtLatency(r.Latency)
	}
	fmt.Fprintf(t.out, "%9s  %5d  %-*s  %-*s  %8s  %s\n", fmt.Sprintf("+%.3fs", r.At.Seconds()), r.Step.Line,
		t.actionW, r.Step.Action(), outcomeW, r.Outcome, lat, verdict)
}

// fmtLatency prints a latency to a useful precision: 0.8ms, 3.1ms, 12ms,
// 1.25s.
func fmtLatency(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms < 10:
		return fmt.Sprintf("%.1fms", ms)
	case ms < 1000:
		return fmt.Sprintf("%.0fms", ms)
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// fmtDuration prints a duration as the scenario format writes it: 500ms,
// 2s, 15m, 1h30m.
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

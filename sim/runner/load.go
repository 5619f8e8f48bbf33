package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	edgev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1"
	"github.com/gatehouse/gatehouse/sim/device"
	"github.com/gatehouse/gatehouse/sim/scenario"
)

// Load limits and defaults.
const (
	// MaxLoadReaders is the most readers Load simulates.
	MaxLoadReaders = 1000
	// MaxLoadRate is the highest rate Load generates, in taps per second.
	MaxLoadRate = 100_000
	// DefaultUnknown is the default share of taps with unknown cards.
	DefaultUnknown = 0.1
	// unknownCards is how many unknown card numbers Load picks.
	unknownCards = 16
)

// LoadConfig configures Load.
type LoadConfig struct {
	// Readers is the number of simulated readers, spread over the
	// scenario's doors and the runner's brokers round-robin.
	Readers int
	// Rate is the taps per second of all readers together.
	Rate float64
	// Duration is how long taps are sent.
	Duration time.Duration
	// Unknown is the share of taps (0 to 1) made with card numbers the
	// site does not know (default DefaultUnknown; a negative value means
	// none).
	Unknown float64
	// Interval is how often a live line is printed (default 1 s).
	Interval time.Duration
}

// Validate reports the first problem with c.
func (c LoadConfig) Validate() error {
	switch {
	case c.Readers < 1 || c.Readers > MaxLoadReaders:
		return fmt.Errorf("readers must be 1 to %d, not %d", MaxLoadReaders, c.Readers)
	case !(c.Rate > 0) || c.Rate > MaxLoadRate:
		return fmt.Errorf("rate must be above 0 and at most %d taps/s, not %v", MaxLoadRate, c.Rate)
	case c.Duration <= 0:
		return fmt.Errorf("duration must be positive, not %v", c.Duration)
	case c.Unknown > 1:
		return fmt.Errorf("unknown share must be at most 1, not %v", c.Unknown)
	case c.Interval < 0:
		return errors.New("interval must not be negative")
	}
	return nil
}

// LoadReport is the outcome of Load.
type LoadReport struct {
	Readers  int
	Rate     float64
	Duration time.Duration
	// Elapsed is from the first tap to the last decision (or give-up).
	Elapsed time.Duration
	// Sent counts taps published; Decided those answered in time;
	// NoDecision those not; Errors those that failed otherwise (a
	// publication refused, a lost connection); Skipped those not sent
	// because too many were still waiting (the site is overloaded).
	Sent, Decided, NoDecision, Errors, Skipped int
	// Reasons counts the decisions by reason.
	Reasons map[access.Reason]int
	// Latencies are those of the decided taps, in order of decision.
	Latencies []time.Duration
}

// OK reports that taps were sent and every one was decided in time.
func (r *LoadReport) OK() bool {
	return r.Sent > 0 && r.Decided == r.Sent && r.Skipped == 0
}

// loadStats accumulates decisions, for the whole run and for the current
// interval.
type loadStats struct {
	mu                                       sync.Mutex
	sent, decided, noDecision, errs, skipped int
	grants, denies                           int
	reasons                                  map[access.Reason]int
	all, window                              []time.Duration
	wSent, wDecided, wNoDecision, wGrants    int
}

func (s *loadStats) record(res device.Result, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err == nil:
		s.decided++
		s.reasons[res.Decision.Reason]++
		s.all = append(s.all, res.Latency)
		s.window = append(s.window, res.Latency)
		s.wDecided++
		if res.Decision.Grant {
			s.wGrants++
		}
	case errors.Is(err, device.ErrNoDecision):
		s.noDecision++
		s.wNoDecision++
	default:
		s.errs++
	}
}

// Load applies scn's setup (its zones, doors, schedules, groups and people;
// not its readers or steps) with cfg.Readers fresh readers over its doors,
// then taps for cfg.Duration at cfg.Rate taps per second in total, open
// loop (a tap is sent when due, whether or not earlier ones have been
// answered), each at the next reader in turn with a random card of the
// scenario's people or, for a share cfg.Unknown of them, a card the site
// does not know. Every interval it prints the rates and latency
// percentiles of that interval; at the end, a summary. It removes what it
// made, returns the report, or an error wrapping ErrSetup when it could not
// start, or ctx's error (with the report so far) when cancelled.
func (r *Runner) Load(ctx context.Context, scn *scenario.Scenario, cfg LoadConfig) (*LoadReport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	if cfg.Unknown == 0 {
		cfg.Unknown = DefaultUnknown
	}
	cfg.Unknown = max(cfg.Unknown, 0)
	if cfg.Interval == 0 {
		cfg.Interval = time.Second
	}
	if len(scn.Doors) == 0 {
		return nil, fmt.Errorf("load: %s: %w: the scenario has no doors for the readers", scn.Name, ErrSetup)
	}
	var known []access.CardNumber
	for _, p := range scn.People {
		known = append(known, p.Cards...)
	}
	if len(known) == 0 {
		cfg.Unknown = 1
	}
	specs := make([]readerSpec, cfg.Readers)
	for i := range specs {
		specs[i] = readerSpec{name: fmt.Sprintf("load-%d", i+1), door: scn.Doors[i%len(scn.Doors)].Name}
	}
	// The scenario's kiosks and dispensers connect and stay online for
	// the run (load mode taps only).
	specs = append(specs, visitorSpecs(scn)...)
	d, err := r.deploy(ctx, scn, specs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", scn.Name, err)
	}
	defer d.teardown(ctx)
	unknown, err := d.unknownCards(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", scn.Name, ErrSetup, err)
	}

	out := r.cfg.Out
	fmt.Fprintf(out, "\n== load %s: %s at %s on %s, %.0f taps/s for %s, %.0f%% unknown cards\n",
		scn.Name, plural(cfg.Readers, "reader"), plural(min(len(scn.Doors), cfg.Readers), "door"), plural(len(distinct(d.readers)), "broker"),
		cfg.Rate, fmtDuration(cfg.Duration), 100*cfg.Unknown)
	fmt.Fprintf(out, "%7s  %7s  %9s  %7s  %6s  %11s  %7s  %7s  %7s\n", "TIME", "SENT/s", "DECIDED/s", "GRANTED", "DENIED", "NO-DECISION", "P50", "P99", "MAX")

	st := &loadStats{reasons: map[access.Reason]int{}}
	rep := &LoadReport{Readers: cfg.Readers, Rate: cfg.Rate, Duration: cfg.Duration}
	total := int(cfg.Rate*cfg.Duration.Seconds() + 0.5)
	maxWaiting := max(1000, int(2*cfg.Rate*max(r.cfg.DecisionTimeout, time.Second).Seconds()))
	rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))

	var (
		wg      sync.WaitGroup
		waiting = make(chan struct{}, maxWaiting)
	)
	start := time.Now()
	live := d.liveReport(out, st, start, cfg.Interval)
	for i := 0; i < total; i++ {
		due := start.Add(time.Duration(float64(i) / cfg.Rate * float64(time.Second)))
		if err := sleep(ctx, time.Until(due)); err != nil {
			break
		}
		var n access.CardNumber
		if rng.Float64() < cfg.Unknown {
			n = unknown[rng.IntN(len(unknown))]
		} else {
			n = known[rng.IntN(len(known))]
		}
		select {
		case waiting <- struct{}{}:
		default:
			st.mu.Lock()
			st.skipped++
			st.mu.Unlock()
			continue
		}
		st.mu.Lock()
		st.sent++
		st.wSent++
		st.mu.Unlock()
		rd := d.readers[i%len(d.readers)].reader
		wg.Go(func() {
			defer func() { <-waiting }()
			res, err := rd.Tap(ctx, n, r.cfg.DecisionTimeout)
			if ctx.Err() != nil {
				return
			}
			st.record(res, err)
		})
	}
	wg.Wait()
	rep.Elapsed = time.Since(start)
	live.stop()

	st.mu.Lock()
	rep.Sent, rep.Decided, rep.NoDecision, rep.Errors, rep.Skipped = st.sent, st.decided, st.noDecision, st.errs, st.skipped
	rep.Reasons, rep.Latencies = st.reasons, st.all
	st.mu.Unlock()
	writeLoadSummary(out, rep)
	return rep, ctx.Err()
}

// unknownCards picks card numbers the scenario does not use and checks at
// the site that it knows none of them, so unknown taps never hit a real
// card.
func (d *deployment) unknownCards(ctx context.Context) ([]access.CardNumber, error) {
	door := d.doors[d.scn.Doors[0].Name]
	var out []access.CardNumber
	for tries := 0; len(out) < unknownCards; tries++ {
		if tries == 10*unknownCards {
			return nil, errors.New("cannot find card numbers the site does not know")
		}
		n := access.CardNumber(900_000_000_000 + rand.Uint64N(99_999_999_999))
		if _, mine := d.cards[n]; mine || slices.Contains(out, n) {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		res, err := d.r.site.CheckAccess(cctx, connect.NewRequest(&edgev1.CheckAccessRequest{Card: uint64(n), DoorId: door}))
		cancel()
		if err != nil {
			return nil, fmt.Errorf("check card numbers: %w", err)
		}
		if access.Reason(res.Msg.GetReason()) == access.ReasonUnknownCard {
			out = append(out, n)
		}
	}
	return out, nil
}

// liveLoop prints a line per interval until stopped.
type liveLoop struct {
	stopc chan struct{}
	done  chan struct{}
}

func (l *liveLoop) stop() {
	close(l.stopc)
	<-l.done
}

// liveReport starts printing one line per interval: taps sent and decided
// per second, grants, denies, taps without decision and the latency
// percentiles of the decisions in that interval. The last, partial
// interval is printed when the loop stops.
func (d *deployment) liveReport(out io.Writer, st *loadStats, start time.Time, every time.Duration) *liveLoop {
	l := &liveLoop{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		t := time.NewTicker(every)
		defer t.Stop()
		last := start
		flush := func(now time.Time) {
			st.mu.Lock()
			w := slices.Clone(st.window)
			sent, decided, noDec, grants := st.wSent, st.wDecided, st.wNoDecision, st.wGrants
			st.window, st.wSent, st.wDecided, st.wNoDecision, st.wGrants = st.window[:0], 0, 0, 0, 0
			st.mu.Unlock()
			secs := now.Sub(last).Seconds()
			last = now
			if secs <= 0 {
				return
			}
			slices.Sort(w)
			p50, p99, mx := "-", "-", "-"
			if len(w) > 0 {
				p50, p99, mx = fmtLatency(nearestRank(w, 0.5)), fmtLatency(nearestRank(w, 0.99)), fmtLatency(w[len(w)-1])
			}
			at := fmt.Sprintf("%.0fs", now.Sub(start).Seconds())
			if every%time.Second != 0 {
				at = fmt.Sprintf("%.1fs", now.Sub(start).Seconds())
			}
			fmt.Fprintf(out, "%7s  %7.0f  %9.0f  %7d  %6d  %11d  %7s  %7s  %7s\n", at, float64(sent)/secs, float64(decided)/secs,
				grants, decided-grants, noDec, p50, p99, mx)
		}
		for {
			select {
			case now := <-t.C:
				flush(now)
			case <-l.stopc:
				if now := time.Now(); now.Sub(last) > every/10 {
					flush(now)
				}
				return
			}
		}
	}()
	return l
}

// writeLoadSummary prints the final summary of a load run.
func writeLoadSummary(w io.Writer, r *LoadReport) {
	var b strings.Builder
	achieved := 0.0
	if secs := r.Duration.Seconds(); secs > 0 {
		achieved = float64(r.Sent) / secs
	}
	fmt.Fprintf(&b, "\nload summary: %s, %.0f taps/s asked for %s, %.1f taps/s sent\n", plural(r.Readers, "reader"), r.Rate, fmtDuration(r.Duration), achieved)
	fmt.Fprintf(&b, "  taps      sent %d, decided %d, no decision %d, errors %d, skipped (overload) %d\n", r.Sent, r.Decided, r.NoDecision, r.Errors, r.Skipped)
	ls := slices.Clone(r.Latencies)
	slices.Sort(ls)
	if len(ls) > 0 {
		fmt.Fprintf(&b, "  latency   p50 %s, p99 %s, max %s\n", fmtLatency(nearestRank(ls, 0.5)), fmtLatency(nearestRank(ls, 0.99)), fmtLatency(ls[len(ls)-1]))
	}
	var rs []access.Reason
	for reason := range r.Reasons {
		rs = append(rs, reason)
	}
	slices.SortFunc(rs, func(a, b access.Reason) int { return r.Reasons[b] - r.Reasons[a] })
	var parts []string
	for _, reason := range rs {
		parts = append(parts, fmt.Sprintf("%s %d", reason, r.Reasons[reason]))
	}
	if len(parts) > 0 {
		fmt.Fprintf(&b, "  decisions %s\n", strings.Join(parts, ", "))
	}
	if r.OK() {
		b.WriteString("\nPASS: every tap was decided in time\n")
	} else {
		fmt.Fprintf(&b, "\nFAIL: %d of %d taps were not decided in time\n", r.Sent-r.Decided+r.Skipped, r.Sent+r.Skipped)
	}
	_, _ = io.WriteString(w, b.String())
}

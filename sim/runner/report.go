package runner

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Percentile returns the q-quantile (0 < q <= 1) of ls by the nearest-rank
// method, or 0 for none. It does not modify ls.
func Percentile(ls []time.Duration, q float64) time.Duration {
	if len(ls) == 0 {
		return 0
	}
	s := slices.Clone(ls)
	slices.Sort(s)
	return nearestRank(s, q)
}

// nearestRank is Percentile of an already sorted slice.
func nearestRank(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// WriteSummary writes the summary table of reports: per scenario the steps,
// how many passed and failed, and the tap latency percentiles, then a total
// row, every failed step, and a last line saying PASS or FAIL. It returns
// w's error.
func WriteSummary(w io.Writer, reports []*Report) error {
	nameW := len("SCENARIO")
	for _, r := range reports {
		nameW = max(nameW, len(r.Scenario))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-*s  %5s  %6s  %6s  %5s  %7s  %7s  %7s\n", nameW, "SCENARIO", "STEPS", "PASSED", "FAILED", "TAPS", "P50", "P99", "MAX")
	var (
		all                  []time.Duration
		steps, passed, fails int
	)
	row := func(name string, steps, passed, failed int, ls []time.Duration) {
		s := slices.Clone(ls)
		slices.Sort(s)
		p50, p99, mx := "-", "-", "-"
		if len(s) > 0 {
			p50, p99, mx = fmtLatency(nearestRank(s, 0.5)), fmtLatency(nearestRank(s, 0.99)), fmtLatency(s[len(s)-1])
		}
		fmt.Fprintf(&b, "%-*s  %5d  %6d  %6d  %5d  %7s  %7s  %7s\n", nameW, name, steps, passed, failed, len(s), p50, p99, mx)
	}
	for _, r := range reports {
		ls := r.TapLatencies()
		row(r.Scenario, len(r.Steps), r.Passed(), r.Failed(), ls)
		all = append(all, ls...)
		steps, passed, fails = steps+len(r.Steps), passed+r.Passed(), fails+r.Failed()
	}
	if len(reports) > 1 {
		row("total", steps, passed, fails, all)
	}
	if fails > 0 {
		b.WriteString("\nFailed steps:\n")
		for _, r := range reports {
			for _, s := range r.Steps {
				if !s.Pass {
					fmt.Fprintf(&b, "  %s:%d  %s: %s\n", r.Scenario, s.Step.Line, s.Step.Action(), s.Failure)
				}
			}
		}
		fmt.Fprintf(&b, "\nFAIL: %d of %d steps failed\n", fails, steps)
	} else {
		fmt.Fprintf(&b, "\nPASS: all %d steps passed\n", steps)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

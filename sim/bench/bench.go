// Package bench runs Gatehouse's benchmarks and reports them in one output
// contract: one JSON object per line with the benchmark's name, the metric,
// its value and unit, the floor measured in the same run (the physical lower
// bound the metric is compared against: an fsync, a broker echo, a loopback
// round trip) and the ratio value/floor.
//
// Benchmarks are registered in a Registry and run by `gatehouse bench NAME`.
// Quick mode shrinks every benchmark so that all of them finish in under a
// minute; the numbers are then indicative only.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"sort"
	"sync"
	"time"
)

// Result is one line of benchmark output.
type Result struct {
	// Bench is the benchmark's name, e.g. "floors" or "door".
	Bench string `json:"bench"`
	// Metric names what was measured, e.g. "p99_us" or "ops_per_s_c64".
	Metric string `json:"metric"`
	// Value is the measurement.
	Value float64 `json:"value"`
	// Unit is the unit of Value and Floor, e.g. "us", "ops/s", "ms".
	Unit string `json:"unit"`
	// Floor is the matching lower bound measured in the same run; 0 if none.
	Floor float64 `json:"floor"`
	// Ratio is Value/Floor, or 0 when there is no floor.
	Ratio float64 `json:"ratio"`
}

// NewResult builds a Result and computes its ratio, rounded for reading.
func NewResult(bench, metric string, value float64, unit string, floor float64) Result {
	r := Result{Bench: bench, Metric: metric, Value: round(value), Unit: unit, Floor: round(floor)}
	if floor > 0 {
		r.Ratio = round(value / floor)
	}
	return r
}

func round(v float64) float64 {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return v
	}
	// Three significant decimals is plenty for timings and rates.
	p := math.Pow(10, 3-math.Ceil(math.Log10(math.Abs(v))))
	if p < 1 {
		return math.Round(v)
	}
	return math.Round(v*p) / p
}

// Options configure one benchmark run.
type Options struct {
	// Quick shrinks the benchmark so that all of them run in under a minute.
	Quick bool
	// Dir is a scratch directory on the filesystem the data would live on.
	Dir string
	// Log receives progress; never nil.
	Log *slog.Logger
}

// Func runs one benchmark and emits its results as it measures them.
// It returns an error if the benchmark could not be run; a slow result is
// not an error.
type Func func(ctx context.Context, opt Options, emit func(Result)) error

// Bench is a registered benchmark.
type Bench struct {
	// Name is what `gatehouse bench NAME` calls it.
	Name string
	// Help is a one-line description.
	Help string
	// Run measures.
	Run Func
}

// Registry holds the known benchmarks. It is safe for concurrent use.
type Registry struct {
	mu      sync.Mutex
	benches map[string]Bench
}

// Default is the registry the gatehouse binary uses.
var Default = &Registry{}

// Register adds a benchmark; it panics on a duplicate name (a programming error).
func (r *Registry) Register(b Bench) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.benches == nil {
		r.benches = map[string]Bench{}
	}
	if _, dup := r.benches[b.Name]; dup {
		panic("bench: duplicate benchmark " + b.Name)
	}
	r.benches[b.Name] = b
}

// Names lists the registered benchmarks in a stable order: floors first,
// because the others are read against it, then alphabetical.
func (r *Registry) Names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, 0, len(r.benches))
	for n := range r.benches {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if (names[i] == "floors") != (names[j] == "floors") {
			return names[i] == "floors"
		}
		return names[i] < names[j]
	})
	return names
}

// Lookup returns the named benchmark.
func (r *Registry) Lookup(name string) (Bench, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.benches[name]
	return b, ok
}

// Run runs the named benchmarks ("all" runs every one) and writes each
// result to w as a JSON line as soon as it is measured. It returns every
// result, and the first error of a benchmark that could not run (the others
// still run).
func (r *Registry) Run(ctx context.Context, names []string, opt Options, w io.Writer) ([]Result, error) {
	if slices.Contains(names, "all") {
		names = r.Names()
	}
	enc := json.NewEncoder(w)
	var (
		all      []Result
		firstErr error
	)
	for _, name := range names {
		b, ok := r.Lookup(name)
		if !ok {
			return all, fmt.Errorf("bench: unknown benchmark %q (known: %v)", name, r.Names())
		}
		start := time.Now()
		opt.Log.Info("bench start", "bench", name, "quick", opt.Quick)
		err := b.Run(ctx, opt, func(res Result) {
			all = append(all, res)
			_ = enc.Encode(res)
		})
		if err != nil {
			err = fmt.Errorf("bench %s: %w", name, err)
			opt.Log.Error("bench failed", "bench", name, "err", err)
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		opt.Log.Info("bench done", "bench", name, "took", time.Since(start).Round(time.Millisecond))
	}
	return all, firstErr
}

// Percentile returns the q-quantile (0..1) of samples by nearest rank.
// It sorts samples in place and returns 0 for an empty slice.
func Percentile(samples []time.Duration, q float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	slices.Sort(samples)
	i := int(math.Ceil(q*float64(len(samples)))) - 1
	i = max(0, min(i, len(samples)-1))
	return samples[i]
}

// Micros converts a duration to fractional microseconds.
func Micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/gatehouse/gatehouse/sim/bench"
)

// BenchMain runs benchmarks and prints one JSON object per metric.
type BenchMain struct {
	env
	Quick    bool
	Dir      string
	Markdown string
	LogLevel string
	// CPUProfile, when set, is the file a CPU profile of the whole run is
	// written to (read it with go tool pprof).
	CPUProfile string
	Names      []string
}

// ParseFlags reads the benchmark names and flags.
func (m *BenchMain) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("gatehouse bench", flag.ContinueOnError)
	fs.SetOutput(m.stderr)
	fs.BoolVar(&m.Quick, "quick", false, "shrink every benchmark so that all of them run in under a minute")
	fs.StringVar(&m.Dir, "dir", "", "scratch directory on the filesystem to measure (default: a new temporary directory)")
	fs.StringVar(&m.Markdown, "markdown", "", "also write the results as a Markdown report to this file (e.g. BENCHMARKS.md)")
	fs.StringVar(&m.LogLevel, "log-level", "warn", "log level for progress on stderr: debug, info, warn, error")
	fs.StringVar(&m.CPUProfile, "cpuprofile", "", "write a CPU profile of the run to this file (go tool pprof)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: gatehouse bench [flags] NAME... (or all)\n\nBenchmarks:\n")
		for _, n := range bench.Default.Names() {
			b, _ := bench.Default.Lookup(n)
			fmt.Fprintf(fs.Output(), "  %-10s %s\n", n, b.Help)
		}
		fmt.Fprintf(fs.Output(), "\nFlags:\n")
		fs.PrintDefaults()
	}
	names, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		fs.Usage()
		return fmt.Errorf("%w: name a benchmark or all", errUsage)
	}
	for _, n := range names {
		if _, ok := bench.Default.Lookup(n); !ok && n != "all" {
			return fmt.Errorf("%w: unknown benchmark %q (known: %v)", errUsage, n, bench.Default.Names())
		}
	}
	m.Names = names
	return nil
}

// Run runs the benchmarks.
func (m *BenchMain) Run(ctx context.Context) error {
	log, err := newLogger(m.stderr, m.LogLevel)
	if err != nil {
		return err
	}
	dir := m.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "gatehouse-bench-*"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	if m.CPUProfile != "" {
		f, err := os.Create(m.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	results, runErr := bench.Default.Run(ctx, m.Names, bench.Options{Quick: m.Quick, Dir: dir, Log: log}, m.stdout)
	if m.Markdown != "" && len(results) > 0 {
		f, err := os.Create(m.Markdown)
		if err != nil {
			return err
		}
		if err := bench.WriteMarkdown(f, results, m.Quick, time.Now()); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return runErr
}

// Close does nothing: Run cleans up after itself.
func (m *BenchMain) Close() error { return nil }

// Command gatehouse is the one Gatehouse binary. Each subcommand is a
// Main-style struct (ParseFlags, Run, Close) that tests run in-process:
//
//	gatehouse edge    run an edge node of a site
//	gatehouse cloud   run the cloud hub
//	gatehouse demo    run hub + a 3-node site on this machine
//	gatehouse ctl     operate a running site (status, ...)
//	gatehouse sim     simulated devices and scenarios
//	gatehouse bench   benchmarks, one JSON line per metric
//
// main only wires: it parses, runs, and turns errors into exit codes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "dev"

// command is what every subcommand implements.
type command interface {
	// ParseFlags reads the configuration from defaults, an optional file and flags.
	ParseFlags(args []string) error
	// Run runs until ctx is done or the work is finished.
	Run(ctx context.Context) error
	// Close releases everything Run started; it is idempotent.
	Close() error
}

// env is what a subcommand gets from its surroundings; tests substitute it.
type env struct {
	stdout, stderr io.Writer
}

func newCommand(name string, e env) (command, bool) {
	switch name {
	case "cloud":
		return &CloudMain{env: e}, true
	case "edge":
		return &EdgeMain{env: e}, true
	case "demo":
		return &DemoMain{env: e}, true
	case "ctl":
		return &CtlMain{env: e}, true
	case "sim":
		return &SimMain{env: e}, true
	case "bench":
		return &BenchMain{env: e}, true
	}
	return nil, false
}

const usage = `gatehouse — offline-first access control and visitor management

Usage:
  gatehouse <command> [flags]

Commands:
  edge      run an edge node of a site (Raft member, device gateway, local API)
  cloud     run the cloud hub (console, APIs)
  demo      run the whole system on this machine: hub + a 3-node site
  ctl       operate a running site: "gatehouse ctl site status"
  sim       simulated devices and scenarios
  bench     run benchmarks: "gatehouse bench floors", "gatehouse bench all --quick"
  version   print the version

Run "gatehouse <command> --help" for a command's flags.
`

// Run runs the binary's command line and returns the exit code: 0 on
// success, 1 on failure, 2 on a usage error.
func Run(ctx context.Context, args []string, e env) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(e.stdout, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "version" {
		fmt.Fprintln(e.stdout, "gatehouse", Version)
		return 0
	}
	cmd, ok := newCommand(args[0], e)
	if !ok {
		fmt.Fprintf(e.stderr, "gatehouse: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err := cmd.ParseFlags(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(e.stderr, "gatehouse %s: %v\n", args[0], err)
		return 2
	}
	err := cmd.Run(ctx)
	if cerr := cmd.Close(); err == nil {
		err = cerr
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(e.stderr, "gatehouse %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Run(ctx, os.Args[1:], env{stdout: os.Stdout, stderr: os.Stderr})
	stop()
	os.Exit(code)
}

// newLogger returns the process logger: text to w at the named level.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

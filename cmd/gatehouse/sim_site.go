package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/sim/site"
)

// SimSiteConfig is the configuration of `gatehouse sim site`.
type SimSiteConfig struct {
	// File is the site file (docs/sim-site.md).
	File string `json:"file"`
	// MQTTListen is where the site's MQTT broker listens.
	MQTTListen string `json:"mqtt_listen"`
	// CANListen is where the CAN stream-bridge hub listens ("" for none).
	CANListen string `json:"can_listen"`
	// Duration ends the run after this long (0: at SIGINT or "quit").
	Duration textDuration `json:"duration"`
	// Stdin reads operator commands from standard input.
	Stdin bool `json:"stdin"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `json:"log_level"`
}

// SimSiteMain runs a simulated site that a real device is tested against:
//
//	gatehouse sim site --file site.txt --mqtt-listen 127.0.0.1:1883 [--can-listen 127.0.0.1:2000] [--duration 60s]
//
// It prints a timeline and, at the end (SIGINT, "quit" or --duration), a
// summary per device; it exits 0 only if no device broke a rule. See
// docs/sim-site.md.
type SimSiteMain struct {
	env
	Config SimSiteConfig
	// In is where operator commands come from (os.Stdin when nil).
	In io.Reader
}

const simSiteHelp = "simulate a SITE for a real device to be tested against: an MQTT broker (and CAN hub) that answers taps, pushes caches, acks events and reports every protocol violation; exit 0 only if there was none"

func defaultSimSiteConfig() SimSiteConfig {
	return SimSiteConfig{MQTTListen: "127.0.0.1:1883", Stdin: true, LogLevel: "warn"}
}

func bindSimSite(fs *flag.FlagSet, c *SimSiteConfig) {
	fs.StringVar(&c.File, "file", c.File, "the site `file`: site, doors, devices and secrets, cards, caches, script (docs/sim-site.md; required)")
	fs.StringVar(&c.MQTTListen, "mqtt-listen", c.MQTTListen, "host:port of the site's MQTT broker that devices connect to (empty: no MQTT)")
	fs.StringVar(&c.CANListen, "can-listen", c.CANListen, "host:port of the CAN stream-bridge hub that CAN door controllers connect to (empty: no CAN)")
	fs.Var(&c.Duration, "duration", "end the run after this `duration` (default: run until SIGINT or \"quit\")")
	fs.BoolVar(&c.Stdin, "stdin", c.Stdin, "read operator commands from standard input (\"unlock door lobby for 3s\", \"push cache\", \"quit\")")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level of diagnostics on stderr: debug, info, warn, error")
}

// ParseFlags reads the flags (and an optional --config file).
func (m *SimSiteMain) ParseFlags(args []string) error {
	m.Config = defaultSimSiteConfig()
	rest, err := parseConfig("sim site", args, m.stderr, &m.Config, func(fs *flag.FlagSet, c *SimSiteConfig) {
		bindSimSite(fs, c)
		fs.Usage = func() {
			fmt.Fprintf(fs.Output(), "Usage: gatehouse sim site --file FILE [flags]\n\n%s.\n\nFlags:\n", simSiteHelp)
			fs.PrintDefaults()
		}
	})
	if err != nil {
		return err
	}
	c := &m.Config
	switch {
	case len(rest) > 0:
		return fmt.Errorf("%w: sim site takes no arguments (name the file with --file), got %q", errUsage, rest)
	case c.File == "":
		return fmt.Errorf("%w: --file is required", errUsage)
	case c.MQTTListen == "" && c.CANListen == "":
		return fmt.Errorf("%w: give --mqtt-listen, --can-listen or both", errUsage)
	case c.Duration < 0:
		return fmt.Errorf("%w: --duration must not be negative", errUsage)
	}
	if _, err := newLogger(m.stderr, c.LogLevel); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}

// Run runs the site until ctx ends, --duration passes or "quit" is read,
// then prints the summary. It returns an error when the file is wrong, a
// listener cannot be opened, or any device broke a rule.
func (m *SimSiteMain) Run(ctx context.Context) error {
	b, err := os.ReadFile(m.Config.File)
	if err == nil && len(b) > site.MaxFileSize {
		err = fmt.Errorf("larger than %d bytes", site.MaxFileSize)
	}
	if err != nil {
		return fmt.Errorf("site file %s: %w", m.Config.File, err)
	}
	f, err := site.Parse(m.Config.File, b)
	if err != nil {
		fmt.Fprintln(m.stdout, err)
		return errors.New("the site file has errors")
	}
	log, err := newLogger(m.stderr, m.Config.LogLevel)
	if err != nil {
		return err
	}
	s, err := site.New(site.Config{File: f, MQTTListen: m.Config.MQTTListen, CANListen: m.Config.CANListen, Out: m.stdout, Log: log})
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if d := time.Duration(m.Config.Duration); d > 0 {
		runCtx, cancel = context.WithTimeout(runCtx, d)
		defer cancel()
	}
	if err := s.Open(runCtx); err != nil {
		s.Close()
		return err
	}
	m.printDevices(f, s)
	if m.Config.Stdin {
		in := m.In
		if in == nil {
			in = os.Stdin
		}
		go m.operator(runCtx, cancel, f, s, in)
	}
	<-runCtx.Done()
	s.Close()
	r := s.Report()
	fmt.Fprintln(m.stdout)
	if err := r.WriteSummary(m.stdout); err != nil {
		return err
	}
	if !r.OK() {
		return fmt.Errorf("%d protocol violations", len(r.Violations))
	}
	return nil
}

// printDevices tells the vendor how each device connects.
func (m *SimSiteMain) printDevices(f *site.File, s *site.Site) {
	fmt.Fprintf(m.stdout, "\nsite %s: devices\n", f.Site)
	for _, d := range f.Devices {
		dev := d.Dev(f.Site)
		if d.CAN != 0 {
			fmt.Fprintf(m.stdout, "  %-10s %-16s CAN address %s on the hub at %s (gateway 00)\n", d.Kind, d.ID, d.CAN, s.CANAddr())
			continue
		}
		subs, _ := dev.Subscriptions()
		fmt.Fprintf(m.stdout, "  %-10s %-16s mqtt://%s user and client ID %s, password from the site file; subscribe %s\n",
			d.Kind, d.ID, s.MQTTAddr(), dev.Username(), strings.Join(subs, " "))
	}
	fmt.Fprintln(m.stdout)
}

// operator runs the commands typed on in until it ends or "quit".
func (m *SimSiteMain) operator(ctx context.Context, stop context.CancelFunc, f *site.File, s *site.Site, in io.Reader) {
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		if ctx.Err() != nil {
			return
		}
		line := strings.TrimSpace(sc.Text())
		switch line {
		case "":
			continue
		case "quit", "exit":
			stop()
			return
		}
		c, err := site.ParseCommand(f, line)
		if err == nil {
			err = s.Do(c)
		}
		if err != nil {
			fmt.Fprintf(m.stdout, "command %q: %v\n", line, err)
		}
	}
}

// Close does nothing: Run closes the site before it returns.
func (m *SimSiteMain) Close() error { return nil }

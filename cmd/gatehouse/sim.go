package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/hardware/mqttproto"
	"github.com/gatehouse/gatehouse/sim/runner"
	"github.com/gatehouse/gatehouse/sim/scenario"
)

// SimConfig is the configuration of `gatehouse sim` (a --config file holds
// the same fields, so that a site's connection details can be kept).
type SimConfig struct {
	// Node is the base URL of any edge node's local API of the site.
	Node string `json:"node"`
	// APIToken is the site's local API token.
	APIToken string `json:"api_token"`
	// MQTT are the site's MQTT broker addresses.
	MQTT brokerList `json:"mqtt"`
	// MQTTCA is a PEM file of the CA that signed the brokers'
	// certificates; setting it makes host:port brokers use TLS.
	MQTTCA string `json:"mqtt_ca"`
	// DecisionTimeout is how long a tap waits for its decision.
	DecisionTimeout textDuration `json:"decision_timeout"`
	// ChangeTimeout bounds each change to the site.
	ChangeTimeout textDuration `json:"change_timeout"`
	// Keep leaves what a run made at the site.
	Keep bool `json:"keep"`
	// Heartbeat is the site's heartbeat interval to door controllers.
	Heartbeat textDuration `json:"heartbeat"`
	// StateDir is where simulated door controllers keep their storage.
	StateDir string `json:"state_dir"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `json:"log_level"`
	// Load configures `sim load`.
	Load SimLoadConfig `json:"load"`
}

// SimLoadConfig is the configuration of `gatehouse sim load`.
type SimLoadConfig struct {
	Readers  int          `json:"readers"`
	Rate     float64      `json:"rate"`
	Duration textDuration `json:"duration"`
	Unknown  float64      `json:"unknown"`
	Interval textDuration `json:"interval"`
}

// SimMain runs the field engineers' simulator:
//
//	gatehouse sim run FILE... --node URL --api-token T --mqtt ADDR[,ADDR]
//	gatehouse sim load FILE --readers N --rate R --duration D --node URL --api-token T --mqtt ADDR[,ADDR]
//	gatehouse sim check FILE...
//
// run exits 0 only when every step of every scenario passed; check only
// parses. See docs/sim.md.
type SimMain struct {
	env
	Config SimConfig
	Verb   string
	Files  []string
	acs    *SimACSMain // set for "sim acs" (sim_acs.go)

	site *SimSiteMain // set for "sim site" (sim_site.go)
}

// simVerbs describes the verbs, in the order --help lists them.
var simVerbs = []struct{ name, args, help string }{
	{"run", "FILE...", "run scenarios against a site: apply each one's setup, connect its readers, run its steps on its clock, print a timeline and a summary; exit 0 only if every expectation held"},
	{"load", "FILE", "tap a scenario's cards at N new readers at R taps/s in total for D (open loop), printing rates and latency percentiles every second"},
	{"check", "FILE...", "parse scenarios and report every error, without touching a site"},
	{"acs", "", "simulate a third-party access-control system's API (--style gallagher|netbox); see \"sim acs --help\""},
	{"site", "", simSiteHelp + "; see \"sim site --help\""},
}

// bindSim registers the flags of verb on fs.
func bindSim(verb string) func(fs *flag.FlagSet, c *SimConfig) {
	return func(fs *flag.FlagSet, c *SimConfig) {
		if verb == "check" {
			return
		}
		fs.StringVar(&c.Node, "node", c.Node, "base URL of any edge node's local API of the site")
		fs.StringVar(&c.APIToken, "api-token", c.APIToken, "the site's local API token (or GATEHOUSE_API_TOKEN)")
		fs.Var(&c.MQTT, "mqtt", "the site's MQTT broker `addresses`, comma-separated (host:port or tcp://, tls://...); readers are spread over them round-robin (required)")
		fs.StringVar(&c.MQTTCA, "mqtt-ca", c.MQTTCA, "PEM file of the CA of the brokers' TLS certificates; host:port brokers then use TLS")
		fs.Var(&c.DecisionTimeout, "decision-timeout", "the `duration` a tap waits for its decision (a real device waits 1s)")
		fs.Var(&c.ChangeTimeout, "change-timeout", "the `duration` a change may take to be acknowledged and applied at every node")
		fs.BoolVar(&c.Keep, "keep", c.Keep, "leave the readers and people the run made at the site (default: remove them, freeing their cards)")
		fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level of diagnostics on stderr: debug, info, warn, error")
		if verb == "run" {
			fs.Var(&c.Heartbeat, "heartbeat", "the site's heartbeat interval to door controllers, a `duration` (default 10s); a controller is cut off after 3 without a word")
			fs.StringVar(&c.StateDir, "state-dir", c.StateDir, "`directory` where simulated door controllers keep their storage (default: a temporary one per run)")
		}
		if verb == "load" {
			l := &c.Load
			fs.IntVar(&l.Readers, "readers", l.Readers, fmt.Sprintf("number of simulated readers, spread over the scenario's doors (1 to %d)", runner.MaxLoadReaders))
			fs.Float64Var(&l.Rate, "rate", l.Rate, "taps per second of all readers together")
			fs.Var(&l.Duration, "duration", "the `duration` to send taps for")
			fs.Float64Var(&l.Unknown, "unknown", l.Unknown, "share of taps with card numbers the site does not know, 0 to 1")
			fs.Var(&l.Interval, "interval", "the `duration` between two live lines")
		}
	}
}

// simUsage prints the overview and every verb's flags.
func simUsage(w io.Writer) {
	fmt.Fprint(w, "Usage: gatehouse sim <verb> [flags] FILE...\n\nSimulated devices and scenarios against a real site (docs/sim.md).\n\nVerbs:\n")
	for _, v := range simVerbs {
		fmt.Fprintf(w, "  %-6s %-8s %s\n", v.name, v.args, v.help)
	}
	for _, v := range []string{"run", "load"} {
		fmt.Fprintf(w, "\nFlags of %s:\n", v)
		fs := flag.NewFlagSet("gatehouse sim "+v, flag.ContinueOnError)
		fs.SetOutput(w)
		var path string
		fs.StringVar(&path, "config", "", "JSON configuration file; flags given on the command line override it")
		c := defaultSimConfig()
		bindSim(v)(fs, &c)
		fs.PrintDefaults()
	}
	fmt.Fprint(w, "\nExample:\n  gatehouse sim run sim/scenarios/*.scn --node http://127.0.0.1:7001 --mqtt 127.0.0.1:1883,127.0.0.1:1884\n")
}

func defaultSimConfig() SimConfig {
	return SimConfig{
		Node:            "http://127.0.0.1:7001",
		DecisionTimeout: textDuration(mqttproto.DecisionTimeout),
		ChangeTimeout:   textDuration(runner.DefaultChangeTimeout),
		LogLevel:        "warn",
		Load:            SimLoadConfig{Readers: 10, Rate: 50, Duration: textDuration(10 * time.Second), Unknown: runner.DefaultUnknown, Interval: textDuration(time.Second)},
	}
}

// ParseFlags reads the verb, the scenario files and the flags.
func (m *SimMain) ParseFlags(args []string) error {
	if len(args) == 0 {
		simUsage(m.stderr)
		return fmt.Errorf("%w: name a verb: run, load or check", errUsage)
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		simUsage(m.stdout)
		return flag.ErrHelp
	case "run", "load", "check":
	case "acs":
		m.Verb, m.acs = "acs", &SimACSMain{env: m.env}
		return m.acs.ParseFlags(args[1:])
	case "site":
		m.Verb, m.site = "site", &SimSiteMain{env: m.env}
		return m.site.ParseFlags(args[1:])
	default:
		simUsage(m.stderr)
		return fmt.Errorf("%w: unknown verb %q (want run, load or check)", errUsage, args[0])
	}
	m.Verb = args[0]
	m.Config = defaultSimConfig()
	files, err := parseConfig("sim "+m.Verb, args[1:], m.stderr, &m.Config, func(fs *flag.FlagSet, c *SimConfig) {
		bindSim(m.Verb)(fs, c)
		fs.Usage = func() {
			for _, v := range simVerbs {
				if v.name == m.Verb {
					fmt.Fprintf(fs.Output(), "Usage: gatehouse sim %s [flags] %s\n\n%s.\n\nFlags:\n", v.name, v.args, v.help)
				}
			}
			fs.PrintDefaults()
		}
	})
	if err != nil {
		return err
	}
	m.Files = files
	c := &m.Config
	if c.APIToken == "" {
		// Read after parsing so that --help never prints the secret.
		c.APIToken = os.Getenv("GATEHOUSE_API_TOKEN")
	}
	switch {
	case len(files) == 0:
		return fmt.Errorf("%w: name a scenario file (sim %s FILE)", errUsage, m.Verb)
	case m.Verb == "load" && len(files) != 1:
		return fmt.Errorf("%w: load takes one scenario file, not %d", errUsage, len(files))
	case m.Verb == "check":
		return nil
	case c.Node == "":
		return fmt.Errorf("%w: --node is required", errUsage)
	case c.APIToken == "":
		return fmt.Errorf("%w: --api-token (or GATEHOUSE_API_TOKEN) is required", errUsage)
	case len(c.MQTT) == 0:
		return fmt.Errorf("%w: --mqtt is required: the site's broker addresses, e.g. --mqtt 127.0.0.1:1883,127.0.0.1:1884", errUsage)
	case c.DecisionTimeout <= 0 || c.ChangeTimeout <= 0:
		return fmt.Errorf("%w: --decision-timeout and --change-timeout must be positive", errUsage)
	}
	if _, err := m.runnerConfig(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if m.Verb == "load" {
		if err := m.loadConfig().Validate(); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
	}
	if _, err := newLogger(m.stderr, c.LogLevel); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}

// runnerConfig returns the runner's configuration (without outputs).
func (m *SimMain) runnerConfig() (runner.Config, error) {
	c := m.Config
	rc := runner.Config{
		Node: c.Node, APIToken: c.APIToken, Brokers: c.MQTT,
		DecisionTimeout: time.Duration(c.DecisionTimeout), ChangeTimeout: time.Duration(c.ChangeTimeout), Keep: c.Keep,
		Heartbeat: time.Duration(c.Heartbeat), StateDir: c.StateDir,
	}
	if c.MQTTCA != "" {
		pem, err := os.ReadFile(c.MQTTCA)
		if err != nil {
			return rc, fmt.Errorf("--mqtt-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return rc, fmt.Errorf("--mqtt-ca %s: no PEM certificate in it", c.MQTTCA)
		}
		rc.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return rc, rc.Validate()
}

func (m *SimMain) loadConfig() runner.LoadConfig {
	l := m.Config.Load
	unknown := l.Unknown
	if unknown == 0 {
		unknown = -1 // LoadConfig reads 0 as "the default"; the flag's 0 means none
	}
	return runner.LoadConfig{Readers: l.Readers, Rate: l.Rate, Duration: time.Duration(l.Duration), Unknown: unknown, Interval: time.Duration(l.Interval)}
}

// maxScenarioFile bounds a scenario file's size.
const maxScenarioFile = 1 << 20

// parseFiles parses the scenario files, printing every error to w. It
// returns the scenarios, or an error when any file is unreadable or wrong.
func parseFiles(w io.Writer, files []string) ([]*scenario.Scenario, error) {
	var (
		out []*scenario.Scenario
		bad int
	)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && len(b) > maxScenarioFile {
			err = fmt.Errorf("larger than %d bytes", maxScenarioFile)
		}
		if err != nil {
			fmt.Fprintf(w, "%s: %v\n", f, err)
			bad++
			continue
		}
		s, err := scenario.Parse(filepath.Base(f), b)
		if err != nil {
			fmt.Fprintln(w, strings.ReplaceAll(err.Error(), filepath.Base(f)+":", f+":"))
			bad++
			continue
		}
		out = append(out, s)
	}
	if bad > 0 {
		return nil, fmt.Errorf("%d of %d scenario files have errors", bad, len(files))
	}
	return out, nil
}

// Run runs the verb.
func (m *SimMain) Run(ctx context.Context) error {
	if m.acs != nil {
		return m.acs.Run(ctx)
	}
	if m.site != nil {
		return m.site.Run(ctx)
	}
	if m.Verb == "check" {
		scns, err := parseFiles(m.stdout, m.Files)
		for _, s := range scns {
			fmt.Fprintf(m.stdout, "%s: ok: %d steps (%d checks) over %s, %d readers, %d door controllers\n",
				s.Name, len(s.Steps), s.Checks(), s.Span(), len(s.Readers), len(s.Controllers))
		}
		return err
	}
	scns, err := parseFiles(m.stdout, m.Files)
	if err != nil {
		return err
	}
	log, err := newLogger(m.stderr, m.Config.LogLevel)
	if err != nil {
		return err
	}
	rc, err := m.runnerConfig()
	if err != nil {
		return err
	}
	rc.Out, rc.Log = m.stdout, log
	r, err := runner.New(rc)
	if err != nil {
		return err
	}
	if m.Verb == "load" {
		rep, err := r.Load(ctx, scns[0], m.loadConfig())
		switch {
		case ctx.Err() != nil:
			return errors.New("load interrupted")
		case err != nil:
			return err
		case !rep.OK():
			return fmt.Errorf("%d of %d taps were not decided in time", rep.Sent-rep.Decided+rep.Skipped, rep.Sent+rep.Skipped)
		}
		return nil
	}
	var (
		reports []*runner.Report
		notRun  []string
	)
	for _, s := range scns {
		rep, err := r.Run(ctx, s)
		if rep != nil {
			reports = append(reports, rep)
		}
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			fmt.Fprintf(m.stdout, "\n%v\n", err)
			notRun = append(notRun, s.Name)
		}
	}
	fmt.Fprintln(m.stdout)
	if len(reports) > 0 {
		if err := runner.WriteSummary(m.stdout, reports); err != nil {
			return err
		}
	}
	failed, steps, want := 0, 0, 0
	for _, rep := range reports {
		failed, steps = failed+rep.Failed(), steps+len(rep.Steps)
	}
	for _, s := range scns {
		want += len(s.Steps)
	}
	switch {
	case ctx.Err() != nil:
		// Not context.Canceled: an interrupted run must not exit 0.
		return fmt.Errorf("interrupted after %d of %d steps", steps, want)
	case len(notRun) > 0:
		return fmt.Errorf("%d of %d scenarios could not run: %s", len(notRun), len(scns), strings.Join(notRun, ", "))
	case failed > 0:
		return fmt.Errorf("%d of %d steps failed", failed, steps)
	}
	return nil
}

// Close does nothing: Run removes what it made before it returns.
func (m *SimMain) Close() error { return nil }

// brokerList is a comma-separated flag of broker addresses (a JSON array in
// a config file).
type brokerList []string

// String returns the list comma-separated.
func (b *brokerList) String() string { return strings.Join(*b, ",") }

// Set replaces the list with the comma-separated addresses in s.
func (b *brokerList) Set(s string) error {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return errors.New("no broker address")
	}
	*b = out
	return nil
}

// textDuration is a time.Duration written as text ("1s", "500ms") in flags
// and JSON.
type textDuration time.Duration

// String returns d as time.Duration does.
func (d *textDuration) String() string { return time.Duration(*d).String() }

// Set parses a duration such as 1s or 500ms.
func (d *textDuration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as 500ms or 2s, not %q", s)
	}
	*d = textDuration(v)
	return nil
}

// UnmarshalText parses a duration such as 1s or 500ms.
func (d *textDuration) UnmarshalText(b []byte) error { return d.Set(string(b)) }

// MarshalText returns d as time.Duration's String does.
func (d textDuration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

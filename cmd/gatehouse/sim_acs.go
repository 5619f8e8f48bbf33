package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/sim/acs"
	"github.com/gatehouse/gatehouse/sim/acs/hateoas"
	"github.com/gatehouse/gatehouse/sim/acs/xmlcmd"
)

// SimACSConfig is the configuration of `gatehouse sim acs` (a --config
// file holds the same fields).
type SimACSConfig struct {
	// Style is gallagher (JSON REST with links) or netbox (XML commands).
	Style string `json:"style"`
	// Listen is the address to serve on.
	Listen string `json:"listen"`
	// Seed makes IDs, keys and fault rolls repeatable.
	Seed int64 `json:"seed"`
	// Faults is a fault list such as "drop=0.1,throttle=0.05,operator=10s".
	Faults string `json:"faults"`
	// State is a JSON file the state is loaded from and saved to.
	State string `json:"state"`
	// People is how many synthetic cardholders a new state starts with.
	People int `json:"people"`
	// APIKey is the gallagher-style API key (default: derived from the seed).
	APIKey string `json:"api_key"`
	// Password is the netbox-style password of user admin (default: derived from the seed).
	Password string `json:"password"`
	// LongPoll is how long a gallagher-style events/updates waits.
	LongPoll textDuration `json:"long_poll"`
	// SessionIdle is how long a netbox-style session lives unused.
	SessionIdle textDuration `json:"session_idle"`
	// TimeZone is the netbox-style site's zone (an IANA name).
	TimeZone string `json:"time_zone"`
	// EventLog is how many records the netbox-style access history holds.
	EventLog int `json:"event_log"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `json:"log_level"`
}

// SimACSMain runs a simulated third-party access-control system:
//
//	gatehouse sim acs --style gallagher|netbox --listen 127.0.0.1:PORT [--seed N] [--faults LIST]
//
// It prints the URL and credentials and serves until interrupted.
type SimACSMain struct {
	env
	Config SimACSConfig
	faults acs.FaultConfig
	loc    *time.Location
}

func defaultSimACSConfig() SimACSConfig {
	return SimACSConfig{
		Style: "gallagher", Listen: "127.0.0.1:8470", Seed: 1, People: 20,
		LongPoll: textDuration(hateoas.DefaultLongPoll), SessionIdle: textDuration(30 * time.Minute),
		TimeZone: "America/New_York", EventLog: 1000, LogLevel: "info",
	}
}

func bindSimACS(fs *flag.FlagSet, c *SimACSConfig) {
	fs.StringVar(&c.Style, "style", c.Style, "API shape to simulate: gallagher (JSON REST followed by links, long-polled events) or netbox (XML commands, sessions, result codes in the body)")
	fs.StringVar(&c.Listen, "listen", c.Listen, "host:port to serve on (port 0 picks a free one)")
	fs.Int64Var(&c.Seed, "seed", c.Seed, "seed of IDs, keys, synthetic data and fault rolls; the same seed repeats a run")
	fs.StringVar(&c.Faults, "faults", c.Faults, "faults to inject, e.g. drop=0.1,drop-mode=502,throttle=0.05,auth-fail=0.01,operator=10s,skew=-90s (changeable at runtime: PUT /_sim/faults)")
	fs.StringVar(&c.State, "state", c.State, "JSON file to load the state from and save it to after every change (default: memory only)")
	fs.IntVar(&c.People, "people", c.People, "synthetic cardholders a new state starts with")
	fs.StringVar(&c.APIKey, "api-key", c.APIKey, "gallagher style: the API key clients send as \"Authorization: GGL-API-KEY <key>\" (default: derived from the seed)")
	fs.StringVar(&c.Password, "password", c.Password, "netbox style: the password of user admin (default: derived from the seed)")
	fs.Var(&c.LongPoll, "long-poll", "gallagher style: the `duration` events/updates waits for an event before answering an empty page")
	fs.Var(&c.SessionIdle, "session-idle", "netbox style: the `duration` a session lives unused")
	fs.StringVar(&c.TimeZone, "tz", c.TimeZone, "netbox style: the site's time zone (IANA name); dates are its local time with no offset")
	fs.IntVar(&c.EventLog, "event-log", c.EventLog, "netbox style: how many records the access-history ring holds before it overwrites the oldest")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level of diagnostics on stderr: debug, info, warn, error")
}

// ParseFlags reads the configuration and checks it.
func (m *SimACSMain) ParseFlags(args []string) error {
	m.Config = defaultSimACSConfig()
	rest, err := parseConfig("sim acs", args, m.stderr, &m.Config, func(fs *flag.FlagSet, c *SimACSConfig) {
		bindSimACS(fs, c)
		fs.Usage = func() {
			fmt.Fprint(fs.Output(), "Usage: gatehouse sim acs --style gallagher|netbox [flags]\n\nSimulate a third-party access-control system's integration API, with injected faults (docs/sim.md).\n\nFlags:\n")
			fs.PrintDefaults()
		}
	})
	if err != nil {
		return err
	}
	c := &m.Config
	switch {
	case len(rest) > 0:
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, rest)
	case c.Style != "gallagher" && c.Style != "netbox":
		return fmt.Errorf("%w: --style %q: want gallagher or netbox", errUsage, c.Style)
	case c.People < 0 || c.People > 100000:
		return fmt.Errorf("%w: --people must be from 0 to 100000", errUsage)
	case c.LongPoll <= 0 || c.SessionIdle <= 0:
		return fmt.Errorf("%w: --long-poll and --session-idle must be positive", errUsage)
	case c.EventLog < 1:
		return fmt.Errorf("%w: --event-log must be at least 1", errUsage)
	}
	if m.faults, err = acs.ParseFaults(c.Faults); err != nil {
		return fmt.Errorf("%w: --faults: %v", errUsage, err)
	}
	if m.loc, err = time.LoadLocation(c.TimeZone); err != nil {
		return fmt.Errorf("%w: --tz: %v", errUsage, err)
	}
	if _, err := newLogger(m.stderr, c.LogLevel); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}

// Run serves the simulator until ctx is done.
func (m *SimACSMain) Run(ctx context.Context) error {
	c := m.Config
	log, err := newLogger(m.stderr, c.LogLevel)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	url := "http://" + ln.Addr().String()
	var (
		h     http.Handler
		close func() error
	)
	switch c.Style {
	case "gallagher":
		s, err := hateoas.New(hateoas.Config{Seed: c.Seed, APIKey: c.APIKey, Faults: m.faults, StatePath: c.State,
			Cardholders: c.People, LongPoll: time.Duration(c.LongPoll), Log: log})
		if err != nil {
			return err
		}
		h, close = s, s.Close
		fmt.Fprintf(m.stdout, "gallagher-style ACS simulator\n  API root:  %s/api  (follow its links)\n  header:    Authorization: %s\n", url, s.AuthHeader())
	case "netbox":
		s, err := xmlcmd.New(xmlcmd.Config{Seed: c.Seed, Password: c.Password, Faults: m.faults, StatePath: c.State,
			People: c.People, SessionIdle: time.Duration(c.SessionIdle), Location: m.loc, EventLog: c.EventLog, Log: log})
		if err != nil {
			return err
		}
		user, pw := s.Credentials()
		h, close = s, s.Close
		fmt.Fprintf(m.stdout, "netbox-style ACS simulator\n  endpoint:  POST %s%s  (form field APIcommand)\n  login:     %s / %s\n  time zone: %s\n", url, xmlcmd.Path, user, pw, m.loc)
	}
	fmt.Fprintf(m.stdout, "  admin:     %s%sfaults  (GET, PUT; POST %sexpire, %soperator, %sevents?n=N)\n  faults:    %s\n",
		url, acs.AdminPrefix, acs.AdminPrefix, acs.AdminPrefix, acs.AdminPrefix, orNone(m.faults.String()))
	serr := acs.Serve(ctx, ln, h)
	if cerr := close(); serr == nil {
		serr = cerr
	}
	return serr
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// Close does nothing: Run stops the server before it returns.
func (m *SimACSMain) Close() error { return nil }

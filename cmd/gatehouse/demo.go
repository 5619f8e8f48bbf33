package main

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/cloud/auth"
	"github.com/gatehouse/gatehouse/cloud/hub"
	"github.com/gatehouse/gatehouse/cloud/mail"
	"github.com/gatehouse/gatehouse/edge/node"
	"github.com/gatehouse/gatehouse/sim/runner"
	"github.com/gatehouse/gatehouse/sim/scenario"
)

// demoSiteID is the demo site's fixed ID, so a kept data directory is the
// same site on the next run.
const demoSiteID = "01JDEM0S1TE000000000000000"

// DemoConfig is the configuration of `gatehouse demo`.
type DemoConfig struct {
	// HTTPAddr is where the hub serves the console (plain HTTP, for the
	// browser).
	HTTPAddr string `json:"http_addr"`
	// SyncAddr is where the hub takes its sites' link: TLS 1.3 with the
	// site's client certificate (mutual TLS). Empty means the host of
	// HTTPAddr and port 8443, or a free port when HTTPAddr's port is 0.
	SyncAddr string `json:"sync_addr"`
	// DataDir keeps the site's state between runs; empty means a fresh
	// temporary directory removed on exit.
	DataDir string `json:"data_dir"`
	// Nodes is the number of edge nodes of the demo site (1, 3 or 5).
	Nodes int `json:"nodes"`
	// TapRate is how many taps per second the simulated readers make.
	TapRate float64 `json:"tap_rate"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `json:"log_level"`
}

// DemoMain runs the whole system on this machine: a hub and a site of
// Nodes edge nodes, all on loopback, with a small site configured. The
// site's link to the hub is mutual TLS with the demo's own CA
// (demo_link.go); the console stays plain HTTP for the browser.
type DemoMain struct {
	env
	Config DemoConfig
	// ready, if set, is called with the console URL once everything serves
	// (tests use it instead of reading stdout).
	ready func(consoleURL string, nodes []*node.Node)

	hub      *hub.Hub
	link     *demoLink
	mail     *mail.Catcher
	nodes    []*node.Node
	tempDir  string
	apiToken string
	simStop  context.CancelFunc
	simDone  chan error
	// visitors drives the lobby kiosk, its dispenser and readers for the
	// user (demo_visitors.go).
	visitors *demoVisitors
}

// ParseFlags reads the demo configuration.
func (m *DemoMain) ParseFlags(args []string) error {
	m.Config = DemoConfig{HTTPAddr: "127.0.0.1:8080", Nodes: 3, TapRate: 2, LogLevel: "warn"}
	rest, err := parseConfig("demo", args, m.stderr, &m.Config, func(fs *flag.FlagSet, c *DemoConfig) {
		fs.StringVar(&c.HTTPAddr, "http", c.HTTPAddr, "address of the console and hub APIs (plain HTTP, for the browser)")
		fs.StringVar(&c.SyncAddr, "sync", c.SyncAddr, "address of the hub's mutual-TLS listener for the site's link (default: the --http host, port "+demoSyncPort+"; a free port when --http's port is 0)")
		fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "keep the site's state here between runs (default: a temporary directory removed on exit)")
		fs.IntVar(&c.Nodes, "nodes", c.Nodes, "number of edge nodes in the demo site: 1, 3 or 5")
		fs.Float64Var(&c.TapRate, "tap-rate", c.TapRate, "taps per second the simulated readers make")
		fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn, error")
	})
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("%w: unexpected arguments %v", errUsage, rest)
	}
	if !(m.Config.TapRate > 0) || m.Config.TapRate > 1000 {
		return fmt.Errorf("%w: --tap-rate must be above 0 and at most 1000", errUsage)
	}
	if m.Config.Nodes != 1 && m.Config.Nodes != 3 && m.Config.Nodes != 5 {
		return fmt.Errorf("%w: --nodes must be 1, 3 or 5, not %d", errUsage, m.Config.Nodes)
	}
	return nil
}

// Run starts the site and the hub, prints the console URL and serves until
// ctx is done.
func (m *DemoMain) Run(ctx context.Context) error {
	log, err := newLogger(m.stderr, m.Config.LogLevel)
	if err != nil {
		return err
	}
	dir := m.Config.DataDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "gatehouse-demo-*"); err != nil {
			return err
		}
		m.tempDir = dir
	}
	token := make([]byte, 16)
	_, _ = rand.Read(token)
	// The token only has to be shared by this process's nodes; a kept data
	// dir needs none of it, since membership lives in the Raft state.
	clusterToken := hex.EncodeToString(token)
	_, _ = rand.Read(token)
	m.apiToken = hex.EncodeToString(token)

	// The site replicates with the hub: the nodes' uplink (run by the Raft
	// leader) dials the hub's TLS listener with the site's client
	// certificate, so the addresses are fixed before the nodes start.
	hubAddr, err := resolveListenAddr("--http", m.Config.HTTPAddr)
	if err != nil {
		return err
	}
	syncAddr := m.Config.SyncAddr
	if syncAddr == "" {
		host, port, _ := net.SplitHostPort(hubAddr)
		if _, p, _ := net.SplitHostPort(m.Config.HTTPAddr); p != "0" {
			port = demoSyncPort
		} else {
			port = "0"
		}
		syncAddr = net.JoinHostPort(host, port)
	}
	if syncAddr, err = resolveListenAddr("--sync", syncAddr); err != nil {
		return err
	}
	// The link's CA, the hub's certificate and the site's, made in the
	// data dir (or kept from an earlier run with it).
	if m.link, err = openDemoLink(dir, syncAddr, log.With("component", "demo-link")); err != nil {
		return err
	}

	var urls []string
	for i := range m.Config.Nodes {
		cfg := node.Config{
			NodeID:       fmt.Sprintf("node%d", i+1),
			SiteID:       demoSiteID,
			SiteName:     "Demo HQ",
			TimeZone:     "Europe/Berlin",
			DataDir:      filepath.Join(dir, fmt.Sprintf("node%d", i+1)),
			RaftAddr:     "127.0.0.1:0",
			APIAddr:      "127.0.0.1:0",
			ClusterToken: clusterToken,
			APIToken:     m.apiToken,
			Version:      Version,
			Uplink:       &node.UplinkConfig{HubURL: m.link.URL(), TLSDir: m.link.siteDir},
			Visits:       demoVisitsConfig(),
		}
		if i == 0 {
			cfg.Bootstrap = true
		} else {
			cfg.Join = urls[0]
		}
		if _, err := os.Stat(filepath.Join(cfg.DataDir, "raft.db")); err == nil {
			return errors.New("demo: --data-dir holds a site from an earlier run; the demo binds new ports each run, so start it with a fresh directory")
		}
		n := node.New(cfg, log)
		if err := n.Open(ctx); err != nil {
			return fmt.Errorf("demo: start %s: %w", cfg.NodeID, err)
		}
		m.nodes = append(m.nodes, n)
		urls = append(urls, n.URL())
	}

	hcfg := hub.DefaultConfig()
	hcfg.HTTPAddr = hubAddr
	hcfg.Version = Version
	// The site replicates with the hub, named by its certificate (no
	// token): listed for its pending revocations and divergences.
	hcfg.SyncSites = []hub.SyncSite{{ID: demoSiteID}}
	hcfg.Sites = []hub.SiteEndpoint{{ID: demoSiteID, Name: "Demo HQ", Nodes: urls, APIToken: m.apiToken}}
	// The demo's mail goes to an SMTP server on loopback that keeps it and
	// shows it at /mail: nothing leaves this machine.
	catcher, err := mail.StartCatcher("127.0.0.1:0", log.With("component", "mail-catcher"))
	if err != nil {
		return err
	}
	m.mail = catcher
	// The hub keeps its state (and the visitor service its token keys)
	// under the data dir, sends its mail to the catcher and admits one
	// admin API key, printed below for "gatehouse ctl visit".
	hcfg.Store.Dir = filepath.Join(dir, "hub", "store")
	hcfg.Mail = mail.Config{Addr: catcher.Addr(), From: "Gatehouse demo <visits@demo.gatehouse.test>", TLS: "none"}
	hubKey, err := auth.NewKey()
	if err != nil {
		return err
	}
	hcfg.APIKeys = []auth.Key{{ID: "demo-admin", SHA256: auth.HashKey(hubKey), Role: auth.Admin}}
	m.hub = hub.New(hcfg, log)
	// Sites reach the sync service (and the visitor service's site
	// endpoints) on the TLS listener only, named by their certificates;
	// the console stays plain HTTP on its own port for the browser.
	m.hub.ServeTLS(syncAddr, m.link.TLSConfig())
	m.hub.SetSyncAuthenticator(m.link.authenticate)
	m.hub.Handle("/demo/link", m.link)
	m.hub.Handle("/mail", catcher.Handler())
	m.hub.Handle("/mail/", catcher.Handler())
	m.visitors = &demoVisitors{log: log.With("component", "demo-visitors")}
	m.hub.Handle("/demo/", m.visitors.Handler())
	if err := m.hub.Open(ctx); err != nil {
		return err
	}
	fmt.Fprintf(m.stdout, "Gatehouse demo: hub, a %d-node site and simulated readers (%.3g taps/s) on this machine.\n\n", len(m.nodes), m.Config.TapRate)
	fmt.Fprintf(m.stdout, "  Console:     %s\n", m.hub.URL())
	fmt.Fprintf(m.stdout, "  Site link:   %s  (the sites' sync: TLS 1.3, HTTP/2, site certificate required; state at %sdemo/link)\n", m.link.URL(), m.hub.URL())
	fmt.Fprintf(m.stdout, "  Demo CA:     %s  (site files in %s; the console above is plain HTTP, for the browser)\n", m.link.CACert(), m.link.siteDir)
	fmt.Fprintf(m.stdout, "  Mail:        %smail  (SMTP catcher on %s)\n", m.hub.URL(), catcher.Addr())
	for i, u := range urls {
		fmt.Fprintf(m.stdout, "  Edge node %d: %s  (MQTT broker %s)\n", i+1, u, m.nodes[i].MQTTAddr())
	}
	fmt.Fprintf(m.stdout, "\n  Site status: gatehouse ctl site status --node %s\n  API token:   %s (bearer token of the sites' local API)\n  Data:        %s\n", urls[0], m.apiToken, dir)
	hubURL := strings.TrimSuffix(m.hub.URL(), "/")
	fmt.Fprintf(m.stdout, "  Hub API key: %s (admin)\n", hubKey)
	fmt.Fprintf(m.stdout, "  Sign in:     %s#key=%s  (opens the console with this key; the fragment never leaves the browser)\n", m.hub.URL(), hubKey)
	fmt.Fprintf(m.stdout, "  People:      gatehouse ctl people list --hub %s --api-key %s\n", hubURL, hubKey)
	if err := m.startDevices(ctx, urls, log); err != nil {
		return err
	}
	if err := m.visitors.setUp(ctx, m.nodes, m.hub.URL(), hubKey); err != nil {
		return err
	}
	fmt.Fprintf(m.stdout, `
  Follow one visit (docs/visitors.md "Try it in the demo"):
    export GATEHOUSE_API_KEY=%s
    1. invite:    gatehouse ctl visit invite --hub %s --site %s --host %s \
                    --type %s --profile %s --escort --guest "Anna Example <anna@example.com>"
    2. the email:  %s/mail (its text carries the GH1.… token its QR code encodes)
    3. check in:  curl -d token=GH1.… %s/demo/kiosk/checkin      (prints the card dispensed)
    4. tap:       curl -d door=floor-1 -d card=CARD %s/demo/tap   (denied: escort not picked up)
    5. pick up:   gatehouse ctl visit pickup VISIT --hub %s        (then floor-1 grants, floor-2 denies)
    6. check out: curl -d visit=VISIT %s/demo/kiosk/checkout
`, hubKey, hubURL, demoSiteID, m.visitors.hostID, demoTypeID, demoProfileID, hubURL, hubURL, hubURL, hubURL, hubURL)
	fmt.Fprintf(m.stdout, "\nPress Ctrl-C to stop.\n")
	if m.ready != nil {
		m.ready(m.hub.URL(), m.nodes)
	}
	<-ctx.Done()
	fmt.Fprintln(m.stdout, "\nStopping…")
	return nil
}

// demoBuilding is the simulated building: doors, groups and people.
//
//go:embed demo.scn
var demoBuilding []byte

// startDevices runs the simulator against the demo site: it sets up the
// building of demo.scn through the site's local API, commissions simulated
// readers spread over the nodes' brokers, and keeps a trickle of taps going
// until the demo stops.
func (m *DemoMain) startDevices(ctx context.Context, nodeURLs []string, log *slog.Logger) error {
	scn, err := scenario.Parse("demo.scn", demoBuilding)
	if err != nil {
		return fmt.Errorf("demo: the embedded building: %w", err)
	}
	var brokers []string
	for _, n := range m.nodes {
		brokers = append(brokers, n.MQTTAddr())
	}
	r, err := runner.New(runner.Config{Node: nodeURLs[0], APIToken: m.apiToken, Brokers: brokers, Log: log})
	if err != nil {
		return err
	}
	simCtx, cancel := context.WithCancel(ctx)
	m.simStop = cancel
	m.simDone = make(chan error, 1)
	go func() {
		_, err := r.Load(simCtx, scn, runner.LoadConfig{Readers: 8, Rate: m.Config.TapRate, Duration: 365 * 24 * time.Hour, Interval: time.Hour})
		if errors.Is(err, context.Canceled) {
			err = nil
		}
		m.simDone <- err
	}()
	return nil
}

// Close stops the hub, then the edge nodes (followers before the leader, so
// the site keeps a leader as long as possible), then removes a temporary
// data directory.
func (m *DemoMain) Close() error {
	var errs []error
	if m.simStop != nil {
		// The simulated devices first: they tap through the nodes.
		m.simStop()
		if err := <-m.simDone; err != nil {
			errs = append(errs, fmt.Errorf("demo: simulated devices: %w", err))
		}
		m.simStop = nil
	}
	if m.visitors != nil {
		errs = append(errs, m.visitors.Close())
	}
	if m.hub != nil {
		errs = append(errs, m.hub.Close())
	}
	if m.mail != nil {
		errs = append(errs, m.mail.Close())
	}
	for i := len(m.nodes) - 1; i >= 0; i-- {
		errs = append(errs, m.nodes[i].Close())
	}
	m.nodes = nil
	if m.tempDir != "" {
		errs = append(errs, os.RemoveAll(m.tempDir))
		m.tempDir = ""
	}
	return errors.Join(errs...)
}

// resolveListenAddr returns addr (given by the flag named) with a free
// port chosen when its port is 0, so that others can be told the address
// before the server listens.
func resolveListenAddr(name, addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("demo: %s %q: %w", name, addr, err)
	}
	if port != "0" {
		return addr, nil
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("demo: pick a port for %s: %w", name, err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/hub"
	"github.com/gatehouse/gatehouse/edge/node"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

// demoSiteID is the demo site's fixed ID, so a kept data directory is the
// same site on the next run.
const demoSiteID = "01JDEM0S1TE000000000000000"

// DemoConfig is the configuration of `gatehouse demo`.
type DemoConfig struct {
	// HTTPAddr is where the hub serves the console.
	HTTPAddr string `json:"http_addr"`
	// DataDir keeps the site's state between runs; empty means a fresh
	// temporary directory removed on exit.
	DataDir string `json:"data_dir"`
	// Nodes is the number of edge nodes of the demo site (1, 3 or 5).
	Nodes int `json:"nodes"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `json:"log_level"`
}

// DemoMain runs the whole system on this machine: a hub and a site of
// Nodes edge nodes, all on loopback, with a small site configured.
type DemoMain struct {
	env
	Config DemoConfig
	// ready, if set, is called with the console URL once everything serves
	// (tests use it instead of reading stdout).
	ready func(consoleURL string, nodes []*node.Node)

	hub      *hub.Hub
	nodes    []*node.Node
	tempDir  string
	apiToken string
}

// ParseFlags reads the demo configuration.
func (m *DemoMain) ParseFlags(args []string) error {
	m.Config = DemoConfig{HTTPAddr: "127.0.0.1:8080", Nodes: 3, LogLevel: "warn"}
	rest, err := parseConfig("demo", args, m.stderr, &m.Config, func(fs *flag.FlagSet, c *DemoConfig) {
		fs.StringVar(&c.HTTPAddr, "http", c.HTTPAddr, "address of the console and hub APIs")
		fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "keep the site's state here between runs (default: a temporary directory removed on exit)")
		fs.IntVar(&c.Nodes, "nodes", c.Nodes, "number of edge nodes in the demo site: 1, 3 or 5")
		fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn, error")
	})
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("%w: unexpected arguments %v", errUsage, rest)
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
	if err := seedDemoSite(ctx, m.nodes[0], log); err != nil {
		return fmt.Errorf("demo: configure the site: %w", err)
	}

	hcfg := hub.DefaultConfig()
	hcfg.HTTPAddr = m.Config.HTTPAddr
	hcfg.Version = Version
	hcfg.Sites = []hub.SiteEndpoint{{ID: demoSiteID, Name: "Demo HQ", Nodes: urls}}
	m.hub = hub.New(hcfg, log)
	if err := m.hub.Open(ctx); err != nil {
		return err
	}
	fmt.Fprintf(m.stdout, "Gatehouse demo: hub and a %d-node site on this machine.\n\n", len(m.nodes))
	fmt.Fprintf(m.stdout, "  Console:     %s\n", m.hub.URL())
	for i, u := range urls {
		fmt.Fprintf(m.stdout, "  Edge node %d: %s  (MQTT broker %s)\n", i+1, u, m.nodes[i].MQTTAddr())
	}
	fmt.Fprintf(m.stdout, "\n  Site status: gatehouse ctl site status --node %s\n  API token:   %s (bearer token of the sites' local API)\n  Data:        %s\n\nPress Ctrl-C to stop.\n", urls[0], m.apiToken, dir)
	if m.ready != nil {
		m.ready(m.hub.URL(), m.nodes)
	}
	<-ctx.Done()
	fmt.Fprintln(m.stdout, "\nStopping…")
	return nil
}

// Close stops the hub, then the edge nodes (followers before the leader, so
// the site keeps a leader as long as possible), then removes a temporary
// data directory.
func (m *DemoMain) Close() error {
	var errs []error
	if m.hub != nil {
		errs = append(errs, m.hub.Close())
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

// seedDemoSite configures a small site through Raft, as an operator would:
// a lobby zone with anti-passback, three doors, office-hours and always
// schedules, staff and visitor groups, two cardholders and a visitor type.
func seedDemoSite(ctx context.Context, n *node.Node, log *slog.Logger) error {
	var have bool
	n.Machine().View(func(st *access.State) { have = st.Counts().Doors > 0 })
	if have {
		return nil
	}
	gen := access.NewIDGen(rand.Reader)
	now := time.Now()
	id := func() string {
		v, err := gen.New(now)
		if err != nil {
			panic(err) // only on 2^80 IDs in one millisecond
		}
		return string(v)
	}
	zone, lobbyIn, lobbyOut, server := id(), id(), id(), id()
	office, staff, profile := id(), id(), id()
	alice, bob := id(), id()
	var windows []*accessv1.Window
	for d := 1; d <= 5; d++ {
		windows = append(windows, &accessv1.Window{Weekday: int32(d), StartMinute: 7 * 60, EndMinute: 20 * 60})
	}
	cmds := []*raftv1.Command{
		{Op: &raftv1.Command_PutZone{PutZone: &accessv1.Zone{Id: zone, SiteId: demoSiteID, Name: "Lobby", AntiPassback: true}}},
		{Op: &raftv1.Command_PutDoor{PutDoor: &accessv1.Door{Id: lobbyIn, SiteId: demoSiteID, ZoneId: zone, Name: "lobby-in", Direction: accessv1.Direction_DIRECTION_IN}}},
		{Op: &raftv1.Command_PutDoor{PutDoor: &accessv1.Door{Id: lobbyOut, SiteId: demoSiteID, ZoneId: zone, Name: "lobby-out", Direction: accessv1.Direction_DIRECTION_OUT}}},
		{Op: &raftv1.Command_PutDoor{PutDoor: &accessv1.Door{Id: server, SiteId: demoSiteID, Name: "server-room", HighSecurity: true, MaxOfflineMs: 15 * 60 * 1000}}},
		{Op: &raftv1.Command_PutSchedule{PutSchedule: &accessv1.Schedule{Id: office, SiteId: demoSiteID, Name: "Office hours", Windows: windows, ClosedOnHolidays: true}}},
		{Op: &raftv1.Command_PutGroup{PutGroup: &accessv1.Group{Id: staff, SiteId: demoSiteID, Name: "Staff", DoorIds: []string{lobbyIn, lobbyOut, server}, Kind: accessv1.GroupKind_GROUP_KIND_ACCESS}}},
		{Op: &raftv1.Command_PutGroup{PutGroup: &accessv1.Group{Id: profile, SiteId: demoSiteID, Name: "Visitor lobby", DoorIds: []string{lobbyIn, lobbyOut}, ScheduleId: office, Kind: accessv1.GroupKind_GROUP_KIND_VISITOR_PROFILE}}},
		{Op: &raftv1.Command_PutVisitorType{PutVisitorType: &accessv1.VisitorType{Id: id(), Name: "Guest", AllowedGroupIds: []string{profile}, MaxDurationMs: 12 * 3600 * 1000}}},
		{Op: &raftv1.Command_PutPerson{PutPerson: &accessv1.Person{Id: alice, Kind: accessv1.PersonKind_PERSON_KIND_ACCESS_USER, Name: "Alice Guard", Active: true, OfflineAccess: true}}},
		{Op: &raftv1.Command_PutPerson{PutPerson: &accessv1.Person{Id: bob, Kind: accessv1.PersonKind_PERSON_KIND_OCCUPIER, OccupierId: id(), Name: "Bob Tenant", Active: true}}},
		{Op: &raftv1.Command_PutCard{PutCard: &accessv1.Card{Number: 1001, PersonId: alice, SiteId: demoSiteID, Status: accessv1.CardStatus_CARD_STATUS_ACTIVE}}},
		{Op: &raftv1.Command_PutCard{PutCard: &accessv1.Card{Number: 1002, PersonId: bob, SiteId: demoSiteID, Status: accessv1.CardStatus_CARD_STATUS_ACTIVE}}},
		{Op: &raftv1.Command_PutGrant{PutGrant: &accessv1.Grant{Id: id(), HolderId: alice, GroupId: staff}}},
		{Op: &raftv1.Command_PutGrant{PutGrant: &accessv1.Grant{Id: id(), HolderId: bob, GroupId: profile}}},
	}
	for _, c := range cmds {
		c.Actor = "demo/seed"
	}
	if _, err := n.Propose(ctx, cmds...); err != nil {
		return err
	}
	log.Info("demo site configured", "doors", 3, "cardholders", 2)
	return nil
}

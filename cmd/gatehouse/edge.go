package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/gatehouse/gatehouse/edge/node"
)

// EdgeConfig is the configuration file of `gatehouse edge`.
type EdgeConfig struct {
	// Node configures the edge node.
	Node node.Config `json:"node"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `json:"log_level"`
}

// EdgeMain runs one edge node until its context ends.
type EdgeMain struct {
	env
	Config EdgeConfig

	node *node.Node
}

// ParseFlags reads the node configuration: defaults, --config file, flags.
// The cluster token may also come from GATEHOUSE_CLUSTER_TOKEN so that it
// stays out of process listings.
func (m *EdgeMain) ParseFlags(args []string) error {
	m.Config = EdgeConfig{
		Node: node.Config{
			RaftAddr: "127.0.0.1:7000",
			APIAddr:  "127.0.0.1:7001",
			DataDir:  "data/edge",
			TimeZone: "UTC",
		},
		LogLevel: "info",
	}
	rest, err := parseConfig("edge", args, m.stderr, &m.Config, func(fs *flag.FlagSet, c *EdgeConfig) {
		n := &c.Node
		fs.StringVar(&n.NodeID, "node-id", n.NodeID, "this node's ID, unique within the site and stable across restarts (required)")
		fs.StringVar(&n.SiteID, "site-id", n.SiteID, "the site's ID, a ULID (required)")
		fs.StringVar(&n.SiteName, "site-name", n.SiteName, "the site's display name (written by the bootstrap node)")
		fs.StringVar(&n.TimeZone, "time-zone", n.TimeZone, "the site's IANA time zone, e.g. Europe/Berlin (written by the bootstrap node)")
		fs.StringVar(&n.DataDir, "data-dir", n.DataDir, "directory for the Raft log, snapshots and state")
		fs.StringVar(&n.RaftAddr, "raft-addr", n.RaftAddr, "Raft transport TCP address; must stay the same across restarts")
		fs.StringVar(&n.APIAddr, "api", n.APIAddr, "address of the node's local API (status, cluster calls)")
		fs.BoolVar(&n.Bootstrap, "bootstrap", n.Bootstrap, "start a new site with this node as its first member")
		fs.StringVar(&n.Join, "join", n.Join, "local API URL of any member to join, e.g. http://10.0.0.5:7001")
		fs.StringVar(&n.ClusterToken, "cluster-token", n.ClusterToken, "the site's shared secret for node-to-node calls (or GATEHOUSE_CLUSTER_TOKEN)")
		fs.StringVar(&n.MQTTListen, "mqtt-listen", n.MQTTListen, "address of the embedded MQTT broker the site's devices connect to")
		fs.StringVar(&n.MQTTBroker, "mqtt-broker", n.MQTTBroker, "use this external MQTT broker (e.g. tcp://10.0.0.9:1883, Mosquitto) instead of the embedded one")
		fs.StringVar(&n.MQTTUsername, "mqtt-username", n.MQTTUsername, "the site service's username at the external broker")
		fs.StringVar(&n.APIToken, "api-token", n.APIToken, "the secret the local API requires as a bearer token (or GATEHOUSE_API_TOKEN)")
		fs.BoolVar(&n.LeaveOnClose, "leave-on-close", n.LeaveOnClose, "remove this node from the site when it shuts down (decommissioning); without it a clean shutdown hands leadership over and the node stays a member")
		if n.Uplink == nil {
			n.Uplink = &node.UplinkConfig{}
		}
		fs.StringVar(&n.Uplink.HubURL, "uplink-hub-url", n.Uplink.HubURL, "the cloud hub's URL the site syncs with, e.g. https://hub.example.com (no uplink when empty)")
		fs.StringVar(&n.Uplink.Token, "uplink-token", n.Uplink.Token, "the site's bearer token at the hub (or GATEHOUSE_UPLINK_TOKEN, or site.token in --uplink-tls-dir)")
		fs.StringVar(&n.Uplink.TLSDir, "uplink-tls-dir", n.Uplink.TLSDir, "the site's PKI directory from 'gatehouse cloud site add' (ca.crt, site.crt, site.key, site.token)")
		fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn, error")
	})
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("%w: unexpected arguments %v", errUsage, rest)
	}
	if m.Config.Node.ClusterToken == "" {
		// Read after parsing so that --help never prints the secret.
		m.Config.Node.ClusterToken = os.Getenv("GATEHOUSE_CLUSTER_TOKEN")
	}
	if m.Config.Node.MQTTPassword == "" {
		m.Config.Node.MQTTPassword = os.Getenv("GATEHOUSE_MQTT_PASSWORD")
	}
	if m.Config.Node.APIToken == "" {
		m.Config.Node.APIToken = os.Getenv("GATEHOUSE_API_TOKEN")
	}
	if up := m.Config.Node.Uplink; up != nil {
		if up.Token == "" && up.HubURL != "" {
			up.Token = os.Getenv("GATEHOUSE_UPLINK_TOKEN")
		}
		if *up == (node.UplinkConfig{}) {
			m.Config.Node.Uplink = nil
		}
	}
	return m.Config.Node.Validate()
}

// Run serves the node until ctx is done.
func (m *EdgeMain) Run(ctx context.Context) error {
	log, err := newLogger(m.stderr, m.Config.LogLevel)
	if err != nil {
		return err
	}
	m.Config.Node.Version = Version
	m.node = node.New(m.Config.Node, log)
	if err := m.node.Open(ctx); err != nil {
		return err
	}
	fmt.Fprintf(m.stdout, "Gatehouse edge node %s of site %s: local API at %s", m.Config.Node.NodeID, m.Config.Node.SiteID, m.node.URL())
	if a := m.node.MQTTAddr(); a != "" {
		fmt.Fprintf(m.stdout, ", MQTT broker at %s", a)
	}
	fmt.Fprintln(m.stdout)
	<-ctx.Done()
	return nil
}

// Close stops the node (leaving the cluster if so configured).
func (m *EdgeMain) Close() error {
	if m.node == nil {
		return nil
	}
	return m.node.Close()
}

package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/gatehouse/gatehouse/cloud/hub"
)

// CloudConfig is the configuration file of `gatehouse cloud`.
type CloudConfig struct {
	// Hub configures the hub process.
	Hub hub.Config `json:"hub"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `json:"log_level"`
}

// CloudMain runs the cloud hub until its context ends.
type CloudMain struct {
	env
	Config CloudConfig

	hub *hub.Hub
	pki *CloudPKIMain // set for "cloud pki ..." and "cloud site ..." (cloud_site.go)
}

// ParseFlags reads the hub configuration: defaults, --config file, flags.
func (m *CloudMain) ParseFlags(args []string) error {
	if isCloudPKIVerb(args) {
		m.pki = &CloudPKIMain{env: m.env}
		return m.pki.ParseFlags(args)
	}
	m.Config = CloudConfig{Hub: hub.DefaultConfig(), LogLevel: "info"}
	rest, err := parseConfig("cloud", args, m.stderr, &m.Config, func(fs *flag.FlagSet, c *CloudConfig) {
		fs.StringVar(&c.Hub.HTTPAddr, "http", c.Hub.HTTPAddr, "address to serve the console and APIs on")
		fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn, error")
	})
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("%w: unexpected arguments %v", errUsage, rest)
	}
	return m.Config.Hub.Validate()
}

// Run serves the hub until ctx is done.
func (m *CloudMain) Run(ctx context.Context) error {
	if m.pki != nil {
		return m.pki.Run(ctx)
	}
	log, err := newLogger(m.stderr, m.Config.LogLevel)
	if err != nil {
		return err
	}
	m.Config.Hub.Version = Version
	m.hub = hub.New(m.Config.Hub, log)
	if err := m.hub.Open(ctx); err != nil {
		return err
	}
	fmt.Fprintf(m.stdout, "Gatehouse hub: console at %s\n", m.hub.URL())
	<-ctx.Done()
	return nil
}

// Close stops the hub.
func (m *CloudMain) Close() error {
	if m.hub == nil {
		return nil
	}
	return m.hub.Close()
}

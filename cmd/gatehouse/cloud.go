package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net/http"

	"github.com/gatehouse/gatehouse/cloud/hub"
	"github.com/gatehouse/gatehouse/cloud/pki"
)

// CloudConfig is the configuration file of `gatehouse cloud`.
type CloudConfig struct {
	// Hub configures the hub process.
	Hub hub.Config `json:"hub"`
	// SiteLink configures the TLS listener sites connect to.
	SiteLink SiteLinkConfig `json:"site_link"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `json:"log_level"`
}

// SiteLinkConfig is the hub's TLS listener for sites (docs/security.md):
// the SyncService and the visitor service's site endpoints over TLS 1.3
// and HTTP/2, with the hub certificate and CA of `gatehouse cloud pki
// init`. Each request names its site by its client certificate, or by the
// site's token from `gatehouse cloud site add` (over TLS only) unless
// RequireCert. Once it is set, the sync service refuses every request not
// made over it.
type SiteLinkConfig struct {
	// Addr is the address to listen on, e.g. ":8443". Empty: no TLS
	// listener (sites then authenticate with the hub's sync_sites tokens,
	// over whatever the console listener speaks).
	Addr string `json:"addr"`
	// PKIDir is the directory `gatehouse cloud pki init` wrote.
	PKIDir string `json:"pki_dir"`
	// RequireCert refuses, during the handshake, a site without a valid
	// site certificate (mTLS only; no tokens).
	RequireCert bool `json:"require_cert"`
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
		fs.StringVar(&c.SiteLink.Addr, "site-link", c.SiteLink.Addr, "address of the TLS listener sites connect to (e.g. :8443; needs --pki-dir)")
		fs.StringVar(&c.SiteLink.PKIDir, "pki-dir", c.SiteLink.PKIDir, "the hub's PKI directory (gatehouse cloud pki init), for --site-link")
		fs.BoolVar(&c.SiteLink.RequireCert, "require-site-cert", c.SiteLink.RequireCert, "on --site-link, require a site certificate (no tokens)")
		fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn, error")
	})
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("%w: unexpected arguments %v", errUsage, rest)
	}
	if l := m.Config.SiteLink; (l.Addr == "") != (l.PKIDir == "") || l.RequireCert && l.Addr == "" {
		return fmt.Errorf("%w: --site-link and --pki-dir go together (and --require-site-cert needs them)", errUsage)
	}
	return m.Config.Hub.Validate()
}

// siteLink sets up the hub's TLS listener for sites from the PKI
// directory: the listener's TLS configuration, and the authenticator that
// names the site of each sync request by its certificate or, unless the
// certificate is required, its token; a request not over TLS is refused.
func siteLink(h *hub.Hub, c SiteLinkConfig) error {
	p, err := pki.LoadHub(c.PKIDir, nil)
	if err != nil {
		return err
	}
	auth := pki.SiteCertOrToken
	if c.RequireCert {
		auth = pki.RequireSiteCert
	}
	h.ServeTLS(c.Addr, p.ServerTLSConfig(auth))
	h.SetSyncAuthenticator(func(_ context.Context, hd http.Header, conn *tls.ConnectionState) (string, error) {
		if conn == nil {
			return "", fmt.Errorf("%w: not over TLS; sites connect to the hub's site link", pki.ErrUnauthenticated)
		}
		if len(conn.PeerCertificates) > 0 {
			return p.SiteIDFromTLS(*conn)
		}
		if c.RequireCert {
			return "", pki.ErrNoClientCert
		}
		tok := pki.BearerToken(hd)
		if tok == "" {
			return "", fmt.Errorf("%w: no client certificate and no bearer token", pki.ErrUnauthenticated)
		}
		return p.VerifyToken(tok)
	})
	return nil
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
	if m.Config.SiteLink.Addr != "" {
		if err := siteLink(m.hub, m.Config.SiteLink); err != nil {
			return err
		}
	}
	if err := m.hub.Open(ctx); err != nil {
		return err
	}
	fmt.Fprintf(m.stdout, "Gatehouse hub: console at %s\n", m.hub.URL())
	if a := m.hub.TLSAddr(); a != "" {
		fmt.Fprintf(m.stdout, "Site link: https://%s (TLS 1.3; CA %s)\n", a, m.Config.SiteLink.PKIDir)
	}
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

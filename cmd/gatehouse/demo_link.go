package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/cloud/pki"
)

// demoSyncPort is the port of the demo hub's TLS listener for sites when
// --sync is not given and --http names a fixed port.
const demoSyncPort = "8443"

// demoLink is the demo's site ↔ hub link over mutual TLS (docs/security.md
// "The demo's link"): the demo's own CA and hub server certificate in the
// data directory (cloud/pki, as `gatehouse cloud pki init` makes them), the
// demo site's client certificate (as `gatehouse cloud site add` issues it),
// the hub's authentication of sites by certificate, and a record of the
// sites it verified, shown at GET /demo/link. It is safe for concurrent use.
type demoLink struct {
	log *slog.Logger
	// pkiDir is the hub's PKI directory, siteDir the site's files (ca.crt,
	// site.crt, site.key: no token, the demo site uses its certificate).
	pkiDir, siteDir string
	// addr is where the hub's TLS listener binds; url is how sites reach it.
	addr, url string
	hub       *pki.Hub

	mu   sync.Mutex
	seen map[string]*demoLinkSite // by site ID
}

// demoLinkSite is what the demo hub saw of one site's link.
type demoLinkSite struct {
	serial   string
	notAfter time.Time
	version  string // "TLS 1.3"
	alpn     string // "h2"
	requests int
	last     time.Time
}

// demoLinkHosts returns the names the hub's certificate is made for, and
// the host sites dial, for a TLS listener on addr: loopback always, and
// addr's own host unless it is empty or unspecified (0.0.0.0, ::), in which
// case sites on this machine dial 127.0.0.1.
func demoLinkHosts(addr string) (hosts []string, dial string, err error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, "", err
	}
	hosts, dial = []string{"127.0.0.1", "localhost"}, "127.0.0.1"
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		dial = host
		if ip != nil {
			dial = ip.String()
		}
		if !slices.Contains(hosts, dial) {
			hosts = append([]string{dial}, hosts...)
		}
	}
	return hosts, dial, nil
}

// openDemoLink sets up the link's PKI under dir for a hub TLS listener at
// addr (a resolved host:port): dir/hub/pki holds the CA and the hub's
// server certificate, dir/site/hub-link the site's certificate and key.
// What is already there from an earlier run with the same data directory
// is kept and checked (the hub certificate must name the host sites dial,
// the site certificate must be the demo site's and still valid); what is
// missing is made.
func openDemoLink(dir, addr string, log *slog.Logger) (*demoLink, error) {
	hosts, dial, err := demoLinkHosts(addr)
	if err != nil {
		return nil, fmt.Errorf("demo: the sites' TLS listener %q: %w", addr, err)
	}
	_, port, _ := net.SplitHostPort(addr)
	l := &demoLink{
		log:     log,
		pkiDir:  filepath.Join(dir, "hub", "pki"),
		siteDir: filepath.Join(dir, "site", "hub-link"),
		addr:    addr,
		url:     "https://" + net.JoinHostPort(dial, port),
		seen:    map[string]*demoLinkSite{},
	}
	fresh := "start the demo with a fresh --data-dir"
	switch _, err := os.Stat(filepath.Join(l.pkiDir, pki.CACertFile)); {
	case errors.Is(err, fs.ErrNotExist):
		if _, err := pki.Init(l.pkiDir, pki.InitOptions{Hosts: hosts}); err != nil {
			return nil, fmt.Errorf("demo: make the link's CA: %w", err)
		}
		log.Info("made the demo CA and hub certificate", "dir", l.pkiDir, "hosts", strings.Join(hosts, ","))
	case err != nil:
		return nil, fmt.Errorf("demo: %w", err)
	}
	if l.hub, err = pki.LoadHub(l.pkiDir, nil); err != nil {
		return nil, fmt.Errorf("demo: %w (%s)", err, fresh)
	}
	if err := l.hub.ServerCertificate().VerifyHostname(dial); err != nil {
		return nil, fmt.Errorf("demo: the hub certificate kept in %s does not name %s, the host sites dial (%v); %s", l.pkiDir, dial, err, fresh)
	}
	switch _, err := os.Stat(filepath.Join(l.siteDir, pki.SiteCertFile)); {
	case errors.Is(err, fs.ErrNotExist):
		a, err := pki.OpenAuthority(l.pkiDir, nil)
		if err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		b, err := a.AddSite(demoSiteID, "Demo HQ", 0)
		if err != nil {
			return nil, fmt.Errorf("demo: issue the site's certificate: %w (%s)", err, fresh)
		}
		// The demo site authenticates by its certificate only: its token
		// (whose hash the PKI keeps) is not written out, so the uplink
		// sends none.
		b.Token = ""
		if err := b.WriteDir(l.siteDir); err != nil {
			return nil, fmt.Errorf("demo: write the site's certificate: %w", err)
		}
		log.Info("issued the demo site's certificate", "site", demoSiteID, "serial", b.Serial, "dir", l.siteDir)
	case err != nil:
		return nil, fmt.Errorf("demo: %w", err)
	}
	site, err := pki.LoadSite(l.siteDir)
	if err != nil {
		return nil, fmt.Errorf("demo: %w (%s)", err, fresh)
	}
	if site.ID() != demoSiteID {
		return nil, fmt.Errorf("demo: %s holds the certificate of site %s, not of the demo site %s; %s", l.siteDir, site.ID(), demoSiteID, fresh)
	}
	if na, err := site.NotAfter(); err != nil || time.Now().After(na) {
		return nil, fmt.Errorf("demo: the site certificate in %s expired at %s; renew it (gatehouse cloud site renew --pki-dir %s --id %s) or %s", l.siteDir, na.Format(time.RFC3339), l.pkiDir, demoSiteID, fresh)
	}
	return l, nil
}

// URL returns the base URL sites reach the hub's TLS listener at.
func (l *demoLink) URL() string { return l.url }

// CACert returns the path of the demo CA's certificate.
func (l *demoLink) CACert() string { return filepath.Join(l.pkiDir, pki.CACertFile) }

// TLSConfig returns the hub listener's TLS configuration: TLS 1.3, HTTP/2
// and HTTP/1.1 by ALPN, and a valid, unrevoked site certificate from the
// demo CA required during the handshake.
func (l *demoLink) TLSConfig() *tls.Config { return l.hub.ServerTLSConfig(pki.RequireSiteCert) }

// authenticate is the hub's sync authenticator (and the visitor service's
// site endpoints'): the site is the one its verified client certificate
// names. A request not over TLS (the console listener) is refused, and so
// is a certificate revoked since its connection was made.
func (l *demoLink) authenticate(_ context.Context, _ http.Header, conn *tls.ConnectionState) (string, error) {
	if conn == nil {
		return "", fmt.Errorf("%w: not over TLS; the demo hub takes sites at %s with a site certificate", pki.ErrUnauthenticated, l.url)
	}
	site, err := l.hub.SiteIDFromTLS(*conn)
	if err != nil {
		l.log.Warn("site link refused", "err", err)
		return "", err
	}
	leaf := conn.PeerCertificates[0]
	serial := leaf.SerialNumber.Text(16)
	l.mu.Lock()
	s := l.seen[site]
	if s == nil || s.serial != serial {
		s = &demoLinkSite{serial: serial, notAfter: leaf.NotAfter}
		l.seen[site] = s
		l.log.Info("site link verified", "site", site, "serial", serial, "tls", tls.VersionName(conn.Version), "alpn", conn.NegotiatedProtocol)
	}
	s.version, s.alpn = tls.VersionName(conn.Version), conn.NegotiatedProtocol
	s.requests++
	s.last = time.Now()
	l.mu.Unlock()
	return site, nil
}

// ServeHTTP answers GET /demo/link with the link's address and CA, and for
// each site the demo hub verified: its certificate's serial and expiry, the
// TLS version and protocol of its last request, and how many requests
// (sync streams opened, and batches on them) it authenticated.
func (l *demoLink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "GET /demo/link shows the site link; nothing to "+r.Method, http.StatusMethodNotAllowed)
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Site link: %s (TLS 1.3, HTTP/2; a site certificate from the demo CA is required)\n", l.url)
	fmt.Fprintf(&b, "CA:        %s\n", l.CACert())
	l.mu.Lock()
	ids := make([]string, 0, len(l.seen))
	for id := range l.seen {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		s := l.seen[id]
		fmt.Fprintf(&b, "site %s: certificate %s verified (valid until %s), %s %s, %d requests, last at %s\n",
			id, s.serial, s.notAfter.UTC().Format(time.RFC3339), s.version, s.alpn, s.requests, s.last.UTC().Format(time.RFC3339))
	}
	l.mu.Unlock()
	if len(ids) == 0 {
		b.WriteString("No site has connected yet.\n")
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(b.String()))
}

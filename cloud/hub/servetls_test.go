package hub

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/cloud/pki"
	syncv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/sync/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/sync/v1/syncv1connect"
)

// TestServeTLS serves the hub's routes on a TLS listener that requires a
// site certificate (cloud/pki), with a sync site listed without a token and
// named by its certificate: the site's certificate gets through over HTTP/2
// and is authenticated as the site; no certificate is refused at the
// handshake; the cleartext listener refuses the sync service; Close stops
// the TLS listener too.
func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	a, err := pki.Init(pkiDir, pki.InitOptions{Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := a.AddSite(testSyncSite, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	siteDir := filepath.Join(dir, "site")
	if err := b.WriteDir(siteDir); err != nil {
		t.Fatal(err)
	}
	ph, err := pki.LoadHub(pkiDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	site, err := pki.LoadSite(siteDir)
	if err != nil {
		t.Fatal(err)
	}

	cfg := DefaultConfig()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Store = StoreConfig{Dir: filepath.Join(dir, "store")}
	cfg.SyncSites = []SyncSite{{ID: testSyncSite}}
	h := New(cfg, testLogger(t))
	h.ServeTLS("127.0.0.1:0", ph.ServerTLSConfig(pki.RequireSiteCert))
	h.SetSyncAuthenticator(func(_ context.Context, _ http.Header, conn *tls.ConnectionState) (string, error) {
		if conn == nil {
			return "", errors.New("not over TLS")
		}
		return ph.SiteIDFromTLS(*conn)
	})
	if err := h.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if h.TLSAddr() == "" || h.TLSAddr() == h.Addr() {
		t.Fatalf("TLSAddr %q, Addr %q", h.TLSAddr(), h.Addr())
	}

	client := func(tc *tls.Config, base string) syncv1connect.SyncServiceClient {
		var p http.Protocols
		if tc != nil {
			p.SetHTTP2(true)
		} else {
			p.SetUnencryptedHTTP2(true)
		}
		return syncv1connect.NewSyncServiceClient(&http.Client{Transport: &http.Transport{Protocols: &p, TLSClientConfig: tc}}, base)
	}
	pull := func(c syncv1connect.SyncServiceClient, origin string) error {
		_, err := c.Pull(context.Background(), connect.NewRequest(&syncv1.PullRequest{Origin: origin}))
		return err
	}
	tlsURL := "https://" + h.TLSAddr()
	// The site's certificate: through, and named as the site (a pull of
	// another origin is refused as such, not as unauthenticated).
	if err := pull(client(site.ClientTLSConfig(), tlsURL), testSyncSite); err != nil {
		t.Fatalf("pull with the site's certificate: %v", err)
	}
	if err := pull(client(site.ClientTLSConfig(), tlsURL), "01JBX000000000000000000002"); connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), testSyncSite) {
		t.Fatalf("pull of another origin: %v", err)
	}
	// No certificate: refused (the handshake; TLS 1.3 reports it late).
	noCert := site.ClientTLSConfig()
	noCert.GetClientCertificate = nil
	if err := pull(client(noCert, tlsURL), testSyncSite); err == nil {
		t.Fatal("pull without a certificate answered")
	}
	// The cleartext listener: no TLS state, refused by the authenticator.
	if err := pull(client(nil, "http://"+h.Addr()), testSyncSite); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("pull over cleartext: %v", err)
	}

	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := pull(client(site.ClientTLSConfig(), tlsURL), testSyncSite); err == nil {
		t.Fatal("the TLS listener still answers after Close")
	}
}

// TestSyncSitesWithoutToken: a sync site may be listed without a token
// (named by an authenticator), but its ID must still be a site's and
// appear once.
func TestSyncSitesWithoutToken(t *testing.T) {
	base := DefaultConfig()
	base.Store = StoreConfig{Dir: t.TempDir()}
	for _, tc := range []struct {
		name  string
		sites []SyncSite
		err   string
	}{
		{"OK", []SyncSite{{ID: testSyncSite}}, ""},
		{"WithTokenSite", []SyncSite{{ID: testSyncSite}, {ID: "01JBX000000000000000000002", Token: testSyncToken}}, ""},
		{"ErrBadID", []SyncSite{{ID: "no spaces allowed"}}, "not a site's ID"},
		{"ErrHub", []SyncSite{{ID: "hub"}}, "not a site's ID"},
		{"ErrTwice", []SyncSite{{ID: testSyncSite}, {ID: testSyncSite, Token: testSyncToken}}, "listed twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			c.SyncSites = tc.sites
			err := c.Validate()
			if (tc.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("Validate: %v, want %q", err, tc.err)
			}
		})
	}
}

package main

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/cloud/hub"
	"github.com/gatehouse/gatehouse/cloud/pki"
	syncv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/sync/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/sync/v1/syncv1connect"
	"github.com/gatehouse/gatehouse/replication"
)

// TestCloudSiteLink: `gatehouse cloud --site-link ADDR --pki-dir DIR` serves
// sites over TLS 1.3: a site is named by its certificate or its token over
// TLS; no credential, the console's plain listener, and (with
// --require-site-cert) a token alone are refused.
func TestCloudSiteLink(t *testing.T) {
	tmp := t.TempDir()
	pkiDir, siteDir := filepath.Join(tmp, "pki"), filepath.Join(tmp, "site")
	for _, args := range [][]string{
		{"cloud", "pki", "init", "--pki-dir", pkiDir, "--host", "127.0.0.1"},
		{"cloud", "site", "add", "--pki-dir", pkiDir, "--id", testSiteID, "--name", "HQ", "--out", siteDir},
	} {
		if code, _, errs := run(t, args...); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errs)
		}
	}
	site, err := pki.LoadSite(siteDir)
	if err != nil {
		t.Fatal(err)
	}
	open := func(t *testing.T, requireCert bool) *hub.Hub {
		m := &CloudMain{env: env{stdout: io.Discard, stderr: io.Discard}}
		args := []string{"--http", "127.0.0.1:0", "--site-link", "127.0.0.1:0", "--pki-dir", pkiDir}
		if requireCert {
			args = append(args, "--require-site-cert")
		}
		if err := m.ParseFlags(args); err != nil {
			t.Fatal(err)
		}
		m.Config.Hub.Store.Dir = filepath.Join(t.TempDir(), "store")
		m.Config.Hub.SyncSites = []hub.SyncSite{{ID: testSiteID}}
		h := hub.New(m.Config.Hub, slog.New(slog.DiscardHandler))
		if err := siteLink(h, m.Config.SiteLink); err != nil {
			t.Fatal(err)
		}
		if err := h.Open(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		return h
	}
	pull := func(base string, tc *tls.Config, token string) error {
		tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}
		if tc == nil {
			var p http.Protocols
			p.SetUnencryptedHTTP2(true)
			tr = &http.Transport{Protocols: &p}
		}
		defer tr.CloseIdleConnections()
		c := syncv1connect.NewSyncServiceClient(&http.Client{Transport: tr}, base)
		vb, _ := replication.Vector{}.MarshalBinary()
		req := connect.NewRequest(&syncv1.PullRequest{Origin: testSiteID, Vector: vb})
		if token != "" {
			req.Header().Set("Authorization", "Bearer "+token)
		}
		_, err := c.Pull(context.Background(), req)
		return err
	}
	noCert := func() *tls.Config {
		c := site.ClientTLSConfig()
		c.GetClientCertificate = nil
		c.Certificates = nil
		return c
	}

	h := open(t, false)
	link := "https://" + h.TLSAddr()
	if err := pull(link, site.ClientTLSConfig(), ""); err != nil {
		t.Fatalf("pull with the site certificate: %v", err)
	}
	if err := pull(link, noCert(), site.Token()); err != nil {
		t.Fatalf("pull with the site token over TLS: %v", err)
	}
	if err := pull(link, noCert(), ""); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("pull without a credential: %v, want Unauthenticated", err)
	}
	if err := pull(link, noCert(), "not-the-token"); err == nil {
		t.Fatal("pull with a wrong token was accepted")
	}
	if err := pull("http://"+h.Addr(), nil, site.Token()); connect.CodeOf(err) != connect.CodeUnauthenticated || !strings.Contains(err.Error(), "not over TLS") {
		t.Fatalf("pull over the console's plain listener: %v, want Unauthenticated (not over TLS)", err)
	}

	strict := open(t, true)
	if err := pull("https://"+strict.TLSAddr(), site.ClientTLSConfig(), ""); err != nil {
		t.Fatalf("pull with the site certificate (required): %v", err)
	}
	if err := pull("https://"+strict.TLSAddr(), noCert(), site.Token()); err == nil {
		t.Fatal("a token alone was accepted with --require-site-cert")
	}

	// Flags that go together.
	m := &CloudMain{env: env{stdout: io.Discard, stderr: io.Discard}}
	if err := m.ParseFlags([]string{"--site-link", ":8443"}); err == nil {
		t.Fatal("--site-link without --pki-dir was accepted")
	}
}

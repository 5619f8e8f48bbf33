package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/cloud/pki"
	"github.com/gatehouse/gatehouse/edge/uplink"
	consolev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/console/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/console/v1/consolev1connect"
	syncv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/sync/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/sync/v1/syncv1connect"
)

var (
	bannerLink = regexp.MustCompile(`Site link: +(\S+)`)
	bannerCA   = regexp.MustCompile(`Demo CA: +(\S+) +\(site files in (\S+?);`)
)

// demoLinkFiles returns what the banner prints of the site link: its URL,
// the demo CA's certificate and the site's directory.
func demoLinkFiles(t *testing.T, banner string) (linkURL, caPath, siteDir string) {
	t.Helper()
	l, ca := bannerLink.FindStringSubmatch(banner), bannerCA.FindStringSubmatch(banner)
	if l == nil || ca == nil {
		t.Fatalf("the banner prints no site link or demo CA:\n%s", banner)
	}
	return l[1], ca[1], ca[2]
}

// readCertFile parses the PEM certificate in path.
func readCertFile(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(path, strings.TrimSuffix(path, ".crt")+".key")
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf
}

// bannerHubKey finds the hub's admin API key in the demo's banner.
var bannerHubKey = regexp.MustCompile(`Hub API key: (\S+)`)

// checkDemoLinkTLS asserts that the demo's site ↔ hub link runs over TLS
// with the site's certificate: the banner's link is https, and the demo
// hub reports (GET /demo/link) that it verified the certificate the site
// was issued in the data dir, over TLS 1.3 and HTTP/2.
func checkDemoLinkTLS(t *testing.T, consoleURL, banner string) {
	t.Helper()
	linkURL, _, siteDir := demoLinkFiles(t, banner)
	if !strings.HasPrefix(linkURL, "https://") {
		t.Fatalf("the site link is %s, want https", linkURL)
	}
	serial := readCertFile(t, filepath.Join(siteDir, pki.SiteCertFile)).SerialNumber.Text(16)
	want := "site " + demoSiteID + ": certificate " + serial + " verified"
	waitFor(t, "the hub verified the site's certificate on the link", 30*time.Second, func() (bool, string) {
		res, err := http.Get(consoleURL + "demo/link")
		if err != nil {
			return false, err.Error()
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		s := string(b)
		return res.StatusCode == 200 && strings.Contains(s, want) && strings.Contains(s, "TLS 1.3 h2") &&
			strings.Contains(s, linkURL), s
	})
	// The hub lists the site, named by its certificate alone, as
	// connected (its pending revocations).
	// The "Hub API key" line comes before the devices start; the visit
	// steps' export line may not be printed yet when this runs.
	key := bannerHubKey.FindStringSubmatch(banner)
	if key == nil {
		t.Fatalf("the banner prints no API key:\n%s", banner)
	}
	console := consolev1connect.NewConsoleServiceClient(http.DefaultClient, strings.TrimSuffix(consoleURL, "/"))
	waitFor(t, "the site connected in the hub's pending revocations", 30*time.Second, func() (bool, string) {
		req := connect.NewRequest(&consolev1.ListPendingRevocationsRequest{SiteId: demoSiteID})
		req.Header().Set("Authorization", "Bearer "+key[1])
		res, err := console.ListPendingRevocations(context.Background(), req)
		if err != nil {
			return false, err.Error()
		}
		s := res.Msg.GetSites()
		return len(s) == 1 && s[0].GetSiteId() == demoSiteID && s[0].GetConnected(), res.Msg.String()
	})
}

// syncClient returns a SyncService client at base over HTTP/2, with tc for
// an https base.
func syncClient(base string, tc *tls.Config) syncv1connect.SyncServiceClient {
	var p http.Protocols
	if strings.HasPrefix(base, "https://") {
		p.SetHTTP2(true)
	} else {
		p.SetUnencryptedHTTP2(true)
	}
	tr := &http.Transport{Protocols: &p, TLSClientConfig: tc, ForceAttemptHTTP2: true}
	return syncv1connect.NewSyncServiceClient(&http.Client{Transport: tr, Timeout: 10 * time.Second}, base)
}

// TestDemoSiteLinkRefusals runs a 1-node demo and calls its hub's sync
// service as a site would (uplink.LoadTLS builds the TLS configuration, as
// on an edge node) with wrong credentials: each is refused by the hub, and
// the hub's record of verified sites shows only the demo site's own
// certificate afterwards.
func TestDemoSiteLinkRefusals(t *testing.T) {
	consoleURL, nodes, stop, banner := runDemo(t, 1)
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("demo stopped with %v", err)
		}
	}()
	linkURL, caPath, siteDir := demoLinkFiles(t, banner.String())
	caPEM, err := os.ReadFile(caPath)
	if err != nil {
		t.Fatal(err)
	}
	// Wait for the real site first, so its record is there to compare.
	checkDemoLinkTLS(t, consoleURL, banner.String())

	// A site directory as `cloud site add` writes it, but from another CA
	// (for the same site ID), next to the demo's ca.crt so that the client
	// trusts the demo hub and the refusal is the hub's.
	otherPKI := filepath.Join(t.TempDir(), "pki")
	other, err := pki.Init(otherPKI, pki.InitOptions{Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := other.AddSite(demoSiteID, "Impostor", 0)
	if err != nil {
		t.Fatal(err)
	}
	b.CACert, b.Token = caPEM, ""
	otherDir := filepath.Join(t.TempDir(), "other-ca")
	if err := b.WriteDir(otherDir); err != nil {
		t.Fatal(err)
	}
	// Only the demo CA, no certificate of the site's own.
	noCertDir := filepath.Join(t.TempDir(), "no-cert")
	if err := os.MkdirAll(noCertDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(noCertDir, pki.CACertFile), caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	loadTLS := func(dir string) *tls.Config {
		t.Helper()
		tc, _, err := uplink.LoadTLS(dir)
		if err != nil {
			t.Fatal(err)
		}
		return tc
	}

	linkHost := strings.TrimPrefix(linkURL, "https://")
	for _, tc := range []struct {
		name string
		dir  string
		// alert is the hub's TLS alert, which the site reads after its
		// side of the TLS 1.3 handshake.
		alert string
	}{
		{"NoCertificate", noCertDir, "remote error: tls: certificate required"},
		{"OtherCA", otherDir, "remote error: tls: unknown certificate authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := loadTLS(tc.dir)
			// A sync call fails: no answer from the sync service.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := syncClient(linkURL, cfg).Pull(ctx, connect.NewRequest(&syncv1.PullRequest{Origin: demoSiteID})); err == nil {
				t.Fatal("Pull answered")
			}
			// On a bare connection (nothing written that the hub's close
			// could cut) the refusal is the hub's alert.
			cfg.NextProtos = []string{"h2"}
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", linkHost, cfg)
			if err != nil {
				if strings.Contains(err.Error(), tc.alert) {
					return
				}
				t.Fatalf("dial: %v, want the hub's alert %q", err, tc.alert)
			}
			defer conn.Close()
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := conn.Read(make([]byte, 1)); err == nil || !strings.Contains(err.Error(), tc.alert) {
				t.Fatalf("read: %v, want the hub's alert %q", err, tc.alert)
			}
		})
	}
	for _, tc := range []struct {
		name   string
		client syncv1connect.SyncServiceClient
		says   string // in the error
		code   connect.Code
	}{
		// The console listener serves no site: not over TLS.
		{"PlainHTTP", syncClient(strings.TrimSuffix(consoleURL, "/"), nil), "not over TLS", connect.CodeUnauthenticated},
		// And the site does not take a hub it cannot verify by the demo CA.
		{"HubNotVerified", syncClient(linkURL, &tls.Config{MinVersion: tls.VersionTLS13}), "certificate signed by unknown authority", connect.CodeUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := tc.client.Pull(ctx, connect.NewRequest(&syncv1.PullRequest{Origin: demoSiteID}))
			if err == nil || !strings.Contains(err.Error(), tc.says) || connect.CodeOf(err) != tc.code {
				t.Fatalf("Pull: %v (code %v), want %v with %q", err, connect.CodeOf(err), tc.code, tc.says)
			}
		})
	}

	// The site's own files get through the handshake and the
	// authenticator: a pull with a wrong origin is then refused as a bad
	// message (and changes nothing), not as unauthenticated.
	_, err = syncClient(linkURL, loadTLS(siteDir)).Pull(context.Background(), connect.NewRequest(&syncv1.PullRequest{Origin: "01JNOTTHEDEM0S1TE000000000"}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "from site "+demoSiteID) {
		t.Fatalf("the site's own certificate: %v, want invalid_argument naming the site", err)
	}

	res, err := http.Get(consoleURL + "demo/link")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if n := strings.Count(string(body), "site 01"); n != 1 || strings.Contains(string(body), b.Serial) {
		t.Fatalf("after the refusals /demo/link lists %d sites or the other CA's certificate %s:\n%s", n, b.Serial, body)
	}
	if res, err := http.Post(consoleURL+"demo/link", "text/plain", nil); err != nil || res.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /demo/link: %v %v, want 405", res, err)
	} else {
		res.Body.Close()
	}

	// Revoking the site (`gatehouse cloud site revoke` on the demo's PKI)
	// cuts its link: the hub re-reads the revocation list, refuses the
	// next batch of the running stream and every handshake after.
	pkiDir := filepath.Dir(caPath)
	if code, out, errs := run(t, "cloud", "site", "revoke", "--pki-dir", pkiDir, "--id", demoSiteID, "--reason", "test"); code != 0 {
		t.Fatalf("cloud site revoke: exit %d\n%s\n%s", code, out, errs)
	}
	waitFor(t, "the revoked site's uplink cut off", 30*time.Second, func() (bool, string) {
		st := nodes[0].Uplink().Status()
		refused := strings.Contains(st.LastError, "revoked") || strings.Contains(st.LastError, "bad certificate")
		return !st.Connected && refused, fmt.Sprintf("%+v", st)
	})
	if err := syncPull(syncClient(linkURL, loadTLS(siteDir))); err == nil {
		t.Fatal("a pull with the revoked certificate answered")
	}

}

// syncPull makes one Pull of the demo site's origin.
func syncPull(c syncv1connect.SyncServiceClient) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Pull(ctx, connect.NewRequest(&syncv1.PullRequest{Origin: demoSiteID}))
	return err
}

// TestDemoLinkKeptInDataDir opens the demo's link twice in one data dir:
// the CA and the site certificate made the first time are kept, and kept
// files that do not fit are refused with a clear error.
func TestDemoLinkKeptInDataDir(t *testing.T) {
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	dir := t.TempDir()
	first, err := openDemoLink(dir, "127.0.0.1:8443", log)
	if err != nil {
		t.Fatal(err)
	}
	if first.URL() != "https://127.0.0.1:8443" {
		t.Errorf("URL %s", first.URL())
	}
	read := func(path string) string {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	ca, site := read(first.CACert()), read(filepath.Join(first.siteDir, pki.SiteCertFile))
	if _, err := os.Stat(filepath.Join(first.siteDir, pki.SiteTokenFile)); !os.IsNotExist(err) {
		t.Errorf("the demo site has a token file (%v); it authenticates by certificate only", err)
	}
	again, err := openDemoLink(dir, "0.0.0.0:9443", log) // any interface: sites dial 127.0.0.1
	if err != nil {
		t.Fatal(err)
	}
	if read(again.CACert()) != ca || read(filepath.Join(again.siteDir, pki.SiteCertFile)) != site {
		t.Error("a second start with the same data dir made a new CA or site certificate")
	}
	if again.URL() != "https://127.0.0.1:9443" {
		t.Errorf("URL on 0.0.0.0: %s", again.URL())
	}

	// A host the kept hub certificate does not name.
	if _, err := openDemoLink(dir, "192.0.2.7:8443", log); err == nil || !strings.Contains(err.Error(), "does not name 192.0.2.7") {
		t.Errorf("another host: %v", err)
	}
	// A kept site directory holding another site's certificate.
	a, err := pki.OpenAuthority(first.pkiDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := a.AddSite("01JANXTHERS1TE000000000000", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(first.siteDir, pki.SiteCertFile), b.Cert, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(first.siteDir, pki.SiteKeyFile), b.Key, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openDemoLink(dir, "127.0.0.1:8443", log); err == nil || !strings.Contains(err.Error(), "not of the demo site") {
		t.Errorf("another site's certificate: %v", err)
	}
	// A malformed address.
	if _, err := openDemoLink(t.TempDir(), "no-port", log); err == nil || !strings.Contains(err.Error(), "no-port") {
		t.Errorf("malformed address: %v", err)
	}
}

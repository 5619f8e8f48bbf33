package pki

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	siteA = "01JS1TEA000000000000000000"
	siteB = "01JS1TEB000000000000000000"
)

// MustInit makes a PKI in a temporary directory for 127.0.0.1 and localhost.
func MustInit(tb testing.TB) (string, *Authority) {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "pki")
	a, err := Init(dir, InitOptions{Hosts: []string{"127.0.0.1", "localhost"}})
	if err != nil {
		tb.Fatal(err)
	}
	return dir, a
}

// MustAddSite adds siteID and writes its bundle into a temporary directory.
func MustAddSite(tb testing.TB, a *Authority, siteID string) (string, *SiteBundle) {
	tb.Helper()
	b, err := a.AddSite(siteID, "Site "+siteID[len(siteID)-4:], 0)
	if err != nil {
		tb.Fatal(err)
	}
	dir := filepath.Join(tb.TempDir(), "site")
	if err := b.WriteDir(dir); err != nil {
		tb.Fatal(err)
	}
	return dir, b
}

// MustLoadHub loads the hub side of the PKI in dir.
func MustLoadHub(tb testing.TB, dir string) *Hub {
	tb.Helper()
	h, err := LoadHub(dir, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

// hubServer is a real HTTPS server (HTTP/2) with the hub's TLS
// configuration whose handler answers "site ID proto" or the error of
// Authenticate. Its handshake errors arrive on errs.
type hubServer struct {
	*httptest.Server
	errs chan string
}

type chanWriter chan string

func (c chanWriter) Write(p []byte) (int, error) {
	select {
	case c <- string(p):
	default: // nobody is waiting for more
	}
	return len(p), nil
}

func startHub(t *testing.T, h *Hub, auth ClientAuth) *hubServer {
	t.Helper()
	s := &hubServer{errs: make(chan string, 16)}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := h.Authenticate(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		fmt.Fprintf(w, "%s %s", id, r.Proto)
	}))
	s.EnableHTTP2 = true
	s.TLS = h.ServerTLSConfig(auth)
	s.Config.ErrorLog = log.New(chanWriter(s.errs), "", 0)
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// client returns an HTTP/2 client with cfg.
func client(cfg *tls.Config) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}, Timeout: 30 * time.Second}
}

// get returns the body of a GET of the server's root.
func get(c *http.Client, s *hubServer, token string) (int, string, error) {
	req, _ := http.NewRequest("GET", s.URL, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, string(b), err
}

// wantRefused checks that the handshake fails and that the server logged
// a handshake error containing want.
func wantRefused(t *testing.T, s *hubServer, cfg *tls.Config, want string) {
	t.Helper()
	code, body, err := get(client(cfg), s, "")
	if err == nil {
		t.Fatalf("request succeeded (%d %q), want the handshake refused", code, body)
	}
	t.Logf("client error: %v", err)
	deadline := time.After(10 * time.Second)
	for {
		select {
		case line := <-s.errs:
			if strings.Contains(line, "handshake error") {
				if !strings.Contains(line, want) {
					t.Fatalf("server handshake error %q lacks %q", line, want)
				}
				return
			}
		case <-deadline:
			t.Fatalf("the server logged no handshake error containing %q", want)
		}
	}
}

// clientConfig is a site client configuration with an arbitrary key pair.
func clientConfig(t *testing.T, caPEM, certPEM, keyPEM []byte) *tls.Config {
	t.Helper()
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	// GetClientCertificate sends the certificate whatever CAs the hub
	// says it accepts, as an attacker would.
	return &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &pair, nil
	}}
}

func TestHandshake(t *testing.T) {
	dir, a := MustInit(t)
	siteDir, bundle := MustAddSite(t, a, siteA)
	h := MustLoadHub(t, dir)
	s := startHub(t, h, RequireSiteCert)
	site, err := LoadSite(siteDir)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("OK", func(t *testing.T) {
		code, body, err := get(client(site.ClientTLSConfig()), s, "")
		if err != nil || code != 200 {
			t.Fatalf("GET: %d %q %v", code, body, err)
		}
		if got, want := body, siteA+" HTTP/2.0"; got != want {
			t.Errorf("body = %q, want %q", got, want)
		}
	})
	t.Run("OK/Localhost", func(t *testing.T) {
		cfg := site.ClientTLSConfig()
		cfg.ServerName = "localhost"
		if code, body, err := get(client(cfg), s, ""); err != nil || code != 200 {
			t.Fatalf("GET with server name localhost: %d %q %v", code, body, err)
		}
	})
	t.Run("ErrNoClientCert", func(t *testing.T) {
		cfg := site.ClientTLSConfig()
		cfg.GetClientCertificate = nil
		wantRefused(t, s, cfg, "client didn't provide a certificate")
	})
	t.Run("ErrOtherCA", func(t *testing.T) {
		_, other := MustInit(t)
		b, err := other.AddSite(siteA, "impostor", 0)
		if err != nil {
			t.Fatal(err)
		}
		wantRefused(t, s, clientConfig(t, bundle.CACert, b.Cert, b.Key), "unknown authority")
	})
	t.Run("ErrExpired", func(t *testing.T) {
		past, err := OpenAuthority(dir, func() time.Time { return time.Now().Add(-48 * time.Hour) })
		if err != nil {
			t.Fatal(err)
		}
		b, err := past.issueSite(siteB, "", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		wantRefused(t, s, clientConfig(t, bundle.CACert, b.Cert, b.Key), "expired")
	})
	t.Run("ErrServerCertAsClientCert", func(t *testing.T) {
		hubCert, _ := os.ReadFile(filepath.Join(dir, HubCertFile))
		hubKey, _ := os.ReadFile(filepath.Join(dir, HubKeyFile))
		wantRefused(t, s, clientConfig(t, bundle.CACert, hubCert, hubKey), "incompatible key usage")
	})
	t.Run("ErrNoSiteURI", func(t *testing.T) {
		c, k, _, err := a.issue(pkix.Name{CommonName: siteB}, time.Hour, func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		})
		if err != nil {
			t.Fatal(err)
		}
		wantRefused(t, s, clientConfig(t, bundle.CACert, c, k), "no URI SAN")
	})
	t.Run("ErrRevoked", func(t *testing.T) {
		b, err := a.RenewSite(siteA, 0)
		if err != nil {
			t.Fatal(err)
		}
		cfg := clientConfig(t, bundle.CACert, b.Cert, b.Key)
		c := client(cfg)
		if code, body, err := get(c, s, ""); err != nil || code != 200 {
			t.Fatalf("the renewed certificate before revocation: %d %q %v", code, body, err)
		}
		if err := a.RevokeSerial(b.Serial, "test"); err != nil {
			t.Fatal(err)
		}
		// The open connection: the per-request check refuses it.
		code, body, err := get(c, s, "")
		if err != nil || code != http.StatusForbidden || !strings.Contains(body, "certificate revoked") {
			t.Errorf("on the open connection after revocation: %d %q %v, want 403 certificate revoked", code, body, err)
		}
		// A new connection: the handshake refuses it.
		wantRefused(t, s, cfg, "certificate revoked: serial "+b.Serial)
		// The site's first certificate is still good.
		if code, body, err := get(client(site.ClientTLSConfig()), s, ""); err != nil || code != 200 {
			t.Fatalf("the first certificate after revoking the renewed one: %d %q %v", code, body, err)
		}
	})
}

func TestSiteIDFromCert(t *testing.T) {
	_, a := MustInit(t)
	issue := func(cn string, edit func(*x509.Certificate)) *x509.Certificate {
		_, _, c, err := a.issue(pkix.Name{CommonName: cn}, time.Hour, func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
			c.URIs = []*url.URL{SiteURI(siteA)}
			edit(c)
		})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	mustURL := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	for _, tc := range []struct {
		name string
		cert *x509.Certificate
		want string // error substring; "" for OK
	}{
		{"OK", issue(siteA, func(*x509.Certificate) {}), ""},
		{"ErrNoURI", issue(siteA, func(c *x509.Certificate) { c.URIs = nil }), "no URI SAN"},
		{"ErrTwoURIs", issue(siteA, func(c *x509.Certificate) { c.URIs = append(c.URIs, SiteURI(siteB)) }), "2 URI SANs"},
		{"ErrCNDiffers", issue(siteB, func(*x509.Certificate) {}), "common name"},
		{"ErrServerEKU", issue(siteA, func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} }), "extended key usage"},
		{"ErrBothEKUs", issue(siteA, func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}
		}), "extended key usage"},
		{"ErrNoEKU", issue(siteA, func(c *x509.Certificate) { c.ExtKeyUsage = nil }), "extended key usage"},
		{"ErrDNSName", issue(siteA, func(c *x509.Certificate) { c.DNSNames = []string{"localhost"} }), "names hosts"},
		{"ErrLowerCaseID", issue(strings.ToLower(siteA), func(c *x509.Certificate) { c.URIs = []*url.URL{SiteURI(strings.ToLower(siteA))} }), "not canonical"},
		{"ErrNotULID", issue("lobby", func(c *x509.Certificate) { c.URIs = []*url.URL{SiteURI("lobby")} }), "bad site ID"},
		{"ErrQuery", issue(siteA, func(c *x509.Certificate) { c.URIs = []*url.URL{mustURL("gatehouse://site/" + siteA + "?x=1")} }), "is not gatehouse://site/"},
		{"ErrSubPath", issue(siteA, func(c *x509.Certificate) { c.URIs = []*url.URL{mustURL("gatehouse://site/" + siteB + "/" + siteA)} }), "is not gatehouse://site/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := SiteIDFromCert(tc.cert)
			if tc.want == "" {
				if err != nil || id != siteA {
					t.Fatalf("got %q, %v; want %s", id, err, siteA)
				}
				return
			}
			if !errors.Is(err, ErrNotSiteCert) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrNotSiteCert with %q", err, tc.want)
			}
		})
	}
	t.Run("ErrCA", func(t *testing.T) {
		if _, err := SiteIDFromCert(a.CACert()); !errors.Is(err, ErrNotSiteCert) {
			t.Fatalf("err = %v, want ErrNotSiteCert", err)
		}
	})
}

func TestSiteIDFromTLS(t *testing.T) {
	dir, a := MustInit(t)
	_, b := MustAddSite(t, a, siteA)
	h := MustLoadHub(t, dir)
	pair, err := tls.X509KeyPair(b.Cert, b.Key)
	if err != nil {
		t.Fatal(err)
	}
	leaf := pair.Leaf
	verified := tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}, VerifiedChains: [][]*x509.Certificate{{leaf, a.CACert()}}}
	if id, err := h.SiteIDFromTLS(verified); err != nil || id != siteA {
		t.Fatalf("SiteIDFromTLS = %q, %v", id, err)
	}
	for _, tc := range []struct {
		name string
		cs   tls.ConnectionState
		want error
	}{
		{"ErrNoCert", tls.ConnectionState{}, ErrNoClientCert},
		{"ErrNotVerified", tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}, ErrUntrusted},
		{"ErrOtherRoot", tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}, VerifiedChains: [][]*x509.Certificate{{leaf, leaf}}}, ErrUntrusted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := h.SiteIDFromTLS(tc.cs); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("ErrExpiredSinceHandshake", func(t *testing.T) {
		later, err := LoadHub(dir, func() time.Time { return leaf.NotAfter.Add(time.Second) })
		if err != nil {
			t.Fatal(err)
		}
		if _, err := later.SiteIDFromTLS(verified); !errors.Is(err, ErrExpired) {
			t.Fatalf("err = %v, want ErrExpired", err)
		}
	})
	t.Run("ErrRevocationListUnreadable", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(dir, RevokedFile), []byte("{not json"), 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(filepath.Join(dir, RevokedFile))
		_, err := h.SiteIDFromTLS(verified)
		if !errors.Is(err, ErrRevoked) || !strings.Contains(err.Error(), "unreadable") {
			t.Fatalf("err = %v, want refused (fail closed)", err)
		}
	})
	t.Run("ErrSiteRevoked", func(t *testing.T) {
		serials, err := a.RevokeSite(siteA, "decommissioned")
		if err != nil || len(serials) != 1 || serials[0] != b.Serial {
			t.Fatalf("RevokeSite = %v, %v; want [%s]", serials, err, b.Serial)
		}
		if _, err := h.SiteIDFromTLS(verified); !errors.Is(err, ErrRevoked) {
			t.Fatalf("err = %v, want ErrRevoked", err)
		}
		if _, err := h.VerifyToken(b.Token); !errors.Is(err, ErrBadToken) {
			t.Fatalf("token after revoking the site: err = %v, want ErrBadToken", err)
		}
	})
}

func TestTokens(t *testing.T) {
	dir, a := MustInit(t)
	_, ba := MustAddSite(t, a, siteA)
	_, bb := MustAddSite(t, a, siteB)
	h := MustLoadHub(t, dir)
	if id, err := h.VerifyToken(ba.Token); err != nil || id != siteA {
		t.Fatalf("VerifyToken(A's token) = %q, %v", id, err)
	}
	if id, err := h.VerifyToken(bb.Token); err != nil || id != siteB {
		t.Fatalf("VerifyToken(B's token) = %q, %v", id, err)
	}
	secretA := ba.Token[strings.LastIndex(ba.Token, ".")+1:]
	flipped := []byte(ba.Token)
	flipped[len(flipped)-2] ^= 1
	for _, tc := range []struct{ name, token string }{
		{"ErrEmpty", ""},
		{"ErrGarbage", "hunter2"},
		{"ErrFlippedBit", string(flipped)},
		{"ErrOtherSitesSecret", "gh1." + siteB + "." + secretA},
		{"ErrUnknownSite", "gh1.01JS1TEC000000000000000000." + secretA},
		{"ErrBadPrefix", "gh2." + siteA + "." + secretA},
		{"ErrShortSecret", "gh1." + siteA + ".AAAA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if id, err := h.VerifyToken(tc.token); !errors.Is(err, ErrBadToken) {
				t.Fatalf("VerifyToken = %q, %v; want ErrBadToken", id, err)
			}
		})
	}
	t.Run("OnlyHashStored", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(dir, TokensFile))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), secretA) {
			t.Fatalf("%s holds a token secret", TokensFile)
		}
	})
	t.Run("OverTLS", func(t *testing.T) {
		s := startHub(t, h, SiteCertOrToken)
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ba.CACert)
		noCert := &tls.Config{RootCAs: pool}
		if code, body, err := get(client(noCert), s, ba.Token); err != nil || code != 200 || !strings.HasPrefix(body, siteA) {
			t.Fatalf("with A's token: %d %q %v", code, body, err)
		}
		if code, body, err := get(client(noCert), s, string(flipped)); err != nil || code != 403 || !strings.Contains(body, "bad site token") {
			t.Fatalf("with a wrong token: %d %q %v", code, body, err)
		}
		if code, body, err := get(client(noCert), s, ""); err != nil || code != 403 || !strings.Contains(body, "no site credentials") {
			t.Fatalf("with nothing: %d %q %v", code, body, err)
		}
	})
}

func TestFiles(t *testing.T) {
	dir, a := MustInit(t)
	siteDir, _ := MustAddSite(t, a, siteA)
	mode := func(p string) fs.FileMode {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode().Perm()
	}
	for _, p := range []string{
		filepath.Join(dir, CAKeyFile), filepath.Join(dir, HubKeyFile), filepath.Join(dir, TokensFile),
		filepath.Join(siteDir, SiteKeyFile), filepath.Join(siteDir, SiteCertFile), filepath.Join(siteDir, CACertFile), filepath.Join(siteDir, SiteTokenFile),
	} {
		if got := mode(p); got != 0o600 {
			t.Errorf("%s: mode %v, want 0600", p, got)
		}
	}
	if got := mode(dir); got != 0o700 {
		t.Errorf("%s: mode %v, want 0700", dir, got)
	}

	t.Run("ErrInitTwice", func(t *testing.T) {
		before, _ := os.ReadFile(filepath.Join(dir, CAKeyFile))
		_, err := Init(dir, InitOptions{Hosts: []string{"localhost"}})
		if !errors.Is(err, ErrExists) {
			t.Fatalf("second Init: err = %v, want ErrExists", err)
		}
		after, _ := os.ReadFile(filepath.Join(dir, CAKeyFile))
		if string(before) != string(after) {
			t.Fatal("the CA key changed")
		}
	})
	t.Run("ErrInitOverCAKeyAlone", func(t *testing.T) {
		d := t.TempDir()
		_ = os.WriteFile(filepath.Join(d, CAKeyFile), []byte("x"), 0o600)
		if _, err := Init(d, InitOptions{Hosts: []string{"localhost"}}); !errors.Is(err, ErrExists) {
			t.Fatalf("err = %v, want ErrExists", err)
		}
	})
	t.Run("ErrWriteDirTwice", func(t *testing.T) {
		b, err := a.RenewSite(siteA, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.WriteDir(siteDir); !errors.Is(err, ErrExists) {
			t.Fatalf("err = %v, want ErrExists", err)
		}
	})
	t.Run("ErrAddSiteTwice", func(t *testing.T) {
		if _, err := a.AddSite(siteA, "again", 0); !errors.Is(err, ErrExists) {
			t.Fatalf("err = %v, want ErrExists", err)
		}
	})
	t.Run("ErrKeyReadableByOthers", func(t *testing.T) {
		if err := os.Chmod(filepath.Join(dir, HubKeyFile), 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(filepath.Join(dir, HubKeyFile), 0o600)
		if _, err := LoadHub(dir, nil); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("LoadHub with a 0644 key: err = %v", err)
		}
	})
	t.Run("ErrNoCAKey", func(t *testing.T) {
		if err := os.Rename(filepath.Join(dir, CAKeyFile), filepath.Join(dir, "offline.key")); err != nil {
			t.Fatal(err)
		}
		defer os.Rename(filepath.Join(dir, "offline.key"), filepath.Join(dir, CAKeyFile))
		off, err := OpenAuthority(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := off.RenewSite(siteA, 0); !errors.Is(err, ErrNoCAKey) {
			t.Fatalf("RenewSite without the CA key: err = %v, want ErrNoCAKey", err)
		}
		if _, err := off.RevokeSite(siteA, "lost"); err != nil {
			t.Fatalf("RevokeSite without the CA key: %v", err)
		}
		if _, err := a.AddSite(siteA, "re-added", 0); err != nil {
			t.Fatalf("AddSite after revoking: %v", err)
		}
	})
}

// TestSiteRenewalInPlace copies a renewed certificate over the site's files
// and checks the site's client uses it from the next handshake.
func TestSiteRenewalInPlace(t *testing.T) {
	dir, a := MustInit(t)
	siteDir, first := MustAddSite(t, a, siteA)
	site, err := LoadSite(siteDir)
	if err != nil {
		t.Fatal(err)
	}
	if site.ID() != siteA || site.Token() != first.Token {
		t.Fatalf("site %q token %q", site.ID(), site.Token())
	}
	s := startHub(t, MustLoadHub(t, dir), RequireSiteCert)
	if code, _, err := get(client(site.ClientTLSConfig()), s, ""); err != nil || code != 200 {
		t.Fatalf("first certificate: %d %v", code, err)
	}
	renewed, err := a.RenewSite(siteA, 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// The documented procedure: key first, then the certificate, each
	// replaced atomically.
	if err := writeAtomic(filepath.Join(siteDir, SiteKeyFile), renewed.Key, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeAtomic(filepath.Join(siteDir, SiteCertFile), renewed.Cert, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := site.NotAfter(); err != nil || !got.Equal(renewed.NotAfter) {
		t.Fatalf("NotAfter = %v, %v; want the renewed %v", got, err, renewed.NotAfter)
	}
	if err := a.RevokeSerial(first.Serial, "superseded"); err != nil {
		t.Fatal(err)
	}
	if code, body, err := get(client(site.ClientTLSConfig()), s, ""); err != nil || code != 200 {
		t.Fatalf("renewed certificate after revoking the first: %d %q %v", code, body, err)
	}
}

// TestCANameConstraints checks that the CA's name constraints stop it from
// vouching for names other than the hub's and URIs other than sites'.
func TestCANameConstraints(t *testing.T) {
	_, a := MustInit(t)
	pool := x509.NewCertPool()
	pool.AddCert(a.CACert())
	for _, tc := range []struct {
		name string
		edit func(*x509.Certificate)
		eku  x509.ExtKeyUsage
		ok   bool
	}{
		{"OK/Localhost", func(c *x509.Certificate) { c.DNSNames = []string{"localhost"} }, x509.ExtKeyUsageServerAuth, true},
		{"OK/SiteURI", func(c *x509.Certificate) { c.URIs = []*url.URL{SiteURI(siteA)} }, x509.ExtKeyUsageClientAuth, true},
		{"ErrOtherDNSName", func(c *x509.Certificate) { c.DNSNames = []string{"bank.example"} }, x509.ExtKeyUsageServerAuth, false},
		{"ErrOtherIP", func(c *x509.Certificate) { c.IPAddresses = []net.IP{net.ParseIP("10.0.0.1")} }, x509.ExtKeyUsageServerAuth, false},
		{"ErrOtherURIHost", func(c *x509.Certificate) { c.URIs = []*url.URL{{Scheme: "spiffe", Host: "corp.example", Path: "/x"}} }, x509.ExtKeyUsageClientAuth, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, c, err := a.issue(pkix.Name{CommonName: "x"}, time.Hour, func(c *x509.Certificate) {
				c.ExtKeyUsage = []x509.ExtKeyUsage{tc.eku}
				tc.edit(c)
			})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{tc.eku}})
			if tc.ok && err != nil {
				t.Fatalf("verify: %v", err)
			}
			if !tc.ok && (err == nil || !strings.Contains(err.Error(), "not permitted") && !strings.Contains(err.Error(), "excluded")) {
				t.Fatalf("verify: err = %v, want a name-constraint violation", err)
			}
		})
	}
}

func TestInitHosts(t *testing.T) {
	for _, hosts := range [][]string{{"hub.example.com"}, {"192.0.2.7"}, {"::1", "hub.example.com"}} {
		t.Run(strings.Join(hosts, ","), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "pki")
			if _, err := Init(dir, InitOptions{Hosts: hosts}); err != nil {
				t.Fatal(err)
			}
			h := MustLoadHub(t, dir)
			leaf := h.cert.Leaf
			pool := x509.NewCertPool()
			pool.AddCert(h.ca)
			for _, host := range hosts {
				if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: host}); err != nil {
					t.Errorf("hub certificate for %s: %v", host, err)
				}
			}
		})
	}
	for _, bad := range [][]string{nil, {""}, {"https://hub"}, {"*.example.com"}, {"hub.example.com."}} {
		if _, err := Init(filepath.Join(t.TempDir(), "pki"), InitOptions{Hosts: bad}); err == nil {
			t.Errorf("Init with hosts %q succeeded", bad)
		}
	}
}

package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/cloud/pki"
)

const testSiteID = "01JS1TE0000000000000000001"

// TestCloudPKIHelp checks that every PKI verb's --help gives every flag a
// line of help.
func TestCloudPKIHelp(t *testing.T) {
	for _, tc := range []struct {
		verb  string
		flags []string
	}{
		{"pki init", []string{"pki-dir", "host", "ca-validity", "hub-validity", "config"}},
		{"site add", []string{"pki-dir", "id", "name", "out", "validity", "hub-url", "config"}},
		{"site renew", []string{"pki-dir", "id", "out", "validity", "config"}},
		{"site revoke", []string{"pki-dir", "id", "serial", "reason", "config"}},
		{"site list", []string{"pki-dir", "config"}},
	} {
		t.Run(tc.verb, func(t *testing.T) {
			args := append(append([]string{"cloud"}, strings.Fields(tc.verb)...), "--help")
			code, out, errs := run(t, args...)
			if code != 0 {
				t.Fatalf("exit code %d: %s", code, errs)
			}
			lines := strings.Split(out+errs, "\n")
			seen := map[string]bool{}
			for i, line := range lines {
				if !strings.HasPrefix(line, "  -") {
					continue
				}
				name := strings.Fields(strings.TrimPrefix(line, "  -"))[0]
				seen[name] = true
				if i+1 >= len(lines) || strings.TrimSpace(lines[i+1]) == "" || strings.HasPrefix(lines[i+1], "  -") {
					t.Errorf("flag -%s has no help text", name)
				}
			}
			for _, f := range tc.flags {
				if !seen[f] {
					t.Errorf("--help does not list -%s:\n%s", f, out+errs)
				}
			}
		})
	}
	for _, group := range []string{"pki", "site"} {
		code, out, _ := run(t, "cloud", group, "--help")
		if code != 0 || !strings.Contains(out, "Verbs:") {
			t.Errorf("cloud %s --help: exit %d\n%s", group, code, out)
		}
	}
}

func TestCloudPKIUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"ErrNoVerb", []string{"cloud", "site"}, "name a verb"},
		{"ErrUnknownVerb", []string{"cloud", "site", "explode"}, `unknown verb "site explode"`},
		{"ErrNoPKIDir", []string{"cloud", "pki", "init", "--host", "localhost"}, "--pki-dir is required"},
		{"ErrNoHost", []string{"cloud", "pki", "init", "--pki-dir", dir}, "--host is required"},
		{"ErrNoOut", []string{"cloud", "site", "add", "--pki-dir", dir, "--id", testSiteID}, "--id and --out are required"},
		{"ErrRevokeBoth", []string{"cloud", "site", "revoke", "--pki-dir", dir, "--id", testSiteID, "--serial", "ab"}, "either --id"},
		{"ErrRevokeNeither", []string{"cloud", "site", "revoke", "--pki-dir", dir}, "either --id"},
		{"ErrExtraArgs", []string{"cloud", "site", "list", "--pki-dir", dir, "extra"}, "unexpected arguments"},
		{"ErrBadValidity", []string{"cloud", "site", "add", "--pki-dir", dir, "--id", testSiteID, "--out", dir, "--validity", "-1h"}, "must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := run(t, tc.args...)
			if code != 2 || !strings.Contains(out+errs, tc.want) {
				t.Fatalf("exit %d, want 2 with %q\nstdout: %s\nstderr: %s", code, tc.want, out, errs)
			}
		})
	}
}

// TestCloudSiteCommands runs the operator's procedure in-process and
// checks that the files it writes make a working mTLS link.
func TestCloudSiteCommands(t *testing.T) {
	tmp := t.TempDir()
	pkiDir, siteDir := filepath.Join(tmp, "pki"), filepath.Join(tmp, "site")
	mustRun := func(args ...string) string {
		t.Helper()
		code, out, errs := run(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d\nstdout: %s\nstderr: %s", args, code, out, errs)
		}
		return out
	}
	out := mustRun("cloud", "pki", "init", "--pki-dir", pkiDir, "--host", "127.0.0.1,localhost")
	if !strings.Contains(out, "cloud site add") {
		t.Errorf("pki init does not say what is next:\n%s", out)
	}
	if code, _, errs := run(t, "cloud", "pki", "init", "--pki-dir", pkiDir, "--host", "localhost"); code != 1 || !strings.Contains(errs, "refusing to overwrite") {
		t.Fatalf("second pki init: exit %d: %s", code, errs)
	}

	out = mustRun("cloud", "site", "add", "--pki-dir", pkiDir, "--id", testSiteID, "--name", "Lobby HQ", "--out", siteDir, "--hub-url", "https://hub.example:8443")
	for _, want := range []string{testSiteID, "site.key", "site.token", `"hub_url": "https://hub.example:8443"`, "scp"} {
		if !strings.Contains(out, want) {
			t.Errorf("site add output lacks %q:\n%s", want, out)
		}
	}
	for _, f := range []string{pki.CACertFile, pki.SiteCertFile, pki.SiteKeyFile, pki.SiteTokenFile} {
		fi, err := os.Stat(filepath.Join(siteDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	if code, _, errs := run(t, "cloud", "site", "add", "--pki-dir", pkiDir, "--id", testSiteID, "--out", filepath.Join(tmp, "again")); code != 1 || !strings.Contains(errs, "already exists") {
		t.Fatalf("second site add: exit %d: %s", code, errs)
	}

	// The files work: a real TLS 1.3 handshake over HTTP/2.
	hubPKI, err := pki.LoadHub(pkiDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := hubPKI.Authenticate(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		fmt.Fprint(w, id)
	}))
	srv.EnableHTTP2 = true
	srv.TLS = hubPKI.ServerTLSConfig(pki.SiteCertOrToken)
	srv.StartTLS()
	defer srv.Close()
	site, err := pki.LoadSite(siteDir)
	if err != nil {
		t.Fatal(err)
	}
	get := func(token string) (int, string) {
		t.Helper()
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: site.ClientTLSConfig(), ForceAttemptHTTP2: true}}
		req, _ := http.NewRequest("GET", srv.URL, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
			c.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = nil
		}
		res, err := c.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer res.Body.Close()
		var b strings.Builder
		_, _ = fmt.Fprint(&b, res.Proto, " ")
		buf := make([]byte, 512)
		n, _ := res.Body.Read(buf)
		b.Write(buf[:n])
		return res.StatusCode, b.String()
	}
	if code, body := get(""); code != 200 || body != "HTTP/2.0 "+testSiteID {
		t.Fatalf("with the site certificate: %d %q", code, body)
	}
	if code, body := get(site.Token()); code != 200 || body != "HTTP/2.0 "+testSiteID {
		t.Fatalf("with the site token: %d %q", code, body)
	}

	out = mustRun("cloud", "site", "renew", "--pki-dir", pkiDir, "--id", testSiteID, "--out", filepath.Join(tmp, "renewed"))
	if !strings.Contains(out, "revoke the old certificate") {
		t.Errorf("site renew output:\n%s", out)
	}
	out = mustRun("cloud", "site", "list", "--pki-dir", pkiDir)
	if got := len(regexp.MustCompile(testSiteID+`\s+Lobby HQ\s+[0-9a-f]+\s+\S+\s+valid`).FindAllString(out, -1)); got != 2 {
		t.Errorf("site list shows %d valid certificates of the site, want 2:\n%s", got, out)
	}

	out = mustRun("cloud", "site", "revoke", "--pki-dir", pkiDir, "--id", testSiteID, "--reason", "test")
	if !strings.Contains(out, "2 certificate(s)") {
		t.Errorf("site revoke output:\n%s", out)
	}
	if code, body := get(""); code == 200 {
		t.Fatalf("with the revoked certificate: %d %q", code, body)
	}
	if code, body := get(site.Token()); code != http.StatusForbidden || !strings.Contains(body, "bad site token") {
		t.Fatalf("with the revoked token: %d %q", code, body)
	}
}

func TestCloudPKIConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pki.json")
	if err := os.WriteFile(path, []byte(`{"pki_dir": "/from/file", "hosts": ["hub.example"], "site_validity": "720h"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	m := &CloudMain{env: env{stdout: &syncBuffer{}, stderr: &syncBuffer{}}}
	if err := m.ParseFlags([]string{"pki", "init", "--config", path, "--pki-dir", "/from/flag"}); err != nil {
		t.Fatal(err)
	}
	c := m.pki.Config
	if c.PKIDir != "/from/flag" || len(c.Hosts) != 1 || c.Hosts[0] != "hub.example" || c.SiteValidity.String() != "720h0m0s" {
		t.Fatalf("config = %+v, want the flag's pki_dir and the file's hosts and validity", c)
	}
}

package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gatehouse/gatehouse/cloud/auth"
	"github.com/gatehouse/gatehouse/cloud/hub"
	"github.com/gatehouse/gatehouse/cloud/mail"
	"github.com/gatehouse/gatehouse/edge/node"
	visitv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/visit/v1"
)

// TestCtlVisit runs every verb of `ctl visit` against a real hub.
func TestCtlVisit(t *testing.T) {
	c, err := mail.StartCatcher("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	const key = "ctl-visit-test-host-key-0123"
	cfg := hub.DefaultConfig()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Store.Dir = filepath.Join(t.TempDir(), "store")
	cfg.Mail = mail.Config{Addr: c.Addr(), From: "visits@gatehouse.test", TLS: "none"}
	cfg.APIKeys = []auth.Key{{ID: "host", SHA256: auth.HashKey(key), Role: auth.Host}}
	h := hub.New(cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err := h.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	t.Setenv("GATEHOUSE_API_KEY", key)
	hubURL := "http://" + h.Addr()

	code, out, errs := run(t, "ctl", "visit", "invite", "--hub", hubURL, "--site", demoSiteID, "--host", "01JDEM0H0ST000000000000000",
		"--guest", "Anna Müller <anna@example.test>", "--guest", "Curie, Marie <marie@example.test>", "--escort", "--json")
	if code != 0 {
		t.Fatalf("invite: exit %d\n%s\n%s", code, out, errs)
	}
	var invited visitv1.InviteResponse
	if err := protojson.Unmarshal([]byte(out), &invited); err != nil {
		t.Fatalf("invite --json: %v\n%s", err, out)
	}
	if len(invited.GetVisits()) != 2 || invited.GetVisits()[1].GetGuest().GetGivenName() != "Marie" || invited.GetVisits()[0].GetGuest().GetFamilyName() != "Müller" {
		t.Fatalf("invited: %v", &invited)
	}
	id := invited.GetVisits()[0].GetId()
	if _, err := c.Wait(t.Context(), func(m mail.Caught) bool { return m.To[0] == "anna@example.test" }); err != nil {
		t.Fatal(err)
	}

	code, out, errs = run(t, "ctl", "visit", "list", "--hub", hubURL, "--site", demoSiteID, "--state", "invited")
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "Marie Curie") || !strings.Contains(out, "STATE") {
		t.Errorf("list: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = run(t, "ctl", "visit", "show", id, "--hub", hubURL, "--json")
	if code != 0 || !strings.Contains(out, `"VISIT_STATE_INVITED"`) {
		t.Errorf("show: exit %d\n%s\n%s", code, out, errs)
	}
	code, _, errs = run(t, "ctl", "visit", "pickup", id, "--hub", hubURL)
	if code != 1 || !strings.Contains(errs, "failed_precondition") {
		t.Errorf("pick-up before check-in: exit %d, %s", code, errs)
	}
	code, out, errs = run(t, "ctl", "visit", "checkout", id, "--hub", hubURL)
	if code != 0 || !strings.Contains(out, "checked_out") {
		t.Errorf("checkout: exit %d\n%s\n%s", code, out, errs)
	}
	t.Setenv("GATEHOUSE_API_KEY", "not-the-key-but-long-enough")
	if code, _, errs := run(t, "ctl", "visit", "list", "--hub", hubURL); code != 1 || !strings.Contains(errs, "unauthenticated") {
		t.Errorf("a wrong key: exit %d, %s", code, errs)
	}
}

func TestCtlVisitUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"ErrNoVerb", []string{"ctl", "visit"}, "name a verb"},
		{"ErrUnknownVerb", []string{"ctl", "visit", "explode"}, "unknown verb"},
		{"ErrShowNoID", []string{"ctl", "visit", "show"}, "VISIT_ID"},
		{"ErrInviteNoGuest", []string{"ctl", "visit", "invite", "--site", demoSiteID, "--host", demoSiteID}, "--guest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := run(t, tc.args...)
			if code != 2 || !strings.Contains(out+errs, tc.want) {
				t.Errorf("exit %d\n%s\n%s", code, out, errs)
			}
		})
	}
	// Every flag of `ctl visit --help` has a line of help.
	code, out, errs := run(t, "ctl", "visit", "--help")
	if code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	lines := strings.Split(out+errs, "\n")
	n := 0
	for i, line := range lines {
		if !strings.HasPrefix(line, "  -") {
			continue
		}
		n++
		if i+1 >= len(lines) || strings.TrimSpace(lines[i+1]) == "" || strings.HasPrefix(lines[i+1], "  -") {
			t.Errorf("flag %s has no help text", line)
		}
	}
	if n < 15 {
		t.Errorf("--help lists %d flags:\n%s", n, out+errs)
	}
}

// TestDemoInvitationInCaughtMail runs the demo (one node), invites a guest
// with `ctl visit invite` and the key the demo prints, and finds the
// invitation on the demo's /mail page.
func TestDemoInvitationInCaughtMail(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	m := &DemoMain{env: env{stdout: &out, stderr: testWriter{t}}}
	if err := m.ParseFlags([]string{"--http", "127.0.0.1:0", "--nodes", "1", "--log-level", "warn"}); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	m.ready = func(url string, _ []*node.Node) { ready <- url }
	done := make(chan error, 1)
	go func() { done <- errors.Join(m.Run(ctx), m.Close()) }()
	var url string
	select {
	case url = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("demo exited: %v\n%s", err, out.String())
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("demo did not start within 60 s")
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("demo stopped with %v", err)
		}
	}()
	key := regexp.MustCompile(`Hub API key: (\S+)`).FindStringSubmatch(out.String())
	if key == nil {
		t.Fatalf("the demo prints no hub API key:\n%s", out.String())
	}
	t.Setenv("GATEHOUSE_API_KEY", key[1])
	code, o, errs := run(t, "ctl", "visit", "invite", "--hub", strings.TrimSuffix(url, "/"), "--site", demoSiteID,
		"--host", "01JDEM0H0ST000000000000000", "--guest", "Anna Example <anna@example.com>")
	if code != 0 {
		t.Fatalf("ctl visit invite: exit %d\n%s\n%s", code, o, errs)
	}
	if _, err := m.mail.Wait(t.Context(), func(c mail.Caught) bool { return c.To[0] == "anna@example.com" }); err != nil {
		t.Fatal(err)
	}
	res, err := http.Get(url + "mail")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), "Your visit to") {
		t.Errorf("the invitation is not on /mail:\n%s", body)
	}
}

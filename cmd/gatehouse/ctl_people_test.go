package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gatehouse/gatehouse/cloud/auth"
	"github.com/gatehouse/gatehouse/cloud/hub"
	peoplev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1"
)

// TestCtlPeople runs `ctl people|groups|cards|import|export|logs` against a
// real hub with a store.
func TestCtlPeople(t *testing.T) {
	const key = "ctl-people-test-admin-key-0123"
	cfg := hub.DefaultConfig()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Store.Dir = filepath.Join(t.TempDir(), "store")
	cfg.APIKeys = []auth.Key{{ID: "admin", SHA256: auth.HashKey(key), Role: auth.Admin}}
	h := hub.New(cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err := h.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	hubURL := "http://" + h.Addr()
	ctl := func(args ...string) (int, string, string) {
		t.Helper()
		return run(t, append(append([]string{"ctl"}, args...), "--hub", hubURL, "--api-key", key)...)
	}

	code, out, errs := ctl("people", "create", "--kind", "access_user", "--first-name", "Ann", "--last-name", "Lee",
		"--email", "ann@example.test", "--card", "h10301:1:100", "--active", "--json")
	if code != 0 {
		t.Fatalf("create: exit %d\n%s\n%s", code, out, errs)
	}
	var ann peoplev1.Person
	if err := protojson.Unmarshal([]byte(out), &ann); err != nil || ann.GetName() != "Ann Lee" || len(ann.GetCards()) != 1 {
		t.Fatalf("create --json: %v\n%s", err, out)
	}
	code, out, errs = ctl("people", "create", "--kind", "access_user", "--name", "Bob", "--card", "h10301:1:100")
	if code != 1 || !strings.Contains(errs, "already_exists") {
		t.Errorf("duplicate card: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = ctl("people", "list", "--query", "1:100")
	if code != 0 || !strings.Contains(out, ann.GetId()) || !strings.Contains(out, "h10301:1:100") || !strings.Contains(out, "1 of 1") {
		t.Errorf("list: exit %d\n%s\n%s", code, out, errs)
	}

	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.csv")
	good := filepath.Join(dir, "good.csv")
	os.WriteFile(bad, []byte("name,email,card_number\nCid,cid@example.test,5\nDee,not-an-email,5\n"), 0o600)
	os.WriteFile(good, []byte("name,email,card_number\nCid,cid@example.test,5\nDee,dee@example.test,6\n"), 0o600)
	code, out, errs = ctl("import", bad, "--kind", "access_user")
	if code != 1 || !strings.Contains(out, "duplicate") || !strings.Contains(out, "LINE") || !strings.Contains(errs, "import rejected") {
		t.Errorf("bad import: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = ctl("import", good, "--kind", "access_user", "--enable-access")
	if code != 0 || !strings.Contains(out, "imported 2 people") || !strings.Contains(errs, "done") {
		t.Errorf("good import: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = ctl("export", "--state", "active")
	if code != 0 || strings.Count(out, "\n") != 4 || !strings.Contains(out, "Dee") {
		t.Errorf("export: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = ctl("people", "delete", ann.GetId())
	if code != 0 || !strings.Contains(out, "cards freed") {
		t.Errorf("delete: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = ctl("logs", "--json")
	if code != 0 || !strings.Contains(out, "source_available") {
		t.Errorf("logs: exit %d\n%s\n%s", code, out, errs)
	}
	code, _, errs = ctl("groups", "list")
	if code != 0 {
		t.Errorf("groups list: exit %d\n%s", code, errs)
	}
	if code, _, _ := ctl("cards", "assign", ann.GetId(), "h10301:999:1"); code != 1 {
		t.Errorf("a malformed card: exit %d", code)
	}
	if code, _, _ := run(t, "ctl", "people", "frobnicate"); code != 2 {
		t.Errorf("an unknown verb: exit %d", code)
	}
}

// Every flag of `ctl people` has a line of help.
func TestCtlPeopleHelp(t *testing.T) {
	code, out, errs := run(t, "ctl", "people", "--help")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
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
	if n < 30 {
		t.Fatalf("%d flags listed:\n%s", n, out+errs)
	}
}

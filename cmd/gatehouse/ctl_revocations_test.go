package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/auth"
	"github.com/gatehouse/gatehouse/cloud/hub"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	consolev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/console/v1"
	"github.com/gatehouse/gatehouse/replication"
)

// TestCtlRevocationsPending lists, through a real hub, a grant removal
// pending at the site it concerns (which never connected) and nothing at
// another site.
func TestCtlRevocationsPending(t *testing.T) {
	const (
		key          = "ctl-revocations-security-key"
		hostKey      = "ctl-revocations-host-key-01"
		siteA, siteB = "01JBX00000000000000000CA01", "01JBX00000000000000000CB01"
		group, grant = "01JBX00000000000000000CG01", "01JBX00000000000000000CR01"
		person       = "01JBX00000000000000000CP01"
	)
	cfg := hub.DefaultConfig()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Store.Dir = filepath.Join(t.TempDir(), "store")
	cfg.SyncSites = []hub.SyncSite{{ID: siteA, Token: "sync-token-of-site-a-ctl-0"}, {ID: siteB, Token: "sync-token-of-site-b-ctl-0"}}
	cfg.APIKeys = []auth.Key{{ID: "sec", SHA256: auth.HashKey(key), Role: auth.Security}, {ID: "host", SHA256: auth.HashKey(hostKey), Role: auth.Host}}
	h := hub.New(cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err := h.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	_, err := h.State().Write(context.Background(), func(tx *hubstate.Tx) error {
		tx.Change(replication.KindSite, siteA, replication.SetOp("name", "Harbour"))
		tx.Change(replication.KindGroup, group, replication.SetOp("site", siteA), replication.SetOp("name", "Dock staff"))
		tx.Change(replication.KindPerson, person, replication.SetOp("name", "Ada Lovelace"), replication.SetOp("kind", "occupier"))
		g := access.Grant{ID: grant, HolderID: person, GroupID: group}
		tx.Change(replication.KindGrant, grant, tx.Replica().GrantOp(g))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.State().Write(context.Background(), func(tx *hubstate.Tx) error {
		tx.Change(replication.KindGrant, grant, replication.RemoveGrantOp())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Site B acknowledged (nothing of the hub's): its last ack time shows.
	if err := h.State().RecordAck(context.Background(), siteB, replication.Vector{}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GATEHOUSE_API_KEY", key)
	hubURL := "http://" + h.Addr()

	code, out, errs := run(t, "ctl", "revocations", "pending", "--hub", hubURL)
	if code != 0 {
		t.Fatalf("pending: exit %d\n%s\n%s", code, out, errs)
	}
	t.Log("\n" + out)
	for _, want := range []string{"site " + siteA + " (Harbour)  disconnected  never acknowledged  1 pending", "grant removed", "Ada Lovelace", "Dock staff",
		"hub/priority/1", "site " + siteB + "  disconnected  last ack 20"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	code, out, errs = run(t, "ctl", "revocations", "pending", "--hub", hubURL, "--site", siteA, "--json")
	if code != 0 {
		t.Fatalf("pending --json: exit %d\n%s\n%s", code, out, errs)
	}
	var res consolev1.ListPendingRevocationsResponse
	if err := protojson.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if len(res.GetSites()) != 1 || len(res.GetSites()[0].GetRevocations()) != 1 || res.GetSites()[0].GetRevocations()[0].GetEntityId() != grant {
		t.Fatalf("--json answer: %v", &res)
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"ErrUnknownSite", []string{"--site", "01JBX00000000000000000CZ99"}, 1, "not in sync_sites"},
		{"ErrHostRole", []string{"--api-key", hostKey}, 1, "permission_denied"},
		{"ErrBadLimit", []string{"--limit", "0"}, 2, "--limit"},
		{"ErrVerb", []string{"explode"}, 2, "unknown verb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"ctl", "revocations", "pending", "--hub", hubURL}
			if tc.name == "ErrVerb" {
				args = []string{"ctl", "revocations", "explode", "--hub", hubURL}
			} else {
				args = append(args, tc.args...)
			}
			code, out, errs := run(t, args...)
			if code != tc.code || !strings.Contains(errs, tc.want) {
				t.Fatalf("exit %d, want %d; stderr lacks %q:\n%s\n%s", code, tc.code, tc.want, out, errs)
			}
		})
	}
}

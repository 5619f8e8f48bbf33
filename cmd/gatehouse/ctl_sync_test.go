package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gatehouse/gatehouse/cloud/auth"
	"github.com/gatehouse/gatehouse/cloud/hub"
	"github.com/gatehouse/gatehouse/cloud/synctest"
	consolev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/console/v1"
	"github.com/gatehouse/gatehouse/replication"
)

// TestCtlSyncDivergences lists, through a real hub, nothing on equal logs,
// then the divergence found once a site's store silently holds another
// delta under one of its sequence numbers; an unknown site is an error.
func TestCtlSyncDivergences(t *testing.T) {
	const (
		siteA, siteB = "01JBX00000000000000000DA01", "01JBX00000000000000000DB01"
		tokenA       = "sync-token-of-site-a-div-0"
		key          = "security-key-of-the-div-test"
	)
	t.Setenv("GATEHOUSE_API_KEY", key)
	cfg := hub.DefaultConfig()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Store.Dir = filepath.Join(t.TempDir(), "store")
	cfg.SyncSites = []hub.SyncSite{{ID: siteA, Token: tokenA}, {ID: siteB, Token: "sync-token-of-site-b-div-0"}}
	cfg.Sites = []hub.SiteEndpoint{{ID: siteA, Name: "Harbour", Nodes: []string{"http://127.0.0.1:1"}}}
	cfg.APIKeys = []auth.Key{{ID: "sec", SHA256: auth.HashKey(key), Role: auth.Security}}
	h := hub.New(cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err := h.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	hubURL := "http://" + h.Addr()

	site := synctest.NewSite(t, siteA, tokenA)
	site.Write(t, replication.KindSite, siteA, replication.SetOp("name", "Harbour"))
	for i := range 20 {
		site.Write(t, replication.KindZone, fmt.Sprintf("01JBX00000000000000000DZ%02d", i), replication.SetOp("site", siteA), replication.SetOp("name", fmt.Sprint("zone ", i)))
	}
	src := replication.Source{Origin: siteA, Lane: replication.LaneNormal}
	n := site.Vector()[src]
	stop := site.Start(synctest.Client(hubURL))
	site.Wait(t, "the hub's ack of the zones", func() bool { return site.Acked()[src] == n })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	code, out, errs := run(t, "ctl", "sync", "divergences", "--hub", hubURL)
	if code != 0 || !strings.Contains(out, "site "+siteA+" (Harbour)  ") || !strings.Contains(out, "site "+siteB+"  disconnected  0 divergent") ||
		strings.Count(out, "  0 divergent\n") != 2 {
		t.Fatalf("equal logs: exit %d\n%s\n%s", code, out, errs)
	}

	if err := site.Corrupt(src, 7, replication.SetOp("name", "restored from an old backup")); err != nil {
		t.Fatal(err)
	}
	stop = site.Start(synctest.Client(hubURL))
	defer stop()
	deadline := time.Now().Add(synctest.WaitTimeout)
	for {
		code, out, errs = run(t, "ctl", "sync", "divergences", "--hub", hubURL, "--site", siteA)
		if code != 0 {
			t.Fatalf("exit %d\n%s\n%s", code, out, errs)
		}
		if strings.Contains(out, "1 divergent") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for the divergence:\n%s", out)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, not synchronising on time
	}
	t.Log("\n" + out)
	for _, want := range []string{"site " + siteA + " (Harbour)  connected  1 divergent", "SOURCE", src.String() + "  7"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, siteB) {
		t.Errorf("--site %s lists %s:\n%s", siteA, siteB, out)
	}

	code, out, errs = run(t, "ctl", "sync", "divergences", "--hub", hubURL, "--json")
	if code != 0 {
		t.Fatalf("--json: exit %d\n%s\n%s", code, out, errs)
	}
	var res consolev1.ListDivergencesResponse
	if err := protojson.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if res.GetTotal() != 1 || len(res.GetSites()) != 2 || len(res.GetSites()[0].GetDivergences()) != 1 ||
		res.GetSites()[0].GetDivergences()[0].GetSeq() != 7 || res.GetSites()[0].GetDivergences()[0].GetLane() != "normal" {
		t.Fatalf("--json answer: %v", &res)
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"ErrUnknownSite", []string{"divergences", "--site", "01JBX00000000000000000DZ99"}, 1, "not one of this hub's sites"},
		{"ErrVerb", []string{"repair"}, 2, "unknown verb"},
		{"ErrNoKey", []string{"divergences", "--api-key", "env:GATEHOUSE_NO_SUCH_KEY"}, 1, "GATEHOUSE_NO_SUCH_KEY"},
		{"ErrWrongKey", []string{"divergences", "--api-key", "not-the-key-0123456789abc"}, 1, "unauthenticated"},
		{"ErrNoVerb", nil, 2, "unknown verb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{"ctl", "sync"}, tc.args...), "--hub", hubURL)
			code, out, errs := run(t, args...)
			if code != tc.code || !strings.Contains(errs, tc.want) {
				t.Fatalf("exit %d, want %d; stderr lacks %q:\n%s\n%s", code, tc.code, tc.want, out, errs)
			}
		})
	}
}

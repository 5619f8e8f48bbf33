package main

import (
	"context"
	"encoding/csv"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/auth"
	"github.com/gatehouse/gatehouse/cloud/hub"
	peoplev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1"
	"github.com/gatehouse/gatehouse/replication"
)

// TestCtlLogs runs `ctl logs` (table, --json, --csv, --result) and `ctl
// cards unknown` against a real hub holding a site's replicated events
// (committed to its state as the site's sync session does).
func TestCtlLogs(t *testing.T) {
	const key = "ctl-logs-test-admin-key-0123456"
	cfg := hub.DefaultConfig()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Store.Dir = filepath.Join(t.TempDir(), "store")
	cfg.APIKeys = []auth.Key{{ID: "admin", SHA256: auth.HashKey(key), Role: auth.Admin}}
	h := hub.New(cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err := h.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	ctl := func(args ...string) (int, string, string) {
		t.Helper()
		return run(t, append(append([]string{"ctl"}, args...), "--hub", "http://"+h.Addr(), "--api-key", key)...)
	}
	const site, door = access.ID("01JCT0000000000000000000S1"), access.ID("01JCT0000000000000000000D1")
	t0 := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	var ds []replication.Delta
	for i := range 5 {
		r := replication.EventRecord{At: t0.Add(time.Duration(i) * time.Minute), Door: door, Card: access.CardNumber(424240 + i),
			Granted: i%2 == 0, Reason: access.ReasonGranted, RequestID: "r"}
		if !r.Granted {
			r.Reason = access.ReasonUnknownCard
		}
		d, err := replication.EventDelta(string(site), uint64(i+1), r)
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	if err := h.State().Apply(context.Background(), replication.Source{Origin: string(site), Lane: replication.LaneEvents}, ds, nil); err != nil {
		t.Fatal(err)
	}

	code, out, errs := ctl("logs", "--limit", "3")
	if code != 0 || strings.Count(out, "\n") != 4 || !strings.Contains(out, "**4244") || !strings.Contains(errs, "more entries") {
		t.Errorf("logs: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = ctl("logs", "--json", "--result", "denied")
	var res peoplev1.ListAccessLogsResponse
	if err := protojson.Unmarshal([]byte(out), &res); code != 0 || err != nil || len(res.GetLogs()) != 2 || res.GetLogs()[0].GetSeq() != 4 {
		t.Errorf("logs --json --result denied: exit %d %v\n%s\n%s", code, err, out, errs)
	}
	code, out, errs = ctl("logs", "--csv", "--site", string(site))
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if code != 0 || err != nil || len(rows) != 6 || rows[0][0] != "time" || rows[1][2] != "5" {
		t.Errorf("logs --csv: exit %d %v\n%s\n%s", code, err, out, errs)
	}
	if code, _, errs := ctl("logs", "--result", "maybe"); code == 0 || !strings.Contains(errs, "want granted or denied") {
		t.Errorf("a bad --result: exit %d\n%s", code, errs)
	}
	if code, _, errs := ctl("logs", "--site", "nowhere"); code != 1 || !strings.Contains(errs, "invalid_argument") {
		t.Errorf("a bad --site: exit %d\n%s", code, errs)
	}
	code, out, errs = ctl("cards", "unknown")
	if code != 0 || !strings.Contains(out, "424243") || !strings.Contains(out, "424241") || strings.Contains(out, "424242") {
		t.Errorf("cards unknown: exit %d\n%s\n%s", code, out, errs)
	}
}

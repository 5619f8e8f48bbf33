package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/auth"
	"github.com/gatehouse/gatehouse/cloud/hub"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/replication"
)

// TestCtlCardsCapture runs `ctl cards capture` against a real hub while the
// site's taps arrive in its events lane (committed to the hub's state as
// the site's sync session does): it prints the number of a card tapped
// after it started, not the one tapped before; bad flags are refused, and
// no tap within --timeout fails.
func TestCtlCardsCapture(t *testing.T) {
	const key = "ctl-capture-test-admin-key-0123"
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
	if _, err := h.State().Write(context.Background(), func(tx *hubstate.Tx) error {
		tx.Change(replication.KindSite, string(site), replication.SetOp("name", "Site"))
		tx.Change(replication.KindDoor, string(door), replication.SetOp("site", string(site)), replication.SetOp("name", "Enrolment"))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	src := replication.Source{Origin: string(site), Lane: replication.LaneEvents}
	tap := func(card access.CardNumber) {
		t.Helper()
		d, err := replication.EventDelta(string(site), h.State().SyncVector()[src]+1,
			replication.EventRecord{At: time.Now(), Door: door, Card: card, Reason: access.ReasonUnknownCard})
		if err != nil {
			t.Fatal(err)
		}
		if err := h.State().Apply(context.Background(), src, []replication.Delta{d}, nil); err != nil {
			t.Fatal(err)
		}
	}
	tap(111) // before the call: never captured

	type result struct {
		code     int
		out, err string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errs := ctl("cards", "capture", "--site", string(site), "--door", string(door), "--timeout", "30s")
		done <- result{code, out, errs}
	}()
	// Tap until the capture answers: the call may not wait yet when the
	// first taps arrive.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var r result
wait:
	for {
		select {
		case r = <-done:
			break wait
		case <-tick.C:
			tap(4242)
		}
	}
	if r.code != 0 || r.out != "4242\n" || !strings.Contains(r.err, "held by nobody") {
		t.Fatalf("cards capture: exit %d\n%q\n%s", r.code, r.out, r.err)
	}

	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--site", string(site)}, 2, "one --door"},
		{[]string{"--site", string(site), "--door", string(door), "--timeout", "10m"}, 2, "--timeout"},
		{[]string{"--site", string(site), "--door", "01JCT0000000000000000000D2"}, 1, "not_found"},
		{[]string{"--site", string(site), "--door", string(door), "--timeout", "100ms"}, 1, "no card tapped"},
	} {
		code, _, errs := ctl(append([]string{"cards", "capture"}, c.args...)...)
		if code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("cards capture %v: exit %d\n%s", c.args, code, errs)
		}
	}
}

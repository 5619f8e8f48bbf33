package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestCheckinContract runs the check-in benchmark, shrunk, against a real
// 3-node site with the simulated kiosk and dispenser, and checks the
// output contract and that every guest was checked in.
func TestCheckinContract(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node site")
	}
	old := checkinTest
	checkinTest = &checkinParams{visits: 5, writes: 10}
	defer func() { checkinTest = old }()

	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := Default.Run(ctx, []string{"checkin"}, Options{Quick: true, Dir: t.TempDir(), Log: log}, &out); err != nil {
		t.Fatal(err)
	}
	got := map[string]Result{}
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var r Result
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if r.Bench != "checkin" || r.Unit == "" {
			t.Errorf("line %q: want bench checkin and a unit", l)
		}
		got[r.Metric] = r
	}
	for _, m := range []string{"raft_write_p50_us", "qr_to_card_p50_us", "qr_to_card_p99_us"} {
		if r, ok := got[m]; !ok || r.Value <= 0 || r.Floor <= 0 {
			t.Errorf("metric %s: %+v", m, r)
		}
	}
	if r := got["refused"]; r.Value != 0 {
		t.Errorf("%v check-ins refused", r.Value)
	}
}

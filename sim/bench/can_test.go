package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
)

// TestCANContract runs the can benchmark in a tiny quick mode and checks the
// output contract: JSON lines with every field, positive values, a floor
// for each timed metric.
func TestCANContract(t *testing.T) {
	canTest = &canParams{frames: 5000, taps: 200, warm: 20}
	defer func() { canTest = nil }()
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := Default.Run(context.Background(), []string{"can"}, Options{Quick: true, Dir: t.TempDir(), Log: log}, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	got := map[string]map[string]any{}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		for _, k := range []string{"bench", "metric", "value", "unit", "floor", "ratio"} {
			if _, ok := m[k]; !ok {
				t.Errorf("line %q lacks %q", l, k)
			}
		}
		if m["bench"] != "can" || m["value"].(float64) <= 0 {
			t.Errorf("line %q", l)
		}
		got[m["metric"].(string)] = m
	}
	for _, metric := range []string{"frames_per_s", "tap_rtt_p50_us", "tap_rtt_p99_us"} {
		m, ok := got[metric]
		if !ok {
			t.Errorf("missing metric %s:\n%s", metric, out.String())
			continue
		}
		if m["floor"].(float64) <= 0 || m["ratio"].(float64) <= 0 {
			t.Errorf("%s has no floor: %v", metric, m)
		}
	}
	x, err := canScript(0)
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := got["tap_frames"]; !ok || f["value"].(float64) != float64(canScriptFrames(x)) {
		t.Errorf("tap_frames %v, want %d", f, canScriptFrames(x))
	}
	t.Log(out.String())
}

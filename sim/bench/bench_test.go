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

func TestNewResultRatio(t *testing.T) {
	r := NewResult("x", "p99_us", 300, "us", 100)
	if got, want := r.Ratio, 3.0; got != want {
		t.Fatalf("ratio = %v, want %v", got, want)
	}
	if got := NewResult("x", "m", 5, "us", 0).Ratio; got != 0 {
		t.Fatalf("ratio without floor = %v, want 0", got)
	}
}

func TestPercentile(t *testing.T) {
	s := []time.Duration{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	if got, want := Percentile(s, 0.5), time.Duration(5); got != want {
		t.Errorf("p50 = %v, want %v", got, want)
	}
	if got, want := Percentile(s, 0.99), time.Duration(10); got != want {
		t.Errorf("p99 = %v, want %v", got, want)
	}
	if got := Percentile(nil, 0.5); got != 0 {
		t.Errorf("empty = %v", got)
	}
}

// TestFloorsContract runs the floors benchmark in quick mode and checks the
// output contract: JSON lines with every field, positive values.
func TestFloorsContract(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	res, err := Default.Run(context.Background(), []string{"floors"}, Options{Quick: true, Dir: t.TempDir(), Log: log}, &out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if got, want := len(lines), 4; got != want {
		t.Fatalf("got %d lines, want %d:\n%s", got, want, out.String())
	}
	metrics := map[string]bool{}
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
		metrics[m["metric"].(string)] = true
		if v := m["value"].(float64); v <= 0 {
			t.Errorf("line %q: value %v not positive", l, v)
		}
	}
	for _, want := range []string{"fsync_p50_us", "fsync_p99_us", "tcp_rtt_p50_us", "tcp_rtt_p99_us"} {
		if !metrics[want] {
			t.Errorf("missing metric %s", want)
		}
	}
	var md bytes.Buffer
	if err := WriteMarkdown(&md, res, true, time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), "| fsync_p99_us |") {
		t.Errorf("markdown lacks the fsync row:\n%s", md.String())
	}
}

func TestUnknownBench(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	_, err := Default.Run(context.Background(), []string{"nope"}, Options{Log: log}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "unknown benchmark") {
		t.Fatalf("err = %v, want unknown benchmark", err)
	}
}

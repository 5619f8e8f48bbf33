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

// checkContract runs the named benchmark in quick mode through Default.Run
// and checks the output contract: one JSON object per line with all six
// fields, positive values and floors, ratio = value/floor, and every
// metric in want present.
func checkContract(t *testing.T, name string, want []string) {
	t.Helper()
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	res, err := Default.Run(ctx, []string{name}, Options{Quick: true, Dir: t.TempDir(), Log: log}, &out)
	t.Logf("%s quick run took %v:\n%s", name, time.Since(start).Round(time.Millisecond), out.String())
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != len(res) {
		t.Errorf("%d lines for %d results", len(lines), len(res))
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
		if m["bench"] != name {
			t.Errorf("line %q: bench %v, want %s", l, m["bench"], name)
		}
		metric, _ := m["metric"].(string)
		if metrics[metric] {
			t.Errorf("metric %s reported twice", metric)
		}
		metrics[metric] = true
		v, _ := m["value"].(float64)
		f, _ := m["floor"].(float64)
		r, _ := m["ratio"].(float64)
		if v <= 0 || f <= 0 || r <= 0 {
			t.Errorf("line %q: value, floor and ratio must be positive", l)
		}
		if f > 0 && (r < 0.99*v/f || r > 1.01*v/f) {
			t.Errorf("line %q: ratio %v is not value/floor %v", l, r, v/f)
		}
		if u, _ := m["unit"].(string); u == "" {
			t.Errorf("line %q: empty unit", l)
		}
	}
	for _, w := range want {
		if !metrics[w] {
			t.Errorf("missing metric %s", w)
		}
	}
}

// TestWriteContract runs the write benchmark, shrunk further than quick
// mode, against a real 3-node site.
func TestWriteContract(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node site")
	}
	old := writeTest
	writeTest = &writeParams{warm: 100 * time.Millisecond, window: 400 * time.Millisecond, fencing: 300 * time.Millisecond, fsyncN: 50}
	t.Cleanup(func() { writeTest = old })
	checkContract(t, "write", []string{
		"ops_per_s_c1", "ops_per_s_c16", "ops_per_s_c64", "ops_per_s_c256", "ops_per_s_c64_follower",
		"commit_p50_us", "commit_p99_us", "fencing_commit_p50_us",
	})
}

// TestFailoverContract kills the leader of a real 3-node site once.
func TestFailoverContract(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node site and kills its leader")
	}
	old := failoverTest
	failoverTest = &failoverParams{rounds: 1, settle: 100 * time.Millisecond}
	t.Cleanup(func() { failoverTest = old })
	checkContract(t, "failover", []string{"first_write_ms_p50", "first_write_ms_max", "election_ms_p50"})
}

// TestRaftNetSender checks that the proxies tell a connection's sender by
// the first advertised address in it, and never by a prefix of another.
func TestRaftNetSender(t *testing.T) {
	rn := newRaftNet()
	rn.addrs["127.0.0.1:3887"] = "a"
	rn.addrs["127.0.0.1:38871"] = "b"
	for _, tc := range []struct {
		buf, want string
	}{
		{"\x00\x89\xa4Addr\xaf127.0.0.1:38871\xa7Entries 127.0.0.1:3887\xa0", "b"},
		{"\x00\x89\xa4Addr\xae127.0.0.1:3887\xa7Entries 127.0.0.1:38871\xa0", "a"},
		{"\x00\x89\xa4Addr\xaf127.0.0.1:38871", ""}, // may go on: read more
		{"\x00\x89\xa4Addr\xaf127.0.0.1:99999\xa7", ""},
	} {
		if got := rn.sender([]byte(tc.buf)); got != tc.want {
			t.Errorf("sender(%q) = %q, want %q", tc.buf, got, tc.want)
		}
	}
}

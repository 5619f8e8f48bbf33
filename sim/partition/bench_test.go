package partition_test

import (
	"context"
	"log/slog"
	"os"
	"testing"

	"github.com/gatehouse/gatehouse/sim/bench"
)

// longEnv, when set to 1, runs the long variants: the benchmarks' quick
// runs and the soak test (`make partition`).
const longEnv = "GATEHOUSE_PARTITION_LONG"

func long(t *testing.T) {
	t.Helper()
	if testing.Short() || os.Getenv(longEnv) != "1" {
		t.Skipf("long variant: set %s=1 (make partition)", longEnv)
	}
}

// TestBenchmarksRun runs `revoke` and `catchup` in quick mode and checks
// that each emits its metrics with a floor measured in the same run. It
// asserts nothing about speed.
func TestBenchmarksRun(t *testing.T) {
	long(t)
	for name, want := range map[string][]string{
		"revoke":  {"deny_p50_ms", "deny_p99_ms", "hub_write_p50_ms", "site_commit_p50_ms"},
		"catchup": {"converge_s_5k", "wire_bytes_5k", "site_to_hub_bytes", "hub_to_site_bytes"},
	} {
		t.Run(name, func(t *testing.T) {
			b, ok := bench.Default.Lookup(name)
			if !ok {
				t.Fatalf("benchmark %s not registered", name)
			}
			got := map[string]bench.Result{}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			err := b.Run(context.Background(), bench.Options{Quick: true, Dir: t.TempDir(), Log: log}, func(r bench.Result) {
				t.Logf("%+v", r)
				got[r.Metric] = r
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range want {
				r, ok := got[m]
				if !ok {
					t.Fatalf("no %s among %v", m, got)
				}
				if r.Bench != name || r.Value <= 0 || r.Floor <= 0 || r.Ratio <= 0 {
					t.Errorf("%s: %+v: want a positive value, floor and ratio", m, r)
				}
			}
		})
	}
}

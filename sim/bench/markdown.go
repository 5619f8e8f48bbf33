package bench

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"
)

// WriteMarkdown renders results as the BENCHMARKS.md document: one table
// per benchmark, in the order they ran, headed by the machine they ran on.
func WriteMarkdown(w io.Writer, results []Result, quick bool, at time.Time) error {
	var b strings.Builder
	b.WriteString("# Benchmarks\n\n")
	b.WriteString("Written by `make bench` (`gatehouse bench all --markdown BENCHMARKS.md`). Every metric is read\n")
	b.WriteString("against a floor measured in the same run; `ratio` is value/floor. Re-run on your own hardware\n")
	b.WriteString("before drawing conclusions: the numbers below are from one machine.\n\n")
	mode := "full"
	if quick {
		mode = "quick (indicative only)"
	}
	fmt.Fprintf(&b, "- run: %s, mode %s\n- machine: %s/%s, %d CPUs, %s\n\n",
		at.UTC().Format(time.RFC3339), mode, runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
	b.WriteString(goals)
	var current string
	for _, r := range results {
		if r.Bench != current {
			current = r.Bench
			fmt.Fprintf(&b, "\n## %s\n\n| metric | value | unit | floor | ratio |\n|---|---:|---|---:|---:|\n", current)
		}
		fmt.Fprintf(&b, "| %s | %g | %s | %g | %g |\n", r.Metric, r.Value, r.Unit, r.Floor, r.Ratio)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// goals are the targets the benchmarks are read against (DESIGN.md §7 and
// the edge issue); the tables below say where each run stands.
const goals = `## Goals

| benchmark | metric | goal |
|---|---|---|
| door | tap_p99_us | ratio ≤ 1.5 (p99 within 1.5× the broker's bare echo) |
| write | ops_per_s_c64 | ≥ 40,000 ops/s on a 3-node site |
| write | commit_p50_us | ratio ≤ 3 (within 3× one fsync) |
| failover | first_write_ms_p50 | ≤ 800 ms |
| can | tap_rtt_p99_us | close to the raw-frame floor |
| import | total_s_100k | a 100,000-row CSV validated in seconds (floor: encoding/csv reading it) |
| store | badger_commit_p50_us | close to one fsync (the hub acknowledges only what is durable) |
| revoke | deny_p99_ms | ≤ 50 ms (hub disable → deny at every node of a site, online) |
| catchup | converge_s_100k | ≤ 10 s (100,000 changes on each side of an outage) |
| catchup | wire_bytes_100k | ratio ≤ 1.5 (bytes on the wire against the deltas' raw size) |
| checkin | qr_to_card_p50_us | ratio ≤ 3 (kiosk QR scan → card encoded, against one Raft write) |
| logs | list_p99_ms_1000k | ≤ 50 ms (ListAccessLogs at 1,000,000 events) |
| people | import_total_s_100k | ≤ 10 s (a 100,000-row CSV through the hub's API, all or nothing) |
| people | search_p99_ms_100k | ≤ 50 ms (ListPeople at 100,000 people) |

All nodes of a site run in one process on this machine's two cores and one disk, with the load
generator beside them; a real site runs one node per appliance.
`

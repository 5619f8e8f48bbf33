package bench

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/gatehouse/gatehouse/edge/raftnode"
)

// siteStats holds one raftnode.BatchStats per node of a site (zero for a
// node that is down).
type siteStats []raftnode.BatchStats

// batchStats reads the batching counters of every running node.
func (s *benchSite) batchStats() siteStats {
	out := make(siteStats, len(s.nodes))
	for i, nd := range s.nodes {
		if nd != nil {
			out[i] = nd.Raft().BatchStats()
		}
	}
	return out
}

// sub returns s - o node by node.
func (s siteStats) sub(o siteStats) siteStats {
	out := make(siteStats, len(s))
	for i := range s {
		out[i] = s[i].Sub(o[i])
	}
	return out
}

// opsPerEntry is the commands per group-commit entry over every node's
// batcher (only a leader's proposes entries, and leadership may move).
func (s siteStats) opsPerEntry() float64 {
	var cmds, entries uint64
	for _, st := range s {
		cmds += st.Commands
		entries += st.Entries
	}
	if entries == 0 {
		return 0
	}
	return float64(cmds) / float64(entries)
}

// log writes the batching of one load level: the leader's entry-size
// histogram, and per node the Raft log entries per log write (one synced
// bolt transaction each) and the mean duration of a write.
func (s siteStats) log(l *slog.Logger, leader, clients int) {
	st := s[leader]
	hist := ""
	for i, n := range st.EntrySizes {
		if n > 0 {
			hist += fmt.Sprintf(" %d+:%d", 1<<i, n)
		}
	}
	attrs := []any{"clients", clients, "entries", st.Entries, "ops_per_entry", round(s.opsPerEntry()), "entry_sizes", hist}
	if st.Entries > 0 {
		attrs = append(attrs, "round_ms", round(float64(st.RoundTime)/float64(st.Entries)/float64(time.Millisecond)),
			"lingered", st.Lingered, "linger_us", round(float64(st.LingerTime)/float64(max(st.Lingered, 1))/float64(time.Microsecond)))
	}
	for i, ns := range s {
		if ns.LogWrites == 0 {
			continue
		}
		role := "follower"
		if i == leader {
			role = "leader"
		}
		attrs = append(attrs, fmt.Sprintf("node%d_%s", i+1, role),
			fmt.Sprintf("writes=%d entries_per_write=%.2f write_ms=%.2f apply_ms=%.3f", ns.LogWrites,
				float64(ns.LogEntries)/float64(ns.LogWrites),
				float64(ns.LogWriteTime)/float64(ns.LogWrites)/float64(time.Millisecond),
				float64(ns.ApplyTime)/float64(max(ns.Applied, 1))/float64(time.Millisecond)))
	}
	l.Info("write: batching", attrs...)
}

package raftnode

import (
	"math/bits"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// entryBuckets is the number of buckets of [BatchStats.EntrySizes].
const entryBuckets = 12

// BatchStats counts how well this node groups work: the commands per
// group-commit entry its batcher proposed (while leading), and the log
// entries per write of its Raft log (every node; one write is one synced
// bolt transaction). All counters grow from Open on; take two readings and
// subtract to look at an interval.
type BatchStats struct {
	// Entries and Commands count the group-commit entries this node proposed
	// and the commands in them.
	Entries  uint64
	Commands uint64
	// EntrySizes is a histogram of commands per entry: bucket i counts the
	// entries of 2^i to 2^(i+1)-1 commands (the last bucket: at least 2^11).
	EntrySizes [entryBuckets]uint64
	// LogWrites counts the writes to the Raft log, LogEntries the log entries
	// they stored (group-commit entries, membership records, Raft's own), and
	// LogWriteTime their total duration.
	LogWrites    uint64
	LogEntries   uint64
	LogWriteTime time.Duration
	// RoundTime is the total time the Entries took from being handed to
	// Raft to their callers being answered (commit and apply included).
	RoundTime time.Duration
	// Lingered counts the entries the batcher held back for callers it
	// expected (see Config.MaxLinger), LingerTime the time it held them.
	Lingered   uint64
	LingerTime time.Duration
	// Applied counts the log entries this node's state machine applied, and
	// ApplyTime the time it took.
	Applied   uint64
	ApplyTime time.Duration
}

// Sub returns s - o, counter by counter.
func (s BatchStats) Sub(o BatchStats) BatchStats {
	s.Entries -= o.Entries
	s.Commands -= o.Commands
	for i := range s.EntrySizes {
		s.EntrySizes[i] -= o.EntrySizes[i]
	}
	s.LogWrites -= o.LogWrites
	s.LogEntries -= o.LogEntries
	s.LogWriteTime -= o.LogWriteTime
	s.RoundTime -= o.RoundTime
	s.Lingered -= o.Lingered
	s.LingerTime -= o.LingerTime
	s.Applied -= o.Applied
	s.ApplyTime -= o.ApplyTime
	return s
}

// batchCounters is the live form of BatchStats.
type batchCounters struct {
	entries, commands              atomic.Uint64
	sizes                          [entryBuckets]atomic.Uint64
	logWrites, logEntries, logNano atomic.Uint64
	roundNano                      atomic.Uint64
	lingered, lingerNano           atomic.Uint64
	applied, applyNano             atomic.Uint64
}

func (c *batchCounters) entry(cmds int) {
	c.entries.Add(1)
	c.commands.Add(uint64(cmds))
	b := min(bits.Len(uint(max(cmds, 1)))-1, entryBuckets-1)
	c.sizes[b].Add(1)
}

func (c *batchCounters) snapshot() BatchStats {
	s := BatchStats{
		Entries:      c.entries.Load(),
		Commands:     c.commands.Load(),
		LogWrites:    c.logWrites.Load(),
		LogEntries:   c.logEntries.Load(),
		LogWriteTime: time.Duration(c.logNano.Load()),
		RoundTime:    time.Duration(c.roundNano.Load()),
		Lingered:     c.lingered.Load(),
		LingerTime:   time.Duration(c.lingerNano.Load()),
		Applied:      c.applied.Load(),
		ApplyTime:    time.Duration(c.applyNano.Load()),
	}
	for i := range s.EntrySizes {
		s.EntrySizes[i] = c.sizes[i].Load()
	}
	return s
}

// BatchStats returns this node's batching counters. It is safe for
// concurrent use at any time.
func (n *Node) BatchStats() BatchStats { return n.stats.snapshot() }

// countingLogStore counts the writes of the Raft log it wraps.
type countingLogStore struct {
	raft.LogStore
	c *batchCounters
}

func (s countingLogStore) StoreLog(l *raft.Log) error {
	return s.StoreLogs([]*raft.Log{l})
}

func (s countingLogStore) StoreLogs(logs []*raft.Log) error {
	start := time.Now()
	err := s.LogStore.StoreLogs(logs)
	s.c.logNano.Add(uint64(time.Since(start)))
	s.c.logWrites.Add(1)
	s.c.logEntries.Add(uint64(len(logs)))
	return err
}

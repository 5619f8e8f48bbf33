package raftnode

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"connectrpc.com/connect"
	"github.com/dgraph-io/badger/v4"

	"github.com/gatehouse/gatehouse/access"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

// Defaults for zero [Config] fields. They suit a LAN appliance of 1, 3 or
// 5 nodes; docs/edge.md ("Raft timings") gives the reasoning.
//
// A follower starts an election once it has heard nothing from the leader
// for a random time between DefaultHeartbeatTimeout and twice that (the
// leader sends heartbeats ten times per HeartbeatTimeout), but a follower
// that still hears from its leader refuses to vote, so after a leader
// crash the last survivor to time out decides: on average 5/3 of the
// heartbeat timeout, plus a few milliseconds of voting. Follower leases
// (three election timeouts) are independent of these timings: a revocation
// never counts a silent node as fenced before its lease has run out.
const (
	DefaultHeartbeatTimeout   = 200 * time.Millisecond
	DefaultElectionTimeout    = 200 * time.Millisecond
	DefaultLeaderLeaseTimeout = 200 * time.Millisecond
	DefaultCommitTimeout      = 2 * time.Millisecond
	DefaultSnapshotThreshold  = 8192
	DefaultSnapshotInterval   = 30 * time.Second
	DefaultTrailingLogs       = 10240
	DefaultSnapshotRetain     = 2
	DefaultMaxBatchCommands   = 1000
	DefaultMaxBatchBytes      = 1 << 20
	DefaultMaxInflight        = 4
	DefaultMaxLinger          = time.Millisecond
	DefaultMaxRPCsInFlight    = 1
	DefaultApplyTimeout       = 10 * time.Second
	DefaultLeaveTimeout       = 10 * time.Second
)

// logCacheEntries is how many of the newest Raft log entries each node
// keeps in memory (hashicorp/raft's LogCache, a ring by index) so that
// replication reads them without bolt. An entry holds at most
// MaxBatchBytes, so the cache holds at most 64 MiB and usually far less
// (tests may set 0: no cache).
var logCacheEntries = 64

// Defaults of the state store (Badger) for zero [Config] fields, sized for
// an appliance holding one site's state rather than Badger's own defaults
// (64 MiB memtables and a 256 MiB block cache, all on the Go heap). Up to 5
// memtables are kept, as Badger does: at rest only the one written is in
// memory, and fewer made the state machine wait for flushes under load.
// docs/edge.md ("Storage and durability") gives the measurements.
//
// The memtable size also bounds one Badger transaction (15 % of it, see
// [Applier]), so every node of a site must use the same.
const (
	DefaultStateMemTableSize   = 32 << 20
	DefaultStateNumMemtables   = 5
	DefaultStateBlockCacheSize = 64 << 20

	// minStateMemTableSize keeps 15 % of a memtable above Badger's 1 MiB
	// value threshold.
	minStateMemTableSize = 8 << 20
)

// Config configures a [Node]. Zero durations and sizes take the defaults
// above; NodeID, SiteID, DataDir, RaftAddr, APIAddr and ClusterToken are
// required. A Config is read once by [New] and not retained by reference.
type Config struct {
	// NodeID is this node's Raft server ID, unique within the site and stable
	// across restarts.
	NodeID string
	// SiteID is the origin written into the hybrid logical clock stamps the
	// leader assigns.
	SiteID string
	// DataDir holds raft.db, snapshots/ and state/. It is created if missing.
	DataDir string
	// RaftAddr is the TCP bind address of the Raft transport, e.g.
	// "10.0.0.5:7000" or "127.0.0.1:0" (tests; read the real address back with
	// [Node.RaftAddr]). It must be stable across restarts: the cluster
	// configuration records it.
	RaftAddr string
	// RaftAdvertise is the address other nodes dial when RaftAddr binds an
	// unspecified IP such as 0.0.0.0. Optional.
	RaftAdvertise string
	// APIAddr is the host:port (or URL) on which this node's
	// [Node.ClusterHandler] is served; other nodes forward to it.
	APIAddr string
	// ClusterToken is the shared secret every ClusterService call must carry
	// as "Authorization: Bearer <token>".
	ClusterToken string
	// Bootstrap makes this node the first voter of a new cluster when DataDir
	// holds no Raft state. It is ignored when state exists.
	Bootstrap bool
	// JoinAddr is the API address of any member of an existing cluster. A
	// node with no Raft state and Bootstrap unset joins through it during
	// Open.
	JoinAddr string
	// LeaveOnClose makes Close remove this node from the cluster (after
	// transferring leadership if it is the leader). Without it, Close stops
	// the node as if it had crashed and the cluster keeps counting it.
	LeaveOnClose bool

	// HeartbeatTimeout, ElectionTimeout, LeaderLeaseTimeout and CommitTimeout
	// are passed to hashicorp/raft. LeaderLeaseTimeout <= HeartbeatTimeout <=
	// ElectionTimeout is required.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// LeaseDuration is how long a follower keeps trusting its state after the
	// last contact from a leader (see [Node.LeaseValid]). Default: three
	// election timeouts.
	LeaseDuration time.Duration
	// LeaseMargin stretches every lease the leader accounts for, against
	// clocks running at slightly different rates. Default: LeaseDuration/10.
	LeaseMargin time.Duration
	// IsFencing tells which commands are fencing (revocations, disables,
	// checkouts): proposing one returns only once every voter has applied
	// it or certainly lost its lease. Nil means none is.
	IsFencing func(*raftv1.Command) bool

	// SnapshotThreshold, SnapshotInterval and TrailingLogs are passed to
	// hashicorp/raft; SnapshotRetain is how many snapshots stay on disk.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	SnapshotRetain    int

	// MaxBatchCommands and MaxBatchBytes bound one group-commit entry. A single
	// Propose call larger than either is refused with [ErrTooLarge].
	MaxBatchCommands int
	MaxBatchBytes    int
	// MaxInflight is how many entries the leader's batcher keeps proposed
	// but not yet applied (the pipeline depth, at least 1). While all are in
	// flight, new proposals queue and go out together as the next entry; a
	// lone caller always finds a free slot and pays one Raft round.
	MaxInflight int
	// MaxLinger bounds how long the batcher holds an entry back for callers
	// it has just answered to propose again (it also waits at most half an
	// entry's recent round time, and never when no caller is expected).
	MaxLinger time.Duration
	// MaxRPCsInFlight is how many AppendEntries requests the leader keeps
	// outstanding to each follower (replication pipelining, from 2 on); 1,
	// the default, sends one at a time, each with every entry appended
	// since the last, and waits for its answer.
	MaxRPCsInFlight int
	// ApplyTimeout bounds how long the leader waits to hand an entry to Raft.
	ApplyTimeout time.Duration
	// LeaveTimeout bounds leadership transfer and leave during Close.
	LeaveTimeout time.Duration

	// HTTPClient is used to reach other nodes' ClusterService; nil means a
	// plain HTTP/1.1 client. Supply one configured for TLS in production.
	HTTPClient connect.HTTPClient
	// StateMemTableSize, StateNumMemtables and StateBlockCacheSize size the
	// state store's Badger: the size of one memtable (bytes; a transaction
	// may hold at most 15 % of it, so every node of a site must use the
	// same), how many memtables may be in memory at once (the one written
	// and those waiting to be flushed) and the block cache (bytes; Badger
	// compresses its tables, which needs one). Zero takes the
	// DefaultState... constants.
	StateMemTableSize   int64
	StateNumMemtables   int
	StateBlockCacheSize int64

	// TuneBadger, if set, adjusts the Badger options before the state store
	// opens (for example a smaller MemTableSize on small appliances). It must
	// give the same MemTableSize on every node of a site.
	TuneBadger func(badger.Options) badger.Options
	// Logger receives the node's logs, Raft's and Badger's; nil discards them.
	Logger *slog.Logger
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	set(&c.HeartbeatTimeout, DefaultHeartbeatTimeout)
	set(&c.ElectionTimeout, DefaultElectionTimeout)
	set(&c.LeaderLeaseTimeout, DefaultLeaderLeaseTimeout)
	set(&c.CommitTimeout, DefaultCommitTimeout)
	set(&c.LeaseDuration, 3*c.ElectionTimeout)
	set(&c.LeaseMargin, c.LeaseDuration/10)
	set(&c.SnapshotInterval, DefaultSnapshotInterval)
	set(&c.ApplyTimeout, DefaultApplyTimeout)
	set(&c.LeaveTimeout, DefaultLeaveTimeout)
	set(&c.MaxLinger, DefaultMaxLinger)
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = DefaultTrailingLogs
	}
	if c.SnapshotRetain == 0 {
		c.SnapshotRetain = DefaultSnapshotRetain
	}
	if c.MaxBatchCommands == 0 {
		c.MaxBatchCommands = DefaultMaxBatchCommands
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = DefaultMaxInflight
	}
	if c.MaxRPCsInFlight == 0 {
		c.MaxRPCsInFlight = DefaultMaxRPCsInFlight
	}
	if c.StateMemTableSize == 0 {
		c.StateMemTableSize = DefaultStateMemTableSize
	}
	if c.StateNumMemtables == 0 {
		c.StateNumMemtables = DefaultStateNumMemtables
	}
	if c.StateBlockCacheSize == 0 {
		c.StateBlockCacheSize = DefaultStateBlockCacheSize
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every missing or inconsistent field of c (after defaults)
// as one error with code access.Invalid; it returns nil when c is usable.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	req := func(v, name string) {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s is required", name))
		}
	}
	req(c.NodeID, "NodeID")
	req(c.SiteID, "SiteID")
	req(c.DataDir, "DataDir")
	req(c.RaftAddr, "RaftAddr")
	req(c.APIAddr, "APIAddr")
	req(c.ClusterToken, "ClusterToken")
	if c.Bootstrap && c.JoinAddr != "" {
		errs = append(errs, errors.New("Bootstrap and JoinAddr are exclusive"))
	}
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		errs = append(errs, errors.New("LeaderLeaseTimeout must not exceed HeartbeatTimeout"))
	}
	if c.HeartbeatTimeout > c.ElectionTimeout {
		errs = append(errs, errors.New("HeartbeatTimeout must not exceed ElectionTimeout"))
	}
	if c.MaxBatchCommands < 0 || c.MaxBatchBytes < 0 || c.SnapshotRetain < 0 || c.MaxInflight < 0 || c.MaxRPCsInFlight < 0 {
		errs = append(errs, errors.New("MaxBatchCommands, MaxBatchBytes, MaxInflight, MaxRPCsInFlight and SnapshotRetain must not be negative"))
	}
	// Badger refuses a transaction limit (15 % of a memtable) below its
	// largest value kept in the LSM tree (1 MiB).
	if c.StateMemTableSize < minStateMemTableSize {
		errs = append(errs, fmt.Errorf("StateMemTableSize must be at least %d MiB", minStateMemTableSize>>20))
	}
	if c.StateNumMemtables < 1 || c.StateBlockCacheSize < 1 {
		errs = append(errs, errors.New("StateNumMemtables and StateBlockCacheSize must be positive"))
	}
	if len(errs) > 0 {
		return access.Errorf(access.Invalid, "raftnode: invalid config: %w", errors.Join(errs...))
	}
	return nil
}

package raftnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1/edgev1connect"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

// Node lifecycle states.
const (
	stateNew int32 = iota
	stateOpening
	stateOpen
	stateClosed
)

// Node is one member of a site's Raft cluster: it owns the Raft log, the
// Badger state and the group-commit batcher, and serves the ClusterService.
// Create it with [New], start it with [Node.Open], stop it with [Node.Close].
// After Open returns, all methods are safe for concurrent use.
type Node struct {
	cfg     Config
	log     *slog.Logger
	applier Applier
	clock   *hlc

	// Set by Open, read-only afterwards.
	db       *badger.DB
	fsm      *fsm
	logStore *raftboltdb.BoltStore
	snaps    *raft.FileSnapshotStore
	trans    *raft.NetworkTransport
	pipes    *pipeTransport // trans with guarded replication pipelines (transport.go)
	raft     *raft.Raft
	// started is raft once NewRaft has returned: the FSM's callbacks
	// (afterEntry) may run during NewRaft, while it replays the log, and
	// must not read the raft field Open is about to write.
	started  atomic.Pointer[raft.Raft]
	raftAddr string

	state       atomic.Int32
	stopping    chan struct{} // closed when Close starts: no new proposals
	raftDown    chan struct{} // closed once Raft has shut down
	batcherDone chan struct{} // closed when the batcher has failed every queued proposal
	local       queue         // proposals for this node's group commit, when leading
	fwd         queue         // proposals to forward to the leader (forward.go)
	fwdDone     chan struct{} // closed when the forwarder has failed every queued proposal
	inflight    chan *pendingEntry
	leaseKick   chan struct{}
	wg          sync.WaitGroup
	stats       batchCounters

	lastVerified atomic.Int64 // UnixNano at which the last successful VerifyLeader started

	// Leader changes, for prompt retries (retry.go).
	leader   leaderNews
	observer *raft.Observer

	// Follower lease and leader fencing (lease.go).
	epoch      time.Time    // monotonic origin for leaseUntil
	leaseUntil atomic.Int64 // follower lease end, nanoseconds after epoch; 0 = none
	leases     leaseBook    // leader's record of follower leases
	renewKick  chan struct{}

	closeOnce sync.Once
	closeErr  error

	httpClient connect.HTTPClient
	clientsMu  sync.Mutex
	clients    map[string]edgev1connect.ClusterServiceClient
}

// New returns a node for cfg (see [Config]) that applies committed commands
// with applier. It validates cfg and touches nothing on disk or network; the
// error is an access.Invalid error describing the bad fields.
func New(cfg Config, applier Applier) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if applier == nil {
		return nil, access.Errorf(access.Invalid, "raftnode: applier is required")
	}
	cfg = cfg.withDefaults()
	n := &Node{
		cfg:         cfg,
		log:         cfg.Logger.With("node", cfg.NodeID, "site", cfg.SiteID),
		applier:     applier,
		clock:       newHLC(cfg.SiteID, nil),
		stopping:    make(chan struct{}),
		raftDown:    make(chan struct{}),
		batcherDone: make(chan struct{}),
		fwdDone:     make(chan struct{}),
		inflight:    make(chan *pendingEntry, cfg.MaxInflight),
		leaseKick:   make(chan struct{}, 1),
		renewKick:   make(chan struct{}, 1),
		epoch:       time.Now(),
		httpClient:  cfg.HTTPClient,
		clients:     map[string]edgev1connect.ClusterServiceClient{},
	}
	n.leader.init()
	n.local.init(cfg.MaxInflight)
	n.fwd.init(cfg.MaxInflight)
	if n.httpClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		// Keep a connection per concurrent call to the leader (forwards,
		// lease renewals) instead of the default two, which would open and
		// close connections under load.
		tr.MaxIdleConnsPerHost = 4 * cfg.MaxInflight
		n.httpClient = &http.Client{Transport: tr}
	}
	return n, nil
}

// Open opens the stores under DataDir, brings Badger up to the newest local
// snapshot if it is behind, calls Applier.Load, starts Raft on RaftAddr and,
// for a new node, bootstraps the cluster (Bootstrap) or joins it through
// JoinAddr, retrying until ctx ends. The ClusterHandler may be served before
// Open; until Open returns it answers FailedPrecondition (nothing done). Open may be called once;
// on error everything it opened is closed again and the node cannot be
// reopened (make a new one). Errors are wrapped with context; a join that
// ran out of time wraps [ErrNoLeader].
func (n *Node) Open(ctx context.Context) error {
	if !n.state.CompareAndSwap(stateNew, stateOpening) {
		return fmt.Errorf("raftnode: open: %w", ErrClosed)
	}
	if err := n.open(ctx); err != nil {
		n.state.Store(stateClosed)
		close(n.stopping)
		if n.raft != nil {
			f := n.raft.Shutdown()
			n.pipes.closePipelines()
			_ = f.Error()
		}
		close(n.raftDown)
		if n.trans != nil {
			_ = n.trans.Close()
		}
		n.wg.Wait()
		if cerr := n.closeStores(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return err
	}
	n.state.Store(stateOpen)
	n.log.Info("raft node open", "raft_addr", n.raftAddr, "api_addr", n.cfg.APIAddr)
	return nil
}

func (n *Node) open(ctx context.Context) error {
	cfg := n.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("raftnode: create data dir: %w", err)
	}

	// State machine store. SyncWrites stays off: the Raft log is the
	// durable record (see the package doc).
	opts := badger.DefaultOptions(filepath.Join(cfg.DataDir, "state")).
		WithLogger(badgerLogger{n.log}).
		WithSyncWrites(false).
		WithDetectConflicts(false).
		WithMemTableSize(cfg.StateMemTableSize).
		WithNumMemtables(cfg.StateNumMemtables).
		WithBlockCacheSize(cfg.StateBlockCacheSize)
	if cfg.TuneBadger != nil {
		opts = cfg.TuneBadger(opts)
	}
	db, err := badger.Open(opts)
	if err != nil {
		return fmt.Errorf("raftnode: open state store: %w", err)
	}
	n.db = db
	n.fsm = newFSM(db, n.applier, n.clock, n.log)
	n.fsm.afterEntry = n.afterEntry
	n.fsm.stats = &n.stats

	logStore, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.DataDir, "raft.db")})
	if err != nil {
		return fmt.Errorf("raftnode: open raft log: %w", err)
	}
	n.logStore = logStore
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, cfg.SnapshotRetain, newHCLog(n.log, "snapshot"))
	if err != nil {
		return fmt.Errorf("raftnode: open snapshot store: %w", err)
	}
	n.snaps = snaps

	hasState, err := raft.HasExistingState(logStore, logStore, snaps)
	if err != nil {
		return fmt.Errorf("raftnode: inspect raft state: %w", err)
	}
	if err := n.recoverState(hasState); err != nil {
		return err
	}
	if err := n.applier.Load(db); err != nil {
		return fmt.Errorf("raftnode: applier load: %w", err)
	}

	var advertise net.Addr
	if cfg.RaftAdvertise != "" {
		if advertise, err = net.ResolveTCPAddr("tcp", cfg.RaftAdvertise); err != nil {
			return fmt.Errorf("raftnode: raft advertise address: %w", err)
		}
	}
	trans, err := raft.NewTCPTransportWithConfig(cfg.RaftAddr, advertise, &raft.NetworkTransportConfig{
		Logger:  newHCLog(n.log, "raft-net"),
		MaxPool: 3,
		Timeout: transportTimeout,
		// Pipelined replication (1 = none); pipeTransport keeps a stuck
		// pipeline from hanging replication and Shutdown.
		MaxRPCsInFlight: cfg.MaxRPCsInFlight,
	})
	if err != nil {
		return fmt.Errorf("raftnode: raft transport on %s: %w", cfg.RaftAddr, err)
	}
	n.trans = trans
	n.pipes = newPipeTransport(trans, transportTimeout)
	n.raftAddr = string(trans.LocalAddr())

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	rc.BatchApplyCh = true
	// Badger already holds the state (recoverState made sure of it); Raft
	// only has to replay the log above the snapshot, and the FSM skips what
	// Badger has.
	rc.NoSnapshotRestoreOnStart = true
	rc.Logger = newHCLog(n.log, "raft")
	// The newest entries stay in memory: the leader reads the entry before
	// each AppendEntries it sends (the last one when idle, every
	// CommitTimeout), and decoding it from bolt each time cost an idle
	// site a tenth of a core (docs/edge.md, "Door taps").
	var logs raft.LogStore = countingLogStore{LogStore: logStore, c: &n.stats}
	if logCacheEntries > 0 {
		if logs, err = raft.NewLogCache(logCacheEntries, logs); err != nil {
			return fmt.Errorf("raftnode: log cache: %w", err)
		}
	}
	r, err := raft.NewRaft(rc, n.fsm, logs, logStore, snaps, n.pipes)
	if err != nil {
		return fmt.Errorf("raftnode: start raft: %w", err)
	}
	n.raft = r
	n.started.Store(r)
	obs := make(chan raft.Observation, 16)
	n.observer = raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	r.RegisterObserver(n.observer)
	n.wg.Add(1)
	go n.runLeaderObserver(obs)

	if cfg.Bootstrap && !hasState {
		f := r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter, ID: rc.LocalID, Address: trans.LocalAddr(),
		}}})
		if err := f.Error(); err != nil {
			return fmt.Errorf("raftnode: bootstrap: %w", err)
		}
	}

	n.wg.Add(6)
	go n.runBatcher()
	go n.runForwarder()
	go n.runCompleter()
	go n.runLeaderWatch()
	go n.runLeaseVerifier()
	go n.runLeaseRenewer()

	if cfg.JoinAddr != "" && !hasState {
		if err := n.joinVia(ctx, cfg.JoinAddr); err != nil {
			return err
		}
	}
	return nil
}

// recoverState makes Badger at least as new as the newest local snapshot:
// after a power loss Badger may have lost writes the compacted log no longer
// holds, and an interrupted restore leaves its marker behind.
func (n *Node) recoverState(hasRaftState bool) error {
	applied, restoring, err := readState(n.db)
	if err != nil {
		return err
	}
	if !hasRaftState && applied > 0 {
		return fmt.Errorf("raftnode: state store is at index %d but the raft log is empty; refusing to start (remove %s to rebuild from the cluster)",
			applied, filepath.Join(n.cfg.DataDir, "state"))
	}
	snaps, err := n.snaps.List()
	if err != nil {
		return fmt.Errorf("raftnode: list snapshots: %w", err)
	}
	switch {
	case len(snaps) > 0 && (restoring || snaps[0].Index > applied):
		n.log.Info("restoring state from local snapshot", "snapshot", snaps[0].ID, "snapshot_index", snaps[0].Index, "applied", applied, "interrupted_restore", restoring)
		_, rc, err := n.snaps.Open(snaps[0].ID)
		if err != nil {
			return fmt.Errorf("raftnode: open snapshot %s: %w", snaps[0].ID, err)
		}
		err = n.fsm.restoreFrom(rc)
		_ = rc.Close()
		if err != nil {
			return fmt.Errorf("raftnode: restore snapshot %s: %w", snaps[0].ID, err)
		}
		// The FSM is not running yet: a failure recorded by the restore
		// attempt has been returned above, and success clears nothing.
	case restoring:
		// No snapshot to restore from, so the log still starts at index 1.
		n.log.Warn("interrupted restore without a local snapshot; rebuilding state from the log")
		if err := n.db.DropAll(); err != nil {
			return fmt.Errorf("raftnode: drop state: %w", err)
		}
	}
	if err := n.fsm.loadState(); err != nil {
		return err
	}
	n.log.Info("state store ready", "applied", n.fsm.applied.Load())
	return nil
}

// Close stops the node in this order: stop accepting proposals (queued ones
// fail with [ErrClosed]); if LeaveOnClose, transfer leadership (when leader)
// and ask the leader to remove this node; shut Raft down (in-flight proposals
// fail with [ErrIndeterminate]); close the transport; wait for the node's
// goroutines; close the Raft log; close Badger last. Close is idempotent and
// safe to call concurrently; every call returns the first call's result,
// which joins the errors of the steps that failed (the later steps still
// run).
func (n *Node) Close() error {
	n.closeOnce.Do(func() { n.closeErr = n.close() })
	return n.closeErr
}

func (n *Node) close() error {
	prev := n.state.Swap(stateClosed)
	if prev != stateOpen {
		// Never opened, or Open failed and cleaned up after itself.
		return nil
	}
	var errs []error
	// 1. No new proposals.
	close(n.stopping)
	// 2. Leave the cluster (transferring leadership first), or, staying a
	// member, hand leadership over so the site does not wait out an
	// election timeout.
	if n.cfg.LeaveOnClose {
		if err := n.leaveOnClose(); err != nil {
			errs = append(errs, fmt.Errorf("raftnode: leave: %w", err))
		}
	} else {
		n.stepDownOnClose()
	}
	// 3. Raft, which waits for its own goroutines (snapshot persists
	// included) and closes the transport it was given. Its replication
	// pipelines are closed as soon as it is told to stop, so that no
	// replication goroutine stays blocked in one (transport.go).
	f := n.raft.Shutdown()
	n.pipes.closePipelines()
	if err := f.Error(); err != nil {
		errs = append(errs, fmt.Errorf("raftnode: raft shutdown: %w", err))
	}
	close(n.raftDown)
	// 4. Transport (idempotent if Raft already closed it).
	if err := n.trans.Close(); err != nil {
		errs = append(errs, fmt.Errorf("raftnode: close transport: %w", err))
	}
	n.wg.Wait()
	if c, ok := n.httpClient.(*http.Client); ok && n.cfg.HTTPClient == nil {
		c.CloseIdleConnections()
	}
	// 5. Stores: the log, then Badger last.
	if err := n.closeStores(); err != nil {
		errs = append(errs, err)
	}
	n.log.Info("raft node closed")
	return errors.Join(errs...)
}

// closeStores closes the bolt log and Badger, waiting for View callers.
func (n *Node) closeStores() error {
	var errs []error
	if n.logStore != nil {
		if err := n.logStore.Close(); err != nil {
			errs = append(errs, fmt.Errorf("raftnode: close raft log: %w", err))
		}
	}
	if n.db != nil {
		n.fsm.restoreMu.Lock()
		err := n.db.Close()
		n.fsm.restoreMu.Unlock()
		if err != nil {
			errs = append(errs, fmt.Errorf("raftnode: close state store: %w", err))
		}
	}
	return errors.Join(errs...)
}

// leaveOnClose transfers leadership away if this node leads, then asks the
// leader to remove this node. A node that is the only voter stays.
// stepDownOnClose transfers leadership when this node leads and has other
// voters; a failure only costs the others an election.
func (n *Node) stepDownOnClose() {
	if n.raft.State() != raft.Leader || len(n.otherVoters()) == 0 {
		return
	}
	done := make(chan error, 1)
	go func() { done <- n.await(n.raft.LeadershipTransfer()) }()
	select {
	case err := <-done:
		if err != nil {
			n.log.Warn("leadership transfer on close failed", "err", err)
		}
	case <-time.After(n.cfg.LeaveTimeout):
		n.log.Warn("leadership transfer on close timed out")
	}
}

func (n *Node) leaveOnClose() error {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.LeaveTimeout)
	defer cancel()
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	others := 0
	for _, s := range cf.Configuration().Servers {
		if s.ID != raft.ServerID(n.cfg.NodeID) && s.Suffrage == raft.Voter {
			others++
		}
	}
	if others == 0 {
		return nil
	}
	if n.raft.State() == raft.Leader {
		if err := n.await(n.raft.LeadershipTransfer()); err != nil {
			n.log.Warn("leadership transfer failed; removing self as leader", "err", err)
		}
	}
	_, err := n.leave(ctx, n.cfg.NodeID, false)
	return err
}

// RaftAddr returns the address the Raft transport listens on (the bound
// address when RaftAddr asked for port 0). It is empty before Open.
func (n *Node) RaftAddr() string { return n.raftAddr }

// APIAddr returns the configured API address of this node.
func (n *Node) APIAddr() string { return n.cfg.APIAddr }

func (n *Node) isOpen() bool { return n.state.Load() == stateOpen }

// State is a node's Raft role.
type State string

// The node states reported by [Node.Status].
const (
	StateLeader    State = "leader"
	StateFollower  State = "follower"
	StateCandidate State = "candidate"
	StateShutdown  State = "shutdown"
)

// Member is one server of the cluster configuration, with the API address
// from its membership record (empty if none was recorded).
type Member struct {
	ID       string
	RaftAddr string
	APIAddr  string
	Voter    bool
}

// Status is a point-in-time view of a node. Fields are read one after the
// other, not atomically.
type Status struct {
	NodeID        string
	State         State
	LeaderID      string
	LeaderAPIAddr string
	// AppliedIndex is the highest log index the state machine has processed.
	AppliedIndex uint64
	CommitIndex  uint64
	LastIndex    uint64
	Term         uint64
	Members      []Member
}

// Status returns the node's current view of itself and the cluster. It never
// blocks on the network and is safe to call at any time, also before Open and
// after Close (State is then "shutdown").
func (n *Node) Status() Status {
	st := Status{NodeID: n.cfg.NodeID, State: StateShutdown}
	if n.state.Load() != stateOpen || n.raft == nil {
		if n.fsm != nil {
			st.AppliedIndex = n.fsm.wm.get()
		}
		return st
	}
	switch n.raft.State() {
	case raft.Leader:
		st.State = StateLeader
	case raft.Follower:
		st.State = StateFollower
	case raft.Candidate:
		st.State = StateCandidate
	}
	_, id := n.raft.LeaderWithID()
	st.LeaderID = string(id)
	if m, ok := n.fsm.member(st.LeaderID); ok {
		st.LeaderAPIAddr = m.APIAddr
	}
	st.AppliedIndex = n.fsm.wm.get()
	st.CommitIndex = n.raft.CommitIndex()
	st.LastIndex = n.raft.LastIndex()
	st.Term = n.raft.CurrentTerm()
	if cf := n.raft.GetConfiguration(); cf.Error() == nil {
		for _, s := range cf.Configuration().Servers {
			m := Member{ID: string(s.ID), RaftAddr: string(s.Address), Voter: s.Suffrage == raft.Voter}
			if rec, ok := n.fsm.member(m.ID); ok {
				m.APIAddr = rec.APIAddr
			}
			st.Members = append(st.Members, m)
		}
	}
	return st
}

// WaitApplied blocks until the state machine has processed the log through
// index (entries, membership records and configuration changes all count),
// ctx ends (the ctx error, wrapped) or the node closes ([ErrClosed]). Waiters
// are woken by each apply, not by polling. It is safe for concurrent use.
func (n *Node) WaitApplied(ctx context.Context, index uint64) error {
	if n.fsm == nil {
		return ErrClosed
	}
	return n.fsm.wm.wait(ctx, index, n.stopping)
}

// View runs fn in a read-only Badger transaction on the node's state. It
// holds off snapshot restores while fn runs (Badger must not be read while
// its content is dropped), so fn should be short and must not wait for the
// log (Propose, WaitApplied): a pending restore would wait for fn. It returns
// [ErrClosed] when the node is not open, or fn's error. Safe for concurrent
// use; readers that bypass View (holding their own *badger.DB) are not
// protected against a restore.
func (n *Node) View(fn func(txn *badger.Txn) error) error {
	if n.fsm == nil {
		return ErrClosed
	}
	n.fsm.restoreMu.RLock()
	defer n.fsm.restoreMu.RUnlock()
	if n.state.Load() != stateOpen {
		return ErrClosed
	}
	return n.db.View(fn)
}

// LastLeaderContact returns when this node last heard from a leader: now
// when it is the leader itself, Raft's last contact on a follower or
// candidate, and the zero time if never or when the node is not open. It is
// safe for concurrent use.
func (n *Node) LastLeaderContact() time.Time {
	if !n.isOpen() {
		return time.Time{}
	}
	if n.raft.State() == raft.Leader {
		return time.Now()
	}
	return n.raft.LastContact()
}

// LeaseValid reports whether this node may still trust its applied state to
// decide on behalf of the site at time now. It is the seam for the
// revocation-safety rule of DESIGN.md §5: a node whose lease has run out
// stops granting online and applies the offline rule, and the leader may
// treat an unresponsive node as fenced once that node's lease has certainly
// run out.
//
//   - On the leader: true if a quorum confirmed its leadership (raft
//     VerifyLeader, re-run every LeaseDuration/4 in the background and right
//     after winning an election) less than LeaseDuration before now.
//   - On a follower or candidate: true if the last contact from a leader is
//     less than LeaseDuration before now.
//
// It never blocks and is safe for concurrent use; it is false when the node
// is not open.
func (n *Node) LeaseValid(now time.Time) bool {
	if !n.isOpen() {
		return false
	}
	switch n.raft.State() {
	case raft.Leader:
		v := n.lastVerified.Load()
		return v != 0 && now.Sub(time.Unix(0, v)) < n.cfg.LeaseDuration
	case raft.Follower, raft.Candidate:
		return n.followerLeaseValid(now)
	default:
		return false
	}
}

// runLeaderWatch reacts to leadership changes: a new leader resets its lease,
// proposes an empty entry (so followers' applied index reaches the term's
// first index, which hashicorp/raft's no-op does not deliver to the FSM) and
// makes sure its own membership record is current.
func (n *Node) runLeaderWatch() {
	defer n.wg.Done()
	for {
		select {
		case <-n.stopping:
			return
		case leader := <-n.raft.LeaderCh():
			n.lastVerified.Store(0)
			if !leader {
				continue
			}
			n.leases.ensure(n.raft.CurrentTerm(), time.Now(), n.raft.LastIndex())
			n.log.Info("became leader", "term", n.raft.CurrentTerm())
			select {
			case n.leaseKick <- struct{}{}:
			default:
			}
			data, err := encodeEntry(&raftv1.Entry{Version: entryVersion})
			if err == nil {
				if err := n.await(n.raft.Apply(data, n.cfg.ApplyTimeout)); err != nil {
					n.log.Debug("term start entry", "err", err)
				}
			}
			rec, ok := n.fsm.member(n.cfg.NodeID)
			if !ok || rec.Removed || rec.APIAddr != n.cfg.APIAddr || rec.RaftAddr != n.raftAddr {
				if _, err := n.applyMember(memberRecord{NodeID: n.cfg.NodeID, RaftAddr: n.raftAddr, APIAddr: n.cfg.APIAddr}); err != nil {
					n.log.Warn("record own membership", "err", err)
				}
			}
		}
	}
}

// runLeaseVerifier keeps the leader's lease fresh by running VerifyLeader
// every LeaseDuration/4 while this node leads.
func (n *Node) runLeaseVerifier() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.LeaseDuration / 4)
	defer t.Stop()
	for {
		select {
		case <-n.stopping:
			return
		case <-t.C:
		case <-n.leaseKick:
		}
		if n.raft.State() != raft.Leader {
			continue
		}
		start := time.Now()
		if err := n.await(n.raft.VerifyLeader()); err == nil {
			n.lastVerified.Store(start.UnixNano())
		}
	}
}

// mapRaftErr maps hashicorp/raft errors to this package's sentinels.
func mapRaftErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress),
		errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrAbortedByRestore),
		errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %w", ErrIndeterminate, err)
	default:
		return &access.Error{Code: access.Internal, Op: "raftnode", Err: err}
	}
}

// applyMember commits a membership record through the log and returns its
// index.
func (n *Node) applyMember(m memberRecord) (uint64, error) {
	data, err := encodeMember(m)
	if err != nil {
		return 0, err
	}
	f := n.raft.Apply(data, n.cfg.ApplyTimeout)
	if err := n.await(f); err != nil {
		return 0, mapRaftErr(err)
	}
	if res, ok := f.Response().(*entryResult); ok && res.err != nil {
		return 0, res.err
	}
	return f.Index(), nil
}

// await returns f.Error(), or raft.ErrRaftShutdown once Raft has shut down.
// hashicorp/raft never answers a future that was still queued in its
// buffered apply, verify or FSM channels when it shut down, and such futures
// have no shutdown channel of their own; the goroutine waiting on one is then
// abandoned (at most a few per node, only at Close).
func (n *Node) await(f raft.Future) error {
	ch := make(chan error, 1)
	go func() { ch <- f.Error() }()
	select {
	case err := <-ch:
		return err
	case <-n.raftDown:
		select {
		case err := <-ch:
			return err
		default:
			return raft.ErrRaftShutdown
		}
	}
}

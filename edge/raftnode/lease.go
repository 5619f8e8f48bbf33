package raftnode

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/raft"

	edgev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

// Follower leases and fencing (DESIGN.md §5).
//
// Every node decides taps from its own applied state, so a revocation is
// safe to acknowledge only when no node can still grant from a state that
// predates it. A follower therefore holds a lease that the leader renews on
// request (RenewLease): the follower notes its local monotonic time t0
// before asking, and a grant makes its lease valid until t0 + LeaseDuration.
// Because t0 precedes the leader's handling of the request, the lease ends
// no later than the leader's grant time + LeaseDuration.
//
// The leader grants only to a follower whose applied index has reached the
// fence: the highest index of a fencing entry (a revocation, disable or
// checkout: Config.IsFencing) it has committed. Proposing a fencing command
// returns only after fencing: for every other voter, either the voter has
// reported applying the entry, or the lease the voter may hold has
// certainly run out. That is the later of lastGrant + LeaseDuration (grants
// of this leader) and leaderSince + 2·LeaseDuration (grants of an earlier
// leader, which granted only while its own verified lease, at most
// LeaseDuration old, was valid, and was deposed before this node won its
// election), each stretched by LeaseMargin against clock-rate drift.
//
// A leader's own lease is its verified leadership (see LeaseValid); it
// applies an entry before answering its proposer, so it needs no report.

// leaseBook is the leader's record of follower leases for its current term.
type leaseBook struct {
	mu      sync.Mutex
	term    uint64
	since   time.Time // when this node became leader of term
	fence   uint64
	nodes   map[string]*leaseEntry
	changed chan struct{} // closed and replaced whenever a report arrives
}

type leaseEntry struct {
	applied   uint64
	lastGrant time.Time
}

// ensure starts a new book when term is not the book's term. Whoever first
// notices the new term (the leader watch, a renewal or a fence) starts it;
// a later start only makes since later, which is the safe direction.
//
// A new term's fence starts at the leader's last log index: the new leader
// does not know which entries its predecessor fenced, so a follower gets a
// lease from it only once it has applied everything the leader holds.
func (b *leaseBook) ensure(term uint64, now time.Time, lastIndex uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.term == term && b.nodes != nil {
		return
	}
	b.term, b.since, b.fence = term, now, lastIndex
	b.nodes = map[string]*leaseEntry{}
	b.broadcastLocked()
}

func (b *leaseBook) broadcastLocked() {
	if b.changed != nil {
		close(b.changed)
	}
	b.changed = make(chan struct{})
}

// renew records a follower's report and decides its renewal.
func (b *leaseBook) renew(node string, applied uint64, now time.Time) (granted bool, fence uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.nodes[node]
	if e == nil {
		e = &leaseEntry{}
		b.nodes[node] = e
	}
	e.applied = max(e.applied, applied)
	granted = applied >= b.fence
	if granted {
		e.lastGrant = now
	}
	b.broadcastLocked()
	return granted, b.fence
}

// raise lifts the fence to index.
func (b *leaseBook) raise(index uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fence = max(b.fence, index)
}

// pending returns the voters that have neither reported index nor certainly
// lost their lease by now, the earliest time one of them will have, and a
// channel closed at the next report.
func (b *leaseBook) pending(voters []string, index uint64, now time.Time, lease, margin time.Duration) (left []string, next time.Time, changed <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	stretch := func(d time.Duration) time.Duration { return d + d*margin/lease }
	for _, v := range voters {
		e := b.nodes[v]
		if e != nil && e.applied >= index {
			continue
		}
		expiry := b.since.Add(stretch(2 * lease))
		if e != nil && !e.lastGrant.IsZero() {
			if g := e.lastGrant.Add(stretch(lease)); g.After(expiry) {
				expiry = g
			}
		}
		if !now.Before(expiry) {
			continue
		}
		left = append(left, v)
		if next.IsZero() || expiry.Before(next) {
			next = expiry
		}
	}
	return left, next, b.changed
}

// ErrFencePending means a fencing command committed but not every node has
// yet applied it or certainly fenced itself when the caller's context
// ended: the command stands, its acknowledgement is still owed.
var ErrFencePending = errors.New("raftnode: committed, but not yet applied or fenced on every node")

// fence waits until every voter but this node has applied index or has
// certainly lost its lease (see the comment at the top of this file). It
// must run on the leader after index committed.
func (n *Node) fence(ctx context.Context, index uint64) error {
	n.leases.ensure(n.raft.CurrentTerm(), time.Now(), n.raft.LastIndex())
	n.leases.raise(index)
	for {
		voters := n.otherVoters()
		left, next, changed := n.leases.pending(voters, index, time.Now(), n.cfg.LeaseDuration, n.cfg.LeaseMargin)
		if len(left) == 0 {
			return nil
		}
		t := time.NewTimer(time.Until(next))
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w: index %d, waiting for %v: %w", ErrFencePending, index, left, ctx.Err())
		case <-n.stopping:
			t.Stop()
			return fmt.Errorf("%w: index %d: %w", ErrFencePending, index, ErrClosed)
		}
		t.Stop()
	}
}

// otherVoters lists the voters of the current configuration except this node.
func (n *Node) otherVoters() []string {
	cf := n.raft.GetConfiguration()
	if cf.Error() != nil {
		return nil
	}
	var out []string
	for _, s := range cf.Configuration().Servers {
		if s.Suffrage == raft.Voter && string(s.ID) != n.cfg.NodeID {
			out = append(out, string(s.ID))
		}
	}
	sort.Strings(out)
	return out
}

// maxFencingIndex returns the highest index among results of fencing
// commands that applied without error, or 0.
func (n *Node) maxFencingIndex(p *proposal, results []*edgev1.CommandResult) uint64 {
	if n.cfg.IsFencing == nil {
		return 0
	}
	var idx uint64
	for i, c := range p.cmds {
		if i < len(results) && results[i].GetErrorCode() == "" && n.cfg.IsFencing(c) {
			idx = max(idx, results[i].GetIndex())
		}
	}
	return idx
}

// RenewLease grants or refuses a follower's lease on the leader.
func (s clusterServer) RenewLease(_ context.Context, req *connect.Request[edgev1.RenewLeaseRequest]) (*connect.Response[edgev1.RenewLeaseResponse], error) {
	n := s.n
	if !n.isOpen() || n.raft.State() != raft.Leader {
		return nil, n.connectError(ErrNotLeader)
	}
	node := req.Msg.GetNodeId()
	if node == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("renew lease: node_id is required"))
	}
	if !slices.Contains(n.otherVoters(), node) {
		return nil, connect.NewError(connect.CodePermissionDenied, fmt.Errorf("renew lease: %s is not a voter of this cluster", node))
	}
	now := time.Now()
	// A leader whose own leadership is not verified recently grants nothing:
	// it may already be deposed.
	granted, fence := false, uint64(0)
	if n.LeaseValid(now) {
		n.leases.ensure(n.raft.CurrentTerm(), now, n.raft.LastIndex())
		granted, fence = n.leases.renew(node, req.Msg.GetAppliedIndex(), now)
	}
	return connect.NewResponse(&edgev1.RenewLeaseResponse{
		Granted: granted, LeaseMs: n.cfg.LeaseDuration.Milliseconds(), FenceIndex: fence, Term: n.raft.CurrentTerm(),
	}), nil
}

// runLeaseRenewer keeps a follower's lease: it asks the leader every
// LeaseDuration/4, at once after applying a fencing entry (the renewal
// reports the applied index, which is what the leader's fence waits for),
// and again as soon as it has applied up to a fence that made the leader
// refuse.
func (n *Node) runLeaseRenewer() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.LeaseDuration / 4)
	defer t.Stop()
	for {
		select {
		case <-n.stopping:
			return
		case <-t.C:
		case <-n.renewKick:
		}
		for again := true; again; {
			again = n.renewOnce()
		}
	}
}

// renewOnce makes one renewal attempt; it returns true when it should be
// retried at once (the node just caught up with a fence).
func (n *Node) renewOnce() bool {
	if n.raft.State() == raft.Leader {
		return false
	}
	addr, err := n.leaderAPI()
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.LeaseDuration/2)
	defer cancel()
	go func() {
		select {
		case <-n.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	t0 := time.Since(n.epoch)
	applied := n.fsm.wm.get()
	resp, err := n.client(addr).RenewLease(ctx, connect.NewRequest(&edgev1.RenewLeaseRequest{NodeId: n.cfg.NodeID, AppliedIndex: applied}))
	if err != nil {
		n.log.Debug("lease renewal failed", "leader_api", addr, "err", err)
		return false
	}
	if resp.Msg.GetGranted() {
		until := t0 + time.Duration(resp.Msg.GetLeaseMs())*time.Millisecond
		for {
			cur := n.leaseUntil.Load()
			if int64(until) <= cur || n.leaseUntil.CompareAndSwap(cur, int64(until)) {
				break
			}
		}
		return false
	}
	if fence := resp.Msg.GetFenceIndex(); fence > applied {
		// Catch up with the fence, then ask again straight away.
		if err := n.WaitApplied(ctx, fence); err == nil {
			return true
		}
	}
	return false
}

// followerLeaseValid reports whether the follower's lease covers now.
func (n *Node) followerLeaseValid(now time.Time) bool {
	until := n.leaseUntil.Load()
	return until != 0 && now.Sub(n.epoch) < time.Duration(until)
}

// afterEntry kicks the renewer when a follower applied a fencing entry.
func (n *Node) afterEntry(cmds []*raftv1.Command) {
	r := n.started.Load()
	if n.cfg.IsFencing == nil || r == nil || r.State() == raft.Leader {
		return
	}
	for _, c := range cmds {
		if n.cfg.IsFencing(c) {
			select {
			case n.renewKick <- struct{}{}:
			default:
			}
			return
		}
	}
}

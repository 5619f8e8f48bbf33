package raftnode

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/access"
	edgev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

// proposal is one caller's commands waiting for the batcher.
type proposal struct {
	cmds  []*raftv1.Command
	size  int
	done  chan proposeOutcome // buffered: the completer never blocks
	state atomic.Int32        // proposalQueued, then proposalTaken or proposalWithdrawn
	// The caller's deadline, for a proposal forwarded with others.
	deadline    time.Time
	hasDeadline bool
}

// Proposal states: the batcher takes a queued proposal, or its caller
// withdraws it (context ended first); whoever moves it first wins.
const (
	proposalQueued int32 = iota
	proposalTaken
	proposalWithdrawn
)

// take claims p for an entry; false means its caller withdrew it.
func (p *proposal) take() bool { return p.state.CompareAndSwap(proposalQueued, proposalTaken) }

type proposeOutcome struct {
	results []*edgev1.CommandResult
	err     error
	retry   bool // forwarded: nothing was done, try the leader again
}

// pendingEntry is an entry handed to Raft whose commit is awaited.
type pendingEntry struct {
	future raft.ApplyFuture
	batch  []*proposal
	count  int
	start  time.Time // when it was handed to Raft
}

// Propose commits cmds through the site's Raft log and returns one result
// per command, in order. On the leader the commands join the group-commit
// batcher (they share one entry with other callers' commands, never split);
// on a follower they are forwarded to the leader's ClusterService. Commands
// without a stamp are stamped by the leader's hybrid logical clock (the
// caller's messages are not modified). It is safe for concurrent use.
//
// A returned error means no result is available: [ErrTooLarge] (more than
// MaxBatchCommands commands or MaxBatchBytes bytes), an access.Invalid error
// (a nil command), [ErrClosed], [ErrNoLeader] (no leader reachable before ctx
// ended; nothing was proposed), ctx's error wrapped (ctx ended before the
// commands were taken into an entry; nothing was proposed),
// [ErrIndeterminate] (the commands may have committed; retry with the same
// request IDs), [ErrStateMachineFailed], or a forwarded error with its domain
// code. Per-command domain failures are in the results, not in the error.
func (n *Node) Propose(ctx context.Context, cmds ...*raftv1.Command) ([]*edgev1.CommandResult, error) {
	if len(cmds) == 0 {
		return nil, nil
	}
	size, err := n.checkProposal(cmds)
	if err != nil {
		return nil, err
	}
	var lastErr error
	backoff := retryBackoffMin
	for {
		if !n.isOpen() {
			return nil, ErrClosed
		}
		news := n.leader.changed()
		var retry bool
		if n.raft.State() == raft.Leader {
			res, err := n.proposeLocal(ctx, cmds, size)
			if !errors.Is(err, ErrNotLeader) {
				return res, err
			}
			lastErr, retry = err, true
		} else {
			var res []*edgev1.CommandResult
			if n.isFencingCall(cmds) {
				res, err, retry = n.forwardPropose(ctx, cmds)
			} else {
				res, err, retry = n.forwardCoalesced(ctx, cmds, size)
			}
			if !retry {
				return res, err
			}
			lastErr = err
		}
		changed, err := retryWait(ctx, backoff, news, n.stopping)
		if err != nil {
			return nil, fmt.Errorf("%w: %w (last: %v)", ErrNoLeader, err, lastErr)
		}
		backoff = nextBackoff(backoff, changed)
	}
}

// sleep waits d, or returns ctx's error or ErrClosed.
func (n *Node) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stopping:
		return ErrClosed
	}
}

// checkProposal validates the size of one caller's commands and returns
// their encoded size.
func (n *Node) checkProposal(cmds []*raftv1.Command) (int, error) {
	if len(cmds) > n.cfg.MaxBatchCommands {
		return 0, fmt.Errorf("%w: %d commands, at most %d per call", ErrTooLarge, len(cmds), n.cfg.MaxBatchCommands)
	}
	size := 0
	for i, c := range cmds {
		if c == nil {
			return 0, access.Errorf(access.Invalid, "raftnode: command %d is nil", i)
		}
		size += proto.Size(c)
	}
	if size > n.cfg.MaxBatchBytes {
		return 0, fmt.Errorf("%w: %d bytes of commands, at most %d per call", ErrTooLarge, size, n.cfg.MaxBatchBytes)
	}
	return size, nil
}

// proposeLocal hands cmds to this node's batcher and waits for their results.
// It returns ErrNotLeader (wrapped) when Raft refused the entry because this
// node does not lead; nothing was proposed then.
func (n *Node) proposeLocal(ctx context.Context, cmds []*raftv1.Command, size int) ([]*edgev1.CommandResult, error) {
	p := &proposal{cmds: cmds, size: size, done: make(chan proposeOutcome, 1)}
	select {
	case n.local.ch <- p:
	case <-n.stopping:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, fmt.Errorf("raftnode: propose: %w", ctx.Err())
	}
	select {
	case out := <-p.done:
		if out.err == nil {
			if idx := n.maxFencingIndex(p, out.results); idx > 0 {
				if err := n.fence(ctx, idx); err != nil {
					return out.results, err
				}
			}
		}
		return out.results, out.err
	case <-n.batcherDone:
		// The batcher stopped. A proposal it never took (queued after its
		// last drain) is withdrawn; one it took is answered by the completer.
		if p.state.CompareAndSwap(proposalQueued, proposalWithdrawn) {
			return nil, ErrClosed
		}
		select {
		case out := <-p.done:
			return out.results, out.err
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrIndeterminate, ctx.Err())
		}
	case <-ctx.Done():
		if p.state.CompareAndSwap(proposalQueued, proposalWithdrawn) {
			return nil, fmt.Errorf("raftnode: propose: %w", ctx.Err())
		}
		return nil, fmt.Errorf("%w: %w", ErrIndeterminate, ctx.Err())
	}
}

// runBatcher is the group-commit loop. It takes the first waiting proposal
// and adds whatever else is queued (never more than MaxBatchCommands /
// MaxBatchBytes). If callers the completer answered recently have not all
// proposed again yet, it lingers for them (see linger), so that one wave of
// callers goes out as one entry instead of as a lone first caller followed
// by the rest. It then waits for one of MaxInflight pipeline slots, adds
// what queued meanwhile, stamps and proposes the entry, and goes on without
// waiting for it to commit: the completer answers the callers and frees the
// slot. A lone caller therefore pays one Raft round and never waits on a
// timer; under load, entries grow to what arrived during the previous ones.
func (n *Node) runBatcher() {
	defer n.wg.Done()
	defer close(n.inflight)
	defer close(n.batcherDone)
	var (
		carry  *proposal
		expect int // answered callers not yet back (see linger)
	)
	// Go 1.23 timers: Stop and Reset leave no stale tick in the channel.
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		first := carry
		carry = nil
		for first == nil {
			select {
			case first = <-n.local.ch:
				if !first.take() {
					first = nil
				}
			case <-n.stopping:
				failQueued(&n.local)
				return
			}
		}
		since := time.Now()
		b := &batch{ps: []*proposal{first}, count: len(first.cmds), size: first.size}
		expect = max(expect+int(n.local.answered.Swap(0))-1, 0)
		carry, expect = n.gather(&n.local, b, expect)
		expect += int(n.local.answered.Swap(0))
		if carry == nil && expect > 0 {
			t0 := time.Now()
			carry, expect = n.linger(&n.local, b, expect, since, timer)
			n.stats.lingered.Add(1)
			n.stats.lingerNano.Add(uint64(time.Since(t0)))
		}
		// Wait for a pipeline slot; proposals arriving meanwhile queue up
		// and join this entry.
		select {
		case n.local.slots <- struct{}{}:
		case <-n.stopping:
			b.fail(ErrClosed)
			if carry != nil {
				carry.done <- proposeOutcome{err: ErrClosed}
			}
			failQueued(&n.local)
			return
		}
		if carry == nil {
			carry, expect = n.gather(&n.local, b, expect)
		}
		n.submit(b.ps, b.count)
	}
}

// batch is an entry being gathered.
type batch struct {
	ps          []*proposal
	count, size int
}

// add adds p to b, or reports that it does not fit.
func (b *batch) add(p *proposal, maxCount, maxSize int) bool {
	if b.count+len(p.cmds) > maxCount || b.size+p.size > maxSize {
		return false
	}
	b.ps = append(b.ps, p)
	b.count += len(p.cmds)
	b.size += p.size
	return true
}

func (b *batch) fail(err error) {
	for _, p := range b.ps {
		p.done <- proposeOutcome{err: err}
	}
}

// gather adds the proposals queued right now to b, without waiting. It
// returns a proposal that did not fit (to start the next entry with) and
// expect lowered by the proposals taken.
func (n *Node) gather(q *queue, b *batch, expect int) (*proposal, int) {
	for b.count < n.cfg.MaxBatchCommands {
		select {
		case p := <-q.ch:
			if !p.take() {
				continue
			}
			expect = max(expect-1, 0)
			if !b.add(p, n.cfg.MaxBatchCommands, n.cfg.MaxBatchBytes) {
				return p, expect
			}
		default:
			return nil, expect
		}
	}
	return nil, expect
}

// linger waits for the rest of a wave: callers answered by the completer
// (q.answered, added to expect) typically propose again within
// microseconds of each other, and it is far cheaper to send them as one
// entry than to let the first go alone. It returns as soon as as many
// proposals arrived as callers were answered (at once when none was, so a
// lone caller never waits), when none arrived for lingerGap, when lingering
// since `since` would exceed the lesser of MaxLinger and half the recent
// entry latency, or when the batch is full. A wave that did not come back in
// time is forgotten. It returns a proposal that did not fit and the new
// expect.
func (n *Node) linger(q *queue, b *batch, expect int, since time.Time, timer *time.Timer) (*proposal, int) {
	limit := min(n.cfg.MaxLinger, time.Duration(q.latency.Load())/2)
	deadline := since.Add(limit)
	for b.count < n.cfg.MaxBatchCommands {
		expect += int(q.answered.Swap(0))
		if expect <= 0 {
			return nil, 0
		}
		wait := min(time.Until(deadline), lingerGap)
		if wait <= 0 {
			return nil, 0
		}
		timer.Reset(wait)
		select {
		case p := <-q.ch:
			timer.Stop()
			if !p.take() {
				continue
			}
			expect--
			if !b.add(p, n.cfg.MaxBatchCommands, n.cfg.MaxBatchBytes) {
				return p, expect
			}
		case <-timer.C:
			return nil, 0
		case <-n.stopping:
			timer.Stop()
			return nil, expect
		}
	}
	return nil, expect
}

// failQueued answers every proposal queued in q with ErrClosed.
func failQueued(q *queue) {
	for {
		select {
		case p := <-q.ch:
			if p.take() {
				p.done <- proposeOutcome{err: ErrClosed}
			}
		default:
			return
		}
	}
}

// submit stamps the batch's commands, proposes them as one entry and queues
// the future for the completer.
func (n *Node) submit(batch []*proposal, count int) {
	entry := &raftv1.Entry{Version: entryVersion, Commands: make([]*raftv1.Command, 0, count)}
	for _, p := range batch {
		for _, c := range p.cmds {
			if c.GetStamp() == nil {
				c = proto.CloneOf(c)
				c.Stamp = n.clock.stamp()
			}
			entry.Commands = append(entry.Commands, c)
		}
	}
	data, err := encodeEntry(entry)
	if err != nil {
		err = &access.Error{Code: access.Invalid, Op: "raftnode.Propose", Msg: "encode entry", Err: err}
		for _, p := range batch {
			p.done <- proposeOutcome{err: err}
		}
		<-n.local.slots
		return
	}
	n.stats.entry(count)
	start := time.Now()
	f := n.raft.Apply(data, n.cfg.ApplyTimeout)
	n.inflight <- &pendingEntry{future: f, batch: batch, count: count, start: start}
}

// runCompleter waits for proposed entries in log order and answers their
// callers.
func (n *Node) runCompleter() {
	defer n.wg.Done()
	for pe := range n.inflight {
		err := n.await(pe.future)
		var res *entryResult
		if err != nil {
			err = mapRaftErr(err)
		} else if res, _ = pe.future.Response().(*entryResult); res == nil {
			err = &access.Error{Code: access.Internal, Op: "raftnode.Propose", Msg: "entry applied without a result"}
		} else if res.err != nil {
			err = res.err
		} else if len(res.results) != pe.count {
			err = &access.Error{Code: access.Internal, Op: "raftnode.Propose",
				Msg: fmt.Sprintf("entry has %d results for %d commands", len(res.results), pe.count)}
		}
		// Count the callers as answered before answering them, so that the
		// batcher never sees one back before it expects it.
		d := time.Since(pe.start)
		n.stats.roundNano.Add(uint64(d))
		n.local.noteAnswered(len(pe.batch), d)
		off := 0
		for _, p := range pe.batch {
			if err != nil {
				p.done <- proposeOutcome{err: err}
				continue
			}
			p.done <- proposeOutcome{results: res.results[off : off+len(p.cmds) : off+len(p.cmds)]}
			off += len(p.cmds)
		}
		<-n.local.slots
	}
}

// lingerGap is how long the batcher waits for the next caller of a wave
// before sending what it has (see linger).
const lingerGap = 200 * time.Microsecond

// queue is where proposals wait for a batcher: the leader's group commit
// (Node.local) or a follower's coalescing of forwarded calls (Node.fwd).
type queue struct {
	ch    chan *proposal
	slots chan struct{} // one per entry or call in flight
	// answered counts callers answered that the batcher has not yet
	// accounted for; latency is a moving average of a round (hand-off to
	// answer), in nanoseconds. See linger.
	answered atomic.Int64
	latency  atomic.Int64
}

func (q *queue) init(depth int) {
	q.ch = make(chan *proposal, 1024)
	q.slots = make(chan struct{}, depth)
}

// noteAnswered records that callers of one round that took d were
// answered: they are expected back (linger), and d feeds the moving
// average that bounds lingering.
func (q *queue) noteAnswered(callers int, d time.Duration) {
	q.answered.Add(int64(callers))
	old := q.latency.Load()
	if old == 0 {
		q.latency.Store(int64(d))
		return
	}
	q.latency.Store(old + (int64(d)-old)/8)
}

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
}

// pendingEntry is an entry handed to Raft whose commit is awaited.
type pendingEntry struct {
	future raft.ApplyFuture
	batch  []*proposal
	count  int
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
	backoff := 2 * time.Millisecond
	for {
		if !n.isOpen() {
			return nil, ErrClosed
		}
		var retry bool
		if n.raft.State() == raft.Leader {
			res, err := n.proposeLocal(ctx, cmds, size)
			if !errors.Is(err, ErrNotLeader) {
				return res, err
			}
			lastErr, retry = err, true
		} else {
			var res []*edgev1.CommandResult
			res, err, retry = n.forwardPropose(ctx, cmds)
			if !retry {
				return res, err
			}
			lastErr = err
		}
		if err := n.sleep(ctx, backoff); err != nil {
			return nil, fmt.Errorf("%w: %w (last: %v)", ErrNoLeader, err, lastErr)
		}
		backoff = min(2*backoff, 100*time.Millisecond)
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
	case n.proposeCh <- p:
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

// runBatcher is the group-commit loop. It takes the first waiting proposal,
// waits for one of MaxInflight pipeline slots, adds whatever else is queued
// right now (never waiting on a timer) up to MaxBatchCommands /
// MaxBatchBytes, stamps, proposes the entry and goes on without waiting for
// it to commit: the completer answers the callers and frees the slot. A lone
// caller therefore pays one Raft round; under load, entries grow to what
// arrived during the previous ones.
func (n *Node) runBatcher() {
	defer n.wg.Done()
	defer close(n.inflight)
	defer close(n.batcherDone)
	var carry *proposal
	for {
		first := carry
		carry = nil
		for first == nil {
			select {
			case first = <-n.proposeCh:
				if !first.take() {
					first = nil
				}
			case <-n.stopping:
				n.failQueued()
				return
			}
		}
		// Wait for a pipeline slot; proposals arriving meanwhile queue up
		// and join this entry.
		select {
		case n.slots <- struct{}{}:
		case <-n.stopping:
			first.done <- proposeOutcome{err: ErrClosed}
			n.failQueued()
			return
		}
		batch := []*proposal{first}
		count, size := len(first.cmds), first.size
	fill:
		for count < n.cfg.MaxBatchCommands {
			select {
			case p := <-n.proposeCh:
				if !p.take() {
					continue
				}
				if count+len(p.cmds) > n.cfg.MaxBatchCommands || size+p.size > n.cfg.MaxBatchBytes {
					carry = p
					break fill
				}
				batch = append(batch, p)
				count += len(p.cmds)
				size += p.size
			default:
				break fill
			}
		}
		n.submit(batch, count)
	}
}

// failQueued answers every queued proposal with ErrClosed.
func (n *Node) failQueued() {
	for {
		select {
		case p := <-n.proposeCh:
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
		<-n.slots
		return
	}
	f := n.raft.Apply(data, n.cfg.ApplyTimeout)
	n.inflight <- &pendingEntry{future: f, batch: batch, count: count}
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
		off := 0
		for _, p := range pe.batch {
			if err != nil {
				p.done <- proposeOutcome{err: err}
				continue
			}
			p.done <- proposeOutcome{results: res.results[off : off+len(p.cmds) : off+len(p.cmds)]}
			off += len(p.cmds)
		}
		<-n.slots
	}
}

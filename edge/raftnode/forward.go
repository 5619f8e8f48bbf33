package raftnode

import (
	"context"
	"fmt"
	"time"

	edgev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

// Forwarding from a follower. Concurrent callers of Propose on a follower
// are coalesced the way the leader's batcher groups them: the forwarder
// takes the first queued proposal, adds what else is queued (lingering for
// the callers it has just answered, see linger), and sends them as one
// ClusterService.Propose call, which the leader proposes as one proposal
// and so as one entry. Each caller gets its own slice of the results. At
// most MaxInflight calls are in flight; meanwhile proposals queue and go
// out together in the next.
//
// Only non-fencing proposals are coalesced: the leader answers a call that
// holds a fencing command only after fencing, and a plain write must not
// wait for that. A proposal with a fencing command is forwarded alone, by
// its caller.
//
// What a coalesced caller sees is what it would see forwarding alone: an
// error of the call (leader unknown or moved: retried by Propose; broken
// after sending: ErrIndeterminate) is every caller's error, as is an error
// of the entry they share on the leader.

// forwardCoalesced forwards cmds to the leader together with other
// callers' (see above); it returns what forwardPropose would.
func (n *Node) forwardCoalesced(ctx context.Context, cmds []*raftv1.Command, size int) ([]*edgev1.CommandResult, error, bool) {
	p := &proposal{cmds: cmds, size: size, done: make(chan proposeOutcome, 1)}
	if ctx.Done() != nil {
		p.deadline, p.hasDeadline = ctx.Deadline()
	}
	select {
	case n.fwd.ch <- p:
	case <-n.stopping:
		return nil, ErrClosed, false
	case <-ctx.Done():
		return nil, fmt.Errorf("raftnode: propose: %w", ctx.Err()), false
	}
	select {
	case out := <-p.done:
		return out.results, out.err, out.retry
	case <-n.fwdDone:
		if p.state.CompareAndSwap(proposalQueued, proposalWithdrawn) {
			return nil, ErrClosed, false
		}
		select {
		case out := <-p.done:
			return out.results, out.err, out.retry
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrIndeterminate, ctx.Err()), false
		}
	case <-ctx.Done():
		if p.state.CompareAndSwap(proposalQueued, proposalWithdrawn) {
			return nil, fmt.Errorf("raftnode: propose: %w", ctx.Err()), false
		}
		return nil, fmt.Errorf("%w: %w", ErrIndeterminate, ctx.Err()), false
	}
}

// isFencingCall reports whether cmds hold a fencing command.
func (n *Node) isFencingCall(cmds []*raftv1.Command) bool {
	if n.cfg.IsFencing == nil {
		return false
	}
	for _, c := range cmds {
		if n.cfg.IsFencing(c) {
			return true
		}
	}
	return false
}

// runForwarder is the follower's coalescing loop (see the top of this
// file). It mirrors runBatcher; each call runs in its own goroutine.
func (n *Node) runForwarder() {
	defer n.wg.Done()
	defer close(n.fwdDone)
	var (
		carry  *proposal
		expect int
	)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		first := carry
		carry = nil
		for first == nil {
			select {
			case first = <-n.fwd.ch:
				if !first.take() {
					first = nil
				}
			case <-n.stopping:
				failQueued(&n.fwd)
				return
			}
		}
		since := time.Now()
		b := &batch{ps: []*proposal{first}, count: len(first.cmds), size: first.size}
		expect = max(expect+int(n.fwd.answered.Swap(0))-1, 0)
		carry, expect = n.gather(&n.fwd, b, expect)
		if carry == nil {
			carry, expect = n.linger(&n.fwd, b, expect, since, timer)
		}
		select {
		case n.fwd.slots <- struct{}{}:
		case <-n.stopping:
			b.fail(ErrClosed)
			if carry != nil {
				carry.done <- proposeOutcome{err: ErrClosed}
			}
			failQueued(&n.fwd)
			return
		}
		if carry == nil {
			carry, expect = n.gather(&n.fwd, b, expect)
		}
		n.wg.Add(1)
		go n.sendForward(b)
	}
}

// sendForward makes one coalesced call and answers its callers. The call
// ends when the latest of the callers' deadlines passes (none if one
// caller has none) or the node closes.
func (n *Node) sendForward(b *batch) {
	defer n.wg.Done()
	defer func() { <-n.fwd.slots }()
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if deadline, ok := b.deadline(); ok {
		var dcancel context.CancelFunc
		ctx, dcancel = context.WithDeadline(ctx, deadline)
		defer dcancel()
	}
	go func() {
		select {
		case <-n.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	cmds := b.ps[0].cmds
	if len(b.ps) > 1 {
		cmds = make([]*raftv1.Command, 0, b.count)
		for _, p := range b.ps {
			cmds = append(cmds, p.cmds...)
		}
	}
	res, err, retry := n.forwardPropose(ctx, cmds)
	n.fwd.noteAnswered(len(b.ps), time.Since(start)) // before answering: see runCompleter
	off := 0
	for _, p := range b.ps {
		if err != nil {
			p.done <- proposeOutcome{err: err, retry: retry}
			continue
		}
		p.done <- proposeOutcome{results: res[off : off+len(p.cmds) : off+len(p.cmds)]}
		off += len(p.cmds)
	}
}

// deadline returns the latest deadline of b's callers, and false if one of
// them has none.
func (b *batch) deadline() (time.Time, bool) {
	var latest time.Time
	for _, p := range b.ps {
		if !p.hasDeadline {
			return time.Time{}, false
		}
		if p.deadline.After(latest) {
			latest = p.deadline
		}
	}
	return latest, true
}

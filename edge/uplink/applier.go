package uplink

import (
	"context"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/replication"
)

// applier commits the hub's batches through Raft on a goroutine of its
// own, so that a session keeps sending the site's deltas and taking the
// hub's acknowledgements while a Raft commit runs (before, the session's
// loop waited for each commit, and the site's sending waited with it).
//
// The session hands it every batch it accepted (judged whole, in order per
// source); the applier queues them and commits them in that order per
// source, taking the priority lane's first when both lanes are queued, and
// joining the queued batches of one source, up to MaxMergeDeltas, into one
// ApplyDeltas. After each commit it records the site's applied vector at
// that moment (a batch boundary) and signals the session, which
// acknowledges it then: nothing is acknowledged before Raft committed and
// this node applied it. A failed commit stops it; the session ends with that
// error and the next one resumes from the applied vector. What it holds is
// bounded by the hub's send window (the hub sends no further ahead of the
// site's acknowledgements).
type applier struct {
	u      *Uplink
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	queue   []replication.Message // accepted batches not yet committed
	queued  replication.Vector    // per source, the last sequence number queued
	durable replication.Vector    // the applied vector after the last commit
	err     error                 // the commit that failed, if any

	wake   chan struct{} // a batch was queued
	done   chan struct{} // a commit finished or failed (capacity 1)
	exited chan struct{} // closed when the goroutine has returned
}

// newApplier starts an applier for u; stop ends it.
func newApplier(ctx context.Context, u *Uplink) *applier {
	ctx, cancel := context.WithCancel(ctx)
	a := &applier{u: u, ctx: ctx, cancel: cancel, queued: replication.Vector{},
		wake: make(chan struct{}, 1), done: make(chan struct{}, 1), exited: make(chan struct{})}
	go a.run()
	return a
}

// stop cancels a commit in progress and waits for the goroutine to return,
// so that the next session never overlaps this one's commits.
func (a *applier) stop() {
	a.cancel()
	<-a.exited
}

// enqueue queues an accepted batch of src. It returns the error of a
// commit that failed, so that the session ends.
func (a *applier) enqueue(src replication.Source, ds []replication.Delta) error {
	if len(ds) == 0 {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return a.err
	}
	a.queue = append(a.queue, replication.Message{Type: replication.MsgBatch, Source: src, Deltas: ds})
	a.queued.Advance(src, ds[len(ds)-1].Seq)
	select {
	case a.wake <- struct{}{}:
	default:
	}
	return nil
}

// vector is the site's applied vector with what is queued on top: the
// session's view of its store, so that it neither applies a batch twice
// nor holds back one that follows a queued batch.
func (a *applier) vector() replication.Vector {
	v := a.u.site.Vector()
	a.mu.Lock()
	defer a.mu.Unlock()
	return v.Merge(a.queued)
}

// result returns the applied vector after the last commit (nil when none
// finished since the last call) and the error of a failed commit.
func (a *applier) result() (replication.Vector, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	v := a.durable
	a.durable = nil
	return v, a.err
}

// next takes the next run to commit: the first queued batch, of the
// priority lane when one is queued, joined with the batches of the same
// source that follow it in the queue, up to MaxMergeDeltas. It returns the
// run and how many batches it joins.
func (a *applier) next() (replication.Message, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.queue) == 0 {
		return replication.Message{}, 0
	}
	first := 0
	for i, m := range a.queue {
		if m.Source.Lane == replication.LanePriority {
			first = i
			break
		}
	}
	run := a.queue[first]
	run.Deltas = append([]replication.Delta(nil), run.Deltas...)
	taken := []int{first}
	for i := first + 1; i < len(a.queue); i++ {
		m := a.queue[i]
		if m.Source != run.Source {
			continue
		}
		if len(run.Deltas)+len(m.Deltas) > MaxMergeDeltas ||
			m.Deltas[0].Seq != run.Deltas[len(run.Deltas)-1].Seq+1 {
			break
		}
		run.Deltas = append(run.Deltas, m.Deltas...)
		taken = append(taken, i)
	}
	for i := len(taken) - 1; i >= 0; i-- {
		a.queue = append(a.queue[:taken[i]], a.queue[taken[i]+1:]...)
	}
	return run, len(taken)
}

func (a *applier) run() {
	defer close(a.exited)
	for {
		run, n := a.next()
		if n == 0 {
			select {
			case <-a.ctx.Done():
				return
			case <-a.wake:
			}
			continue
		}
		start := time.Now()
		err := a.u.site.ApplyDeltas(a.ctx, run.Deltas)
		if err == nil {
			a.u.log.Debug("hub deltas committed", "source", run.Source.String(), "deltas", len(run.Deltas),
				"batches", n, "last", run.Deltas[len(run.Deltas)-1].Seq, "took", time.Since(start))
		}
		a.mu.Lock()
		if err != nil {
			a.err = err
		} else {
			a.durable = a.u.durable()
		}
		a.mu.Unlock()
		if err == nil {
			a.u.update(func(st *Status) { st.Applied++; st.Merged += n - 1 })
		}
		select {
		case a.done <- struct{}{}:
		default:
		}
		if err != nil {
			return
		}
	}
}

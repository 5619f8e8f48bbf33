package cangw

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/access"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
)

// maxQueued bounds the access events waiting to be recorded; beyond it the
// oldest are dropped (and counted in the log).
const maxQueued = 100_000

// recorder records access events from one goroutine in batches (everything
// queued while the previous call ran goes in the next), retrying a failed
// batch with backoff so that nothing is lost while the site has no quorum.
// enqueue never blocks.
type recorder struct {
	record func(context.Context, []*accessv1.AccessEvent) error
	log    *slog.Logger

	mu      sync.Mutex
	q       []*accessv1.AccessEvent
	closed  bool
	dropped int

	wake   chan struct{}
	drain  chan struct{}
	done   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	start1 sync.Once
}

func newRecorder(record func(context.Context, []*accessv1.AccessEvent) error, log *slog.Logger) *recorder {
	ctx, cancel := context.WithCancel(context.Background())
	return &recorder{record: record, log: log, wake: make(chan struct{}, 1), drain: make(chan struct{}),
		done: make(chan struct{}), ctx: ctx, cancel: cancel}
}

func (r *recorder) start() { r.start1.Do(func() { go r.run() }) }

func (r *recorder) enqueue(ev *accessv1.AccessEvent) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	if len(r.q) >= maxQueued {
		r.q = r.q[1:]
		r.dropped++
	}
	r.q = append(r.q, ev)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *recorder) run() {
	defer close(r.done)
	for {
		r.mu.Lock()
		batch := r.q[:min(len(r.q), 500)]
		r.q = r.q[len(batch):]
		r.mu.Unlock()
		if len(batch) == 0 {
			select {
			case <-r.wake:
				continue
			case <-r.drain:
				r.mu.Lock()
				empty := len(r.q) == 0
				r.mu.Unlock()
				if empty {
					return
				}
				continue
			}
		}
		backoff := 25 * time.Millisecond
		for r.ctx.Err() == nil {
			ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
			err := r.record(ctx, batch)
			cancel()
			if err == nil || access.ErrorCode(err) == access.Invalid {
				if err != nil {
					r.log.Error("site refused access events as invalid; dropped them", "events", len(batch), "err", err)
				}
				break
			}
			r.log.Warn("recording access events failed; retrying", "events", len(batch), "err", err)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-r.ctx.Done():
				t.Stop()
			}
			backoff = min(2*backoff, time.Second)
		}
	}
}

// stop stops taking events and waits up to timeout for the queue to be
// recorded; then it gives up on the rest.
func (r *recorder) stop(timeout time.Duration) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	r.mu.Unlock()
	close(r.drain)
	started := false
	r.start1.Do(func() { close(r.done) }) // never started: nothing to wait for
	select {
	case <-r.done:
		started = true
	default:
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	if !started {
		select {
		case <-r.done:
		case <-t.C:
			r.log.Error("closing: access events not recorded in time", "timeout", timeout)
		}
	}
	r.cancel()
}

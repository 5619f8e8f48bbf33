package mqttgw

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/access"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
)

// recorder queues access events and records them in the site's event log
// from one goroutine, in batches (group commit): when it is idle an event
// is recorded at once; while a call is in flight, events pile up and go in
// the next call, up to batchMax at a time, right after the previous call
// returns. A failed call is retried with the same batch, with a backoff
// capped at maxBackoff, so that nothing is lost while the site has no
// quorum; meanwhile the queue takes up to capacity events, then drops the
// oldest. Enqueueing never blocks.
//
// enqueue is safe for concurrent use; start and stop are called once each,
// by the gateway's Open and Close.
type recorder struct {
	record     func(context.Context, []*accessv1.AccessEvent) error
	log        *slog.Logger
	m          *metrics
	batchMax   int
	capacity   int
	maxBackoff time.Duration
	timeout    time.Duration
	linger     time.Duration

	started bool // start was called

	mu       sync.Mutex
	q        ring
	closed   bool // enqueue drops
	dropping bool // in a burst of drops (logged once)
	burst    int  // drops in the current burst
	lost     int  // events given up by stop

	wake   chan struct{} // capacity 1: something was queued
	drain  chan struct{} // closed by stop: exit once the queue is empty
	ctx    context.Context
	cancel context.CancelFunc // stop gave up waiting
	done   chan struct{}      // closed when run returns
}

// newRecorder returns a recorder that is not started yet.
func newRecorder(record func(context.Context, []*accessv1.AccessEvent) error, cfg Config, m *metrics, log *slog.Logger) *recorder {
	ctx, cancel := context.WithCancel(context.Background())
	return &recorder{
		record:     record,
		log:        log,
		m:          m,
		batchMax:   cfg.EventBatchMax,
		capacity:   cfg.EventQueue,
		maxBackoff: cfg.EventFlushInterval,
		timeout:    cfg.EventTimeout,
		linger:     cfg.EventLinger,
		wake:       make(chan struct{}, 1),
		drain:      make(chan struct{}),
		ctx:        ctx,
		cancel:     cancel,
		done:       make(chan struct{}),
	}
}

// start runs the recording goroutine.
func (r *recorder) start() {
	r.started = true
	go r.run()
}

// enqueue queues ev for recording without blocking. When the queue is full
// the oldest event is dropped (counted, and logged once per burst); after
// stop began, ev itself is dropped.
func (r *recorder) enqueue(ev *accessv1.AccessEvent) {
	r.mu.Lock()
	if r.closed {
		r.lost++
		r.mu.Unlock()
		r.m.eventsDropped.Inc()
		return
	}
	dropped, first := false, false
	if r.q.len() >= r.capacity {
		r.q.pop()
		dropped = true
		r.burst++
		if !r.dropping {
			r.dropping, first = true, true
		}
	}
	r.q.push(ev)
	n := r.q.len()
	r.mu.Unlock()

	r.m.eventsQueued.Inc()
	r.m.queueLen.Set(float64(n))
	if dropped {
		r.m.eventsDropped.Inc()
		if first {
			r.log.Warn("access event queue full: dropping the oldest events until the site records again", "queue", r.capacity)
		}
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// take removes and returns up to batchMax queued events, oldest first.
func (r *recorder) take() []*accessv1.AccessEvent {
	r.mu.Lock()
	n := min(r.q.len(), r.batchMax)
	if n == 0 {
		r.mu.Unlock()
		return nil
	}
	batch := make([]*accessv1.AccessEvent, n)
	for i := range batch {
		batch[i] = r.q.pop()
	}
	left := r.q.len()
	recovered, burst := false, 0
	if r.dropping && left <= r.capacity/2 {
		recovered, burst = true, r.burst
		r.dropping, r.burst = false, 0
	}
	r.mu.Unlock()

	r.m.queueLen.Set(float64(left))
	if recovered {
		r.log.Warn("access event queue no longer full", "dropped", burst)
	}
	return batch
}

// run records queued events until stop has been called and the queue is
// empty.
func (r *recorder) run() {
	defer close(r.done)
	for {
		batch := r.take()
		if batch == nil {
			select {
			case <-r.wake:
				continue
			case <-r.drain:
				if r.empty() {
					return
				}
				continue
			}
		}
		r.recordBatch(batch)
		r.lingerAfterBatch()
	}
}

// lingerAfterBatch waits up to linger after a commit, unless the queue
// already holds a full batch or stop is draining, so that events arriving
// meanwhile share the next Raft entry: every commit costs an fsync on each
// node, and access events are facts for the log, never on anyone's
// critical path (the tap was answered before its event was queued).
func (r *recorder) lingerAfterBatch() {
	if r.linger <= 0 {
		return
	}
	r.mu.Lock()
	full := r.q.len() >= r.batchMax
	r.mu.Unlock()
	if full {
		return
	}
	t := time.NewTimer(r.linger)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.drain:
	}
}

// empty reports whether nothing is queued.
func (r *recorder) empty() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.q.len() == 0
}

// recordBatch records batch, retrying with backoff until it succeeds, the
// site refuses it as invalid, or stop gives up.
func (r *recorder) recordBatch(batch []*accessv1.AccessEvent) {
	backoff := min(25*time.Millisecond, r.maxBackoff)
	for attempt := 1; ; attempt++ {
		if r.ctx.Err() != nil {
			r.giveUp(batch)
			return
		}
		ctx, cancel := context.WithTimeout(r.ctx, r.timeout)
		err := r.record(ctx, batch)
		cancel()
		if err == nil {
			r.m.eventsRecord.Add(float64(len(batch)))
			if attempt > 1 {
				r.log.Info("access events recorded after retrying", "events", len(batch), "attempts", attempt)
			}
			return
		}
		r.m.recordErrors.Inc()
		if access.ErrorCode(err) == access.Invalid {
			// Retrying the same input fails again (access.Invalid's
			// contract); keep the queue moving.
			r.m.eventsDropped.Add(float64(len(batch)))
			r.log.Error("site refused access events as invalid; dropped them", "events", len(batch), "err", err)
			return
		}
		if attempt == 1 || attempt%20 == 0 {
			r.log.Warn("recording access events failed; retrying", "events", len(batch), "attempt", attempt, "err", err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-r.ctx.Done():
			t.Stop()
		}
		backoff = min(2*backoff, r.maxBackoff)
	}
}

// giveUp counts batch as lost because stop gave up waiting.
func (r *recorder) giveUp(batch []*accessv1.AccessEvent) {
	r.mu.Lock()
	r.lost += len(batch)
	r.mu.Unlock()
	r.m.eventsDropped.Add(float64(len(batch)))
}

// stop stops taking events and waits up to timeout for the queue to be
// recorded. Then it cancels the call in flight and counts what is left as
// lost. It returns the number of events lost.
func (r *recorder) stop(timeout time.Duration) int {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	close(r.drain)
	if !r.started {
		r.cancel()
		return 0
	}

	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-r.done:
	case <-t.C:
		r.cancel()
		// A RecordEvents that ignores its context could hold run forever;
		// wait for it once more, then leave it behind.
		t.Reset(timeout)
		select {
		case <-r.done:
		case <-t.C:
			r.log.Error("recording access events did not stop after cancellation; leaving it running")
		}
	}
	r.cancel()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lost + r.q.len()
}

// ring is a FIFO queue of events in a circular buffer that grows as needed.
type ring struct {
	buf  []*accessv1.AccessEvent
	head int
	n    int
}

func (q *ring) len() int { return q.n }

// push appends e, growing the buffer when it is full.
func (q *ring) push(e *accessv1.AccessEvent) {
	if q.n == len(q.buf) {
		nb := make([]*accessv1.AccessEvent, max(16, 2*len(q.buf)))
		for i := 0; i < q.n; i++ {
			nb[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = nb, 0
	}
	q.buf[(q.head+q.n)%len(q.buf)] = e
	q.n++
}

// pop removes and returns the oldest event; the queue must not be empty.
func (q *ring) pop() *accessv1.AccessEvent {
	e := q.buf[q.head]
	q.buf[q.head] = nil
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	return e
}

package mqttgw

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
)

func TestDedup(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	t.Run("RepeatGetsFirst", func(t *testing.T) {
		c := newDedup(time.Minute, 10)
		e, fresh := c.reserve("a", t0)
		if !fresh {
			t.Fatal("first reserve not fresh")
		}
		c.fill(e, tapResult{})
		e2, fresh := c.reserve("a", t0.Add(time.Second))
		if fresh || e2 != e {
			t.Fatalf("repeat: fresh %v, same entry %v", fresh, e2 == e)
		}
		<-e2.done
		if !e2.ok {
			t.Error("filled entry not ok")
		}
	})
	t.Run("ExpiresAfterTTL", func(t *testing.T) {
		c := newDedup(time.Minute, 10)
		e, _ := c.reserve("a", t0)
		c.fill(e, tapResult{})
		if _, fresh := c.reserve("a", t0.Add(time.Minute)); !fresh {
			t.Error("entry older than the TTL was reused")
		}
	})
	t.Run("OldestEvictedWhenFull", func(t *testing.T) {
		c := newDedup(time.Hour, 3)
		for i := range 5 {
			e, _ := c.reserve(fmt.Sprint(i), t0.Add(time.Duration(i)*time.Second))
			c.fill(e, tapResult{})
		}
		if got := c.len(); got != 3 {
			t.Errorf("len = %d, want 3", got)
		}
		if _, fresh := c.reserve("4", t0.Add(time.Minute)); fresh {
			t.Error("newest entry was evicted")
		}
		if _, fresh := c.reserve("0", t0.Add(time.Minute)); !fresh {
			t.Error("oldest entry was kept")
		}
	})
	t.Run("AbandonAllowsRetry", func(t *testing.T) {
		c := newDedup(time.Hour, 3)
		e, _ := c.reserve("a", t0)
		c.abandon(e)
		<-e.done
		if e.ok {
			t.Error("abandoned entry ok")
		}
		if _, fresh := c.reserve("a", t0); !fresh {
			t.Error("abandoned key not fresh")
		}
	})
	t.Run("ConcurrentRepeatsDecideOnce", func(t *testing.T) {
		c := newDedup(time.Hour, 100)
		var mu sync.Mutex
		fresh := 0
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				e, f := c.reserve("k", t0)
				if f {
					mu.Lock()
					fresh++
					mu.Unlock()
					c.fill(e, tapResult{})
				}
				<-e.done
			})
		}
		wg.Wait()
		if fresh != 1 {
			t.Errorf("%d fresh reservations of one key, want 1", fresh)
		}
	})
}

// fakeRecords records events for recorder tests: a function-field fake at
// the seam to Site.RecordEvents.
type fakeRecords struct {
	mu      sync.Mutex
	got     []*accessv1.AccessEvent
	batches []int
	fail    func(call int) error
	calls   int
	signal  chan struct{}
}

func (f *fakeRecords) record(ctx context.Context, evs []*accessv1.AccessEvent) error {
	f.mu.Lock()
	f.calls++
	call := f.calls
	f.mu.Unlock()
	if f.fail != nil {
		if err := f.fail(call); err != nil {
			return err
		}
	}
	f.mu.Lock()
	f.got = append(f.got, evs...)
	f.batches = append(f.batches, len(evs))
	f.mu.Unlock()
	if f.signal != nil {
		f.signal <- struct{}{}
	}
	return nil
}

func (f *fakeRecords) recorded() []*accessv1.AccessEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*accessv1.AccessEvent(nil), f.got...)
}

func newTestRecorder(f *fakeRecords, mod func(*Config)) *recorder {
	cfg := Config{EventFlushInterval: 10 * time.Millisecond}.WithDefaults()
	if mod != nil {
		mod(&cfg)
	}
	return newRecorder(f.record, cfg, newMetrics("s", "n"), slog.New(slog.DiscardHandler))
}

func ev(i int) *accessv1.AccessEvent { return &accessv1.AccessEvent{RequestId: fmt.Sprint(i)} }

func TestRecorder(t *testing.T) {
	t.Run("BatchesInOrder", func(t *testing.T) {
		block := make(chan struct{})
		f := &fakeRecords{fail: func(call int) error {
			if call == 1 {
				<-block // hold the first call while the rest queue up
			}
			return nil
		}}
		r := newTestRecorder(f, func(c *Config) { c.EventBatchMax = 4 })
		r.start()
		for i := range 11 {
			r.enqueue(ev(i))
		}
		close(block)
		if lost := r.stop(10 * time.Second); lost != 0 {
			t.Fatalf("stop lost %d", lost)
		}
		got := f.recorded()
		if len(got) != 11 {
			t.Fatalf("recorded %d, want 11", len(got))
		}
		for i, e := range got {
			if e.GetRequestId() != fmt.Sprint(i) {
				t.Fatalf("event %d is %s: out of order", i, e.GetRequestId())
			}
		}
		for _, n := range f.batches {
			if n > 4 {
				t.Errorf("batch of %d, more than 4", n)
			}
		}
	})
	t.Run("RetriesWithoutLoss", func(t *testing.T) {
		f := &fakeRecords{fail: func(call int) error {
			if call <= 5 {
				return &access.Error{Code: access.Unavailable, Msg: "no quorum"}
			}
			return nil
		}}
		r := newTestRecorder(f, nil)
		r.start()
		for i := range 3 {
			r.enqueue(ev(i))
		}
		if lost := r.stop(10 * time.Second); lost != 0 {
			t.Fatalf("stop lost %d", lost)
		}
		if got := len(f.recorded()); got != 3 {
			t.Errorf("recorded %d, want 3", got)
		}
	})
	t.Run("InvalidIsNotRetried", func(t *testing.T) {
		f := &fakeRecords{fail: func(call int) error {
			if call == 1 {
				return &access.Error{Code: access.Invalid, Msg: "bad event"}
			}
			return nil
		}}
		r := newTestRecorder(f, nil)
		r.start()
		r.enqueue(ev(0))
		if lost := r.stop(10 * time.Second); lost != 0 {
			t.Fatalf("stop lost %d", lost)
		}
		if f.calls != 1 {
			t.Errorf("%d calls for an invalid batch, want 1", f.calls)
		}
	})
	t.Run("FullQueueDropsOldest", func(t *testing.T) {
		f := &fakeRecords{}
		r := newTestRecorder(f, func(c *Config) { c.EventQueue = 3 })
		// Not started: everything stays queued.
		for i := range 5 {
			r.enqueue(ev(i))
		}
		var got []string
		for r.q.len() > 0 {
			got = append(got, r.q.pop().GetRequestId())
		}
		if fmt.Sprint(got) != "[2 3 4]" {
			t.Errorf("queue kept %v, want the newest [2 3 4]", got)
		}
		if !r.dropping || r.burst != 2 {
			t.Errorf("dropping %v burst %d, want a burst of 2", r.dropping, r.burst)
		}
		r.stop(0)
	})
	t.Run("StopGivesUp", func(t *testing.T) {
		f := &fakeRecords{fail: func(int) error { return errors.New("down") }}
		r := newTestRecorder(f, nil)
		r.start()
		r.enqueue(ev(0))
		r.enqueue(ev(1))
		if lost := r.stop(20 * time.Millisecond); lost != 2 {
			t.Errorf("stop lost %d, want 2", lost)
		}
		r.enqueue(ev(2)) // after stop: dropped, not blocking
	})
}

func TestRing(t *testing.T) {
	var q ring
	next, want := 0, 0
	for round := range 100 {
		for range round%7 + 1 {
			q.push(ev(next))
			next++
		}
		for range round % 5 {
			if q.len() == 0 {
				break
			}
			if got := q.pop().GetRequestId(); got != fmt.Sprint(want) {
				t.Fatalf("pop = %s, want %d", got, want)
			}
			want++
		}
	}
	if q.len() != next-want {
		t.Errorf("len = %d, want %d", q.len(), next-want)
	}
}

func TestRedactErr(t *testing.T) {
	tests := []struct{ in, want string }{
		{"card \"1234567\" is bad", "card \"***4567\" is bad"},
		{"card 1001", "card 1001"},
		{"v 12345 and 99", "v *2345 and 99"},
		{"no digits", "no digits"},
		{"18446744073709551616", "****************1616"},
	}
	for _, tt := range tests {
		if got := redactErr(errors.New(tt.in)); got != tt.want {
			t.Errorf("redactErr(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// Package synctest plays a site's side of the hub's SyncService in tests:
// a replica of its own, a writer and a clock, and sessions over the real
// Connect stream (cleartext HTTP/2), as an edge uplink runs them minus
// Raft. Like net/http/httptest it is for tests only; nothing of the
// product imports it.
package synctest

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/cloud/hubstate"
	syncv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/sync/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/sync/v1/syncv1connect"
	"github.com/gatehouse/gatehouse/replication"
	"github.com/gatehouse/gatehouse/syncwire"
)

// WaitTimeout bounds every wait of a Site; waits end on events, never on
// time.
const WaitTimeout = 20 * time.Second

// Site is a site replicating with a hub. Its replica counts as durable as
// soon as it is applied, unless Hold is set. Its methods are safe for
// concurrent use.
type Site struct {
	id, token string
	// MaxBatch is the most deltas per batch its sessions send (0: the
	// session's default). Set it before Start.
	MaxBatch int

	mu      sync.Mutex
	rep     *replication.Replica
	clock   *replication.Clock
	hold    bool
	acked   replication.Vector // what the hub acknowledged, last session
	changed chan struct{}
	// received lists the vectors of every hello and ack from the hub.
	received []replication.Vector
}

// NewSite returns a site of ID id that presents token to the hub.
func NewSite(tb testing.TB, id, token string) *Site {
	tb.Helper()
	clock, err := replication.NewClock(id, 0, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return &Site{id: id, token: token, rep: replication.NewReplica(), clock: clock, acked: replication.Vector{}, changed: make(chan struct{})}
}

// ID returns the site's ID.
func (s *Site) ID() string { return s.id }

// signal wakes waiters; s.mu must be held.
func (s *Site) signal() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Write makes and applies a change of the site's own.
func (s *Site) Write(tb testing.TB, k replication.Kind, id string, ops ...replication.Op) replication.Delta {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	w, err := replication.NewWriter(s.id, s.rep.Vector())
	if err != nil {
		tb.Fatal(err)
	}
	d, err := w.Make(s.clock.Now(), k, id, ops...)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := s.rep.Apply(d); err != nil {
		tb.Fatal(err)
	}
	s.signal()
	return d
}

// Apply applies deltas to the site's replica as they are, whatever their
// origin or lane (access events the site recorded, or a delta of another
// origin a test forges), and fails the test if one does not apply.
func (s *Site) Apply(tb testing.TB, ds ...replication.Delta) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range ds {
		if _, err := s.rep.Apply(d); err != nil {
			tb.Fatal(err)
		}
	}
	s.signal()
}

// View calls fn with the site's replica under the site's lock. fn must
// not keep the replica nor change it.
func (s *Site) View(fn func(r *replication.Replica)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s.rep)
}

// SetClock replaces the clock that stamps the site's writes (its origin
// must be the site's). Call it before the writes it should stamp.
func (s *Site) SetClock(c *replication.Clock) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clock = c
}

// Vector returns what the site's replica holds.
func (s *Site) Vector() replication.Vector {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rep.Vector()
}

// Acked returns what the hub acknowledged of the site's own deltas in the
// last session (empty from the start of a session until the hub's first
// hello or ack in it).
func (s *Site) Acked() replication.Vector {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acked.Clone()
}

// Snapshot returns the site's materialised state.
func (s *Site) Snapshot() replication.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rep.Snapshot()
}

// Received returns the vectors of every hello and ack the hub sent, in
// order, over every session.
func (s *Site) Received() []replication.Vector {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]replication.Vector, len(s.received))
	for i, v := range s.received {
		out[i] = v.Clone()
	}
	return out
}

// Delta returns the delta the site holds at seq of src.
func (s *Site) Delta(src replication.Source, seq uint64) (replication.Delta, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ds, err := s.rep.Deltas(src, seq-1, 1)
	if err != nil {
		return replication.Delta{}, err
	}
	if len(ds) != 1 {
		return replication.Delta{}, errors.New("synctest: no such delta")
	}
	return ds[0], nil
}

// SetHold holds (true) or releases the site's acknowledgements: while
// held it applies what the hub sends but reports nothing durable.
func (s *Site) SetHold(hold bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold = hold
	s.signal()
}

// Corrupt makes the site's store silently hold other contents under seq of
// src (its ops replaced by ops, the sequence number kept), as a damaged
// disk or a restored backup would: the divergence digests exist to catch
// (docs/replication.md §11). Call it between sessions.
func (s *Site) Corrupt(src replication.Source, seq uint64, ops ...replication.Op) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	fresh := replication.NewReplica()
	for _, from := range s.rep.Vector().Sources() {
		ds, err := s.rep.Deltas(from, 0, 0)
		if err != nil {
			return err
		}
		for _, d := range ds {
			if from == src && d.Seq == seq {
				d.Ops = ops
			}
			if _, err := fresh.Apply(d); err != nil {
				return err
			}
		}
	}
	s.rep = fresh
	s.signal()
	return nil
}

// Wait waits until cond holds of the site, checking it whenever the site
// changes, or fails the test after WaitTimeout.
func (s *Site) Wait(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.NewTimer(WaitTimeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			tb.Fatalf("site %s: gave up waiting for %s", s.id, what)
		}
	}
}

// WaitHas waits until the site holds the hub's priority deltas up to seq.
func (s *Site) WaitHas(tb testing.TB, seq uint64) {
	tb.Helper()
	src := replication.Source{Origin: hubstate.Origin, Lane: replication.LanePriority}
	s.Wait(tb, "the hub's priority delta "+src.String(), func() bool { return s.Vector()[src] >= seq })
}

// Client returns a SyncService client of the hub at baseURL (such as
// "http://127.0.0.1:8080") over cleartext HTTP/2.
func Client(baseURL string) syncv1connect.SyncServiceClient {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return syncv1connect.NewSyncServiceClient(&http.Client{Transport: &http.Transport{Protocols: &p}}, baseURL)
}

// Start runs one session with c in the background until the returned stop
// is called; stop returns the session's error (nil when stopped).
func (s *Site) Start(c syncv1connect.SyncServiceClient) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, c) }()
	return func() error {
		cancel()
		return <-done
	}
}

// locked gives the session the site's replica under the site's lock.
type locked struct{ s *Site }

func (l locked) Vector() replication.Vector { return l.s.Vector() }

func (l locked) Deltas(src replication.Source, after uint64, max int) ([]replication.Delta, error) {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	return l.s.rep.Deltas(src, after, max)
}

func (l locked) ApplyBatch(src replication.Source, ds []replication.Delta) error {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if err := l.s.rep.ApplyBatch(src, ds); err != nil {
		return err
	}
	for _, d := range ds {
		_ = l.s.clock.Observe(d.Stamp)
	}
	l.s.signal()
	return nil
}

// Run runs one session with the hub until ctx ends (nil) or the stream
// fails (its error).
func (s *Site) Run(ctx context.Context, c syncv1connect.SyncServiceClient) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream := c.Sync(ctx)
	stream.RequestHeader().Set("Authorization", "Bearer "+s.token)
	defer stream.CloseRequest()
	s.mu.Lock()
	durable := replication.Vector{}
	if !s.hold {
		durable = s.rep.Vector()
	}
	s.acked = replication.Vector{}
	s.mu.Unlock()
	sess, err := replication.NewSession(replication.SessionConfig{
		Log: locked{s}, Store: locked{s}, Authorizer: replication.AllowAll, Durable: durable, MaxBatch: s.MaxBatch})
	if err != nil {
		return err
	}
	in := make(chan *syncv1.SessionMessage)
	recvErr := make(chan error, 1)
	go func() {
		for {
			res, err := stream.Receive()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case in <- res.GetMessage():
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		s.mu.Lock()
		changed, hold, have := s.changed, s.hold, s.rep.Vector()
		s.mu.Unlock()
		if !hold {
			sess.MarkDurable(have)
		}
		for {
			m, ok, err := sess.Next()
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			pm, err := syncwire.ToWire(s.id, m)
			if err != nil {
				return err
			}
			if err := stream.Send(&syncv1.SyncRequest{Message: pm}); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				if errors.Is(err, io.EOF) { // the hub ended the stream: its reason
					for {
						select {
						case err := <-recvErr:
							return err
						case <-in:
						}
					}
				}
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-recvErr:
			if ctx.Err() != nil {
				return nil
			}
			return err
		case pm := <-in:
			m, err := syncwire.FromWire(hubstate.Origin, pm)
			if err != nil {
				return err
			}
			if err := sess.Receive(m); err != nil {
				return err
			}
			s.mu.Lock()
			if m.Type == replication.MsgHello || m.Type == replication.MsgAck {
				s.received = append(s.received, m.Vector.Clone())
			}
			s.acked = sess.PeerAcked()
			s.signal()
			s.mu.Unlock()
		case <-changed:
		}
	}
}

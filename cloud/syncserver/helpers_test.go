package syncserver_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/cloud/store"
	"github.com/gatehouse/gatehouse/cloud/store/badgerstore"
	"github.com/gatehouse/gatehouse/cloud/syncserver"
	syncv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/sync/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/sync/v1/syncv1connect"
	"github.com/gatehouse/gatehouse/replication"
	"github.com/gatehouse/gatehouse/syncwire"
)

var ctx = context.Background()

// tid returns a canonical test ID numbered n.
func tid(n int) access.ID { return access.ID(fmt.Sprintf("01JBX%021d", n)) }

// The two sites of the tests and their tokens.
var (
	siteA, siteB   = string(tid(1)), string(tid(2))
	tokenA, tokenB = "token-of-site-a-0123456789", "token-of-site-b-0123456789"
)

// waitTimeout bounds every wait; waits end on events, never on time.
const waitTimeout = 20 * time.Second

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// testHub is a hub's sync side: store, state and server behind a real
// HTTP server speaking cleartext HTTP/2.
type testHub struct {
	dir    string
	store  store.Store
	state  *hubstate.State
	server *syncserver.Server
	http   *httptest.Server
	closed bool
}

// MustOpenHub starts a hub over the Badger files in dir, closed at cleanup.
func MustOpenHub(tb testing.TB, dir string, tweak ...func(*syncserver.Config)) *testHub {
	tb.Helper()
	st, err := badgerstore.Open(ctx, dir, store.Options{Kinds: hubstate.Kinds,
		Logger: slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		tb.Fatal(err)
	}
	state, err := hubstate.Open(ctx, st, hubstate.Options{Logger: testLogger(tb)})
	if err != nil {
		tb.Fatal(err)
	}
	auth, err := syncserver.TokenAuth([]syncserver.SiteToken{{Site: siteA, Token: tokenA}, {Site: siteB, Token: tokenB}})
	if err != nil {
		tb.Fatal(err)
	}
	cfg := syncserver.Config{State: state, Leases: st, Authenticate: auth, Logger: testLogger(tb), Owner: "hub-test"}
	for _, f := range tweak {
		f(&cfg)
	}
	srv, err := syncserver.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(srv.Handler())
	hs := httptest.NewUnstartedServer(mux)
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	hs.Config.Protocols = &p
	hs.Start()
	h := &testHub{dir: dir, store: st, state: state, server: srv, http: hs}
	tb.Cleanup(h.Close)
	return h
}

// Close stops the hub in its shutdown order: streams, HTTP, state, store.
func (h *testHub) Close() {
	if h.closed {
		return
	}
	h.closed = true
	h.server.Close()
	h.http.CloseClientConnections()
	h.http.Close()
	h.state.Close()
	h.store.Close()
}

// client returns a SyncService client of the hub over cleartext HTTP/2.
func (h *testHub) client() syncv1connect.SyncServiceClient {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return syncv1connect.NewSyncServiceClient(&http.Client{Transport: &http.Transport{Protocols: &p}}, h.http.URL)
}

// waitHub waits until cond holds of the hub's state.
func waitHub(tb testing.TB, h *testHub, what string, cond func() bool) {
	tb.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		ch := h.state.Changed()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			tb.Fatalf("hub: gave up waiting for %s", what)
		}
	}
}

// testSite plays a site: its own replica, writer and clock, and sessions
// with the hub over the real stream. Its replica counts as durable as soon
// as it is applied.
type testSite struct {
	id, token string
	maxBatch  int

	mu      sync.Mutex
	rep     *replication.Replica
	clock   *replication.Clock
	acked   replication.Vector // what the hub acknowledged, last session
	changed chan struct{}
	// received lists the vectors of every hello and ack from the hub.
	received []replication.Vector
}

func newSite(tb testing.TB, id, token string) *testSite {
	clock, err := replication.NewClock(id, 0, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return &testSite{id: id, token: token, maxBatch: 16, rep: replication.NewReplica(), clock: clock, acked: replication.Vector{}, changed: make(chan struct{})}
}

// signal wakes waiters; ts.mu must be held.
func (ts *testSite) signal() {
	close(ts.changed)
	ts.changed = make(chan struct{})
}

// write makes and applies a change of the site's own.
func (ts *testSite) write(tb testing.TB, k replication.Kind, id string, ops ...replication.Op) replication.Delta {
	tb.Helper()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	w, err := replication.NewWriter(ts.id, ts.rep.Vector())
	if err != nil {
		tb.Fatal(err)
	}
	d, err := w.Make(ts.clock.Now(), k, id, ops...)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := ts.rep.Apply(d); err != nil {
		tb.Fatal(err)
	}
	ts.signal()
	return d
}

// visits makes n visits at the site.
func (ts *testSite) visits(tb testing.TB, from, n int) {
	for i := from; i < from+n; i++ {
		ts.write(tb, replication.KindVisit, string(tid(10000+i)), replication.SetOp("site", ts.id),
			replication.SetOp("until", replication.TimeValue(time.Unix(1_900_000_000, 0))), replication.AdvanceOp(access.VisitCheckedIn))
	}
}

func (ts *testSite) vector() replication.Vector {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.rep.Vector()
}

func (ts *testSite) hubAcked() replication.Vector {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.acked.Clone()
}

func (ts *testSite) snapshot() replication.Snapshot {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.rep.Snapshot()
}

// wait waits until cond holds of the site.
func (ts *testSite) wait(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		ts.mu.Lock()
		ch := ts.changed
		ts.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			tb.Fatalf("site: gave up waiting for %s", what)
		}
	}
}

// lockedRep gives the session the site's replica under the site's lock.
type lockedRep struct{ ts *testSite }

func (l lockedRep) Vector() replication.Vector { return l.ts.vector() }

func (l lockedRep) Deltas(src replication.Source, after uint64, max int) ([]replication.Delta, error) {
	l.ts.mu.Lock()
	defer l.ts.mu.Unlock()
	return l.ts.rep.Deltas(src, after, max)
}

func (l lockedRep) ApplyBatch(src replication.Source, ds []replication.Delta) error {
	l.ts.mu.Lock()
	defer l.ts.mu.Unlock()
	if err := l.ts.rep.ApplyBatch(src, ds); err != nil {
		return err
	}
	for _, d := range ds {
		_ = l.ts.clock.Observe(d.Stamp)
	}
	l.ts.signal()
	return nil
}

// run runs one session with the hub until ctx ends (nil) or the stream
// fails (its error). It is what an edge uplink does, minus Raft.
func (ts *testSite) run(ctx context.Context, c syncv1connect.SyncServiceClient) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream := c.Sync(ctx)
	stream.RequestHeader().Set("Authorization", "Bearer "+ts.token)
	sess, err := replication.NewSession(replication.SessionConfig{
		Log: lockedRep{ts}, Store: lockedRep{ts}, Authorizer: replication.AllowAll,
		Durable: ts.vector(), MaxBatch: ts.maxBatch,
	})
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
	defer stream.CloseRequest()
	for {
		ts.mu.Lock()
		changed := ts.changed
		ts.mu.Unlock()
		for {
			m, ok, err := sess.Next()
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			pm, err := syncwire.ToWire(ts.id, m)
			if err != nil {
				return err
			}
			if err := stream.Send(&syncv1.SyncRequest{Message: pm}); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				if errors.Is(err, io.EOF) {
					return <-recvErr
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
			sess.MarkDurable(ts.vector())
			ts.mu.Lock()
			if m.Type == replication.MsgHello || m.Type == replication.MsgAck {
				ts.received = append(ts.received, m.Vector.Clone())
			}
			ts.acked = sess.PeerAcked()
			ts.signal()
			ts.mu.Unlock()
		case <-changed:
		}
	}
}

// start runs sessions in the background until stopped; stop returns the
// error of the session.
func (ts *testSite) start(c syncv1connect.SyncServiceClient) (stop func() error) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ts.run(ctx, c) }()
	return func() error {
		cancel()
		return <-done
	}
}

// connectCode returns the Connect code of err, or 0.
func connectCode(err error) connect.Code {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Code()
	}
	return 0
}

package syncserver_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/cloud/store"
	"github.com/gatehouse/gatehouse/cloud/store/badgerstore"
	"github.com/gatehouse/gatehouse/cloud/syncserver"
	"github.com/gatehouse/gatehouse/cloud/synctest"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/sync/v1/syncv1connect"
	"github.com/gatehouse/gatehouse/replication"
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
	return synctest.Client(h.http.URL)
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

// newSite returns a test site (cloud/synctest) whose sessions send
// batches of at most 16 deltas, so that the tests' few hundred deltas
// travel in many batches.
func newSite(tb testing.TB, id, token string) *synctest.Site {
	tb.Helper()
	ts := synctest.NewSite(tb, id, token)
	ts.MaxBatch = 16
	return ts
}

// visits makes n visits at the site.
func visits(tb testing.TB, ts *synctest.Site, from, n int) {
	tb.Helper()
	for i := from; i < from+n; i++ {
		ts.Write(tb, replication.KindVisit, string(tid(10000+i)), replication.SetOp("site", ts.ID()),
			replication.SetOp("until", replication.TimeValue(time.Unix(1_900_000_000, 0))), replication.AdvanceOp(access.VisitCheckedIn))
	}
}

// siteDeltas returns up to max deltas of src the site holds after after.
func siteDeltas(ts *synctest.Site, src replication.Source, after uint64, max int) (ds []replication.Delta, err error) {
	ts.View(func(r *replication.Replica) { ds, err = r.Deltas(src, after, max) })
	return ds, err
}

// connectCode returns the Connect code of err, or 0.
func connectCode(err error) connect.Code {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Code()
	}
	return 0
}

package visits

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/cloud/store"
	"github.com/gatehouse/gatehouse/cloud/store/badgerstore"
	"github.com/gatehouse/gatehouse/replication"
)

// These tests drive the service directly over a hubstate on a real Badger
// store, with a clock the test moves (no sleeps).

var (
	tSite = access.ID("01JS1TE0000000000000000001")
	tHost = access.ID("01JH0ST0000000000000000001")
)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func tctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func tlog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// mustOpenStore opens a Badger store in dir for the hub's kinds, closed
// at cleanup.
func mustOpenStore(t testing.TB, dir string) store.Store {
	t.Helper()
	st, err := badgerstore.Open(tctx(t), dir, store.Options{Kinds: slices.Concat(hubstate.Kinds, Kinds)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// mustOpenState opens a hub replica over st, closed at cleanup.
func mustOpenState(t testing.TB, st store.Store) *hubstate.State {
	t.Helper()
	hs, err := hubstate.Open(tctx(t), st, hubstate.Options{Logger: tlog(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hs.Close() })
	return hs
}

// mustNewService returns a service over hs and st, not opened, with its
// keys in keyDir and the clock c.
func mustNewService(t testing.TB, hs *hubstate.State, st store.Store, keyDir string, c *fakeClock, tune func(*Options)) *Service {
	t.Helper()
	opts := Options{Config: Config{PublicURL: "http://visits.test", KeyDir: keyDir}, State: hs, Store: st, Now: c.now, Logger: tlog(t)}
	if tune != nil {
		tune(&opts)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// seed writes the site (with its time zone) and the host.
func seed(t testing.TB, hs *hubstate.State) {
	t.Helper()
	if _, err := hs.Write(tctx(t), func(tx *hubstate.Tx) error {
		tx.Change(replication.KindSite, string(tSite), replication.SetOp("name", "Demo HQ"), replication.SetOp("time_zone", "Europe/Berlin"))
		tx.Change(replication.KindPerson, string(tHost), replication.SetOp("kind", "access_user"),
			replication.SetOp("name", "Bob Host"), replication.SetOp("email", "bob@example.test"))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// invite invites one guest per name for [from, until) and returns the visits.
func invite(t testing.TB, s *Service, from, until time.Time, families ...string) []View {
	t.Helper()
	in := InviteIn{Site: tSite, Host: tHost, From: from, Until: until}
	for _, f := range families {
		in.Guests = append(in.Guests, GuestIn{Given: "G", Family: f, Email: f + "@example.test"})
	}
	out, err := s.Invite(tctx(t), in)
	if err != nil {
		t.Fatal(err)
	}
	return out.Visits
}

// siteReplica is the test site: its own writer and clock, and a replica
// holding what it received from the hub and made itself.
type siteReplica struct {
	w     *replication.Writer
	clock *replication.Clock
	rep   *replication.Replica
}

func newSiteReplica(t testing.TB, hs *hubstate.State) *siteReplica {
	t.Helper()
	w, err1 := replication.NewWriter(string(tSite), nil)
	c, err2 := replication.NewClock(string(tSite), 0, nil)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	s := &siteReplica{w: w, clock: c, rep: replication.NewReplica()}
	s.receive(t, hs)
	return s
}

// receive applies what the hub holds of origin "hub" and the site lacks.
func (s *siteReplica) receive(t testing.TB, hs *hubstate.State) {
	t.Helper()
	for src, head := range hs.Vector() {
		if src.Origin != hubstate.Origin {
			continue
		}
		ds, _ := hs.Deltas(src, s.rep.Vector()[src], int(head))
		if len(ds) == 0 {
			continue
		}
		if err := s.rep.ApplyBatch(src, ds); err != nil {
			t.Fatal(err)
		}
	}
}

// make makes and applies a delta of the site.
func (s *siteReplica) make(t testing.TB, k replication.Kind, id string, ops ...replication.Op) replication.Delta {
	t.Helper()
	d, err := s.w.Make(s.clock.Now(), k, id, ops...)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.rep.ApplyBatch(d.Source(), []replication.Delta{d}); err != nil {
		t.Fatal(err)
	}
	return d
}

// siteUpload applies the site's deltas at the hub, as the sync server would
// once the WAN is back (each lane's in order).
func siteUpload(t testing.TB, hs *hubstate.State, ds ...replication.Delta) {
	t.Helper()
	for _, d := range ds {
		if err := hs.Apply(tctx(t), d.Source(), []replication.Delta{d}, nil); err != nil {
			t.Fatal(err)
		}
	}
}

func stateOf(t testing.TB, s *Service, id access.ID) access.VisitState {
	t.Helper()
	v, err := s.View(tctx(t), id)
	if err != nil {
		t.Fatal(err)
	}
	return v.State
}

// TestNoShowExpiry: visits nobody checked in are expired once their window
// ended NoShowGrace ago, not before; a visit checked in, one whose window
// is later and a cancelled one are left alone; a held visit is no longer
// held; the expired visits leave the list of expected guests and their
// guest links stop working.
func TestNoShowExpiry(t *testing.T) {
	dir := t.TempDir()
	st := mustOpenStore(t, dir+"/store")
	hs := mustOpenState(t, st)
	seed(t, hs)
	clock := &fakeClock{t: time.Now()}
	s := mustNewService(t, hs, st, dir+"/keys", clock, func(o *Options) { o.NoShowGrace = Duration(30 * time.Minute) })
	if _, err := s.PutWatchEntry(tctx(t), access.WatchEntry{GivenNames: "G", Surname: "Held", Action: access.WatchHold, Reason: "check"}); err != nil {
		t.Fatal(err)
	}
	from := clock.now().Add(time.Hour).Truncate(time.Minute)
	until := from.Add(2 * time.Hour)
	vs := invite(t, s, from, until, "Noshow", "Arrived", "Held", "Cancelled")
	noShow, arrived, held, cancelled := vs[0], vs[1], vs[2], vs[3]
	later := invite(t, s, from, until.Add(24*time.Hour), "Tomorrow")[0]
	if !held.Held || held.State != access.VisitRequested {
		t.Fatalf("the watchlisted guest's visit: %+v", held)
	}
	if _, err := s.Cancel(tctx(t), cancelled.ID); err != nil {
		t.Fatal(err)
	}
	site := newSiteReplica(t, hs)
	siteUpload(t, hs, site.make(t, replication.KindVisit, string(arrived.ID), replication.AdvanceOp(access.VisitCheckedIn)))
	token, err := s.keys.Sign(access.TokenClaims{Visit: noShow.ID, Site: tSite, Guest: noShow.VisitorID, NotBefore: clock.now(), Expires: until.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.GuestHandler())
	t.Cleanup(srv.Close)
	guestPage := func() int {
		res, err := http.Get(srv.URL + "/guest/" + token)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if got := guestPage(); got != 200 {
		t.Fatalf("guest page before expiry: %d", got)
	}

	clock.set(until.Add(29 * time.Minute))
	if n, err := s.ExpireNoShows(tctx(t)); err != nil || n != 0 {
		t.Fatalf("within the grace: expired %d, %v", n, err)
	}
	if got := guestPage(); got != 200 {
		t.Fatalf("guest page within the grace: %d", got)
	}
	clock.set(until.Add(30 * time.Minute))
	if n, err := s.ExpireNoShows(tctx(t)); err != nil || n != 2 {
		t.Fatalf("after the grace: expired %d, %v; want 2", n, err)
	}
	for _, c := range []struct {
		what string
		id   access.ID
		want access.VisitState
	}{{"no-show", noShow.ID, access.VisitExpired}, {"held", held.ID, access.VisitExpired},
		{"checked in", arrived.ID, access.VisitCheckedIn}, {"cancelled", cancelled.ID, access.VisitCancelled},
		{"later", later.ID, access.VisitInvited}} {
		if got := stateOf(t, s, c.id); got != c.want {
			t.Errorf("%s visit: %v, want %v", c.what, got, c.want)
		}
	}
	if v, _ := s.View(tctx(t), held.ID); v.Held {
		t.Errorf("an expired visit still held")
	}
	expected, err := s.List(tctx(t), Filter{Site: tSite, States: []access.VisitState{access.VisitRequested, access.VisitInvited, access.VisitPreRegistered}})
	if err != nil {
		t.Fatal(err)
	}
	if len(expected) != 1 || expected[0].ID != later.ID {
		t.Errorf("expected guests after expiry: %d, want only the later visit", len(expected))
	}
	if got := guestPage(); got != http.StatusGone {
		t.Errorf("guest page of an expired visit: %d, want 410", got)
	}
	// The expiry is a final state: it travels in the priority lane.
	if got := hs.Vector()[replication.Source{Origin: hubstate.Origin, Lane: replication.LanePriority}]; got < 2 {
		t.Errorf("hub's priority lane holds %d deltas, want the expiries", got)
	}
	// A second pass finds nothing to do.
	if n, err := s.ExpireNoShows(tctx(t)); err != nil || n != 0 {
		t.Errorf("second pass: %d, %v", n, err)
	}
}

// TestExpiryConvergesWithSiteCheckIn: the site (offline) checks a guest in
// late in the window, and out; the hub, not knowing, expires the visit
// after the grace. Whatever order the deltas meet in, hub and site end
// at expired (the larger state), the hub keeps the site's time in, and
// sends no arrival email for a visit already over.
func TestExpiryConvergesWithSiteCheckIn(t *testing.T) {
	dir := t.TempDir()
	st := mustOpenStore(t, dir+"/store")
	hs := mustOpenState(t, st)
	seed(t, hs)
	clock := &fakeClock{t: time.Now()}
	s := mustNewService(t, hs, st, dir+"/keys", clock, nil)
	from := clock.now().Add(-time.Hour)
	until := clock.now().Add(time.Hour)
	v := invite(t, s, from, until, "Late")[0]
	site := newSiteReplica(t, hs) // has the invitation; then the WAN goes down
	in := site.make(t, replication.KindVisit, string(v.ID), replication.AdvanceOp(access.VisitCheckedIn))
	out := site.make(t, replication.KindVisit, string(v.ID), replication.AdvanceOp(access.VisitCheckedOut))

	clock.set(until.Add(DefaultNoShowGrace))
	if n, err := s.ExpireNoShows(tctx(t)); err != nil || n != 1 {
		t.Fatalf("expired %d, %v; want 1", n, err)
	}
	siteUpload(t, hs, out, in) // the WAN is back: priority lane first
	site.receive(t, hs)
	got, err := s.View(tctx(t), v.ID)
	if err != nil {
		t.Fatal(err)
	}
	siteV, _ := site.rep.Visit(v.ID)
	if got.State != access.VisitExpired || siteV.State != access.VisitExpired {
		t.Errorf("hub %v, site %v; want both expired", got.State, siteV.State)
	}
	if !got.CheckedIn.Equal(in.Stamp.Time()) {
		t.Errorf("time in %v, want the site's %v", got.CheckedIn, in.Stamp.Time())
	}
	if err := s.announceArrivals(tctx(t)); err != nil {
		t.Fatal(err)
	}
	if n := countKind(t, st, mailArrival); n != 0 {
		t.Errorf("%d arrival emails queued for a visit already over", n)
	}
}

// countKind counts the outbox's emails of kind.
func countKind(t testing.TB, st store.Store, kind string) int {
	t.Helper()
	n := 0
	if err := scanAll(tctx(t), st, KindOutbox, func(e store.Entity) error {
		var m outboxMail
		if err := json.Unmarshal(e.Data, &m); err != nil {
			return err
		}
		if m.Kind == kind {
			n++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestExpiryWorker: the worker of an opened service expires a no-show on
// its own once the clock passes the grace.
func TestExpiryWorker(t *testing.T) {
	dir := t.TempDir()
	st := mustOpenStore(t, dir+"/store")
	hs := mustOpenState(t, st)
	seed(t, hs)
	clock := &fakeClock{t: time.Now()}
	s := mustNewService(t, hs, st, dir+"/keys", clock, func(o *Options) { o.ExpiryInterval = Duration(5 * time.Millisecond) })
	until := clock.now().Add(time.Hour)
	v := invite(t, s, clock.now(), until, "Worker")[0]
	if err := s.Open(tctx(t)); err != nil {
		t.Fatal(err)
	}
	clock.set(until.Add(DefaultNoShowGrace))
	deadline := time.Now().Add(20 * time.Second)
	for stateOf(t, s, v.ID) != access.VisitExpired {
		if time.Now().After(deadline) {
			t.Fatalf("not expired by the worker: %v", stateOf(t, s, v.ID))
		}
		select {
		case <-hs.Changed():
		case <-time.After(50 * time.Millisecond): // polling interval, not synchronisation
		}
	}
}

// TestArrivalOnceAcrossProcesses: two hub processes share a store; each
// learns of the same check-ins (one from its sync stream, the other by
// refreshing from the store) and both try to announce them, concurrently:
// every visit gets exactly one arrival email. A process that starts after
// a check-in it never announced (a crash in between) announces it.
func TestArrivalOnceAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	st := mustOpenStore(t, dir+"/store")
	a, b := mustOpenState(t, st), mustOpenState(t, st)
	seed(t, a)
	clock := &fakeClock{t: time.Now()}
	sa := mustNewService(t, a, st, dir+"/keys", clock, nil)
	vs := invite(t, sa, clock.now(), clock.now().Add(2*time.Hour), "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight")
	site := newSiteReplica(t, a)
	var ds []replication.Delta
	for _, v := range vs {
		ds = append(ds, site.make(t, replication.KindVisit, string(v.ID), replication.AdvanceOp(access.VisitCheckedIn)))
	}
	siteUpload(t, a, ds...)
	if err := b.Refresh(tctx(t)); err != nil {
		t.Fatal(err)
	}
	// The second process starts only now: it has never seen the
	// check-ins announced, and reads them from the start.
	sb := mustNewService(t, b, st, dir+"/keys", clock, nil)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, s := range []*Service{sa, sb} {
		wg.Go(func() { errs[i] = s.announceArrivals(tctx(t)) })
	}
	wg.Wait()
	if err := errs[0]; err != nil {
		t.Fatal(err)
	}
	if err := errs[1]; err != nil {
		t.Fatal(err)
	}
	if n := countKind(t, st, mailArrival); n != len(vs) {
		t.Fatalf("%d arrival emails queued for %d check-ins", n, len(vs))
	}
	for _, s := range []*Service{sa, sb} { // again: nothing more
		if err := s.announceArrivals(tctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	if n := countKind(t, st, mailArrival); n != len(vs) {
		t.Fatalf("%d arrival emails after a second pass, want %d", n, len(vs))
	}
	for _, v := range vs {
		view, err := sb.View(tctx(t), v.ID)
		if err != nil {
			t.Fatal(err)
		}
		if k := slices.IndexFunc(view.Emails, func(e EmailStatus) bool { return e.Kind == mailArrival }); k < 0 {
			t.Errorf("visit %s lists no arrival email", v.ID)
		}
	}
}

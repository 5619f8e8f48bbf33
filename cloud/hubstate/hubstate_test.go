package hubstate_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/cloud/store"
	"github.com/gatehouse/gatehouse/cloud/store/badgerstore"
	"github.com/gatehouse/gatehouse/replication"
)

var ctx = context.Background()

// tid returns a canonical test ID numbered n.
func tid(n int) access.ID { return access.ID(fmt.Sprintf("01JBX%021d", n)) }

// MustOpenStore opens a Badger store in dir, closed at cleanup.
func MustOpenStore(tb testing.TB, dir string) store.Store {
	tb.Helper()
	st, err := badgerstore.Open(ctx, dir, store.Options{Kinds: hubstate.Kinds,
		Logger: slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return st
}

// MustOpen opens a state over a Badger store in dir; both closed at cleanup.
func MustOpen(tb testing.TB, dir string) (*hubstate.State, store.Store) {
	tb.Helper()
	st := MustOpenStore(tb, dir)
	s, err := hubstate.Open(ctx, st, hubstate.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s, st
}

// addPerson writes a person with a card at the hub.
func addPerson(t *testing.T, s *hubstate.State, person access.ID, card access.CardNumber) error {
	t.Helper()
	_, err := s.Write(ctx, func(tx *hubstate.Tx) error {
		tx.Change(replication.KindPerson, string(person), replication.SetOp("name", "P "+string(person)),
			replication.SetOp("kind", "occupier"), tx.Replica().EnableOp(replication.KindPerson, string(person)))
		if card != 0 {
			tx.Change(replication.KindCard, card.String(), replication.AddOp("holders", replication.HolderValue(person, "")),
				tx.Replica().EnableOp(replication.KindCard, card.String()))
		}
		return nil
	})
	return err
}

// siteDeltas makes n deltas of a site origin creating visits at the site.
func siteDeltas(t *testing.T, origin string, site access.ID, first, n int) []replication.Delta {
	t.Helper()
	w, err := replication.NewWriter(origin, replication.Vector{{Origin: origin, Lane: replication.LaneNormal}: uint64(first - 1)})
	if err != nil {
		t.Fatal(err)
	}
	var out []replication.Delta
	for i := first; i < first+n; i++ {
		d, err := w.Make(replication.Stamp{Wall: time.Now().UnixNano(), Origin: origin}, replication.KindVisit, string(tid(1000+i)),
			replication.SetOp("site", string(site)), replication.AdvanceOp(access.VisitCheckedIn))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

func TestRestartKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	site := tid(1)
	origin := string(site)
	src := replication.Source{Origin: origin, Lane: replication.LaneNormal}

	st := MustOpenStore(t, dir)
	s, err := hubstate.Open(ctx, st, hubstate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := addPerson(t, s, tid(30), 1001); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(ctx, func(tx *hubstate.Tx) error {
		tx.Change(replication.KindPerson, string(tid(30)), replication.DisableOp("left")) // priority lane
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, src, siteDeltas(t, origin, site, 1, 5), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordAck(ctx, origin, s.Vector()); err != nil {
		t.Fatal(err)
	}
	wantVec, wantSnap := s.Vector(), s.Snapshot()
	last := s.Clock().Last()
	s.Close()
	st.Close()

	s2, _ := MustOpen(t, dir)
	if got := s2.Vector(); !got.Equal(wantVec) {
		t.Fatalf("vector after restart = %v, want %v", got, wantVec)
	}
	if got := s2.Snapshot(); !reflect.DeepEqual(got, wantSnap) {
		t.Fatalf("snapshot after restart = %+v, want %+v", got, wantSnap)
	}
	if acked, err := s2.Acked(ctx, origin); err != nil || !acked.Equal(wantVec) {
		t.Fatalf("acked after restart = %v, %v; want %v", acked, err, wantVec)
	}
	if now := s2.Clock().Now(); !last.Less(now) {
		t.Fatalf("clock after restart made %v, not after %v", now, last)
	}
	// The hub's writer resumes after its durable sequence numbers.
	ds, err := s2.Write(ctx, func(tx *hubstate.Tx) error {
		tx.Change(replication.KindPerson, string(tid(31)), replication.SetOp("name", "Q"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ds[0].Seq, wantVec[replication.Source{Origin: hubstate.Origin, Lane: replication.LaneNormal}]+1; got != want {
		t.Fatalf("seq after restart = %d, want %d", got, want)
	}
	// A site batch resumes too, and a duplicate of what was applied is ignored.
	if err := s2.Apply(ctx, src, siteDeltas(t, origin, site, 4, 4), nil); err != nil {
		t.Fatal(err)
	}
	if got := s2.Vector()[src]; got != 7 {
		t.Fatalf("site source at %d, want 7", got)
	}
}

func TestConcurrentWrites(t *testing.T) {
	s, st := MustOpen(t, t.TempDir())
	const writers, each = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers*each+1)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				n := w*each + i
				errs <- addPerson(t, s, tid(100+n), access.CardNumber(5000+n))
			}
		})
	}
	site := tid(1)
	batch := siteDeltas(t, string(site), site, 1, 20)
	wg.Go(func() {
		errs <- s.Apply(ctx, replication.Source{Origin: string(site), Lane: replication.LaneNormal}, batch, nil)
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := len(s.Cards()); got != writers*each {
		t.Fatalf("%d cards, want %d", got, writers*each)
	}
	if got, want := s.Vector()[replication.Source{Origin: hubstate.Origin, Lane: replication.LaneNormal}], uint64(2*writers*each); got != want {
		t.Fatalf("hub normal lane at %d, want %d", got, want)
	}
	// The store holds the same: a fresh state over it sees the same snapshot.
	s2, err := hubstate.Open(ctx, st, hubstate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s2.Snapshot(), s.Snapshot()) {
		t.Fatal("a state reopened over the store differs")
	}
}

func TestCardNumberConflicts(t *testing.T) {
	s, st := MustOpen(t, t.TempDir())
	p1, p2, p3 := tid(30), tid(31), tid(32)
	const num access.CardNumber = 4242
	if err := addPerson(t, s, p1, num); err != nil {
		t.Fatal(err)
	}
	if owner, err := st.Owner(ctx, hubstate.CardNamespace, num.String()); err != nil || owner != string(p1) {
		t.Fatalf("claim = %q, %v; want %q", owner, err, p1)
	}
	t.Run("ErrSecondHolder", func(t *testing.T) {
		before := s.Vector()
		err := addPerson(t, s, p2, num)
		if !errors.Is(err, hubstate.ErrCardTaken) || access.ErrorCode(err) != access.Conflict {
			t.Fatalf("second holder: %v, want a conflict wrapping ErrCardTaken", err)
		}
		if got := s.Vector(); !got.Equal(before) {
			t.Fatalf("vector moved to %v after a refused write", got)
		}
		for _, p := range s.People() {
			if p.ID == p2 {
				t.Fatal("refused write created its person")
			}
		}
	})
	t.Run("SameHolderAgain", func(t *testing.T) {
		if err := addPerson(t, s, p1, num); err != nil {
			t.Fatalf("rebinding the same holder: %v", err)
		}
	})
	t.Run("ErrLiveAtSite", func(t *testing.T) {
		// A site-homed card bound at a site holds no hub claim, yet the hub
		// may not hand its number out.
		site := tid(1)
		w, _ := replication.NewWriter(string(site), nil)
		d, err := w.Make(replication.Stamp{Wall: time.Now().UnixNano(), Origin: string(site)}, replication.KindCard, "777",
			replication.SetOp("site", string(site)), replication.AddOp("holders", replication.HolderValue(p3, "")))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Apply(ctx, d.Source(), []replication.Delta{d}, nil); err != nil {
			t.Fatal(err)
		}
		if err := addPerson(t, s, p2, 777); !errors.Is(err, hubstate.ErrCardTaken) {
			t.Fatalf("number live at a site: %v, want ErrCardTaken", err)
		}
	})
	t.Run("DeleteFrees", func(t *testing.T) {
		if _, err := s.Write(ctx, func(tx *hubstate.Tx) error {
			tx.Change(replication.KindPerson, string(p1), replication.DeleteOp())
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Owner(ctx, hubstate.CardNamespace, num.String()); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("claim after delete: %v, want free", err)
		}
		if err := addPerson(t, s, p2, num); err != nil {
			t.Fatalf("reusing a freed number: %v", err)
		}
	})
	t.Run("RemoveHolderFrees", func(t *testing.T) {
		if _, err := s.Write(ctx, func(tx *hubstate.Tx) error {
			tx.Change(replication.KindCard, num.String(), tx.Replica().RemoveOp(replication.KindCard, num.String(), "holders", string(p2)))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := addPerson(t, s, p3, num); err != nil {
			t.Fatalf("reusing a number after its holder was removed: %v", err)
		}
	})
	t.Run("StaleClaimFreed", func(t *testing.T) {
		// The holder is deleted by someone else (a site): the claim is stale
		// and the next hub write binding the number frees it.
		const n2 access.CardNumber = 9090
		p4, p5 := tid(40), tid(41)
		if err := addPerson(t, s, p4, n2); err != nil {
			t.Fatal(err)
		}
		site := tid(2)
		w, _ := replication.NewWriter(string(site), nil)
		d, _ := w.Make(replication.Stamp{Wall: time.Now().UnixNano(), Origin: string(site)}, replication.KindPerson, string(p4), replication.DeleteOp())
		if err := s.Apply(ctx, d.Source(), []replication.Delta{d}, nil); err != nil {
			t.Fatal(err)
		}
		if err := addPerson(t, s, p5, n2); err != nil {
			t.Fatalf("binding a number whose claim is stale: %v", err)
		}
		if owner, _ := st.Owner(ctx, hubstate.CardNamespace, n2.String()); owner != string(p5) {
			t.Fatalf("claim owner = %q, want %q", owner, p5)
		}
	})
	t.Run("ConcurrentClaims", func(t *testing.T) {
		const n3 access.CardNumber = 3131
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for i := range 8 {
			wg.Go(func() {
				err := addPerson(t, s, tid(200+i), n3)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case !errors.Is(err, hubstate.ErrCardTaken):
					t.Errorf("claim: %v", err)
				}
			})
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("%d writers bound card %d, want 1", wins, n3)
		}
		if c := s.Conflicts(); len(c) != 0 {
			t.Fatalf("conflicts %v", c)
		}
	})
}

func TestFailedCommitAppliesNothing(t *testing.T) {
	s, st := MustOpen(t, t.TempDir())
	site := tid(1)
	origin := string(site)
	src := replication.Source{Origin: origin, Lane: replication.LaneNormal}
	if err := s.Apply(ctx, src, siteDeltas(t, origin, site, 1, 3), nil); err != nil {
		t.Fatal(err)
	}
	before, snap := s.Vector(), s.Snapshot()

	t.Run("Fenced", func(t *testing.T) {
		l, err := st.Acquire(ctx, origin, "someone", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		err = s.Apply(ctx, src, siteDeltas(t, origin, site, 4, 3), &store.Fence{Site: origin, Token: l.Token + 1})
		if !errors.Is(err, store.ErrFenced) {
			t.Fatalf("stale fence: %v, want ErrFenced", err)
		}
	})
	t.Run("StoreRefuses", func(t *testing.T) {
		// The store already holds other bytes under the next sequence number
		// (as if another hub process had written it): the commit fails.
		other := siteDeltas(t, origin, site, 4, 1)[0]
		other.Ops = []replication.Op{replication.SetOp("escort", "true")}
		data, _ := other.MarshalBinary()
		if err := st.Append(ctx, hubstate.StoreOrigin(src), store.Record{Seq: 4, Lane: store.Normal, Data: data}); err != nil {
			t.Fatal(err)
		}
		err := s.Apply(ctx, src, siteDeltas(t, origin, site, 4, 3), nil)
		if !errors.Is(err, store.ErrRecordMismatch) {
			t.Fatalf("mismatching commit: %v, want ErrRecordMismatch", err)
		}
	})
	t.Run("Gap", func(t *testing.T) {
		if err := s.Apply(ctx, src, siteDeltas(t, origin, site, 9, 2), nil); !errors.Is(err, replication.ErrGap) {
			t.Fatalf("batch past a gap: %v, want ErrGap", err)
		}
	})
	t.Run("Invalid", func(t *testing.T) {
		ds := siteDeltas(t, origin, site, 4, 3)
		ds[2].Ops = nil
		if err := s.Apply(ctx, src, ds, nil); access.ErrorCode(err) != access.Invalid {
			t.Fatalf("batch with an invalid delta: %v, want invalid", err)
		}
	})
	if got := s.Vector(); !got.Equal(before) {
		t.Fatalf("vector %v after failed batches, want %v", got, before)
	}
	if !reflect.DeepEqual(s.Snapshot(), snap) {
		t.Fatal("snapshot changed by failed batches")
	}
}

func TestHubWriteRace(t *testing.T) {
	// Two states over one store, as two hub processes: the second to
	// write origin "hub" with a sequence number the first used gets
	// ErrStale, catches up, and succeeds on retry.
	st := MustOpenStore(t, t.TempDir())
	a, err := hubstate.Open(ctx, st, hubstate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := hubstate.Open(ctx, st, hubstate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := addPerson(t, a, tid(30), 0); err != nil {
		t.Fatal(err)
	}
	if err := addPerson(t, b, tid(31), 0); !errors.Is(err, hubstate.ErrStale) {
		t.Fatalf("racing write: %v, want ErrStale", err)
	}
	if err := addPerson(t, b, tid(31), 0); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.Snapshot(), b.Snapshot()) {
		t.Fatal("states differ after refresh")
	}
}

// TestWritePutsEntitiesInTheSameCommit checks Tx.Put: the entity is stored
// with the deltas, and a failing conditional put writes neither.
func TestWritePutsEntitiesInTheSameCommit(t *testing.T) {
	s, st := MustOpen(t, t.TempDir())
	zero := uint64(0)
	_, err := s.Write(ctx, func(tx *hubstate.Tx) error {
		tx.Change(replication.KindPerson, string(tid(1)), replication.SetOp("name", "A"), replication.SetOp("kind", "visitor"))
		tx.Put(store.Put{Entity: store.Entity{Kind: "meta", ID: "outbox/1", Version: 1, Data: []byte("mail")}, IfVersion: &zero})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if e, err := st.Get(ctx, "meta", "outbox/1"); err != nil || string(e.Data) != "mail" {
		t.Fatalf("entity after write: %+v, %v", e, err)
	}
	before := s.Vector()
	_, err = s.Write(ctx, func(tx *hubstate.Tx) error {
		tx.Change(replication.KindPerson, string(tid(2)), replication.SetOp("name", "B"), replication.SetOp("kind", "visitor"))
		tx.Put(store.Put{Entity: store.Entity{Kind: "meta", ID: "outbox/1", Version: 2, Data: []byte("again")}, IfVersion: &zero})
		return nil
	})
	if !errors.Is(err, store.ErrVersionMismatch) {
		t.Fatalf("conditional put of an existing entity: %v, want ErrVersionMismatch", err)
	}
	if got := s.Vector(); !reflect.DeepEqual(got, before) {
		t.Errorf("vector moved on a failed write: %v, want %v", got, before)
	}
	if _, ok := s.Facts().Field(replication.KindPerson, string(tid(2)), "name"); ok {
		t.Error("the failed write's delta was applied")
	}
	// A write of puts alone makes no delta.
	ds, err := s.Write(ctx, func(tx *hubstate.Tx) error {
		tx.Put(store.Put{Entity: store.Entity{Kind: "meta", ID: "outbox/2", Version: 1, Data: []byte("x")}})
		return nil
	})
	if err != nil || len(ds) != 0 {
		t.Fatalf("puts-only write: %d deltas, %v", len(ds), err)
	}
	if _, err := st.Get(ctx, "meta", "outbox/2"); err != nil {
		t.Fatal(err)
	}
}

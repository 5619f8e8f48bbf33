package hubstate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/store"
	"github.com/gatehouse/gatehouse/cloud/store/badgerstore"
	"github.com/gatehouse/gatehouse/replication"
)

// failingStore fails every Commit after the first ok ones, as a crash
// would cut them off. Commits may come from several goroutines.
type failingStore struct {
	store.Store
	mu sync.Mutex
	ok int
}

var errCut = errors.New("cut off")

func (f *failingStore) Commit(ctx context.Context, b store.Batch) error {
	f.mu.Lock()
	cut := f.ok == 0
	if !cut {
		f.ok--
	}
	f.mu.Unlock()
	if cut {
		return errCut
	}
	return f.Store.Commit(ctx, b)
}

func bulkID(n int) access.ID { return access.ID(fmt.Sprintf("01JBY%021d", n)) }

// writeMany writes n people with a card each in one Write.
func writeMany(s *State, n int) error {
	_, err := s.Write(context.Background(), func(tx *Tx) error {
		for i := range n {
			id := string(bulkID(i))
			tx.Change(replication.KindPerson, id, replication.SetOp("name", "P"+id), replication.SetOp("kind", "occupier"))
			card := access.CardNumber(1_000_000 + i).String()
			tx.Change(replication.KindCard, card, replication.AddOp("holders", id))
		}
		return nil
	})
	return err
}

func TestWriteLargerThanOneCommit(t *testing.T) {
	ctx := context.Background()
	const n = 6000 // 12,000 deltas and 6,000 claims: several store commits
	for _, tc := range []struct {
		name string
		ok   int // commits that succeed before the cut; -1 for none cut
		want int // people after reopening
	}{
		{"OK", -1, n},
		{"CutWhileStaging", 0, 0},
		{"CutWhileFinishing", 3, n}, // staged (marker written), claims, then cut: finished on open
		{"CutAfterSomeRecords", 4, n},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			st, err := badgerstore.Open(ctx, dir, store.Options{Kinds: Kinds})
			if err != nil {
				t.Fatal(err)
			}
			var use store.Store = st
			if tc.ok >= 0 {
				use = &failingStore{Store: st, ok: tc.ok}
			}
			s, err := Open(ctx, use, Options{})
			if err != nil {
				t.Fatal(err)
			}
			err = writeMany(s, n)
			if tc.ok < 0 && err != nil {
				t.Fatal(err)
			}
			if tc.ok >= 0 && !errors.Is(err, errCut) {
				t.Fatalf("write: %v, want the cut", err)
			}
			if got := len(s.People()); tc.ok >= 0 && got != 0 {
				t.Fatalf("%d people applied after a failed write", got)
			}
			s.Close()
			s2, err := Open(ctx, st, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			if got := len(s2.People()); got != tc.want {
				t.Fatalf("after reopening: %d people, want %d", got, tc.want)
			}
			if got := len(s2.Cards()); got != tc.want {
				t.Fatalf("after reopening: %d cards, want %d", got, tc.want)
			}
			// The log goes on: a later write lands after the bulk one.
			if _, err := s2.Write(ctx, func(tx *Tx) error {
				tx.Change(replication.KindPerson, string(bulkID(n+1)), replication.SetOp("name", "later"), replication.SetOp("kind", "access_user"))
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if got := len(s2.People()); got != tc.want+1 {
				t.Fatalf("after a later write: %d people, want %d", got, tc.want+1)
			}
			s2.Close()
			st.Close()
		})
	}
}

// sneakyStore lets another owner claim a card number right after the
// first commit of a bulk write (its staging), as a second hub process
// could.
type sneakyStore struct {
	store.Store
	once sync.Once
	key  string
}

func (s *sneakyStore) Commit(ctx context.Context, b store.Batch) error {
	if err := s.Store.Commit(ctx, b); err != nil {
		return err
	}
	var err error
	s.once.Do(func() {
		err = s.Store.Commit(ctx, store.Batch{Claim: []store.Claim{{Namespace: CardNamespace, Key: s.key, Owner: "someone-else"}}})
	})
	return err
}

// A card number claimed elsewhere while a bulk write is staged fails the
// whole write (its claims run in parallel): nothing of it is there after
// reopening, and the numbers it claimed meanwhile can be written again.
func TestBulkWriteLosesAClaim(t *testing.T) {
	ctx := context.Background()
	const n = 2*bulkItems + 1 // three commits of claims
	st, err := badgerstore.Open(ctx, t.TempDir(), store.Options{Kinds: Kinds})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, err := Open(ctx, &sneakyStore{Store: st, key: access.CardNumber(1_000_000 + n - 1).String()}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := writeMany(s, n); !errors.Is(err, ErrCardTaken) {
		t.Fatalf("write: %v, want ErrCardTaken", err)
	}
	s.Close()
	s2, err := Open(ctx, st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := len(s2.People()) + len(s2.Cards()); got != 0 {
		t.Fatalf("after reopening: %d people and cards, want none", got)
	}
	// The first card was claimed by the abandoned write: another holder
	// may take it now.
	if _, err := s2.Write(ctx, func(tx *Tx) error {
		id := string(bulkID(n + 1))
		tx.Change(replication.KindPerson, id, replication.SetOp("name", "later"), replication.SetOp("kind", "access_user"))
		tx.Change(replication.KindCard, access.CardNumber(1_000_000).String(), replication.AddOp("holders", id))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

package check

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/cloud/store"
)

func TestPlanAppend(t *testing.T) {
	r := func(seq uint64, data string) store.Record {
		return store.Record{Seq: seq, Lane: store.Normal, Data: []byte(data)}
	}
	// Stored: 1..3 contiguous, 5 past a gap.
	stored := map[uint64]store.Record{1: r(1, "a"), 2: r(2, "b"), 3: r(3, "c"), 5: r(5, "e")}
	lookup := func(seq uint64) (store.Record, bool) { x, ok := stored[seq]; return x, ok }
	for _, tc := range []struct {
		name     string
		recs     []store.Record
		allowGap bool
		want     []uint64
		err      error
	}{
		{"Replay", []store.Record{r(1, "a"), r(2, "b")}, false, nil, nil},
		{"Next", []store.Record{r(4, "d")}, false, []uint64{4}, nil},
		{"ReplayThenNext", []store.Record{r(3, "c"), r(4, "d"), r(5, "e"), r(6, "f")}, false, []uint64{4, 6}, nil},
		{"Mismatch", []store.Record{r(2, "x")}, false, nil, store.ErrRecordMismatch},
		{"MismatchPastGap", []store.Record{r(5, "x")}, true, nil, store.ErrRecordMismatch},
		{"Gap", []store.Record{r(6, "f")}, false, nil, store.ErrGap},
		{"GapAllowed", []store.Record{r(6, "f"), r(8, "h")}, true, []uint64{6, 8}, nil},
		{"GapAfterNext", []store.Record{r(4, "d"), r(7, "g")}, false, nil, store.ErrGap},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fresh, err := PlanAppend(store.Append{Origin: "o", Records: tc.recs, AllowGap: tc.allowGap}, 3, lookup)
			if !errors.Is(err, tc.err) || (err != nil) != (tc.err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			var got []uint64
			for _, x := range fresh {
				got = append(got, x.Seq)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("fresh = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestLeaseRules(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	row, err := Acquire(LeaseRow{}, "s", "a", t0, time.Second)
	if err != nil || row.Token != 1 || !row.Expires.Equal(t0.Add(time.Second)) {
		t.Fatalf("Acquire of a free lease = %+v, %v", row, err)
	}
	if _, err := Acquire(row, "s", "b", t0.Add(999*time.Millisecond), time.Second); !errors.Is(err, store.ErrLeaseHeld) {
		t.Fatalf("Acquire of a held lease = %v", err)
	}
	if err := Fence(row, store.Fence{Site: "s", Token: 1}, t0.Add(999*time.Millisecond)); err != nil {
		t.Fatalf("Fence before expiry = %v", err)
	}
	if err := Fence(row, store.Fence{Site: "s", Token: 1}, t0.Add(time.Second)); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("Fence at expiry = %v", err)
	}
	if _, err := Renew(row, row.Lease("s"), t0.Add(time.Second), time.Second); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("Renew at expiry = %v", err)
	}
	next, err := Acquire(row, "s", "b", t0.Add(time.Second), time.Second)
	if err != nil || next.Token != 2 {
		t.Fatalf("Acquire at expiry = %+v, %v", next, err)
	}
	if _, changed := Release(next, row.Lease("s")); changed {
		t.Fatal("a stale lease released the new one")
	}
	freed, changed := Release(next, next.Lease("s"))
	if !changed || freed.Owner != "" || freed.Token != 2 {
		t.Fatalf("Release = %+v, %v", freed, changed)
	}
}

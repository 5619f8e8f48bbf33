// Package storetest is the contract suite of cloud/store: every
// implementation runs Run against real storage and must pass all of it.
//
// The suite checks behaviour only, never timing. Lease expiry is driven by a
// Clock the suite controls, injected through store.Options.Now.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/store"
)

// Opener opens a store over the storage identified by dir, a directory the
// suite made with t.TempDir. Opening the same dir again (after the previous
// store is closed) must give a store over the same data; a new dir gives an
// empty store. The opener passes opts through and must not close the store
// itself: the suite does.
type Opener func(t *testing.T, dir string, opts store.Options) store.Store

// Kinds are the entity kinds the suite opens stores with.
var Kinds = []string{"person", "card", "visit"}

// Clock is a manual clock for lease expiry. It is safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock at a fixed, whole-second instant.
func NewClock() *Clock {
	return &Clock{now: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// env is one subtest's store, its storage and its clock.
type env struct {
	t     *testing.T
	open  Opener
	dir   string
	clock *Clock
	s     store.Store
}

func newEnv(t *testing.T, open Opener) *env {
	e := &env{t: t, open: open, dir: t.TempDir(), clock: NewClock()}
	e.s = e.openStore()
	return e
}

func (e *env) openStore() store.Store {
	e.t.Helper()
	s := e.open(e.t, e.dir, store.Options{Kinds: Kinds, Now: e.clock.Now})
	e.t.Cleanup(func() { s.Close() })
	return s
}

// reopen closes the store and opens it again over the same storage.
func (e *env) reopen() {
	e.t.Helper()
	if err := e.s.Close(); err != nil {
		e.t.Fatalf("Close: %v", err)
	}
	e.s = e.openStore()
}

var ctx = context.Background()

func rec(seq uint64, data string) store.Record {
	return store.Record{Seq: seq, Lane: store.Normal, Data: []byte(data)}
}

func prio(seq uint64, data string) store.Record {
	return store.Record{Seq: seq, Lane: store.Priority, Data: []byte(data)}
}

// recs returns records from..to of origin with deterministic data.
func recs(origin string, from, to uint64) []store.Record {
	var out []store.Record
	for s := from; s <= to; s++ {
		out = append(out, rec(s, fmt.Sprintf("%s/%d", origin, s)))
	}
	return out
}

func ent(kind, id string, version uint64, data string) store.Entity {
	return store.Entity{Kind: kind, ID: id, Version: version, Data: []byte(data)}
}

func ptr[T any](v T) *T { return &v }

// wantErr fails t unless err has code and wraps sentinel (if non-nil).
func wantErr(t *testing.T, err error, code access.Code, sentinel error) {
	t.Helper()
	if err == nil {
		t.Fatalf("got nil error, want %s (%v)", code, sentinel)
	}
	if got := access.ErrorCode(err); got != code {
		t.Fatalf("error %q has code %s, want %s", err, got, code)
	}
	if sentinel != nil && !errors.Is(err, sentinel) {
		t.Fatalf("error %q does not wrap %q", err, sentinel)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func readAll(t *testing.T, s store.Store, origin string, lanes store.Lane) []store.Record {
	t.Helper()
	var out []store.Record
	var after uint64
	for {
		page, err := s.Read(ctx, origin, after, 7, lanes)
		must(t, err)
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
		after = page[len(page)-1].Seq
	}
}

func scanAll(t *testing.T, s store.Store, kind string) []store.Entity {
	t.Helper()
	var out []store.Entity
	after := ""
	for {
		page, err := s.Scan(ctx, kind, after, 4)
		must(t, err)
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
		after = page[len(page)-1].ID
	}
}

func sameRecords(a, b []store.Record) bool {
	return slices.EqualFunc(a, b, func(x, y store.Record) bool {
		return x.Seq == y.Seq && x.Lane == y.Lane && bytes.Equal(x.Data, y.Data)
	})
}

func recordSeqs(rs []store.Record) []uint64 {
	var out []uint64
	for _, r := range rs {
		out = append(out, r.Seq)
	}
	return out
}

func wantVector(t *testing.T, s store.Store, want map[string]uint64) {
	t.Helper()
	got, err := s.Vector(ctx)
	must(t, err)
	if !maps.Equal(got, want) {
		t.Fatalf("Vector = %v, want %v", got, want)
	}
}

// Names the snapshot looks at.
var (
	snapOrigins = []string{"site-a", "site-b", "hub"}
	snapPeers   = []string{"site-a", "site-b"}
	snapKeys    = []string{"1001", "1002", "1003"}
	snapSites   = []string{"site-a", "site-b"}
)

// snapshot renders everything the suite's subtests write, to compare the
// state before and after a call that must change nothing.
func snapshot(t *testing.T, e *env) string {
	t.Helper()
	var b strings.Builder
	v, err := e.s.Vector(ctx)
	must(t, err)
	fmt.Fprintf(&b, "vector %v\n", v)
	for _, o := range snapOrigins {
		for _, r := range readAll(t, e.s, o, store.AllLanes) {
			fmt.Fprintf(&b, "rec %s %d %d %q\n", o, r.Seq, r.Lane, r.Data)
		}
	}
	for _, k := range Kinds {
		for _, x := range scanAll(t, e.s, k) {
			fmt.Fprintf(&b, "ent %s %s %d %q\n", x.Kind, x.ID, x.Version, x.Data)
		}
	}
	for _, p := range snapPeers {
		a, err := e.s.Acked(ctx, p)
		must(t, err)
		fmt.Fprintf(&b, "acked %s %v\n", p, a)
	}
	for _, k := range snapKeys {
		o, err := e.s.Owner(ctx, "card", k)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "key %s %q\n", k, o)
	}
	for _, site := range snapSites {
		l, err := e.s.Lease(ctx, site)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "lease %s %s %d %d\n", site, l.Owner, l.Token, l.Expires.UnixMicro())
	}
	return b.String()
}

// seed writes some of everything, so that "changes nothing" is checked
// against a non-empty store.
func seed(t *testing.T, e *env) {
	t.Helper()
	_, err := e.s.Acquire(ctx, "site-a", "hub-1", time.Minute)
	must(t, err)
	must(t, e.s.Commit(ctx, store.Batch{
		Appends: []store.Append{{Origin: "site-a", Records: recs("site-a", 1, 3)}},
		Puts:    []store.Put{{Entity: ent("person", "p1", 1, "alice")}},
		Claim:   []store.Claim{{Namespace: "card", Key: "1001", Owner: "p1"}},
		Acks:    []store.Ack{{Peer: "site-a", Vector: map[string]uint64{"hub": 4}}},
	}))
}

// Run runs the contract suite against the stores open makes.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, e *env)
	}{
		{"Append/OK", testAppend},
		{"Append/Idempotent", testAppendIdempotent},
		{"Append/ErrRecordMismatch", testAppendMismatch},
		{"Append/ErrGap", testGap},
		{"Read/Lanes", testLanes},
		{"BadInput", testBadInput},
		{"Limits/AtMax", testAtLimits},
		{"Entities/OK", testEntities},
		{"Entities/ErrVersionMismatch", testIfVersion},
		{"Entities/Scan", testScan},
		{"Unique", testUnique},
		{"Acks", testAcks},
		{"Batch/Atomic", testAtomic},
		{"Lease/Exclusive", testLeaseExclusive},
		{"Lease/Expiry", testLeaseExpiry},
		{"Lease/Fencing", testFencing},
		{"Concurrent/Appends", testConcurrentAppends},
		{"Concurrent/ClaimsAndLeases", testConcurrentClaims},
		{"Concurrent/Fencing", testConcurrentFencing},
		{"Reopen", testReopen},
		{"Closed", testClosed},
		{"Context", testContext},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newEnv(t, open))
		})
	}
}

func testAppend(t *testing.T, e *env) {
	wantVector(t, e.s, map[string]uint64{})
	must(t, e.s.Append(ctx, "site-a", recs("site-a", 1, 5)...))
	must(t, e.s.Append(ctx, "site-b", recs("site-b", 1, 2)...))
	must(t, e.s.Append(ctx, "site-a", recs("site-a", 6, 6)...))
	wantVector(t, e.s, map[string]uint64{"site-a": 6, "site-b": 2})

	if got := readAll(t, e.s, "site-a", store.AllLanes); !sameRecords(got, recs("site-a", 1, 6)) {
		t.Fatalf("site-a records = %v", got)
	}
	got, err := e.s.Read(ctx, "site-a", 2, 3, store.AllLanes)
	must(t, err)
	if !sameRecords(got, recs("site-a", 3, 5)) {
		t.Fatalf("Read(after 2, limit 3) = %v", recordSeqs(got))
	}
	got, err = e.s.Read(ctx, "site-a", 6, 10, store.AllLanes)
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("Read past the head = %v", recordSeqs(got))
	}
	got, err = e.s.Read(ctx, "nobody", 0, 10, store.AllLanes)
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("Read of an unknown origin = %v", recordSeqs(got))
	}
	// Empty data is a record like any other.
	must(t, e.s.Append(ctx, "hub", store.Record{Seq: 1, Lane: store.Normal}))
	got, err = e.s.Read(ctx, "hub", 0, 10, store.AllLanes)
	must(t, err)
	if len(got) != 1 || len(got[0].Data) != 0 {
		t.Fatalf("Read of an empty record = %v", got)
	}
}

func testAppendIdempotent(t *testing.T, e *env) {
	must(t, e.s.Append(ctx, "site-a", recs("site-a", 1, 3)...))
	before := snapshot(t, e)
	must(t, e.s.Append(ctx, "site-a", recs("site-a", 1, 3)...))
	must(t, e.s.Append(ctx, "site-a", recs("site-a", 2, 2)...))
	if after := snapshot(t, e); after != before {
		t.Fatalf("re-append changed the store:\n%s\nwant\n%s", after, before)
	}
	// An overlapping batch stores only its new tail.
	must(t, e.s.Append(ctx, "site-a", recs("site-a", 2, 5)...))
	wantVector(t, e.s, map[string]uint64{"site-a": 5})
	if got := readAll(t, e.s, "site-a", store.AllLanes); !sameRecords(got, recs("site-a", 1, 5)) {
		t.Fatalf("records = %v", recordSeqs(got))
	}
}

func testAppendMismatch(t *testing.T, e *env) {
	seed(t, e)
	before := snapshot(t, e)
	for _, tc := range []struct {
		name string
		recs []store.Record
	}{
		{"OtherBytes", []store.Record{rec(2, "forged")}},
		{"OtherLane", []store.Record{prio(2, "site-a/2")}},
		{"WithNewTail", append(recs("site-a", 1, 1), append([]store.Record{rec(2, "forged")}, recs("site-a", 3, 6)...)...)},
		{"NewThenMismatch", []store.Record{rec(3, "forged"), rec(4, "site-a/4")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := e.s.Append(ctx, "site-a", tc.recs...)
			wantErr(t, err, access.Conflict, store.ErrRecordMismatch)
			if after := snapshot(t, e); after != before {
				t.Fatalf("refused append changed the store:\n%s\nwant\n%s", after, before)
			}
		})
	}
}

func testGap(t *testing.T, e *env) {
	must(t, e.s.Append(ctx, "site-a", recs("site-a", 1, 1)...))
	before := snapshot(t, e)
	wantErr(t, e.s.Append(ctx, "site-a", recs("site-a", 3, 4)...), access.Conflict, store.ErrGap)
	wantErr(t, e.s.Append(ctx, "site-b", recs("site-b", 2, 2)...), access.Conflict, store.ErrGap)
	// The contiguous prefix of a batch is not stored if its tail has a gap.
	err := e.s.Append(ctx, "site-a", rec(2, "site-a/2"), rec(4, "site-a/4"))
	wantErr(t, err, access.Conflict, store.ErrGap)
	if after := snapshot(t, e); after != before {
		t.Fatalf("refused append changed the store:\n%s\nwant\n%s", after, before)
	}

	// With AllowGap, records past the gap are stored but not counted.
	gap := func(rs ...store.Record) error {
		return e.s.Commit(ctx, store.Batch{Appends: []store.Append{{Origin: "site-a", Records: rs, AllowGap: true}}})
	}
	must(t, gap(rec(3, "site-a/3"), rec(5, "site-a/5")))
	wantVector(t, e.s, map[string]uint64{"site-a": 1})
	if got := readAll(t, e.s, "site-a", store.AllLanes); !sameRecords(got, recs("site-a", 1, 1)) {
		t.Fatalf("Read shows records past the gap: %v", recordSeqs(got))
	}
	// A stored record past the gap is still checked for mismatch.
	wantErr(t, gap(rec(5, "forged")), access.Conflict, store.ErrRecordMismatch)
	// Filling the gap advances the head over what was stored past it.
	must(t, e.s.Append(ctx, "site-a", rec(2, "site-a/2")))
	wantVector(t, e.s, map[string]uint64{"site-a": 3})
	must(t, e.s.Append(ctx, "site-a", rec(4, "site-a/4")))
	wantVector(t, e.s, map[string]uint64{"site-a": 5})
	if got := readAll(t, e.s, "site-a", store.AllLanes); !sameRecords(got, recs("site-a", 1, 5)) {
		t.Fatalf("records = %v", recordSeqs(got))
	}
	// An origin with records only past a gap is not in the vector.
	must(t, e.s.Commit(ctx, store.Batch{Appends: []store.Append{{Origin: "site-b", Records: recs("site-b", 3, 3), AllowGap: true}}}))
	wantVector(t, e.s, map[string]uint64{"site-a": 5})
}

func testLanes(t *testing.T, e *env) {
	rs := []store.Record{rec(1, "a"), prio(2, "revoke"), rec(3, "b"), prio(4, "checkout"), rec(5, "c")}
	must(t, e.s.Append(ctx, "hub", rs...))
	if got := readAll(t, e.s, "hub", store.Priority); !slices.Equal(recordSeqs(got), []uint64{2, 4}) {
		t.Fatalf("priority lane = %v", recordSeqs(got))
	}
	if got := readAll(t, e.s, "hub", store.Normal); !slices.Equal(recordSeqs(got), []uint64{1, 3, 5}) {
		t.Fatalf("normal lane = %v", recordSeqs(got))
	}
	if got := readAll(t, e.s, "hub", store.AllLanes); !sameRecords(got, rs) {
		t.Fatalf("all lanes = %v", got)
	}
}

func testBadInput(t *testing.T, e *env) {
	seed(t, e)
	before := snapshot(t, e)
	long := strings.Repeat("x", store.MaxNameLen+1)
	big := make([]byte, store.MaxRecordSize+1)
	many := make([]store.Record, store.MaxBatchItems+1)
	for i := range many {
		many[i] = rec(uint64(i+4), "x")
	}
	half := make([]byte, store.MaxRecordSize)
	var fat []store.Append
	for i := range store.MaxBatchBytes/store.MaxRecordSize + 1 {
		fat = append(fat, store.Append{Origin: fmt.Sprintf("o%d", i), Records: []store.Record{{Seq: 1, Lane: store.Normal, Data: half}}})
	}
	app := func(origin string, rs ...store.Record) store.Batch {
		return store.Batch{Appends: []store.Append{{Origin: origin, Records: rs}}}
	}
	batches := []struct {
		name     string
		b        store.Batch
		sentinel error
	}{
		{"EmptyOrigin", app("", rec(4, "x")), store.ErrInvalid},
		{"LongOrigin", app(long, rec(1, "x")), store.ErrTooLarge},
		{"NULInOrigin", app("a\x00b", rec(1, "x")), store.ErrInvalid},
		{"BadUTF8Origin", app("a\xffb", rec(1, "x")), store.ErrInvalid},
		{"SeqZero", app("site-a", rec(0, "x")), store.ErrInvalid},
		{"SeqTooBig", app("site-a", rec(store.MaxSeq+1, "x")), store.ErrInvalid},
		{"Descending", app("site-a", rec(5, "x"), rec(4, "x")), store.ErrInvalid},
		{"DuplicateSeq", app("site-a", rec(4, "x"), rec(4, "x")), store.ErrInvalid},
		{"NoLane", app("site-a", store.Record{Seq: 4, Data: []byte("x")}), store.ErrInvalid},
		{"BadLane", app("site-a", store.Record{Seq: 4, Lane: store.AllLanes, Data: []byte("x")}), store.ErrInvalid},
		{"NoRecords", app("site-a"), store.ErrInvalid},
		{"OversizedRecord", app("site-a", rec(4, "ok"), store.Record{Seq: 5, Lane: store.Normal, Data: big}), store.ErrTooLarge},
		{"TooManyItems", app("site-a", many...), store.ErrTooLarge},
		{"TooManyBytes", store.Batch{Appends: fat}, store.ErrTooLarge},
		{"DuplicateOrigin", store.Batch{Appends: []store.Append{{Origin: "site-a", Records: recs("site-a", 4, 4)}, {Origin: "site-a", Records: recs("site-a", 5, 5)}}}, store.ErrInvalid},
		{"UnknownKind", store.Batch{Puts: []store.Put{{Entity: ent("spaceship", "s1", 1, "x")}}}, store.ErrUnknownKind},
		{"EmptyKind", store.Batch{Puts: []store.Put{{Entity: ent("", "s1", 1, "x")}}}, store.ErrInvalid},
		{"EmptyID", store.Batch{Puts: []store.Put{{Entity: ent("person", "", 1, "x")}}}, store.ErrInvalid},
		{"VersionZero", store.Batch{Puts: []store.Put{{Entity: ent("person", "p2", 0, "x")}}}, store.ErrInvalid},
		{"OversizedEntity", store.Batch{Puts: []store.Put{{Entity: store.Entity{Kind: "person", ID: "p2", Version: 1, Data: big}}}}, store.ErrTooLarge},
		{"DuplicateEntity", store.Batch{Puts: []store.Put{{Entity: ent("person", "p2", 1, "x")}, {Entity: ent("person", "p2", 2, "y")}}}, store.ErrInvalid},
		{"EmptyKey", store.Batch{Claim: []store.Claim{{Namespace: "card", Key: "", Owner: "p1"}}}, store.ErrInvalid},
		{"EmptyOwner", store.Batch{Claim: []store.Claim{{Namespace: "card", Key: "1002", Owner: ""}}}, store.ErrInvalid},
		{"ClaimAndUnclaim", store.Batch{Claim: []store.Claim{{Namespace: "card", Key: "1002", Owner: "p1"}}, Unclaim: []store.Claim{{Namespace: "card", Key: "1002", Owner: "p1"}}}, store.ErrInvalid},
		{"EmptyPeer", store.Batch{Acks: []store.Ack{{Peer: "", Vector: map[string]uint64{"hub": 9}}}}, store.ErrInvalid},
		{"AckEmptyOrigin", store.Batch{Acks: []store.Ack{{Peer: "site-a", Vector: map[string]uint64{"": 9}}}}, store.ErrInvalid},
		{"FenceTokenZero", store.Batch{Fence: &store.Fence{Site: "site-a"}, Puts: []store.Put{{Entity: ent("person", "p2", 1, "x")}}}, store.ErrInvalid},
		{"FenceNoSite", store.Batch{Fence: &store.Fence{Token: 1}, Puts: []store.Put{{Entity: ent("person", "p2", 1, "x")}}}, store.ErrInvalid},
		// A good part does not carry a bad one.
		{"GoodThenBad", store.Batch{
			Appends: []store.Append{{Origin: "site-a", Records: recs("site-a", 4, 4)}},
			Puts:    []store.Put{{Entity: ent("person", "p2", 1, "x")}, {Entity: ent("spaceship", "s1", 1, "x")}},
		}, store.ErrUnknownKind},
	}
	for _, tc := range batches {
		t.Run(tc.name, func(t *testing.T) {
			wantErr(t, e.s.Commit(ctx, tc.b), access.Invalid, tc.sentinel)
		})
	}
	calls := []struct {
		name     string
		call     func() error
		sentinel error
	}{
		{"AppendEmptyOrigin", func() error { return e.s.Append(ctx, "", rec(1, "x")) }, store.ErrInvalid},
		{"ReadEmptyOrigin", func() error { _, err := e.s.Read(ctx, "", 0, 10, store.AllLanes); return err }, store.ErrInvalid},
		{"ReadLimitZero", func() error { _, err := e.s.Read(ctx, "site-a", 0, 0, store.AllLanes); return err }, store.ErrInvalid},
		{"ReadLimitTooBig", func() error { _, err := e.s.Read(ctx, "site-a", 0, store.MaxLimit+1, store.AllLanes); return err }, store.ErrInvalid},
		{"ReadNoLanes", func() error { _, err := e.s.Read(ctx, "site-a", 0, 10, 0); return err }, store.ErrInvalid},
		{"ReadBadLanes", func() error { _, err := e.s.Read(ctx, "site-a", 0, 10, 4); return err }, store.ErrInvalid},
		{"GetUnknownKind", func() error { _, err := e.s.Get(ctx, "spaceship", "s1"); return err }, store.ErrUnknownKind},
		{"GetEmptyID", func() error { _, err := e.s.Get(ctx, "person", ""); return err }, store.ErrInvalid},
		{"ScanUnknownKind", func() error { _, err := e.s.Scan(ctx, "spaceship", "", 10); return err }, store.ErrUnknownKind},
		{"ScanLimitZero", func() error { _, err := e.s.Scan(ctx, "person", "", 0); return err }, store.ErrInvalid},
		{"OwnerEmptyKey", func() error { _, err := e.s.Owner(ctx, "card", ""); return err }, store.ErrInvalid},
		{"AckedEmptyPeer", func() error { _, err := e.s.Acked(ctx, ""); return err }, store.ErrInvalid},
		{"AcquireEmptySite", func() error { _, err := e.s.Acquire(ctx, "", "hub-1", time.Second); return err }, store.ErrInvalid},
		{"AcquireEmptyOwner", func() error { _, err := e.s.Acquire(ctx, "site-b", "", time.Second); return err }, store.ErrInvalid},
		{"AcquireTTLZero", func() error { _, err := e.s.Acquire(ctx, "site-b", "hub-1", 0); return err }, store.ErrInvalid},
		{"AcquireTTLTooLong", func() error { _, err := e.s.Acquire(ctx, "site-b", "hub-1", store.MaxLeaseTTL+1); return err }, store.ErrInvalid},
		{"RenewTokenZero", func() error {
			_, err := e.s.Renew(ctx, store.Lease{Site: "site-a", Owner: "hub-1"}, time.Second)
			return err
		}, store.ErrInvalid},
		{"ReleaseEmptyOwner", func() error { return e.s.Release(ctx, store.Lease{Site: "site-a", Token: 1}) }, store.ErrInvalid},
		{"LeaseEmptySite", func() error { _, err := e.s.Lease(ctx, ""); return err }, store.ErrInvalid},
	}
	for _, tc := range calls {
		t.Run(tc.name, func(t *testing.T) {
			wantErr(t, tc.call(), access.Invalid, tc.sentinel)
		})
	}
	if after := snapshot(t, e); after != before {
		t.Fatalf("bad input changed the store:\n%s\nwant\n%s", after, before)
	}
}

func testAtLimits(t *testing.T, e *env) {
	max := make([]byte, store.MaxRecordSize)
	for i := range max {
		max[i] = byte(i)
	}
	name := strings.Repeat("n", store.MaxNameLen)
	rs := []store.Record{{Seq: 1, Lane: store.Normal, Data: max}, {Seq: 2, Lane: store.Priority, Data: max}}
	must(t, e.s.Commit(ctx, store.Batch{
		Appends: []store.Append{{Origin: name, Records: rs}},
		Puts:    []store.Put{{Entity: store.Entity{Kind: "person", ID: name, Version: store.MaxSeq, Data: max}}},
	}))
	got := readAll(t, e.s, name, store.AllLanes)
	if !sameRecords(got, rs) {
		t.Fatalf("records at the size limit did not round-trip")
	}
	x, err := e.s.Get(ctx, "person", name)
	must(t, err)
	if x.Version != store.MaxSeq || !bytes.Equal(x.Data, max) {
		t.Fatalf("entity at the limits did not round-trip: version %d, %d bytes", x.Version, len(x.Data))
	}
	// A batch of MaxBatchBytes in records of half the size limit.
	var halves []store.Record
	for i := range store.MaxBatchBytes / (store.MaxRecordSize / 2) {
		halves = append(halves, store.Record{Seq: uint64(i + 1), Lane: store.Normal, Data: max[:store.MaxRecordSize/2]})
	}
	must(t, e.s.Append(ctx, "halves", halves...))
	// A full batch of small records.
	must(t, e.s.Append(ctx, "hub", recs("hub", 1, store.MaxBatchItems)...))
	wantVector(t, e.s, map[string]uint64{name: 2, "halves": uint64(len(halves)), "hub": store.MaxBatchItems})
	page, err := e.s.Read(ctx, "hub", 0, store.MaxLimit, store.AllLanes)
	must(t, err)
	if len(page) != store.MaxLimit {
		t.Fatalf("Read(limit %d) returned %d records", store.MaxLimit, len(page))
	}
}

func testEntities(t *testing.T, e *env) {
	_, err := e.s.Get(ctx, "person", "p1")
	wantErr(t, err, access.NotFound, store.ErrNotFound)
	must(t, e.s.Commit(ctx, store.Batch{Puts: []store.Put{
		{Entity: ent("person", "p1", 1, "alice")},
		{Entity: ent("card", "p1", 7, "a card with the same id")},
	}}))
	got, err := e.s.Get(ctx, "person", "p1")
	must(t, err)
	if got.Kind != "person" || got.ID != "p1" || got.Version != 1 || string(got.Data) != "alice" {
		t.Fatalf("Get = %+v", got)
	}
	must(t, e.s.Commit(ctx, store.Batch{Puts: []store.Put{{Entity: ent("person", "p1", 2, "alice b.")}}}))
	got, err = e.s.Get(ctx, "person", "p1")
	must(t, err)
	if got.Version != 2 || string(got.Data) != "alice b." {
		t.Fatalf("Get after overwrite = %+v", got)
	}
	got, err = e.s.Get(ctx, "card", "p1")
	must(t, err)
	if got.Version != 7 {
		t.Fatalf("kinds are not separate: %+v", got)
	}
	_, err = e.s.Get(ctx, "visit", "p1")
	wantErr(t, err, access.NotFound, store.ErrNotFound)
}

func testIfVersion(t *testing.T, e *env) {
	put := func(x store.Entity, ifv *uint64) error {
		return e.s.Commit(ctx, store.Batch{Puts: []store.Put{{Entity: x, IfVersion: ifv}}})
	}
	must(t, put(ent("visit", "v1", 5, "invited"), ptr[uint64](0)))
	wantErr(t, put(ent("visit", "v1", 6, "again"), ptr[uint64](0)), access.Conflict, store.ErrVersionMismatch)
	wantErr(t, put(ent("visit", "v1", 6, "stale"), ptr[uint64](4)), access.Conflict, store.ErrVersionMismatch)
	must(t, put(ent("visit", "v1", 6, "checked-in"), ptr[uint64](5)))
	got, err := e.s.Get(ctx, "visit", "v1")
	must(t, err)
	if got.Version != 6 || string(got.Data) != "checked-in" {
		t.Fatalf("Get = %+v", got)
	}
	wantErr(t, put(ent("visit", "v2", 1, "x"), ptr[uint64](3)), access.Conflict, store.ErrVersionMismatch)
	_, err = e.s.Get(ctx, "visit", "v2")
	wantErr(t, err, access.NotFound, store.ErrNotFound)
}

func testScan(t *testing.T, e *env) {
	var want []string
	var puts []store.Put
	for i := range 25 {
		id := fmt.Sprintf("p%03d", 24-i)
		puts = append(puts, store.Put{Entity: ent("person", id, uint64(i+1), "data-"+id)})
		want = append(want, id)
	}
	// IDs that sort differently under a natural-language collation than
	// byte order.
	for _, id := range []string{"P-upper", "a-lower", "Z", "_x", "é"} {
		puts = append(puts, store.Put{Entity: ent("person", id, 1, "x")})
		want = append(want, id)
	}
	slices.Sort(want)
	must(t, e.s.Commit(ctx, store.Batch{Puts: puts, Appends: nil}))
	must(t, e.s.Commit(ctx, store.Batch{Puts: []store.Put{{Entity: ent("card", "c1", 1, "x")}}}))
	var got []string
	for _, x := range scanAll(t, e.s, "person") {
		got = append(got, x.ID)
		if string(x.Data) == "" {
			t.Fatalf("Scan returned %s without data", x.ID)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Scan pages = %v\nwant %v", got, want)
	}
	page, err := e.s.Scan(ctx, "person", "p010", 3)
	must(t, err)
	if ids := []string{page[0].ID, page[1].ID, page[2].ID}; !slices.Equal(ids, []string{"p011", "p012", "p013"}) {
		t.Fatalf("Scan(after p010) = %v", ids)
	}
	// after need not be a stored ID.
	page, err = e.s.Scan(ctx, "person", "p0105", 1)
	must(t, err)
	if len(page) != 1 || page[0].ID != "p011" {
		t.Fatalf("Scan(after p0105) = %v", page)
	}
	page, err = e.s.Scan(ctx, "visit", "", 10)
	must(t, err)
	if len(page) != 0 {
		t.Fatalf("Scan of an empty kind = %v", page)
	}
}

func testUnique(t *testing.T, e *env) {
	claim := func(key, owner string) error {
		return e.s.Commit(ctx, store.Batch{Claim: []store.Claim{{Namespace: "card", Key: key, Owner: owner}}})
	}
	unclaim := func(key, owner string) error {
		return e.s.Commit(ctx, store.Batch{Unclaim: []store.Claim{{Namespace: "card", Key: key, Owner: owner}}})
	}
	owner := func(key string) string {
		t.Helper()
		o, err := e.s.Owner(ctx, "card", key)
		if errors.Is(err, store.ErrNotFound) {
			wantErr(t, err, access.NotFound, store.ErrNotFound)
			return ""
		}
		must(t, err)
		return o
	}
	must(t, claim("1001", "p1"))
	wantErr(t, claim("1001", "p2"), access.Conflict, store.ErrKeyTaken)
	must(t, claim("1001", "p1")) // idempotent
	if got := owner("1001"); got != "p1" {
		t.Fatalf("Owner = %q, want p1", got)
	}
	// Namespaces are separate.
	must(t, e.s.Commit(ctx, store.Batch{Claim: []store.Claim{{Namespace: "badge", Key: "1001", Owner: "p2"}}}))
	wantErr(t, unclaim("1001", "p2"), access.Conflict, store.ErrKeyTaken)
	if got := owner("1001"); got != "p1" {
		t.Fatalf("Owner after a refused unclaim = %q, want p1", got)
	}
	must(t, unclaim("1001", "p1"))
	if got := owner("1001"); got != "" {
		t.Fatalf("Owner after unclaim = %q, want free", got)
	}
	must(t, unclaim("1001", "p1")) // a free key stays free
	must(t, claim("1001", "p2"))
	if got := owner("1001"); got != "p2" {
		t.Fatalf("Owner = %q, want p2", got)
	}
	// Moving a card between holders in one batch: free it and take another.
	must(t, e.s.Commit(ctx, store.Batch{
		Unclaim: []store.Claim{{Namespace: "card", Key: "1001", Owner: "p2"}},
		Claim:   []store.Claim{{Namespace: "card", Key: "1002", Owner: "p2"}},
	}))
	if got := owner("1001") + "," + owner("1002"); got != ",p2" {
		t.Fatalf("owners after the move = %q", got)
	}
	// A bulk load fails whole on one taken key.
	before := snapshot(t, e)
	err := e.s.Commit(ctx, store.Batch{Claim: []store.Claim{
		{Namespace: "card", Key: "1001", Owner: "p5"},
		{Namespace: "card", Key: "1003", Owner: "p6"},
		{Namespace: "card", Key: "1002", Owner: "p7"},
	}})
	wantErr(t, err, access.Conflict, store.ErrKeyTaken)
	if after := snapshot(t, e); after != before {
		t.Fatalf("a refused bulk claim changed the store:\n%s\nwant\n%s", after, before)
	}
}

func testAcks(t *testing.T, e *env) {
	got, err := e.s.Acked(ctx, "site-a")
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("Acked of a new peer = %v", got)
	}
	ack := func(peer string, v map[string]uint64) {
		t.Helper()
		must(t, e.s.Commit(ctx, store.Batch{Acks: []store.Ack{{Peer: peer, Vector: v}}}))
	}
	ack("site-a", map[string]uint64{"hub": 10, "site-b": 3})
	ack("site-a", map[string]uint64{"hub": 7, "site-c": 1}) // hub moves only forward
	ack("site-b", map[string]uint64{"hub": 2})
	got, err = e.s.Acked(ctx, "site-a")
	must(t, err)
	if want := map[string]uint64{"hub": 10, "site-b": 3, "site-c": 1}; !maps.Equal(got, want) {
		t.Fatalf("Acked(site-a) = %v, want %v", got, want)
	}
	got, err = e.s.Acked(ctx, "site-b")
	must(t, err)
	if want := map[string]uint64{"hub": 2}; !maps.Equal(got, want) {
		t.Fatalf("Acked(site-b) = %v, want %v", got, want)
	}
}

func testAtomic(t *testing.T, e *env) {
	seed(t, e)
	must(t, e.s.Commit(ctx, store.Batch{Claim: []store.Claim{{Namespace: "card", Key: "1002", Owner: "p9"}}}))
	before := snapshot(t, e)
	good := store.Batch{
		Appends: []store.Append{
			{Origin: "site-a", Records: recs("site-a", 4, 6)},
			{Origin: "hub", Records: recs("hub", 1, 2)},
		},
		Puts:    []store.Put{{Entity: ent("person", "p2", 1, "bob")}, {Entity: ent("card", "c2", 1, "1003")}},
		Claim:   []store.Claim{{Namespace: "card", Key: "1003", Owner: "p2"}},
		Unclaim: []store.Claim{{Namespace: "card", Key: "1001", Owner: "p1"}},
		Acks:    []store.Ack{{Peer: "site-b", Vector: map[string]uint64{"hub": 2}}},
	}
	for _, tc := range []struct {
		name     string
		spoil    func(b *store.Batch)
		sentinel error
	}{
		{"LastAppendMismatch", func(b *store.Batch) {
			b.Appends = []store.Append{
				b.Appends[1],
				{Origin: "site-b", Records: recs("site-b", 1, 1)},
				{Origin: "site-a", Records: append([]store.Record{rec(3, "forged")}, recs("site-a", 4, 6)...)},
			}
		}, store.ErrRecordMismatch},
		{"LastAppendGap", func(b *store.Batch) {
			b.Appends = append(b.Appends, store.Append{Origin: "site-b", Records: recs("site-b", 2, 2)})
		}, store.ErrGap},
		{"PutVersionMismatch", func(b *store.Batch) { b.Puts[1].IfVersion = ptr[uint64](3) }, store.ErrVersionMismatch},
		{"ClaimTaken", func(b *store.Batch) {
			b.Claim = append(b.Claim, store.Claim{Namespace: "card", Key: "1002", Owner: "p2"})
		}, store.ErrKeyTaken},
		{"UnclaimOthers", func(b *store.Batch) { b.Unclaim[0].Owner = "p3" }, store.ErrKeyTaken},
		{"Fenced", func(b *store.Batch) { b.Fence = &store.Fence{Site: "site-a", Token: 2} }, store.ErrFenced},
		{"FencedNoLease", func(b *store.Batch) { b.Fence = &store.Fence{Site: "site-b", Token: 1} }, store.ErrFenced},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := good
			b.Appends = slices.Clone(good.Appends)
			b.Puts = slices.Clone(good.Puts)
			b.Claim = slices.Clone(good.Claim)
			b.Unclaim = slices.Clone(good.Unclaim)
			tc.spoil(&b)
			wantErr(t, e.s.Commit(ctx, b), access.Conflict, tc.sentinel)
			if after := snapshot(t, e); after != before {
				t.Fatalf("a failed batch changed the store:\n%s\nwant\n%s", after, before)
			}
		})
	}
	good.Fence = &store.Fence{Site: "site-a", Token: 1}
	must(t, e.s.Commit(ctx, good))
	wantVector(t, e.s, map[string]uint64{"site-a": 6, "hub": 2})
	x, err := e.s.Get(ctx, "card", "c2")
	must(t, err)
	if string(x.Data) != "1003" {
		t.Fatalf("card c2 = %+v", x)
	}
	if o, err := e.s.Owner(ctx, "card", "1003"); err != nil || o != "p2" {
		t.Fatalf("Owner(1003) = %q, %v", o, err)
	}
	if _, err := e.s.Owner(ctx, "card", "1001"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("1001 not freed: %v", err)
	}
	a, err := e.s.Acked(ctx, "site-b")
	must(t, err)
	if a["hub"] != 2 {
		t.Fatalf("Acked(site-b) = %v", a)
	}
	// The whole batch again is a no-op for its appends and acks, and a
	// conflict for nothing: claims by the same owner are kept.
	before = snapshot(t, e)
	good.Unclaim = nil
	must(t, e.s.Commit(ctx, good))
	if after := snapshot(t, e); after != before {
		t.Fatalf("replaying a batch changed the store:\n%s\nwant\n%s", after, before)
	}
}

func testLeaseExclusive(t *testing.T, e *env) {
	_, err := e.s.Lease(ctx, "site-a")
	wantErr(t, err, access.NotFound, store.ErrNotFound)
	a, err := e.s.Acquire(ctx, "site-a", "hub-1", 10*time.Second)
	must(t, err)
	if a.Site != "site-a" || a.Owner != "hub-1" || a.Token == 0 || !a.Expires.Equal(e.clock.Now().Add(10*time.Second)) {
		t.Fatalf("Acquire = %+v", a)
	}
	_, err = e.s.Acquire(ctx, "site-a", "hub-2", 10*time.Second)
	wantErr(t, err, access.Conflict, store.ErrLeaseHeld)
	// A retried Acquire by the holder keeps the token.
	e.clock.Advance(time.Second)
	again, err := e.s.Acquire(ctx, "site-a", "hub-1", 10*time.Second)
	must(t, err)
	if again.Token != a.Token || !again.Expires.Equal(e.clock.Now().Add(10*time.Second)) {
		t.Fatalf("re-Acquire = %+v, first %+v", again, a)
	}
	cur, err := e.s.Lease(ctx, "site-a")
	must(t, err)
	if cur != again {
		t.Fatalf("Lease = %+v, want %+v", cur, again)
	}
	// Other sites are independent.
	b, err := e.s.Acquire(ctx, "site-b", "hub-2", 10*time.Second)
	must(t, err)
	if b.Owner != "hub-2" {
		t.Fatalf("Acquire(site-b) = %+v", b)
	}
	// Release frees it; the next owner gets a higher token.
	must(t, e.s.Release(ctx, again))
	_, err = e.s.Lease(ctx, "site-a")
	wantErr(t, err, access.NotFound, store.ErrNotFound)
	must(t, e.s.Release(ctx, again)) // twice is harmless
	c, err := e.s.Acquire(ctx, "site-a", "hub-2", 10*time.Second)
	must(t, err)
	if c.Token <= a.Token {
		t.Fatalf("token after release %d, want > %d", c.Token, a.Token)
	}
	// A stale holder cannot release or renew the new owner's lease.
	must(t, e.s.Release(ctx, again))
	_, err = e.s.Renew(ctx, again, 10*time.Second)
	wantErr(t, err, access.Conflict, store.ErrLeaseLost)
	if cur, err := e.s.Lease(ctx, "site-a"); err != nil || cur != c {
		t.Fatalf("Lease = %+v, %v; want %+v", cur, err, c)
	}
	// Even hub-1 re-acquiring after release gets a new, higher token.
	must(t, e.s.Release(ctx, c))
	d, err := e.s.Acquire(ctx, "site-a", "hub-1", 10*time.Second)
	must(t, err)
	if d.Token <= c.Token {
		t.Fatalf("token %d after %d", d.Token, c.Token)
	}
}

func testLeaseExpiry(t *testing.T, e *env) {
	a, err := e.s.Acquire(ctx, "site-a", "hub-1", 10*time.Second)
	must(t, err)
	e.clock.Advance(6 * time.Second)
	a, err = e.s.Renew(ctx, a, 10*time.Second)
	must(t, err)
	if !a.Expires.Equal(e.clock.Now().Add(10 * time.Second)) {
		t.Fatalf("Renew = %+v", a)
	}
	e.clock.Advance(9 * time.Second) // 1 s left
	_, err = e.s.Acquire(ctx, "site-a", "hub-2", 10*time.Second)
	wantErr(t, err, access.Conflict, store.ErrLeaseHeld)
	e.clock.Advance(time.Second) // exactly at expiry: gone
	_, err = e.s.Lease(ctx, "site-a")
	wantErr(t, err, access.NotFound, store.ErrNotFound)
	_, err = e.s.Renew(ctx, a, 10*time.Second)
	wantErr(t, err, access.Conflict, store.ErrLeaseLost)
	b, err := e.s.Acquire(ctx, "site-a", "hub-2", 10*time.Second)
	must(t, err)
	if b.Token <= a.Token || b.Owner != "hub-2" {
		t.Fatalf("Acquire after expiry = %+v, old %+v", b, a)
	}
	_, err = e.s.Renew(ctx, a, 10*time.Second)
	wantErr(t, err, access.Conflict, store.ErrLeaseLost)
	// The old owner coming back after the new one's expiry gets yet another
	// token.
	e.clock.Advance(time.Minute)
	c, err := e.s.Acquire(ctx, "site-a", "hub-1", time.Second)
	must(t, err)
	if c.Token <= b.Token {
		t.Fatalf("token %d after %d", c.Token, b.Token)
	}
}

func testFencing(t *testing.T, e *env) {
	put := func(f *store.Fence, id string) error {
		return e.s.Commit(ctx, store.Batch{Fence: f, Puts: []store.Put{{Entity: ent("person", id, 1, "x")}}})
	}
	a, err := e.s.Acquire(ctx, "site-a", "hub-1", 10*time.Second)
	must(t, err)
	fa := &store.Fence{Site: "site-a", Token: a.Token}
	must(t, put(fa, "p1"))
	e.clock.Advance(10 * time.Second)
	// Expired, even with nobody else holding it: refused.
	wantErr(t, put(fa, "p2"), access.Conflict, store.ErrFenced)
	b, err := e.s.Acquire(ctx, "site-a", "hub-2", 10*time.Second)
	must(t, err)
	fb := &store.Fence{Site: "site-a", Token: b.Token}
	wantErr(t, put(fa, "p3"), access.Conflict, store.ErrFenced)
	must(t, put(fb, "p4"))
	// A token from another site does not fence this one.
	wantErr(t, put(&store.Fence{Site: "site-b", Token: b.Token}, "p5"), access.Conflict, store.ErrFenced)
	must(t, e.s.Release(ctx, b))
	wantErr(t, put(fb, "p6"), access.Conflict, store.ErrFenced)
	var got []string
	for _, x := range scanAll(t, e.s, "person") {
		got = append(got, x.ID)
	}
	if !slices.Equal(got, []string{"p1", "p4"}) {
		t.Fatalf("written under fences: %v, want [p1 p4]", got)
	}
}

func testConcurrentAppends(t *testing.T, e *env) {
	const (
		own    = 6  // goroutines, each with its own origin
		shared = 6  // goroutines racing on one origin
		n      = 60 // records per origin
		chunk  = 7
	)
	var wg sync.WaitGroup
	errs := make(chan error, own+shared)
	for g := range own {
		wg.Go(func() {
			origin := fmt.Sprintf("own-%d", g)
			for from := uint64(1); from <= n; from += chunk {
				if err := e.s.Append(ctx, origin, recs(origin, from, min(from+chunk-1, n))...); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for g := range shared {
		wg.Go(func() {
			// Each appends from what it believes the head is; racing
			// appends overlap and must be idempotent, never a gap.
			for {
				v, err := e.s.Vector(ctx)
				if err != nil {
					errs <- err
					return
				}
				head := v["shared"]
				if head >= n {
					return
				}
				size := uint64(1 + g%chunk)
				if err := e.s.Append(ctx, "shared", recs("shared", head+1, min(head+size, n))...); err != nil {
					errs <- fmt.Errorf("goroutine %d: %w", g, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want := map[string]uint64{"shared": n}
	for g := range own {
		want[fmt.Sprintf("own-%d", g)] = n
	}
	wantVector(t, e.s, want)
	for origin := range want {
		if got := readAll(t, e.s, origin, store.AllLanes); !sameRecords(got, recs(origin, 1, n)) {
			t.Fatalf("%s records = %v", origin, recordSeqs(got))
		}
	}
}

func testConcurrentClaims(t *testing.T, e *env) {
	const racers = 8
	var wg sync.WaitGroup
	claimWins := make(chan string, racers)
	leaseWins := make(chan store.Lease, racers)
	errs := make(chan error, 2*racers)
	for g := range racers {
		owner := fmt.Sprintf("p%d", g)
		wg.Go(func() {
			err := e.s.Commit(ctx, store.Batch{
				Claim: []store.Claim{{Namespace: "card", Key: "1001", Owner: owner}},
				Puts:  []store.Put{{Entity: ent("person", owner, 1, "holder of 1001")}},
			})
			switch {
			case err == nil:
				claimWins <- owner
			case !errors.Is(err, store.ErrKeyTaken):
				errs <- err
			}
		})
		wg.Go(func() {
			l, err := e.s.Acquire(ctx, "site-a", "hub-"+owner, time.Minute)
			switch {
			case err == nil:
				leaseWins <- l
			case !errors.Is(err, store.ErrLeaseHeld):
				errs <- err
			}
		})
	}
	wg.Wait()
	close(claimWins)
	close(leaseWins)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	winners := slices.Collect(func(yield func(string) bool) {
		for w := range claimWins {
			yield(w)
		}
	})
	if len(winners) != 1 {
		t.Fatalf("claim winners = %v, want exactly one", winners)
	}
	if o, err := e.s.Owner(ctx, "card", "1001"); err != nil || o != winners[0] {
		t.Fatalf("Owner = %q, %v; winner %s", o, err, winners[0])
	}
	// The losers' puts were in the losing batches: only the winner's
	// entity exists.
	if got := scanAll(t, e.s, "person"); len(got) != 1 || got[0].ID != winners[0] {
		t.Fatalf("persons = %v, want only %s", got, winners[0])
	}
	var leases []store.Lease
	for l := range leaseWins {
		leases = append(leases, l)
	}
	if len(leases) != 1 {
		t.Fatalf("lease winners = %v, want exactly one", leases)
	}
	if cur, err := e.s.Lease(ctx, "site-a"); err != nil || cur != leases[0] {
		t.Fatalf("Lease = %+v, %v; winner %+v", cur, err, leases[0])
	}
}

// testConcurrentFencing races a writer that keeps committing under its
// fencing token against its lease being released and taken over: once the
// new owner's Acquire has returned, no batch of the old owner commits.
func testConcurrentFencing(t *testing.T, e *env) {
	a, err := e.s.Acquire(ctx, "site-a", "hub-1", time.Minute)
	must(t, err)
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		fence := &store.Fence{Site: "site-a", Token: a.Token}
		for seq := uint64(1); ; seq++ {
			err := e.s.Commit(ctx, store.Batch{Fence: fence, Appends: []store.Append{{Origin: "site-a", Records: recs("site-a", seq, seq)}}})
			if seq == 1 {
				close(started)
			}
			if err != nil {
				if errors.Is(err, store.ErrFenced) {
					err = nil
				}
				done <- err
				return
			}
		}
	}()
	<-started
	must(t, e.s.Release(ctx, a))
	b, err := e.s.Acquire(ctx, "site-a", "hub-2", time.Minute)
	must(t, err)
	v1, err := e.s.Vector(ctx)
	must(t, err)
	must(t, <-done)
	v2, err := e.s.Vector(ctx)
	must(t, err)
	if v1["site-a"] != v2["site-a"] {
		t.Fatalf("the old owner committed after the new one acquired: head %d then %d", v1["site-a"], v2["site-a"])
	}
	if v2["site-a"] < 1 {
		t.Fatalf("head %d: the old owner's first batch is missing", v2["site-a"])
	}
	// The new owner continues the log.
	next := v2["site-a"] + 1
	must(t, e.s.Commit(ctx, store.Batch{
		Fence:   &store.Fence{Site: "site-a", Token: b.Token},
		Appends: []store.Append{{Origin: "site-a", Records: recs("site-a", next, next)}},
	}))
}

func testReopen(t *testing.T, e *env) {
	seed(t, e)
	must(t, e.s.Commit(ctx, store.Batch{
		Appends: []store.Append{
			{Origin: "hub", Records: []store.Record{rec(1, "a"), prio(2, "revoke")}},
			{Origin: "site-b", Records: []store.Record{rec(1, "b1"), rec(3, "b3")}, AllowGap: true},
		},
		Puts: []store.Put{{Entity: ent("visit", "v1", 9, "checked-out")}},
	}))
	_, err := e.s.Acquire(ctx, "site-b", "hub-2", time.Minute)
	must(t, err)
	before := snapshot(t, e)
	e.reopen()
	if after := snapshot(t, e); after != before {
		t.Fatalf("state after reopen:\n%s\nwant\n%s", after, before)
	}
	// The gap is still tracked after reopen.
	must(t, e.s.Append(ctx, "site-b", rec(2, "b2")))
	wantVector(t, e.s, map[string]uint64{"site-a": 3, "hub": 2, "site-b": 3})
	// Tokens keep increasing across reopen.
	l, err := e.s.Lease(ctx, "site-b")
	must(t, err)
	must(t, e.s.Release(ctx, l))
	e.reopen()
	l2, err := e.s.Acquire(ctx, "site-b", "hub-3", time.Minute)
	must(t, err)
	if l2.Token <= l.Token {
		t.Fatalf("token after reopen %d, want > %d", l2.Token, l.Token)
	}
}

func testClosed(t *testing.T, e *env) {
	seed(t, e)
	must(t, e.s.Close())
	must(t, e.s.Close()) // idempotent
	calls := map[string]func() error{
		"Commit": func() error { return e.s.Append(ctx, "site-a", recs("site-a", 4, 4)...) },
		"Read":   func() error { _, err := e.s.Read(ctx, "site-a", 0, 1, store.AllLanes); return err },
		"Vector": func() error { _, err := e.s.Vector(ctx); return err },
		"Get":    func() error { _, err := e.s.Get(ctx, "person", "p1"); return err },
		"Scan":   func() error { _, err := e.s.Scan(ctx, "person", "", 1); return err },
		"Owner":  func() error { _, err := e.s.Owner(ctx, "card", "1001"); return err },
		"Acked":  func() error { _, err := e.s.Acked(ctx, "site-a"); return err },
		"Acquire": func() error {
			_, err := e.s.Acquire(ctx, "site-a", "hub-1", time.Second)
			return err
		},
		"Lease": func() error { _, err := e.s.Lease(ctx, "site-a"); return err },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			wantErr(t, call(), access.Unavailable, store.ErrClosed)
		})
	}
}

func testContext(t *testing.T, e *env) {
	seed(t, e)
	before := snapshot(t, e)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := e.s.Append(cctx, "site-a", recs("site-a", 4, 4)...); err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a canceled context = %v", err)
	}
	if _, err := e.s.Acquire(cctx, "site-b", "hub-1", time.Second); err == nil {
		t.Fatal("Acquire with a canceled context succeeded")
	}
	if _, err := e.s.Vector(cctx); err == nil {
		t.Fatal("Vector with a canceled context succeeded")
	}
	if after := snapshot(t, e); after != before {
		t.Fatalf("canceled calls changed the store:\n%s\nwant\n%s", after, before)
	}
}

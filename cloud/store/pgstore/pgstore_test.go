package pgstore_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/store"
	"github.com/gatehouse/gatehouse/cloud/store/pgstore"
	"github.com/gatehouse/gatehouse/cloud/store/storetest"
)

var ctx = context.Background()

// schemaFor names the schema of the store the suite keeps in dir: the same
// dir, the same schema, so reopening finds the data again.
func schemaFor(dir string) string {
	sum := sha256.Sum256([]byte(dir))
	return "t_" + hex.EncodeToString(sum[:8])
}

// mustOpen opens a store in schema with opts, closed at the end of the test.
func mustOpen(t *testing.T, schema string, opts store.Options) *pgstore.Store {
	t.Helper()
	srv := mustServer(t)
	s, err := pgstore.Open(ctx, pgstore.Config{ConnString: srv.connString(), Schema: schema, MaxConns: 8}, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestContract(t *testing.T) {
	mustServer(t)
	storetest.Run(t, func(t *testing.T, dir string, opts store.Options) store.Store {
		return mustOpen(t, schemaFor(dir), opts)
	})
}

// TestTwoProcesses runs two stores over one schema, as two hub processes
// over one database: a lease taken through one excludes the other, and the
// one that lost its lease is fenced off.
func TestTwoProcesses(t *testing.T) {
	clock := storetest.NewClock()
	opts := store.Options{Kinds: storetest.Kinds, Now: clock.Now}
	schema := schemaFor(t.TempDir())
	a := mustOpen(t, schema, opts)
	b := mustOpen(t, schema, opts)

	la, err := a.Acquire(ctx, "site-1", "hub-a", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Acquire(ctx, "site-1", "hub-b", 10*time.Second); !errors.Is(err, store.ErrLeaseHeld) {
		t.Fatalf("second process Acquire = %v, want ErrLeaseHeld", err)
	}
	batch := func(l store.Lease, seq uint64) store.Batch {
		return store.Batch{
			Fence:   &store.Fence{Site: l.Site, Token: l.Token},
			Appends: []store.Append{{Origin: "site-1", Records: []store.Record{{Seq: seq, Lane: store.Normal, Data: []byte(fmt.Sprint(seq))}}}},
		}
	}
	if err := a.Commit(ctx, batch(la, 1)); err != nil {
		t.Fatal(err)
	}
	clock.Advance(10 * time.Second)
	lb, err := b.Acquire(ctx, "site-1", "hub-b", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Commit(ctx, batch(la, 2)); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("stale process Commit = %v, want ErrFenced", err)
	}
	if err := b.Commit(ctx, batch(lb, 2)); err != nil {
		t.Fatal(err)
	}
	v, err := a.Vector(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v["site-1"] != 2 {
		t.Fatalf("Vector seen from the first process = %v", v)
	}

	// Both processes append the same records concurrently: idempotent.
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, s := range []*pgstore.Store{a, b} {
		wg.Go(func() {
			for seq := uint64(1); seq <= 40; seq++ {
				if err := s.Append(ctx, "hub", store.Record{Seq: seq, Lane: store.Normal, Data: []byte(fmt.Sprint(seq))}); err != nil {
					errs <- err
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
	recs, err := b.Read(ctx, "hub", 0, 100, store.AllLanes)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 40 || recs[39].Seq != 40 {
		t.Fatalf("hub log has %d records", len(recs))
	}
}

// TestDatabaseClock checks leases measured by the database's clock (the
// default, shared by all hub processes). It asserts no durations, only
// that a fresh lease is live and exclusive.
func TestDatabaseClock(t *testing.T) {
	s := mustOpen(t, schemaFor(t.TempDir()), store.Options{Kinds: storetest.Kinds})
	l, err := s.Acquire(ctx, "site-1", "hub-a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Acquire(ctx, "site-1", "hub-b", time.Minute); !errors.Is(err, store.ErrLeaseHeld) {
		t.Fatalf("Acquire by another owner = %v, want ErrLeaseHeld", err)
	}
	cur, err := s.Lease(ctx, "site-1")
	if err != nil || cur != l {
		t.Fatalf("Lease = %+v, %v; want %+v", cur, err, l)
	}
	if l, err = s.Renew(ctx, l, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, store.Batch{Fence: &store.Fence{Site: "site-1", Token: l.Token}}); err != nil {
		t.Fatalf("fenced empty batch: %v", err)
	}
	if err := s.Release(ctx, l); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lease(ctx, "site-1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Lease after release = %v", err)
	}
}

// TestMigrations checks that processes starting together migrate once, and
// that a schema from a newer build is refused rather than misread.
func TestMigrations(t *testing.T) {
	srv := mustServer(t)
	opts := store.Options{Kinds: storetest.Kinds}
	schema := schemaFor(t.TempDir())
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			s, err := pgstore.Open(ctx, pgstore.Config{ConnString: srv.connString(), Schema: schema}, opts)
			if err != nil {
				errs <- err
				return
			}
			s.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, srv.connString())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var versions []int
	rows, err := conn.Query(ctx, `SELECT version FROM `+schema+`.gatehouse_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		versions = append(versions, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(versions, []int{1}) {
		t.Fatalf("applied migrations = %v, want [1]", versions)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO `+schema+`.gatehouse_migrations (version) VALUES (999)`); err != nil {
		t.Fatal(err)
	}
	_, err = pgstore.Open(ctx, pgstore.Config{ConnString: srv.connString(), Schema: schema}, opts)
	if access.ErrorCode(err) != access.Invalid {
		t.Fatalf("Open of a newer schema = %v, want an invalid error", err)
	}
}

func TestOpenBadConfig(t *testing.T) {
	srv := mustServer(t)
	kinds := store.Options{Kinds: storetest.Kinds}
	for name, tc := range map[string]struct {
		cfg  pgstore.Config
		opts store.Options
		code access.Code
	}{
		"NoKinds":       {pgstore.Config{ConnString: srv.connString()}, store.Options{}, access.Invalid},
		"BadSchema":     {pgstore.Config{ConnString: srv.connString(), Schema: "Robert'); DROP"}, kinds, access.Invalid},
		"BadConnString": {pgstore.Config{ConnString: "host=127.0.0.1 port=notaport"}, kinds, access.Invalid},
		"NobodyListens": {pgstore.Config{ConnString: "host=127.0.0.1 port=1 sslmode=disable connect_timeout=5"}, kinds, access.Unavailable},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := pgstore.Open(ctx, tc.cfg, tc.opts)
			if err == nil {
				s.Close()
			}
			if got := access.ErrorCode(err); got != tc.code {
				t.Fatalf("Open = %v (%s), want %s", err, got, tc.code)
			}
		})
	}
}

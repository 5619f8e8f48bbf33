// Package badgerstore implements the hub's store (cloud/store) on an
// embedded Badger v4 database, for a hub that runs as one process.
//
// Every write is one Badger transaction committed with SyncWrites on, so a
// nil error means the change is fsynced. Transactions that collide (two
// appends to the same origin, an Acquire racing a fenced batch) are detected
// by Badger's optimistic conflict check and retried, so the store behaves as
// if every call ran alone. The key layout is in docs/hub-store.md.
package badgerstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/store"
	"github.com/gatehouse/gatehouse/cloud/store/internal/check"
)

// Key prefixes; see docs/hub-store.md. Every variable-length component but
// the last is length-prefixed (uvarint), so no two keys are ambiguous.
const (
	pMeta   = 'm' // m "format" -> uint64 format version
	pDelta  = 'd' // d origin seq(8 BE) -> lane(1) data
	pHead   = 'h' // h origin -> contiguous head seq(8 BE)
	pEntity = 'e' // e kind id -> version(8 BE) data
	pKey    = 'u' // u namespace key -> owner
	pAck    = 'a' // a peer origin -> seq(8 BE)
	pLease  = 'l' // l site -> token(8 BE) expires-unix-µs(8 BE) owner
)

// formatVersion is the on-disk layout version written at first open.
const formatVersion = 1

// maxRetries bounds the retries of a transaction that lost a conflict.
const maxRetries = 100

// Store is the Badger implementation of store.Store. It is safe for
// concurrent use.
type Store struct {
	db    *badger.DB
	kinds check.Kinds
	now   func() time.Time
	log   *slog.Logger

	mu     sync.RWMutex // held for reading by every call, for writing by Close
	closed bool
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the store in directory dir. It returns an
// invalid error for bad options and an unavailable error if Badger cannot
// open the directory (for example because another process holds it).
func Open(ctx context.Context, dir string, opts store.Options) (*Store, error) {
	if err := ctx.Err(); err != nil {
		return nil, access.Errorf(access.Unavailable, "badgerstore: open: %w", err)
	}
	kinds, err := check.NewKinds(opts.Kinds)
	if err != nil {
		return nil, err
	}
	if dir == "" {
		return nil, check.Invalid(nil, "badgerstore: empty directory")
	}
	s := &Store{kinds: kinds, now: opts.Now, log: opts.Logger}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	bo := badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithLogger(badgerLogger{s.log}).
		WithNumVersionsToKeep(1)
	db, err := badger.Open(bo)
	if err != nil {
		return nil, access.Errorf(access.Unavailable, "badgerstore: open %s: %w", dir, err)
	}
	s.db = db
	if err := s.initFormat(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// initFormat writes the layout version into a new store and refuses a store
// written in another layout.
func (s *Store) initFormat() error {
	key := []byte{pMeta, 'f', 'o', 'r', 'm', 'a', 't'}
	return s.db.Update(func(txn *badger.Txn) error {
		it, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return txn.Set(key, binary.BigEndian.AppendUint64(nil, formatVersion))
		}
		if err != nil {
			return access.Errorf(access.Unavailable, "badgerstore: read format: %w", err)
		}
		v, err := it.ValueCopy(nil)
		if err != nil {
			return access.Errorf(access.Unavailable, "badgerstore: read format: %w", err)
		}
		if len(v) != 8 || binary.BigEndian.Uint64(v) != formatVersion {
			return access.Errorf(access.Invalid, "badgerstore: on-disk format %x, this build reads %d", v, formatVersion)
		}
		return nil
	})
}

// Close closes the database. It waits for calls in progress and is
// idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.db.Close(); err != nil {
		return access.Errorf(access.Unavailable, "badgerstore: close: %w", err)
	}
	return nil
}

// enter starts a call: it fails if the store is closed or ctx is done.
// On success the caller must call s.mu.RUnlock.
func (s *Store) enter(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return access.Errorf(access.Unavailable, "badgerstore: %s: %w", op, err)
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return check.Fail(store.ErrClosed, "badgerstore: %s", op)
	}
	return nil
}

// update runs fn in a read-write transaction and commits it, retrying
// from scratch when Badger reports a conflict with a concurrent commit.
// Errors from fn are returned as they are.
func (s *Store) update(ctx context.Context, op string, fn func(txn *badger.Txn) error) error {
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return access.Errorf(access.Unavailable, "badgerstore: %s: %w", op, err)
		}
		txn := s.db.NewTransaction(true)
		err := fn(txn)
		if err == nil {
			err = txn.Commit()
		}
		txn.Discard()
		switch {
		case err == nil:
			return nil
		case errors.Is(err, badger.ErrConflict) && attempt < maxRetries:
			continue
		case errors.Is(err, badger.ErrConflict):
			return access.Errorf(access.Unavailable, "badgerstore: %s: too much contention: %w", op, err)
		case errors.Is(err, badger.ErrTxnTooBig):
			return access.Errorf(access.Invalid, "badgerstore: %s: %w: %w", op, store.ErrTooLarge, err)
		case access.ErrorCode(err) != access.Internal:
			return err
		default:
			return access.Errorf(access.Unavailable, "badgerstore: %s: %w", op, err)
		}
	}
}

// view runs fn in a read-only transaction.
func (s *Store) view(op string, fn func(txn *badger.Txn) error) error {
	err := s.db.View(fn)
	if err != nil && access.ErrorCode(err) == access.Internal {
		return access.Errorf(access.Unavailable, "badgerstore: %s: %w", op, err)
	}
	return err
}

// Key encoding.

func appendName(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func deltaPrefix(origin string) []byte { return appendName([]byte{pDelta}, origin) }

func deltaKey(origin string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(deltaPrefix(origin), seq)
}

func headKey(origin string) []byte { return append([]byte{pHead}, origin...) }

func entityPrefix(kind string) []byte { return appendName([]byte{pEntity}, kind) }

func entityKey(kind, id string) []byte { return append(entityPrefix(kind), id...) }

func uniqueKey(ns, key string) []byte { return append(appendName([]byte{pKey}, ns), key...) }

func ackPrefix(peer string) []byte { return appendName([]byte{pAck}, peer) }

func ackKey(peer, origin string) []byte { return append(ackPrefix(peer), origin...) }

func leaseKey(site string) []byte { return append([]byte{pLease}, site...) }

// get reads key in txn: its value copy, whether it exists, or an error.
func get(txn *badger.Txn, key []byte) ([]byte, bool, error) {
	it, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	v, err := it.ValueCopy(nil)
	return v, err == nil, err
}

func getUint(txn *badger.Txn, key []byte) (uint64, error) {
	v, ok, err := get(txn, key)
	if err != nil || !ok {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("corrupt value under %q", key)
	}
	return binary.BigEndian.Uint64(v), nil
}

func putUint(txn *badger.Txn, key []byte, v uint64) error {
	return txn.Set(key, binary.BigEndian.AppendUint64(nil, v))
}

func decodeRecord(seq uint64, v []byte) (store.Record, error) {
	if len(v) < 1 {
		return store.Record{}, fmt.Errorf("corrupt record %d", seq)
	}
	return store.Record{Seq: seq, Lane: store.Lane(v[0]), Data: v[1:]}, nil
}

func decodeEntity(kind, id string, v []byte) (store.Entity, error) {
	if len(v) < 8 {
		return store.Entity{}, fmt.Errorf("corrupt entity %s/%s", kind, id)
	}
	return store.Entity{Kind: kind, ID: id, Version: binary.BigEndian.Uint64(v), Data: v[8:]}, nil
}

func getLease(txn *badger.Txn, site string) (check.LeaseRow, error) {
	v, ok, err := get(txn, leaseKey(site))
	if err != nil || !ok {
		return check.LeaseRow{}, err
	}
	if len(v) < 16 {
		return check.LeaseRow{}, fmt.Errorf("corrupt lease of %q", site)
	}
	return check.LeaseRow{
		Token:   binary.BigEndian.Uint64(v),
		Expires: time.UnixMicro(int64(binary.BigEndian.Uint64(v[8:]))).UTC(),
		Owner:   string(v[16:]),
	}, nil
}

func putLease(txn *badger.Txn, site string, r check.LeaseRow) error {
	v := binary.BigEndian.AppendUint64(nil, r.Token)
	var exp int64
	if !r.Expires.IsZero() {
		exp = r.Expires.UnixMicro()
	}
	v = binary.BigEndian.AppendUint64(v, uint64(exp))
	return txn.Set(leaseKey(site), append(v, r.Owner...))
}

// Commit applies b atomically and durably; see store.Batch.
func (s *Store) Commit(ctx context.Context, b store.Batch) error {
	if err := s.kinds.Batch(b); err != nil {
		return err
	}
	if err := s.enter(ctx, "commit"); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	return s.update(ctx, "commit", func(txn *badger.Txn) error { return s.apply(txn, b) })
}

// apply writes b into txn, checking it against the stored state in the
// order documented on store.Batch.
func (s *Store) apply(txn *badger.Txn, b store.Batch) error {
	if f := b.Fence; f != nil {
		row, err := getLease(txn, f.Site)
		if err != nil {
			return err
		}
		if err := check.Fence(row, *f, s.now()); err != nil {
			return err
		}
	}
	for _, a := range b.Appends {
		if err := appendTxn(txn, a); err != nil {
			return err
		}
	}
	for _, p := range b.Puts {
		e := p.Entity
		key := entityKey(e.Kind, e.ID)
		if p.IfVersion != nil {
			v, ok, err := get(txn, key)
			if err != nil {
				return err
			}
			var cur uint64
			if ok {
				old, err := decodeEntity(e.Kind, e.ID, v)
				if err != nil {
					return err
				}
				cur = old.Version
			}
			if cur != *p.IfVersion {
				return check.Fail(store.ErrVersionMismatch, "entity %s/%s: version %d, expected %d", e.Kind, e.ID, cur, *p.IfVersion)
			}
		}
		v := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(e.Data)), e.Version)
		if err := txn.Set(key, append(v, e.Data...)); err != nil {
			return err
		}
	}
	for _, c := range b.Claim {
		key := uniqueKey(c.Namespace, c.Key)
		v, ok, err := get(txn, key)
		if err != nil {
			return err
		}
		if ok && string(v) != c.Owner {
			return check.Fail(store.ErrKeyTaken, "claim in namespace %q", c.Namespace)
		}
		if !ok {
			if err := txn.Set(key, []byte(c.Owner)); err != nil {
				return err
			}
		}
	}
	for _, c := range b.Unclaim {
		key := uniqueKey(c.Namespace, c.Key)
		v, ok, err := get(txn, key)
		if err != nil {
			return err
		}
		if ok && string(v) != c.Owner {
			return check.Fail(store.ErrKeyTaken, "unclaim in namespace %q", c.Namespace)
		}
		if ok {
			if err := txn.Delete(key); err != nil {
				return err
			}
		}
	}
	for _, a := range b.Acks {
		for origin, seq := range a.Vector {
			key := ackKey(a.Peer, origin)
			cur, err := getUint(txn, key)
			if err != nil {
				return err
			}
			if seq > cur {
				if err := putUint(txn, key, seq); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// appendTxn applies one Append in txn and advances the origin's head.
func appendTxn(txn *badger.Txn, a store.Append) error {
	head, err := getUint(txn, headKey(a.Origin))
	if err != nil {
		return err
	}
	var readErr error
	fresh, err := check.PlanAppend(a, head, func(seq uint64) (store.Record, bool) {
		v, ok, err := get(txn, deltaKey(a.Origin, seq))
		if err != nil {
			readErr = err
			return store.Record{}, false
		}
		if !ok {
			return store.Record{}, false
		}
		r, err := decodeRecord(seq, v)
		if err != nil {
			readErr = err
			return store.Record{}, false
		}
		return r, true
	})
	if readErr != nil {
		return readErr
	}
	if err != nil {
		return err
	}
	if len(fresh) == 0 {
		return nil
	}
	for _, r := range fresh {
		v := append(make([]byte, 0, 1+len(r.Data)), byte(r.Lane))
		if err := txn.Set(deltaKey(a.Origin, r.Seq), append(v, r.Data...)); err != nil {
			return err
		}
	}
	// Advance the head over the contiguous records, which may run far past
	// this append (records stored earlier past a gap): one key-only scan.
	next := head
	prefix := deltaPrefix(a.Origin)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	for it.Seek(deltaKey(a.Origin, head+1)); it.Valid(); it.Next() {
		k := it.Item().Key()
		if len(k) != len(prefix)+8 || binary.BigEndian.Uint64(k[len(prefix):]) != next+1 {
			break
		}
		next++
	}
	it.Close()
	if next != head {
		return putUint(txn, headKey(a.Origin), next)
	}
	return nil
}

// Append is Commit with one gap-free Append.
func (s *Store) Append(ctx context.Context, origin string, recs ...store.Record) error {
	return s.Commit(ctx, store.Batch{Appends: []store.Append{{Origin: origin, Records: recs}}})
}

// Read returns origin's records after a sequence; see store.Log.
func (s *Store) Read(ctx context.Context, origin string, after uint64, limit int, lanes store.Lane) ([]store.Record, error) {
	if err := check.Name("origin", origin); err != nil {
		return nil, err
	}
	if err := check.Limit(limit); err != nil {
		return nil, err
	}
	if err := check.Lanes(lanes); err != nil {
		return nil, err
	}
	if err := s.enter(ctx, "read"); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	var out []store.Record
	err := s.view("read", func(txn *badger.Txn) error {
		head, err := getUint(txn, headKey(origin))
		if err != nil || head <= after {
			return err
		}
		prefix := deltaPrefix(origin)
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: min(limit, 100), Prefix: prefix})
		defer it.Close()
		for it.Seek(deltaKey(origin, after+1)); it.Valid() && len(out) < limit; it.Next() {
			if err := ctx.Err(); err != nil {
				return access.Errorf(access.Unavailable, "badgerstore: read: %w", err)
			}
			item := it.Item()
			seq := binary.BigEndian.Uint64(item.Key()[len(prefix):])
			if seq > head {
				break
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			r, err := decodeRecord(seq, v)
			if err != nil {
				return err
			}
			if r.Lane&lanes != 0 {
				out = append(out, r)
			}
		}
		return nil
	})
	return out, err
}

// Vector returns the contiguous head of every origin; see store.Log.
func (s *Store) Vector(ctx context.Context) (map[string]uint64, error) {
	if err := s.enter(ctx, "vector"); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	out := map[string]uint64{}
	err := s.view("vector", func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 100, Prefix: []byte{pHead}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if len(v) != 8 {
				return fmt.Errorf("corrupt head %q", item.Key())
			}
			if h := binary.BigEndian.Uint64(v); h > 0 {
				out[string(item.Key()[1:])] = h
			}
		}
		return nil
	})
	return out, err
}

// Get returns one entity; see store.Entities.
func (s *Store) Get(ctx context.Context, kind, id string) (store.Entity, error) {
	if err := s.kinds.Kind(kind); err != nil {
		return store.Entity{}, err
	}
	if err := check.Name("entity id", id); err != nil {
		return store.Entity{}, err
	}
	if err := s.enter(ctx, "get"); err != nil {
		return store.Entity{}, err
	}
	defer s.mu.RUnlock()
	var e store.Entity
	err := s.view("get", func(txn *badger.Txn) error {
		v, ok, err := get(txn, entityKey(kind, id))
		if err != nil {
			return err
		}
		if !ok {
			return check.Fail(store.ErrNotFound, "entity %s/%s", kind, id)
		}
		e, err = decodeEntity(kind, id, v)
		return err
	})
	return e, err
}

// Scan returns a page of entities of one kind; see store.Entities.
func (s *Store) Scan(ctx context.Context, kind, after string, limit int) ([]store.Entity, error) {
	if err := s.kinds.Kind(kind); err != nil {
		return nil, err
	}
	if after != "" {
		if err := check.Name("after", after); err != nil {
			return nil, err
		}
	}
	if err := check.Limit(limit); err != nil {
		return nil, err
	}
	if err := s.enter(ctx, "scan"); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	var out []store.Entity
	err := s.view("scan", func(txn *badger.Txn) error {
		prefix := entityPrefix(kind)
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: min(limit, 100), Prefix: prefix})
		defer it.Close()
		for it.Seek(entityKey(kind, after)); it.Valid() && len(out) < limit; it.Next() {
			if err := ctx.Err(); err != nil {
				return access.Errorf(access.Unavailable, "badgerstore: scan: %w", err)
			}
			item := it.Item()
			id := string(item.Key()[len(prefix):])
			if id <= after {
				continue
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			e, err := decodeEntity(kind, id, v)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// Owner returns the holder of a unique key; see store.Entities.
func (s *Store) Owner(ctx context.Context, namespace, key string) (string, error) {
	if err := check.Name("key namespace", namespace); err != nil {
		return "", err
	}
	if err := check.Name("key", key); err != nil {
		return "", err
	}
	if err := s.enter(ctx, "owner"); err != nil {
		return "", err
	}
	defer s.mu.RUnlock()
	var owner string
	err := s.view("owner", func(txn *badger.Txn) error {
		v, ok, err := get(txn, uniqueKey(namespace, key))
		if err != nil {
			return err
		}
		if !ok {
			return check.Fail(store.ErrNotFound, "key in namespace %q is free", namespace)
		}
		owner = string(v)
		return nil
	})
	return owner, err
}

// Acked returns a peer's acknowledged vector; see store.Acks.
func (s *Store) Acked(ctx context.Context, peer string) (map[string]uint64, error) {
	if err := check.Name("peer", peer); err != nil {
		return nil, err
	}
	if err := s.enter(ctx, "acked"); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	out := map[string]uint64{}
	err := s.view("acked", func(txn *badger.Txn) error {
		prefix := ackPrefix(peer)
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 100, Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if len(v) != 8 {
				return fmt.Errorf("corrupt ack %q", item.Key())
			}
			out[string(item.Key()[len(prefix):])] = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return out, err
}

// Acquire takes a site's lease; see store.Leases.
func (s *Store) Acquire(ctx context.Context, site, owner string, ttl time.Duration) (store.Lease, error) {
	if err := check.Name("site", site); err != nil {
		return store.Lease{}, err
	}
	if err := check.Name("owner", owner); err != nil {
		return store.Lease{}, err
	}
	if err := check.TTL(ttl); err != nil {
		return store.Lease{}, err
	}
	if err := s.enter(ctx, "acquire"); err != nil {
		return store.Lease{}, err
	}
	defer s.mu.RUnlock()
	var got check.LeaseRow
	err := s.update(ctx, "acquire", func(txn *badger.Txn) error {
		row, err := getLease(txn, site)
		if err != nil {
			return err
		}
		if got, err = check.Acquire(row, site, owner, s.now(), ttl); err != nil {
			return err
		}
		return putLease(txn, site, got)
	})
	if err != nil {
		return store.Lease{}, err
	}
	return got.Lease(site), nil
}

// Renew extends a lease still held; see store.Leases.
func (s *Store) Renew(ctx context.Context, l store.Lease, ttl time.Duration) (store.Lease, error) {
	if err := check.LeaseArgs(l); err != nil {
		return store.Lease{}, err
	}
	if err := check.TTL(ttl); err != nil {
		return store.Lease{}, err
	}
	if err := s.enter(ctx, "renew"); err != nil {
		return store.Lease{}, err
	}
	defer s.mu.RUnlock()
	var got check.LeaseRow
	err := s.update(ctx, "renew", func(txn *badger.Txn) error {
		row, err := getLease(txn, l.Site)
		if err != nil {
			return err
		}
		if got, err = check.Renew(row, l, s.now(), ttl); err != nil {
			return err
		}
		return putLease(txn, l.Site, got)
	})
	if err != nil {
		return store.Lease{}, err
	}
	return got.Lease(l.Site), nil
}

// Release gives a lease up; see store.Leases.
func (s *Store) Release(ctx context.Context, l store.Lease) error {
	if err := check.LeaseArgs(l); err != nil {
		return err
	}
	if err := s.enter(ctx, "release"); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	return s.update(ctx, "release", func(txn *badger.Txn) error {
		row, err := getLease(txn, l.Site)
		if err != nil {
			return err
		}
		next, changed := check.Release(row, l)
		if !changed {
			return nil
		}
		return putLease(txn, l.Site, next)
	})
}

// Lease returns a site's live lease; see store.Leases.
func (s *Store) Lease(ctx context.Context, site string) (store.Lease, error) {
	if err := check.Name("site", site); err != nil {
		return store.Lease{}, err
	}
	if err := s.enter(ctx, "lease"); err != nil {
		return store.Lease{}, err
	}
	defer s.mu.RUnlock()
	var row check.LeaseRow
	err := s.view("lease", func(txn *badger.Txn) error {
		var err error
		row, err = getLease(txn, site)
		return err
	})
	if err != nil {
		return store.Lease{}, err
	}
	if !row.Live(s.now()) {
		return store.Lease{}, check.Fail(store.ErrNotFound, "site %q has no live lease", site)
	}
	return row.Lease(site), nil
}

// badgerLogger sends Badger's warnings and errors to slog and drops its
// chatty info and debug lines.
type badgerLogger struct{ log *slog.Logger }

func (l badgerLogger) Errorf(f string, a ...any)   { l.log.Error("badger: " + fmt.Sprintf(f, a...)) }
func (l badgerLogger) Warningf(f string, a ...any) { l.log.Warn("badger: " + fmt.Sprintf(f, a...)) }
func (l badgerLogger) Infof(string, ...any)        {}
func (l badgerLogger) Debugf(string, ...any)       {}

// Package pgstore implements the hub's store (cloud/store) on PostgreSQL,
// for hubs that run as several stateless processes sharing one database.
//
// Every write is one READ COMMITTED transaction that takes explicit row
// locks (an origin's head row, a site's lease row, the rows it replaces) in
// a fixed order, so concurrent hub processes serialise on exactly what they
// share and never deadlock on each other; serialization failures and
// deadlocks reported by the server are retried anyway. A nil error means
// the transaction committed, and with the server's default
// synchronous_commit=on its WAL is fsynced.
//
// Open creates the schema and its tables, recording applied migrations in a
// versioned table (gatehouse_migrations) under an advisory lock, so several
// processes may start at once. The schema is in docs/hub-store.md.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/store"
	"github.com/gatehouse/gatehouse/cloud/store/internal/check"
)

// Config says where the store lives.
type Config struct {
	// ConnString is a PostgreSQL connection string (URL or key=value).
	ConnString string
	// Schema is the schema holding the store's tables, created if missing;
	// default "gatehouse". Lower-case letters, digits and underscores.
	Schema string
	// MaxConns bounds the connection pool; 0 keeps pgxpool's default.
	MaxConns int32
}

// DefaultSchema is the schema used when Config.Schema is empty.
const DefaultSchema = "gatehouse"

// maxRetries bounds the retries of a transaction the server aborted for a
// serialization failure or a deadlock.
const maxRetries = 50

var schemaRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// migrations are applied in order; migration i+1 is migrations[i]. Never
// edit one that has shipped: add a new one.
var migrations = []string{
	// 1: the initial schema.
	`
CREATE TABLE deltas (
	origin text COLLATE "C" NOT NULL,
	seq    bigint NOT NULL CHECK (seq > 0),
	lane   smallint NOT NULL CHECK (lane IN (1, 2)),
	data   bytea NOT NULL,
	PRIMARY KEY (origin, seq)
);
CREATE TABLE heads (
	origin text COLLATE "C" PRIMARY KEY,
	seq    bigint NOT NULL
);
CREATE TABLE entities (
	kind    text COLLATE "C" NOT NULL,
	id      text COLLATE "C" NOT NULL,
	version bigint NOT NULL CHECK (version > 0),
	data    bytea NOT NULL,
	PRIMARY KEY (kind, id)
);
CREATE TABLE unique_keys (
	namespace text COLLATE "C" NOT NULL,
	key       text COLLATE "C" NOT NULL,
	owner     text NOT NULL,
	PRIMARY KEY (namespace, key)
);
CREATE TABLE acks (
	peer   text COLLATE "C" NOT NULL,
	origin text COLLATE "C" NOT NULL,
	seq    bigint NOT NULL,
	PRIMARY KEY (peer, origin)
);
CREATE TABLE leases (
	site    text COLLATE "C" PRIMARY KEY,
	owner   text NOT NULL,
	token   bigint NOT NULL,
	expires timestamptz
);
`,
}

// Store is the PostgreSQL implementation of store.Store. It is safe for
// concurrent use, and any number of Stores (in any number of processes) may
// share one schema.
type Store struct {
	pool  *pgxpool.Pool
	kinds check.Kinds
	now   func() time.Time // nil: the database's clock
	log   *slog.Logger

	mu     sync.RWMutex // held for reading by every call, for writing by Close
	closed bool
}

var _ store.Store = (*Store)(nil)

// Open connects, creates or migrates the schema, and returns the store. It
// returns an invalid error for bad options or a schema newer than this
// build, and an unavailable error if the database cannot be reached.
func Open(ctx context.Context, cfg Config, opts store.Options) (*Store, error) {
	kinds, err := check.NewKinds(opts.Kinds)
	if err != nil {
		return nil, err
	}
	if cfg.Schema == "" {
		cfg.Schema = DefaultSchema
	}
	if !schemaRE.MatchString(cfg.Schema) {
		return nil, check.Invalid(nil, "pgstore: schema %q: use lower-case letters, digits and underscores", cfg.Schema)
	}
	pc, err := pgxpool.ParseConfig(cfg.ConnString)
	if err != nil {
		return nil, check.Invalid(nil, "pgstore: connection string: %v", err)
	}
	if cfg.MaxConns > 0 {
		pc.MaxConns = cfg.MaxConns
	}
	pc.ConnConfig.RuntimeParams["search_path"] = cfg.Schema
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, access.Errorf(access.Unavailable, "pgstore: connect: %w", err)
	}
	s := &Store{pool: pool, kinds: kinds, now: opts.Now, log: opts.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if err := s.migrate(ctx, cfg.Schema); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// migrate creates the schema and applies the migrations it lacks, in one
// transaction under an advisory lock named after the schema.
func (s *Store) migrate(ctx context.Context, schema string) error {
	h := fnv.New64a()
	h.Write([]byte("gatehouse/pgstore/migrate/" + schema))
	lock := int64(h.Sum64())
	return s.tx(ctx, "migrate", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lock); err != nil {
			return err
		}
		ident := pgx.Identifier{schema}.Sanitize()
		if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+ident); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SET LOCAL search_path TO `+ident); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS gatehouse_migrations (
			version    integer PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
			return err
		}
		var have int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM gatehouse_migrations`).Scan(&have); err != nil {
			return err
		}
		if have > len(migrations) {
			return check.Invalid(nil, "pgstore: schema %q is at version %d, this build knows up to %d", schema, have, len(migrations))
		}
		for v := have + 1; v <= len(migrations); v++ {
			if _, err := tx.Exec(ctx, migrations[v-1]); err != nil {
				return fmt.Errorf("migration %d: %w", v, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO gatehouse_migrations (version) VALUES ($1)`, v); err != nil {
				return err
			}
			s.log.Info("pgstore: applied migration", "schema", schema, "version", v)
		}
		return nil
	})
}

// Close closes the connection pool. It waits for calls in progress and is
// idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		s.pool.Close()
	}
	return nil
}

// enter starts a call: it fails if the store is closed or ctx is done.
// On success the caller must call s.mu.RUnlock.
func (s *Store) enter(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return access.Errorf(access.Unavailable, "pgstore: %s: %w", op, err)
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return check.Fail(store.ErrClosed, "pgstore: %s", op)
	}
	return nil
}

// retryable reports a transaction the server aborted that may succeed if
// run again: a serialization failure or a deadlock.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// classify gives err a code: errors with one keep it; errors of the
// database's own making (SQL, constraint, data) are internal; everything
// else (connections, timeouts, cancellation) is unavailable.
func classify(op string, err error) error {
	if err == nil || access.ErrorCode(err) != access.Internal {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (strings.HasPrefix(pe.Code, "42") || strings.HasPrefix(pe.Code, "22") || strings.HasPrefix(pe.Code, "23")) {
		return fmt.Errorf("pgstore: %s: %w", op, err)
	}
	return access.Errorf(access.Unavailable, "pgstore: %s: %w", op, err)
}

// tx runs fn in a READ COMMITTED transaction and commits it, retrying it
// from scratch when the server aborts it for a serialization failure or a
// deadlock.
func (s *Store) tx(ctx context.Context, op string, fn func(tx pgx.Tx) error) error {
	for attempt := 0; ; attempt++ {
		err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, fn)
		if err != nil && retryable(err) && attempt < maxRetries && ctx.Err() == nil {
			continue
		}
		return classify(op, err)
	}
}

// clock returns the time leases are measured against: the injected clock,
// or the database's.
func (s *Store) clock(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (time.Time, error) {
	if s.now != nil {
		return s.now(), nil
	}
	var t time.Time
	err := q.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&t)
	return t, err
}

// lockLease returns site's lease row, creating it if missing, locked for
// update until the end of tx.
func lockLease(ctx context.Context, tx pgx.Tx, site string) (check.LeaseRow, error) {
	var row check.LeaseRow
	var token int64
	var exp *time.Time
	err := tx.QueryRow(ctx, `
		INSERT INTO leases (site, owner, token) VALUES ($1, '', 0)
		ON CONFLICT (site) DO UPDATE SET owner = leases.owner
		RETURNING owner, token, expires`, site).Scan(&row.Owner, &token, &exp)
	row.Token = uint64(token)
	if exp != nil {
		row.Expires = exp.UTC()
	}
	return row, err
}

func putLease(ctx context.Context, tx pgx.Tx, site string, r check.LeaseRow) error {
	var exp *time.Time
	if r.Owner != "" {
		exp = &r.Expires
	}
	_, err := tx.Exec(ctx, `UPDATE leases SET owner = $2, token = $3, expires = $4 WHERE site = $1`,
		site, r.Owner, int64(r.Token), exp)
	return err
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
	return s.tx(ctx, "commit", func(tx pgx.Tx) error { return s.apply(ctx, tx, b) })
}

// apply writes b in tx. Rows are locked in a fixed order (the lease, the
// heads by origin, the entities by kind and ID, the keys by namespace and
// key, the acks by peer and origin) so that concurrent batches cannot
// deadlock.
func (s *Store) apply(ctx context.Context, tx pgx.Tx, b store.Batch) error {
	if f := b.Fence; f != nil {
		// FOR SHARE holds off an Acquire of this site until we commit,
		// so a batch that passed its fence commits before a new owner
		// takes over.
		var row check.LeaseRow
		var token int64
		var exp *time.Time
		err := tx.QueryRow(ctx, `SELECT owner, token, expires FROM leases WHERE site = $1 FOR SHARE`, f.Site).
			Scan(&row.Owner, &token, &exp)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		row.Token = uint64(token)
		if exp != nil {
			row.Expires = exp.UTC()
		}
		now, err := s.clock(ctx, tx)
		if err != nil {
			return err
		}
		if err := check.Fence(row, *f, now); err != nil {
			return err
		}
	}

	appends := slices.Clone(b.Appends)
	slices.SortFunc(appends, func(x, y store.Append) int { return strings.Compare(x.Origin, y.Origin) })
	for _, a := range appends {
		if err := appendTx(ctx, tx, a); err != nil {
			return err
		}
	}

	puts := slices.Clone(b.Puts)
	slices.SortFunc(puts, func(x, y store.Put) int {
		if c := strings.Compare(x.Entity.Kind, y.Entity.Kind); c != 0 {
			return c
		}
		return strings.Compare(x.Entity.ID, y.Entity.ID)
	})
	for _, p := range puts {
		e := p.Entity
		data := nonNil(e.Data)
		var tag pgconn.CommandTag
		var err error
		switch {
		case p.IfVersion == nil:
			tag, err = tx.Exec(ctx, `
				INSERT INTO entities (kind, id, version, data) VALUES ($1, $2, $3, $4)
				ON CONFLICT (kind, id) DO UPDATE SET version = excluded.version, data = excluded.data`,
				e.Kind, e.ID, int64(e.Version), data)
		case *p.IfVersion == 0:
			tag, err = tx.Exec(ctx, `
				INSERT INTO entities (kind, id, version, data) VALUES ($1, $2, $3, $4)
				ON CONFLICT (kind, id) DO NOTHING`,
				e.Kind, e.ID, int64(e.Version), data)
		default:
			tag, err = tx.Exec(ctx, `UPDATE entities SET version = $3, data = $4 WHERE kind = $1 AND id = $2 AND version = $5`,
				e.Kind, e.ID, int64(e.Version), data, int64(*p.IfVersion))
		}
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return check.Fail(store.ErrVersionMismatch, "entity %s/%s: version is not %d", e.Kind, e.ID, *p.IfVersion)
		}
	}

	// Claims and unclaims are locked together in key order (a batch that
	// moves a card number and one that moves it back must not deadlock).
	type keyOp struct {
		store.Claim
		claim bool
	}
	ops := make([]keyOp, 0, len(b.Claim)+len(b.Unclaim))
	for _, c := range b.Claim {
		ops = append(ops, keyOp{c, true})
	}
	for _, c := range b.Unclaim {
		ops = append(ops, keyOp{c, false})
	}
	slices.SortFunc(ops, func(x, y keyOp) int {
		if c := strings.Compare(x.Namespace, y.Namespace); c != 0 {
			return c
		}
		return strings.Compare(x.Key, y.Key)
	})
	for _, c := range ops {
		var owner string
		if c.claim {
			err := tx.QueryRow(ctx, `
				INSERT INTO unique_keys (namespace, key, owner) VALUES ($1, $2, $3)
				ON CONFLICT (namespace, key) DO UPDATE SET owner = unique_keys.owner
				RETURNING owner`, c.Namespace, c.Key, c.Owner).Scan(&owner)
			if err != nil {
				return err
			}
			if owner != c.Owner {
				return check.Fail(store.ErrKeyTaken, "claim in namespace %q", c.Namespace)
			}
			continue
		}
		err := tx.QueryRow(ctx, `SELECT owner FROM unique_keys WHERE namespace = $1 AND key = $2 FOR UPDATE`,
			c.Namespace, c.Key).Scan(&owner)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return err
		}
		if owner != c.Owner {
			return check.Fail(store.ErrKeyTaken, "unclaim in namespace %q", c.Namespace)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM unique_keys WHERE namespace = $1 AND key = $2`, c.Namespace, c.Key); err != nil {
			return err
		}
	}

	acks := slices.Clone(b.Acks)
	slices.SortFunc(acks, func(x, y store.Ack) int { return strings.Compare(x.Peer, y.Peer) })
	for _, a := range acks {
		origins := make([]string, 0, len(a.Vector))
		for o := range a.Vector {
			origins = append(origins, o)
		}
		slices.Sort(origins)
		seqs := make([]int64, len(origins))
		for i, o := range origins {
			seqs[i] = int64(a.Vector[o])
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO acks (peer, origin, seq)
			SELECT $1, o, s FROM unnest($2::text[], $3::bigint[]) WITH ORDINALITY AS u(o, s, n) ORDER BY n
			ON CONFLICT (peer, origin) DO UPDATE SET seq = greatest(acks.seq, excluded.seq)`,
			a.Peer, origins, seqs); err != nil {
			return err
		}
	}
	return nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// appendTx applies one Append in tx: it locks the origin's head, checks the
// records against those stored, inserts the new ones and advances the head.
func appendTx(ctx context.Context, tx pgx.Tx, a store.Append) error {
	var head int64
	err := tx.QueryRow(ctx, `
		INSERT INTO heads (origin, seq) VALUES ($1, 0)
		ON CONFLICT (origin) DO UPDATE SET seq = heads.seq
		RETURNING seq`, a.Origin).Scan(&head)
	if err != nil {
		return err
	}
	seqs := make([]int64, len(a.Records))
	for i, r := range a.Records {
		seqs[i] = int64(r.Seq)
	}
	rows, err := tx.Query(ctx, `SELECT seq, lane, data FROM deltas WHERE origin = $1 AND seq = ANY($2::bigint[])`, a.Origin, seqs)
	if err != nil {
		return err
	}
	stored := map[uint64]store.Record{}
	for rows.Next() {
		var seq int64
		var lane int16
		var data []byte
		if err := rows.Scan(&seq, &lane, &data); err != nil {
			rows.Close()
			return err
		}
		stored[uint64(seq)] = store.Record{Seq: uint64(seq), Lane: store.Lane(lane), Data: data}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	fresh, err := check.PlanAppend(a, uint64(head), func(seq uint64) (store.Record, bool) {
		r, ok := stored[seq]
		return r, ok
	})
	if err != nil || len(fresh) == 0 {
		return err
	}
	fs := make([]int64, len(fresh))
	fl := make([]int16, len(fresh))
	fd := make([][]byte, len(fresh))
	for i, r := range fresh {
		fs[i], fl[i], fd[i] = int64(r.Seq), int16(r.Lane), nonNil(r.Data)
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO deltas (origin, seq, lane, data)
		SELECT $1, s, l, d FROM unnest($2::bigint[], $3::smallint[], $4::bytea[]) AS u(s, l, d)`,
		a.Origin, fs, fl, fd); err != nil {
		return err
	}
	// The records right after the head form one run whose seq minus its
	// rank is the head; the new head is the end of that run.
	_, err = tx.Exec(ctx, `
		UPDATE heads SET seq = coalesce((
			SELECT max(seq) FROM (
				SELECT seq, seq - row_number() OVER (ORDER BY seq) AS run
				FROM deltas WHERE origin = $1 AND seq > $2
			) r WHERE run = $2
		), $2)
		WHERE origin = $1`, a.Origin, head)
	return err
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
	if after > store.MaxSeq {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `
		SELECT seq, lane, data FROM deltas
		WHERE origin = $1 AND seq > $2 AND seq <= (SELECT seq FROM heads WHERE origin = $1) AND (lane & $3) <> 0
		ORDER BY seq LIMIT $4`, origin, int64(after), int16(lanes), limit)
	if err != nil {
		return nil, classify("read", err)
	}
	var out []store.Record
	for rows.Next() {
		var seq int64
		var lane int16
		var data []byte
		if err := rows.Scan(&seq, &lane, &data); err != nil {
			rows.Close()
			return nil, classify("read", err)
		}
		out = append(out, store.Record{Seq: uint64(seq), Lane: store.Lane(lane), Data: data})
	}
	return out, classify("read", rows.Err())
}

// Vector returns the contiguous head of every origin; see store.Log.
func (s *Store) Vector(ctx context.Context) (map[string]uint64, error) {
	if err := s.enter(ctx, "vector"); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	return s.vector(ctx, "vector", `SELECT origin, seq FROM heads WHERE seq > 0`)
}

func (s *Store) vector(ctx context.Context, op, query string, args ...any) (map[string]uint64, error) {
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, classify(op, err)
	}
	out := map[string]uint64{}
	for rows.Next() {
		var origin string
		var seq int64
		if err := rows.Scan(&origin, &seq); err != nil {
			rows.Close()
			return nil, classify(op, err)
		}
		out[origin] = uint64(seq)
	}
	if err := rows.Err(); err != nil {
		return nil, classify(op, err)
	}
	return out, nil
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
	e := store.Entity{Kind: kind, ID: id}
	var version int64
	err := s.pool.QueryRow(ctx, `SELECT version, data FROM entities WHERE kind = $1 AND id = $2`, kind, id).Scan(&version, &e.Data)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Entity{}, check.Fail(store.ErrNotFound, "entity %s/%s", kind, id)
	}
	if err != nil {
		return store.Entity{}, classify("get", err)
	}
	e.Version = uint64(version)
	return e, nil
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
	rows, err := s.pool.Query(ctx, `SELECT id, version, data FROM entities WHERE kind = $1 AND id > $2 ORDER BY id LIMIT $3`,
		kind, after, limit)
	if err != nil {
		return nil, classify("scan", err)
	}
	var out []store.Entity
	for rows.Next() {
		e := store.Entity{Kind: kind}
		var version int64
		if err := rows.Scan(&e.ID, &version, &e.Data); err != nil {
			rows.Close()
			return nil, classify("scan", err)
		}
		e.Version = uint64(version)
		out = append(out, e)
	}
	return out, classify("scan", rows.Err())
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
	err := s.pool.QueryRow(ctx, `SELECT owner FROM unique_keys WHERE namespace = $1 AND key = $2`, namespace, key).Scan(&owner)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", check.Fail(store.ErrNotFound, "key in namespace %q is free", namespace)
	}
	return owner, classify("owner", err)
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
	return s.vector(ctx, "acked", `SELECT origin, seq FROM acks WHERE peer = $1`, peer)
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
	err := s.tx(ctx, "acquire", func(tx pgx.Tx) error {
		row, err := lockLease(ctx, tx, site)
		if err != nil {
			return err
		}
		now, err := s.clock(ctx, tx)
		if err != nil {
			return err
		}
		if got, err = check.Acquire(row, site, owner, now, ttl); err != nil {
			return err
		}
		return putLease(ctx, tx, site, got)
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
	err := s.tx(ctx, "renew", func(tx pgx.Tx) error {
		row, err := lockLease(ctx, tx, l.Site)
		if err != nil {
			return err
		}
		now, err := s.clock(ctx, tx)
		if err != nil {
			return err
		}
		if got, err = check.Renew(row, l, now, ttl); err != nil {
			return err
		}
		return putLease(ctx, tx, l.Site, got)
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
	return s.tx(ctx, "release", func(tx pgx.Tx) error {
		row, err := lockLease(ctx, tx, l.Site)
		if err != nil {
			return err
		}
		next, changed := check.Release(row, l)
		if !changed {
			return nil
		}
		return putLease(ctx, tx, l.Site, next)
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
	var token int64
	var exp *time.Time
	var dbNow time.Time
	err := s.pool.QueryRow(ctx, `SELECT owner, token, expires, clock_timestamp() FROM leases WHERE site = $1`, site).
		Scan(&row.Owner, &token, &exp, &dbNow)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return store.Lease{}, classify("lease", err)
	}
	row.Token = uint64(token)
	if exp != nil {
		row.Expires = exp.UTC()
	}
	now := dbNow
	if s.now != nil {
		now = s.now()
	}
	if !row.Live(now) {
		return store.Lease{}, check.Fail(store.ErrNotFound, "site %q has no live lease", site)
	}
	return row.Lease(site), nil
}

// Package store is the hub's storage contract: per-origin delta logs and
// their version vector, materialised entities, unique keys, per-peer
// acknowledged vectors and stream-ownership leases, written together in
// atomic batches. It is byte-oriented on purpose: it stores what replication
// hands it (encoded deltas, encoded entity states) without knowing their
// types, so the replication engine can change its encodings freely.
//
// Two implementations pass the same contract suite (storetest):
// badgerstore (embedded, one hub process) and pgstore (PostgreSQL, several
// stateless hub processes sharing one database). docs/hub-store.md describes
// both, their on-disk layouts and how leases fence a stale owner.
//
// Every method takes a context, is safe for concurrent use, and returns
// errors carrying an access.Code (invalid, not_found, conflict, unavailable)
// that wrap one of the sentinel errors below where one applies. A call that
// returns an error has changed nothing.
package store

import (
	"context"
	"log/slog"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

// Limits of the contract. Input beyond them is refused with an invalid error
// wrapping ErrTooLarge (or ErrInvalid for a malformed name) and changes
// nothing. Both implementations accept anything within them.
const (
	// MaxNameLen is the longest origin, peer, site, owner, kind, entity
	// ID, key namespace or key, in bytes.
	MaxNameLen = 256
	// MaxRecordSize is the largest delta record's Data, in bytes.
	MaxRecordSize = 1 << 20
	// MaxEntitySize is the largest entity's Data, in bytes.
	MaxEntitySize = 1 << 20
	// MaxBatchBytes is the largest total of record and entity Data in
	// one Batch.
	MaxBatchBytes = 4 << 20
	// MaxBatchItems is the largest number of records, entities, claims,
	// unclaims and acknowledged origins in one Batch together.
	MaxBatchItems = 10_000
	// MaxLimit is the largest limit a Read or Scan accepts.
	MaxLimit = 10_000
	// MaxSeq is the largest sequence number or entity version (the
	// PostgreSQL implementation stores them as bigint).
	MaxSeq = 1<<63 - 1
	// MaxLeaseTTL is the longest lease an Acquire or Renew grants.
	MaxLeaseTTL = time.Hour
)

// Lane is the delivery lane of a delta record. Revocations, disables and
// checkouts travel in the priority lane, ahead of everything else
// (DESIGN.md §4). As an argument to Read, a Lane is a set: Normal|Priority.
type Lane uint8

// The lanes. A stored record is in exactly one of them.
const (
	Normal   Lane = 1
	Priority Lane = 2
	// AllLanes selects both lanes in Read.
	AllLanes = Normal | Priority
)

// Record is one delta in an origin's log: its sequence number (from 1,
// assigned by the origin), its lane and its encoded bytes.
type Record struct {
	Seq  uint64
	Lane Lane
	Data []byte
}

// Entity is the materialised state of one entity: its kind (one of the
// kinds the store was opened with), its ID (unique within the kind), a
// version chosen by the writer (at least 1; for example a packed HLC stamp
// or a counter) and its encoded bytes.
type Entity struct {
	Kind    string
	ID      string
	Version uint64
	Data    []byte
}

// Append adds records to one origin's log inside a Batch.
//
// Records must have strictly ascending Seq values, each at least 1, and a
// Lane of Normal or Priority. A record whose (origin, seq) is already stored
// with the same lane and bytes is skipped (appends are idempotent); one
// stored with different lane or bytes fails the batch with ErrRecordMismatch.
// A new record is stored only if it extends the origin's contiguous run
// (Seq = head+1, counting the records before it in the same call); otherwise
// the batch fails with ErrGap, unless AllowGap is set, in which case it is
// stored but the origin's vector entry stays at the contiguous head until the
// gap is filled.
type Append struct {
	Origin   string
	Records  []Record
	AllowGap bool
}

// Put writes an entity inside a Batch, replacing any stored version. If
// IfVersion is non-nil, the entity's stored version must equal *IfVersion
// (0: the entity must not exist), or the batch fails with ErrVersionMismatch.
type Put struct {
	Entity    Entity
	IfVersion *uint64
}

// Claim names a unique key (for example namespace "card", key the card
// number) and the owner holding it (for example an entity ID).
type Claim struct {
	Namespace string
	Key       string
	Owner     string
}

// Ack records that Peer has durably received every record of each origin up
// to the sequence given in Vector. Acknowledged vectors only move forward:
// a smaller sequence than the one stored is ignored.
type Ack struct {
	Peer   string
	Vector map[string]uint64
}

// Fence names the site a batch concerns and the fencing token of the lease
// its writer holds on that site's stream.
type Fence struct {
	Site  string
	Token uint64
}

// Batch is one atomic write: either every part of it is applied, durably
// (fsynced), before Commit returns nil, or none is.
//
// The whole batch is validated first (names, sizes, order, duplicates: an
// origin, an entity (kind, id), a unique key or a peer may appear at most
// once in each list, and a key not in both Claim and Unclaim), then checked
// against the stored state: the fence, the appends, the puts, the claims,
// the unclaims. Acks cannot fail except for bad input. When several parts
// would fail, which one's error is returned is unspecified.
type Batch struct {
	// Fence, if non-nil, makes the batch conditional on the named site's
	// lease still being held, unexpired, with that token; otherwise it
	// fails with ErrFenced.
	Fence *Fence
	// Appends add delta records to origins' logs.
	Appends []Append
	// Puts write materialised entities.
	Puts []Put
	// Claim takes unique keys: a key held by another owner fails the
	// batch with ErrKeyTaken; one already held by the same owner is kept.
	Claim []Claim
	// Unclaim frees unique keys held by the given owner: a free key is
	// left free; a key held by another owner fails the batch with
	// ErrKeyTaken.
	Unclaim []Claim
	// Acks advance peers' acknowledged vectors.
	Acks []Ack
}

// Lease is a stream-ownership lease on one site: Owner holds it until
// Expires, and Token is its fencing token. Tokens of a site increase with
// every new acquisition (renewing keeps the token), and are never reused,
// even after a release.
type Lease struct {
	Site    string
	Owner   string
	Token   uint64
	Expires time.Time
}

// Log is the per-origin delta logs and the version vector.
type Log interface {
	// Append is Commit with one Append of recs to origin, without gaps.
	Append(ctx context.Context, origin string, recs ...Record) error
	// Read returns origin's records with after < Seq <= the origin's
	// contiguous head whose lane is in lanes, in ascending Seq order, at
	// most limit (1..MaxLimit) of them. Records stored past a gap are not
	// returned until the gap is filled. An unknown origin has no records.
	Read(ctx context.Context, origin string, after uint64, limit int, lanes Lane) ([]Record, error)
	// Vector returns, per origin, the highest sequence such that every
	// record from 1 up to it is stored: the version vector of what this
	// store holds. Origins without such a record are left out.
	Vector(ctx context.Context) (map[string]uint64, error)
}

// Entities is the materialised entities and unique keys.
type Entities interface {
	// Get returns the entity kind/id, or an error wrapping ErrNotFound.
	Get(ctx context.Context, kind, id string) (Entity, error)
	// Scan returns the entities of kind with ID > after in ascending
	// byte order of ID, at most limit (1..MaxLimit) of them. Pass the
	// last ID returned as after to read the next page.
	Scan(ctx context.Context, kind, after string, limit int) ([]Entity, error)
	// Owner returns the owner holding a unique key, or an error wrapping
	// ErrNotFound if it is free.
	Owner(ctx context.Context, namespace, key string) (string, error)
}

// Acks is the per-peer acknowledged vectors.
type Acks interface {
	// Acked returns what peer has acknowledged: per origin, the highest
	// sequence it has durably received. An unknown peer has an empty
	// vector.
	Acked(ctx context.Context, peer string) (map[string]uint64, error)
}

// Leases is stream ownership: one owner per site at a time.
type Leases interface {
	// Acquire takes site's lease for owner for ttl (up to MaxLeaseTTL).
	// It succeeds with a new token if the lease is free, released or
	// expired; if owner already holds it, it is extended and keeps its
	// token (a retried Acquire is harmless). If another owner holds it
	// unexpired, it fails with ErrLeaseHeld.
	Acquire(ctx context.Context, site, owner string, ttl time.Duration) (Lease, error)
	// Renew extends a lease still held, unexpired, with l's owner and
	// token to now+ttl. Otherwise it fails with ErrLeaseLost, and the
	// owner must Acquire again (getting a new token).
	Renew(ctx context.Context, l Lease, ttl time.Duration) (Lease, error)
	// Release gives the lease up if it is still held with l's owner and
	// token; otherwise it does nothing. The site's token is kept, so the
	// next owner's token is higher.
	Release(ctx context.Context, l Lease) error
	// Lease returns site's current lease, or an error wrapping ErrNotFound
	// if it is free, released or expired.
	Lease(ctx context.Context, site string) (Lease, error)
}

// Store is the hub's store. Close releases its resources and is idempotent;
// any other call after Close fails with ErrClosed.
type Store interface {
	Log
	Entities
	Acks
	Leases
	// Commit applies b atomically and durably; see Batch.
	Commit(ctx context.Context, b Batch) error
	Close() error
}

// Sentinel errors. Each carries the access.Code shown; implementations wrap
// them with context, so match them with errors.Is and classify with
// access.ErrorCode.
var (
	// ErrInvalid (invalid) reports malformed input: an empty or
	// oversized name, a sequence of 0, records out of order, a bad lane,
	// a duplicate in a batch, a bad limit or TTL.
	ErrInvalid error = &access.Error{Code: access.Invalid, Msg: "invalid input"}
	// ErrTooLarge (invalid) reports a record, entity or batch beyond the
	// limits above.
	ErrTooLarge error = &access.Error{Code: access.Invalid, Msg: "too large"}
	// ErrUnknownKind (invalid) reports an entity kind the store was not
	// opened with.
	ErrUnknownKind error = &access.Error{Code: access.Invalid, Msg: "unknown entity kind"}
	// ErrNotFound (not_found) reports a missing entity, a free key or a
	// free lease.
	ErrNotFound error = &access.Error{Code: access.NotFound, Msg: "not found"}
	// ErrRecordMismatch (conflict) reports an append of an (origin, seq)
	// already stored with different bytes or lane.
	ErrRecordMismatch error = &access.Error{Code: access.Conflict, Msg: "record differs from the one stored"}
	// ErrGap (conflict) reports an append that would store a record past
	// a gap in its origin's log without AllowGap.
	ErrGap error = &access.Error{Code: access.Conflict, Msg: "record past a gap"}
	// ErrVersionMismatch (conflict) reports a conditional Put whose
	// IfVersion does not match the stored version.
	ErrVersionMismatch error = &access.Error{Code: access.Conflict, Msg: "entity version mismatch"}
	// ErrKeyTaken (conflict) reports a unique key held by another owner.
	ErrKeyTaken error = &access.Error{Code: access.Conflict, Msg: "unique key held by another owner"}
	// ErrLeaseHeld (conflict) reports an Acquire of a lease another owner
	// holds unexpired.
	ErrLeaseHeld error = &access.Error{Code: access.Conflict, Msg: "lease held by another owner"}
	// ErrLeaseLost (conflict) reports a Renew of a lease that has
	// expired, been released or been taken by another owner.
	ErrLeaseLost error = &access.Error{Code: access.Conflict, Msg: "lease lost"}
	// ErrFenced (conflict) reports a batch whose fencing token is not the
	// current, unexpired lease of its site: its writer lost ownership.
	ErrFenced error = &access.Error{Code: access.Conflict, Msg: "fencing token is stale"}
	// ErrClosed (unavailable) reports a call on a closed store.
	ErrClosed error = &access.Error{Code: access.Unavailable, Msg: "store closed"}
)

// Options are what both implementations need besides their location.
type Options struct {
	// Kinds lists the entity kinds the store accepts; at least one.
	Kinds []string
	// Now is the clock leases are measured against. The Badger store
	// defaults to time.Now; the PostgreSQL store defaults to the
	// database's clock, shared by every hub process. Tests inject a
	// controllable clock.
	Now func() time.Time
	// Logger receives the store's own warnings; nil discards them.
	Logger *slog.Logger
}

// Package hubstate is the cloud hub's replica, made durable: a
// replication.Replica in memory, backed by a cloud/store.Store that holds
// every delta the hub has accepted, from every origin and lane.
//
// The rule it keeps (DESIGN.md §4): a batch of deltas is committed to the
// store, fsynced, all or nothing, before it is applied to the replica, and
// only what is applied is ever acknowledged. So the replica's vector is the
// hub's durable vector, and a restart that reloads the store finds every
// delta it acknowledged.
//
// Deltas arrive two ways: from a site's sync session (Apply, or the
// replication.Store that SessionStore returns) and from the hub's own APIs
// (Write), which make deltas of origin "hub" with stamps from the hub's
// replication.Clock and sequence numbers that resume from the durable
// vector. Card numbers homed at the hub are claimed in the store (namespace
// "card") in the same commit as the delta that binds them, so two hub
// writers can never hand one number to two live holders.
//
// Access events arrive in each site's events lane: they are committed to
// the store like any delta but never applied to the replica; an in-memory
// index of them answers access-log queries (events.go, QueryEvents).
//
// docs/sync.md describes how the sync server uses it.
package hubstate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/store"
	"github.com/gatehouse/gatehouse/replication"
)

// Origin is the origin of the deltas the hub itself makes.
const Origin = "hub"

// CardNamespace is the store's unique-key namespace of card numbers.
const CardNamespace = "card"

// Kinds are the entity kinds the store must be opened with
// (store.Options.Kinds). The hub keeps no materialised entities in the
// store yet: the replica is rebuilt from the delta logs on open.
var Kinds = []string{"meta"}

// Limits of one Write. A larger one is refused with an invalid error.
const (
	// MaxWriteChanges is the most changes (deltas) one Write makes.
	MaxWriteChanges = 2_000_000
)

// Limits of one commit, below the store's (store.MaxBatchBytes,
// store.MaxBatchItems) to leave room for claims and acks. A larger batch
// is committed in several consecutive commits, each applied after it is
// durable.
const (
	commitBytes = 3 << 20
	commitItems = 4096
)

// Sentinel errors. Each carries the access code shown; match with errors.Is.
var (
	// ErrCardTaken (conflict) reports a hub write binding a card number
	// that has another live holder, at the hub or at a site.
	ErrCardTaken error = &access.Error{Code: access.Conflict, Msg: "card number held by another live holder"}
	// ErrClosed (unavailable) reports a call after Close.
	ErrClosed error = &access.Error{Code: access.Unavailable, Msg: "hub state closed"}
	// ErrStale (unavailable) reports a hub write that lost a race with
	// another hub process writing the same origin; the state has been
	// refreshed from the store and the write may be retried.
	ErrStale error = &access.Error{Code: access.Unavailable, Msg: "hub state was behind the store; retry"}
)

// Options configure a State.
type Options struct {
	// Clock stamps the hub's writes and observes every stamp applied; its
	// origin must be Origin. Default: replication.NewClock(Origin, 0, nil).
	Clock *replication.Clock
	// Logger receives warnings; nil discards them.
	Logger *slog.Logger
}

// State is the hub's durable replica. All its methods are safe for
// concurrent use: writes and applies are serialised, reads share a lock.
type State struct {
	st    store.Store
	clock *replication.Clock
	log   *slog.Logger

	mu      sync.RWMutex
	rep     *replication.Replica
	changed chan struct{} // closed and replaced when the replica changes
	closed  bool
	// bulkPending: a large write is durable in its staging area but not
	// yet in the logs (see commitLarge); the next Write finishes it.
	bulkPending bool
	// cardsOf lists, per person, every card number ever bound to them (a
	// superset of what they hold: check with CardHolders), so deleting a
	// person frees their numbers without scanning every card.
	cardsOf map[access.ID][]access.CardNumber
	// events indexes the sites' access events (events.go); it has its own
	// lock, taken after s.mu when both are.
	events *eventIndex
	// revocations is PendingRevocations' index (pending.go), made on
	// first use; it has its own lock.
	revocations     *revocationIndex
	revocationsOnce sync.Once
	// scope is the site-scoped logs of the hub's own changes (scope.go).
	scope *scopeIndex
	// scopeStale: the scoped records of an arrival failed to commit
	// (arrival.go); the next Apply or Write reconciles first.
	scopeStale bool
}

// reconcileIfStale runs reconcileScopes when an arrival's scoped records
// failed to commit. s.mu must be held.
func (s *State) reconcileIfStale(ctx context.Context) error {
	if !s.scopeStale {
		return nil
	}
	if err := s.reconcileScopes(ctx); err != nil {
		return err
	}
	s.scopeStale = false
	return nil
}

// noteCards records in cardsOf the card bindings of applied deltas.
// s.mu must be held for writing.
func (s *State) noteCards(ds []replication.Delta) {
	for _, d := range ds {
		if d.Kind != replication.KindCard {
			continue
		}
		for _, op := range d.Ops {
			if op.Type != replication.OpAdd || op.Field != "holders" {
				continue
			}
			p, _, err := replication.ParseHolderValue(op.Value)
			n, err2 := access.ParseCardNumber(d.ID)
			if err != nil || err2 != nil {
				continue
			}
			if s.cardsOf == nil {
				s.cardsOf = map[access.ID][]access.CardNumber{}
			}
			if !slices.Contains(s.cardsOf[p], n) {
				s.cardsOf[p] = append(s.cardsOf[p], n)
			}
		}
	}
}

// Open loads every delta log of st into a new replica and returns the
// state. It returns the store's error when reading fails and an invalid
// error when the store holds a log or delta that is not the hub's. The
// State does not own st: close the State, then the store.
func Open(ctx context.Context, st store.Store, opts Options) (*State, error) {
	if opts.Clock == nil {
		c, err := replication.NewClock(Origin, 0, nil)
		if err != nil {
			return nil, err
		}
		opts.Clock = c
	}
	if opts.Clock.Origin() != Origin {
		return nil, access.Errorf(access.Invalid, "hubstate: clock of origin %q, want %q", opts.Clock.Origin(), Origin)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &State{st: st, clock: opts.Clock, log: opts.Logger, rep: replication.NewReplica(), changed: make(chan struct{}),
		events: newEventIndex(), scope: newScopeIndex()}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.recoverBulk(ctx); err != nil {
		return nil, err
	}
	if _, err := s.load(ctx); err != nil {
		return nil, err
	}
	if err := s.migrateScopes(ctx); err != nil {
		return nil, err
	}
	if err := s.reconcileScopes(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Close makes later calls fail with ErrClosed. It does not close the store.
// It is idempotent.
func (s *State) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.changed)
	}
	return nil
}

// StoreOrigin returns the name of src's log in the store: "origin/lane"
// (lane "priority", "normal" or "events").
// The store numbers records per log, and replication numbers deltas per
// (origin, lane), so each source has a log of its own.
func StoreOrigin(src replication.Source) string { return src.String() }

// parseStoreOrigin is the inverse of StoreOrigin.
func parseStoreOrigin(name string) (replication.Source, error) {
	origin, lane, ok := strings.Cut(name, "/")
	src := replication.Source{Origin: origin}
	switch lane {
	case "priority":
		src.Lane = replication.LanePriority
	case "normal":
		src.Lane = replication.LaneNormal
	case "events":
		src.Lane = replication.LaneEvents
	default:
		ok = false
	}
	if !ok || src.Validate() != nil {
		return replication.Source{}, access.Errorf(access.Invalid, "hubstate: store log %q is not a replication source", name)
	}
	return src, nil
}

// decodeRecords decodes records read from src's store log; what names the
// caller's step in errors ("load", "read"). A record that does not decode,
// or holds a delta of another source or sequence number, is an error
// (Invalid for the latter).
func decodeRecords(what string, src replication.Source, recs []store.Record) ([]replication.Delta, error) {
	ds := make([]replication.Delta, len(recs))
	for i, r := range recs {
		if err := ds[i].UnmarshalBinary(r.Data); err != nil {
			return nil, fmt.Errorf("hubstate: %s %s/%d: %w", what, src, r.Seq, err)
		}
		if ds[i].Source() != src || ds[i].Seq != r.Seq {
			return nil, access.Errorf(access.Invalid, "hubstate: %s %s/%d: holds delta %s/%d", what, src, r.Seq, ds[i].Source(), ds[i].Seq)
		}
	}
	return ds, nil
}

// storeLane maps a replication lane to the store's.
func storeLane(l replication.Lane) store.Lane {
	if l == replication.LanePriority {
		return store.Priority
	}
	return store.Normal
}

// load applies to the replica what the store holds beyond it, and reports
// whether anything was applied. s.mu must be held.
func (s *State) load(ctx context.Context) (bool, error) {
	vec, err := s.st.Vector(ctx)
	if err != nil {
		return false, fmt.Errorf("hubstate: load: %w", err)
	}
	defer s.events.settle() // events are indexed in bulk while loading
	have := s.rep.Vector()
	for src, n := range s.events.vector() {
		have[src] = n
	}
	changed := false
	for name, head := range vec {
		if strings.HasPrefix(name, scopeLogPrefix) {
			continue // after the hub's deltas they name: loadScopes
		}
		src, err := parseStoreOrigin(name)
		if err != nil {
			return changed, err
		}
		for after := have[src]; after < head; {
			recs, err := s.st.Read(ctx, name, after, store.MaxLimit, store.AllLanes)
			if err != nil {
				return changed, fmt.Errorf("hubstate: load %s: %w", name, err)
			}
			if len(recs) == 0 {
				break
			}
			ds, err := decodeRecords("load", src, recs)
			if err != nil {
				return changed, err
			}
			if src.Lane != replication.LaneEvents { // an event's stamp is a device's time: not witnessed
				for _, d := range ds {
					// The hub accepted these stamps before: take them without
					// the skew guard so the hub's clock stays ahead of them.
					_ = s.clock.Witness(d.Stamp)
				}
			}
			after = recs[len(recs)-1].Seq
			if src.Lane == replication.LaneEvents {
				if err := s.checkEvents(src, ds); err != nil {
					return changed, fmt.Errorf("hubstate: load %s: %w", name, err)
				}
				s.events.add(src.Origin, ds, true)
				continue
			}
			if err := s.rep.ApplyBatch(src, ds); err != nil {
				return changed, fmt.Errorf("hubstate: load %s: %w", name, err)
			}
			s.noteCards(ds)
			if src.Lane == replication.LaneNormal {
				s.scope.note(ds)
			}
			changed = true
		}
	}
	if err := s.loadScopes(ctx, vec); err != nil {
		return changed, err
	}
	if changed {
		s.signal()
	}
	return changed, nil
}

// Refresh loads what other hub processes committed to a shared store since
// this state last read it. A hub of one process never needs it.
func (s *State) Refresh(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	_, err := s.load(ctx)
	return err
}

// signal wakes whoever waits on Changed. s.mu must be held for writing.
func (s *State) signal() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Changed returns a channel that is closed the next time the replica
// changes (or the state closes). Take it before reading what you wait on.
func (s *State) Changed() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.changed
}

// Closed reports whether Close was called.
func (s *State) Closed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}

// Clock returns the hub's clock.
func (s *State) Clock() *replication.Clock { return s.clock }

// Vector returns the hub's durable vector: per source, the highest sequence
// number committed and applied with no gap below it. It is the Vector of
// replication.Log and replication.Store.
func (s *State) Vector() replication.Vector {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rep.Vector()
}

// Deltas returns up to max deltas of src after sequence number after, in
// sequence order: the replication.Log a sync session sends from. It never
// fails. It returns no events: the hub never relays them (and Vector does
// not list their lanes).
func (s *State) Deltas(src replication.Source, after uint64, max int) ([]replication.Delta, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rep.Deltas(src, after, max)
}

// View calls fn with the replica under the read lock. fn must not keep the
// replica nor change it.
func (s *State) View(fn func(r *replication.Replica)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	fn(s.rep)
}

// Facts returns a read-only view of single facts of the replica, each
// read under the read lock: entity fields, grants and card holders. It is
// what the sync server's authorizer judges deltas against.
func (s *State) Facts() Facts { return facts{s} }

// Facts reads single facts of the hub's replica; see State.Facts.
type Facts interface {
	// Field is replication.Replica.Field.
	Field(k replication.Kind, id, field string) (string, bool)
	// Grant is replication.Replica.Grant.
	Grant(id access.ID) (access.Grant, bool)
	// CardHolders is replication.Replica.CardHolders.
	CardHolders(n access.CardNumber) []replication.Holder
	// Holds reports whether the hub holds delta seq of src (applied to
	// the replica, or for an events lane, indexed).
	Holds(src replication.Source, seq uint64) bool
}

type facts struct{ s *State }

func (f facts) Holds(src replication.Source, seq uint64) (ok bool) {
	if src.Lane == replication.LaneEvents {
		return f.s.events.head(src.Origin) >= seq
	}
	f.s.View(func(r *replication.Replica) { ok = r.Vector()[src] >= seq })
	return ok
}

func (f facts) Field(k replication.Kind, id, field string) (v string, ok bool) {
	f.s.View(func(r *replication.Replica) { v, ok = r.Field(k, id, field) })
	return v, ok
}

func (f facts) Grant(id access.ID) (g access.Grant, ok bool) {
	f.s.View(func(r *replication.Replica) { g, ok = r.Grant(id) })
	return g, ok
}

func (f facts) CardHolders(n access.CardNumber) (h []replication.Holder) {
	f.s.View(func(r *replication.Replica) { h = r.CardHolders(n) })
	return h
}

// Snapshot returns the materialised state: people, cards, groups, doors,
// visits, grants and card-number conflicts, each sorted.
func (s *State) Snapshot() replication.Snapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rep.Snapshot()
}

// People returns every person known, deleted ones with Deleted set.
func (s *State) People() []access.Person { return s.Snapshot().People }

// Cards returns the cards with a live holder.
func (s *State) Cards() []access.Card { return s.Snapshot().Cards }

// Groups returns the groups not deleted.
func (s *State) Groups() []access.Group { return s.Snapshot().Groups }

// Doors returns the doors not deleted.
func (s *State) Doors() []access.Door { return s.Snapshot().Doors }

// Visits returns every visit known.
func (s *State) Visits() []access.Visit { return s.Snapshot().Visits }

// Grants returns every grant known, removed ones with Removed set.
func (s *State) Grants() []access.Grant { return s.Snapshot().Grants }

// Conflicts returns the card numbers bound to more than one live holder.
func (s *State) Conflicts() []replication.Conflict {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rep.Conflicts()
}

// Apply commits deltas of src (a batch from a site) to the store, fsynced,
// then applies them, skipping those already applied; it returns only once
// they are durable. The batch is checked whole first: every delta valid, of
// src, consecutive, and the new ones following the vector (else an invalid
// error, or a conflict wrapping replication.ErrGap); a failing commit
// returns the store's error. In every error case nothing of the batch is
// applied — except that a batch too large for one store commit is committed
// in consecutive parts, and the parts committed before a failure stay
// applied (they are durable; the vector says how far it got).
//
// With a non-nil fence, every commit is conditional on the site's stream
// lease (store.ErrFenced when it was lost). Apply does not judge who may
// make a delta: the caller's replication.Authorizer does.
//
// A batch of an events lane (replication.LaneEvents) is committed the same
// way, then indexed (QueryEvents) instead of applied to the replica: it
// changes neither Vector nor what Changed signals; SyncVector shows it.
func (s *State) Apply(ctx context.Context, src replication.Source, deltas []replication.Delta, fence *store.Fence) error {
	if err := src.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	events := src.Lane == replication.LaneEvents
	next := s.rep.Vector()[src] + 1
	if events {
		next = s.events.head(src.Origin) + 1
	}
	if err := s.reconcileIfStale(ctx); err != nil {
		return err
	}
	start := len(deltas)
	for i, d := range deltas {
		if err := d.Validate(); err != nil {
			return err
		}
		if d.Source() != src {
			return access.Errorf(access.Invalid, "hubstate: batch of %s holds a delta of %s: %w", src, d.Source(), replication.ErrBadBatch)
		}
		if i > 0 && d.Seq != deltas[i-1].Seq+1 {
			return access.Errorf(access.Invalid, "hubstate: batch of %s: delta %d after %d: %w", src, d.Seq, deltas[i-1].Seq, replication.ErrBadBatch)
		}
		if start == len(deltas) && d.Seq >= next {
			if d.Seq != next {
				return access.Errorf(access.Conflict, "hubstate: batch of %s starts at %d where %d is next: %w", src, d.Seq, next, replication.ErrGap)
			}
			start = i
		}
	}
	fresh := deltas[start:]
	if len(fresh) == 0 {
		return nil
	}
	if events {
		if err := s.checkEvents(src, fresh); err != nil {
			return err
		}
	}
	recs := make([]store.Record, len(fresh))
	for i, d := range fresh {
		b, err := d.MarshalBinary()
		if err != nil {
			return err
		}
		recs[i] = store.Record{Seq: d.Seq, Lane: storeLane(d.Lane), Data: b}
	}
	if !events {
		defer s.signal()
	}
	for len(recs) > 0 {
		n, size := 0, 0
		for n < len(recs) && n < commitItems && (n == 0 || size+len(recs[n].Data) <= commitBytes) {
			size += len(recs[n].Data)
			n++
		}
		b := store.Batch{Fence: fence, Appends: []store.Append{{Origin: StoreOrigin(src), Records: recs[:n]}}}
		// What the batch's groups and visits bring into the sites' scoped
		// logs (arrival.go), in the same commit when it fits.
		var arrival *scopePlan
		apart := false
		if !events && src.Origin != Origin {
			arrival = s.planArrival(fresh[:n])
			if len(arrival.order) > 0 {
				withScope := b
				withScope.Appends = append(slices.Clip(b.Appends), arrival.appends()...)
				if arrivalFits(withScope) {
					b = withScope
				} else {
					apart = true
				}
			}
		}
		if err := s.st.Commit(ctx, b); err != nil {
			return fmt.Errorf("hubstate: commit %s/%d..%d: %w", src, recs[0].Seq, recs[n-1].Seq, err)
		}
		if events {
			s.events.add(src.Origin, fresh[:n], false)
			recs, fresh = recs[n:], fresh[n:]
			continue
		}
		if err := s.rep.ApplyBatch(src, fresh[:n]); err != nil {
			// Checked above; a failure here is a bug, and the store is ahead.
			return fmt.Errorf("hubstate: apply %s after commit: %w", src, err)
		}
		s.noteCards(fresh[:n])
		if arrival != nil {
			if apart {
				// Too large to ride with the batch: its own commit. A crash
				// before it is repaired on open (reconcileScopes), a failure
				// by the next Apply or Write.
				if err := s.commit(ctx, store.Batch{Fence: fence, Appends: arrival.appends()}); err != nil {
					s.scopeStale = true
					s.log.Error("hubstate: scoping what a site's batch brought failed; retried before the next write",
						"source", src.String(), "err", err)
					return fmt.Errorf("hubstate: commit the scoped records of %s/%d..%d: %w", src, recs[0].Seq, recs[n-1].Seq, err)
				}
			}
			arrival.merge()
		}
		for _, d := range fresh[:n] {
			_ = s.clock.Observe(d.Stamp) // skew is judged by the session before Apply
		}
		recs, fresh = recs[n:], fresh[n:]
	}
	return nil
}

// SessionStore returns the replication.Store a sync session applies to:
// its ApplyBatch is Apply with ctx and fence, and its Vector the state's
// SyncVector.
func (s *State) SessionStore(ctx context.Context, fence *store.Fence) replication.Store {
	return sessionStore{s: s, ctx: ctx, fence: fence}
}

type sessionStore struct {
	s     *State
	ctx   context.Context
	fence *store.Fence
}

func (ss sessionStore) Vector() replication.Vector { return ss.s.SyncVector() }

func (ss sessionStore) ApplyBatch(src replication.Source, ds []replication.Delta) error {
	return ss.s.Apply(ss.ctx, src, ds, ss.fence)
}

// ackedAtKey is the reserved entry of a peer's acknowledged vector in the
// store under which RecordAck keeps when it recorded the ack (Unix
// nanoseconds). It is not a store log name (those are "origin/lane"), so
// Acked skips it; acknowledged vectors only move forward, and so does it.
const ackedAtKey = "@acked_at"

// RecordAck records that peer (a site) has durably received the hub's
// deltas up to v, so a console can tell what is still pending at that site,
// and, in the same store commit, that it did so at now (AckedWithTime).
// Acknowledged vectors only move forward, and so does the time recorded.
// It returns the store's error.
func (s *State) RecordAck(ctx context.Context, peer string, v replication.Vector) error {
	return s.recordAck(ctx, peer, v, time.Now())
}

func (s *State) recordAck(ctx context.Context, peer string, v replication.Vector, now time.Time) error {
	m := make(map[string]uint64, len(v)+1)
	for src, seq := range v {
		if src.Validate() == nil && seq > 0 {
			m[StoreOrigin(src)] = min(seq, store.MaxSeq)
		}
	}
	if ns := now.UnixNano(); ns > 0 {
		m[ackedAtKey] = uint64(ns)
	}
	return s.st.Commit(ctx, store.Batch{Acks: []store.Ack{{Peer: peer, Vector: m}}})
}

// Acked returns what peer has acknowledged of the hub's deltas.
func (s *State) Acked(ctx context.Context, peer string) (replication.Vector, error) {
	v, _, err := s.AckedWithTime(ctx, peer)
	return v, err
}

// AckedWithTime returns what peer has acknowledged of the hub's deltas and
// when the hub last recorded an acknowledgement of it (the zero time when
// never, or only before times were recorded). It returns the store's error.
func (s *State) AckedWithTime(ctx context.Context, peer string) (replication.Vector, time.Time, error) {
	m, err := s.st.Acked(ctx, peer)
	if err != nil {
		return nil, time.Time{}, err
	}
	v := replication.Vector{}
	var at time.Time
	for name, seq := range m {
		if name == ackedAtKey {
			at = time.Unix(0, int64(min(seq, store.MaxSeq)))
			continue
		}
		if src, err := parseStoreOrigin(name); err == nil {
			v.Advance(src, seq)
		}
	}
	return v, at, nil
}

// Tx is one hub write in the making: Write's fn reads the replica through
// it and lists the changes to make. A Tx is valid only during fn.
type Tx struct {
	rep     *replication.Replica
	changes []change
	puts    []store.Put
}

type change struct {
	kind replication.Kind
	id   string
	ops  []replication.Op
}

// Replica returns the replica as it is under the write, for reading and
// for building operations that observe what it knows
// (Replica.EnableOp, RemoveOp, GrantOp). Do not change it.
func (tx *Tx) Replica() *replication.Replica { return tx.rep }

// Change adds a change of the entity kind/id with ops; it becomes one delta.
func (tx *Tx) Change(k replication.Kind, id string, ops ...replication.Op) {
	tx.changes = append(tx.changes, change{kind: k, id: id, ops: ops})
}

// Put adds an entity write to the store commit of this Write: a hub-only
// record (an email to send, an uploaded document) that must become durable
// exactly when the changes it goes with do, and not otherwise. The
// entity's kind must be one the store was opened with; a conditional put
// that does not match fails the whole Write with the store's conflict
// wrapping store.ErrVersionMismatch.
func (tx *Tx) Put(p store.Put) { tx.puts = append(tx.puts, p) }

// Write makes the hub's own changes: fn lists them through tx, under the
// state's write lock, and Write turns each into a delta of origin "hub"
// (stamped by the hub's clock, numbered after the durable vector), commits
// them in one store batch together with the card-number claims and frees
// they imply and the entities fn put (Tx.Put), then applies them. It
// returns the deltas made.
//
// Card numbers: binding a card to a holder (an add to its "holders") claims
// the number for that holder in the store; if the card has another live
// holder, here or at a site, or another hub writer holds the claim, Write
// returns a conflict wrapping ErrCardTaken and writes nothing. Removing a
// holder, or deleting a person, frees the numbers that holder held.
//
// Write returns fn's error, the error of an invalid change, the store's
// error, or ErrStale after losing a race with another hub process; in
// every case nothing is written or applied.
func (s *State) Write(ctx context.Context, fn func(tx *Tx) error) ([]replication.Delta, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.bulkPending {
		// A large write whose commit was interrupted: finish it first.
		if err := s.recoverBulk(ctx); err != nil {
			return nil, err
		}
		if _, err := s.load(ctx); err != nil {
			return nil, err
		}
	}
	if err := s.reconcileIfStale(ctx); err != nil {
		return nil, err
	}
	tx := &Tx{rep: s.rep}
	if err := fn(tx); err != nil {
		return nil, err
	}
	if len(tx.changes) == 0 && len(tx.puts) == 0 {
		return nil, nil
	}
	if len(tx.changes) > MaxWriteChanges {
		return nil, access.Errorf(access.Invalid, "hubstate: write of %d changes, at most %d", len(tx.changes), MaxWriteChanges)
	}
	w, err := replication.NewWriter(Origin, s.rep.Vector())
	if err != nil {
		return nil, err
	}
	var (
		deltas = make([]replication.Delta, 0, len(tx.changes))
		bySrc  = map[replication.Source][]replication.Delta{}
		srcs   []replication.Source
	)
	for _, c := range tx.changes {
		d, err := w.Make(s.clock.Now(), c.kind, c.id, c.ops...)
		if err != nil {
			return nil, err
		}
		deltas = append(deltas, d)
		if bySrc[d.Source()] == nil {
			srcs = append(srcs, d.Source())
		}
		bySrc[d.Source()] = append(bySrc[d.Source()], d)
	}
	claims, unclaims, err := s.cardKeys(ctx, deltas)
	if err != nil {
		return nil, err
	}
	scope := s.planScope(bySrc[hubNormal])
	b := store.Batch{Claim: claims, Unclaim: unclaims, Puts: tx.puts}
	for _, src := range srcs {
		a := store.Append{Origin: StoreOrigin(src), Records: make([]store.Record, 0, len(bySrc[src]))}
		for _, d := range bySrc[src] {
			data, err := d.MarshalBinary()
			if err != nil {
				return nil, err
			}
			a.Records = append(a.Records, store.Record{Seq: d.Seq, Lane: storeLane(d.Lane), Data: data})
		}
		b.Appends = append(b.Appends, a)
	}
	b.Appends = append(b.Appends, scope.appends()...)
	if err := s.commit(ctx, b); err != nil {
		switch {
		case errors.Is(err, store.ErrKeyTaken):
			return nil, access.Errorf(access.Conflict, "hubstate: write: %w", ErrCardTaken)
		case errors.Is(err, store.ErrRecordMismatch), errors.Is(err, store.ErrGap):
			// Another hub process wrote origin "hub" first: catch up.
			if _, lerr := s.load(ctx); lerr != nil {
				s.log.Warn("hubstate: refresh after a lost write race failed", "err", lerr)
			}
			return nil, fmt.Errorf("hubstate: write: %w: %w", ErrStale, err)
		}
		return nil, fmt.Errorf("hubstate: write: %w", err)
	}
	for _, src := range srcs {
		if err := s.rep.ApplyBatch(src, bySrc[src]); err != nil {
			return nil, fmt.Errorf("hubstate: apply own write after commit: %w", err)
		}
		s.noteCards(bySrc[src])
	}
	scope.merge()
	if len(deltas) > 0 {
		s.signal()
	}
	return deltas, nil
}

// cardKeys returns the card-number claims and frees that deltas (the hub's
// own, not yet applied) imply, or a conflict wrapping ErrCardTaken when
// one binds a number that has another live holder. A stale claim (its
// holder deleted, checked out or removed from the card) is freed first, in
// a commit of its own. s.mu must be held.
func (s *State) cardKeys(ctx context.Context, deltas []replication.Delta) (claims, unclaims []store.Claim, err error) {
	claimed := map[string]string{} // card number → holder claimed in this write
	freed := map[string]bool{}
	free := func(n access.CardNumber, holder string) error {
		key := n.String()
		if freed[key] || claimed[key] != "" {
			return nil
		}
		owner, err := s.st.Owner(ctx, CardNamespace, key)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil
		case err != nil:
			return fmt.Errorf("hubstate: card claim: %w", err)
		}
		if owner == holder {
			freed[key] = true
			unclaims = append(unclaims, store.Claim{Namespace: CardNamespace, Key: key, Owner: owner})
		}
		return nil
	}
	for _, d := range deltas {
		switch d.Kind {
		case replication.KindCard:
			n, _ := access.ParseCardNumber(d.ID) // validated
			for _, op := range d.Ops {
				switch {
				case op.Type == replication.OpAdd && op.Field == "holders":
					if err := s.claimCard(ctx, n, op.Value, claimed); err != nil {
						return nil, nil, err
					}
				case op.Type == replication.OpRemove && op.Field == "holders":
					if err := free(n, op.Value); err != nil {
						return nil, nil, err
					}
				}
			}
		case replication.KindPerson:
			for _, op := range d.Ops {
				if op.Type != replication.OpDelete {
					continue
				}
				for _, n := range s.cardsOf[access.ID(d.ID)] {
					for _, h := range s.rep.CardHolders(n) {
						if h.PersonID == access.ID(d.ID) {
							if err := free(n, replication.HolderValue(h.PersonID, h.VisitID)); err != nil {
								return nil, nil, err
							}
						}
					}
				}
			}
		}
	}
	for _, key := range slices.Sorted(maps.Keys(claimed)) {
		claims = append(claims, store.Claim{Namespace: CardNamespace, Key: key, Owner: claimed[key]})
	}
	// A key may not be both claimed and freed in one batch: a number bound
	// in this write keeps its claim.
	out := unclaims[:0]
	for _, u := range unclaims {
		if claimed[u.Key] == "" {
			out = append(out, u)
		}
	}
	return claims, out, nil
}

// claimCard checks that card n may be bound to holder by a hub write, and
// frees a stale claim of it. claimed holds the numbers bound so far in this
// write. s.mu must be held.
func (s *State) claimCard(ctx context.Context, n access.CardNumber, holder string, claimed map[string]string) error {
	key := n.String()
	taken := access.Errorf(access.Conflict, "hubstate: card %s: %w", n.Redacted(), ErrCardTaken)
	if prev := claimed[key]; prev != "" && prev != holder {
		return taken
	}
	claimed[key] = holder
	live := s.rep.CardHolders(n)
	for _, h := range live {
		if replication.HolderValue(h.PersonID, h.VisitID) != holder {
			return taken
		}
	}
	owner, err := s.st.Owner(ctx, CardNamespace, key)
	switch {
	case errors.Is(err, store.ErrNotFound) || err == nil && owner == holder:
		return nil
	case err != nil:
		return fmt.Errorf("hubstate: card claim: %w", err)
	}
	for _, h := range live {
		if replication.HolderValue(h.PersonID, h.VisitID) == owner {
			return taken
		}
	}
	// The claim's holder is no longer live here: free it, unless another
	// hub process changed it meanwhile (then the commit fails).
	err = s.st.Commit(ctx, store.Batch{Unclaim: []store.Claim{{Namespace: CardNamespace, Key: key, Owner: owner}}})
	if errors.Is(err, store.ErrKeyTaken) {
		return taken
	}
	if err != nil {
		return fmt.Errorf("hubstate: free stale card claim: %w", err)
	}
	return nil
}

// checkEvents checks that every delta of an events lane batch is an event
// of its origin (Delta.Validate ties the kind to the lane; this keeps the
// rule here too, where the store is written).
func (s *State) checkEvents(src replication.Source, ds []replication.Delta) error {
	for _, d := range ds {
		if d.Kind != replication.KindEvent || d.Origin == Origin {
			return access.Errorf(access.Invalid, "hubstate: events of %s: delta %d is a %s of origin %s: %w", src, d.Seq, d.Kind, d.Origin, replication.ErrBadBatch)
		}
	}
	return nil
}

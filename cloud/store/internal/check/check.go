// Package check holds the parts of the store contract that do not depend on
// the storage engine: input validation, the append plan and the lease rules.
// Both implementations call it, so they refuse and accept exactly the same
// things.
package check

import (
	"bytes"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/store"
)

// Invalid returns an invalid error wrapping sentinel (store.ErrInvalid when
// nil) with a message formatted from format and args.
func Invalid(sentinel error, format string, args ...any) error {
	if sentinel == nil {
		sentinel = store.ErrInvalid
	}
	return access.Errorf(access.Invalid, "store: %s: %w", fmt.Sprintf(format, args...), sentinel)
}

// Fail returns an error with sentinel's code wrapping sentinel, with a
// message formatted from format and args.
func Fail(sentinel error, format string, args ...any) error {
	return access.Errorf(access.ErrorCode(sentinel), "store: %s: %w", fmt.Sprintf(format, args...), sentinel)
}

// Name checks one name (origin, peer, site, owner, kind, ID, namespace,
// key): non-empty, at most store.MaxNameLen bytes, valid UTF-8, no NUL.
// what names the argument in the error.
func Name(what, s string) error {
	switch {
	case s == "":
		return Invalid(nil, "empty %s", what)
	case len(s) > store.MaxNameLen:
		return Invalid(store.ErrTooLarge, "%s longer than %d bytes", what, store.MaxNameLen)
	case !utf8.ValidString(s):
		return Invalid(nil, "%s is not valid UTF-8", what)
	case strings.IndexByte(s, 0) >= 0:
		return Invalid(nil, "%s contains a NUL byte", what)
	}
	return nil
}

// Limit checks a Read or Scan limit.
func Limit(n int) error {
	if n < 1 || n > store.MaxLimit {
		return Invalid(nil, "limit %d not within 1..%d", n, store.MaxLimit)
	}
	return nil
}

// Lanes checks a Read's lane set.
func Lanes(l store.Lane) error {
	if l == 0 || l&^store.AllLanes != 0 {
		return Invalid(nil, "lane set %d is not a combination of Normal and Priority", l)
	}
	return nil
}

// TTL checks a lease duration.
func TTL(d time.Duration) error {
	if d <= 0 || d > store.MaxLeaseTTL {
		return Invalid(nil, "lease ttl %v not within (0, %v]", d, store.MaxLeaseTTL)
	}
	return nil
}

// Kinds is the set of entity kinds a store accepts.
type Kinds map[string]bool

// NewKinds checks and collects the kinds a store is opened with.
func NewKinds(kinds []string) (Kinds, error) {
	if len(kinds) == 0 {
		return nil, Invalid(nil, "no entity kinds configured")
	}
	k := Kinds{}
	for _, s := range kinds {
		if err := Name("kind", s); err != nil {
			return nil, err
		}
		k[s] = true
	}
	return k, nil
}

// Kind checks that kind is a valid name and one of k.
func (k Kinds) Kind(kind string) error {
	if err := Name("kind", kind); err != nil {
		return err
	}
	if !k[kind] {
		return Invalid(store.ErrUnknownKind, "kind %q", kind)
	}
	return nil
}

// Entity checks an entity's kind, ID, version and size.
func (k Kinds) Entity(e store.Entity) error {
	if err := k.Kind(e.Kind); err != nil {
		return err
	}
	if err := Name("entity id", e.ID); err != nil {
		return err
	}
	if e.Version < 1 || e.Version > store.MaxSeq {
		return Invalid(nil, "entity %s/%s: version %d not within 1..%d", e.Kind, e.ID, e.Version, uint64(store.MaxSeq))
	}
	if len(e.Data) > store.MaxEntitySize {
		return Invalid(store.ErrTooLarge, "entity %s/%s: %d bytes, limit %d", e.Kind, e.ID, len(e.Data), store.MaxEntitySize)
	}
	return nil
}

// Batch checks every part of b (names, sizes, order, duplicates) without
// looking at stored state.
func (k Kinds) Batch(b store.Batch) error {
	if b.Fence != nil {
		if err := Name("fence site", b.Fence.Site); err != nil {
			return err
		}
		if b.Fence.Token == 0 {
			return Invalid(nil, "fence token 0")
		}
	}
	items, size := 0, 0
	origins := map[string]bool{}
	for _, a := range b.Appends {
		if err := Name("origin", a.Origin); err != nil {
			return err
		}
		if origins[a.Origin] {
			return Invalid(nil, "origin %q appears twice in a batch", a.Origin)
		}
		origins[a.Origin] = true
		if len(a.Records) == 0 {
			return Invalid(nil, "append to %q has no records", a.Origin)
		}
		var prev uint64
		for _, r := range a.Records {
			switch {
			case r.Seq == 0 || r.Seq > store.MaxSeq:
				return Invalid(nil, "origin %q: seq %d not within 1..%d", a.Origin, r.Seq, uint64(store.MaxSeq))
			case r.Seq <= prev:
				return Invalid(nil, "origin %q: seq %d after %d: records must be in strictly ascending order", a.Origin, r.Seq, prev)
			case r.Lane != store.Normal && r.Lane != store.Priority:
				return Invalid(nil, "origin %q: seq %d: lane %d is neither Normal nor Priority", a.Origin, r.Seq, r.Lane)
			case len(r.Data) > store.MaxRecordSize:
				return Invalid(store.ErrTooLarge, "origin %q: seq %d: %d bytes, limit %d", a.Origin, r.Seq, len(r.Data), store.MaxRecordSize)
			}
			prev = r.Seq
			items++
			size += len(r.Data)
		}
	}
	type ek struct{ kind, id string }
	ents := map[ek]bool{}
	for _, p := range b.Puts {
		if err := k.Entity(p.Entity); err != nil {
			return err
		}
		key := ek{p.Entity.Kind, p.Entity.ID}
		if ents[key] {
			return Invalid(nil, "entity %s/%s appears twice in a batch", key.kind, key.id)
		}
		ents[key] = true
		if p.IfVersion != nil && *p.IfVersion > store.MaxSeq {
			return Invalid(nil, "entity %s/%s: IfVersion %d beyond %d", key.kind, key.id, *p.IfVersion, uint64(store.MaxSeq))
		}
		items++
		size += len(p.Entity.Data)
	}
	claimed := map[ek]bool{}
	for _, list := range [][]store.Claim{b.Claim, b.Unclaim} {
		for _, c := range list {
			if err := Name("key namespace", c.Namespace); err != nil {
				return err
			}
			if err := Name("key", c.Key); err != nil {
				return err
			}
			if err := Name("key owner", c.Owner); err != nil {
				return err
			}
			key := ek{c.Namespace, c.Key}
			if claimed[key] {
				// The key itself may be a card number: keep it out of the message.
				return Invalid(nil, "a key of namespace %q appears twice in a batch", c.Namespace)
			}
			claimed[key] = true
			items++
		}
	}
	peers := map[string]bool{}
	for _, a := range b.Acks {
		if err := Name("peer", a.Peer); err != nil {
			return err
		}
		if peers[a.Peer] {
			return Invalid(nil, "peer %q appears twice in a batch", a.Peer)
		}
		peers[a.Peer] = true
		for o, seq := range a.Vector {
			if err := Name("origin", o); err != nil {
				return err
			}
			if seq > store.MaxSeq {
				return Invalid(nil, "ack %q: origin %q: seq %d beyond %d", a.Peer, o, seq, uint64(store.MaxSeq))
			}
			items++
		}
	}
	if items > store.MaxBatchItems {
		return Invalid(store.ErrTooLarge, "batch of %d items, limit %d", items, store.MaxBatchItems)
	}
	if size > store.MaxBatchBytes {
		return Invalid(store.ErrTooLarge, "batch of %d bytes, limit %d", size, store.MaxBatchBytes)
	}
	return nil
}

// PlanAppend decides what an append stores, given the origin's contiguous
// head and stored, which reports the record stored at a sequence number of
// a.Records, if any. It returns the records to write, in order, or an error
// wrapping store.ErrRecordMismatch or store.ErrGap.
func PlanAppend(a store.Append, head uint64, stored func(seq uint64) (store.Record, bool)) ([]store.Record, error) {
	var fresh []store.Record
	expect := head + 1
	for _, r := range a.Records {
		if old, ok := stored(r.Seq); ok {
			if old.Lane != r.Lane || !bytes.Equal(old.Data, r.Data) {
				return nil, Fail(store.ErrRecordMismatch, "origin %q: seq %d", a.Origin, r.Seq)
			}
			if r.Seq == expect {
				expect++
			}
			continue
		}
		if r.Seq == expect {
			expect++
		} else if r.Seq > expect && !a.AllowGap {
			return nil, Fail(store.ErrGap, "origin %q: seq %d after contiguous head %d", a.Origin, r.Seq, expect-1)
		}
		fresh = append(fresh, r)
	}
	return fresh, nil
}

// LeaseRow is a site's stored lease state. Owner "" means released (or never
// held); Token is the last token handed out for the site.
type LeaseRow struct {
	Owner   string
	Token   uint64
	Expires time.Time
}

// Live reports whether the row is held and unexpired at now.
func (r LeaseRow) Live(now time.Time) bool {
	return r.Owner != "" && now.Before(r.Expires)
}

// Lease returns the row as a Lease of site.
func (r LeaseRow) Lease(site string) store.Lease {
	return store.Lease{Site: site, Owner: r.Owner, Token: r.Token, Expires: r.Expires}
}

// Expiry returns now+ttl at the microsecond resolution both stores keep.
func Expiry(now time.Time, ttl time.Duration) time.Time {
	return now.Add(ttl).UTC().Truncate(time.Microsecond)
}

// Acquire applies the Acquire rule to row: the new row, or an error wrapping
// store.ErrLeaseHeld.
func Acquire(row LeaseRow, site, owner string, now time.Time, ttl time.Duration) (LeaseRow, error) {
	if row.Live(now) {
		if row.Owner != owner {
			return row, Fail(store.ErrLeaseHeld, "site %q: held by %q until %s", site, row.Owner, row.Expires.Format(time.RFC3339Nano))
		}
		return LeaseRow{Owner: owner, Token: row.Token, Expires: Expiry(now, ttl)}, nil
	}
	return LeaseRow{Owner: owner, Token: row.Token + 1, Expires: Expiry(now, ttl)}, nil
}

// Renew applies the Renew rule to row: the new row, or an error wrapping
// store.ErrLeaseLost.
func Renew(row LeaseRow, l store.Lease, now time.Time, ttl time.Duration) (LeaseRow, error) {
	if !row.Live(now) || row.Owner != l.Owner || row.Token != l.Token {
		return row, Fail(store.ErrLeaseLost, "site %q: owner %q token %d", l.Site, l.Owner, l.Token)
	}
	return LeaseRow{Owner: row.Owner, Token: row.Token, Expires: Expiry(now, ttl)}, nil
}

// Release applies the Release rule to row: the new row and whether it
// changed.
func Release(row LeaseRow, l store.Lease) (LeaseRow, bool) {
	if row.Owner == "" || row.Owner != l.Owner || row.Token != l.Token {
		return row, false
	}
	return LeaseRow{Token: row.Token}, true
}

// LeaseArgs checks the arguments of Renew and Release.
func LeaseArgs(l store.Lease) error {
	if err := Name("site", l.Site); err != nil {
		return err
	}
	if err := Name("owner", l.Owner); err != nil {
		return err
	}
	if l.Token == 0 {
		return Invalid(nil, "lease token 0")
	}
	return nil
}

// Fence applies the fencing rule: nil if row is live at now with f's token,
// otherwise an error wrapping store.ErrFenced.
func Fence(row LeaseRow, f store.Fence, now time.Time) error {
	if !row.Live(now) || row.Token != f.Token {
		return Fail(store.ErrFenced, "site %q: token %d, current %d", f.Site, f.Token, row.Token)
	}
	return nil
}

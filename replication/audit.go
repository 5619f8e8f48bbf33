package replication

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"slices"

	"github.com/gatehouse/gatehouse/access"
)

// Limits of an audit record's fields, in bytes.
const (
	MaxAuditText = 256
	MaxAuditData = 64 << 10
)

// AuditRecord is one entry of an origin's append-only, hash-chained audit
// trail: who (Actor) did what (Action) to which entity (Subject), with
// details in Data. Seq counts from 1 per origin; Prev is the Hash of the
// origin's previous record (all zero for the first) and Hash is the SHA-256
// of the record's binary form without Hash. Changing, dropping, inserting or
// reordering records breaks the chain, which VerifyChain detects.
type AuditRecord struct {
	Origin  string
	Seq     uint64
	Stamp   Stamp
	Actor   string
	Action  string
	Subject string
	Data    []byte
	Prev    [sha256.Size]byte
	Hash    [sha256.Size]byte
}

// auditVersion is the first byte of the binary form of an audit record.
const auditVersion = 1

// appendBody appends the binary form of r without its Hash.
func (r AuditRecord) appendBody(b []byte) []byte {
	b = append(b, auditVersion)
	b = appendString(b, r.Origin)
	b = appendUvarint(b, r.Seq)
	b = r.Stamp.appendBinary(b)
	b = appendString(b, r.Actor)
	b = appendString(b, r.Action)
	b = appendString(b, r.Subject)
	b = appendString(b, string(r.Data))
	return append(b, r.Prev[:]...)
}

// validate checks r's fields are in range.
func (r AuditRecord) validate() error {
	if err := ValidateOrigin(r.Origin); err != nil {
		return err
	}
	if r.Seq == 0 {
		return access.Errorf(access.Invalid, "audit record %s: sequence 0", r.Origin)
	}
	if err := r.Stamp.Validate(); err != nil {
		return err
	}
	if r.Stamp.IsZero() || r.Stamp.Origin != r.Origin {
		return access.Errorf(access.Invalid, "audit record %s/%d: stamp %s of another origin", r.Origin, r.Seq, r.Stamp)
	}
	if len(r.Actor) > MaxAuditText || len(r.Action) > MaxAuditText || len(r.Subject) > MaxAuditText || len(r.Data) > MaxAuditData {
		return access.Errorf(access.Invalid, "audit record %s/%d: field too long", r.Origin, r.Seq)
	}
	return nil
}

// encoding returns r's whole binary form, its identity in an AuditLog.
func (r AuditRecord) encoding() []byte { return append(r.appendBody(nil), r.Hash[:]...) }

// ComputeHash returns the SHA-256 of r's binary form without Hash.
func (r AuditRecord) ComputeHash() [sha256.Size]byte {
	return sha256.Sum256(r.appendBody(nil))
}

// MarshalBinary returns r's binary form: version byte 1, origin, sequence,
// stamp, actor, action, subject, data (strings length-prefixed by a
// varint), then Prev and Hash of 32 bytes each. It returns an Invalid error
// for a record with malformed or oversized fields.
func (r AuditRecord) MarshalBinary() ([]byte, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	return append(r.appendBody(nil), r.Hash[:]...), nil
}

// UnmarshalBinary decodes r's binary form strictly, returning an Invalid
// error wrapping ErrBadEncoding for anything but exactly one well-formed
// record. It does not check the hash; VerifyChain does.
func (r *AuditRecord) UnmarshalBinary(data []byte) error {
	d := decoder{what: "audit record", b: data}
	if v := d.byte(); d.err == nil && v != auditVersion {
		d.fail("unknown version")
	}
	var v AuditRecord
	v.Origin = d.string(MaxOriginLen, "origin")
	v.Seq = d.uvarint()
	v.Stamp = d.stamp()
	v.Actor = d.string(MaxAuditText, "actor")
	v.Action = d.string(MaxAuditText, "action")
	v.Subject = d.string(MaxAuditText, "subject")
	v.Data = []byte(d.string(MaxAuditData, "data"))
	copy(v.Prev[:], d.fixed(sha256.Size))
	copy(v.Hash[:], d.fixed(sha256.Size))
	if err := d.finish(); err != nil {
		return err
	}
	if len(v.Data) == 0 {
		v.Data = nil
	}
	if err := v.validate(); err != nil {
		return access.Errorf(access.Invalid, "audit record: %w: %w", ErrBadEncoding, err)
	}
	*r = v
	return nil
}

// AuditChain appends records to one origin's audit trail. It is not safe
// for concurrent use; on a site it runs inside the Raft apply.
type AuditChain struct {
	origin string
	seq    uint64
	last   [sha256.Size]byte
}

// NewAuditChain returns a chain for origin with no records yet. It returns
// the error of ValidateOrigin for a malformed origin.
func NewAuditChain(origin string) (*AuditChain, error) {
	if err := ValidateOrigin(origin); err != nil {
		return nil, err
	}
	return &AuditChain{origin: origin}, nil
}

// ResumeAuditChain returns a chain that continues after last, the latest
// record of its origin.
func ResumeAuditChain(last AuditRecord) *AuditChain {
	return &AuditChain{origin: last.Origin, seq: last.Seq, last: last.Hash}
}

// Append returns the next record of the chain, made at stamp at (which must
// be of the chain's origin), and advances the chain. It returns an Invalid
// error, advancing nothing, for a stamp of another origin or oversized
// fields.
func (c *AuditChain) Append(at Stamp, actor, action, subject string, data []byte) (AuditRecord, error) {
	r := AuditRecord{Origin: c.origin, Seq: c.seq + 1, Stamp: at, Actor: actor, Action: action,
		Subject: subject, Data: slices.Clone(data), Prev: c.last}
	if err := r.validate(); err != nil {
		return AuditRecord{}, err
	}
	r.Hash = r.ComputeHash()
	c.seq, c.last = r.Seq, r.Hash
	return r, nil
}

// VerifyChain checks that recs are the records 1..n of one origin's audit
// trail, in order. It returns a Conflict error wrapping ErrAuditChain that
// names the first bad record: one of another origin, a sequence number out
// of order (a reorder or a duplicate) or skipped (a gap), a Prev that is
// not the previous record's hash, or a Hash that does not match the
// record's contents (tampering).
func VerifyChain(recs []AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	return verifyFrom(recs[0].Origin, 0, [sha256.Size]byte{}, recs)
}

// VerifyChainFrom checks that recs continue the chain after anchor, a
// record already verified, as VerifyChain does from the start.
func VerifyChainFrom(anchor AuditRecord, recs []AuditRecord) error {
	return verifyFrom(anchor.Origin, anchor.Seq, anchor.Hash, recs)
}

// verifyFrom checks recs follow record seq of origin, whose hash is prev.
func verifyFrom(origin string, seq uint64, prev [sha256.Size]byte, recs []AuditRecord) error {
	bad := func(r AuditRecord, why string) error {
		return access.Errorf(access.Conflict, "audit %s/%d: %s: %w", r.Origin, r.Seq, why, ErrAuditChain)
	}
	for _, r := range recs {
		switch {
		case r.Origin != origin:
			return bad(r, "record of another origin in the chain of "+origin)
		case r.Seq <= seq:
			return bad(r, "out of order or duplicate")
		case r.Seq > seq+1:
			return bad(r, "gap: records missing before it")
		case r.Prev != prev:
			return bad(r, "previous hash "+hex.EncodeToString(r.Prev[:4])+"… does not match the previous record")
		case r.Hash != r.ComputeHash():
			return bad(r, "hash does not match contents (tampered)")
		}
		seq, prev = r.Seq, r.Hash
	}
	return nil
}

// AuditLog holds the audit trails of many origins, merged from replicas.
// Records are kept by (origin, sequence); two different records under one
// key (a forked chain, or a tampered copy) are remembered as a fork, the one
// with the smaller encoding is kept so Merge stays deterministic, and Verify reports the
// fork. The zero AuditLog is empty and ready to use. It is not safe for
// concurrent use.
type AuditLog struct {
	records map[string]map[uint64]AuditRecord
	forks   map[string]map[uint64]struct{}
}

// Add records r, which must be well formed (as MarshalBinary requires). It
// does not verify the chain; Verify does.
func (l *AuditLog) Add(r AuditRecord) error {
	if err := r.validate(); err != nil {
		return err
	}
	l.add(r)
	return nil
}

// add records r, which is valid.
func (l *AuditLog) add(r AuditRecord) {
	if l.records == nil {
		l.records = make(map[string]map[uint64]AuditRecord)
	}
	m := l.records[r.Origin]
	if m == nil {
		m = make(map[uint64]AuditRecord)
		l.records[r.Origin] = m
	}
	old, ok := m[r.Seq]
	if ok {
		c := bytes.Compare(old.encoding(), r.encoding())
		if c == 0 {
			return
		}
		l.markFork(r.Origin, r.Seq)
		if c < 0 {
			return
		}
	}
	r.Data = slices.Clone(r.Data)
	m[r.Seq] = r
}

// markFork remembers that two records were seen under (origin, seq).
func (l *AuditLog) markFork(origin string, seq uint64) {
	if l.forks == nil {
		l.forks = make(map[string]map[uint64]struct{})
	}
	if l.forks[origin] == nil {
		l.forks[origin] = make(map[uint64]struct{})
	}
	l.forks[origin][seq] = struct{}{}
}

// Records returns origin's records in sequence order.
func (l *AuditLog) Records(origin string) []AuditRecord {
	m := l.records[origin]
	out := make([]AuditRecord, 0, len(m))
	for _, seq := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[seq])
	}
	return out
}

// Origins returns the origins with records, sorted.
func (l *AuditLog) Origins() []string { return slices.Sorted(maps.Keys(l.records)) }

// Verify checks origin's trail: no fork was seen, and its records are the
// chain 1..n (see VerifyChain). It returns a Conflict error wrapping
// ErrAuditChain otherwise.
func (l *AuditLog) Verify(origin string) error {
	if f := l.forks[origin]; len(f) > 0 {
		seq := slices.Min(slices.Collect(maps.Keys(f)))
		return access.Errorf(access.Conflict, "audit %s/%d: two different records with one sequence number: %w", origin, seq, ErrAuditChain)
	}
	return VerifyChain(l.Records(origin))
}

// Merge returns the union of l and o.
func (l AuditLog) Merge(o AuditLog) AuditLog {
	var out AuditLog
	for _, x := range []AuditLog{l, o} {
		for _, m := range x.records {
			for _, r := range m {
				out.add(r)
			}
		}
		for origin, f := range x.forks {
			for seq := range f {
				out.markFork(origin, seq)
			}
		}
	}
	return out
}

// Equal reports whether l and o hold the same records and forks.
func (l AuditLog) Equal(o AuditLog) bool {
	if len(l.records) != len(o.records) || len(l.forks) != len(o.forks) {
		return false
	}
	for origin, m := range l.records {
		n := o.records[origin]
		if len(m) != len(n) {
			return false
		}
		for seq, r := range m {
			if s, ok := n[seq]; !ok || !bytes.Equal(s.encoding(), r.encoding()) {
				return false
			}
		}
	}
	for origin, f := range l.forks {
		if !maps.Equal(f, o.forks[origin]) {
			return false
		}
	}
	return true
}

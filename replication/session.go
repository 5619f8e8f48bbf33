package replication

import (
	"errors"
	"slices"

	"github.com/gatehouse/gatehouse/access"
)

// Authorizer decides whether origin may make the change d, returning nil
// when it may and an error saying why not otherwise (for example, a site
// changing another site's doors, or a site sending deltas of an origin other
// than itself). A Session refuses a whole batch when any of its deltas is
// refused. It is called on the goroutine driving the session.
type Authorizer func(origin string, d Delta) error

// AllowAll is an Authorizer that allows every change. It is for tests and
// for links between replicas that trust each other completely.
func AllowAll(string, Delta) error { return nil }

// Log is where a session's sending side reads the deltas it holds, of every
// source (its own and those it relays). Replica implements it.
type Log interface {
	// Vector returns, per source, the highest sequence number held with no
	// gap below it.
	Vector() Vector
	// Deltas returns up to max deltas of src after sequence number after,
	// in sequence order with no gap.
	Deltas(src Source, after uint64, max int) ([]Delta, error)
}

// Store is where a session's receiving side applies deltas. Replica
// implements it. Applying need not be durable: the caller tells the session
// what is durable through MarkDurable, and only that is acknowledged.
type Store interface {
	// Vector returns, per source, the highest sequence number applied with
	// no gap below it.
	Vector() Vector
	// ApplyBatch applies deltas of src, all or nothing, skipping those
	// already applied; they follow the vector without a gap.
	ApplyBatch(src Source, deltas []Delta) error
}

// MsgType is the type of a session message.
type MsgType uint8

// The session messages.
const (
	// MsgHello opens a session: Vector is the sender's durable vector,
	// which tells the peer exactly what to send.
	MsgHello MsgType = iota + 1
	// MsgBatch carries Deltas of one Source, consecutive, in sequence
	// order.
	MsgBatch
	// MsgAck acknowledges the sender's durable vector: everything up to
	// Vector is durable at the sender and need not be sent again.
	MsgAck
	// MsgDigest carries Digests: the sender's chain hashes of sources both
	// ends hold, or a step of narrowing a mismatch (docs/replication.md
	// §11).
	MsgDigest
)

var msgNames = []string{MsgHello: "hello", MsgBatch: "batch", MsgAck: "ack", MsgDigest: "digest"}

// String returns "hello", "batch", "ack" or "digest".
func (t MsgType) String() string {
	if t >= MsgHello && t <= MsgDigest {
		return msgNames[t]
	}
	return "unknown"
}

// Message is one message of the sync protocol. A transport carries it as it
// likes (the Connect stream maps it to protobuf); a Message handed to or
// returned by a Session is not modified afterwards by the Session.
type Message struct {
	Type   MsgType
	Vector Vector
	Source Source
	Deltas []Delta
	// Digests are the entries of a MsgDigest.
	Digests []DigestEntry
}

// SessionConfig configures a Session.
type SessionConfig struct {
	// Log is what the session sends; nil for a receive-only session.
	Log Log
	// Store is where the session applies what it receives; nil for a
	// send-only session.
	Store Store
	// Authorizer judges every received delta; required with a Store.
	Authorizer Authorizer
	// Clock, when set, applies its skew guard to received deltas (a batch
	// holding a stamp too far ahead is refused whole) and observes the
	// stamps of the deltas applied; event deltas (LaneEvents), whose stamp
	// is a device's tap time, are exempt from both. A revocation-only
	// delta (RevocationOnly) beyond the guard is not refused: it is
	// applied without the clock observing its stamp, counted in
	// SessionStats.SkewedRevocations and reported to OnSkew.
	Clock *Clock
	// OnSkew, when set, is called for every received delta whose stamp is
	// beyond the Clock's skew guard, with accepted true for a
	// revocation-only delta taken anyway and false for a delta whose batch
	// is refused. It is called on the goroutine driving the session, before
	// the batch is applied or refused.
	OnSkew func(err *SkewError, d Delta, accepted bool)
	// Durable is what was durably applied before the session started:
	// the caller's durable vector, which the hello advertises.
	Durable Vector
	// MaxBatch is the most deltas per batch (default 128).
	MaxBatch int
	// Window is the most deltas of one source sent and not yet
	// acknowledged (default 4096).
	Window int
	// MaxPending is the most out-of-order batches held back until the gap
	// before them is filled (default 64); beyond it they are dropped and
	// the sender resends them after Resend.
	MaxPending int
	// Digests computes the chain hashes of digest messages; nil makes the
	// session use one of its own (built up on the first digest).
	Digests *Digester
	// DigestLog is what digests are computed over: every source this side
	// holds (the sources it sends and those it receives). Default Log;
	// without either, received digests are ignored.
	DigestLog Log
	// OnDivergence, when set, is called once per source when a digest
	// exchange finds the first delta that differs between the two ends
	// (also reported by Divergences). It is called on the goroutine
	// driving the session.
	OnDivergence func(Divergence)
}

// SessionStats counts what a session did.
type SessionStats struct {
	// BatchesSent and DeltasSent count batches and deltas sent.
	BatchesSent, DeltasSent int
	// BatchesApplied counts batches received and applied (at least in
	// part), Duplicates batches received holding only deltas already
	// applied, Held batches held back behind a gap, Dropped batches
	// dropped because too many were held, and Rejected batches refused
	// (malformed, unauthorized or skewed).
	BatchesApplied, Duplicates, Held, Dropped, Rejected int
	// SkewedRevocations counts revocation-only deltas received with a
	// stamp beyond the skew guard and taken without observing the stamp.
	SkewedRevocations int
	// DigestsSent and DigestsReceived count digest messages;
	// DigestsMatched counts received entries whose hash matched ours.
	DigestsSent, DigestsReceived, DigestsMatched int
}

// RevocationOnly reports whether every op of d takes access away (a
// disable, a removal, a grant removal, a membership revocation, a deletion
// or a final visit state), so d travels in the priority lane and its effect
// on access does not rest on its stamp: disable-wins and remove-wins use
// observed sets and tombstones, a final visit state is a max. A receiver
// takes such a delta even when its stamp is beyond the skew guard.
func RevocationOnly(d Delta) bool {
	if d.Lane != LanePriority || len(d.Ops) == 0 {
		return false
	}
	for _, op := range d.Ops {
		if !op.Revocation() {
			return false
		}
	}
	return true
}

// Session is one side of a sync session with one peer, as a transport-
// neutral state machine: it does no I/O, starts no goroutines and reads no
// clock. The caller moves messages: it sends what Next returns, hands what
// arrives to Receive, and calls MarkDurable when applied deltas become
// durable (a Raft majority at a site, an fsync at the hub).
//
// The protocol (docs/replication.md): each side opens with a hello carrying
// its durable vector; each side then sends the peer exactly what the
// peer's vector lacks, source by source, priority lane first, in sequence
// order and never past a gap, at most Window deltas ahead of the peer's
// acknowledgements; the receiver applies batches in order (holding back
// batches that arrive ahead of a gap, ignoring duplicates), refuses whole
// any batch that is malformed or that its Authorizer refuses, and
// acknowledges only what MarkDurable said is durable. After a cut the
// caller starts a new Session with its durable vector, and the peer resumes
// from there. Delivery is at least once; applying is idempotent.
//
// A Session is not safe for concurrent use.
type Session struct {
	cfg SessionConfig

	opened   bool   // our hello was returned by Next
	peerOpen bool   // the peer's hello arrived
	acked    Vector // what the peer has durably (its hello and acks)
	sent     Vector // per source, the last sequence number sent
	durable  Vector // what we may acknowledge
	lastAck  Vector // the durable vector last acknowledged
	needAck  bool
	pending  []Message // batches held back behind a gap
	stats    SessionStats

	digestDue   bool          // QueueDigest asked for a digest
	digestOut   []DigestEntry // answers to the peer's digests
	divergences []Divergence
}

// NewSession returns a session configured by cfg. It returns an Invalid
// error when cfg has neither Log nor Store, or a Store without an
// Authorizer.
func NewSession(cfg SessionConfig) (*Session, error) {
	if cfg.Log == nil && cfg.Store == nil {
		return nil, access.Errorf(access.Invalid, "replication.NewSession: neither log nor store")
	}
	if cfg.Store != nil && cfg.Authorizer == nil {
		return nil, access.Errorf(access.Invalid, "replication.NewSession: a store needs an authorizer")
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 128
	}
	if cfg.Window <= 0 {
		cfg.Window = 4096
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 64
	}
	if cfg.DigestLog == nil {
		cfg.DigestLog = cfg.Log
	}
	if cfg.Digests == nil {
		cfg.Digests = NewDigester()
	}
	d := cfg.Durable.Clone()
	return &Session{cfg: cfg, acked: Vector{}, sent: Vector{}, durable: d, lastAck: d.Clone()}, nil
}

// Next returns the next message to send, and false when there is nothing
// to send now. The first message is always the hello. Then come
// acknowledgements, when MarkDurable advanced the durable vector, and then,
// once the peer's hello has arrived, batches of what the peer lacks:
// priority lane sources first. It returns an error wrapping ErrGap when the
// Log returns deltas that do not follow what was sent, and the Log's error
// when it fails.
func (s *Session) Next() (Message, bool, error) {
	if !s.opened {
		s.opened = true
		return Message{Type: MsgHello, Vector: s.durable.Clone()}, true, nil
	}
	if s.needAck {
		s.needAck = false
		s.lastAck = s.durable.Clone()
		return Message{Type: MsgAck, Vector: s.durable.Clone()}, true, nil
	}
	if !s.peerOpen {
		return Message{}, false, nil
	}
	// Answers to the peer's digests go at once; this side's own digest
	// waits until it has sent everything it holds (below): hashing the
	// logs takes time a catch-up after an outage should not wait for, and
	// what is still being sent is checked by the next digest.
	if m, ok, err := s.nextDigest(false); ok || err != nil {
		return m, ok, err
	}
	if s.cfg.Log == nil {
		return s.nextDigest(true)
	}
	have := s.cfg.Log.Vector()
	for _, src := range have.Sources() {
		sent, acked := s.sent[src], s.acked[src]
		if sent < acked {
			sent = acked
		}
		if have[src] <= sent || sent-acked >= uint64(s.cfg.Window) {
			continue
		}
		n := min(s.cfg.MaxBatch, s.cfg.Window-int(sent-acked))
		ds, err := s.cfg.Log.Deltas(src, sent, n)
		if err != nil {
			return Message{}, false, err
		}
		if len(ds) == 0 {
			continue
		}
		for i, d := range ds {
			if d.Source() != src || d.Seq != sent+1+uint64(i) {
				return Message{}, false, access.Errorf(access.Conflict,
					"replication.Session: log returned %s/%d after %s/%d: %w", d.Source(), d.Seq, src, sent+uint64(i), ErrGap)
			}
		}
		s.sent[src] = ds[len(ds)-1].Seq
		s.stats.BatchesSent++
		s.stats.DeltasSent += len(ds)
		return Message{Type: MsgBatch, Source: src, Deltas: ds}, true, nil
	}
	for _, src := range have.Sources() {
		if have[src] > max(s.sent[src], s.acked[src]) {
			return Message{}, false, nil // a full window: more to send after the next ack
		}
	}
	return s.nextDigest(true)
}

// Receive takes in a message from the peer. A hello or an ack records what
// the peer holds durably. A batch is checked whole: it must be well formed
// (ErrBadBatch, or the error of Delta.Validate), every delta must be allowed
// by the Authorizer (ErrUnauthorized) and, with a Clock, not too far ahead
// (ErrClockSkew); otherwise Receive returns that error and applies nothing
// of the batch. A valid batch is applied when it follows what the Store
// holds; held back when it is ahead of a gap; ignored when already applied.
// Receive returns the Store's error when applying fails, and an error
// wrapping ErrSession for a message of unknown type or a batch received by
// a session without a Store.
func (s *Session) Receive(m Message) error {
	switch m.Type {
	case MsgHello:
		if !s.peerOpen {
			s.peerOpen = true
			s.sent = m.Vector.Clone()
		}
		s.acked = s.acked.Merge(m.Vector)
		return nil
	case MsgAck:
		s.acked = s.acked.Merge(m.Vector)
		return nil
	case MsgDigest:
		return s.receiveDigest(m.Digests)
	case MsgBatch:
		if s.cfg.Store == nil {
			return access.Errorf(access.Invalid, "replication.Session: batch for a send-only session: %w", ErrSession)
		}
		if err := s.check(m); err != nil {
			s.stats.Rejected++
			return err
		}
		return s.take(m)
	default:
		return access.Errorf(access.Invalid, "replication.Session: message type %d: %w", m.Type, ErrSession)
	}
}

// check validates a batch whole, before anything of it is applied.
func (s *Session) check(m Message) error {
	src := m.Source
	if err := src.Validate(); err != nil {
		return access.Errorf(access.Invalid, "batch: %w: %w", ErrBadBatch, err)
	}
	if len(m.Deltas) == 0 {
		return access.Errorf(access.Invalid, "batch of %s: empty: %w", src, ErrBadBatch)
	}
	for i, d := range m.Deltas {
		if d.Source() != src {
			return access.Errorf(access.Invalid, "batch of %s: delta of %s: %w", src, d.Source(), ErrBadBatch)
		}
		if i > 0 && d.Seq != m.Deltas[i-1].Seq+1 {
			return access.Errorf(access.Invalid, "batch of %s: delta %d after %d: %w", src, d.Seq, m.Deltas[i-1].Seq, ErrBadBatch)
		}
		if err := d.Validate(); err != nil {
			return access.Errorf(access.Invalid, "batch of %s: %w", src, err)
		}
		if err := s.cfg.Authorizer(src.Origin, d); err != nil {
			return access.Errorf(access.Denied, "batch of %s: delta %d (%s %s): %w: %w", src, d.Seq, d.Kind, d.ID, ErrUnauthorized, err)
		}
		if s.cfg.Clock != nil && d.Lane != LaneEvents {
			// An event's stamp is its tap time, reported by a device whose
			// clock may be wrong: it orders nothing, so the skew guard
			// does not apply to it (and the clock does not observe it).
			if err := s.cfg.Clock.Check(d.Stamp); err != nil {
				var se *SkewError
				isSkew := errors.As(err, &se)
				if isSkew && RevocationOnly(d) {
					// Taken anyway: a revocation must never wait for
					// a clock; its stamp is not observed (apply).
					s.stats.SkewedRevocations++
					if s.cfg.OnSkew != nil {
						s.cfg.OnSkew(se, d, true)
					}
					continue
				}
				_ = s.cfg.Clock.Observe(d.Stamp) // counts the refusal
				if isSkew && s.cfg.OnSkew != nil {
					s.cfg.OnSkew(se, d, false)
				}
				return access.Errorf(access.Invalid, "batch of %s: delta %d: %w", src, d.Seq, err)
			}
		}
	}
	return nil
}

// take applies a checked batch, or holds it back, then applies what it
// held back and can now apply.
func (s *Session) take(m Message) error {
	applied, err := s.apply(m)
	if err != nil || !applied {
		return err
	}
	for progress := true; progress; {
		progress = false
		for i := 0; i < len(s.pending); i++ {
			p := s.pending[i]
			have := s.cfg.Store.Vector()[p.Source]
			if p.Deltas[len(p.Deltas)-1].Seq <= have {
				s.pending = slices.Delete(s.pending, i, i+1)
				i--
				continue
			}
			if p.Deltas[0].Seq <= have+1 {
				s.pending = slices.Delete(s.pending, i, i+1)
				if _, err := s.apply(p); err != nil {
					return err
				}
				progress = true
				break
			}
		}
	}
	return nil
}

// apply applies a checked batch if it follows the store, and reports
// whether it applied any of it; otherwise it holds it back or ignores it.
func (s *Session) apply(m Message) (bool, error) {
	have := s.cfg.Store.Vector()[m.Source]
	first, last := m.Deltas[0].Seq, m.Deltas[len(m.Deltas)-1].Seq
	switch {
	case last <= have:
		// The sender may have missed our acknowledgement: send it again.
		s.stats.Duplicates++
		s.needAck = true
		return false, nil
	case first > have+1:
		if len(s.pending) >= s.cfg.MaxPending {
			s.stats.Dropped++
			return false, nil
		}
		s.stats.Held++
		s.pending = append(s.pending, m)
		return false, nil
	}
	if err := s.cfg.Store.ApplyBatch(m.Source, m.Deltas); err != nil {
		return false, err
	}
	s.stats.BatchesApplied++
	if s.cfg.Clock != nil {
		for _, d := range m.Deltas {
			if d.Lane != LaneEvents && s.cfg.Clock.Check(d.Stamp) == nil {
				// A revocation taken beyond the skew guard (check) is
				// not observed: it must not drag the clock ahead.
				_ = s.cfg.Clock.Observe(d.Stamp)
			}
		}
	}
	return true, nil
}

// MarkDurable tells the session that the Store's deltas up to v are
// durable, so they may be acknowledged; entries beyond what the Store has
// applied are ignored. The next Next returns an ack when this advanced the
// durable vector.
func (s *Session) MarkDurable(v Vector) {
	var have Vector
	if s.cfg.Store != nil {
		have = s.cfg.Store.Vector()
	}
	for src, seq := range v {
		s.durable.Advance(src, min(seq, have[src]))
	}
	if !s.durable.Equal(s.lastAck) {
		s.needAck = true
	}
}

// Durable returns the session's durable vector: what it has acknowledged
// or will acknowledge next.
func (s *Session) Durable() Vector { return s.durable.Clone() }

// PeerAcked returns what the peer has acknowledged as durable (its hello
// and acks). It is the vector from which a sender resumes.
func (s *Session) PeerAcked() Vector { return s.acked.Clone() }

// Resend makes the session send again everything the peer has not
// acknowledged, and acknowledge again. The caller calls it when it suspects
// loss within a session, such as after a timeout with no acknowledgement;
// on a transport that loses nothing without ending the session it is not
// needed.
func (s *Session) Resend() {
	s.sent = s.acked.Clone()
	s.needAck = s.cfg.Store != nil
}

// Synced reports whether the peer has acknowledged everything in the Log.
func (s *Session) Synced() bool {
	return s.peerOpen && (s.cfg.Log == nil || s.acked.Covers(s.cfg.Log.Vector()))
}

// Stats returns what the session did so far.
func (s *Session) Stats() SessionStats { return s.stats }

// QueueDigest makes the session send, once the peer's hello has arrived
// and this side has sent everything its Log holds, a
// digest of every source both ends hold: per source in the DigestLog, the
// chain hash at the lower of what this side holds and what the peer has
// acknowledged. The caller calls it periodically and after reconnecting.
// Equal logs cost that one message; the peer answers only a mismatch.
func (s *Session) QueueDigest() { s.digestDue = s.cfg.DigestLog != nil }

// nextDigest returns the digest message due, if any: the answers to the
// peer's digests and, with own, this side's queued digest.
func (s *Session) nextDigest(own bool) (Message, bool, error) {
	var es []DigestEntry
	if own && s.digestDue {
		s.digestDue = false
		have := s.cfg.DigestLog.Vector()
		for _, src := range have.Sources() {
			seq := min(have[src], s.acked[src])
			if seq == 0 {
				continue
			}
			h, err := s.cfg.Digests.Digest(s.cfg.DigestLog, src, seq)
			if err != nil {
				return Message{}, false, err
			}
			es = append(es, DigestEntry{Source: src, Seq: seq, Hash: h})
		}
	}
	es = append(es, s.digestOut...)
	s.digestOut = nil
	if len(es) == 0 {
		return Message{}, false, nil
	}
	if len(es) > maxDigestEntries {
		s.digestOut, es = es[maxDigestEntries:], es[:maxDigestEntries]
	}
	s.stats.DigestsSent++
	return Message{Type: MsgDigest, Digests: es}, true, nil
}

// receiveDigest checks the peer's digest entries against our chains and
// queues the answers: nothing for a match, the next step of the bisection
// for a mismatch, and a Diverged entry once the first differing delta is
// found (recorded on both ends). Entries of sources or sequence numbers we
// do not hold are skipped. It returns an Invalid error wrapping
// ErrBadEncoding for a malformed entry or too many, applying nothing.
func (s *Session) receiveDigest(es []DigestEntry) error {
	if len(es) > maxDigestEntries {
		return access.Errorf(access.Invalid, "digest: %d entries, at most %d: %w", len(es), maxDigestEntries, ErrBadEncoding)
	}
	for _, e := range es {
		if err := e.Validate(); err != nil {
			return err
		}
	}
	s.stats.DigestsReceived++
	if s.cfg.DigestLog == nil {
		return nil
	}
	have := s.cfg.DigestLog.Vector()
	for _, e := range es {
		if e.Diverged {
			s.diverged(Divergence{Source: e.Source, Seq: e.Seq})
			continue
		}
		if e.Seq > have[e.Source] || e.Hi > have[e.Source] {
			continue // not held here (yet)
		}
		mine, err := s.cfg.Digests.Digest(s.cfg.DigestLog, e.Source, e.Seq)
		if err != nil {
			return err
		}
		lo, hi := e.Lo, e.Seq
		if mine == e.Hash {
			s.stats.DigestsMatched++
			if e.Hi == 0 {
				continue
			}
			lo, hi = e.Seq, e.Hi
		}
		if hi-lo == 1 {
			d := Divergence{Source: e.Source, Seq: hi}
			s.diverged(d)
			s.digestOut = append(s.digestOut, DigestEntry{Source: e.Source, Seq: hi, Diverged: true})
			continue
		}
		mid := lo + (hi-lo)/2
		h, err := s.cfg.Digests.Digest(s.cfg.DigestLog, e.Source, mid)
		if err != nil {
			return err
		}
		s.digestOut = append(s.digestOut, DigestEntry{Source: e.Source, Lo: lo, Seq: mid, Hi: hi, Hash: h})
	}
	return nil
}

// diverged records d once per source and reports it.
func (s *Session) diverged(d Divergence) {
	for _, x := range s.divergences {
		if x.Source == d.Source {
			return
		}
	}
	s.divergences = append(s.divergences, d)
	if s.cfg.OnDivergence != nil {
		s.cfg.OnDivergence(d)
	}
}

// Divergences returns the sources found to differ between the two ends in
// this session, each with the first sequence number that differs.
func (s *Session) Divergences() []Divergence { return slices.Clone(s.divergences) }

package replication

import (
	"crypto/sha256"
	"sync"

	"github.com/gatehouse/gatehouse/access"
)

// Digests (docs/replication.md §11): both ends of a link compute, per source
// (origin, lane), a running hash chain over the canonical binary encodings of
// the source's deltas, and compare it at a sequence number both hold. A
// mismatch is narrowed by bisection to the first delta that differs, which
// is reported as a divergence (an alarm for an operator): a committed delta
// is never replaced.

// Hash is a digest: SHA-256 of a chain link.
type Hash [sha256.Size]byte

// DigestEvery is how many deltas apart a Digester keeps the chain's hashes
// (checkpoints): a digest at any sequence number costs at most DigestEvery-1
// deltas read and hashed once the chain is built up to it.
const DigestEvery = 64

// maxDigestEntries bounds the entries of one digest message.
const maxDigestEntries = 4096

// ChainLink returns the chain hash after the delta whose canonical binary
// form is enc, given the hash before it: SHA-256(prev || enc). The hash of
// the empty prefix (sequence number 0) is the zero Hash.
func ChainLink(prev Hash, enc []byte) Hash {
	h := sha256.New()
	h.Write(prev[:])
	h.Write(enc)
	var out Hash
	h.Sum(out[:0])
	return out
}

// Digester computes and caches the hash chains of the sources of a Log, so
// that the digest of a source's prefix up to seq costs O(DigestEvery) after
// the chain has been built past seq. It assumes deltas below a source's
// vector are never rewritten (append-only logs): what it caches is what the
// log held when it read it, which is what a divergence check compares. It
// is safe for concurrent use.
type Digester struct {
	mu     sync.Mutex
	chains map[Source]*chain
}

type chain struct {
	head   uint64 // the chain is built up to head
	last   Hash   // hash at head
	checks []Hash // checks[i] is the hash at seq i*DigestEvery (checks[0]: zero)
}

// NewDigester returns an empty Digester.
func NewDigester() *Digester { return &Digester{chains: map[Source]*chain{}} }

// Digest returns the chain hash of src's deltas 1..seq in log. It returns an
// Invalid error when seq is beyond what log holds of src without a gap, and
// the log's or the encoder's error when reading or encoding fails.
func (g *Digester) Digest(log Log, src Source, seq uint64) (Hash, error) {
	if seq == 0 {
		return Hash{}, nil
	}
	if have := log.Vector()[src]; seq > have {
		return Hash{}, access.Errorf(access.Invalid, "digest of %s at %d: the log holds it up to %d", src, seq, have)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.chains[src]
	if c == nil {
		c = &chain{checks: []Hash{{}}}
		g.chains[src] = c
	}
	if seq > c.head {
		if err := c.extend(log, src, seq); err != nil {
			return Hash{}, err
		}
		return c.last, nil
	}
	if seq == c.head {
		return c.last, nil
	}
	// Below the head: from the checkpoint at or below seq.
	i := seq / DigestEvery
	h, at := c.checks[i], i*DigestEvery
	for at < seq {
		ds, err := log.Deltas(src, at, int(seq-at))
		if err != nil {
			return Hash{}, err
		}
		if len(ds) == 0 {
			return Hash{}, access.Errorf(access.Invalid, "digest of %s at %d: the log ends at %d", src, seq, at)
		}
		for _, d := range ds {
			if h, err = link(h, d); err != nil {
				return Hash{}, err
			}
		}
		at += uint64(len(ds))
	}
	return h, nil
}

// extend builds c up to seq, recording checkpoints.
func (c *chain) extend(log Log, src Source, seq uint64) error {
	for c.head < seq {
		ds, err := log.Deltas(src, c.head, int(min(seq-c.head, 1024)))
		if err != nil {
			return err
		}
		if len(ds) == 0 {
			return access.Errorf(access.Invalid, "digest of %s at %d: the log ends at %d", src, seq, c.head)
		}
		for _, d := range ds {
			h, err := link(c.last, d)
			if err != nil {
				return err
			}
			c.head++
			c.last = h
			if c.head%DigestEvery == 0 {
				c.checks = append(c.checks, h)
			}
		}
	}
	return nil
}

// link hashes d onto h.
func link(h Hash, d Delta) (Hash, error) {
	enc, err := d.MarshalBinary()
	if err != nil {
		return Hash{}, err
	}
	return ChainLink(h, enc), nil
}

// DigestEntry is one entry of a digest message: the sender's chain hash of
// Source up to Seq. Lo and Hi narrow a mismatch: Lo is a sequence number at
// which both chains are known to agree (0 at first), and Hi, when not
// zero, one at which they are known to differ (Lo < Seq < Hi), so the
// receiver answers with the half that still holds the first difference.
// Diverged says the first delta that differs is Seq: the receiver records
// the divergence and answers nothing.
type DigestEntry struct {
	Source   Source
	Lo       uint64
	Seq      uint64
	Hi       uint64
	Hash     Hash
	Diverged bool
}

// Validate returns an Invalid error wrapping ErrBadEncoding when e is
// malformed: a bad source, a zero Seq, Lo not below Seq, a non-zero Hi not
// above Seq, or Diverged with Lo or Hi set.
func (e DigestEntry) Validate() error {
	bad := func(why string) error {
		return access.Errorf(access.Invalid, "digest entry of %s: %s: %w", e.Source, why, ErrBadEncoding)
	}
	switch {
	case e.Source.Validate() != nil:
		return bad("malformed source")
	case e.Seq == 0:
		return bad("zero sequence")
	case e.Lo >= e.Seq:
		return bad("lo not below seq")
	case e.Hi != 0 && e.Hi <= e.Seq:
		return bad("hi not above seq")
	case e.Diverged && (e.Lo != 0 || e.Hi != 0):
		return bad("diverged with a range")
	}
	return nil
}

const digestVersion = 1

// MarshalDigests returns the binary form of a digest message's entries:
// version byte 1, the entry count (varint), then per entry the lane byte,
// the origin (length-prefixed), Lo, Seq and Hi (varints), a flags byte (1:
// Diverged) and the 32-byte hash. It returns the error of Validate for a
// malformed entry, and an Invalid error for more than 4096 entries.
func MarshalDigests(es []DigestEntry) ([]byte, error) {
	if len(es) > maxDigestEntries {
		return nil, access.Errorf(access.Invalid, "digest: %d entries, at most %d: %w", len(es), maxDigestEntries, ErrBadEncoding)
	}
	b := []byte{digestVersion}
	b = appendUvarint(b, uint64(len(es)))
	for _, e := range es {
		if err := e.Validate(); err != nil {
			return nil, err
		}
		b = append(b, byte(e.Source.Lane))
		b = appendString(b, e.Source.Origin)
		b = appendUvarint(b, e.Lo)
		b = appendUvarint(b, e.Seq)
		b = appendUvarint(b, e.Hi)
		var flags byte
		if e.Diverged {
			flags = 1
		}
		b = append(b, flags)
		b = append(b, e.Hash[:]...)
	}
	return b, nil
}

// UnmarshalDigests decodes the binary form of MarshalDigests strictly: it
// returns an Invalid error wrapping ErrBadEncoding for an unknown version,
// more than 4096 entries, a truncated or non-minimal field, unknown flags,
// trailing bytes, or an entry failing Validate.
func UnmarshalDigests(data []byte) ([]DigestEntry, error) {
	d := decoder{what: "digest", b: data}
	if x := d.byte(); d.err == nil && x != digestVersion {
		d.fail("unknown version")
	}
	n := d.count(maxDigestEntries, "entry count")
	out := make([]DigestEntry, 0, min(n, 64))
	for i := 0; i < n && d.err == nil; i++ {
		var e DigestEntry
		e.Source.Lane = Lane(d.byte())
		e.Source.Origin = d.string(MaxOriginLen, "origin")
		e.Lo, e.Seq, e.Hi = d.uvarint(), d.uvarint(), d.uvarint()
		switch f := d.byte(); f {
		case 0:
		case 1:
			e.Diverged = true
		default:
			d.fail("unknown flags")
		}
		copy(e.Hash[:], d.fixed(len(e.Hash)))
		if d.err != nil {
			break
		}
		if err := e.Validate(); err != nil {
			d.failErr(err)
			break
		}
		out = append(out, e)
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	return out, nil
}

// Divergence is a source whose delta Seq differs between the two ends of a
// link (the first that does): the same (origin, lane, seq) names different
// deltas. Neither end replaces a committed delta; an operator decides.
type Divergence struct {
	Source Source
	Seq    uint64
}

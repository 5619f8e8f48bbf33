package replication

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// digestPair builds two replicas holding n deltas of site-a's normal lane;
// when corrupt > 0, the second holds another delta under that sequence
// number (a silent divergence: same (origin, lane, seq), other contents).
func digestPair(t *testing.T, n int, corrupt uint64) (*Replica, *Replica) {
	t.Helper()
	site := newNode(t, "site-a")
	for i := range n {
		site.do(t, KindPerson, string(tid(i%50)), SetOp("name", fmt.Sprint("name ", i)))
	}
	p, q := NewReplica(), NewReplica()
	src := Source{"site-a", LaneNormal}
	ds, _ := site.rep.Deltas(src, 0, 0)
	for _, d := range ds {
		if _, err := p.Apply(d); err != nil {
			t.Fatal(err)
		}
		if d.Seq == corrupt {
			d.Ops = []Op{SetOp("name", "silently different")}
		}
		if _, err := q.Apply(d); err != nil {
			t.Fatal(err)
		}
	}
	return p, q
}

// exchange runs two sessions against each other until neither has anything to
// send, and returns the messages sent by each.
func exchange(t *testing.T, a, b *Session) (fromA, fromB []Message) {
	t.Helper()
	for round := 0; ; round++ {
		if round > 1000 {
			t.Fatal("sessions never went quiet")
		}
		moved := false
		for {
			m, ok, err := a.Next()
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			moved = true
			fromA = append(fromA, m)
			if err := b.Receive(m); err != nil {
				t.Fatal(err)
			}
		}
		for {
			m, ok, err := b.Next()
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			moved = true
			fromB = append(fromB, m)
			if err := a.Receive(m); err != nil {
				t.Fatal(err)
			}
		}
		if !moved {
			return fromA, fromB
		}
	}
}

func digestSessions(t *testing.T, p, q *Replica) (*Session, *Session) {
	t.Helper()
	mk := func(r *Replica) *Session {
		s, err := NewSession(SessionConfig{Log: r, Store: r, Authorizer: AllowAll, Durable: r.Vector()})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	return mk(p), mk(q)
}

// TestDigestChain: a Digester's hashes equal the chain computed naively,
// at the head, below it (from a checkpoint) and after the log grows.
func TestDigestChain(t *testing.T) {
	p, _ := digestPair(t, 3*DigestEvery+7, 0)
	src := Source{"site-a", LaneNormal}
	ds, _ := p.Deltas(src, 0, 0)
	want := make([]Hash, len(ds)+1)
	for i, d := range ds {
		enc, err := d.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		want[i+1] = ChainLink(want[i], enc)
	}
	g := NewDigester()
	for _, seq := range []uint64{uint64(len(ds)), 1, DigestEvery, DigestEvery + 1, 2*DigestEvery - 1, 100, uint64(len(ds)), 0} {
		got, err := g.Digest(p, src, seq)
		if err != nil {
			t.Fatal(err)
		}
		if got != want[seq] {
			t.Fatalf("digest at %d differs from the naive chain", seq)
		}
	}
	if _, err := g.Digest(p, src, uint64(len(ds))+1); err == nil {
		t.Fatal("digest beyond the log: want an error")
	}
}

// TestDigestEqualLogs: equal logs cost one digest message each way and
// nothing else: no batch, no answer, no divergence.
func TestDigestEqualLogs(t *testing.T) {
	p, q := digestPair(t, 300, 0)
	a, b := digestSessions(t, p, q)
	exchange(t, a, b) // hellos
	a.QueueDigest()
	b.QueueDigest()
	fromA, fromB := exchange(t, a, b)
	for name, ms := range map[string][]Message{"a": fromA, "b": fromB} {
		if len(ms) != 1 || ms[0].Type != MsgDigest || len(ms[0].Digests) != 1 {
			t.Fatalf("%s sent %+v, want one digest of one source", name, ms)
		}
	}
	if st := a.Stats(); st.DigestsMatched != 1 || st.BatchesSent != 0 {
		t.Fatalf("a stats %+v", st)
	}
	if len(a.Divergences())+len(b.Divergences()) != 0 {
		t.Fatalf("divergences %v %v on equal logs", a.Divergences(), b.Divergences())
	}
}

// TestDigestAfterCatchUp: a digest queued while the session still has
// deltas the peer lacks goes only once they are all sent (hashing the logs
// must not hold up a catch-up), and covers what the peer held.
func TestDigestAfterCatchUp(t *testing.T) {
	p, full := digestPair(t, 300, 0)
	q := NewReplica() // the peer holds the first 200
	src := Source{"site-a", LaneNormal}
	ds, _ := full.Deltas(src, 0, 200)
	if err := q.ApplyBatch(src, ds); err != nil {
		t.Fatal(err)
	}
	a, b := digestSessions(t, p, q)
	a.cfg.MaxBatch = 25
	a.QueueDigest()
	fromA, _ := exchange(t, a, b)
	digestAt, lastBatch := -1, -1
	for i, m := range fromA {
		switch m.Type {
		case MsgDigest:
			if digestAt < 0 {
				digestAt = i
			}
			if len(m.Digests) != 1 || m.Digests[0].Seq != 200 {
				t.Fatalf("digest %+v, want one entry at 200 (what the peer held)", m.Digests)
			}
		case MsgBatch:
			lastBatch = i
		}
	}
	if digestAt < 0 || lastBatch < 0 || digestAt < lastBatch {
		t.Fatalf("digest at message %d, last batch at %d: want the digest after the catch-up", digestAt, lastBatch)
	}
	if st := a.Stats(); st.DeltasSent != 100 || st.DigestsMatched+b.Stats().DigestsMatched != 1 {
		t.Fatalf("a %+v, b %+v: want 100 deltas sent and the digest matched", st, b.Stats())
	}
	if len(a.Divergences())+len(b.Divergences()) != 0 {
		t.Fatal("divergences on equal logs")
	}
}

// TestDigestDivergence: one delta silently different in one replica is
// found by bisection on both ends (first differing sequence number, in
// about log2(n) steps), reported, and nothing is replaced or applied.
func TestDigestDivergence(t *testing.T) {
	for _, corrupt := range []uint64{1, 137, 299, 300} {
		t.Run(fmt.Sprint(corrupt), func(t *testing.T) {
			p, q := digestPair(t, 300, corrupt)
			a, b := digestSessions(t, p, q)
			var reported []Divergence
			a.cfg.OnDivergence = func(d Divergence) { reported = append(reported, d) }
			exchange(t, a, b)
			a.QueueDigest()
			fromA, fromB := exchange(t, a, b)
			want := Divergence{Source: Source{"site-a", LaneNormal}, Seq: corrupt}
			for name, s := range map[string]*Session{"a": a, "b": b} {
				if d := s.Divergences(); len(d) != 1 || d[0] != want {
					t.Fatalf("%s divergences %v, want %v", name, d, want)
				}
			}
			if len(reported) != 1 || reported[0] != want {
				t.Fatalf("reported %v, want %v", reported, want)
			}
			if n := len(fromA) + len(fromB); n > 12 {
				t.Fatalf("%d digest messages for 300 deltas, want about log2(300)+2", n)
			}
			for _, m := range append(fromA, fromB...) {
				if m.Type != MsgDigest {
					t.Fatalf("a %s message during the digest exchange", m.Type)
				}
			}
			// Nothing replaced: q still holds its own delta.
			dq, _ := q.Deltas(want.Source, corrupt-1, 1)
			if dq[0].Ops[0].Value != "silently different" {
				t.Fatalf("q's delta %d was replaced: %+v", corrupt, dq[0])
			}
		})
	}
}

// TestDigestBadInput: malformed digest entries are refused whole.
func TestDigestBadInput(t *testing.T) {
	p, q := digestPair(t, 10, 0)
	a, _ := digestSessions(t, p, q)
	src := Source{"site-a", LaneNormal}
	for name, e := range map[string]DigestEntry{
		"ZeroSeq":    {Source: src},
		"BadSource":  {Source: Source{"", LaneNormal}, Seq: 1},
		"LoNotBelow": {Source: src, Lo: 5, Seq: 5},
		"HiNotAbove": {Source: src, Seq: 5, Hi: 5},
		"DivRange":   {Source: src, Lo: 1, Seq: 5, Diverged: true},
	} {
		if err := a.Receive(Message{Type: MsgDigest, Digests: []DigestEntry{e}}); !errors.Is(err, ErrBadEncoding) {
			t.Errorf("%s: err = %v, want ErrBadEncoding", name, err)
		}
		if _, err := MarshalDigests([]DigestEntry{e}); !errors.Is(err, ErrBadEncoding) {
			t.Errorf("%s: marshal err = %v, want ErrBadEncoding", name, err)
		}
	}
	if len(a.Divergences()) != 0 {
		t.Fatal("a malformed entry recorded a divergence")
	}
	// Round trip of a valid message.
	es := []DigestEntry{{Source: src, Seq: 7, Hash: Hash{1, 2}}, {Source: Source{"hub", LanePriority}, Lo: 2, Seq: 4, Hi: 9}, {Source: src, Seq: 3, Diverged: true}}
	b, err := MarshalDigests(es)
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalDigests(b)
	if err != nil || fmt.Sprint(got) != fmt.Sprint(es) {
		t.Fatalf("round trip: %v, %v", got, err)
	}
	for _, bad := range [][]byte{nil, {2, 0}, append(bytes.Clone(b), 0), b[:len(b)-1]} {
		if _, err := UnmarshalDigests(bad); !errors.Is(err, ErrBadEncoding) {
			t.Errorf("UnmarshalDigests(%x): %v, want ErrBadEncoding", bad, err)
		}
	}
}

// FuzzDigests: the digest decoder never panics, and what it accepts
// encodes back to the same bytes.
func FuzzDigests(f *testing.F) {
	b, _ := MarshalDigests([]DigestEntry{{Source: Source{"site-a", LaneNormal}, Seq: 7, Hash: Hash{1}},
		{Source: Source{"hub", LanePriority}, Lo: 2, Seq: 4, Hi: 9}, {Source: Source{"x", LaneEvents}, Seq: 3, Diverged: true}})
	f.Add(b)
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		es, err := UnmarshalDigests(data)
		if err != nil {
			return
		}
		out, err := MarshalDigests(es)
		if err != nil {
			t.Fatalf("accepted entries do not encode: %v", err)
		}
		if !bytes.Equal(out, data) {
			t.Fatalf("re-encoding differs:\n in  %x\n out %x", data, out)
		}
	})
}

package replication

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"pgregory.net/rapid"
)

// checkLaws checks that merge is commutative, associative and idempotent on
// states drawn by gen, comparing states with equal.
func checkLaws[T any](t *testing.T, gen func(*rapid.T, string) T, merge func(a, b T) T, equal func(a, b T) bool) {
	t.Helper()
	rapid.Check(t, func(t *rapid.T) {
		a, b, c := gen(t, "a"), gen(t, "b"), gen(t, "c")
		if !equal(merge(a, b), merge(b, a)) {
			t.Fatalf("not commutative:\na=%+v\nb=%+v", a, b)
		}
		if !equal(merge(merge(a, b), c), merge(a, merge(b, c))) {
			t.Fatalf("not associative:\na=%+v\nb=%+v\nc=%+v", a, b, c)
		}
		if !equal(merge(a, a), a) {
			t.Fatalf("not idempotent: a=%+v", a)
		}
		// Merging in what one already holds changes nothing (absorption),
		// which is what makes duplicated delivery safe.
		ab := merge(a, b)
		if !equal(merge(ab, b), ab) {
			t.Fatalf("not absorbing: a=%+v b=%+v", a, b)
		}
	})
}

// drawStamp draws a stamp from a small universe, so that draws collide.
func drawStamp(t *rapid.T, label string) Stamp {
	return Stamp{
		Wall:    int64(rapid.IntRange(1, 4).Draw(t, label+" wall")),
		Counter: uint32(rapid.IntRange(0, 1).Draw(t, label+" counter")),
		Origin:  rapid.SampledFrom([]string{"a", "b"}).Draw(t, label+" origin"),
	}
}

// drawStamps draws a few stamps.
func drawStamps(t *rapid.T, label string) []Stamp {
	n := rapid.IntRange(0, 3).Draw(t, label+" n")
	out := make([]Stamp, n)
	for i := range out {
		out[i] = drawStamp(t, fmt.Sprintf("%s %d", label, i))
	}
	return out
}

func TestRegisterLaws(t *testing.T) {
	gen := func(t *rapid.T, l string) Register {
		var r Register
		for range rapid.IntRange(0, 3).Draw(t, l+" ops") {
			r.Set(rapid.SampledFrom([]string{"", "x", "y"}).Draw(t, l+" v"), drawStamp(t, l))
		}
		return r
	}
	checkLaws(t, gen, Register.Merge, func(a, b Register) bool { return a == b })
}

func drawORSet(t *rapid.T, l string) ORSet {
	var s ORSet
	for range rapid.IntRange(0, 6).Draw(t, l+" ops") {
		e := rapid.SampledFrom([]string{"d1", "d2", "d3"}).Draw(t, l+" elem")
		if rapid.Bool().Draw(t, l+" add") {
			s.Add(e, drawStamp(t, l))
		} else {
			s.Remove(e, drawStamps(t, l))
		}
	}
	return s
}

func TestORSetLaws(t *testing.T) {
	checkLaws(t, drawORSet, ORSet.Merge, ORSet.Equal)
}

func TestORSetAddWins(t *testing.T) {
	var base ORSet
	s1 := Stamp{1, 0, "a"}
	base.Add("door", s1)
	// Replica a removes what it saw; replica b concurrently adds again.
	a, b := base.Merge(ORSet{}), base.Merge(ORSet{})
	a.Remove("door", a.Tags("door"))
	b.Add("door", Stamp{2, 0, "b"})
	if m := a.Merge(b); !m.Contains("door") {
		t.Errorf("concurrent add lost to remove: %v", m.Elements())
	}
	if a.Contains("door") {
		t.Errorf("remove did not remove")
	}
	// A late copy of the removed add does not bring it back.
	a.Add("door", s1)
	if a.Contains("door") {
		t.Errorf("removed tag came back")
	}
}

func drawFlag(t *rapid.T, l string) Flag {
	var f Flag
	for range rapid.IntRange(0, 5).Draw(t, l+" ops") {
		if rapid.Bool().Draw(t, l+" enable") {
			f.Enable(drawStamp(t, l), drawStamps(t, l+" obs"))
		} else {
			f.Disable(drawStamp(t, l), rapid.SampledFrom([]string{"suspended", "lost"}).Draw(t, l+" reason"))
		}
	}
	return f
}

func TestFlagLaws(t *testing.T) {
	checkLaws(t, drawFlag, Flag.Merge, Flag.Equal)
}

// TestFlagDisableWins checks that an enable never overrides a disable it
// did not observe, whatever the history of either side, and that an enable
// that observed every disable does.
func TestFlagDisableWins(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		base := drawFlag(t, "base")
		a, b := base.Merge(Flag{}), base.Merge(Flag{})
		// a disables; b, concurrently, enables (knowing only base's disables).
		dis := Stamp{Wall: 10, Origin: "a"}
		a.Disable(dis, "suspended")
		for i := range rapid.IntRange(1, 3).Draw(t, "enables") {
			b.Enable(Stamp{Wall: int64(11 + i), Origin: "b"}, b.Disables())
		}
		m := a.Merge(b)
		if m.Enabled() {
			t.Fatalf("concurrent enable overrode a disable")
		}
		if m.Reason() != "suspended" {
			t.Fatalf("reason %q", m.Reason())
		}
		// An enable made after seeing every disable counts.
		m.Enable(Stamp{Wall: 20, Origin: "b"}, m.Disables())
		if !m.Enabled() {
			t.Fatalf("enable after the disable did not count")
		}
	})
}

func TestLifecycleLaws(t *testing.T) {
	gen := func(t *rapid.T, l string) Lifecycle {
		var x Lifecycle
		for range rapid.IntRange(0, 3).Draw(t, l+" ops") {
			x.Advance(access.VisitState(rapid.IntRange(1, 9).Draw(t, l+" state")), drawStamp(t, l))
		}
		return x
	}
	checkLaws(t, gen, Lifecycle.Merge, func(a, b Lifecycle) bool { return a == b })
	var l Lifecycle
	l.Advance(access.VisitCheckedOut, Stamp{1, 0, "a"})
	l.Advance(access.VisitPickedUp, Stamp{2, 0, "b"})
	if l.State != access.VisitCheckedOut {
		t.Errorf("visit reopened: %s", l.State)
	}
}

func TestTombstoneLaws(t *testing.T) {
	gen := func(t *rapid.T, l string) Tombstone {
		var x Tombstone
		for range rapid.IntRange(0, 2).Draw(t, l+" ops") {
			x.Delete(drawStamp(t, l))
		}
		return x
	}
	checkLaws(t, gen, Tombstone.Merge, func(a, b Tombstone) bool { return a == b })
}

var (
	testGrantIDs = []access.ID{"01JBX0000000000000000000G1", "01JBX0000000000000000000G2", "01JBX0000000000000000000G3"}
	testHolders  = []access.ID{"01JBX0000000000000000000P1", "01JBX0000000000000000000P2"}
	testGroups   = []access.ID{"01JBX0000000000000000000R1", "01JBX0000000000000000000R2"}
)

func drawGrantSet(t *rapid.T, l string) GrantSet {
	var s GrantSet
	for range rapid.IntRange(0, 6).Draw(t, l+" ops") {
		switch rapid.IntRange(0, 2).Draw(t, l+" op") {
		case 0:
			g := access.Grant{
				ID:       rapid.SampledFrom(testGrantIDs).Draw(t, l+" id"),
				HolderID: rapid.SampledFrom(testHolders).Draw(t, l+" holder"),
				GroupID:  rapid.SampledFrom(testGroups).Draw(t, l+" group"),
			}
			if rapid.Bool().Draw(t, l+" window") {
				g.ValidUntil = t0.Add(time.Hour)
			}
			s.Add(g, drawStamp(t, l), drawStamps(t, l+" obs"))
		case 1:
			s.Remove(rapid.SampledFrom(testGrantIDs).Draw(t, l+" id"), drawStamp(t, l))
		case 2:
			s.Revoke(rapid.SampledFrom(testHolders).Draw(t, l+" holder"), rapid.SampledFrom(testGroups).Draw(t, l+" group"), drawStamp(t, l))
		}
	}
	return s
}

func TestGrantSetLaws(t *testing.T) {
	checkLaws(t, drawGrantSet, GrantSet.Merge, GrantSet.Equal)
}

// TestGrantSetRemoveWins checks that a removal of a grant, or a revocation
// of a membership, concurrent with any grants of it ends removed, and that
// a grant made after seeing the revocation is live.
func TestGrantSetRemoveWins(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		base := drawGrantSet(t, "base")
		a, b := base.Merge(GrantSet{}), base.Merge(GrantSet{})
		h, g := testHolders[0], testGroups[0]
		target := access.ID("01JBX0000000000000000000G8") // not in base
		byID := rapid.Bool().Draw(t, "by id")
		if byID {
			a.Remove(target, Stamp{Wall: 10, Origin: "a"})
		} else {
			a.Revoke(h, g, Stamp{Wall: 10, Origin: "a"})
		}
		// b concurrently (re)grants: the target ID, and new IDs of the
		// same membership.
		b.Add(access.Grant{ID: target, HolderID: h, GroupID: g}, Stamp{Wall: 11, Origin: "b"}, b.Revokes(h, g))
		regrant := access.ID("01JBX0000000000000000000G9")
		b.Add(access.Grant{ID: regrant, HolderID: h, GroupID: g}, Stamp{Wall: 12, Origin: "b"}, b.Revokes(h, g))
		for _, m := range []GrantSet{a.Merge(b), b.Merge(a)} {
			if m.Live(target) {
				t.Fatalf("removed grant is live")
			}
			if !byID && m.Live(regrant) {
				t.Fatalf("grant concurrent with a membership revocation is live")
			}
		}
		m := a.Merge(b)
		later := access.ID("01JBX0000000000000000000GA")
		m.Add(access.Grant{ID: later, HolderID: h, GroupID: g}, Stamp{Wall: 20, Origin: "b"}, m.Revokes(h, g))
		if !m.Live(later) {
			t.Fatalf("grant made after the revocation is not live")
		}
	})
}

func drawEventLog(t *rapid.T, l string) EventLog {
	var x EventLog
	for range rapid.IntRange(0, 6).Draw(t, l+" ops") {
		_ = x.Add(LogEntry{
			Origin: rapid.SampledFrom([]string{"a", "b"}).Draw(t, l+" origin"),
			Seq:    uint64(rapid.IntRange(1, 4).Draw(t, l+" seq")),
			Stamp:  drawStamp(t, l),
			Data:   []byte(rapid.SampledFrom([]string{"tap", "in"}).Draw(t, l+" data")),
		})
	}
	return x
}

func TestEventLogLaws(t *testing.T) {
	checkLaws(t, drawEventLog, EventLog.Merge, EventLog.Equal)
}

func TestEventLogPrefix(t *testing.T) {
	var l EventLog
	add := func(seq uint64, data string) error {
		return l.Add(LogEntry{Origin: "s", Seq: seq, Stamp: Stamp{int64(seq), 0, "s"}, Data: []byte(data)})
	}
	for _, seq := range []uint64{3, 1, 5} {
		if err := add(seq, "x"); err != nil {
			t.Fatal(err)
		}
	}
	if got := l.Prefix("s"); got != 1 {
		t.Errorf("Prefix = %d, want 1", got)
	}
	if got := l.Contiguous("s", 0, 0); len(got) != 1 {
		t.Errorf("Contiguous went past the gap: %d entries", len(got))
	}
	if err := add(2, "x"); err != nil {
		t.Fatal(err)
	}
	if got := l.Prefix("s"); got != 3 {
		t.Errorf("Prefix = %d, want 3", got)
	}
	if err := add(2, "x"); err != nil {
		t.Errorf("duplicate: %v", err)
	}
	if err := add(2, "other"); !errors.Is(err, ErrLogConflict) {
		t.Errorf("conflicting entry: err = %v", err)
	}
	if err := add(0, "x"); access.ErrorCode(err) != access.Invalid {
		t.Errorf("seq 0: err = %v", err)
	}
}

// auditFixture returns a chain of n records of origin.
func auditFixture(tb fataler, origin string, n int) []AuditRecord {
	tb.Helper()
	c, err := NewAuditChain(origin)
	if err != nil {
		tb.Fatalf("NewAuditChain: %v", err)
	}
	out := make([]AuditRecord, n)
	for i := range out {
		out[i], err = c.Append(Stamp{Wall: int64(i + 1), Origin: origin}, "guard", "revoke", "card 1234", []byte{byte(i)})
		if err != nil {
			tb.Fatalf("Append: %v", err)
		}
	}
	return out
}

func TestAuditLogLaws(t *testing.T) {
	chains := map[string][]AuditRecord{"a": auditFixture(t, "a", 4), "b": auditFixture(t, "b", 4)}
	gen := func(t *rapid.T, l string) AuditLog {
		var x AuditLog
		for range rapid.IntRange(0, 5).Draw(t, l+" ops") {
			r := rapid.SampledFrom(chains[rapid.SampledFrom([]string{"a", "b"}).Draw(t, l+" origin")]).Draw(t, l+" rec")
			if rapid.IntRange(0, 4).Draw(t, l+" tamper") == 0 {
				r.Actor = "mallory"
			}
			if err := x.Add(r); err != nil {
				t.Fatalf("Add: %v", err)
			}
		}
		return x
	}
	checkLaws(t, gen, AuditLog.Merge, AuditLog.Equal)
}

func TestAuditVerify(t *testing.T) {
	recs := auditFixture(t, "site", 5)
	if err := VerifyChain(recs); err != nil {
		t.Fatalf("good chain: %v", err)
	}
	if err := VerifyChainFrom(recs[1], recs[2:]); err != nil {
		t.Fatalf("good chain from anchor: %v", err)
	}
	bad := map[string]func([]AuditRecord) []AuditRecord{
		"Tampered": func(r []AuditRecord) []AuditRecord { r[2].Action = "grant"; return r },
		"TamperedRehashed": func(r []AuditRecord) []AuditRecord {
			r[2].Action = "grant"
			r[2].Hash = r[2].ComputeHash()
			return r
		},
		"Gap":       func(r []AuditRecord) []AuditRecord { return append(r[:2:2], r[3:]...) },
		"Reorder":   func(r []AuditRecord) []AuditRecord { r[1], r[2] = r[2], r[1]; return r },
		"Duplicate": func(r []AuditRecord) []AuditRecord { return append(r[:3:3], r[2:]...) },
		"Origin": func(r []AuditRecord) []AuditRecord {
			r[4].Origin = "other"
			return r
		},
		"Truncated start": func(r []AuditRecord) []AuditRecord { return r[1:] },
	}
	for name, mutate := range bad {
		t.Run(name, func(t *testing.T) {
			c := append([]AuditRecord(nil), recs...)
			if err := VerifyChain(mutate(c)); !errors.Is(err, ErrAuditChain) {
				t.Errorf("err = %v, want ErrAuditChain", err)
			}
		})
	}
	var l AuditLog
	for _, r := range recs {
		if err := l.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Verify("site"); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	forged := recs[3]
	forged.Subject = "card 9999"
	forged.Hash = forged.ComputeHash()
	if err := l.Add(forged); err != nil {
		t.Fatal(err)
	}
	if err := l.Verify("site"); !errors.Is(err, ErrAuditChain) {
		t.Errorf("fork not reported: %v", err)
	}
}

func TestAuditRecordBinary(t *testing.T) {
	r := auditFixture(t, "site", 2)[1]
	b, err := r.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got AuditRecord
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if got.Hash != r.Hash || got.ComputeHash() != r.Hash {
		t.Errorf("round trip changed the record")
	}
}

func FuzzAuditRecord(f *testing.F) {
	for _, r := range auditFixture(f, "site", 2) {
		b, _ := r.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte{1, 1, 'a', 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		var r AuditRecord
		if err := r.UnmarshalBinary(data); err != nil {
			if access.ErrorCode(err) != access.Invalid {
				t.Fatalf("code %s: %v", access.ErrorCode(err), err)
			}
			return
		}
		b, err := r.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
		if !bytes.Equal(b, data) {
			t.Fatalf("not canonical")
		}
	})
}

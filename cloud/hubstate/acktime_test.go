package hubstate_test

import (
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/replication"
)

// TestAckTime: the time of a site's acknowledgement is recorded with it
// in one commit, only moves forward, survives a restart of the Badger
// files, is reported by PendingRevocations, and does not show up in the
// acknowledged vector.
func TestAckTime(t *testing.T) {
	dir := t.TempDir()
	site := string(tid(1))
	s, st := MustOpen(t, dir)
	if _, at, err := s.AckedWithTime(ctx, site); err != nil || !at.IsZero() {
		t.Fatalf("before any ack: %v, %v; want the zero time", at, err)
	}
	if err := addPerson(t, s, tid(30), 1001); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if err := s.RecordAck(ctx, site, s.Vector()); err != nil {
		t.Fatal(err)
	}
	v, at, err := s.AckedWithTime(ctx, site)
	if err != nil {
		t.Fatal(err)
	}
	if at.Before(before) || at.After(time.Now()) {
		t.Fatalf("ack time %v, want between %v and now", at, before)
	}
	if !v.Equal(s.Vector()) {
		t.Fatalf("acked vector %v, want %v (no extra entry)", v, s.Vector())
	}
	later := at.Add(time.Hour)
	if err := s.RecordAckAt(ctx, site, replication.Vector{}, later); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordAckAt(ctx, site, replication.Vector{}, at); err != nil { // an older time: ignored
		t.Fatal(err)
	}
	p, err := s.PendingRevocations(ctx, site, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !p.AckedAt.Equal(later) || !p.Acked.Equal(v) {
		t.Fatalf("pending: acked %v at %v, want %v at %v", p.Acked, p.AckedAt, v, later)
	}
	s.Close()
	st.Close()

	s, _ = MustOpen(t, dir)
	if _, at, err := s.AckedWithTime(ctx, site); err != nil || !at.Equal(later) {
		t.Fatalf("after a restart: %v, %v; want %v", at, err, later)
	}
	if _, at, _ := s.AckedWithTime(ctx, string(tid(2))); !at.IsZero() {
		t.Fatalf("another site's ack time %v, want zero", at)
	}
}

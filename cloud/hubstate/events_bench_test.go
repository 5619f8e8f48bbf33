package hubstate_test

import (
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/replication"
)

// BenchmarkEventsOpen measures rebuilding the event index of 100k events
// on open (go test -bench EventsOpen ./cloud/hubstate/).
func BenchmarkEventsOpen(b *testing.B) {
	dir := b.TempDir()
	s, st := MustOpen(b, dir)
	site := tid(1)
	for from := 0; from < 100_000; from += 4096 {
		recs := make([]replication.EventRecord, min(4096, 100_000-from))
		for i := range recs {
			recs[i] = replication.EventRecord{At: evT0.Add(time.Duration(from+i) * time.Second), Door: tid(10), Card: access.CardNumber(5 + i),
				Holder: tid(30), Granted: true, Reason: access.ReasonGranted, RequestID: "req"}
		}
		if err := s.Apply(ctx, evSrc(site), eventDeltas(b, string(site), from+1, recs), nil); err != nil {
			b.Fatal(err)
		}
	}
	s.Close()
	b.ResetTimer()
	for range b.N {
		s2, err := hubstate.Open(ctx, st, hubstate.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if s2.EventCount() != 100_000 {
			b.Fatal(s2.EventCount())
		}
		s2.Close()
	}
}

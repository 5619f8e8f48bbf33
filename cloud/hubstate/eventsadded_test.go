package hubstate_test

import (
	"testing"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/replication"
)

// TestEventsAdded: EventsAdded is closed once an events-lane batch is
// indexed, and not by a batch that holds nothing new.
func TestEventsAdded(t *testing.T) {
	s, _ := MustOpen(t, t.TempDir())
	site := tid(1)
	recs := []replication.EventRecord{{At: evT0, Door: tid(10), Card: 7, Reason: access.ReasonUnknownCard}}
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	ch := s.EventsAdded()
	if err := s.Apply(ctx, evSrc(site), eventDeltas(t, string(site), 1, recs), nil); err != nil {
		t.Fatal(err)
	}
	if !closed(ch) {
		t.Fatal("EventsAdded not signalled by new events")
	}
	ch = s.EventsAdded()
	if closed(ch) {
		t.Fatal("a fresh EventsAdded channel is already closed")
	}
	// The same batch again holds nothing new.
	if err := s.Apply(ctx, evSrc(site), eventDeltas(t, string(site), 1, recs), nil); err != nil {
		t.Fatal(err)
	}
	if closed(ch) {
		t.Fatal("EventsAdded signalled by a batch holding nothing new")
	}
}

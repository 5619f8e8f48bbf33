package uplink_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/cloud/store"
	"github.com/gatehouse/gatehouse/edge/node"
	"github.com/gatehouse/gatehouse/edge/uplink"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
	"github.com/gatehouse/gatehouse/replication"
)

// recordEvents commits n access events at the site (as the MQTT gateway
// does after its decisions), tapped at door by cards from card on; every
// tenth by an unknown card.
func recordEvents(t *testing.T, nodes []*node.Node, via *node.Node, door string, card, n int) {
	t.Helper()
	evs := make([]*accessv1.AccessEvent, n)
	for i := range evs {
		evs[i] = &accessv1.AccessEvent{AtMs: time.Now().UnixMilli(), DoorId: door, Card: uint64(card + i), Granted: true,
			Reason: accessv1.Reason_REASON_GRANTED, RequestId: fmt.Sprintf("req-%d", card+i), Node: "n1"}
		if (card+i)%10 == 0 {
			evs[i].Granted, evs[i].Reason = false, accessv1.Reason_REASON_UNKNOWN_CARD
		}
	}
	propose(t, nodes, via, &raftv1.Command{Op: &raftv1.Command_RecordEvents{RecordEvents: &raftv1.RecordEvents{Events: evs}}})
}

// hubEvents returns how far the hub holds the site's events.
func hubEvents(h *testHub) uint64 {
	return h.state.SyncVector()[replication.Source{Origin: testSite, Lane: replication.LaneEvents}]
}

// TestEventsReachHub: access events recorded at a real 3-node site reach a
// real hub over the uplink, exactly once, across a WAN cut during which
// the leader is killed; the hub indexes them and lists the unknown card.
func TestEventsReachHub(t *testing.T) {
	hub := openHub(t, t.TempDir())
	wan := newProxy(t, hub.Addr())
	nodes := openSite(t, wan.URL())
	f := &siteFixture{door: newID(t), group: newID(t)}
	propose(t, nodes, nodes[0], configCmds(f)...)
	for i := range 4 {
		recordEvents(t, nodes, nodes[i%3], f.door, 1+50*i, 50)
	}
	waitFor(t, "the site's events at the hub", func() bool { return hubEvents(hub) == 200 })

	wan.Cut()
	recordEvents(t, nodes, nodes[1], f.door, 201, 50)
	first := leader(t, nodes)
	kill(first)
	var rest []*node.Node
	for _, n := range nodes {
		if n != first {
			rest = append(rest, n)
		}
	}
	recordEvents(t, rest, rest[0], f.door, 251, 50)
	if got := hubEvents(hub); got != 200 {
		t.Fatalf("the hub holds %d events during the cut", got)
	}
	wan.Heal(hub.Addr())
	waitFor(t, "every event at the hub after the cut", func() bool { return hubEvents(hub) == 300 })
	l := leader(t, rest)
	waitFor(t, "the events lag to drain", func() bool {
		st := l.Uplink().Status()
		return st.Connected && st.Lag[replication.LaneEvents] == 0
	})

	// Exactly once: the hub's store log holds 1..300 once each.
	var seqs []uint64
	src := replication.Source{Origin: testSite, Lane: replication.LaneEvents}
	for after := uint64(0); ; {
		recs, err := hub.store.Read(ctx, hubstate.StoreOrigin(src), after, store.MaxLimit, store.AllLanes)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			seqs = append(seqs, r.Seq)
		}
		after = recs[len(recs)-1].Seq
	}
	if len(seqs) != 300 || seqs[0] != 1 || seqs[299] != 300 {
		t.Fatalf("the hub's store holds %d events (%v..)", len(seqs), seqs[:min(3, len(seqs))])
	}
	evs, more := hub.state.QueryEvents(hubstate.EventQuery{Limit: hubstate.MaxEventPage})
	if len(evs) != 300 || more || hub.state.EventCount() != 300 {
		t.Fatalf("the hub indexes %d events", len(evs))
	}
	seen := map[string]bool{}
	for _, e := range evs {
		if e.Site != testSite || e.Door != access.ID(f.door) || seen[e.RequestID] {
			t.Fatalf("event %+v (seen before: %v)", e, seen[e.RequestID])
		}
		seen[e.RequestID] = true
		if want := fmt.Sprintf("req-%d", e.Card); e.RequestID != want {
			t.Fatalf("event %d carries request %q, want %q", e.Seq, e.RequestID, want)
		}
	}
	if u := hub.state.UnknownCards(testSite, time.Time{}); len(u) != 30 || u[0].Door != access.ID(f.door) || u[0].Count != 1 {
		t.Fatalf("unknown cards at the hub: %d %+v", len(u), u[:min(1, len(u))])
	}
	// The hub's replica is untouched by events.
	if _, ok := hub.state.Vector()[src]; ok {
		t.Fatal("events applied to the hub's replica")
	}
}

// TestEventsSignalled: with the events poll an hour long, events recorded
// at the site still reach the hub: the uplink wakes on the site's
// EventsRecorded signal, not on a poll.
func TestEventsSignalled(t *testing.T) {
	hub := openHub(t, t.TempDir())
	nodes := openSite(t, "http://"+hub.Addr(), func(c *uplink.Config) { c.EventPoll = time.Hour })
	f := &siteFixture{door: newID(t), group: newID(t)}
	propose(t, nodes, nodes[0], configCmds(f)...)
	waitFor(t, "the site's configuration at the hub", func() bool { return converged(hub, nodes) })
	for i := range 3 {
		recordEvents(t, nodes, nodes[i], f.door, 1+10*i, 10)
		want := uint64(10 * (i + 1))
		waitFor(t, fmt.Sprintf("%d events at the hub", want), func() bool { return hubEvents(hub) == want })
	}
}

// TestEventDelta: every recorded event converts into a valid event delta,
// whatever its fields hold.
func TestEventDelta(t *testing.T) {
	for i, ev := range []*accessv1.AccessEvent{
		{Seq: 1, AtMs: 1_800_000_000_000, DoorId: newID(t), Card: 42, HolderId: newID(t), Granted: true, Reason: accessv1.Reason_REASON_GRANTED, RequestId: "r1", Node: "n1"},
		{Seq: 2, AtMs: -5, DoorId: "garbage", Reason: accessv1.Reason(99), DeviceId: newID(t), DeviceSeq: 9, Type: "forced_open", Offline: true},
	} {
		d, err := uplink.EventDelta(testSite, ev)
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		r, err := replication.ParseEvent(d)
		if err != nil || d.Seq != ev.GetSeq() || uint64(r.Card) != ev.GetCard() || r.RequestID != ev.GetRequestId() {
			t.Fatalf("%d: %+v %+v %v", i, d, r, err)
		}
	}
	if _, err := uplink.EventDelta(testSite, &accessv1.AccessEvent{}); err == nil {
		t.Fatal("an event without a sequence number converted")
	}
}

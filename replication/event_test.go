package replication

import (
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

func sampleEvent(i int) EventRecord {
	return EventRecord{At: t0.Add(time.Duration(i) * time.Second), Door: uDoors[i%len(uDoors)], Card: uCards[i%len(uCards)],
		Holder: uPeople[i%len(uPeople)], Granted: i%2 == 0, Reason: access.ReasonNoGroup, RequestID: "req-" + string(rune('a'+i%26)),
		Node: "n1", Offline: i%3 == 0}
}

// TestEventRoundTrip: an event record survives its delta's binary form.
func TestEventRoundTrip(t *testing.T) {
	for i, r := range []EventRecord{
		sampleEvent(1),
		{At: t0, Door: uDoors[0], Device: tid(99), Type: "forced_open", Detail: "contact", DeviceSeq: 7},
		{At: time.Unix(0, 0).UTC()},
	} {
		d, err := EventDelta("site-a", uint64(i+1), r)
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if d.Lane != LaneEvents || d.Kind != KindEvent || d.ID != "" {
			t.Fatalf("%d: delta %+v", i, d)
		}
		b, err := d.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var back Delta
		if err := back.UnmarshalBinary(b); err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		got, err := ParseEvent(back)
		if err != nil {
			t.Fatal(err)
		}
		if want := r.Canonical(); !reflect.DeepEqual(got, want) {
			t.Fatalf("%d: got %+v, want %+v", i, got, want)
		}
	}
}

// TestEventCanonical: whatever a site recorded becomes an event delta that
// validates, so no event can block its lane.
func TestEventCanonical(t *testing.T) {
	r := EventRecord{Door: "not-a-ulid", Holder: "01jbx000000000000000000001", Reason: access.Reason(200),
		RequestID: strings.Repeat("é", MaxValueLen), Detail: "bad \xff byte"}
	if _, err := EventDelta("site-a", 1, r); err == nil {
		t.Fatal("a raw record with a malformed door was accepted")
	}
	c := r.Canonical()
	d, err := EventDelta("site-a", 1, c)
	if err != nil {
		t.Fatalf("canonical record refused: %v", err)
	}
	got, _ := ParseEvent(d)
	if got.Door != "" || got.Holder != "" || got.Reason != 0 || len(got.RequestID) > MaxValueLen || !strings.HasPrefix(got.Detail, "bad ") {
		t.Fatalf("canonical: %+v", got)
	}
}

// TestEventValidate: event deltas that break the rules are refused.
func TestEventValidate(t *testing.T) {
	good, err := EventDelta("site-a", 1, sampleEvent(1))
	if err != nil {
		t.Fatal(err)
	}
	person := Delta{Origin: "site-a", Lane: LaneEvents, Seq: 1, Stamp: good.Stamp, Kind: KindPerson, ID: string(uPeople[0]),
		Ops: []Op{SetOp("name", "x")}}
	for name, mut := range map[string]func(d *Delta){
		"normal lane":    func(d *Delta) { d.Lane = LaneNormal },
		"with an id":     func(d *Delta) { d.ID = string(tid(5)) },
		"without time":   func(d *Delta) { d.Ops = d.Ops[1:] },
		"unknown field":  func(d *Delta) { d.Ops = append(d.Ops, SetOp("colour", "red")) },
		"bad card":       func(d *Delta) { d.Ops = append(d.Ops[:1:1], SetOp("card", "012")) },
		"bad reason":     func(d *Delta) { d.Ops = append(d.Ops[:1:1], SetOp("reason", "because")) },
		"disable op":     func(d *Delta) { d.Ops = append(d.Ops, DisableOp("x")) },
		"person in lane": func(d *Delta) { *d = person },
	} {
		d := good
		d.Ops = append([]Op(nil), good.Ops...)
		mut(&d)
		if err := d.Validate(); !errors.Is(err, ErrBadDelta) {
			t.Errorf("%s: err = %v, want ErrBadDelta", name, err)
		}
	}
	if _, err := ParseEvent(person); err == nil {
		t.Error("ParseEvent took a person delta")
	}
}

// TestSessionEventsLast: a session sends the events lane after the
// priority and normal lanes; an event's stamp far ahead of the receiver's
// clock is not refused (it is a device's tap time) and does not move the
// receiver's clock; events change no entity.
func TestSessionEventsLast(t *testing.T) {
	site := newNode(t, "site-a")
	seedBase(t, site)
	site.do(t, KindCard, uCards[0].String(), DisableOp("lost"))
	for i := 1; i <= 3; i++ {
		r := sampleEvent(i)
		r.At = t0.Add(24 * time.Hour) // a device clock a day ahead
		d, err := EventDelta("site-a", uint64(i), r)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := site.rep.Apply(d); !ok || err != nil {
			t.Fatalf("apply event: %v %v", ok, err)
		}
	}
	hub := newNode(t, "hub")
	before := hub.clock.Now()
	snapSite := site.rep.Snapshot()
	send, err := NewSession(SessionConfig{Log: site.rep, MaxBatch: 100})
	if err != nil {
		t.Fatal(err)
	}
	recv, err := NewSession(SessionConfig{Store: hub.rep, Authorizer: AllowAll, Clock: hub.clock})
	if err != nil {
		t.Fatal(err)
	}
	hello, _, _ := recv.Next()
	if err := send.Receive(hello); err != nil {
		t.Fatal(err)
	}
	if m, _, _ := send.Next(); m.Type != MsgHello {
		t.Fatalf("first message %v", m.Type)
	}
	var lanes []Lane
	for {
		m, ok, err := send.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if m.Type == MsgBatch {
			lanes = append(lanes, m.Source.Lane)
			if err := recv.Receive(m); err != nil {
				t.Fatalf("receive %s: %v", m.Source, err)
			}
		}
	}
	if len(lanes) != 3 || lanes[0] != LanePriority || lanes[1] != LaneNormal || lanes[2] != LaneEvents {
		t.Fatalf("lanes sent %v, want priority, normal, events", lanes)
	}
	if got := hub.rep.Vector()[Source{"site-a", LaneEvents}]; got != 3 {
		t.Fatalf("events applied up to %d", got)
	}
	if !reflect.DeepEqual(hub.rep.Snapshot(), snapSite) {
		t.Fatal("the events changed the materialised state")
	}
	if now := hub.clock.Now(); now.Wall > t0.Add(time.Hour).UnixNano() || now.Less(before) {
		t.Fatalf("hub clock moved to %v by an event stamp", now)
	}
}

// FuzzEventDelta feeds arbitrary bytes to the delta decoder, seeded with
// event deltas: what it accepts as an event parses, and its record encodes
// into an event delta that parses to the same record. (A site may encode
// one event in more than one way, such as its fields in another order; the
// hub stores the bytes it received, and a different encoding of a sequence
// number it holds is refused by the store.)
func FuzzEventDelta(f *testing.F) {
	for i := range 3 {
		d, err := EventDelta("site-a", uint64(i+1), sampleEvent(i))
		if err != nil {
			f.Fatal(err)
		}
		b, _ := d.MarshalBinary()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var d Delta
		if d.UnmarshalBinary(data) != nil || d.Kind != KindEvent {
			return
		}
		r, err := ParseEvent(d)
		if err != nil {
			t.Fatalf("accepted event does not parse: %v", err)
		}
		again, err := EventDelta(d.Origin, d.Seq, r)
		if err != nil {
			t.Fatalf("parsed event does not encode: %v", err)
		}
		r2, err := ParseEvent(again)
		if err != nil || !reflect.DeepEqual(r2, r) {
			t.Fatalf("round trip changed %+v into %+v (%v)", r, r2, err)
		}
	})
}

// TestUvarintLen: the minimal-varint check agrees with encoding/binary.
func TestUvarintLen(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 16383, 16384, 1<<63 - 1, 1<<64 - 1} {
		if got, want := uvarintLen(v), len(binary.AppendUvarint(nil, v)); got != want {
			t.Errorf("uvarintLen(%d) = %d, want %d", v, got, want)
		}
	}
}

package mqttgw_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/edge/mqttgw"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
)

// eventFor returns the recorded event of request ID rid, waiting for it,
// and fails if there is more than one.
func eventFor(t *testing.T, s *testSite, rid string) *accessv1.AccessEvent {
	t.Helper()
	var found []*accessv1.AccessEvent
	waitFor(t, "event of "+rid, func() bool {
		found = found[:0]
		for _, e := range s.recorded() {
			if e.GetRequestId() == rid {
				found = append(found, e)
			}
		}
		return len(found) > 0
	})
	if len(found) != 1 {
		t.Fatalf("%d events for %s, want 1", len(found), rid)
	}
	return found[0]
}

// countEvents returns how many recorded events have request ID rid.
func countEvents(s *testSite, rid string) int {
	n := 0
	for _, e := range s.recorded() {
		if e.GetRequestId() == rid {
			n++
		}
	}
	return n
}

func TestTapGranted(t *testing.T) {
	s := newTestSite(t)
	g, reg := startGateway(t, s, s.siteID)
	reader := mustDial(t, g.Addr(), s.reader)
	door := mustDial(t, g.Addr(), s.door)

	before := time.Now()
	reader.tap("lobby:1:1", s.main, cardAlice)
	d, _ := reader.decision("lobby:1:1")
	if !d.Grant || d.Reason != access.ReasonGranted {
		t.Fatalf("decision = %v %v, want a grant", d.Grant, d.Reason)
	}
	if d.Door != s.main || d.Mode != access.Online || d.Node != "edge-1" || d.Unlock != mqttgw.DefaultUnlock {
		t.Errorf("decision = %+v, want door %s, online, node edge-1, unlock %v", d, s.main, mqttgw.DefaultUnlock)
	}
	if d.Time.Before(before.Truncate(time.Millisecond)) {
		t.Errorf("decision time %v is before the tap at %v", d.Time, before)
	}

	cmd := door.cmd()
	if cmd.Type != mqttproto.DoorUnlock || cmd.RequestID != "lobby:1:1" || cmd.Door != s.main || cmd.Unlock != mqttgw.DefaultUnlock {
		t.Errorf("door command = %+v, want unlock of %s for lobby:1:1", cmd, s.main)
	}
	if !cmd.Expires.After(d.Time) {
		t.Errorf("unlock expires %v, not after the decision at %v", cmd.Expires, d.Time)
	}

	ev := eventFor(t, s, "lobby:1:1")
	if ev.GetDoorId() != string(s.main) || ev.GetCard() != uint64(cardAlice) || !ev.GetGranted() ||
		ev.GetReason() != accessv1.Reason_REASON_GRANTED || ev.GetNode() != "edge-1" ||
		ev.GetHolderId() == "" || ev.GetAtMs() != d.Time.UnixMilli() {
		t.Errorf("event = %v, want the granted tap of card %d at %s by edge-1", ev, cardAlice, s.main)
	}
	waitFor(t, "events recorded metric", func() bool { return metric(t, reg, "events_recorded_total", nil) == 1 })
	if got := taps(t, reg, "granted"); got != 1 {
		t.Errorf("taps granted = %v, want 1", got)
	}
	if got := metric(t, reg, "decision_seconds", nil); got != 1 {
		t.Errorf("decision latency samples = %v, want 1", got)
	}
	if got := metric(t, reg, "clients_connected", nil); got != 2 {
		t.Errorf("clients connected = %v, want 2", got)
	}
}

func TestTapDenied(t *testing.T) {
	s := newTestSite(t)
	g, reg := startGateway(t, s, s.siteID)
	reader := mustDial(t, g.Addr(), s.reader)
	labReader := mustDial(t, g.Addr(), s.labReader)
	ghostReader := mustDial(t, g.Addr(), s.ghostReader)
	door := mustDial(t, g.Addr(), s.door)

	tests := []struct {
		name    string
		reader  *client
		door    access.ID
		card    access.CardNumber
		offline bool
		want    access.Reason
	}{
		{"UnknownDoor", ghostReader, s.ghost, cardAlice, false, access.ReasonUnknownDoor},
		{"UnknownCard", reader, s.main, cardUnknown, false, access.ReasonUnknownCard},
		{"CardSuspended", reader, s.main, cardSuspended, false, access.ReasonCardSuspended},
		{"CardOutsideValidity", reader, s.main, cardExpired, false, access.ReasonCardOutsideValidity},
		{"PersonInactive", reader, s.main, cardInactive, false, access.ReasonPersonInactive},
		{"NoGroup", reader, s.main, cardNoGroup, false, access.ReasonNoGroup},
		{"OutsideSchedule", reader, s.main, cardSchedule, false, access.ReasonOutsideSchedule},
		{"VisitNotCheckedIn", reader, s.main, cardNotIn, false, access.ReasonVisitNotCheckedIn},
		{"EscortNotPickedUp", reader, s.main, cardEscort, false, access.ReasonEscortNotPickedUp},
		{"CheckedOut", reader, s.main, cardCheckedOut, false, access.ReasonCheckedOut},
		{"AntiPassback", labReader, s.lab, cardPassback, false, access.ReasonAntiPassback},
		{"NoOfflineAccess", reader, s.main, cardAlice, true, access.ReasonNoOfflineAccess},
	}
	covered := map[access.Reason]bool{access.ReasonGranted: true}
	for i, tt := range tests {
		covered[tt.want] = true
		t.Run(tt.name, func(t *testing.T) {
			s.offline.Store(tt.offline)
			defer s.offline.Store(false)
			rid := "deny:" + tt.name
			tt.reader.tap(rid, tt.door, tt.card)
			d, _ := tt.reader.decision(rid)
			if d.Grant || d.Reason != tt.want || d.Unlock != 0 {
				t.Fatalf("decision = grant %v, %v, unlock %v; want a deny for %v", d.Grant, d.Reason, d.Unlock, tt.want)
			}
			wantMode := access.Online
			if tt.offline {
				wantMode = access.Offline
			}
			if d.Mode != wantMode {
				t.Errorf("mode = %v, want %v", d.Mode, wantMode)
			}
			ev := eventFor(t, s, rid)
			if ev.GetGranted() || ev.GetReason() != accessv1.Reason(tt.want) || ev.GetCard() != uint64(tt.card) {
				t.Errorf("event = %v, want a deny for %v", ev, tt.want)
			}
			if got := taps(t, reg, "denied"); got != float64(i+1) {
				t.Errorf("taps denied = %v, want %v", got, i+1)
			}
		})
	}
	for _, r := range access.Reasons() {
		if !covered[r] {
			t.Errorf("reason %v is not covered", r)
		}
	}

	t.Run("OfflineGrant", func(t *testing.T) {
		s.offline.Store(true)
		defer s.offline.Store(false)
		reader.tap("offline:bob", s.main, cardBob)
		d, _ := reader.decision("offline:bob")
		if !d.Grant || d.Mode != access.Offline {
			t.Fatalf("decision = grant %v mode %v, want an offline grant", d.Grant, d.Mode)
		}
		if cmd := door.cmd(); cmd.RequestID != "offline:bob" {
			t.Fatalf("unlock for %q, want offline:bob", cmd.RequestID)
		}
	})

	t.Run("NoUnlockOnDeny", func(t *testing.T) {
		// The denies above were answered on the reader's connection; a
		// grant now is handled after them, so the controller's first
		// command after the offline grant must be this grant's.
		reader.tap("sync:grant", s.main, cardAlice)
		reader.decision("sync:grant")
		if cmd := door.cmd(); cmd.RequestID != "sync:grant" {
			t.Fatalf("first command after the denies is for %q, want sync:grant", cmd.RequestID)
		}
		door.none()
	})
}

func TestModeWithoutModeDecider(t *testing.T) {
	s := newTestSite(t)
	g, _ := startGateway(t, siteOnly{s}, s.siteID)
	reader := mustDial(t, g.Addr(), s.reader)
	s.offline.Store(true)
	reader.tap("m:1", s.main, cardAlice)
	if d, _ := reader.decision("m:1"); d.Reason != access.ReasonNoOfflineAccess || d.Mode != access.Offline {
		t.Errorf("decision = %v mode %v, want no_offline_access under the offline rule", d.Reason, d.Mode)
	}
}

func TestTapFromDoorController(t *testing.T) {
	s := newTestSite(t)
	g, _ := startGateway(t, s, s.siteID)
	door := mustDial(t, g.Addr(), s.door)
	door.tap("d:1", s.main, cardAlice)
	if d, _ := door.decision("d:1"); !d.Grant {
		t.Fatalf("door controller's own tap: %v, want a grant", d.Reason)
	}
	// It acts on the decision itself; no unlock command for its own tap.
	door.tap("d:2", s.main, cardNoGroup)
	door.decision("d:2")
	door.none()
}

func TestConnectRefused(t *testing.T) {
	s := newTestSite(t)
	g, reg := startGateway(t, s, s.siteID)
	addr := g.Addr()
	reader := s.reader.proto()
	tests := []struct {
		name   string
		id     mqttproto.Device
		opts   clientOpts
		reason string
	}{
		{"WrongPassword", reader, clientOpts{password: "not-the-secret"}, "bad_password"},
		{"NoPassword", reader, clientOpts{}, "bad_password"},
		{"UnknownDevice", mqttproto.Device{Site: string(s.siteID), Kind: mqttproto.KindReader, ID: string(access.MustNewID())},
			clientOpts{password: s.reader.secret}, "unknown_device"},
		{"Disabled", s.disabledReader.proto(), clientOpts{password: s.disabledReader.secret}, "disabled"},
		{"OtherSite", mqttproto.Device{Site: string(s.siteID), Kind: mqttproto.KindReader, ID: string(s.otherSiteReader.dev.ID)},
			clientOpts{password: s.otherSiteReader.secret}, "wrong_site"},
		{"WrongKind", mqttproto.Device{Site: string(s.siteID), Kind: mqttproto.KindDoor, ID: string(s.reader.dev.ID)},
			clientOpts{password: s.reader.secret}, "wrong_kind"},
		{"BadUsername", reader, clientOpts{username: "lobby-reader", password: s.reader.secret}, "bad_username"},
		{"SessionTakeover", reader, clientOpts{clientID: s.door.proto().Username(), password: s.reader.secret}, "client_id_mismatch"},
		{"WillOnAnotherTopic", reader, clientOpts{password: s.reader.secret, will: s.door.proto().Topic(mqttproto.ChannelState).String()}, "bad_will"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := metric(t, reg, "auth_failures_total", map[string]string{"reason": tt.reason})
			tt.opts.addr = addr
			if _, err := dial(t, tt.id, tt.opts); err == nil {
				t.Fatal("connected, want refused")
			}
			if got := metric(t, reg, "auth_failures_total", map[string]string{"reason": tt.reason}); got != before+1 {
				t.Errorf("auth failures %q = %v, want %v", tt.reason, got, before+1)
			}
		})
	}

	t.Run("DisabledWithoutRestart", func(t *testing.T) {
		c := mustDial(t, addr, s.labReader)
		c.c.Disconnect(50)
		dev := s.labReader.dev
		dev.Disabled = true
		s.put(t, func(st *access.State) error { return st.PutDevice(dev) })
		if _, err := dial(t, s.labReader.proto(), clientOpts{addr: addr, password: s.labReader.secret}); err == nil {
			t.Fatal("disabled device connected")
		}
		dev.Disabled = false
		s.put(t, func(st *access.State) error { return st.PutDevice(dev) })
		mustDial(t, addr, s.labReader)
	})

	t.Run("KioskAccepted", func(t *testing.T) {
		mustDial(t, addr, s.kiosk)
	})
}

func TestAccessRules(t *testing.T) {
	s := newTestSite(t)
	g, reg := startGateway(t, s, s.siteID)
	addr := g.Addr()
	reader := mustDial(t, addr, s.reader)

	t.Run("PublishOnAnotherDevicesTap", func(t *testing.T) {
		attacker := mustDial(t, addr, s.labReader)
		b, err := mqttproto.Tap{RequestID: "forged", Door: s.main, Card: cardAlice}.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		// A refused QoS 1 publish of an MQTT 3.1.1 client ends its
		// connection.
		attacker.c.Publish(reader.id.Topic(mqttproto.ChannelTap).String(), mqttproto.QoS, false, b)
		select {
		case <-attacker.lost:
		case <-time.After(deadline):
			t.Fatal("the broker kept the connection of a device publishing on another's topic")
		}
		if got := metric(t, reg, "acl_refusals_total", map[string]string{"action": "publish"}); got != 1 {
			t.Errorf("publish refusals = %v, want 1", got)
		}
		// The reader's own next tap is the first thing it is answered.
		reader.tap("own:1", s.main, cardAlice)
		reader.decision("own:1")
		if n := countEvents(s, "forged"); n != 0 {
			t.Errorf("%d events for the forged tap", n)
		}
	})

	t.Run("SubscribeToAnotherDevicesDecision", func(t *testing.T) {
		attacker := mustDial(t, addr, s.labReader)
		for _, filter := range []string{
			reader.id.Topic(mqttproto.ChannelDecision).String(),
			"gh/" + string(s.siteID) + "/#",
			"gh/" + string(s.siteID) + "/reader/+/decision",
			"$share/x/" + reader.id.Topic(mqttproto.ChannelDecision).String(),
		} {
			tok := attacker.c.Subscribe(filter, mqttproto.QoS, nil)
			if !tok.WaitTimeout(deadline) || tok.Error() != nil {
				t.Fatalf("subscribe %s: %v", filter, tok.Error())
			}
			// (paho keys the result of a shared filter without its
			// $share/{group}/ prefix.)
			res := tok.(*paho.SubscribeToken).Result()
			if len(res) != 1 {
				t.Fatalf("SUBACK for %s = %v, want one result", filter, res)
			}
			for _, code := range res {
				if code != 0x80 {
					t.Errorf("SUBACK for %s = %#x, want 0x80 (refused)", filter, code)
				}
			}
		}
		reader.tap("own:2", s.main, cardAlice)
		reader.decision("own:2")
		attacker.none()
	})

	t.Run("KioskPublishesTap", func(t *testing.T) {
		kiosk := mustDial(t, addr, s.kiosk)
		b, _ := mqttproto.Tap{RequestID: "k", Door: s.main, Card: cardAlice}.Marshal()
		kiosk.c.Publish(kiosk.id.Topic(mqttproto.ChannelTap).String(), mqttproto.QoS, false, b)
		select {
		case <-kiosk.lost:
		case <-time.After(deadline):
			t.Fatal("a kiosk published a tap")
		}
		if n := countEvents(s, "k"); n != 0 {
			t.Errorf("%d events for the kiosk's tap", n)
		}
	})
}

func TestBadTaps(t *testing.T) {
	s := newTestSite(t)
	g, reg := startGateway(t, s, s.siteID)
	reader := mustDial(t, g.Addr(), s.reader)
	topic := reader.id.Topic(mqttproto.ChannelTap).String()
	tap := func(fields string) []byte {
		return []byte(`{"v":1,"request_id":"bad","door":"` + string(s.main) + `","card":"1001"` + fields + `}`)
	}
	malformed := []struct {
		name    string
		payload []byte
	}{
		{"NotJSON", []byte("tap tap")},
		{"Empty", []byte{}},
		{"Truncated", tap("")[:30]},
		{"Oversized", tap(`,"time":1767261600123` + strings.Repeat(" ", mqttproto.MaxPayload))},
		{"WrongVersion", []byte(`{"v":2,"request_id":"bad","door":"` + string(s.main) + `","card":"1001"}`)},
		{"UnknownField", tap(`,"colour":"red"`)},
		{"DuplicateKey", tap(`,"card":"1002"`)},
		{"Null", tap(`,"time":null`)},
		{"MissingCard", []byte(`{"v":1,"request_id":"bad","door":"` + string(s.main) + `"}`)},
		{"CardZero", []byte(`{"v":1,"request_id":"bad","door":"` + string(s.main) + `","card":"0"}`)},
		{"TimeInSeconds", tap(`,"time":1767261600`)},
		{"BadWiegandParity", []byte(`{"v":1,"request_id":"bad","door":"` + string(s.main) + `","wiegand":{"frame":"181b00","bits":26}}`)},
	}
	for _, m := range malformed {
		reader.publish(topic, m.payload, false)
	}
	// A reader's messages are handled in order: once the good tap is
	// answered, every bad one before it has been refused.
	reader.tap("good:1", s.main, cardAlice)
	reader.decision("good:1")
	reader.none()
	if got, want := taps(t, reg, "malformed"), float64(len(malformed)); got != want {
		t.Errorf("taps malformed = %v, want %v", got, want)
	}
	eventFor(t, s, "good:1")
	if n := countEvents(s, "bad"); n != 0 {
		t.Errorf("%d events for malformed taps", n)
	}

	t.Run("WrongDoor", func(t *testing.T) {
		reader.tap("wrong-door", s.lab, cardAlice)
		reader.tap("good:2", s.main, cardAlice)
		reader.decision("good:2")
		if got := taps(t, reg, "refused"); got != 1 {
			t.Errorf("taps refused = %v, want 1", got)
		}
		eventFor(t, s, "good:2")
		if n := countEvents(s, "wrong-door"); n != 0 {
			t.Errorf("%d events for a tap at another door", n)
		}
	})

	t.Run("RetainedTap", func(t *testing.T) {
		b, _ := mqttproto.Tap{RequestID: "retained", Door: s.main, Card: cardAlice}.Marshal()
		reader.publish(topic, b, true)
		reader.tap("good:3", s.main, cardAlice)
		reader.decision("good:3")
		if n := countEvents(s, "retained"); n != 0 {
			t.Errorf("%d events for a retained tap", n)
		}
	})

	t.Run("BadStateAndEvent", func(t *testing.T) {
		door := mustDial(t, g.Addr(), s.door)
		door.publish(door.id.Topic(mqttproto.ChannelState).String(), []byte(`{"v":1,"online":true}`), true)
		door.publish(door.id.Topic(mqttproto.ChannelEvent).String(), []byte(`{"v":1,"type":"door_opened","seq":1,"time":1767261600523}`), false)
		waitFor(t, "malformed state and event counted", func() bool {
			return metric(t, reg, "messages_total", map[string]string{"channel": "state", "result": "malformed"}) == 1 &&
				metric(t, reg, "messages_total", map[string]string{"channel": "event", "result": "malformed"}) == 1
		})
	})
}

func TestDuplicateTap(t *testing.T) {
	s := newTestSite(t)
	g, reg := startGateway(t, s, s.siteID)
	reader := mustDial(t, g.Addr(), s.reader)
	door := mustDial(t, g.Addr(), s.door)

	reader.tap("dup:1", s.main, cardAlice)
	_, first := reader.decision("dup:1")
	cmd1 := door.cmd()
	reader.tap("dup:1", s.main, cardAlice)
	_, again := reader.decision("dup:1")
	if !bytes.Equal(first, again) {
		t.Errorf("repeated tap got\n%s\nwant the first decision\n%s", again, first)
	}
	if cmd2 := door.cmd(); cmd2.RequestID != cmd1.RequestID || !cmd2.Expires.Equal(cmd1.Expires) {
		t.Errorf("repeated unlock %+v, want the first %+v", cmd2, cmd1)
	}

	// After a reconnect, as a device retries an unanswered tap, even with
	// another card in it: the key is (device, request ID).
	// The broker must be done with the old connection first: a session
	// taken over by the same client ID while the old one is still closing
	// can lose the new one's subscription (seen under load).
	reader.c.Disconnect(50)
	waitFor(t, "the old reader connection gone", func() bool { return metric(t, reg, "clients_connected", nil) == 1 })
	reader = mustDial(t, g.Addr(), s.reader)
	reader.tap("dup:1", s.main, cardNoGroup)
	if _, b := reader.decision("dup:1"); !bytes.Equal(first, b) {
		t.Errorf("tap repeated after reconnecting got\n%s\nwant\n%s", b, first)
	}
	if cmd3 := door.cmd(); cmd3.RequestID != cmd1.RequestID {
		t.Errorf("unlock after reconnecting %+v, want the first %+v", cmd3, cmd1)
	}

	// The same request ID from another device is another tap.
	door.tap("dup:1", s.main, cardNoGroup)
	if d, _ := door.decision("dup:1"); d.Reason != access.ReasonNoGroup {
		t.Errorf("another device's tap with the same request ID: %v, want no_group", d.Reason)
	}

	waitFor(t, "both taps recorded", func() bool { return len(s.recorded()) == 2 })
	if got := taps(t, reg, "duplicate"); got != 2 {
		t.Errorf("taps duplicate = %v, want 2", got)
	}
	if got := metric(t, reg, "events_queued_total", nil); got != 2 {
		t.Errorf("events queued = %v, want 2", got)
	}
}

func TestRecordRetriesWithoutLoss(t *testing.T) {
	s := newTestSite(t)
	s.failNext(4)
	g, reg := startGateway(t, s, s.siteID, func(c *mqttgw.Config) {
		c.EventFlushInterval = 20 * time.Millisecond
		c.EventBatchMax = 2
	})
	reader := mustDial(t, g.Addr(), s.reader)
	const n = 7
	for i := range n {
		rid := "r:" + string(rune('a'+i))
		reader.tap(rid, s.main, cardAlice)
		// Answered while the site cannot record.
		reader.decision(rid)
	}
	waitFor(t, "every event recorded", func() bool { return len(s.recorded()) == n })
	if got := metric(t, reg, "record_errors_total", nil); got != 4 {
		t.Errorf("record errors = %v, want 4", got)
	}
	if got := metric(t, reg, "events_dropped_total", nil); got != 0 {
		t.Errorf("events dropped = %v, want 0", got)
	}
	for i := range n {
		if c := countEvents(s, "r:"+string(rune('a'+i))); c != 1 {
			t.Errorf("event %d recorded %d times, want once", i, c)
		}
	}
	s.recMu.Lock()
	calls := s.calls
	s.recMu.Unlock()
	if calls < 4+(n+1)/2 {
		t.Errorf("%d RecordEvents calls for %d events in batches of 2 after 4 failures", calls, n)
	}
}

func TestQueueFullDropsOldest(t *testing.T) {
	s := newTestSite(t)
	release := s.blockRecords()
	defer release()
	g, reg := startGateway(t, s, s.siteID, func(c *mqttgw.Config) { c.EventQueue = 2 })
	reader := mustDial(t, g.Addr(), s.reader)
	const n = 6
	for i := range n {
		rid := "q:" + string(rune('a'+i))
		reader.tap(rid, s.main, cardAlice)
		reader.decision(rid)
	}
	release()
	waitFor(t, "every event recorded or dropped", func() bool {
		return float64(len(s.recorded()))+metric(t, reg, "events_dropped_total", nil) == n
	})
	// At most one batch in flight (taken from a queue of 2) and two
	// queued survive.
	if got := len(s.recorded()); got > 4 {
		t.Errorf("%d events recorded from a queue of 2, want at most 4", got)
	}
	eventFor(t, s, "q:f") // the newest is kept
}

func TestCloseFlushesEvents(t *testing.T) {
	s := newTestSite(t)
	release := s.blockRecords()
	defer release()
	g, _ := startGateway(t, s, s.siteID)
	reader := mustDial(t, g.Addr(), s.reader)
	for _, rid := range []string{"c:1", "c:2", "c:3"} {
		reader.tap(rid, s.main, cardAlice)
		reader.decision(rid) // answered though the site is not recording
	}
	closed := make(chan error, 1)
	go func() { closed <- g.Close() }()
	release()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(deadline):
		t.Fatal("Close did not return")
	}
	if got := len(s.recorded()); got != 3 {
		t.Errorf("%d events recorded by Close, want 3", got)
	}
	if err := g.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := g.Open(context.Background()); !errors.Is(err, mqttgw.ErrClosed) {
		t.Errorf("Open after Close: %v, want ErrClosed", err)
	}
}

func TestCloseGivesUp(t *testing.T) {
	s := newTestSite(t)
	s.failNext(1 << 30)
	g, _ := startGateway(t, s, s.siteID, func(c *mqttgw.Config) { c.CloseTimeout = 50 * time.Millisecond })
	reader := mustDial(t, g.Addr(), s.reader)
	reader.tap("lost:1", s.main, cardAlice)
	reader.decision("lost:1")
	err := g.Close()
	if !errors.Is(err, mqttgw.ErrEventsLost) || access.ErrorCode(err) != access.Unavailable {
		t.Fatalf("Close = %v, want ErrEventsLost", err)
	}
	if !strings.Contains(err.Error(), "1 access events") {
		t.Errorf("Close error %q does not count the lost event", err)
	}
}

func TestDevices(t *testing.T) {
	s := newTestSite(t)
	g, reg := startGateway(t, s, s.siteID)
	var raw atomic.Pointer[net.Conn]
	door, err := dial(t, s.door.proto(), clientOpts{addr: g.Addr(), password: s.door.secret, subscribe: true, conn: &raw})
	if err != nil {
		t.Fatal(err)
	}
	door.state(true)
	kiosk := mustDial(t, g.Addr(), s.kiosk)
	online := func(id access.ID, want bool) func() bool {
		return func() bool {
			for _, d := range g.Devices() {
				if d.ID == id {
					return d.Online == want && !d.LastSeen.IsZero()
				}
			}
			return false
		}
	}
	waitFor(t, "door controller online", online(s.door.dev.ID, true))
	waitFor(t, "kiosk online", online(s.kiosk.dev.ID, true))
	for _, d := range g.Devices() {
		if d.ID == s.door.dev.ID && (d.Kind != access.DeviceDoor || d.Firmware != "test-1.0") {
			t.Errorf("door status = %+v", d)
		}
	}

	// Cut the connection without DISCONNECT: the broker publishes the
	// last will, the offline state.
	(*raw.Load()).Close()
	waitFor(t, "door controller offline by its will", online(s.door.dev.ID, false))

	// Events are decoded and counted.
	ev, _ := mqttproto.DoorEvent{Type: mqttproto.DoorForcedOpen, Seq: 1, Time: time.Now(), Door: s.main}.Marshal()
	kioskEv, _ := mqttproto.KioskEvent{Type: mqttproto.KioskCheckIn, Seq: 1, Time: time.Now(), RequestID: "k:1", Visit: s.main}.Marshal()
	kiosk.publish(kiosk.id.Topic(mqttproto.ChannelEvent).String(), kioskEv, false)
	door2 := mustDial(t, g.Addr(), s.door)
	door2.publish(door2.id.Topic(mqttproto.ChannelEvent).String(), ev, false)
	waitFor(t, "events counted", func() bool {
		return metric(t, reg, "device_events_total", map[string]string{"kind": "door", "type": "forced_open"}) == 1 &&
			metric(t, reg, "device_events_total", map[string]string{"kind": "kiosk", "type": "check_in"}) == 1
	})
	if len(s.recorded()) != 0 {
		t.Errorf("device events became access events: %v", s.recorded())
	}

	// A device removed from the site leaves the list.
	s.put(t, func(st *access.State) error { st.RemoveDevice(s.kiosk.dev.ID); return nil })
	for _, d := range g.Devices() {
		if d.ID == s.kiosk.dev.ID {
			t.Errorf("removed kiosk still listed: %+v", d)
		}
	}
}

func TestConfig(t *testing.T) {
	ok := mqttgw.Config{SiteID: string(access.MustNewID()), NodeID: "edge-1"}.WithDefaults()
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate(defaults) = %v", err)
	}
	tests := []struct {
		name string
		mod  func(*mqttgw.Config)
	}{
		{"ErrSiteRequired", func(c *mqttgw.Config) { c.SiteID = "" }},
		{"ErrSiteBadChars", func(c *mqttgw.Config) { c.SiteID = "hq/+" }},
		{"ErrNodeRequired", func(c *mqttgw.Config) { c.NodeID = "" }},
		{"ErrNodeBadChars", func(c *mqttgw.Config) { c.NodeID = "edge 1" }},
		{"ErrUnlockTooLong", func(c *mqttgw.Config) { c.Unlock = time.Hour }},
		{"ErrNegativeQueue", func(c *mqttgw.Config) { c.EventQueue = -1 }},
		{"ErrBrokerScheme", func(c *mqttgw.Config) { c.BrokerURL = "http://broker:1883" }},
		{"ErrBrokerHost", func(c *mqttgw.Config) { c.BrokerURL = "tcp://" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mod(&c)
			if err := c.Validate(); !errors.Is(err, mqttgw.ErrBadConfig) {
				t.Errorf("Validate = %v, want ErrBadConfig", err)
			}
		})
	}
	t.Run("OpenRefusesBadConfig", func(t *testing.T) {
		g := mqttgw.New(mqttgw.Config{}, newTestSite(t), nil)
		if err := g.Open(context.Background()); !errors.Is(err, mqttgw.ErrBadConfig) {
			t.Errorf("Open = %v, want ErrBadConfig", err)
		}
		if err := g.Close(); err != nil {
			t.Errorf("Close after a failed Open = %v", err)
		}
	})
	t.Run("ListenerInUse", func(t *testing.T) {
		s := newTestSite(t)
		g, _ := startGateway(t, s, s.siteID)
		g2 := mqttgw.New(mqttgw.Config{SiteID: string(s.siteID), NodeID: "edge-2", ListenAddr: g.Addr()}, s, nil)
		if err := g2.Open(context.Background()); !errors.Is(err, mqttgw.ErrBroker) {
			t.Errorf("Open on a taken port = %v, want ErrBroker", err)
		}
	})
}

func TestExternalBrokerUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	s := newTestSite(t)
	g := mqttgw.New(mqttgw.Config{SiteID: string(s.siteID), NodeID: "edge-1", BrokerURL: "tcp://" + addr}, s, testLogger(t))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := g.Open(ctx); !errors.Is(err, mqttgw.ErrBroker) {
		t.Fatalf("Open = %v, want ErrBroker", err)
	}
	if err := g.Close(); err != nil {
		t.Errorf("Close after a failed Open = %v", err)
	}
}

func TestUnlockFollowsRegistry(t *testing.T) {
	s := newTestSite(t)
	g, _ := startGateway(t, s, s.siteID)
	reader := mustDial(t, g.Addr(), s.reader)
	door := mustDial(t, g.Addr(), s.door)
	reader.tap("u:1", s.main, cardAlice)
	reader.decision("u:1")
	if cmd := door.cmd(); cmd.RequestID != "u:1" {
		t.Fatalf("unlock for %q, want u:1", cmd.RequestID)
	}

	// Moved to the lab door in the registry: the main door's grants no
	// longer unlock it, though it is still connected.
	moved := s.door.dev
	moved.DoorID = s.lab
	s.put(t, func(st *access.State) error { return st.PutDevice(moved) })
	reader.tap("u:2", s.main, cardAlice)
	reader.decision("u:2")
	// A grant at the lab, from the lab's reader, now reaches it once it
	// is heard from again (its state message).
	heard := time.Now()
	door.state(true)
	waitFor(t, "door controller heard from", func() bool {
		for _, d := range g.Devices() {
			if d.ID == s.door.dev.ID {
				return !d.LastSeen.Before(heard)
			}
		}
		return false
	})
	labReader := mustDial(t, g.Addr(), s.labReader)
	labReader.tap("u:3", s.lab, cardAlice)
	labReader.decision("u:3")
	if cmd := door.cmd(); cmd.RequestID != "u:3" || cmd.Door != s.lab {
		t.Fatalf("command %+v, want the lab unlock for u:3 (and none for u:2)", cmd)
	}
}

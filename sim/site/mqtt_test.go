package site

import (
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

const testSite = `
site hq
heartbeat 1m          # long, so that only the heartbeat on coming online is sent
unlock 3s
door lobby
door side 01JD8X5Q4K3M2N1P0R9S8T7V6W high-security max-offline 1h
device reader r1 secret reader-secret door lobby
device door d1 secret door-secret doors lobby,side
device kiosk k1 secret kiosk-secret
device dispenser p1 secret disp-secret
card 100 grant
card 200 deny card_suspended
cache lobby 100 until +24h
cache side 100 until 2030-01-01T00:00:00Z from 2025-01-01T00:00:00Z
`

var (
	lobby = DoorID("lobby")
	side  = access.ID("01JD8X5Q4K3M2N1P0R9S8T7V6W")
)

func online(doors ...mqttproto.DoorState) mqttproto.State {
	st := mqttproto.State{Online: true, Firmware: "test-1"}
	if doors != nil {
		st.Door = &mqttproto.DoorStatus{Doors: doors}
	}
	return st
}

func doorEvent(seq uint64, typ mqttproto.DoorEventType) mqttproto.DoorEvent {
	return mqttproto.DoorEvent{Type: typ, Seq: seq, Time: time.Now(), Door: lobby}
}

// TestWellBehaved plays a reader, a door controller, a kiosk and a
// dispenser that follow the protocol, and checks that they get decisions,
// caches, heartbeats, acks and answers, and a clean report.
func TestWellBehaved(t *testing.T) {
	s := MustSite(t, testSite, false)

	// The door controller comes online holding no cache: a heartbeat,
	// then each door's cache.
	d1 := mustDevice(t, s, mqttproto.KindDoor, "d1", "door-secret",
		online(mqttproto.DoorState{Door: lobby, Mode: mqttproto.DoorNormal}, mqttproto.DoorState{Door: side, Mode: mqttproto.DoorNormal}))
	if hb := d1.nextCmd(mqttproto.DoorHeartbeat); hb.Time.IsZero() {
		t.Errorf("heartbeat without time: %+v", hb)
	}
	caches := map[access.ID]mqttproto.DoorCmd{}
	for len(caches) < 2 {
		c := d1.nextCmd(mqttproto.DoorOfflineCache)
		caches[c.Door] = c
	}
	if c := caches[side]; !c.HighSecurity || c.MaxOffline != time.Hour || len(c.Entries) != 1 || c.Entries[0].Card != 100 || c.Version != 1 {
		t.Errorf("side cache = %+v", c)
	}
	d1.publish(mqttproto.ChannelState, online(
		mqttproto.DoorState{Door: lobby, Mode: mqttproto.DoorNormal, CacheVersion: 1},
		mqttproto.DoorState{Door: side, Mode: mqttproto.DoorNormal, CacheVersion: 1}), mqttproto.QoS, true)

	// Taps at the reader: a grant, a deny, an unknown card, a repeat.
	r1 := mustDevice(t, s, mqttproto.KindReader, "r1", "reader-secret", online())
	for _, tc := range []struct {
		id     string
		card   access.CardNumber
		reason access.Reason
	}{
		{"r1:1", 100, access.ReasonGranted},
		{"r1:2", 200, access.ReasonCardSuspended},
		{"r1:3", 999, access.ReasonUnknownCard},
		{"r1:1", 100, access.ReasonGranted}, // repeated: the same decision again
	} {
		r1.publish(mqttproto.ChannelTap, mqttproto.Tap{RequestID: tc.id, Door: lobby, Card: tc.card}, mqttproto.QoS, false)
		dec := r1.nextDecision(tc.id)
		if got, want := dec.Reason, tc.reason; got != want {
			t.Errorf("tap %s card %d: reason %s, want %s", tc.id, tc.card, got, want)
		}
		if dec.Grant && dec.Unlock != 3*time.Second {
			t.Errorf("grant unlocks for %s, want 3s", dec.Unlock)
		}
	}
	// The door's controller hears the decision too.
	if dec := d1.nextDecision("r1:1"); !dec.Grant {
		t.Errorf("controller got %+v", dec)
	}

	// Door events are acknowledged by seq.
	d1.publish(mqttproto.ChannelEvent, doorEvent(1, mqttproto.DoorOpened), mqttproto.QoS, false)
	if ack := d1.nextCmd(mqttproto.DoorAck); ack.Seq != 1 || ack.Resend {
		t.Errorf("ack = %+v, want seq 1", ack)
	}
	d1.publish(mqttproto.ChannelEvent, doorEvent(2, mqttproto.DoorClosed), mqttproto.QoS, false)
	if ack := d1.nextCmd(mqttproto.DoorAck); ack.Seq != 2 {
		t.Errorf("ack = %+v, want seq 2", ack)
	}

	// Operator commands.
	for _, text := range []string{"unlock door side for 2s", "set_mode door lobby locked", "push cache door side"} {
		c, err := ParseCommand(s.f, text)
		if err != nil {
			t.Fatalf("ParseCommand(%q): %v", text, err)
		}
		if err := s.Do(c); err != nil {
			t.Fatalf("Do(%q): %v", text, err)
		}
	}
	if c := d1.nextCmd(mqttproto.DoorUnlock); c.Door != side || c.Unlock != 2*time.Second {
		t.Errorf("unlock = %+v", c)
	}
	if c := d1.nextCmd(mqttproto.DoorSetMode); c.Door != lobby || c.Mode != mqttproto.DoorLocked {
		t.Errorf("set_mode = %+v", c)
	}
	if c := d1.nextCmd(mqttproto.DoorOfflineCache); c.Door != side || c.Version != 2 {
		t.Errorf("pushed cache = %+v, want version 2 of side", c)
	}
	d1.publish(mqttproto.ChannelState, online(
		mqttproto.DoorState{Door: lobby, Mode: mqttproto.DoorLocked, CacheVersion: 1},
		mqttproto.DoorState{Door: side, Mode: mqttproto.DoorNormal, CacheVersion: 2}), mqttproto.QoS, true)

	// A kiosk request is answered "not simulated"; its event is acked.
	k1 := mustDevice(t, s, mqttproto.KindKiosk, "k1", "kiosk-secret", online())
	k1.publish(mqttproto.ChannelEvent, mqttproto.KioskEvent{Type: mqttproto.KioskCheckIn, Seq: 1, Time: time.Now(),
		RequestID: "k1:1", Visit: side}, mqttproto.QoS, false)
	res := k1.next("show_result", func(m mqttproto.Message) bool {
		c, ok := m.(mqttproto.KioskCmd)
		return ok && c.Type == mqttproto.KioskShowResult
	}).(mqttproto.KioskCmd)
	if res.RequestID != "k1:1" || res.OK || res.Code != "try_again" {
		t.Errorf("show_result = %+v", res)
	}

	// A dispenser: a card inserted is captured; an encode is answered.
	p1 := mustDevice(t, s, mqttproto.KindDispenser, "p1", "disp-secret",
		mqttproto.State{Online: true, Firmware: "d-1", Dispenser: &mqttproto.DispenserStatus{Stack: mqttproto.StackOK}})
	p1.publish(mqttproto.ChannelEvent, mqttproto.DispenserEvent{Type: mqttproto.DispenserCardInserted, Seq: 1, Time: time.Now(), Card: 55}, mqttproto.QoS, false)
	capture := p1.next("capture", func(m mqttproto.Message) bool {
		c, ok := m.(mqttproto.DispenserCmd)
		return ok && c.Type == mqttproto.DispenserCapture
	}).(mqttproto.DispenserCmd)
	p1.publish(mqttproto.ChannelEvent, mqttproto.DispenserEvent{Type: mqttproto.DispenserCaptured, Seq: 2, Time: time.Now(),
		RequestID: capture.RequestID, Card: 55}, mqttproto.QoS, false)

	await(t, s, "the last events recorded", func(r *Report) bool {
		return len(r.Find("door/d1", "state", "lobby locked cache=1")) > 0 && len(r.Find("dispenser/p1", "cmd", "ack req")) >= 2 &&
			len(r.Find("door/d1", "state", "side normal cache=2")) > 0
	})
	s.Close()
	r := s.Report()
	if !r.OK() {
		t.Fatalf("violations:\n%s", violations(r))
	}
	byDev := map[string]DeviceSummary{}
	for _, d := range r.Devices {
		byDev[d.Device] = d
	}
	if got := byDev["reader/r1"]; got.Taps != 4 || got.Connects != 1 {
		t.Errorf("reader summary = %+v", got)
	}
	if got := byDev["door/d1"]; got.Events != 2 || got.LastSeq != 2 {
		t.Errorf("door summary = %+v", got)
	}
	if got := byDev["kiosk/k1"]; got.NotSimulated != 1 {
		t.Errorf("kiosk summary = %+v", got)
	}
}

// TestMisbehaving plays devices that break one rule each and checks that
// the site refuses or reports them with the right violation.
func TestMisbehaving(t *testing.T) {
	doorState := online(mqttproto.DoorState{Door: lobby, Mode: mqttproto.DoorNormal, CacheVersion: 1},
		mqttproto.DoorState{Door: side, Mode: mqttproto.DoorNormal, CacheVersion: 1})
	for _, tc := range []struct {
		name, device, rule string
		play               func(t *testing.T, s *Site)
	}{
		{"BadPassword", "door/d1", RuleAuth, func(t *testing.T, s *Site) {
			if _, err := connectDevice(t, s, mqttproto.KindDoor, "d1", devOpts{password: "wrong"}); err == nil {
				t.Fatal("connected with a bad password")
			}
		}},
		{"UnknownDevice", "door/d9", RuleAuth, func(t *testing.T, s *Site) {
			if _, err := connectDevice(t, s, mqttproto.KindDoor, "d9", devOpts{password: "door-secret"}); err == nil {
				t.Fatal("an unknown device connected")
			}
		}},
		{"NoWill", "reader/r1", RuleWill, func(t *testing.T, s *Site) {
			d, err := connectDevice(t, s, mqttproto.KindReader, "r1", devOpts{password: "reader-secret", noWill: true})
			if err != nil {
				t.Fatal(err)
			}
			d.subscribe()
			d.publish(mqttproto.ChannelState, online(), mqttproto.QoS, true)
		}},
		{"QoS0", "reader/r1", RuleQoS, func(t *testing.T, s *Site) {
			d := mustDevice(t, s, mqttproto.KindReader, "r1", "reader-secret", online())
			d.publish(mqttproto.ChannelTap, mqttproto.Tap{RequestID: "q0", Door: lobby, Card: 100}, 0, false)
			d.nextDecision("q0") // still answered
		}},
		{"StateNotRetained", "reader/r1", RuleRetain, func(t *testing.T, s *Site) {
			d, err := connectDevice(t, s, mqttproto.KindReader, "r1", devOpts{password: "reader-secret"})
			if err != nil {
				t.Fatal(err)
			}
			d.subscribe()
			d.publish(mqttproto.ChannelState, online(), mqttproto.QoS, false)
		}},
		{"StateBeforeSubscribe", "reader/r1", RuleStateOrder, func(t *testing.T, s *Site) {
			d, err := connectDevice(t, s, mqttproto.KindReader, "r1", devOpts{password: "reader-secret"})
			if err != nil {
				t.Fatal(err)
			}
			d.publish(mqttproto.ChannelState, online(), mqttproto.QoS, true)
		}},
		{"ForeignPublish", "reader/r1", RuleACLPublish, func(t *testing.T, s *Site) {
			d := mustDevice(t, s, mqttproto.KindReader, "r1", "reader-secret", online())
			tap, _ := mqttproto.Tap{RequestID: "x", Door: lobby, Card: 100}.Marshal()
			d.publishRaw("gh/hq/door/d1/tap", tap, mqttproto.QoS, false)
		}},
		{"ForeignSubscribe", "reader/r1", RuleACLSubscribe, func(t *testing.T, s *Site) {
			d := mustDevice(t, s, mqttproto.KindReader, "r1", "reader-secret", online())
			if code := d.subscribeTo("gh/hq/+/+/decision", mqttproto.QoS); code < 0x80 {
				t.Errorf("wildcard subscription granted with code %#x", code)
			}
		}},
		{"SubscribeQoS0", "reader/r1", RuleSubscribeQoS, func(t *testing.T, s *Site) {
			d, err := connectDevice(t, s, mqttproto.KindReader, "r1", devOpts{password: "reader-secret"})
			if err != nil {
				t.Fatal(err)
			}
			d.subscribeTo("gh/hq/reader/r1/decision", 0)
		}},
		{"BadPayload", "reader/r1", RuleMalformed, func(t *testing.T, s *Site) {
			d := mustDevice(t, s, mqttproto.KindReader, "r1", "reader-secret", online())
			d.publishRaw("gh/hq/reader/r1/tap", []byte(`{"v":1,"request_id":"x","card":"12"}`), mqttproto.QoS, false)
		}},
		{"RequestIDReused", "reader/r1", RuleRequestReused, func(t *testing.T, s *Site) {
			d := mustDevice(t, s, mqttproto.KindReader, "r1", "reader-secret", online())
			d.publish(mqttproto.ChannelTap, mqttproto.Tap{RequestID: "same", Door: lobby, Card: 100}, mqttproto.QoS, false)
			d.publish(mqttproto.ChannelTap, mqttproto.Tap{RequestID: "same", Door: lobby, Card: 200}, mqttproto.QoS, false)
		}},
		{"OutOfOrder", "door/d1", RuleSeqGap, func(t *testing.T, s *Site) {
			d := mustDevice(t, s, mqttproto.KindDoor, "d1", "door-secret", doorState)
			d.publish(mqttproto.ChannelEvent, doorEvent(1, mqttproto.DoorOpened), mqttproto.QoS, false)
			if ack := d.nextCmd(mqttproto.DoorAck); ack.Seq != 1 {
				t.Errorf("ack %+v, want seq 1", ack)
			}
			d.publish(mqttproto.ChannelEvent, doorEvent(3, mqttproto.DoorOpened), mqttproto.QoS, false)
			if ack := d.nextCmd(mqttproto.DoorAck); ack.Seq != 1 || !ack.Resend {
				t.Errorf("ack %+v, want seq 1 with resend", ack)
			}
			d.publish(mqttproto.ChannelEvent, doorEvent(2, mqttproto.DoorClosed), mqttproto.QoS, false)
			if ack := d.nextCmd(mqttproto.DoorAck); ack.Seq != 3 || ack.Resend {
				t.Errorf("ack %+v, want seq 3: the gap is filled", ack)
			}
		}},
		{"ReplayedDifferently", "door/d1", RuleSeqReplay, func(t *testing.T, s *Site) {
			d := mustDevice(t, s, mqttproto.KindDoor, "d1", "door-secret", doorState)
			d.publish(mqttproto.ChannelEvent, doorEvent(1, mqttproto.DoorOpened), mqttproto.QoS, false)
			d.publish(mqttproto.ChannelEvent, doorEvent(1, mqttproto.DoorForcedOpen), mqttproto.QoS, false)
		}},
		{"GapNeverFilled", "door/d1", RuleGapUnfilled, func(t *testing.T, s *Site) {
			d := mustDevice(t, s, mqttproto.KindDoor, "d1", "door-secret", doorState)
			d.publish(mqttproto.ChannelEvent, doorEvent(1, mqttproto.DoorOpened), mqttproto.QoS, false)
			d.publish(mqttproto.ChannelEvent, doorEvent(4, mqttproto.DoorOpened), mqttproto.QoS, false)
			d.nextCmd(mqttproto.DoorAck)
			d.nextCmd(mqttproto.DoorAck)
		}},
		{"CacheNeverReported", "door/d1", RuleCacheReport, func(t *testing.T, s *Site) {
			d := mustDevice(t, s, mqttproto.KindDoor, "d1", "door-secret", online(mqttproto.DoorState{Door: lobby, Mode: mqttproto.DoorNormal}))
			d.nextCmd(mqttproto.DoorOfflineCache)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := MustSite(t, testSite, false)
			tc.play(t, s)
			if tc.rule != RuleGapUnfilled && tc.rule != RuleCacheReport {
				await(t, s, tc.rule+" violation", func(r *Report) bool { return r.Has(tc.device, tc.rule) })
			}
			s.Close()
			r := s.Report()
			if !r.Has(tc.device, tc.rule) {
				t.Fatalf("no %s violation by %s; violations:\n%s", tc.rule, tc.device, violations(r))
			}
			if r.OK() {
				t.Fatal("report OK despite a violation")
			}
		})
	}
}

// TestDelayedDecision holds a decision back past the decision timeout and
// checks that the site expects the door controller to decide alone, and
// checks its offline decision against the cache.
func TestDelayedDecision(t *testing.T) {
	s := MustSite(t, testSite+"card 300 grant delay 1500ms\n", false)
	d := mustDevice(t, s, mqttproto.KindDoor, "d1", "door-secret",
		online(mqttproto.DoorState{Door: lobby, Mode: mqttproto.DoorNormal, CacheVersion: 1},
			mqttproto.DoorState{Door: side, Mode: mqttproto.DoorNormal, CacheVersion: 1}))
	d.publish(mqttproto.ChannelTap, mqttproto.Tap{RequestID: "slow", Door: lobby, Card: 300}, mqttproto.QoS, false)
	// Card 300 is not in lobby's cache: deciding alone, the controller
	// must deny. This one wrongly grants.
	d.publish(mqttproto.ChannelEvent, mqttproto.DoorEvent{Type: mqttproto.DoorOfflineDecision, Seq: 1, Time: time.Now(),
		Door: lobby, Card: 300, Grant: true, Reason: access.ReasonGranted, RequestID: "slow", CacheVersion: 1}, mqttproto.QoS, false)
	await(t, s, "the offline decision checked", func(r *Report) bool { return r.Has("door/d1", RuleOfflineDecision) })
	d.nextDecision("slow") // the late decision still comes
	s.Close()
	if r := s.Report(); len(r.Violations) != 1 {
		t.Fatalf("want exactly the wrong offline decision; violations:\n%s", violations(r))
	}
}

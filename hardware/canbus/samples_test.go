package canbus

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// Fixtures shared by the tests.
const (
	tDoor  = access.ID("01JD8X5Q4K3M2N1P0R9S8T7V6W")
	tDoor2 = access.ID("01JD8X5Q4K3M2N1P0R9S8T7V6X")
)

// t0 is 2026-01-01T10:00:00.123Z.
var t0 = time.UnixMilli(1767261600123).UTC()

// tWiegand is H10301 facility 12 card 3456, and tWiegandCard its number.
var (
	tWiegandCred = access.WiegandCredential{Format: access.H10301, Facility: 12, Card: 3456}
	tWiegand     = mustWiegand(tWiegandCred)
	tWiegandCard = tWiegandCred.Number()
)

func mustWiegand(c access.WiegandCredential) mqttproto.Wiegand {
	f, n, err := access.EncodeWiegand(c)
	if err != nil {
		panic(err)
	}
	return mqttproto.Wiegand{Frame: f, Bits: n}
}

// sample is a message carried over CAN, exactly as its decoder returns it.
type sample struct {
	name string
	msg  mqttproto.Message
}

// samples returns a valid message of every type carried over CAN, with
// every optional field both present and absent somewhere.
func samples() []sample {
	var s []sample
	add := func(name string, m mqttproto.Message) { s = append(s, sample{name, m}) }
	add("tap card", mqttproto.Tap{RequestID: "r1-000042", Door: tDoor, Card: 1234567, Time: t0})
	add("tap wiegand pin", mqttproto.Tap{RequestID: "d.7:x_y-z", Door: tDoor, Card: tWiegandCard, Wiegand: tWiegand, Time: t0, PIN: true})
	add("tap max card no time", mqttproto.Tap{RequestID: "r", Door: tDoor, Card: 18446744073709551615})
	add("tap 64-char request id", mqttproto.Tap{RequestID: strings.Repeat("x", 64), Door: tDoor2, Card: 1})
	add("decision grant", mqttproto.Decision{RequestID: "r1-000042", Door: tDoor, Grant: true,
		Reason: access.ReasonGranted, Unlock: 5 * time.Second, Mode: access.Online, Node: "edge-1", Time: t0})
	add("decision deny", mqttproto.Decision{RequestID: "r1-000043", Door: tDoor,
		Reason: access.ReasonNoOfflineAccess, Mode: access.Offline, Node: "edge-2", Time: t0, CacheVersion: 17})
	for _, r := range access.Reasons() {
		d := mqttproto.Decision{RequestID: "r-" + r.String(), Door: tDoor, Reason: r, Node: "n", Time: t0, Mode: access.Online}
		if r == access.ReasonGranted {
			d.Grant, d.Unlock = true, mqttproto.MaxUnlock
		}
		add("decision "+r.String(), d)
	}
	ev := func(typ mqttproto.DoorEventType) mqttproto.DoorEvent {
		return mqttproto.DoorEvent{Type: typ, Seq: 42, Time: t0}
	}
	for _, typ := range []mqttproto.DoorEventType{mqttproto.DoorOpened, mqttproto.DoorClosed, mqttproto.DoorRequestToExit,
		mqttproto.DoorForcedOpen, mqttproto.DoorHeldOpen, mqttproto.DoorFailSecure} {
		e := ev(typ)
		e.Door = tDoor
		add("event "+string(typ), e)
	}
	add("event tamper", ev(mqttproto.DoorTamper))
	e := ev(mqttproto.DoorTamperCleared)
	e.Door = tDoor
	add("event tamper_cleared door", e)
	add("event offline_started", ev(mqttproto.DoorOfflineStarted))
	add("event offline_ended", ev(mqttproto.DoorOfflineEnded))
	add("event offline_decision grant", mqttproto.DoorEvent{Type: mqttproto.DoorOfflineDecision, Seq: 1, Time: t0,
		Door: tDoor, Card: 1234567, Grant: true, Reason: access.ReasonGranted, RequestID: "r1-000044", CacheVersion: 17})
	add("event offline_decision deny", mqttproto.DoorEvent{Type: mqttproto.DoorOfflineDecision, Seq: mqttproto.MaxInteger, Time: t0,
		Door: tDoor, Card: 7654321, Reason: access.ReasonNoOfflineAccess})
	add("event cmd_rejected", mqttproto.DoorEvent{Type: mqttproto.DoorCmdRejected, Seq: 43, Time: t0,
		RequestID: "c-9.2", Error: "base version 16 does not match held version 15 \"quoted\" ✓"})
	add("event cmd_rejected long error", mqttproto.DoorEvent{Type: mqttproto.DoorCmdRejected, Seq: 44, Time: t0,
		RequestID: "c-9.3", Error: strings.Repeat("e", mqttproto.MaxErrorText)})

	add("cmd unlock", mqttproto.DoorCmd{Type: mqttproto.DoorUnlock, RequestID: "c-1", Door: tDoor, Unlock: 3 * time.Second, Expires: t0.Add(10 * time.Second)})
	for _, m := range []mqttproto.DoorMode{mqttproto.DoorNormal, mqttproto.DoorUnlocked, mqttproto.DoorLocked} {
		add("cmd set_mode "+string(m), mqttproto.DoorCmd{Type: mqttproto.DoorSetMode, RequestID: "c-2", Door: tDoor, Mode: m})
	}
	add("cmd offline_cache full", mqttproto.DoorCmd{Type: mqttproto.DoorOfflineCache, RequestID: "c-3.1", Door: tDoor,
		Version: 17, Part: 1, Parts: 2, HighSecurity: true, MaxOffline: time.Hour,
		Entries: []mqttproto.CacheEntry{{Card: 1234567, Until: t0.Add(24 * time.Hour)}, {Card: 7654321, From: t0, Until: t0.Add(time.Hour)}}})
	add("cmd offline_cache empty", mqttproto.DoorCmd{Type: mqttproto.DoorOfflineCache, RequestID: "c-4.1", Door: tDoor,
		Version: 1, Part: 1, Parts: 1})
	add("cmd offline_cache delta", mqttproto.DoorCmd{Type: mqttproto.DoorOfflineCache, RequestID: "c-5.1", Door: tDoor,
		Version: 18, Base: 17, Part: 1, Parts: 1, MaxOffline: mqttproto.MaxOfflineLimit,
		Entries: []mqttproto.CacheEntry{{Card: 99, Until: t0.Add(time.Hour)}}, Remove: []access.CardNumber{7654321, 18446744073709551615}})
	add("cmd ack", mqttproto.DoorCmd{Type: mqttproto.DoorAck, RequestID: "a-1", Seq: 42})
	add("cmd ack resend", mqttproto.DoorCmd{Type: mqttproto.DoorAck, RequestID: "a-2", Seq: mqttproto.MaxInteger, Resend: true})
	add("cmd heartbeat", mqttproto.DoorCmd{Type: mqttproto.DoorHeartbeat, RequestID: "h-1", Time: t0})

	add("state offline", mqttproto.State{})
	add("state online bare", mqttproto.State{Online: true, Firmware: "1"})
	add("state door", mqttproto.State{Online: true, Firmware: "4.0.1", Time: t0, LastSeq: 43, Door: &mqttproto.DoorStatus{
		Tamper: true, Offline: true, Doors: []mqttproto.DoorState{
			{Door: tDoor, Mode: mqttproto.DoorNormal, CacheVersion: 17},
			{Door: tDoor2, Mode: mqttproto.DoorLocked, Open: true, FailSecure: true, CacheVersion: mqttproto.MaxInteger},
		}}})
	add("state door no doors", mqttproto.State{Online: true, Firmware: "x", Door: &mqttproto.DoorStatus{}})
	return s
}

// checkError fails unless err is a canbus error wrapping want.
func checkError(t testing.TB, err, want error) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one wrapping %v", want)
	}
	if !errors.Is(err, want) {
		t.Fatalf("error %q does not wrap %v", err, want)
	}
	if !strings.HasPrefix(err.Error(), "canbus: ") {
		t.Fatalf("error %q does not start with \"canbus: \"", err)
	}
	if c := access.ErrorCode(err); c != access.ErrorCode(want) {
		t.Fatalf("error %q has code %s, want %s", err, c, access.ErrorCode(want))
	}
}

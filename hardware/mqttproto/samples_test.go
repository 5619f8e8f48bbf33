package mqttproto

import (
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

// Fixtures shared by the tests.
const (
	tDoor  = access.ID("01JD8X5Q4K3M2N1P0R9S8T7V6W")
	tDoor2 = access.ID("01JD8X5Q4K3M2N1P0R9S8T7V6X")
	tVisit = access.ID("01JD8X9ZZZ0000000000000001")
	tSite  = "site-1"
)

// t0 is 2026-01-01T10:00:00.123Z.
var t0 = time.UnixMilli(1767261600123).UTC()

// tWiegand is H10301 facility 12 card 3456, and tWiegandCard its number.
var (
	tWiegand     = mustWiegand(access.WiegandCredential{Format: access.H10301, Facility: 12, Card: 3456})
	tWiegandCard = access.WiegandCredential{Format: access.H10301, Facility: 12, Card: 3456}.Number()
)

func mustWiegand(c access.WiegandCredential) Wiegand {
	f, n, err := access.EncodeWiegand(c)
	if err != nil {
		panic(err)
	}
	return Wiegand{Frame: f, Bits: n}
}

// sample is a message with the topic that carries it.
type sample struct {
	name  string
	topic Topic
	msg   Message
}

func topicOf(k Kind, c Channel) Topic {
	return Topic{Site: tSite, Kind: k, Device: "dev-1", Channel: c}
}

// samples returns a valid message of every type of every family, each
// exactly as its decoder returns it.
func samples() []sample {
	mrzTD3 := []string{
		"P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<",
		"L898902C36UTO7408122F1204159ZE184226B<<<<<10",
	}
	mrzTD1 := []string{
		"I<UTOD231458907<<<<<<<<<<<<<<<",
		"7408122F1204159UTO<<<<<<<<<<<6",
		"ERIKSSON<<ANNA<MARIA<<<<<<<<<<",
	}
	var s []sample
	add := func(name string, k Kind, c Channel, m Message) {
		s = append(s, sample{name: name, topic: topicOf(k, c), msg: m})
	}
	add("tap card", KindReader, ChannelTap, Tap{RequestID: "r1-000042", Door: tDoor, Card: 1234567, Time: t0})
	add("tap wiegand pin", KindDoor, ChannelTap, Tap{RequestID: "d.7:x_y-z", Door: tDoor, Card: tWiegandCard, Wiegand: tWiegand, Time: t0, PIN: true})
	add("tap max card no time", KindReader, ChannelTap, Tap{RequestID: "r", Door: tDoor, Card: 18446744073709551615})
	add("decision grant", KindReader, ChannelDecision, Decision{RequestID: "r1-000042", Door: tDoor, Grant: true,
		Reason: access.ReasonGranted, Unlock: 5 * time.Second, Mode: access.Online, Node: "edge-1", Time: t0})
	add("decision deny", KindDoor, ChannelDecision, Decision{RequestID: "r1-000043", Door: tDoor,
		Reason: access.ReasonNoOfflineAccess, Mode: access.Offline, Node: "edge-2", Time: t0, CacheVersion: 17})
	for _, r := range access.Reasons() {
		d := Decision{RequestID: "r-" + r.String(), Door: tDoor, Reason: r, Node: "n", Time: t0, Mode: access.Online}
		if r == access.ReasonGranted {
			d.Grant, d.Unlock = true, time.Millisecond
		}
		add("decision "+r.String(), KindReader, ChannelDecision, d)
	}

	ev := func(typ DoorEventType) DoorEvent { return DoorEvent{Type: typ, Seq: 42, Time: t0} }
	for _, typ := range []DoorEventType{DoorOpened, DoorClosed, DoorRequestToExit, DoorForcedOpen, DoorHeldOpen, DoorFailSecure} {
		e := ev(typ)
		e.Door = tDoor
		add("door event "+string(typ), KindDoor, ChannelEvent, e)
	}
	add("door event tamper", KindDoor, ChannelEvent, ev(DoorTamper))
	e := ev(DoorTamperCleared)
	e.Door = tDoor
	add("door event tamper_cleared door", KindDoor, ChannelEvent, e)
	add("door event offline_started", KindDoor, ChannelEvent, ev(DoorOfflineStarted))
	add("door event offline_ended", KindDoor, ChannelEvent, ev(DoorOfflineEnded))
	add("door event offline_decision grant", KindDoor, ChannelEvent, DoorEvent{Type: DoorOfflineDecision, Seq: 1, Time: t0,
		Door: tDoor, Card: 1234567, Grant: true, Reason: access.ReasonGranted, RequestID: "r1-000044", CacheVersion: 17})
	add("door event offline_decision deny", KindDoor, ChannelEvent, DoorEvent{Type: DoorOfflineDecision, Seq: MaxInteger, Time: t0,
		Door: tDoor, Card: 7654321, Reason: access.ReasonNoOfflineAccess})
	add("door event cmd_rejected", KindDoor, ChannelEvent, DoorEvent{Type: DoorCmdRejected, Seq: 43, Time: t0,
		RequestID: "c-9.2", Error: "base version 16 does not match held version 15 \"quoted\" ✓"})

	add("door cmd unlock", KindDoor, ChannelCmd, DoorCmd{Type: DoorUnlock, RequestID: "c-1", Door: tDoor, Unlock: 3 * time.Second, Expires: t0.Add(10 * time.Second)})
	for _, m := range []DoorMode{DoorNormal, DoorUnlocked, DoorLocked} {
		add("door cmd set_mode "+string(m), KindDoor, ChannelCmd, DoorCmd{Type: DoorSetMode, RequestID: "c-2", Door: tDoor, Mode: m})
	}
	add("door cmd offline_cache full", KindDoor, ChannelCmd, DoorCmd{Type: DoorOfflineCache, RequestID: "c-3.1", Door: tDoor,
		Version: 17, Part: 1, Parts: 2, HighSecurity: true, MaxOffline: time.Hour,
		Entries: []CacheEntry{{Card: 1234567, Until: t0.Add(24 * time.Hour)}, {Card: 7654321, From: t0, Until: t0.Add(time.Hour)}}})
	add("door cmd offline_cache empty", KindDoor, ChannelCmd, DoorCmd{Type: DoorOfflineCache, RequestID: "c-4.1", Door: tDoor,
		Version: 1, Part: 1, Parts: 1})
	add("door cmd offline_cache delta", KindDoor, ChannelCmd, DoorCmd{Type: DoorOfflineCache, RequestID: "c-5.1", Door: tDoor,
		Version: 18, Base: 17, Part: 1, Parts: 1, Entries: []CacheEntry{{Card: 99, Until: t0.Add(time.Hour)}}, Remove: []access.CardNumber{7654321, 18446744073709551615}})
	add("door cmd ack", KindDoor, ChannelCmd, DoorCmd{Type: DoorAck, RequestID: "a-1", Seq: 42})
	add("door cmd ack resend", KindDoor, ChannelCmd, DoorCmd{Type: DoorAck, RequestID: "a-2", Seq: 40, Resend: true})
	add("door cmd heartbeat", KindDoor, ChannelCmd, DoorCmd{Type: DoorHeartbeat, RequestID: "h-1", Time: t0})

	add("kiosk event qr_scanned", KindKiosk, ChannelEvent, KioskEvent{Type: KioskQRScanned, Seq: 5, Time: t0, RequestID: "k-1",
		Token: "eyJhbGciOiJFZERTQSJ9.eyJ2IjoiMDFKRCJ9.c2ln\n\"odd\" ünïcode"})
	add("kiosk event id_scanned td3", KindKiosk, ChannelEvent, KioskEvent{Type: KioskIDScanned, Seq: 6, Time: t0, RequestID: "k-2",
		DocType: DocPassport, MRZ: mrzTD3, Visit: tVisit})
	add("kiosk event id_scanned td1", KindKiosk, ChannelEvent, KioskEvent{Type: KioskIDScanned, Seq: 7, Time: t0, RequestID: "k-3",
		DocType: DocIDCard, MRZ: mrzTD1})
	add("kiosk event check_in", KindKiosk, ChannelEvent, KioskEvent{Type: KioskCheckIn, Seq: 8, Time: t0, RequestID: "k-4", Visit: tVisit})
	add("kiosk event check_out visit", KindKiosk, ChannelEvent, KioskEvent{Type: KioskCheckOut, Seq: 9, Time: t0, RequestID: "k-5", Visit: tVisit})
	add("kiosk event check_out card", KindKiosk, ChannelEvent, KioskEvent{Type: KioskCheckOut, Seq: 10, Time: t0, RequestID: "k-6", Card: 1234567})
	add("kiosk event cmd_rejected", KindKiosk, ChannelEvent, KioskEvent{Type: KioskCmdRejected, Seq: 11, Time: t0, RequestID: "k-1", Error: "unknown screen"})
	add("kiosk cmd show_result ok", KindKiosk, ChannelCmd, KioskCmd{Type: KioskShowResult, RequestID: "k-4", OK: true, Code: "checked_in",
		Message: "Welcome, Ada! Your host is on the way.", Visit: tVisit})
	add("kiosk cmd show_result fail", KindKiosk, ChannelCmd, KioskCmd{Type: KioskShowResult, RequestID: "k-1", Code: "invitation_expired"})
	add("kiosk cmd dispensing", KindKiosk, ChannelCmd, KioskCmd{Type: KioskDispensing, RequestID: "k-4", Dispenser: "disp-1"})
	add("kiosk cmd ack", KindKiosk, ChannelCmd, KioskCmd{Type: KioskAck, RequestID: "a-9", Seq: 11, Resend: true})

	dev := func(typ DispenserEventType, id string, card access.CardNumber, errText string) DispenserEvent {
		return DispenserEvent{Type: typ, Seq: 3, Time: t0, RequestID: id, Card: card, Error: errText}
	}
	add("dispenser event dispensed", KindDispenser, ChannelEvent, dev(DispenserDispensed, "e-1", 1234567, ""))
	add("dispenser event dispensed unread", KindDispenser, ChannelEvent, dev(DispenserDispensed, "e-1", 0, ""))
	add("dispenser event encoded", KindDispenser, ChannelEvent, dev(DispenserEncoded, "e-2", 1234567, ""))
	add("dispenser event encode_failed", KindDispenser, ChannelEvent, dev(DispenserEncodeFailed, "e-2", 1234567, "verify mismatch"))
	add("dispenser event captured", KindDispenser, ChannelEvent, dev(DispenserCaptured, "e-3", 1234567, ""))
	add("dispenser event card_inserted", KindDispenser, ChannelEvent, dev(DispenserCardInserted, "", 1234567, ""))
	add("dispenser event empty", KindDispenser, ChannelEvent, dev(DispenserEmpty, "e-1", 0, ""))
	add("dispenser event jam", KindDispenser, ChannelEvent, dev(DispenserJam, "", 0, ""))
	add("dispenser event cmd_rejected", KindDispenser, ChannelEvent, dev(DispenserCmdRejected, "e-9", 0, "busy"))
	add("dispenser cmd dispense", KindDispenser, ChannelCmd, DispenserCmd{Type: DispenserDispense, RequestID: "e-1"})
	add("dispenser cmd encode", KindDispenser, ChannelCmd, DispenserCmd{Type: DispenserEncode, RequestID: "e-2", Card: 1234567})
	add("dispenser cmd capture", KindDispenser, ChannelCmd, DispenserCmd{Type: DispenserCapture, RequestID: "e-3"})
	add("dispenser cmd ack", KindDispenser, ChannelCmd, DispenserCmd{Type: DispenserAck, RequestID: "a-3", Seq: 3})

	add("state offline", KindDoor, ChannelState, State{})
	add("state reader", KindReader, ChannelState, State{Online: true, Firmware: "2.1.0", Reader: &ReaderStatus{Tamper: true}})
	add("state reader bare", KindReader, ChannelState, State{Online: true, Firmware: "x"})
	add("state door", KindDoor, ChannelState, State{Online: true, Firmware: "4.0.1-rc2+g1a2b", Time: t0, LastSeq: 43,
		Door: &DoorStatus{Offline: true, Tamper: true, Doors: []DoorState{
			{Door: tDoor, Mode: DoorNormal, Open: true, CacheVersion: 17, FailSecure: true},
			{Door: tDoor2, Mode: DoorLocked},
		}}})
	add("state kiosk", KindKiosk, ChannelState, State{Online: true, Firmware: "k 1.0", LastSeq: 11, Kiosk: &KioskStatus{Faults: []string{"id_scanner", "printer"}}})
	add("state dispenser", KindDispenser, ChannelState, State{Online: true, Firmware: "d1", Dispenser: &DispenserStatus{
		Stack: StackLow, CardHeld: true, CaptureFull: true, Faults: []string{"jam"}}})
	return s
}

// mustMarshal marshals m or fails the test.
func mustMarshal(tb testing.TB, m Message) []byte {
	tb.Helper()
	b, err := m.Marshal()
	if err != nil {
		tb.Fatalf("Marshal(%+v): %v", m, err)
	}
	return b
}

// decoderFor returns a function decoding payloads of topic t.
func decoderFor(t Topic) func([]byte) (Message, error) {
	return func(b []byte) (Message, error) { return Decode(t, b) }
}

func describe(m Message) string { return fmt.Sprintf("%T%+v", m, m) }

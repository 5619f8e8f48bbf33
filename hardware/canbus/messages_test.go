package canbus

import (
	"bytes"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

func TestMessagesRoundTrip(t *testing.T) {
	seen := map[MsgType]bool{}
	for _, s := range samples() {
		t.Run(s.name, func(t *testing.T) {
			typ, b, err := Encode(s.msg)
			if err != nil {
				t.Fatal(err)
			}
			seen[typ] = true
			if len(b) > MaxMessage {
				t.Fatalf("%d bytes", len(b))
			}
			got, err := Decode(typ, b)
			if err != nil {
				t.Fatalf("decode %x: %v", b, err)
			}
			if !reflect.DeepEqual(got, s.msg) {
				t.Fatalf("round trip of %x:\n got %#v\nwant %#v", b, got, s.msg)
			}
			// Every proper prefix is refused, and so is every extension.
			for n := 0; n < len(b); n++ {
				if _, err := Decode(typ, b[:n]); err == nil {
					t.Fatalf("prefix %x of %x decodes", b[:n], b)
				}
			}
			if _, err := Decode(typ, append(bytes.Clone(b), 0)); err == nil {
				t.Fatalf("%x with a byte more decodes", b)
			}
		})
	}
	for _, typ := range Types() {
		if !seen[typ] {
			t.Errorf("no sample of type %s", typ)
		}
	}
}

// TestMessagesMatchMQTT checks that what CAN carries is what MQTT carries:
// the payloads of the JSON examples of docs/protocol-mqtt.md for door
// controllers and readers decode (with mqttproto), encode for CAN, and
// decode back to the same message.
func TestMessagesMatchMQTT(t *testing.T) {
	raw := mustRead(t, "../../docs/protocol-mqtt.md")
	n := 0
	for _, ex := range taggedBlocks(raw, "json ") {
		kind, channel, _ := strings.Cut(ex.tag, "/")
		if kind != "door" && !(kind == "reader" && (channel == "tap" || channel == "decision")) {
			continue
		}
		for _, payload := range ex.payloads() {
			topic := mqttproto.Topic{Site: "hq", Kind: mqttproto.Kind(kind), Device: "d-1", Channel: mqttproto.Channel(channel)}
			m, err := mqttproto.Decode(topic, []byte(payload))
			if err != nil {
				t.Fatalf("line %d: %v", ex.line, err)
			}
			typ, b, err := Encode(m)
			if err != nil {
				t.Fatalf("line %d: %v", ex.line, err)
			}
			got, err := Decode(typ, b)
			if err != nil || !reflect.DeepEqual(got, m) {
				t.Fatalf("line %d: round trip: %v\n got %#v\nwant %#v", ex.line, err, got, m)
			}
			n++
		}
	}
	if n < 25 {
		t.Fatalf("only %d examples", n)
	}
}

func TestEncodeRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  mqttproto.Message
		want error
	}{
		{"invalid tap", mqttproto.Tap{RequestID: "r", Door: tDoor}, mqttproto.ErrMissingField},
		{"invalid decision", mqttproto.Decision{RequestID: "r", Door: tDoor, Reason: access.ReasonGranted, Node: "n", Time: t0}, mqttproto.ErrBadValue},
		{"kiosk state", mqttproto.State{Online: true, Firmware: "1", Kiosk: &mqttproto.KioskStatus{}}, ErrBadMessage},
		{"kiosk event", mqttproto.KioskEvent{}, ErrBadMessage},
		{"invalid cmd", mqttproto.DoorCmd{Type: "open", RequestID: "r"}, mqttproto.ErrBadValue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Encode(tc.msg)
			checkError(t, err, ErrBadMessage)
			checkError(t, err, tc.want)
		})
	}
}

func hexBytes(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeRefuses(t *testing.T) {
	door := "01 93 51 D2 DC 93 1D 05 50 D8 18 4E 51 A3 EC DC" // tDoor, see TestIDBytes
	for _, tc := range []struct {
		name string
		typ  MsgType
		hex  string
		want error
	}{
		{"empty", TypeTap, "", ErrBadMessage},
		{"version 0", TypeTap, "00", ErrVersion},
		{"version 2", TypeHeartbeat, "02 01 68 00 00 00 00 00 01", ErrVersion},
		{"tap reserved flag", TypeTap, "01 08" + door + "01 72 01", ErrBadMessage},
		{"tap card zero", TypeTap, "01 00" + door + "01 72 00", mqttproto.ErrMissingField},
		{"tap empty request id", TypeTap, "01 00" + door + "00 01", ErrBadMessage},
		{"tap long request id", TypeTap, "01 00" + door + "41" + strings.Repeat("72", 65) + "01", ErrBadMessage},
		{"tap bad request id", TypeTap, "01 00" + door + "01 2F 01", mqttproto.ErrBadValue},
		{"tap non-minimal varint", TypeTap, "01 00" + door + "01 72 81 00", ErrBadMessage},
		{"tap varint overflow", TypeTap, "01 00" + door + "01 72 FF FF FF FF FF FF FF FF FF 7F", ErrBadMessage},
		{"tap wiegand 0 bits", TypeTap, "01 01" + door + "01 72 00", ErrBadMessage},
		{"tap wiegand 65 bits", TypeTap, "01 01" + door + "01 72 41" + strings.Repeat("00", 9), ErrBadMessage},
		{"tap wiegand parity", TypeTap, "01 01" + door + "01 72 1A 00 00 00 00", mqttproto.ErrBadValue},
		{"tap time before 2000", TypeTap, "01 02" + door + "01 72 01 00 00 00 00 03 E8", mqttproto.ErrBadValue},
		{"tap trailing byte", TypeTap, "01 00" + door + "01 72 01 00", ErrBadMessage},
		{"decision reason 0", TypeDecision, "01 01" + door + "00 00 DC 6C 36 1E 7B 01 72 01 6E 00", ErrBadMessage},
		{"decision reason 14", TypeDecision, "01 01" + door + "0E 00 DC 6C 36 1E 7B 01 72 01 6E 00", ErrBadMessage},
		{"decision grant no unlock", TypeDecision, "01 01" + door + "01 00 DC 6C 36 1E 7B 01 72 01 6E 00 00 00 00 00", mqttproto.ErrMissingField},
		{"decision grant unlock too long", TypeDecision, "01 01" + door + "01 00 DC 6C 36 1E 7B 01 72 01 6E 00 09 27 C1 00", mqttproto.ErrBadValue},
		{"event code 0", TypeEvent, "01 00 00 01 00 DC 6C 36 1E 7B", ErrBadMessage},
		{"event code 13", TypeEvent, "01 0D 00 01 00 DC 6C 36 1E 7B", ErrBadMessage},
		{"event seq 0", TypeEvent, "01 09 00 00 00 DC 6C 36 1E 7B", mqttproto.ErrMissingField},
		{"event door missing", TypeEvent, "01 01 00 01 00 DC 6C 36 1E 7B", mqttproto.ErrMissingField},
		{"event field not allowed", TypeEvent, "01 09 02 01 00 DC 6C 36 1E 7B 05", mqttproto.ErrUnknownField},
		{"event card flag zero", TypeEvent, "01 09 02 01 00 DC 6C 36 1E 7B 00", ErrBadMessage},
		{"event reserved flag", TypeEvent, "01 09 40 01 00 DC 6C 36 1E 7B", ErrBadMessage},
		{"event error too long", TypeEvent, "01 0C 28 01 00 DC 6C 36 1E 7B 01 72 01 01" + strings.Repeat("65", 257), ErrBadMessage},
		{"event error control char", TypeEvent, "01 0C 28 01 00 DC 6C 36 1E 7B 01 72 00 01 07", mqttproto.ErrBadValue},
		{"state offline with flags", TypeState, "01 02", ErrBadMessage},
		{"state tamper without door", TypeState, "01 09 01 31 00", ErrBadMessage},
		{"state 17 doors", TypeState, "01 05 01 31 00 11", ErrBadMessage},
		{"state door mode 4", TypeState, "01 05 01 31 00 01" + door + "04 00 00", ErrBadMessage},
		{"state duplicate door", TypeState, "01 05 01 31 00 02" + door + "01 00 00" + door + "01 00 00", mqttproto.ErrBadValue},
		{"state firmware control char", TypeState, "01 01 01 07 00", mqttproto.ErrBadValue},
		{"not a command type", TypeTap + 0x20, "01", ErrBadMessage},
		{"set_mode mode 0", TypeSetMode, "01 01 72" + door + "00", ErrBadMessage},
		{"unlock expired zero", TypeUnlock, "01 01 72" + door + "00 00 13 88 00 00 00 00 00 00", mqttproto.ErrBadValue},
		{"cache part above parts", TypeOfflineCache, "01 00 01 72" + door + "01 00 00 02 00 01 00 00 00 00 00", mqttproto.ErrBadValue},
		{"cache remove in full", TypeOfflineCache, "01 00 01 72" + door + "01 00 00 01 00 01 00 00 00 00 01 05", mqttproto.ErrBadValue},
		{"cache entry count too big", TypeOfflineCache, "01 00 01 72" + door + "01 00 00 01 00 01 00 FF FF 00 00", ErrBadMessage},
		{"cache duplicate card", TypeOfflineCache, "01 00 01 72" + door + "02 01 00 01 00 01 00 00 01 00 05 00 DC 6C 36 1E 7B 00 01 05", mqttproto.ErrBadValue},
		{"cache max offline too big", TypeOfflineCache, "01 00 01 72" + door + "01 00 00 01 00 01 FF FF FF FF FF FF FF FF FF 01 00 00 00 00", ErrBadMessage},
		{"ack seq 0", TypeAck, "01 00 01 72 00", mqttproto.ErrMissingField},
		{"ack reserved flag", TypeAck, "01 02 01 72 01", ErrBadMessage},
		{"heartbeat truncated time", TypeHeartbeat, "01 01 68 00 00 01", ErrBadMessage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Decode(tc.typ, hexBytes(t, tc.hex))
			if err == nil {
				t.Fatalf("decoded %#v", m)
			}
			checkError(t, err, tc.want)
		})
	}
}

func TestIDBytes(t *testing.T) {
	var w writer
	w.id(tDoor)
	if got, want := hex.EncodeToString(w.b), "019351d2dc931d0550d8184e51a3ecdc"; got != want {
		t.Fatalf("id bytes %s, want %s", got, want)
	}
	if got := idFromBytes(w.b); got != tDoor {
		t.Fatalf("back: %s", got)
	}
	// The ID's time survives: the first 6 bytes are its milliseconds.
	ms := int64(0)
	for _, c := range w.b[:6] {
		ms = ms<<8 | int64(c)
	}
	if got, want := time.UnixMilli(ms).UTC(), tDoor.Time(); !got.Equal(want) {
		t.Fatalf("time %v, want %v", got, want)
	}
	for _, id := range []access.ID{"00000000000000000000000000", "7ZZZZZZZZZZZZZZZZZZZZZZZZZ", access.MustNewID()} {
		var w writer
		w.id(id)
		if got := idFromBytes(w.b); got != id {
			t.Errorf("%s -> %x -> %s", id, w.b, got)
		}
	}
}

func TestWireCodesCoverDomain(t *testing.T) {
	for _, r := range access.Reasons() {
		if reasonCode(r) == 0 {
			t.Errorf("reason %s has no wire code", r)
		}
	}
	if got, want := len(wireReasons)-1, len(access.Reasons()); got != want {
		t.Errorf("%d wire reasons, %d domain reasons", got, want)
	}
}

func TestPriority(t *testing.T) {
	for _, tc := range []struct {
		msg  mqttproto.Message
		want uint8
	}{
		{mqttproto.DoorCmd{Type: mqttproto.DoorSetMode, Mode: mqttproto.DoorLocked}, PrioRevocation},
		{mqttproto.DoorCmd{Type: mqttproto.DoorOfflineCache, Remove: []access.CardNumber{1}}, PrioRevocation},
		{mqttproto.DoorEvent{Type: mqttproto.DoorForcedOpen}, PrioAlarm},
		{mqttproto.DoorEvent{Type: mqttproto.DoorTamper}, PrioAlarm},
		{mqttproto.Tap{}, PrioTap},
		{mqttproto.Decision{}, PrioTap},
		{mqttproto.DoorCmd{Type: mqttproto.DoorUnlock}, PrioCommand},
		{mqttproto.DoorCmd{Type: mqttproto.DoorSetMode, Mode: mqttproto.DoorNormal}, PrioCommand},
		{mqttproto.DoorEvent{Type: mqttproto.DoorOpened}, PrioCommand},
		{mqttproto.DoorCmd{Type: mqttproto.DoorAck}, PrioAck},
		{mqttproto.State{}, PrioAck},
		{mqttproto.DoorCmd{Type: mqttproto.DoorOfflineCache}, PrioCache},
		{mqttproto.DoorCmd{Type: mqttproto.DoorHeartbeat}, PrioHeartbeat},
	} {
		if got := Priority(tc.msg); got != tc.want {
			t.Errorf("Priority(%#v) = %d, want %d", tc.msg, got, tc.want)
		}
	}
}

// TestCacheCmdsFit checks that the parts mqttproto.OfflineCache.Cmds makes
// for MQTT always fit in a CAN message, with the largest entries.
func TestCacheCmdsFit(t *testing.T) {
	var c mqttproto.OfflineCache
	c.Door, c.Version, c.Base, c.HighSecurity, c.MaxOffline = tDoor, mqttproto.MaxInteger, mqttproto.MaxInteger-1, true, mqttproto.MaxOfflineLimit
	for i := range 2000 {
		c.Entries = append(c.Entries, mqttproto.CacheEntry{Card: access.CardNumber(1<<63 + uint64(i)), From: t0, Until: t0.Add(time.Hour)})
		c.Remove = append(c.Remove, access.CardNumber(1<<62+uint64(i)))
	}
	cmds, err := c.Cmds(strings.Repeat("r", mqttproto.MaxRequestID-6))
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range cmds {
		_, b, err := EncodeDoorCmd(cmd)
		if err != nil {
			t.Fatalf("part %d: %v", cmd.Part, err)
		}
		if len(b) > MaxMessage {
			t.Fatalf("part %d: %d bytes", cmd.Part, len(b))
		}
	}
	t.Logf("%d parts, %d entries", len(cmds), len(c.Entries))
}

package mqttproto

import (
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

// edit is one decoding case made from a good base payload by replacing
// from (which must occur in it) with to.
type edit struct {
	name     string
	from, to string
	want     error // nil: must decode
	also     error // a further error the result must wrap, if any
	msg      string
}

// runEdits decodes each edit of base as a payload of topic.
func runEdits(t *testing.T, topic Topic, base string, edits []edit) {
	t.Helper()
	if _, err := Decode(topic, []byte(base)); err != nil {
		t.Fatalf("base payload does not decode: %v\n%s", err, base)
	}
	for _, e := range edits {
		t.Run(e.name, func(t *testing.T) {
			if !strings.Contains(base, e.from) {
				t.Fatalf("base has no %q", e.from)
			}
			in := strings.Replace(base, e.from, e.to, 1)
			m, err := Decode(topic, []byte(in))
			if e.want == nil {
				if err != nil {
					t.Fatalf("decoding %s: %v", in, err)
				}
				// What decodes must marshal and decode to the same value.
				again, err := Decode(topic, mustMarshal(t, m))
				if err != nil || !reflect.DeepEqual(again, m) {
					t.Fatalf("round trip of %s: %v\n got %s\nwant %s", in, err, describe(again), describe(m))
				}
				return
			}
			checkErr(t, in, err, e.want, e.msg)
			if e.also != nil && !errors.Is(err, e.also) {
				t.Fatalf("error %q does not wrap %q", err, e.also)
			}
		})
	}
}

const (
	tapBase = `{"v":1,"request_id":"r1","door":"01JD8X5Q4K3M2N1P0R9S8T7V6W","card":"1234","time":1767261600123}`
	// wiegandBase carries H10301 facility 12 card 3456.
	wiegandBase = `{"v":1,"request_id":"r1","door":"01JD8X5Q4K3M2N1P0R9S8T7V6W","wiegand":{"frame":"181b01","bits":26},"time":1767261600123,"pin":true}`
)

func TestDecodeTap(t *testing.T) {
	topic := topicOf(KindReader, ChannelTap)
	runEdits(t, topic, tapBase, []edit{
		{name: "OK"},
		{name: "PINFalse", from: `}`, to: `,"pin":false}`},
		{name: "LowerCaseDoor", from: "01JD8X5Q4K3M2N1P0R9S8T7V6W", to: "01jd8x5q4k3m2n1p0r9s8t7v6w"},
		{name: "EscapedRequestID", from: `"r1"`, to: `"\u0072\u0031"`},
		{name: "RequestID64", from: `"r1"`, to: `"` + strings.Repeat("a", 64) + `"`},
		{name: "ErrRequestIDEmpty", from: `"r1"`, to: `""`, want: ErrBadValue, msg: `"request_id": empty string`},
		{name: "ErrRequestIDLong", from: `"r1"`, to: `"` + strings.Repeat("a", 65) + `"`, want: ErrBadValue, msg: "65 characters"},
		{name: "ErrRequestIDSpace", from: `"r1"`, to: `"r 1"`, want: ErrBadValue, msg: "character 1"},
		{name: "ErrRequestIDSlash", from: `"r1"`, to: `"r/1"`, want: ErrBadValue, msg: "character 1"},
		{name: "ErrRequestIDNumber", from: `"r1"`, to: `1`, want: ErrBadValue, msg: "want a string, got a number"},
		{name: "ErrDoorShort", from: `"01JD8X5Q4K3M2N1P0R9S8T7V6W"`, to: `"lobby"`, want: ErrBadValue, also: access.ErrBadID, msg: `"door": "lobby" is not a ULID`},
		{name: "ErrDoorOverflow", from: `"01JD8X5Q4K3M2N1P0R9S8T7V6W"`, to: `"81JD8X5Q4K3M2N1P0R9S8T7V6W"`, want: ErrBadValue, also: access.ErrBadID, msg: "not a ULID"},
		{name: "ErrDoorLetterU", from: `"01JD8X5Q4K3M2N1P0R9S8T7V6W"`, to: `"01JD8X5Q4K3M2N1P0R9S8T7V6U"`, want: ErrBadValue, also: access.ErrBadID, msg: "not a ULID"},
		{name: "CardMax", from: `"1234"`, to: `"18446744073709551615"`},
		{name: "ErrCardZero", from: `"1234"`, to: `"0"`, want: ErrBadValue, also: access.ErrBadCardNumber, msg: `"card": "0" is not a card number`},
		{name: "ErrCardOverflow", from: `"1234"`, to: `"18446744073709551616"`, want: ErrBadValue, also: access.ErrBadCardNumber, msg: "not a card number"},
		{name: "ErrCardHuge", from: `"1234"`, to: `"123456789012345678901234567890"`, want: ErrBadValue, also: access.ErrBadCardNumber, msg: "not a card number"},
		{name: "ErrCardNegative", from: `"1234"`, to: `"-1"`, want: ErrBadValue, also: access.ErrBadCardNumber, msg: "not a card number"},
		{name: "ErrCardLeadingZero", from: `"1234"`, to: `"01234"`, want: ErrBadValue, also: access.ErrBadCardNumber, msg: "leading zeros"},
		{name: "ErrCardExponent", from: `"1234"`, to: `"1e3"`, want: ErrBadValue, also: access.ErrBadCardNumber, msg: "not a card number"},
		{name: "ErrCardSpace", from: `"1234"`, to: `" 1234"`, want: ErrBadValue, also: access.ErrBadCardNumber, msg: "not a card number"},
		{name: "ErrCardNumber", from: `"1234"`, to: `1234`, want: ErrBadValue, msg: `"card": want a string, got a number`},
		{name: "ErrNoCredential", from: `"card":"1234",`, to: ``, want: ErrMissingField, msg: `one of "card" and "wiegand" is required`},
		{name: "ErrCardAndWiegand", from: `"card":"1234"`, to: `"card":"1234","wiegand":{"frame":"181b01","bits":26}`, want: ErrBadValue, msg: "not both"},
		{name: "NoTime", from: `,"time":1767261600123`, to: ``},
		{name: "ErrTimeSeconds", from: `1767261600123`, to: `1767261600`, want: ErrBadValue, msg: "seconds instead of milliseconds"},
		{name: "ErrTimeZero", from: `1767261600123`, to: `0`, want: ErrBadValue, msg: "before 2000-01-01"},
		{name: "ErrTime2100", from: `1767261600123`, to: `4102444800000`, want: ErrBadValue, msg: "not before 2100-01-01"},
		{name: "ErrTimeFraction", from: `1767261600123`, to: `1767261600123.5`, want: ErrBadValue, msg: "non-negative integer"},
		{name: "ErrTimeExponent", from: `1767261600123`, to: `1.767e12`, want: ErrBadValue, msg: "non-negative integer"},
		{name: "ErrTimeNegative", from: `1767261600123`, to: `-1767261600123`, want: ErrBadValue, msg: "non-negative integer"},
		{name: "ErrTime2p53", from: `1767261600123`, to: `9007199254740992`, want: ErrBadValue, msg: "out of range"},
		{name: "ErrTimeHuge", from: `1767261600123`, to: `99999999999999999999999`, want: ErrBadValue, msg: "out of range"},
		{name: "ErrTimeString", from: `1767261600123`, to: `"2026-01-01T10:00:00Z"`, want: ErrBadValue, msg: "want an integer, got a string"},
		{name: "ErrPINString", from: `}`, to: `,"pin":"yes"}`, want: ErrBadValue, msg: `"pin": want true or false`},
		{name: "ErrPINNumber", from: `}`, to: `,"pin":1}`, want: ErrBadValue, msg: "want true or false"},
		{name: "ErrStaleFieldName", from: `"request_id"`, to: `"requestId"`, want: ErrSyntax, msg: `object key "requestId"`},
		{name: "ErrDeviceTimeName", from: `"time"`, to: `"device_time"`, want: ErrUnknownField, msg: `unknown field "device_time"`},
	})
	runEdits(t, topic, wiegandBase, []edit{
		{name: "OK"},
		{name: "UpperHex", from: `"181b01"`, to: `"181B01"`},
		{name: "LeadingZeros", from: `"181b01"`, to: `"0000181b01"`},
		{name: "ErrParity", from: `"181b01"`, to: `"181b00"`, want: ErrBadValue, also: access.ErrBadParity, msg: `"wiegand": access.DecodeWiegand: H10301 parity bit 26`},
		{name: "ErrUnknownLength", from: `"bits":26`, to: `"bits":27`, want: ErrBadValue, also: access.ErrUnknownFormat, msg: "27 bits"},
		{name: "ErrBitsAboveLength", from: `"181b01"`, to: `"7fffffff"`, want: ErrBadValue, also: access.ErrBadLength, msg: "bits set above"},
		{name: "ErrBitsZero", from: `"bits":26`, to: `"bits":0`, want: ErrBadValue, msg: `"wiegand.bits": 0 is not a frame length`},
		{name: "ErrBits65", from: `"bits":26`, to: `"bits":65`, want: ErrBadValue, msg: "65 is not a frame length"},
		{name: "ErrFrameNotHex", from: `"181b01"`, to: `"xyz"`, want: ErrBadValue, msg: `"wiegand.frame": "xyz" is not 1 to 16 hexadecimal digits`},
		{name: "ErrFrame0x", from: `"181b01"`, to: `"0x181b01"`, want: ErrBadValue, msg: "hexadecimal digits"},
		{name: "ErrFrameTooLong", from: `"181b01"`, to: `"00000000000181b01"`, want: ErrBadValue, msg: "hexadecimal digits"},
		{name: "ErrFrameNumber", from: `"181b01"`, to: `1580801`, want: ErrBadValue, msg: "want a string"},
		{name: "ErrNoBits", from: `,"bits":26`, to: ``, want: ErrMissingField, msg: `"wiegand.bits" is required`},
		{name: "ErrWiegandExtra", from: `"bits":26`, to: `"bits":26,"parity":"ok"`, want: ErrUnknownField, msg: `unknown field "wiegand.parity"`},
		{name: "ErrWiegandString", from: `{"frame":"181b01","bits":26}`, to: `"181b01"`, want: ErrBadValue, msg: `"wiegand": want an object`},
		{name: "ErrWiegandDuplicateKey", from: `"bits":26`, to: `"bits":26,"bits":26`, want: ErrSyntax, msg: `duplicate key "bits"`},
	})

	// The decoded tap carries the number of the Wiegand credential.
	got, err := DecodeTap([]byte(wiegandBase))
	if err != nil {
		t.Fatal(err)
	}
	want := Tap{RequestID: "r1", Door: tDoor, Card: tWiegandCard, Wiegand: tWiegand, Time: t0.Truncate(time.Second).Add(123 * time.Millisecond), PIN: true}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	// A lower-case door ID comes out canonical.
	got, err = DecodeTap([]byte(strings.Replace(tapBase, string(tDoor), strings.ToLower(string(tDoor)), 1)))
	if err != nil || got.Door != tDoor {
		t.Fatalf("got door %q, %v; want %q", got.Door, err, tDoor)
	}
}

func TestMarshalTapRefusesInvalid(t *testing.T) {
	ok := Tap{RequestID: "r", Door: tDoor, Card: 1, Time: t0}
	for _, tc := range []struct {
		name string
		tap  func(*Tap)
		want error
		also error
	}{
		{"ErrZero", func(x *Tap) { *x = Tap{} }, ErrMissingField, nil},
		{"ErrNoCredential", func(x *Tap) { x.Card = 0 }, ErrMissingField, nil},
		{"ErrLowerCaseDoor", func(x *Tap) { x.Door = access.ID(strings.ToLower(string(tDoor))) }, ErrBadValue, access.ErrBadID},
		{"ErrWiegandParity", func(x *Tap) { x.Card = 0; x.Wiegand = Wiegand{Frame: tWiegand.Frame ^ 1, Bits: 26} }, ErrBadValue, access.ErrBadParity},
		{"ErrCardMismatch", func(x *Tap) { x.Card = 5; x.Wiegand = tWiegand }, ErrBadValue, nil},
		{"ErrTime", func(x *Tap) { x.Time = time.Unix(0, 0) }, ErrBadValue, nil},
		{"ErrRequestID", func(x *Tap) { x.RequestID = "a\x00" }, ErrBadValue, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := ok
			tc.tap(&x)
			_, err := x.Marshal()
			checkErr(t, describe(x), err, tc.want, "")
			if tc.also != nil && !errors.Is(err, tc.also) {
				t.Fatalf("%v does not wrap %v", err, tc.also)
			}
		})
	}
	// A Wiegand tap marshals without its card number, which the receiver
	// derives from the frame.
	b := mustMarshal(t, Tap{RequestID: "r", Door: tDoor, Wiegand: tWiegand, Time: t0})
	if strings.Contains(string(b), `"card"`) {
		t.Fatalf("wiegand tap carries a card: %s", b)
	}
}

const decisionBase = `{"v":1,"request_id":"r1","door":"01JD8X5Q4K3M2N1P0R9S8T7V6W","grant":true,"reason":"granted","unlock_ms":5000,"mode":"online","node":"edge-1","time":1767261600123,"cache_version":17}`

func TestDecodeDecision(t *testing.T) {
	runEdits(t, topicOf(KindDoor, ChannelDecision), decisionBase, []edit{
		{name: "OK"},
		{name: "Deny", from: `"grant":true,"reason":"granted","unlock_ms":5000`, to: `"grant":false,"reason":"anti_passback"`},
		{name: "Offline", from: `"online"`, to: `"offline"`},
		{name: "NoCacheVersion", from: `,"cache_version":17`, to: ``},
		{name: "ErrGrantContradicts", from: `"reason":"granted"`, to: `"reason":"no_group"`, want: ErrBadValue, msg: `"grant": true contradicts reason "no_group"`},
		{name: "ErrDenyContradicts", from: `"grant":true`, to: `"grant":false`, want: ErrBadValue, msg: "false contradicts"},
		{name: "ErrUnknownReason", from: `"granted"`, to: `"maybe"`, want: ErrBadValue, msg: `unknown reason "maybe"`},
		{name: "ErrReasonNumber", from: `"granted"`, to: `1`, want: ErrBadValue, msg: `"reason": want a string`},
		{name: "ErrUnlockOnDeny", from: `"grant":true,"reason":"granted"`, to: `"grant":false,"reason":"no_group"`, want: ErrBadValue, msg: "must be left out on a deny"},
		{name: "ErrNoUnlockOnGrant", from: `,"unlock_ms":5000`, to: ``, want: ErrMissingField, msg: `"unlock_ms" is required on a grant`},
		{name: "ErrUnlockTooLong", from: `5000`, to: `600001`, want: ErrBadValue, msg: "600001 ms is outside 1..600000 ms"},
		{name: "ErrUnlockHuge", from: `5000`, to: `9007199254740991`, want: ErrBadValue, msg: "out of range"},
		{name: "ErrMode", from: `"online"`, to: `"sideways"`, want: ErrBadValue, msg: `unknown mode "sideways"`},
		{name: "ErrNode", from: `"edge-1"`, to: `"edge 1"`, want: ErrBadValue, msg: `"node"`},
		{name: "ErrCacheVersion", from: `"cache_version":17`, to: `"cache_version":9007199254740992`, want: ErrBadValue, msg: `"cache_version": 9007199254740992 is out of range`},
		{name: "ErrGrantString", from: `"grant":true`, to: `"grant":"true"`, want: ErrBadValue, msg: `"grant": want true or false`},
	})
}

const (
	doorEventBase   = `{"v":1,"type":"door_opened","seq":42,"time":1767261600123,"door":"01JD8X5Q4K3M2N1P0R9S8T7V6W"}`
	offlineDecision = `{"v":1,"type":"offline_decision","seq":43,"time":1767261600123,"door":"01JD8X5Q4K3M2N1P0R9S8T7V6W","card":"1234567","grant":true,"reason":"granted","request_id":"r1","cache_version":17}`
	cmdRejected     = `{"v":1,"type":"cmd_rejected","seq":44,"time":1767261600123,"request_id":"c-1","error":"nope"}`
)

func TestDecodeDoorEvent(t *testing.T) {
	topic := topicOf(KindDoor, ChannelEvent)
	runEdits(t, topic, doorEventBase, []edit{
		{name: "OK"},
		{name: "TamperWithoutDoor", from: `"door_opened"`, to: `"tamper"`},
		{name: "ErrUnknownType", from: `"door_opened"`, to: `"door_exploded"`, want: ErrBadValue, msg: `unknown type "door_exploded" (want one of door_opened, door_closed`},
		{name: "ErrTypeNumber", from: `"door_opened"`, to: `3`, want: ErrBadValue, msg: `"type": want a string`},
		{name: "ErrNoType", from: `"type":"door_opened",`, to: ``, want: ErrMissingField, msg: `"type" is required`},
		{name: "ErrNoDoor", from: `,"door":"01JD8X5Q4K3M2N1P0R9S8T7V6W"`, to: ``, want: ErrMissingField, msg: `"door" is required in type "door_opened"`},
		{name: "ErrCardNotAllowed", from: `}`, to: `,"card":"1"}`, want: ErrUnknownField, msg: `"card" is not allowed in type "door_opened"`},
		{name: "ErrGrantNotAllowedEvenFalse", from: `}`, to: `,"grant":false}`, want: ErrUnknownField, msg: `"grant" is not allowed`},
		{name: "ErrDoorNotAllowed", from: `"door_opened"`, to: `"offline_started"`, want: ErrUnknownField, msg: `"door" is not allowed in type "offline_started"`},
		{name: "ErrSeqZero", from: `"seq":42`, to: `"seq":0`, want: ErrMissingField, msg: "sequence numbers start at 1"},
		{name: "ErrSeqNegative", from: `"seq":42`, to: `"seq":-1`, want: ErrBadValue, msg: "non-negative integer"},
		{name: "ErrSeqRange", from: `"seq":42`, to: `"seq":9007199254740992`, want: ErrBadValue, msg: "out of range"},
		{name: "ErrNoSeq", from: `"seq":42,`, to: ``, want: ErrMissingField, msg: `"seq" is required`},
	})
	runEdits(t, topic, offlineDecision, []edit{
		{name: "OK"},
		{name: "Deny", from: `"grant":true,"reason":"granted"`, to: `"grant":false,"reason":"card_outside_validity"`},
		{name: "Minimal", from: `,"request_id":"r1","cache_version":17`, to: ``},
		{name: "ErrNoGrant", from: `"grant":true,`, to: ``, want: ErrMissingField, msg: `"grant" is required in type "offline_decision"`},
		{name: "ErrNoReason", from: `,"reason":"granted"`, to: ``, want: ErrMissingField, msg: `"reason" is required`},
		{name: "ErrNoCard", from: `"card":"1234567",`, to: ``, want: ErrMissingField, msg: `"card" is required`},
		{name: "ErrContradiction", from: `"grant":true`, to: `"grant":false`, want: ErrBadValue, msg: "contradicts"},
		{name: "ErrCard", from: `"1234567"`, to: `"12x"`, want: ErrBadValue, also: access.ErrBadCardNumber, msg: `"card"`},
		{name: "ErrErrorNotAllowed", from: `}`, to: `,"error":"x"}`, want: ErrUnknownField, msg: `"error" is not allowed`},
	})
	runEdits(t, topic, cmdRejected, []edit{
		{name: "OK"},
		{name: "ErrNoError", from: `,"error":"nope"`, to: ``, want: ErrMissingField, msg: `"error" is required`},
		{name: "ErrControlChar", from: `"nope"`, to: `"no\u0007pe"`, want: ErrBadValue, msg: "control character U+0007"},
		{name: "ErrLongError", from: `"nope"`, to: `"` + strings.Repeat("é", 129) + `"`, want: ErrBadValue, msg: "258 bytes, more than 256"},
		{name: "ErrNoRequestID", from: `"request_id":"c-1",`, to: ``, want: ErrMissingField, msg: `"request_id" is required`},
	})
}

const (
	unlockBase = `{"v":1,"type":"unlock","request_id":"c-1","door":"01JD8X5Q4K3M2N1P0R9S8T7V6W","unlock_ms":3000,"expires":1767261610123}`
	cacheBase  = `{"v":1,"type":"offline_cache","request_id":"c-2.1","door":"01JD8X5Q4K3M2N1P0R9S8T7V6W","version":18,"base":17,"part":1,"parts":2,"high_security":true,"max_offline_ms":3600000,` +
		`"entries":[{"card":"1234567","until":1767348000123},{"card":"42","from":1767261600123,"until":1767265200123}],"remove":["7654321"]}`
)

func TestDecodeDoorCmd(t *testing.T) {
	topic := topicOf(KindDoor, ChannelCmd)
	runEdits(t, topic, unlockBase, []edit{
		{name: "OK"},
		{name: "ErrNoExpires", from: `,"expires":1767261610123`, to: ``, want: ErrMissingField, msg: `"expires" is required in type "unlock"`},
		{name: "ErrUnlockZero", from: `3000`, to: `0`, want: ErrMissingField, msg: `"unlock_ms" is required`},
		{name: "ErrUnlockLong", from: `3000`, to: `600001`, want: ErrBadValue, msg: "outside 1..600000"},
		{name: "ErrModeNotAllowed", from: `}`, to: `,"mode":"normal"}`, want: ErrUnknownField, msg: `"mode" is not allowed in type "unlock"`},
		{name: "ErrNoRequestID", from: `"request_id":"c-1",`, to: ``, want: ErrMissingField, msg: `"request_id" is required`},
		{name: "ErrUnknownType", from: `"unlock"`, to: `"open_sesame"`, want: ErrBadValue, msg: "unknown type"},
		{name: "SetMode", from: `"unlock","request_id":"c-1","door":"01JD8X5Q4K3M2N1P0R9S8T7V6W","unlock_ms":3000,"expires":1767261610123`,
			to: `"set_mode","request_id":"c-1","door":"01JD8X5Q4K3M2N1P0R9S8T7V6W","mode":"locked"`},
		{name: "ErrSetModeUnknown", from: `"unlock","request_id":"c-1","door":"01JD8X5Q4K3M2N1P0R9S8T7V6W","unlock_ms":3000,"expires":1767261610123`,
			to: `"set_mode","request_id":"c-1","door":"01JD8X5Q4K3M2N1P0R9S8T7V6W","mode":"open"`, want: ErrBadValue, msg: `unknown mode "open"`},
		{name: "ErrAckNoSeq", from: `"unlock","request_id":"c-1","door":"01JD8X5Q4K3M2N1P0R9S8T7V6W","unlock_ms":3000,"expires":1767261610123`,
			to: `"ack","request_id":"c-1","resend":true`, want: ErrMissingField, msg: `"seq" is required`},
		{name: "ErrHeartbeatNoTime", from: `"unlock","request_id":"c-1","door":"01JD8X5Q4K3M2N1P0R9S8T7V6W","unlock_ms":3000,"expires":1767261610123`,
			to: `"heartbeat","request_id":"c-1"`, want: ErrMissingField, msg: `"time" is required`},
	})
	runEdits(t, topic, cacheBase, []edit{
		{name: "OK"},
		{name: "Full", from: `"base":17,`, to: ``, want: ErrBadValue, msg: "a full cache (no base) removes nothing"},
		{name: "FullWithoutRemove", from: `"base":17,`, to: `"base":0,`, want: ErrBadValue, msg: "removes nothing"},
		{name: "EmptyArrays", from: `"entries":[{"card":"1234567","until":1767348000123},{"card":"42","from":1767261600123,"until":1767265200123}],"remove":["7654321"]`, to: `"entries":[],"remove":[]`},
		{name: "ErrBaseNotBelowVersion", from: `"base":17`, to: `"base":18`, want: ErrBadValue, msg: `"base": 18 is not below version 18`},
		{name: "ErrPartAboveParts", from: `"part":1`, to: `"part":3`, want: ErrBadValue, msg: `"part": 3 is outside 1..2`},
		{name: "ErrPartZero", from: `"part":1`, to: `"part":0`, want: ErrMissingField, msg: `"part" is required`},
		{name: "ErrPartsTooMany", from: `"parts":2`, to: `"parts":65536`, want: ErrBadValue, msg: "65536 is outside 1..65535"},
		{name: "ErrMaxOffline", from: `3600000`, to: `31536000001`, want: ErrBadValue, msg: `"max_offline_ms"`},
		{name: "ErrDuplicateEntry", from: `"card":"42"`, to: `"card":"1234567"`, want: ErrBadValue, msg: `"entries[1].card": card 1234567 is also in entries[0]`},
		{name: "ErrRemovedAndAdded", from: `["7654321"]`, to: `["42"]`, want: ErrBadValue, msg: `"remove[0]": card 42 is also in entries[1]`},
		{name: "ErrUntilBeforeFrom", from: `"until":1767265200123`, to: `"until":1767261600123`, want: ErrBadValue, msg: `"entries[1].until": 1767261600123 is not after from`},
		{name: "ErrNoUntil", from: `,"until":1767348000123`, to: ``, want: ErrMissingField, msg: `"entries[0].until" is required`},
		{name: "ErrEntryField", from: `{"card":"42",`, to: `{"card":"42","pin":true,`, want: ErrUnknownField, msg: `unknown field "entries[1].pin"`},
		{name: "ErrEntryCard", from: `"card":"42"`, to: `"card":"0"`, want: ErrBadValue, also: access.ErrBadCardNumber, msg: `"entries[1].card"`},
		{name: "ErrEntryNotObject", from: `{"card":"42","from":1767261600123,"until":1767265200123}`, to: `"42"`, want: ErrBadValue, msg: `"entries[1]": want an object`},
		{name: "ErrEntriesNotArray", from: `"entries":[`, to: `"entries":{"x":[`, want: ErrSyntax, msg: ""},
		{name: "ErrRemoveNumber", from: `["7654321"]`, to: `[7654321]`, want: ErrBadValue, msg: `"remove[0]": want a string`},
		{name: "ErrVersionZero", from: `"version":18`, to: `"version":0`, want: ErrMissingField, msg: `"version" is required`},
		{name: "ErrHighSecurityString", from: `"high_security":true`, to: `"high_security":"yes"`, want: ErrBadValue, msg: "want true or false"},
	})

	// A cache part too large to send is refused by Marshal.
	big := DoorCmd{Type: DoorOfflineCache, RequestID: "c", Door: tDoor, Version: 1, Part: 1, Parts: 1}
	for i := 1; i <= 150; i++ {
		big.Entries = append(big.Entries, CacheEntry{Card: access.CardNumber(i), Until: t0})
	}
	if _, err := big.Marshal(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Marshal of 150 entries: %v, want ErrTooLarge", err)
	}
}

func TestOfflineCacheCmds(t *testing.T) {
	c := OfflineCache{Door: tDoor, Version: 9, Base: 8, HighSecurity: true, MaxOffline: 15 * time.Minute}
	for i := 0; i < 500; i++ {
		e := CacheEntry{Card: access.CardNumber(18446744073709551615 - uint64(i)), Until: t0.Add(time.Duration(i+1) * time.Hour)}
		if i%2 == 0 {
			e.From = t0
		}
		c.Entries = append(c.Entries, e)
	}
	for i := 1; i <= 300; i++ {
		c.Remove = append(c.Remove, access.CardNumber(i))
	}
	cmds, err := c.Cmds("cache-9")
	if err != nil {
		t.Fatal(err)
	}
	if len(cmds) < 9 {
		t.Fatalf("%d parts for 500 entries and 300 removals: too few to fit 4 KiB", len(cmds))
	}
	var entries []CacheEntry
	var remove []access.CardNumber
	for i, cmd := range cmds {
		b := mustMarshal(t, cmd)
		if len(b) > MaxPayload {
			t.Fatalf("part %d: %d bytes", i+1, len(b))
		}
		got, err := DecodeDoorCmd(b)
		if err != nil {
			t.Fatal(err)
		}
		if got.Part != i+1 || got.Parts != len(cmds) || got.RequestID != "cache-9."+strconv.Itoa(i+1) ||
			got.Version != 9 || got.Base != 8 || !got.HighSecurity || got.MaxOffline != 15*time.Minute || got.Door != tDoor {
			t.Fatalf("part %d header: %+v", i+1, got)
		}
		entries = append(entries, got.Entries...)
		remove = append(remove, got.Remove...)
	}
	if !reflect.DeepEqual(entries, c.Entries) || !reflect.DeepEqual(remove, c.Remove) {
		t.Fatalf("parts do not add up to the cache: %d entries, %d removals", len(entries), len(remove))
	}
	// Parts are filled: all but the last are close to the limit.
	if b := mustMarshal(t, cmds[0]); len(b) < MaxPayload-200 {
		t.Errorf("first part has only %d bytes", len(b))
	}

	t.Run("Empty", func(t *testing.T) {
		cmds, err := OfflineCache{Door: tDoor, Version: 1}.Cmds("c")
		if err != nil || len(cmds) != 1 || cmds[0].Entries != nil || cmds[0].RequestID != "c.1" {
			t.Fatalf("got %+v, %v", cmds, err)
		}
		mustMarshal(t, cmds[0])
	})
	for _, tc := range []struct {
		name  string
		cache OfflineCache
		id    string
		want  error
	}{
		{"ErrRequestIDTooLong", OfflineCache{Door: tDoor, Version: 1}, strings.Repeat("x", 59), ErrBadValue},
		{"ErrRequestID", OfflineCache{Door: tDoor, Version: 1}, "a b", ErrBadValue},
		{"ErrNoDoor", OfflineCache{Version: 1}, "c", ErrMissingField},
		{"ErrNoVersion", OfflineCache{Door: tDoor}, "c", ErrMissingField},
		{"ErrDuplicateAcrossParts", OfflineCache{Door: tDoor, Version: 2, Base: 1,
			Entries: []CacheEntry{{Card: 5, Until: t0}}, Remove: []access.CardNumber{5}}, "c", ErrBadValue},
		{"ErrRemoveInFull", OfflineCache{Door: tDoor, Version: 2, Remove: []access.CardNumber{5}}, "c", ErrBadValue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.cache.Cmds(tc.id)
			checkErr(t, tc.name, err, tc.want, "")
		})
	}
}

const (
	qrBase    = `{"v":1,"type":"qr_scanned","seq":5,"time":1767261600123,"request_id":"k-1","token":"abc.def"}`
	idBase    = `{"v":1,"type":"id_scanned","seq":6,"time":1767261600123,"request_id":"k-2","doc_type":"passport","mrz":["P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<","L898902C36UTO7408122F1204159ZE184226B<<<<<10"]}`
	checkBase = `{"v":1,"type":"check_out","seq":7,"time":1767261600123,"request_id":"k-3","visit":"01JD8X9ZZZ0000000000000001"}`
)

func TestDecodeKioskEvent(t *testing.T) {
	topic := topicOf(KindKiosk, ChannelEvent)
	runEdits(t, topic, qrBase, []edit{
		{name: "OK"},
		{name: "TokenAnyText", from: `"abc.def"`, to: `"https://example.com/x?y=1 \n ✓"`},
		{name: "ErrTokenEmpty", from: `"abc.def"`, to: `""`, want: ErrBadValue, msg: `"token": empty string`},
		{name: "ErrTokenTooLong", from: `"abc.def"`, to: `"` + strings.Repeat("t", MaxToken+1) + `"`, want: ErrBadValue, msg: `"token": want 1 to 2048 bytes`},
		{name: "ErrNoRequestID", from: `,"request_id":"k-1"`, to: ``, want: ErrMissingField, msg: `"request_id" is required`},
		{name: "ErrMRZNotAllowed", from: `}`, to: `,"mrz":["X"]}`, want: ErrUnknownField, msg: `"mrz" is not allowed in type "qr_scanned"`},
	})
	runEdits(t, topic, idBase, []edit{
		{name: "OK"},
		{name: "Visa", from: `"passport"`, to: `"visa"`},
		{name: "Other", from: `"passport"`, to: `"other"`},
		{name: "WithVisit", from: `}`, to: `,"visit":"01JD8X9ZZZ0000000000000001"}`},
		{name: "IDCardTD2", from: `"passport","mrz":["P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<","L898902C36UTO7408122F1204159ZE184226B<<<<<10"]`,
			to: `"id_card","mrz":["I<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<","D231458907UTO7408122F1204159<<<<<<<6"]`},
		{name: "ErrPassportTD2", from: `"passport","mrz":["P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<","L898902C36UTO7408122F1204159ZE184226B<<<<<10"]`,
			to: `"passport","mrz":["I<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<","D231458907UTO7408122F1204159<<<<<<<6"]`, want: ErrBadValue, msg: "2 lines of 36 characters is not an MRZ shape of a passport"},
		{name: "ErrIDCardTD3", from: `"passport"`, to: `"id_card"`, want: ErrBadValue, msg: "not an MRZ shape of a id_card"},
		{name: "ErrDocType", from: `"passport"`, to: `"driving_licence"`, want: ErrBadValue, msg: `unknown document type "driving_licence"`},
		{name: "ErrLineLength", from: `<<<<<10"`, to: `<<<<10"`, want: ErrBadValue, msg: `"mrz[1]": 43 characters, want 44`},
		{name: "ErrLowerCase", from: `"P<UTOERIKSSON`, to: `"P<UTOEriKSSON`, want: ErrBadValue, msg: `"mrz[0]": character 6 is not one of A-Z 0-9 <`},
		{name: "ErrThreeLinesOf44", from: `<<<<<10"]`, to: `<<<<<10","L898902C36UTO7408122F1204159ZE184226B<<<<<10"]`, want: ErrBadValue, msg: "3 lines of 44"},
		{name: "ErrEmptyMRZ", from: `["P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<","L898902C36UTO7408122F1204159ZE184226B<<<<<10"]`, to: `[]`, want: ErrBadValue, msg: `"mrz": empty array`},
		{name: "ErrMRZString", from: `["P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<","L898902C36UTO7408122F1204159ZE184226B<<<<<10"]`, to: `"P<UTO"`, want: ErrBadValue, msg: `"mrz": want an array`},
		{name: "ErrMRZNumber", from: `"L898902C36UTO7408122F1204159ZE184226B<<<<<10"`, to: `5`, want: ErrBadValue, msg: `"mrz[1]": want a string`},
		{name: "ErrNoDocType", from: `"doc_type":"passport",`, to: ``, want: ErrMissingField, msg: `"doc_type" is required`},
	})
	runEdits(t, topic, checkBase, []edit{
		{name: "OK"},
		{name: "ByCard", from: `"visit":"01JD8X9ZZZ0000000000000001"`, to: `"card":"1234567"`},
		{name: "ErrBoth", from: `}`, to: `,"card":"1234567"}`, want: ErrBadValue, msg: `exactly one of "visit" and "card"`},
		{name: "ErrNeither", from: `,"visit":"01JD8X9ZZZ0000000000000001"`, to: ``, want: ErrBadValue, msg: "exactly one"},
		{name: "ErrVisit", from: `"01JD8X9ZZZ0000000000000001"`, to: `"visit-1"`, want: ErrBadValue, also: access.ErrBadID, msg: `"visit"`},
		{name: "CheckIn", from: `"check_out"`, to: `"check_in"`},
		{name: "ErrCheckInByCard", from: `"check_out","seq":7,"time":1767261600123,"request_id":"k-3","visit":"01JD8X9ZZZ0000000000000001"`,
			to: `"check_in","seq":7,"time":1767261600123,"request_id":"k-3","card":"1"`, want: ErrUnknownField, msg: `"card" is not allowed in type "check_in"`},
	})
}

const showBase = `{"v":1,"type":"show_result","request_id":"k-4","ok":true,"code":"checked_in","message":"Welcome, Ada!","visit":"01JD8X9ZZZ0000000000000001"}`

func TestDecodeKioskCmd(t *testing.T) {
	runEdits(t, topicOf(KindKiosk, ChannelCmd), showBase, []edit{
		{name: "OK"},
		{name: "NotOK", from: `"ok":true`, to: `"ok":false`},
		{name: "ErrNoOK", from: `"ok":true,`, to: ``, want: ErrMissingField, msg: `"ok" is required in type "show_result"`},
		{name: "ErrCode", from: `"checked_in"`, to: `"Checked In"`, want: ErrBadValue, msg: `"code": "Checked In" is not a code`},
		{name: "ErrMessageLong", from: `"Welcome, Ada!"`, to: `"` + strings.Repeat("w", MaxText+1) + `"`, want: ErrBadValue, msg: "513 bytes, more than 512"},
		{name: "ErrMessageControl", from: `"Welcome, Ada!"`, to: `"Welcome,\tAda!"`, want: ErrBadValue, msg: "control character"},
		{name: "Dispensing", from: `"show_result","request_id":"k-4","ok":true,"code":"checked_in","message":"Welcome, Ada!","visit":"01JD8X9ZZZ0000000000000001"`,
			to: `"dispensing","request_id":"k-4","dispenser":"disp_1"`},
		{name: "ErrDispenserName", from: `"show_result","request_id":"k-4","ok":true,"code":"checked_in","message":"Welcome, Ada!","visit":"01JD8X9ZZZ0000000000000001"`,
			to: `"dispensing","request_id":"k-4","dispenser":"disp/1"`, want: ErrBadValue, msg: `"dispenser": "disp/1" is not 1 to 64 characters`},
		{name: "ErrDispenserNotAllowed", from: `}`, to: `,"dispenser":"d"}`, want: ErrUnknownField, msg: `not allowed in type "show_result"`},
	})
}

const dispenserEventBase = `{"v":1,"type":"encoded","seq":3,"time":1767261600123,"request_id":"e-2","card":"1234567"}`

func TestDecodeDispenser(t *testing.T) {
	runEdits(t, topicOf(KindDispenser, ChannelEvent), dispenserEventBase, []edit{
		{name: "OK"},
		{name: "ErrNoCard", from: `,"card":"1234567"`, to: ``, want: ErrMissingField, msg: `"card" is required in type "encoded"`},
		{name: "EncodeFailed", from: `"encoded"`, to: `"encode_failed"`},
		{name: "ErrEncodeFailedNoRequest", from: `"encoded","seq":3,"time":1767261600123,"request_id":"e-2"`, to: `"encode_failed","seq":3,"time":1767261600123`, want: ErrMissingField, msg: `"request_id" is required`},
		{name: "ErrCardInsertedWithRequest", from: `"encoded"`, to: `"card_inserted"`, want: ErrUnknownField, msg: `"request_id" is not allowed in type "card_inserted"`},
		{name: "ErrJamWithCard", from: `"encoded"`, to: `"jam"`, want: ErrUnknownField, msg: `"card" is not allowed in type "jam"`},
		{name: "ErrUnknownFault", from: `"encoded"`, to: `"on_fire"`, want: ErrBadValue, msg: "unknown type"},
		{name: "ErrCardRange", from: `"1234567"`, to: `"99999999999999999999"`, want: ErrBadValue, also: access.ErrBadCardNumber, msg: `"card"`},
	})
	runEdits(t, topicOf(KindDispenser, ChannelCmd), `{"v":1,"type":"encode","request_id":"e-2","card":"1234567"}`, []edit{
		{name: "OK"},
		{name: "ErrNoCard", from: `,"card":"1234567"`, to: ``, want: ErrMissingField, msg: `"card" is required in type "encode"`},
		{name: "ErrDispenseWithCard", from: `"encode"`, to: `"dispense"`, want: ErrUnknownField, msg: `"card" is not allowed in type "dispense"`},
		{name: "Capture", from: `"encode","request_id":"e-2","card":"1234567"`, to: `"capture","request_id":"e-3"`},
		{name: "ErrCardZero", from: `"1234567"`, to: `"0"`, want: ErrBadValue, also: access.ErrBadCardNumber, msg: `"card"`},
	})
}

const doorStateBase = `{"v":1,"online":true,"firmware":"4.0.1","time":1767261600123,"last_seq":43,"door":{"tamper":true,"offline":false,` +
	`"doors":[{"door":"01JD8X5Q4K3M2N1P0R9S8T7V6W","mode":"normal","open":true,"cache_version":17,"fail_secure":false}]}}`

func TestDecodeState(t *testing.T) {
	runEdits(t, topicOf(KindDoor, ChannelState), doorStateBase, []edit{
		{name: "OK"},
		{name: "Offline", from: `true,"firmware":"4.0.1","time":1767261600123,"last_seq":43,"door":{"tamper":true,"offline":false,` +
			`"doors":[{"door":"01JD8X5Q4K3M2N1P0R9S8T7V6W","mode":"normal","open":true,"cache_version":17,"fail_secure":false}]}`, to: `false`},
		{name: "NoStatus", from: `,"door":{"tamper":true,"offline":false,` +
			`"doors":[{"door":"01JD8X5Q4K3M2N1P0R9S8T7V6W","mode":"normal","open":true,"cache_version":17,"fail_secure":false}]}`, to: ``},
		{name: "ErrOfflineWithFirmware", from: `"online":true`, to: `"online":false`, want: ErrUnknownField, msg: "an offline state (the last will) has no field"},
		{name: "ErrNoFirmware", from: `"firmware":"4.0.1",`, to: ``, want: ErrMissingField, msg: `"firmware" is required when online`},
		{name: "ErrFirmwareNonASCII", from: `"4.0.1"`, to: `"4.0.1-ß"`, want: ErrBadValue, msg: "printable ASCII"},
		{name: "ErrFirmwareLong", from: `"4.0.1"`, to: `"` + strings.Repeat("1", 65) + `"`, want: ErrBadValue, msg: "65 bytes"},
		{name: "ErrOtherKindStatus", from: `"door":{`, to: `"reader":{`, want: ErrUnknownField, msg: `"reader" is not allowed in the state of a door`},
		{name: "ErrStatusField", from: `"tamper":true`, to: `"tamper":true,"battery":3`, want: ErrUnknownField, msg: `unknown field "door.battery"`},
		{name: "ErrDoorStateField", from: `"open":true`, to: `"open":true,"locked":true`, want: ErrUnknownField, msg: `unknown field "door.doors[0].locked"`},
		{name: "ErrDoorStateMode", from: `"mode":"normal"`, to: `"mode":"ajar"`, want: ErrBadValue, msg: `"door.doors[0].mode": unknown mode "ajar"`},
		{name: "ErrDoorStateNoMode", from: `"mode":"normal",`, to: ``, want: ErrMissingField, msg: `"door.doors[0].mode" is required`},
		{name: "ErrDoorStateDoor", from: `"01JD8X5Q4K3M2N1P0R9S8T7V6W"`, to: `"front"`, want: ErrBadValue, also: access.ErrBadID, msg: `"door.doors[0].door"`},
		{name: "ErrDoorTwice", from: `]}}`, to: `,{"door":"01JD8X5Q4K3M2N1P0R9S8T7V6W","mode":"locked"}]}}`, want: ErrBadValue, msg: `"door.doors[1].door": door 01JD8X5Q4K3M2N1P0R9S8T7V6W is listed twice`},
		{name: "ErrOnlineString", from: `"online":true`, to: `"online":"true"`, want: ErrBadValue, msg: `"online": want true or false`},
		{name: "ErrNoOnline", from: `"online":true,`, to: ``, want: ErrMissingField, msg: `"online" is required`},
	})
	runEdits(t, topicOf(KindDispenser, ChannelState), `{"v":1,"online":true,"firmware":"d1","dispenser":{"stack":"low","faults":["jam","encoder"]}}`, []edit{
		{name: "OK"},
		{name: "ErrNoStack", from: `"stack":"low",`, to: ``, want: ErrMissingField, msg: `"dispenser.stack" is required`},
		{name: "ErrStack", from: `"low"`, to: `"full"`, want: ErrBadValue, msg: `unknown level "full"`},
		{name: "ErrFaultTwice", from: `"encoder"`, to: `"jam"`, want: ErrBadValue, msg: `"dispenser.faults[1]": "jam" is listed twice`},
		{name: "ErrFaultCode", from: `"encoder"`, to: `"Encoder"`, want: ErrBadValue, msg: "not a code"},
		{name: "ErrDoorStatus", from: `"dispenser":{`, to: `"door":{`, want: ErrUnknownField, msg: "not allowed in the state of a dispenser"},
	})
	many := `{"v":1,"online":true,"firmware":"k","kiosk":{"faults":[` + strings.TrimSuffix(strings.Repeat(`"f",`, 17), ",") + `]}}`
	if _, err := DecodeState(KindKiosk, []byte(many)); !errors.Is(err, ErrBadValue) {
		t.Fatalf("17 faults: %v", err)
	}
	if _, err := DecodeState("robot", []byte(`{"v":1,"online":false}`)); !errors.Is(err, ErrBadValue) {
		t.Fatalf("unknown kind: %v", err)
	}
	// Seventeen doors are too many for one controller.
	var doors []DoorState
	for i := 0; i < MaxDoors+1; i++ {
		doors = append(doors, DoorState{Door: access.ID("01JD8X5Q4K3M2N1P0R9S8T7V" + string(rune('A'+i)) + "0"), Mode: DoorNormal})
	}
	if _, err := (State{Online: true, Firmware: "x", Door: &DoorStatus{Doors: doors}}).Marshal(); !errors.Is(err, ErrBadValue) {
		t.Fatalf("17 doors: %v", err)
	}
	if _, err := (State{Online: true, Firmware: "x", Reader: &ReaderStatus{}, Door: &DoorStatus{}}).Marshal(); !errors.Is(err, ErrUnknownField) {
		t.Fatalf("two statuses: %v", err)
	}
}

func TestValidateRefusesUnsetType(t *testing.T) {
	for _, m := range []Message{
		DoorEvent{Seq: 1, Time: t0}, DoorCmd{RequestID: "c"}, KioskEvent{Seq: 1, Time: t0, RequestID: "k"},
		KioskCmd{RequestID: "c"}, DispenserEvent{Seq: 1, Time: t0}, DispenserCmd{RequestID: "c"},
	} {
		_, err := m.Marshal()
		checkErr(t, describe(m), err, ErrMissingField, `"type" is required`)
	}
	for _, m := range []Message{
		DoorEvent{Type: "x", Seq: 1, Time: t0}, DoorCmd{Type: "x", RequestID: "c"}, KioskEvent{Type: "x", Seq: 1, Time: t0, RequestID: "k"},
		KioskCmd{Type: "x", RequestID: "c"}, DispenserEvent{Type: "x", Seq: 1, Time: t0}, DispenserCmd{Type: "x", RequestID: "c"},
	} {
		_, err := m.Marshal()
		checkErr(t, describe(m), err, ErrBadValue, `unknown type "x"`)
	}
}

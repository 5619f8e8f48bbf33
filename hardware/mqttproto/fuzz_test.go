package mqttproto

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/access"
)

// The fuzz targets check, for any input, that decoding never panics, that a
// refusal is an access.Invalid error wrapping one of the package's
// sentinels, that what is accepted is valid JSON, and that an accepted
// payload marshals again and decodes to the same value. Seeds are the
// samples, the test payloads and some broken ones; found inputs are kept
// in testdata/fuzz.

var sentinels = []error{ErrTooLarge, ErrSyntax, ErrVersion, ErrUnknownField, ErrMissingField, ErrBadValue, ErrBadTopic}

// checkRefusal fails unless err is a well-formed refusal.
func checkRefusal(t *testing.T, in []byte, err error) {
	t.Helper()
	if access.ErrorCode(err) != access.Invalid || !strings.HasPrefix(err.Error(), "mqttproto: ") {
		t.Fatalf("decoding %q: error %q is not a mqttproto Invalid error", in, err)
	}
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return
		}
	}
	t.Fatalf("decoding %q: error %q wraps no sentinel", in, err)
}

// checkAccepted fails unless accepted payload in, decoded to m, is valid
// JSON that round-trips through Marshal and decode.
func checkAccepted[T Message](t *testing.T, in []byte, m T, decode func([]byte) (T, error)) {
	t.Helper()
	if !json.Valid(in) {
		t.Fatalf("accepted %q, which is not valid JSON", in)
	}
	b, err := m.Marshal()
	if err != nil {
		t.Fatalf("decoded %q to %s, which does not marshal: %v", in, describe(m), err)
	}
	again, err := decode(b)
	if err != nil {
		t.Fatalf("re-marshalled %q as %s, which does not decode: %v", in, b, err)
	}
	if !reflect.DeepEqual(again, m) {
		t.Fatalf("round trip of %q via %s:\n got %s\nwant %s", in, b, describe(again), describe(m))
	}
}

// fuzzDecode runs decode on in and checks the outcome.
func fuzzDecode[T Message](t *testing.T, in []byte, decode func([]byte) (T, error)) {
	m, err := decode(in)
	if err != nil {
		checkRefusal(t, in, err)
		return
	}
	checkAccepted(t, in, m, decode)
}

// seed adds the marshalled samples on channel c, the given payloads and
// some broken ones to f.
func seed(f *testing.F, c Channel, payloads ...string) {
	for _, s := range samples() {
		if s.topic.Channel == c {
			b, err := s.msg.Marshal()
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	for _, p := range append(payloads, "", "{}", `{"v":1}`, `{"v":2,"x":1}`, `{"v":1,"type":"x"}`, "[", `{"v":1,"a":[[[[[[[`, "\xff") {
		f.Add([]byte(p))
	}
}

func FuzzDecodeTap(f *testing.F) {
	seed(f, ChannelTap, tapBase, wiegandBase)
	f.Fuzz(func(t *testing.T, in []byte) {
		fuzzDecode(t, in, DecodeTap)
		tap, err := DecodeTap(in)
		if err != nil {
			return
		}
		// An independent reading of the same payload by encoding/json
		// agrees on the fields that do not need conversion.
		var ref struct {
			V         int    `json:"v"`
			RequestID string `json:"request_id"`
			Card      string `json:"card"`
			Time      int64  `json:"time"`
			PIN       bool   `json:"pin"`
		}
		if err := json.Unmarshal(in, &ref); err != nil {
			t.Fatalf("encoding/json refuses accepted tap %q: %v", in, err)
		}
		if ref.V != Version || ref.RequestID != tap.RequestID || (ref.Time != 0) != !tap.Time.IsZero() ||
			!tap.Time.IsZero() && ref.Time != tap.Time.UnixMilli() || ref.PIN != tap.PIN ||
			(ref.Card != "" && ref.Card != tap.Card.String()) {
			t.Fatalf("encoding/json reads %q as %+v, we read %+v", in, ref, tap)
		}
	})
}

func FuzzDecodeDecision(f *testing.F) {
	seed(f, ChannelDecision, decisionBase)
	f.Fuzz(func(t *testing.T, in []byte) { fuzzDecode(t, in, DecodeDecision) })
}

func FuzzDecodeEvent(f *testing.F) {
	seed(f, ChannelEvent, doorEventBase, offlineDecision, cmdRejected, qrBase, idBase, checkBase, dispenserEventBase)
	f.Fuzz(func(t *testing.T, in []byte) {
		fuzzDecode(t, in, DecodeDoorEvent)
		fuzzDecode(t, in, DecodeKioskEvent)
		fuzzDecode(t, in, DecodeDispenserEvent)
	})
}

func FuzzDecodeCmd(f *testing.F) {
	seed(f, ChannelCmd, unlockBase, cacheBase, showBase, `{"v":1,"type":"encode","request_id":"e-2","card":"1234567"}`)
	f.Fuzz(func(t *testing.T, in []byte) {
		fuzzDecode(t, in, DecodeDoorCmd)
		fuzzDecode(t, in, DecodeKioskCmd)
		fuzzDecode(t, in, DecodeDispenserCmd)
	})
}

func FuzzDecodeState(f *testing.F) {
	seed(f, ChannelState, doorStateBase)
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, k := range Kinds() {
			fuzzDecode(t, in, func(b []byte) (State, error) { return DecodeState(k, b) })
		}
	})
}

func FuzzParseTopic(f *testing.F) {
	for _, k := range Kinds() {
		for _, c := range Channels() {
			f.Add("gh/site-1/" + string(k) + "/dev_1/" + string(c))
		}
	}
	for _, s := range []string{"", "gh", "gh/s/reader/+/tap", "gh/s/#", "$SYS/#", "$share/g/gh/s/+/+/tap", "gh/s/reader/r1/tap/", "gh//reader/r1/tap"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if SiteMaySubscribe("site-1", s) {
			rest, _ := strings.CutPrefix(s, "$share/")
			if rest != s {
				_, rest, _ = strings.Cut(rest, "/")
			}
			if !strings.HasPrefix(rest, "gh/site-1/") {
				t.Fatalf("site-1 may subscribe to %q", s)
			}
		}
		if SiteMayPublish("site-1", s) && (!strings.HasPrefix(s, "gh/site-1/") || strings.ContainsAny(s, "+#")) {
			t.Fatalf("site-1 may publish on %q", s)
		}
		tp, err := ParseTopic(s)
		if err != nil {
			if !errors.Is(err, ErrBadTopic) || access.ErrorCode(err) != access.Invalid {
				t.Fatalf("ParseTopic(%q): %v", s, err)
			}
			return
		}
		if tp.String() != s || tp.Validate() != nil || strings.ContainsAny(s, "+#\x00") {
			t.Fatalf("ParseTopic(%q) = %+v", s, tp)
		}
		dev := tp.Dev()
		if DeviceMayPublish(dev, s) != tp.Channel.FromDevice() || DeviceMaySubscribe(dev, s) == tp.Channel.FromDevice() {
			t.Fatalf("ACL of %v on its own %q is wrong", dev, s)
		}
		if !SiteMayPublish(tp.Site, s) || !SiteMaySubscribe(tp.Site, s) {
			t.Fatalf("site %q may not use %q", tp.Site, s)
		}
		if u, err := ParseUsername(dev.Username()); err != nil || u != dev {
			t.Fatalf("user name of %v: %+v, %v", dev, u, err)
		}
		other := dev
		other.ID += "x"
		if len(other.ID) <= MaxNameLen && (DeviceMayPublish(other, s) || DeviceMaySubscribe(other, s)) {
			t.Fatalf("%v may use %q", other, s)
		}
	})
}

package mqttproto

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/access"
)

// TestRoundTrip marshals every sample, decodes it through Decode with its
// topic and checks that the same value comes back, and that the payload is
// plain JSON that encoding/json accepts.
func TestRoundTrip(t *testing.T) {
	for _, s := range samples() {
		t.Run(s.name, func(t *testing.T) {
			b := mustMarshal(t, s.msg)
			if !json.Valid(b) {
				t.Fatalf("payload is not valid JSON: %s", b)
			}
			got, err := Decode(s.topic, b)
			if err != nil {
				t.Fatalf("Decode(%s, %s): %v", s.topic, b, err)
			}
			if !reflect.DeepEqual(got, s.msg) {
				t.Fatalf("round trip of %s:\n got %s\nwant %s", b, describe(got), describe(s.msg))
			}
			b2 := mustMarshal(t, got)
			if string(b2) != string(b) {
				t.Fatalf("re-marshal differs:\n%s\n%s", b, b2)
			}
		})
	}
}

// TestSamplesCoverEveryType checks that the samples exercise every type of
// every family, so the round trip and mutation tests cover them all.
func TestSamplesCoverEveryType(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range samples() {
		switch m := s.msg.(type) {
		case DoorEvent:
			seen["door event/"+string(m.Type)] = true
		case DoorCmd:
			seen["door cmd/"+string(m.Type)] = true
		case KioskEvent:
			seen["kiosk event/"+string(m.Type)] = true
		case KioskCmd:
			seen["kiosk cmd/"+string(m.Type)] = true
		case DispenserEvent:
			seen["dispenser event/"+string(m.Type)] = true
		case DispenserCmd:
			seen["dispenser cmd/"+string(m.Type)] = true
		case State:
			k, _ := m.kind()
			seen["state/"+string(k)] = true
		}
	}
	for _, f := range families() {
		for _, n := range f.names {
			if !seen[f.what+"/"+n] {
				t.Errorf("no sample of %s %s", f.what, n)
			}
		}
	}
	for _, k := range append(Kinds(), "") {
		if !seen["state/"+string(k)] {
			t.Errorf("no state sample for kind %q", k)
		}
	}
}

func families() []*family {
	return []*family{doorEvents, doorCmds, kioskEvents, kioskCmds, dispenserEvents, dispenserCmds}
}

// rebuild returns the object with members ms as JSON text.
func rebuild(ms []member) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"` + string(m.key) + `":`)
		b.Write(m.val)
	}
	b.WriteByte('}')
	return b.String()
}

// membersOf parses payload p.
func membersOf(t *testing.T, p []byte) []member {
	t.Helper()
	var o object
	if je := parseObject(p, 0, 1, &o); je != nil {
		t.Fatalf("parse %s: %s", p, je.msg)
	}
	return append([]member(nil), o.members()...)
}

// requiredKeys returns the top-level keys that s's message requires.
func requiredKeys(s sample) []string {
	typed := func(f *family, typ string) []string { return f.types[typ].req }
	switch m := s.msg.(type) {
	case Tap:
		return tapSpec.req
	case Decision:
		return decisionSpec.req
	case DoorEvent:
		return typed(doorEvents, string(m.Type))
	case DoorCmd:
		return typed(doorCmds, string(m.Type))
	case KioskEvent:
		return typed(kioskEvents, string(m.Type))
	case KioskCmd:
		return typed(kioskCmds, string(m.Type))
	case DispenserEvent:
		return typed(dispenserEvents, string(m.Type))
	case DispenserCmd:
		return typed(dispenserCmds, string(m.Type))
	case State:
		if m.Online {
			return []string{"online", "firmware"}
		}
		return stateSpec.req
	}
	return nil
}

// TestDecodeMutations breaks every sample payload in the ways every decoder
// must refuse, and checks that each gets an access.Invalid error wrapping
// the right sentinel and saying what is wrong.
func TestDecodeMutations(t *testing.T) {
	for _, s := range samples() {
		good := mustMarshal(t, s.msg)
		p := string(good)
		body := p[:len(p)-1] // without the closing brace
		ms := membersOf(t, good)
		type mut struct {
			name, in string
			want     error
			msg      string
		}
		muts := []mut{
			{"Empty", "", ErrSyntax, "empty payload"},
			{"Spaces", "   ", ErrSyntax, "end of payload"},
			{"Null", "null", ErrSyntax, "want a JSON object"},
			{"Array", "[" + p + "]", ErrSyntax, "want a JSON object"},
			{"String", `"` + p + `"`, ErrSyntax, "want a JSON object"},
			{"TruncatedByOne", p[:len(p)-1], ErrSyntax, "truncated"},
			{"TruncatedHalf", p[:len(p)/2], ErrSyntax, ""},
			{"TrailingGarbage", p + "x", ErrSyntax, "data after the end"},
			{"TwoObjects", p + p, ErrSyntax, "data after the end"},
			{"TrailingComma", body + ",}", ErrSyntax, "want a quoted object key"},
			{"Oversized", body + strings.Repeat(" ", MaxPayload-len(p)+1) + "}", ErrTooLarge, "4097 bytes"},
			{"UnknownField", body + `,"bogus":1}`, ErrUnknownField, `unknown field "bogus"`},
			{"UnknownNested", body + `,"bogus":{"a":[1,2]}}`, ErrUnknownField, `unknown field "bogus"`},
			{"NullField", body + `,"bogus":null}`, ErrSyntax, "null is not allowed"},
			{"UpperCaseKey", body + `,"V":1}`, ErrSyntax, `object key "V"`},
			{"EscapedKey", body + `,"\u0076":1}`, ErrSyntax, "without escapes"},
			{"DuplicateKey", body + `,"v":1}`, ErrSyntax, `duplicate key "v"`},
			{"TooDeep", body + `,"x":[[[[[[1]]]]]]}`, ErrSyntax, "nested more than"},
			{"BadUTF8", body + ",\"x\":\"\xff\"}", ErrSyntax, "invalid UTF-8"},
			{"ControlChar", body + ",\"x\":\"a\nb\"}", ErrSyntax, "control character"},
			{"LoneSurrogate", body + `,"x":"\ud800"}`, ErrSyntax, "surrogate"},
			{"BadEscape", body + `,"x":"\q"}`, ErrSyntax, "escape"},
			{"BadNumber", body + `,"x":01}`, ErrSyntax, "leading zero"},
			{"Colon", strings.Replace(p, ":", "=", 1), ErrSyntax, "want ':'"},
			{"Version2", strings.Replace(p, `"v":1`, `"v":2`, 1), ErrVersion, "version 2 is not supported"},
			{"Version0", strings.Replace(p, `"v":1`, `"v":0`, 1), ErrVersion, "version 0 is not supported"},
			{"VersionString", strings.Replace(p, `"v":1`, `"v":"1"`, 1), ErrVersion, "want an integer version"},
			{"VersionFloat", strings.Replace(p, `"v":1`, `"v":1.0`, 1), ErrVersion, "want an integer version"},
			{"VersionBeforeUnknownField", strings.Replace(body, `"v":1`, `"v":9`, 1) + `,"new_in_v9":true}`, ErrVersion, "version 9"},
			{"NoVersion", rebuild(ms[1:]), ErrMissingField, `"v"`},
		}
		for i, m := range ms {
			if containsString(requiredKeys(s), string(m.key)) {
				without := append(append([]member(nil), ms[:i]...), ms[i+1:]...)
				muts = append(muts, mut{"Missing_" + string(m.key), rebuild(without), ErrMissingField, string(m.key)})
			}
			if string(m.key) != "v" {
				// A value of the wrong JSON type.
				wrong := `{"x":1}`
				if m.val[0] == '{' {
					wrong = `"x"`
				}
				changed := append([]member(nil), ms...)
				changed[i].val = []byte(wrong)
				muts = append(muts, mut{"WrongType_" + string(m.key), rebuild(changed), ErrBadValue, `"` + string(m.key)})
			}
		}
		for _, m := range muts {
			t.Run(s.name+"/"+m.name, func(t *testing.T) {
				_, err := Decode(s.topic, []byte(m.in))
				checkErr(t, m.in, err, m.want, m.msg)
			})
		}
		t.Run(s.name+"/SurroundingSpaceOK", func(t *testing.T) {
			if _, err := Decode(s.topic, []byte(" \t\r\n"+p+"\n")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// checkErr checks that err is an access.Invalid error wrapping want whose
// text starts with "mqttproto: " and contains msg.
func checkErr(t *testing.T, in string, err, want error, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("decoding %q: no error, want %v", in, want)
	}
	if !errors.Is(err, want) {
		t.Fatalf("decoding %q: error %q does not wrap %q", in, err, want)
	}
	if c := access.ErrorCode(err); c != access.Invalid {
		t.Fatalf("decoding %q: error code %q, want invalid", in, c)
	}
	if !strings.HasPrefix(err.Error(), "mqttproto: ") || !strings.Contains(err.Error(), msg) {
		t.Fatalf("decoding %q: error %q does not say %q", in, err, msg)
	}
}

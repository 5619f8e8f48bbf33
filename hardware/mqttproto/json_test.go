package mqttproto

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/access"
)

func TestJSONProfile(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		off      int    // error offset, -1 when the input is accepted
		msg      string // error text
	}{
		{"Empty", `{}`, -1, ""},
		{"Nested", `{"a":{"b":[1,-2.5e+3,true,false,"x",{},[]]}}`, -1, ""},
		{"Escapes", `{"a":"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"}`, -1, ""},
		{"UTF8", `{"a":"Grüße ✓ 😀"}`, -1, ""},
		{"WhiteSpace", " \t\r\n{ \"a\" : 1 , \"b\" : [ 1 , 2 ] } \n", -1, ""},
		{"MaxMembers", `{` + members(maxMembers) + `}`, -1, ""},
		{"ErrTooManyMembers", `{` + members(maxMembers+1) + `}`, 129, "more than 16 members"},
		{"MaxDepth", `{"a":[[[[[1]]]]]}`, -1, ""},
		{"ErrDepth", `{"a":[[[[[[1]]]]]]}`, 10, "nested more than 6 deep"},
		{"ErrDepthObjects", `{"a":{"b":{"c":{"d":{"e":{"f":{}}}}}}}`, 30, "nested more than 6 deep"},
		{"ErrEmpty", ``, 0, "empty payload"},
		{"ErrNotObject", `1`, 0, "want a JSON object"},
		{"ErrBOM", "\ufeff{}", 0, "want a JSON object"},
		{"ErrUnclosed", `{"a":1`, 6, "truncated"},
		{"ErrUnclosedString", `{"a":"x`, 7, "truncated"},
		{"ErrUnclosedKey", `{"ab`, 4, "truncated"},
		{"ErrUnclosedArray", `{"a":[1`, 7, "truncated"},
		{"ErrMissingValue", `{"a":}`, 5, "unexpected character '}'"},
		{"ErrMissingColon", `{"a" 1}`, 5, "want ':'"},
		{"ErrSingleQuotes", `{'a':1}`, 1, "want a quoted object key"},
		{"ErrBareKey", `{a:1}`, 1, "want a quoted object key"},
		{"ErrEmptyKey", `{"":1}`, 1, "empty object key"},
		{"ErrLongKey", `{"` + strings.Repeat("k", maxKeyLen+1) + `":1}`, 1, "longer than 32"},
		{"ErrKeyCase", `{"Door":1}`, 2, `object key "Door"`},
		{"ErrKeyDash", `{"request-id":1}`, 9, `object key "request-id"`},
		{"ErrKeyUnicode", `{"dóor":1}`, 3, "object key"},
		{"ErrDuplicate", `{"a":1,"b":2,"a":3}`, 13, `duplicate key "a"`},
		{"ErrDuplicateNested", `{"a":[{"x":1,"x":1}]}`, 13, `duplicate key "x"`},
		{"ErrTrailingCommaObject", `{"a":1,}`, 7, "want a quoted object key"},
		{"ErrTrailingCommaArray", `{"a":[1,]}`, 8, "unexpected character ']'"},
		{"ErrNull", `{"a":null}`, 5, "null is not allowed"},
		{"ErrNullInArray", `{"a":[1,null]}`, 8, "null is not allowed"},
		{"ErrNaN", `{"a":NaN}`, 5, "unexpected character 'N'"},
		{"ErrInfinity", `{"a":-Infinity}`, 6, "malformed number"},
		{"ErrPlus", `{"a":+1}`, 5, "unexpected character '+'"},
		{"ErrLeadingZero", `{"a":012}`, 6, "leading zero"},
		{"ErrBareDot", `{"a":1.}`, 7, "malformed number"},
		{"ErrBareExponent", `{"a":1e}`, 7, "malformed number"},
		{"ErrHex", `{"a":0x10}`, 6, "want ',' or '}'"},
		{"ErrTru", `{"a":tru}`, 5, "malformed literal"},
		{"ErrTruncatedLiteral", `{"a":tr`, 5, "truncated"},
		{"ErrControl", "{\"a\":\"x\ty\"}", 7, "control character"},
		{"ErrBadUTF8", "{\"a\":\"\xc3\x28\"}", 6, "invalid UTF-8"},
		{"ErrOverlong", "{\"a\":\"\xc0\xaf\"}", 6, "invalid UTF-8"},
		{"ErrSurrogateUTF8", "{\"a\":\"\xed\xa0\x80\"}", 6, "invalid UTF-8"},
		{"ErrEscape", `{"a":"\x41"}`, 6, "invalid escape"},
		{"ErrShortUnicode", `{"a":"\u12"}`, 6, `invalid \u escape`},
		{"ErrLowSurrogate", `{"a":"\udc00"}`, 6, "unpaired surrogate"},
		{"ErrHighSurrogateAlone", `{"a":"\ud800x"}`, 6, "unpaired surrogate"},
		{"ErrHighSurrogateTwice", `{"a":"\ud800\ud800"}`, 6, "unpaired surrogate"},
		{"ErrTrailing", `{} {}`, 3, "data after the end"},
		{"ErrTrailingNUL", "{}\x00", 2, "data after the end"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var o object
			je := parseObject([]byte(tc.in), 0, 1, &o)
			if tc.off < 0 {
				if je != nil {
					t.Fatalf("parse %q: at %d: %s", tc.in, je.off, je.msg)
				}
				if !json.Valid([]byte(tc.in)) {
					t.Fatalf("accepted %q, which encoding/json calls invalid", tc.in)
				}
				return
			}
			if je == nil {
				t.Fatalf("parse %q: accepted", tc.in)
			}
			if je.off != tc.off || !strings.Contains(je.msg, tc.msg) {
				t.Fatalf("parse %q: at %d: %q; want at %d: %q", tc.in, je.off, je.msg, tc.off, tc.msg)
			}
		})
	}
}

// members returns n members "k0":0,"k1":1,...
func members(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"k` + string(rune('a'+i%26)) + string(rune('a'+i/26)) + `":1`)
	}
	return b.String()
}

// TestStringCodec checks that appendQuoted and rawString invert each other
// and agree with encoding/json.
func TestStringCodec(t *testing.T) {
	for _, s := range []string{"", "plain", `quote " backslash \ slash /`, "\x00\x01\x1f\x7f", "tab\tnl\ncr\r",
		"é ✓ 😀 \u2028", "<script>&"} {
		q := appendQuoted(nil, s)
		var viaStd string
		if err := json.Unmarshal(q, &viaStd); err != nil || viaStd != s {
			t.Fatalf("encoding/json reads %s as %q, %v; want %q", q, viaStd, err, s)
		}
		var o object
		if je := parseObject([]byte(`{"a":`+string(q)+`}`), 0, 1, &o); je != nil {
			t.Fatalf("our parser refuses %s: %s", q, je.msg)
		}
		got, ok := rawString(o.ms[0].val)
		if !ok || string(got) != s {
			t.Fatalf("rawString(%s) = %q, want %q", q, got, s)
		}
		std, _ := json.Marshal(s)
		got, ok = rawString(std)
		if !ok || string(got) != s {
			t.Fatalf("rawString(%s) (from encoding/json) = %q, want %q", std, got, s)
		}
	}
}

// TestCanonicalID checks the allocation-free ULID check against
// access.ParseID, the authority: canonicalID accepts exactly the IDs that
// ParseID returns unchanged.
func TestCanonicalID(t *testing.T) {
	cases := []string{"", "0", strings.Repeat("0", 26), strings.Repeat("Z", 26), "7ZZZZZZZZZZZZZZZZZZZZZZZZZ", "8ZZZZZZZZZZZZZZZZZZZZZZZZZ",
		string(tDoor), strings.ToLower(string(tDoor)), string(tDoor) + "0", string(tDoor)[:25]}
	for i := 0; i < 200; i++ {
		cases = append(cases, string(access.MustNewID()))
	}
	for c := 0; c < 256; c++ {
		cases = append(cases, string(tDoor)[:10]+string(rune(c))+string(tDoor)[11:], string(rune(c))+string(tDoor)[1:])
	}
	for _, s := range cases {
		id, err := access.ParseID(s)
		want := err == nil && string(id) == s
		if got := canonicalID([]byte(s)); got != want {
			t.Errorf("canonicalID(%q) = %t, access.ParseID says %t", s, got, want)
		}
	}
}

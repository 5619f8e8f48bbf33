package scenario

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzParse checks that Parse never panics, that it returns either a
// scenario or errors (never both, never neither), and that whatever it
// accepts formats to text it parses back to the same scenario. Seeds are
// the docs' example, the shipped scenarios and the corpus in
// testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add([]byte(example))
	files, _ := filepath.Glob("../scenarios/*.scn")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("door d\nreader r door d\nat 1s tap 1 at r expect deny within 1ms\n"))
	f.Add([]byte("schedule s sat,sun 00:00-24:00 fri-mon 10:00-11:00 closed-on-holidays\n"))
	f.Add([]byte(kioskBase + "scan document for \"Ann Lee\" born 1990-01-01 expires -1h id-card at kiosk lobby-kiosk\n" +
		"scan document \"" + td3 + "\" at kiosk lobby-kiosk\nexpect dispenser spare state stack low jam within 1s\n"))
	f.Add([]byte("person p occupier tenant t card 18446744073709551615 valid-until 2030-01-01T00:00:00.5+02:00\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		s, err := Parse("fuzz.scn", src)
		if (s == nil) == (err == nil) {
			t.Fatalf("Parse returned %v and %v", s, err)
		}
		if err != nil {
			return
		}
		text := Format(s)
		s2, err := Parse("fuzz.scn", []byte(text))
		if err != nil {
			t.Fatalf("formatted scenario does not parse: %v\n%s", err, text)
		}
		if a, b := stripLines(s), stripLines(s2); !reflect.DeepEqual(a, b) {
			t.Fatalf("round trip changed the scenario:\n%s", text)
		}
	})
}

package site

import (
	"bytes"
	"os"
	"testing"
)

// FuzzParse checks that Parse never panics, returns a file or errors
// (never both, never neither), that every error names a line of the input,
// and that whatever it accepts has a valid site and door IDs. Seeds are the
// example file and the corpus in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile("testdata/example.site"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(testSite))
	f.Fuzz(func(t *testing.T, src []byte) {
		file, err := Parse("fuzz.site", src)
		if (file == nil) == (err == nil) {
			t.Fatalf("Parse returned %v and %v", file, err)
		}
		if err != nil {
			es, ok := err.(Errors)
			if !ok || len(es) == 0 || len(es) > MaxErrors {
				t.Fatalf("error %T with %v", err, err)
			}
			lines := bytes.Count(src, []byte("\n")) + 2
			for _, e := range es {
				if e.Line < 0 || e.Line > lines {
					t.Fatalf("error at line %d of a %d-line input: %v", e.Line, lines, e)
				}
			}
			return
		}
		if file.Site == "" || file.Heartbeat <= 0 || file.Unlock <= 0 {
			t.Fatalf("accepted file without site or defaults: %+v", file)
		}
		for _, d := range file.Doors {
			if d.ID.Time().IsZero() {
				t.Fatalf("door %s has an invalid ID %q", d.Name, d.ID)
			}
		}
		for _, c := range file.Script {
			if _, err := ParseCommand(file, c.Text); err != nil {
				t.Fatalf("script line %q does not parse as a command: %v", c.Text, err)
			}
		}
	})
}

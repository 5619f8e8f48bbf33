package access_test

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

func TestNewID(t *testing.T) {
	tests := []struct {
		name    string
		at      time.Time
		entropy []byte
		want    access.ID
		wantErr error
	}{
		{"OK/Epoch", time.UnixMilli(0), make([]byte, 10), "00000000000000000000000000", nil},
		{"OK/Max", time.UnixMilli(1<<48 - 1), bytes.Repeat([]byte{0xff}, 10), "7ZZZZZZZZZZZZZZZZZZZZZZZZZ", nil},
		// The time part of the ULID specification's example ID.
		{"OK/SpecExample", time.UnixMilli(1469918176385), make([]byte, 10), "01ARYZ6S410000000000000000", nil},
		{"OK/Entropy", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, "01KDVDNA00041061050R3GG28A", nil},
		{"ErrIDTime/BeforeEpoch", time.UnixMilli(-1), make([]byte, 10), "", access.ErrIDTime},
		{"ErrIDTime/TooLate", time.UnixMilli(1 << 48), make([]byte, 10), "", access.ErrIDTime},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := access.NewID(tt.at, bytes.NewReader(tt.entropy))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if err != nil {
				return
			}
			if got, want := got.Time(), time.UnixMilli(tt.at.UnixMilli()).UTC(); !got.Equal(want) {
				t.Errorf("Time() = %v, want %v", got, want)
			}
		})
	}
}

func TestNewID_ErrShortEntropy(t *testing.T) {
	_, err := access.NewID(time.Now(), bytes.NewReader([]byte{1, 2, 3}))
	if got, want := access.ErrorCode(err), access.Internal; got != want {
		t.Errorf("ErrorCode = %q, want %q (err %v)", got, want, err)
	}
}

func TestMustNewID(t *testing.T) {
	a, b := access.MustNewID(), access.MustNewID()
	if a == b {
		t.Errorf("two MustNewID calls returned %q", a)
	}
	if _, err := access.ParseID(string(a)); err != nil {
		t.Errorf("ParseID(MustNewID()): %v", err)
	}
}

func TestParseID(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    access.ID
		wantErr bool
	}{
		{"OK", "01ARYZ6S41TSV4RRFFQ69G5FAV", "01ARYZ6S41TSV4RRFFQ69G5FAV", false},
		{"OK/LowerCase", "01aryz6s41tsv4rrffq69g5fav", "01ARYZ6S41TSV4RRFFQ69G5FAV", false},
		{"OK/Max", "7ZZZZZZZZZZZZZZZZZZZZZZZZZ", "7ZZZZZZZZZZZZZZZZZZZZZZZZZ", false},
		{"ErrBadID/Empty", "", "", true},
		{"ErrBadID/Short", "01ARYZ6S41TSV4RRFFQ69G5FA", "", true},
		{"ErrBadID/Long", "01ARYZ6S41TSV4RRFFQ69G5FAVX", "", true},
		{"ErrBadID/LetterI", "01ARYZ6S41TSV4RRFFQ69G5FAI", "", true},
		{"ErrBadID/LetterL", "01ARYZ6S41TSV4RRFFQ69G5FAL", "", true},
		{"ErrBadID/LetterO", "01ARYZ6S41TSV4RRFFQ69G5FAO", "", true},
		{"ErrBadID/LetterU", "01ARYZ6S41TSV4RRFFQ69G5FAU", "", true},
		{"ErrBadID/Punctuation", "01ARYZ6S41TSV4RRFFQ69G5FA-", "", true},
		{"ErrBadID/Overflow", "8ZZZZZZZZZZZZZZZZZZZZZZZZZ", "", true},
		{"ErrBadID/NonASCII", "01ARYZ6S41TSV4RRFFQ69G5FÄ", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := access.ParseID(tt.in)
			if tt.wantErr {
				if !errors.Is(err, access.ErrBadID) {
					t.Fatalf("err = %v, want ErrBadID", err)
				}
				if got, want := access.ErrorCode(err), access.Invalid; got != want {
					t.Errorf("ErrorCode = %q, want %q", got, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseID: %v", err)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestID_TimeAndIsZero(t *testing.T) {
	var zero access.ID
	if !zero.IsZero() {
		t.Error("zero ID: IsZero() = false")
	}
	if got := zero.Time(); !got.IsZero() {
		t.Errorf("zero ID: Time() = %v, want zero", got)
	}
	if got := access.ID("not an id").Time(); !got.IsZero() {
		t.Errorf("malformed ID: Time() = %v, want zero", got)
	}
	id := access.ID("01ARYZ6S41TSV4RRFFQ69G5FAV")
	if id.IsZero() {
		t.Error("IsZero() = true for a valid ID")
	}
	if got, want := id.Time(), time.UnixMilli(1469918176385).UTC(); !got.Equal(want) {
		t.Errorf("Time() = %v, want %v", got, want)
	}
}

func TestIDGen_MonotonicSameMillisecond(t *testing.T) {
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	gen := access.NewIDGen(bytes.NewReader(append(make([]byte, 9), 0xfe)))
	var got []access.ID
	for range 3 {
		id, err := gen.New(at)
		must(t, err)
		got = append(got, id)
	}
	// The random part starts at ...FE and increments by one, carrying.
	want := []access.ID{"01KQHPHXG0000000000000007Y", "01KQHPHXG0000000000000007Z", "01KQHPHXG00000000000000080"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("id %d = %q, want %q", i, got[i], want[i])
		}
	}
}

func TestIDGen_ClockStepsBack(t *testing.T) {
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	gen := access.NewIDGen(nil)
	a, err := gen.New(at)
	must(t, err)
	b, err := gen.New(at.Add(-time.Second))
	must(t, err)
	if !(a < b) {
		t.Errorf("after a clock step back got %q then %q, want increasing", a, b)
	}
	if got, want := b.Time(), a.Time(); !got.Equal(want) {
		t.Errorf("Time() = %v, want the earlier ID's %v", got, want)
	}
}

func TestIDGen_ErrIDOverflow(t *testing.T) {
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	gen := access.NewIDGen(bytes.NewReader(bytes.Repeat([]byte{0xff}, 20)))
	_, err := gen.New(at)
	must(t, err)
	_, err = gen.New(at)
	if !errors.Is(err, access.ErrIDOverflow) {
		t.Fatalf("err = %v, want ErrIDOverflow", err)
	}
	if got, want := access.ErrorCode(err), access.Unavailable; got != want {
		t.Errorf("ErrorCode = %q, want %q", got, want)
	}
	// The next millisecond draws fresh randomness.
	if _, err := gen.New(at.Add(time.Millisecond)); err != nil {
		t.Errorf("next millisecond: %v", err)
	}
}

func TestIDGen_Concurrent(t *testing.T) {
	gen := access.NewIDGen(nil)
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	const workers, each = 8, 500
	results := make([][]access.ID, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range each {
				id, err := gen.New(at)
				if err != nil {
					t.Error(err)
					return
				}
				results[w] = append(results[w], id)
			}
		})
	}
	wg.Wait()
	seen := make(map[access.ID]bool)
	for w, ids := range results {
		for i, id := range ids {
			if seen[id] {
				t.Fatalf("duplicate id %q", id)
			}
			seen[id] = true
			if i > 0 && !(ids[i-1] < id) {
				t.Fatalf("worker %d: %q after %q, want increasing", w, id, ids[i-1])
			}
		}
	}
	if got, want := len(seen), workers*each; got != want {
		t.Errorf("got %d ids, want %d", got, want)
	}
}

func FuzzParseID(f *testing.F) {
	for _, s := range []string{
		"01ARYZ6S41TSV4RRFFQ69G5FAV", "01aryz6s41tsv4rrffq69g5fav", "7ZZZZZZZZZZZZZZZZZZZZZZZZZ",
		"8ZZZZZZZZZZZZZZZZZZZZZZZZZ", "00000000000000000000000000", "", "01ARYZ6S41TSV4RRFFQ69G5FAI",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := access.ParseID(s)
		if err != nil {
			if !errors.Is(err, access.ErrBadID) {
				t.Fatalf("ParseID(%q): error %v does not wrap ErrBadID", s, err)
			}
			return
		}
		if !strings.EqualFold(string(id), s) {
			t.Fatalf("ParseID(%q) = %q, not the same text", s, id)
		}
		again, err := access.ParseID(string(id))
		if err != nil || again != id {
			t.Fatalf("ParseID(%q) = %q, %v; want canonical form to parse to itself", id, again, err)
		}
		// Re-encoding the decoded time and random part gives the same ID.
		if id.Time().IsZero() {
			t.Fatalf("ParseID(%q) = %q with zero Time()", s, id)
		}
	})
}

package replication

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"pgregory.net/rapid"
)

// fataler is what test helpers need of *testing.T and *rapid.T.
type fataler interface {
	Helper()
	Fatalf(format string, args ...any)
}

// fakeWall is an injectable wall clock for tests.
type fakeWall struct{ t time.Time }

func (w *fakeWall) now() time.Time { return w.t }

var t0 = time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)

// mustClock returns a clock for origin on wall w with the given skew guard.
func mustClock(tb fataler, origin string, maxSkew time.Duration, w *fakeWall) *Clock {
	tb.Helper()
	c, err := NewClock(origin, maxSkew, w.now)
	if err != nil {
		tb.Fatalf("NewClock: %v", err)
	}
	return c
}

func TestStampOrder(t *testing.T) {
	for _, tc := range []struct {
		a, b Stamp
		want int
	}{
		{Stamp{1, 0, "a"}, Stamp{2, 0, "a"}, -1},
		{Stamp{2, 0, "a"}, Stamp{1, 9, "z"}, 1},
		{Stamp{1, 1, "a"}, Stamp{1, 2, "a"}, -1},
		{Stamp{1, 1, "b"}, Stamp{1, 1, "a"}, 1},
		{Stamp{1, 1, "a"}, Stamp{1, 1, "a"}, 0},
		{Stamp{}, Stamp{0, 0, "a"}, -1},
	} {
		if got := tc.a.Compare(tc.b); got != tc.want {
			t.Errorf("%s.Compare(%s) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := tc.b.Compare(tc.a); got != -tc.want {
			t.Errorf("%s.Compare(%s) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

func TestStampText(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		for _, s := range []Stamp{{}, {1732412345000000000, 3, "hub"}, {0, 0, "01J4Z3K7V9ABCDEFGHJKMNPQRS"}, {1<<63 - 1, 1<<32 - 1, "a.b_c:d-e"}} {
			text, err := s.MarshalText()
			if err != nil {
				t.Fatalf("MarshalText(%#v): %v", s, err)
			}
			var got Stamp
			if err := got.UnmarshalText(text); err != nil {
				t.Fatalf("UnmarshalText(%q): %v", text, err)
			}
			if got != s {
				t.Errorf("round trip of %#v = %#v", s, got)
			}
		}
	})
	t.Run("ErrBadEncoding", func(t *testing.T) {
		for _, text := range []string{"", "1", "1.2", "01.2@a", "1.02@a", "+1.2@a", "-1.2@a", "1.2@", "1. 2@a", "1.4294967296@a", "9223372036854775808.0@a", "1.2@a b", "1.2@a@b", "0.0@x\x00"} {
			if _, err := ParseStamp(text); err == nil {
				t.Errorf("ParseStamp(%q) succeeded", text)
			} else if access.ErrorCode(err) != access.Invalid {
				t.Errorf("ParseStamp(%q): code %s, want invalid", text, access.ErrorCode(err))
			}
		}
	})
}

func TestStampBinary(t *testing.T) {
	s := Stamp{Wall: 1732412345000000000, Counter: 7, Origin: "hub"}
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got Stamp
	if err := got.UnmarshalBinary(b); err != nil || got != s {
		t.Fatalf("round trip = %#v, %v; want %#v", got, err, s)
	}
	for i := range b {
		if err := got.UnmarshalBinary(b[:i]); !errors.Is(err, ErrBadEncoding) {
			t.Errorf("truncated to %d bytes: err = %v, want ErrBadEncoding", i, err)
		}
	}
	if err := got.UnmarshalBinary(append(b, 0)); !errors.Is(err, ErrBadEncoding) {
		t.Errorf("trailing byte: err = %v", err)
	}
	if _, err := (Stamp{Wall: 5}).MarshalBinary(); !errors.Is(err, ErrBadStamp) {
		t.Errorf("stamp without origin: err = %v, want ErrBadStamp", err)
	}
}

func TestClockSkew(t *testing.T) {
	w := &fakeWall{t: t0}
	c := mustClock(t, "site-a", time.Minute, w)
	before := c.Now()

	ahead := Stamp{Wall: t0.Add(time.Hour).UnixNano(), Origin: "site-b"}
	err := c.Observe(ahead)
	if !errors.Is(err, ErrClockSkew) {
		t.Fatalf("Observe 1h ahead: err = %v, want ErrClockSkew", err)
	}
	var se *SkewError
	if !errors.As(err, &se) || se.Ahead() != time.Hour || se.Remote != ahead {
		t.Fatalf("SkewError = %+v", se)
	}
	if access.ErrorCode(err) != access.Invalid {
		t.Errorf("code = %s, want invalid", access.ErrorCode(err))
	}
	if n, last := c.Rejected(); n != 1 || last == nil || last.Remote != ahead {
		t.Errorf("Rejected() = %d, %v; want 1 and the stamp", n, last)
	}
	if got := c.Now(); got.Wall >= ahead.Wall || !before.Less(got) {
		t.Errorf("after refusal Now() = %s; the refused stamp moved the clock", got)
	}

	// Within the guard, the clock moves past the remote stamp.
	near := Stamp{Wall: t0.Add(59 * time.Second).UnixNano(), Counter: 4, Origin: "site-b"}
	if err := c.Observe(near); err != nil {
		t.Fatalf("Observe 59s ahead: %v", err)
	}
	if got := c.Now(); !near.Less(got) {
		t.Errorf("Now() = %s, not after observed %s", got, near)
	}
	if err := c.Check(ahead); !errors.Is(err, ErrClockSkew) {
		t.Errorf("Check: %v", err)
	}
	if n, _ := c.Rejected(); n != 1 {
		t.Errorf("Check counted a refusal")
	}
	// Witness takes the clock's own stamps without the guard.
	if err := c.Witness(Stamp{Wall: ahead.Wall, Origin: "site-a"}); err != nil {
		t.Fatal(err)
	}
	if got := c.Now(); got.Wall != ahead.Wall || got.Counter != 1 {
		t.Errorf("Now() after Witness = %s", got)
	}
}

// TestClockMonotonic checks that whatever the wall clock does (forwards,
// backwards, standing still) and whatever stamps are observed, every stamp
// Now returns is greater than every stamp returned or accepted before, that
// stamps too far ahead are refused and counted, and that refused stamps do
// not move the clock.
func TestClockMonotonic(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := &fakeWall{t: t0}
		maxSkew := time.Duration(rapid.IntRange(1, 1000).Draw(t, "maxSkew"))
		c := mustClock(t, "me", maxSkew, w)
		var high Stamp // greatest stamp returned or accepted
		var refused uint64
		for range rapid.IntRange(1, 200).Draw(t, "steps") {
			switch rapid.IntRange(0, 3).Draw(t, "action") {
			case 0: // wall clock moves, possibly backwards
				w.t = w.t.Add(time.Duration(rapid.IntRange(-500, 500).Draw(t, "step")))
			case 1:
				s := c.Now()
				if !high.Less(s) {
					t.Fatalf("Now() = %s, not after %s", s, high)
				}
				if s.Origin != "me" {
					t.Fatalf("origin %q", s.Origin)
				}
				high = s
			case 2:
				r := Stamp{
					Wall:    w.t.UnixNano() + int64(rapid.IntRange(-2000, 2000).Draw(t, "offset")),
					Counter: uint32(rapid.IntRange(0, 3).Draw(t, "counter")),
					Origin:  rapid.SampledFrom([]string{"a", "b", "zz"}).Draw(t, "origin"),
				}
				err := c.Observe(r)
				tooFar := r.Wall-w.t.UnixNano() > int64(maxSkew)
				if tooFar != (err != nil) {
					t.Fatalf("Observe(%s) at %d with skew %d: err = %v", r, w.t.UnixNano(), maxSkew, err)
				}
				if err != nil {
					refused++
					continue
				}
				if high.Less(r) {
					high = r
				}
			case 3:
				if n, _ := c.Rejected(); n != refused {
					t.Fatalf("Rejected() = %d, want %d", n, refused)
				}
			}
		}
	})
}

func TestClockCounterOverflow(t *testing.T) {
	w := &fakeWall{t: t0}
	c := mustClock(t, "me", 0, w)
	if err := c.Witness(Stamp{Wall: t0.UnixNano(), Counter: 1<<32 - 1, Origin: "me"}); err != nil {
		t.Fatal(err)
	}
	got := c.Now()
	if want := (Stamp{Wall: t0.UnixNano() + 1, Origin: "me"}); got != want {
		t.Fatalf("Now() = %s, want %s", got, want)
	}
}

func FuzzStampBinary(f *testing.F) {
	for _, s := range []Stamp{{}, {1732412345000000000, 3, "hub"}, {1, 1<<32 - 1, "01J4Z3K7V9ABCDEFGHJKMNPQRS"}} {
		b, _ := s.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		var s Stamp
		if err := s.UnmarshalBinary(data); err != nil {
			if access.ErrorCode(err) != access.Invalid {
				t.Fatalf("code %s for %v", access.ErrorCode(err), err)
			}
			return
		}
		b, err := s.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded %#v does not encode: %v", s, err)
		}
		if !bytes.Equal(b, data) {
			t.Fatalf("not canonical: %x decodes to %#v which encodes to %x", data, s, b)
		}
	})
}

func FuzzStampText(f *testing.F) {
	for _, s := range []string{"0.0@", "1732412345000000000.3@hub", "1.2@a.b", "01.2@a", "1.2@a b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		s, err := ParseStamp(text)
		if err != nil {
			if access.ErrorCode(err) != access.Invalid {
				t.Fatalf("code %s for %v", access.ErrorCode(err), err)
			}
			return
		}
		if got := s.String(); got != text {
			t.Fatalf("not canonical: %q parses to %#v which prints %q", text, s, got)
		}
	})
}

// TestClockRestart persists Last and witnesses it in a new clock whose wall
// clock stepped back: stamps keep increasing across the restart.
func TestClockRestart(t *testing.T) {
	w := &fakeWall{t: t0}
	c := mustClock(t, "me", 0, w)
	var last Stamp
	for range 3 {
		last = c.Now()
	}
	if c.Last() != last {
		t.Fatalf("Last() = %s, want %s", c.Last(), last)
	}
	w2 := &fakeWall{t: t0.Add(-time.Hour)}
	c2 := mustClock(t, "me", 0, w2)
	if err := c2.Witness(c.Last()); err != nil {
		t.Fatal(err)
	}
	if got := c2.Now(); !last.Less(got) {
		t.Fatalf("after restart Now() = %s, not after %s", got, last)
	}
	if _, err := NewClock("bad origin", 0, nil); !errors.Is(err, ErrBadStamp) {
		t.Errorf("NewClock with a bad origin: %v", err)
	}
}

package access_test

import (
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

// zeroReader is an entropy source of zero bytes, for reproducible IDs.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// idSource makes distinct, reproducible IDs in increasing order.
type idSource struct {
	gen *access.IDGen
	at  time.Time
}

// newIDSource returns an idSource whose IDs carry time at.
func newIDSource(at time.Time) *idSource {
	return &idSource{gen: access.NewIDGen(zeroReader{}), at: at}
}

// fataler is the part of testing.TB (and rapid.T) that helpers need.
type fataler interface {
	Helper()
	Fatalf(format string, args ...any)
}

// New returns the next ID, failing tb on error.
func (s *idSource) New(tb fataler) access.ID {
	tb.Helper()
	id, err := s.gen.New(s.at)
	if err != nil {
		tb.Fatalf("IDGen.New: %v", err)
	}
	return id
}

// MustLoadLocation loads a time zone, failing tb on error.
func MustLoadLocation(tb testing.TB, name string) *time.Location {
	tb.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		tb.Fatalf("LoadLocation(%q): %v", name, err)
	}
	return loc
}

// must fails tb when err is not nil.
func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

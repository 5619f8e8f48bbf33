package importer

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

// platform is a fake of what the hub knows: group and occupier names and
// the card numbers in use. It counts the lookups made.
type platform struct {
	groups     map[string]access.ID
	occupiers  map[string]access.ID
	taken      map[access.CardNumber]bool
	cardCalls  int
	maxBatch   int
	groupCalls int
}

// newPlatform returns a platform that knows the synthetic groups and
// occupiers, plus the extra names given.
func newPlatform(extraGroups ...string) *platform {
	p := &platform{groups: map[string]access.ID{}, occupiers: map[string]access.ID{}, taken: map[access.CardNumber]bool{}}
	for _, g := range append(slices.Clone(SyntheticGroups), extraGroups...) {
		p.groups[g] = access.MustNewID()
	}
	for _, o := range SyntheticOccupiers {
		p.occupiers[o] = access.MustNewID()
	}
	return p
}

// options returns import options wired to p, with deterministic IDs.
func (p *platform) options(kind access.PersonKind) Options {
	return Options{
		Kind:      kind,
		Groups:    p.lookup(p.groups, &p.groupCalls),
		Occupiers: p.lookup(p.occupiers, new(int)),
		CardsTaken: func(_ context.Context, nums []access.CardNumber) ([]access.CardNumber, error) {
			p.cardCalls++
			p.maxBatch = max(p.maxBatch, len(nums))
			var out []access.CardNumber
			for _, n := range nums {
				if p.taken[n] {
					out = append(out, n)
				}
			}
			return out, nil
		},
		IDs: access.NewIDGen(bytes.NewReader(make([]byte, 1<<10))),
		Now: func() time.Time { return time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC) },
	}
}

func (p *platform) lookup(m map[string]access.ID, calls *int) Lookup {
	return func(_ context.Context, refs []string) (map[string]access.ID, error) {
		*calls++
		out := map[string]access.ID{}
		for _, r := range refs {
			if id, ok := m[r]; ok {
				out[r] = id
			}
			// An ID is accepted as itself.
			for _, id := range m {
				if string(id) == r {
					out[r] = id
				}
			}
		}
		return out, nil
	}
}

// mustImport imports text and fails the test on any error.
func mustImport(tb testing.TB, text string, opt Options) *Result {
	tb.Helper()
	res, err := Import(context.Background(), strings.NewReader(text), opt)
	if err != nil {
		tb.Fatalf("Import: %v", err)
	}
	return res
}

// mustReject imports text and returns the report, failing the test when the
// import is accepted or fails otherwise.
func mustReject(tb testing.TB, text string, opt Options) *Report {
	tb.Helper()
	res, err := Import(context.Background(), strings.NewReader(text), opt)
	if res != nil {
		tb.Fatalf("Import accepted %d rows, want a rejection", len(res.Rows))
	}
	var rep *Report
	if !errors.As(err, &rep) {
		tb.Fatalf("Import error = %v, want a *Report", err)
	}
	if !errors.Is(err, ErrRejected) || access.ErrorCode(err) != access.Invalid {
		tb.Fatalf("report %v: does not wrap ErrRejected with code invalid", err)
	}
	return rep
}

// synthetic returns a synthetic file of n rows.
func synthetic(tb testing.TB, n int) []byte {
	tb.Helper()
	var b bytes.Buffer
	if err := WriteSynthetic(&b, n); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

// validateAll checks that every value of res passes its Validate.
func validateAll(tb testing.TB, res *Result) {
	tb.Helper()
	for _, r := range res.Rows {
		if err := r.Person.Validate(); err != nil {
			tb.Fatalf("line %d: person: %v", r.Line, err)
		}
		for _, c := range r.Cards {
			if err := c.Validate(); err != nil {
				tb.Fatalf("line %d: card: %v", r.Line, err)
			}
			if c.PersonID != r.Person.ID {
				tb.Fatalf("line %d: card of %s, person %s", r.Line, c.PersonID, r.Person.ID)
			}
		}
		for _, g := range r.Grants {
			if err := g.Validate(); err != nil {
				tb.Fatalf("line %d: grant: %v", r.Line, err)
			}
			if g.HolderID != r.Person.ID {
				tb.Fatalf("line %d: grant to %s, person %s", r.Line, g.HolderID, r.Person.ID)
			}
		}
	}
}

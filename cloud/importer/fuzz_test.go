package importer

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

// FuzzImport feeds arbitrary bytes to Import with lookups that know every
// reference and a platform that holds every card number divisible by 7. It
// must not panic; an accepted file must give values that pass Validate; a
// rejected one a sorted report with lines inside the file.
func FuzzImport(f *testing.F) {
	f.Add([]byte("name,card_number\nAnn,1\n"), uint8(2))
	f.Add([]byte("first_name,last_name,occupier,groups\n\"A\nB\",C,Acme,G1;G2\n"), uint8(1))
	f.Add([]byte("kind,name,email,occupier,card_number,card_format,card_facility,card_status,groups,offline_access,active,valid_from,valid_until\n"+
		"occupier,Ann,a@example.com,Acme,1;2,h10301;raw32,3;,active;lost,Lobby,true,false,2026-01-01,2026-02-01T00:00:00Z\n"), uint8(0))
	ids := sync.Map{}
	resolve := func(_ context.Context, refs []string) (map[string]access.ID, error) {
		out := map[string]access.ID{}
		for _, r := range refs {
			id, _ := ids.LoadOrStore(r, access.MustNewID())
			out[r] = id.(access.ID)
		}
		return out, nil
	}
	f.Fuzz(func(t *testing.T, data []byte, flags uint8) {
		opt := Options{
			Kind:         access.PersonKind(flags % 3),
			EnableAccess: flags&4 != 0,
			RequireCard:  flags&8 != 0,
			Groups:       resolve,
			Occupiers:    resolve,
			CardsTaken: func(_ context.Context, nums []access.CardNumber) ([]access.CardNumber, error) {
				var out []access.CardNumber
				for _, n := range nums {
					if n%7 == 0 {
						out = append(out, n)
					}
				}
				return out, nil
			},
			IDs: access.NewIDGen(bytes.NewReader(make([]byte, 64))),
			Now: func() time.Time { return time.Unix(1_800_000_000, 0) },
		}
		if flags&16 != 0 {
			opt.Header = HeaderAbsent
			opt.Mapping = Mapping{FieldName: {Index: 1}, FieldCardNumber: {Index: 2}, FieldOccupier: {Index: 3}, FieldGroups: {Index: 4}}
		}
		res, err := Import(context.Background(), bytes.NewReader(data), opt)
		if err == nil {
			validateAll(t, res)
			seen := map[access.CardNumber]bool{}
			for _, r := range res.Rows {
				for _, c := range r.Cards {
					if seen[c.Number] || c.Number%7 == 0 {
						t.Fatalf("card %d accepted twice or while taken", c.Number)
					}
					seen[c.Number] = true
				}
			}
			return
		}
		var rep *Report
		if !errors.As(err, &rep) {
			t.Fatalf("err = %v, want a *Report", err)
		}
		if res != nil || len(rep.Errors) == 0 {
			t.Fatalf("rejected with %v rows and %d errors", res, len(rep.Errors))
		}
		lines := bytes.Count(data, []byte("\n")) + 1
		for _, e := range rep.Errors {
			if e.Line < 1 || e.Line > lines {
				t.Fatalf("error %v outside the %d lines", e, lines)
			}
		}
		if !slices.IsSortedFunc(rep.Errors, func(a, b RowError) int { return a.Line - b.Line }) {
			t.Fatalf("errors not sorted: %v", rep.Errors)
		}
	})
}

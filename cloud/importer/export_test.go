package importer

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

func TestEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"Ann", "Ann"},
		{"=SUM(A1)", "'=SUM(A1)"},
		{"+1", "'+1"},
		{"-2", "'-2"},
		{"@cmd", "'@cmd"},
		{"\tx", "'\tx"},
		{"\rx", "'\rx"},
		{"'=x", "''=x"},
		{"'x", "'x"},
		{"''", "''"},
		{"a=b", "a=b"},
	}
	for _, tt := range tests {
		if got := Escape(tt.in); got != tt.want {
			t.Errorf("Escape(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if got := Unescape(Escape(tt.in)); got != tt.in {
			t.Errorf("Unescape(Escape(%q)) = %q", tt.in, got)
		}
	}
}

func FuzzEscape(f *testing.F) {
	for _, s := range []string{"", "=1", "'=1", "''-x", "'", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := Escape(s)
		if got := Unescape(e); got != s {
			t.Fatalf("Unescape(Escape(%q)) = %q", s, got)
		}
		if formulaStart(e) {
			t.Fatalf("Escape(%q) = %q starts a formula", s, e)
		}
	})
}

// people returns a varied set of records to export, using the platform's
// names.
func people(p *platform) []Record {
	day := time.Date(2026, 3, 1, 8, 30, 0, 0, time.UTC)
	h10301 := access.WiegandCredential{Format: access.H10301, Facility: 12, Card: 3456}.Number()
	c1000 := access.WiegandCredential{Format: access.Corporate1000, Facility: 4000, Card: 99}.Number()
	return []Record{
		{Person: access.Person{Kind: access.Occupier, Name: "Ann Lee", Email: "ann@example.com", Active: true, OfflineAccess: true},
			Occupier: "Acme Ltd", Groups: []string{"Lobby", "Floor 1"},
			Cards: []access.Card{{Number: h10301, Status: access.CardActive}, {Number: 77, Status: access.CardLost}}},
		{Person: access.Person{Kind: access.AccessUser, Name: "=HYPERLINK(\"http://x\")", ValidFrom: day, ValidUntil: day.Add(48 * time.Hour)},
			Cards: []access.Card{{Number: c1000, Status: access.CardSuspended}}},
		{Person: access.Person{Kind: access.AccessUser, Name: "-Bob, \"the\" builder", Email: "bob@example.com", Active: true},
			Groups: []string{"-Night shift"}},
		{Person: access.Person{Kind: access.Occupier, Name: "Dée Ünicode", Active: false}, Occupier: "Globex",
			Cards: []access.Card{{Number: 1<<40 + 5, Status: access.CardActive}, {Number: 1<<60 + 1, Status: access.CardActive}}},
	}
}

// TestRoundTrip exports people and imports the file with the default
// mapping: the same people, cards and groups come back.
func TestRoundTrip(t *testing.T) {
	p := newPlatform("-Night shift")
	recs := people(p)
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for i := range recs {
		recs[i].Person.ID = access.MustNewID()
		for j := range recs[i].Cards {
			recs[i].Cards[j].PersonID = recs[i].Person.ID
		}
		if err := w.Write(recs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	text := buf.String()
	if !strings.HasPrefix(text, "kind,name,email,occupier,card_number,card_format,card_facility,card_status,groups,offline_access,active,valid_from,valid_until\n") {
		t.Fatalf("header:\n%s", text)
	}
	for _, want := range []string{`'=HYPERLINK(""http://x"")`, `"'-Bob, ""the"" builder"`, "'-Night shift", "3456;77,h10301;raw32,12;,active;lost"} {
		if !strings.Contains(text, want) {
			t.Errorf("export lacks %s:\n%s", want, text)
		}
	}
	// No cell starts a formula.
	cr := csv.NewReader(strings.NewReader(text))
	all, err := cr.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range all {
		for _, c := range row {
			if formulaStart(c) {
				t.Errorf("cell %q starts a formula", c)
			}
		}
	}

	res := mustImport(t, text, p.options(0))
	validateAll(t, res)
	if got, want := len(res.Rows), len(recs); got != want {
		t.Fatalf("rows = %d, want %d", got, want)
	}
	for i, r := range res.Rows {
		want := recs[i]
		got := r.Person
		got.ID = want.Person.ID
		if !samePerson(got, want.Person) {
			t.Errorf("person %d:\n got %+v\nwant %+v", i, got, want.Person)
		}
		if want.Occupier != "" && got.OccupierID != p.occupiers[want.Occupier] {
			t.Errorf("person %d: occupier %s", i, got.OccupierID)
		}
		var gotCards, wantCards []string
		for _, c := range r.Cards {
			gotCards = append(gotCards, fmt.Sprint(c.Number, c.Status))
		}
		for _, c := range want.Cards {
			wantCards = append(wantCards, fmt.Sprint(c.Number, c.Status))
		}
		if fmt.Sprint(gotCards) != fmt.Sprint(wantCards) {
			t.Errorf("person %d: cards %v, want %v", i, gotCards, wantCards)
		}
		var gotGroups, wantGroups []access.ID
		for _, g := range r.Grants {
			gotGroups = append(gotGroups, g.GroupID)
		}
		for _, g := range want.Groups {
			wantGroups = append(wantGroups, p.groups[g])
		}
		if fmt.Sprint(gotGroups) != fmt.Sprint(wantGroups) {
			t.Errorf("person %d: groups %v, want %v", i, gotGroups, wantGroups)
		}
	}
}

func samePerson(a, b access.Person) bool {
	return a.ID == b.ID && a.Kind == b.Kind && a.Name == b.Name && a.Email == b.Email &&
		a.Active == b.Active && a.OfflineAccess == b.OfflineAccess &&
		a.ValidFrom.Equal(b.ValidFrom) && a.ValidUntil.Equal(b.ValidUntil)
}

// TestRoundTripSynthetic exports the people of a synthetic import and imports the
// export again: the same people come back.
func TestRoundTripSynthetic(t *testing.T) {
	if testing.Short() {
		t.Skip("100k rows")
	}
	p := newPlatform()
	first, err := Import(context.Background(), bytes.NewReader(synthetic(t, 20_000)), p.options(access.Occupier))
	if err != nil {
		t.Fatal(err)
	}
	names := map[access.ID]string{}
	for n, id := range p.groups {
		names[id] = n
	}
	for n, id := range p.occupiers {
		names[id] = n
	}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, r := range first.Rows {
		rec := Record{Person: r.Person, Occupier: names[r.Person.OccupierID], Cards: r.Cards}
		for _, g := range r.Grants {
			rec.Groups = append(rec.Groups, names[g.GroupID])
		}
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	second := mustImport(t, buf.String(), p.options(0))
	if got, want := len(second.Rows), len(first.Rows); got != want {
		t.Fatalf("rows = %d, want %d", got, want)
	}
	for i := range first.Rows {
		a, b := first.Rows[i], second.Rows[i]
		b.Person.ID = a.Person.ID
		if !samePerson(a.Person, b.Person) || a.Person.OccupierID != b.Person.OccupierID ||
			len(a.Cards) != len(b.Cards) || a.Cards[0].Number != b.Cards[0].Number || len(a.Grants) != len(b.Grants) {
			t.Fatalf("row %d:\n got %+v\nwant %+v", i, b, a)
		}
	}
}

// TestWriterRejects people Import could not read back.
func TestWriterRejects(t *testing.T) {
	for _, rec := range []Record{
		{Person: access.Person{Kind: access.Visitor, Name: "V"}},
		{Person: access.Person{Kind: access.AccessUser}},
		{Person: access.Person{Kind: access.AccessUser, Name: "A"}, Groups: []string{"a;b"}},
	} {
		if err := NewWriter(&bytes.Buffer{}).Write(rec); access.ErrorCode(err) != access.Invalid {
			t.Errorf("Write(%+v) = %v, want invalid", rec, err)
		}
	}
	var b bytes.Buffer
	if err := NewWriter(&b).Flush(); err != nil || !strings.HasPrefix(b.String(), "kind,name,") {
		t.Errorf("empty export = %q, %v", b.String(), err)
	}
}

package importer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

// TestImport100k imports a valid generated file of 100,000 occupier users
// and checks every row came out, in order, with resolved references.
func TestImport100k(t *testing.T) {
	if testing.Short() {
		t.Skip("100k rows")
	}
	const n = 100_000
	p := newPlatform()
	opt := p.options(access.Occupier)
	var last Progress
	calls := 0
	opt.Progress = func(pr Progress) { last = pr; calls++ }
	res, err := Import(context.Background(), bytes.NewReader(synthetic(t, n)), opt)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(res.Rows), n; got != want {
		t.Fatalf("rows = %d, want %d", got, want)
	}
	validateAll(t, res)
	for i, r := range res.Rows {
		if got, want := r.Line, i+2; got != want {
			t.Fatalf("row %d: line %d, want %d", i, got, want)
		}
	}
	r := res.Rows[999]
	if got, want := r.Person.Name, "Anne, Marie Smith"; got != want {
		t.Errorf("row 999 name = %q, want %q", got, want)
	}
	if got, want := r.Person.OccupierID, p.occupiers[SyntheticOccupiers[999%8]]; got != want {
		t.Errorf("row 999 occupier = %s, want %s", got, want)
	}
	if got, want := len(r.Grants), 2; got != want {
		t.Errorf("row 999 grants = %d, want %d", got, want)
	}
	if !r.Person.ValidUntil.Equal(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)) || r.Person.OfflineAccess {
		t.Errorf("row 999: %+v", r.Person)
	}
	f, num, fac := SyntheticCard(0)
	want, _ := cardNumber(map[string]cardFormat{"h10304": formatH10304}[f], num, fac)
	if got := res.Rows[0].Cards[0].Number; got != want {
		t.Errorf("row 0 card = %d, want %d", got, want)
	}
	if got, want := p.maxBatch, 1000; got != want {
		t.Errorf("largest card batch = %d, want %d", got, want)
	}
	if got, want := p.cardCalls, n/1000; got != want {
		t.Errorf("card lookups = %d, want %d", got, want)
	}
	if last.Phase != PhaseDone || last.Rows != n || last.Errors != 0 || calls < 300 {
		t.Errorf("last progress %+v after %d calls", last, calls)
	}
}

// TestDuplicateAtRow73412: one duplicate card number in data row 73,412
// (line 73,413, after the header) of a 100k file rejects the whole file and
// reports exactly that line, naming the line of the first occurrence.
func TestDuplicateAtRow73412(t *testing.T) {
	if testing.Short() {
		t.Skip("100k rows")
	}
	data := synthetic(t, 100_000)
	lines := bytes.Split(data, []byte("\n"))
	const row, firstRow = 73_412, 100 // data rows, 1-based
	cells := strings.Split(string(lines[row]), ",")
	format, num, fac := SyntheticCard(firstRow - 1)
	cells[4], cells[5], cells[6] = format, fac, num
	lines[row] = []byte(strings.Join(cells, ","))
	data = bytes.Join(lines, []byte("\n"))

	p := newPlatform()
	res, err := Import(context.Background(), bytes.NewReader(data), p.options(access.Occupier))
	if res != nil {
		t.Fatalf("accepted %d rows", len(res.Rows))
	}
	var rep *Report
	if !errors.As(err, &rep) {
		t.Fatalf("err = %v", err)
	}
	want := []RowError{{Line: row + 1, Column: 7, Field: FieldCardNumber, Reason: ReasonDuplicate, OtherLine: firstRow + 1}}
	if got := strip(rep.Errors); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("errors = %v, want %v", got, want)
	}
	if got, want := rep.Rows, 100_000; got != want {
		t.Errorf("report rows = %d, want %d", got, want)
	}
}

// strip drops the messages, which tests do not compare.
func strip(errs []RowError) []RowError {
	out := make([]RowError, len(errs))
	for i, e := range errs {
		e.Message = ""
		out[i] = e
	}
	return out
}

// TestManyErrors reports every bad row of a file, with the physical line of
// each bad cell, including after and inside multi-line quoted fields.
func TestManyErrors(t *testing.T) {
	long := strings.Repeat("x", MaxNameLen+1)
	text := "first_name,last_name,email,occupier,card_format,card_facility,card_number,groups\n" + // 1
		"Ann,Lee,ann@example.com,Acme Ltd,h10301,1,100,Lobby\n" + // 2 good
		"\"Multi\n" + // 3
		"line\",Ng,bad-email,Acme Ltd,raw32,,200,Lobby\n" + // 4: name has a line break; bad email
		",Smith,,Globex,raw32,,300,\n" + // 5: no first name
		"Bob,Jones,,,raw32,,400,\n" + // 6: occupier user without occupier
		"Cid,Ray,,Nowhere Inc,raw32,,500,Lobby;Nowhere Group\n" + // 7: unknown occupier and group
		"Dee,Fox,,Acme Ltd,h10301,1,100,Lobby\n" + // 8: duplicate of line 2
		"Eve,Kim,,Acme Ltd,raw32,,600\n" + // 9: 7 columns
		"Fay," + long + ",,Acme Ltd,raw32,,700,\n" + // 10: too long
		"Gus,Bad\xff,,Acme Ltd,raw32,,800,\n" + // 11: bad UTF-8
		"Hal,Ito,,Acme Ltd,raw32,,900,\n" + // 12: taken
		"=cmd(),Ito,,Acme Ltd,raw32,,1000,\n" + // 13: formula
		"Ivy,Oz,,Acme Ltd,h10301,300,5,\n" + // 14: facility does not fit
		"Jo,Ma,,Acme Ltd,raw99,,5,\n" + // 15: unknown format
		"Kai,\"Li\r\n" + // 16
		"Li\",,Acme Ltd,raw32,,1100,\n" + // 17: last name (from line 16) has a line break
		"Lu,Po,,Acme Ltd,raw32,,abc,Lobby\n" + // 18: card not a number
		"'=Mo,Po,mo@example.com,Acme Ltd,raw32,,1200,Lobby\n" // 19 good: escaped formula
	p := newPlatform()
	p.taken[900] = true
	rep := mustReject(t, text, p.options(access.Occupier))
	want := []RowError{
		{Line: 3, Column: 1, Field: FieldFirstName, Reason: ReasonInvalid},
		{Line: 4, Column: 3, Field: FieldEmail, Reason: ReasonInvalid},
		{Line: 5, Column: 1, Field: FieldFirstName, Reason: ReasonRequired},
		{Line: 6, Column: 4, Field: FieldOccupier, Reason: ReasonRequired},
		{Line: 7, Column: 4, Field: FieldOccupier, Reason: ReasonUnknown},
		{Line: 7, Column: 8, Field: FieldGroups, Reason: ReasonUnknown},
		{Line: 8, Column: 7, Field: FieldCardNumber, Reason: ReasonDuplicate, OtherLine: 2},
		{Line: 9, Reason: ReasonColumns},
		{Line: 10, Column: 2, Field: FieldLastName, Reason: ReasonTooLong},
		{Line: 11, Column: 2, Field: FieldLastName, Reason: ReasonEncoding},
		{Line: 12, Column: 7, Field: FieldCardNumber, Reason: ReasonTaken},
		{Line: 13, Column: 1, Field: FieldFirstName, Reason: ReasonFormula},
		{Line: 14, Column: 7, Field: FieldCardNumber, Reason: ReasonInvalid},
		{Line: 15, Column: 5, Field: FieldCardFormat, Reason: ReasonInvalid},
		{Line: 16, Column: 2, Field: FieldLastName, Reason: ReasonInvalid},
		{Line: 18, Column: 7, Field: FieldCardNumber, Reason: ReasonInvalid},
	}
	got := strip(rep.Errors)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("errors:\n got %v\nwant %v", got, want)
		for _, e := range rep.Errors {
			t.Log(e)
		}
	}
	if got, want := rep.Rows, 16; got != want {
		t.Errorf("rows = %d, want %d", got, want)
	}
}

// TestRedactedNumbers: messages never carry a full card number.
func TestRedactedNumbers(t *testing.T) {
	p := newPlatform()
	p.taken[123456789] = true
	text := "name,card_number\nA,123456789\nB,987654321\nC,987654321\n"
	rep := mustReject(t, text, p.options(access.AccessUser))
	if got, want := len(rep.Errors), 2; got != want {
		t.Fatalf("errors = %v", rep.Errors)
	}
	for _, e := range rep.Errors {
		if strings.Contains(e.Message, "123456789") || strings.Contains(e.Message, "987654321") {
			t.Errorf("message carries a card number: %s", e)
		}
	}
}

// TestCardTaken: a card number already on the platform is reported, on
// every row holding it; lookups are batched.
func TestCardTaken(t *testing.T) {
	p := newPlatform()
	p.taken[10_000_000+5] = true // SyntheticCard(5)
	opt := p.options(access.Occupier)
	opt.BatchSize = 7
	rep := mustReject(t, string(synthetic(t, 50)), opt)
	want := []RowError{{Line: 7, Column: 7, Field: FieldCardNumber, Reason: ReasonTaken}}
	if got := strip(rep.Errors); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("errors = %v, want %v", got, want)
	}
	if got, want := p.cardCalls, 8; got != want {
		t.Errorf("card lookups = %d, want %d (50 numbers in batches of 7)", got, want)
	}
	if got, want := p.maxBatch, 7; got != want {
		t.Errorf("largest batch = %d, want %d", got, want)
	}
}

// TestBadUTF8 rejects invalid UTF-8 in any cell, even an unmapped one, and
// in the header.
func TestBadUTF8(t *testing.T) {
	t.Run("Cell", func(t *testing.T) {
		text := "name,notes\nAnn,ok\nBob,caf\xe9\n\"Cy\xc3\",x\n"
		rep := mustReject(t, text, Options{Kind: access.AccessUser})
		want := []RowError{
			{Line: 3, Column: 2, Reason: ReasonEncoding},
			{Line: 4, Column: 1, Field: FieldName, Reason: ReasonEncoding},
		}
		if got := strip(rep.Errors); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("errors = %v, want %v", got, want)
		}
	})
	t.Run("Header", func(t *testing.T) {
		rep := mustReject(t, "name,n\xffotes\nAnn,ok\n", Options{Kind: access.AccessUser})
		if got := strip(rep.Errors); len(got) != 1 || got[0].Line != 1 || got[0].Reason != ReasonHeader {
			t.Fatalf("errors = %v", got)
		}
	})
	t.Run("Latin1File", func(t *testing.T) {
		// A file saved as Latin-1 rather than UTF-8 fails on every accented cell.
		text := "first_name,last_name\nJos\xe9,Garc\xeda\nRen\xe9,Dupont\n"
		rep := mustReject(t, text, Options{Kind: access.AccessUser})
		if got, want := len(rep.Errors), 3; got != want {
			t.Fatalf("errors = %v", rep.Errors)
		}
	})
}

// TestOccupierRules: an occupier user needs an occupier, an access user must
// not have one, and a kind column must agree with the import's kind.
func TestOccupierRules(t *testing.T) {
	p := newPlatform()
	t.Run("OccupierUserWithoutOccupier", func(t *testing.T) {
		rep := mustReject(t, "name,occupier\nAnn,Acme Ltd\nBob,\n", p.options(access.Occupier))
		want := []RowError{{Line: 3, Column: 2, Field: FieldOccupier, Reason: ReasonRequired}}
		if got := strip(rep.Errors); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("errors = %v, want %v", got, want)
		}
	})
	t.Run("NoOccupierColumn", func(t *testing.T) {
		rep := mustReject(t, "name,email\nAnn,a@example.com\n", p.options(access.Occupier))
		want := []RowError{{Line: 1, Field: FieldOccupier, Reason: ReasonHeader}}
		if got := strip(rep.Errors); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("errors = %v, want %v", got, want)
		}
	})
	t.Run("AccessUserWithOccupier", func(t *testing.T) {
		rep := mustReject(t, "name,occupier\nAnn,Acme Ltd\nBob,\n", p.options(access.AccessUser))
		want := []RowError{{Line: 2, Column: 2, Field: FieldOccupier, Reason: ReasonNotAllowed}}
		if got := strip(rep.Errors); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("errors = %v, want %v", got, want)
		}
	})
	t.Run("KindColumn", func(t *testing.T) {
		text := "kind,name,occupier\noccupier,Ann,Acme Ltd\naccess_user,Bob,\nvisitor,Cy,\n"
		rep := mustReject(t, text, p.options(0))
		want := []RowError{{Line: 4, Column: 1, Field: FieldKind, Reason: ReasonInvalid}}
		if got := strip(rep.Errors); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("errors = %v, want %v", got, want)
		}
		rep = mustReject(t, text[:strings.LastIndex(text[:len(text)-1], "\n")+1], p.options(access.Occupier))
		want = []RowError{{Line: 3, Column: 1, Field: FieldKind, Reason: ReasonNotAllowed}}
		if got := strip(rep.Errors); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("errors = %v, want %v", got, want)
		}
	})
}

// TestMapping covers header detection, mappings by name and index, BOM,
// CRLF, another delimiter and the enable-access option.
func TestMapping(t *testing.T) {
	p := newPlatform()
	t.Run("ByNameWithBOMAndCRLF", func(t *testing.T) {
		opt := p.options(access.AccessUser)
		opt.Mapping = Mapping{FieldName: {Name: "Full Name"}, FieldCardNumber: {Name: "badge id"}, FieldGroups: {Index: 3}}
		opt.EnableAccess = true
		res := mustImport(t, "\uFEFFFull Name,Badge ID,Access\r\nAnn Lee,42,Lobby|Gym\r\n", func() Options { o := opt; o.ListSep = '|'; return o }())
		validateAll(t, res)
		r := res.Rows[0]
		if r.Person.Name != "Ann Lee" || !r.Person.Active || r.Cards[0].Number != 42 || len(r.Grants) != 2 || r.Line != 2 {
			t.Fatalf("row = %+v", r)
		}
	})
	t.Run("ByIndexWithoutHeader", func(t *testing.T) {
		opt := p.options(access.AccessUser)
		opt.Comma = ';'
		opt.ListSep = '|'
		opt.Mapping = Mapping{FieldFirstName: {Index: 2}, FieldLastName: {Index: 1}, FieldEmail: {Index: 3}}
		res := mustImport(t, "Lee;Ann;ann@example.com\nNg;Bo;\n", opt)
		if got, want := len(res.Rows), 2; got != want {
			t.Fatalf("rows = %d", got)
		}
		if r := res.Rows[0]; r.Person.Name != "Ann Lee" || r.Person.Email != "ann@example.com" || r.Line != 1 || r.Person.Active {
			t.Fatalf("row = %+v", r)
		}
	})
	t.Run("MissingHeaderColumn", func(t *testing.T) {
		opt := p.options(access.AccessUser)
		opt.Mapping = Mapping{FieldName: {Name: "who"}}
		rep := mustReject(t, "name\nAnn\n", opt)
		if got := strip(rep.Errors); len(got) != 1 || got[0].Reason != ReasonHeader {
			t.Fatalf("errors = %v", got)
		}
	})
	t.Run("ActiveColumnOverridesEnableAccess", func(t *testing.T) {
		opt := p.options(access.AccessUser)
		opt.EnableAccess = true
		res := mustImport(t, "name,active,offline\nAnn,,yes\nBob,no,\n", opt)
		if !res.Rows[0].Person.Active || !res.Rows[0].Person.OfflineAccess || res.Rows[1].Person.Active {
			t.Fatalf("rows = %+v", res.Rows)
		}
	})
	t.Run("CardFormats", func(t *testing.T) {
		text := "name,card_number,card_format,card_facility\n" +
			"A,1,h10301,1\nB,7,,2\nC,4294967295,raw32,\nD,72057594037927935,raw56,\nE,5,corp1000,4095\nF,3;4,h10304;raw32,9;\n"
		res := mustImport(t, text, p.options(access.AccessUser))
		want := []access.CardNumber{
			access.WiegandCredential{Format: access.H10301, Facility: 1, Card: 1}.Number(),
			access.WiegandCredential{Format: access.H10301, Facility: 2, Card: 7}.Number(),
			1<<32 - 1, 1<<56 - 1,
			access.WiegandCredential{Format: access.Corporate1000, Facility: 4095, Card: 5}.Number(),
			access.WiegandCredential{Format: access.H10304, Facility: 9, Card: 3}.Number(), 4,
		}
		var got []access.CardNumber
		for _, r := range res.Rows {
			for _, c := range r.Cards {
				got = append(got, c.Number)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("cards = %v, want %v", got, want)
		}
		rep := mustReject(t, "name,card_number,card_format\nA,4294967296,raw32\nB,1,h10301\nC,0,\n", p.options(access.AccessUser))
		if got, want := len(rep.Errors), 3; got != want {
			t.Fatalf("errors = %v", rep.Errors)
		}
	})
	t.Run("Empty", func(t *testing.T) {
		rep := mustReject(t, "", Options{Kind: access.AccessUser})
		if rep.Errors[0].Line != 1 || rep.Errors[0].Reason != ReasonHeader {
			t.Fatalf("errors = %v", rep.Errors)
		}
	})
}

// TestValidityAndFlags covers dates, times and booleans.
func TestValidityAndFlags(t *testing.T) {
	opt := Options{Kind: access.AccessUser, Location: time.FixedZone("X", 3600)}
	res := mustImport(t, "name,valid_from,valid_until\nA,2026-01-01,2026-02-01T10:00:00Z\n", opt)
	if got, want := res.Rows[0].Person.ValidFrom, time.Date(2025, 12, 31, 23, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("from = %v, want %v", got, want)
	}
	rep := mustReject(t, "name,valid_from,valid_until,active\nA,2026-02-01,2026-01-01,\nB,2026-13-01,,\nC,,,maybe\n", opt)
	want := []RowError{
		{Line: 2, Column: 3, Field: FieldValidUntil, Reason: ReasonInconsistent},
		{Line: 3, Column: 2, Field: FieldValidFrom, Reason: ReasonInvalid},
		{Line: 4, Column: 4, Field: FieldActive, Reason: ReasonInvalid},
	}
	if got := strip(rep.Errors); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("errors = %v, want %v", got, want)
	}
}

// TestSyntaxErrors: a bare quote or a stray quote after a quoted field is
// reported and reading goes on; an unclosed quote is reported at the line
// where the file ends.
func TestSyntaxErrors(t *testing.T) {
	rep := mustReject(t, "name,email\nA\"b,x@example.com\nBob,bad\nD,\"x\"y\nE,also bad\nC,\"open\n\n", Options{Kind: access.AccessUser})
	got := strip(rep.Errors)
	want := []RowError{
		{Line: 2, Reason: ReasonSyntax},
		{Line: 3, Column: 2, Field: FieldEmail, Reason: ReasonInvalid},
		{Line: 4, Reason: ReasonSyntax},
		{Line: 5, Column: 2, Field: FieldEmail, Reason: ReasonInvalid},
		{Line: 7, Reason: ReasonSyntax},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("errors = %v", rep.Errors)
	}
}

// TestMaxErrors keeps the first MaxErrors errors and counts the rest.
func TestMaxErrors(t *testing.T) {
	var b strings.Builder
	b.WriteString("name,email\n")
	for range 50 {
		b.WriteString("A,bad\n")
	}
	rep := mustReject(t, b.String(), Options{Kind: access.AccessUser, MaxErrors: 10})
	if len(rep.Errors) != 10 || rep.Dropped != 40 || !strings.Contains(rep.Error(), "50 errors") {
		t.Fatalf("report: %d kept, %d dropped: %v", len(rep.Errors), rep.Dropped, rep)
	}
}

// TestCancel stops reading when the context is done.
func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p := newPlatform()
	opt := p.options(access.Occupier)
	opt.ProgressEvery = 100
	opt.Progress = func(pr Progress) {
		if pr.Rows >= 500 {
			cancel()
		}
	}
	_, err := Import(ctx, bytes.NewReader(synthetic(t, 5000)), opt)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// TestLookupError returns a lookup's error as is.
func TestLookupError(t *testing.T) {
	boom := errors.New("store down")
	p := newPlatform()
	opt := p.options(access.Occupier)
	opt.CardsTaken = func(context.Context, []access.CardNumber) ([]access.CardNumber, error) { return nil, boom }
	if _, err := Import(context.Background(), bytes.NewReader(synthetic(t, 10)), opt); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want %v", err, boom)
	}
}

// TestMaxRows rejects a file with too many rows without reading it all.
func TestMaxRows(t *testing.T) {
	p := newPlatform()
	opt := p.options(access.Occupier)
	opt.MaxRows = 10
	rep := mustReject(t, string(synthetic(t, 20)), opt)
	if got := strip(rep.Errors); len(got) != 1 || got[0].Reason != ReasonTooManyRows || got[0].Line != 12 {
		t.Fatalf("errors = %v", got)
	}
}

func TestParseMapping(t *testing.T) {
	m, err := ParseMapping(" first_name = Vorname ,last_name=#2,email=E-Mail")
	if err != nil {
		t.Fatal(err)
	}
	want := Mapping{FieldFirstName: {Name: "Vorname"}, FieldLastName: {Index: 2}, FieldEmail: {Name: "E-Mail"}}
	if fmt.Sprint(m) != fmt.Sprint(want) {
		t.Fatalf("mapping = %v, want %v", m, want)
	}
	for _, bad := range []string{"", "name", "name=", "nom=x", "name=#0", "name=#x", "name=a,name=b"} {
		if _, err := ParseMapping(bad); access.ErrorCode(err) != access.Invalid {
			t.Errorf("ParseMapping(%q) = %v, want invalid", bad, err)
		}
	}
}

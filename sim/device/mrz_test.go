package device

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

func date(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

// TestDocumentMRZ writes ICAO's TD1 specimen exactly, and zones that
// access.ParseMRZ (what the site runs) accepts with the fields given.
func TestDocumentMRZ(t *testing.T) {
	t.Run("TD1Specimen", func(t *testing.T) {
		d := Document{Type: mqttproto.DocIDCard, GivenNames: "Anna Maria", Surname: "Eriksson", Number: "D23145890",
			Birth: date("1974-08-12"), Sex: 'F', Expiry: date("2012-04-15")}
		lines, err := d.MRZ()
		if err != nil {
			t.Fatal(err)
		}
		want := "I<UTOD231458907<<<<<<<<<<<<<<<\n7408122F1204159UTO<<<<<<<<<<<6\nERIKSSON<<ANNA<MARIA<<<<<<<<<<"
		if got := strings.Join(lines, "\n"); got != want {
			t.Fatalf("got\n%s\nwant\n%s", got, want)
		}
	})
	now := date("2026-11-24")
	for _, tc := range []struct {
		name string
		doc  Document
	}{
		{"Passport", Document{GivenNames: "Anna Maria", Surname: "Eriksson", Number: "L898902C3", Birth: date("1974-08-12"), Sex: 'F', Expiry: date("2031-04-15")}},
		{"IDCard", Document{Type: mqttproto.DocIDCard, GivenNames: "Jörg", Surname: "Müller-Lüdenscheidt", Number: "T22000129", Issuer: "D", Nationality: "D", Birth: date("1964-08-12"), Expiry: date("2030-10-31")}},
		{"UnknownBirth", Document{Surname: "Doe", Number: "X1", Expiry: date("2027-01-01")}},
		{"LongName", Document{GivenNames: "Maximiliane Konstanze Annabelle", Surname: "Wolfeschlegelsteinhausenbergerdorff", Number: "C01X00T47", Expiry: date("2029-06-30"), Sex: 'M'}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines, err := tc.doc.MRZ()
			if err != nil {
				t.Fatal(err)
			}
			m, err := access.ParseMRZ(strings.Join(lines, "\n"), now)
			if err != nil {
				t.Fatalf("ParseMRZ(%q): %v", lines, err)
			}
			if m.DocumentNumber != tc.doc.Number || !m.Expiry.Equal(tc.doc.Expiry) || !m.BirthDate.Equal(tc.doc.Birth) {
				t.Errorf("parsed %+v", m)
			}
			if err := m.Verify(now, tc.doc.GivenNames, tc.doc.Surname); err != nil {
				t.Errorf("Verify: %v", err)
			}
			e := mqttproto.KioskEvent{Type: mqttproto.KioskIDScanned, Seq: 1, Time: now, RequestID: "r", DocType: DocTypeOf(lines), MRZ: lines}
			if err := e.Validate(); err != nil {
				t.Errorf("id_scanned: %v", err)
			}
		})
	}
	t.Run("Expired", func(t *testing.T) {
		lines, _ := Document{Surname: "Doe", Number: "X1", Expiry: date("2020-01-01")}.MRZ()
		m, err := access.ParseMRZ(strings.Join(lines, ""), now)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Verify(now, "", "Doe"); !errors.Is(err, access.ErrDocumentExpired) {
			t.Fatalf("Verify = %v, want ErrDocumentExpired", err)
		}
	})
	for _, tc := range []struct {
		name string
		doc  Document
	}{
		{"ErrNoSurname", Document{Number: "1", Expiry: now}},
		{"ErrNumber", Document{Surname: "X", Number: "ab", Expiry: now}},
		{"ErrLongNumber", Document{Surname: "X", Number: "1234567890", Expiry: now}},
		{"ErrNoExpiry", Document{Surname: "X", Number: "1"}},
		{"ErrSex", Document{Surname: "X", Number: "1", Expiry: now, Sex: 'Q'}},
		{"ErrType", Document{Type: mqttproto.DocVisa, Surname: "X", Number: "1", Expiry: now}},
		{"ErrIssuer", Document{Surname: "X", Number: "1", Expiry: now, Issuer: "UTOX"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.doc.MRZ(); !errors.Is(err, ErrDocument) {
				t.Fatalf("err = %v, want ErrDocument", err)
			}
		})
	}
}

func TestDocTypeOf(t *testing.T) {
	for _, tc := range []struct {
		lines []string
		want  mqttproto.DocType
	}{
		{[]string{"P" + strings.Repeat("<", 43), strings.Repeat("<", 44)}, mqttproto.DocPassport},
		{[]string{"V" + strings.Repeat("<", 43), strings.Repeat("<", 44)}, mqttproto.DocVisa},
		{[]string{strings.Repeat("<", 30), strings.Repeat("<", 30), strings.Repeat("<", 30)}, mqttproto.DocIDCard},
		{[]string{strings.Repeat("<", 36), strings.Repeat("<", 36)}, mqttproto.DocIDCard},
		{[]string{"X" + strings.Repeat("<", 43), strings.Repeat("<", 44)}, mqttproto.DocOther},
	} {
		if got := DocTypeOf(tc.lines); got != tc.want {
			t.Errorf("DocTypeOf(%q) = %s, want %s", tc.lines[0][:1], got, tc.want)
		}
	}
}

package access

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// The specimens of ICAO Doc 9303 (Part 4, TD3; Part 5, TD1).
const (
	specimenTD3 = "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\nL898902C36UTO7408122F1204159ZE184226B<<<<<10"
	specimenTD1 = "I<UTOD231458907<<<<<<<<<<<<<<<\n7408122F1204159UTO<<<<<<<<<<<6\nERIKSSON<<ANNA<MARIA<<<<<<<<<<"
)

var before2012 = time.Date(2010, 6, 1, 12, 0, 0, 0, time.UTC)

func TestParseMRZSpecimens(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		format     MRZFormat
		typ, doc   string
		optional   string
	}{
		{"TD3", specimenTD3, TD3, "P", "L898902C3", "ZE184226B"},
		{"TD1", specimenTD1, TD1, "I", "D23145890", ""},
		{"TD3 on one line", strings.ReplaceAll(specimenTD3, "\n", ""), TD3, "P", "L898902C3", "ZE184226B"},
		{"TD1 with CRLF and spaces", " " + strings.ReplaceAll(specimenTD1, "\n", " \r\n") + "\n", TD1, "I", "D23145890", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseMRZ(tc.text, before2012)
			if err != nil {
				t.Fatal(err)
			}
			want := MRZ{
				Format: tc.format, DocumentType: tc.typ, IssuingState: "UTO", DocumentNumber: tc.doc,
				Surname: "ERIKSSON", GivenNames: "ANNA MARIA", Nationality: "UTO",
				BirthDate: time.Date(1974, 8, 12, 0, 0, 0, 0, time.UTC), Sex: 'F',
				Expiry: time.Date(2012, 4, 15, 0, 0, 0, 0, time.UTC), Optional: tc.optional,
			}
			if m != want {
				t.Errorf("got  %+v\nwant %+v", m, want)
			}
		})
	}
}

// withCheck replaces the character at i of line l and fixes nothing else.
func mutate(text string, i int, c byte) string {
	b := []byte(text)
	b[i] = c
	return string(b)
}

func TestParseMRZRefusesBadZones(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       error
	}{
		{"empty", "", ErrMRZFormat},
		{"one line short", specimenTD3[:87], ErrMRZFormat},
		{"lower case", strings.ToLower(specimenTD3), ErrMRZFormat},
		{"TD1 lines of the wrong lengths", "I<UTOD231458907<<<<<<<<<<<<<<<7\n408122F1204159UTO<<<<<<<<<<<6\nERIKSSON<<ANNA<MARIA<<<<<<<<<<", ErrMRZFormat},
		{"document number misread", mutate(specimenTD3, 45+2, '7'), ErrMRZCheckDigit},
		{"birth date changed", mutate(specimenTD3, 45+15, '1'), ErrMRZCheckDigit},
		{"expiry extended", mutate(specimenTD3, 45+22, '9'), ErrMRZCheckDigit},
		{"personal number changed", mutate(specimenTD3, 45+29, 'F'), ErrMRZCheckDigit},
		{"composite broken", mutate(specimenTD3, 45+43, '1'), ErrMRZCheckDigit},
		{"check digit not a digit", mutate(specimenTD3, 45+9, 'A'), ErrMRZFormat},
		{"TD1 document number misread", mutate(specimenTD1, 6, 'X'), ErrMRZCheckDigit},
		{"TD1 composite broken", mutate(specimenTD1, 31+29, '0'), ErrMRZCheckDigit},
		{"bad sex", mutate(specimenTD1, 31+7, 'Q'), ErrMRZFormat},
		{"too long", strings.Repeat("<", MaxMRZInput+1), ErrMRZFormat},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseMRZ(tc.text, before2012)
			if !errors.Is(err, tc.want) || ErrorCode(err) != Invalid {
				t.Fatalf("ParseMRZ = %v, want an invalid error wrapping %v", err, tc.want)
			}
		})
	}
}

func TestMRZCheckDigit(t *testing.T) {
	for _, tc := range []struct {
		field string
		want  byte
	}{
		{"L898902C3", 6}, {"740812", 2}, {"120415", 9}, {"ZE184226B<<<<<", 1}, {"D23145890", 7}, {"<<<<", 0},
	} {
		if got, ok := mrzCheckDigit(tc.field); !ok || got != tc.want {
			t.Errorf("check digit of %s = %d, want %d", tc.field, got, tc.want)
		}
	}
}

func TestMRZLongDocumentNumber(t *testing.T) {
	// TD1 with a 12-character number: 9 in the field, a filler for the
	// check digit, the rest and its check digit in the optional data.
	l1 := "I<UTOD23145890<AB12<<<<<<<<<<<"
	num := "D23145890AB1"
	d, _ := mrzCheckDigit(num)
	l1 = l1[:15] + "AB1" + string('0'+d) + l1[19:]
	l2 := "7408122F1204159UTO<<<<<<<<<<<"
	c, _ := mrzCheckDigit(l1[5:30] + l2[0:7] + l2[8:15] + l2[18:29])
	text := l1 + "\n" + l2 + string('0'+c) + "\nERIKSSON<<ANNA<MARIA<<<<<<<<<<"
	m, err := ParseMRZ(text, before2012)
	if err != nil {
		t.Fatal(err)
	}
	if m.DocumentNumber != num {
		t.Errorf("document number %q, want %q", m.DocumentNumber, num)
	}
}

func TestMRZCenturies(t *testing.T) {
	m, err := ParseMRZ(specimenTD3, time.Date(2060, 1, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	// Seen from 2060, "74" is still 1974 for a birth date, and a 2012
	// expiry is 48 years ago, not 2112.
	if m.BirthDate.Year() != 1974 || m.Expiry.Year() != 2012 {
		t.Errorf("birth %v, expiry %v", m.BirthDate, m.Expiry)
	}
}

func TestMRZVerify(t *testing.T) {
	m, err := ParseMRZ(specimenTD3, before2012)
	if err != nil {
		t.Fatal(err)
	}
	lastDay := time.Date(2012, 4, 15, 23, 59, 0, 0, time.UTC)
	for _, tc := range []struct {
		name          string
		now           time.Time
		given, family string
		want          error
	}{
		{"exact", before2012, "Anna Maria", "Eriksson", nil},
		{"first given name only", before2012, "Anna", "Eriksson", nil},
		{"one typo in the surname", before2012, "Anna", "Ericsson", nil},
		{"one typo in a short given name", before2012, "Ana", "Eriksson", nil},
		{"hyphen and case", before2012, "anna-maria", "ERIKSSON", nil},
		{"valid on its last day", lastDay, "Anna", "Eriksson", nil},
		{"expired the day after", lastDay.Add(time.Minute), "Anna", "Eriksson", ErrDocumentExpired},
		{"another person", before2012, "Anna", "Andersson", ErrNameMismatch},
		{"another first name", before2012, "Maria", "Eriksson", ErrNameMismatch},
		{"two typos in a short surname", before2012, "Anna", "Ekisson", ErrNameMismatch},
		{"no family name", before2012, "Anna", "", ErrNameMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := m.Verify(tc.now, tc.given, tc.family)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
			if err != nil && ErrorCode(err) != Denied {
				t.Errorf("code %s, want denied", ErrorCode(err))
			}
		})
	}
}

func TestMRZTransliteration(t *testing.T) {
	zone := func(surname, given string) MRZ {
		return MRZ{Surname: surname, GivenNames: given, Expiry: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		zone          MRZ
		given, family string
	}{
		{zone("MUELLER", "JUERGEN"), "Jürgen", "Müller"},
		{zone("MULLER", "JURGEN"), "Jürgen", "Müller"},
		{zone("STRASSE", "JOSE"), "José", "Straße"},
		{zone("OBRIEN", "SEAN"), "Seán", "O'Brien"},
		{zone("O BRIEN", "SEAN"), "Sean", "O'Brien"},
		{zone("GARCIA LOPEZ", "MARIA JOSE"), "María José", "García López"},
	} {
		if err := tc.zone.Verify(now, tc.given, tc.family); err != nil {
			t.Errorf("%s %s against %s %s: %v", tc.given, tc.family, tc.zone.GivenNames, tc.zone.Surname, err)
		}
	}
}

func TestMRZTruncatedName(t *testing.T) {
	// A TD1 name line filled to the end: the zone holds only the start.
	m := MRZ{Surname: "WOLFESCHLEGELSTEINHAUSEN", GivenNames: "HUBERT", NameTruncated: true,
		Expiry: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := m.Verify(now, "Hubert Blaine", "Wolfeschlegelsteinhausenbergerdorff"); err != nil {
		t.Errorf("truncated zone: %v", err)
	}
	if err := m.Verify(now, "Hubert", "Wolfeschlegel"); err == nil {
		t.Error("a shorter surname matched a truncated zone")
	}
}

func FuzzParseMRZ(f *testing.F) {
	f.Add(specimenTD3)
	f.Add(specimenTD1)
	f.Add(strings.ReplaceAll(specimenTD3, "\n", ""))
	f.Add("P<<<\n<<<")
	f.Fuzz(func(t *testing.T, text string) {
		m, err := ParseMRZ(text, before2012)
		if err != nil {
			if ErrorCode(err) != Invalid {
				t.Fatalf("error %v has code %s", err, ErrorCode(err))
			}
			return
		}
		if m.Format != TD1 && m.Format != TD3 || m.DocumentNumber == "" || m.Surname == "" || m.Expiry.IsZero() {
			t.Fatalf("accepted an incomplete zone: %+v", m)
		}
		_ = m.Verify(before2012, "Anna", "Eriksson")
	})
}

package access_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

const (
	idA access.ID = "01KDVDNA000000000000000001"
	idB access.ID = "01KDVDNA000000000000000002"
	idC access.ID = "01KDVDNA000000000000000003"
	idD access.ID = "01KDVDNA000000000000000004"
)

// validator is anything with a Validate method.
type validator interface{ Validate() error }

// validateCase is one Validate test: the value and a substring of the
// expected error message, empty when the value is valid.
type validateCase struct {
	name    string
	v       validator
	wantErr string
}

func runValidate(t *testing.T, tests []validateCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.v.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Validate() = %q, want it to contain %q", err, tt.wantErr)
			}
			if got, want := access.ErrorCode(err), access.Invalid; got != want {
				t.Errorf("ErrorCode = %q, want %q", got, want)
			}
		})
	}
}

func TestSite_Validate(t *testing.T) {
	ok := access.Site{ID: idA, Name: "HQ", TimeZone: "Europe/Berlin", Holidays: []access.Date{{Year: 2026, Month: time.December, Day: 25}}}
	with := func(f func(*access.Site)) access.Site { s := ok; f(&s); return s }
	runValidate(t, []validateCase{
		{"OK", ok, ""},
		{"ErrIDRequired", with(func(s *access.Site) { s.ID = "" }), "site id is required"},
		{"ErrBadID", with(func(s *access.Site) { s.ID = "x" }), "malformed id"},
		{"ErrNameRequired", with(func(s *access.Site) { s.Name = "" }), "name is required"},
		{"ErrTimeZoneRequired", with(func(s *access.Site) { s.TimeZone = "" }), "time zone is required"},
		{"ErrBadTimeZone", with(func(s *access.Site) { s.TimeZone = "Mars/Olympus" }), "unknown time zone"},
		{"ErrBadHoliday", with(func(s *access.Site) { s.Holidays = []access.Date{{Year: 2026, Month: 2, Day: 30}} }), "malformed date"},
	})
}

func TestDate(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    access.Date
		wantErr bool
	}{
		{"OK", "2026-12-25", access.Date{Year: 2026, Month: time.December, Day: 25}, false},
		{"OK/LeapDay", "2028-02-29", access.Date{Year: 2028, Month: time.February, Day: 29}, false},
		{"ErrBadDate/NotLeap", "2026-02-29", access.Date{}, true},
		{"ErrBadDate/Format", "25.12.2026", access.Date{}, true},
		{"ErrBadDate/Empty", "", access.Date{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := access.ParseDate(tt.in)
			if tt.wantErr {
				if !errors.Is(err, access.ErrBadDate) {
					t.Fatalf("err = %v, want ErrBadDate", err)
				}
				return
			}
			must(t, err)
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if got, want := got.String(), tt.in; got != want {
				t.Errorf("String() = %q, want %q", got, want)
			}
		})
	}
	t.Run("OK/TextRoundTrip", func(t *testing.T) {
		var d access.Date
		must(t, d.UnmarshalText([]byte("0042-01-05")))
		b, err := d.MarshalText()
		must(t, err)
		if got, want := string(b), "0042-01-05"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})
}

func TestZone_Validate(t *testing.T) {
	ok := access.Zone{ID: idA, SiteID: idB, Name: "Lab", AntiPassback: true}
	with := func(f func(*access.Zone)) access.Zone { z := ok; f(&z); return z }
	runValidate(t, []validateCase{
		{"OK", ok, ""},
		{"ErrSiteRequired", with(func(z *access.Zone) { z.SiteID = "" }), "site id is required"},
		{"ErrNameRequired", with(func(z *access.Zone) { z.Name = "" }), "name is required"},
	})
}

func TestDoor_Validate(t *testing.T) {
	ok := access.Door{ID: idA, SiteID: idB, ZoneID: idC, Name: "Lab in", Direction: access.DirIn, HighSecurity: true, MaxOffline: time.Hour}
	with := func(f func(*access.Door)) access.Door { d := ok; f(&d); return d }
	runValidate(t, []validateCase{
		{"OK", ok, ""},
		{"OK/NoZone", with(func(d *access.Door) { d.ZoneID, d.Direction = "", access.DirNone }), ""},
		{"ErrBadZoneID", with(func(d *access.Door) { d.ZoneID = "zone-1" }), "zone id"},
		{"ErrDirectionNeedsZone", with(func(d *access.Door) { d.ZoneID = "" }), "needs a zone"},
		{"ErrUnknownDirection", with(func(d *access.Door) { d.Direction = 7 }), "unknown direction"},
		{"ErrNegativeMaxOffline", with(func(d *access.Door) { d.MaxOffline = -time.Second }), "negative"},
		{"ErrNameRequired", with(func(d *access.Door) { d.Name = "" }), "name is required"},
	})
}

func TestGroup_Validate(t *testing.T) {
	ok := access.Group{ID: idA, SiteID: idB, Name: "Staff", Doors: []access.ID{idC, idD}, Kind: access.GroupAccess}
	with := func(f func(*access.Group)) access.Group { g := ok; f(&g); return g }
	runValidate(t, []validateCase{
		{"OK", ok, ""},
		{"OK/Profile", with(func(g *access.Group) { g.Kind, g.ScheduleID = access.GroupVisitorProfile, idD }), ""},
		{"ErrUnknownKind", with(func(g *access.Group) { g.Kind = 0 }), "unknown kind"},
		{"ErrDuplicateDoor", with(func(g *access.Group) { g.Doors = []access.ID{idC, idC} }), "listed twice"},
		{"ErrBadDoorID", with(func(g *access.Group) { g.Doors = []access.ID{"front"} }), "door id"},
		{"ErrBadScheduleID", with(func(g *access.Group) { g.ScheduleID = "always" }), "schedule id"},
	})
	if !ok.HasDoor(idD) || ok.HasDoor(idA) {
		t.Errorf("HasDoor: got %v/%v, want true/false", ok.HasDoor(idD), ok.HasDoor(idA))
	}
}

func TestPerson_Validate(t *testing.T) {
	ok := access.Person{ID: idA, Kind: access.Occupier, OccupierID: idB, Name: "Alice", Email: "alice@example.com", Active: true}
	with := func(f func(*access.Person)) access.Person { p := ok; f(&p); return p }
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	runValidate(t, []validateCase{
		{"OK", ok, ""},
		{"OK/AccessUserNoOccupier", with(func(p *access.Person) { p.Kind, p.OccupierID = access.AccessUser, "" }), ""},
		{"ErrOccupierRequired", with(func(p *access.Person) { p.OccupierID = "" }), "occupier id is required"},
		{"ErrUnknownKind", with(func(p *access.Person) { p.Kind = 9 }), "unknown kind"},
		{"ErrNameRequired", with(func(p *access.Person) { p.Name = "" }), "name is required"},
		{"ErrBadEmail", with(func(p *access.Person) { p.Email = "Alice <alice@example.com>" }), "malformed email"},
		{"ErrVisitorOffline", with(func(p *access.Person) { p.Kind, p.OccupierID, p.OfflineAccess = access.Visitor, "", true }), "offline access"},
		{"ErrValidity", with(func(p *access.Person) { p.ValidFrom, p.ValidUntil = t0, t0 }), "not after valid from"},
	})
}

func TestCard_Validate(t *testing.T) {
	ok := access.Card{Number: 123456789, PersonID: idA, Status: access.CardActive}
	with := func(f func(*access.Card)) access.Card { c := ok; f(&c); return c }
	runValidate(t, []validateCase{
		{"OK", ok, ""},
		{"OK/VisitorCard", with(func(c *access.Card) { c.VisitID, c.SiteID = idB, idC }), ""},
		{"ErrNumberRequired", with(func(c *access.Card) { c.Number = 0 }), "number is required"},
		{"ErrPersonRequired", with(func(c *access.Card) { c.PersonID = "" }), "person id is required"},
		{"ErrUnknownStatus", with(func(c *access.Card) { c.Status = 0 }), "unknown status"},
		{"ErrRedacted", with(func(c *access.Card) { c.Status = 0 }), "card *****6789"},
	})
}

func TestCardNumber(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    access.CardNumber
		wantErr bool
	}{
		{"OK", "1234567", 1234567, false},
		{"OK/Max", "18446744073709551615", 1<<64 - 1, false},
		{"ErrBadCardNumber/Zero", "0", 0, true},
		{"ErrBadCardNumber/Negative", "-1", 0, true},
		{"ErrBadCardNumber/Text", "12a", 0, true},
		{"ErrBadCardNumber/Overflow", "18446744073709551616", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := access.ParseCardNumber(tt.in)
			if tt.wantErr {
				if !errors.Is(err, access.ErrBadCardNumber) {
					t.Fatalf("err = %v, want ErrBadCardNumber", err)
				}
				return
			}
			must(t, err)
			if got != tt.want || got.String() != tt.in {
				t.Errorf("got %d (%q), want %d", got, got.String(), tt.want)
			}
		})
	}
	if got, want := access.CardNumber(1234567).Redacted(), "***4567"; got != want {
		t.Errorf("Redacted() = %q, want %q", got, want)
	}
	if got, want := access.CardNumber(42).Redacted(), "42"; got != want {
		t.Errorf("Redacted() = %q, want %q", got, want)
	}
}

func TestGrant_Validate(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ok := access.Grant{ID: idA, HolderID: idB, GroupID: idC, ValidFrom: t0, ValidUntil: t0.Add(time.Hour)}
	with := func(f func(*access.Grant)) access.Grant { g := ok; f(&g); return g }
	runValidate(t, []validateCase{
		{"OK", ok, ""},
		{"OK/BareTombstone", access.Grant{ID: idA, Removed: true}, ""},
		{"ErrHolderRequired", with(func(g *access.Grant) { g.HolderID = "" }), "holder id is required"},
		{"ErrGroupRequired", with(func(g *access.Grant) { g.GroupID = "" }), "group id is required"},
		{"ErrValidity", with(func(g *access.Grant) { g.ValidUntil = t0.Add(-time.Hour) }), "not after valid from"},
		{"ErrBareLiveGrant", access.Grant{ID: idA}, "holder id is required"},
	})
}

func TestEnumText(t *testing.T) {
	tests := []struct {
		name string
		v    interface {
			MarshalText() ([]byte, error)
		}
		want string
	}{
		{"Direction", access.DirOut, "out"},
		{"PersonKind", access.AccessUser, "access_user"},
		{"CardStatus", access.CardLost, "lost"},
		{"GroupKind", access.GroupVisitorProfile, "visitor_profile"},
		{"VisitState", access.VisitPreRegistered, "pre_registered"},
		{"Mode", access.Online, "online"},
		{"Reason", access.ReasonEscortNotPickedUp, "escort_not_picked_up"},
		{"Minute", access.Minute(8*60 + 5), "08:05"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.v.MarshalText()
			must(t, err)
			if got := string(b); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("ErrUnknownName", func(t *testing.T) {
		var r access.Reason
		err := r.UnmarshalText([]byte("maybe"))
		if got, want := access.ErrorCode(err), access.Invalid; got != want {
			t.Errorf("ErrorCode = %q, want %q (err %v)", got, want, err)
		}
	})
	t.Run("OK/Unknown", func(t *testing.T) {
		if got, want := access.CardStatus(0).String(), "unknown(0)"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})
	t.Run("OK/RoundTrip", func(t *testing.T) {
		for _, r := range access.Reasons() {
			b, err := r.MarshalText()
			must(t, err)
			var got access.Reason
			must(t, got.UnmarshalText(b))
			if got != r {
				t.Errorf("round trip of %v gave %v", r, got)
			}
		}
		for s := access.VisitRequested; s <= access.VisitDenied; s++ {
			var got access.VisitState
			must(t, got.UnmarshalText([]byte(s.String())))
			if got != s {
				t.Errorf("round trip of %v gave %v", s, got)
			}
		}
	})
}

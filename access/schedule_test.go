package access_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

// hm returns the Minute of hour h and minute m.
func hm(h, m int) access.Minute { return access.Minute(h*60 + m) }

func TestSchedule_Allows(t *testing.T) {
	berlin := MustLoadLocation(t, "Europe/Berlin")
	utc := func(y int, mo time.Month, d, h, mi int) time.Time { return time.Date(y, mo, d, h, mi, 0, 0, time.UTC) }
	christmas := []access.Date{{Year: 2026, Month: time.December, Day: 25}}

	sundayMorning := access.Schedule{Windows: []access.Window{{Day: time.Sunday, Start: hm(8, 0), End: hm(9, 0)}}}
	sundayNight := access.Schedule{Windows: []access.Window{{Day: time.Sunday, Start: hm(2, 0), End: hm(3, 0)}}}
	office := access.Schedule{ClosedOnHolidays: true}
	for d := time.Monday; d <= time.Friday; d++ {
		office.Windows = append(office.Windows, access.Window{Day: d, Start: hm(0, 0), End: hm(24, 0)})
	}
	officeOpenOnHolidays := office
	officeOpenOnHolidays.ClosedOnHolidays = false
	overnight := access.Schedule{Windows: []access.Window{
		{Day: time.Friday, Start: hm(22, 0), End: hm(24, 0)},
		{Day: time.Saturday, Start: hm(0, 0), End: hm(6, 0)},
	}}

	tests := []struct {
		name     string
		sched    access.Schedule
		at       time.Time
		loc      *time.Location
		holidays []access.Date
		want     bool
	}{
		// 2026-03-22 is a Sunday in winter time (UTC+1).
		{"OK/WinterInWindow", sundayMorning, utc(2026, 3, 22, 7, 30), berlin, nil, true},
		{"OK/WinterBeforeWindow", sundayMorning, utc(2026, 3, 22, 6, 30), berlin, nil, false},
		// 2026-03-29: clocks go from 02:00 CET to 03:00 CEST (UTC+2), so
		// 08:30 local is 06:30 UTC.
		{"OK/DSTSpringInWindow", sundayMorning, utc(2026, 3, 29, 6, 30), berlin, nil, true},
		{"OK/DSTSpringAfterWindow", sundayMorning, utc(2026, 3, 29, 7, 30), berlin, nil, false},
		{"OK/DSTSpringSkippedHourBefore", sundayNight, utc(2026, 3, 29, 0, 59), berlin, nil, false},
		{"OK/DSTSpringSkippedHourAfter", sundayNight, utc(2026, 3, 29, 1, 0), berlin, nil, false},
		// 2026-10-25: clocks go from 03:00 CEST back to 02:00 CET, so
		// 02:00-03:00 local happens twice.
		{"OK/DSTAutumnFirstPass", sundayNight, utc(2026, 10, 25, 0, 30), berlin, nil, true},
		{"OK/DSTAutumnSecondPass", sundayNight, utc(2026, 10, 25, 1, 30), berlin, nil, true},
		{"OK/DSTAutumnAfter", sundayNight, utc(2026, 10, 25, 2, 0), berlin, nil, false},
		{"OK/DSTAutumnBefore", sundayNight, utc(2026, 10, 24, 23, 59), berlin, nil, false},
		// The same instant is evaluated in the site's zone, not UTC.
		{"OK/UTCLocation", sundayMorning, utc(2026, 3, 29, 8, 30), time.UTC, nil, true},
		{"OK/NilLocationIsUTC", sundayMorning, utc(2026, 3, 29, 8, 30), nil, nil, true},
		{"OK/BerlinSameInstant", sundayMorning, utc(2026, 3, 29, 8, 30), berlin, nil, false},
		// 2026-12-25 is a Friday and a holiday.
		{"OK/Workday", office, utc(2026, 12, 24, 9, 0), berlin, christmas, true},
		{"OK/Holiday", office, utc(2026, 12, 25, 9, 0), berlin, christmas, false},
		{"OK/HolidayOpen", officeOpenOnHolidays, utc(2026, 12, 25, 9, 0), berlin, christmas, true},
		// 23:30 UTC on the 24th is already the 25th in Berlin.
		{"OK/HolidayByLocalDate", office, utc(2026, 12, 24, 23, 30), berlin, christmas, false},
		{"OK/HolidayNotInUTC", office, utc(2026, 12, 24, 23, 30), time.UTC, christmas, true},
		{"OK/Weekend", office, utc(2026, 12, 26, 9, 0), berlin, christmas, false},
		// Window bounds: start inclusive, end exclusive, 24:00 ends the day.
		{"OK/StartInclusive", sundayMorning, utc(2026, 3, 22, 7, 0), berlin, nil, true},
		{"OK/EndExclusive", sundayMorning, utc(2026, 3, 22, 8, 0), berlin, nil, false},
		{"OK/LastMinuteOfDay", overnight, time.Date(2026, 3, 6, 23, 59, 59, 0, berlin), berlin, nil, true},
		{"OK/OvernightSecondHalf", overnight, time.Date(2026, 3, 7, 5, 59, 0, 0, berlin), berlin, nil, true},
		{"OK/OvernightOver", overnight, time.Date(2026, 3, 7, 6, 0, 0, 0, berlin), berlin, nil, false},
		{"OK/Empty", access.Schedule{}, utc(2026, 3, 22, 7, 30), berlin, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.sched.Allows(tt.at, tt.loc, tt.holidays); got != tt.want {
				t.Errorf("Allows(%s) = %v, want %v", tt.at.Format(time.RFC3339), got, tt.want)
			}
		})
	}
}

func TestCalendar_IsHoliday(t *testing.T) {
	cal := access.Calendar{Location: MustLoadLocation(t, "Europe/Berlin"), Holidays: []access.Date{{Year: 2026, Month: time.May, Day: 1}}}
	if !cal.IsHoliday(time.Date(2026, 4, 30, 22, 30, 0, 0, time.UTC)) {
		t.Error("00:30 on 1 May in Berlin: IsHoliday = false, want true")
	}
	if cal.IsHoliday(time.Date(2026, 4, 30, 21, 30, 0, 0, time.UTC)) {
		t.Error("23:30 on 30 April in Berlin: IsHoliday = true, want false")
	}
}

func TestWindow_Validate(t *testing.T) {
	tests := []struct {
		name    string
		w       access.Window
		wantErr string
	}{
		{"OK", access.Window{Day: time.Monday, Start: hm(8, 0), End: hm(17, 30)}, ""},
		{"OK/WholeDay", access.Window{Day: time.Saturday, Start: 0, End: access.MinutesPerDay}, ""},
		{"ErrOvernight", access.Window{Day: time.Friday, Start: hm(22, 0), End: hm(6, 0)}, "an overnight shift is two windows"},
		{"ErrEmpty", access.Window{Day: time.Friday, Start: hm(8, 0), End: hm(8, 0)}, "end must be after start"},
		{"ErrPastMidnight", access.Window{Day: time.Friday, Start: hm(8, 0), End: hm(24, 1)}, "between 00:00 and 24:00"},
		{"ErrNegative", access.Window{Day: time.Friday, Start: -1, End: hm(8, 0)}, "between 00:00 and 24:00"},
		{"ErrWeekday", access.Window{Day: 7, Start: 0, End: 1}, "unknown weekday"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.w.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
	sched := access.Schedule{ID: idA, SiteID: idB, Name: "Night", Windows: []access.Window{{Day: time.Friday, Start: hm(22, 0), End: hm(6, 0)}}}
	if err := sched.Validate(); err == nil || !strings.Contains(err.Error(), "overnight") {
		t.Errorf("Schedule.Validate() = %v, want the overnight window explained", err)
	}
}

func TestParseMinute(t *testing.T) {
	tests := []struct {
		in      string
		want    access.Minute
		wantErr bool
	}{
		{"00:00", 0, false},
		{"08:30", hm(8, 30), false},
		{"23:59", hm(23, 59), false},
		{"24:00", access.MinutesPerDay, false},
		{"24:01", 0, true},
		{"8:30", 0, true},
		{"08:60", 0, true},
		{"+8:30", 0, true},
		{"-0:00", 0, true},
		{"08-30", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		name := "OK"
		if tt.wantErr {
			name = "ErrBadMinute"
		}
		t.Run(name+"/"+tt.in, func(t *testing.T) {
			got, err := access.ParseMinute(tt.in)
			if tt.wantErr {
				if !errors.Is(err, access.ErrBadMinute) {
					t.Fatalf("err = %v, want ErrBadMinute", err)
				}
				return
			}
			must(t, err)
			if got != tt.want || got.String() != tt.in {
				t.Errorf("got %d (%q), want %d", got, got.String(), tt.want)
			}
		})
	}
}

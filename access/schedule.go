package access

import "time"

// Minute is a time of day in minutes since local midnight, from 0 (00:00) to
// 1440 (24:00, the end of the day).
type Minute int

// MinutesPerDay is the number of minutes in a day, and the largest Minute.
const MinutesPerDay Minute = 24 * 60

// ParseMinute parses a time of day in the form HH:MM, from 00:00 to 24:00. It
// returns an Invalid error wrapping ErrBadMinute for anything else.
func ParseMinute(s string) (Minute, error) {
	if len(s) != 5 || s[2] != ':' || !isDigit(s[0]) || !isDigit(s[1]) || !isDigit(s[3]) || !isDigit(s[4]) {
		return 0, Errorf(Invalid, "time of day %q: %w", s, ErrBadMinute)
	}
	h := int(s[0]-'0')*10 + int(s[1]-'0')
	m := int(s[3]-'0')*10 + int(s[4]-'0')
	if m > 59 {
		return 0, Errorf(Invalid, "time of day %q: %w", s, ErrBadMinute)
	}
	v := Minute(h*60 + m)
	if v > MinutesPerDay {
		return 0, Errorf(Invalid, "time of day %q: %w", s, ErrBadMinute)
	}
	return v, nil
}

// String returns m in the form HH:MM.
func (m Minute) String() string {
	if m < 0 {
		return "-" + (-m).String()
	}
	return pad2(int(m/60)) + ":" + pad2(int(m%60))
}

// MarshalText returns m in the form HH:MM.
func (m Minute) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText parses the form HH:MM into m, returning the errors of
// ParseMinute.
func (m *Minute) UnmarshalText(b []byte) error {
	v, err := ParseMinute(string(b))
	if err == nil {
		*m = v
	}
	return err
}

// Window is a span of local time on one day of the week, from Start
// (inclusive) to End (exclusive). A window never crosses midnight: an
// overnight shift is two windows, one ending at 24:00 and one starting at
// 00:00 on the next day.
type Window struct {
	Day   time.Weekday
	Start Minute
	End   Minute
}

// Validate returns an Invalid error when w's day is not a weekday value, its
// bounds are outside 00:00..24:00, or End is not after Start.
func (w Window) Validate() error {
	if w.Day < time.Sunday || w.Day > time.Saturday {
		return Errorf(Invalid, "window: unknown weekday %d", int(w.Day))
	}
	if w.Start < 0 || w.Start > MinutesPerDay || w.End < 0 || w.End > MinutesPerDay {
		return Errorf(Invalid, "window %s %s-%s: times must be between 00:00 and 24:00", w.Day, w.Start, w.End)
	}
	if w.End <= w.Start {
		return Errorf(Invalid, "window %s %s-%s: end must be after start; an overnight shift is two windows (%s %s-24:00 and the next day 00:00-%s)",
			w.Day, w.Start, w.End, w.Day, w.Start, w.End)
	}
	return nil
}

// contains reports whether local weekday day and minute of day m fall in w.
func (w Window) contains(day time.Weekday, m Minute) bool {
	return w.Day == day && w.Start <= m && m < w.End
}

// Schedule is a weekly set of windows in which a group's doors may be used.
// When ClosedOnHolidays is set, the schedule allows nothing on the site's
// holidays. A group with a zero ScheduleID has no schedule and is allowed at
// all times.
type Schedule struct {
	ID               ID
	SiteID           ID
	Name             string
	Windows          []Window
	ClosedOnHolidays bool
}

// Validate returns an Invalid error describing the first problem with s: a
// malformed ID or site ID, an empty name, or an invalid window.
func (s Schedule) Validate() error {
	if err := requireID("schedule id", s.ID); err != nil {
		return err
	}
	if err := requireID("schedule "+string(s.ID)+": site id", s.SiteID); err != nil {
		return err
	}
	if s.Name == "" {
		return Errorf(Invalid, "schedule %s: name is required", s.ID)
	}
	for i, w := range s.Windows {
		if err := w.Validate(); err != nil {
			return Errorf(Invalid, "schedule %s: window %d: %w", s.ID, i, err)
		}
	}
	return nil
}

// Allows reports whether s allows access at instant t. The instant is
// converted to local time in loc (UTC when loc is nil), so daylight-saving
// changes follow the site's rules: a window of 08:00-17:00 means 08:00 to
// 17:00 on the wall clock whatever the UTC offset that day. On a date listed
// in holidays, a schedule with ClosedOnHolidays allows nothing. Allows does
// not allocate.
func (s Schedule) Allows(t time.Time, loc *time.Location, holidays []Date) bool {
	if loc == nil {
		loc = time.UTC
	}
	lt := t.In(loc)
	if s.ClosedOnHolidays && isHoliday(DateOf(lt), holidays) {
		return false
	}
	day := lt.Weekday()
	m := Minute(lt.Hour()*60 + lt.Minute())
	for _, w := range s.Windows {
		if w.contains(day, m) {
			return true
		}
	}
	return false
}

// isDigit reports whether c is an ASCII decimal digit.
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

package access

import (
	"strconv"
	"time"
)

// Site is a building or campus served by one edge appliance. Schedules of
// its groups are evaluated in TimeZone, and Holidays are the dates on which
// schedules marked ClosedOnHolidays allow nothing.
type Site struct {
	ID       ID
	Name     string
	TimeZone string // IANA name, such as "Europe/Berlin"
	Holidays []Date
}

// Validate returns an Invalid error describing the first problem with s: a
// malformed ID, an empty name, a time zone time.LoadLocation cannot load
// (wrapping ErrBadTimeZone) or an impossible holiday date.
func (s Site) Validate() error {
	_, err := s.validate()
	return err
}

// validate checks s as Validate does and returns its calendar.
func (s Site) validate() (Calendar, error) {
	if err := requireID("site id", s.ID); err != nil {
		return Calendar{}, err
	}
	if s.Name == "" {
		return Calendar{}, Errorf(Invalid, "site %s: name is required", s.ID)
	}
	return s.Calendar()
}

// Calendar loads s's time zone and returns it with s's holidays. It returns an
// Invalid error wrapping ErrBadTimeZone when the zone is empty or cannot be
// loaded, and one wrapping ErrBadDate when a holiday is not a real date. The
// returned calendar shares the Holidays slice with s.
func (s Site) Calendar() (Calendar, error) {
	if s.TimeZone == "" {
		return Calendar{}, Errorf(Invalid, "site %s: time zone is required: %w", s.ID, ErrBadTimeZone)
	}
	loc, err := time.LoadLocation(s.TimeZone)
	if err != nil {
		return Calendar{}, Errorf(Invalid, "site %s: time zone %q: %w", s.ID, s.TimeZone, ErrBadTimeZone)
	}
	for _, d := range s.Holidays {
		if !d.Valid() {
			return Calendar{}, Errorf(Invalid, "site %s: holiday %s: %w", s.ID, d, ErrBadDate)
		}
	}
	return Calendar{Location: loc, Holidays: s.Holidays}, nil
}

// Calendar is what a schedule needs of its site to be evaluated: the site's
// time zone and its holidays.
type Calendar struct {
	Location *time.Location
	Holidays []Date
}

// IsHoliday reports whether the local date of t in c's time zone is one of
// c's holidays. It does not allocate.
func (c Calendar) IsHoliday(t time.Time) bool {
	return isHoliday(DateOf(t.In(c.loc())), c.Holidays)
}

// loc returns c's location, UTC when unset.
func (c Calendar) loc() *time.Location {
	if c.Location == nil {
		return time.UTC
	}
	return c.Location
}

// isHoliday reports whether d is in holidays.
func isHoliday(d Date, holidays []Date) bool {
	for _, h := range holidays {
		if h == d {
			return true
		}
	}
	return false
}

// Date is a calendar date without a time zone, such as a public holiday.
type Date struct {
	Year  int
	Month time.Month
	Day   int
}

// DateOf returns the date of t in t's own location.
func DateOf(t time.Time) Date {
	y, m, d := t.Date()
	return Date{Year: y, Month: m, Day: d}
}

// ParseDate parses s in the form 2006-01-02. It returns an Invalid error
// wrapping ErrBadDate when s is not in that form or is not a real date.
func ParseDate(s string) (Date, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return Date{}, Errorf(Invalid, "date %q: %w", s, ErrBadDate)
	}
	return DateOf(t), nil
}

// String returns d in the form 2006-01-02.
func (d Date) String() string {
	y := strconv.Itoa(d.Year)
	for len(y) < 4 {
		y = "0" + y
	}
	return y + "-" + pad2(int(d.Month)) + "-" + pad2(d.Day)
}

// Valid reports whether d is a real date between years 1 and 9999.
func (d Date) Valid() bool {
	if d.Year < 1 || d.Year > 9999 || d.Month < time.January || d.Month > time.December || d.Day < 1 {
		return false
	}
	return DateOf(time.Date(d.Year, d.Month, d.Day, 12, 0, 0, 0, time.UTC)) == d
}

// MarshalText returns d in the form 2006-01-02.
func (d Date) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses the form 2006-01-02 into d, returning the errors of
// ParseDate.
func (d *Date) UnmarshalText(b []byte) error {
	v, err := ParseDate(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// pad2 formats n with at least two digits.
func pad2(n int) string {
	if n >= 0 && n < 10 {
		return "0" + strconv.Itoa(n)
	}
	return strconv.Itoa(n)
}

// Zone is an area of a site bounded by doors. When AntiPassback is set, a
// card that entered the zone must leave it (through a door whose Direction is
// DirOut for the zone) before it may enter again.
type Zone struct {
	ID           ID
	SiteID       ID
	Name         string
	AntiPassback bool
}

// Validate returns an Invalid error describing the first problem with z: a
// malformed ID or site ID, or an empty name.
func (z Zone) Validate() error {
	if err := requireID("zone id", z.ID); err != nil {
		return err
	}
	if err := requireID("zone "+string(z.ID)+": site id", z.SiteID); err != nil {
		return err
	}
	if z.Name == "" {
		return Errorf(Invalid, "zone %s: name is required", z.ID)
	}
	return nil
}

// Direction is the way a door leads relative to its zone.
type Direction uint8

// The door directions.
const (
	// DirNone marks a door that neither enters nor leaves its zone for
	// anti-passback purposes.
	DirNone Direction = iota
	// DirIn marks a door that enters its zone.
	DirIn
	// DirOut marks a door that leaves its zone.
	DirOut
)

var directionNames = []string{DirNone: "none", DirIn: "in", DirOut: "out"}

// String returns "none", "in" or "out".
func (d Direction) String() string { return enumName(directionNames, int(d)) }

// MarshalText returns the String form of d.
func (d Direction) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses the String form of a direction into d, returning an
// Invalid error for any other text.
func (d *Direction) UnmarshalText(b []byte) error {
	v, err := parseEnum("direction", directionNames, string(b))
	if err == nil {
		*d = Direction(v)
	}
	return err
}

// Door is a door, turnstile or barrier with a reader. ZoneID (optional) is
// the zone it belongs to and Direction says whether passing it enters or
// leaves that zone. A HighSecurity door's controller fails secure once it has
// been cut off from its site for longer than MaxOffline; other doors keep
// deciding from their offline cache.
type Door struct {
	ID           ID
	SiteID       ID
	ZoneID       ID
	Name         string
	Direction    Direction
	HighSecurity bool
	MaxOffline   time.Duration
}

// Validate returns an Invalid error describing the first problem with d: a
// malformed ID, site ID or zone ID, an empty name, an unknown direction, a
// direction without a zone, or a negative MaxOffline.
func (d Door) Validate() error {
	if err := requireID("door id", d.ID); err != nil {
		return err
	}
	if err := requireID("door "+string(d.ID)+": site id", d.SiteID); err != nil {
		return err
	}
	if err := optionalID("door "+string(d.ID)+": zone id", d.ZoneID); err != nil {
		return err
	}
	if d.Name == "" {
		return Errorf(Invalid, "door %s: name is required", d.ID)
	}
	if d.Direction > DirOut {
		return Errorf(Invalid, "door %s: unknown direction %d", d.ID, d.Direction)
	}
	if d.Direction != DirNone && d.ZoneID.IsZero() {
		return Errorf(Invalid, "door %s: direction %s needs a zone", d.ID, d.Direction)
	}
	if d.MaxOffline < 0 {
		return Errorf(Invalid, "door %s: max offline %s is negative", d.ID, d.MaxOffline)
	}
	return nil
}

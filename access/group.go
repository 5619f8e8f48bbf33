package access

import "time"

// GroupKind distinguishes the two uses of a Group. The zero value is not a
// valid kind.
type GroupKind uint8

// The kinds of group.
const (
	// GroupAccess is an access group, granted to cardholders (occupier
	// users and access users).
	GroupAccess GroupKind = iota + 1
	// GroupVisitorProfile is an access profile, granted to visits.
	GroupVisitorProfile
)

var groupKindNames = []string{GroupAccess: "access", GroupVisitorProfile: "visitor_profile"}

// String returns "access" or "visitor_profile".
func (k GroupKind) String() string { return enumName(groupKindNames, int(k)) }

// MarshalText returns the String form of k.
func (k GroupKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText parses the String form of a group kind into k, returning an
// Invalid error for any other text.
func (k *GroupKind) UnmarshalText(b []byte) error {
	v, err := parseEnum("group kind", groupKindNames, string(b))
	if err == nil {
		*k = GroupKind(v)
	}
	return err
}

// Group is a set of doors of one site usable during a schedule: an access
// group for cardholders or an access profile for visitors (see Kind); both
// work the same way. A zero ScheduleID means the group is usable at all
// times.
type Group struct {
	ID         ID
	SiteID     ID
	Name       string
	Doors      []ID
	ScheduleID ID
	Kind       GroupKind
}

// Validate returns an Invalid error describing the first problem with g: a
// malformed ID, site ID, schedule ID or door ID, an empty name, an unknown
// kind, or a door listed twice.
func (g Group) Validate() error {
	if err := requireID("group id", g.ID); err != nil {
		return err
	}
	what := "group " + string(g.ID)
	if err := requireID(what+": site id", g.SiteID); err != nil {
		return err
	}
	if g.Name == "" {
		return Errorf(Invalid, "%s: name is required", what)
	}
	if err := optionalID(what+": schedule id", g.ScheduleID); err != nil {
		return err
	}
	if g.Kind < GroupAccess || g.Kind > GroupVisitorProfile {
		return Errorf(Invalid, "%s: unknown kind %d", what, g.Kind)
	}
	seen := make(map[ID]struct{}, len(g.Doors))
	for _, d := range g.Doors {
		if err := requireID(what+": door id", d); err != nil {
			return err
		}
		if _, dup := seen[d]; dup {
			return Errorf(Invalid, "%s: door %s listed twice", what, d)
		}
		seen[d] = struct{}{}
	}
	return nil
}

// HasDoor reports whether door is one of g's doors. It runs in time linear
// in the number of g's doors and does not allocate.
func (g Group) HasDoor(door ID) bool {
	for _, d := range g.Doors {
		if d == door {
			return true
		}
	}
	return false
}

// Grant is a holder's membership of a group within [ValidFrom, ValidUntil)
// (a zero bound is unbounded). The holder is a person for access groups and a
// visit for visitor profiles. A grant is immutable: removing it sets Removed,
// a tombstone that is never undone, and granting again makes a grant with a
// new ID.
type Grant struct {
	ID         ID
	HolderID   ID
	GroupID    ID
	ValidFrom  time.Time
	ValidUntil time.Time
	Removed    bool
}

// Validate returns an Invalid error describing the first problem with g: a
// malformed ID, holder ID or group ID, or a validity window that ends before
// it starts. A tombstone (Removed set) needs only a valid ID, since a removal
// may arrive before, or without, the grant it removes.
func (g Grant) Validate() error {
	if err := requireID("grant id", g.ID); err != nil {
		return err
	}
	if g.Removed && g.HolderID.IsZero() && g.GroupID.IsZero() {
		return nil
	}
	what := "grant " + string(g.ID)
	if err := requireID(what+": holder id", g.HolderID); err != nil {
		return err
	}
	if err := requireID(what+": group id", g.GroupID); err != nil {
		return err
	}
	return checkValidity(what, g.ValidFrom, g.ValidUntil)
}

// Live reports whether g is not removed.
func (g Grant) Live() bool { return !g.Removed }

// Covers reports whether g is live and t is within its validity window.
func (g Grant) Covers(t time.Time) bool {
	return !g.Removed && within(t, g.ValidFrom, g.ValidUntil)
}

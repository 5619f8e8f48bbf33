package access

import (
	"net/mail"
	"time"
)

// PersonKind says what role a person has at a site. The zero value is not a
// valid kind.
type PersonKind uint8

// The kinds of person.
const (
	// Occupier is a user belonging to a tenant company (the occupier),
	// managed by that company's occupier admin.
	Occupier PersonKind = iota + 1
	// AccessUser is a person with access who belongs to no tenant, such as
	// a guard, a cleaner or a contractor.
	AccessUser
	// Visitor is a guest; a visitor's access comes from a visit, never from
	// grants to the person, and never works offline.
	Visitor
)

var personKindNames = []string{Occupier: "occupier", AccessUser: "access_user", Visitor: "visitor"}

// String returns "occupier", "access_user" or "visitor".
func (k PersonKind) String() string { return enumName(personKindNames, int(k)) }

// MarshalText returns the String form of k.
func (k PersonKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText parses the String form of a person kind into k, returning an
// Invalid error for any other text.
func (k *PersonKind) UnmarshalText(b []byte) error {
	v, err := parseEnum("person kind", personKindNames, string(b))
	if err == nil {
		*k = PersonKind(v)
	}
	return err
}

// Person is an occupier user, access user or visitor. OccupierID is the
// tenant company of an occupier user. Only an Active, not Deleted person
// within [ValidFrom, ValidUntil) may pass a door (a zero bound is unbounded),
// and only one with OfflineAccess may pass a door decided offline. Deleted is
// a tombstone: a deleted person never comes back.
type Person struct {
	ID            ID
	Kind          PersonKind
	OccupierID    ID
	Name          string
	Email         string
	Active        bool
	OfflineAccess bool
	Deleted       bool
	ValidFrom     time.Time
	ValidUntil    time.Time
}

// Validate returns an Invalid error describing the first problem with p: a
// malformed ID, an unknown kind, an occupier user without an occupier (or a
// malformed occupier ID), an empty name, a malformed email address, a visitor
// with offline access, or a validity window that ends before it starts.
func (p Person) Validate() error {
	if err := requireID("person id", p.ID); err != nil {
		return err
	}
	if p.Kind < Occupier || p.Kind > Visitor {
		return Errorf(Invalid, "person %s: unknown kind %d", p.ID, p.Kind)
	}
	if p.Kind == Occupier {
		if err := requireID("person "+string(p.ID)+": occupier id", p.OccupierID); err != nil {
			return err
		}
	} else if err := optionalID("person "+string(p.ID)+": occupier id", p.OccupierID); err != nil {
		return err
	}
	if p.Name == "" {
		return Errorf(Invalid, "person %s: name is required", p.ID)
	}
	if p.Email != "" {
		if a, err := mail.ParseAddress(p.Email); err != nil || a.Address != p.Email {
			return Errorf(Invalid, "person %s: malformed email address %q", p.ID, p.Email)
		}
	}
	if p.Kind == Visitor && p.OfflineAccess {
		return Errorf(Invalid, "person %s: visitors cannot have offline access", p.ID)
	}
	return checkValidity("person "+string(p.ID), p.ValidFrom, p.ValidUntil)
}

// CanPass reports whether p is active, not deleted and within its validity
// window at t.
func (p Person) CanPass(t time.Time) bool {
	return p.Active && !p.Deleted && within(t, p.ValidFrom, p.ValidUntil)
}

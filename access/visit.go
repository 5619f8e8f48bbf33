package access

import "time"

// VisitState is the stage of a visit's lifecycle. States are ordered, and
// the order is the merge rule: replicas that disagree take the greater state,
// so a checkout, expiry, cancellation or denial anywhere is final. The zero
// value is below every state and means "unknown".
type VisitState uint8

// The visit states, in merge order.
const (
	// VisitRequested is a visit asked for but not yet approved.
	VisitRequested VisitState = iota + 1
	// VisitInvited is a visit whose invitation was sent.
	VisitInvited
	// VisitPreRegistered is a visit whose guest completed online check-in.
	VisitPreRegistered
	// VisitCheckedIn is a visit whose guest checked in on site.
	VisitCheckedIn
	// VisitPickedUp is a visit whose guest was picked up by the escort.
	VisitPickedUp
	// VisitCheckedOut is a visit whose guest checked out. It is final.
	VisitCheckedOut
	// VisitExpired is a visit whose window ended without checkout. It is
	// final.
	VisitExpired
	// VisitCancelled is a visit cancelled by its host. It is final.
	VisitCancelled
	// VisitDenied is a visit refused, for example by a watchlist check. It
	// is final.
	VisitDenied
)

var visitStateNames = []string{
	VisitRequested:     "requested",
	VisitInvited:       "invited",
	VisitPreRegistered: "pre_registered",
	VisitCheckedIn:     "checked_in",
	VisitPickedUp:      "picked_up",
	VisitCheckedOut:    "checked_out",
	VisitExpired:       "expired",
	VisitCancelled:     "cancelled",
	VisitDenied:        "denied",
}

// String returns the snake_case name of s, such as "checked_in".
func (s VisitState) String() string { return enumName(visitStateNames, int(s)) }

// MarshalText returns the String form of s.
func (s VisitState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses the String form of a visit state into s, returning an
// Invalid error for any other text.
func (s *VisitState) UnmarshalText(b []byte) error {
	v, err := parseEnum("visit state", visitStateNames, string(b))
	if err == nil {
		*s = VisitState(v)
	}
	return err
}

// Final reports whether s is checked out or later: a visit in a final state
// never opens a door again.
func (s VisitState) Final() bool { return s >= VisitCheckedOut }

// valid reports whether s is one of the named states.
func (s VisitState) valid() bool { return s >= VisitRequested && s <= VisitDenied }

// Visit is a guest's visit to a site, hosted by HostID, of visitor type
// TypeID, planned for [From, Until). When Escort is set the guest's card
// opens doors only after the host (or escort) picked the guest up.
type Visit struct {
	ID        ID
	SiteID    ID
	HostID    ID
	VisitorID ID
	TypeID    ID
	From      time.Time
	Until     time.Time
	Escort    bool
	State     VisitState
}

// Validate returns an Invalid error describing the first problem with v: a
// malformed ID, site, host, visitor or type ID, a missing or empty window,
// or an unknown state.
func (v Visit) Validate() error {
	if err := requireID("visit id", v.ID); err != nil {
		return err
	}
	what := "visit " + string(v.ID)
	if err := requireID(what+": site id", v.SiteID); err != nil {
		return err
	}
	if err := requireID(what+": host id", v.HostID); err != nil {
		return err
	}
	if err := requireID(what+": visitor id", v.VisitorID); err != nil {
		return err
	}
	if err := optionalID(what+": visitor type id", v.TypeID); err != nil {
		return err
	}
	if v.From.IsZero() || v.Until.IsZero() {
		return Errorf(Invalid, "%s: from and until are required", what)
	}
	if !v.Until.After(v.From) {
		return Errorf(Invalid, "%s: until %s is not after from %s", what,
			v.Until.Format(time.RFC3339), v.From.Format(time.RFC3339))
	}
	if !v.State.valid() {
		return Errorf(Invalid, "%s: unknown state %d", what, v.State)
	}
	return nil
}

// Advance returns v moved to state to. Moving to the current state is a
// no-op; states may be skipped (a walk-in goes from requested to checked in).
// It returns an Invalid error for an unknown state and a Conflict error
// wrapping ErrVisitBackwards when to is before v's state, because a visit is
// never reopened.
func (v Visit) Advance(to VisitState) (Visit, error) {
	if !to.valid() {
		return v, Errorf(Invalid, "visit %s: unknown state %d", v.ID, to)
	}
	if to < v.State {
		return v, Errorf(Conflict, "visit %s: %s to %s: %w", v.ID, v.State, to, ErrVisitBackwards)
	}
	v.State = to
	return v, nil
}

// VisitorType is a kind of visit (contractor, interview, delivery...) with
// its rules: the access profiles a host may give (AllowedGroups, empty
// meaning none), the documents the guest must provide before check-in, the
// longest visit allowed (zero meaning no limit) and whether an escort is
// required.
type VisitorType struct {
	ID                ID
	Name              string
	AllowedGroups     []ID
	RequiredDocuments []string
	MaxDuration       time.Duration
	EscortRequired    bool
}

// Validate returns an Invalid error describing the first problem with vt: a
// malformed ID or allowed group ID, an empty name, an empty document name or
// a negative maximum duration.
func (vt VisitorType) Validate() error {
	if err := requireID("visitor type id", vt.ID); err != nil {
		return err
	}
	what := "visitor type " + string(vt.ID)
	if vt.Name == "" {
		return Errorf(Invalid, "%s: name is required", what)
	}
	for _, g := range vt.AllowedGroups {
		if err := requireID(what+": allowed group id", g); err != nil {
			return err
		}
	}
	for _, d := range vt.RequiredDocuments {
		if d == "" {
			return Errorf(Invalid, "%s: empty required document name", what)
		}
	}
	if vt.MaxDuration < 0 {
		return Errorf(Invalid, "%s: max duration %s is negative", what, vt.MaxDuration)
	}
	return nil
}

// Allows reports whether group is one of vt's allowed profiles.
func (vt VisitorType) Allows(group ID) bool {
	for _, g := range vt.AllowedGroups {
		if g == group {
			return true
		}
	}
	return false
}

// Check enforces vt's rules on visit v with the access profiles groups. It
// returns, for the first rule broken: an Invalid error when v is of another
// visitor type; a Denied error wrapping ErrProfileNotAllowed when a profile
// is not allowed; an Invalid error wrapping ErrVisitTooLong when v is longer
// than MaxDuration; an Invalid error wrapping ErrEscortRequired when vt
// requires an escort and v has none. Required documents are checked at
// pre-registration and check-in, not here.
func (vt VisitorType) Check(v Visit, groups []ID) error {
	if !v.TypeID.IsZero() && v.TypeID != vt.ID {
		return Errorf(Invalid, "visit %s: is of visitor type %s, not %s", v.ID, v.TypeID, vt.ID)
	}
	for _, g := range groups {
		if !vt.Allows(g) {
			return Errorf(Denied, "visit %s: profile %s: %w %q", v.ID, g, ErrProfileNotAllowed, vt.Name)
		}
	}
	if vt.MaxDuration > 0 {
		if d := v.Until.Sub(v.From); d > vt.MaxDuration {
			return Errorf(Invalid, "visit %s: lasts %s, %q allows %s: %w", v.ID, d, vt.Name, vt.MaxDuration, ErrVisitTooLong)
		}
	}
	if vt.EscortRequired && !v.Escort {
		return Errorf(Invalid, "visit %s: %q visits: %w", v.ID, vt.Name, ErrEscortRequired)
	}
	return nil
}

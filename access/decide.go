package access

import "time"

// Mode says under which rule a door decision is made.
type Mode uint8

// The decision modes. The zero value is Offline, the stricter rule, so a
// request that forgets to say fails closed.
const (
	// Offline is the rule of a node whose leader lease ran out (a fenced
	// node) and of a controller cut off from its site: only persons with
	// offline access, within their validity windows, may pass.
	Offline Mode = iota
	// Online is the rule of a node holding a valid leader lease.
	Online
)

var modeNames = []string{Offline: "offline", Online: "online"}

// String returns "offline" or "online".
func (m Mode) String() string { return enumName(modeNames, int(m)) }

// MarshalText returns the String form of m.
func (m Mode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText parses the String form of a mode into m, returning an Invalid
// error for any other text.
func (m *Mode) UnmarshalText(b []byte) error {
	v, err := parseEnum("mode", modeNames, string(b))
	if err == nil {
		*m = Mode(v)
	}
	return err
}

// Reason explains a door decision. Its String form is a stable snake_case
// name used in logs, events and JSON. The zero value means "unknown" and is
// never returned by Decide.
type Reason uint8

// The reasons of a door decision; every one but ReasonGranted denies.
const (
	// ReasonGranted: every check passed.
	ReasonGranted Reason = iota + 1
	// ReasonUnknownDoor: the door is not known at this site.
	ReasonUnknownDoor
	// ReasonUnknownCard: no card has this number.
	ReasonUnknownCard
	// ReasonCardSuspended: the card is not active (suspended, lost or
	// returned).
	ReasonCardSuspended
	// ReasonCardOutsideValidity: the card's validity window does not cover
	// the time of the request.
	ReasonCardOutsideValidity
	// ReasonPersonInactive: the card's holder is unknown, inactive,
	// deleted, or outside the person's validity window.
	ReasonPersonInactive
	// ReasonNoGroup: the holder has no live grant, covering the time of the
	// request, of a group containing the door.
	ReasonNoGroup
	// ReasonOutsideSchedule: the holder is in a group containing the door,
	// but no such group's schedule allows the time of the request (outside
	// its windows, or a holiday).
	ReasonOutsideSchedule
	// ReasonVisitNotCheckedIn: the visitor card's visit is unknown, belongs
	// to another visitor, or is not yet checked in.
	ReasonVisitNotCheckedIn
	// ReasonEscortNotPickedUp: the visit needs an escort and the guest has
	// not been picked up.
	ReasonEscortNotPickedUp
	// ReasonCheckedOut: the visit is over (checked out, expired, cancelled
	// or denied), or the time of the request is outside the visit's window.
	ReasonCheckedOut
	// ReasonAntiPassback: the door enters an anti-passback zone that the
	// card entered and has not left.
	ReasonAntiPassback
	// ReasonNoOfflineAccess: the decision is made offline and the holder
	// has no offline access (visitors never do).
	ReasonNoOfflineAccess
)

var reasonNames = []string{
	ReasonGranted:             "granted",
	ReasonUnknownDoor:         "unknown_door",
	ReasonUnknownCard:         "unknown_card",
	ReasonCardSuspended:       "card_suspended",
	ReasonCardOutsideValidity: "card_outside_validity",
	ReasonPersonInactive:      "person_inactive",
	ReasonNoGroup:             "no_group",
	ReasonOutsideSchedule:     "outside_schedule",
	ReasonVisitNotCheckedIn:   "visit_not_checked_in",
	ReasonEscortNotPickedUp:   "escort_not_picked_up",
	ReasonCheckedOut:          "checked_out",
	ReasonAntiPassback:        "anti_passback",
	ReasonNoOfflineAccess:     "no_offline_access",
}

// Reasons returns every reason Decide can return, in declaration order.
func Reasons() []Reason {
	rs := make([]Reason, 0, len(reasonNames)-1)
	for r := ReasonGranted; int(r) < len(reasonNames); r++ {
		rs = append(rs, r)
	}
	return rs
}

// String returns the stable snake_case name of r, such as "no_group".
func (r Reason) String() string { return enumName(reasonNames, int(r)) }

// MarshalText returns the String form of r.
func (r Reason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText parses the String form of a reason into r, returning an
// Invalid error for any other text.
func (r *Reason) UnmarshalText(b []byte) error {
	v, err := parseEnum("reason", reasonNames, string(b))
	if err == nil {
		*r = Reason(v)
	}
	return err
}

// Request asks whether the card numbered Card may open Door at instant At,
// under the rule of Mode.
type Request struct {
	Card CardNumber
	Door ID
	At   time.Time
	Mode Mode
}

// Decision is the answer to a Request. Grant is true exactly when Reason is
// ReasonGranted. Holder, set once the card is known, is the card's person,
// or for a visitor card the visit, whose grants are consulted; Group is the
// group whose grant opened the door, set only when granted. Door and Card
// echo the request.
type Decision struct {
	Grant  bool
	Reason Reason
	Holder ID
	Group  ID
	Door   ID
	Card   CardNumber
}

// Result returns the outcome of d under mode, for an access event.
func (d Decision) Result(mode Mode) Result {
	return Result{Grant: d.Grant, Reason: d.Reason, Mode: mode}
}

// Reader is the read access Decide needs to a site's state. State implements
// it. Implementations must not allocate on these calls if Decide is to stay
// allocation-free, and slices they return are read but never modified.
type Reader interface {
	// Door returns the door with the given ID.
	Door(id ID) (Door, bool)
	// Zone returns the zone with the given ID.
	Zone(id ID) (Zone, bool)
	// CardByNumber returns the card with the given number.
	CardByNumber(n CardNumber) (Card, bool)
	// Person returns the person with the given ID.
	Person(id ID) (Person, bool)
	// Visit returns the visit with the given ID.
	Visit(id ID) (Visit, bool)
	// GrantsOf returns the live (not removed) grants of a holder, in a
	// deterministic order.
	GrantsOf(holder ID) []Grant
	// Group returns the group with the given ID.
	Group(id ID) (Group, bool)
	// Schedule returns the schedule with the given ID.
	Schedule(id ID) (Schedule, bool)
	// Calendar returns the time zone and holidays of the site with the
	// given ID.
	Calendar(site ID) (Calendar, bool)
	// ZonePassage returns the card's last recorded passage through a door
	// of the given zone.
	ZonePassage(card CardNumber, zone ID) (Passage, bool)
}

// Decide answers whether req.Card may open req.Door at req.At. It is a pure
// function of st and req: it reads no clock, records nothing (the caller
// records a Passage once the door is actually passed) and fails closed, so
// anything it cannot establish denies. It does not allocate when st does not.
//
// The checks run in this order, and the first that fails gives the reason:
//
//  1. the door is known, else ReasonUnknownDoor;
//  2. the card is known, else ReasonUnknownCard;
//  3. the card is active, else ReasonCardSuspended;
//  4. the card's validity window covers At, else ReasonCardOutsideValidity;
//  5. the card's person exists, is active, is not deleted and is within
//     its validity window, else ReasonPersonInactive;
//  6. for a visitor card (one with a VisitID, or any card of a person of
//     kind Visitor, whose access only ever comes from a visit): the visit
//     exists and belongs to the card's person, else
//     ReasonVisitNotCheckedIn; a final visit
//     gives ReasonCheckedOut; a visit not yet checked in gives
//     ReasonVisitNotCheckedIn; an escorted visit not yet picked up gives
//     ReasonEscortNotPickedUp; and At outside [From, Until) gives
//     ReasonCheckedOut;
//  7. in Offline mode the person has offline access, else
//     ReasonNoOfflineAccess (visitor cards and visitors never have it);
//  8. among the live grants of the holder (the visit for a visitor card,
//     the person otherwise) whose window covers At and whose group contains
//     the door, one has a group without a schedule, or with a schedule that
//     allows At in the site's time zone; if there is no such grant at all
//     the reason is ReasonNoGroup, and if there are some but no schedule
//     allows At it is ReasonOutsideSchedule. A group whose schedule or
//     site calendar is unknown allows nothing;
//  9. anti-passback: when the door has Direction DirIn into a zone with
//     AntiPassback, and the card's last passage in that zone was also in,
//     the reason is ReasonAntiPassback. This is hard anti-passback on entry
//     only: exits are never refused for anti-passback, so a missed entry
//     record can never trap anyone inside, and a card with no recorded
//     passage may enter. A door naming an unknown zone has no anti-passback.
//
// Otherwise the decision is ReasonGranted, with Group set to the group of
// the first qualifying grant in GrantsOf order.
func Decide(st Reader, req Request) Decision {
	d := Decision{Door: req.Door, Card: req.Card}
	deny := func(r Reason) Decision {
		d.Reason = r
		return d
	}

	door, ok := st.Door(req.Door)
	if !ok {
		return deny(ReasonUnknownDoor)
	}
	card, ok := st.CardByNumber(req.Card)
	if !ok {
		return deny(ReasonUnknownCard)
	}
	if card.Status != CardActive {
		return deny(ReasonCardSuspended)
	}
	if !within(req.At, card.ValidFrom, card.ValidUntil) {
		return deny(ReasonCardOutsideValidity)
	}
	d.Holder = card.PersonID
	person, ok := st.Person(card.PersonID)
	if !ok || !person.CanPass(req.At) {
		return deny(ReasonPersonInactive)
	}

	visitor := !card.VisitID.IsZero() || person.Kind == Visitor
	if visitor {
		d.Holder = card.VisitID
		v, ok := st.Visit(card.VisitID)
		switch {
		case !ok || v.VisitorID != card.PersonID:
			return deny(ReasonVisitNotCheckedIn)
		case v.State.Final():
			return deny(ReasonCheckedOut)
		case v.State < VisitCheckedIn:
			return deny(ReasonVisitNotCheckedIn)
		case v.Escort && v.State < VisitPickedUp:
			return deny(ReasonEscortNotPickedUp)
		case !within(req.At, v.From, v.Until):
			return deny(ReasonCheckedOut)
		}
	}

	if req.Mode != Online && (visitor || !person.OfflineAccess) {
		return deny(ReasonNoOfflineAccess)
	}

	group, reason := grantingGroup(st, d.Holder, door, req.At)
	if reason != ReasonGranted {
		return deny(reason)
	}
	d.Group = group

	if door.Direction == DirIn && !door.ZoneID.IsZero() {
		if z, ok := st.Zone(door.ZoneID); ok && z.AntiPassback {
			if p, ok := st.ZonePassage(req.Card, z.ID); ok && p.Direction == DirIn {
				d.Group = ""
				return deny(ReasonAntiPassback)
			}
		}
	}

	d.Grant = true
	d.Reason = ReasonGranted
	return d
}

// grantingGroup returns the group of the first live grant of holder that
// covers at, contains door and whose schedule allows at, with
// ReasonGranted; or ReasonOutsideSchedule when grants contain the door but no
// schedule allows at; or ReasonNoGroup when none contains the door.
func grantingGroup(st Reader, holder ID, door Door, at time.Time) (ID, Reason) {
	reason := ReasonNoGroup
	var (
		cal       Calendar
		calLoaded bool
		calOK     bool
	)
	for _, g := range st.GrantsOf(holder) {
		if !g.Covers(at) || g.HolderID != holder {
			continue
		}
		grp, ok := st.Group(g.GroupID)
		if !ok || !grp.HasDoor(door.ID) {
			continue
		}
		if grp.ScheduleID.IsZero() {
			return grp.ID, ReasonGranted
		}
		reason = ReasonOutsideSchedule
		sched, ok := st.Schedule(grp.ScheduleID)
		if !ok {
			continue
		}
		if !calLoaded {
			cal, calOK = st.Calendar(door.SiteID)
			calLoaded = true
		}
		if calOK && sched.Allows(at, cal.Location, cal.Holidays) {
			return grp.ID, ReasonGranted
		}
	}
	return "", reason
}

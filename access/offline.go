package access

import (
	"cmp"
	"slices"
	"time"
)

// OfflineEntry is one credential of a door's offline cache: the card may
// open the door, while its controller is cut off from the site, from From
// (zero: already) until Until (exclusive, never zero).
type OfflineEntry struct {
	Card  CardNumber
	From  time.Time
	Until time.Time
}

// OfflineCache is what a door controller needs to decide alone for one door
// (DESIGN.md §5, "a door controller loses its site"): the door's
// high-security settings and the credentials that may open it offline.
type OfflineCache struct {
	Door         ID
	HighSecurity bool
	MaxOffline   time.Duration
	// Entries are sorted by card number, one per card.
	Entries []OfflineEntry
}

// Equal reports whether c and o hold the same door settings and entries.
func (c OfflineCache) Equal(o OfflineCache) bool {
	return c.Door == o.Door && c.HighSecurity == o.HighSecurity && c.MaxOffline == o.MaxOffline &&
		slices.EqualFunc(c.Entries, o.Entries, func(a, b OfflineEntry) bool {
			return a.Card == b.Card && a.From.Equal(b.From) && a.Until.Equal(b.Until)
		})
}

// BuildOfflineCache computes the offline cache of door from st at time now,
// with every entry ending no later than horizon (which must be after now).
// It is a pure function of its arguments and reports false when the door is
// unknown.
//
// A card gets an entry when all of these hold, which is the offline rule of
// Decide restricted to what a controller can check by its clock alone:
//
//   - the card is active and is not a visitor card (no VisitID);
//   - its person exists, is active, not deleted, not a visitor, and has
//     OfflineAccess;
//   - the person (never a visit) has a live grant of an access group
//     (GroupAccess) that contains the door and has no schedule.
//
// Scheduled groups are left out on purpose (fail closed): an entry carries
// one validity window, not a weekly schedule with holidays in the site's
// time zone, so a controller could not tell office hours from a night.
// A person who must pass a door offline needs an unscheduled grant for it.
//
// The entry's window is the intersection of the card's, the person's and
// the grant's validity with [now, horizon); of several qualifying grants,
// the entry takes the first merged window (overlapping or adjacent windows
// joined) that has not ended at now. From is zero when the window has
// already started. Cards whose window is empty are left out. Every Until is
// at most horizon, so a cache always expires and the site must refresh it.
// Anti-passback is not enforced offline (a controller sees only its own
// doors).
//
// BuildOfflineCache takes time linear in the number of cards plus the
// grants of the people with offline access.
func BuildOfflineCache(st *State, door ID, now, horizon time.Time) (OfflineCache, bool) {
	d, ok := st.Door(door)
	if !ok {
		return OfflineCache{}, false
	}
	c := OfflineCache{Door: d.ID, HighSecurity: d.HighSecurity, MaxOffline: d.MaxOffline}
	if !horizon.After(now) {
		return c, true
	}
	// Windows of each person with offline access, computed once per person.
	windows := make(map[ID][]window)
	for card := range st.Cards() {
		if card.Status != CardActive || !card.VisitID.IsZero() {
			continue
		}
		p, ok := st.Person(card.PersonID)
		if !ok || !p.Active || p.Deleted || !p.OfflineAccess || p.Kind == Visitor {
			continue
		}
		ws, seen := windows[p.ID]
		if !seen {
			ws = personWindows(st, p, door)
			windows[p.ID] = ws
		}
		for _, w := range ws {
			w = w.intersect(window{card.ValidFrom, card.ValidUntil}).intersect(window{now, horizon})
			if w.empty() {
				continue
			}
			e := OfflineEntry{Card: card.Number, Until: w.until}
			if w.from.After(now) {
				e.From = w.from
			}
			c.Entries = append(c.Entries, e)
			break
		}
	}
	slices.SortFunc(c.Entries, func(a, b OfflineEntry) int { return cmp.Compare(a.Card, b.Card) })
	return c, true
}

// window is a validity window [from, until); a zero bound is unbounded.
type window struct{ from, until time.Time }

// intersect returns the intersection of w and o.
func (w window) intersect(o window) window {
	if w.from.IsZero() || (!o.from.IsZero() && o.from.After(w.from)) {
		w.from = o.from
	}
	if w.until.IsZero() || (!o.until.IsZero() && o.until.Before(w.until)) {
		w.until = o.until
	}
	return w
}

// empty reports whether w contains no instant.
func (w window) empty() bool {
	return !w.from.IsZero() && !w.until.IsZero() && !w.until.After(w.from)
}

// personWindows returns the merged windows, in time order, in which person
// p may open door offline by an unscheduled group: p's own validity
// intersected with each qualifying grant's.
func personWindows(st *State, p Person, door ID) []window {
	var ws []window
	for _, g := range st.GrantsOf(p.ID) {
		if g.Removed || g.HolderID != p.ID {
			continue
		}
		grp, ok := st.Group(g.GroupID)
		if !ok || !grp.ScheduleID.IsZero() || grp.Kind != GroupAccess || !grp.HasDoor(door) {
			continue
		}
		w := window{g.ValidFrom, g.ValidUntil}.intersect(window{p.ValidFrom, p.ValidUntil})
		if !w.empty() {
			ws = append(ws, w)
		}
	}
	if len(ws) < 2 {
		return ws
	}
	// Sort by start (zero first) and merge overlapping or adjacent windows.
	slices.SortFunc(ws, func(a, b window) int { return a.from.Compare(b.from) })
	out := ws[:1]
	for _, w := range ws[1:] {
		last := &out[len(out)-1]
		if last.until.IsZero() || !w.from.After(last.until) {
			if last.until.IsZero() || w.until.IsZero() {
				last.until = time.Time{}
			} else if w.until.After(last.until) {
				last.until = w.until
			}
			continue
		}
		out = append(out, w)
	}
	return out
}

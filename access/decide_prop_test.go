package access_test

import (
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"pgregory.net/rapid"
)

// world is a randomly drawn site state with the IDs drawn into it.
type world struct {
	st        *access.State
	ids       *idSource
	t0        time.Time
	site      access.ID
	zones     []access.ID
	doors     []access.ID
	schedules []access.ID
	groups    []access.ID
	persons   []access.ID
	visits    []access.ID
	cards     []access.CardNumber
}

// drawWindow draws a validity window: unbounded, bounded on one side, or
// bounded on both, within a week or so of w.t0; most are unbounded.
func (w *world) drawWindow(t *rapid.T, label string) (from, until time.Time) {
	hour := func(name string, lo, hi int) time.Time {
		return w.t0.Add(time.Duration(rapid.IntRange(lo, hi).Draw(t, label+" "+name)) * time.Hour)
	}
	switch rapid.IntRange(0, 9).Draw(t, label+" kind") {
	case 7:
		return hour("from", 0, 170), time.Time{}
	case 8:
		return time.Time{}, hour("until", 1, 170)
	case 9:
		from = hour("from", 0, 170)
		return from, from.Add(time.Duration(rapid.IntRange(1, 96).Draw(t, label+" hours")) * time.Hour)
	default:
		return time.Time{}, time.Time{}
	}
}

// drawTime draws an instant within the week starting at w.t0.
func (w *world) drawTime(t *rapid.T, label string) time.Time {
	return w.t0.Add(time.Duration(rapid.IntRange(0, 7*24*60).Draw(t, label)) * time.Minute)
}

// withZero returns ids with the zero ID (and so "none") added.
func withZero(ids []access.ID) []access.ID {
	return append([]access.ID{""}, ids...)
}

// put fails t when err is not nil.
func put(t *rapid.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("put: %v", err)
	}
}

func drawWorld(t *rapid.T) *world {
	w := &world{st: access.NewState(), t0: time.Date(2026, 3, 23, 0, 0, 0, 0, time.UTC)} // a Monday, before DST
	w.ids = newIDSource(w.t0)
	st := w.st
	w.site = w.ids.New(t)
	site := access.Site{ID: w.site, Name: "Site", TimeZone: "Europe/Berlin"}
	if rapid.Bool().Draw(t, "holiday") {
		site.Holidays = []access.Date{access.DateOf(w.t0.AddDate(0, 0, rapid.IntRange(0, 6).Draw(t, "holiday day")))}
	}
	put(t, st.PutSite(site))

	for i := rapid.IntRange(1, 2).Draw(t, "zones"); i > 0; i-- {
		z := access.Zone{ID: w.ids.New(t), SiteID: w.site, Name: "Zone", AntiPassback: rapid.Bool().Draw(t, "anti-passback")}
		put(t, st.PutZone(z))
		w.zones = append(w.zones, z.ID)
	}
	for i := rapid.IntRange(1, 4).Draw(t, "doors"); i > 0; i-- {
		d := access.Door{ID: w.ids.New(t), SiteID: w.site, Name: "Door"}
		d.ZoneID = rapid.SampledFrom(withZero(w.zones)).Draw(t, "door zone")
		if !d.ZoneID.IsZero() {
			d.Direction = access.Direction(rapid.IntRange(0, 2).Draw(t, "direction"))
		}
		put(t, st.PutDoor(d))
		w.doors = append(w.doors, d.ID)
	}
	for i := rapid.IntRange(0, 2).Draw(t, "schedules"); i > 0; i-- {
		s := access.Schedule{ID: w.ids.New(t), SiteID: w.site, Name: "Schedule", ClosedOnHolidays: rapid.Bool().Draw(t, "closed on holidays")}
		for j := rapid.IntRange(0, 4).Draw(t, "windows"); j > 0; j-- {
			start := rapid.IntRange(0, 1439).Draw(t, "start")
			end := rapid.IntRange(start+1, 1440).Draw(t, "end")
			s.Windows = append(s.Windows, access.Window{
				Day: time.Weekday(rapid.IntRange(0, 6).Draw(t, "day")), Start: access.Minute(start), End: access.Minute(end),
			})
		}
		put(t, st.PutSchedule(s))
		w.schedules = append(w.schedules, s.ID)
	}
	for i := rapid.IntRange(1, 4).Draw(t, "groups"); i > 0; i-- {
		g := access.Group{ID: w.ids.New(t), SiteID: w.site, Name: "Group",
			Kind:       access.GroupKind(rapid.IntRange(1, 2).Draw(t, "group kind")),
			ScheduleID: rapid.SampledFrom(withZero(w.schedules)).Draw(t, "group schedule"),
		}
		for _, d := range w.doors {
			if rapid.Bool().Draw(t, "group has door") {
				g.Doors = append(g.Doors, d)
			}
		}
		put(t, st.PutGroup(g))
		w.groups = append(w.groups, g.ID)
	}
	tenant := w.ids.New(t)
	for i := rapid.IntRange(1, 5).Draw(t, "persons"); i > 0; i-- {
		p := access.Person{ID: w.ids.New(t), Name: "Person",
			Kind:    access.PersonKind(rapid.IntRange(1, 3).Draw(t, "person kind")),
			Active:  rapid.IntRange(0, 9).Draw(t, "active") != 5,
			Deleted: rapid.IntRange(0, 9).Draw(t, "deleted") == 5,
		}
		if p.Kind == access.Occupier {
			p.OccupierID = tenant
		}
		p.OfflineAccess = p.Kind != access.Visitor && rapid.Bool().Draw(t, "offline access")
		p.ValidFrom, p.ValidUntil = w.drawWindow(t, "person validity")
		put(t, st.PutPerson(p))
		w.persons = append(w.persons, p.ID)
	}
	for i := rapid.IntRange(0, 3).Draw(t, "visits"); i > 0; i-- {
		from := w.drawTime(t, "visit from")
		v := access.Visit{ID: w.ids.New(t), SiteID: w.site, HostID: w.persons[0],
			VisitorID: rapid.SampledFrom(w.persons).Draw(t, "visitor"),
			From:      from,
			Until:     from.Add(time.Duration(rapid.IntRange(1, 72).Draw(t, "visit hours")) * time.Hour),
			Escort:    rapid.Bool().Draw(t, "escort"),
			State:     access.VisitState(rapid.IntRange(1, 9).Draw(t, "visit state")),
		}
		put(t, st.PutVisit(v))
		w.visits = append(w.visits, v.ID)
	}
	for i := rapid.IntRange(1, 6).Draw(t, "cards"); i > 0; i-- {
		c := access.Card{Number: access.CardNumber(len(w.cards) + 1),
			PersonID: rapid.SampledFrom(w.persons).Draw(t, "card person"),
			Status:   access.CardActive,
		}
		if len(w.visits) > 0 && rapid.Bool().Draw(t, "visitor card") {
			c.VisitID = rapid.SampledFrom(w.visits).Draw(t, "card visit")
		}
		if rapid.IntRange(0, 7).Draw(t, "card status") == 5 {
			c.Status = access.CardStatus(rapid.IntRange(2, 4).Draw(t, "inactive status"))
		}
		c.ValidFrom, c.ValidUntil = w.drawWindow(t, "card validity")
		put(t, st.PutCard(c))
		w.cards = append(w.cards, c.Number)
	}
	for i := rapid.IntRange(0, 12).Draw(t, "grants"); i > 0; i-- {
		put(t, st.PutGrant(w.drawGrant(t, w.holders(), w.groups)))
	}
	for i := rapid.IntRange(0, 4).Draw(t, "passages"); i > 0; i-- {
		d, _ := st.Door(rapid.SampledFrom(w.doors).Draw(t, "passage door"))
		st.RecordPassage(access.Passage{
			CardNumber: rapid.SampledFrom(w.cards).Draw(t, "passage card"),
			DoorID:     d.ID, ZoneID: d.ZoneID, Direction: d.Direction,
			At: w.drawTime(t, "passage at"),
		})
	}
	return w
}

// holders returns every person and visit ID of w.
func (w *world) holders() []access.ID {
	return append(append([]access.ID(nil), w.persons...), w.visits...)
}

// drawGrant draws a new grant (with a fresh ID) of one of holders to one of
// groups, live or, sometimes, removed.
func (w *world) drawGrant(t *rapid.T, holders, groups []access.ID) access.Grant {
	g := access.Grant{ID: w.ids.New(t),
		HolderID: rapid.SampledFrom(holders).Draw(t, "grant holder"),
		GroupID:  rapid.SampledFrom(groups).Draw(t, "grant group"),
		Removed:  rapid.IntRange(0, 4).Draw(t, "grant removed") == 3,
	}
	g.ValidFrom, g.ValidUntil = w.drawWindow(t, "grant validity")
	return g
}

// drawRequest draws a request, mostly online, for a card at a door; one in
// ten names an unknown card and one in ten an unknown door.
func (w *world) drawRequest(t *rapid.T) access.Request {
	req := access.Request{
		Card: rapid.SampledFrom(w.cards).Draw(t, "request card"),
		Door: rapid.SampledFrom(w.doors).Draw(t, "request door"),
		At:   w.drawTime(t, "request at"),
		Mode: access.Online,
	}
	if rapid.IntRange(0, 9).Draw(t, "unknown card") == 5 {
		req.Card = 999
	}
	if rapid.IntRange(0, 9).Draw(t, "unknown door") == 5 {
		req.Door = w.ids.New(t)
	}
	if rapid.IntRange(0, 3).Draw(t, "offline") == 2 {
		req.Mode = access.Offline
	}
	return req
}

// checkDecision fails t when d is not well formed for req.
func checkDecision(t *rapid.T, req access.Request, d access.Decision) {
	t.Helper()
	if d.Reason < access.ReasonGranted || d.Reason > access.ReasonNoOfflineAccess {
		t.Fatalf("decision %+v: unknown reason", d)
	}
	if d.Grant != (d.Reason == access.ReasonGranted) {
		t.Fatalf("decision %+v: grant and reason disagree", d)
	}
	if d.Grant == d.Group.IsZero() {
		t.Fatalf("decision %+v: a group must be named exactly when granted", d)
	}
	if d.Door != req.Door || d.Card != req.Card {
		t.Fatalf("decision %+v does not echo request %+v", d, req)
	}
}

// TestDenyNotOverriddenByUnrelatedGrants checks that extra grants never turn
// a denial for a reason other than grants into anything else, and that a
// NoGroup denial stays one when grants go to other holders or to groups
// without the door.
func TestDenyNotOverriddenByUnrelatedGrants(t *testing.T) {
	seen := make(map[access.Reason]int)
	rapid.Check(t, func(t *rapid.T) {
		w := drawWorld(t)
		req := w.drawRequest(t)
		d := access.Decide(w.st, req)
		checkDecision(t, req, d)
		seen[d.Reason]++

		switch d.Reason {
		case access.ReasonGranted, access.ReasonOutsideSchedule:
		case access.ReasonNoGroup:
			var others, doorless []access.ID
			for _, h := range w.holders() {
				if h != d.Holder {
					others = append(others, h)
				}
			}
			others = append(others, w.ids.New(t))
			doorless = append(doorless, w.ids.New(t)) // an unknown group
			for _, g := range w.groups {
				if grp, _ := w.st.Group(g); !grp.HasDoor(req.Door) {
					doorless = append(doorless, g)
				}
			}
			st := w.st.Clone()
			for i := rapid.IntRange(1, 5).Draw(t, "extra grants"); i > 0; i-- {
				var g access.Grant
				if rapid.Bool().Draw(t, "other holder") {
					g = w.drawGrant(t, others, append(w.groups, doorless...))
				} else {
					g = w.drawGrant(t, []access.ID{d.Holder}, doorless)
				}
				put(t, st.PutGrant(g))
			}
			if got := access.Decide(st, req); got.Reason != access.ReasonNoGroup {
				t.Fatalf("unrelated grants turned no_group into %v", got.Reason)
			}
		default:
			holders := append(w.holders(), w.ids.New(t))
			groups := append(append([]access.ID(nil), w.groups...), w.ids.New(t))
			st := w.st.Clone()
			for i := rapid.IntRange(1, 5).Draw(t, "extra grants"); i > 0; i-- {
				put(t, st.PutGrant(w.drawGrant(t, holders, groups)))
			}
			if got := access.Decide(st, req); got.Reason != d.Reason {
				t.Fatalf("extra grants turned %v into %v", d.Reason, got.Reason)
			}
		}
	})
	t.Logf("reasons seen: %v", seen)
}

// TestDecideProperties checks further laws of Decide on random worlds: the
// offline rule is never more generous than the online rule, revoking every
// grant of the holder ends every grant, and a clone decides the same.
func TestDecideProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := drawWorld(t)
		req := w.drawRequest(t)
		d := access.Decide(w.st, req)
		checkDecision(t, req, d)

		if got := access.Decide(w.st.Clone(), req); got != d {
			t.Fatalf("clone decided %+v, original %+v", got, d)
		}

		offline, online := req, req
		offline.Mode, online.Mode = access.Offline, access.Online
		if off := access.Decide(w.st, offline); off.Grant {
			if on := access.Decide(w.st, online); !on.Grant || on.Group != off.Group {
				t.Fatalf("granted offline (%+v) but online %+v", off, on)
			}
		}

		if d.Grant {
			st := w.st.Clone()
			for _, g := range st.GrantsOf(d.Holder) {
				put(t, st.RemoveGrant(g.ID))
			}
			if got := access.Decide(st, req); got.Reason != access.ReasonNoGroup {
				t.Fatalf("after revoking every grant of %s: %v, want no_group", d.Holder, got.Reason)
			}
		}
	})
}

package access_test

import (
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

// fixture is one site with a few doors, groups, people, cards and visits,
// covering every decision reason.
type fixture struct {
	st  *access.State
	now time.Time // Wednesday 2026-03-04 10:00 in Berlin

	site, lab                          access.ID
	main, labIn, labOut, server, vault access.ID
	all, office, visitorProfile        access.ID
	officeHours                        access.ID
	alice, bob, carol, dave, erin      access.ID
	frank, vic, walt, xena, yuri, zoe  access.ID
	vicVisit, waltVisit, xenaVisit     access.ID
	yuriVisit, zoeVisit                access.ID
	aliceGrantAll, bobGrantOffice      access.ID
}

// Card numbers of the fixture.
const (
	cardAlice        access.CardNumber = 1001
	cardBob          access.CardNumber = 1002
	cardAliceLost    access.CardNumber = 1003
	cardAliceExpired access.CardNumber = 1004
	cardCarol        access.CardNumber = 1005 // inactive person
	cardDave         access.CardNumber = 1006 // deleted person
	cardErin         access.CardNumber = 1007 // person validity over
	cardFrank        access.CardNumber = 1008 // no grants
	cardVic          access.CardNumber = 1009 // visitor, checked in, no escort
	cardWalt         access.CardNumber = 1010 // visitor, escorted, picked up
	cardXena         access.CardNumber = 1011 // visitor, escorted, checked in only
	cardYuri         access.CardNumber = 1012 // visitor, invited only
	cardZoe          access.CardNumber = 1013 // visitor, checked out
	cardVicOtherVis  access.CardNumber = 1014 // visitor card naming someone else's visit
	cardNobody       access.CardNumber = 9999 // not issued
)

func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	berlin := MustLoadLocation(tb, "Europe/Berlin")
	ids := newIDSource(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	f := &fixture{st: access.NewState(), now: time.Date(2026, 3, 4, 10, 0, 0, 0, berlin)}
	for _, p := range []*access.ID{
		&f.site, &f.lab, &f.main, &f.labIn, &f.labOut, &f.server, &f.vault,
		&f.all, &f.office, &f.visitorProfile, &f.officeHours,
		&f.alice, &f.bob, &f.carol, &f.dave, &f.erin, &f.frank, &f.vic, &f.walt, &f.xena, &f.yuri, &f.zoe,
		&f.vicVisit, &f.waltVisit, &f.xenaVisit, &f.yuriVisit, &f.zoeVisit,
		&f.aliceGrantAll, &f.bobGrantOffice,
	} {
		*p = ids.New(tb)
	}
	st, now := f.st, f.now
	tenant := ids.New(tb)

	must(tb, st.PutSite(access.Site{ID: f.site, Name: "HQ", TimeZone: "Europe/Berlin",
		Holidays: []access.Date{{Year: 2026, Month: time.December, Day: 25}}}))
	must(tb, st.PutZone(access.Zone{ID: f.lab, SiteID: f.site, Name: "Lab", AntiPassback: true}))
	for _, d := range []access.Door{
		{ID: f.main, SiteID: f.site, Name: "Main entrance"},
		{ID: f.labIn, SiteID: f.site, ZoneID: f.lab, Name: "Lab in", Direction: access.DirIn},
		{ID: f.labOut, SiteID: f.site, ZoneID: f.lab, Name: "Lab out", Direction: access.DirOut},
		{ID: f.server, SiteID: f.site, Name: "Server room", HighSecurity: true, MaxOffline: time.Hour},
		{ID: f.vault, SiteID: f.site, Name: "Vault"},
	} {
		must(tb, st.PutDoor(d))
	}
	officeHours := access.Schedule{ID: f.officeHours, SiteID: f.site, Name: "Office hours", ClosedOnHolidays: true}
	for d := time.Monday; d <= time.Friday; d++ {
		officeHours.Windows = append(officeHours.Windows, access.Window{Day: d, Start: hm(8, 0), End: hm(18, 0)})
	}
	must(tb, st.PutSchedule(officeHours))
	for _, g := range []access.Group{
		{ID: f.all, SiteID: f.site, Name: "All staff", Doors: []access.ID{f.main, f.labIn, f.labOut}, Kind: access.GroupAccess},
		{ID: f.office, SiteID: f.site, Name: "IT", Doors: []access.ID{f.main, f.server}, ScheduleID: f.officeHours, Kind: access.GroupAccess},
		{ID: f.visitorProfile, SiteID: f.site, Name: "Visitor", Doors: []access.ID{f.main}, Kind: access.GroupVisitorProfile},
	} {
		must(tb, st.PutGroup(g))
	}
	day := 24 * time.Hour
	for _, p := range []access.Person{
		{ID: f.alice, Kind: access.Occupier, OccupierID: tenant, Name: "Alice", Active: true},
		{ID: f.bob, Kind: access.AccessUser, Name: "Bob (guard)", Active: true, OfflineAccess: true},
		{ID: f.carol, Kind: access.AccessUser, Name: "Carol", Active: false},
		{ID: f.dave, Kind: access.AccessUser, Name: "Dave", Active: true, Deleted: true},
		{ID: f.erin, Kind: access.AccessUser, Name: "Erin", Active: true, ValidUntil: now.Add(-day)},
		{ID: f.frank, Kind: access.AccessUser, Name: "Frank", Active: true, OfflineAccess: true},
		{ID: f.vic, Kind: access.Visitor, Name: "Vic", Active: true},
		{ID: f.walt, Kind: access.Visitor, Name: "Walt", Active: true},
		{ID: f.xena, Kind: access.Visitor, Name: "Xena", Active: true},
		{ID: f.yuri, Kind: access.Visitor, Name: "Yuri", Active: true},
		{ID: f.zoe, Kind: access.Visitor, Name: "Zoe", Active: true},
	} {
		must(tb, st.PutPerson(p))
	}
	visit := func(id, visitor access.ID, escort bool, state access.VisitState) access.Visit {
		return access.Visit{ID: id, SiteID: f.site, HostID: f.alice, VisitorID: visitor,
			From: now.Add(-2 * time.Hour), Until: now.Add(6 * time.Hour), Escort: escort, State: state}
	}
	for _, v := range []access.Visit{
		visit(f.vicVisit, f.vic, false, access.VisitCheckedIn),
		visit(f.waltVisit, f.walt, true, access.VisitPickedUp),
		visit(f.xenaVisit, f.xena, true, access.VisitCheckedIn),
		visit(f.yuriVisit, f.yuri, false, access.VisitInvited),
		visit(f.zoeVisit, f.zoe, false, access.VisitCheckedOut),
	} {
		must(tb, st.PutVisit(v))
	}
	active := access.CardActive
	for _, c := range []access.Card{
		{Number: cardAlice, PersonID: f.alice, Status: active},
		{Number: cardBob, PersonID: f.bob, Status: active, ValidFrom: now.Add(-day), ValidUntil: now.Add(day)},
		{Number: cardAliceLost, PersonID: f.alice, Status: access.CardLost},
		{Number: cardAliceExpired, PersonID: f.alice, Status: active, ValidUntil: now.Add(-time.Minute)},
		{Number: cardCarol, PersonID: f.carol, Status: active},
		{Number: cardDave, PersonID: f.dave, Status: active},
		{Number: cardErin, PersonID: f.erin, Status: active},
		{Number: cardFrank, PersonID: f.frank, Status: active},
		{Number: cardVic, PersonID: f.vic, VisitID: f.vicVisit, Status: active},
		{Number: cardWalt, PersonID: f.walt, VisitID: f.waltVisit, Status: active},
		{Number: cardXena, PersonID: f.xena, VisitID: f.xenaVisit, Status: active},
		{Number: cardYuri, PersonID: f.yuri, VisitID: f.yuriVisit, Status: active},
		{Number: cardZoe, PersonID: f.zoe, VisitID: f.zoeVisit, Status: active},
		{Number: cardVicOtherVis, PersonID: f.vic, VisitID: f.waltVisit, Status: active},
	} {
		must(tb, st.PutCard(c))
	}
	grant := func(id, holder, group access.ID) access.Grant {
		if id.IsZero() {
			id = ids.New(tb)
		}
		return access.Grant{ID: id, HolderID: holder, GroupID: group}
	}
	for _, g := range []access.Grant{
		grant(f.aliceGrantAll, f.alice, f.all),
		grant(f.bobGrantOffice, f.bob, f.office),
		grant("", f.bob, f.all),
		grant("", f.carol, f.all),
		grant("", f.dave, f.all),
		grant("", f.erin, f.all),
		grant("", f.vicVisit, f.visitorProfile),
		grant("", f.waltVisit, f.visitorProfile),
		grant("", f.xenaVisit, f.visitorProfile),
		grant("", f.yuriVisit, f.visitorProfile),
		grant("", f.zoeVisit, f.visitorProfile),
		// Grants to visitor persons (not visits) never count.
		grant("", f.vic, f.all),
	} {
		must(tb, st.PutGrant(g))
	}
	return f
}

func TestDecide(t *testing.T) {
	f := newFixture(t)
	now := f.now
	christmas := time.Date(2026, 12, 25, 10, 0, 0, 0, now.Location())
	evening := now.Add(10 * time.Hour) // 20:00 on a Wednesday

	tests := []struct {
		name      string
		setup     func(t *testing.T, st *access.State)
		req       access.Request
		want      access.Reason
		wantGroup access.ID
	}{
		{"OKOccupier", nil, access.Request{Card: cardAlice, Door: f.main, At: now, Mode: access.Online}, access.ReasonGranted, f.all},
		{"OKAccessUser", nil, access.Request{Card: cardBob, Door: f.server, At: now, Mode: access.Online}, access.ReasonGranted, f.office},
		{"OKVisitorEscortPickedUp", nil, access.Request{Card: cardWalt, Door: f.main, At: now, Mode: access.Online}, access.ReasonGranted, f.visitorProfile},
		{"OKVisitorCheckedIn", nil, access.Request{Card: cardVic, Door: f.main, At: now, Mode: access.Online}, access.ReasonGranted, f.visitorProfile},
		{"OKOfflineAccess", nil, access.Request{Card: cardBob, Door: f.main, At: now, Mode: access.Offline}, access.ReasonGranted, f.office},
		{"OKSecondGrantOutsideSchedule", nil, access.Request{Card: cardBob, Door: f.main, At: evening, Mode: access.Online}, access.ReasonGranted, f.all},
		{"OKOfflineAccessScheduled", nil, access.Request{Card: cardBob, Door: f.server, At: now, Mode: access.Offline}, access.ReasonGranted, f.office},
		{"OKAntiPassbackFirstEntry", nil, access.Request{Card: cardAlice, Door: f.labIn, At: now, Mode: access.Online}, access.ReasonGranted, f.all},
		{"OKAntiPassbackAfterExit", func(t *testing.T, st *access.State) {
			st.RecordPassage(access.Passage{CardNumber: cardAlice, DoorID: f.labIn, ZoneID: f.lab, Direction: access.DirIn, At: now.Add(-time.Hour)})
			st.RecordPassage(access.Passage{CardNumber: cardAlice, DoorID: f.labOut, ZoneID: f.lab, Direction: access.DirOut, At: now.Add(-time.Minute)})
		}, access.Request{Card: cardAlice, Door: f.labIn, At: now, Mode: access.Online}, access.ReasonGranted, f.all},
		{"OKExitNeverRefused", func(t *testing.T, st *access.State) {
			st.RecordPassage(access.Passage{CardNumber: cardAlice, DoorID: f.labOut, ZoneID: f.lab, Direction: access.DirOut, At: now.Add(-time.Minute)})
		}, access.Request{Card: cardAlice, Door: f.labOut, At: now, Mode: access.Online}, access.ReasonGranted, f.all},
		{"OKAntiPassbackOtherZonePassage", func(t *testing.T, st *access.State) {
			other := access.MustNewID()
			st.RecordPassage(access.Passage{CardNumber: cardAlice, DoorID: f.main, ZoneID: other, Direction: access.DirIn, At: now.Add(-time.Minute)})
		}, access.Request{Card: cardAlice, Door: f.labIn, At: now, Mode: access.Online}, access.ReasonGranted, f.all},
		{"OKStaleOutOfOrderPassageIgnored", func(t *testing.T, st *access.State) {
			st.RecordPassage(access.Passage{CardNumber: cardAlice, DoorID: f.labOut, ZoneID: f.lab, Direction: access.DirOut, At: now.Add(-time.Minute)})
			st.RecordPassage(access.Passage{CardNumber: cardAlice, DoorID: f.labIn, ZoneID: f.lab, Direction: access.DirIn, At: now.Add(-time.Hour)})
		}, access.Request{Card: cardAlice, Door: f.labIn, At: now, Mode: access.Online}, access.ReasonGranted, f.all},

		{"ErrUnknownDoor", nil, access.Request{Card: cardAlice, Door: access.MustNewID(), At: now, Mode: access.Online}, access.ReasonUnknownDoor, ""},
		{"ErrUnknownCard", nil, access.Request{Card: cardNobody, Door: f.main, At: now, Mode: access.Online}, access.ReasonUnknownCard, ""},
		{"ErrCardSuspended", nil, access.Request{Card: cardAliceLost, Door: f.main, At: now, Mode: access.Online}, access.ReasonCardSuspended, ""},
		{"ErrCardSuspendedByUpdate", func(t *testing.T, st *access.State) {
			c, _ := st.CardByNumber(cardAlice)
			c.Status = access.CardSuspended
			must(t, st.PutCard(c))
		}, access.Request{Card: cardAlice, Door: f.main, At: now, Mode: access.Online}, access.ReasonCardSuspended, ""},
		{"ErrCardOutsideValidity", nil, access.Request{Card: cardAliceExpired, Door: f.main, At: now, Mode: access.Online}, access.ReasonCardOutsideValidity, ""},
		{"ErrCardNotYetValid", nil, access.Request{Card: cardBob, Door: f.main, At: now.Add(-48 * time.Hour), Mode: access.Online}, access.ReasonCardOutsideValidity, ""},
		{"ErrPersonInactive", nil, access.Request{Card: cardCarol, Door: f.main, At: now, Mode: access.Online}, access.ReasonPersonInactive, ""},
		{"ErrPersonDeleted", nil, access.Request{Card: cardDave, Door: f.main, At: now, Mode: access.Online}, access.ReasonPersonInactive, ""},
		{"ErrPersonOutsideValidity", nil, access.Request{Card: cardErin, Door: f.main, At: now, Mode: access.Online}, access.ReasonPersonInactive, ""},
		{"ErrNoGroup", nil, access.Request{Card: cardFrank, Door: f.main, At: now, Mode: access.Online}, access.ReasonNoGroup, ""},
		{"ErrNoGroupDoorNotInGroup", nil, access.Request{Card: cardAlice, Door: f.vault, At: now, Mode: access.Online}, access.ReasonNoGroup, ""},
		{"ErrNoGroupGrantRemoved", func(t *testing.T, st *access.State) {
			must(t, st.RemoveGrant(f.aliceGrantAll))
		}, access.Request{Card: cardAlice, Door: f.main, At: now, Mode: access.Online}, access.ReasonNoGroup, ""},
		{"ErrNoGroupGrantExpired", func(t *testing.T, st *access.State) {
			must(t, st.PutGrant(access.Grant{ID: access.MustNewID(), HolderID: f.frank, GroupID: f.all, ValidUntil: now}))
		}, access.Request{Card: cardFrank, Door: f.main, At: now, Mode: access.Online}, access.ReasonNoGroup, ""},
		{"ErrOutsideSchedule", nil, access.Request{Card: cardBob, Door: f.server, At: evening, Mode: access.Online}, access.ReasonOutsideSchedule, ""},
		{"ErrOutsideScheduleHoliday", func(t *testing.T, st *access.State) {
			c, _ := st.CardByNumber(cardBob)
			c.ValidUntil = time.Time{}
			must(t, st.PutCard(c))
		}, access.Request{Card: cardBob, Door: f.server, At: christmas, Mode: access.Online}, access.ReasonOutsideSchedule, ""},
		{"ErrOutsideScheduleUnknownSchedule", func(t *testing.T, st *access.State) {
			g, _ := st.Group(f.office)
			g.ScheduleID = access.MustNewID()
			must(t, st.PutGroup(g))
		}, access.Request{Card: cardBob, Door: f.server, At: now, Mode: access.Online}, access.ReasonOutsideSchedule, ""},
		{"ErrVisitNotCheckedIn", nil, access.Request{Card: cardYuri, Door: f.main, At: now, Mode: access.Online}, access.ReasonVisitNotCheckedIn, ""},
		{"ErrVisitOfAnotherVisitor", nil, access.Request{Card: cardVicOtherVis, Door: f.main, At: now, Mode: access.Online}, access.ReasonVisitNotCheckedIn, ""},
		{"ErrVisitorCardWithoutVisit", func(t *testing.T, st *access.State) {
			must(t, st.PutCard(access.Card{Number: cardVic, PersonID: f.vic, Status: access.CardActive}))
		}, access.Request{Card: cardVic, Door: f.main, At: now, Mode: access.Online}, access.ReasonVisitNotCheckedIn, ""},
		{"ErrEscortNotPickedUp", nil, access.Request{Card: cardXena, Door: f.main, At: now, Mode: access.Online}, access.ReasonEscortNotPickedUp, ""},
		{"ErrCheckedOut", nil, access.Request{Card: cardZoe, Door: f.main, At: now, Mode: access.Online}, access.ReasonCheckedOut, ""},
		{"ErrCheckedOutAfterWindow", nil, access.Request{Card: cardVic, Door: f.main, At: now.Add(7 * time.Hour), Mode: access.Online}, access.ReasonCheckedOut, ""},
		{"ErrCheckedOutCancelled", func(t *testing.T, st *access.State) {
			v, _ := st.Visit(f.waltVisit)
			v.State = access.VisitCancelled
			must(t, st.PutVisit(v))
		}, access.Request{Card: cardWalt, Door: f.main, At: now, Mode: access.Online}, access.ReasonCheckedOut, ""},
		{"ErrAntiPassback", func(t *testing.T, st *access.State) {
			st.RecordPassage(access.Passage{CardNumber: cardAlice, DoorID: f.labIn, ZoneID: f.lab, Direction: access.DirIn, At: now.Add(-time.Minute)})
		}, access.Request{Card: cardAlice, Door: f.labIn, At: now, Mode: access.Online}, access.ReasonAntiPassback, ""},
		{"ErrNoOfflineAccess", nil, access.Request{Card: cardAlice, Door: f.main, At: now, Mode: access.Offline}, access.ReasonNoOfflineAccess, ""},
		{"ErrNoOfflineAccessVisitor", nil, access.Request{Card: cardWalt, Door: f.main, At: now, Mode: access.Offline}, access.ReasonNoOfflineAccess, ""},
		{"ErrNoOfflineAccessZeroMode", nil, access.Request{Card: cardAlice, Door: f.main, At: now}, access.ReasonNoOfflineAccess, ""},
		{"ErrOfflineStillNeedsGroup", nil, access.Request{Card: cardFrank, Door: f.main, At: now, Mode: access.Offline}, access.ReasonNoGroup, ""},
	}

	covered := make(map[access.Reason]bool)
	for _, tt := range tests {
		covered[tt.want] = true
		t.Run(tt.name, func(t *testing.T) {
			st := f.st
			if tt.setup != nil {
				st = f.st.Clone()
				tt.setup(t, st)
			}
			got := access.Decide(st, tt.req)
			if got.Reason != tt.want {
				t.Fatalf("reason = %v, want %v (decision %+v)", got.Reason, tt.want, got)
			}
			if got, want := got.Grant, tt.want == access.ReasonGranted; got != want {
				t.Errorf("grant = %v, want %v", got, want)
			}
			if got.Group != tt.wantGroup {
				t.Errorf("group = %q, want %q", got.Group, tt.wantGroup)
			}
			if got.Door != tt.req.Door || got.Card != tt.req.Card {
				t.Errorf("door, card = %q, %d; want the request's %q, %d", got.Door, got.Card, tt.req.Door, tt.req.Card)
			}
		})
	}
	for _, r := range access.Reasons() {
		if !covered[r] {
			t.Errorf("no test case for %v", r)
		}
	}

	// The setups ran on clones: the fixture still grants Alice.
	if got := access.Decide(f.st, access.Request{Card: cardAlice, Door: f.labIn, At: now, Mode: access.Online}); !got.Grant {
		t.Errorf("after the table: %+v, want the fixture unchanged", got)
	}
}

func TestDecide_Holder(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name string
		card access.CardNumber
		want access.ID
	}{
		{"OKPerson", cardAlice, f.alice},
		{"OKVisit", cardWalt, f.waltVisit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := access.Decide(f.st, access.Request{Card: tt.card, Door: f.main, At: f.now, Mode: access.Online})
			if got.Holder != tt.want {
				t.Errorf("holder = %q, want %q", got.Holder, tt.want)
			}
			if r := got.Result(access.Online); r.Grant != got.Grant || r.Reason != got.Reason || r.Mode != access.Online {
				t.Errorf("Result = %+v, want it to match %+v", r, got)
			}
		})
	}
}

func TestReason_String(t *testing.T) {
	want := map[access.Reason]string{
		access.ReasonGranted:             "granted",
		access.ReasonUnknownDoor:         "unknown_door",
		access.ReasonUnknownCard:         "unknown_card",
		access.ReasonCardSuspended:       "card_suspended",
		access.ReasonCardOutsideValidity: "card_outside_validity",
		access.ReasonPersonInactive:      "person_inactive",
		access.ReasonNoGroup:             "no_group",
		access.ReasonOutsideSchedule:     "outside_schedule",
		access.ReasonVisitNotCheckedIn:   "visit_not_checked_in",
		access.ReasonEscortNotPickedUp:   "escort_not_picked_up",
		access.ReasonCheckedOut:          "checked_out",
		access.ReasonAntiPassback:        "anti_passback",
		access.ReasonNoOfflineAccess:     "no_offline_access",
	}
	if got, want := len(access.Reasons()), len(want); got != want {
		t.Errorf("len(Reasons()) = %d, want %d", got, want)
	}
	for _, r := range access.Reasons() {
		if got := r.String(); got != want[r] {
			t.Errorf("%d: got %q, want %q", r, got, want[r])
		}
	}
	if got, want := access.Reason(0).String(), "unknown(0)"; got != want {
		t.Errorf("zero reason: got %q, want %q", got, want)
	}
}

func TestDecide_AllocationFree(t *testing.T) {
	f := newFixture(t)
	reqs := []access.Request{
		{Card: cardAlice, Door: f.labIn, At: f.now, Mode: access.Online},
		{Card: cardBob, Door: f.server, At: f.now, Mode: access.Offline},
		{Card: cardWalt, Door: f.main, At: f.now, Mode: access.Online},
		{Card: cardFrank, Door: f.main, At: f.now, Mode: access.Online},
	}
	for _, req := range reqs {
		if got := testing.AllocsPerRun(100, func() { access.Decide(f.st, req) }); got != 0 {
			t.Errorf("Decide(%+v): %v allocations, want 0", req, got)
		}
	}
}

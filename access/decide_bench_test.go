package access_test

import (
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

// benchSite is a site with many cards for benchmarks.
type benchSite struct {
	st    *access.State
	doors []access.ID
	cards []access.CardNumber
	at    time.Time
}

// newBenchSite loads a site with the given number of people, each with one
// card and two grants (one scheduled), spread over 50 groups of 200 doors.
func newBenchSite(tb testing.TB, people int) *benchSite {
	tb.Helper()
	ids := newIDSource(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	b := &benchSite{st: access.NewState(), at: time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)}
	st := b.st
	site := ids.New(tb)
	must(tb, st.PutSite(access.Site{ID: site, Name: "Tower", TimeZone: "Europe/London"}))
	zone := ids.New(tb)
	must(tb, st.PutZone(access.Zone{ID: zone, SiteID: site, Name: "Secure", AntiPassback: true}))
	for i := range 200 {
		d := access.Door{ID: ids.New(tb), SiteID: site, Name: "Door"}
		if i%10 == 0 {
			d.ZoneID, d.Direction = zone, access.DirIn
		}
		must(tb, st.PutDoor(d))
		b.doors = append(b.doors, d.ID)
	}
	sched := access.Schedule{ID: ids.New(tb), SiteID: site, Name: "Weekdays", ClosedOnHolidays: true}
	for d := time.Monday; d <= time.Friday; d++ {
		sched.Windows = append(sched.Windows, access.Window{Day: d, Start: hm(7, 0), End: hm(19, 0)})
	}
	must(tb, st.PutSchedule(sched))
	var groups []access.ID
	for i := range 50 {
		g := access.Group{ID: ids.New(tb), SiteID: site, Name: "Group", Kind: access.GroupAccess}
		if i%2 == 1 {
			g.ScheduleID = sched.ID
		}
		for j := range 20 {
			g.Doors = append(g.Doors, b.doors[(i*7+j*3)%len(b.doors)])
		}
		must(tb, st.PutGroup(g))
		groups = append(groups, g.ID)
	}
	for i := range people {
		p := access.Person{ID: ids.New(tb), Kind: access.AccessUser, Name: "Person", Active: true, OfflineAccess: i%4 == 0}
		must(tb, st.PutPerson(p))
		n := access.CardNumber(1_000_000 + i)
		must(tb, st.PutCard(access.Card{Number: n, PersonID: p.ID, Status: access.CardActive}))
		b.cards = append(b.cards, n)
		for k := range 2 {
			must(tb, st.PutGrant(access.Grant{ID: ids.New(tb), HolderID: p.ID, GroupID: groups[(i+k*17)%len(groups)]}))
		}
	}
	return b
}

func BenchmarkDecide(b *testing.B) {
	site := newBenchSite(b, 100_000)
	if got, want := site.st.Counts().Cards, 100_000; got != want {
		b.Fatalf("loaded %d cards, want %d", got, want)
	}
	granted := 0
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		req := access.Request{
			Card: site.cards[i%len(site.cards)],
			Door: site.doors[(i*13)%len(site.doors)],
			At:   site.at,
			Mode: access.Online,
		}
		if access.Decide(site.st, req).Grant {
			granted++
		}
		i++
	}
	b.ReportMetric(float64(granted)/float64(i), "granted/op")
}

func BenchmarkDecide_Granted(b *testing.B) {
	site := newBenchSite(b, 100_000)
	// Find a granted request and repeat it: the longest path through Decide.
	var req access.Request
	for _, c := range site.cards {
		for _, d := range site.doors {
			r := access.Request{Card: c, Door: d, At: site.at, Mode: access.Online}
			if access.Decide(site.st, r).Grant {
				req = r
				break
			}
		}
		if !req.Door.IsZero() {
			break
		}
	}
	if req.Door.IsZero() {
		b.Fatal("no granted request found")
	}
	b.ReportAllocs()
	for b.Loop() {
		access.Decide(site.st, req)
	}
}

func BenchmarkState_Clone(b *testing.B) {
	site := newBenchSite(b, 100_000)
	b.ReportAllocs()
	for b.Loop() {
		site.st.Clone()
	}
}

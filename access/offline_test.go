package access_test

import (
	"slices"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

func TestBuildOfflineCache(t *testing.T) {
	day := 24 * time.Hour
	type setup func(t *testing.T, f *fixture)
	tests := []struct {
		name    string
		door    func(f *fixture) access.ID
		horizon time.Duration
		setup   setup
		want    func(f *fixture) []access.OfflineEntry
	}{
		{"OK", func(f *fixture) access.ID { return f.main }, 12 * time.Hour, nil,
			func(f *fixture) []access.OfflineEntry {
				// Bob's card ends after the horizon: the horizon bounds it.
				return []access.OfflineEntry{{Card: cardBob, Until: f.now.Add(12 * time.Hour)}}
			}},
		{"OKCardValidityBoundsUntil", func(f *fixture) access.ID { return f.main }, 2 * day, nil,
			func(f *fixture) []access.OfflineEntry {
				return []access.OfflineEntry{{Card: cardBob, Until: f.now.Add(day)}}
			}},
		{"OKScheduledGroupLeftOut", func(f *fixture) access.ID { return f.server }, day, nil,
			func(f *fixture) []access.OfflineEntry { return nil }},
		{"OKGrantWindowAndFutureFrom", func(f *fixture) access.ID { return f.vault }, day, func(t *testing.T, f *fixture) {
			g := access.MustNewID()
			must(t, f.st.PutGroup(access.Group{ID: g, SiteID: f.site, Name: "Vault", Doors: []access.ID{f.vault}, Kind: access.GroupAccess}))
			must(t, f.st.PutGrant(access.Grant{ID: access.MustNewID(), HolderID: f.bob, GroupID: g,
				ValidFrom: f.now.Add(time.Hour), ValidUntil: f.now.Add(3 * time.Hour)}))
			// An adjacent later grant merges with it.
			must(t, f.st.PutGrant(access.Grant{ID: access.MustNewID(), HolderID: f.bob, GroupID: g,
				ValidFrom: f.now.Add(3 * time.Hour), ValidUntil: f.now.Add(5 * time.Hour)}))
			// Frank has offline access, and an expired grant only.
			must(t, f.st.PutGrant(access.Grant{ID: access.MustNewID(), HolderID: f.frank, GroupID: g,
				ValidUntil: f.now.Add(-time.Minute)}))
		}, func(f *fixture) []access.OfflineEntry {
			return []access.OfflineEntry{{Card: cardBob, From: f.now.Add(time.Hour), Until: f.now.Add(5 * time.Hour)}}
		}},
		{"OKPersonValidityAndSortedOutput", func(f *fixture) access.ID { return f.labIn }, day, func(t *testing.T, f *fixture) {
			frank, _ := f.st.Person(f.frank)
			frank.ValidUntil = f.now.Add(2 * time.Hour)
			must(t, f.st.PutPerson(frank))
			must(t, f.st.PutGrant(access.Grant{ID: access.MustNewID(), HolderID: f.frank, GroupID: f.all}))
			must(t, f.st.PutCard(access.Card{Number: 5, PersonID: f.frank, Status: access.CardActive}))
		}, func(f *fixture) []access.OfflineEntry {
			return []access.OfflineEntry{
				{Card: 5, Until: f.now.Add(2 * time.Hour)},
				{Card: cardBob, Until: f.now.Add(day)},
				{Card: cardFrank, Until: f.now.Add(2 * time.Hour)},
			}
		}},
		{"ErrNoOfflineAccess", func(f *fixture) access.ID { return f.main }, day, func(t *testing.T, f *fixture) {
			bob, _ := f.st.Person(f.bob)
			bob.OfflineAccess = false
			must(t, f.st.PutPerson(bob))
		}, func(f *fixture) []access.OfflineEntry { return nil }},
		{"ErrCardSuspended", func(f *fixture) access.ID { return f.main }, day, func(t *testing.T, f *fixture) {
			c, _ := f.st.CardByNumber(cardBob)
			c.Status = access.CardSuspended
			must(t, f.st.PutCard(c))
		}, func(f *fixture) []access.OfflineEntry { return nil }},
		{"ErrGrantRemoved", func(f *fixture) access.ID { return f.labIn }, day, func(t *testing.T, f *fixture) {
			for _, g := range f.st.GrantsOf(f.bob) {
				if g.GroupID == f.all {
					must(t, f.st.RemoveGrant(g.ID))
				}
			}
		}, func(f *fixture) []access.OfflineEntry { return nil }},
		{"ErrPersonInactiveOrDeleted", func(f *fixture) access.ID { return f.main }, day, func(t *testing.T, f *fixture) {
			bob, _ := f.st.Person(f.bob)
			bob.Active = false
			must(t, f.st.PutPerson(bob))
		}, func(f *fixture) []access.OfflineEntry { return nil }},
		{"ErrVisitorCard", func(f *fixture) access.ID { return f.main }, day, func(t *testing.T, f *fixture) {
			bob, _ := f.st.Person(f.bob)
			bob.OfflineAccess = false
			must(t, f.st.PutPerson(bob))
			// A visit's grant never counts, even for a person with
			// offline access holding a visitor card.
			must(t, f.st.PutCard(access.Card{Number: 6, PersonID: f.frank, VisitID: f.vicVisit, Status: access.CardActive}))
		}, func(f *fixture) []access.OfflineEntry { return nil }},
		{"ErrCardExpired", func(f *fixture) access.ID { return f.main }, day, func(t *testing.T, f *fixture) {
			c, _ := f.st.CardByNumber(cardBob)
			c.ValidUntil = f.now
			must(t, f.st.PutCard(c))
		}, func(f *fixture) []access.OfflineEntry { return nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if tt.setup != nil {
				tt.setup(t, f)
			}
			got, ok := access.BuildOfflineCache(f.st, tt.door(f), f.now, f.now.Add(tt.horizon))
			if !ok {
				t.Fatal("door unknown")
			}
			want := tt.want(f)
			if !slices.EqualFunc(got.Entries, want, func(a, b access.OfflineEntry) bool {
				return a.Card == b.Card && a.From.Equal(b.From) && a.Until.Equal(b.Until)
			}) {
				t.Errorf("entries:\n got %+v\nwant %+v", got.Entries, want)
			}
			for _, e := range got.Entries {
				if e.Until.IsZero() || e.Until.After(f.now.Add(tt.horizon)) {
					t.Errorf("card %d: until %v is not within the horizon", e.Card, e.Until)
				}
			}
		})
	}
}

func TestBuildOfflineCacheDoor(t *testing.T) {
	f := newFixture(t)
	got, ok := access.BuildOfflineCache(f.st, f.server, f.now, f.now.Add(time.Hour))
	if !ok || !got.HighSecurity || got.MaxOffline != time.Hour || got.Door != f.server {
		t.Errorf("got %+v, %t; want the server room's settings", got, ok)
	}
	if _, ok := access.BuildOfflineCache(f.st, access.MustNewID(), f.now, f.now.Add(time.Hour)); ok {
		t.Error("unknown door: got ok")
	}
	// Deterministic: the same state and time give an equal cache.
	a, _ := access.BuildOfflineCache(f.st, f.main, f.now, f.now.Add(time.Hour))
	b, _ := access.BuildOfflineCache(f.st.Clone(), f.main, f.now, f.now.Add(time.Hour))
	if !a.Equal(b) {
		t.Errorf("not deterministic: %+v vs %+v", a, b)
	}
}

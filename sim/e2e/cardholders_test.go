package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/hub"
	peoplev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1"
	"github.com/gatehouse/gatehouse/sim/device"
)

const accessUser = peoplev1.PersonKind_PERSON_KIND_ACCESS_USER

// TestCardholdersAtTheDoors: a person created active through the hub's
// API, with a group at each of two sites (3 nodes and 1), taps at readers
// on every node and is granted at their groups' doors only; deactivated,
// they are denied at every door of both sites; deleted, denied as an
// unknown card; the number then opens the door for a new holder.
func TestCardholdersAtTheDoors(t *testing.T) {
	if testing.Short() {
		t.Skip("a hub and two sites")
	}
	siteA, siteB := newID(t), newID(t)
	th := MustOpenHub(t, hub.SyncSite{ID: string(siteA), Token: "site-a-token-0123456789"}, hub.SyncSite{ID: string(siteB), Token: "site-b-token-0123456789"})
	a := MustOpenSite(t, siteA, "site-a-token-0123456789", th.url, 3, 2)
	b := MustOpenSite(t, siteB, "site-b-token-0123456789", th.url, 1, 1)
	sites := []*testSite{a, b}
	th.waitDoors(t, 3)

	// A reader at every door, on every node's broker.
	type at struct {
		site *testSite
		node int
		r    *device.Reader
	}
	var readers []at
	for _, s := range sites {
		for i, nd := range s.nodes {
			for _, door := range s.doors {
				readers = append(readers, at{s, i + 1, s.reader(t, door, nd.MQTTAddr())})
			}
		}
	}
	tapsAs := func(what string, card access.CardNumber, want map[access.ID]access.Reason) {
		t.Helper()
		decides(t, what, sites, card, want)
		for _, r := range readers {
			d := tap(t, r.r, card)
			if w := want[r.r.Door()]; d.Reason != w || d.Grant != (w == access.ReasonGranted) {
				t.Fatalf("%s: tap at site %s node %d door %s: grant=%v %v, want %v", what, r.site.id, r.node, r.r.Door(), d.Grant, d.Reason, w)
			}
		}
	}

	ga := th.group(t, siteA, "Lobby A", a.doors[0])
	gb := th.group(t, siteB, "Lobby B", b.doors[0])
	spec := &peoplev1.CardSpec{Format: peoplev1.CardFormat_CARD_FORMAT_H10301, Facility: 7, Number: 4242}
	card := access.CardNumber(access.WiegandCredential{Format: access.H10301, Facility: 7, Card: 4242}.Number())
	ann := th.create(t, &peoplev1.CreatePersonRequest{FirstName: "Ann", LastName: "Lee", Kind: accessUser, Active: true,
		Cards: []*peoplev1.CardSpec{spec}, GroupIds: []string{ga, gb}})

	granted := map[access.ID]access.Reason{a.doors[0]: access.ReasonGranted, a.doors[1]: access.ReasonNoGroup, b.doors[0]: access.ReasonGranted}
	tapsAs("granted at the groups' doors only", card, granted)

	ctx := context.Background()
	if _, err := th.people.SetActive(ctx, connect.NewRequest(&peoplev1.SetActiveRequest{PersonId: ann, Active: false})); err != nil {
		t.Fatal(err)
	}
	inactive := map[access.ID]access.Reason{a.doors[0]: access.ReasonPersonInactive, a.doors[1]: access.ReasonPersonInactive, b.doors[0]: access.ReasonPersonInactive}
	tapsAs("denied at both sites once deactivated", card, inactive)

	if _, err := th.people.DeletePerson(ctx, connect.NewRequest(&peoplev1.DeletePersonRequest{PersonId: ann})); err != nil {
		t.Fatal(err)
	}
	unknown := map[access.ID]access.Reason{a.doors[0]: access.ReasonUnknownCard, a.doors[1]: access.ReasonUnknownCard, b.doors[0]: access.ReasonUnknownCard}
	tapsAs("denied everywhere once deleted", card, unknown)

	// The number is free again: it is given to Bob, with site B's group.
	th.create(t, &peoplev1.CreatePersonRequest{Name: "Bob Reuse", Kind: accessUser, Active: true, Cards: []*peoplev1.CardSpec{spec}, GroupIds: []string{gb}})
	tapsAs("the reused number opens its new holder's door", card,
		map[access.ID]access.Reason{a.doors[0]: access.ReasonNoGroup, a.doors[1]: access.ReasonNoGroup, b.doors[0]: access.ReasonGranted})
}

// TestOfflineAccessAtACutOffController: a door controller cut off from its
// site (its link through a fault proxy) decides alone from the offline
// cache the site pushed it: it grants the card of a person with offline
// access and denies, as unknown_card, the card of one without. Turning
// offline access off at the hub takes the card out of the cache: cut off
// again, the controller denies it too.
func TestOfflineAccessAtACutOffController(t *testing.T) {
	if testing.Short() {
		t.Skip("a hub and a site")
	}
	siteID := newID(t)
	const token = "site-o-token-0123456789"
	th := MustOpenHub(t, hub.SyncSite{ID: string(siteID), Token: token})
	s := MustOpenSite(t, siteID, token, th.url, 1, 1)
	th.waitDoors(t, 1)
	door := s.doors[0]
	ctl := s.controller(t, door)

	g := th.group(t, siteID, "Front", door)
	const offlineCard, onlineCard = access.CardNumber(41), access.CardNumber(42)
	olly := th.create(t, &peoplev1.CreatePersonRequest{Name: "Olly Offline", Kind: accessUser, Active: true, OfflineAccess: true,
		Cards: []*peoplev1.CardSpec{{Number: uint64(offlineCard)}}, GroupIds: []string{g}})
	th.create(t, &peoplev1.CreatePersonRequest{Name: "Nora Online", Kind: accessUser, Active: true,
		Cards: []*peoplev1.CardSpec{{Number: uint64(onlineCard)}}, GroupIds: []string{g}})

	cacheIs := func(what string, want ...access.CardNumber) {
		t.Helper()
		waitFor(t, what, 30*time.Second, func() (bool, string) {
			_, entries := ctl.c.Cache(door)
			var got []access.CardNumber
			for _, e := range entries {
				got = append(got, e.Card)
			}
			slices.Sort(got)
			return slices.Equal(got, want), fmt.Sprintf("cache %v", got)
		})
	}
	cacheIs("only the offline-access card in the controller's cache", offlineCard)
	// Both people reach the site by replication, not necessarily together.
	decides(t, "both cards granted at the site", []*testSite{s}, onlineCard, map[access.ID]access.Reason{door: access.ReasonGranted})

	// Online, the site decides both.
	for _, c := range []access.CardNumber{offlineCard, onlineCard} {
		if res := ctl.tap(t, door, c); res.Alone || !res.Decision.Grant {
			t.Fatalf("online tap of %v: %+v", c, res)
		}
	}

	ctl.cut(t)
	if res := ctl.tap(t, door, offlineCard); !res.Alone || !res.Decision.Grant {
		t.Fatalf("cut off, the offline-access card: alone=%v %+v, want a grant from the cache", res.Alone, res.Decision)
	}
	if res := ctl.tap(t, door, onlineCard); !res.Alone || res.Decision.Grant || res.Decision.Reason != access.ReasonUnknownCard {
		t.Fatalf("cut off, the card without offline access: alone=%v %+v, want unknown_card", res.Alone, res.Decision)
	}
	ctl.restore(t)

	off := false
	if _, err := th.people.UpdatePerson(context.Background(), connect.NewRequest(&peoplev1.UpdatePersonRequest{PersonId: olly, OfflineAccess: &off})); err != nil {
		t.Fatal(err)
	}
	cacheIs("offline access turned off at the hub empties the cache")
	ctl.cut(t)
	if res := ctl.tap(t, door, offlineCard); !res.Alone || res.Decision.Grant || res.Decision.Reason != access.ReasonUnknownCard {
		t.Fatalf("cut off after offline access was turned off: alone=%v %+v, want unknown_card", res.Alone, res.Decision)
	}
}

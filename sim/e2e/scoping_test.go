package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/hub"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	edgev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1"
	peoplev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
	"github.com/gatehouse/gatehouse/replication"
)

// TestPersonOfAnotherSiteGrantedHere: what site T makes of a person — a
// card its reception binds to a person of the hub, a visitor it registers,
// with a card of T — reaches site S once the hub grants that person a
// group of S, and only then; T's later changes of them follow (docs/sync.md
// §4, "Other sites' changes of what entered S"). All of it travels as T's
// own deltas, relayed by the hub to S over the real sync streams.
//
// Ann, an access user made at the hub, gets a card at T through T's local
// API. S denies it as unknown until the hub grants Ann S's group through
// the people API; then every node of S grants it, online, and a second card
// T binds to her afterwards opens S's door too.
//
// Vera and Wally are visitors registered at T through T's local API (the
// only people a site may make), each with a card of T. No API of the hub
// grants a visitor a group (the people API does not list visitors, a
// visit's profiles are of the visit's site), so the test writes Vera's
// grant into the hub's replica the way the people API writes grants. Vera
// then reaches S whole: S's local API lists her with her name and her card,
// and S decides her card as a visitor card without a visit
// (visit_not_checked_in, where a card S never received is unknown_card and
// a card whose person is missing person_inactive). T's rename of her
// follows. Wally, never granted at S, never reaches it: nothing else of T's
// normal lane is relayed.
func TestPersonOfAnotherSiteGrantedHere(t *testing.T) {
	if testing.Short() {
		t.Skip("a hub and two sites")
	}
	siteS, siteT := newID(t), newID(t)
	const tokenS, tokenT = "site-s-token-0123456789", "site-t-token-0123456789"
	th := MustOpenHub(t, hub.SyncSite{ID: string(siteS), Token: tokenS}, hub.SyncSite{ID: string(siteT), Token: tokenT})
	s := MustOpenSite(t, siteS, tokenS, th.url, 3, 1)
	tt := MustOpenSite(t, siteT, tokenT, th.url, 1, 1)
	th.waitDoors(t, 2)
	door := s.doors[0]
	rS := s.reader(t, door, s.nodes[1].MQTTAddr())
	apiS, apiT := s.localAPI(2), tt.localAPI(0)
	lobby := th.group(t, siteS, "Lobby S", door)

	ann := access.ID(th.create(t, &peoplev1.CreatePersonRequest{Name: "Ann Lee", Kind: accessUser, Active: true}))
	vera, wally := newID(t), newID(t)
	const annCard, annCard2, veraCard, wallyCard = access.CardNumber(880001), access.CardNumber(880002), access.CardNumber(880003), access.CardNumber(880004)
	// Wally first: were T's whole normal lane relayed, he would reach S
	// before Vera.
	applyAt(t, apiT,
		putVisitor(wally, "Wally Tal"), putCardOf(wallyCard, wally, siteT),
		putVisitor(vera, "Vera Tal"), putCardOf(veraCard, vera, siteT),
		putCardOf(annCard, ann, siteT))

	// Once the hub holds them, S still knows none of it.
	waitFor(t, "T's people and cards at the hub", 30*time.Second, func() (bool, string) {
		var why string
		th.h.State().View(func(r *replication.Replica) {
			if p, ok := r.Person(vera); !ok || p.Name != "Vera Tal" || p.Kind != access.Visitor {
				why = fmt.Sprintf("Vera at the hub: %+v %v", p, ok)
				return
			}
			for n, holder := range map[access.CardNumber]access.ID{annCard: ann, veraCard: vera, wallyCard: wally} {
				if c, ok := r.Card(n); !ok || c.PersonID != holder || c.SiteID != siteT {
					why = fmt.Sprintf("card %v at the hub: %+v %v", n, c, ok)
					return
				}
			}
		})
		return why == "", why
	})
	for _, c := range []access.CardNumber{annCard, veraCard} {
		if d := tap(t, rS, c); d.Grant || d.Reason != access.ReasonUnknownCard {
			t.Fatalf("card %v at S before any grant there: grant=%v %v, want unknown_card", c, d.Grant, d.Reason)
		}
	}

	// The hub grants Ann S's group through its API: her card of T opens
	// S's door on every node.
	if _, err := th.groups.AddMembers(context.Background(), connect.NewRequest(&peoplev1.AddMembersRequest{GroupId: lobby, PersonIds: []string{string(ann)}})); err != nil {
		t.Fatal(err)
	}
	granted := map[access.ID]access.Reason{door: access.ReasonGranted}
	decides(t, "Ann's card of T granted at S", []*testSite{s}, annCard, granted)
	if d := tap(t, rS, annCard); !d.Grant || d.Reason != access.ReasonGranted {
		t.Fatalf("Ann's card of T at S after the grant: grant=%v %v", d.Grant, d.Reason)
	}

	// Vera's grant, written into the hub's replica as the people API
	// writes grants (no API grants a visitor).
	grantID := newID(t)
	if _, err := th.h.State().Write(context.Background(), func(tx *hubstate.Tx) error {
		tx.Change(replication.KindGrant, string(grantID), tx.Replica().GrantOp(access.Grant{ID: grantID, HolderID: vera, GroupID: access.ID(lobby)}))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	decides(t, "Vera's card of T known at S, with Vera", []*testSite{s}, veraCard, map[access.ID]access.Reason{door: access.ReasonVisitNotCheckedIn})
	if d := tap(t, rS, veraCard); d.Grant || d.Reason != access.ReasonVisitNotCheckedIn {
		t.Fatalf("Vera's card of T at S after the grant: grant=%v %v, want visit_not_checked_in", d.Grant, d.Reason)
	}
	atS := func() (map[access.ID]*accessv1.Person, map[access.CardNumber]*accessv1.Card) {
		t.Helper()
		people, err := apiS.ListPeople(context.Background(), connect.NewRequest(&edgev1.ListPeopleRequest{PageSize: 1000}))
		if err != nil {
			t.Fatal(err)
		}
		cards, err := apiS.ListCards(context.Background(), connect.NewRequest(&edgev1.ListCardsRequest{PageSize: 1000}))
		if err != nil {
			t.Fatal(err)
		}
		ps, cs := map[access.ID]*accessv1.Person{}, map[access.CardNumber]*accessv1.Card{}
		for _, p := range people.Msg.GetPeople() {
			ps[access.ID(p.GetId())] = p
		}
		for _, c := range cards.Msg.GetCards() {
			cs[access.CardNumber(c.GetNumber())] = c
		}
		return ps, cs
	}
	ps, cs := atS()
	if p := ps[vera]; p.GetName() != "Vera Tal" || p.GetKind() != accessv1.PersonKind_PERSON_KIND_VISITOR || !p.GetActive() {
		t.Fatalf("Vera at S's API: %v, want the visitor T registered, named", p)
	}
	if p := ps[ann]; p.GetName() != "Ann Lee" {
		t.Fatalf("Ann at S's API: %v", p)
	}
	for n, holder := range map[access.CardNumber]access.ID{annCard: ann, veraCard: vera} {
		if c := cs[n]; c.GetPersonId() != string(holder) || c.GetSiteId() != string(siteT) {
			t.Fatalf("card %v at S's API: %v, want T's card of %s", n, c, holder)
		}
	}

	// T's later changes: a second card for Ann, Wally's and then Vera's
	// rename. Those of Ann and Vera reach S; Wally's does not.
	applyAt(t, apiT, putCardOf(annCard2, ann, siteT), putVisitor(wally, "Wally Tal-Kim"), putVisitor(vera, "Vera Tal-Kim"))
	decides(t, "Ann's second card of T granted at S", []*testSite{s}, annCard2, granted)
	if d := tap(t, rS, annCard2); !d.Grant {
		t.Fatalf("Ann's second card of T at S: grant=%v %v", d.Grant, d.Reason)
	}
	waitFor(t, "T's rename of Vera at S", 30*time.Second, func() (bool, string) {
		ps, _ := atS()
		return ps[vera].GetName() == "Vera Tal-Kim", fmt.Sprintf("Vera at S: %v", ps[vera])
	})
	ps, cs = atS()
	if p, ok := ps[wally]; ok {
		t.Fatalf("Wally, never granted at S, reached S: %v", p)
	}
	if c, ok := cs[wallyCard]; ok {
		t.Fatalf("Wally's card reached S: %v", c)
	}
	if d := tap(t, rS, wallyCard); d.Grant || d.Reason != access.ReasonUnknownCard {
		t.Fatalf("Wally's card at S: grant=%v %v, want unknown_card", d.Grant, d.Reason)
	}
}

// putVisitor is the Raft command registering (or renaming) an active
// visitor id at a site.
func putVisitor(id access.ID, name string) *raftv1.Command {
	return &raftv1.Command{Op: &raftv1.Command_PutPerson{PutPerson: &accessv1.Person{Id: string(id), Kind: accessv1.PersonKind_PERSON_KIND_VISITOR, Name: name, Active: true}}}
}

// putCardOf is the Raft command binding active card n of site to person.
func putCardOf(n access.CardNumber, person, site access.ID) *raftv1.Command {
	return &raftv1.Command{Op: &raftv1.Command_PutCard{PutCard: &accessv1.Card{Number: uint64(n), PersonId: string(person), SiteId: string(site),
		Status: accessv1.CardStatus_CARD_STATUS_ACTIVE}}}
}

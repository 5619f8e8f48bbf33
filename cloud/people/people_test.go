package people_test

import (
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	peoplev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1"
)

const (
	occupierUser = peoplev1.PersonKind_PERSON_KIND_OCCUPIER_USER
	accessUser   = peoplev1.PersonKind_PERSON_KIND_ACCESS_USER
)

func h10301(fac uint32, card uint64) *peoplev1.CardSpec {
	return &peoplev1.CardSpec{Format: peoplev1.CardFormat_CARD_FORMAT_H10301, Facility: fac, Number: card}
}

func ids(ps []*peoplev1.Person) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.GetId())
	}
	return out
}

// A person created active with a card and groups is visible and
// searchable; deactivated, then deleted, their card number is free again.
func TestPersonLifecycle(t *testing.T) {
	e := MustOpenEnv(t, nil)
	admin := e.as(keyAdmin)
	lobby := admin.mustGroup(t, siteA, "Lobby", doorA1, doorA2)
	night := admin.mustGroup(t, siteB, "Night", doorB1)

	ann := admin.mustCreate(t, &peoplev1.CreatePersonRequest{FirstName: "Ann", LastName: "Lee", Email: "ann@example.com",
		Kind: occupierUser, OccupierId: string(occA), Active: true, OfflineAccess: true,
		Cards: []*peoplev1.CardSpec{h10301(1, 100)}, GroupIds: []string{lobby.GetId(), night.GetId()}})
	bob := admin.mustCreate(t, &peoplev1.CreatePersonRequest{Name: "Bob Jones", Kind: accessUser,
		Cards: []*peoplev1.CardSpec{{Format: peoplev1.CardFormat_CARD_FORMAT_RAW32, Number: 4000000000}}})

	if got := ann.GetName(); got != "Ann Lee" {
		t.Fatalf("name %q", got)
	}
	if len(ann.GetCards()) != 1 || ann.GetCards()[0].GetFormat() != "h10301" || ann.GetCards()[0].GetFacility() != 1 || ann.GetCards()[0].GetCard() != 100 {
		t.Fatalf("cards %v", ann.GetCards())
	}
	if len(ann.GetGroups()) != 2 || !ann.GetActive() || !ann.GetOfflineAccess() {
		t.Fatalf("person %v", ann)
	}
	res, err := admin.people.GetPerson(ctx, connect.NewRequest(&peoplev1.GetPersonRequest{PersonId: ann.GetId()}))
	if err != nil || res.Msg.GetPerson().GetEmail() != "ann@example.com" {
		t.Fatalf("get: %v %v", res, err)
	}

	for _, tc := range []struct {
		name string
		f    *peoplev1.PeopleFilter
		want []string
	}{
		{"All", nil, []string{ann.GetId(), bob.GetId()}},
		{"ByName", &peoplev1.PeopleFilter{Query: "ann l"}, []string{ann.GetId()}},
		{"ByEmail", &peoplev1.PeopleFilter{Query: "EXAMPLE.com"}, []string{ann.GetId()}},
		{"ByWiegandCard", &peoplev1.PeopleFilter{Query: "1:100"}, []string{ann.GetId()}},
		{"ByCardField", &peoplev1.PeopleFilter{Query: "100"}, []string{ann.GetId()}},
		{"ByRawNumber", &peoplev1.PeopleFilter{Query: "4000000000"}, []string{bob.GetId()}},
		{"BySite", &peoplev1.PeopleFilter{SiteId: string(siteB)}, []string{ann.GetId()}},
		{"ByGroup", &peoplev1.PeopleFilter{GroupId: lobby.GetId()}, []string{ann.GetId()}},
		{"ByOccupier", &peoplev1.PeopleFilter{OccupierId: string(occA)}, []string{ann.GetId()}},
		{"ByKind", &peoplev1.PeopleFilter{Kind: accessUser}, []string{bob.GetId()}},
		{"Inactive", &peoplev1.PeopleFilter{State: peoplev1.PersonState_PERSON_STATE_INACTIVE}, []string{bob.GetId()}},
		{"NoMatch", &peoplev1.PeopleFilter{Query: "zed"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ids(admin.list(t, tc.f, 1)); strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}

	// Deactivate: still listed, inactive.
	if _, err := admin.people.SetActive(ctx, connect.NewRequest(&peoplev1.SetActiveRequest{PersonId: ann.GetId()})); err != nil {
		t.Fatal(err)
	}
	if got := ids(admin.list(t, &peoplev1.PeopleFilter{State: peoplev1.PersonState_PERSON_STATE_ACTIVE}, 0)); len(got) != 0 {
		t.Fatalf("active after deactivation: %v", got)
	}
	// The number is held: another person cannot take it.
	_, err = admin.people.CreatePerson(ctx, connect.NewRequest(&peoplev1.CreatePersonRequest{Name: "Cid", Kind: accessUser, Cards: []*peoplev1.CardSpec{h10301(1, 100)}}))
	wantCode(t, err, connect.CodeAlreadyExists)

	// Delete: gone, card freed, the number can be reused at once.
	del, err := admin.people.DeletePerson(ctx, connect.NewRequest(&peoplev1.DeletePersonRequest{PersonId: ann.GetId()}))
	if err != nil || len(del.Msg.GetFreedCardsMasked()) != 1 {
		t.Fatalf("delete: %v %v", del, err)
	}
	_, err = admin.people.GetPerson(ctx, connect.NewRequest(&peoplev1.GetPersonRequest{PersonId: ann.GetId()}))
	wantCode(t, err, connect.CodeNotFound)
	cid := admin.mustCreate(t, &peoplev1.CreatePersonRequest{Name: "Cid", Kind: accessUser, Active: true, Cards: []*peoplev1.CardSpec{h10301(1, 100)}})
	if got := ids(admin.list(t, &peoplev1.PeopleFilter{Query: "1:100"}, 0)); len(got) != 1 || got[0] != cid.GetId() {
		t.Fatalf("card holder after reuse: %v", got)
	}
	var holders []access.ID
	for _, c := range e.state.Cards() {
		if uint64(c.Number) == cid.GetCards()[0].GetNumber() {
			holders = append(holders, c.PersonID)
		}
	}
	if len(holders) != 1 || string(holders[0]) != cid.GetId() {
		t.Fatalf("replica's holders of the card: %v", holders)
	}

	// Unassign frees it too; assign it to Bob.
	if _, err := admin.people.UnassignCard(ctx, connect.NewRequest(&peoplev1.UnassignCardRequest{PersonId: cid.GetId(), Card: h10301(1, 100)})); err != nil {
		t.Fatal(err)
	}
	as, err := admin.people.AssignCard(ctx, connect.NewRequest(&peoplev1.AssignCardRequest{PersonId: bob.GetId(), Card: h10301(1, 100)}))
	if err != nil || len(as.Msg.GetPerson().GetCards()) != 2 {
		t.Fatalf("assign: %v %v", as, err)
	}

	// Groups: remove Bob from nothing, add him to the lobby and remove him.
	add, err := admin.groups.AddMembers(ctx, connect.NewRequest(&peoplev1.AddMembersRequest{GroupId: lobby.GetId(), PersonIds: []string{bob.GetId()}}))
	if err != nil || len(add.Msg.GetGrantIds()) != 1 {
		t.Fatalf("add members: %v %v", add, err)
	}
	if got := ids(admin.list(t, &peoplev1.PeopleFilter{GroupId: lobby.GetId()}, 0)); len(got) != 1 || got[0] != bob.GetId() {
		t.Fatalf("lobby members %v", got)
	}
	rm, err := admin.groups.RemoveMembers(ctx, connect.NewRequest(&peoplev1.RemoveMembersRequest{GroupId: lobby.GetId(), PersonIds: []string{bob.GetId()}}))
	if err != nil || rm.Msg.GetRemoved() != 1 {
		t.Fatalf("remove members: %v %v", rm, err)
	}
	if got := ids(admin.list(t, &peoplev1.PeopleFilter{GroupId: lobby.GetId()}, 0)); len(got) != 0 {
		t.Fatalf("lobby members after removal %v", got)
	}
	gl, err := admin.groups.ListGroups(ctx, connect.NewRequest(&peoplev1.ListGroupsRequest{SiteId: string(siteA)}))
	if err != nil || len(gl.Msg.GetGroups()) != 1 || gl.Msg.GetGroups()[0].GetName() != "Lobby" {
		t.Fatalf("groups %v %v", gl, err)
	}
}

// A card number held by someone else fails with AlreadyExists and writes
// nothing; an idempotent retry creates one person.
func TestDuplicateCardAndIdempotency(t *testing.T) {
	e := MustOpenEnv(t, nil)
	admin := e.as(keyAdmin)
	admin.mustCreate(t, &peoplev1.CreatePersonRequest{Name: "Ann", Kind: accessUser, Cards: []*peoplev1.CardSpec{{Number: 77}}})
	before := e.vector()
	_, err := admin.people.CreatePerson(ctx, connect.NewRequest(&peoplev1.CreatePersonRequest{Name: "Bob", Kind: accessUser,
		Cards: []*peoplev1.CardSpec{{Number: 78}, {Number: 77}}}))
	wantCode(t, err, connect.CodeAlreadyExists)
	if !e.vector().Equal(before) {
		t.Fatal("a refused create wrote something")
	}
	if got := len(admin.list(t, nil, 0)); got != 1 {
		t.Fatalf("%d people, want 1", got)
	}
	// Card 78 was not claimed: it is free.
	admin.mustCreate(t, &peoplev1.CreatePersonRequest{Name: "Cid", Kind: accessUser, Cards: []*peoplev1.CardSpec{{Number: 78}}})

	req := &peoplev1.CreatePersonRequest{IdempotencyKey: "hr-42", Name: "Dee", Kind: accessUser}
	first := admin.mustCreate(t, req)
	again := admin.mustCreate(t, req)
	if first.GetId() != again.GetId() {
		t.Fatalf("retry made %s, first %s", again.GetId(), first.GetId())
	}
	if got := len(admin.list(t, &peoplev1.PeopleFilter{Query: "dee"}, 0)); got != 1 {
		t.Fatalf("%d people named Dee, want 1", got)
	}
}

// Bad input gets a clear error and changes nothing.
func TestBadInput(t *testing.T) {
	e := MustOpenEnv(t, nil)
	admin := e.as(keyAdmin)
	ann := admin.mustCreate(t, &peoplev1.CreatePersonRequest{Name: "Ann", Kind: accessUser})
	unknown := string(tid(999))
	before := e.vector()
	for _, tc := range []struct {
		name string
		call func() error
		code connect.Code
	}{
		{"ErrNoKind", func() error {
			_, err := admin.people.CreatePerson(ctx, connect.NewRequest(&peoplev1.CreatePersonRequest{Name: "X"}))
			return err
		}, connect.CodeInvalidArgument},
		{"ErrNoName", func() error {
			_, err := admin.people.CreatePerson(ctx, connect.NewRequest(&peoplev1.CreatePersonRequest{Kind: accessUser}))
			return err
		}, connect.CodeInvalidArgument},
		{"ErrBadEmail", func() error {
			_, err := admin.people.CreatePerson(ctx, connect.NewRequest(&peoplev1.CreatePersonRequest{Name: "X", Kind: accessUser, Email: "x at y"}))
			return err
		}, connect.CodeInvalidArgument},
		{"ErrOccupierlessOccupierUser", func() error {
			_, err := admin.people.CreatePerson(ctx, connect.NewRequest(&peoplev1.CreatePersonRequest{Name: "X", Kind: occupierUser}))
			return err
		}, connect.CodeInvalidArgument},
		{"ErrUnknownGroup", func() error {
			_, err := admin.people.CreatePerson(ctx, connect.NewRequest(&peoplev1.CreatePersonRequest{Name: "X", Kind: accessUser, GroupIds: []string{unknown}}))
			return err
		}, connect.CodeNotFound},
		{"ErrWiegandFacility", func() error {
			_, err := admin.people.CreatePerson(ctx, connect.NewRequest(&peoplev1.CreatePersonRequest{Name: "X", Kind: accessUser, Cards: []*peoplev1.CardSpec{h10301(256, 1)}}))
			return err
		}, connect.CodeInvalidArgument},
		{"ErrRaw32TooBig", func() error {
			_, err := admin.people.AssignCard(ctx, connect.NewRequest(&peoplev1.AssignCardRequest{PersonId: ann.GetId(),
				Card: &peoplev1.CardSpec{Format: peoplev1.CardFormat_CARD_FORMAT_RAW32, Number: 1 << 33}}))
			return err
		}, connect.CodeInvalidArgument},
		{"ErrCardZero", func() error {
			_, err := admin.people.AssignCard(ctx, connect.NewRequest(&peoplev1.AssignCardRequest{PersonId: ann.GetId(), Card: &peoplev1.CardSpec{}}))
			return err
		}, connect.CodeInvalidArgument},
		{"ErrFacilityOnRaw", func() error {
			_, err := admin.people.AssignCard(ctx, connect.NewRequest(&peoplev1.AssignCardRequest{PersonId: ann.GetId(),
				Card: &peoplev1.CardSpec{Format: peoplev1.CardFormat_CARD_FORMAT_RAW56, Number: 5, Facility: 3}}))
			return err
		}, connect.CodeInvalidArgument},
		{"ErrUnknownPerson", func() error {
			_, err := admin.people.SetActive(ctx, connect.NewRequest(&peoplev1.SetActiveRequest{PersonId: unknown, Active: true}))
			return err
		}, connect.CodeNotFound},
		{"ErrMalformedID", func() error {
			_, err := admin.people.DeletePerson(ctx, connect.NewRequest(&peoplev1.DeletePersonRequest{PersonId: "not-an-id"}))
			return err
		}, connect.CodeInvalidArgument},
		{"ErrUnassignNotHeld", func() error {
			_, err := admin.people.UnassignCard(ctx, connect.NewRequest(&peoplev1.UnassignCardRequest{PersonId: ann.GetId(), Card: &peoplev1.CardSpec{Number: 5}}))
			return err
		}, connect.CodeNotFound},
		{"ErrGroupDoorAtOtherSite", func() error {
			_, err := admin.groups.CreateGroup(ctx, connect.NewRequest(&peoplev1.CreateGroupRequest{SiteId: string(siteA), Name: "G", DoorIds: []string{string(doorB1)}}))
			return err
		}, connect.CodeInvalidArgument},
		{"ErrGroupUnknownSite", func() error {
			_, err := admin.groups.CreateGroup(ctx, connect.NewRequest(&peoplev1.CreateGroupRequest{SiteId: unknown, Name: "G"}))
			return err
		}, connect.CodeNotFound},
		{"ErrOversizedRequest", func() error {
			_, err := admin.people.CreatePerson(ctx, connect.NewRequest(&peoplev1.CreatePersonRequest{Name: strings.Repeat("x", 2<<20), Kind: accessUser}))
			return err
		}, connect.CodeResourceExhausted},
		{"ErrLongName", func() error {
			_, err := admin.people.CreatePerson(ctx, connect.NewRequest(&peoplev1.CreatePersonRequest{Name: strings.Repeat("x", 300), Kind: accessUser}))
			return err
		}, connect.CodeInvalidArgument},
		{"ErrPageSize", func() error {
			_, err := admin.people.ListPeople(ctx, connect.NewRequest(&peoplev1.ListPeopleRequest{PageSize: 5000}))
			return err
		}, connect.CodeInvalidArgument},
		{"ErrImportMapping", func() error {
			_, err := admin.importFile(ctx, &peoplev1.ImportPeopleRequest{Csv: []byte("name\nx\n"), Mapping: "nonsense"}, nil)
			return err
		}, connect.CodeInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, tc.call(), tc.code)
			if !e.vector().Equal(before) {
				t.Fatal("a refused call wrote something")
			}
		})
	}
}

// An occupier admin sees and manages only their own occupier's people.
func TestOccupierAdminScope(t *testing.T) {
	e := MustOpenEnv(t, nil)
	admin := e.as(keyAdmin)
	lobby := admin.mustGroup(t, siteA, "Lobby", doorA1)
	a := e.as(keyOccA)
	ann := a.mustCreate(t, &peoplev1.CreatePersonRequest{Name: "Ann of A", Kind: occupierUser, OccupierId: string(occA), Cards: []*peoplev1.CardSpec{{Number: 1}}})
	bea := admin.mustCreate(t, &peoplev1.CreatePersonRequest{Name: "Bea of B", Kind: occupierUser, OccupierId: string(occB), Cards: []*peoplev1.CardSpec{{Number: 2}}})
	guard := admin.mustCreate(t, &peoplev1.CreatePersonRequest{Name: "Guard", Kind: accessUser})
	if _, err := admin.groups.AddMembers(ctx, connect.NewRequest(&peoplev1.AddMembersRequest{GroupId: lobby.GetId(), PersonIds: []string{bea.GetId(), guard.GetId()}})); err != nil {
		t.Fatal(err)
	}
	before := e.vector()

	if got := ids(a.list(t, nil, 0)); len(got) != 1 || got[0] != ann.GetId() {
		t.Fatalf("occupier admin A lists %v", got)
	}
	if got := ids(a.list(t, &peoplev1.PeopleFilter{Query: "of"}, 0)); len(got) != 1 {
		t.Fatalf("occupier admin A searches %v", got)
	}
	if got := ids(e.as(keyOccB).list(t, nil, 0)); len(got) != 1 || got[0] != bea.GetId() {
		t.Fatalf("occupier admin B lists %v", got)
	}
	bcsv := "first_name,last_name,occupier\nEve,X,Occupier B\n"
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"Get", func() error {
			_, err := a.people.GetPerson(ctx, connect.NewRequest(&peoplev1.GetPersonRequest{PersonId: bea.GetId()}))
			return err
		}},
		{"GetAccessUser", func() error {
			_, err := a.people.GetPerson(ctx, connect.NewRequest(&peoplev1.GetPersonRequest{PersonId: guard.GetId()}))
			return err
		}},
		{"ListOtherOccupier", func() error {
			_, err := a.people.ListPeople(ctx, connect.NewRequest(&peoplev1.ListPeopleRequest{Filter: &peoplev1.PeopleFilter{OccupierId: string(occB)}}))
			return err
		}},
		{"CreateInOther", func() error {
			_, err := a.people.CreatePerson(ctx, connect.NewRequest(&peoplev1.CreatePersonRequest{Name: "X", Kind: occupierUser, OccupierId: string(occB)}))
			return err
		}},
		{"CreateAccessUser", func() error {
			_, err := a.people.CreatePerson(ctx, connect.NewRequest(&peoplev1.CreatePersonRequest{Name: "X", Kind: accessUser}))
			return err
		}},
		{"Update", func() error {
			n := "Renamed"
			_, err := a.people.UpdatePerson(ctx, connect.NewRequest(&peoplev1.UpdatePersonRequest{PersonId: bea.GetId(), Name: &n}))
			return err
		}},
		{"MoveOwnToOther", func() error {
			o := string(occB)
			_, err := a.people.UpdatePerson(ctx, connect.NewRequest(&peoplev1.UpdatePersonRequest{PersonId: ann.GetId(), OccupierId: &o}))
			return err
		}},
		{"SetActive", func() error {
			_, err := a.people.SetActive(ctx, connect.NewRequest(&peoplev1.SetActiveRequest{PersonId: bea.GetId(), Active: true}))
			return err
		}},
		{"Delete", func() error {
			_, err := a.people.DeletePerson(ctx, connect.NewRequest(&peoplev1.DeletePersonRequest{PersonId: bea.GetId()}))
			return err
		}},
		{"AssignCard", func() error {
			_, err := a.people.AssignCard(ctx, connect.NewRequest(&peoplev1.AssignCardRequest{PersonId: bea.GetId(), Card: &peoplev1.CardSpec{Number: 9}}))
			return err
		}},
		{"AddMembers", func() error {
			_, err := a.groups.AddMembers(ctx, connect.NewRequest(&peoplev1.AddMembersRequest{GroupId: lobby.GetId(), PersonIds: []string{ann.GetId(), bea.GetId()}}))
			return err
		}},
		{"AddOtherOnly", func() error {
			_, err := a.groups.AddMembers(ctx, connect.NewRequest(&peoplev1.AddMembersRequest{GroupId: lobby.GetId(), PersonIds: []string{bea.GetId()}}))
			return err
		}},
		{"AddAccessUser", func() error {
			_, err := a.groups.AddMembers(ctx, connect.NewRequest(&peoplev1.AddMembersRequest{GroupId: lobby.GetId(), PersonIds: []string{guard.GetId()}}))
			return err
		}},
		{"RemoveMembers", func() error {
			_, err := a.groups.RemoveMembers(ctx, connect.NewRequest(&peoplev1.RemoveMembersRequest{GroupId: lobby.GetId(), PersonIds: []string{ann.GetId(), bea.GetId()}}))
			return err
		}},
		{"RemoveAccessUser", func() error {
			_, err := a.groups.RemoveMembers(ctx, connect.NewRequest(&peoplev1.RemoveMembersRequest{GroupId: lobby.GetId(), PersonIds: []string{guard.GetId()}}))
			return err
		}},
		{"UnassignCard", func() error {
			_, err := a.people.UnassignCard(ctx, connect.NewRequest(&peoplev1.UnassignCardRequest{PersonId: bea.GetId(), Card: &peoplev1.CardSpec{Number: 2}}))
			return err
		}},
		{"UnassignAccessUsersCard", func() error {
			_, err := a.people.UnassignCard(ctx, connect.NewRequest(&peoplev1.UnassignCardRequest{PersonId: guard.GetId(), Card: &peoplev1.CardSpec{Number: 2}}))
			return err
		}},
		{"ExportOtherOccupier", func() error {
			stream, err := a.people.ExportPeople(ctx, connect.NewRequest(&peoplev1.ExportPeopleRequest{Filter: &peoplev1.PeopleFilter{OccupierId: string(occB)}}))
			if err != nil {
				return err
			}
			for stream.Receive() {
			}
			return stream.Err()
		}},
		{"LogsOfOther", func() error {
			_, err := a.people.ListAccessLogs(ctx, connect.NewRequest(&peoplev1.ListAccessLogsRequest{PersonId: bea.GetId()}))
			return err
		}},
		{"CreateGroup", func() error {
			_, err := a.groups.CreateGroup(ctx, connect.NewRequest(&peoplev1.CreateGroupRequest{SiteId: string(siteA), Name: "Mine"}))
			return err
		}},
		{"ImportIntoOther", func() error {
			_, err := a.importFile(ctx, &peoplev1.ImportPeopleRequest{Csv: []byte(bcsv), Kind: occupierUser}, nil)
			return err
		}},
		{"ImportMixed", func() error {
			csv := "first_name,last_name,occupier\nOwn,Row,Occupier A\nEve,X,Occupier B\n"
			_, err := a.importFile(ctx, &peoplev1.ImportPeopleRequest{Csv: []byte(csv), Kind: occupierUser}, nil)
			return err
		}},
		{"ImportOtherByID", func() error {
			csv := "first_name,last_name,occupier\nEve,X," + string(occB) + "\n"
			_, err := a.importFile(ctx, &peoplev1.ImportPeopleRequest{Csv: []byte(csv), Kind: occupierUser}, nil)
			return err
		}},
		{"ImportAccessUsers", func() error {
			_, err := a.importFile(ctx, &peoplev1.ImportPeopleRequest{Csv: []byte("name\nX\n"), Kind: accessUser}, nil)
			return err
		}},
		{"ImportAccessUsersByRow", func() error {
			_, err := a.importFile(ctx, &peoplev1.ImportPeopleRequest{Csv: []byte("name,kind\nX,access_user\n")}, nil)
			return err
		}},
		{"UnknownCards", func() error {
			_, err := a.people.ListUnknownCards(ctx, connect.NewRequest(&peoplev1.ListUnknownCardsRequest{}))
			return err
		}},
		{"HostListsPeople", func() error {
			_, err := e.as(keyHost).people.ListPeople(ctx, connect.NewRequest(&peoplev1.ListPeopleRequest{}))
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, tc.call(), connect.CodePermissionDenied)
			if !e.vector().Equal(before) {
				t.Fatal("a denied call wrote something")
			}
		})
	}
	// Unauthenticated.
	_, err := e.as("wrong-key-0123456789").people.ListPeople(ctx, connect.NewRequest(&peoplev1.ListPeopleRequest{}))
	wantCode(t, err, connect.CodeUnauthenticated)

	// Lists by group show only A's own members.
	if got := ids(a.list(t, &peoplev1.PeopleFilter{GroupId: lobby.GetId()}, 0)); len(got) != 0 {
		t.Fatalf("A lists the lobby's members %v, none of them A's", got)
	}
	// An unknown person is not found, for an occupier admin as for others.
	_, err = a.groups.AddMembers(ctx, connect.NewRequest(&peoplev1.AddMembersRequest{GroupId: lobby.GetId(), PersonIds: []string{string(tid(999))}}))
	wantCode(t, err, connect.CodeNotFound)

	// What A may do with their own.
	if _, err := a.groups.AddMembers(ctx, connect.NewRequest(&peoplev1.AddMembersRequest{GroupId: lobby.GetId(), PersonIds: []string{ann.GetId()}})); err != nil {
		t.Fatal(err)
	}
	res, err := a.importFile(ctx, &peoplev1.ImportPeopleRequest{Csv: []byte("first_name,last_name,occupier,groups\nEve,X,Occupier A,Lobby\n"), Kind: occupierUser}, nil)
	if err != nil || !res.GetAccepted() {
		t.Fatalf("import into own occupier: %v %v", res, err)
	}
	if got := len(a.list(t, nil, 0)); got != 2 {
		t.Fatalf("A has %d people, want 2", got)
	}
	gl, err := a.groups.ListGroups(ctx, connect.NewRequest(&peoplev1.ListGroupsRequest{}))
	if err != nil || gl.Msg.GetGroups()[0].GetMembers() != 2 {
		t.Fatalf("A's view of the lobby: %v %v", gl, err)
	}
	if got := ids(a.list(t, &peoplev1.PeopleFilter{GroupId: lobby.GetId()}, 0)); len(got) != 2 || slices.Contains(got, bea.GetId()) {
		t.Fatalf("A lists the lobby's members %v, want their own two", got)
	}
	if _, err := a.groups.RemoveMembers(ctx, connect.NewRequest(&peoplev1.RemoveMembersRequest{GroupId: lobby.GetId(), PersonIds: []string{ann.GetId()}})); err != nil {
		t.Fatal(err)
	}
	if _, err := a.people.UnassignCard(ctx, connect.NewRequest(&peoplev1.UnassignCardRequest{PersonId: ann.GetId(), Card: &peoplev1.CardSpec{Number: 1}})); err != nil {
		t.Fatal(err)
	}
	// B's membership and card were not touched by any of it.
	got, err := admin.people.GetPerson(ctx, connect.NewRequest(&peoplev1.GetPersonRequest{PersonId: bea.GetId()}))
	if err != nil || len(got.Msg.GetPerson().GetGroups()) != 1 || len(got.Msg.GetPerson().GetCards()) != 1 {
		t.Fatalf("Bea after A's calls: %v %v", got, err)
	}
	// Export: only A's people.
	csv := export(t, a, nil)
	if strings.Contains(csv, "Bea") || !strings.Contains(csv, "Ann of A") || !strings.Contains(csv, "Eve X") {
		t.Fatalf("A's export:\n%s", csv)
	}
}

// export returns the CSV of the filtered people.
func export(t *testing.T, c clients, f *peoplev1.PeopleFilter) string {
	t.Helper()
	stream, err := c.people.ExportPeople(ctx, connect.NewRequest(&peoplev1.ExportPeopleRequest{Filter: f}))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for stream.Receive() {
		b.Write(stream.Msg().GetChunk())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// UpdatePerson changes only the fields set; an import retried with its
// idempotency key imports nothing more.
func TestUpdateAndImportIdempotency(t *testing.T) {
	e := MustOpenEnv(t, nil)
	admin := e.as(keyAdmin)
	p := admin.mustCreate(t, &peoplev1.CreatePersonRequest{Name: "Ann Lee", Email: "ann@example.com", Kind: accessUser, Cards: []*peoplev1.CardSpec{{Number: 12}}})
	first, last, off, occ := "Anne", "Leigh", true, string(occA)
	res, err := admin.people.UpdatePerson(ctx, connect.NewRequest(&peoplev1.UpdatePersonRequest{PersonId: p.GetId(), FirstName: &first, LastName: &last,
		OfflineAccess: &off, Kind: occupierUser, OccupierId: &occ}))
	if err != nil {
		t.Fatal(err)
	}
	got := res.Msg.GetPerson()
	if got.GetName() != "Anne Leigh" || got.GetEmail() != "ann@example.com" || !got.GetOfflineAccess() || got.GetOccupierId() != occ ||
		got.GetKind() != occupierUser || len(got.GetCards()) != 1 {
		t.Fatalf("updated: %v", got)
	}
	// Now occupier admin A manages them.
	if _, err := e.as(keyOccA).people.GetPerson(ctx, connect.NewRequest(&peoplev1.GetPersonRequest{PersonId: p.GetId()})); err != nil {
		t.Fatal(err)
	}

	req := &peoplev1.ImportPeopleRequest{Csv: []byte("name,card_number\nCid,20\nDee,21\n"), Kind: accessUser, IdempotencyKey: "batch-7"}
	for i := range 2 {
		r, err := admin.importFile(ctx, req, nil)
		if err != nil || !r.GetAccepted() || r.GetCreated() != 2 {
			t.Fatalf("import %d: %v %v", i, r, err)
		}
	}
	if got := len(admin.list(t, nil, 0)); got != 3 {
		t.Fatalf("%d people after a retried import, want 3", got)
	}
}

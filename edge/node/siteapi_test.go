package node

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	edgev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1/edgev1connect"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

func bearer(token string) connect.ClientOption {
	return connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+token)
			return next(ctx, req)
		}
	}))
}

func TestSiteAPI(t *testing.T) {
	nodes := MustOpenSite(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	api := edgev1connect.NewSiteServiceClient(http.DefaultClient, nodes[0].URL(), bearer("api-secret"))

	door, group, grant := id(t), id(t), id(t)
	var people []string
	cmds := []*raftv1.Command{
		{Op: &raftv1.Command_PutDoor{PutDoor: &accessv1.Door{Id: door, SiteId: testSite, Name: "front"}}},
		{Op: &raftv1.Command_PutGroup{PutGroup: &accessv1.Group{Id: group, SiteId: testSite, Name: "all", DoorIds: []string{door}, Kind: accessv1.GroupKind_GROUP_KIND_ACCESS}}},
	}
	for i := range 5 {
		p := id(t)
		people = append(people, p)
		cmds = append(cmds,
			&raftv1.Command{Op: &raftv1.Command_PutPerson{PutPerson: &accessv1.Person{Id: p, Kind: accessv1.PersonKind_PERSON_KIND_ACCESS_USER, Name: "P", Active: true}}},
			&raftv1.Command{Op: &raftv1.Command_PutCard{PutCard: &accessv1.Card{Number: uint64(100 + i), PersonId: p, Status: accessv1.CardStatus_CARD_STATUS_ACTIVE}}})
	}
	cmds = append(cmds, &raftv1.Command{Op: &raftv1.Command_PutGrant{PutGrant: &accessv1.Grant{Id: grant, HolderId: people[0], GroupId: group}}})
	res, err := api.Apply(ctx, connect.NewRequest(&edgev1.ApplyRequest{Commands: cmds}))
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res.Msg.GetResults() {
		if r.GetErrorCode() != "" {
			t.Fatalf("command %d: %s %s", i, r.GetErrorCode(), r.GetError())
		}
	}

	t.Run("CheckAccess", func(t *testing.T) {
		got, err := api.CheckAccess(ctx, connect.NewRequest(&edgev1.CheckAccessRequest{Card: 100, DoorId: door}))
		if err != nil {
			t.Fatal(err)
		}
		if !got.Msg.GetGranted() || got.Msg.GetMode() != "online" {
			t.Fatalf("card 100: %v", got.Msg)
		}
		got, err = api.CheckAccess(ctx, connect.NewRequest(&edgev1.CheckAccessRequest{Card: 101, DoorId: door}))
		if err != nil || got.Msg.GetGranted() || got.Msg.GetReason() != accessv1.Reason_REASON_NO_GROUP {
			t.Fatalf("card 101: %v %v", got, err)
		}
	})
	t.Run("ListPeoplePaged", func(t *testing.T) {
		var seen []string
		token := ""
		for {
			page, err := api.ListPeople(ctx, connect.NewRequest(&edgev1.ListPeopleRequest{PageSize: 2, PageToken: token}))
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range page.Msg.GetPeople() {
				seen = append(seen, p.GetId())
			}
			if token = page.Msg.GetNextPageToken(); token == "" {
				break
			}
		}
		if len(seen) != 5 {
			t.Fatalf("paged through %d people, want 5", len(seen))
		}
	})
	t.Run("ListCards", func(t *testing.T) {
		page, err := api.ListCards(ctx, connect.NewRequest(&edgev1.ListCardsRequest{PageSize: 3}))
		if err != nil || len(page.Msg.GetCards()) != 3 || page.Msg.GetNextPageToken() != "102" {
			t.Fatalf("cards page: %v %v", page, err)
		}
		_, err = api.ListCards(ctx, connect.NewRequest(&edgev1.ListCardsRequest{PageToken: "x"}))
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Fatalf("malformed token: %v", err)
		}
	})
	t.Run("ErrUnauthenticated", func(t *testing.T) {
		for _, c := range []edgev1connect.SiteServiceClient{
			edgev1connect.NewSiteServiceClient(http.DefaultClient, nodes[0].URL()),
			edgev1connect.NewSiteServiceClient(http.DefaultClient, nodes[0].URL(), bearer("wrong")),
		} {
			_, err := c.Apply(ctx, connect.NewRequest(&edgev1.ApplyRequest{Commands: cmds[:1]}))
			if connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("err = %v, want unauthenticated", err)
			}
		}
	})
	t.Run("ErrRecordEventsRefused", func(t *testing.T) {
		_, err := api.Apply(ctx, connect.NewRequest(&edgev1.ApplyRequest{Commands: []*raftv1.Command{
			{Op: &raftv1.Command_RecordEvents{RecordEvents: &raftv1.RecordEvents{Events: []*accessv1.AccessEvent{{Card: 1}}}}},
		}}))
		if connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Fatalf("err = %v, want permission denied", err)
		}
	})
	t.Run("ErrEmptyAndStamped", func(t *testing.T) {
		_, err := api.Apply(ctx, connect.NewRequest(&edgev1.ApplyRequest{}))
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Fatalf("empty: %v", err)
		}
		_, err = api.Apply(ctx, connect.NewRequest(&edgev1.ApplyRequest{Commands: []*raftv1.Command{
			{Stamp: &accessv1.Stamp{WallUnixNano: 1}, Op: cmds[0].GetOp()},
		}}))
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Fatalf("stamped: %v", err)
		}
	})
	t.Run("ListEvents", func(t *testing.T) {
		evs := []*accessv1.AccessEvent{{DoorId: door, Card: 100, Granted: true, Reason: accessv1.Reason_REASON_GRANTED, AtMs: time.Now().UnixMilli()}}
		if _, err := nodes[0].Propose(ctx, &raftv1.Command{Op: &raftv1.Command_RecordEvents{RecordEvents: &raftv1.RecordEvents{Events: evs}}}); err != nil {
			t.Fatal(err)
		}
		got, err := api.ListEvents(ctx, connect.NewRequest(&edgev1.ListEventsRequest{}))
		if err != nil || len(got.Msg.GetEvents()) != 1 || got.Msg.GetEvents()[0].GetSeq() != 1 || got.Msg.GetLastSeq() != 1 {
			t.Fatalf("events: %v %v", got, err)
		}
		got, err = api.ListEvents(ctx, connect.NewRequest(&edgev1.ListEventsRequest{AfterSeq: 1}))
		if err != nil || len(got.Msg.GetEvents()) != 0 {
			t.Fatalf("events after 1: %v %v", got, err)
		}
	})
}

func TestMetrics(t *testing.T) {
	nodes := MustOpenSite(t, 1)
	res, err := http.Get(nodes[0].URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	for _, want := range []string{"gatehouse_edge_applied_index", "gatehouse_edge_is_leader 1", "gatehouse_edge_commit_seconds_bucket", "go_goroutines"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

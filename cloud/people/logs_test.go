package people_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/people"
	peoplev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1"
)

// eventsFunc is an Events made of a function: the seam where the hub's
// event log will plug in.
type eventsFunc func(ctx context.Context, q people.EventQuery) ([]access.Event, error)

func (f eventsFunc) AccessEvents(ctx context.Context, q people.EventQuery) ([]access.Event, error) {
	return f(ctx, q)
}

// memEvents answers queries over a fixed list, newest first.
func memEvents(evs []access.Event) people.Events {
	return eventsFunc(func(_ context.Context, q people.EventQuery) ([]access.Event, error) {
		var out []access.Event
		for _, e := range slices.Backward(evs) {
			switch {
			case q.Site != "" && e.Site != q.Site, q.Door != "" && e.Door != q.Door, q.Holder != "" && e.Holder != q.Holder,
				!q.From.IsZero() && e.At.Before(q.From), !q.Until.IsZero() && !e.At.Before(q.Until),
				!q.Before.IsZero() && !e.At.Before(q.Before):
				continue
			}
			out = append(out, e)
			if q.Limit > 0 && len(out) == q.Limit {
				break
			}
		}
		return out, nil
	})
}

func TestAccessLogs(t *testing.T) {
	var evs []access.Event
	src := &evs
	e := MustOpenEnv(t, eventsFunc(func(ctx context.Context, q people.EventQuery) ([]access.Event, error) {
		return memEvents(*src).AccessEvents(ctx, q)
	}))
	admin := e.as(keyAdmin)
	ann := admin.mustCreate(t, &peoplev1.CreatePersonRequest{Name: "Ann", Kind: occupierUser, OccupierId: string(occA), Cards: []*peoplev1.CardSpec{{Number: 123456}}})
	bea := admin.mustCreate(t, &peoplev1.CreatePersonRequest{Name: "Bea", Kind: occupierUser, OccupierId: string(occB), Cards: []*peoplev1.CardSpec{{Number: 7}}})
	t0 := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	for i := range 10 {
		ev := access.Event{Site: siteA, Origin: string(siteA), Seq: uint64(i + 1), At: t0.Add(time.Duration(i) * time.Minute), Door: doorA1,
			Card: 123456, Holder: access.ID(ann.GetId()), Result: access.Result{Grant: true}}
		switch {
		case i%3 == 1:
			ev.Card, ev.Holder, ev.Door = 7, access.ID(bea.GetId()), doorA2
		case i == 9:
			ev.Card, ev.Holder, ev.Result = 999999, "", access.Result{}
		}
		evs = append(evs, ev)
	}

	res, err := admin.people.ListAccessLogs(ctx, connect.NewRequest(&peoplev1.ListAccessLogsRequest{PageSize: 4}))
	if err != nil || !res.Msg.GetSourceAvailable() || len(res.Msg.GetLogs()) != 4 || res.Msg.GetNextPageToken() == "" {
		t.Fatalf("first page: %v %v", res, err)
	}
	if got := res.Msg.GetLogs()[0]; got.GetSeq() != 10 || got.GetCardMasked() != "**9999" {
		t.Fatalf("newest first, masked: %v", got)
	}
	var all []uint64
	tok := ""
	for {
		r, err := admin.people.ListAccessLogs(ctx, connect.NewRequest(&peoplev1.ListAccessLogsRequest{PageSize: 4, PageToken: tok}))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range r.Msg.GetLogs() {
			all = append(all, l.GetSeq())
		}
		if tok = r.Msg.GetNextPageToken(); tok == "" {
			break
		}
	}
	if want := []uint64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}; !slices.Equal(all, want) {
		t.Fatalf("pages: %v", all)
	}
	r, err := admin.people.ListAccessLogs(ctx, connect.NewRequest(&peoplev1.ListAccessLogsRequest{PersonId: bea.GetId(),
		FromMs: t0.Add(2 * time.Minute).UnixMilli(), UntilMs: t0.Add(8 * time.Minute).UnixMilli()}))
	if err != nil || len(r.Msg.GetLogs()) != 2 || r.Msg.GetLogs()[0].GetPersonName() != "Bea" {
		t.Fatalf("Bea's logs in the window: %v %v", r, err)
	}
	// Occupier admin A sees only Ann's.
	a := e.as(keyOccA)
	r, err = a.people.ListAccessLogs(ctx, connect.NewRequest(&peoplev1.ListAccessLogsRequest{}))
	if err != nil || len(r.Msg.GetLogs()) != 6 {
		t.Fatalf("A's logs: %d %v", len(r.Msg.GetLogs()), err)
	}
	_, err = a.people.ListAccessLogs(ctx, connect.NewRequest(&peoplev1.ListAccessLogsRequest{PersonId: bea.GetId()}))
	wantCode(t, err, connect.CodePermissionDenied)

	u, err := admin.people.ListUnknownCards(ctx, connect.NewRequest(&peoplev1.ListUnknownCardsRequest{}))
	if err != nil || len(u.Msg.GetTaps()) != 1 || u.Msg.GetTaps()[0].GetNumber() != 999999 {
		t.Fatalf("unknown cards: %v %v", u, err)
	}
}

// Without an event source the answers say so.
func TestAccessLogsWithoutSource(t *testing.T) {
	e := MustOpenEnv(t, nil)
	res, err := e.as(keySec).people.ListAccessLogs(ctx, connect.NewRequest(&peoplev1.ListAccessLogsRequest{}))
	if err != nil || res.Msg.GetSourceAvailable() || len(res.Msg.GetLogs()) != 0 {
		t.Fatalf("%v %v", res, err)
	}
}

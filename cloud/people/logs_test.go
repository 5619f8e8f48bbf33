package people_test

import (
	"bytes"
	"encoding/csv"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	peoplev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1"
	"github.com/gatehouse/gatehouse/replication"
)

// siteEvents commits events of site to the hub's state as its sync
// session would (the events lane of the site's origin), numbered after
// what the hub holds.
func siteEvents(tb testing.TB, state *hubstate.State, site access.ID, recs ...replication.EventRecord) {
	tb.Helper()
	src := replication.Source{Origin: string(site), Lane: replication.LaneEvents}
	next := state.SyncVector()[src] + 1
	ds := make([]replication.Delta, len(recs))
	for i, r := range recs {
		d, err := replication.EventDelta(string(site), next+uint64(i), r)
		if err != nil {
			tb.Fatal(err)
		}
		ds[i] = d
	}
	if err := state.Apply(ctx, src, ds, nil); err != nil {
		tb.Fatal(err)
	}
}

// logPages pages through ListAccessLogs and returns the (site, seq) keys.
func logPages(tb testing.TB, c clients, req *peoplev1.ListAccessLogsRequest) []*peoplev1.AccessLog {
	tb.Helper()
	var out []*peoplev1.AccessLog
	for {
		r, err := c.people.ListAccessLogs(ctx, connect.NewRequest(req))
		if err != nil {
			tb.Fatal(err)
		}
		if !r.Msg.GetSourceAvailable() {
			tb.Fatal("source_available false")
		}
		out = append(out, r.Msg.GetLogs()...)
		if req.PageToken = r.Msg.GetNextPageToken(); req.PageToken == "" {
			return out
		}
	}
}

func seqs(ls []*peoplev1.AccessLog) []uint64 {
	out := make([]uint64, len(ls))
	for i, l := range ls {
		out[i] = l.GetSeq()
	}
	return out
}

// TestAccessLogs: the logs answer from the events replicated to the hub,
// newest first, paged, filtered, card numbers masked, in the caller's
// scope, as CSV too; bad requests are refused.
func TestAccessLogs(t *testing.T) {
	e := MustOpenEnv(t, nil)
	admin := e.as(keyAdmin)
	ann := admin.mustCreate(t, &peoplev1.CreatePersonRequest{Name: "Ann", Kind: occupierUser, OccupierId: string(occA), Cards: []*peoplev1.CardSpec{{Number: 123456}}})
	bea := admin.mustCreate(t, &peoplev1.CreatePersonRequest{Name: "=Bea", Kind: occupierUser, OccupierId: string(occB), Cards: []*peoplev1.CardSpec{{Number: 7}}})
	t0 := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	var recs []replication.EventRecord
	for i := range 10 {
		r := replication.EventRecord{At: t0.Add(time.Duration(i) * time.Minute), Door: doorA1, Card: 123456,
			Holder: access.ID(ann.GetId()), Granted: true, Reason: access.ReasonGranted, RequestID: "r", Node: "n1"}
		switch {
		case i%3 == 1:
			r.Card, r.Holder, r.Door, r.Granted, r.Reason = 7, access.ID(bea.GetId()), doorA2, false, access.ReasonNoGroup
		case i == 9:
			r.Card, r.Holder, r.Granted, r.Reason = 999999, "", false, access.ReasonUnknownCard
		}
		recs = append(recs, r)
	}
	siteEvents(t, e.state, siteA, recs...)
	// Site B's event at the same time as A's newest: ordered by site.
	siteEvents(t, e.state, siteB, replication.EventRecord{At: t0.Add(9 * time.Minute), Door: doorB1, Card: 123456,
		Holder: access.ID(ann.GetId()), Granted: true, Reason: access.ReasonGranted, Offline: true})

	res, err := admin.people.ListAccessLogs(ctx, connect.NewRequest(&peoplev1.ListAccessLogsRequest{PageSize: 4}))
	if err != nil || !res.Msg.GetSourceAvailable() || len(res.Msg.GetLogs()) != 4 || res.Msg.GetNextPageToken() == "" {
		t.Fatalf("first page: %v %v", res, err)
	}
	if got := res.Msg.GetLogs()[0]; got.GetSiteId() != string(siteB) || !got.GetOffline() || got.GetCardMasked() != "**3456" {
		t.Fatalf("newest first (site B's tie wins), masked: %v", got)
	}
	if got := res.Msg.GetLogs()[1]; got.GetSeq() != 10 || got.GetCardMasked() != "**9999" || got.GetReason() != "unknown_card" {
		t.Fatalf("second: %v", got)
	}
	all := logPages(t, admin, &peoplev1.ListAccessLogsRequest{PageSize: 3})
	if want := []uint64{1, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1}; !slices.Equal(seqs(all), want) {
		t.Fatalf("pages: %v", seqs(all))
	}
	r := logPages(t, admin, &peoplev1.ListAccessLogsRequest{PersonId: bea.GetId(),
		FromMs: t0.Add(2 * time.Minute).UnixMilli(), UntilMs: t0.Add(8 * time.Minute).UnixMilli()})
	if len(r) != 2 || r[0].GetPersonName() != "=Bea" || r[0].GetSeq() != 8 {
		t.Fatalf("Bea's logs in the window: %v", r)
	}
	if r := logPages(t, admin, &peoplev1.ListAccessLogsRequest{Result: peoplev1.AccessResult_ACCESS_RESULT_DENIED, SiteId: string(siteA)}); len(r) != 4 {
		t.Fatalf("denied at A: %v", seqs(r))
	}
	if r := logPages(t, admin, &peoplev1.ListAccessLogsRequest{DoorId: string(doorB1), Result: peoplev1.AccessResult_ACCESS_RESULT_GRANTED}); len(r) != 1 {
		t.Fatalf("granted at B1: %v", seqs(r))
	}
	// Occupier admin A sees only Ann's; B's person is out of A's scope.
	a := e.as(keyOccA)
	if r := logPages(t, a, &peoplev1.ListAccessLogsRequest{PageSize: 2}); len(r) != 7 {
		t.Fatalf("A's logs: %d", len(r))
	}
	_, err = a.people.ListAccessLogs(ctx, connect.NewRequest(&peoplev1.ListAccessLogsRequest{PersonId: bea.GetId()}))
	wantCode(t, err, connect.CodePermissionDenied)
	_, err = e.as(keyHost).people.ListAccessLogs(ctx, connect.NewRequest(&peoplev1.ListAccessLogsRequest{}))
	wantCode(t, err, connect.CodePermissionDenied)

	// Bad input: a clear error.
	for name, req := range map[string]*peoplev1.ListAccessLogsRequest{
		"ErrPageSize":    {PageSize: 5000},
		"ErrPageToken":   {PageToken: "not a token"},
		"ErrPersonID":    {PersonId: "ann"},
		"ErrUntilBefore": {FromMs: 2000, UntilMs: 1000},
		"ErrResult":      {Result: 9},
	} {
		_, err := admin.people.ListAccessLogs(ctx, connect.NewRequest(req))
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("%s: %v", name, err)
		}
	}

	// CSV export: what the pages show, in the caller's scope.
	export := func(c clients, req *peoplev1.ExportAccessLogsRequest) [][]string {
		t.Helper()
		stream, err := c.people.ExportAccessLogs(ctx, connect.NewRequest(req))
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		for stream.Receive() {
			buf.Write(stream.Msg().GetChunk())
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		rows, err := csv.NewReader(&buf).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		return rows
	}
	rows := export(admin, &peoplev1.ExportAccessLogsRequest{Filter: &peoplev1.ListAccessLogsRequest{SiteId: string(siteA)}})
	if len(rows) != 11 || rows[0][0] != "time" || rows[1][2] != "10" || rows[1][5] != "**9999" || rows[1][8] != "denied" {
		t.Fatalf("export: %v", rows)
	}
	if rows[3][7] != "'=Bea" {
		t.Fatalf("a name read as a formula: %q", rows[3][7])
	}
	if rows := export(a, &peoplev1.ExportAccessLogsRequest{Limit: 3}); len(rows) != 4 {
		t.Fatalf("A's export limited to 3: %v", rows)
	}
	stream, err := admin.people.ExportAccessLogs(ctx, connect.NewRequest(&peoplev1.ExportAccessLogsRequest{Limit: -1}))
	if err == nil {
		for stream.Receive() {
		}
		err = stream.Err()
	}
	wantCode(t, err, connect.CodeInvalidArgument)
}

// TestUnknownCards: a tap of a card no site knows shows at the hub with
// its full number for admin and security, and leaves the list once the
// number is assigned through the card API.
func TestUnknownCards(t *testing.T) {
	e := MustOpenEnv(t, nil)
	admin := e.as(keyAdmin)
	t0 := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	siteEvents(t, e.state, siteA,
		replication.EventRecord{At: t0, Door: doorA1, Card: 5550001, Reason: access.ReasonUnknownCard},
		replication.EventRecord{At: t0.Add(time.Minute), Door: doorA2, Card: 5550001, Reason: access.ReasonUnknownCard},
		replication.EventRecord{At: t0.Add(2 * time.Minute), Door: doorA1, Card: 31337, Reason: access.ReasonUnknownCard})
	siteEvents(t, e.state, siteB, replication.EventRecord{At: t0.Add(3 * time.Minute), Door: doorB1, Card: 42, Reason: access.ReasonUnknownCard})

	u, err := e.as(keySec).people.ListUnknownCards(ctx, connect.NewRequest(&peoplev1.ListUnknownCardsRequest{SiteId: string(siteA)}))
	if err != nil || len(u.Msg.GetTaps()) != 2 {
		t.Fatalf("unknown cards at A: %v %v", u, err)
	}
	tap := u.Msg.GetTaps()[1]
	if tap.GetNumber() != 5550001 || tap.GetCount() != 2 || tap.GetDoorId() != string(doorA2) ||
		tap.GetFirstSeenMs() != t0.UnixMilli() || tap.GetAtMs() != t0.Add(time.Minute).UnixMilli() || tap.GetNumberMasked() != "***0001" {
		t.Fatalf("tap %v", tap)
	}
	for _, key := range []string{keyOccA, keyHost} {
		_, err := e.as(key).people.ListUnknownCards(ctx, connect.NewRequest(&peoplev1.ListUnknownCardsRequest{}))
		wantCode(t, err, connect.CodePermissionDenied)
	}
	_, err = admin.people.ListUnknownCards(ctx, connect.NewRequest(&peoplev1.ListUnknownCardsRequest{Limit: 501}))
	wantCode(t, err, connect.CodeInvalidArgument)

	// Assign it: it leaves the list.
	p := admin.mustCreate(t, &peoplev1.CreatePersonRequest{Name: "Cy", Kind: occupierUser, OccupierId: string(occA)})
	if _, err := admin.people.AssignCard(ctx, connect.NewRequest(&peoplev1.AssignCardRequest{PersonId: p.GetId(),
		Card: &peoplev1.CardSpec{Number: tap.GetNumber()}})); err != nil {
		t.Fatal(err)
	}
	u, err = admin.people.ListUnknownCards(ctx, connect.NewRequest(&peoplev1.ListUnknownCardsRequest{}))
	if err != nil || len(u.Msg.GetTaps()) != 2 || u.Msg.GetTaps()[0].GetNumber() != 42 || u.Msg.GetTaps()[1].GetNumber() != 31337 {
		t.Fatalf("after assigning: %v %v", u, err)
	}
}

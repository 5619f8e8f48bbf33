package hub

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/cloud/auth"

	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	consolev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/console/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/console/v1/consolev1connect"
	edgev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1/edgev1connect"
)

// siteStub is a site's SiteService at the transport seam: an event log the
// test appends to, guarded by the site's API token.
type siteStub struct {
	edgev1connect.UnimplementedSiteServiceHandler
	token string

	mu     sync.Mutex
	events []*accessv1.AccessEvent
	calls  int
}

func (s *siteStub) add(n int, granted bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		seq := uint64(len(s.events) + 1)
		s.events = append(s.events, &accessv1.AccessEvent{
			Origin: "site", Seq: seq, AtMs: int64(seq), DoorId: "door-1", Card: 12345678, Granted: granted,
			Reason: accessv1.Reason_REASON_GRANTED, Node: "n1",
		})
	}
}

func (s *siteStub) ListEvents(_ context.Context, req *connect.Request[edgev1.ListEventsRequest]) (*connect.Response[edgev1.ListEventsResponse], error) {
	if req.Header().Get("Authorization") != "Bearer "+s.token {
		return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("bad token"))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	after, limit := req.Msg.GetAfterSeq(), int(req.Msg.GetLimit())
	var out []*accessv1.AccessEvent
	for _, e := range s.events {
		if e.GetSeq() > after && len(out) < limit {
			out = append(out, e)
		}
	}
	return connect.NewResponse(&edgev1.ListEventsResponse{Events: out, LastSeq: uint64(len(s.events))}), nil
}

func startSiteStub(t *testing.T, token string) (*siteStub, string) {
	t.Helper()
	s := &siteStub{token: token}
	mux := http.NewServeMux()
	mux.Handle(edgev1connect.NewSiteServiceHandler(s))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return s, srv.URL
}

func openFeedHub(t *testing.T, sites ...SiteEndpoint) consolev1connect.ConsoleServiceClient {
	t.Helper()
	cfg := DefaultConfig()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Sites = sites
	cfg.EventPoll = Duration(5 * time.Millisecond)
	cfg.APIKeys = []auth.Key{{ID: "sec", SHA256: auth.HashKey(keySecurity), Role: auth.Security}}
	h := New(cfg, testLogger(t))
	if err := h.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return consolev1connect.NewConsoleServiceClient(http.DefaultClient, "http://"+h.Addr(), connect.WithInterceptors(auth.Bearer(keySecurity)))
}

// awaitDecisions polls the console API until cond holds for an answer.
func awaitDecisions(t *testing.T, c consolev1connect.ConsoleServiceClient, req *consolev1.ListDecisionsRequest, cond func(*consolev1.ListDecisionsResponse) bool) *consolev1.ListDecisionsResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var last *consolev1.ListDecisionsResponse
	for {
		res, err := c.ListDecisions(ctx, connect.NewRequest(req))
		if err != nil {
			t.Fatal(err)
		}
		if last = res.Msg; cond(last) {
			return last
		}
		select {
		case <-ctx.Done():
			t.Fatalf("condition never held; last answer %v", last)
		case <-tick.C:
		}
	}
}

func TestDecisionFeedTailsSites(t *testing.T) {
	a, urlA := startSiteStub(t, "tok-a")
	b, urlB := startSiteStub(t, "tok-b")
	a.add(3, true)
	c := openFeedHub(t,
		SiteEndpoint{ID: "A", Name: "Site A", Nodes: []string{"http://127.0.0.1:1", urlA}, APIToken: "tok-a"}, // first node unreachable
		SiteEndpoint{ID: "B", Name: "Site B", Nodes: []string{urlB}, APIToken: "tok-b"},
	)
	res := awaitDecisions(t, c, &consolev1.ListDecisionsRequest{}, func(r *consolev1.ListDecisionsResponse) bool { return len(r.Decisions) == 3 })
	for i, d := range res.Decisions {
		if d.GetSiteId() != "A" || d.GetSiteName() != "Site A" || d.GetSeq() != uint64(i+1) {
			t.Errorf("decision %d = %v, want site A seq %d", i, d, i+1)
		}
		if d.GetCardMasked() != "****5678" {
			t.Errorf("card shown as %q, want it masked", d.GetCardMasked())
		}
	}
	cursor := res.GetCursor()

	b.add(2, false)
	a.add(1, true)
	res = awaitDecisions(t, c, &consolev1.ListDecisionsRequest{AfterCursor: cursor}, func(r *consolev1.ListDecisionsResponse) bool { return len(r.Decisions) == 3 })
	if res.GetTruncated() {
		t.Error("truncated without reason")
	}
	onlyB := awaitDecisions(t, c, &consolev1.ListDecisionsRequest{SiteId: "B"}, func(r *consolev1.ListDecisionsResponse) bool { return len(r.Decisions) == 2 })
	for _, d := range onlyB.Decisions {
		if d.GetSiteId() != "B" || d.GetGranted() {
			t.Errorf("site filter let through %v", d)
		}
	}
	limited := awaitDecisions(t, c, &consolev1.ListDecisionsRequest{Limit: 2}, func(*consolev1.ListDecisionsResponse) bool { return true })
	if len(limited.Decisions) != 2 || !limited.GetTruncated() || limited.Decisions[1].GetCursor() != limited.GetCursor() {
		t.Errorf("limit 2 gave %v; want the 2 newest, truncated", limited)
	}
}

func TestDecisionFeedStartsFromTheNewest(t *testing.T) {
	s, u := startSiteStub(t, "tok")
	s.add(feedWindow+500, true)
	c := openFeedHub(t, SiteEndpoint{ID: "A", Nodes: []string{u}, APIToken: "tok"})
	res := awaitDecisions(t, c, &consolev1.ListDecisionsRequest{Limit: 1}, func(r *consolev1.ListDecisionsResponse) bool {
		return len(r.Decisions) == 1 && r.Decisions[0].GetSeq() == feedWindow+500
	})
	if res.GetCursor() != feedWindow {
		t.Errorf("hub took %d decisions, want only the newest %d", res.GetCursor(), feedWindow)
	}
}

func TestDecisionFeedBadRequests(t *testing.T) {
	_, u := startSiteStub(t, "right")
	c := openFeedHub(t, SiteEndpoint{ID: "A", Nodes: []string{u}, APIToken: "wrong"})
	ctx := context.Background()
	for _, tc := range []struct {
		req  *consolev1.ListDecisionsRequest
		code connect.Code
	}{
		{&consolev1.ListDecisionsRequest{Limit: -1}, connect.CodeInvalidArgument},
		{&consolev1.ListDecisionsRequest{Limit: maxDecisionLimit + 1}, connect.CodeInvalidArgument},
		{&consolev1.ListDecisionsRequest{SiteId: "nowhere"}, connect.CodeNotFound},
	} {
		_, err := c.ListDecisions(ctx, connect.NewRequest(tc.req))
		if connect.CodeOf(err) != tc.code {
			t.Errorf("ListDecisions(%v) = %v, want %v", tc.req, err, tc.code)
		}
	}
	res, err := c.ListDecisions(ctx, connect.NewRequest(&consolev1.ListDecisionsRequest{}))
	if err != nil || len(res.Msg.Decisions) != 0 {
		t.Errorf("a site refusing the hub's token still gave decisions: %v, %v", res, err)
	}
}

func TestFeedWindowTruncates(t *testing.T) {
	var f feed
	batch := func(n int) []*consolev1.Decision {
		out := make([]*consolev1.Decision, n)
		for i := range out {
			out[i] = &consolev1.Decision{SiteId: "A"}
		}
		return out
	}
	f.add(batch(10))
	res := f.list("", 0, 100)
	if len(res.Decisions) != 10 || res.Truncated || res.Cursor != 10 {
		t.Fatalf("after 10: %d decisions, truncated %v, cursor %d", len(res.Decisions), res.Truncated, res.Cursor)
	}
	f.add(batch(feedWindow))
	if n := len(f.ring); n != feedWindow {
		t.Fatalf("ring holds %d, want the window %d", n, feedWindow)
	}
	res = f.list("", 5, maxDecisionLimit)
	if !res.Truncated {
		t.Error("a reader behind the window was not told it missed decisions")
	}
	if got := res.Decisions[len(res.Decisions)-1].GetCursor(); got != 10+feedWindow {
		t.Errorf("newest cursor %d, want %d", got, 10+feedWindow)
	}
	if res = f.list("", 10+feedWindow, 10); len(res.Decisions) != 0 || res.Truncated {
		t.Errorf("a reader up to date got %d decisions, truncated %v", len(res.Decisions), res.Truncated)
	}
}

package hub

import (
	"context"
	"errors"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	consolev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/console/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/console/v1/consolev1connect"
	edgev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1/edgev1connect"
)

// The decision feed keeps the most recent door decisions of every site in
// memory for the console. It tails each site's event log through the site's
// local API (SiteService.ListEvents on any reachable node). This is the
// console's live view only: the durable, merged record of every site's
// events at the hub comes with replication (docs/replication.md), which
// will feed the same ring.
const (
	// feedWindow is how many decisions the hub keeps for the console.
	feedWindow = 2000
	// defaultDecisionLimit and maxDecisionLimit bound one ListDecisions answer.
	defaultDecisionLimit = 50
	maxDecisionLimit     = 500
	// tailPage is how many events one ListEvents call asks for.
	tailPage = 1000
)

// feed is a bounded ring of decisions with increasing cursors.
type feed struct {
	mu   sync.Mutex
	ring []*consolev1.Decision // oldest first, at most feedWindow
	last uint64                // cursor of the newest decision
}

// add appends decisions, assigning cursors, and drops the oldest beyond the window.
func (f *feed) add(ds []*consolev1.Decision) {
	if len(ds) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range ds {
		f.last++
		d.Cursor = f.last
		f.ring = append(f.ring, d)
	}
	if over := len(f.ring) - feedWindow; over > 0 {
		f.ring = append(f.ring[:0:0], f.ring[over:]...)
	}
}

// list returns up to limit decisions of site (all sites when empty) with a
// cursor above after, the newest ones when there are more.
func (f *feed) list(site string, after uint64, limit int) *consolev1.ListDecisionsResponse {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &consolev1.ListDecisionsResponse{Cursor: f.last}
	var picked []*consolev1.Decision
	for i := len(f.ring) - 1; i >= 0; i-- {
		d := f.ring[i]
		if d.GetCursor() <= after {
			break
		}
		if site != "" && d.GetSiteId() != site {
			continue
		}
		if len(picked) == limit {
			resp.Truncated = true
			break
		}
		picked = append(picked, d)
	}
	if !resp.Truncated && after > 0 && len(f.ring) > 0 && f.ring[0].GetCursor() > after+1 {
		resp.Truncated = true // the window moved past after
	}
	resp.Decisions = make([]*consolev1.Decision, len(picked))
	for i, d := range picked {
		resp.Decisions[len(picked)-1-i] = d
	}
	return resp
}

// consoleService implements ConsoleService.
type consoleService struct{ hub *Hub }

var _ consolev1connect.ConsoleServiceHandler = (*consoleService)(nil)

func (s *consoleService) ListDecisions(ctx context.Context, req *connect.Request[consolev1.ListDecisionsRequest]) (*connect.Response[consolev1.ListDecisionsResponse], error) {
	if _, err := s.hub.authorizeConsole(ctx, req.Header()); err != nil {
		return nil, err
	}
	m := req.Msg
	limit := int(m.GetLimit())
	switch {
	case limit < 0:
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("limit must not be negative"))
	case limit == 0:
		limit = defaultDecisionLimit
	case limit > maxDecisionLimit:
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("limit must be at most 500"))
	}
	if site := m.GetSiteId(); site != "" && !s.hub.knowsSite(site) {
		return nil, connect.NewError(connect.CodeNotFound, errors.New("unknown site "+site))
	}
	return connect.NewResponse(s.hub.feed.list(m.GetSiteId(), m.GetAfterCursor(), limit)), nil
}

func (h *Hub) knowsSite(id string) bool {
	for _, s := range h.cfg.Sites {
		if s.ID == id {
			return true
		}
	}
	return false
}

// tailSite follows one site's event log until ctx ends, starting from the
// newest feedWindow events. A node that fails is skipped for the next.
func (h *Hub) tailSite(ctx context.Context, site SiteEndpoint) {
	log := h.log.With("site", site.ID)
	clients := make([]edgev1connect.SiteServiceClient, len(site.Nodes))
	for i, u := range site.Nodes {
		clients[i] = edgev1connect.NewSiteServiceClient(probeClient, u, connect.WithInterceptors(bearer(site.APIToken)))
	}
	var (
		after   uint64
		started bool
		node    int
		failing bool
	)
	tick := time.NewTicker(time.Duration(h.cfg.EventPoll))
	defer tick.Stop()
	for {
		for {
			events, last, err := h.listEvents(ctx, clients[node], after, started)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				if !failing {
					log.Warn("cannot read the site's events", "node", site.Nodes[node], "err", err)
				}
				failing = true
				node = (node + 1) % len(clients)
				break
			}
			if failing {
				log.Info("reading the site's events again", "node", site.Nodes[node])
				failing = false
			}
			if !started {
				started = true
				after = last - min(last, feedWindow)
				continue
			}
			h.feed.add(decisionsOf(site, events))
			if n := len(events); n > 0 {
				after = events[n-1].GetSeq()
			}
			if len(events) < tailPage {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// listEvents reads one page of events after seq; before the first page it
// only asks for the site's last sequence number.
func (h *Hub) listEvents(ctx context.Context, c edgev1connect.SiteServiceClient, after uint64, started bool) ([]*accessv1.AccessEvent, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(h.cfg.ProbeTimeout))
	defer cancel()
	limit := int32(tailPage)
	if !started {
		limit = 1
	}
	res, err := c.ListEvents(ctx, connect.NewRequest(&edgev1.ListEventsRequest{AfterSeq: after, Limit: limit}))
	if err != nil {
		return nil, 0, err
	}
	return res.Msg.GetEvents(), res.Msg.GetLastSeq(), nil
}

func decisionsOf(site SiteEndpoint, events []*accessv1.AccessEvent) []*consolev1.Decision {
	out := make([]*consolev1.Decision, 0, len(events))
	for _, e := range events {
		out = append(out, &consolev1.Decision{
			SiteId:     site.ID,
			SiteName:   site.Name,
			Seq:        e.GetSeq(),
			AtMs:       e.GetAtMs(),
			DoorId:     e.GetDoorId(),
			CardMasked: access.CardNumber(e.GetCard()).Redacted(),
			HolderId:   e.GetHolderId(),
			Granted:    e.GetGranted(),
			Reason:     e.GetReason(),
			Node:       e.GetNode(),
		})
	}
	return out
}

// bearer adds the site API token to every call.
func bearer(token string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if token != "" {
				req.Header().Set("Authorization", "Bearer "+token)
			}
			return next(ctx, req)
		}
	}
}

package hub

import (
	"context"
	"errors"
	"slices"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	consolev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/console/v1"
	"github.com/gatehouse/gatehouse/replication"
)

// ListPendingRevocations serves the revocations pending at each sync site
// (hubstate.State.PendingRevocations; docs/sync.md "Pending revocations").
// The caller must present an API key of role admin or security. A site
// that is not one of the hub's sync_sites is NotFound; a hub without a
// store (which replicates nothing) answers FailedPrecondition.
func (s *consoleService) ListPendingRevocations(ctx context.Context, req *connect.Request[consolev1.ListPendingRevocationsRequest]) (*connect.Response[consolev1.ListPendingRevocationsResponse], error) {
	ctx, err := s.hub.authorizeConsole(ctx, req.Header())
	if err != nil {
		return nil, err
	}
	m := req.Msg
	limit := int(m.GetLimit())
	if limit < 0 || limit > hubstate.MaxPendingLimit {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("limit must be in 0..1000 (0: 100)"))
	}
	state := s.hub.state
	if state == nil {
		return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("this hub has no store: it replicates with no site, so nothing is pending"))
	}
	var sites []string
	for _, ss := range s.hub.cfg.SyncSites {
		sites = append(sites, ss.ID)
	}
	slices.Sort(sites)
	if want := m.GetSiteId(); want != "" {
		if !slices.Contains(sites, want) {
			return nil, connect.NewError(connect.CodeNotFound, errors.New("site "+want+" does not replicate with this hub (it is not in sync_sites)"))
		}
		sites = []string{want}
	}
	now := time.Now()
	resp := &consolev1.ListPendingRevocationsResponse{}
	for _, site := range sites {
		sp, err := state.PendingRevocations(ctx, site, limit, now)
		if err != nil {
			s.hub.log.Warn("listing pending revocations failed", "site", site, "err", err)
			return nil, pendingError(err)
		}
		out := &consolev1.SitePendingRevocations{SiteId: site, SiteName: sp.Name, PendingCount: int32(sp.Total)}
		if !sp.AckedAt.IsZero() {
			out.LastAckMs = sp.AckedAt.UnixMilli()
		}
		if s.hub.sync != nil {
			if out.Connected, err = s.hub.sync.Live(ctx, site); err != nil {
				s.hub.log.Warn("reading a site's stream lease failed", "site", site, "err", err)
				return nil, connect.NewError(connect.CodeUnavailable, err)
			}
		}
		for _, it := range sp.Items {
			out.Revocations = append(out.Revocations, pendingToProto(it))
		}
		resp.Sites = append(resp.Sites, out)
	}
	return connect.NewResponse(resp), nil
}

// pendingToProto converts one pending revocation; a card's number is
// shown masked only.
func pendingToProto(it hubstate.PendingRevocation) *consolev1.PendingRevocation {
	id := it.EntityID
	if it.Kind == replication.KindCard {
		id = it.CardMasked
	}
	return &consolev1.PendingRevocation{
		Origin: it.Source.Origin, Lane: it.Source.Lane.String(), Seq: it.Seq,
		Kind: it.Kind.String(), EntityId: id, What: it.What,
		PersonId: string(it.PersonID), PersonName: it.PersonName, CardMasked: it.CardMasked,
		GroupId: string(it.GroupID), GroupName: it.GroupName, VisitId: string(it.VisitID),
		MadeMs: it.Made.UnixMilli(), Stamp: it.Stamp.String(), PendingMs: it.For.Milliseconds(),
		Unresolved: it.Unresolved,
	}
}

// pendingError maps an error of PendingRevocations to a Connect error by
// its access code.
func pendingError(err error) error {
	code := connect.CodeInternal
	switch access.ErrorCode(err) {
	case access.Invalid:
		code = connect.CodeInvalidArgument
	case access.NotFound:
		code = connect.CodeNotFound
	case access.Unavailable:
		code = connect.CodeUnavailable
	}
	return connect.NewError(code, err)
}

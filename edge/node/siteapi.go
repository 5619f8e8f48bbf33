package node

import (
	"cmp"
	"context"
	"crypto/subtle"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/dgraph-io/badger/v4"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/edge/sitestate"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	edgev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1/edgev1connect"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

// siteService implements the site's local API (SiteService).
type siteService struct{ n *Node }

var _ edgev1connect.SiteServiceHandler = (*siteService)(nil)

// apiAuth refuses calls that do not carry the site's API token.
func apiAuth(token string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			got, ok := strings.CutPrefix(req.Header().Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
				return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("a valid site API token is required"))
			}
			return next(ctx, req)
		}
	}
}

// connectError maps a domain error to its Connect code (STYLE.md: one
// table per transport).
func connectError(err error) error {
	var code connect.Code
	switch access.ErrorCode(err) {
	case access.Invalid:
		code = connect.CodeInvalidArgument
	case access.NotFound:
		code = connect.CodeNotFound
	case access.Conflict:
		code = connect.CodeAborted
	case access.Denied:
		code = connect.CodePermissionDenied
	case access.Unavailable:
		code = connect.CodeUnavailable
	default:
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			code = connect.CodeDeadlineExceeded
		} else {
			code = connect.CodeUnavailable
		}
	}
	return connect.NewError(code, err)
}

// Apply commits commands. Events are facts recorded by devices, so the API
// refuses RecordEvents.
func (s *siteService) Apply(ctx context.Context, req *connect.Request[edgev1.ApplyRequest]) (*connect.Response[edgev1.ApplyResponse], error) {
	cmds := req.Msg.GetCommands()
	if len(cmds) == 0 {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("apply: no commands"))
	}
	for i, c := range cmds {
		if c.GetOp() == nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("apply: command "+strconv.Itoa(i)+" has no operation"))
		}
		if _, ok := c.GetOp().(*raftv1.Command_RecordEvents); ok {
			return nil, connect.NewError(connect.CodePermissionDenied, errors.New("apply: access events are recorded by devices, not through the API"))
		}
		if c.Stamp != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("apply: stamps are assigned by the site's leader"))
		}
	}
	res, err := s.n.ProposeResults(ctx, cmds...)
	if err != nil {
		return nil, connectError(err)
	}
	return connect.NewResponse(&edgev1.ApplyResponse{Results: res}), nil
}

// CheckAccess answers what this node would decide now.
func (s *siteService) CheckAccess(_ context.Context, req *connect.Request[edgev1.CheckAccessRequest]) (*connect.Response[edgev1.CheckAccessResponse], error) {
	door := access.ID(req.Msg.GetDoorId())
	if _, err := access.ParseID(string(door)); err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	if req.Msg.GetCard() == 0 {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("check access: card number is required"))
	}
	d, mode := s.n.decide(access.CardNumber(req.Msg.GetCard()), door, time.Now())
	return connect.NewResponse(&edgev1.CheckAccessResponse{
		Granted: d.Grant, Reason: accessv1.Reason(d.Reason), Mode: mode.String(), Node: s.n.cfg.NodeID,
	}), nil
}

func pageSize(n int32) int {
	switch {
	case n <= 0:
		return 100
	case n > 1000:
		return 1000
	}
	return int(n)
}

// ListPeople pages through the site's people by ID.
func (s *siteService) ListPeople(_ context.Context, req *connect.Request[edgev1.ListPeopleRequest]) (*connect.Response[edgev1.ListPeopleResponse], error) {
	size, after := pageSize(req.Msg.GetPageSize()), access.ID(req.Msg.GetPageToken())
	var page []access.Person
	s.n.machine.View(func(st *access.State) {
		for p := range st.People() {
			if p.ID > after {
				page = append(page, p)
			}
		}
	})
	slices.SortFunc(page, func(a, b access.Person) int { return cmp.Compare(a.ID, b.ID) })
	resp := &edgev1.ListPeopleResponse{}
	if len(page) > size {
		page = page[:size]
		resp.NextPageToken = string(page[size-1].ID)
	}
	for _, p := range page {
		resp.People = append(resp.People, sitestate.PersonToProto(p))
	}
	return connect.NewResponse(resp), nil
}

// ListCards pages through the site's cards by number.
func (s *siteService) ListCards(_ context.Context, req *connect.Request[edgev1.ListCardsRequest]) (*connect.Response[edgev1.ListCardsResponse], error) {
	size := pageSize(req.Msg.GetPageSize())
	var after uint64
	if t := req.Msg.GetPageToken(); t != "" {
		v, err := strconv.ParseUint(t, 10, 64)
		if err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("list cards: malformed page token"))
		}
		after = v
	}
	var page []access.Card
	s.n.machine.View(func(st *access.State) {
		for c := range st.Cards() {
			if uint64(c.Number) > after {
				page = append(page, c)
			}
		}
	})
	slices.SortFunc(page, func(a, b access.Card) int { return cmp.Compare(a.Number, b.Number) })
	resp := &edgev1.ListCardsResponse{}
	if len(page) > size {
		page = page[:size]
		resp.NextPageToken = strconv.FormatUint(uint64(page[size-1].Number), 10)
	}
	for _, c := range page {
		resp.Cards = append(resp.Cards, sitestate.CardToProto(c))
	}
	return connect.NewResponse(resp), nil
}

// ListEvents returns events after a sequence number from this node's log.
func (s *siteService) ListEvents(_ context.Context, req *connect.Request[edgev1.ListEventsRequest]) (*connect.Response[edgev1.ListEventsResponse], error) {
	limit := pageSize(req.Msg.GetLimit())
	var evs []*accessv1.AccessEvent
	err := s.n.raft.View(func(txn *badger.Txn) error {
		var err error
		evs, err = sitestate.ReadEvents(txn, req.Msg.GetAfterSeq(), limit)
		return err
	})
	if err != nil {
		return nil, connectError(err)
	}
	return connect.NewResponse(&edgev1.ListEventsResponse{Events: evs, LastSeq: s.n.machine.LastSeq()}), nil
}

package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/edge/raftnode"
	"github.com/gatehouse/gatehouse/edge/uplink"
	"github.com/gatehouse/gatehouse/edge/visitdesk"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	edgev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

// VisitsConfig configures the site's visitor desk (docs/edge.md "Visitors
// at the site"): kiosks, card dispensers, checkout and the end of visits.
type VisitsConfig struct {
	// CardRange is the site's visitor card range, "FROM-TO" (inclusive),
	// e.g. "900000-900999". Required.
	CardRange string `json:"card_range"`
	// EarlyArrival is how long before a visit's window a guest may check
	// in, e.g. "15m" (default 15m; "0s" is the default too, "-1s" none).
	EarlyArrival string `json:"early_arrival"`
	// Dispensers pairs kiosks with dispensers: kiosk device ID to
	// dispenser device ID. A kiosk not listed uses the online dispenser of
	// the lowest ID connected to the same node.
	Dispensers map[string]string `json:"dispensers"`
	// Refresh is how often the hub's token keys and the site's watchlist
	// are fetched (default 5m).
	Refresh string `json:"refresh"`
	// Sweep is how often visits past their window are ended (default 30s).
	Sweep string `json:"sweep"`
}

// desk returns the visitdesk config of c (without the node's parts).
func (c *VisitsConfig) desk() (visitdesk.Config, error) {
	var dc visitdesk.Config
	var err error
	if dc.CardFrom, dc.CardTo, err = visitdesk.ParseCardRange(c.CardRange); err != nil {
		return dc, fmt.Errorf("edge config: visits: %w", err)
	}
	for _, f := range []struct {
		name, v string
		to      *time.Duration
	}{{"early_arrival", c.EarlyArrival, &dc.EarlyArrival}, {"refresh", c.Refresh, &dc.Refresh}, {"sweep", c.Sweep, &dc.Sweep}} {
		if f.v == "" {
			continue
		}
		if *f.to, err = time.ParseDuration(f.v); err != nil {
			return dc, fmt.Errorf("edge config: visits: %s %q: want a duration such as 15m", f.name, f.v)
		}
	}
	for k, d := range c.Dispensers {
		if dc.Dispensers == nil {
			dc.Dispensers = map[access.ID]access.ID{}
		}
		if !mqttproto.ValidName(k) || !mqttproto.ValidName(d) {
			return dc, fmt.Errorf("edge config: visits: dispensers: %q -> %q: want device IDs", k, d)
		}
		dc.Dispensers[access.ID(k)] = access.ID(d)
	}
	return dc, nil
}

// openDesk starts the visitor desk when configured; the gateway is open.
func (n *Node) openDesk() error {
	c := n.cfg.Visits
	if c == nil {
		return nil
	}
	dc, err := c.desk()
	if err != nil {
		return err
	}
	dc.SiteID, dc.NodeID = access.ID(n.cfg.SiteID), n.cfg.NodeID
	dc.Dir = filepath.Join(n.cfg.DataDir, "visitdesk")
	dc.Leader = func() bool { return n.raft.Status().State == raftnode.StateLeader }
	if u := n.cfg.Uplink; u != nil {
		dc.HubURL, dc.Token, dc.TLS = u.HubURL, u.Token, n.cfg.UplinkTLS
		if u.TLSDir != "" && dc.TLS == nil {
			tc, tok, err := uplink.LoadTLS(u.TLSDir)
			if err != nil {
				return fmt.Errorf("edge: visits: %w", err)
			}
			dc.TLS = tc
			if dc.Token == "" {
				dc.Token = tok
			}
		}
	}
	if n.cfg.TuneVisits != nil {
		n.cfg.TuneVisits(&dc)
	}
	d, err := visitdesk.New(dc, deskSite{n}, n.base.With("node", n.cfg.NodeID, "site", n.cfg.SiteID))
	if err != nil {
		return err
	}
	n.desk = d
	d.Open()
	if err := n.gateway.HookVisitorDevices(d); err != nil {
		if errors.Is(err, mqttproto.ErrBadTopic) {
			return err
		}
		n.log.Warn("kiosks and dispensers are not served by this node", "err", err)
	}
	return nil
}

// Desk returns the node's visitor desk (nil without Config.Visits).
func (n *Node) Desk() *visitdesk.Desk { return n.desk }

// deskDetail returns the desk's status line ("" without one).
func (n *Node) deskDetail() string {
	if n.desk == nil {
		return ""
	}
	return n.desk.Status().Detail()
}

// deskSite is the node as its visitor desk sees it.
type deskSite struct{ n *Node }

var _ visitdesk.Site = deskSite{}

func (s deskSite) View(fn func(st *access.State)) { s.n.machine.View(fn) }

func (s deskSite) Propose(ctx context.Context, cmd *raftv1.Command) (*edgev1.CommandResult, error) {
	res, err := s.n.ProposeResults(ctx, cmd)
	if err != nil {
		return nil, err
	}
	if err := s.n.raft.WaitApplied(ctx, res[0].GetIndex()); err != nil {
		return nil, err
	}
	return res[0], nil
}

func (s deskSite) Publish(ctx context.Context, d mqttproto.Device, payload []byte) error {
	return s.n.gateway.PublishCmd(ctx, d, payload)
}

// ConfirmPickup moves a checked-in visit to picked_up.
func (s *siteService) ConfirmPickup(ctx context.Context, req *connect.Request[edgev1.ConfirmPickupRequest]) (*connect.Response[edgev1.ConfirmPickupResponse], error) {
	id := access.ID(req.Msg.GetVisitId())
	if _, err := access.ParseID(string(id)); err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("confirm pickup: visit: %w", err))
	}
	var v access.Visit
	var ok bool
	s.n.machine.View(func(st *access.State) { v, ok = st.Visit(id) })
	switch {
	case !ok || string(v.SiteID) != s.n.cfg.SiteID:
		return nil, connectError(access.Errorf(access.NotFound, "confirm pickup: visit %s is not known at this site", id))
	case v.State == access.VisitPickedUp && req.Msg.GetRequestId() == "":
		// Already picked up: the same answer.
	case v.State != access.VisitCheckedIn && v.State != access.VisitPickedUp:
		return nil, connectError(access.Errorf(access.Conflict, "confirm pickup: visit %s is %s, not checked in", id, v.State))
	default:
		if len(req.Msg.GetRequestId()) > 128 {
			return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("confirm pickup: request id longer than 128 bytes"))
		}
		res, err := s.n.Propose(ctx, &raftv1.Command{Actor: "edge/api", RequestId: req.Msg.GetRequestId(),
			Op: &raftv1.Command_AdvanceVisit{AdvanceVisit: &raftv1.AdvanceVisit{VisitId: string(id), State: accessv1.VisitState_VISIT_STATE_PICKED_UP}}})
		if err != nil {
			return nil, connectError(resultErr(res, err))
		}
		if err := s.n.raft.WaitApplied(ctx, res[0].GetIndex()); err != nil {
			return nil, connectError(err)
		}
	}
	var out *edgev1.OnSiteVisit
	s.n.machine.View(func(st *access.State) {
		v, _ := st.Visit(id)
		out = onSite(st, v)
	})
	return connect.NewResponse(&edgev1.ConfirmPickupResponse{Visit: out}), nil
}

// resultErr returns the domain error of a refused command as an
// access.Error (so its code maps), else err.
func resultErr(res []*edgev1.CommandResult, err error) error {
	for _, r := range res {
		if r.GetErrorCode() != "" {
			return &access.Error{Code: access.Code(r.GetErrorCode()), Msg: r.GetError()}
		}
	}
	return err
}

// CheckOutVisit checks a guest out by visit or card.
func (s *siteService) CheckOutVisit(ctx context.Context, req *connect.Request[edgev1.CheckOutVisitRequest]) (*connect.Response[edgev1.CheckOutVisitResponse], error) {
	id, card := access.ID(req.Msg.GetVisitId()), access.CardNumber(req.Msg.GetCard())
	switch {
	case (id == "") == (card == 0):
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("check out: give exactly one of visit_id and card"))
	case id != "":
		if _, err := access.ParseID(string(id)); err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("check out: visit: %w", err))
		}
	}
	if len(req.Msg.GetRequestId()) > 128 {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("check out: request id longer than 128 bytes"))
	}
	var cards []string
	vid := id
	s.n.machine.View(func(st *access.State) {
		if card != 0 {
			if c, ok := st.CardByNumber(card); ok {
				vid = c.VisitID
			}
		}
		for c := range st.Cards() {
			if vid != "" && c.VisitID == vid {
				cards = append(cards, c.Number.Redacted())
			}
		}
	})
	op := &raftv1.CheckOutVisit{VisitId: string(id), CardNumber: uint64(card), State: accessv1.VisitState_VISIT_STATE_CHECKED_OUT}
	res, err := s.n.Propose(ctx, &raftv1.Command{Actor: "edge/api", RequestId: req.Msg.GetRequestId(), Op: &raftv1.Command_CheckOutVisit{CheckOutVisit: op}})
	if err != nil {
		return nil, connectError(resultErr(res, err))
	}
	if err := s.n.raft.WaitApplied(ctx, res[0].GetIndex()); err != nil {
		return nil, connectError(err)
	}
	return connect.NewResponse(&edgev1.CheckOutVisitResponse{VisitId: string(vid), CardsMasked: cards}), nil
}

// ListOnSite lists the visits checked in or picked up at this site.
func (s *siteService) ListOnSite(_ context.Context, _ *connect.Request[edgev1.ListOnSiteRequest]) (*connect.Response[edgev1.ListOnSiteResponse], error) {
	resp := &edgev1.ListOnSiteResponse{}
	s.n.machine.View(func(st *access.State) {
		for v := range st.Visits() {
			if string(v.SiteID) == s.n.cfg.SiteID && (v.State == access.VisitCheckedIn || v.State == access.VisitPickedUp) {
				resp.Visits = append(resp.Visits, onSite(st, v))
			}
		}
	})
	slices.SortFunc(resp.Visits, func(a, b *edgev1.OnSiteVisit) int {
		return cmp.Or(cmp.Compare(a.GetCheckedInMs(), b.GetCheckedInMs()), strings.Compare(a.GetVisitId(), b.GetVisitId()))
	})
	return connect.NewResponse(resp), nil
}

// onSite describes visit v from st.
func onSite(st *access.State, v access.Visit) *edgev1.OnSiteVisit {
	o := &edgev1.OnSiteVisit{VisitId: string(v.ID), HostId: string(v.HostID), State: v.State.String(), Escort: v.Escort,
		UntilMs: v.Until.UnixMilli()}
	if p, ok := st.Person(v.VisitorID); ok {
		o.VisitorName = p.Name
	}
	if p, ok := st.Person(v.HostID); ok {
		o.HostName = p.Name
	}
	for c := range st.Cards() {
		if c.VisitID == v.ID {
			o.CardMasked = c.Number.Redacted()
			if !c.ValidFrom.IsZero() {
				o.CheckedInMs = c.ValidFrom.UnixMilli()
			}
		}
	}
	return o
}

package people

import (
	"context"
	"encoding/base64"
	"strconv"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/auth"
	peoplev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1"
)

// ListAccessLogs returns access decisions, newest first, from cfg.Events.
// The hub holds no durable event log yet, so without Events the answer is
// empty with source_available false. An occupier admin sees only the
// decisions on their own people's cards.
func (s *Service) ListAccessLogs(ctx context.Context, req *connect.Request[peoplev1.ListAccessLogsRequest]) (*connect.Response[peoplev1.ListAccessLogsResponse], error) {
	caller, err := auth.Require(ctx, managers...)
	if err != nil {
		return nil, err
	}
	m := req.Msg
	q := EventQuery{From: msTime(m.GetFromMs()), Until: msTime(m.GetUntilMs())}
	for _, a := range []struct {
		name, v string
		to      *access.ID
	}{{"person_id", m.GetPersonId(), &q.Holder}, {"door_id", m.GetDoorId(), &q.Door}, {"site_id", m.GetSiteId(), &q.Site}} {
		if a.v != "" {
			if *a.to, err = parseID(a.name, a.v); err != nil {
				return nil, err
			}
		}
	}
	size := int(m.GetPageSize())
	switch {
	case size < 0 || size > 1000:
		return nil, invalid("page_size must be 0 to 1000")
	case size == 0:
		size = 100
	}
	if tok := m.GetPageToken(); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		ns, err2 := strconv.ParseInt(string(b), 10, 64)
		if err != nil || err2 != nil {
			return nil, invalid("page_token malformed")
		}
		q.Before = time.Unix(0, ns)
	}
	v := s.index.current()
	if q.Holder != "" {
		if e := v.byID[q.Holder]; e != nil {
			if err := auth.ScopeOccupier(ctx, e.p.OccupierID); err != nil {
				return nil, err
			}
		} else if caller.Role == auth.OccupierAdmin {
			return nil, notFound("person %s not found", q.Holder)
		}
	}
	res := &peoplev1.ListAccessLogsResponse{}
	if s.cfg.Events == nil {
		return connect.NewResponse(res), nil
	}
	res.SourceAvailable = true
	q.Limit = size + 1
	if caller.Role == auth.OccupierAdmin {
		q.Limit = 0 // filtered below: read until the page is full
	}
	evs, err := s.cfg.Events.AccessEvents(ctx, q)
	if err != nil {
		return nil, connectErr(err)
	}
	var lastAt time.Time
	for _, ev := range evs {
		e := v.byID[ev.Holder]
		if caller.Role == auth.OccupierAdmin && (e == nil || !auth.InScope(ctx, e.p.OccupierID)) {
			continue
		}
		if len(res.Logs) == size {
			res.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(lastAt.UnixNano(), 10)))
			break
		}
		l := &peoplev1.AccessLog{SiteId: string(ev.Site), Origin: ev.Origin, Seq: ev.Seq, AtMs: ev.At.UnixMilli(), DoorId: string(ev.Door),
			CardMasked: ev.Card.Redacted(), PersonId: string(ev.Holder), Granted: ev.Result.Grant, Reason: ev.Result.Reason.String()}
		if e != nil {
			l.PersonName = e.p.Name
		}
		res.Logs = append(res.Logs, l)
		lastAt = ev.At
	}
	return connect.NewResponse(res), nil
}

// ListUnknownCards returns the latest tap of each card number nobody
// holds, newest first. Admin and security only: the numbers are shown in
// full so they can be assigned.
func (s *Service) ListUnknownCards(ctx context.Context, req *connect.Request[peoplev1.ListUnknownCardsRequest]) (*connect.Response[peoplev1.ListUnknownCardsResponse], error) {
	if _, err := auth.Require(ctx, auth.Admin, auth.Security); err != nil {
		return nil, err
	}
	m := req.Msg
	q := EventQuery{From: msTime(m.GetSinceMs())}
	var err error
	if m.GetSiteId() != "" {
		if q.Site, err = parseID("site_id", m.GetSiteId()); err != nil {
			return nil, err
		}
	}
	limit := int(m.GetLimit())
	switch {
	case limit < 0 || limit > 500:
		return nil, invalid("limit must be 0 to 500")
	case limit == 0:
		limit = 50
	}
	res := &peoplev1.ListUnknownCardsResponse{}
	if s.cfg.Events == nil {
		return connect.NewResponse(res), nil
	}
	res.SourceAvailable = true
	evs, err := s.cfg.Events.AccessEvents(ctx, q)
	if err != nil {
		return nil, connectErr(err)
	}
	v := s.index.current()
	seen := map[access.CardNumber]bool{}
	for _, ev := range evs {
		if ev.Holder != "" || ev.Card == 0 || seen[ev.Card] || v.byCard[ev.Card] != nil {
			continue
		}
		seen[ev.Card] = true
		res.Taps = append(res.Taps, &peoplev1.UnknownCardTap{SiteId: string(ev.Site), DoorId: string(ev.Door), AtMs: ev.At.UnixMilli(),
			Number: uint64(ev.Card), NumberMasked: ev.Card.Redacted()})
		if len(res.Taps) == limit {
			break
		}
	}
	return connect.NewResponse(res), nil
}

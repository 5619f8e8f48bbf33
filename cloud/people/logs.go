package people

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/csv"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/auth"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	peoplev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1"
)

// Access logs and unknown cards come from the access events the sites
// replicate to the hub (their events lanes), which the hub's state indexes
// in memory (hubstate.QueryEvents, hubstate.UnknownCards). Config.Events
// is not used for them.

// Limits of the access-log calls.
const (
	// defaultLogPage and maxLogPage bound a ListAccessLogs page.
	defaultLogPage, maxLogPage = 100, 1000
	// maxLogExport is the most rows one ExportAccessLogs streams.
	maxLogExport = 1_000_000
	// exportPage is how many events an export reads at a time.
	exportPage = 2000
)

// logQuery turns the filters of a log request into an event query in the
// caller's scope: an occupier admin sees only the events of their own
// occupier's people, and asking for another's person fails with
// PermissionDenied (NotFound for a person unknown to them).
func (s *Service) logQuery(ctx context.Context, caller auth.Principal, m *peoplev1.ListAccessLogsRequest) (hubstate.EventQuery, error) {
	q := hubstate.EventQuery{From: msTime(m.GetFromMs()), Until: msTime(m.GetUntilMs())}
	if !q.From.IsZero() && !q.Until.IsZero() && q.Until.Before(q.From) {
		return q, invalid("until_ms is before from_ms")
	}
	var err error
	for _, a := range []struct {
		name, v string
		to      *access.ID
	}{{"person_id", m.GetPersonId(), &q.Holder}, {"door_id", m.GetDoorId(), &q.Door}, {"site_id", m.GetSiteId(), &q.Site}} {
		if a.v != "" {
			if *a.to, err = parseID(a.name, a.v); err != nil {
				return q, err
			}
		}
	}
	switch m.GetResult() {
	case peoplev1.AccessResult_ACCESS_RESULT_UNSPECIFIED:
	case peoplev1.AccessResult_ACCESS_RESULT_GRANTED:
		q.Result = hubstate.OnlyGranted
	case peoplev1.AccessResult_ACCESS_RESULT_DENIED:
		q.Result = hubstate.OnlyDenied
	default:
		return q, invalid("result %d unknown", m.GetResult())
	}
	v := s.index.current()
	if q.Holder != "" {
		if e := v.byID[q.Holder]; e != nil {
			if err := auth.ScopeOccupier(ctx, e.p.OccupierID); err != nil {
				return q, err
			}
		} else if caller.Role == auth.OccupierAdmin {
			return q, notFound("person %s not found", q.Holder)
		}
	}
	if caller.Role == auth.OccupierAdmin {
		q.Holders = func(h access.ID) bool {
			e := v.byID[h]
			return e != nil && auth.InScope(ctx, e.p.OccupierID)
		}
	}
	return q, nil
}

// encodeLogToken and decodeLogToken make the opaque page token: the key
// of the last event of a page, "unix_ns.site.seq".
func encodeLogToken(k hubstate.EventKey) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(k.At.UnixNano(), 10) + "." + string(k.Site) + "." +
		strconv.FormatUint(k.Seq, 10)))
}

func decodeLogToken(tok string) (hubstate.EventKey, error) {
	bad := invalid("page_token malformed")
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return hubstate.EventKey{}, bad
	}
	parts := strings.Split(string(b), ".")
	if len(parts) != 3 {
		return hubstate.EventKey{}, bad
	}
	ns, err1 := strconv.ParseInt(parts[0], 10, 64)
	seq, err2 := strconv.ParseUint(parts[2], 10, 64)
	site, err3 := access.ParseID(parts[1])
	if err1 != nil || err2 != nil || err3 != nil || string(site) != parts[1] || seq == 0 {
		return hubstate.EventKey{}, bad
	}
	return hubstate.EventKey{At: time.Unix(0, ns).UTC(), Site: site, Seq: seq}, nil
}

// accessLog is the API form of an event; the card number is masked.
func accessLog(ev hubstate.Event, v *view) *peoplev1.AccessLog {
	l := &peoplev1.AccessLog{SiteId: string(ev.Site), Origin: string(ev.Site), Seq: ev.Seq, AtMs: ev.At.UnixMilli(),
		DoorId: string(ev.Door), PersonId: string(ev.Holder), Granted: ev.Granted, DeviceId: string(ev.Device),
		Offline: ev.Offline, RequestId: ev.RequestID, Node: ev.Node, Type: ev.Type}
	if ev.Card != 0 {
		l.CardMasked = ev.Card.Redacted()
	}
	if ev.Reason != 0 {
		l.Reason = ev.Reason.String()
	}
	if e := v.byID[ev.Holder]; e != nil && ev.Holder != "" {
		l.PersonName = e.p.Name
	}
	return l
}

// ListAccessLogs returns access decisions of every site, newest first (by
// tap time, then site, then the site's sequence), filtered by person,
// door, site, time range and result, a page at a time, card numbers
// masked. An occupier admin sees only the decisions on their own people's
// cards.
func (s *Service) ListAccessLogs(ctx context.Context, req *connect.Request[peoplev1.ListAccessLogsRequest]) (*connect.Response[peoplev1.ListAccessLogsResponse], error) {
	caller, err := auth.Require(ctx, managers...)
	if err != nil {
		return nil, err
	}
	m := req.Msg
	size := int(m.GetPageSize())
	switch {
	case size < 0 || size > maxLogPage:
		return nil, invalid("page_size must be 0 to %d", maxLogPage)
	case size == 0:
		size = defaultLogPage
	}
	q, err := s.logQuery(ctx, caller, m)
	if err != nil {
		return nil, err
	}
	if tok := m.GetPageToken(); tok != "" {
		if q.Before, err = decodeLogToken(tok); err != nil {
			return nil, err
		}
	}
	q.Limit = size
	evs, more := s.state.QueryEvents(q)
	v := s.index.current()
	res := &peoplev1.ListAccessLogsResponse{SourceAvailable: true, Logs: make([]*peoplev1.AccessLog, len(evs))}
	for i, ev := range evs {
		res.Logs[i] = accessLog(ev, v)
	}
	if more {
		last := evs[len(evs)-1]
		res.NextPageToken = encodeLogToken(hubstate.EventKey{At: last.At, Site: last.Site, Seq: last.Seq})
	}
	return connect.NewResponse(res), nil
}

// logColumns is the header of an access-log export.
var logColumns = []string{"time", "site_id", "seq", "door_id", "device_id", "card", "person_id", "person_name",
	"result", "reason", "offline", "request_id", "node", "type"}

// ExportAccessLogs streams as CSV (header logColumns, RFC 3339 UTC times,
// masked card numbers) the decisions ListAccessLogs would page through
// with the same filters and scope, newest first, in chunks of 64 KiB.
func (s *Service) ExportAccessLogs(ctx context.Context, req *connect.Request[peoplev1.ExportAccessLogsRequest], stream *connect.ServerStream[peoplev1.ExportAccessLogsResponse]) error {
	caller, err := auth.Require(ctx, managers...)
	if err != nil {
		return err
	}
	limit := int(req.Msg.GetLimit())
	switch {
	case limit < 0 || limit > maxLogExport:
		return invalid("limit must be 0 to %d", maxLogExport)
	case limit == 0:
		limit = maxLogExport
	}
	q, err := s.logQuery(ctx, caller, req.Msg.GetFilter())
	if err != nil {
		return err
	}
	cw := &chunkWriter{send: func(b []byte) error {
		return stream.Send(&peoplev1.ExportAccessLogsResponse{Chunk: bytes.Clone(b)})
	}}
	w := csv.NewWriter(cw)
	if err := w.Write(logColumns); err != nil {
		return connectErr(err)
	}
	v := s.index.current()
	for n := 0; n < limit; {
		if err := ctx.Err(); err != nil {
			return connectErr(err)
		}
		q.Limit = min(exportPage, limit-n)
		evs, more := s.state.QueryEvents(q)
		for _, ev := range evs {
			l := accessLog(ev, v)
			result := "denied"
			if l.GetGranted() {
				result = "granted"
			}
			row := []string{ev.At.Format(time.RFC3339Nano), l.GetSiteId(), strconv.FormatUint(l.GetSeq(), 10), l.GetDoorId(),
				l.GetDeviceId(), l.GetCardMasked(), l.GetPersonId(), csvText(l.GetPersonName()), result, l.GetReason(),
				strconv.FormatBool(l.GetOffline()), csvText(l.GetRequestId()), csvText(l.GetNode()), csvText(l.GetType())}
			if err := w.Write(row); err != nil {
				return connectErr(err)
			}
		}
		n += len(evs)
		if !more {
			break
		}
		last := evs[len(evs)-1]
		q.Before = hubstate.EventKey{At: last.At, Site: last.Site, Seq: last.Seq}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return connectErr(err)
	}
	return connectErr(cw.flush())
}

// csvText keeps a spreadsheet from reading text as a formula.
func csvText(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// ListUnknownCards returns the card numbers tapped at a site that did not
// know them and that nobody holds now, the latest tapped first, each with
// its first and last tap and count. Admin and security only: the numbers
// are shown in full so they can be assigned (AssignCard), which takes them
// off the list.
func (s *Service) ListUnknownCards(ctx context.Context, req *connect.Request[peoplev1.ListUnknownCardsRequest]) (*connect.Response[peoplev1.ListUnknownCardsResponse], error) {
	if _, err := auth.Require(ctx, auth.Admin, auth.Security); err != nil {
		return nil, err
	}
	m := req.Msg
	var site access.ID
	var err error
	if m.GetSiteId() != "" {
		if site, err = parseID("site_id", m.GetSiteId()); err != nil {
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
	res := &peoplev1.ListUnknownCardsResponse{SourceAvailable: true}
	for _, u := range s.state.UnknownCards(site, msTime(m.GetSinceMs())) {
		if len(res.Taps) == limit {
			break
		}
		res.Taps = append(res.Taps, &peoplev1.UnknownCardTap{SiteId: string(u.Site), DoorId: string(u.Door), AtMs: u.Last.UnixMilli(),
			Number: uint64(u.Card), NumberMasked: u.Card.Redacted(), FirstSeenMs: u.First.UnixMilli(), Count: int32(min(u.Count, 1<<31-1))})
	}
	return connect.NewResponse(res), nil
}

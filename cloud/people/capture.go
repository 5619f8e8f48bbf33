package people

import (
	"context"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/auth"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	peoplev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1"
	"github.com/gatehouse/gatehouse/replication"
)

// Card capture at an enrolment reader (docs/cardholders.md "Capture a
// card"): CaptureCard waits for the first tap at a door that reaches the
// hub in the site's events lane after the call started.

// captureWaiting holds, per *Service, a func() that tests set
// (export_test.go): it is called once a CaptureCard has taken what the hub
// holds as "before the call".
var captureWaiting sync.Map

// Limits of CaptureCard.
const (
	// DefaultCaptureTimeout and MaxCaptureTimeout bound how long
	// CaptureCard waits for a tap.
	DefaultCaptureTimeout = 60 * time.Second
	MaxCaptureTimeout     = 5 * time.Minute
	// CaptureSkew is how much earlier than the call's start (by the hub's
	// clock) a tap's time may be and still count, for a site clock
	// slightly behind the hub's.
	CaptureSkew = 2 * time.Second
)

// CaptureCard waits for the first card tapped at a door of a site after the
// call started and returns its full number, its format, and whether
// someone holds it (and who, when the caller may see that person). A tap
// counts when the hub received it after the call started and its time is
// no earlier than the start less CaptureSkew, so a tap made before the call
// and delivered late is not taken. Admin, security and occupier admins;
// it writes nothing. Without a tap within the timeout it fails with
// DeadlineExceeded.
func (s *Service) CaptureCard(ctx context.Context, req *connect.Request[peoplev1.CaptureCardRequest]) (*connect.Response[peoplev1.CaptureCardResponse], error) {
	if _, err := auth.Require(ctx, managers...); err != nil {
		return nil, err
	}
	m := req.Msg
	if m.GetSiteId() == "" || m.GetDoorId() == "" {
		return nil, invalid("site_id and door_id are required")
	}
	site, err := parseID("site_id", m.GetSiteId())
	if err != nil {
		return nil, err
	}
	door, err := parseID("door_id", m.GetDoorId())
	if err != nil {
		return nil, err
	}
	var device access.ID
	if m.GetDeviceId() != "" {
		if device, err = parseID("device_id", m.GetDeviceId()); err != nil {
			return nil, err
		}
	}
	timeout := time.Duration(m.GetTimeoutMs()) * time.Millisecond
	switch {
	case m.GetTimeoutMs() < 0 || timeout > MaxCaptureTimeout:
		return nil, invalid("timeout_ms must be 0 to %d", MaxCaptureTimeout.Milliseconds())
	case timeout == 0:
		timeout = DefaultCaptureTimeout
	}
	v := s.index.current()
	if !v.sites[site] {
		return nil, notFound("site %s not found", site)
	}
	if d, ok := v.doors[door]; !ok || d.SiteID != site {
		return nil, notFound("door %s not found at site %s", door, site)
	}

	// What the hub holds of the site's events now is "before the call".
	start := s.now()
	head := s.state.SyncVector()[replication.Source{Origin: string(site), Lane: replication.LaneEvents}]
	wait, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	q := hubstate.EventQuery{Site: site, Door: door, From: start.Add(-CaptureSkew)}
	s.log.Info("card capture waiting", "site", site, "door", door, "timeout", timeout)
	if f, ok := captureWaiting.Load(s); ok {
		f.(func())()
	}
	for {
		added := s.state.EventsAdded()
		if ev, ok := s.firstTap(q, head, device); ok {
			s.log.Info("card captured", "site", site, "door", door, "card", ev.Card.Redacted())
			return connect.NewResponse(s.captured(ctx, ev)), nil
		}
		select {
		case <-added:
		case <-wait.Done():
			if err := ctx.Err(); err != nil {
				return nil, connectErr(err)
			}
			return nil, connect.NewError(connect.CodeDeadlineExceeded,
				access.Errorf(access.Unavailable, "no card tapped at door %s of site %s within %s", door, site, timeout))
		}
	}
}

// firstTap returns the earliest tap of a card matching q (and device, when
// set) among the events the hub received after its vector of the site's
// events was head.
func (s *Service) firstTap(q hubstate.EventQuery, head uint64, device access.ID) (hubstate.Event, bool) {
	var first hubstate.Event
	found := false
	for {
		q.Limit = hubstate.MaxEventPage
		evs, more := s.state.QueryEvents(q)
		for _, ev := range evs { // newest first: the last match is the earliest
			if ev.Seq > head && ev.Card != 0 && (device == "" || ev.Device == device) {
				first, found = ev, true
			}
		}
		if !more {
			return first, found
		}
		last := evs[len(evs)-1]
		q.Before = hubstate.EventKey{At: last.At, Site: last.Site, Seq: last.Seq}
	}
}

// captured is the answer for the tap ev: the holder shown only when in the
// caller's scope.
func (s *Service) captured(ctx context.Context, ev hubstate.Event) *peoplev1.CaptureCardResponse {
	c := cardProto(access.Card{Number: ev.Card})
	res := &peoplev1.CaptureCardResponse{Number: uint64(ev.Card), NumberMasked: c.GetNumberMasked(), AtMs: ev.At.UnixMilli(),
		SiteId: string(ev.Site), DoorId: string(ev.Door), DeviceId: string(ev.Device), Format: c.GetFormat(),
		Facility: c.GetFacility(), Card: c.GetCard()}
	if e := s.index.current().byCard[ev.Card]; e != nil {
		res.Bound = true
		if auth.InScope(ctx, e.p.OccupierID) {
			res.PersonId, res.PersonName = string(e.p.ID), e.p.Name
		}
	}
	return res
}

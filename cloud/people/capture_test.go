package people_test

import (
	"maps"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/people"
	peoplev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1"
	"github.com/gatehouse/gatehouse/replication"
)

// captureEnv is a test hub whose CaptureCard calls report on waiting once
// they have taken what the hub holds as "before the call".
func captureEnv(t *testing.T) (*env, chan struct{}) {
	e := MustOpenEnv(t, nil)
	waiting := make(chan struct{}, 8)
	people.SetCaptureWaiting(e.svc, func() { waiting <- struct{}{} })
	return e, waiting
}

// capture calls CaptureCard as c in the background, runs deliver once the
// call waits, and returns its answer.
func capture(t *testing.T, c clients, waiting chan struct{}, req *peoplev1.CaptureCardRequest, deliver func()) (*peoplev1.CaptureCardResponse, error) {
	t.Helper()
	type result struct {
		res *connect.Response[peoplev1.CaptureCardResponse]
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := c.people.CaptureCard(ctx, connect.NewRequest(req))
		done <- result{res, err}
	}()
	select {
	case <-waiting:
	case r := <-done:
		t.Fatalf("CaptureCard returned before waiting: %v %v", r.res, r.err)
	}
	deliver()
	r := <-done
	if r.err != nil {
		return nil, r.err
	}
	return r.res.Msg, nil
}

// TestCaptureCard: the first tap at the reader's door that reaches the hub
// after the call is captured with its full number and format; taps before
// the call, taps made before it but delivered late, and taps at other
// doors are not; the holder is shown only in the caller's scope.
func TestCaptureCard(t *testing.T) {
	e, waiting := captureEnv(t)
	admin := e.as(keyAdmin)
	ann := admin.mustCreate(t, &peoplev1.CreatePersonRequest{Name: "Ann", Kind: occupierUser, OccupierId: string(occA),
		Cards: []*peoplev1.CardSpec{h10301(12, 3456)}})
	annCard := access.CardNumber(ann.GetCards()[0].GetNumber())
	tap := func(door access.ID, card access.CardNumber, at time.Time) replication.EventRecord {
		return replication.EventRecord{At: at, Door: door, Device: tid(31), Card: card, Reason: access.ReasonUnknownCard}
	}
	// A tap already at the hub when the call starts is not captured.
	siteEvents(t, e.state, siteA, tap(doorA1, 111, time.Now()))

	req := &peoplev1.CaptureCardRequest{SiteId: string(siteA), DoorId: string(doorA1), TimeoutMs: 30_000}
	got, err := capture(t, admin, waiting, req, func() {
		now := time.Now()
		siteEvents(t, e.state, siteA, tap(doorA2, 222, now))                 // another door
		siteEvents(t, e.state, siteB, tap(doorB1, 333, now))                 // another site
		siteEvents(t, e.state, siteA, tap(doorA1, 444, now.Add(-time.Hour)), // made before the call, delivered late
			tap(doorA1, annCard, now), tap(doorA1, 555, now.Add(time.Second)))
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetNumber() != uint64(annCard) || !got.GetBound() || got.GetPersonId() != ann.GetId() || got.GetPersonName() != "Ann" ||
		got.GetFormat() != "h10301" || got.GetFacility() != 12 || got.GetCard() != 3456 || got.GetDoorId() != string(doorA1) ||
		got.GetSiteId() != string(siteA) || got.GetDeviceId() != string(tid(31)) || got.GetNumberMasked() == "" || got.GetAtMs() == 0 {
		t.Fatalf("captured %v", got)
	}

	// An unbound number: not bound, no person; a device filter.
	got, err = capture(t, e.as(keySec), waiting, &peoplev1.CaptureCardRequest{SiteId: string(siteA), DoorId: string(doorA1), DeviceId: string(tid(32))}, func() {
		other := tap(doorA1, 666, time.Now())
		siteEvents(t, e.state, siteA, tap(doorA1, 777, time.Now()), other)
		other.Device, other.Card = tid(32), 888
		siteEvents(t, e.state, siteA, other)
	})
	if err != nil || got.GetNumber() != 888 || got.GetBound() || got.GetPersonId() != "" || got.GetFormat() != "raw32" {
		t.Fatalf("captured %v %v", got, err)
	}

	// Scope: occupier B's admin learns the number is bound, not to whom;
	// occupier A's admin sees Ann.
	for key, want := range map[string]string{keyOccB: "", keyOccA: ann.GetId()} {
		got, err := capture(t, e.as(key), waiting, req, func() {
			siteEvents(t, e.state, siteA, tap(doorA1, annCard, time.Now()))
		})
		if err != nil || got.GetNumber() != uint64(annCard) || !got.GetBound() || got.GetPersonId() != want {
			t.Fatalf("%s: captured %v %v", key, got, err)
		}
	}
}

// TestCaptureCardRefused: no tap within the timeout is DeadlineExceeded;
// unknown sites and doors, malformed requests and callers without the
// role get a clear error; nothing is written.
func TestCaptureCardRefused(t *testing.T) {
	e, waiting := captureEnv(t)
	admin := e.as(keyAdmin)
	before := e.vector()
	_, err := capture(t, admin, waiting, &peoplev1.CaptureCardRequest{SiteId: string(siteA), DoorId: string(doorA1), TimeoutMs: 200}, func() {
		siteEvents(t, e.state, siteA, replication.EventRecord{At: time.Now(), Door: doorA2, Card: 9, Reason: access.ReasonUnknownCard})
	})
	wantCode(t, err, connect.CodeDeadlineExceeded)

	for name, c := range map[string]struct {
		req  *peoplev1.CaptureCardRequest
		code connect.Code
	}{
		"ErrNoSite":      {&peoplev1.CaptureCardRequest{DoorId: string(doorA1)}, connect.CodeInvalidArgument},
		"ErrNoDoor":      {&peoplev1.CaptureCardRequest{SiteId: string(siteA)}, connect.CodeInvalidArgument},
		"ErrSiteID":      {&peoplev1.CaptureCardRequest{SiteId: "a", DoorId: string(doorA1)}, connect.CodeInvalidArgument},
		"ErrDeviceID":    {&peoplev1.CaptureCardRequest{SiteId: string(siteA), DoorId: string(doorA1), DeviceId: "x"}, connect.CodeInvalidArgument},
		"ErrTimeout":     {&peoplev1.CaptureCardRequest{SiteId: string(siteA), DoorId: string(doorA1), TimeoutMs: 300_001}, connect.CodeInvalidArgument},
		"ErrNegTimeout":  {&peoplev1.CaptureCardRequest{SiteId: string(siteA), DoorId: string(doorA1), TimeoutMs: -1}, connect.CodeInvalidArgument},
		"ErrUnknownSite": {&peoplev1.CaptureCardRequest{SiteId: string(tid(3)), DoorId: string(doorA1)}, connect.CodeNotFound},
		"ErrUnknownDoor": {&peoplev1.CaptureCardRequest{SiteId: string(siteA), DoorId: string(tid(13))}, connect.CodeNotFound},
		"ErrOtherSite":   {&peoplev1.CaptureCardRequest{SiteId: string(siteA), DoorId: string(doorB1)}, connect.CodeNotFound},
	} {
		_, err := admin.people.CaptureCard(ctx, connect.NewRequest(c.req))
		if connect.CodeOf(err) != c.code {
			t.Errorf("%s: %v", name, err)
		}
	}
	_, err = e.as(keyHost).people.CaptureCard(ctx, connect.NewRequest(&peoplev1.CaptureCardRequest{SiteId: string(siteA), DoorId: string(doorA1)}))
	wantCode(t, err, connect.CodePermissionDenied)
	if after := e.vector(); !maps.Equal(before, after) {
		t.Fatalf("capture wrote: %v -> %v", before, after)
	}
}

package visits

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/auth"
	visitv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/visit/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/visit/v1/visitv1connect"
)

// Handler returns the path and handler of the Connect VisitService. Pass
// the hub's authentication interceptor (cloud/auth.Keyring.Interceptor) in
// opts: every method calls auth.Require for its roles.
func (s *Service) Handler(opts ...connect.HandlerOption) (string, http.Handler) {
	return visitv1connect.NewVisitServiceHandler(rpc{s}, opts...)
}

// Who may do what.
var (
	hostRoles     = []auth.Role{auth.Host, auth.Security, auth.Admin}
	securityRoles = []auth.Role{auth.Security, auth.Admin}
	adminRoles    = []auth.Role{auth.Admin}
)

// rpc implements VisitServiceHandler over the service.
type rpc struct{ s *Service }

// connectErr maps a domain error to a Connect error (one table for the
// transport): invalid → InvalidArgument, not_found → NotFound, conflict →
// FailedPrecondition (AlreadyExists for a reused idempotency key), denied
// → PermissionDenied, unavailable → Unavailable, anything else Internal.
func connectErr(err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return err
	}
	code := connect.CodeInternal
	switch access.ErrorCode(err) {
	case access.Invalid:
		code = connect.CodeInvalidArgument
	case access.NotFound:
		code = connect.CodeNotFound
	case access.Conflict:
		code = connect.CodeFailedPrecondition
		if errors.Is(err, ErrKeyReused) {
			code = connect.CodeAlreadyExists
		}
	case access.Denied:
		code = connect.CodePermissionDenied
	case access.Unavailable:
		code = connect.CodeUnavailable
	}
	return connect.NewError(code, err)
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

func ids(ss []string) []access.ID {
	out := make([]access.ID, len(ss))
	for i, s := range ss {
		out[i] = access.ID(s)
	}
	return out
}

func strs(ids []access.ID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = string(id)
	}
	return out
}

// toProto converts a view.
func toProto(v View) *visitv1.Visit {
	out := &visitv1.Visit{Id: string(v.ID), SiteId: string(v.SiteID), HostId: string(v.HostID), VisitorId: string(v.VisitorID),
		Guest:         &visitv1.Guest{GivenName: v.Given, FamilyName: v.Family, Email: v.Email},
		VisitorTypeId: string(v.TypeID), FromMs: ms(v.From), UntilMs: ms(v.Until), Escort: v.Escort,
		State: visitv1.VisitState(v.State), ProfileIds: strs(v.Profiles), Held: v.Held, HoldReason: v.HoldReason,
		Documents: v.Documents, NdaAcceptedMs: ms(v.NDAAt), CheckedInMs: ms(v.CheckedIn)}
	for _, e := range v.Emails {
		out.Emails = append(out.Emails, &visitv1.EmailStatus{MessageId: e.MessageID, Kind: e.Kind, Sent: e.Sent,
			Attempts: int32(e.Attempts), LastError: e.LastError, Failed: e.Failed})
	}
	return out
}

func (r rpc) Invite(ctx context.Context, req *connect.Request[visitv1.InviteRequest]) (*connect.Response[visitv1.InviteResponse], error) {
	if _, err := auth.Require(ctx, hostRoles...); err != nil {
		return nil, err
	}
	m := req.Msg
	in := InviteIn{Site: access.ID(m.GetSiteId()), Host: access.ID(m.GetHostId()), Type: access.ID(m.GetVisitorTypeId()),
		From: fromMS(m.GetFromMs()), Until: fromMS(m.GetUntilMs()), Profiles: ids(m.GetProfileIds()), Escort: m.GetEscort(),
		Key: m.GetIdempotencyKey()}
	for _, g := range m.GetGuests() {
		in.Guests = append(in.Guests, GuestIn{Given: g.GetGivenName(), Family: g.GetFamilyName(), Email: g.GetEmail()})
	}
	if in.Key != "" {
		c := proto.CloneOf(m)
		c.IdempotencyKey = ""
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
		if err != nil {
			return nil, connectErr(err)
		}
		sum := sha256.Sum256(b)
		in.Fingerprint = hex.EncodeToString(sum[:])
	}
	out, err := r.s.Invite(ctx, in)
	if err != nil {
		return nil, connectErr(err)
	}
	res := &visitv1.InviteResponse{PickupUrls: out.PickupURLs}
	for _, v := range out.Visits {
		res.Visits = append(res.Visits, toProto(v))
	}
	return connect.NewResponse(res), nil
}

func (r rpc) ListVisits(ctx context.Context, req *connect.Request[visitv1.ListVisitsRequest]) (*connect.Response[visitv1.ListVisitsResponse], error) {
	if _, err := auth.Require(ctx, hostRoles...); err != nil {
		return nil, err
	}
	m := req.Msg
	f := Filter{Site: access.ID(m.GetSiteId()), Host: access.ID(m.GetHostId()), OnSite: m.GetOnSite()}
	for _, st := range m.GetStates() {
		f.States = append(f.States, access.VisitState(st))
	}
	if d := m.GetDay(); d != "" {
		day, err := time.Parse(time.DateOnly, d)
		if err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("day: want YYYY-MM-DD"))
		}
		f.Day = day
	}
	views, err := r.s.List(ctx, f)
	if err != nil {
		return nil, connectErr(err)
	}
	res := &visitv1.ListVisitsResponse{}
	for _, v := range views {
		res.Visits = append(res.Visits, toProto(v))
	}
	return connect.NewResponse(res), nil
}

func (r rpc) GetVisit(ctx context.Context, req *connect.Request[visitv1.GetVisitRequest]) (*connect.Response[visitv1.GetVisitResponse], error) {
	if _, err := auth.Require(ctx, hostRoles...); err != nil {
		return nil, err
	}
	v, err := r.s.View(ctx, access.ID(req.Msg.GetVisitId()))
	if err != nil {
		return nil, connectErr(err)
	}
	return connect.NewResponse(&visitv1.GetVisitResponse{Visit: toProto(v)}), nil
}

// change runs one visit change for callers of roles.
func change(ctx context.Context, roles []auth.Role, fn func() (View, error)) (*visitv1.Visit, error) {
	if _, err := auth.Require(ctx, roles...); err != nil {
		return nil, err
	}
	v, err := fn()
	if err != nil {
		return nil, connectErr(err)
	}
	return toProto(v), nil
}

func (r rpc) CancelVisit(ctx context.Context, req *connect.Request[visitv1.CancelVisitRequest]) (*connect.Response[visitv1.CancelVisitResponse], error) {
	v, err := change(ctx, hostRoles, func() (View, error) { return r.s.Cancel(ctx, access.ID(req.Msg.GetVisitId())) })
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&visitv1.CancelVisitResponse{Visit: v}), nil
}

func (r rpc) ConfirmPickup(ctx context.Context, req *connect.Request[visitv1.ConfirmPickupRequest]) (*connect.Response[visitv1.ConfirmPickupResponse], error) {
	v, err := change(ctx, hostRoles, func() (View, error) { return r.s.ConfirmPickup(ctx, access.ID(req.Msg.GetVisitId())) })
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&visitv1.ConfirmPickupResponse{Visit: v}), nil
}

func (r rpc) AddProfiles(ctx context.Context, req *connect.Request[visitv1.AddProfilesRequest]) (*connect.Response[visitv1.AddProfilesResponse], error) {
	v, err := change(ctx, hostRoles, func() (View, error) {
		return r.s.AddProfiles(ctx, access.ID(req.Msg.GetVisitId()), ids(req.Msg.GetProfileIds()))
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&visitv1.AddProfilesResponse{Visit: v}), nil
}

func (r rpc) RemoveProfiles(ctx context.Context, req *connect.Request[visitv1.RemoveProfilesRequest]) (*connect.Response[visitv1.RemoveProfilesResponse], error) {
	v, err := change(ctx, hostRoles, func() (View, error) {
		return r.s.RemoveProfiles(ctx, access.ID(req.Msg.GetVisitId()), ids(req.Msg.GetProfileIds()))
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&visitv1.RemoveProfilesResponse{Visit: v}), nil
}

func (r rpc) CheckOut(ctx context.Context, req *connect.Request[visitv1.CheckOutRequest]) (*connect.Response[visitv1.CheckOutResponse], error) {
	v, err := change(ctx, hostRoles, func() (View, error) { return r.s.CheckOut(ctx, access.ID(req.Msg.GetVisitId())) })
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&visitv1.CheckOutResponse{Visit: v}), nil
}

func (r rpc) ReleaseVisit(ctx context.Context, req *connect.Request[visitv1.ReleaseVisitRequest]) (*connect.Response[visitv1.ReleaseVisitResponse], error) {
	v, err := change(ctx, securityRoles, func() (View, error) { return r.s.Release(ctx, access.ID(req.Msg.GetVisitId())) })
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&visitv1.ReleaseVisitResponse{Visit: v}), nil
}

func (r rpc) DenyVisit(ctx context.Context, req *connect.Request[visitv1.DenyVisitRequest]) (*connect.Response[visitv1.DenyVisitResponse], error) {
	v, err := change(ctx, securityRoles, func() (View, error) {
		return r.s.Deny(ctx, access.ID(req.Msg.GetVisitId()), req.Msg.GetReason())
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&visitv1.DenyVisitResponse{Visit: v}), nil
}

func typeToProto(vt access.VisitorType) *visitv1.VisitorType {
	return &visitv1.VisitorType{Id: string(vt.ID), Name: vt.Name, AllowedProfileIds: strs(vt.AllowedGroups),
		RequiredDocuments: vt.RequiredDocuments, MaxDurationSeconds: int64(vt.MaxDuration / time.Second), EscortRequired: vt.EscortRequired}
}

func (r rpc) PutVisitorType(ctx context.Context, req *connect.Request[visitv1.PutVisitorTypeRequest]) (*connect.Response[visitv1.PutVisitorTypeResponse], error) {
	if _, err := auth.Require(ctx, adminRoles...); err != nil {
		return nil, err
	}
	m := req.Msg.GetVisitorType()
	if m.GetMaxDurationSeconds() < 0 || m.GetMaxDurationSeconds() > int64(10*365*24*time.Hour/time.Second) {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("max_duration_seconds out of range"))
	}
	vt, err := r.s.PutVisitorType(ctx, access.VisitorType{ID: access.ID(m.GetId()), Name: m.GetName(), AllowedGroups: ids(m.GetAllowedProfileIds()),
		RequiredDocuments: m.GetRequiredDocuments(), MaxDuration: time.Duration(m.GetMaxDurationSeconds()) * time.Second, EscortRequired: m.GetEscortRequired()})
	if err != nil {
		return nil, connectErr(err)
	}
	return connect.NewResponse(&visitv1.PutVisitorTypeResponse{VisitorType: typeToProto(vt)}), nil
}

func (r rpc) ListVisitorTypes(ctx context.Context, _ *connect.Request[visitv1.ListVisitorTypesRequest]) (*connect.Response[visitv1.ListVisitorTypesResponse], error) {
	if _, err := auth.Require(ctx, hostRoles...); err != nil {
		return nil, err
	}
	vts, err := r.s.VisitorTypes(ctx)
	if err != nil {
		return nil, connectErr(err)
	}
	res := &visitv1.ListVisitorTypesResponse{}
	for _, vt := range vts {
		res.VisitorTypes = append(res.VisitorTypes, typeToProto(vt))
	}
	return connect.NewResponse(res), nil
}

func (r rpc) DeleteVisitorType(ctx context.Context, req *connect.Request[visitv1.DeleteVisitorTypeRequest]) (*connect.Response[visitv1.DeleteVisitorTypeResponse], error) {
	if _, err := auth.Require(ctx, adminRoles...); err != nil {
		return nil, err
	}
	if err := r.s.DeleteVisitorType(ctx, access.ID(req.Msg.GetId())); err != nil {
		return nil, connectErr(err)
	}
	return connect.NewResponse(&visitv1.DeleteVisitorTypeResponse{}), nil
}

func watchToProto(e access.WatchEntry) *visitv1.WatchEntry {
	out := &visitv1.WatchEntry{Id: string(e.ID), GivenNames: e.GivenNames, Surname: e.Surname, DocumentNumber: e.DocumentNumber,
		Action: visitv1.WatchAction(e.Action), Reason: e.Reason}
	if !e.BirthDate.IsZero() {
		out.BirthDate = e.BirthDate.Format(time.DateOnly)
	}
	return out
}

func (r rpc) PutWatchEntry(ctx context.Context, req *connect.Request[visitv1.PutWatchEntryRequest]) (*connect.Response[visitv1.PutWatchEntryResponse], error) {
	if _, err := auth.Require(ctx, securityRoles...); err != nil {
		return nil, err
	}
	m := req.Msg.GetEntry()
	e := access.WatchEntry{ID: access.ID(m.GetId()), GivenNames: m.GetGivenNames(), Surname: m.GetSurname(),
		DocumentNumber: m.GetDocumentNumber(), Action: access.WatchAction(m.GetAction()), Reason: m.GetReason()}
	if b := m.GetBirthDate(); b != "" {
		d, err := time.Parse(time.DateOnly, b)
		if err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("birth_date: want YYYY-MM-DD"))
		}
		e.BirthDate = d
	}
	e, err := r.s.PutWatchEntry(ctx, e)
	if err != nil {
		return nil, connectErr(err)
	}
	return connect.NewResponse(&visitv1.PutWatchEntryResponse{Entry: watchToProto(e)}), nil
}

func (r rpc) ListWatchEntries(ctx context.Context, _ *connect.Request[visitv1.ListWatchEntriesRequest]) (*connect.Response[visitv1.ListWatchEntriesResponse], error) {
	if _, err := auth.Require(ctx, securityRoles...); err != nil {
		return nil, err
	}
	es, err := r.s.Watchlist(ctx)
	if err != nil {
		return nil, connectErr(err)
	}
	res := &visitv1.ListWatchEntriesResponse{}
	for _, e := range es {
		res.Entries = append(res.Entries, watchToProto(e))
	}
	return connect.NewResponse(res), nil
}

func (r rpc) DeleteWatchEntry(ctx context.Context, req *connect.Request[visitv1.DeleteWatchEntryRequest]) (*connect.Response[visitv1.DeleteWatchEntryResponse], error) {
	if _, err := auth.Require(ctx, securityRoles...); err != nil {
		return nil, err
	}
	if err := r.s.DeleteWatchEntry(ctx, access.ID(req.Msg.GetId())); err != nil {
		return nil, connectErr(err)
	}
	return connect.NewResponse(&visitv1.DeleteWatchEntryResponse{}), nil
}

func keyToProto(k PublicKey) *visitv1.TokenKey {
	return &visitv1.TokenKey{KeyId: k.ID.String(), PublicKey: k.Public, CreatedMs: ms(k.Created), RetiredMs: ms(k.Retired), Current: k.Current}
}

func (r rpc) ListTokenKeys(ctx context.Context, _ *connect.Request[visitv1.ListTokenKeysRequest]) (*connect.Response[visitv1.ListTokenKeysResponse], error) {
	if _, err := auth.Require(ctx, auth.Roles...); err != nil {
		return nil, err
	}
	res := &visitv1.ListTokenKeysResponse{}
	for _, k := range r.s.keys.Public() {
		res.Keys = append(res.Keys, keyToProto(k))
	}
	return connect.NewResponse(res), nil
}

func (r rpc) RotateTokenKey(ctx context.Context, req *connect.Request[visitv1.RotateTokenKeyRequest]) (*connect.Response[visitv1.RotateTokenKeyResponse], error) {
	if _, err := auth.Require(ctx, adminRoles...); err != nil {
		return nil, err
	}
	k, err := r.s.keys.Rotate(req.Msg.GetRetireOld(), r.s.now())
	if err != nil {
		return nil, connectErr(err)
	}
	r.s.log.Info("visits: token key rotated", "key", k.ID.String(), "retire_old", req.Msg.GetRetireOld())
	return connect.NewResponse(&visitv1.RotateTokenKeyResponse{Key: keyToProto(k)}), nil
}

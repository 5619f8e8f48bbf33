package syncserver

import (
	"context"
	"fmt"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	syncv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/sync/v1"
	"github.com/gatehouse/gatehouse/replication"
	"github.com/gatehouse/gatehouse/syncwire"
)

// Bounds of one Pull answer.
const (
	defaultPullDeltas = 1024
	maxPullDeltas     = 4096
	maxPullBytes      = 4 << 20
)

// Push applies one batch of the calling site's own deltas, as the stream
// would (authorized, skew-checked, committed under the site's lease), and
// answers with the hub's durable vector once it is durable. A batch that
// starts beyond what the hub holds of its source fails with
// FailedPrecondition: the site resends from the hub's vector (Pull returns
// it).
func (s *Server) Push(ctx context.Context, req *connect.Request[syncv1.PushRequest]) (*connect.Response[syncv1.PushResponse], error) {
	site, err := s.authenticate(ctx, req.Header())
	if err != nil {
		return nil, err
	}
	if req.Msg.GetOrigin() != site {
		return nil, connectError(access.Errorf(access.Invalid, "sync: push of origin %q from site %s: %w", req.Msg.GetOrigin(), site, syncwire.ErrBadMessage))
	}
	src, ds, err := syncwire.BatchFromWire(req.Msg.GetBatch())
	if err != nil {
		return nil, connectError(err)
	}
	sl, err := s.holdLease(ctx, site)
	if err != nil {
		return nil, connectError(err)
	}
	defer s.dropLease(site, sl)
	state := s.cfg.State
	authz := newAuthorizer(site, state.Facts())
	before := state.Vector()
	sess, err := replication.NewSession(replication.SessionConfig{
		Store:      state.SessionStore(ctx, sl.fence()),
		Authorizer: authz.authorize,
		Clock:      state.Clock(),
		OnSkew:     s.skews.hook(s.log, site),
		Durable:    state.SyncVector(),
	})
	if err != nil {
		return nil, connectError(err)
	}
	if err := sess.Receive(replication.Message{Type: replication.MsgBatch, Source: src, Deltas: ds}); err != nil {
		s.log.Warn("sync push refused", "site", site, "code", access.ErrorCode(err), "err", err)
		return nil, connectError(err)
	}
	s.suspendClaims(ctx, s.log.With("site", site), authz, before)
	vec := s.visibleVector(site, state.SyncVector())
	if sess.Stats().Held > 0 {
		return nil, connect.NewError(connect.CodeFailedPrecondition,
			fmt.Errorf("sync: push of %s from %d: the hub holds it up to %d: %w", src, ds[0].Seq, vec[src], replication.ErrGap))
	}
	b, err := vec.MarshalBinary()
	if err != nil {
		return nil, connectError(err)
	}
	return connect.NewResponse(&syncv1.PushResponse{Origin: hubstate.Origin, Vector: b}), nil
}

// Pull returns what the calling site lacks given its durable vector,
// priority lane sources first, and records that vector as the site's
// acknowledgement.
func (s *Server) Pull(ctx context.Context, req *connect.Request[syncv1.PullRequest]) (*connect.Response[syncv1.PullResponse], error) {
	site, err := s.authenticate(ctx, req.Header())
	if err != nil {
		return nil, err
	}
	if req.Msg.GetOrigin() != site {
		return nil, connectError(access.Errorf(access.Invalid, "sync: pull of origin %q from site %s: %w", req.Msg.GetOrigin(), site, syncwire.ErrBadMessage))
	}
	peer, err := syncwire.VectorFromWire(req.Msg.GetVector())
	if err != nil {
		return nil, connectError(err)
	}
	if err := s.checkScope(site, peer); err != nil {
		return nil, connectError(err)
	}
	limit := int(req.Msg.GetMaxDeltas())
	switch {
	case limit == 0:
		limit = defaultPullDeltas
	case limit > maxPullDeltas:
		return nil, connectError(access.Errorf(access.Invalid, "sync: pull of %d deltas, at most %d: %w", limit, maxPullDeltas, syncwire.ErrBadMessage))
	}
	state := s.cfg.State
	if err := state.RecordAck(ctx, site, peer); err != nil {
		return nil, connectError(err)
	}
	log := s.logFor(site)
	have := log.Vector()
	resp := &syncv1.PullResponse{Origin: hubstate.Origin}
	n, size := 0, 0
outer:
	for _, r := range have.Missing(peer) {
		for after := r.From - 1; after < r.To; {
			if n >= limit || size >= maxPullBytes {
				resp.More = true
				break outer
			}
			ds, err := log.Deltas(r.Source, after, min(s.cfg.MaxBatch, limit-n))
			if err != nil {
				return nil, connectError(err)
			}
			if len(ds) == 0 {
				break
			}
			b, err := syncwire.BatchToWire(r.Source, ds)
			if err != nil {
				return nil, connectError(err)
			}
			for _, d := range b.GetDeltas() {
				size += len(d)
			}
			resp.Batches = append(resp.Batches, b)
			n += len(ds)
			after = ds[len(ds)-1].Seq
		}
	}
	if resp.Vector, err = have.MarshalBinary(); err != nil {
		return nil, connectError(err)
	}
	return connect.NewResponse(resp), nil
}

package syncserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/cloud/hubstate"
	syncv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/sync/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/sync/v1/syncv1connect"
	"github.com/gatehouse/gatehouse/replication"
	"github.com/gatehouse/gatehouse/syncwire"
)

var _ syncv1connect.SyncServiceHandler = (*Server)(nil)

// stream is one site stream served by this process.
type stream struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when its handler has returned
}

// errEnded is returned to a site whose stream the hub ends: a newer stream
// of the same site took over, the lease was lost, or the hub is stopping.
var errEnded = errors.New("sync: stream ended by the hub (a newer stream of this site, a lost lease, or shutdown); reconnect")

// register makes st the site's only stream in this process: an older one is
// cancelled and waited for, so that at most one session per site runs here
// (across processes the lease excludes them).
func (s *Server) register(ctx context.Context, site string, st *stream) error {
	for {
		s.mu.Lock()
		if s.ctx.Err() != nil {
			s.mu.Unlock()
			return connect.NewError(connect.CodeUnavailable, errEnded)
		}
		old := s.streams[site]
		if old == nil {
			s.streams[site] = st
			s.wg.Add(1)
			s.mu.Unlock()
			return nil
		}
		s.mu.Unlock()
		old.cancel()
		select {
		case <-old.done:
		case <-ctx.Done():
			return connectError(ctx.Err())
		}
	}
}

// deregister ends st's registration.
func (s *Server) deregister(site string, st *stream) {
	s.mu.Lock()
	if s.streams[site] == st {
		delete(s.streams, site)
	}
	s.mu.Unlock()
	close(st.done)
	s.wg.Done()
}

// Sync serves one site's replication session over a bidirectional stream.
// See the package comment and docs/sync.md.
func (s *Server) Sync(ctx context.Context, bs *connect.BidiStream[syncv1.SyncRequest, syncv1.SyncResponse]) error {
	site, err := s.authenticate(ctx, bs.RequestHeader())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopOnClose := context.AfterFunc(s.ctx, cancel)
	defer stopOnClose()
	st := &stream{cancel: cancel, done: make(chan struct{})}
	if err := s.register(ctx, site, st); err != nil {
		return err
	}
	defer s.deregister(site, st)
	sl, err := s.holdLease(ctx, site)
	if err != nil {
		return connectError(err)
	}
	defer s.dropLease(site, sl)
	go func() {
		select {
		case <-sl.lost:
			cancel()
		case <-ctx.Done():
		}
	}()
	log := s.log.With("site", site)
	state := s.cfg.State
	authz := newAuthorizer(site, state.Facts())
	dlog, digests := s.digestFor(site)
	sess, err := replication.NewSession(replication.SessionConfig{
		Log:        s.logFor(site),
		Store:      state.SessionStore(ctx, sl.fence()),
		Authorizer: authz.authorize,
		Clock:      state.Clock(),
		OnSkew:     s.skews.hook(s.log, site),
		Durable:    s.visibleVector(site, state.SyncVector()),
		MaxBatch:   s.cfg.MaxBatch,
		Window:     sendWindow,
		// Digests are computed over every source the hub holds (the
		// scoped log leaves out the site's own), each normal lane of
		// another origin as the site's scoped log of it.
		DigestLog:    dlog,
		Digests:      digests,
		OnDivergence: s.diverged(log, site),
	})
	if err != nil {
		return connectError(err)
	}
	log.Info("sync stream open")
	defer func() { log.Info("sync stream closed", "stats", fmt.Sprintf("%+v", sess.Stats())) }()

	// Receive on a goroutine of its own: Send and Receive may run
	// concurrently on a bidi stream, and the session is driven here only.
	in := make(chan *syncv1.SessionMessage, inQueue)
	recvErr := make(chan error, 1)
	go func() {
		for {
			req, err := bs.Receive()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case in <- req.GetMessage():
			case <-ctx.Done():
				return
			}
		}
	}()

	var digestTick <-chan time.Time
	if s.cfg.DigestInterval > 0 {
		sess.QueueDigest() // sent once the site's hello has arrived
		t := time.NewTicker(s.cfg.DigestInterval)
		defer t.Stop()
		digestTick = t.C
	}
	// recheck authenticates the stream's credential again, so that revoking
	// a site's credential cuts a stream that is already open: before each
	// group of the site's batches, and every ReauthInterval while the hub
	// only sends (an idle or receive-only site).
	recheck := func() error {
		again, err := s.authenticate(ctx, bs.RequestHeader())
		if err == nil && again != site {
			err = connect.NewError(connect.CodeUnauthenticated, fmt.Errorf("%w: the stream's credential now names site %s", ErrUnauthenticated, again))
		}
		if err != nil {
			log.Warn("sync stream no longer authenticated", "err", err)
		}
		return err
	}
	reauth := time.NewTicker(s.cfg.ReauthInterval)
	defer reauth.Stop()
	for {
		changed := state.Changed()
		// Everything the state holds is durable: acknowledge it, so the
		// site learns that the hub holds its own and relayed deltas before
		// they arrive (acks go out before batches) and never echoes them.
		// Only what the site may see (Visible): its hellos and acks name
		// no source it does not receive, and other sites' traffic does
		// not make an ack.
		sess.MarkDurable(s.visibleVector(site, state.SyncVector()))
		if err := s.flush(sess, bs); err != nil {
			return connectError(err)
		}
		select {
		case <-ctx.Done():
			return connect.NewError(connect.CodeUnavailable, errEnded)
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case pm := <-in:
			// Group commit: take every message already queued behind this
			// one, and apply the site's consecutive batches in one store
			// commit, acknowledged together (group.go).
			pms := drain(pm, in)
			if hasBatch(pms) {
				if err := recheck(); err != nil {
					return err
				}
			}
			before := state.Vector()
			err := s.receiveGroup(ctx, log, site, sess, pms)
			s.suspendClaims(ctx, log, authz, before)
			if err != nil {
				return err
			}
		case <-digestTick:
			sess.QueueDigest()
		case <-reauth.C:
			if err := recheck(); err != nil {
				return err
			}
		case <-changed:
			if state.Closed() {
				return connect.NewError(connect.CodeUnavailable, errEnded)
			}
		}
	}
}

// flush sends every message the session has to send now.
func (s *Server) flush(sess *replication.Session, bs *connect.BidiStream[syncv1.SyncRequest, syncv1.SyncResponse]) error {
	for {
		m, ok, err := sess.Next()
		if err != nil || !ok {
			return err
		}
		pm, err := syncwire.ToWire(hubstate.Origin, m)
		if err != nil {
			return err
		}
		if err := bs.Send(&syncv1.SyncResponse{Message: pm}); err != nil {
			return err
		}
	}
}

// Package syncserver is the hub's end of the replication wire: the Connect
// SyncService (proto/gatehouse/sync/v1) that sites call to exchange CRDT
// deltas with the hub (docs/sync.md).
//
// For each site stream it authenticates the site (Config.Authenticate: a
// per-site bearer token now, client certificates later), takes the site's
// stream lease in the store so that one hub process at a time serves the
// site, and drives a replication.Session: the hub sends the site what it
// lacks and applies what the site sends, after judging every delta with
// NewAuthorizer, committing it to the hub's store (fenced by the lease's
// token) and only then acknowledging it.
package syncserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/cloud/store"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/sync/v1/syncv1connect"
	"github.com/gatehouse/gatehouse/replication"
)

// Defaults of Config.
const (
	DefaultLeaseTTL        = 30 * time.Second
	DefaultMaxMessageBytes = 8 << 20
	DefaultMaxBatch        = 256
	// DefaultReauthInterval is Config.ReauthInterval's default.
	DefaultReauthInterval = 30 * time.Second
	// DefaultDigestInterval is Config.DigestInterval's default.
	DefaultDigestInterval = 5 * time.Minute
)

// Config configures a Server.
type Config struct {
	// State is the hub's durable replica. Required.
	State *hubstate.State
	// Leases is the store holding the sites' stream leases (the same
	// store as State's). Required.
	Leases store.Leases
	// Authenticate names the calling site. Required; see TokenAuth.
	Authenticate Authenticate
	// Owner names this hub process in the leases; default a random name.
	Owner string
	// LeaseTTL is how long a site's stream lease lasts without renewal
	// (renewed every third of it). Default DefaultLeaseTTL.
	LeaseTTL time.Duration
	// MaxMessageBytes bounds one received message; a larger one fails the
	// call with ResourceExhausted. Default DefaultMaxMessageBytes.
	MaxMessageBytes int
	// MaxBatch is the most deltas per batch the hub sends. Default
	// DefaultMaxBatch.
	MaxBatch int
	// DigestInterval is how often the hub sends each connected site a
	// digest of the sources both hold (and once as each stream opens);
	// a mismatch is narrowed to the first differing delta and reported
	// (Divergences). Default DefaultDigestInterval; negative: never.
	DigestInterval time.Duration
	// ReauthInterval is how often an open stream's credential is checked
	// again while the site sends no batch (it is also checked before each
	// group of batches): a revoked certificate or token cuts the stream
	// within it. Default DefaultReauthInterval.
	ReauthInterval time.Duration
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
}

// Server serves SyncService. It is safe for concurrent use; Close ends
// every stream.
type Server struct {
	cfg Config
	log *slog.Logger

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	mu      sync.Mutex
	streams map[string]*stream // per site, the stream this process serves
	leases  map[string]*siteLease
	wg      sync.WaitGroup

	skews skews // sites' stamps beyond the skew guard (skew.go)

	siteDigests map[string]*replication.Digester // per site, scoped; under mu
	divergedMu  sync.Mutex
	divergences map[string][]replication.Divergence // per site
}

// New returns a server for cfg, or an error naming a missing field.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.State == nil:
		return nil, errors.New("syncserver: no hub state")
	case cfg.Leases == nil:
		return nil, errors.New("syncserver: no lease store")
	case cfg.Authenticate == nil:
		return nil, errors.New("syncserver: no authenticator")
	}
	if cfg.Owner == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		cfg.Owner = "hub-" + hex.EncodeToString(b[:])
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	cfg.LeaseTTL = min(cfg.LeaseTTL, store.MaxLeaseTTL)
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.ReauthInterval <= 0 {
		cfg.ReauthInterval = DefaultReauthInterval
	}
	if cfg.DigestInterval == 0 {
		cfg.DigestInterval = DefaultDigestInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{cfg: cfg, log: cfg.Logger.With("component", "sync"), ctx: ctx, cancel: cancel,
		streams: map[string]*stream{}, leases: map[string]*siteLease{},
		siteDigests: map[string]*replication.Digester{}}, nil
}

// Handler returns the path and handler to mount on the hub's mux. Serve it
// over HTTP/2 (TLS, or cleartext with http.Protocols' unencrypted HTTP/2)
// for the Sync stream; Push and Pull work over HTTP/1.1 too. Do not put it
// behind a limit on the whole request body: a stream is long; the server
// bounds each message instead (Config.MaxMessageBytes).
func (s *Server) Handler() (string, http.Handler) {
	path, h := syncv1connect.NewSyncServiceHandler(s, connect.WithReadMaxBytes(s.cfg.MaxMessageBytes))
	return path, withTLS(h)
}

// Close ends every stream, releases the leases and waits for the stream
// handlers to return. It is idempotent.
func (s *Server) Close() error {
	// Under mu: a stream registering (register) either counts itself
	// before this cancel, or sees it and never adds to wg after Wait began.
	s.mu.Lock()
	s.cancel()
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// siteLease is this process's hold of a site's stream lease, shared by the
// calls serving the site (one stream, and unary calls), renewed while held.
type siteLease struct {
	lease store.Lease
	refs  int
	lost  chan struct{} // closed when renewal fails
	stop  chan struct{} // closed when the last holder drops it
	done  chan struct{} // closed when the renewer has returned
}

// holdLease takes site's lease for this process, or shares the hold this
// process already has. It fails with ErrLeaseHeld (Unavailable) when
// another hub process owns the site's stream. A hold being released (its
// last holder dropped it) is waited for first: acquiring meanwhile could
// get the same token back, which that release would then end.
func (s *Server) holdLease(ctx context.Context, site string) (*siteLease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		sl := s.leases[site]
		if sl == nil || sl.refs > 0 {
			break
		}
		s.mu.Unlock()
		select {
		case <-sl.done:
		case <-ctx.Done():
			s.mu.Lock()
			return nil, ctx.Err()
		}
		s.mu.Lock()
		if s.leases[site] == sl {
			delete(s.leases, site)
		}
	}
	if sl := s.leases[site]; sl != nil {
		select {
		case <-sl.lost:
		default:
			sl.refs++
			return sl, nil
		}
	}
	l, err := s.cfg.Leases.Acquire(ctx, site, s.cfg.Owner, s.cfg.LeaseTTL)
	if err != nil {
		return nil, fmt.Errorf("sync: lease of site %s: %w", site, err)
	}
	sl := &siteLease{lease: l, refs: 1, lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	s.leases[site] = sl
	go s.renew(sl)
	return sl, nil
}

// renew keeps sl's lease alive until it is dropped, or marks it lost.
func (s *Server) renew(sl *siteLease) {
	defer close(sl.done)
	t := time.NewTicker(s.cfg.LeaseTTL / 3)
	defer t.Stop()
	l := sl.lease
	for {
		select {
		case <-sl.stop:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := s.cfg.Leases.Release(ctx, l); err != nil {
				s.log.Warn("release of stream lease failed", "site", l.Site, "err", err)
			}
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.LeaseTTL/3)
			nl, err := s.cfg.Leases.Renew(ctx, l, s.cfg.LeaseTTL)
			cancel()
			if err != nil {
				s.log.Warn("stream lease lost", "site", l.Site, "err", err)
				close(sl.lost)
				<-sl.stop
				return
			}
			l = nl
		}
	}
}

// dropLease gives up one hold of sl; the last one releases the lease.
func (s *Server) dropLease(site string, sl *siteLease) {
	s.mu.Lock()
	sl.refs--
	last := sl.refs == 0
	s.mu.Unlock()
	if last {
		close(sl.stop)
		<-sl.done
		s.mu.Lock()
		if s.leases[site] == sl {
			delete(s.leases, site) // (holdLease waited for it while refs was 0)
		}
		s.mu.Unlock()
	}
}

// fence returns the store fence of a held lease.
func (sl *siteLease) fence() *store.Fence {
	return &store.Fence{Site: sl.lease.Site, Token: sl.lease.Token}
}

// Scope reports whether the hub sends site deltas of src: the priority
// lanes of the hub and of every other site, whole (revocations, disables
// and checkouts: sending one too many is always safe), and the normal
// lanes of the hub and of every other site, each as the site's scoped log
// of it (hubstate.State.ScopedSourceDeltas: only the changes that concern
// the site, numbered by their place in it; docs/sync.md §4). The site's
// own deltas never go back to it (it made them; the edge refuses them),
// and access events (every events lane) are never sent to any site.
func Scope(site string, src replication.Source) bool {
	return src.Origin != site && src.Lane != replication.LaneEvents
}

// scopedLane reports whether site receives src as a scoped log: a normal
// lane of another origin.
func scopedLane(site string, src replication.Source) bool {
	return src.Lane == replication.LaneNormal && src.Origin != site
}

// scopedLog is the hub's log as one site sees it: the sources Scope lets
// through, with every normal lane replaced by the site's scoped log of it
// (hubstate.State.ScopedSourceDeltas: only the changes that concern the
// site, numbered by their place in it).
type scopedLog struct {
	site  string
	state *hubstate.State
}

func (l scopedLog) Vector() replication.Vector {
	v := l.state.ScopedVector(l.site)
	for src := range v {
		if !Scope(l.site, src) {
			delete(v, src)
		}
	}
	return v
}

func (l scopedLog) Deltas(src replication.Source, after uint64, max int) ([]replication.Delta, error) {
	if !Scope(l.site, src) {
		return nil, nil
	}
	if scopedLane(l.site, src) {
		return l.state.ScopedSourceDeltas(l.site, src, after, max)
	}
	return l.state.Deltas(src, after, max)
}

// digestLog is what the hub digests a site's link over: every source the
// hub holds (the site skips those it does not), with every normal lane of
// another origin as the site's scoped log of it, so both ends chain the
// same deltas.
type digestLog struct {
	site  string
	state *hubstate.State
}

// Vector is the site's scoped view with its own events lane, which the
// hub holds outside its replica.
func (l digestLog) Vector() replication.Vector {
	v := l.state.ScopedVector(l.site)
	ev := replication.Source{Origin: l.site, Lane: replication.LaneEvents}
	if n := l.state.SyncVector()[ev]; n > 0 {
		v[ev] = n
	}
	return v
}

func (l digestLog) Deltas(src replication.Source, after uint64, max int) ([]replication.Delta, error) {
	if src.Lane == replication.LaneEvents {
		if src.Origin != l.site {
			return nil, nil // another site's events: never this link's
		}
		return l.state.EventDeltas(context.Background(), l.site, after, max)
	}
	if scopedLane(l.site, src) {
		return l.state.ScopedSourceDeltas(l.site, src, after, max)
	}
	return l.state.Deltas(src, after, max)
}

// digestFor returns the log and the chain cache that digests of site's link
// are computed over. Each site has its own chains, since its scoped log
// of the hub's normal lane is its own.
func (s *Server) digestFor(site string) (replication.Log, *replication.Digester) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.siteDigests[site]
	if g == nil {
		g = replication.NewDigester()
		s.siteDigests[site] = g
	}
	return digestLog{site: site, state: s.cfg.State}, g
}

// logFor returns the log the hub sends site from.
func (s *Server) logFor(site string) replication.Log {
	return scopedLog{site: site, state: s.cfg.State}
}

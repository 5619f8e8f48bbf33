// Package uplink is a site's link to the cloud hub: on the site's Raft
// leader it runs a replication.Session with the hub over the SyncService's
// bidirectional Connect stream (docs/sync.md §8, docs/edge.md
// "Replication and the uplink").
//
// What it sends is the site's own delta log (made inside the Raft apply,
// see edge/sitestate), priority lane first, then normal, then the site's
// access events: the site's event log presented as its events lane
// (replication.LaneEvents, EventDelta), numbered by the event sequence, so
// nothing new is written at the site for it. What it receives it proposes
// through Raft on a goroutine of its own (applier.go), so that the site's
// sending and the hub's acknowledgements never wait for a Raft commit: one
// ApplyDeltas command per run of the hub's queued batches, merged up to
// MaxMergeDeltas, the priority lane's first; every node applies the hub's
// changes in the same order. It acknowledges them only once the command
// has committed and applied: the vector it reports as durable is the
// site's applied vector, which a Raft majority holds. When leadership
// moves, the old leader's session ends and the new leader opens one from
// its own applied vector, which is the durable one; the hub sends again
// whatever that vector lacks and ignores what it receives twice.
//
// The uplink imports nothing of cloud/: the wire conversion below mirrors
// cloud/syncserver's, and TLS material is read with crypto/tls from the
// files `gatehouse cloud site add` writes (LoadTLS).
package uplink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	syncv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/sync/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/sync/v1/syncv1connect"
	"github.com/gatehouse/gatehouse/replication"
	"github.com/gatehouse/gatehouse/syncwire"
)

// HubOrigin is the origin of the hub's own messages.
const HubOrigin = "hub"

// DefaultWindow is Config.Window's default: while the hub commits one
// group of the site's batches (cloud/syncserver commits up to 4096 deltas
// at once), the next group is already on its way.
const DefaultWindow = 8192

// Site is what the uplink needs of the site it serves. The edge node
// implements it over its Raft member and state machine. Every method must
// be safe for concurrent use.
type Site interface {
	// Leader reports whether this node leads the site now.
	Leader() bool
	// Vector returns the site's applied vector (every source, own and the
	// hub's); applied entries are committed, so it is durable.
	Vector() replication.Vector
	// OwnVector returns the part of Vector of the site's own sources,
	// with its events lane: how far the site's event log goes.
	OwnVector() replication.Vector
	// Deltas returns up to max deltas of src after sequence number after
	// from the site's delta log, or for the site's events lane from its
	// event log (see EventDelta).
	Deltas(src replication.Source, after uint64, max int) ([]replication.Delta, error)
	// ApplyDeltas commits deltas received from the hub through Raft (one
	// command) and returns once this node has applied them. It returns an
	// error when they could not be committed or were refused.
	ApplyDeltas(ctx context.Context, ds []replication.Delta) error
	// Changed returns a channel closed the next time the site's state
	// changes (a new own delta may be in the log). New events need not
	// close it: see EventSignaller.
	Changed() <-chan struct{}
}

// EventSignaller is implemented by a Site that signals new access events
// (edge/sitestate's Machine.EventsRecorded). A running session waits on it
// to send the events lane; without it the session looks for new events
// every Config.EventPoll.
type EventSignaller interface {
	// EventsRecorded returns a channel closed the next time events may
	// have been added to the site's event log. It must be safe for
	// concurrent use.
	EventsRecorded() <-chan struct{}
}

// Config configures an Uplink.
type Config struct {
	// SiteID is the site's ID: its replication origin.
	SiteID string
	// HubURL is the hub's base URL, e.g. "https://hub.example.com".
	HubURL string
	// Token is the site's bearer token; empty when the site authenticates
	// with its client certificate only.
	Token string
	// TLS configures TLS for an https HubURL (nil: the system roots). An
	// http HubURL speaks cleartext HTTP/2 (tests, a local hub).
	TLS *tls.Config
	// HTTPClient, when set, replaces the client built from TLS.
	HTTPClient connect.HTTPClient
	// MaxSkew is the skew guard on the hub's stamps (default 5 min).
	MaxSkew time.Duration
	// MaxBatch is the most deltas per batch sent (default 256).
	MaxBatch int
	// Window is the most deltas of one source sent to the hub ahead of
	// its acknowledgements (default DefaultWindow).
	Window int
	// MinBackoff and MaxBackoff bound the wait before reconnecting
	// (defaults 100 ms and 30 s); a refused batch waits MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// LeaderPoll is how often a running session checks that this node
	// still leads (default 200 ms).
	LeaderPoll time.Duration
	// EventPoll is how often a running session looks for new access
	// events in the site's event log when the Site is no EventSignaller
	// (default 250 ms). With the signal no poll runs unless EventPoll is
	// set; then it runs as well, as a safety net.
	EventPoll time.Duration
	// DigestInterval is how often a session sends the hub a digest
	// (digest.go; default DefaultDigestInterval, negative: never).
	DigestInterval time.Duration
	// Logger receives the uplink's logs; nil discards them.
	Logger *slog.Logger
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	if err := replication.ValidateOrigin(c.SiteID); err != nil {
		return fmt.Errorf("uplink: site id: %w", err)
	}
	if !strings.HasPrefix(c.HubURL, "http://") && !strings.HasPrefix(c.HubURL, "https://") {
		return fmt.Errorf("uplink: hub url %q: want an http:// or https:// URL", c.HubURL)
	}
	return nil
}

// Status is what the uplink reports about itself.
type Status struct {
	// Active is set while this node leads and runs the uplink.
	Active bool
	// Connected is set while a session with the hub is open.
	Connected bool
	// LastSync is when the hub last acknowledged everything the site had
	// sent (zero: never, since this node started).
	LastSync time.Time
	// LastError is the error that ended the last session ("" if none);
	// Refused is set when the hub refused a batch (it needs a human:
	// docs/sync.md §8).
	LastError string
	Refused   bool
	// Lag is, per lane of the site's own log (priority, normal, events),
	// how many deltas (events) the hub has not acknowledged yet (as of the
	// last session; 0 when not Active).
	Lag map[replication.Lane]uint64
	// Sessions counts sessions opened; Applied counts runs of hub
	// batches committed through Raft (each one ApplyDeltas); Merged
	// counts hub batches that were merged into the run before them
	// (hub batches received and applied: about Applied + Merged).
	Sessions, Applied, Merged int
}

// Uplink runs the site's sync session with the hub while this node leads.
// Create it with New, start it with Open, stop it with Close.
type Uplink struct {
	cfg    Config
	site   Site
	log    *slog.Logger
	client syncv1connect.SyncServiceClient

	mu     sync.Mutex
	status Status
	acked  replication.Vector // what the hub acknowledged of our sources
	digest digestState        // divergences found (digest.go)
	// digests keeps the chain hashes of the site's logs across sessions
	// (the logs only grow, and a delta committed under a sequence number
	// never changes), so a reconnect hashes only what is new.
	digests *replication.Digester

	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// New returns an uplink for site configured by cfg; it does nothing until
// Open. It returns an error for an invalid cfg.
func New(cfg Config, site Site) (*Uplink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxSkew <= 0 {
		cfg.MaxSkew = 5 * time.Minute
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 256
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.LeaderPoll <= 0 {
		cfg.LeaderPoll = 200 * time.Millisecond
	}
	if _, ok := site.(EventSignaller); !ok && cfg.EventPoll <= 0 {
		cfg.EventPoll = 250 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = httpClient(cfg.HubURL, cfg.TLS)
	}
	return &Uplink{cfg: cfg, site: site, log: cfg.Logger.With("component", "uplink"),
		client: syncv1connect.NewSyncServiceClient(hc, cfg.HubURL), acked: replication.Vector{},
		digests: replication.NewDigester()}, nil
}

// httpClient returns an HTTP/2 client: over TLS for https, cleartext with
// prior knowledge for http.
func httpClient(url string, tc *tls.Config) *http.Client {
	var p http.Protocols
	tr := &http.Transport{Protocols: &p, ForceAttemptHTTP2: true, TLSClientConfig: tc,
		DialContext: (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 15 * time.Second}).DialContext}
	if strings.HasPrefix(url, "https://") {
		p.SetHTTP2(true)
	} else {
		p.SetUnencryptedHTTP2(true)
	}
	tr.HTTP2 = &http.HTTP2Config{SendPingTimeout: 15 * time.Second, PingTimeout: 10 * time.Second}
	return &http.Client{Transport: tr}
}

// Open starts the uplink's loop: whenever this node leads, it keeps a
// session with the hub open, reconnecting with backoff.
func (u *Uplink) Open() {
	ctx, cancel := context.WithCancel(context.Background())
	u.cancel, u.done = cancel, make(chan struct{})
	go func() {
		defer close(u.done)
		u.run(ctx)
	}()
}

// Close stops the uplink and waits for its session to end. It is
// idempotent.
func (u *Uplink) Close() error {
	u.once.Do(func() {
		if u.cancel != nil {
			u.cancel()
			<-u.done
		}
	})
	return nil
}

// Status returns what the uplink reports now. It is safe for concurrent
// use.
func (u *Uplink) Status() Status {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.status
	s.Lag = map[replication.Lane]uint64{}
	if !s.Active {
		return s // only the leader knows what the hub holds
	}
	own := u.site.OwnVector()
	for _, l := range []replication.Lane{replication.LanePriority, replication.LaneNormal, replication.LaneEvents} {
		src := replication.Source{Origin: u.cfg.SiteID, Lane: l}
		if own[src] > u.acked[src] {
			s.Lag[l] = own[src] - u.acked[src]
		} else {
			s.Lag[l] = 0
		}
	}
	return s
}

func (u *Uplink) update(fn func(s *Status)) {
	u.mu.Lock()
	defer u.mu.Unlock()
	fn(&u.status)
}

// run keeps a session open while this node leads.
func (u *Uplink) run(ctx context.Context) {
	backoff := u.cfg.MinBackoff
	tick := time.NewTicker(u.cfg.LeaderPoll)
	defer tick.Stop()
	for ctx.Err() == nil {
		if !u.site.Leader() {
			u.update(func(s *Status) { s.Active, s.Connected = false, false })
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			continue
		}
		u.update(func(s *Status) { s.Active = true; s.Sessions++ })
		progress, err := u.session(ctx)
		u.update(func(s *Status) { s.Connected = false })
		if ctx.Err() != nil {
			return
		}
		refused := false
		if err != nil {
			code := connect.CodeOf(err)
			refused = code == connect.CodePermissionDenied || code == connect.CodeInvalidArgument ||
				access.ErrorCode(err) == access.Invalid || access.ErrorCode(err) == access.Denied
			u.log.Warn("hub session ended", "err", err, "refused", refused)
			u.update(func(s *Status) { s.LastError, s.Refused = err.Error(), refused })
		}
		switch {
		case refused:
			backoff = u.cfg.MaxBackoff
		case progress:
			backoff = u.cfg.MinBackoff
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, u.cfg.MaxBackoff)
	}
}

// siteLog is the site's own delta log as a session's Log.
type siteLog struct{ site Site }

func (l siteLog) Vector() replication.Vector { return l.site.OwnVector() }
func (l siteLog) Deltas(src replication.Source, after uint64, max int) ([]replication.Delta, error) {
	return l.site.Deltas(src, after, max)
}

// siteStore is a session's Store: it hands the hub's accepted batches to
// the applier, which commits them through Raft (applier.go); its vector is
// the applied one with what is queued on top. The session acknowledges only
// what the applier reports committed (MarkDurable).
type siteStore struct{ ap *applier }

func (s siteStore) Vector() replication.Vector { return s.ap.vector() }
func (s siteStore) ApplyBatch(src replication.Source, ds []replication.Delta) error {
	return s.ap.enqueue(src, ds)
}

// durable returns the site's applied vector without its local-only
// sources, which the hub never sees.
func (u *Uplink) durable() replication.Vector {
	v := replication.Vector{}
	for src, n := range u.site.Vector() {
		if src.Origin == u.cfg.SiteID || !strings.HasPrefix(src.Origin, u.cfg.SiteID+".") {
			v[src] = n
		}
	}
	return v
}

// received is one message read from the stream, or the error that ended it.
type received struct {
	msg *syncv1.SessionMessage
	err error
}

// session runs one session until the stream ends, ctx ends or this node
// stops leading. It reports whether the hub acknowledged anything new or
// a batch was applied (to reset the backoff).
func (u *Uplink) session(ctx context.Context) (progress bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	site := u.cfg.SiteID
	clock, err := replication.NewClock(site, u.cfg.MaxSkew, nil)
	if err != nil {
		return false, err
	}
	ap := newApplier(ctx, u)
	defer ap.stop()
	sess, err := replication.NewSession(replication.SessionConfig{
		Log:   siteLog{u.site},
		Store: siteStore{ap},
		Authorizer: func(origin string, d replication.Delta) error {
			if d.Origin == site || strings.HasPrefix(d.Origin, site+".") {
				return fmt.Errorf("the hub sent a delta of this site's own origin %s", d.Origin)
			}
			if d.Lane == replication.LaneEvents {
				return fmt.Errorf("the hub sent access events of %s: sites never receive events", d.Origin)
			}
			return nil
		},
		Clock:        clock,
		Durable:      u.durable(),
		MaxBatch:     u.cfg.MaxBatch,
		Window:       u.cfg.Window,
		DigestLog:    digestLog{u.site},
		Digests:      u.digests,
		OnDivergence: u.diverged,
	})
	if err != nil {
		return false, err
	}
	stream := u.client.Sync(ctx)
	if u.cfg.Token != "" {
		stream.RequestHeader().Set("Authorization", "Bearer "+u.cfg.Token)
	}
	defer func() {
		_ = stream.CloseRequest()
		_ = stream.CloseResponse()
	}()

	// Leadership: end the session as soon as this node stops leading.
	go func() {
		t := time.NewTicker(u.cfg.LeaderPoll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if !u.site.Leader() {
					u.log.Info("leadership lost: ending the hub session")
					cancel()
					return
				}
			}
		}
	}()
	// The reader never blocks on the session loop: while the loop waits
	// on a Raft commit or a send, the hub's messages queue here (the
	// hub's window bounds them), so neither side's sends can wait on the
	// other's.
	var (
		qmu   sync.Mutex
		queue []received
		ready = make(chan struct{}, 1)
	)
	go func() {
		for {
			m, err := stream.Receive()
			r := received{err: err}
			if err == nil {
				r.msg = m.GetMessage()
			}
			qmu.Lock()
			queue = append(queue, r)
			qmu.Unlock()
			select {
			case ready <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	// sendFailed returns why the stream ended after a Send failed: a
	// failed send reports only io.EOF, and the reason is in the response,
	// which the reader goroutine receives. A bidi stream allows one
	// receiver at a time, so this waits for the reader's terminal error
	// (bounded) rather than calling Receive itself.
	sendFailed := func(err error) error {
		if !errors.Is(err, io.EOF) {
			return err
		}
		bound := time.NewTimer(5 * time.Second)
		defer bound.Stop()
		for {
			qmu.Lock()
			for _, r := range queue {
				if r.err != nil {
					qmu.Unlock()
					if errors.Is(r.err, io.EOF) {
						return errors.New("uplink: the hub ended the stream")
					}
					return r.err
				}
			}
			qmu.Unlock()
			select {
			case <-ctx.Done():
				return err
			case <-bound.C:
				return err
			case <-ready:
			}
		}
	}
	next := func() (received, bool) {
		qmu.Lock()
		defer qmu.Unlock()
		if len(queue) == 0 {
			return received{}, false
		}
		r := queue[0]
		queue = queue[1:]
		return r, true
	}
	peek := func() (received, bool) {
		qmu.Lock()
		defer qmu.Unlock()
		if len(queue) == 0 {
			return received{}, false
		}
		return queue[0], true
	}
	pop := func() { _, _ = next() }

	connected := false
	var evTick <-chan time.Time // nil: no poll
	if u.cfg.EventPoll > 0 {
		t := time.NewTicker(u.cfg.EventPoll)
		defer t.Stop()
		evTick = t.C
	}
	signaller, _ := u.site.(EventSignaller)
	digestTick, stopDigests := u.digestTicker(sess)
	defer stopDigests()
	for {
		changed := u.site.Changed()
		var recorded <-chan struct{} // nil: never ready
		if signaller != nil {
			recorded = signaller.EventsRecorded()
		}
		for {
			m, ok, err := sess.Next()
			if err != nil {
				return progress, err
			}
			if !ok {
				break
			}
			pm, err := syncwire.ToWire(site, m)
			if err != nil {
				return progress, err
			}
			if err := stream.Send(&syncv1.SyncRequest{Message: pm}); err != nil {
				return progress, sendFailed(err)
			}
		}
		r, ok := next()
		if !ok {
			select {
			case <-ctx.Done():
				return progress, ctx.Err()
			case <-changed:
			case <-recorded:
			case <-ready:
			case <-evTick:
			case <-digestTick:
				sess.QueueDigest()
			case <-ap.done:
				if err := u.applied(sess, ap); err != nil {
					return progress, err
				}
				progress = true
			}
			continue
		}
		if r.err != nil {
			if errors.Is(r.err, io.EOF) {
				return progress, errors.New("uplink: the hub ended the stream")
			}
			return progress, r.err
		}
		if !connected {
			connected = true
			u.update(func(s *Status) { s.Connected, s.LastError, s.Refused = true, "", false })
			u.log.Info("hub session open")
		}
		m, merged, err := mergeRun(r, peek, pop)
		if err != nil {
			return progress, err
		}
		if merged > 1 {
			u.update(func(s *Status) { s.Merged += merged - 1 })
		}
		if err := sess.Receive(m); err != nil {
			return progress, err
		}
		if m.Type == replication.MsgBatch {
			progress = true // accepted; acknowledged once the applier committed it
			// A batch this node had applied already (resent after a
			// leader change whose last commit's outcome was unknown) is
			// not queued, so no commit will acknowledge it: acknowledge
			// what this node has applied (committed, so durable) now.
			sess.MarkDurable(u.durable())
		}
		select {
		case <-ap.done:
			if err := u.applied(sess, ap); err != nil {
				return progress, err
			}
		default:
		}
		acked := sess.PeerAcked()
		synced := sess.Synced()
		u.mu.Lock()
		for src, n := range acked {
			if src.Origin == site && n > u.acked[src] {
				u.acked[src] = n
				progress = true
			}
		}
		if synced {
			u.status.LastSync = time.Now()
		}
		u.mu.Unlock()
	}
}

// applied takes the applier's result after a commit: the applied vector,
// which the session acknowledges (committed through Raft, so durable), or
// the error of the commit that failed, which ends the session.
func (u *Uplink) applied(sess *replication.Session, ap *applier) error {
	v, err := ap.result()
	if v != nil {
		sess.MarkDurable(v)
	}
	return err
}

// The files of a site's PKI directory, as `gatehouse cloud site add`
// writes them (cloud/pki).
const (
	CACertFile    = "ca.crt"
	SiteCertFile  = "site.crt"
	SiteKeyFile   = "site.key"
	SiteTokenFile = "site.token"
)

// LoadTLS reads a site's PKI directory: the hub CA (ca.crt), the site's
// certificate and key (site.crt, site.key; optional) and its token
// (site.token; optional). It returns a TLS 1.3 client configuration that
// verifies the hub against that CA only and offers the site's certificate
// (re-read at every handshake, so a renewed certificate is picked up), and
// the token ("" without one).
func LoadTLS(dir string) (*tls.Config, string, error) {
	ca, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, "", fmt.Errorf("uplink: tls: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, "", fmt.Errorf("uplink: tls: %s holds no certificate", CACertFile)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool}
	certPath, keyPath := filepath.Join(dir, SiteCertFile), filepath.Join(dir, SiteKeyFile)
	if _, err := os.Stat(certPath); err == nil {
		if _, err := tls.LoadX509KeyPair(certPath, keyPath); err != nil {
			return nil, "", fmt.Errorf("uplink: tls: %w", err)
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(certPath, keyPath)
			return &c, err
		}
	}
	var token string
	if b, err := os.ReadFile(filepath.Join(dir, SiteTokenFile)); err == nil {
		token = strings.TrimSpace(string(b))
	}
	return cfg, token, nil
}

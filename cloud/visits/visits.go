// Package visits is the hub's visitor service (docs/visitors.md): hosts
// invite guests through the Connect VisitService, the hub emails each
// guest a QR code carrying a signed invitation token, and the guest
// pre-registers on pages the hub serves; the site checks the guest in.
//
// A visit lives in two places. What the site must know — the visit (site,
// host, guest, type, window, escort, lifecycle), the guest as a person of
// kind visitor, and the visit's grants of access profiles — is written to
// the hub's replica (cloud/hubstate) as deltas of origin "hub", and so
// reaches the site by replication. What only the hub needs — the names as
// invited, a watchlist hold, uploaded documents, the NDA acceptance, the
// emails — is kept in store entities (Kinds), put in the same commit as
// the deltas they go with. Visitor types and the watchlist are store
// entities too.
//
// Invitation tokens are access tokens signed by the hub's Ed25519 keys
// (Keys, a file in the key directory); their public keys are served at
// GET /visits/token-keys for sites to verify with. Email goes through a
// durable outbox (see outbox.go).
package visits

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/cloud/store"
)

// Config is the service's part of the hub configuration.
type Config struct {
	// PublicURL is the base URL guests and hosts reach the hub at, used in
	// the links of emails, e.g. "https://visits.example.com".
	PublicURL string `json:"public_url"`
	// KeyDir is the directory of the invitation-token signing keys
	// (KeyFile, mode 0600); a first key is made there on first start.
	KeyDir string `json:"key_dir"`
	// RetryMin and RetryMax bound the outbox's backoff between delivery
	// attempts (defaults 5 s and 10 min; tests shorten them).
	RetryMin time.Duration `json:"-"`
	RetryMax time.Duration `json:"-"`
	// NoShowGrace is how long after the end of its window a visit whose
	// guest never checked in (requested, invited or pre_registered) is
	// expired by the hub (default DefaultNoShowGrace).
	NoShowGrace Duration `json:"no_show_grace"`
	// ExpiryInterval is how often the hub looks for no-shows to expire
	// (default DefaultExpiryInterval).
	ExpiryInterval Duration `json:"expiry_interval"`
}

// Defaults of Config.
const (
	DefaultNoShowGrace    = time.Hour
	DefaultExpiryInterval = time.Minute
)

// SiteAuth names the site that made a request from its headers and, over
// TLS, its connection state, or returns an error when no site made it. It
// has the signature of cloud/syncserver.Authenticate, so the hub passes
// the authenticator of its sync service: a site reads the watchlist with
// the credentials it syncs with.
type SiteAuth = func(ctx context.Context, header http.Header, conn *tls.ConnectionState) (site string, err error)

// Options are what New needs.
type Options struct {
	Config
	// State is the hub's replica.
	State *hubstate.State
	// Store is the store State is over, opened with Kinds as well as
	// hubstate.Kinds.
	Store store.Store
	// Sender delivers email; nil keeps every email queued in the outbox.
	Sender Sender
	// MessageIDDomain is the right-hand side of the Message-IDs of the
	// hub's email (default "gatehouse.invalid").
	MessageIDDomain string
	// Location is the time zone of the times in emails and pages for a
	// site whose time zone the hub does not know (default UTC).
	Location *time.Location
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives the service's logs; nil discards them.
	Logger *slog.Logger
	// SiteAuth authenticates the sites' requests of the site endpoints
	// (SiteHandler); nil refuses every one.
	SiteAuth SiteAuth
}

// Sentinel errors; each carries the access code shown (see codeOf for the
// Connect codes).
var (
	// ErrNotFound (not_found): no such visit, visitor type or entry.
	ErrNotFound error = &access.Error{Code: access.NotFound, Msg: "not found"}
	// ErrState (conflict): the visit's state does not allow the change.
	ErrState error = &access.Error{Code: access.Conflict, Msg: "not allowed in the visit's state"}
	// ErrKeyReused (conflict): an idempotency key reused with another
	// request.
	ErrKeyReused error = &access.Error{Code: access.Conflict, Msg: "idempotency key already used for another request"}
)

// Service is the visitor service. It is safe for concurrent use.
type Service struct {
	cfg    Config
	state  *hubstate.State
	st     entities
	keys   *Keys
	ids    *access.IDGen
	out    *outbox
	log    *slog.Logger
	now    func() time.Time
	loc    *time.Location
	domain string
	csrf   []byte // key of the guest pages' form tokens

	timeIn timeIndex

	siteAuth SiteAuth
	follow   follower // the visits the replica's new deltas touch (arrival.go)

	stop    context.CancelFunc
	done    chan struct{}
	closeMu sync.Mutex
}

// New checks opts, opens (or makes) the token keys and returns the
// service. Open starts its outbox worker.
func New(opts Options) (*Service, error) {
	if opts.State == nil || opts.Store == nil {
		return nil, errors.New("visits: a state and its store are required")
	}
	if opts.KeyDir == "" {
		return nil, errors.New("visits: key_dir is required")
	}
	u, err := url.Parse(opts.PublicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("visits: public_url %q is not an http(s) URL", opts.PublicURL)
	}
	opts.PublicURL = strings.TrimRight(opts.PublicURL, "/")
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Location == nil {
		opts.Location = time.UTC
	}
	if opts.MessageIDDomain == "" {
		opts.MessageIDDomain = "gatehouse.invalid"
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = 5 * time.Second
	}
	if opts.RetryMax < opts.RetryMin {
		opts.RetryMax = max(opts.RetryMin, 10*time.Minute)
	}
	if opts.NoShowGrace <= 0 {
		opts.NoShowGrace = Duration(DefaultNoShowGrace)
	}
	if opts.ExpiryInterval <= 0 {
		opts.ExpiryInterval = Duration(DefaultExpiryInterval)
	}
	keys, err := OpenKeys(opts.KeyDir)
	if err != nil {
		return nil, err
	}
	csrf := make([]byte, 32)
	if _, err := randRead(csrf); err != nil {
		return nil, err
	}
	log := opts.Logger.With("component", "visits")
	return &Service{cfg: opts.Config, state: opts.State, st: opts.Store, keys: keys, ids: access.NewIDGen(nil),
		out: newOutbox(opts.Store, opts.Sender, log, opts.Now, opts.RetryMin, opts.RetryMax),
		log: log, now: opts.Now, loc: opts.Location, domain: opts.MessageIDDomain, csrf: csrf, siteAuth: opts.SiteAuth}, nil
}

// Open starts the outbox worker, which first sends whatever an earlier run
// left queued, and the visit watcher, which queues arrival emails and
// expires no-shows (arrival.go), starting with a full read of the replica.
func (s *Service) Open(context.Context) error {
	ctx, stop := context.WithCancel(context.Background())
	s.stop, s.done = stop, make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { s.out.run(ctx) })
	wg.Go(func() { s.watch(ctx) })
	go func() {
		wg.Wait()
		close(s.done)
	}()
	return nil
}

// Close stops the outbox worker and the visit watcher, abandoning an
// attempt in flight (it is made again on the next start). It is
// idempotent.
func (s *Service) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.stop != nil {
		s.stop()
		<-s.done
		s.stop = nil
	}
	return nil
}

// Keys returns the token keys.
func (s *Service) Keys() *Keys { return s.keys }

// newID returns a fresh ID.
func (s *Service) newID() (access.ID, error) { return s.ids.New(s.now()) }

// Duration is a time.Duration that reads and writes as a Go duration
// string ("1h", "90s") in configuration files.
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string such as "1h30m".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string like \"1h\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	if v < 0 {
		return fmt.Errorf("duration %q is negative", s)
	}
	*d = Duration(v)
	return nil
}

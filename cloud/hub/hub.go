// Package hub runs the Gatehouse cloud hub process: its HTTP server (Connect
// APIs over HTTP/1.1 and cleartext HTTP/2, and the web console; optionally a
// second listener over TLS for the sites, ServeTLS), the health view of the
// sites it knows and, when it has a store, its durable replica
// (cloud/hubstate) and the SyncService sites replicate with
// (cloud/syncserver, docs/sync.md).
package hub

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/mail"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/cloud/auth"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	gmail "github.com/gatehouse/gatehouse/cloud/mail"
	"github.com/gatehouse/gatehouse/cloud/people"
	"github.com/gatehouse/gatehouse/cloud/store"
	"github.com/gatehouse/gatehouse/cloud/store/badgerstore"
	"github.com/gatehouse/gatehouse/cloud/store/pgstore"
	"github.com/gatehouse/gatehouse/cloud/syncserver"
	"github.com/gatehouse/gatehouse/cloud/visits"
	"github.com/gatehouse/gatehouse/cloud/web"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/console/v1/consolev1connect"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/status/v1/statusv1connect"
	"github.com/gatehouse/gatehouse/replication"
)

// Config configures a hub.
type Config struct {
	// HTTPAddr is where the console and APIs are served, e.g. "127.0.0.1:8080".
	HTTPAddr string `json:"http_addr"`
	// Sites are the sites whose edge nodes the hub probes for health.
	Sites []SiteEndpoint `json:"sites"`
	// ProbeTimeout bounds one health probe, or one event read, of one node.
	ProbeTimeout Duration `json:"probe_timeout"`
	// EventPoll is how often the hub reads each site's new access events
	// for the console's live decisions.
	EventPoll Duration `json:"event_poll"`
	// Store is where the hub keeps its replicated state. Without one the
	// hub does not replicate: no SyncService is served.
	Store StoreConfig `json:"store"`
	// SyncSites are the sites allowed to replicate with the hub, each with
	// the bearer token it presents (docs/sync.md).
	SyncSites []SyncSite `json:"sync_sites"`
	// APIKeys are the API keys of the console APIs' callers (hashes only;
	// cloud/auth). Without any, those APIs refuse every call.
	APIKeys []auth.Key `json:"api_keys"`
	// Mail is the SMTP relay the hub's email goes through. Without an
	// addr nothing is sent: email waits in the visitor service's outbox.
	Mail gmail.Config `json:"mail"`
	// Visits configures the visitor service, served when the hub has a
	// store (docs/visitors.md). Its key_dir defaults to "token-keys" next
	// to store.dir; a PostgreSQL hub must set it.
	Visits visits.Config `json:"visits"`
	// Occupiers are the occupiers (tenants) known by name, so that CSV
	// imports of cardholders may name them (docs/cardholders.md).
	Occupiers []people.Occupier `json:"occupiers"`
	// Version is reported in status.
	Version string `json:"-"`
}

// StoreConfig names the hub's store: a Badger directory for a hub of one
// process, or a PostgreSQL connection string for several (docs/hub-store.md).
// At most one of Dir and DSN is set.
type StoreConfig struct {
	// Dir is the Badger directory.
	Dir string `json:"dir"`
	// DSN is the PostgreSQL connection string.
	DSN string `json:"dsn"`
	// Schema is the PostgreSQL schema; default "gatehouse".
	Schema string `json:"schema"`
}

// SyncSite is a site's sync credential.
type SyncSite struct {
	// ID is the site's ID, which is also its replication origin.
	ID string `json:"id"`
	// Token is the bearer token the site's uplink presents; at least 16
	// bytes, unique per site. Empty when the hub names its sites another
	// way (SetSyncAuthenticator, e.g. by client certificate): the site is
	// then only listed, for pending revocations and divergences.
	Token string `json:"token"`
}

// SiteEndpoint names a site and the local API addresses of its edge nodes.
type SiteEndpoint struct {
	// ID is the site's ID.
	ID string `json:"id"`
	// Name is the site's display name.
	Name string `json:"name"`
	// Nodes are the base URLs of the nodes' local APIs, e.g. "http://127.0.0.1:7001".
	Nodes []string `json:"nodes"`
	// APIToken is the site's local API token, which the hub needs to read
	// the site's access events; without it the console shows no decisions
	// from this site.
	APIToken string `json:"api_token"`
}

// DefaultConfig returns the configuration used when nothing is set.
func DefaultConfig() Config {
	return Config{HTTPAddr: "127.0.0.1:8080", ProbeTimeout: Duration(time.Second), EventPoll: Duration(time.Second)}
}

// Validate reports the first problem with the configuration.
func (c Config) Validate() error {
	if c.HTTPAddr == "" {
		return errors.New("hub config: http_addr is required")
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		return fmt.Errorf("hub config: http_addr %q: %w", c.HTTPAddr, err)
	}
	if c.ProbeTimeout <= 0 {
		return errors.New("hub config: probe_timeout must be positive")
	}
	if c.EventPoll <= 0 {
		return errors.New("hub config: event_poll must be positive")
	}
	if c.Store.Dir != "" && c.Store.DSN != "" {
		return errors.New("hub config: store: set dir or dsn, not both")
	}
	if len(c.SyncSites) > 0 {
		if c.Store.Dir == "" && c.Store.DSN == "" {
			return errors.New("hub config: sync_sites need a store (store.dir or store.dsn)")
		}
		if _, err := syncserver.TokenAuth(c.syncTokens()); err != nil {
			return fmt.Errorf("hub config: sync_sites: %w", err)
		}
		seen := map[string]bool{}
		for i, s := range c.SyncSites {
			if err := replication.ValidateOrigin(s.ID); err != nil || s.ID == "hub" {
				return fmt.Errorf("hub config: sync_sites[%d]: id %q is not a site's ID", i, s.ID)
			}
			if seen[s.ID] {
				return fmt.Errorf("hub config: sync_sites[%d]: site %s listed twice", i, s.ID)
			}
			seen[s.ID] = true
		}
	}
	if c.Mail.Addr != "" {
		if err := c.Mail.Validate(); err != nil {
			return fmt.Errorf("hub config: %w", err)
		}
	}
	if _, err := auth.NewKeyring(c.APIKeys); err != nil {
		return fmt.Errorf("hub config: api_keys: %w", err)
	}
	for i, s := range c.Sites {
		if s.ID == "" {
			return fmt.Errorf("hub config: sites[%d]: id is required", i)
		}
		if len(s.Nodes) == 0 {
			return fmt.Errorf("hub config: site %s: at least one node address is required", s.ID)
		}
	}
	return nil
}

// syncTokens returns the sync sites that have a token as syncserver wants
// them.
func (c Config) syncTokens() []syncserver.SiteToken {
	out := make([]syncserver.SiteToken, 0, len(c.SyncSites))
	for _, s := range c.SyncSites {
		if s.Token != "" {
			out = append(out, syncserver.SiteToken{Site: s.ID, Token: s.Token})
		}
	}
	return out
}

// Hub is a running cloud hub. Open starts it, Close stops it; Close is
// idempotent and safe to call from any goroutine.
type Hub struct {
	cfg     Config
	log     *slog.Logger
	started time.Time

	ln     net.Listener
	srv    *http.Server
	served chan error

	// The optional TLS listener for sites (ServeTLS).
	tlsAddr   string
	tlsCfg    *tls.Config
	tlsLn     net.Listener
	tlsSrv    *http.Server
	tlsServed chan error

	extra    map[string]http.Handler
	syncAuth syncserver.Authenticate // overrides the token check when set
	siteAuth syncserver.Authenticate // the sync service's, also for the visitor service's site endpoints
	store    store.Store
	state    *hubstate.State
	sync     *syncserver.Server
	visits   *visits.Service
	people   *people.Service
	feed     feed
	stopTail context.CancelFunc
	tails    sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// New returns a hub for cfg; it does nothing until Open.
func New(cfg Config, log *slog.Logger) *Hub {
	return &Hub{cfg: cfg, log: log.With("component", "hub")}
}

// Handle serves pattern with handler next to the hub's own routes, such as
// the demo's caught-mail pages. Call it before Open.
func (h *Hub) Handle(pattern string, handler http.Handler) {
	if h.extra == nil {
		h.extra = map[string]http.Handler{}
	}
	h.extra[pattern] = handler
}

// SetSyncAuthenticator makes fn name the site of every sync request instead
// of the configured per-site tokens: the hook for per-site client
// certificates (mTLS). Call it before Open.
func (h *Hub) SetSyncAuthenticator(fn syncserver.Authenticate) { h.syncAuth = fn }

// ServeTLS makes Open also serve the hub's routes on a second listener at
// addr, over TLS with cfg (HTTP/2 by ALPN, and HTTP/1.1): the listener
// sites reach the SyncService and the visitor service's site endpoints on,
// with their client certificates verified as cfg says (cloud/pki's
// Hub.ServerTLSConfig). Pair it with SetSyncAuthenticator so that the sync
// service names the site by its certificate. The HTTPAddr listener stays
// as it is. Call it before Open.
func (h *Hub) ServeTLS(addr string, cfg *tls.Config) { h.tlsAddr, h.tlsCfg = addr, cfg }

// State returns the hub's durable replica, or nil when the hub has no
// store. It is valid between Open and Close.
func (h *Hub) State() *hubstate.State { return h.state }

// openSync opens the store, the replica and the sync server when the hub
// has a store.
func (h *Hub) openSync(ctx context.Context) error {
	sc := h.cfg.Store
	if sc.Dir == "" && sc.DSN == "" {
		return nil
	}
	opts := store.Options{Kinds: slices.Concat(hubstate.Kinds, visits.Kinds), Logger: h.log.With("component", "store")}
	var err error
	if sc.Dir != "" {
		h.store, err = badgerstore.Open(ctx, sc.Dir, opts)
	} else {
		h.store, err = pgstore.Open(ctx, pgstore.Config{ConnString: sc.DSN, Schema: sc.Schema}, opts)
	}
	if err != nil {
		return fmt.Errorf("hub: open store: %w", err)
	}
	if h.state, err = hubstate.Open(ctx, h.store, hubstate.Options{Logger: h.log}); err != nil {
		return fmt.Errorf("hub: load replicated state: %w", err)
	}
	auth := h.syncAuth
	if auth == nil {
		if auth, err = syncserver.TokenAuth(h.cfg.syncTokens()); err != nil {
			return fmt.Errorf("hub: sync tokens: %w", err)
		}
		for _, s := range h.cfg.SyncSites {
			if s.Token == "" {
				h.log.Warn("sync site without a token: it cannot authenticate to this hub", "site", s.ID)
			}
		}
	}
	h.siteAuth = auth
	h.sync, err = syncserver.New(syncserver.Config{State: h.state, Leases: h.store, Authenticate: auth, Logger: h.log})
	return err
}

// openVisits opens the visitor service when the hub has a store and a
// key directory; the HTTP address must be bound (it is the default public
// URL).
func (h *Hub) openVisits(ctx context.Context) error {
	if h.state == nil {
		return nil
	}
	cfg := h.cfg.Visits
	if cfg.KeyDir == "" && h.cfg.Store.Dir != "" {
		cfg.KeyDir = filepath.Join(filepath.Dir(filepath.Clean(h.cfg.Store.Dir)), "token-keys")
	}
	if cfg.KeyDir == "" {
		h.log.Warn("no visits.key_dir: the visitor service is not served")
		return nil
	}
	if cfg.PublicURL == "" {
		cfg.PublicURL = "http://" + h.Addr()
	}
	opts := visits.Options{Config: cfg, State: h.state, Store: h.store, Logger: h.log, SiteAuth: h.siteAuth}
	if h.cfg.Mail.Addr != "" {
		sender, err := gmail.NewSender(h.cfg.Mail)
		if err != nil {
			return err
		}
		opts.Sender = sender
		if a, err := mail.ParseAddress(h.cfg.Mail.From); err == nil {
			_, opts.MessageIDDomain, _ = strings.Cut(a.Address, "@")
		}
	} else {
		h.log.Warn("no mail.addr: the hub sends no email; invitations wait in the outbox")
	}
	svc, err := visits.New(opts)
	if err != nil {
		return fmt.Errorf("hub: visitor service: %w", err)
	}
	h.visits = svc
	return svc.Open(ctx)
}

// Visits returns the visitor service, or nil when it is not served. It is
// valid between Open and Close.
func (h *Hub) Visits() *visits.Service { return h.visits }

// closeSync closes what openSync and openVisits opened, in order: streams,
// the visitor service's outbox, replica, store.
func (h *Hub) closeSync() error {
	var errs []error
	if h.visits != nil {
		errs = append(errs, h.visits.Close())
	}
	if h.people != nil {
		errs = append(errs, h.people.Close())
	}
	if h.sync != nil {
		errs = append(errs, h.sync.Close())
	}
	if h.state != nil {
		errs = append(errs, h.state.Close())
	}
	if h.store != nil {
		errs = append(errs, h.store.Close())
	}
	return errors.Join(errs...)
}

// Open validates the configuration, opens the store (if any), binds the
// HTTP address and starts serving. It returns an error if the store cannot
// be opened or the address bound.
func (h *Hub) Open(ctx context.Context) error {
	if err := h.cfg.Validate(); err != nil {
		return err
	}
	h.started = time.Now()
	if err := h.openSync(ctx); err != nil {
		return errors.Join(err, h.closeSync())
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", h.cfg.HTTPAddr)
	if err != nil {
		return errors.Join(fmt.Errorf("hub: listen %s: %w", h.cfg.HTTPAddr, err), h.closeSync())
	}
	h.ln = ln
	closeListeners := func() error { return ln.Close() }
	if h.tlsCfg != nil {
		tln, err := lc.Listen(ctx, "tcp", h.tlsAddr)
		if err != nil {
			return errors.Join(fmt.Errorf("hub: listen %s (TLS): %w", h.tlsAddr, err), ln.Close(), h.closeSync())
		}
		h.tlsLn = tln
		closeListeners = func() error { return errors.Join(ln.Close(), tln.Close()) }
	}
	if err := h.openVisits(ctx); err != nil {
		return errors.Join(err, closeListeners(), h.closeSync())
	}
	if err := h.openPeople(); err != nil {
		return errors.Join(err, closeListeners(), h.closeSync())
	}
	keyring, _ := auth.NewKeyring(h.cfg.APIKeys) // checked by Validate

	mux := http.NewServeMux()
	mux.Handle(statusv1connect.NewStatusServiceHandler(&statusService{hub: h}))
	mux.Handle(consolev1connect.NewConsoleServiceHandler(&consoleService{hub: h}))
	mux.Handle("/", web.Handler())
	if h.visits != nil {
		mux.Handle(h.visits.Handler(connect.WithInterceptors(keyring.Interceptor())))
		guest := h.visits.GuestHandler()
		mux.Handle("/guest/", guest)
		mux.Handle("GET /visits/token-keys", guest)
		site := h.visits.SiteHandler() // authenticated as a site, like the sync service
		mux.Handle(visits.SiteWatchlistPath, site)
		mux.Handle(visits.SiteVisitorTypesPath, site)
	}
	for pattern, handler := range h.extra {
		mux.Handle(pattern, handler)
	}
	mux.Handle("GET /metrics", h.MetricsHandler()) // Prometheus (divergences.go)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	// Every request body is bounded, except the sync stream's: it lives
	// long, and its server bounds each message instead.
	var handler http.Handler = http.MaxBytesHandler(mux, 4<<20)
	if h.sync != nil {
		syncPath, syncHandler := h.sync.Handler()
		outer := http.NewServeMux()
		outer.Handle(syncPath, syncHandler)
		h.mountPeople(outer, keyring) // bounds its own bodies (imports up to 64 MiB)
		outer.Handle("/", handler)
		handler = outer
	}

	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	h.srv = &http.Server{
		Handler:           handler,
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(h.log.Handler(), slog.LevelWarn),
	}
	h.served = make(chan error, 1)
	go func() { h.served <- h.srv.Serve(ln) }()
	if h.tlsLn != nil {
		var tp http.Protocols
		tp.SetHTTP1(true)
		tp.SetHTTP2(true)
		h.tlsSrv = &http.Server{
			Handler:           handler,
			Protocols:         &tp,
			TLSConfig:         h.tlsCfg,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(h.log.Handler(), slog.LevelWarn),
		}
		h.tlsServed = make(chan error, 1)
		go func() { h.tlsServed <- h.tlsSrv.ServeTLS(h.tlsLn, "", "") }()
	}
	tailCtx, stop := context.WithCancel(context.Background())
	h.stopTail = stop
	for _, site := range h.cfg.Sites {
		if site.APIToken == "" {
			h.log.Warn("no api_token for site: the console shows no decisions from it", "site", site.ID)
			continue
		}
		h.tails.Go(func() { h.tailSite(tailCtx, site) })
	}
	h.log.Info("hub serving", "addr", h.Addr(), "tls_addr", h.TLSAddr(), "sites", len(h.cfg.Sites), "replicating", h.sync != nil, "sync_sites", len(h.cfg.SyncSites))
	return nil
}

// Addr returns the bound address of the HTTP server (useful with port 0).
func (h *Hub) Addr() string {
	if h.ln == nil {
		return ""
	}
	return h.ln.Addr().String()
}

// TLSAddr returns the bound address of the TLS listener (ServeTLS), or ""
// without one.
func (h *Hub) TLSAddr() string {
	if h.tlsLn == nil {
		return ""
	}
	return h.tlsLn.Addr().String()
}

// URL returns the console URL.
func (h *Hub) URL() string { return "http://" + h.Addr() + "/" }

// Close stops the HTTP server, letting in-flight requests finish for up to
// five seconds.
func (h *Hub) Close() error {
	h.closeOnce.Do(func() {
		if h.srv == nil {
			return
		}
		h.stopTail()
		h.tails.Wait()
		// Sync streams first: they would hold Shutdown for its whole
		// timeout. Then HTTP, then the replica and the store last.
		if h.sync != nil {
			_ = h.sync.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.srv.Shutdown(ctx); err != nil {
			h.closeErr = fmt.Errorf("hub: shutdown: %w", err)
			_ = h.srv.Close()
		}
		if err := <-h.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.closeErr = errors.Join(h.closeErr, err)
		}
		if h.tlsSrv != nil {
			if err := h.tlsSrv.Shutdown(ctx); err != nil {
				h.closeErr = errors.Join(h.closeErr, fmt.Errorf("hub: shutdown TLS: %w", err))
				_ = h.tlsSrv.Close()
			}
			if err := <-h.tlsServed; err != nil && !errors.Is(err, http.ErrServerClosed) {
				h.closeErr = errors.Join(h.closeErr, err)
			}
		}
		h.closeErr = errors.Join(h.closeErr, h.closeSync())
		h.log.Info("hub stopped")
	})
	return h.closeErr
}

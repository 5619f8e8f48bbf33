// Package hub runs the Gatehouse cloud hub process: its HTTP server (Connect
// APIs over HTTP/1.1 and cleartext HTTP/2, and the web console), and the
// health view of the sites it knows.
package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/cloud/web"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/console/v1/consolev1connect"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/status/v1/statusv1connect"
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
	// Version is reported in status.
	Version string `json:"-"`
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

// Hub is a running cloud hub. Open starts it, Close stops it; Close is
// idempotent and safe to call from any goroutine.
type Hub struct {
	cfg     Config
	log     *slog.Logger
	started time.Time

	ln     net.Listener
	srv    *http.Server
	served chan error

	extra    map[string]http.Handler
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

// Open validates the configuration, binds the HTTP address and starts
// serving. It returns an error if the address cannot be bound.
func (h *Hub) Open(ctx context.Context) error {
	if err := h.cfg.Validate(); err != nil {
		return err
	}
	h.started = time.Now()
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", h.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("hub: listen %s: %w", h.cfg.HTTPAddr, err)
	}
	h.ln = ln

	mux := http.NewServeMux()
	mux.Handle(statusv1connect.NewStatusServiceHandler(&statusService{hub: h}))
	mux.Handle(consolev1connect.NewConsoleServiceHandler(&consoleService{hub: h}))
	mux.Handle("/", web.Handler())
	for pattern, handler := range h.extra {
		mux.Handle(pattern, handler)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})

	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	h.srv = &http.Server{
		Handler:           http.MaxBytesHandler(mux, 4<<20),
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(h.log.Handler(), slog.LevelWarn),
	}
	h.served = make(chan error, 1)
	go func() { h.served <- h.srv.Serve(ln) }()
	tailCtx, stop := context.WithCancel(context.Background())
	h.stopTail = stop
	for _, site := range h.cfg.Sites {
		if site.APIToken == "" {
			h.log.Warn("no api_token for site: the console shows no decisions from it", "site", site.ID)
			continue
		}
		h.tails.Go(func() { h.tailSite(tailCtx, site) })
	}
	h.log.Info("hub serving", "addr", h.Addr(), "sites", len(h.cfg.Sites))
	return nil
}

// Addr returns the bound address of the HTTP server (useful with port 0).
func (h *Hub) Addr() string {
	if h.ln == nil {
		return ""
	}
	return h.ln.Addr().String()
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
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.srv.Shutdown(ctx); err != nil {
			h.closeErr = fmt.Errorf("hub: shutdown: %w", err)
			_ = h.srv.Close()
		}
		if err := <-h.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.closeErr = errors.Join(h.closeErr, err)
		}
		h.log.Info("hub stopped")
	})
	return h.closeErr
}

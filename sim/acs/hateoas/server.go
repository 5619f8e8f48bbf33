// Package hateoas is a simulator of a third-party access-control system
// whose integration API is JSON REST in the style of Gallagher Command
// Centre ("gallagher-style"): clients hard-code only /api and follow the
// links it returns (path prefixes change at every boot); cardholders,
// cards with immutable numbers, access groups with memberships whose links
// change at every edit, doors and access zones; link-following pagination;
// cardholder creates that are not idempotent and answer 201 with only a
// Location header; a change feed and long-polled events. It stands behind
// the shared fault layer of package acs. docs/sim.md describes the API.
package hateoas

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/sim/acs"
)

// Config configures a Server. The zero value works.
type Config struct {
	// Seed makes IDs, the path prefix, the key and every fault roll
	// repeatable.
	Seed int64
	// APIKey is the key clients send as "Authorization: GGL-API-KEY <key>";
	// empty means one derived from Seed.
	APIKey string
	// Faults is the fault configuration at start.
	Faults acs.FaultConfig
	// Now is the base clock (time.Now when nil); tests inject a manual one.
	Now func() time.Time
	// StatePath, when set, is a JSON file the state is loaded from at
	// start and saved to after every change.
	StatePath string
	// Cardholders is how many synthetic cardholders a new state starts with.
	Cardholders int
	// LongPoll is how long events/updates waits for an event before it
	// answers an empty page (default 25s).
	LongPoll time.Duration
	// MaxEvents and MaxChanges bound the retained events and changes
	// (default 10000 each).
	MaxEvents, MaxChanges int
	// OnWait, when set, is called each time a long poll starts waiting
	// (tests use it to know a request is parked).
	OnWait func()
	// Log receives diagnostics; nil discards them.
	Log *slog.Logger
}

// DefaultLongPoll is how long a long poll waits by default.
const DefaultLongPoll = 25 * time.Second

// Server is the simulator: an http.Handler serving the API behind the
// fault layer. It is safe for concurrent use; Close stops it.
type Server struct {
	cfg    Config
	clock  *acs.Clock
	faults *acs.Faults
	log    *slog.Logger
	h      http.Handler

	mu      sync.Mutex
	st      *state
	rng     *rand.Rand
	key     string
	notify  chan struct{} // closed and replaced when an event is appended
	nonce   int64         // makes change bookmarks rotate
	waiting atomic.Int64
	closed  atomic.Bool
}

// New returns a simulator configured by cfg, loading its state from
// cfg.StatePath when that file exists. It returns an error for a wrong
// fault configuration or an unreadable state file.
func New(cfg Config) (*Server, error) {
	if cfg.LongPoll <= 0 {
		cfg.LongPoll = DefaultLongPoll
	}
	if cfg.MaxEvents <= 0 {
		cfg.MaxEvents = 10000
	}
	if cfg.MaxChanges <= 0 {
		cfg.MaxChanges = 10000
	}
	s := &Server{
		cfg:    cfg,
		clock:  acs.NewClock(cfg.Now),
		log:    cfg.Log,
		rng:    rand.New(rand.NewPCG(uint64(cfg.Seed), 0x6a11a6e7)),
		notify: make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.st = newState(s.rng, cfg.Cardholders, s.clock.Now())
	if cfg.StatePath != "" {
		var st state
		ok, err := acs.LoadState(cfg.StatePath, &st)
		if err != nil {
			return nil, err
		}
		if ok {
			st.fix()
			s.st = &st
		}
	}
	// A new path prefix at every boot: clients that build paths break.
	s.st.Boots++
	s.st.Prefix = randomWord(s.rng, 4)
	s.key = cfg.APIKey
	if s.key == "" {
		s.key = randomWord(s.rng, 8) + "-" + randomWord(s.rng, 8)
	}
	f, err := acs.NewFaults(cfg.Seed, cfg.Faults, s.clock, s, s.log)
	if err != nil {
		return nil, err
	}
	s.faults = f
	s.h = f.Handler(http.HandlerFunc(s.serveAPI))
	s.save()
	return s, nil
}

// ServeHTTP serves the API (behind the fault layer) and the admin endpoint.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.h.ServeHTTP(w, r) }

// Faults returns the fault layer, for tests and the command line.
func (s *Server) Faults() *acs.Faults { return s.faults }

// Clock returns the simulator's clock.
func (s *Server) Clock() *acs.Clock { return s.clock }

// APIKey returns the key in force (it changes when the fault layer
// revokes it).
func (s *Server) APIKey() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.key
}

// AuthHeader returns the Authorization header value clients must send.
func (s *Server) AuthHeader() string { return "GGL-API-KEY " + s.APIKey() }

// HoldOpen makes the cardholder with id look open in an operator's
// editor: writes to it get 409 naming operator until Release. It returns
// false when there is no such cardholder.
func (s *Server) HoldOpen(id, operator string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.Cardholders[id] == nil {
		return false
	}
	s.st.Held[id] = operator
	return true
}

// Release undoes HoldOpen.
func (s *Server) Release(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.st.Held, id)
}

// Close stops the fault layer's operator and saves the state; it is
// idempotent.
func (s *Server) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.faults.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.StatePath == "" {
		return nil
	}
	return acs.SaveState(s.cfg.StatePath, s.st)
}

// save writes the state file, if any; s.mu may or may not be held by the
// caller: it takes a snapshot under the lock only when not.
func (s *Server) saveLocked() {
	if s.cfg.StatePath == "" {
		return
	}
	if err := acs.SaveState(s.cfg.StatePath, s.st); err != nil {
		s.log.Error("acs state not saved", "err", err)
	}
}

func (s *Server) save() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.saveLocked()
}

// apiError is the API's error body.
type apiError struct {
	Message string `json:"message"`
}

func (s *Server) writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (s *Server) fail(w http.ResponseWriter, code int, format string, a ...any) {
	s.writeJSON(w, code, apiError{Message: fmt.Sprintf(format, a...)})
}

// errBad is a 400 with a message, from validation.
type errBad struct{ msg string }

func (e *errBad) Error() string { return e.msg }

func bad(format string, a ...any) error { return &errBad{fmt.Sprintf(format, a...)} }

// failErr answers err: 400 for validation errors, 500 otherwise.
func (s *Server) failErr(w http.ResponseWriter, err error) {
	var b *errBad
	if errors.As(err, &b) {
		s.fail(w, http.StatusBadRequest, "%s", b.msg)
		return
	}
	var c *errConflict
	if errors.As(err, &c) {
		s.fail(w, http.StatusConflict, "%s", c.msg)
		return
	}
	s.fail(w, http.StatusInternalServerError, "%v", err)
}

type errConflict struct{ msg string }

func (e *errConflict) Error() string { return e.msg }

// serveAPI routes an API request.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Date", s.clock.Now().UTC().Format(http.TimeFormat))
	if r.Header.Get("Authorization") != s.AuthHeader() {
		s.fail(w, http.StatusUnauthorized, "Authorization header missing or not a valid API key (want \"GGL-API-KEY <key>\")")
		return
	}
	p := strings.Trim(r.URL.Path, "/")
	if p == "api" {
		if r.Method != http.MethodGet {
			s.fail(w, http.StatusMethodNotAllowed, "method %s not allowed on /api", r.Method)
			return
		}
		s.root(w, r)
		return
	}
	parts := strings.Split(p, "/")
	s.mu.Lock()
	prefix := s.st.Prefix
	s.mu.Unlock()
	if len(parts) < 3 || parts[0] != "api" || parts[1] != prefix {
		s.fail(w, http.StatusNotFound, "not found: %s (follow the links from /api; do not build paths)", r.URL.Path)
		return
	}
	parts = parts[2:]
	route := parts[0]
	for i := 1; i < len(parts); i++ {
		if i%2 == 1 && parts[i] != "" && !isWord(parts[i]) {
			route += "/{}"
		} else {
			route += "/" + parts[i]
		}
	}
	s.dispatch(w, r, r.Method+" "+route, parts)
}

func (s *Server) dispatch(w http.ResponseWriter, r *http.Request, route string, parts []string) {
	id := func(i int) string { return parts[i] }
	switch route {
	case "GET cardholders":
		s.listCardholders(w, r)
	case "POST cardholders":
		s.createCardholder(w, r)
	case "GET cardholders/changes":
		s.changes(w, r)
	case "GET cardholders/{}":
		s.getCardholder(w, r, id(1))
	case "PATCH cardholders/{}":
		s.patchCardholder(w, r, id(1))
	case "DELETE cardholders/{}":
		s.deleteCardholder(w, r, id(1))
	case "GET cardholders/{}/cards/{}", "GET cardholders/{}/access_groups/{}":
		s.fail(w, http.StatusNotFound, "this link can be PATCHed in its cardholder or DELETEd, not read")
	case "DELETE cardholders/{}/cards/{}":
		s.deleteLink(w, r, id(1), "cards", id(3))
	case "DELETE cardholders/{}/access_groups/{}":
		s.deleteLink(w, r, id(1), "access_groups", id(3))
	case "GET access_groups", "GET card_types", "GET doors", "GET access_zones", "GET divisions", "GET personal_data_fields":
		s.listFixed(w, r, parts[0])
	case "GET access_groups/{}", "GET doors/{}", "GET access_zones/{}", "GET divisions/{}", "GET card_types/{}", "GET personal_data_fields/{}":
		s.getFixed(w, r, parts[0], id(1))
	case "GET access_groups/{}/cardholders":
		s.groupMembers(w, r, id(1))
	case "POST doors/{}/open":
		s.openDoor(w, r, id(1))
	case "GET events":
		s.events(w, r, false)
	case "GET events/updates":
		s.events(w, r, true)
	default:
		s.fail(w, http.StatusNotFound, "not found: %s %s", r.Method, r.URL.Path)
	}
}

// isWord reports whether a path segment is a collection or action name
// (as opposed to an ID).
func isWord(seg string) bool {
	switch seg {
	case "cards", "access_groups", "cardholders", "changes", "updates", "open":
		return true
	}
	return false
}

// base returns the scheme and host hrefs are built from: the request's
// Host header, as the real API does.
func base(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// href returns the link to a path under the API prefix.
func (s *Server) href(r *http.Request, prefix string, path ...string) string {
	return base(r) + "/api/" + prefix + "/" + strings.Join(path, "/")
}

// ref is a link in a reply.
type ref struct {
	Href string `json:"href"`
	Name string `json:"name,omitempty"`
}

func (s *Server) root(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	p := s.st.Prefix
	s.mu.Unlock()
	l := func(path string) map[string]string { return map[string]string{"href": s.href(r, p, path)} }
	s.writeJSON(w, http.StatusOK, map[string]any{
		"version": "8.90.0 (gatehouse acs sim)",
		"features": map[string]any{
			"cardholders":        map[string]any{"cardholders": l("cardholders"), "changes": l("cardholders/changes")},
			"accessGroups":       map[string]any{"accessGroups": l("access_groups")},
			"cardTypes":          map[string]any{"cardTypes": l("card_types")},
			"doors":              map[string]any{"doors": l("doors")},
			"accessZones":        map[string]any{"accessZones": l("access_zones")},
			"divisions":          map[string]any{"divisions": l("divisions")},
			"personalDataFields": map[string]any{"personalDataFields": l("personal_data_fields")},
			"events":             map[string]any{"events": l("events"), "updates": l("events/updates")},
		},
	})
}

// randomWord returns n lower-case letters and digits, starting with a letter.
func randomWord(rng *rand.Rand, n int) string {
	const letters, alnum = "abcdefghijkmnpqrstuvwxyz", "abcdefghijkmnpqrstuvwxyz23456789"
	b := make([]byte, n)
	b[0] = letters[rng.IntN(len(letters))]
	for i := 1; i < n; i++ {
		b[i] = alnum[rng.IntN(len(alnum))]
	}
	return string(b)
}

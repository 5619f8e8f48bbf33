// Package xmlcmd is a simulator of a third-party access-control system
// whose integration API is an XML command RPC in the style of LenelS2
// NetBox ("netbox-style"): one POST endpoint taking <NETBOX-API> commands;
// Login returns a session ID that expires when idle; every reply is HTTP
// 200 with SUCCESS, FAIL, NOT FOUND or DUPLICATE (or an APIERROR number)
// in the body; person IDs are chosen by the caller; access levels are
// assigned by name and a plain list replaces them all; dates are local
// time of the site's zone with no offset in the text; listings page with
// a cursor that ends at -1; and the access history is a ring buffer that
// overwrites old entries, so a slow poller sees gaps. It stands behind the
// shared fault layer of package acs. docs/sim.md describes the API.
package xmlcmd

import (
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	_ "time/tzdata" // the site's zone on hosts without a zone database

	"github.com/gatehouse/gatehouse/sim/acs"
)

// Path is the API's endpoint; LegacyPath answers 410 Gone.
const (
	Path       = "/nbws/goforms/nbapi"
	LegacyPath = "/goforms/nbapi"
)

// Config configures a Server. The zero value works.
type Config struct {
	// Seed makes session IDs, synthetic data and fault rolls repeatable.
	Seed int64
	// Username and Password are the API login (default "admin" and a
	// password derived from Seed).
	Username, Password string
	// Faults is the fault configuration at start.
	Faults acs.FaultConfig
	// Now is the base clock (time.Now when nil); tests inject a manual one.
	Now func() time.Time
	// Location is the site's time zone, in which dates are read and
	// written (default America/New_York).
	Location *time.Location
	// SessionIdle is how long a session lives unused (default 30 min).
	SessionIdle time.Duration
	// PageSize is how many records a listing returns per page (default 100).
	PageSize int
	// EventLog is how many access-history records the ring holds (default 1000).
	EventLog int
	// People is how many synthetic people a new state starts with.
	People int
	// StatePath, when set, is a JSON file the state is loaded from at
	// start and saved to after every change.
	StatePath string
	// Log receives diagnostics; nil discards them.
	Log *slog.Logger
}

// Server is the simulator: an http.Handler serving the API behind the
// fault layer. It is safe for concurrent use; Close stops it.
type Server struct {
	cfg    Config
	clock  *acs.Clock
	faults *acs.Faults
	log    *slog.Logger
	h      http.Handler

	mu       sync.Mutex
	st       *state
	rng      *rand.Rand
	sessions map[string]time.Time // session ID → last use
	logins   int64
	closed   atomic.Bool
}

// New returns a simulator configured by cfg, loading its state from
// cfg.StatePath when that file exists. It returns an error for a wrong
// fault configuration or an unreadable state file.
func New(cfg Config) (*Server, error) {
	if cfg.Location == nil {
		loc, err := time.LoadLocation("America/New_York")
		if err != nil {
			return nil, fmt.Errorf("site time zone: %w", err)
		}
		cfg.Location = loc
	}
	if cfg.SessionIdle <= 0 {
		cfg.SessionIdle = 30 * time.Minute
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = 100
	}
	if cfg.EventLog <= 0 {
		cfg.EventLog = 1000
	}
	s := &Server{
		cfg: cfg, clock: acs.NewClock(cfg.Now), log: cfg.Log,
		rng:      rand.New(rand.NewPCG(uint64(cfg.Seed), 0x0e7b0c5)),
		sessions: map[string]time.Time{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.cfg.Username == "" {
		s.cfg.Username = "admin"
	}
	if s.cfg.Password == "" {
		s.cfg.Password = fmt.Sprintf("pw-%06d", s.rng.IntN(1000000))
	}
	s.st = newState(s.rng, cfg.People, s.clock.Now())
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
	f, err := acs.NewFaults(cfg.Seed, cfg.Faults, s.clock, s, s.log)
	if err != nil {
		return nil, err
	}
	s.faults = f
	mux := http.NewServeMux()
	mux.HandleFunc(Path, s.serveAPI)
	mux.HandleFunc(LegacyPath, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "410 Gone: the API moved to "+Path, http.StatusGone)
	})
	s.h = f.Handler(mux)
	return s, nil
}

// ServeHTTP serves the API (behind the fault layer) and the admin endpoint.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.h.ServeHTTP(w, r) }

// Faults returns the fault layer, for tests and the command line.
func (s *Server) Faults() *acs.Faults { return s.faults }

// Clock returns the simulator's clock.
func (s *Server) Clock() *acs.Clock { return s.clock }

// Credentials returns the API login.
func (s *Server) Credentials() (user, password string) { return s.cfg.Username, s.cfg.Password }

// Sessions returns how many sessions are open (not logged out, not yet
// found expired), which shows clients that never log out.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
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

func (s *Server) saveLocked() {
	if s.cfg.StatePath == "" {
		return
	}
	if err := acs.SaveState(s.cfg.StatePath, s.st); err != nil {
		s.log.Error("acs state not saved", "err", err)
	}
}

// Result codes in a reply's CODE.
const (
	Success   = "SUCCESS"
	Fail      = "FAIL"
	NotFound  = "NOT FOUND"
	Duplicate = "DUPLICATE"
)

// APIERROR numbers (our mapping; see docs/sim.md).
const (
	APIErrMalformed = 1
	APIErrAuth      = 5
	APIErrUnknown   = 6
)

type reply struct {
	XMLName   xml.Name  `xml:"NETBOX"`
	SessionID string    `xml:"sessionid,attr,omitempty"`
	Response  replyBody `xml:"RESPONSE"`
}

type replyBody struct {
	Command  string   `xml:"command,attr,omitempty"`
	Num      string   `xml:"num,attr,omitempty"`
	APIError int      `xml:"APIERROR,omitempty"`
	Code     string   `xml:"CODE,omitempty"`
	Details  *details `xml:"DETAILS"`
}

type details struct {
	ErrMsg string `xml:"ERRMSG,omitempty"`
	Inner  []byte `xml:",innerxml"`
}

// result is what a command returns: a code and details.
type result struct {
	code    string
	errmsg  string
	details any // marshalled inside DETAILS
	commit  bool
}

func ok(v any) result { return result{code: Success, details: v} }
func failf(code, format string, a ...any) result {
	return result{code: code, errmsg: fmt.Sprintf(format, a...)}
}

func (s *Server) write(w http.ResponseWriter, session string, rb replyBody) {
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	b, err := xml.Marshal(reply{SessionID: session, Response: rb})
	if err != nil {
		b = []byte("<NETBOX><RESPONSE><APIERROR>1</APIERROR></RESPONSE></NETBOX>")
	}
	w.Write(b)
}

// serveAPI answers POST Path.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Date", s.clock.Now().UTC().Format(http.TimeFormat))
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "405 method not allowed: POST the APIcommand form", http.StatusMethodNotAllowed)
		return
	}
	body, err := acs.ReadBody(r, acs.MaxBody)
	if errors.Is(err, acs.ErrBodyTooLarge) {
		http.Error(w, fmt.Sprintf("413 request body larger than %d bytes", acs.MaxBody), http.StatusRequestEntityTooLarge)
		return
	}
	if err == nil {
		body, err = formBody(body, r.Header.Get("Content-Type"))
	}
	var c *command
	if err == nil {
		c, err = decodeCommand(body)
	}
	if err != nil {
		s.write(w, "", replyBody{APIError: APIErrMalformed, Details: &details{ErrMsg: err.Error()}})
		return
	}
	rb := replyBody{Command: c.Name, Num: c.Num}
	handler, known := commands[c.Name]
	if !known {
		rb.APIError = APIErrUnknown
		rb.Details = &details{ErrMsg: "unknown command " + c.Name}
		s.write(w, c.SessionID, rb)
		return
	}
	now := s.clock.Now()
	s.mu.Lock()
	session := c.SessionID
	if c.Name == "Login" {
		session = ""
	} else if !s.touch(session, now) {
		s.mu.Unlock()
		rb.APIError = APIErrAuth
		rb.Details = &details{ErrMsg: "no session, or the session expired: Login again"}
		s.write(w, "", rb)
		return
	}
	res := handler(s, c, now)
	if c.Name == "Login" && res.code == Success {
		session = res.details.(loginDetails).sessionID
		res.details = nil
	}
	if c.Name == "Logout" {
		session = ""
	}
	if res.commit {
		s.saveLocked()
	}
	s.mu.Unlock()
	if res.commit {
		acs.MarkCommitted(r.Context())
	}
	rb.Code = res.code
	d := &details{ErrMsg: res.errmsg}
	if res.details != nil {
		b, err := xml.Marshal(res.details)
		if err != nil {
			rb.Code, d = Fail, &details{ErrMsg: err.Error()}
		} else {
			d.Inner = b
		}
	}
	if d.ErrMsg != "" || d.Inner != nil {
		rb.Details = d
	}
	s.write(w, session, rb)
}

// touch reports whether session is open at now and, if so, renews it.
// An expired session is forgotten. s.mu must be held.
func (s *Server) touch(session string, now time.Time) bool {
	last, ok := s.sessions[session]
	if !ok || session == "" {
		return false
	}
	if now.Sub(last) >= s.cfg.SessionIdle {
		delete(s.sessions, session)
		return false
	}
	s.sessions[session] = now
	return true
}

// The fault layer's hooks (acs.Target).

// FailAuth drops every session and lets r go on: it gets APIERROR 5
// (unless it is a Login), and so does every request after it until the
// client logs in again.
func (s *Server) FailAuth(w http.ResponseWriter, r *http.Request) bool {
	s.ExpireAuth()
	return false
}

// ExpireAuth drops every session.
func (s *Server) ExpireAuth() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.sessions)
	clear(s.sessions)
	return fmt.Sprintf("%d sessions expired", n)
}

// WriteThrottled answers a throttled request as the web server in front
// of the API would: a plain-text 429 with no Retry-After.
func (s *Server) WriteThrottled(w http.ResponseWriter, status int) {
	http.Error(w, strconv.Itoa(status)+" too many requests", status)
}

// OperatorEdit changes a person out of band, as a directory sync or an
// operator would: it rewrites UDF1, replaces the access levels, renames,
// or soft-deletes.
func (s *Server) OperatorEdit(rng *rand.Rand) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var live []*person
	for _, p := range s.st.sorted() {
		if !p.Deleted {
			live = append(live, p)
		}
	}
	if len(live) == 0 {
		return ""
	}
	p := live[rng.IntN(len(live))]
	var what string
	switch rng.IntN(4) {
	case 0:
		p.UDF["UDF1"] = fmt.Sprintf("sync-%d", rng.IntN(10000))
		what = "rewrote UDF1 of"
	case 1:
		p.Levels = []string{s.st.Levels[rng.IntN(len(s.st.Levels))].Name}
		what = "replaced the access levels of"
	case 2:
		p.Last += "-X"
		what = "renamed"
	case 3:
		p.Deleted = true
		what = "soft-deleted"
	}
	s.saveLocked()
	return fmt.Sprintf("operator %s person %s", what, p.PersonID)
}

// InjectEvents appends n access events by random people at random
// readers to the access history.
func (s *Server) InjectEvents(n int) {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	people := s.st.sorted()
	for i := 0; i < n; i++ {
		pt := s.st.Portals[s.rng.IntN(len(s.st.Portals))]
		rd := pt.Readers[s.rng.IntN(len(pt.Readers))]
		e := accessEvent{Time: now, Portal: pt.Key, Reader: rd.Name, Type: "1", Reason: ""}
		e.Description = "Access granted"
		if len(people) > 0 {
			p := people[s.rng.IntN(len(people))]
			e.PersonID = p.PersonID
			if p.Deleted || s.rng.IntN(5) == 0 {
				e.Type, e.Reason, e.Description = "2", "Invalid access level", "Access denied"
			}
		}
		s.st.appendEvent(s.cfg.EventLog, e)
	}
	s.saveLocked()
}

// sorted returns the people by key.
func (st *state) sorted() []*person {
	out := make([]*person, 0, len(st.People))
	for _, p := range st.People {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

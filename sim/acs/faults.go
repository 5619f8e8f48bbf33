package acs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// FaultConfig says which faults the fault layer injects. The zero value
// injects none. Rates are shares from 0 to 1, rolled on a random source
// seeded at start, so that a run with the same seed and the same requests
// in the same order sees the same faults.
type FaultConfig struct {
	// Drop is the share of requests that changed something whose reply is
	// lost after the change was saved.
	Drop float64 `json:"drop"`
	// DropMode is how a reply is lost: "close" (the connection is closed
	// without a reply, the default) or "502" (a proxy's Bad Gateway).
	DropMode string `json:"drop_mode,omitempty"`
	// Throttle is the share of requests answered 429 Too Many Requests
	// without a Retry-After header, before they do anything.
	Throttle float64 `json:"throttle"`
	// AuthFail is the share of requests whose credential fails as if it had
	// expired or been revoked: the XML style drops every session (the
	// client must log in again), the REST style answers that request 401.
	AuthFail float64 `json:"auth_fail"`
	// Operator is how often a background operator edits or deletes a
	// record out of band (0: never).
	Operator Duration `json:"operator"`
	// Skew is how far the simulator's clock is ahead of the real one
	// (negative: behind).
	Skew Duration `json:"skew"`
}

// Drop modes.
const (
	DropClose = "close"
	Drop502   = "502"
)

// Validate reports the first wrong field.
func (c FaultConfig) Validate() error {
	for _, r := range []struct {
		name string
		v    float64
	}{{"drop", c.Drop}, {"throttle", c.Throttle}, {"auth_fail", c.AuthFail}} {
		if !(r.v >= 0 && r.v <= 1) {
			return fmt.Errorf("fault %s = %v: want a share from 0 to 1", r.name, r.v)
		}
	}
	if c.DropMode != "" && c.DropMode != DropClose && c.DropMode != Drop502 {
		return fmt.Errorf("fault drop_mode %q: want close or 502", c.DropMode)
	}
	if c.Operator < 0 {
		return fmt.Errorf("fault operator = %v: want a positive interval or 0", time.Duration(c.Operator))
	}
	return nil
}

// String returns c in the syntax ParseFaults reads.
func (c FaultConfig) String() string {
	var p []string
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	if c.Drop > 0 {
		p = append(p, "drop="+f(c.Drop))
	}
	if c.DropMode != "" {
		p = append(p, "drop-mode="+c.DropMode)
	}
	if c.Throttle > 0 {
		p = append(p, "throttle="+f(c.Throttle))
	}
	if c.AuthFail > 0 {
		p = append(p, "auth-fail="+f(c.AuthFail))
	}
	if c.Operator > 0 {
		p = append(p, "operator="+c.Operator.String())
	}
	if c.Skew != 0 {
		p = append(p, "skew="+c.Skew.String())
	}
	return strings.Join(p, ",")
}

// ParseFaults reads a fault list such as
// "drop=0.1,drop-mode=502,throttle=0.05,auth-fail=0.01,operator=10s,skew=-90s".
// An empty string means no faults.
func ParseFaults(s string) (FaultConfig, error) {
	var c FaultConfig
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		k, v, ok := strings.Cut(item, "=")
		if !ok {
			return c, fmt.Errorf("fault %q: want name=value", item)
		}
		var err error
		switch strings.ReplaceAll(k, "_", "-") {
		case "drop":
			c.Drop, err = strconv.ParseFloat(v, 64)
		case "drop-mode":
			c.DropMode = v
		case "throttle", "429":
			c.Throttle, err = strconv.ParseFloat(v, 64)
		case "auth-fail":
			c.AuthFail, err = strconv.ParseFloat(v, 64)
		case "operator":
			err = c.Operator.Set(v)
		case "skew":
			err = c.Skew.Set(v)
		default:
			return c, fmt.Errorf("unknown fault %q (want drop, drop-mode, throttle, auth-fail, operator or skew)", k)
		}
		if err != nil {
			return c, fmt.Errorf("fault %s: %w", k, err)
		}
	}
	return c, c.Validate()
}

// FaultCounts counts what the fault layer did.
type FaultCounts struct {
	Requests      int64 `json:"requests"`
	Throttled     int64 `json:"throttled"`
	Dropped       int64 `json:"dropped"`
	AuthFailed    int64 `json:"auth_failed"`
	AuthExpired   int64 `json:"auth_expired"`
	OperatorEdits int64 `json:"operator_edits"`
	Injected      int64 `json:"injected_events"`
}

// Target is what the fault layer needs from a simulator. Its methods are
// called concurrently with requests.
type Target interface {
	// FailAuth makes r's credential fail. It returns true when it has
	// answered r itself, false when r should go on to the API (which will
	// then find the credential gone).
	FailAuth(w http.ResponseWriter, r *http.Request) bool
	// ExpireAuth expires every session or revokes the API key, and
	// returns what a client needs to know (such as a new key).
	ExpireAuth() string
	// OperatorEdit changes or deletes one record out of band, choosing it
	// with rng, and describes what it did ("" when there was nothing).
	OperatorEdit(rng *rand.Rand) string
	// InjectEvents appends n synthetic access events.
	InjectEvents(n int)
	// WriteThrottled answers a throttled request in the API's error format
	// with the given status.
	WriteThrottled(w http.ResponseWriter, status int)
}

// Faults is the fault layer: middleware in front of a simulator's API, the
// admin endpoint under AdminPrefix, and the background operator. It is
// safe for concurrent use; Close stops the operator.
type Faults struct {
	seed   int64
	clock  *Clock
	target Target
	log    *slog.Logger

	mu  sync.Mutex
	cfg FaultConfig
	rng *rand.Rand // request faults

	opMu  sync.Mutex
	opRng *rand.Rand // operator's choices

	requests, throttled, dropped, authFailed, authExpired, edits, injected atomic.Int64

	changed   chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// AdminPrefix is the path prefix of the admin endpoint.
const AdminPrefix = "/_sim/"

// NewFaults returns a fault layer for target with cfg in force, rolling on
// a source seeded with seed, and starts its background operator. clock's
// skew follows the configuration. It returns an error when cfg is wrong.
func NewFaults(seed int64, cfg FaultConfig, clock *Clock, target Target, log *slog.Logger) (*Faults, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Faults{
		seed: seed, clock: clock, target: target, log: log, cfg: cfg,
		rng:     rand.New(rand.NewPCG(uint64(seed), 0x5eed_fa17)),
		opRng:   rand.New(rand.NewPCG(uint64(seed), 0x0be7a70e)),
		changed: make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	clock.SetSkew(time.Duration(cfg.Skew))
	f.wg.Add(1)
	go f.operatorLoop()
	return f, nil
}

// Config returns the configuration in force.
func (f *Faults) Config() FaultConfig {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cfg
}

// Set puts cfg in force at once. It returns an error, and changes
// nothing, when cfg is wrong.
func (f *Faults) Set(cfg FaultConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	f.mu.Lock()
	f.cfg = cfg
	f.mu.Unlock()
	f.clock.SetSkew(time.Duration(cfg.Skew))
	select {
	case f.changed <- struct{}{}:
	default:
	}
	f.log.Info("acs faults set", "faults", cfg.String())
	return nil
}

// Counts returns what the layer has done so far.
func (f *Faults) Counts() FaultCounts {
	return FaultCounts{
		Requests: f.requests.Load(), Throttled: f.throttled.Load(), Dropped: f.dropped.Load(),
		AuthFailed: f.authFailed.Load(), AuthExpired: f.authExpired.Load(),
		OperatorEdits: f.edits.Load(), Injected: f.injected.Load(),
	}
}

// Operate makes one out-of-band operator edit now and describes it.
func (f *Faults) Operate() string {
	f.opMu.Lock()
	d := f.target.OperatorEdit(f.opRng)
	f.opMu.Unlock()
	if d != "" {
		f.edits.Add(1)
		f.log.Info("acs operator edit", "edit", d)
	}
	return d
}

// ExpireAuth expires every session or revokes the key now.
func (f *Faults) ExpireAuth() string {
	f.authExpired.Add(1)
	return f.target.ExpireAuth()
}

// Inject appends n synthetic access events.
func (f *Faults) Inject(n int) {
	f.injected.Add(int64(n))
	f.target.InjectEvents(n)
}

// Close stops the background operator; it is idempotent.
func (f *Faults) Close() {
	f.closeOnce.Do(func() { close(f.done) })
	f.wg.Wait()
}

func (f *Faults) operatorLoop() {
	defer f.wg.Done()
	for {
		var tick <-chan time.Time
		var t *time.Timer
		if d := time.Duration(f.Config().Operator); d > 0 {
			t = time.NewTimer(d)
			tick = t.C
		}
		select {
		case <-f.done:
			if t != nil {
				t.Stop()
			}
			return
		case <-f.changed:
			if t != nil {
				t.Stop()
			}
		case <-tick:
			f.Operate()
		}
	}
}

// roll reports whether a fault of share p happens now.
func (f *Faults) roll(p float64) bool {
	if p <= 0 {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rng.Float64() < p
}

type ctxKey struct{}

type reqState struct{ committed atomic.Bool }

// MarkCommitted records that the request of ctx has saved a change, which
// makes its reply eligible to be lost. Handlers call it after the change
// is in their state; outside the fault layer it does nothing.
func MarkCommitted(ctx context.Context) {
	if s, ok := ctx.Value(ctxKey{}).(*reqState); ok {
		s.committed.Store(true)
	}
}

// bufferedWriter holds a reply until the fault layer has decided whether
// to deliver it.
type bufferedWriter struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func (b *bufferedWriter) Header() http.Header { return b.h }
func (b *bufferedWriter) WriteHeader(code int) {
	if b.code == 0 {
		b.code = code
	}
}
func (b *bufferedWriter) Write(p []byte) (int, error) {
	if b.code == 0 {
		b.code = http.StatusOK
	}
	return b.body.Write(p)
}

// Handler returns api behind the fault layer, with the admin endpoint
// under AdminPrefix (which no fault touches and which needs no
// credential: the simulators are test tools for loopback).
func (f *Faults) Handler(api http.Handler) http.Handler {
	admin := f.adminHandler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, AdminPrefix) {
			admin.ServeHTTP(w, r)
			return
		}
		f.requests.Add(1)
		cfg := f.Config()
		if f.roll(cfg.Throttle) {
			f.throttled.Add(1)
			f.target.WriteThrottled(w, http.StatusTooManyRequests)
			return
		}
		if f.roll(cfg.AuthFail) {
			f.authFailed.Add(1)
			if f.target.FailAuth(w, r) {
				return
			}
		}
		st := &reqState{}
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, st))
		bw := &bufferedWriter{h: w.Header()}
		api.ServeHTTP(bw, r)
		if st.committed.Load() && f.roll(cfg.Drop) {
			f.dropped.Add(1)
			f.log.Info("acs reply dropped after commit", "method", r.Method, "path", r.URL.Path, "mode", cfg.DropMode)
			if cfg.DropMode == Drop502 {
				clear(w.Header())
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(http.StatusBadGateway)
				fmt.Fprint(w, "<html><body><h1>502 Bad Gateway</h1></body></html>\n")
				return
			}
			// Closes the connection without a reply; net/http does not log it.
			panic(http.ErrAbortHandler)
		}
		if bw.code == 0 {
			bw.code = http.StatusOK
		}
		w.WriteHeader(bw.code)
		w.Write(bw.body.Bytes())
	})
}

// adminState is what GET /_sim/faults answers.
type adminState struct {
	Seed   int64       `json:"seed"`
	Config FaultConfig `json:"config"`
	Counts FaultCounts `json:"counts"`
}

func (f *Faults) adminHandler() http.Handler {
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(v)
	}
	fail := func(w http.ResponseWriter, code int, err error) {
		reply(w, code, map[string]string{"error": err.Error()})
	}
	state := func(w http.ResponseWriter) {
		reply(w, http.StatusOK, adminState{Seed: f.seed, Config: f.Config(), Counts: f.Counts()})
	}
	mux.HandleFunc("GET /_sim/faults", func(w http.ResponseWriter, r *http.Request) { state(w) })
	set := func(w http.ResponseWriter, r *http.Request) {
		b, err := ReadBody(r, 64<<10)
		if err != nil {
			fail(w, http.StatusRequestEntityTooLarge, err)
			return
		}
		// Fields left out keep their value.
		cfg := f.Config()
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			fail(w, http.StatusBadRequest, fmt.Errorf("fault configuration: %w", err))
			return
		}
		if err := f.Set(cfg); err != nil {
			fail(w, http.StatusBadRequest, err)
			return
		}
		state(w)
	}
	mux.HandleFunc("PUT /_sim/faults", set)
	mux.HandleFunc("POST /_sim/faults", set)
	mux.HandleFunc("POST /_sim/expire", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, map[string]string{"detail": f.ExpireAuth()})
	})
	mux.HandleFunc("POST /_sim/operator", func(w http.ResponseWriter, r *http.Request) {
		d := f.Operate()
		if d == "" {
			d = "nothing to edit"
		}
		reply(w, http.StatusOK, map[string]string{"detail": d})
	})
	mux.HandleFunc("POST /_sim/events", func(w http.ResponseWriter, r *http.Request) {
		n := 1
		if s := r.URL.Query().Get("n"); s != "" {
			v, err := strconv.Atoi(s)
			if err != nil || v < 1 || v > 100000 {
				fail(w, http.StatusBadRequest, errors.New("n: want a count from 1 to 100000"))
				return
			}
			n = v
		}
		f.Inject(n)
		reply(w, http.StatusOK, map[string]int{"injected": n})
	})
	return mux
}

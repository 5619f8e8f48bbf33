// Package runner runs scenarios (sim/scenario) against a real site: it
// applies a scenario's setup through the site's local API (SiteService.Apply,
// commissioning every reader, door controller, kiosk and dispenser as a
// device with a random secret), connects a simulated device (sim/device)
// for each to the site's MQTT brokers, round-robin over the addresses it is
// given, runs the steps on the scenario's clock, prints a timeline line per
// step as it runs and a summary table at the end, and reports whether every
// expectation held. Load runs a
// scenario's people through many readers at a fixed rate instead (open
// loop), printing latency percentiles and rates every second.
//
// Synchronisation never sleeps: a tap waits for its decision (matched by
// request ID) up to a deadline, and a change waits for the site's
// acknowledgement and then until every node of the site reports having
// applied it, polling each node's status with a deadline. The only sleeping
// is until a step's scheduled time, which is the scenario's clock.
//
// When a run ends (also on failure or cancellation) the runner removes what
// it can of what it made: the readers (devices) and the people, which frees
// their card numbers. The site has no command to remove zones, doors,
// schedules or groups, so those stay, named "NAME (sim FILE)".
//
// A Runner is safe for concurrent use; each Run or Load works on its own
// copy of the scenario's entities, but two runs at once against one site
// must not use the same card numbers.
package runner

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
	edgev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1/edgev1connect"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
	statusv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/status/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/status/v1/statusv1connect"
	"github.com/gatehouse/gatehouse/sim/fault"
)

// Defaults of Config.
const (
	// DefaultChangeTimeout bounds a change: its acknowledgement by the site
	// and its application at every node.
	DefaultChangeTimeout = 10 * time.Second
	// DefaultConnectTimeout bounds connecting the readers.
	DefaultConnectTimeout = 15 * time.Second
	// DefaultExpectTimeout is how long an expect step waits when it has
	// no "within".
	DefaultExpectTimeout = 5 * time.Second
	// maxApplyBatch is the most commands sent in one Apply call (the site
	// takes up to 1000).
	maxApplyBatch = 500
)

// ErrSetup reports a scenario whose setup the site refused, or a site the
// runner could not reach or connect readers to; the run did not start.
var ErrSetup = errors.New("setup failed")

// Config configures a Runner.
type Config struct {
	// Node is the base URL of any edge node's local API of the site, such
	// as http://127.0.0.1:7001.
	Node string
	// APIToken is the site's local API token.
	APIToken string
	// Brokers are the MQTT broker addresses readers connect to (host:port
	// or URLs), round-robin in the order of the scenario's readers.
	Brokers []string
	// TLS, when set, is used for brokers given as host:port.
	TLS *tls.Config
	// HTTPClient calls the local API (default http.DefaultClient).
	HTTPClient *http.Client
	// DecisionTimeout is how long a tap waits for its decision (default
	// mqttproto.DecisionTimeout, what a real device waits); a tap with a
	// longer "within" bound waits that long.
	DecisionTimeout time.Duration
	// ChangeTimeout bounds each change (default DefaultChangeTimeout).
	ChangeTimeout time.Duration
	// Keep leaves everything the run made at the site (and the door
	// controllers' storage).
	Keep bool
	// Heartbeat is the site's heartbeat interval to door controllers
	// (default mqttproto.HeartbeatInterval); a controller is cut off after
	// 3 of them without a word from the site. It must match the site's.
	Heartbeat time.Duration
	// ControllerDecisionTimeout is how long a door controller waits for
	// the site's decision before deciding alone (default
	// mqttproto.DecisionTimeout, what a real controller waits).
	ControllerDecisionTimeout time.Duration
	// StateDir is where door controllers keep their storage, one
	// directory each; empty: a temporary directory per run.
	StateDir string
	// ExpectTimeout is how long an expect step without "within" waits
	// (default DefaultExpectTimeout).
	ExpectTimeout time.Duration
	// Faults causes the faults that need the site (restart broker, kill
	// and restart node); default fault.Unsupported.
	Faults fault.Faults
	// Out receives the timeline, the live load lines and the summaries
	// (default io.Discard).
	Out io.Writer
	// Log receives diagnostics (default: discard).
	Log *slog.Logger
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	switch {
	case c.Node == "":
		return errors.New("runner: the URL of an edge node's local API is required")
	case !strings.HasPrefix(c.Node, "http://") && !strings.HasPrefix(c.Node, "https://"):
		return fmt.Errorf("runner: node %q: want a URL such as http://127.0.0.1:7001", c.Node)
	case c.APIToken == "":
		return errors.New("runner: the site's API token is required")
	case len(c.Brokers) == 0:
		return errors.New("runner: at least one MQTT broker address is required")
	case c.DecisionTimeout < 0 || c.ChangeTimeout < 0 || c.Heartbeat < 0 || c.ControllerDecisionTimeout < 0 || c.ExpectTimeout < 0:
		return errors.New("runner: timeouts must not be negative")
	}
	for _, b := range c.Brokers {
		if strings.TrimSpace(b) == "" {
			return errors.New("runner: empty MQTT broker address")
		}
	}
	return nil
}

// Runner runs scenarios against one site. Make it with New.
type Runner struct {
	cfg    Config
	log    *slog.Logger
	site   edgev1connect.SiteServiceClient
	status func(base string) statusv1connect.StatusServiceClient
	ids    *access.IDGen
}

// New returns a runner for cfg (defaults filled in), or cfg's validation
// error. It does not contact the site.
func New(cfg Config) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.DecisionTimeout == 0 {
		cfg.DecisionTimeout = mqttproto.DecisionTimeout
	}
	if cfg.ChangeTimeout == 0 {
		cfg.ChangeTimeout = DefaultChangeTimeout
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.ExpectTimeout == 0 {
		cfg.ExpectTimeout = DefaultExpectTimeout
	}
	if cfg.Faults == nil {
		cfg.Faults = fault.Unsupported{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	node := strings.TrimRight(cfg.Node, "/")
	hc := cfg.HTTPClient
	return &Runner{
		cfg:  cfg,
		log:  cfg.Log,
		site: edgev1connect.NewSiteServiceClient(hc, node, connect.WithInterceptors(bearer(cfg.APIToken))),
		status: func(base string) statusv1connect.StatusServiceClient {
			return statusv1connect.NewStatusServiceClient(hc, strings.TrimRight(base, "/"))
		},
		ids: access.NewIDGen(nil),
	}, nil
}

// bearer adds the site's API token to every call.
func bearer(token string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+token)
			return next(ctx, req)
		}
	}
}

// newID returns a fresh entity ID.
func (r *Runner) newID() string {
	id, err := r.ids.New(time.Now())
	if err != nil {
		panic(err) // only past the year 10889 or after 2^80 IDs in a millisecond
	}
	return string(id)
}

// siteInfo is what the runner learns of the site before a run.
type siteInfo struct {
	id      string
	name    string
	members []member
}

// member is one node of the site.
type member struct {
	id  string
	api string
}

// siteInfo asks the configured node for its site and members.
func (r *Runner) siteInfo(ctx context.Context) (siteInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := r.status(r.cfg.Node).GetStatus(ctx, connect.NewRequest(&statusv1.GetStatusRequest{}))
	if err != nil {
		return siteInfo{}, fmt.Errorf("ask %s for its site: %w", r.cfg.Node, err)
	}
	sites := res.Msg.GetSites()
	if res.Msg.GetSelf().GetKind() != "edge" || len(sites) != 1 {
		return siteInfo{}, fmt.Errorf("%s is not an edge node (it reports %d sites)", r.cfg.Node, len(sites))
	}
	info := siteInfo{id: sites[0].GetSiteId(), name: sites[0].GetName()}
	for _, n := range sites[0].GetNodes() {
		info.members = append(info.members, member{id: n.GetId(), api: n.GetApiAddr()})
	}
	if len(info.members) == 0 {
		info.members = []member{{id: res.Msg.GetSelf().GetId(), api: r.cfg.Node}}
	}
	return info, nil
}

// applied is how far a change got: acknowledged by the site and applied at
// some of its nodes.
type applied struct {
	results []*edgev1.CommandResult
	ack     time.Duration // from sending to the site's acknowledgement
	nodes   int           // members that reported applying it
	of      int           // members of the site
	all     time.Duration // from sending until applied at every reachable member
}

// change commits cmds through Apply and waits until every member of the
// site has applied them. It returns the results (a command's domain error is
// in its result) or an error when the commands were not committed, or were
// not applied at a reachable member before ctx ended.
func (r *Runner) change(ctx context.Context, site siteInfo, cmds []*raftv1.Command) (applied, error) {
	start := time.Now()
	res, err := r.apply(ctx, cmds)
	if err != nil {
		return applied{}, err
	}
	a := applied{results: res, ack: time.Since(start), of: len(site.members)}
	var last uint64
	for _, x := range res {
		last = max(last, x.GetIndex())
	}
	a.nodes, err = r.waitApplied(ctx, site, last)
	a.all = time.Since(start)
	return a, err
}

// apply sends cmds in batches, stamping each with a request ID so that a
// retry after a lost answer changes nothing twice, and retrying while the
// site has no leader, until ctx ends.
func (r *Runner) apply(ctx context.Context, cmds []*raftv1.Command) ([]*edgev1.CommandResult, error) {
	for _, c := range cmds {
		if c.RequestId == "" {
			c.RequestId = "sim:" + r.newID()
		}
		if c.Actor == "" {
			c.Actor = "sim"
		}
	}
	var out []*edgev1.CommandResult
	for len(cmds) > 0 {
		batch := cmds[:min(len(cmds), maxApplyBatch)]
		cmds = cmds[len(batch):]
		backoff := 20 * time.Millisecond
		for {
			res, err := r.site.Apply(ctx, connect.NewRequest(&edgev1.ApplyRequest{Commands: batch}))
			if err == nil {
				if len(res.Msg.GetResults()) != len(batch) {
					return nil, fmt.Errorf("apply: %d results for %d commands", len(res.Msg.GetResults()), len(batch))
				}
				out = append(out, res.Msg.GetResults()...)
				break
			}
			if code := connect.CodeOf(err); code != connect.CodeUnavailable && code != connect.CodeDeadlineExceeded || ctx.Err() != nil {
				return nil, fmt.Errorf("apply: %w", err)
			}
			r.log.Warn("apply: site unavailable, retrying", "err", err)
			if serr := sleep(ctx, backoff); serr != nil {
				return nil, fmt.Errorf("apply: %w (last: %v)", serr, err)
			}
			backoff = min(2*backoff, time.Second)
		}
	}
	return out, nil
}

// waitApplied polls every member's own status until it reports an applied
// index of at least index, and returns how many did. A member that does not
// answer at all is left out (a node that is down serves no taps); one that
// answers but has not applied the index when ctx ends is an error.
func (r *Runner) waitApplied(ctx context.Context, site siteInfo, index uint64) (int, error) {
	done := 0
	for _, m := range site.members {
		ok, err := r.waitMember(ctx, m, index)
		if err != nil {
			return done, err
		}
		if ok {
			done++
		}
	}
	return done, nil
}

// waitMember waits until member m reports index applied. It reports false
// when m does not answer its first status call.
func (r *Runner) waitMember(ctx context.Context, m member, index uint64) (bool, error) {
	poll := 2 * time.Millisecond
	var got uint64
	answered := false
	for {
		n, err := r.appliedIndex(ctx, m)
		switch {
		case err == nil:
			answered, got = true, n
			if n >= index {
				return true, nil
			}
		case !answered:
			r.log.Warn("node does not answer; not waiting for it", "node", m.id, "api", m.api, "err", err)
			return false, nil
		}
		if err := sleep(ctx, poll); err != nil {
			return false, fmt.Errorf("node %s has applied up to index %d, not %d: %w", m.id, got, index, err)
		}
		poll = min(2*poll, 50*time.Millisecond)
	}
}

// sleep waits d or until ctx ends, and returns ctx's error then.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// appliedIndex asks member m for its own applied index.
func (r *Runner) appliedIndex(ctx context.Context, m member) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	res, err := r.status(m.api).GetStatus(ctx, connect.NewRequest(&statusv1.GetStatusRequest{}))
	if err != nil {
		return 0, err
	}
	self := res.Msg.GetSelf().GetId()
	for _, s := range res.Msg.GetSites() {
		for _, n := range s.GetNodes() {
			if n.GetId() == self {
				return n.GetAppliedIndex(), nil
			}
		}
	}
	return 0, fmt.Errorf("node %s does not report itself", m.id)
}

// resultErrors describes every failed result (whats[i] describes the
// command of results[i]) whose code is not one of ignore.
func resultErrors(results []*edgev1.CommandResult, whats []string, ignore ...string) []string {
	var errs []string
	for i, res := range results {
		code := res.GetErrorCode()
		if code == "" {
			continue
		}
		skip := false
		for _, c := range ignore {
			skip = skip || c == code
		}
		if !skip {
			errs = append(errs, whats[i]+": "+code+": "+res.GetError())
		}
	}
	return errs
}

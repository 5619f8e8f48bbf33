package sim_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/edge/node"
	"github.com/gatehouse/gatehouse/edge/raftnode"
	"github.com/gatehouse/gatehouse/sim/fault"
	"github.com/gatehouse/gatehouse/sim/runner"
	"github.com/gatehouse/gatehouse/sim/scenario"
)

const (
	testSite  = "01JS1MTEST0S1TE00000000000"
	testToken = "sim-api-token"
)

// syncBuffer collects a runner's output; the runner writes from one
// goroutine but the test reads it after.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// faultSite is an in-process site whose brokers are reached through fault
// proxies, so that it can offer a scenario the faults only a site can cause
// (fault.Faults): a killed node is closed, a restarted one opened again on
// its data at its old addresses, and a broker restart is its node's
// restart (the embedded broker lives and dies with its node).
type faultSite struct {
	t       *testing.T
	log     *slog.Logger
	mu      sync.Mutex
	nodes   []*node.Node // nil while killed
	cfgs    []node.Config
	proxies []*fault.Proxy
}

var _ fault.Faults = (*faultSite)(nil)

// brokers returns the proxies' addresses, in node order.
func (s *faultSite) brokers() []string {
	var out []string
	for _, p := range s.proxies {
		out = append(out, p.Addr())
	}
	return out
}

func (s *faultSite) node(n int) (*node.Node, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n < 1 || n > len(s.nodes) {
		return nil, fmt.Errorf("no node %d (the site has %d)", n, len(s.nodes))
	}
	return s.nodes[n-1], nil
}

// KillNode closes node n.
func (s *faultSite) KillNode(_ context.Context, n int) error {
	nd, err := s.node(n)
	if err != nil {
		return err
	}
	if nd == nil {
		return fmt.Errorf("node %d is not running", n)
	}
	s.mu.Lock()
	s.nodes[n-1] = nil
	s.mu.Unlock()
	return nd.Close()
}

// RestartNode opens node n again on its data and addresses, and returns
// once it holds a leader lease (decides under the online rule).
func (s *faultSite) RestartNode(ctx context.Context, n int) error {
	nd, err := s.node(n)
	if err != nil {
		return err
	}
	if nd != nil {
		return fmt.Errorf("node %d is running", n)
	}
	nd = node.New(s.cfgs[n-1], s.log)
	if err := nd.Open(ctx); err != nil {
		return fmt.Errorf("reopen node %d: %w", n, err)
	}
	s.mu.Lock()
	s.nodes[n-1] = nd
	s.mu.Unlock()
	for !nd.Raft().LeaseValid(time.Now()) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %d has no leader lease: %w", n, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// RestartBroker restarts node n, and with it its embedded broker.
func (s *faultSite) RestartBroker(ctx context.Context, n int) error {
	if err := s.KillNode(ctx, n); err != nil {
		return err
	}
	return s.RestartNode(ctx, n)
}

// mustOpenSite starts an n-node site on loopback, each node with its
// embedded MQTT broker, and closes it at cleanup (the pattern of
// edge/node's MustOpenSite).
func mustOpenSite(t *testing.T, n int) []*node.Node {
	return mustOpenTestSite(t, n).nodes
}

// mustOpenTestSite is mustOpenSite with the faults: each broker behind a
// proxy, and each node's addresses kept so that it can be opened again.
func mustOpenTestSite(t *testing.T, n int) *faultSite {
	t.Helper()
	log := slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir := t.TempDir()
	site := &faultSite{t: t, log: log}
	var nodes []*node.Node
	t.Cleanup(func() {
		site.mu.Lock()
		defer site.mu.Unlock()
		for i := len(site.nodes) - 1; i >= 0; i-- {
			if site.nodes[i] == nil {
				continue
			}
			if err := site.nodes[i].Close(); err != nil {
				t.Errorf("close node %d: %v", i+1, err)
			}
		}
		for _, p := range site.proxies {
			p.Close()
		}
	})
	for i := range n {
		cfg := node.Config{
			NodeID: fmt.Sprintf("n%d", i+1), SiteID: testSite, SiteName: "Sim test", TimeZone: "Europe/Berlin",
			DataDir: filepath.Join(dir, fmt.Sprint(i)), RaftAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0",
			ClusterToken: "cluster-secret", APIToken: testToken,
			// Timeouts that outlast the stalls of a loaded CI machine: a
			// node that loses its lease in the middle of a scenario decides
			// under the offline rule (no_offline_access), and the scenario
			// fails, rightly, but not because of the site.
			TuneRaft: func(c *raftnode.Config) {
				c.HeartbeatTimeout = 2 * time.Second
				c.ElectionTimeout = 2 * time.Second
				c.LeaderLeaseTimeout = 2 * time.Second
			},
		}
		if i == 0 {
			cfg.Bootstrap = true
		} else {
			cfg.Join = nodes[0].URL()
		}
		nd := node.New(cfg, log)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := nd.Open(ctx)
		cancel()
		if err != nil {
			t.Fatalf("open %s: %v", cfg.NodeID, err)
		}
		nodes = append(nodes, nd)
		site.mu.Lock()
		site.nodes = nodes
		site.mu.Unlock()
		// Opened again, the node takes the same addresses, and no longer
		// bootstraps or joins (it has its Raft state).
		cfg.RaftAddr, cfg.APIAddr, cfg.MQTTListen = nd.Raft().RaftAddr(), strings.TrimPrefix(nd.URL(), "http://"), nd.MQTTAddr()
		cfg.Bootstrap, cfg.Join = false, ""
		site.cfgs = append(site.cfgs, cfg)
		p, err := fault.Listen("127.0.0.1:0", nd.MQTTAddr(), log)
		if err != nil {
			t.Fatal(err)
		}
		site.proxies = append(site.proxies, p)
	}
	// Every node decides under the online rule once it holds a lease.
	deadline := time.Now().Add(20 * time.Second)
	for _, nd := range nodes {
		for !nd.Raft().LeaseValid(time.Now()) {
			if time.Now().After(deadline) {
				t.Fatalf("%s has no leader lease after 20 s", nd.Raft().Status().NodeID)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return site
}

// newRunner returns a runner against nodes, its node API at nodes[api] and
// its readers round-robin over every node's broker.
func newRunner(t *testing.T, nodes []*node.Node, api int, out *syncBuffer) *runner.Runner {
	t.Helper()
	var brokers []string
	for _, n := range nodes {
		brokers = append(brokers, n.MQTTAddr())
	}
	r, err := runner.New(runner.Config{
		Node: nodes[api].URL(), APIToken: testToken, Brokers: brokers, Out: out,
		DecisionTimeout: 5 * time.Second, // a CI machine may stall; latency bounds are the scenarios' own
		Log:             slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestScenarios runs every scenario in sim/scenarios against a real 3-node
// site, readers spread over the three nodes' brokers, and checks every
// expectation holds. It also checks the runner fails a scenario whose
// expectation is wrong, with a report that says which step and why, and
// refuses a scenario whose card numbers the site already uses.
func TestScenarios(t *testing.T) {
	nodes := mustOpenSite(t, 3)
	files, err := filepath.Glob("scenarios/*.scn")
	if err != nil || len(files) < 2 {
		t.Fatalf("scenario files: %v %v", files, err)
	}
	var reports []*runner.Report
	for i, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if raceEnabled && filepath.Base(f) == "cutoff.scn" {
				// Its controllers lose their link while they publish, and
				// paho.mqtt.golang v1.5.1 then races with itself when it
				// resends the publish from its store on reconnect (it sets
				// the DUP bit while its writer reads the packet;
				// eclipse-paho/paho.mqtt.golang#703, open). The race is in
				// the library; `make test` runs this scenario without the
				// detector.
				t.Skip("paho.mqtt.golang#703: data race inside paho when it resumes a session")
			}
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			scn, err := scenario.Parse(filepath.Base(f), src)
			if err != nil {
				t.Fatal(err)
			}
			var out syncBuffer
			// Talk to a different node's API for each file: any node
			// takes the setup and the changes.
			r := newRunner(t, nodes, i%len(nodes), &out)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			rep, err := r.Run(ctx, scn)
			t.Log("\n" + out.String())
			if err != nil {
				t.Fatal(err)
			}
			reports = append(reports, rep)
			if len(rep.Steps) != len(scn.Steps) || !rep.OK() {
				t.Fatalf("%s: %d of %d steps ran, %d failed", scn.Name, len(rep.Steps), len(scn.Steps), rep.Failed())
			}
			if got := strings.Count(out.String(), "\n"); got < len(scn.Steps)+2 {
				t.Errorf("timeline has %d lines for %d steps", got, len(scn.Steps))
			}
			if len(scn.Controllers)+len(scn.Kiosks)+len(scn.Dispensers) > 0 {
				return // a few decisions by the site; not one per node
			}
			// Every broker answered some of the taps.
			deciders := map[string]bool{}
			for _, s := range rep.Steps {
				if s.Decision != nil {
					deciders[s.Decision.Node] = true
				}
			}
			if len(deciders) != len(nodes) {
				t.Errorf("decisions came from %v, want every node", deciders)
			}
		})
	}
	var sum bytes.Buffer
	if err := runner.WriteSummary(&sum, reports); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + sum.String())
	if !strings.Contains(sum.String(), "PASS: all") {
		t.Errorf("summary does not pass:\n%s", sum.String())
	}

	t.Run("Load", func(t *testing.T) {
		src, err := os.ReadFile("scenarios/lobby.scn")
		if err != nil {
			t.Fatal(err)
		}
		scn, err := scenario.Parse("lobby.scn", src)
		if err != nil {
			t.Fatal(err)
		}
		var out syncBuffer
		rep, err := newRunner(t, nodes, 1, &out).Load(context.Background(), scn,
			runner.LoadConfig{Readers: 6, Rate: 100, Duration: 2 * time.Second, Interval: 500 * time.Millisecond})
		t.Log("\n" + out.String())
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK() || rep.Sent != 200 || len(rep.Latencies) != 200 {
			t.Fatalf("sent %d, decided %d, no decision %d, errors %d, skipped %d", rep.Sent, rep.Decided, rep.NoDecision, rep.Errors, rep.Skipped)
		}
		for _, reason := range []access.Reason{access.ReasonGranted, access.ReasonUnknownCard, access.ReasonPersonInactive} {
			if rep.Reasons[reason] == 0 {
				t.Errorf("no %s decisions in %v", reason, rep.Reasons)
			}
		}
		if n := strings.Count(out.String(), "\n"); n < 6 || !strings.Contains(out.String(), "PASS: every tap was decided in time") {
			t.Errorf("live lines or summary missing")
		}
	})

	t.Run("ErrWrongExpectation", func(t *testing.T) {
		scn, err := scenario.Parse("wrong.scn", []byte(`# The second tap is granted, not denied.
door d
group g doors d
person p access-user card 42001 groups g
reader r door d
tap 42001 at r expect grant
tap 42001 at r expect deny anti_passback
tap 42999 at r expect deny
`))
		if err != nil {
			t.Fatal(err)
		}
		var out syncBuffer
		rep, err := newRunner(t, nodes, 1, &out).Run(context.Background(), scn)
		if err != nil {
			t.Fatal(err)
		}
		var sum bytes.Buffer
		if err := runner.WriteSummary(&sum, []*runner.Report{rep}); err != nil {
			t.Fatal(err)
		}
		t.Log("\n" + out.String() + "\n" + sum.String())
		if rep.OK() || rep.Failed() != 1 || rep.Passed() != 2 {
			t.Fatalf("passed %d, failed %d; want 2 and 1", rep.Passed(), rep.Failed())
		}
		if got := rep.Steps[1]; got.Pass || got.Failure != "want deny anti_passback, got grant" {
			t.Errorf("step 2: pass %v, failure %q", got.Pass, got.Failure)
		}
		for _, want := range []string{
			"FAIL: want deny anti_passback, got grant",
			"wrong.scn:7  tap 42001 at r expect deny anti_passback: want deny anti_passback, got grant",
			"FAIL: 1 of 3 steps failed",
		} {
			if !strings.Contains(out.String()+sum.String(), want) {
				t.Errorf("output lacks %q", want)
			}
		}
	})

	t.Run("ErrLatencyBound", func(t *testing.T) {
		// A bound of 1ms: a decision over loopback may or may not make it,
		// and the verdict must agree with the latency measured.
		scn, err := scenario.Parse("slow.scn", []byte("door d\nreader r door d\ntap 42998 at r expect deny unknown_card within 1ms\n"))
		if err != nil {
			t.Fatal(err)
		}
		var out syncBuffer
		rep, err := newRunner(t, nodes, 0, &out).Run(context.Background(), scn)
		if err != nil {
			t.Fatal(err)
		}
		s := rep.Steps[0]
		if s.Decision == nil || s.Decision.Reason != access.ReasonUnknownCard {
			t.Fatalf("step %+v", s)
		}
		if over := s.Latency > time.Millisecond; over == s.Pass || over && !strings.Contains(s.Failure, "over the bound of 1ms") {
			t.Errorf("latency %v, pass %v, failure %q", s.Latency, s.Pass, s.Failure)
		}
	})

	t.Run("ErrCardInUse", func(t *testing.T) {
		// Run a scenario with a card but keep it, so the number stays
		// taken; the next scenario with that number must be refused, and
		// must leave nothing behind.
		src := []byte("door d\nperson p access-user card 42002\nreader r door d\ntap 42002 at r expect deny no_group\n")
		scn, err := scenario.Parse("keep.scn", src)
		if err != nil {
			t.Fatal(err)
		}
		var out syncBuffer
		keep, err := runner.New(runner.Config{Node: nodes[0].URL(), APIToken: testToken, Brokers: []string{nodes[0].MQTTAddr()}, Out: &out, Keep: true})
		if err != nil {
			t.Fatal(err)
		}
		if rep, err := keep.Run(context.Background(), scn); err != nil || !rep.OK() {
			t.Fatalf("keep run: %v\n%s", err, out.String())
		}
		scn2, err := scenario.Parse("clash.scn", []byte("door d\nperson q access-user card 42002\nperson r access-user card 42003\nreader r door d\ntap 42002 at r\n"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = newRunner(t, nodes, 2, &out).Run(context.Background(), scn2)
		if !errors.Is(err, runner.ErrSetup) || !strings.Contains(err.Error(), "clash.scn:2: card 42002 of q") || !strings.Contains(err.Error(), "conflict") {
			t.Fatalf("err = %v, want a setup error naming card 42002 at line 2", err)
		}
		t.Log(err)
		// The refused run removed its people: card 42003 is free again.
		var free bool
		nodes[0].Machine().View(func(st *access.State) { _, bound := st.CardByNumber(42003); free = !bound })
		if !free {
			t.Error("card 42003 of the refused scenario is still bound")
		}
	})
}

// TestFaults runs a scenario with the faults only a site can cause, against
// a site of its own whose brokers are behind fault proxies: a node killed
// and restarted, a broker restarted (its node's), a reader cut off and
// restored; the readers reconnect by themselves and taps keep being
// decided. Against a site that cannot cause them (fault.Unsupported), the
// same steps fail with a clear reason.
func TestFaults(t *testing.T) {
	site := mustOpenTestSite(t, 3)
	src := `door d
group g doors d
person p access-user offline-access card 42101 groups g
reader r1 door d broker 1
reader r3 door d broker 3
controller c door d broker 2

at 0s  tap 42101 at r1 expect grant
       kill node 3
       tap 42101 at r1 expect grant
       cut reader r1
       expect reader r1 offline within 5s
       restore reader r1
       expect reader r1 online within 10s
       tap 42101 at r1 expect grant
       restart node 3
       expect reader r3 online within 10s
       tap 42101 at r3 expect grant
       restart broker 2
       expect event offline_started at controller c within 5s
       expect event offline_ended at controller c within 20s
       badge card 42101 at door d via controller c expect grant
`
	scn, err := scenario.Parse("faults.scn", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	r, err := runner.New(runner.Config{
		Node: site.nodes[0].URL(), APIToken: testToken, Brokers: site.brokers(), Out: &out,
		DecisionTimeout: 5 * time.Second, ChangeTimeout: 20 * time.Second, Faults: site,
		Log: slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rep, err := r.Run(ctx, scn)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || len(rep.Steps) != len(scn.Steps) {
		t.Fatalf("%d of %d steps ran, %d failed", len(rep.Steps), len(scn.Steps), rep.Failed())
	}

	t.Run("ErrUnsupported", func(t *testing.T) {
		scn, err := scenario.Parse("nofaults.scn", []byte("door d\nreader r door d\nkill node 1\n"))
		if err != nil {
			t.Fatal(err)
		}
		var out syncBuffer
		rep, err := newRunner(t, site.nodes[:1], 0, &out).Run(context.Background(), scn)
		if err != nil {
			t.Fatal(err)
		}
		if s := rep.Steps[0]; s.Pass || !strings.Contains(s.Failure, "unsupported here") {
			t.Fatalf("step %+v", s)
		}
	})
}

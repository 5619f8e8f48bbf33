package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/auth"
	"github.com/gatehouse/gatehouse/edge/node"
	consolev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/console/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/console/v1/consolev1connect"
	statusv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/status/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/status/v1/statusv1connect"
)

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a running command.
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

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb syncBuffer
	code = Run(context.Background(), args, env{stdout: &out, stderr: &errb})
	return code, out.String(), errb.String()
}

func TestRunUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"NoArgs", nil, 2, "Commands:"},
		{"Help", []string{"--help"}, 0, "Commands:"},
		{"Version", []string{"version"}, 0, "gatehouse"},
		{"ErrUnknownCommand", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"ErrUnknownBench", []string{"bench", "nope"}, 2, `unknown benchmark "nope"`},
		{"ErrBenchNoName", []string{"bench"}, 2, "name a benchmark"},
		{"ErrCtlVerb", []string{"ctl", "site", "explode"}, 2, "unknown verb"},
		{"ErrEdgeNoNodeID", []string{"edge", "--site-id", demoSiteID, "--cluster-token", "x", "--api-token", "y"}, 2, "node_id is required"},
		{"ErrEdgeBadSite", []string{"edge", "--node-id", "n1", "--site-id", "nope", "--cluster-token", "x", "--api-token", "y"}, 2, "site_id"},
		{"ErrEdgeNoAPIToken", []string{"edge", "--node-id", "n1", "--site-id", demoSiteID, "--cluster-token", "x"}, 2, "api_token is required"},
		{"ErrEdgeNoToken", []string{"edge", "--node-id", "n1", "--site-id", demoSiteID}, 2, "cluster_token is required"},
		{"ErrEdgeBootstrapAndJoin", []string{"edge", "--node-id", "n1", "--site-id", demoSiteID, "--cluster-token", "x", "--api-token", "y", "--bootstrap", "--join", "http://127.0.0.1:1"}, 2, "exclude each other"},
		{"ErrDemoNodes", []string{"demo", "--nodes", "2"}, 2, "--nodes must be 1, 3 or 5"},
		{"ErrDemoTapRate", []string{"demo", "--tap-rate", "0"}, 2, "--tap-rate"},
		{"ErrCloudArgs", []string{"cloud", "extra"}, 2, "unexpected arguments"},
		{"ErrSimNoMQTT", []string{"sim", "run", "lobby.scn", "--api-token", "t"}, 2, "--mqtt is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GATEHOUSE_CLUSTER_TOKEN", "")
			t.Setenv("GATEHOUSE_API_TOKEN", "")
			code, out, errs := run(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit code = %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errs)
			}
			if !strings.Contains(out+errs, tc.want) {
				t.Errorf("output lacks %q\nstdout: %s\nstderr: %s", tc.want, out, errs)
			}
		})
	}
}

// TestHelpExplainsEveryFlag runs --help on every subcommand and checks
// that every flag printed comes with a line of help.
func TestHelpExplainsEveryFlag(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flags []string // a few that must be there
	}{
		{"edge", []string{"node-id", "site-id", "join", "bootstrap", "raft-addr", "api", "data-dir", "cluster-token", "api-token", "config"}},
		{"cloud", []string{"http", "config", "log-level"}},
		{"demo", []string{"http", "nodes", "data-dir", "config"}},
		{"ctl", []string{"node", "json"}},
		{"bench", []string{"quick", "markdown", "dir"}},
		{"sim", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := run(t, tc.name, "--help")
			if code != 0 {
				t.Fatalf("exit code %d: %s", code, errs)
			}
			lines := strings.Split(out+errs, "\n")
			seen := map[string]bool{}
			for i, line := range lines {
				if !strings.HasPrefix(line, "  -") {
					continue
				}
				name := strings.Fields(strings.TrimPrefix(line, "  -"))[0]
				seen[name] = true
				if i+1 >= len(lines) || strings.TrimSpace(lines[i+1]) == "" || strings.HasPrefix(lines[i+1], "  -") {
					t.Errorf("flag -%s has no help text", name)
				}
			}
			for _, f := range tc.flags {
				if !seen[f] {
					t.Errorf("--help does not list -%s:\n%s", f, out+errs)
				}
			}
		})
	}
}

func TestConfigFileAndFlagOverride(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cloud.json")
	if err := os.WriteFile(path, []byte(`{"hub": {"http_addr": "127.0.0.1:9999", "probe_timeout": "2s"}, "log_level": "debug"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	m := &CloudMain{env: env{stdout: io.Discard, stderr: io.Discard}}
	if err := m.ParseFlags([]string{"--config", path, "--http", "127.0.0.1:7777"}); err != nil {
		t.Fatal(err)
	}
	if got, want := m.Config.Hub.HTTPAddr, "127.0.0.1:7777"; got != want {
		t.Errorf("http_addr = %q, want the flag's %q", got, want)
	}
	if got, want := time.Duration(m.Config.Hub.ProbeTimeout), 2*time.Second; got != want {
		t.Errorf("probe_timeout = %v, want the file's %v", got, want)
	}
	if got, want := m.Config.LogLevel, "debug"; got != want {
		t.Errorf("log_level = %q, want the file's %q", got, want)
	}

	t.Run("ErrUnknownField", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.json")
		_ = os.WriteFile(bad, []byte(`{"hub": {"http_adr": "x"}}`), 0o600)
		m := &CloudMain{env: env{stdout: io.Discard, stderr: io.Discard}}
		if err := m.ParseFlags([]string{"--config", bad}); err == nil || !strings.Contains(err.Error(), "http_adr") {
			t.Fatalf("err = %v, want unknown field http_adr", err)
		}
	})
	t.Run("ErrMissingFile", func(t *testing.T) {
		m := &CloudMain{env: env{stdout: io.Discard, stderr: io.Discard}}
		if err := m.ParseFlags([]string{"--config", filepath.Join(t.TempDir(), "none.json")}); err == nil {
			t.Fatal("a missing config file was accepted")
		}
	})
}

func TestBenchFloorsQuick(t *testing.T) {
	md := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	code, out, errs := run(t, "bench", "floors", "--quick", "--markdown", md)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines {
		var r struct {
			Bench, Metric, Unit string
			Value, Floor, Ratio float64
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil || r.Bench != "floors" || r.Metric == "" {
			t.Errorf("bad line %q: %v", l, err)
		}
	}
	b, err := os.ReadFile(md)
	if err != nil || !strings.Contains(string(b), "## floors") {
		t.Errorf("markdown report missing or incomplete: %v", err)
	}
}

// runDemo starts `gatehouse demo` in-process on a free port and returns the
// console URL, the nodes, a stop function that returns Run's and Close's
// errors, and the demo's output (the banner is complete once it serves).
func runDemo(t *testing.T, nodes int) (string, []*node.Node, func() error, *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	m := &DemoMain{env: env{stdout: &out, stderr: testWriter{t}}}
	if err := m.ParseFlags([]string{"--http", "127.0.0.1:0", "--nodes", string(rune('0' + nodes)), "--log-level", "info"}); err != nil {
		t.Fatal(err)
	}
	type started struct {
		url   string
		nodes []*node.Node
	}
	ready := make(chan started, 1)
	m.ready = func(url string, ns []*node.Node) { ready <- started{url, ns} }
	done := make(chan error, 1)
	go func() {
		err := m.Run(ctx)
		done <- errors.Join(err, m.Close())
	}()
	select {
	case s := <-ready:
		stop := func() error { cancel(); return <-done }
		return s.url, s.nodes, stop, &out
	case err := <-done:
		cancel()
		t.Fatalf("demo exited before serving: %v\n%s", err, out.String())
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("demo did not start within 60 s")
	}
	return "", nil, nil, nil
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %v; last state: %s", what, timeout, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDemo runs the demo in-process: the console is served, the hub reports
// every node of the site healthy on the same applied index, `ctl site
// status` reads the site, and cancelling (Ctrl-C) stops everything cleanly.
func TestDemo(t *testing.T) {
	url, nodes, stop, banner := runDemo(t, 3)
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(body), "Gatehouse console") {
		t.Fatalf("console: %d %q", res.StatusCode, body)
	}
	if res, err := http.Get(url + "mail"); err != nil || res.StatusCode != 200 {
		t.Fatalf("caught-mail page: %v %v", res, err)
	} else {
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if !strings.Contains(string(body), "Caught mail") {
			t.Fatalf("caught-mail page: %q", body)
		}
	}
	client := statusv1connect.NewStatusServiceClient(http.DefaultClient, strings.TrimSuffix(url, "/"), connect.WithProtoJSON())
	waitFor(t, "all nodes healthy and in step", 30*time.Second, func() (bool, string) {
		st, err := client.GetStatus(context.Background(), connect.NewRequest(&statusv1.GetStatusRequest{}))
		if err != nil {
			return false, err.Error()
		}
		sites := st.Msg.GetSites()
		if len(sites) != 1 || len(sites[0].GetNodes()) != 3 {
			return false, st.Msg.String()
		}
		leaders := 0
		for _, n := range sites[0].GetNodes() {
			if !n.GetHealthy() || n.GetAppliedIndex() != sites[0].GetNodes()[0].GetAppliedIndex() || n.GetAppliedIndex() == 0 {
				return false, st.Msg.String()
			}
			if n.GetRole() == "leader" {
				leaders++
			}
		}
		return leaders == 1, st.Msg.String()
	})
	// The simulator sets the building up through the local API (after the
	// demo reports ready) and its readers tap: every node ends with the
	// building and applies the decisions' access events.
	waitFor(t, "the simulated building on every node, and taps recorded", 30*time.Second, func() (bool, string) {
		for _, n := range nodes {
			var c access.Counts
			n.Machine().View(func(st *access.State) { c = st.Counts() })
			// 8 readers, the lobby kiosk and the dispenser.
			if c.Doors < 5 || c.People < 7 || c.Devices < 10 || n.Machine().LastSeq() < 3 {
				return false, fmt.Sprintf("%s: %+v, %d events", n.Raft().Status().NodeID, c, n.Machine().LastSeq())
			}
		}
		return true, ""
	})

	// The status lists the kiosk and the dispenser online.
	waitFor(t, "the kiosk and the dispenser online in the status", 30*time.Second, func() (bool, string) {
		st, err := client.GetStatus(context.Background(), connect.NewRequest(&statusv1.GetStatusRequest{}))
		if err != nil {
			return false, err.Error()
		}
		online := map[string]int{}
		for _, s := range st.Msg.GetSites() {
			for _, d := range s.GetDevices() {
				if d.GetOnline() {
					online[d.GetKind()]++
				}
			}
		}
		return online["kiosk"] == 1 && online["dispenser"] == 1, fmt.Sprint(online)
	})

	// The site replicates with the hub: its leader's uplink is connected and
	// the hub has acknowledged everything the site made (the building).
	waitFor(t, "the site synced with the hub", 60*time.Second, func() (bool, string) {
		for _, n := range nodes {
			u := n.Uplink()
			if u == nil {
				return false, "no uplink"
			}
			st := u.Status()
			if !st.Active {
				continue
			}
			lag := uint64(0)
			for _, l := range st.Lag {
				lag += l
			}
			return st.Connected && !st.LastSync.IsZero() && lag == 0 && !st.Refused, fmt.Sprintf("%+v", st)
		}
		return false, "no node runs the uplink"
	})
	// Over mutual TLS: the hub verified the site's certificate (demo_link_test.go).
	checkDemoLinkTLS(t, url, banner.String())

	// The console's live decisions: the hub tails the site's events, with
	// a realistic mix of grants and denies from the simulated readers.
	// It needs the hub's API key, which the banner prints.
	key := bannerHubKey.FindStringSubmatch(banner.String())
	if key == nil {
		t.Fatalf("the banner prints no API key:\n%s", banner.String())
	}
	console := consolev1connect.NewConsoleServiceClient(http.DefaultClient, strings.TrimSuffix(url, "/"), connect.WithProtoJSON(),
		connect.WithInterceptors(auth.Bearer(key[1])))
	if _, err := consolev1connect.NewConsoleServiceClient(http.DefaultClient, strings.TrimSuffix(url, "/")).ListDecisions(context.Background(),
		connect.NewRequest(&consolev1.ListDecisionsRequest{})); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("the console's decisions without a key: %v, want Unauthenticated", err)
	}
	waitFor(t, "grants and denies in the console's live decisions", 30*time.Second, func() (bool, string) {
		res, err := console.ListDecisions(context.Background(), connect.NewRequest(&consolev1.ListDecisionsRequest{Limit: 500}))
		if err != nil {
			return false, err.Error()
		}
		var granted, denied int
		for _, d := range res.Msg.GetDecisions() {
			if d.GetSiteName() != "Demo HQ" || strings.Count(d.GetCardMasked(), "*") == 0 && len(d.GetCardMasked()) > 4 {
				return false, "unexpected decision " + d.String()
			}
			if d.GetGranted() {
				granted++
			} else {
				denied++
			}
		}
		return granted > 0 && denied > 0, fmt.Sprintf("%d granted, %d denied", granted, denied)
	})

	demoVisit(t, url, banner.String())

	code, out, errs := run(t, "ctl", "site", "status", "--node", nodes[1].URL())
	if code != 0 || !strings.Contains(out, "leader") || strings.Count(out, "node") < 3 {
		t.Fatalf("ctl site status: exit %d\n%s\n%s", code, out, errs)
	}
	if err := stop(); err != nil {
		t.Fatalf("demo stopped with %v", err)
	}
	if _, err := http.Get(url); err == nil {
		t.Fatal("console still served after stop")
	}
}

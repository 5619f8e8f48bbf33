package hub

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect"

	statusv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/status/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/status/v1/statusv1connect"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// MustOpenHub starts a hub on a loopback port and closes it at cleanup.
func MustOpenHub(t testing.TB, sites ...SiteEndpoint) *Hub {
	t.Helper()
	cfg := DefaultConfig()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Sites = sites
	cfg.Version = "test"
	h := New(cfg, testLogger(t))
	if err := h.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Error(err)
		}
	})
	return h
}

// nodeStub is a StatusService standing in for an edge node at the transport
// seam: the hub's probe is what is under test here.
type nodeStub struct{ id, site string }

func (n nodeStub) GetStatus(context.Context, *connect.Request[statusv1.GetStatusRequest]) (*connect.Response[statusv1.GetStatusResponse], error) {
	return connect.NewResponse(&statusv1.GetStatusResponse{
		Self:  &statusv1.Component{Kind: "edge", Id: n.id, Healthy: true},
		Sites: []*statusv1.SiteStatus{{SiteId: n.site, Nodes: []*statusv1.NodeStatus{{Id: n.id, Role: "leader", Healthy: true, AppliedIndex: 7}}}},
	}), nil
}

func closedPortURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

func TestStatus(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle(statusv1connect.NewStatusServiceHandler(nodeStub{id: "n1", site: "s1"}))
	node := httptest.NewServer(mux)
	defer node.Close()
	down := closedPortURL(t)

	h := MustOpenHub(t, SiteEndpoint{ID: "s1", Name: "HQ", Nodes: []string{node.URL, down}})
	client := statusv1connect.NewStatusServiceClient(http.DefaultClient, "http://"+h.Addr(), connect.WithProtoJSON())
	res, err := client.GetStatus(context.Background(), connect.NewRequest(&statusv1.GetStatusRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := res.Msg.GetSelf().GetKind(), "hub"; got != want {
		t.Errorf("self kind = %q, want %q", got, want)
	}
	sites := res.Msg.GetSites()
	if len(sites) != 1 || len(sites[0].GetNodes()) != 2 {
		t.Fatalf("sites = %v, want one site with two nodes", sites)
	}
	up, gone := sites[0].GetNodes()[0], sites[0].GetNodes()[1]
	if !up.GetHealthy() || up.GetId() != "n1" || up.GetAppliedIndex() != 7 || up.GetApiAddr() != node.URL {
		t.Errorf("reachable node = %v", up)
	}
	if gone.GetHealthy() || gone.GetRole() != "unreachable" || gone.GetDetail() == "" {
		t.Errorf("unreachable node reported as %v", gone)
	}
}

func TestConsoleServed(t *testing.T) {
	h := MustOpenHub(t)
	for _, tc := range []struct {
		path, want string
		code       int
	}{
		{"/", "<title>Gatehouse console</title>", 200},
		{"/app.js", "StatusService/GetStatus", 200},
		{"/healthz", "ok", 200},
		{"/no-such-page", "", 404},
	} {
		t.Run(tc.path, func(t *testing.T) {
			res, err := http.Get(h.URL() + strings.TrimPrefix(tc.path, "/"))
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != tc.code {
				t.Fatalf("status = %d, want %d", res.StatusCode, tc.code)
			}
			if !strings.Contains(string(body), tc.want) {
				t.Errorf("body lacks %q", tc.want)
			}
		})
	}
}

func TestOversizedRequestRefused(t *testing.T) {
	h := MustOpenHub(t)
	body := bytes.Repeat([]byte("x"), 5<<20)
	req, _ := http.NewRequest("POST", "http://"+h.Addr()+statusv1connect.StatusServiceGetStatusProcedure, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusOK {
		t.Fatalf("oversized request accepted")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"OK", func(*Config) {}, ""},
		{"ErrAddrRequired", func(c *Config) { c.HTTPAddr = "" }, "http_addr is required"},
		{"ErrAddrMalformed", func(c *Config) { c.HTTPAddr = "nohostport" }, "http_addr"},
		{"ErrSiteID", func(c *Config) { c.Sites = []SiteEndpoint{{Nodes: []string{"http://x"}}} }, "id is required"},
		{"ErrSiteNodes", func(c *Config) { c.Sites = []SiteEndpoint{{ID: "s"}} }, "at least one node"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(&c)
			err := c.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestMergeDevices(t *testing.T) {
	got := mergeDevices([][]*statusv1.DeviceStatus{
		{{Id: "r1", Kind: "reader", Online: true, LastSeenMs: 200, Node: "n1"}, {Id: "d1", Kind: "door", Online: false, LastSeenMs: 50, Node: "n1"}},
		nil, // an unreachable node
		{{Id: "r1", Kind: "reader", Online: false, LastSeenMs: 100, Node: "n2"}, {Id: "d1", Kind: "door", Online: true, LastSeenMs: 300, Node: "n3"}},
	})
	if len(got) != 2 {
		t.Fatalf("got %d devices, want 2: %v", len(got), got)
	}
	// Sorted by kind then ID; the latest sighting wins.
	if got[0].GetId() != "d1" || !got[0].GetOnline() || got[0].GetNode() != "n3" {
		t.Errorf("door: %v, want online at n3", got[0])
	}
	if got[1].GetId() != "r1" || !got[1].GetOnline() || got[1].GetNode() != "n1" {
		t.Errorf("reader: %v, want online at n1", got[1])
	}
}

package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/auth"
	"github.com/gatehouse/gatehouse/cloud/hub"
	"github.com/gatehouse/gatehouse/edge/doors"
	"github.com/gatehouse/gatehouse/edge/node"
	"github.com/gatehouse/gatehouse/edge/raftnode"
	"github.com/gatehouse/gatehouse/edge/uplink"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	edgev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1/edgev1connect"
	peoplev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1/peoplev1connect"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
	"github.com/gatehouse/gatehouse/sim/device"
	"github.com/gatehouse/gatehouse/sim/fault"
)

// Secrets of the test's devices and API key.
const (
	adminKey     = "e2e-admin-key-0123456789"
	readerSecret = "e2e-reader-secret-0001"
	ctlSecret    = "e2e-door-secret-0001"
	// heartbeat is the sites' heartbeat to door controllers: short, so a
	// cut-off controller notices soon.
	heartbeat = 300 * time.Millisecond
)

// testLog sends warnings and errors to the test's output.
func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// newID returns a fresh ID.
func newID(t *testing.T) access.ID {
	t.Helper()
	id, err := access.NewIDGen(nil).New(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// testHub is a hub serving the cardholder API, with an admin client.
type testHub struct {
	h      *hub.Hub
	url    string
	people peoplev1connect.PeopleServiceClient
	groups peoplev1connect.GroupServiceClient
}

// MustOpenHub starts a hub on a Badger store that replicates with sites
// (each given by ID and token), and closes it when the test ends.
func MustOpenHub(t *testing.T, sites ...hub.SyncSite) *testHub {
	t.Helper()
	cfg := hub.DefaultConfig()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Store.Dir = filepath.Join(t.TempDir(), "hub")
	cfg.APIKeys = []auth.Key{{ID: "admin", SHA256: auth.HashKey(adminKey), Role: auth.Admin}}
	cfg.SyncSites = sites
	h := hub.New(cfg, testLog(t))
	if err := h.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	url := "http://" + h.Addr()
	opt := connect.WithInterceptors(auth.Bearer(adminKey))
	return &testHub{h: h, url: url,
		people: peoplev1connect.NewPeopleServiceClient(http.DefaultClient, url, opt),
		groups: peoplev1connect.NewGroupServiceClient(http.DefaultClient, url, opt)}
}

// group creates an access group of doors at site through the API.
func (th *testHub) group(t *testing.T, site access.ID, name string, doors ...access.ID) string {
	t.Helper()
	req := &peoplev1.CreateGroupRequest{SiteId: string(site), Name: name}
	for _, d := range doors {
		req.DoorIds = append(req.DoorIds, string(d))
	}
	res, err := th.groups.CreateGroup(context.Background(), connect.NewRequest(req))
	if err != nil {
		t.Fatalf("create group %s: %v", name, err)
	}
	return res.Msg.GetGroup().GetId()
}

// create creates a person through the API and returns their ID.
func (th *testHub) create(t *testing.T, req *peoplev1.CreatePersonRequest) string {
	t.Helper()
	res, err := th.people.CreatePerson(context.Background(), connect.NewRequest(req))
	if err != nil {
		t.Fatalf("create person %s: %v", req.GetName(), err)
	}
	return res.Msg.GetPerson().GetId()
}

// waitDoors waits until the hub knows n doors (they reach it from the
// sites through sync).
func (th *testHub) waitDoors(t *testing.T, n int) {
	t.Helper()
	waitFor(t, "the sites' doors at the hub", 30*time.Second, func() (bool, string) {
		got := len(th.h.State().Doors())
		return got == n, fmt.Sprintf("%d doors", got)
	})
}

// testSite is an in-process site: its nodes and its doors.
type testSite struct {
	id    access.ID
	nodes []*node.Node
	doors []access.ID
}

// MustOpenSite starts an n-node site replicating with the hub at hubURL
// with token, proposes doors doors through Raft (as commissioning does),
// and closes it when the test ends.
func MustOpenSite(t *testing.T, id access.ID, token, hubURL string, n, doorCount int) *testSite {
	t.Helper()
	dir := t.TempDir()
	s := &testSite{id: id}
	log := testLog(t)
	for i := range n {
		cfg := node.Config{
			NodeID: fmt.Sprintf("%s-n%d", id[len(id)-4:], i+1), SiteID: string(id), SiteName: "Site " + string(id), TimeZone: "UTC",
			DataDir: filepath.Join(dir, fmt.Sprint(i)), RaftAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0", MQTTListen: "127.0.0.1:0",
			ClusterToken: "e2e-cluster-secret", APIToken: "e2e-api-secret-0123456789",
			Uplink: &node.UplinkConfig{HubURL: hubURL, Token: token},
			TuneRaft: func(c *raftnode.Config) {
				c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = 200*time.Millisecond, 200*time.Millisecond, 100*time.Millisecond
			},
			TuneUplink: func(c *uplink.Config) {
				c.MinBackoff, c.MaxBackoff, c.LeaderPoll = 10*time.Millisecond, 200*time.Millisecond, 20*time.Millisecond
			},
			TuneDoors: func(c *doors.Config) { c.Heartbeat, c.Debounce = heartbeat, 20*time.Millisecond },
		}
		if i == 0 {
			cfg.Bootstrap = true
		} else {
			cfg.Join = s.nodes[0].URL()
		}
		nd := node.New(cfg, log)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := nd.Open(ctx)
		cancel()
		if err != nil {
			t.Fatalf("open node %s: %v", cfg.NodeID, err)
		}
		s.nodes = append(s.nodes, nd)
	}
	t.Cleanup(func() {
		for i := len(s.nodes) - 1; i >= 0; i-- {
			_ = s.nodes[i].Close()
		}
	})
	var cmds []*raftv1.Command
	for i := range doorCount {
		door := newID(t)
		s.doors = append(s.doors, door)
		cmds = append(cmds, &raftv1.Command{Op: &raftv1.Command_PutDoor{PutDoor: &accessv1.Door{Id: string(door), SiteId: string(id), Name: fmt.Sprintf("door %d", i+1)}}})
	}
	s.propose(t, cmds...)
	return s
}

// propose commits cmds through the site's Raft and waits until every node
// has applied them. A proposal whose outcome a leadership change left
// unknown (a flap on a loaded machine) is retried with the same request
// IDs, as the API asks; the site applies each command once.
func (s *testSite) propose(t *testing.T, cmds ...*raftv1.Command) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	withRequestIDs(t, cmds)
	var res []*edgev1.CommandResult
	err := retryUnavailable(ctx, func() (err error) {
		res, err = s.nodes[0].Propose(ctx, cmds...)
		if access.ErrorCode(err) == access.Unavailable {
			err = connect.NewError(connect.CodeUnavailable, err)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, nd := range s.nodes {
		if err := nd.Raft().WaitApplied(ctx, res[len(res)-1].GetIndex()); err != nil {
			t.Fatal(err)
		}
	}
}

// localAPI returns a client of the local API of the site's node i.
func (s *testSite) localAPI(i int) edgev1connect.SiteServiceClient {
	return edgev1connect.NewSiteServiceClient(http.DefaultClient, s.nodes[i].URL(), connect.WithInterceptors(auth.Bearer(siteAPIKey)))
}

// applyAt commits cmds through a site's local API, retried with the same
// request IDs while the site answers Unavailable.
func applyAt(t *testing.T, api edgev1connect.SiteServiceClient, cmds ...*raftv1.Command) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	withRequestIDs(t, cmds)
	if err := retryUnavailable(ctx, func() error {
		_, err := api.Apply(ctx, connect.NewRequest(&edgev1.ApplyRequest{Commands: cmds}))
		return err
	}); err != nil {
		t.Fatalf("apply at the site: %v", err)
	}
}

// withRequestIDs gives each command without a request ID a fresh one, so
// that a retry is applied once.
func withRequestIDs(t *testing.T, cmds []*raftv1.Command) {
	t.Helper()
	for _, c := range cmds {
		if c.GetRequestId() == "" {
			c.RequestId = "e2e-" + string(newID(t))
		}
	}
}

// retryUnavailable repeats call while it fails with connect's Unavailable
// (no leader, or an outcome a leadership change left unknown), until ctx
// ends; it returns call's last error.
func retryUnavailable(ctx context.Context, call func() error) error {
	for {
		err := call()
		if connect.CodeOf(err) != connect.CodeUnavailable || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// commission registers a device of kind at door and returns its ID.
func (s *testSite) commission(t *testing.T, kind accessv1.DeviceKind, door access.ID, secret string) string {
	t.Helper()
	dev := newID(t)
	s.propose(t, &raftv1.Command{Op: &raftv1.Command_PutDevice{PutDevice: &accessv1.Device{Id: string(dev), SiteId: string(s.id), Kind: kind,
		Name: "device " + string(dev[len(dev)-4:]), DoorId: string(door), SecretHash: access.HashSecret([]byte(secret))}}})
	return string(dev)
}

// reader commissions a reader at door and connects it to broker (a node's
// broker or a proxy in front of it), until the test ends.
func (s *testSite) reader(t *testing.T, door access.ID, broker string) *device.Reader {
	t.Helper()
	id := s.commission(t, accessv1.DeviceKind_DEVICE_KIND_READER, door, readerSecret)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	r, err := device.DialReader(ctx, device.ReaderConfig{Door: door, Config: device.Config{
		Broker: broker, Secret: readerSecret, Log: testLog(t),
		Device: mqttproto.Device{Site: string(s.id), Kind: mqttproto.KindReader, ID: id}}})
	if err != nil {
		t.Fatalf("reader at %s: %v", door, err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// tap presents card at r and returns the site's decision.
func tap(t *testing.T, r *device.Reader, card access.CardNumber) mqttproto.Decision {
	t.Helper()
	res, err := r.Tap(context.Background(), card, 10*time.Second)
	if err != nil {
		t.Fatalf("tap at %s: %v", r.Door(), err)
	}
	return res.Decision
}

// waitFor polls cond until it holds, failing the test with what and
// cond's last explanation after timeout.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %s", what, timeout, why)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// decides waits until every node of every site decides card at every door
// of want (the doors of each site) as want says.
func decides(t *testing.T, what string, sites []*testSite, card access.CardNumber, want map[access.ID]access.Reason) {
	t.Helper()
	waitFor(t, what, 30*time.Second, func() (bool, string) {
		for _, s := range sites {
			for i, nd := range s.nodes {
				for _, door := range s.doors {
					r, ok := want[door]
					if !ok {
						continue
					}
					if d := nd.Decide(card, door, time.Now()); d.Reason != r {
						return false, fmt.Sprintf("site %s node %d decides %v at %s, want %v", s.id, i+1, d.Reason, door, r)
					}
				}
			}
		}
		return true, ""
	})
}

// testCtl is a simulated door controller whose link to its site goes
// through a fault proxy.
type testCtl struct {
	c     *device.Controller
	proxy *fault.Proxy
}

// controller commissions a door controller at door and connects it to the
// first node's broker through a proxy, until the test ends.
func (s *testSite) controller(t *testing.T, door access.ID) *testCtl {
	t.Helper()
	id := s.commission(t, accessv1.DeviceKind_DEVICE_KIND_DOOR, door, ctlSecret)
	p, err := fault.Listen("127.0.0.1:0", s.nodes[0].MQTTAddr(), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := device.DialController(ctx, device.ControllerConfig{
		Config: device.Config{Broker: p.Addr(), Secret: ctlSecret, Log: testLog(t),
			Device: mqttproto.Device{Site: string(s.id), Kind: mqttproto.KindDoor, ID: id}},
		Doors: []access.ID{door}, StateDir: t.TempDir(), Heartbeat: heartbeat,
	})
	if err != nil {
		t.Fatalf("door controller at %s: %v", door, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &testCtl{c: c, proxy: p}
}

// cut cuts the controller's link and waits until it knows itself cut off.
func (c *testCtl) cut(t *testing.T) {
	t.Helper()
	if _, err := c.proxy.Cut(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the controller cut off", 10*time.Second, func() (bool, string) {
		st := c.c.Status()
		return st.Offline, fmt.Sprintf("link up %v, offline %v", st.LinkUp, st.Offline)
	})
}

// restore restores the controller's link and waits until it is online.
func (c *testCtl) restore(t *testing.T) {
	t.Helper()
	if err := c.proxy.Restore(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the controller back online", 15*time.Second, func() (bool, string) {
		st := c.c.Status()
		return st.LinkUp && !st.Offline, fmt.Sprintf("link up %v, offline %v", st.LinkUp, st.Offline)
	})
}

// tap presents card at door of the controller and returns the outcome.
func (c *testCtl) tap(t *testing.T, door access.ID, card access.CardNumber) device.TapResult {
	t.Helper()
	res, err := c.c.Tap(context.Background(), door, card, 10*time.Second)
	if err != nil {
		t.Fatalf("tap at the controller: %v", err)
	}
	return res
}

package hub

import (
	"context"
	"net/http"
	"testing"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/cloud/hubstate"
	syncv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/sync/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/sync/v1/syncv1connect"
	"github.com/gatehouse/gatehouse/replication"
	"github.com/gatehouse/gatehouse/syncwire"
)

const (
	testSyncSite  = "01JBX000000000000000000001"
	testSyncToken = "sync-token-of-the-test-site"
)

// mustOpenSyncHub starts a hub replicating over a Badger store in dir.
func mustOpenSyncHub(t *testing.T, dir string) *Hub {
	t.Helper()
	cfg := DefaultConfig()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Store = StoreConfig{Dir: dir}
	cfg.SyncSites = []SyncSite{{ID: testSyncSite, Token: testSyncToken}}
	h := New(cfg, testLogger(t))
	if err := h.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func TestSyncMounted(t *testing.T) {
	dir := t.TempDir()
	h := mustOpenSyncHub(t, dir)
	if _, err := h.State().Write(context.Background(), func(tx *hubstate.Tx) error {
		// A door of the site: the site receives it (a person granted
		// nowhere would not reach it: the hub's changes are scoped).
		tx.Change(replication.KindDoor, "01JBX000000000000000000030", replication.SetOp("site", testSyncSite), replication.SetOp("name", "Main"))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := h.State().ScopedVector(testSyncSite)

	// The stream runs over the hub's own server (cleartext HTTP/2), past
	// the body limit of the other APIs.
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	c := syncv1connect.NewSyncServiceClient(&http.Client{Transport: &http.Transport{Protocols: &p}}, "http://"+h.Addr())
	stream := c.Sync(context.Background())
	stream.RequestHeader().Set("Authorization", "Bearer "+testSyncToken)
	hello, _ := syncwire.ToWire(testSyncSite, replication.Message{Type: replication.MsgHello, Vector: replication.Vector{}})
	if err := stream.Send(&syncv1.SyncRequest{Message: hello}); err != nil {
		t.Fatal(err)
	}
	res, err := stream.Receive()
	if err != nil {
		t.Fatal(err)
	}
	m, err := syncwire.FromWire(hubstate.Origin, res.GetMessage())
	if err != nil || m.Type != replication.MsgHello || !m.Vector.Equal(want) {
		t.Fatalf("hub's first message = %+v, %v; want its hello with %v", m, err, want)
	}
	res, err = stream.Receive()
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := syncwire.FromWire(hubstate.Origin, res.GetMessage()); m.Type != replication.MsgBatch || len(m.Deltas) != 1 {
		t.Fatalf("hub's second message = %+v, want the batch of its delta", m)
	}
	stream.CloseRequest()
	stream.CloseResponse()

	// Unary over HTTP/1.1, with a wrong token.
	uc := syncv1connect.NewSyncServiceClient(http.DefaultClient, "http://"+h.Addr())
	req := connect.NewRequest(&syncv1.PullRequest{Origin: testSyncSite})
	req.Header().Set("Authorization", "Bearer wrong-token-wrong-token")
	if _, err := uc.Pull(context.Background(), req); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("pull with a wrong token: %v", err)
	}

	// The replica survives a restart.
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	h2 := mustOpenSyncHub(t, dir)
	if got := h2.State().Vector(); !got.Equal(want) {
		t.Fatalf("after restart the hub holds %v, want %v", got, want)
	}
}

func TestSyncConfig(t *testing.T) {
	for name, cfg := range map[string]func(*Config){
		"ErrSitesWithoutStore": func(c *Config) { c.SyncSites = []SyncSite{{ID: testSyncSite, Token: testSyncToken}} },
		"ErrBothStores":        func(c *Config) { c.Store = StoreConfig{Dir: "x", DSN: "y"} },
		"ErrShortToken": func(c *Config) {
			c.Store.Dir = "x"
			c.SyncSites = []SyncSite{{ID: testSyncSite, Token: "short"}}
		},
		"ErrBadSiteID": func(c *Config) {
			c.Store.Dir = "x"
			c.SyncSites = []SyncSite{{ID: "no spaces allowed", Token: testSyncToken}}
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := DefaultConfig()
			cfg(&c)
			if err := c.Validate(); err == nil {
				t.Fatal("Validate accepted it")
			}
		})
	}
}

package hub

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/auth"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/cloud/synctest"
	consolev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/console/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/console/v1/consolev1connect"
	"github.com/gatehouse/gatehouse/replication"
)

// The pending-revocation tests' sites, API keys and wait bound (waits end
// on conditions, never on time).
const (
	pendSiteA, pendSiteB   = "01JBX000000000000000000A01", "01JBX000000000000000000B01"
	pendTokenA, pendTokenB = "sync-token-of-site-a-0123", "sync-token-of-site-b-0123"
	keySecurity, keyAdmin  = "security-key-0123456789", "admin-key-0123456789abc"
	keyHost                = "host-key-0123456789abcdef"
	pendWait               = 20 * time.Second
)

// pid returns a canonical test ID numbered n.
func pid(n int) string { return fmt.Sprintf("01JBX%021d", n) }

// mustOpenPendingHub starts a hub replicating with sites A and B over the
// Badger files in dir, with API keys of roles security, admin and host.
func mustOpenPendingHub(t *testing.T, dir string) *Hub {
	t.Helper()
	cfg := DefaultConfig()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Store = StoreConfig{Dir: dir}
	cfg.SyncSites = []SyncSite{{ID: pendSiteA, Token: pendTokenA}, {ID: pendSiteB, Token: pendTokenB}}
	cfg.APIKeys = []auth.Key{{ID: "sec", SHA256: auth.HashKey(keySecurity), Role: auth.Security},
		{ID: "adm", SHA256: auth.HashKey(keyAdmin), Role: auth.Admin}, {ID: "host", SHA256: auth.HashKey(keyHost), Role: auth.Host}}
	h := New(cfg, testLogger(t))
	if err := h.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// mustOpenStorelessHub starts a hub without a store (it replicates with
// no site), with an API key of role security.
func mustOpenStorelessHub(t *testing.T) *Hub {
	t.Helper()
	cfg := DefaultConfig()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.APIKeys = []auth.Key{{ID: "sec", SHA256: auth.HashKey(keySecurity), Role: auth.Security}}
	h := New(cfg, testLogger(t))
	if err := h.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// pending calls ListPendingRevocations with key over the hub's listener.
func pending(h *Hub, key, site string) (*consolev1.ListPendingRevocationsResponse, error) {
	c := consolev1connect.NewConsoleServiceClient(http.DefaultClient, "http://"+h.Addr())
	req := connect.NewRequest(&consolev1.ListPendingRevocationsRequest{SiteId: site})
	if key != "" {
		req.Header().Set("Authorization", "Bearer "+key)
	}
	res, err := c.ListPendingRevocations(context.Background(), req)
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}

// pendingAt returns site's entry, answered to the security key.
func pendingAt(t *testing.T, h *Hub, site string) *consolev1.SitePendingRevocations {
	t.Helper()
	res, err := pending(h, keySecurity, site)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.GetSites()) != 1 || res.GetSites()[0].GetSiteId() != site {
		t.Fatalf("answer for site %s: %v", site, res)
	}
	return res.GetSites()[0]
}

// eventually polls cond until it holds, or fails the test at the deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(pendWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, not synchronising on time
	}
}

// ids returns the entity IDs of an entry's revocations.
func ids(sp *consolev1.SitePendingRevocations) []string {
	var out []string
	for _, r := range sp.GetRevocations() {
		out = append(out, r.GetEntityId())
	}
	return out
}

// pendingPeople writes, at the hub, groups of sites A and B and a person
// granted each: pa (A's group, card 4242), pb (B's group).
func pendingPeople(t *testing.T, h *Hub) (pa, pb, grantA string) {
	t.Helper()
	groupA, groupB, grantB := pid(11), pid(12), pid(22)
	pa, pb, grantA = pid(31), pid(32), pid(21)
	_, err := h.State().Write(context.Background(), func(tx *hubstate.Tx) error {
		r := tx.Replica()
		tx.Change(replication.KindSite, pendSiteA, replication.SetOp("name", "Site A"))
		tx.Change(replication.KindGroup, groupA, replication.SetOp("site", pendSiteA), replication.SetOp("name", "A staff"))
		tx.Change(replication.KindGroup, groupB, replication.SetOp("site", pendSiteB), replication.SetOp("name", "B staff"))
		for _, p := range []string{pa, pb} {
			tx.Change(replication.KindPerson, p, replication.SetOp("name", "Person "+p[len(p)-2:]),
				replication.SetOp("kind", "occupier"), r.EnableOp(replication.KindPerson, p))
		}
		ga := access.Grant{ID: access.ID(grantA), HolderID: access.ID(pa), GroupID: access.ID(groupA)}
		gb := access.Grant{ID: access.ID(grantB), HolderID: access.ID(pb), GroupID: access.ID(groupB)}
		tx.Change(replication.KindGrant, grantA, r.GrantOp(ga))
		tx.Change(replication.KindGrant, grantB, r.GrantOp(gb))
		tx.Change(replication.KindCard, "4242", replication.AddOp("holders", pa), r.EnableOp(replication.KindCard, "4242"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pa, pb, grantA
}

// revoke makes one revocation at the hub and returns its priority seq.
func revoke(t *testing.T, h *Hub, k replication.Kind, id string, op replication.Op) uint64 {
	t.Helper()
	ds, err := h.State().Write(context.Background(), func(tx *hubstate.Tx) error {
		tx.Change(k, id, op)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ds[0].Seq
}

func TestPendingRevocationsThroughACut(t *testing.T) {
	dir := t.TempDir()
	h := mustOpenPendingHub(t, dir)
	pa, pb, grantA := pendingPeople(t, h)
	site := synctest.NewSite(t, pendSiteA, pendTokenA)

	// B never connects: pb's disable concerns B only, and stays pending there.
	revoke(t, h, replication.KindPerson, pb, replication.DisableOp("left"))
	if got := ids(pendingAt(t, h, pendSiteB)); !slices.Equal(got, []string{pb}) {
		t.Fatalf("pending at B = %v, want [%s]", got, pb)
	}

	// A connected: the removal of pa's grant is pending until A acknowledges it.
	stop := site.Start(synctest.Client("http://" + h.Addr()))
	eventually(t, "A connected with nothing pending", func() bool {
		a := pendingAt(t, h, pendSiteA)
		return a.GetConnected() && a.GetPendingCount() == 0
	})
	site.SetHold(true)
	seq := revoke(t, h, replication.KindGrant, grantA, replication.RemoveGrantOp())
	site.WaitHas(t, seq) // A holds it, but has not reported it applied
	a := pendingAt(t, h, pendSiteA)
	if got := ids(a); !slices.Equal(got, []string{grantA}) || !a.GetConnected() || a.GetSiteName() != "Site A" {
		t.Fatalf("pending at A before its ack = %v (connected %v)", got, a.GetConnected())
	}
	r := a.GetRevocations()[0]
	if r.GetWhat() != "grant removed" || r.GetPersonId() != pa || r.GetGroupName() != "A staff" || r.GetOrigin() != "hub" ||
		r.GetLane() != "priority" || r.GetSeq() != seq || r.GetMadeMs() == 0 || r.GetPendingMs() < 0 || r.GetStamp() == "" {
		t.Fatalf("pending item = %v", r)
	}
	site.SetHold(false)
	eventually(t, "A's ack to clear its pending list", func() bool { return pendingAt(t, h, pendSiteA).GetPendingCount() == 0 })

	// The WAN is cut: a revocation made now stays pending, across a hub restart.
	if err := stop(); err != nil {
		t.Fatalf("site session: %v", err)
	}
	eventually(t, "A disconnected", func() bool { return !pendingAt(t, h, pendSiteA).GetConnected() })
	revoke(t, h, replication.KindCard, "4242", replication.DisableOp("lost"))
	if got := ids(pendingAt(t, h, pendSiteA)); !slices.Equal(got, []string{"4242"}) {
		t.Fatalf("pending at A during the cut = %v", got)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	h = mustOpenPendingHub(t, dir)
	a = pendingAt(t, h, pendSiteA)
	if got := ids(a); !slices.Equal(got, []string{"4242"}) || a.GetConnected() {
		t.Fatalf("pending at A after a hub restart = %v (connected %v)", got, a.GetConnected())
	}
	if w := a.GetRevocations()[0]; w.GetWhat() != "card lost" || w.GetCardMasked() != "4242" || w.GetPersonId() != pa {
		t.Fatalf("card item = %v", w)
	}
	if got := ids(pendingAt(t, h, pendSiteB)); !slices.Equal(got, []string{pb}) {
		t.Fatalf("pending at B after restart = %v", got)
	}

	// Heal: A reconnects, applies and acknowledges; nothing is pending.
	stop = site.Start(synctest.Client("http://" + h.Addr()))
	eventually(t, "A's ack after the heal", func() bool {
		a := pendingAt(t, h, pendSiteA)
		return a.GetConnected() && a.GetPendingCount() == 0
	})
	// Every answer for A left B's revocation out; the list of every site
	// holds both, sorted by site.
	res, err := pending(h, keyAdmin, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.GetSites()) != 2 || res.GetSites()[0].GetSiteId() != pendSiteA || res.GetSites()[0].GetPendingCount() != 0 ||
		!slices.Equal(ids(res.GetSites()[1]), []string{pb}) {
		t.Fatalf("every site: %v", res)
	}
	if err := stop(); err != nil {
		t.Fatalf("site session: %v", err)
	}
}

func TestPendingRevocationsRefusals(t *testing.T) {
	h := mustOpenPendingHub(t, t.TempDir())
	for _, tc := range []struct {
		name, key, site string
		want            connect.Code
	}{
		{"ErrNoKey", "", "", connect.CodeUnauthenticated},
		{"ErrUnknownKey", "not-a-key-0123456789abcdef", "", connect.CodeUnauthenticated},
		{"ErrHostRole", keyHost, "", connect.CodePermissionDenied},
		{"ErrUnknownSite", keySecurity, pid(999), connect.CodeNotFound},
		{"ErrMalformedSite", keySecurity, "no such site", connect.CodeNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := pending(h, tc.key, tc.site); connect.CodeOf(err) != tc.want {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("ErrLimit", func(t *testing.T) {
		c := consolev1connect.NewConsoleServiceClient(http.DefaultClient, "http://"+h.Addr())
		for _, limit := range []int32{-1, hubstate.MaxPendingLimit + 1} {
			req := connect.NewRequest(&consolev1.ListPendingRevocationsRequest{Limit: limit})
			req.Header().Set("Authorization", "Bearer "+keyAdmin)
			if _, err := c.ListPendingRevocations(context.Background(), req); connect.CodeOf(err) != connect.CodeInvalidArgument {
				t.Fatalf("limit %d: err = %v", limit, err)
			}
		}
	})
	t.Run("ErrNoStore", func(t *testing.T) {
		if _, err := pending(mustOpenStorelessHub(t), keySecurity, ""); connect.CodeOf(err) != connect.CodeFailedPrecondition {
			t.Fatalf("err = %v, want FailedPrecondition", err)
		}
	})
}

package hub

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/cloud/auth"
	"github.com/gatehouse/gatehouse/cloud/synctest"
	consolev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/console/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/console/v1/consolev1connect"
	"github.com/gatehouse/gatehouse/replication"
)

// divergences calls ListDivergences over the hub's listener with the
// security key.
func divergences(h *Hub, site string) (*consolev1.ListDivergencesResponse, error) {
	c := consolev1connect.NewConsoleServiceClient(http.DefaultClient, "http://"+h.Addr(), connect.WithInterceptors(auth.Bearer(keySecurity)))
	res, err := c.ListDivergences(context.Background(), connect.NewRequest(&consolev1.ListDivergencesRequest{SiteId: site}))
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}

// scrape returns the hub's GET /metrics page.
func scrape(t *testing.T, h *Hub) string {
	t.Helper()
	res, err := http.Get("http://" + h.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("metrics: status %d, %v", res.StatusCode, err)
	}
	return string(b)
}

// TestDivergencesConsoleAndMetric: site A syncs 60 zones with a real hub;
// nothing diverges. Then A's store silently holds other contents under
// its delta 40 and A reconnects: the hub's digest exchange finds it, and
// ListDivergences and gatehouse_sync_divergences show it at A only.
func TestDivergencesConsoleAndMetric(t *testing.T) {
	h := mustOpenPendingHub(t, t.TempDir())
	site := synctest.NewSite(t, pendSiteA, pendTokenA)
	site.Write(t, replication.KindSite, pendSiteA, replication.SetOp("name", "A"), replication.SetOp("time_zone", "UTC"))
	for i := range 60 {
		site.Write(t, replication.KindZone, pid(1000+i), replication.SetOp("site", pendSiteA), replication.SetOp("name", fmt.Sprint("zone ", i)))
	}
	src := replication.Source{Origin: pendSiteA, Lane: replication.LaneNormal}
	n := site.Vector()[src]
	stop := site.Start(synctest.Client("http://" + h.Addr()))
	eventually(t, "the hub to hold the site's zones and ack them", func() bool {
		return h.State().Vector()[src] == n && site.Acked()[src] == n
	})
	// A change after the stream opened, acknowledged: the digest queued at
	// the open has been exchanged (each side handles messages in order).
	site.Write(t, replication.KindZone, pid(2000), replication.SetOp("site", pendSiteA), replication.SetOp("name", "late"))
	eventually(t, "the late zone's ack", func() bool { return site.Acked()[src] == n+1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	res, err := divergences(h, "")
	if err != nil {
		t.Fatal(err)
	}
	if res.GetTotal() != 0 || len(res.GetSites()) != 2 || res.GetSites()[0].GetSiteId() != pendSiteA || res.GetSites()[1].GetSiteId() != pendSiteB {
		t.Fatalf("divergences on equal logs: %v", res)
	}
	if m := scrape(t, h); strings.Contains(m, "gatehouse_sync_divergences{") {
		t.Fatalf("metric on equal logs:\n%s", m)
	}

	const bad = 40
	if err := site.Corrupt(src, bad, replication.SetOp("name", "not what the hub holds")); err != nil {
		t.Fatal(err)
	}
	stop = site.Start(synctest.Client("http://" + h.Addr()))
	defer stop()
	eventually(t, "the hub to report the divergence", func() bool {
		res, err := divergences(h, pendSiteA)
		return err == nil && res.GetTotal() > 0
	})
	res, err = divergences(h, pendSiteA)
	if err != nil {
		t.Fatal(err)
	}
	a := res.GetSites()
	if len(a) != 1 || len(a[0].GetDivergences()) != 1 || !a[0].GetConnected() {
		t.Fatalf("divergences at A: %v", res)
	}
	if d := a[0].GetDivergences()[0]; d.GetOrigin() != pendSiteA || d.GetLane() != "normal" || d.GetSeq() != bad || d.GetSource() != src.String() {
		t.Fatalf("divergence %v, want %s at %d", d, src, bad)
	}
	if res, err := divergences(h, pendSiteB); err != nil || res.GetTotal() != 0 {
		t.Fatalf("divergences at B: %v, %v", res, err)
	}
	want := fmt.Sprintf("gatehouse_sync_divergences{site=%q,source=%q} 1\n", pendSiteA, src.String())
	if m := scrape(t, h); !strings.Contains(m, want) || strings.Count(m, "gatehouse_sync_divergences{") != 1 {
		t.Fatalf("metrics lack %q (or hold others):\n%s", want, m)
	}
}

func TestDivergencesRefusals(t *testing.T) {
	h := mustOpenPendingHub(t, t.TempDir())
	for _, tc := range []struct {
		name, site string
	}{
		{"ErrUnknownSite", pid(999)},
		{"ErrMalformedSite", "no such site"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := divergences(h, tc.site)
			if connect.CodeOf(err) != connect.CodeNotFound || !strings.Contains(err.Error(), "not one of this hub's sites") {
				t.Fatalf("err = %v, want NotFound naming the site", err)
			}
		})
	}
	t.Run("ErrNoStore", func(t *testing.T) {
		plain := mustOpenStorelessHub(t)
		if _, err := divergences(plain, ""); connect.CodeOf(err) != connect.CodeFailedPrecondition {
			t.Fatalf("err = %v, want FailedPrecondition", err)
		}
		if m := scrape(t, plain); strings.Contains(m, "gatehouse_sync_divergences{") {
			t.Fatalf("metric without a store:\n%s", m)
		}
	})
}

// TestConsoleNeedsKey: every ConsoleService call refuses a caller without
// an API key, with an unknown key, or with a role other than admin or
// security, and answers those two roles.
func TestConsoleNeedsKey(t *testing.T) {
	h := mustOpenPendingHub(t, t.TempDir())
	calls := map[string]func(c consolev1connect.ConsoleServiceClient) error{
		"ListDecisions": func(c consolev1connect.ConsoleServiceClient) error {
			_, err := c.ListDecisions(context.Background(), connect.NewRequest(&consolev1.ListDecisionsRequest{}))
			return err
		},
		"ListDivergences": func(c consolev1connect.ConsoleServiceClient) error {
			_, err := c.ListDivergences(context.Background(), connect.NewRequest(&consolev1.ListDivergencesRequest{}))
			return err
		},
		"ListPendingRevocations": func(c consolev1connect.ConsoleServiceClient) error {
			_, err := c.ListPendingRevocations(context.Background(), connect.NewRequest(&consolev1.ListPendingRevocationsRequest{}))
			return err
		},
	}
	for name, call := range calls {
		for _, tc := range []struct {
			key  string
			want connect.Code
		}{
			{"", connect.CodeUnauthenticated},
			{"not-a-key-0123456789abcdef", connect.CodeUnauthenticated},
			{keyHost, connect.CodePermissionDenied},
			{keySecurity, 0},
			{keyAdmin, 0},
		} {
			var opts []connect.ClientOption
			if tc.key != "" {
				opts = append(opts, connect.WithInterceptors(auth.Bearer(tc.key)))
			}
			c := consolev1connect.NewConsoleServiceClient(http.DefaultClient, "http://"+h.Addr(), opts...)
			if err := call(c); connect.CodeOf(err) != tc.want && (tc.want != 0 || err != nil) {
				t.Errorf("%s with key %q: err = %v, want %v", name, tc.key, err, tc.want)
			}
		}
	}
}

package uplink_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/replication"
)

// TestDivergenceMetric: a 3-node site syncs the zones of one hub; then the
// WAN is healed to another hub whose store holds other deltas under the
// same sequence numbers (a hub restored from the wrong backup). The
// digests as the session opens find the first differing delta, and the
// leader's /metrics shows gatehouse_sync_divergences for that source.
func TestDivergenceMetric(t *testing.T) {
	zones := func(h *testHub, name string) {
		h.write(t, func(tx *hubstate.Tx) {
			for i := range 40 {
				tx.Change(replication.KindZone, newID(t), replication.SetOp("site", testSite), replication.SetOp("name", fmt.Sprint(name, i)))
			}
		})
	}
	h1 := openHub(t, t.TempDir())
	zones(h1, "zone ")
	wan := newProxy(t, h1.Addr())
	nodes := openSite(t, wan.URL())
	waitFor(t, "the site to hold the first hub's zones", func() bool { return converged(h1, nodes) })
	metric := `gatehouse_sync_divergences{site="` + testSite + `",source="hub/normal"} 1`
	if m := scrapeNode(t, leader(t, nodes).URL()); strings.Contains(m, "gatehouse_sync_divergences{") {
		t.Fatalf("a divergence metric on equal logs:\n%s", m)
	}

	wan.Cut()
	h1.Close()
	h2 := openHub(t, t.TempDir())
	zones(h2, "other zone ")
	wan.Heal(h2.Addr())
	waitFor(t, "the leader's metric of the divergence", func() bool {
		return strings.Contains(scrapeNode(t, leader(t, nodes).URL()), metric)
	})
	l := leader(t, nodes)
	want := replication.Divergence{Source: replication.Source{Origin: hubstate.Origin, Lane: replication.LaneNormal}, Seq: 1}
	if d := l.Uplink().Divergences(); len(d) != 1 || d[0] != want {
		t.Fatalf("leader's divergences %v, want [%v]", d, want)
	}
}

// scrapeNode returns a node's /metrics page ("" when it cannot be read:
// leadership may be moving).
func scrapeNode(t *testing.T, url string) string {
	t.Helper()
	res, err := http.Get(url + "/metrics")
	if err != nil {
		return ""
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return ""
	}
	return string(b)
}

package node

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

// scrape returns the node's /metrics page.
func scrape(t *testing.T, n *Node) string {
	t.Helper()
	res, err := http.Get(n.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// TestMetricsUplinkLag: with the hub unreachable, the leader's uplink lag
// gauges count what the hub has not acknowledged, the events lane
// included.
func TestMetricsUplinkLag(t *testing.T) {
	// A port nothing listens on: the uplink never connects.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hub := "http://" + ln.Addr().String()
	ln.Close()
	nodes := MustOpenSiteWith(t, 1, func(c *Config) { c.Uplink = &UplinkConfig{HubURL: hub, Token: "t"} })
	evs := make([]*accessv1.AccessEvent, 3)
	for i := range evs {
		evs[i] = &accessv1.AccessEvent{AtMs: time.Now().UnixMilli(), DoorId: id(t), Card: uint64(100 + i),
			Reason: accessv1.Reason_REASON_UNKNOWN_CARD, Node: "n1"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := proposeRetry(ctx, nodes[0], &raftv1.Command{Op: &raftv1.Command_RecordEvents{RecordEvents: &raftv1.RecordEvents{Events: evs}}})
	if err != nil || res[0].GetErrorCode() != "" {
		t.Fatal(err, res)
	}
	want := `gatehouse_edge_uplink_lag{lane="events"} 3`
	waitFor(t, "the events lag gauge", func() bool { return strings.Contains(scrape(t, nodes[0]), want) })
	body := scrape(t, nodes[0])
	for _, want := range []string{`gatehouse_edge_uplink_lag{lane="priority"}`, `gatehouse_edge_uplink_lag{lane="normal"}`, "gatehouse_edge_uplink_connected 0"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

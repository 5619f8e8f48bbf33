package node

import (
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/edge/uplink"
	"github.com/gatehouse/gatehouse/replication"
)

// TestUplinkDetail: the node's status line names the uplink's link, lag and
// last sync, and every divergence its digests found, so `gatehouse ctl site
// status` and the hub's console show them; a node that does not run the
// uplink says nothing of it.
func TestUplinkDetail(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	st := uplink.Status{Active: true, Connected: true, LastSync: now.Add(-3 * time.Second),
		Lag: map[replication.Lane]uint64{replication.LaneNormal: 2}}
	divs := []replication.Divergence{
		{Source: replication.Source{Origin: "hub", Lane: replication.LaneNormal}, Seq: 7},
		{Source: replication.Source{Origin: "01JBX00000000000000000000A", Lane: replication.LanePriority}, Seq: 12},
	}
	got := formatUplinkDetail(st, divs, now)
	for _, want := range []string{"uplink: connected", "lag priority=0 normal=2 events=0", "last sync 3s ago",
		"SYNC DIVERGENCE", divs[0].Source.String() + " from seq 7", divs[1].Source.String() + " from seq 12"} {
		if !strings.Contains(got, want) {
			t.Errorf("detail lacks %q: %s", want, got)
		}
	}
	if got := formatUplinkDetail(st, nil, now); strings.Contains(got, "DIVERGENCE") {
		t.Errorf("no divergence, yet: %s", got)
	}
	st.Connected, st.Refused, st.LastError = false, true, "permission denied: zone of another site"
	if got := formatUplinkDetail(st, nil, now); !strings.Contains(got, "hub refused a batch: permission denied") {
		t.Errorf("refused: %s", got)
	}
	if got := formatUplinkDetail(uplink.Status{}, divs, now); got != "" {
		t.Errorf("a node not running the uplink: %q", got)
	}
}

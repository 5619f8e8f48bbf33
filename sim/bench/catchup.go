package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/gatehouse/gatehouse/cloud/hubstate"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
	"github.com/gatehouse/gatehouse/replication"
	"github.com/gatehouse/gatehouse/sim/partition"
)

func init() {
	Default.Register(Bench{
		Name: "catchup",
		Help: "N changes on each side of a WAN outage (100,000 full), then the time for a 3-node site and the hub to converge and the bytes on the wire, against making the changes locally and against their raw encoded size",
		Run:  runCatchup,
	})
}

var (
	catchupFull  = 100_000
	catchupQuick = 5_000
	// catchupTest, when set, replaces catchupQuick (tests stay short).
	catchupTest int
)

const (
	catchupSiteToken = "catchup-bench-site-token"
	// catchupSiteBatch is how many commands one site proposal carries
	// (raftnode's maximum per call); catchupHubBatch how many changes one
	// hub write makes.
	catchupSiteBatch = 999
	catchupHubBatch  = 10_000
	catchupTimeout   = 10 * time.Minute
)

// runCatchup measures catch-up after an outage: a hub (Badger store,
// SyncService over loopback HTTP/2) and a 3-node site with the product's
// default timings, the site's uplink through a toxiproxy proxy. With the
// WAN cut, the site makes N changes (zones, through Raft, 999 per
// proposal) and the hub makes N (zones at the site, 10,000 per write);
// each change is one delta. Then the WAN heals and the clock runs until
// the hub holds every site delta and every node holds every hub delta.
//
//   - converge_s: heal → converged, against the time the two sides took
//     to make the same changes locally (the larger of the two: they run in
//     parallel after the heal), which is about what applying them again
//     at the other side costs;
//   - wire_bytes: bytes through the proxy in both directions from the heal
//     to convergence (TCP payload: HTTP/2 and protobuf framing, hellos and
//     acks included), against the raw size of the 2N deltas (the sum of
//     their binary encodings): the ratio is the wire's overhead;
//   - site_to_hub_s, hub_to_site_s: when each direction was complete
//     (the hub holds the site's N; every node holds the hub's N), each
//     against the time its origin took to make the changes;
//   - site_to_hub_bytes, hub_to_site_bytes: the same per direction, each
//     against its side's deltas. Connect compresses the hub's responses
//     with gzip (the site's client accepts it) but not the site's
//     requests, so hub → site can come out below the raw size.
func runCatchup(ctx context.Context, opt Options, emit func(Result)) error {
	n := catchupFull
	if opt.Quick {
		n = catchupQuick
		if catchupTest > 0 {
			n = catchupTest
		}
	}
	hs, err := openHubSite(ctx, opt, "catchup", catchupSiteToken)
	if err != nil {
		return err
	}
	defer hs.Close()
	hub, wan, site, siteID := hs.hub, hs.wan, hs.site, hs.siteID
	converged := func() bool { return partition.Converged(hub, site) }
	if err := partition.Wait(ctx, partition.WaitTimeout, "the site and the hub to converge", converged); err != nil {
		return err
	}
	siteSrc := replication.Source{Origin: siteID, Lane: replication.LaneNormal}
	hubSrc := replication.Source{Origin: hubstate.Origin, Lane: replication.LaneNormal}
	siteBase := hub.State().Vector()[siteSrc]
	hubBase := hub.State().Vector()[hubSrc]

	// The outage: both sides change things.
	wan.Cut()
	start := time.Now()
	for i := 0; i < n; i += catchupSiteBatch {
		cmds := make([]*raftv1.Command, 0, catchupSiteBatch)
		for j := i; j < min(n, i+catchupSiteBatch); j++ {
			cmds = append(cmds, &raftv1.Command{Actor: "bench", Op: &raftv1.Command_PutZone{PutZone: &accessv1.Zone{
				Id: partition.NewID(), SiteId: siteID, Name: fmt.Sprintf("site zone %06d", j)}}})
		}
		if _, err := site.Propose(ctx, cmds...); err != nil {
			return fmt.Errorf("site changes: %w", err)
		}
	}
	siteMake := time.Since(start)
	start = time.Now()
	for i := 0; i < n; i += catchupHubBatch {
		if _, err := hub.Write(ctx, func(tx *hubstate.Tx) {
			for j := i; j < min(n, i+catchupHubBatch); j++ {
				tx.Change(replication.KindZone, partition.NewID(), replication.SetOp("site", siteID),
					replication.SetOp("name", fmt.Sprintf("hub zone %06d", j)))
			}
		}); err != nil {
			return fmt.Errorf("hub changes: %w", err)
		}
	}
	hubMake := time.Since(start)
	opt.Log.Info("catchup: changes made during the outage", "per_side", n, "site", siteMake.Round(time.Millisecond),
		"hub", hubMake.Round(time.Millisecond))

	// The raw size of what must cross.
	size := func(ds []replication.Delta) (int64, error) {
		var raw int64
		for _, d := range ds {
			b, err := d.MarshalBinary()
			if err != nil {
				return 0, err
			}
			raw += int64(len(b))
		}
		return raw, nil
	}
	leader, err := site.Leader(ctx)
	if err != nil {
		return err
	}
	var siteDs []replication.Delta
	leader.Machine().ViewReplica(func(r *replication.Replica) { siteDs, err = r.Deltas(siteSrc, siteBase, 0) })
	if err != nil {
		return err
	}
	hubDs, err := hub.State().Deltas(hubSrc, hubBase, 0)
	if err != nil {
		return err
	}
	if len(siteDs) != n || len(hubDs) != n {
		return fmt.Errorf("catchup: %d site and %d hub deltas made, want %d each", len(siteDs), len(hubDs), n)
	}
	siteRaw, err := size(siteDs)
	if err != nil {
		return err
	}
	hubRaw, err := size(hubDs)
	if err != nil {
		return err
	}
	raw := siteRaw + hubRaw

	// Heal and wait.
	up0, down0 := wan.Bytes()
	start = time.Now()
	if err := wan.Heal(); err != nil {
		return err
	}
	// Each direction's completion, for reading where the time goes.
	var upDone, downDone time.Duration
	if err := partition.Wait(ctx, catchupTimeout, "convergence after the heal", func() bool {
		if upDone == 0 && hub.State().Vector()[siteSrc] >= siteBase+uint64(n) {
			upDone = time.Since(start)
		}
		if downDone == 0 {
			all := true
			for _, nd := range site.Nodes() {
				all = all && nd.Machine().Vector()[hubSrc] >= hubBase+uint64(n)
			}
			if all {
				downDone = time.Since(start)
			}
		}
		return upDone > 0 && downDone > 0 && converged()
	}); err != nil {
		return err
	}
	took := time.Since(start)
	up1, down1 := wan.Bytes()
	wire := (up1 - up0) + (down1 - down0)
	opt.Log.Info("catchup: converged", "took", took.Round(time.Millisecond), "up_bytes", up1-up0, "down_bytes", down1-down0, "raw_bytes", raw)

	floor := max(siteMake, hubMake)
	emit(NewResult("catchup", fmt.Sprintf("converge_s_%dk", n/1000), took.Seconds(), "s", floor.Seconds()))
	emit(NewResult("catchup", fmt.Sprintf("wire_bytes_%dk", n/1000), float64(wire), "bytes", float64(raw)))
	emit(NewResult("catchup", "site_to_hub_s", upDone.Seconds(), "s", siteMake.Seconds()))
	emit(NewResult("catchup", "hub_to_site_s", downDone.Seconds(), "s", hubMake.Seconds()))
	emit(NewResult("catchup", "site_to_hub_bytes", float64(up1-up0), "bytes", float64(siteRaw)))
	emit(NewResult("catchup", "hub_to_site_bytes", float64(down1-down0), "bytes", float64(hubRaw)))
	return nil
}

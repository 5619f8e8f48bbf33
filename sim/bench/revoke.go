package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
	"github.com/gatehouse/gatehouse/replication"
	"github.com/gatehouse/gatehouse/sim/device"
	"github.com/gatehouse/gatehouse/sim/partition"
)

func init() {
	Default.Register(Bench{
		Name: "revoke",
		Help: "a person disabled at the hub -> the door denies at every node of a 3-node site (online, over Connect and MQTT), p50/p99, against a hub store commit plus a site Raft commit",
		Run:  runRevoke,
	})
}

// revokeParams sizes the revoke benchmark.
type revokeParams struct {
	people int // revocations measured, one person each
	floors int // samples of each floor
}

var (
	revokeFull  = revokeParams{people: 200, floors: 200}
	revokeQuick = revokeParams{people: 30, floors: 30}
)

const (
	revokeSiteToken = "revoke-bench-site-token"
	revokeCardBase  = 5_000_000
	// revokeTapTimeout bounds one tap; a revocation must be denied at
	// every node within revokeDeadline or the benchmark fails.
	revokeTapTimeout = 2 * time.Second
	revokeDeadline   = 30 * time.Second
	// revokeTapEvery paces each reader's taps: every decision is recorded
	// through the site's Raft log, so a closed loop of taps would load
	// the very commit path being measured (measured here: p50 ten times
	// higher with three readers tapping back to back).
	revokeTapEvery = 5 * time.Millisecond
)

// runRevoke measures how long a revocation made at the hub takes to stop
// every door of a site, online: a hub (Badger store, SyncService over
// loopback HTTP/2) and a 3-node site with the product's default timings,
// the site's uplink connected through a toxiproxy proxy without toxics,
// one reader per node on that node's embedded broker.
//
// Each sample disables one person at the hub (one hub write, durable)
// while every reader taps that person's card every revokeTapEvery; the
// sample is the time from the start of the hub write to the decision, at
// the slowest node, of the first tap denied because the person is
// inactive. The pacing adds up to revokeTapEvery (half of it on average)
// to each sample.
//
// The floor is the path's two unavoidable commits, measured in the same
// run on the same hub and site: a one-change hub write (the store's
// fsynced commit) plus a one-command Raft commit at the site (a majority's
// bolt fsyncs and the leader's apply); p50 against the sum of their p50s,
// p99 against the sum of their p99s. Everything above it is the sync
// stream, the revocation's fencing (every node applies it or has fenced
// before the site acknowledges) and the MQTT round trip.
func runRevoke(ctx context.Context, opt Options, emit func(Result)) error {
	p := revokeFull
	if opt.Quick {
		p = revokeQuick
	}
	hs, err := openHubSite(ctx, opt, "revoke", revokeSiteToken)
	if err != nil {
		return err
	}
	defer hs.Close()
	hub, site, siteID := hs.hub, hs.site, hs.siteID

	// The site's door, group and readers; the hub's people.
	door, group := partition.NewID(), partition.NewID()
	cmds, creds := partition.ReaderCommands(siteID, access.ID(door), len(site.Nodes()))
	cmds = append([]*raftv1.Command{
		{Op: &raftv1.Command_PutDoor{PutDoor: &accessv1.Door{Id: door, SiteId: siteID, Name: "front"}}},
		{Op: &raftv1.Command_PutGroup{PutGroup: &accessv1.Group{Id: group, SiteId: siteID, Name: "staff",
			DoorIds: []string{door}, Kind: accessv1.GroupKind_GROUP_KIND_ACCESS}}},
	}, cmds...)
	if _, err := site.Propose(ctx, cmds...); err != nil {
		return err
	}
	// The hub grants only a group it knows (as its people API does): the
	// grant's site is what scopes it to the site (docs/sync.md §4).
	if err := partition.Wait(ctx, partition.WaitTimeout, "the hub to know the site's group", func() bool {
		_, ok := hub.State().Facts().Field(replication.KindGroup, group, "site")
		return ok
	}); err != nil {
		return err
	}
	people := make([]string, p.people)
	if _, err := hub.Write(ctx, func(tx *hubstate.Tx) {
		r := tx.Replica()
		for i := range people {
			people[i] = partition.NewID()
			card := access.CardNumber(revokeCardBase + i).String()
			tx.Change(replication.KindPerson, people[i], replication.SetOp("kind", "access_user"),
				replication.SetOp("name", fmt.Sprint("person ", i)), r.EnableOp(replication.KindPerson, people[i]))
			tx.Change(replication.KindCard, card, replication.AddOp("holders", people[i]), r.EnableOp(replication.KindCard, card))
			tx.Change(replication.KindGrant, partition.NewID(), r.GrantOp(access.Grant{HolderID: access.ID(people[i]), GroupID: access.ID(group)}))
		}
	}); err != nil {
		return err
	}
	if err := partition.Wait(ctx, partition.WaitTimeout, "the site and the hub to converge", func() bool { return partition.Converged(hub, site) }); err != nil {
		return err
	}
	var readers []*device.Reader
	hs.onClose(func() {
		for _, r := range readers {
			_ = r.Close()
		}
	})
	for i, n := range site.Nodes() {
		r, err := partition.DialReader(ctx, siteID, n.MQTTAddr(), creds[i])
		if err != nil {
			return err
		}
		readers = append(readers, r)
	}
	// Every reader sees the first person granted: the site is ready.
	for _, r := range readers {
		if err := partition.Wait(ctx, partition.WaitTimeout, "a granted tap", func() bool {
			res, err := r.Tap(ctx, revokeCardBase, revokeTapTimeout)
			return err == nil && res.Decision.Grant
		}); err != nil {
			return err
		}
	}

	// The floors.
	hubW, siteC, err := revokeFloors(ctx, hub, site, siteID, p.floors)
	if err != nil {
		return err
	}
	hub50, hub99 := ms(Percentile(hubW, 0.5)), ms(Percentile(hubW, 0.99))
	site50, site99 := ms(Percentile(siteC, 0.5)), ms(Percentile(siteC, 0.99))

	// The revocations.
	lat := make([]time.Duration, 0, p.people)
	for i, person := range people {
		if err := ctx.Err(); err != nil {
			return err
		}
		d, err := revokeOne(ctx, hub, readers, person, access.CardNumber(revokeCardBase+i))
		if err != nil {
			return fmt.Errorf("revocation %d: %w", i, err)
		}
		lat = append(lat, d)
	}
	opt.Log.Info("revoke: done", "revocations", len(lat), "max", Percentile(lat, 1))
	emit(NewResult("revoke", "hub_write_p50_ms", hub50, "ms", hub50))
	emit(NewResult("revoke", "hub_write_p99_ms", hub99, "ms", hub99))
	emit(NewResult("revoke", "site_commit_p50_ms", site50, "ms", site50))
	emit(NewResult("revoke", "site_commit_p99_ms", site99, "ms", site99))
	emit(NewResult("revoke", "deny_p50_ms", ms(Percentile(lat, 0.5)), "ms", hub50+site50))
	emit(NewResult("revoke", "deny_p99_ms", ms(Percentile(lat, 0.99)), "ms", hub99+site99))
	return nil
}

// revokeOne disables person at the hub and returns the time until every
// reader got a tap of card denied because the person is inactive.
func revokeOne(ctx context.Context, hub *partition.Hub, readers []*device.Reader, person string, card access.CardNumber) (time.Duration, error) {
	start := time.Now()
	if _, err := hub.Write(ctx, func(tx *hubstate.Tx) {
		tx.Change(replication.KindPerson, person, replication.DisableOp("inactive"))
	}); err != nil {
		return 0, err
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		slowest time.Duration
		errs    []error
	)
	for _, r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := start.Add(revokeDeadline)
			tick := time.NewTicker(revokeTapEvery)
			defer tick.Stop()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				res, err := r.Tap(ctx, card, revokeTapTimeout)
				if err != nil || res.Decision.Reason != access.ReasonPersonInactive {
					<-tick.C
					continue
				}
				d := res.Sent.Add(res.Latency).Sub(start)
				mu.Lock()
				slowest = max(slowest, d)
				mu.Unlock()
				return
			}
			mu.Lock()
			errs = append(errs, fmt.Errorf("reader at door %s still not denying after %v", r.Door(), revokeDeadline))
			mu.Unlock()
		}()
	}
	wg.Wait()
	return slowest, errors.Join(errs...)
}

// revokeFloors measures n one-change hub writes and n one-command site
// commits.
func revokeFloors(ctx context.Context, hub *partition.Hub, site *partition.Site, siteID string, n int) (hubW, siteC []time.Duration, err error) {
	ghost := partition.NewID()
	for i := range n {
		start := time.Now()
		if _, err := hub.Write(ctx, func(tx *hubstate.Tx) {
			tx.Change(replication.KindZone, ghost, replication.SetOp("site", siteID), replication.SetOp("name", fmt.Sprint("floor ", i)))
		}); err != nil {
			return nil, nil, err
		}
		hubW = append(hubW, time.Since(start))
	}
	zone := partition.NewID()
	failed := 0
	for i := 0; len(siteC) < n; i++ {
		leader, err := site.Leader(ctx)
		if err != nil {
			return nil, nil, err
		}
		start := time.Now()
		if _, err := leader.Propose(ctx, &raftv1.Command{Actor: "bench", RequestId: partition.NewID(),
			Op: &raftv1.Command_PutZone{PutZone: &accessv1.Zone{Id: zone, SiteId: siteID, Name: fmt.Sprint("floor ", i)}}}); err != nil {
			// A leader change (a loaded machine) loses a sample, not the
			// run; the write is an idempotent upsert.
			if failed++; failed > n {
				return nil, nil, fmt.Errorf("site commits: %d failed, last: %w", failed, err)
			}
			continue
		}
		siteC = append(siteC, time.Since(start))
	}
	return hubW, siteC, nil
}

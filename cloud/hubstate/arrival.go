package hubstate

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/store"
	"github.com/gatehouse/gatehouse/replication"
)

// Re-scoping on arrival (docs/sync.md §4, "When an entity arrives from a
// site").
//
// The hub scopes its own changes when it makes them, from what it knows
// then. Some of what decides concern may be made at a site and reach the
// hub later: a group made at site S, granted at the hub before S's group
// delta arrived, or a visit made at S's kiosk that the hub granted. When
// such an entity arrives (a site's batch sets its "site", which the hub
// did not know), the hub's changes that concern it now enter that site's
// scoped log, as they would have had the entity been known when they were
// made:
//   - the entity's own earlier hub changes;
//   - for a group: every hub grant of it not removed, and the grant's
//     holder (a person with their cards, or a visit with its visitor and
//     host);
//   - for a visit: every hub grant it holds not removed, and the visit.
//
// The scoped records are planned before the site's batch is committed and
// committed with it, in the same store commit (when they fit it; else in a
// commit of their own right after it, and a crash between the two is
// repaired on open by reconcileScopes). Open also reconciles every store:
// one written before re-scoping existed gets the entries it missed.

// planArrival returns the scoped records that ds (a batch of a site's
// source, not yet applied) brings: the hub's changes of the groups and
// visits whose site ds sets. s.mu must be held.
func (s *State) planArrival(ds []replication.Delta) *scopePlan {
	p := s.newPlan(0)
	p.sds = make([]siteRef, 0, len(ds))
	var arrivals []entRef
	for _, d := range ds {
		e := entRef{d.Kind, d.ID}
		switch d.Kind {
		case replication.KindZone, replication.KindDoor, replication.KindGroup, replication.KindVisit, replication.KindCard:
		default:
			continue
		}
		for _, op := range d.Ops {
			if op.Type != replication.OpSet || (op.Field != "site" && op.Field != "visitor" && op.Field != "host") {
				continue
			}
			// The value the replica will hold once ds is applied: a site
			// may not move an entity the hub knows (docs/sync.md §3), so
			// a field the hub knows keeps its value; one it does not
			// know takes the batch's last value (one source's stamps only
			// grow).
			if _, known := s.rep.Field(e.kind, e.id, op.Field); known {
				continue
			}
			f := p.fields[e]
			switch op.Field {
			case "site":
				if f.set&1 == 0 {
					arrivals = append(arrivals, e)
				}
				f.site, f.set = op.Value, f.set|1
			case "visitor":
				f.visitor, f.set = op.Value, f.set|2
			case "host":
				f.host, f.set = op.Value, f.set|4
			}
			p.fields[e] = f
		}
	}
	for _, e := range arrivals {
		p.arrive(e, p.field(e, "site"))
	}
	// A person, card or visit of the batch's normal lane that entered
	// other sites reaches them (scope.go, add).
	for _, d := range ds {
		if d.Lane == replication.LaneNormal && relayed(d.Kind) {
			p.add(d)
		}
	}
	return p
}

// arrive makes what concerns e, now known to be at site, enter site.
func (p *scopePlan) arrive(e entRef, site string) {
	if site == "" {
		return
	}
	if len(p.x.byEnt[e]) > 0 {
		p.enter(site, e)
	}
	var grants []hubGrant
	switch e.kind {
	case replication.KindGroup:
		grants = p.x.grantsOf[e.id]
	case replication.KindVisit:
		grants = p.x.grantsHeld[e.id]
	default:
		return
	}
	for _, g := range grants {
		if cur, ok := p.s.rep.Grant(access.ID(g.id)); ok && cur.Removed {
			continue // removal is final: the site needs neither the grant nor its holder
		}
		p.enter(site, p.holder(g.holder))
		p.enter(site, entRef{replication.KindGrant, g.id})
	}
}

// arrivalFits reports whether a site's batch with the scoped records it
// brings fits one store commit (a variable so tests can take the other
// path).
var arrivalFits = fitsOne

// fitsOne reports whether b fits one store commit.
func fitsOne(b store.Batch) bool {
	items, size := len(b.Claim)+len(b.Unclaim)+len(b.Puts), 0
	for _, a := range b.Appends {
		items += len(a.Records)
		for _, r := range a.Records {
			size += len(r.Data)
		}
	}
	return items <= store.MaxBatchItems && size <= store.MaxBatchBytes
}

// reconcileScopes makes every hub change that concerns a site by what the
// hub knows now, through a group or visit of that site, enter the site's
// scoped log if it has not: what arrivals committed before re-scoping
// existed, or whose scoped records a crash lost, left out. It commits
// nothing when nothing is missing. s.mu must be held.
func (s *State) reconcileScopes(ctx context.Context) error {
	p := s.newPlan(0)
	for _, group := range slices.Sorted(maps.Keys(s.scope.grantsOf)) {
		if site, _ := s.rep.Field(replication.KindGroup, group, "site"); site != "" {
			p.arrive(entRef{replication.KindGroup, group}, site)
		}
	}
	for _, holder := range slices.Sorted(maps.Keys(s.scope.grantsHeld)) {
		if site, _ := s.rep.Field(replication.KindVisit, holder, "site"); site != "" {
			p.arrive(entRef{replication.KindVisit, holder}, site)
		}
	}
	if len(p.order) == 0 {
		return nil
	}
	if err := s.commit(ctx, store.Batch{Appends: p.appends()}); err != nil {
		return fmt.Errorf("hubstate: reconcile the sites' scoped logs: %w", err)
	}
	n := 0
	for _, site := range p.order {
		n += len(p.refs[site])
	}
	p.merge()
	s.log.Info("hubstate: scoped the hub's changes of groups and visits that arrived from sites", "sites", len(p.order), "deltas", n)
	return nil
}

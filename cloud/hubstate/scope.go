package hubstate

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/store"
	"github.com/gatehouse/gatehouse/replication"
)

// Site-scoped logs of the hub's own changes (docs/sync.md §4).
//
// The hub's normal lane ("hub/normal") holds every change made at the hub:
// people, cards, groups and doors of every site. A site receives only the
// part of it that concerns the site, as a log of its own: the scoped log of
// site S lists, in the order S receives them, the sequence numbers of the
// hub's normal deltas that concern S. The sync server sends S those deltas
// renumbered 1, 2, 3... by their place in S's scoped log, so the session's
// rules (consecutive deltas, never past a gap, resume from the durable
// vector) hold unchanged, and S's vector entry for hub/normal counts what S
// holds of its scoped log. The hub's priority lane is not scoped: every
// revocation goes to every site (one too many is always safe).
//
// What concerns S, decided when the hub makes a delta, in order:
//   - a site, zone, door, group, visit or card whose "site" is S;
//   - a grant of a group of S, and then its holder (a person, or a visit and
//     its visitor);
//   - a card bound to a holder that concerns S, and the holder of a card
//     that concerns S (a site names who holds a card it knows);
//   - the visitor and the host of a visit at S;
//   - every later change of anything that concerned S once (concern only
//     grows, so a card moved to a holder elsewhere still reaches S).
//
// When something comes to concern S (it "enters" S), its earlier hub
// deltas are put in S's scoped log first (a backfill: a person granted at S
// today arrives with the name, the cards and the flags the hub gave them
// before), and a person's cards enter with them. The CRDT merge does not
// care about order, so a backfilled delta is merged like any other.
//
// Scoped logs are durable: each is a store log named "scope/SITE" whose
// records hold the hub sequence numbers (uvarints, up to scopeChunk per
// record, one record per write), appended in the same commit as the hub
// deltas they list. What S has been sent is therefore fixed once
// committed, across restarts, and never depends on later state.

// scopeLogPrefix starts the store name of a site's scoped log.
const scopeLogPrefix = "scope/"

// hubNormal is the hub's normal lane, the one scoped.
var hubNormal = replication.Source{Origin: Origin, Lane: replication.LaneNormal}

// scopeKey names one scoped log: the deltas of origin's normal lane (the
// hub's, or another site's) that concern site.
type scopeKey struct{ site, origin string }

// source returns the source the scoped log is drawn from.
func (k scopeKey) source() replication.Source {
	return replication.Source{Origin: k.origin, Lane: replication.LaneNormal}
}

// scopeLogName returns the store name of a scoped log: "scope/SITE" for
// the hub's normal lane, "scope/SITE/ORIGIN" for another site's.
func scopeLogName(k scopeKey) string {
	if k.origin == Origin {
		return scopeLogPrefix + k.site
	}
	return scopeLogPrefix + k.site + "/" + k.origin
}

// parseScopeLogName is the inverse of scopeLogName.
func parseScopeLogName(name string) (scopeKey, bool) {
	rest, ok := strings.CutPrefix(name, scopeLogPrefix)
	if !ok {
		return scopeKey{}, false
	}
	site, origin, relay := strings.Cut(rest, "/")
	if !relay {
		origin = Origin
	}
	return scopeKey{site, origin}, true
}

// originSeq is one delta of another site's normal lane.
type originSeq struct {
	origin string
	seq    uint64
}

// relayed reports whether scoping places deltas of kind k from sites'
// normal lanes: the entities that may enter another site (a person, their
// cards, a visit). A site's zones, doors, groups and grants concern only
// itself.
func relayed(k replication.Kind) bool {
	return k == replication.KindPerson || k == replication.KindCard || k == replication.KindVisit
}

// entRef names one entity.
type entRef struct {
	kind replication.Kind
	id   string
}

// siteScope is one scoped log.
type siteScope struct {
	refs   []uint64 // hub/normal sequence numbers, in scoped order
	chunks uint64   // store records of the scoped log (each holds up to scopeChunk refs)
}

// scopeIndex is the scoped logs of every site, and what it takes to extend
// them. s.mu guards it.
type scopeIndex struct {
	logs    map[scopeKey]*siteScope
	sitesOf map[entRef][]string // the sites each entity has entered
	byEnt   map[entRef][]uint64 // each entity's hub/normal sequence numbers
	// atSites lists the deltas of sites' normal lanes of each relayed
	// entity (a person, card or visit), in the order applied.
	atSites map[entRef][]originSeq
	// The hub's grants (made by hub/normal deltas), by group and by
	// holder, so that a group or visit arriving from a site later brings
	// the hub's grants of it into the site's scoped log (arrive).
	grantsOf   map[string][]hubGrant // group ID → grants
	grantsHeld map[string][]hubGrant // holder ID → grants
}

// hubGrant is one grant the hub made.
type hubGrant struct {
	id            string
	holder, group access.ID
}

func newScopeIndex() *scopeIndex {
	return &scopeIndex{logs: map[scopeKey]*siteScope{}, sitesOf: map[entRef][]string{}, byEnt: map[entRef][]uint64{},
		atSites: map[entRef][]originSeq{}, grantsOf: map[string][]hubGrant{}, grantsHeld: map[string][]hubGrant{}}
}

// note records the deltas planned or loaded: hub/normal deltas with
// noteHub, relayed entities' deltas of sites' normal lanes in atSites.
func (x *scopeIndex) note(ds []replication.Delta) {
	var hub []replication.Delta
	for _, d := range ds {
		switch {
		case d.Origin == Origin:
			hub = append(hub, d)
		case d.Lane == replication.LaneNormal && relayed(d.Kind):
			e := entRef{d.Kind, d.ID}
			x.atSites[e] = append(x.atSites[e], originSeq{d.Origin, d.Seq})
		}
	}
	x.noteHub(hub)
}

// noteHub records the entities and grants of hub/normal deltas applied.
func (x *scopeIndex) noteHub(ds []replication.Delta) {
	for _, d := range ds {
		e := entRef{d.Kind, d.ID}
		x.byEnt[e] = append(x.byEnt[e], d.Seq)
		if d.Kind != replication.KindGrant {
			continue
		}
		for _, op := range d.Ops {
			if op.Type != replication.OpGrant {
				continue
			}
			if g, err := replication.ParseGrantValue(op.Value); err == nil {
				hg := hubGrant{id: d.ID, holder: g.HolderID, group: g.GroupID}
				x.grantsOf[string(g.GroupID)] = append(x.grantsOf[string(g.GroupID)], hg)
				x.grantsHeld[string(g.HolderID)] = append(x.grantsHeld[string(g.HolderID)], hg)
			}
		}
	}
}

// log returns a scoped log, made on first use.
func (x *scopeIndex) log(k scopeKey) *siteScope {
	sc := x.logs[k]
	if sc == nil {
		sc = &siteScope{}
		x.logs[k] = sc
	}
	return sc
}

// enter records that e entered site.
func (x *scopeIndex) enter(site string, e entRef) {
	if !slices.Contains(x.sitesOf[e], site) {
		x.sitesOf[e] = append(x.sitesOf[e], site)
	}
}

// loadScopes reads the scoped logs the store holds beyond the index: vec
// is the store's vector. The hub/normal deltas they name must be applied
// to the replica first. s.mu must be held.
func (s *State) loadScopes(ctx context.Context, vec map[string]uint64) error {
	for name, head := range vec {
		k, ok := parseScopeLogName(name)
		if !ok {
			continue
		}
		site, src := k.site, k.source()
		sc := s.scope.log(k)
		for after := sc.chunks; after < head; {
			recs, err := s.st.Read(ctx, name, after, store.MaxLimit, store.AllLanes)
			if err != nil {
				return fmt.Errorf("hubstate: load %s: %w", name, err)
			}
			if len(recs) == 0 {
				break
			}
			for _, r := range recs {
				if r.Seq != after+1 || len(r.Data) == 0 {
					return access.Errorf(access.Invalid, "hubstate: load %s/%d: malformed scoped record", name, r.Seq)
				}
				for b := r.Data; len(b) > 0; {
					seq, n := binary.Uvarint(b)
					if n <= 0 {
						return access.Errorf(access.Invalid, "hubstate: load %s/%d: malformed scoped record", name, r.Seq)
					}
					b = b[n:]
					var ds []replication.Delta
					if seq > 0 {
						ds, _ = s.rep.Deltas(src, seq-1, 1)
					}
					if len(ds) == 0 {
						return access.Errorf(access.Invalid, "hubstate: load %s/%d: names delta %s/%d, which the hub does not hold", name, r.Seq, src, seq)
					}
					sc.refs = append(sc.refs, seq)
					s.scope.enter(site, entRef{ds[0].Kind, ds[0].ID})
				}
				sc.chunks = r.Seq
				after = r.Seq
			}
		}
	}
	return nil
}

// ScopedLen returns how many deltas site's scoped log of the hub's normal
// lane holds: the hub/normal entry of the vector the hub shows site.
func (s *State) ScopedLen(site string) uint64 {
	return s.ScopedSourceLen(site, hubNormal)
}

// ScopedSourceLen returns how many deltas site's scoped log of src (the
// hub's normal lane or another site's) holds: src's entry of the vector the
// hub shows site. It is 0 for any other source.
func (s *State) ScopedSourceLen(site string, src replication.Source) uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if sc := s.scope.logs[scopeKey{site, src.Origin}]; sc != nil && src.Lane == replication.LaneNormal {
		return uint64(len(sc.refs))
	}
	return 0
}

// ScopedVector returns the hub's durable vector as site sees it: the entry
// of every normal lane but site's own (the hub's, other sites') is the
// length of site's scoped log of it, and left out when that is empty.
// (Which sources site receives at all is the sync server's choice.)
func (s *State) ScopedVector(site string) replication.Vector {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v := s.rep.Vector()
	for src := range v {
		if src.Lane == replication.LaneNormal && src.Origin != site {
			delete(v, src)
		}
	}
	for k, sc := range s.scope.logs {
		if k.site == site && len(sc.refs) > 0 {
			v[k.source()] = uint64(len(sc.refs))
		}
	}
	return v
}

// ScopedDeltas returns up to max deltas of site's scoped log of the hub's
// normal lane after position after; see ScopedSourceDeltas.
func (s *State) ScopedDeltas(site string, after uint64, max int) ([]replication.Delta, error) {
	return s.ScopedSourceDeltas(site, hubNormal, after, max)
}

// ScopedSourceDeltas returns up to max deltas of site's scoped log of src
// (a normal lane, the hub's or another site's) after position after: src's
// deltas renumbered by their place in the scoped log (all of them when
// max <= 0). It returns nothing for any other source, and never fails.
func (s *State) ScopedSourceDeltas(site string, src replication.Source, after uint64, max int) ([]replication.Delta, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	sc := s.scope.logs[scopeKey{site, src.Origin}]
	if sc == nil || src.Lane != replication.LaneNormal || after >= uint64(len(sc.refs)) {
		return nil, nil
	}
	refs := sc.refs[after:]
	if max > 0 && len(refs) > max {
		refs = refs[:max]
	}
	out := make([]replication.Delta, 0, len(refs))
	for i, seq := range refs {
		ds, _ := s.rep.Deltas(src, seq-1, 1)
		if len(ds) == 0 {
			// Cannot happen: a scoped record is committed with the
			// delta it names, and loaded after it.
			return nil, access.Errorf(access.Unavailable, "hubstate: scoped log of %s names delta %s/%d, not held", site, src, seq)
		}
		d := ds[0]
		d.Seq = after + uint64(i) + 1
		out = append(out, d)
	}
	return out, nil
}

// scopePlan extends the scoped logs for one write, without changing the
// index until the write is committed (merge).
type scopePlan struct {
	s       *State
	x       *scopeIndex
	ds      []replication.Delta // the hub's deltas planned (add)
	sds     []siteRef           // the sites' deltas planned (add)
	refs    map[scopeKey][]uint64
	order   []scopeKey // scoped logs in the order first extended
	sitesOf map[entRef][]string
	byEnt   map[entRef][]uint64
	// atSites indexes p.sds by entity, built on the
	// first enter that needs it (most site batches enter nothing).
	atSites      map[entRef][]originSeq
	atSitesBuilt bool
	cards        map[access.ID][]access.CardNumber // bindings made by this write
	fields       map[entRef]refFields              // "site", "visitor" and "host" set by this write
}

// planScope returns the scoped records that ds (the hub's new hub/normal
// deltas, in order) add. s.mu must be held.
func (s *State) planScope(ds []replication.Delta) *scopePlan {
	p := s.newPlan(len(ds))
	for _, d := range ds {
		p.add(d)
	}
	return p
}

// newPlan returns an empty plan. s.mu must be held.
func (s *State) newPlan(n int) *scopePlan {
	return &scopePlan{s: s, x: s.scope, refs: map[scopeKey][]uint64{},
		sitesOf: make(map[entRef][]string, n), byEnt: make(map[entRef][]uint64, n), atSites: map[entRef][]originSeq{},
		cards: map[access.ID][]access.CardNumber{}, fields: map[entRef]refFields{}}
}

// refFields are the fields scoping reads that a write set.
type refFields struct {
	site, visitor, host string
	set                 uint8 // which are set: 1 site, 2 visitor, 4 host
}

// field returns an entity's field ("site", "visitor" or "host") as of this
// point of the write.
func (p *scopePlan) field(e entRef, name string) string {
	if f, ok := p.fields[e]; ok {
		switch {
		case name == "site" && f.set&1 != 0:
			return f.site
		case name == "visitor" && f.set&2 != 0:
			return f.visitor
		case name == "host" && f.set&4 != 0:
			return f.host
		}
	}
	v, _ := p.s.rep.Field(e.kind, e.id, name)
	return v
}

// has reports whether e has entered site.
func (p *scopePlan) has(site string, e entRef) bool {
	return slices.Contains(p.x.sitesOf[e], site) || slices.Contains(p.sitesOf[e], site)
}

// sites returns the sites e has entered. The result may be the index's
// own slice: do not change it.
func (p *scopePlan) sites(e entRef) []string {
	base, added := p.x.sitesOf[e], p.sitesOf[e]
	if len(added) == 0 {
		return base
	}
	return append(slices.Clone(base), added...)
}

// appendRef adds delta seq of origin's normal lane to site's scoped log of
// it. A site never receives its own deltas.
func (p *scopePlan) appendRef(site, origin string, seq uint64) {
	if site == origin {
		return
	}
	k := scopeKey{site, origin}
	if _, ok := p.refs[k]; !ok {
		p.order = append(p.order, k)
	}
	p.refs[k] = append(p.refs[k], seq)
}

// enter makes e enter site, with its earlier deltas (the hub's, and other
// sites' normal-lane deltas of a relayed entity), and a person's cards or
// a visit's visitor with it.
func (p *scopePlan) enter(site string, e entRef) {
	if site == "" || p.has(site, e) {
		return
	}
	p.sitesOf[e] = append(p.sitesOf[e], site)
	for _, seq := range p.x.byEnt[e] {
		p.appendRef(site, Origin, seq)
	}
	for _, seq := range p.byEnt[e] {
		p.appendRef(site, Origin, seq)
	}
	for _, os := range p.x.atSites[e] {
		p.appendRef(site, os.origin, os.seq)
	}
	p.buildAtSites()
	for _, os := range p.atSites[e] {
		p.appendRef(site, os.origin, os.seq)
	}
	switch e.kind {
	case replication.KindPerson:
		id := access.ID(e.id)
		for _, n := range append(slices.Clone(p.s.cardsOf[id]), p.cards[id]...) {
			p.enter(site, entRef{replication.KindCard, n.String()})
		}
	case replication.KindVisit:
		for _, f := range []string{"visitor", "host"} {
			if v := p.field(e, f); v != "" {
				p.enter(site, entRef{replication.KindPerson, v})
			}
		}
	}
}

// holder returns the entity a grant holder names: a visit the hub knows,
// else a person.
func (p *scopePlan) holder(id access.ID) entRef {
	if v := (entRef{replication.KindVisit, string(id)}); p.field(v, "site") != "" {
		return v
	}
	return entRef{replication.KindPerson, string(id)}
}

// buildAtSites indexes the sites' deltas planned so far, once.
func (p *scopePlan) buildAtSites() {
	if p.atSitesBuilt {
		return
	}
	p.atSitesBuilt = true
	for _, r := range p.sds {
		p.atSites[r.e] = append(p.atSites[r.e], r.os)
	}
}

// siteRef is one delta of a site's normal lane, as scoping notes it.
type siteRef struct {
	e  entRef
	os originSeq
}

// add places one new delta of a normal lane: the hub's (any kind), or a
// site's (a relayed kind). A site's delta goes to the other sites its
// entity entered (never back to its own site).
func (p *scopePlan) add(d replication.Delta) {
	e := entRef{d.Kind, d.ID}
	for _, op := range d.Ops {
		if op.Type != replication.OpSet {
			continue
		}
		f, ok := p.fields[e]
		switch op.Field {
		case "site":
			f.site, f.set = op.Value, f.set|1
		case "visitor":
			f.visitor, f.set = op.Value, f.set|2
		case "host":
			f.host, f.set = op.Value, f.set|4
		default:
			if !ok {
				continue
			}
		}
		p.fields[e] = f
	}
	targets := slices.Clone(p.sites(e))
	var follow []entRef // holders that enter the targets with d
	switch d.Kind {
	case replication.KindSite:
		targets = append(targets, d.ID)
	case replication.KindZone, replication.KindDoor, replication.KindGroup:
		targets = append(targets, p.field(e, "site"))
	case replication.KindVisit:
		targets = append(targets, p.field(e, "site"))
		for _, f := range []string{"visitor", "host"} {
			if v := p.field(e, f); v != "" {
				follow = append(follow, entRef{replication.KindPerson, v})
			}
		}
	case replication.KindGrant:
		for _, op := range d.Ops {
			if op.Type != replication.OpGrant {
				continue
			}
			g, err := replication.ParseGrantValue(op.Value)
			if err != nil {
				continue
			}
			h := p.holder(g.HolderID)
			site := p.field(entRef{replication.KindGroup, string(g.GroupID)}, "site")
			targets = append(targets, site)
			if h.kind == replication.KindVisit {
				targets = append(targets, p.field(h, "site"))
			}
			follow = append(follow, h)
		}
	case replication.KindCard:
		targets = append(targets, p.field(e, "site"))
		n, nerr := access.ParseCardNumber(d.ID)
		for _, op := range d.Ops {
			if op.Type != replication.OpAdd || op.Field != "holders" {
				continue
			}
			person, visit, err := replication.ParseHolderValue(op.Value)
			if err != nil {
				continue
			}
			if nerr == nil && !slices.Contains(p.cards[person], n) {
				p.cards[person] = append(p.cards[person], n)
			}
			targets = append(targets, p.sites(entRef{replication.KindPerson, string(person)})...)
			follow = append(follow, entRef{replication.KindPerson, string(person)})
			if !visit.IsZero() {
				targets = append(targets, p.sites(entRef{replication.KindVisit, string(visit)})...)
				follow = append(follow, entRef{replication.KindVisit, string(visit)})
			}
		}
	}
	slices.Sort(targets)
	targets = slices.Compact(targets)
	for _, site := range targets {
		if site == "" {
			continue
		}
		if site == d.Origin {
			continue // a site's own entity is the site's business
		}
		p.enter(site, e)
		for _, h := range follow {
			p.enter(site, h)
		}
		p.appendRef(site, d.Origin, d.Seq)
	}
	if d.Origin == Origin {
		p.byEnt[e] = append(p.byEnt[e], d.Seq)
		p.ds = append(p.ds, d)
		return
	}
	r := siteRef{e, originSeq{d.Origin, d.Seq}}
	if p.atSitesBuilt {
		p.atSites[e] = append(p.atSites[e], r.os)
	}
	p.sds = append(p.sds, r)
}

// appends returns the store appends of the plan: each extended site's
// scoped records, numbered after what the index holds.
func (p *scopePlan) appends() []store.Append {
	out := make([]store.Append, 0, len(p.order))
	for _, k := range p.order {
		base := uint64(0)
		if sc := p.x.logs[k]; sc != nil {
			base = sc.chunks
		}
		refs := p.refs[k]
		a := store.Append{Origin: scopeLogName(k)}
		for i := 0; i < len(refs); i += scopeChunk {
			var data []byte
			for _, seq := range refs[i:min(i+scopeChunk, len(refs))] {
				data = binary.AppendUvarint(data, seq)
			}
			a.Records = append(a.Records, store.Record{Seq: base + uint64(len(a.Records)) + 1, Lane: store.Normal, Data: data})
		}
		out = append(out, a)
	}
	return out
}

// scopeChunk is the most hub sequence numbers one scoped record holds (a
// uvarint each: at most 10 bytes, so a record stays below
// store.MaxRecordSize). A write appends one record per site it concerns,
// or a few for a bulk import, so scoping adds few store items to it.
const scopeChunk = 65_536

// merge applies the plan to the index once its write is committed.
func (p *scopePlan) merge() {
	for _, k := range p.order {
		sc := p.x.log(k)
		sc.refs = append(sc.refs, p.refs[k]...)
		sc.chunks += uint64((len(p.refs[k]) + scopeChunk - 1) / scopeChunk)
	}
	for e, sites := range p.sitesOf {
		for _, site := range sites {
			p.x.enter(site, e)
		}
	}
	p.x.noteHub(p.ds)
	for _, r := range p.sds {
		p.x.atSites[r.e] = append(p.x.atSites[r.e], r.os)
	}
}

// migrateScopes builds the scoped logs of a store written before they
// existed: the hub holds deltas of its own but no scoped log at all. Each
// site's scoped log is planned over the whole hub/normal log, as if the
// deltas were being made now (with today's groups, visits and cards), and
// committed. A store whose hub deltas concern no site yet plans nothing
// and is planned again on the next open, which costs only the planning.
// s.mu must be held.
func (s *State) migrateScopes(ctx context.Context) error {
	if s.rep.Vector()[hubNormal] == 0 || len(s.scope.logs) > 0 {
		return nil
	}
	ds, _ := s.rep.Deltas(hubNormal, 0, 0)
	done := s.scope
	s.scope = newScopeIndex()
	s.scope.atSites = done.atSites // sites' deltas are relayed with what enters
	p := s.planScope(ds)
	s.scope = done
	if len(p.order) == 0 {
		return nil
	}
	if err := s.commit(ctx, store.Batch{Appends: p.appends()}); err != nil {
		return fmt.Errorf("hubstate: build the sites' scoped logs: %w", err)
	}
	s.scope = p.x
	p.merge()
	s.log.Info("hubstate: built the sites' scoped logs of the hub's changes", "sites", len(p.order), "deltas", len(ds))
	return nil
}

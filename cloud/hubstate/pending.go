package hubstate

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/replication"
)

// Pending revocations (DESIGN.md §5, docs/sync.md "Pending revocations"):
// a revocation the hub holds — its own, or another site's that it relays —
// stays pending at a site until the site's durable acknowledged vector
// (RecordAck, Acked) covers it. Only the revocations that concern the site
// are listed; see PendingRevocations.

// Limits of one PendingRevocations answer.
const (
	// DefaultPendingLimit is the most items listed when the caller gives
	// no limit.
	DefaultPendingLimit = 100
	// MaxPendingLimit is the most items one call lists.
	MaxPendingLimit = 1000
)

// scanPage is how many deltas are read from the replica's log at a time.
const scanPage = 4096

// PendingRevocation is one revocation delta a site has not acknowledged
// yet, with what it is about.
type PendingRevocation struct {
	// Source and Seq name the delta: its origin ("hub" or a site), its lane
	// (always the priority lane) and its sequence number there.
	Source replication.Source
	Seq    uint64
	// Stamp is the delta's HLC stamp; Made its wall time, when the
	// revocation was made.
	Stamp replication.Stamp
	Made  time.Time
	// For is how long it has been pending: now minus Made (0 if Made is
	// in the future of now).
	For time.Duration
	// Kind and EntityID name the entity the delta changes (a card's ID is
	// its number; use CardMasked to show it).
	Kind     replication.Kind
	EntityID string
	// What says what was revoked: "grant removed", "person disabled",
	// "person deleted", "membership revoked", "card suspended", "card lost",
	// "card returned", "card holder removed", "visit checked_out", "visit
	// cancelled", "visit expired", "visit denied", "group deleted", "door
	// removed from group", "door deleted", "zone deleted", "site deleted",
	// "group removed from site"; several joined by ", " when one delta
	// holds several.
	What string
	// PersonID and PersonName name the person it concerns, if any.
	PersonID   access.ID
	PersonName string
	// CardMasked is the card number with all but its last four digits
	// masked, for a card revocation.
	CardMasked string
	// GroupID and GroupName name the access group it concerns, if any.
	GroupID   access.ID
	GroupName string
	// VisitID names the visit it concerns, if any.
	VisitID access.ID
	// Unresolved is set when the hub cannot tell which sites the
	// revocation concerns (the removal of a grant it never received): it
	// is then listed as pending at every site, to be safe.
	Unresolved bool
}

// SitePending is what PendingRevocations returns for one site.
type SitePending struct {
	// Site is the site's ID and Name its name in the hub's replica
	// (empty when the hub holds no site entity of that ID).
	Site access.ID
	Name string
	// Acked is the site's durable acknowledged vector as recorded by the
	// hub (empty when the site never acknowledged anything).
	Acked replication.Vector
	// AckedAt is when the hub last recorded an acknowledgement of the site
	// (its hello, ack or pull), in the hub's clock; the zero time when it
	// never did (or only before the hub recorded times).
	AckedAt time.Time
	// Total is how many revocations are pending at the site; Items lists
	// the oldest of them (by stamp), at most the limit asked for.
	Total int
	Items []PendingRevocation
}

// PendingRevocations returns the revocations pending at site: every
// priority-lane delta the hub holds of an origin other than site (the
// sources the hub sends the site, see syncserver.Scope), beyond what the
// site has durably acknowledged (Acked), and that concerns the site:
//
//   - a grant removal (or a membership revocation) of a group of the site,
//     or of a grant held by a visit at the site;
//   - a person disabled or deleted who holds a grant of a group of the
//     site (live or removed: the site may have applied the grant), is the
//     visitor of a visit at the site, or has held a card of the site;
//   - a card disabled, or a holder removed from it, when the card is of the
//     site or one of its holders is such a person;
//   - a visit of the site checked out, expired, cancelled or denied;
//   - a group, door or zone of the site deleted, a door removed from a
//     group of the site, the site itself deleted or a group removed from
//     it.
//
// A removal of a grant the hub never received is listed at every site
// (Unresolved). Items are sorted by stamp, oldest first, at most limit
// (DefaultPendingLimit when limit is 0); For is measured from now.
//
// It returns an invalid error for a malformed site ID (or "hub") or a
// limit outside 0..MaxPendingLimit, ErrClosed after Close, and the store's
// error when reading the acknowledged vector fails. It does not check that
// site is a site the hub replicates with: the caller does. It is safe for
// concurrent use; it reads the replica under its read lock and keeps, per
// State, an in-memory index of grants by holder and visits by visitor,
// brought up to date from the replica's logs on each call.
func (s *State) PendingRevocations(ctx context.Context, site string, limit int, now time.Time) (SitePending, error) {
	if err := replication.ValidateOrigin(site); err != nil || site == Origin {
		return SitePending{}, access.Errorf(access.Invalid, "hubstate: pending revocations: %q is not a site ID", site)
	}
	switch {
	case limit < 0 || limit > MaxPendingLimit:
		return SitePending{}, access.Errorf(access.Invalid, "hubstate: pending revocations: limit %d not in 0..%d", limit, MaxPendingLimit)
	case limit == 0:
		limit = DefaultPendingLimit
	}
	if s.Closed() {
		return SitePending{}, ErrClosed
	}
	acked, ackedAt, err := s.AckedWithTime(ctx, site)
	if err != nil {
		return SitePending{}, fmt.Errorf("hubstate: pending revocations of %s: %w", site, err)
	}
	ix := revocationIndexOf(s)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	// Most of the index's catching up (all of it after a start) is done
	// page by page, each under the read lock only briefly, so that writes
	// go on meanwhile; the rest under the lock held for the listing.
	ix.catchUp(s.Vector(), s.Deltas)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return SitePending{}, ErrClosed
	}
	ix.catchUp(s.rep.Vector(), s.rep.Deltas)
	out := SitePending{Site: access.ID(site), Acked: acked, AckedAt: ackedAt}
	if st, ok := s.rep.Site(access.ID(site)); ok {
		out.Name = st.Name
	}
	c := concern{r: s.rep, ix: ix, cardsOf: s.cardsOf, site: access.ID(site)}
	var items []PendingRevocation
	vec := s.rep.Vector()
	for _, src := range vec.Sources() {
		if src.Lane != replication.LanePriority || src.Origin == site {
			continue
		}
		for after := acked[src]; after < vec[src]; {
			ds, _ := s.rep.Deltas(src, after, scanPage)
			if len(ds) == 0 {
				break
			}
			for _, d := range ds {
				if p, ok := c.of(d); ok {
					p.For = max(now.Sub(p.Made), 0)
					items = append(items, p)
				}
			}
			after = ds[len(ds)-1].Seq
		}
	}
	slices.SortFunc(items, func(a, b PendingRevocation) int {
		if c := a.Stamp.Compare(b.Stamp); c != 0 {
			return c
		}
		return cmp.Or(strings.Compare(a.Source.Origin, b.Source.Origin), cmp.Compare(a.Seq, b.Seq))
	})
	out.Total = len(items)
	out.Items = items[:min(len(items), limit)]
	return out, nil
}

// revocationIndex is what PendingRevocations needs beyond the replica's
// own lookups, kept per State: the groups each holder (person or visit)
// was ever granted, and the visits each person is the visitor of. Grants
// are immutable and these sets only grow, so the index follows the
// replica's logs from where it last stopped.
type revocationIndex struct {
	mu       sync.Mutex
	seen     replication.Vector               // per source, the deltas indexed
	groupsOf map[access.ID][]access.ID        // holder → groups granted
	visitsOf map[access.ID][]access.ID        // visitor person → visits
	visitSet map[access.ID]map[access.ID]bool // dedupe of visitsOf
}

// revocationIndexOf returns s's index (State.revocations), making it on
// first use.
func revocationIndexOf(s *State) *revocationIndex {
	s.revocationsOnce.Do(func() {
		s.revocations = &revocationIndex{seen: replication.Vector{}, groupsOf: map[access.ID][]access.ID{},
			visitsOf: map[access.ID][]access.ID{}, visitSet: map[access.ID]map[access.ID]bool{}}
	})
	return s.revocations
}

// catchUp indexes the deltas of the priority and normal lanes up to vec
// not indexed yet (the events lane holds no grants nor visits), reading
// them with deltas (State.Deltas, or the replica's under the state's
// lock). ix.mu must be held.
func (ix *revocationIndex) catchUp(vec replication.Vector, deltas func(replication.Source, uint64, int) ([]replication.Delta, error)) {
	for src, head := range vec {
		if src.Lane != replication.LaneNormal && src.Lane != replication.LanePriority {
			continue
		}
		for ix.seen[src] < head {
			ds, _ := deltas(src, ix.seen[src], scanPage)
			if len(ds) == 0 {
				break
			}
			for _, d := range ds {
				ix.note(d)
			}
			ix.seen[src] = ds[len(ds)-1].Seq
		}
	}
}

// note indexes one delta's grants and visitors.
func (ix *revocationIndex) note(d replication.Delta) {
	for _, op := range d.Ops {
		switch {
		case op.Type == replication.OpGrant:
			g, err := replication.ParseGrantValue(op.Value)
			if err == nil && !slices.Contains(ix.groupsOf[g.HolderID], g.GroupID) {
				ix.groupsOf[g.HolderID] = append(ix.groupsOf[g.HolderID], g.GroupID)
			}
		case d.Kind == replication.KindVisit && op.Type == replication.OpSet && op.Field == "visitor" && op.Value != "":
			p, v := access.ID(op.Value), access.ID(d.ID)
			if ix.visitSet[p] == nil {
				ix.visitSet[p] = map[access.ID]bool{}
			}
			if !ix.visitSet[p][v] {
				ix.visitSet[p][v] = true
				ix.visitsOf[p] = append(ix.visitsOf[p], v)
			}
		}
	}
}

// concern decides whether revocations concern one site and describes
// them. The state's read lock and the index's lock are held while it runs.
type concern struct {
	r       *replication.Replica
	ix      *revocationIndex
	cardsOf map[access.ID][]access.CardNumber
	site    access.ID
}

// siteOf returns the "site" field of an entity.
func (c concern) siteOf(k replication.Kind, id access.ID) access.ID {
	v, _ := c.r.Field(k, string(id), "site")
	return access.ID(v)
}

// groupHere reports whether group g is of the site.
func (c concern) groupHere(g access.ID) bool { return c.siteOf(replication.KindGroup, g) == c.site }

// holderHere reports whether a grant holder (a person or a visit) is
// concerned by the site: a visit at the site, or a person (or visit) with
// a grant of a group of the site.
func (c concern) holderHere(h access.ID) bool {
	if c.siteOf(replication.KindVisit, h) == c.site {
		return true
	}
	return slices.ContainsFunc(c.ix.groupsOf[h], c.groupHere)
}

// personHere reports whether person p is concerned by the site: a grant
// of a group of the site, a visit at the site, or a card of the site.
func (c concern) personHere(p access.ID) bool {
	if slices.ContainsFunc(c.ix.groupsOf[p], c.groupHere) {
		return true
	}
	if slices.ContainsFunc(c.ix.visitsOf[p], c.holderHere) {
		return true
	}
	for _, n := range c.cardsOf[p] {
		if c.siteOf(replication.KindCard, access.ID(n.String())) == c.site {
			return true
		}
	}
	return false
}

// cardHolderHere reports whether a card holder element concerns the site.
func (c concern) cardHolderHere(person, visit access.ID) bool {
	return !visit.IsZero() && c.holderHere(visit) || c.personHere(person)
}

// setPerson fills the person of p.
func (c concern) setPerson(p *PendingRevocation, id access.ID) {
	if id.IsZero() || !p.PersonID.IsZero() {
		return
	}
	p.PersonID = id
	if pe, ok := c.r.Person(id); ok {
		p.PersonName = pe.Name
	}
}

// setGroup fills the group of p.
func (c concern) setGroup(p *PendingRevocation, id access.ID) {
	if id.IsZero() || !p.GroupID.IsZero() {
		return
	}
	p.GroupID = id
	if g, ok := c.r.Group(id); ok {
		p.GroupName = g.Name
	}
}

// setHolder fills the person (and visit) a grant holder names.
func (c concern) setHolder(p *PendingRevocation, h access.ID) {
	if v, ok := c.r.Visit(h); ok && (!v.SiteID.IsZero() || !v.VisitorID.IsZero()) {
		if p.VisitID.IsZero() {
			p.VisitID = h
		}
		c.setPerson(p, v.VisitorID)
		return
	}
	c.setPerson(p, h)
}

// of returns the pending item of d if d is a revocation that concerns the
// site.
func (c concern) of(d replication.Delta) (PendingRevocation, bool) {
	p := PendingRevocation{Source: d.Source(), Seq: d.Seq, Stamp: d.Stamp, Made: time.Unix(0, d.Stamp.Wall).UTC(),
		Kind: d.Kind, EntityID: d.ID}
	id := access.ID(d.ID)
	var what []string
	here := false
	add := func(w string, concerns bool) {
		if !slices.Contains(what, w) {
			what = append(what, w)
		}
		here = here || concerns
	}
	for _, op := range d.Ops {
		if !op.Revocation() {
			continue
		}
		switch d.Kind {
		case replication.KindGrant: // remove_grant
			g, ok := c.r.Grant(id)
			if !ok || g.HolderID.IsZero() {
				p.Unresolved = true
				add("grant removed (grant unknown to the hub)", true)
				continue
			}
			c.setHolder(&p, g.HolderID)
			c.setGroup(&p, g.GroupID)
			add("grant removed", c.groupHere(g.GroupID) || c.siteOf(replication.KindVisit, g.HolderID) == c.site)
		case replication.KindPerson:
			c.setPerson(&p, id)
			switch op.Type {
			case replication.OpDisable:
				add("person disabled", c.personHere(id))
			case replication.OpDelete:
				add("person deleted", c.personHere(id))
			case replication.OpRevoke:
				c.setGroup(&p, access.ID(op.Value))
				add("membership revoked", c.groupHere(access.ID(op.Value)))
			}
		case replication.KindCard:
			n, _ := access.ParseCardNumber(d.ID) // validated
			p.CardMasked = n.Redacted()
			cardHere := c.siteOf(replication.KindCard, id) == c.site
			switch op.Type {
			case replication.OpDisable:
				holders := c.r.CardHolders(n)
				for _, h := range holders {
					c.setPerson(&p, h.PersonID)
				}
				add("card "+op.Value, cardHere || slices.ContainsFunc(holders, func(h replication.Holder) bool {
					return c.cardHolderHere(h.PersonID, h.VisitID)
				}))
			case replication.OpRemove:
				person, visit, err := replication.ParseHolderValue(op.Value)
				if err == nil {
					c.setPerson(&p, person)
					if p.VisitID.IsZero() {
						p.VisitID = visit
					}
				}
				add("card holder removed", cardHere || err == nil && c.cardHolderHere(person, visit))
			}
		case replication.KindVisit:
			p.VisitID = id
			v, _ := c.r.Visit(id)
			c.setPerson(&p, v.VisitorID)
			visitHere := v.SiteID == c.site
			switch op.Type {
			case replication.OpAdvance:
				add("visit "+op.Value, visitHere)
			case replication.OpRevoke:
				c.setGroup(&p, access.ID(op.Value))
				add("membership revoked", visitHere || c.groupHere(access.ID(op.Value)))
			}
		case replication.KindGroup:
			c.setGroup(&p, id)
			if op.Type == replication.OpDelete {
				add("group deleted", c.groupHere(id))
			} else {
				add("door removed from group", c.groupHere(id))
			}
		case replication.KindDoor:
			add("door deleted", c.siteOf(replication.KindDoor, id) == c.site)
		case replication.KindZone:
			add("zone deleted", c.siteOf(replication.KindZone, id) == c.site)
		case replication.KindSite:
			if op.Type == replication.OpDelete {
				add("site deleted", id == c.site)
			} else {
				c.setGroup(&p, access.ID(op.Value))
				add("group removed from site", id == c.site)
			}
		}
	}
	if !here {
		return PendingRevocation{}, false
	}
	p.What = strings.Join(what, ", ")
	return p, true
}

package replication

import (
	"cmp"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

// Replica is an in-memory replica of replicated state: it applies deltas in
// per-source sequence order, idempotently, keeps them to serve to peers, and
// materialises the access entities (sites, zones, doors, groups, people,
// cards, grants, visits) that door decisions read.
//
// Each entity is a bundle of CRDTs: an LWW Register per scalar field, an
// ORSet per set (doors of a group, groups of a site, holders of a card), a
// disable-wins Flag for "active", a Tombstone for deletion and, for visits,
// a Lifecycle. Grants of all holders share one GrantSet. The materialised
// view is a pure function of the set of deltas applied, whatever their
// order across sources.
//
// Replica implements the Log and Store a Session needs. It is not safe for
// concurrent use.
type Replica struct {
	applied Vector
	log     map[Source][]Delta // deltas applied, log[src][i] has Seq i+1
	ents    map[entityKey]*entity
	grants  GrantSet
}

// entityKey names an entity.
type entityKey struct {
	kind Kind
	id   string
}

// entity is the CRDT state of one entity.
type entity struct {
	fields  map[string]Register
	sets    map[string]*ORSet
	active  Flag
	deleted Tombstone
	life    Lifecycle
}

// NewReplica returns an empty replica.
func NewReplica() *Replica {
	return &Replica{applied: Vector{}, log: make(map[Source][]Delta), ents: make(map[entityKey]*entity)}
}

// Vector returns a copy of the replica's applied vector: per source, the
// highest sequence number applied with no gap below it.
func (r *Replica) Vector() Vector { return r.applied.Clone() }

// Apply applies d if it is the next delta of its source, and reports
// whether it did. A delta already applied (Seq at or below the vector) is
// ignored, which makes duplicate delivery safe. It returns the Invalid error
// of Delta.Validate for a malformed delta and a Conflict error wrapping
// ErrGap when d is beyond the next sequence number of its source; in both
// cases nothing changes.
func (r *Replica) Apply(d Delta) (bool, error) {
	if err := d.Validate(); err != nil {
		return false, err
	}
	src := d.Source()
	next := r.applied[src] + 1
	switch {
	case d.Seq < next:
		return false, nil
	case d.Seq > next:
		return false, access.Errorf(access.Conflict, "apply %s/%d: next is %d: %w", src, d.Seq, next, ErrGap)
	}
	r.apply(d)
	return true, nil
}

// ApplyBatch applies deltas of src, skipping those already applied, all or
// nothing: it first checks that every delta is valid, of src, and that the
// new ones follow the vector without a gap, and returns an error (changing
// nothing) when one is not. It is the Store method a Session calls.
func (r *Replica) ApplyBatch(src Source, deltas []Delta) error {
	next := r.applied[src] + 1
	start := len(deltas)
	for i, d := range deltas {
		if err := d.Validate(); err != nil {
			return err
		}
		if d.Source() != src {
			return access.Errorf(access.Invalid, "apply batch of %s: delta of %s: %w", src, d.Source(), ErrBadBatch)
		}
		if d.Seq < next && start == len(deltas) {
			continue
		}
		if start == len(deltas) {
			start = i
		}
		if d.Seq != next {
			return access.Errorf(access.Conflict, "apply batch of %s: delta %d where %d is next: %w", src, d.Seq, next, ErrGap)
		}
		next++
	}
	for _, d := range deltas[start:] {
		r.apply(d)
	}
	return nil
}

// apply applies d, which is valid and next in its source. An event is
// kept in the log (to be served to peers) and changes no entity.
func (r *Replica) apply(d Delta) {
	src := d.Source()
	r.log[src] = append(r.log[src], d)
	r.applied[src] = d.Seq
	if d.Kind == KindEvent {
		return
	}
	// Grant operations change the shared GrantSet only, so a revocation of
	// a holder not seen yet does not make the holder appear.
	var e *entity
	for _, op := range d.Ops {
		if e == nil && op.Type != OpGrant && op.Type != OpRemoveGrant && op.Type != OpRevoke {
			e = r.entity(d.Kind, d.ID)
		}
		switch op.Type {
		case OpSet:
			reg := e.fields[op.Field]
			reg.Set(op.Value, d.Stamp)
			e.fields[op.Field] = reg
		case OpEnable:
			e.active.Enable(d.Stamp, op.Observed)
		case OpDisable:
			e.active.Disable(d.Stamp, op.Value)
		case OpAdd:
			e.set(op.Field).Add(op.Value, d.Stamp)
		case OpRemove:
			e.set(op.Field).Remove(op.Value, op.Observed)
		case OpGrant:
			g, _ := ParseGrantValue(op.Value) // validated
			g.ID = access.ID(d.ID)
			r.grants.Add(g, d.Stamp, op.Observed)
		case OpRemoveGrant:
			r.grants.Remove(access.ID(d.ID), d.Stamp)
		case OpRevoke:
			r.grants.Revoke(access.ID(d.ID), access.ID(op.Value), d.Stamp)
		case OpAdvance:
			var s access.VisitState
			_ = s.UnmarshalText([]byte(op.Value)) // validated
			e.life.Advance(s, d.Stamp)
		case OpDelete:
			e.deleted.Delete(d.Stamp)
		}
	}
}

// entity returns the state of an entity, creating it if needed.
func (r *Replica) entity(k Kind, id string) *entity {
	key := entityKey{k, id}
	e := r.ents[key]
	if e == nil {
		e = &entity{fields: make(map[string]Register), sets: make(map[string]*ORSet)}
		r.ents[key] = e
	}
	return e
}

// set returns the named set of e, creating it if needed.
func (e *entity) set(name string) *ORSet {
	s := e.sets[name]
	if s == nil {
		s = &ORSet{}
		e.sets[name] = s
	}
	return s
}

// Deltas returns up to max deltas of src after sequence number after, in
// sequence order (all of them when max <= 0). It is the Log method a
// Session calls and never fails.
func (r *Replica) Deltas(src Source, after uint64, max int) ([]Delta, error) {
	l := r.log[src]
	if after >= uint64(len(l)) {
		return nil, nil
	}
	out := l[after:]
	if max > 0 && len(out) > max {
		out = out[:max]
	}
	return slices.Clone(out), nil
}

// EnableOp returns an OpEnable of the entity that observes every disable
// this replica knows of it.
func (r *Replica) EnableOp(k Kind, id string) Op {
	var obs []Stamp
	if e := r.ents[entityKey{k, id}]; e != nil {
		obs = e.active.Disables()
	}
	return Op{Type: OpEnable, Observed: obs}
}

// RemoveOp returns an OpRemove of elem from the entity's set that removes
// every add of it this replica knows.
func (r *Replica) RemoveOp(k Kind, id, set, elem string) Op {
	var obs []Stamp
	if e := r.ents[entityKey{k, id}]; e != nil && e.sets[set] != nil {
		obs = e.sets[set].Tags(elem)
	}
	return Op{Type: OpRemove, Field: set, Value: elem, Observed: obs}
}

// GrantOp returns the OpGrant of g (whose ID is the delta's), observing
// every revocation of its membership this replica knows.
func (r *Replica) GrantOp(g access.Grant) Op {
	return Op{Type: OpGrant, Value: GrantValue(g), Observed: r.grants.Revokes(g.HolderID, g.GroupID)}
}

// SetOp returns an OpSet of field to value.
func SetOp(field, value string) Op { return Op{Type: OpSet, Field: field, Value: value} }

// DisableOp returns an OpDisable with the given reason.
func DisableOp(reason string) Op { return Op{Type: OpDisable, Value: reason} }

// AddOp returns an OpAdd of elem to set.
func AddOp(set, elem string) Op { return Op{Type: OpAdd, Field: set, Value: elem} }

// RevokeOp returns an OpRevoke of the membership of group.
func RevokeOp(group access.ID) Op { return Op{Type: OpRevoke, Value: string(group)} }

// AdvanceOp returns an OpAdvance to state s.
func AdvanceOp(s access.VisitState) Op { return Op{Type: OpAdvance, Value: s.String()} }

// RemoveGrantOp returns an OpRemoveGrant.
func RemoveGrantOp() Op { return Op{Type: OpRemoveGrant} }

// DeleteOp returns an OpDelete.
func DeleteOp() Op { return Op{Type: OpDelete} }

// lookup returns an entity's state, or nil.
func (r *Replica) lookup(k Kind, id string) *entity { return r.ents[entityKey{k, id}] }

// str returns the value of a field.
func (e *entity) str(f string) string { return e.fields[f].Value }

// id returns the value of an ID field.
func (e *entity) id(f string) access.ID { return access.ID(e.fields[f].Value) }

// bool returns the value of a bool field.
func (e *entity) bool(f string) bool { return e.fields[f].Value == "true" }

// time returns the value of a time field.
func (e *entity) time(f string) time.Time {
	t, _ := ParseTimeValue(e.fields[f].Value)
	return t
}

// Site returns the site with the given ID, unless unknown or deleted.
func (r *Replica) Site(id access.ID) (access.Site, bool) {
	e := r.lookup(KindSite, string(id))
	if e == nil || e.deleted.Deleted {
		return access.Site{}, false
	}
	hol, _ := ParseDatesValue(e.str("holidays"))
	return access.Site{ID: id, Name: e.str("name"), TimeZone: e.str("time_zone"), Holidays: hol}, true
}

// SiteGroups returns the IDs in the "groups" set of the site, sorted.
func (r *Replica) SiteGroups(site access.ID) []access.ID {
	e := r.lookup(KindSite, string(site))
	if e == nil || e.sets["groups"] == nil {
		return nil
	}
	return toIDs(e.sets["groups"].Elements())
}

// Zone returns the zone with the given ID, unless unknown or deleted.
func (r *Replica) Zone(id access.ID) (access.Zone, bool) {
	e := r.lookup(KindZone, string(id))
	if e == nil || e.deleted.Deleted {
		return access.Zone{}, false
	}
	return access.Zone{ID: id, SiteID: e.id("site"), Name: e.str("name"), AntiPassback: e.bool("anti_passback")}, true
}

// Door returns the door with the given ID, unless unknown or deleted.
func (r *Replica) Door(id access.ID) (access.Door, bool) {
	e := r.lookup(KindDoor, string(id))
	if e == nil || e.deleted.Deleted {
		return access.Door{}, false
	}
	var dir access.Direction
	_ = dir.UnmarshalText([]byte(e.str("direction")))
	maxOff, _ := strconv.ParseInt(e.str("max_offline"), 10, 64)
	return access.Door{ID: id, SiteID: e.id("site"), ZoneID: e.id("zone"), Name: e.str("name"), Direction: dir,
		HighSecurity: e.bool("high_security"), MaxOffline: time.Duration(maxOff)}, true
}

// Group returns the group with the given ID, unless unknown or deleted. Its
// Doors are the elements of its "doors" set, sorted.
func (r *Replica) Group(id access.ID) (access.Group, bool) {
	e := r.lookup(KindGroup, string(id))
	if e == nil || e.deleted.Deleted {
		return access.Group{}, false
	}
	var kind access.GroupKind
	_ = kind.UnmarshalText([]byte(e.str("kind")))
	g := access.Group{ID: id, SiteID: e.id("site"), Name: e.str("name"), ScheduleID: e.id("schedule"), Kind: kind}
	if s := e.sets["doors"]; s != nil {
		g.Doors = toIDs(s.Elements())
	}
	return g, true
}

// Person returns the person with the given ID. Active is the person's
// disable-wins flag (false until enabled) and Deleted its tombstone; a
// deleted person is returned with Deleted set.
func (r *Replica) Person(id access.ID) (access.Person, bool) {
	e := r.lookup(KindPerson, string(id))
	if e == nil {
		return access.Person{}, false
	}
	var kind access.PersonKind
	_ = kind.UnmarshalText([]byte(e.str("kind")))
	return access.Person{ID: id, Kind: kind, OccupierID: e.id("occupier"), Name: e.str("name"), Email: e.str("email"),
		Active: e.active.Enabled(), OfflineAccess: e.bool("offline_access"), Deleted: e.deleted.Deleted,
		ValidFrom: e.time("valid_from"), ValidUntil: e.time("valid_until")}, true
}

// Visit returns the visit with the given ID. Its State is the lifecycle
// maximum (zero until some origin advanced it).
func (r *Replica) Visit(id access.ID) (access.Visit, bool) {
	e := r.lookup(KindVisit, string(id))
	if e == nil {
		return access.Visit{}, false
	}
	return access.Visit{ID: id, SiteID: e.id("site"), HostID: e.id("host"), VisitorID: e.id("visitor"), TypeID: e.id("type"),
		From: e.time("from"), Until: e.time("until"), Escort: e.bool("escort"), State: e.life.State}, true
}

// Grant returns the grant with the given ID, Removed set when it has been
// removed or its membership revoked (see GrantSet).
func (r *Replica) Grant(id access.ID) (access.Grant, bool) { return r.grants.Get(id) }

// Holder is a card's holder: a person, and for a visitor card the visit.
type Holder struct {
	PersonID access.ID
	VisitID  access.ID
}

// Conflict is a card number found bound to more than one live holder after
// a merge. The card is suspended for all of them until security resolves
// the conflict by removing all but one binding from the card's "holders"
// set.
type Conflict struct {
	Card    access.CardNumber
	Holders []Holder
}

// liveHolders returns the holders of a card's bindings that are live: the
// person is not deleted and, for a visitor card, the visit is not final.
// They are sorted and distinct.
func (r *Replica) liveHolders(e *entity) []Holder {
	s := e.sets["holders"]
	if s == nil {
		return nil
	}
	var out []Holder
	for _, v := range s.Elements() {
		p, vis, err := ParseHolderValue(v)
		if err != nil {
			continue
		}
		if pe := r.lookup(KindPerson, string(p)); pe != nil && pe.deleted.Deleted {
			continue
		}
		if !vis.IsZero() {
			if ve := r.lookup(KindVisit, string(vis)); ve != nil && ve.life.State.Final() {
				continue
			}
		}
		out = append(out, Holder{PersonID: p, VisitID: vis})
	}
	return out
}

// Card returns the card with number n while it has a live holder. Its
// status is CardActive when its disable-wins flag is enabled, and the
// reason of the latest disable (suspended, lost, returned) otherwise. When
// the card is bound to more than one live holder it is returned with status
// CardSuspended and the first holder (so every door denies it), and
// Conflicts lists it. A card whose holders were all removed, deleted or
// checked out is free: Card reports false.
func (r *Replica) Card(n access.CardNumber) (access.Card, bool) {
	e := r.lookup(KindCard, n.String())
	if e == nil {
		return access.Card{}, false
	}
	holders := r.liveHolders(e)
	if len(holders) == 0 {
		return access.Card{}, false
	}
	c := access.Card{Number: n, PersonID: holders[0].PersonID, VisitID: holders[0].VisitID, SiteID: e.id("site"),
		ValidFrom: e.time("valid_from"), ValidUntil: e.time("valid_until"), Status: access.CardActive}
	switch {
	case len(holders) > 1:
		c.Status = access.CardSuspended
	case !e.active.Enabled():
		c.Status = access.CardSuspended
		var s access.CardStatus
		if s.UnmarshalText([]byte(e.active.Reason())) == nil && s != access.CardActive {
			c.Status = s
		}
	}
	return c, true
}

// CardHolders returns the live holders of card number n (see Card), sorted;
// none when the card is unknown or free.
func (r *Replica) CardHolders(n access.CardNumber) []Holder {
	e := r.lookup(KindCard, n.String())
	if e == nil {
		return nil
	}
	return r.liveHolders(e)
}

// Field returns the value of a scalar field of an entity, whether or not
// the entity is deleted or materialised (a card without live holder still
// has its "site"), and false when the entity is unknown or the field was
// never set. It lets a receiver judge a delta against what it knows, such
// as the site an entity belongs to.
func (r *Replica) Field(k Kind, id, field string) (string, bool) {
	e := r.lookup(k, id)
	if e == nil {
		return "", false
	}
	reg, ok := e.fields[field]
	return reg.Value, ok
}

// Conflicts returns the cards bound to more than one live holder, by card
// number.
func (r *Replica) Conflicts() []Conflict {
	var out []Conflict
	for key, e := range r.ents {
		if key.kind != KindCard {
			continue
		}
		if h := r.liveHolders(e); len(h) > 1 {
			n, _ := access.ParseCardNumber(key.id)
			out = append(out, Conflict{Card: n, Holders: h})
		}
	}
	slices.SortFunc(out, func(a, b Conflict) int { return cmp.Compare(a.Card, b.Card) })
	return out
}

// Snapshot is the materialised state of a replica, every list sorted by ID
// (cards by number), for comparing replicas and for tests.
type Snapshot struct {
	Sites     []access.Site
	Zones     []access.Zone
	Doors     []access.Door
	Groups    []access.Group
	People    []access.Person
	Cards     []access.Card
	Grants    []access.Grant
	Visits    []access.Visit
	Conflicts []Conflict
}

// Snapshot returns the replica's materialised state.
func (r *Replica) Snapshot() Snapshot {
	var s Snapshot
	for _, key := range r.keys() {
		id := access.ID(key.id)
		switch key.kind {
		case KindSite:
			if v, ok := r.Site(id); ok {
				s.Sites = append(s.Sites, v)
			}
		case KindZone:
			if v, ok := r.Zone(id); ok {
				s.Zones = append(s.Zones, v)
			}
		case KindDoor:
			if v, ok := r.Door(id); ok {
				s.Doors = append(s.Doors, v)
			}
		case KindGroup:
			if v, ok := r.Group(id); ok {
				s.Groups = append(s.Groups, v)
			}
		case KindPerson:
			if v, ok := r.Person(id); ok {
				s.People = append(s.People, v)
			}
		case KindCard:
			n, _ := access.ParseCardNumber(key.id)
			if v, ok := r.Card(n); ok {
				s.Cards = append(s.Cards, v)
			}
		case KindVisit:
			if v, ok := r.Visit(id); ok {
				s.Visits = append(s.Visits, v)
			}
		}
	}
	for _, id := range r.grants.IDs() {
		g, _ := r.grants.Get(id)
		s.Grants = append(s.Grants, g)
	}
	slices.SortFunc(s.Cards, func(a, b access.Card) int { return cmp.Compare(a.Number, b.Number) })
	s.Conflicts = r.Conflicts()
	return s
}

// keys returns the keys of all entities, sorted.
func (r *Replica) keys() []entityKey {
	return slices.SortedFunc(maps.Keys(r.ents), func(a, b entityKey) int {
		if c := cmp.Compare(a.kind, b.kind); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
}

// State builds an access.State holding every materialised entity that is
// valid, for access.Decide. Entities that are not (yet) valid, such as a
// card whose holder's fields have not arrived, are left out, so decisions
// about them fail closed; State returns their validation errors.
func (r *Replica) State() (*access.State, []error) {
	st := access.NewState()
	snap := r.Snapshot()
	var errs []error
	put := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, v := range snap.Sites {
		put(st.PutSite(v))
	}
	for _, v := range snap.Zones {
		put(st.PutZone(v))
	}
	for _, v := range snap.Doors {
		put(st.PutDoor(v))
	}
	for _, v := range snap.Groups {
		put(st.PutGroup(v))
	}
	for _, v := range snap.People {
		put(st.PutPerson(v))
	}
	for _, v := range snap.Cards {
		put(st.PutCard(v))
	}
	for _, v := range snap.Grants {
		put(st.PutGrant(v))
	}
	for _, v := range snap.Visits {
		put(st.PutVisit(v))
	}
	return st, errs
}

// toIDs converts strings to IDs.
func toIDs(s []string) []access.ID {
	out := make([]access.ID, len(s))
	for i, v := range s {
		out[i] = access.ID(v)
	}
	return out
}

// Writer numbers and stamps the deltas of one origin: per lane, sequence
// numbers from 1 without gaps. On a site it runs where operations get their
// (site, sequence) IDs, inside the Raft apply, so that a leader change never
// duplicates or skips one; the stamp comes in the command. A Writer is not
// safe for concurrent use.
type Writer struct {
	origin string
	last   map[Lane]uint64
}

// NewWriter returns a writer for origin that continues after the sequence
// numbers of origin in resume (the replica's vector, or nil to start at 1).
// It returns the error of ValidateOrigin for a malformed origin.
func NewWriter(origin string, resume Vector) (*Writer, error) {
	if err := ValidateOrigin(origin); err != nil {
		return nil, err
	}
	w := &Writer{origin: origin, last: make(map[Lane]uint64)}
	for _, l := range []Lane{LanePriority, LaneNormal, LaneEvents} {
		w.last[l] = resume[Source{origin, l}]
	}
	return w, nil
}

// Make returns the next delta of the writer's origin: made at stamp at
// (which must be the origin's), changing entity id of kind k with ops, in
// the lane the kind and ops belong to (see LaneFor). It returns the error of Delta.Validate,
// numbering nothing, when the delta would be invalid.
func (w *Writer) Make(at Stamp, k Kind, id string, ops ...Op) (Delta, error) {
	lane := LaneFor(k, ops)
	d := Delta{Origin: w.origin, Lane: lane, Seq: w.last[lane] + 1, Stamp: at, Kind: k, ID: id, Ops: slices.Clone(ops)}
	if err := d.Validate(); err != nil {
		return Delta{}, err
	}
	w.last[lane] = d.Seq
	return d, nil
}

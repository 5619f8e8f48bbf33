package access

import (
	"cmp"
	"iter"
	"slices"
)

// State is an in-memory index of one site's state: the edge keeps it in step
// with its replicated state machine and Decide reads it. Lookups on the
// decision path are map look-ups, and a holder's grants are indexed by
// holder, so a decision costs time in the number of that holder's grants,
// not of all grants; State comfortably holds hundreds of thousands of cards.
//
// State is not safe for concurrent use. The edge guards it with a
// sync.RWMutex: Put, Remove and Record methods under the write lock, lookups
// and Decide under the read lock. Use Clone to take a snapshot.
//
// State never modifies a slice after storing it (Put methods copy their
// arguments' slices, and indexes are replaced rather than updated in place),
// so values and slices returned by lookups stay valid and unchanged after
// later writes. Callers must treat them as read-only.
type State struct {
	sites        map[ID]siteEntry
	zones        map[ID]Zone
	doors        map[ID]Door
	schedules    map[ID]Schedule
	groups       map[ID]Group
	people       map[ID]Person
	cards        map[CardNumber]Card
	grants       map[ID]Grant   // all grants, tombstones included
	byHolder     map[ID][]Grant // live grants per holder, sorted by ID
	visits       map[ID]Visit
	visitorTypes map[ID]VisitorType
	devices      map[ID]Device
	passages     map[CardNumber]Passage
	zonePassages map[CardNumber][]Passage // latest per zone, one per zone
	liveGrants   int
}

// siteEntry is a site with its loaded calendar.
type siteEntry struct {
	site Site
	cal  Calendar
}

// NewState returns an empty State.
func NewState() *State {
	return &State{
		sites:        make(map[ID]siteEntry),
		zones:        make(map[ID]Zone),
		doors:        make(map[ID]Door),
		schedules:    make(map[ID]Schedule),
		groups:       make(map[ID]Group),
		people:       make(map[ID]Person),
		cards:        make(map[CardNumber]Card),
		grants:       make(map[ID]Grant),
		byHolder:     make(map[ID][]Grant),
		visits:       make(map[ID]Visit),
		visitorTypes: make(map[ID]VisitorType),
		devices:      make(map[ID]Device),
		passages:     make(map[CardNumber]Passage),
		zonePassages: make(map[CardNumber][]Passage),
	}
}

// Clone returns a copy of s that shares no mutable data with it, so that
// either can be changed afterwards without affecting the other. It copies
// every map; stored slices are shared, which is safe because State never
// modifies a slice it stored.
func (s *State) Clone() *State {
	c := &State{
		sites:        cloneMap(s.sites),
		zones:        cloneMap(s.zones),
		doors:        cloneMap(s.doors),
		schedules:    cloneMap(s.schedules),
		groups:       cloneMap(s.groups),
		people:       cloneMap(s.people),
		cards:        cloneMap(s.cards),
		grants:       cloneMap(s.grants),
		byHolder:     cloneMap(s.byHolder),
		visits:       cloneMap(s.visits),
		visitorTypes: cloneMap(s.visitorTypes),
		devices:      cloneMap(s.devices),
		passages:     cloneMap(s.passages),
		zonePassages: cloneMap(s.zonePassages),
		liveGrants:   s.liveGrants,
	}
	return c
}

// cloneMap returns a shallow copy of m with room for its entries.
func cloneMap[K comparable, V any](m map[K]V) map[K]V {
	c := make(map[K]V, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// PutSite stores site, replacing any site with its ID, and loads its time
// zone once so decisions need not. It returns the Invalid error of
// site.Validate and changes nothing when site is invalid.
func (s *State) PutSite(site Site) error {
	site.Holidays = slices.Clone(site.Holidays)
	cal, err := site.validate()
	if err != nil {
		return err
	}
	s.sites[site.ID] = siteEntry{site: site, cal: cal}
	return nil
}

// Site returns the site with the given ID.
func (s *State) Site(id ID) (Site, bool) {
	e, ok := s.sites[id]
	return e.site, ok
}

// Calendar returns the loaded time zone and the holidays of the site with
// the given ID.
func (s *State) Calendar(site ID) (Calendar, bool) {
	e, ok := s.sites[site]
	return e.cal, ok
}

// PutZone stores z, replacing any zone with its ID. It returns the Invalid
// error of z.Validate and changes nothing when z is invalid.
func (s *State) PutZone(z Zone) error {
	if err := z.Validate(); err != nil {
		return err
	}
	s.zones[z.ID] = z
	return nil
}

// Zone returns the zone with the given ID.
func (s *State) Zone(id ID) (Zone, bool) {
	z, ok := s.zones[id]
	return z, ok
}

// PutDoor stores d, replacing any door with its ID. It returns the Invalid
// error of d.Validate and changes nothing when d is invalid.
func (s *State) PutDoor(d Door) error {
	if err := d.Validate(); err != nil {
		return err
	}
	s.doors[d.ID] = d
	return nil
}

// Door returns the door with the given ID.
func (s *State) Door(id ID) (Door, bool) {
	d, ok := s.doors[id]
	return d, ok
}

// PutSchedule stores sc, replacing any schedule with its ID. It returns the
// Invalid error of sc.Validate and changes nothing when sc is invalid.
func (s *State) PutSchedule(sc Schedule) error {
	if err := sc.Validate(); err != nil {
		return err
	}
	sc.Windows = slices.Clone(sc.Windows)
	s.schedules[sc.ID] = sc
	return nil
}

// Schedule returns the schedule with the given ID.
func (s *State) Schedule(id ID) (Schedule, bool) {
	sc, ok := s.schedules[id]
	return sc, ok
}

// PutGroup stores g, replacing any group with its ID. It returns the Invalid
// error of g.Validate and changes nothing when g is invalid.
func (s *State) PutGroup(g Group) error {
	if err := g.Validate(); err != nil {
		return err
	}
	g.Doors = slices.Clone(g.Doors)
	s.groups[g.ID] = g
	return nil
}

// Group returns the group with the given ID.
func (s *State) Group(id ID) (Group, bool) {
	g, ok := s.groups[id]
	return g, ok
}

// PutPerson stores p, replacing any person with its ID, except that deletion
// is a tombstone: once a person is stored as Deleted, it stays deleted
// whatever is put later. It returns the Invalid error of p.Validate and
// changes nothing when p is invalid. Freeing a deleted person's cards is the
// caller's job (see RemoveCard); until then Decide denies them.
func (s *State) PutPerson(p Person) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if old, ok := s.people[p.ID]; ok && old.Deleted {
		p.Deleted = true
	}
	s.people[p.ID] = p
	return nil
}

// Person returns the person with the given ID.
func (s *State) Person(id ID) (Person, bool) {
	p, ok := s.people[id]
	return p, ok
}

// PutCard stores c under its number, replacing any card with that number.
// Keeping card numbers unique across holders is the caller's job. It returns
// the Invalid error of c.Validate and changes nothing when c is invalid.
func (s *State) PutCard(c Card) error {
	if err := c.Validate(); err != nil {
		return err
	}
	s.cards[c.Number] = c
	return nil
}

// RemoveCard removes the card with number n, freeing the number, and
// forgets its passages so that a card issued later with the same number
// starts afresh. Removing an unknown number does nothing.
func (s *State) RemoveCard(n CardNumber) {
	delete(s.cards, n)
	delete(s.passages, n)
	delete(s.zonePassages, n)
}

// CardByNumber returns the card with number n.
func (s *State) CardByNumber(n CardNumber) (Card, bool) {
	c, ok := s.cards[n]
	return c, ok
}

// PutGrant stores g. Grants are immutable and removal is forever:
//
//   - a grant put with Removed set becomes (or stays) a tombstone, keeping
//     the contents already stored for its ID, if any;
//   - a grant put without Removed when its ID is already a tombstone
//     changes nothing, so a stale put never resurrects a revocation;
//   - putting the same live grant again changes nothing.
//
// It returns the Invalid error of g.Validate, or a Conflict error wrapping
// ErrGrantImmutable when a live grant with g's ID is stored with other
// contents; in both cases nothing changes.
func (s *State) PutGrant(g Grant) error {
	if err := g.Validate(); err != nil {
		return err
	}
	old, exists := s.grants[g.ID]
	switch {
	case exists && old.Removed:
		return nil
	case exists && !g.Removed:
		if !sameGrant(old, g) {
			return Errorf(Conflict, "grant %s: %w", g.ID, ErrGrantImmutable)
		}
		return nil
	case exists: // live grant being removed
		old.Removed = true
		s.grants[g.ID] = old
		s.unindex(old)
		return nil
	case g.Removed: // tombstone before, or without, its grant
		s.grants[g.ID] = g
		return nil
	default:
		s.grants[g.ID] = g
		s.index(g)
		return nil
	}
}

// RemoveGrant records the removal of the grant with the given ID; it is
// PutGrant of a tombstone carrying only the ID.
func (s *State) RemoveGrant(id ID) error {
	return s.PutGrant(Grant{ID: id, Removed: true})
}

// sameGrant reports whether a and b have the same contents.
func sameGrant(a, b Grant) bool {
	return a.ID == b.ID && a.HolderID == b.HolderID && a.GroupID == b.GroupID &&
		a.ValidFrom.Equal(b.ValidFrom) && a.ValidUntil.Equal(b.ValidUntil) && a.Removed == b.Removed
}

// index adds live grant g to its holder's index, replacing the holder's
// slice so that slices handed out earlier never change.
func (s *State) index(g Grant) {
	old := s.byHolder[g.HolderID]
	i, _ := slices.BinarySearchFunc(old, g.ID, func(e Grant, id ID) int { return cmp.Compare(e.ID, id) })
	next := make([]Grant, 0, len(old)+1)
	next = append(next, old[:i]...)
	next = append(next, g)
	next = append(next, old[i:]...)
	s.byHolder[g.HolderID] = next
	s.liveGrants++
}

// unindex removes grant g from its holder's index, replacing the holder's
// slice so that slices handed out earlier never change.
func (s *State) unindex(g Grant) {
	old := s.byHolder[g.HolderID]
	i, found := slices.BinarySearchFunc(old, g.ID, func(e Grant, id ID) int { return cmp.Compare(e.ID, id) })
	if !found {
		return
	}
	s.liveGrants--
	if len(old) == 1 {
		delete(s.byHolder, g.HolderID)
		return
	}
	next := make([]Grant, 0, len(old)-1)
	next = append(next, old[:i]...)
	next = append(next, old[i+1:]...)
	s.byHolder[g.HolderID] = next
}

// Grant returns the grant with the given ID, which may be a tombstone.
func (s *State) Grant(id ID) (Grant, bool) {
	g, ok := s.grants[id]
	return g, ok
}

// GrantsOf returns the live grants of holder (a person or a visit), sorted by
// grant ID. It does not allocate; the slice must not be modified.
func (s *State) GrantsOf(holder ID) []Grant {
	g := s.byHolder[holder]
	return g[:len(g):len(g)]
}

// PutVisit stores v, except that the visit's state only moves forward: the
// stored state is the greater of the state already stored and v's, so puts
// in any order end in the same state. Other fields take v's values. It
// returns the Invalid error of v.Validate and changes nothing when v is
// invalid.
func (s *State) PutVisit(v Visit) error {
	if err := v.Validate(); err != nil {
		return err
	}
	if old, ok := s.visits[v.ID]; ok && old.State > v.State {
		v.State = old.State
	}
	s.visits[v.ID] = v
	return nil
}

// Visit returns the visit with the given ID.
func (s *State) Visit(id ID) (Visit, bool) {
	v, ok := s.visits[id]
	return v, ok
}

// PutVisitorType stores vt, replacing any visitor type with its ID. It
// returns the Invalid error of vt.Validate and changes nothing when vt is
// invalid.
func (s *State) PutVisitorType(vt VisitorType) error {
	if err := vt.Validate(); err != nil {
		return err
	}
	vt.AllowedGroups = slices.Clone(vt.AllowedGroups)
	vt.RequiredDocuments = slices.Clone(vt.RequiredDocuments)
	s.visitorTypes[vt.ID] = vt
	return nil
}

// VisitorType returns the visitor type with the given ID.
func (s *State) VisitorType(id ID) (VisitorType, bool) {
	vt, ok := s.visitorTypes[id]
	return vt, ok
}

// PutDevice stores d, replacing any device with its ID. It returns the
// Invalid error of d.Validate and changes nothing when d is invalid.
func (s *State) PutDevice(d Device) error {
	if err := d.Validate(); err != nil {
		return err
	}
	d.SecretHash = slices.Clone(d.SecretHash)
	s.devices[d.ID] = d
	return nil
}

// Device returns the device with the given ID.
func (s *State) Device(id ID) (Device, bool) {
	d, ok := s.devices[id]
	return d, ok
}

// RemoveDevice forgets a device; removing an unknown ID does nothing.
func (s *State) RemoveDevice(id ID) { delete(s.devices, id) }

// Devices iterates over the devices in no particular order.
func (s *State) Devices() iter.Seq[Device] { return values(s.devices) }

// RecordPassage records that a card passed a door. It keeps, per card and
// per (card, zone), the passage with the latest At, so passages replayed out
// of order (a controller's buffered events) never replace a later one; of
// two passages at the same instant the one recorded last wins. A passage
// with a zero card number is ignored.
func (s *State) RecordPassage(p Passage) {
	if p.CardNumber == 0 {
		return
	}
	if old, ok := s.passages[p.CardNumber]; !ok || !p.At.Before(old.At) {
		s.passages[p.CardNumber] = p
	}
	if p.ZoneID.IsZero() {
		return
	}
	old := s.zonePassages[p.CardNumber]
	for i, q := range old {
		if q.ZoneID == p.ZoneID {
			if p.At.Before(q.At) {
				return
			}
			next := slices.Clone(old)
			next[i] = p
			s.zonePassages[p.CardNumber] = next
			return
		}
	}
	next := make([]Passage, 0, len(old)+1)
	next = append(next, old...)
	s.zonePassages[p.CardNumber] = append(next, p)
}

// LastPassage returns the latest recorded passage of the card through any
// door.
func (s *State) LastPassage(card CardNumber) (Passage, bool) {
	p, ok := s.passages[card]
	return p, ok
}

// ZonePassage returns the latest recorded passage of the card through a
// door of the given zone.
func (s *State) ZonePassage(card CardNumber, zone ID) (Passage, bool) {
	for _, p := range s.zonePassages[card] {
		if p.ZoneID == zone {
			return p, true
		}
	}
	return Passage{}, false
}

// Counts holds the number of entities of each kind in a State.
type Counts struct {
	Sites, Zones, Doors, Schedules, Groups int
	People, Cards, Visits, VisitorTypes    int
	Devices                                int
	// Grants counts live grants and Tombstones removed ones.
	Grants, Tombstones int
	// Passages counts cards with a recorded passage.
	Passages int
}

// Counts returns the number of entities of each kind in s.
func (s *State) Counts() Counts {
	return Counts{
		Sites:        len(s.sites),
		Zones:        len(s.zones),
		Doors:        len(s.doors),
		Schedules:    len(s.schedules),
		Groups:       len(s.groups),
		People:       len(s.people),
		Cards:        len(s.cards),
		Visits:       len(s.visits),
		VisitorTypes: len(s.visitorTypes),
		Devices:      len(s.devices),
		Grants:       s.liveGrants,
		Tombstones:   len(s.grants) - s.liveGrants,
		Passages:     len(s.passages),
	}
}

// Cards returns an iterator over all cards, in no particular order. s must
// not be changed during the iteration.
func (s *State) Cards() iter.Seq[Card] { return values(s.cards) }

// People returns an iterator over all people, deleted ones included, in no
// particular order. s must not be changed during the iteration.
func (s *State) People() iter.Seq[Person] { return values(s.people) }

// Doors returns an iterator over all doors, in no particular order. s must
// not be changed during the iteration.
func (s *State) Doors() iter.Seq[Door] { return values(s.doors) }

// Groups returns an iterator over all groups, in no particular order. s must
// not be changed during the iteration.
func (s *State) Groups() iter.Seq[Group] { return values(s.groups) }

// Grants returns an iterator over all grants, tombstones included, in no
// particular order. s must not be changed during the iteration.
func (s *State) Grants() iter.Seq[Grant] { return values(s.grants) }

// Visits returns an iterator over all visits, in no particular order. s must
// not be changed during the iteration.
func (s *State) Visits() iter.Seq[Visit] { return values(s.visits) }

// values returns an iterator over the values of m.
func values[K comparable, V any](m map[K]V) iter.Seq[V] {
	return func(yield func(V) bool) {
		for _, v := range m {
			if !yield(v) {
				return
			}
		}
	}
}

// Compile-time check that State implements Reader.
var _ Reader = (*State)(nil)

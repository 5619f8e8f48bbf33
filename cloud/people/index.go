package people

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/replication"
)

// entry is one cardholder in the index.
type entry struct {
	p      access.Person
	key    string // sort key: lower-case name, NUL, ID
	text   string // lower-case name and email, for search
	cards  []access.Card
	grants []access.Grant // live
	sites  []access.ID    // sites of the groups held
}

// view is the index at one replica vector. It is immutable once built.
type view struct {
	vec     replication.Vector
	entries []*entry // cardholders (not visitors, not deleted), by key
	byID    map[access.ID]*entry
	byCard  map[access.CardNumber]*entry
	groups  map[access.ID]access.Group
	doors   map[access.ID]access.Door
	sites   map[access.ID]bool
	members map[access.ID][]*entry // by group
}

// index keeps a view of the replica's people, rebuilt when the replica's
// vector moved. It is safe for concurrent use.
type index struct {
	st *hubstate.State
	mu sync.Mutex
	v  *view
}

func newIndex(st *hubstate.State) *index { return &index{st: st} }

// last returns the view built last, or nil, without rebuilding it.
func (ix *index) last() *view {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.v
}

// current returns a view of the replica as it is now, rebuilding it if the
// replica changed since the last one.
func (ix *index) current() *view {
	vec := ix.st.Vector()
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.v != nil && ix.v.vec.Equal(vec) {
		return ix.v
	}
	if ix.v != nil {
		if v, ok := ix.patch(ix.v); ok {
			ix.v = v
			return v
		}
	}
	var snap replication.Snapshot
	ix.st.View(func(r *replication.Replica) {
		snap = r.Snapshot()
		vec = r.Vector()
	})
	ix.v = build(snap, vec)
	return ix.v
}

// maxPatch is the most deltas patch applies; beyond, the view is rebuilt.
const maxPatch = 20_000

// patch returns old brought up to the replica's present by re-reading
// only the entities the deltas applied since old touched, or false when a
// full rebuild is simpler (many deltas, or groups, doors or sites changed).
// It holds the replica's read lock only while reading those entities.
func (ix *index) patch(old *view) (*view, bool) {
	var (
		vec      replication.Vector
		ok       = true
		affected = map[access.ID]*entry{} // person → new entry (nil: gone)
		cards    = map[access.CardNumber]access.ID{}
	)
	ix.st.View(func(r *replication.Replica) {
		vec = r.Vector()
		people := map[access.ID]bool{}
		touchedCards := map[access.CardNumber]bool{}
		touchedGrants := map[access.ID]bool{}
		n := 0
		for src, head := range vec {
			from := old.vec[src]
			if head <= from {
				continue
			}
			if n += int(head - from); n > maxPatch {
				ok = false
				return
			}
			ds, err := r.Deltas(src, from, int(head-from))
			if err != nil {
				ok = false
				return
			}
			for _, d := range ds {
				switch d.Kind {
				case replication.KindPerson:
					people[access.ID(d.ID)] = true
				case replication.KindCard:
					if c, err := access.ParseCardNumber(d.ID); err == nil {
						touchedCards[c] = true
					}
				case replication.KindGrant:
					touchedGrants[access.ID(d.ID)] = true
				case replication.KindVisit:
				default: // groups, doors, sites, zones: rare; rebuild
					ok = false
					return
				}
			}
		}
		// Everyone a touched card or grant belonged to, before or now.
		for c := range touchedCards {
			if e := old.byCard[c]; e != nil {
				people[e.p.ID] = true
			}
			for _, h := range r.CardHolders(c) {
				if h.VisitID == "" {
					people[h.PersonID] = true
				}
			}
		}
		grantHolder := map[access.ID]access.ID{}
		for g := range touchedGrants {
			if gr, found := r.Grant(g); found {
				grantHolder[g] = gr.HolderID
				people[gr.HolderID] = true
			}
		}
		for id := range people {
			prev := old.byID[id]
			p, found := r.Person(id)
			if !found || p.Deleted || p.Kind == access.Visitor {
				affected[id] = nil
				continue
			}
			e := &entry{p: p, key: strings.ToLower(p.Name) + "\x00" + string(p.ID), text: strings.ToLower(p.Name + "\x00" + p.Email)}
			var cand []access.CardNumber
			var gcand []access.ID
			if prev != nil {
				for _, c := range prev.cards {
					cand = append(cand, c.Number)
				}
				for _, g := range prev.grants {
					gcand = append(gcand, g.ID)
				}
			}
			for c := range touchedCards {
				cand = append(cand, c)
			}
			for g, h := range grantHolder {
				if h == id {
					gcand = append(gcand, g)
				}
			}
			slices.Sort(cand)
			for _, c := range slices.Compact(cand) {
				if slices.Contains(r.CardHolders(c), replication.Holder{PersonID: id}) {
					card, _ := r.Card(c)
					card.PersonID, card.VisitID = id, ""
					e.cards = append(e.cards, card)
					cards[c] = id
				}
			}
			slices.Sort(gcand)
			for _, g := range slices.Compact(gcand) {
				if gr, found := r.Grant(g); found && !gr.Removed && gr.HolderID == id {
					e.grants = append(e.grants, gr)
				}
			}
			affected[id] = e
		}
	})
	if !ok {
		return nil, false
	}
	v := &view{vec: vec, byID: maps.Clone(old.byID), byCard: maps.Clone(old.byCard), groups: old.groups, doors: old.doors,
		sites: old.sites, members: map[access.ID][]*entry{}}
	v.entries = make([]*entry, 0, len(old.entries)+len(affected))
	for _, e := range old.entries {
		if _, changed := affected[e.p.ID]; !changed {
			v.entries = append(v.entries, e)
		}
	}
	for id, e := range affected {
		if prev := old.byID[id]; prev != nil {
			for _, c := range prev.cards {
				if v.byCard[c.Number] == prev {
					delete(v.byCard, c.Number)
				}
			}
		}
		if e == nil {
			delete(v.byID, id)
			continue
		}
		for _, g := range e.grants {
			if grp, ok := v.groups[g.GroupID]; ok && !slices.Contains(e.sites, grp.SiteID) {
				e.sites = append(e.sites, grp.SiteID)
			}
		}
		v.byID[id] = e
		v.entries = append(v.entries, e)
	}
	for c, id := range cards {
		v.byCard[c] = v.byID[id]
	}
	slices.SortFunc(v.entries, func(a, b *entry) int { return strings.Compare(a.key, b.key) })
	for _, e := range v.entries {
		for _, g := range e.grants {
			v.members[g.GroupID] = append(v.members[g.GroupID], e)
		}
	}
	return v, true
}

func build(snap replication.Snapshot, vec replication.Vector) *view {
	v := &view{vec: vec, byID: make(map[access.ID]*entry, len(snap.People)), byCard: make(map[access.CardNumber]*entry, len(snap.Cards)),
		groups: make(map[access.ID]access.Group, len(snap.Groups)), doors: make(map[access.ID]access.Door, len(snap.Doors)),
		sites: map[access.ID]bool{}, members: map[access.ID][]*entry{}}
	for _, g := range snap.Groups {
		v.groups[g.ID] = g
	}
	for _, d := range snap.Doors {
		v.doors[d.ID] = d
		v.sites[d.SiteID] = true
	}
	for _, s := range snap.Sites {
		v.sites[s.ID] = true
	}
	entries := make([]entry, 0, len(snap.People))
	for _, p := range snap.People {
		if p.Deleted || p.Kind == access.Visitor {
			continue
		}
		entries = append(entries, entry{p: p, key: strings.ToLower(p.Name) + "\x00" + string(p.ID),
			text: strings.ToLower(p.Name + "\x00" + p.Email)})
	}
	v.entries = make([]*entry, len(entries))
	for i := range entries {
		v.entries[i] = &entries[i]
		v.byID[entries[i].p.ID] = &entries[i]
	}
	slices.SortFunc(v.entries, func(a, b *entry) int { return strings.Compare(a.key, b.key) })
	for _, c := range snap.Cards {
		if e := v.byID[c.PersonID]; e != nil && c.VisitID == "" {
			e.cards = append(e.cards, c)
			v.byCard[c.Number] = e
		}
	}
	for _, g := range snap.Grants {
		if g.Removed {
			continue
		}
		e := v.byID[g.HolderID]
		if e == nil {
			continue
		}
		e.grants = append(e.grants, g)
		v.members[g.GroupID] = append(v.members[g.GroupID], e)
		if grp, ok := v.groups[g.GroupID]; ok && !slices.Contains(e.sites, grp.SiteID) {
			e.sites = append(e.sites, grp.SiteID)
		}
	}
	return v
}

// filter is a parsed PeopleFilter.
type filter struct {
	text     string              // lower-case substring of name or email
	cards    []access.CardNumber // card numbers the query may mean
	cardPart uint64              // a Wiegand card field the query may mean
	isNum    bool
	site     access.ID
	occupier access.ID
	group    access.ID
	state    int // 0 any, 1 active, 2 inactive
	kind     access.PersonKind
	scope    func(access.ID) bool // the caller's occupier scope
}

// newQuery parses a search query: text, and when it is a number, the card
// numbers it may name (the platform number, or "facility:card" of any
// Wiegand format).
func (f *filter) setQuery(q string) {
	q = strings.TrimSpace(q)
	f.text = strings.ToLower(q)
	if n, err := strconv.ParseUint(q, 10, 64); err == nil && n > 0 {
		f.cards = append(f.cards, access.CardNumber(n))
		f.cardPart, f.isNum = n, true
	}
	if fac, card, ok := strings.Cut(q, ":"); ok {
		fv, err1 := strconv.ParseUint(fac, 10, 32)
		cv, err2 := strconv.ParseUint(card, 10, 64)
		if err1 == nil && err2 == nil {
			for _, fm := range []access.WiegandFormat{access.H10301, access.Corporate1000, access.H10304} {
				c := access.WiegandCredential{Format: fm, Facility: uint32(fv), Card: cv}
				if _, _, err := access.EncodeWiegand(c); err == nil {
					f.cards = append(f.cards, c.Number())
				}
			}
		}
	}
}

// match reports whether e passes f.
func (f *filter) match(e *entry) bool {
	p := &e.p
	if f.scope != nil && !f.scope(p.OccupierID) {
		return false
	}
	if f.kind != 0 && p.Kind != f.kind {
		return false
	}
	if f.occupier != "" && p.OccupierID != f.occupier {
		return false
	}
	if f.state == 1 && !p.Active || f.state == 2 && p.Active {
		return false
	}
	if f.site != "" && !slices.Contains(e.sites, f.site) {
		return false
	}
	if f.group != "" && !slices.ContainsFunc(e.grants, func(g access.Grant) bool { return g.GroupID == f.group }) {
		return false
	}
	if f.text == "" {
		return true
	}
	if strings.Contains(e.text, f.text) {
		return true
	}
	for _, c := range e.cards {
		if slices.Contains(f.cards, c.Number) {
			return true
		}
		if f.isNum {
			if w, err := access.WiegandFromNumber(c.Number); err == nil && w.Format != 0 && w.Card == f.cardPart {
				return true
			}
		}
	}
	return false
}

package syncserver

import (
	"errors"
	"fmt"
	"sync"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/replication"
)

// Facts is what the authorizer reads of the hub's state: the value of an
// entity's field (replication.Replica.Field), a grant (Replica.Grant) and
// the live holders of a card (Replica.CardHolders). Implementations must be
// safe for concurrent use; hubstate.State.Facts is one.
type Facts interface {
	Field(k replication.Kind, id, field string) (string, bool)
	Grant(id access.ID) (access.Grant, bool)
	CardHolders(n access.CardNumber) []replication.Holder
	// Holds reports whether the hub holds delta seq of src already.
	Holds(src replication.Source, seq uint64) bool
}

// errNotAllowed is the reason given for every refused delta; the session
// wraps it with replication.ErrUnauthorized (code denied).
var errNotAllowed = errors.New("not allowed for a site")

// NewAuthorizer returns the replication.Authorizer of a session with site
// (already authenticated; its ID is its origin). The rules (docs/sync.md):
//
//   - every delta's origin is site, except a delta of another origin that
//     the hub holds already (an echo of what the hub sent: a duplicate,
//     ignored);
//   - site: only the site's own entity, never deleted;
//   - zone, door, group, visit, card: only entities of the site: the
//     delta's "site" field, if it sets one, is site, and the entity's site
//     as the hub knows it (or as this session set it earlier) is site;
//     an entity the hub knows nothing of must be created with its site
//     set, except by a delta that only revokes (fail closed);
//   - card and person: a delta of disables only is allowed whatever the
//     entity (a site may suspend any card or person presented there);
//   - card homed elsewhere (at the hub or another site), held by two live
//     holders, or held by a visit of another site: a conflicting claim is
//     allowed — a
//     delta that binds the number to a holder of the site (a visit at the
//     site) and otherwise only sets the card's site (to the site) or
//     validity, enables it, or takes access away from the site's own
//     holders; the replica then holds the number with two live holders and
//     suspends it for both (fail closed), and the hub suspends the card
//     itself (Claims, docs/sync.md §3);
//   - person: set and enable only of visitors (kind visitor, as set in
//     the delta or known); revoke only of a group of the site (or unknown
//     to the hub); never delete;
//   - grant: a grant only to a group of the site; remove_grant of a
//     grant of the site's group or of one the hub does not know;
//   - event: any event of the site's own events lane (the hub stores
//     it and never relays it).
//
// It keeps, per session, the sites and person kinds the site set, so a
// batch creating an entity and then changing it is judged as a whole. It is
// safe for concurrent use.
func NewAuthorizer(site string, facts Facts) replication.Authorizer {
	return newAuthorizer(site, facts).authorize
}

func newAuthorizer(site string, facts Facts) *authorizer {
	return &authorizer{site: site, facts: facts, seen: map[fieldKey]string{}}
}

type authorizer struct {
	site  string
	facts Facts

	mu     sync.Mutex
	seen   map[fieldKey]string // fields set by this site in this session
	claims []Claim             // conflicting claims allowed, not yet taken
}

// Claim is a site's delta binding a card number that the site does not
// home (or that a holder not of the site holds): allowed as a conflicting
// claim, which the hub answers by suspending the card.
type Claim struct {
	// Source and Seq name the delta.
	Source replication.Source
	Seq    uint64
	// Card is the number claimed.
	Card access.CardNumber
}

// takeClaims returns the conflicting claims allowed since the last call.
func (a *authorizer) takeClaims() []Claim {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.claims
	a.claims = nil
	return c
}

type fieldKey struct {
	kind  replication.Kind
	id    string
	field string
}

// field returns what the hub knows of a field, or else what this session
// set, and whether either knows it.
func (a *authorizer) field(k replication.Kind, id, f string) (string, bool) {
	if v, ok := a.facts.Field(k, id, f); ok {
		return v, true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	v, ok := a.seen[fieldKey{k, id, f}]
	return v, ok
}

func (a *authorizer) remember(k replication.Kind, id, f, v string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seen[fieldKey{k, id, f}] = v
}

func (a *authorizer) authorize(origin string, d replication.Delta) error {
	if origin == d.Origin && d.Origin != a.site && a.facts.Holds(d.Source(), d.Seq) {
		// The site echoes a delta it received from the hub: a duplicate,
		// which the session ignores and nothing applies.
		return nil
	}
	if origin != a.site || d.Origin != a.site {
		return fmt.Errorf("%w: a delta of origin %q from site %s", errNotAllowed, d.Origin, a.site)
	}
	deny := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s %s: %s", errNotAllowed, d.Kind, d.ID, fmt.Sprintf(format, args...))
	}
	onlyDisables := true
	sets := map[string]string{}
	for _, op := range d.Ops {
		if op.Type != replication.OpDisable {
			onlyDisables = false
		}
		if op.Type == replication.OpSet {
			sets[op.Field] = op.Value
		}
	}
	switch d.Kind {
	case replication.KindSite:
		if d.ID != a.site {
			return deny("another site")
		}
		for _, op := range d.Ops {
			if op.Type == replication.OpDelete {
				return deny("a site may not delete itself")
			}
		}
		return nil

	case replication.KindZone, replication.KindDoor, replication.KindGroup, replication.KindVisit, replication.KindCard:
		if d.Kind == replication.KindCard && onlyDisables {
			return nil
		}
		if d.Kind == replication.KindCard {
			if contested, err := a.cardClaim(d, sets, deny); contested || err != nil {
				return err
			}
		}
		if err := a.ownEntity(d, sets, deny); err != nil {
			return err
		}
		if v, ok := sets["site"]; ok {
			a.remember(d.Kind, d.ID, "site", v)
		}
		return nil

	case replication.KindPerson:
		if onlyDisables {
			return nil
		}
		for _, op := range d.Ops {
			switch op.Type {
			case replication.OpDelete:
				return deny("a site may not delete a person")
			case replication.OpRevoke:
				if s, ok := a.field(replication.KindGroup, op.Value, "site"); ok && s != a.site {
					return deny("revoke of group %s of another site", op.Value)
				}
			case replication.OpSet, replication.OpEnable:
				kind, ok := sets["kind"]
				if !ok {
					kind, ok = a.field(replication.KindPerson, d.ID, "kind")
				}
				if !ok || kind != access.Visitor.String() {
					return deny("a site may create and change visitors only")
				}
			}
		}
		if v, ok := sets["kind"]; ok {
			a.remember(replication.KindPerson, d.ID, "kind", v)
		}
		return nil

	case replication.KindGrant:
		for _, op := range d.Ops {
			switch op.Type {
			case replication.OpGrant:
				g, err := replication.ParseGrantValue(op.Value)
				if err != nil {
					return deny("%v", err)
				}
				if s, ok := a.field(replication.KindGroup, string(g.GroupID), "site"); !ok || s != a.site {
					return deny("grant of group %s, not a group of this site", g.GroupID)
				}
			case replication.OpRemoveGrant:
				g, ok := a.facts.Grant(access.ID(d.ID))
				if !ok {
					continue // unknown to the hub: removing it only takes access away
				}
				if s, ok := a.field(replication.KindGroup, string(g.GroupID), "site"); ok && s != a.site {
					return deny("removal of a grant of group %s of another site", g.GroupID)
				}
			}
		}
		return nil

	case replication.KindEvent:
		return nil // its origin is the site (checked above); Validate ties it to the events lane
	}
	return deny("unknown kind")
}

// ownEntity checks that a site-scoped entity belongs to the site.
func (a *authorizer) ownEntity(d replication.Delta, sets map[string]string, deny func(string, ...any) error) error {
	set, setting := sets["site"]
	if setting && set != a.site {
		return deny("sets its site to %q", set)
	}
	known, ok := a.field(d.Kind, d.ID, "site")
	if !ok && d.Kind == replication.KindCard {
		// A card bound to a holder without a site is homed at the hub.
		n, _ := access.ParseCardNumber(d.ID) // validated
		if len(a.facts.CardHolders(n)) > 0 {
			known, ok = "", true
		}
	}
	switch {
	case ok && known != a.site:
		if known == "" {
			return deny("homed at the hub")
		}
		return deny("of another site")
	case ok || setting:
		return nil
	case d.Revocation():
		return nil // unknown here: a revocation only takes access away
	}
	return deny("unknown to the hub; the delta creating it must set its site")
}

// cardClaim judges a card delta when the card is contested: homed elsewhere
// (the hub or another site), held by two live holders, or held by a visit
// of another site. It reports whether it is contested; if so, the delta is
// allowed only as a conflicting claim (see NewAuthorizer), which is noted
// for takeClaims.
func (a *authorizer) cardClaim(d replication.Delta, sets map[string]string, deny func(string, ...any) error) (bool, error) {
	n, _ := access.ParseCardNumber(d.ID) // validated
	holders := a.facts.CardHolders(n)
	// Two live holders: a conflict in progress, whatever the card's site
	// field says now (a claim sets it to the site).
	contested := len(holders) > 1
	for _, h := range holders {
		if h.VisitID == "" {
			continue
		}
		if s, ok := a.field(replication.KindVisit, string(h.VisitID), "site"); ok && s != a.site {
			contested = true // a visitor card of another site
		}
	}
	known, ok := a.field(replication.KindCard, d.ID, "site")
	if !ok && len(holders) > 0 {
		known, ok = "", true // bound without a site: homed at the hub
	}
	if ok && known != a.site {
		contested = true
	}
	if !contested {
		return false, nil
	}
	if set, setting := sets["site"]; setting && set != a.site {
		return true, deny("sets its site to %q", set)
	}
	claims := false
	for _, op := range d.Ops {
		switch op.Type {
		case replication.OpSet, replication.OpEnable, replication.OpDisable:
			// site (checked above), validity; enable counts for nothing
			// while the card has two live holders, and the hub suspends
			// the card after the claim (disable wins).
		case replication.OpAdd, replication.OpRemove:
			p, v, err := replication.ParseHolderValue(op.Value)
			if err != nil {
				return true, deny("%v", err)
			}
			if !a.holderOfSite(p, v) {
				return true, deny("%s a holder not of this site (the card is homed elsewhere)", op.Type)
			}
			if op.Type == replication.OpAdd {
				claims = true
			}
		default:
			return true, deny("%s of a card homed elsewhere", op.Type)
		}
	}
	if !claims {
		if known == "" {
			return true, deny("homed at the hub")
		}
		return true, deny("of another home; only a binding to a holder of this site is taken (as a conflicting claim)")
	}
	a.mu.Lock()
	a.claims = append(a.claims, Claim{Source: d.Source(), Seq: d.Seq, Card: n})
	a.mu.Unlock()
	return true, nil
}

// holderOfSite reports whether a card holder is the site's own: a visit
// the hub (or this session) knows to be at the site.
func (a *authorizer) holderOfSite(person, visit access.ID) bool {
	if visit == "" {
		return false
	}
	s, ok := a.field(replication.KindVisit, string(visit), "site")
	return ok && s == a.site
}

package people

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/auth"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/cloud/importer"
	"github.com/gatehouse/gatehouse/cloud/store"
	peoplev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1"
	"github.com/gatehouse/gatehouse/replication"
)

// kindOf maps the API's person kind.
func kindOf(k peoplev1.PersonKind) (access.PersonKind, error) {
	switch k {
	case peoplev1.PersonKind_PERSON_KIND_OCCUPIER_USER:
		return access.Occupier, nil
	case peoplev1.PersonKind_PERSON_KIND_ACCESS_USER:
		return access.AccessUser, nil
	}
	return 0, invalid("kind: want occupier user or access user")
}

func kindProto(k access.PersonKind) peoplev1.PersonKind {
	switch k {
	case access.Occupier:
		return peoplev1.PersonKind_PERSON_KIND_OCCUPIER_USER
	case access.AccessUser:
		return peoplev1.PersonKind_PERSON_KIND_ACCESS_USER
	}
	return peoplev1.PersonKind_PERSON_KIND_UNSPECIFIED
}

// checkName returns the name of first and last, or of name, or an error
// for an empty, overlong or control-character name.
func checkName(first, last, name string) (string, error) {
	first, last, name = strings.TrimSpace(first), strings.TrimSpace(last), strings.TrimSpace(name)
	if first != "" || last != "" {
		if name != "" {
			return "", invalid("name: give first and last name, or name, not both")
		}
		name = strings.TrimSpace(first + " " + last)
	}
	if err := checkText("name", name, importer.MaxNameLen); err != nil {
		return "", err
	}
	if name == "" {
		return "", invalid("name is required")
	}
	return name, nil
}

// checkText refuses text that is not UTF-8, too long or has control
// characters.
func checkText(what, v string, max int) error {
	if !utf8.ValidString(v) || len(v) > max || strings.IndexFunc(v, unicode.IsControl) >= 0 {
		return invalid("%s: not UTF-8, longer than %d bytes or with control characters", what, max)
	}
	return nil
}

func msTime(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func timeMs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// personOps returns the operations that set every field of p.
func personOps(p access.Person) []replication.Op {
	return []replication.Op{
		replication.SetOp("kind", p.Kind.String()),
		replication.SetOp("name", p.Name),
		replication.SetOp("email", p.Email),
		replication.SetOp("occupier", string(p.OccupierID)),
		replication.SetOp("offline_access", replication.BoolValue(p.OfflineAccess)),
		replication.SetOp("valid_from", replication.TimeValue(p.ValidFrom)),
		replication.SetOp("valid_until", replication.TimeValue(p.ValidUntil)),
	}
}

// idemID returns the store entity ID of an idempotency key of the caller.
func idemID(ctx context.Context, method, key string) string {
	p, _ := auth.FromContext(ctx)
	sum := sha256.Sum256([]byte(method + "\x00" + p.KeyID + "\x00" + key))
	return "idem/" + hex.EncodeToString(sum[:16])
}

// idempotent returns what a call with the same idempotency key made, if
// one was committed.
func (s *Service) idempotent(ctx context.Context, method, key string) (string, bool, error) {
	if key == "" || s.cfg.Entities == nil {
		return "", false, nil
	}
	if len(key) > 128 {
		return "", false, invalid("idempotency_key longer than 128 bytes")
	}
	e, err := s.cfg.Entities.Get(ctx, "meta", idemID(ctx, method, key))
	if errors.Is(err, store.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, connectErr(err)
	}
	return string(e.Data), true, nil
}

// putIdem records in tx what a call with an idempotency key made.
func (s *Service) putIdem(ctx context.Context, tx *hubstate.Tx, method, key, result string) {
	if key == "" || s.cfg.Entities == nil {
		return
	}
	zero := uint64(0)
	tx.Put(store.Put{Entity: store.Entity{Kind: "meta", ID: idemID(ctx, method, key), Version: 1, Data: []byte(result)}, IfVersion: &zero})
}

// CreatePerson creates a person with cards and grants in one write.
func (s *Service) CreatePerson(ctx context.Context, req *connect.Request[peoplev1.CreatePersonRequest]) (*connect.Response[peoplev1.CreatePersonResponse], error) {
	if _, err := auth.Require(ctx, managers...); err != nil {
		return nil, err
	}
	m := req.Msg
	if prev, ok, err := s.idempotent(ctx, "CreatePerson", m.GetIdempotencyKey()); err != nil || ok {
		if err != nil {
			return nil, err
		}
		p, err := s.person(ctx, access.ID(prev))
		if err != nil {
			return nil, err
		}
		return connect.NewResponse(&peoplev1.CreatePersonResponse{Person: p}), nil
	}
	name, err := checkName(m.GetFirstName(), m.GetLastName(), m.GetName())
	if err != nil {
		return nil, err
	}
	kind, err := kindOf(m.GetKind())
	if err != nil {
		return nil, err
	}
	var occ access.ID
	if m.GetOccupierId() != "" {
		if occ, err = parseID("occupier_id", m.GetOccupierId()); err != nil {
			return nil, err
		}
	}
	if kind == access.AccessUser && occ != "" {
		return nil, invalid("an access user has no occupier")
	}
	if err := auth.ScopeOccupier(ctx, occ); err != nil {
		return nil, err
	}
	if len(m.GetCards()) > maxCards || len(m.GetGroupIds()) > maxGroups {
		return nil, invalid("at most %d cards and %d groups", maxCards, maxGroups)
	}
	var cards []access.CardNumber
	for _, c := range m.GetCards() {
		n, err := cardNumber(c)
		if err != nil {
			return nil, err
		}
		if slices.Contains(cards, n) {
			return nil, invalid("card %s listed twice", n.Redacted())
		}
		cards = append(cards, n)
	}
	var groups []access.ID
	for _, g := range m.GetGroupIds() {
		id, err := parseID("group_id", g)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(groups, id) {
			groups = append(groups, id)
		}
	}
	id, err := s.newID()
	if err != nil {
		return nil, connectErr(err)
	}
	p := access.Person{ID: id, Kind: kind, OccupierID: occ, Name: name, Email: strings.TrimSpace(m.GetEmail()),
		Active: m.GetActive(), OfflineAccess: m.GetOfflineAccess(), ValidFrom: msTime(m.GetValidFromMs()), ValidUntil: msTime(m.GetValidUntilMs())}
	if err := checkText("email", p.Email, importer.MaxEmailLen); err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, connectErr(err)
	}
	grantIDs := make([]access.ID, len(groups))
	for i := range groups {
		if grantIDs[i], err = s.newID(); err != nil {
			return nil, connectErr(err)
		}
	}
	var before replication.Vector
	_, err = s.state.Write(ctx, func(tx *hubstate.Tx) error {
		r := tx.Replica()
		before = r.Vector()
		for _, g := range groups {
			if _, ok := r.Group(g); !ok {
				return notFound("group %s not found", g)
			}
		}
		ops := personOps(p)
		if p.Active {
			ops = append(ops, r.EnableOp(replication.KindPerson, string(id)))
		}
		tx.Change(replication.KindPerson, string(id), ops...)
		for _, n := range cards {
			tx.Change(replication.KindCard, n.String(), replication.AddOp("holders", replication.HolderValue(id, "")),
				r.EnableOp(replication.KindCard, n.String()))
		}
		for i, g := range groups {
			gr := access.Grant{ID: grantIDs[i], HolderID: id, GroupID: g}
			tx.Change(replication.KindGrant, string(gr.ID), r.GrantOp(gr))
		}
		s.putIdem(ctx, tx, "CreatePerson", m.GetIdempotencyKey(), string(id))
		return nil
	})
	if errors.Is(err, store.ErrVersionMismatch) {
		// A concurrent call with the same key won: answer what it made.
		if prev, ok, err := s.idempotent(ctx, "CreatePerson", m.GetIdempotencyKey()); err == nil && ok {
			pp, err := s.person(ctx, access.ID(prev))
			if err != nil {
				return nil, err
			}
			return connect.NewResponse(&peoplev1.CreatePersonResponse{Person: pp}), nil
		}
	}
	if err != nil {
		return nil, connectErr(err)
	}
	s.log.Info("person created", "person", id, "cards", len(cards), "groups", len(groups))
	pp, err := s.fresh(ctx, id, before, cards, grantIDs)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&peoplev1.CreatePersonResponse{Person: pp}), nil
}

// writePerson runs fn in a hub write on the live person id, after checking
// the caller may manage them. fn may add changes through tx.
func (s *Service) writePerson(ctx context.Context, id access.ID, fn func(tx *hubstate.Tx, p access.Person) error) (replication.Vector, error) {
	var before replication.Vector
	_, err := s.state.Write(ctx, func(tx *hubstate.Tx) error {
		before = tx.Replica().Vector()
		p, ok := tx.Replica().Person(id)
		if !ok || p.Deleted || p.Kind == access.Visitor {
			return notFound("person %s not found", id)
		}
		if err := auth.ScopeOccupier(ctx, p.OccupierID); err != nil {
			return err
		}
		return fn(tx, p)
	})
	return before, connectErr(err)
}

// UpdatePerson changes the fields set in the request.
func (s *Service) UpdatePerson(ctx context.Context, req *connect.Request[peoplev1.UpdatePersonRequest]) (*connect.Response[peoplev1.UpdatePersonResponse], error) {
	if _, err := auth.Require(ctx, managers...); err != nil {
		return nil, err
	}
	m := req.Msg
	id, err := parseID("person_id", m.GetPersonId())
	if err != nil {
		return nil, err
	}
	before, err := s.writePerson(ctx, id, func(tx *hubstate.Tx, p access.Person) error {
		q := p
		if m.FirstName != nil || m.LastName != nil || m.Name != nil {
			name, err := checkName(m.GetFirstName(), m.GetLastName(), m.GetName())
			if err != nil {
				return err
			}
			q.Name = name
		}
		if m.Email != nil {
			q.Email = strings.TrimSpace(m.GetEmail())
			if err := checkText("email", q.Email, importer.MaxEmailLen); err != nil {
				return err
			}
		}
		if m.GetKind() != peoplev1.PersonKind_PERSON_KIND_UNSPECIFIED {
			k, err := kindOf(m.GetKind())
			if err != nil {
				return err
			}
			q.Kind = k
			if k == access.AccessUser && m.OccupierId == nil {
				q.OccupierID = ""
			}
		}
		if m.OccupierId != nil {
			q.OccupierID = ""
			if m.GetOccupierId() != "" {
				occ, err := parseID("occupier_id", m.GetOccupierId())
				if err != nil {
					return err
				}
				q.OccupierID = occ
			}
		}
		if q.Kind == access.AccessUser && q.OccupierID != "" {
			return invalid("an access user has no occupier")
		}
		if err := auth.ScopeOccupier(ctx, q.OccupierID); err != nil {
			return err
		}
		if m.OfflineAccess != nil {
			q.OfflineAccess = m.GetOfflineAccess()
		}
		if m.ValidFromMs != nil {
			q.ValidFrom = msTime(m.GetValidFromMs())
		}
		if m.ValidUntilMs != nil {
			q.ValidUntil = msTime(m.GetValidUntilMs())
		}
		if err := q.Validate(); err != nil {
			return err
		}
		var ops []replication.Op
		old := personOps(p)
		for i, op := range personOps(q) {
			if op.Value != old[i].Value {
				ops = append(ops, op)
			}
		}
		if len(ops) > 0 {
			tx.Change(replication.KindPerson, string(id), ops...)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	pp, err := s.fresh(ctx, id, before, nil, nil)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&peoplev1.UpdatePersonResponse{Person: pp}), nil
}

// SetActive enables or disables a person's access.
func (s *Service) SetActive(ctx context.Context, req *connect.Request[peoplev1.SetActiveRequest]) (*connect.Response[peoplev1.SetActiveResponse], error) {
	if _, err := auth.Require(ctx, managers...); err != nil {
		return nil, err
	}
	id, err := parseID("person_id", req.Msg.GetPersonId())
	if err != nil {
		return nil, err
	}
	before, err := s.writePerson(ctx, id, func(tx *hubstate.Tx, p access.Person) error {
		switch {
		case req.Msg.GetActive() && !p.Active:
			tx.Change(replication.KindPerson, string(id), tx.Replica().EnableOp(replication.KindPerson, string(id)))
		case !req.Msg.GetActive() && p.Active:
			tx.Change(replication.KindPerson, string(id), replication.DisableOp("deactivated"))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	pp, err := s.fresh(ctx, id, before, nil, nil)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&peoplev1.SetActiveResponse{Person: pp}), nil
}

// DeletePerson deletes a person; their cards stop and their numbers are freed.
func (s *Service) DeletePerson(ctx context.Context, req *connect.Request[peoplev1.DeletePersonRequest]) (*connect.Response[peoplev1.DeletePersonResponse], error) {
	if _, err := auth.Require(ctx, managers...); err != nil {
		return nil, err
	}
	id, err := parseID("person_id", req.Msg.GetPersonId())
	if err != nil {
		return nil, err
	}
	var freed []string
	v := s.index.last() // informational: the cards as last indexed
	if v == nil {
		v = s.index.current()
	}
	if e := v.byID[id]; e != nil {
		for _, c := range e.cards {
			freed = append(freed, c.Number.Redacted())
		}
	}
	_, err = s.writePerson(ctx, id, func(tx *hubstate.Tx, p access.Person) error {
		tx.Change(replication.KindPerson, string(id), replication.DeleteOp())
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("person deleted", "person", id, "cards_freed", len(freed))
	return connect.NewResponse(&peoplev1.DeletePersonResponse{FreedCardsMasked: freed}), nil
}

// person returns the person id as the caller may see them.
func (s *Service) person(ctx context.Context, id access.ID) (*peoplev1.Person, error) {
	v := s.index.current()
	e := v.byID[id]
	if e == nil {
		return nil, notFound("person %s not found", id)
	}
	if err := auth.ScopeOccupier(ctx, e.p.OccupierID); err != nil {
		return nil, err
	}
	return v.proto(e), nil
}

// proto returns the API form of e.
func (v *view) proto(e *entry) *peoplev1.Person {
	return personProto(e, func(id access.ID) access.Group { return v.groups[id] })
}

// fresh returns person id as the caller may see them just after a write
// of this service, without rebuilding the index: from the index's view
// before the write (when it is exactly the state before it) plus the
// cards and grants the write may have added, each read back from the
// replica. Otherwise it reads through the index.
func (s *Service) fresh(ctx context.Context, id access.ID, before replication.Vector, cards []access.CardNumber, grants []access.ID) (*peoplev1.Person, error) {
	v := s.index.last()
	if v == nil || !v.vec.Equal(before) {
		return s.person(ctx, id)
	}
	if old := v.byID[id]; old != nil {
		for _, c := range old.cards {
			cards = append(cards, c.Number)
		}
		for _, g := range old.grants {
			grants = append(grants, g.ID)
		}
	}
	var (
		e      entry
		found  bool
		groups = map[access.ID]access.Group{}
	)
	s.state.View(func(r *replication.Replica) {
		p, ok := r.Person(id)
		if !ok || p.Deleted || p.Kind == access.Visitor {
			return
		}
		found, e.p = true, p
		seen := map[access.CardNumber]bool{}
		for _, n := range cards {
			if seen[n] {
				continue
			}
			seen[n] = true
			if c, ok := r.Card(n); ok && slices.Contains(r.CardHolders(n), replication.Holder{PersonID: id}) {
				c.PersonID = id
				e.cards = append(e.cards, c)
			}
		}
		slices.SortFunc(e.cards, func(a, b access.Card) int { return cmpCard(a.Number, b.Number) })
		for _, gid := range slices.Compact(slices.Sorted(slices.Values(grants))) {
			if g, ok := r.Grant(gid); ok && !g.Removed && g.HolderID == id {
				e.grants = append(e.grants, g)
				if grp, ok := r.Group(g.GroupID); ok {
					groups[g.GroupID] = grp
				}
			}
		}
	})
	if !found {
		return nil, notFound("person %s not found", id)
	}
	if err := auth.ScopeOccupier(ctx, e.p.OccupierID); err != nil {
		return nil, err
	}
	return personProto(&e, func(id access.ID) access.Group { return groups[id] }), nil
}

func cmpCard(a, b access.CardNumber) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// personProto returns the API form of e, naming groups with group.
func personProto(e *entry, group func(access.ID) access.Group) *peoplev1.Person {
	p := e.p
	out := &peoplev1.Person{Id: string(p.ID), Kind: kindProto(p.Kind), Name: p.Name, Email: p.Email, OccupierId: string(p.OccupierID),
		Active: p.Active, OfflineAccess: p.OfflineAccess, ValidFromMs: timeMs(p.ValidFrom), ValidUntilMs: timeMs(p.ValidUntil)}
	for _, c := range e.cards {
		out.Cards = append(out.Cards, cardProto(c))
	}
	for _, g := range e.grants {
		grp := group(g.GroupID)
		out.Groups = append(out.Groups, &peoplev1.GroupRef{GroupId: string(g.GroupID), Name: grp.Name, SiteId: string(grp.SiteID), GrantId: string(g.ID)})
	}
	return out
}

// GetPerson returns one person.
func (s *Service) GetPerson(ctx context.Context, req *connect.Request[peoplev1.GetPersonRequest]) (*connect.Response[peoplev1.GetPersonResponse], error) {
	if _, err := auth.Require(ctx, managers...); err != nil {
		return nil, err
	}
	id, err := parseID("person_id", req.Msg.GetPersonId())
	if err != nil {
		return nil, err
	}
	p, err := s.person(ctx, id)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&peoplev1.GetPersonResponse{Person: p}), nil
}

// parseFilter checks a filter against the caller's scope. An occupier
// admin sees only their occupier's people, whatever the filter says; a
// filter naming another occupier is refused.
func parseFilter(ctx context.Context, f *peoplev1.PeopleFilter) (*filter, error) {
	out := &filter{scope: func(o access.ID) bool { return auth.InScope(ctx, o) }}
	out.setQuery(f.GetQuery())
	if len(f.GetQuery()) > 256 {
		return nil, invalid("query longer than 256 bytes")
	}
	var err error
	if f.GetSiteId() != "" {
		if out.site, err = parseID("site_id", f.GetSiteId()); err != nil {
			return nil, err
		}
	}
	if f.GetGroupId() != "" {
		if out.group, err = parseID("group_id", f.GetGroupId()); err != nil {
			return nil, err
		}
	}
	if f.GetOccupierId() != "" {
		if out.occupier, err = parseID("occupier_id", f.GetOccupierId()); err != nil {
			return nil, err
		}
		if err := auth.ScopeOccupier(ctx, out.occupier); err != nil {
			return nil, err
		}
	}
	out.state = int(f.GetState())
	if f.GetKind() != peoplev1.PersonKind_PERSON_KIND_UNSPECIFIED {
		if out.kind, err = kindOf(f.GetKind()); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ListPeople returns a page of the people matching the filter, by name.
func (s *Service) ListPeople(ctx context.Context, req *connect.Request[peoplev1.ListPeopleRequest]) (*connect.Response[peoplev1.ListPeopleResponse], error) {
	if _, err := auth.Require(ctx, managers...); err != nil {
		return nil, err
	}
	f, err := parseFilter(ctx, req.Msg.GetFilter())
	if err != nil {
		return nil, err
	}
	size := int(req.Msg.GetPageSize())
	switch {
	case size < 0 || size > 1000:
		return nil, invalid("page_size must be 0 to 1000")
	case size == 0:
		size = 50
	}
	start := 0
	v := s.index.current()
	if tok := req.Msg.GetPageToken(); tok != "" {
		after, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil {
			return nil, invalid("page_token malformed")
		}
		start = sort.Search(len(v.entries), func(i int) bool { return v.entries[i].key > string(after) })
	}
	res := &peoplev1.ListPeopleResponse{}
	var last *entry
	total := 0
	for i, e := range v.entries {
		if !f.match(e) {
			continue
		}
		total++
		if i >= start && len(res.People) < size {
			res.People = append(res.People, v.proto(e))
			last = e
		} else if i >= start && len(res.People) == size && last != nil && res.NextPageToken == "" {
			res.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(last.key))
		}
	}
	res.TotalSize = int32(total)
	return connect.NewResponse(res), nil
}

// AssignCard binds a card to a person.
func (s *Service) AssignCard(ctx context.Context, req *connect.Request[peoplev1.AssignCardRequest]) (*connect.Response[peoplev1.AssignCardResponse], error) {
	if _, err := auth.Require(ctx, managers...); err != nil {
		return nil, err
	}
	id, err := parseID("person_id", req.Msg.GetPersonId())
	if err != nil {
		return nil, err
	}
	n, err := cardNumber(req.Msg.GetCard())
	if err != nil {
		return nil, err
	}
	before, err := s.writePerson(ctx, id, func(tx *hubstate.Tx, p access.Person) error {
		r := tx.Replica()
		if slices.Contains(r.CardHolders(n), replication.Holder{PersonID: id}) {
			return nil
		}
		if len(r.CardHolders(n)) > 0 {
			return connect.NewError(connect.CodeAlreadyExists, fmt.Errorf("card %s: %w", n.Redacted(), hubstate.ErrCardTaken))
		}
		tx.Change(replication.KindCard, n.String(), replication.AddOp("holders", replication.HolderValue(id, "")), r.EnableOp(replication.KindCard, n.String()))
		return nil
	})
	if err != nil {
		return nil, err
	}
	pp, err := s.fresh(ctx, id, before, []access.CardNumber{n}, nil)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&peoplev1.AssignCardResponse{Person: pp}), nil
}

// UnassignCard takes a card from a person and frees its number.
func (s *Service) UnassignCard(ctx context.Context, req *connect.Request[peoplev1.UnassignCardRequest]) (*connect.Response[peoplev1.UnassignCardResponse], error) {
	if _, err := auth.Require(ctx, managers...); err != nil {
		return nil, err
	}
	id, err := parseID("person_id", req.Msg.GetPersonId())
	if err != nil {
		return nil, err
	}
	n, err := cardNumber(req.Msg.GetCard())
	if err != nil {
		return nil, err
	}
	before, err := s.writePerson(ctx, id, func(tx *hubstate.Tx, p access.Person) error {
		r := tx.Replica()
		if !slices.Contains(r.CardHolders(n), replication.Holder{PersonID: id}) {
			return notFound("person %s holds no card %s", id, n.Redacted())
		}
		holder := replication.HolderValue(id, "")
		tx.Change(replication.KindCard, n.String(), r.RemoveOp(replication.KindCard, n.String(), "holders", holder))
		return nil
	})
	if err != nil {
		return nil, err
	}
	pp, err := s.fresh(ctx, id, before, nil, nil)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&peoplev1.UnassignCardResponse{Person: pp}), nil
}

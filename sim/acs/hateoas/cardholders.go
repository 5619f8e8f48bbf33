package hateoas

import (
	"errors"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/sim/acs"
)

const (
	defaultTop = 100
	maxTop     = 10000
)

// top reads the top parameter.
func top(r *http.Request) (int, error) {
	s := r.URL.Query().Get("top")
	if s == "" {
		return defaultTop, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxTop {
		return 0, bad("top must be a count from 1 to %d", maxTop)
	}
	return n, nil
}

// nextURL returns r's URL with the given query parameters replaced.
func nextURL(r *http.Request, set map[string]string) string {
	q := r.URL.Query()
	for k, v := range set {
		if v == "" {
			q.Del(k)
		} else {
			q.Set(k, v)
		}
	}
	return base(r) + r.URL.Path + "?" + q.Encode()
}

func (s *Server) summary(r *http.Request, c *cardholder) map[string]any {
	return map[string]any{
		"href": s.href(r, s.st.Prefix, "cardholders", c.ID), "id": c.ID,
		"firstName": c.FirstName, "lastName": c.LastName, "shortName": c.FirstName,
		"description": c.Description, "authorised": c.Authorised,
	}
}

func (s *Server) detail(r *http.Request, c *cardholder, now time.Time) map[string]any {
	p := s.st.Prefix
	d := s.summary(r, c)
	if div := find(s.st.Divisions, c.Division); div != nil {
		d["division"] = ref{Href: s.href(r, p, "divisions", div.ID), Name: div.Name}
	}
	for k, v := range c.PDFs {
		d["@"+k] = v
	}
	cards := []map[string]any{}
	for _, x := range c.Cards {
		ct := find(s.st.CardTypes, x.Type)
		m := map[string]any{
			"href": s.href(r, p, "cardholders", c.ID, "cards", x.ID), "number": x.Number, "issueLevel": x.IssueLevel,
			"status": map[string]string{"value": x.Status, "type": statusType(x, now)},
			"type":   ref{Href: s.href(r, p, "card_types", x.Type), Name: ct.Name},
		}
		if x.Serial != "" {
			m["cardSerialNumber"] = x.Serial
		}
		if x.From != "" {
			m["from"] = x.From
		}
		if x.Until != "" {
			m["until"] = x.Until
		}
		cards = append(cards, m)
	}
	d["cards"] = cards
	groups := []map[string]any{}
	for _, x := range c.Memberships {
		g := find(s.st.Groups, x.Group)
		m := map[string]any{
			"href":        s.href(r, p, "cardholders", c.ID, "access_groups", x.ID),
			"accessGroup": ref{Href: s.href(r, p, "access_groups", g.ID), Name: g.Name},
			"status":      map[string]string{"value": "Active", "type": membershipStatus(x, now)},
		}
		if x.From != "" {
			m["from"] = x.From
		}
		if x.Until != "" {
			m["until"] = x.Until
		}
		groups = append(groups, m)
	}
	d["accessGroups"] = groups
	return d
}

func membershipStatus(m *membership, now time.Time) string {
	return statusType(&card{Status: "Active", From: m.From, Until: m.Until}, now)
}

// listCardholders answers GET cardholders: name order by default (offset
// paging, with its skip/duplicate race when names change), or sort=id
// (keyset paging, stable under inserts).
func (s *Server) listCardholders(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	n, err := top(r)
	if err != nil {
		s.failErr(w, err)
		return
	}
	sortBy := q.Get("sort")
	if sortBy == "" {
		sortBy = "name"
	}
	if sortBy != "name" && sortBy != "id" {
		s.fail(w, http.StatusBadRequest, "sort must be name or id")
		return
	}
	name := q.Get("name")
	pdfs := map[string]string{}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range q {
		if id, ok := strings.CutPrefix(k, "pdf_"); ok {
			pd := find(s.st.PDFs, id)
			if pd == nil {
				s.fail(w, http.StatusBadRequest, "unknown personal data field %q", id)
				return
			}
			pdfs[pd.Name] = strings.Trim(v[0], `"`)
		}
	}
	all := s.st.sortedCardholders()
	var match []*cardholder
	for _, c := range all {
		if name != "" && !nameMatches(c, name) {
			continue
		}
		ok := true
		for k, v := range pdfs {
			if c.PDFs[k] != v {
				ok = false
			}
		}
		if ok {
			match = append(match, c)
		}
	}
	start := 0
	if sortBy == "name" {
		sort.SliceStable(match, func(i, j int) bool {
			a, b := strings.ToLower(match[i].LastName+","+match[i].FirstName), strings.ToLower(match[j].LastName+","+match[j].FirstName)
			return a < b
		})
		if p := q.Get("pos"); p != "" {
			v, err := strconv.Atoi(p)
			if err != nil || v < 0 {
				s.fail(w, http.StatusBadRequest, "invalid pos")
				return
			}
			start = min(v, len(match))
		}
	} else if a := q.Get("after"); a != "" {
		start = sort.Search(len(match), func(i int) bool { return lessID(a, match[i].ID) })
	}
	end := min(start+n, len(match))
	res := []map[string]any{}
	for _, c := range match[start:end] {
		res = append(res, s.summary(r, c))
	}
	body := map[string]any{"results": res}
	if end < len(match) {
		if sortBy == "name" {
			body["next"] = ref{Href: nextURL(r, map[string]string{"pos": strconv.Itoa(end), "top": strconv.Itoa(n)})}
		} else {
			body["next"] = ref{Href: nextURL(r, map[string]string{"after": match[end-1].ID, "top": strconv.Itoa(n)})}
		}
	}
	s.writeJSON(w, http.StatusOK, body)
}

// nameMatches: a quoted name must equal the first, last or full name; an
// unquoted one is a case-insensitive substring of the full name.
func nameMatches(c *cardholder, q string) bool {
	if len(q) >= 2 && strings.HasPrefix(q, `"`) && strings.HasSuffix(q, `"`) {
		q = q[1 : len(q)-1]
		return strings.EqualFold(q, c.FirstName) || strings.EqualFold(q, c.LastName) || strings.EqualFold(q, c.name()) ||
			strings.EqualFold(q, c.LastName+", "+c.FirstName)
	}
	return strings.Contains(strings.ToLower(c.name()), strings.ToLower(q))
}

func (s *Server) getCardholder(w http.ResponseWriter, r *http.Request, id string) {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.st.Cardholders[id]
	if c == nil {
		s.fail(w, http.StatusNotFound, "cardholder %s not found", id)
		return
	}
	s.writeJSON(w, http.StatusOK, s.detail(r, c, now))
}

// readBody reads a JSON request body, answering 413 when it is too large.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := acs.ReadBody(r, acs.MaxBody)
	if errors.Is(err, acs.ErrBodyTooLarge) {
		s.fail(w, http.StatusRequestEntityTooLarge, "request body larger than %d bytes", acs.MaxBody)
		return nil, false
	}
	if err != nil {
		s.fail(w, http.StatusBadRequest, "%v", err)
		return nil, false
	}
	return b, true
}

// createCardholder answers POST cardholders: 201 with only a Location.
// There is no idempotency key: two POSTs make two cardholders.
func (s *Server) createCardholder(w http.ResponseWriter, r *http.Request) {
	b, ok := s.readBody(w, r)
	if !ok {
		return
	}
	in, err := decodeCardholder(b, false)
	if err != nil {
		s.failErr(w, err)
		return
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.st.Prefix
	if in.Division == nil {
		s.fail(w, http.StatusBadRequest, "a division is required")
		return
	}
	ids, err := hrefIDs(in.Division.Href, p, "division", "divisions")
	if err != nil {
		s.failErr(w, err)
		return
	}
	if find(s.st.Divisions, ids[0]) == nil {
		s.fail(w, http.StatusBadRequest, "invalid division href: %s", in.Division.Href)
		return
	}
	c := &cardholder{Division: ids[0], PDFs: map[string]string{}}
	if err := s.apply(c, in, r, now); err != nil {
		s.failErr(w, err)
		return
	}
	if c.FirstName == "" && c.LastName == "" {
		s.fail(w, http.StatusBadRequest, "a cardholder needs a first or a last name")
		return
	}
	if err := s.checkUnique(c); err != nil {
		s.failErr(w, err)
		return
	}
	c.ID = s.st.newID()
	s.st.Cardholders[c.ID] = c
	s.st.appendChange(s.cfg.MaxChanges, now, "add", c.ID, nil, values(c))
	s.saveLocked()
	acs.MarkCommitted(r.Context())
	w.Header().Set("Location", s.href(r, p, "cardholders", c.ID))
	w.WriteHeader(http.StatusCreated)
}

// values returns the fields the change feed reports.
func values(c *cardholder) map[string]any {
	v := map[string]any{"firstName": c.FirstName, "lastName": c.LastName, "description": c.Description, "authorised": c.Authorised}
	for k, x := range c.PDFs {
		v["@"+k] = x
	}
	return v
}

// diff returns the fields that differ between old and new.
func diff(a, b map[string]any) (map[string]any, map[string]any) {
	old, new := map[string]any{}, map[string]any{}
	for k := range maps.Keys(a) {
		if b[k] != a[k] {
			old[k], new[k] = a[k], b[k]
		}
	}
	for k := range maps.Keys(b) {
		if _, ok := a[k]; !ok {
			old[k], new[k] = nil, b[k]
		}
	}
	return old, new
}

// apply applies in to c (a new cardholder or a clone), validating as it
// goes. c may be half-changed when it returns an error; callers discard it.
func (s *Server) apply(c *cardholder, in *cardholderIn, r *http.Request, now time.Time) error {
	p := s.st.Prefix
	if in.Division != nil && c.ID != "" {
		ids, err := hrefIDs(in.Division.Href, p, "division", "divisions")
		if err != nil {
			return err
		}
		if find(s.st.Divisions, ids[0]) == nil {
			return bad("invalid division href: %s", in.Division.Href)
		}
		c.Division = ids[0]
	}
	for _, f := range []struct {
		name string
		in   *string
		out  *string
	}{{"firstName", in.FirstName, &c.FirstName}, {"lastName", in.LastName, &c.LastName}, {"description", in.Description, &c.Description}} {
		if f.in == nil {
			continue
		}
		v := strings.TrimSpace(*f.in)
		if len(v) > 50 && f.name != "description" || len(v) > 1000 {
			return bad("%s is too long", f.name)
		}
		*f.out = v
	}
	if in.Authorised != nil {
		c.Authorised = *in.Authorised
	}
	for name, v := range in.PDFs {
		if !slices.ContainsFunc(s.st.PDFs, func(p *pdfDef) bool { return p.Name == name }) {
			return bad("unknown personal data field @%s", name)
		}
		if v == nil || *v == "" {
			delete(c.PDFs, name)
		} else if len(*v) > 200 {
			return bad("@%s is too long", name)
		} else {
			c.PDFs[name] = *v
		}
	}
	if in.Cards != nil {
		if err := s.applyCards(c, in.Cards); err != nil {
			return err
		}
	}
	if in.AccessGroups != nil {
		if err := s.applyGroups(c, in.AccessGroups); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) applyCards(c *cardholder, in *changesIn[cardIn]) error {
	p := s.st.Prefix
	cardOf := func(h string) (*card, int, error) {
		ids, err := hrefIDs(h, p, "card", "cardholders", "cards")
		if err != nil {
			return nil, 0, err
		}
		for i, x := range c.Cards {
			if ids[0] == c.ID && x.ID == ids[1] {
				return x, i, nil
			}
		}
		return nil, 0, bad("invalid card href: %s", h)
	}
	for _, rm := range in.Remove {
		_, i, err := cardOf(rm.Href)
		if err != nil {
			return err
		}
		c.Cards = slices.Delete(c.Cards, i, i+1)
	}
	for _, u := range in.Update {
		x, _, err := cardOf(u.Href)
		if err != nil {
			return err
		}
		if u.Number != nil && *u.Number != x.Number {
			return bad("a card's number cannot be changed once issued; disable this card and add a new one")
		}
		if u.Type != nil {
			ids, err := hrefIDs(u.Type.Href, p, "card type", "card_types")
			if err != nil || ids[0] != x.Type {
				return bad("a card's type cannot be changed")
			}
		}
		if err := s.fillCard(x, u); err != nil {
			return err
		}
	}
	for _, a := range in.Add {
		if a.Href != "" {
			return bad("a card to add has no href")
		}
		if a.Type == nil {
			return bad("a card to add needs a type")
		}
		ids, err := hrefIDs(a.Type.Href, p, "card type", "card_types")
		if err != nil {
			return err
		}
		if find(s.st.CardTypes, ids[0]) == nil {
			return bad("invalid card type href: %s", a.Type.Href)
		}
		x := &card{Type: ids[0], Status: "Active"}
		if a.Number != nil {
			x.Number = *a.Number
		}
		if err := s.fillCard(x, a); err != nil {
			return err
		}
		x.ID = s.st.newID()
		c.Cards = append(c.Cards, x)
	}
	// Numbers are checked and filled in after every change is applied, so
	// that a removal frees a number for an add in the same PATCH.
	for _, x := range c.Cards {
		ct := find(s.st.CardTypes, x.Type)
		if x.Number == "" {
			x.Number = s.freeNumber(ct, c)
			continue
		}
		if !digits.MatchString(x.Number) {
			return bad("card number %q is not a decimal number", x.Number)
		}
		n, err := strconv.ParseInt(x.Number, 10, 64)
		if err != nil || n < ct.Min || n > ct.Max {
			return bad("card number %s is out of range for %s (%d to %d)", x.Number, ct.Name, ct.Min, ct.Max)
		}
		x.Number = strconv.FormatInt(n, 10)
	}
	return nil
}

// fillCard copies the writable fields of in onto x.
func (s *Server) fillCard(x *card, in cardIn) error {
	if in.CardSerialNumber != nil {
		v := *in.CardSerialNumber
		if v != "" && !hexRE.MatchString(v) {
			return bad("cardSerialNumber %q must be hexadecimal without 0x", v)
		}
		x.Serial = strings.ToUpper(v)
	}
	if in.IssueLevel != nil {
		if *in.IssueLevel < 0 || *in.IssueLevel > 15 {
			return bad("issueLevel must be from 0 to 15")
		}
		x.IssueLevel = *in.IssueLevel
	}
	if in.Status != nil {
		if !slices.Contains(cardStatuses, in.Status.Value) {
			return bad("card status %q does not exist (want one of %s)", in.Status.Value, strings.Join(cardStatuses, ", "))
		}
		x.Status = in.Status.Value
	}
	if in.From != nil {
		if err := checkTime("from", *in.From); err != nil {
			return err
		}
		x.From = *in.From
	}
	if in.Until != nil {
		if err := checkTime("until", *in.Until); err != nil {
			return err
		}
		x.Until = *in.Until
	}
	return nil
}

// freeNumber returns the lowest number of ct that no card uses (c's own
// cards included).
func (s *Server) freeNumber(ct *cardType, c *cardholder) string {
	used := map[string]bool{}
	for _, o := range s.st.Cardholders {
		if o.ID == c.ID {
			continue
		}
		for _, x := range o.Cards {
			if x.Type == ct.ID {
				used[x.Number] = true
			}
		}
	}
	for _, x := range c.Cards {
		if x.Type == ct.ID {
			used[x.Number] = true
		}
	}
	for n := ct.Min; ; n++ {
		if v := strconv.FormatInt(n, 10); !used[v] {
			return v
		}
	}
}

func (s *Server) applyGroups(c *cardholder, in *changesIn[membershipIn]) error {
	p := s.st.Prefix
	memberOf := func(h string) (*membership, int, error) {
		ids, err := hrefIDs(h, p, "access group membership", "cardholders", "access_groups")
		if err != nil {
			return nil, 0, err
		}
		for i, m := range c.Memberships {
			if ids[0] == c.ID && m.ID == ids[1] {
				return m, i, nil
			}
		}
		return nil, 0, bad("invalid access group membership href (they change at every edit; read the cardholder again): %s", h)
	}
	setDates := func(m *membership, in membershipIn) error {
		if in.From != nil {
			if err := checkTime("from", *in.From); err != nil {
				return err
			}
			m.From = *in.From
		}
		if in.Until != nil {
			if err := checkTime("until", *in.Until); err != nil {
				return err
			}
			m.Until = *in.Until
		}
		return nil
	}
	for _, rm := range in.Remove {
		_, i, err := memberOf(rm.Href)
		if err != nil {
			return err
		}
		c.Memberships = slices.Delete(c.Memberships, i, i+1)
	}
	for _, u := range in.Update {
		m, _, err := memberOf(u.Href)
		if err != nil {
			return err
		}
		if u.AccessGroup != nil {
			return bad("a membership's access group cannot be changed; remove it and add another")
		}
		if err := setDates(m, u); err != nil {
			return err
		}
	}
	for _, a := range in.Add {
		if a.AccessGroup == nil {
			return bad("an access group membership to add needs an accessGroup")
		}
		ids, err := hrefIDs(a.AccessGroup.Href, p, "access group", "access_groups")
		if err != nil {
			return err
		}
		if find(s.st.Groups, ids[0]) == nil {
			return bad("invalid access group href: %s", a.AccessGroup.Href)
		}
		m := &membership{Group: ids[0]}
		if err := setDates(m, a); err != nil {
			return err
		}
		c.Memberships = append(c.Memberships, m)
	}
	return nil
}

// checkUnique checks c's unique personal data and card numbers against
// every other cardholder.
func (s *Server) checkUnique(c *cardholder) error {
	seen := map[string]bool{}
	for _, x := range c.Cards {
		k := x.Type + "/" + x.Number
		if seen[k] {
			return bad("card number %s is in use", x.Number)
		}
		seen[k] = true
	}
	for _, o := range s.st.Cardholders {
		if o.ID == c.ID {
			continue
		}
		for _, pd := range s.st.PDFs {
			if v, ok := c.PDFs[pd.Name]; ok && pd.Unique && o.PDFs[pd.Name] == v {
				return bad("the value of the unique personal data field @%s is already in use", pd.Name)
			}
		}
		for _, x := range o.Cards {
			if seen[x.Type+"/"+x.Number] {
				return bad("card number %s is in use", x.Number)
			}
		}
	}
	return nil
}

// remint gives every membership a new ID: their hrefs change at every edit.
func (s *Server) remint(c *cardholder) {
	for _, m := range c.Memberships {
		m.ID = s.st.newID()
	}
}

// editable returns the cardholder with id, or answers 404 or 409.
func (s *Server) editable(w http.ResponseWriter, id string) *cardholder {
	c := s.st.Cardholders[id]
	if c == nil {
		s.fail(w, http.StatusNotFound, "cardholder %s not found", id)
		return nil
	}
	if op, ok := s.st.Held[id]; ok {
		s.fail(w, http.StatusConflict, "the cardholder is being edited by operator %q; try again later", op)
		return nil
	}
	return c
}

// patchCardholder answers PATCH cardholders/{id}: one atomic change, 204.
func (s *Server) patchCardholder(w http.ResponseWriter, r *http.Request, id string) {
	b, ok := s.readBody(w, r)
	if !ok {
		return
	}
	in, err := decodeCardholder(b, true)
	if err != nil {
		s.failErr(w, err)
		return
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.editable(w, id)
	if old == nil {
		return
	}
	c := old.clone()
	if err := s.apply(c, in, r, now); err != nil {
		s.failErr(w, err)
		return
	}
	if c.FirstName == "" && c.LastName == "" {
		s.fail(w, http.StatusBadRequest, "a cardholder needs a first or a last name")
		return
	}
	if err := s.checkUnique(c); err != nil {
		s.failErr(w, err)
		return
	}
	s.remint(c)
	s.st.Cardholders[id] = c
	o, n := diff(values(old), values(c))
	s.st.appendChange(s.cfg.MaxChanges, now, "update", id, o, n)
	s.saveLocked()
	acs.MarkCommitted(r.Context())
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) deleteCardholder(w http.ResponseWriter, r *http.Request, id string) {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.editable(w, id)
	if c == nil {
		return
	}
	delete(s.st.Cardholders, id)
	s.st.appendChange(s.cfg.MaxChanges, now, "remove", id, values(c), nil)
	s.saveLocked()
	acs.MarkCommitted(r.Context())
	w.WriteHeader(http.StatusNoContent)
}

// deleteLink answers DELETE of a card or membership href.
func (s *Server) deleteLink(w http.ResponseWriter, r *http.Request, id, kind, sub string) {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.editable(w, id)
	if old == nil {
		return
	}
	c := old.clone()
	n := 0
	if kind == "cards" {
		c.Cards = slices.DeleteFunc(c.Cards, func(x *card) bool { return x.ID == sub })
		n = len(old.Cards) - len(c.Cards)
	} else {
		c.Memberships = slices.DeleteFunc(c.Memberships, func(x *membership) bool { return x.ID == sub })
		n = len(old.Memberships) - len(c.Memberships)
	}
	if n == 0 {
		s.fail(w, http.StatusNotFound, "%s %s of cardholder %s not found", strings.TrimSuffix(kind, "s"), sub, id)
		return
	}
	s.remint(c)
	s.st.Cardholders[id] = c
	s.st.appendChange(s.cfg.MaxChanges, now, "update", id, nil, nil)
	s.saveLocked()
	acs.MarkCommitted(r.Context())
	w.WriteHeader(http.StatusNoContent)
}

package hateoas

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
)

// The fault layer's hooks (acs.Target).

// FailAuth answers r 401, as for a revoked key.
func (s *Server) FailAuth(w http.ResponseWriter, r *http.Request) bool {
	s.fail(w, http.StatusUnauthorized, "the API key was revoked or its client certificate is no longer valid")
	return true
}

// ExpireAuth revokes the API key and issues a new one, which it returns.
func (s *Server) ExpireAuth() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.key = randomWord(s.rng, 8) + "-" + randomWord(s.rng, 8)
	return "API key revoked; the new key is " + s.key
}

// WriteThrottled answers a throttled request.
func (s *Server) WriteThrottled(w http.ResponseWriter, status int) {
	s.fail(w, status, "too many requests")
}

// OperatorEdit renames, unauthorises, strips a membership from or deletes
// a cardholder, as an operator at a workstation would, and records it in
// the change feed and the events like any other change.
func (s *Server) OperatorEdit(rng *rand.Rand) string {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	all := s.st.sortedCardholders()
	if len(all) == 0 {
		return ""
	}
	old := all[rng.IntN(len(all))]
	c := old.clone()
	var what string
	switch rng.IntN(4) {
	case 0:
		c.LastName += " (edited)"
		what = "renamed"
	case 1:
		c.Authorised = !c.Authorised
		what = fmt.Sprintf("set authorised=%v", c.Authorised)
	case 2:
		if len(c.Memberships) > 0 {
			c.Memberships = slices.Delete(c.Memberships, 0, 1)
			what = "removed an access group membership from"
			break
		}
		c.Description = "edited by operator"
		what = "changed the description of"
	case 3:
		delete(s.st.Cardholders, c.ID)
		s.st.appendChange(s.cfg.MaxChanges, now, "remove", c.ID, values(old), nil)
		s.appendEvent(event{Time: now, Type: "Cardholder deleted", Message: "operator deleted " + old.name(), Priority: 1, Source: "Operator workstation"})
		s.saveLocked()
		return fmt.Sprintf("operator deleted cardholder %s", c.ID)
	}
	s.remint(c)
	s.st.Cardholders[c.ID] = c
	o, n := diff(values(old), values(c))
	s.st.appendChange(s.cfg.MaxChanges, now, "update", c.ID, o, n)
	s.appendEvent(event{Time: now, Type: "Cardholder modified", Message: "operator " + what + " " + c.name(), Priority: 1, Cardholder: c.ID, Source: "Operator workstation"})
	s.saveLocked()
	return fmt.Sprintf("operator %s cardholder %s", what, c.ID)
}

// InjectEvents appends n access events at random doors by random
// cardholders. Occurrence times lag arrival by up to 5 s, so they arrive
// out of order, as the real ones do.
func (s *Server) InjectEvents(n int) {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	all := s.st.sortedCardholders()
	for i := 0; i < n; i++ {
		d := s.st.Doors[s.rng.IntN(len(s.st.Doors))]
		e := event{Time: now.Add(-time5s(s.rng)), Arrival: now, Door: d.ID, Source: d.ID, Priority: 3,
			Type: "Card event", Message: "Granted access at " + d.Name}
		if len(all) > 0 {
			c := all[s.rng.IntN(len(all))]
			e.Cardholder = c.ID
			if !c.Authorised || s.rng.IntN(5) == 0 {
				e.Type, e.Priority, e.Message = "Card event", 5, "Denied access at "+d.Name
			}
		}
		s.appendEvent(e)
	}
	s.saveLocked()
}

package hateoas

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/gatehouse/gatehouse/sim/acs"
)

// fixedItems returns the records of a fixed collection, rendered.
func (s *Server) fixedItems(r *http.Request, coll string, detail bool) []map[string]any {
	p := s.st.Prefix
	var out []map[string]any
	add := func(it *item, extra func(m map[string]any)) {
		m := map[string]any{"href": s.href(r, p, coll, it.ID), "id": it.ID, "name": it.Name}
		if detail {
			m["description"] = it.Description
			if extra != nil {
				extra(m)
			}
		}
		out = append(out, m)
	}
	switch coll {
	case "divisions":
		for _, it := range s.st.Divisions {
			add(it, nil)
		}
	case "access_zones":
		for _, it := range s.st.Zones {
			add(it, func(m map[string]any) { m["zoneCount"] = 0 })
		}
	case "access_groups":
		for _, it := range s.st.Groups {
			add(it, func(m map[string]any) {
				if g := find(s.st.Groups, it.Parent); g != nil {
					m["parent"] = ref{Href: s.href(r, p, coll, g.ID), Name: g.Name}
				}
				m["cardholders"] = ref{Href: s.href(r, p, coll, it.ID, "cardholders")}
			})
		}
	case "doors":
		for _, it := range s.st.Doors {
			add(it, func(m map[string]any) {
				if z := find(s.st.Zones, it.Parent); z != nil {
					m["entryAccessZone"] = ref{Href: s.href(r, p, "access_zones", z.ID), Name: z.Name}
				}
				m["statusFlags"] = []string{"closed", "locked"}
				m["commands"] = map[string]any{"open": ref{Href: s.href(r, p, coll, it.ID, "open")}}
			})
		}
	case "card_types":
		for _, ct := range s.st.CardTypes {
			add(&ct.item, func(m map[string]any) {
				m["facilityCode"] = ct.FacilityCode
				m["credentialClass"] = ct.CredentialClass
				m["minimumNumber"] = strconv.FormatInt(ct.Min, 10)
				m["maximumNumber"] = strconv.FormatInt(ct.Max, 10)
				m["availableCardStates"] = cardStatuses
			})
		}
	case "personal_data_fields":
		for _, pd := range s.st.PDFs {
			add(&pd.item, func(m map[string]any) { m["unique"] = pd.Unique; m["type"] = "string" })
		}
	}
	return out
}

// listFixed answers GET of a fixed collection, paged by pos.
func (s *Server) listFixed(w http.ResponseWriter, r *http.Request, coll string) {
	n, err := top(r)
	if err != nil {
		s.failErr(w, err)
		return
	}
	start := 0
	if p := r.URL.Query().Get("pos"); p != "" {
		if start, err = strconv.Atoi(p); err != nil || start < 0 {
			s.fail(w, http.StatusBadRequest, "invalid pos")
			return
		}
	}
	s.mu.Lock()
	all := s.fixedItems(r, coll, coll == "card_types" || coll == "personal_data_fields")
	s.mu.Unlock()
	start = min(start, len(all))
	end := min(start+n, len(all))
	body := map[string]any{"results": append([]map[string]any{}, all[start:end]...)}
	if end < len(all) {
		body["next"] = ref{Href: nextURL(r, map[string]string{"pos": strconv.Itoa(end), "top": strconv.Itoa(n)})}
	}
	s.writeJSON(w, http.StatusOK, body)
}

func (s *Server) getFixed(w http.ResponseWriter, r *http.Request, coll, id string) {
	s.mu.Lock()
	all := s.fixedItems(r, coll, true)
	s.mu.Unlock()
	for _, m := range all {
		if m["id"] == id {
			s.writeJSON(w, http.StatusOK, m)
			return
		}
	}
	s.fail(w, http.StatusNotFound, "%s %s not found", coll, id)
}

// groupMembers answers GET access_groups/{id}/cardholders: direct members.
func (s *Server) groupMembers(w http.ResponseWriter, r *http.Request, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if find(s.st.Groups, id) == nil {
		s.fail(w, http.StatusNotFound, "access group %s not found", id)
		return
	}
	p := s.st.Prefix
	out := []map[string]any{}
	for _, c := range s.st.sortedCardholders() {
		for _, m := range c.Memberships {
			if m.Group == id {
				out = append(out, map[string]any{
					"href":       s.href(r, p, "cardholders", c.ID, "access_groups", m.ID),
					"cardholder": ref{Href: s.href(r, p, "cardholders", c.ID), Name: c.name()},
					"from":       m.From, "until": m.Until,
				})
			}
		}
	}
	s.writeJSON(w, http.StatusOK, map[string]any{"cardholders": out})
}

// openDoor answers POST doors/{id}/open: 204 and an event.
func (s *Server) openDoor(w http.ResponseWriter, r *http.Request, id string) {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	d := find(s.st.Doors, id)
	if d == nil {
		s.fail(w, http.StatusNotFound, "door %s not found", id)
		return
	}
	s.appendEvent(event{Time: now, Type: "Door opened by command", Message: fmt.Sprintf("%s opened by the REST API", d.Name), Priority: 3, Door: d.ID, Source: d.ID})
	s.saveLocked()
	acs.MarkCommitted(r.Context())
	w.WriteHeader(http.StatusNoContent)
}

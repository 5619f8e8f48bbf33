package hateoas

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// appendEvent appends e (filling its sequence, ID and arrival time) and
// wakes the long polls. s.mu must be held.
func (s *Server) appendEvent(e event) {
	s.st.EventSeq++
	e.Seq = s.st.EventSeq
	e.ID = strconv.FormatInt(e.Seq+36*36*36*36*10, 36)
	if e.Arrival.IsZero() {
		e.Arrival = s.clock.Now()
	}
	s.st.Events = append(s.st.Events, e)
	if len(s.st.Events) > s.cfg.MaxEvents {
		s.st.Events = append([]event(nil), s.st.Events[len(s.st.Events)-s.cfg.MaxEvents:]...)
	}
	close(s.notify)
	s.notify = make(chan struct{})
}

func (s *Server) renderEvent(r *http.Request, e event) map[string]any {
	p := s.st.Prefix
	m := map[string]any{
		"href": s.href(r, p, "events", e.ID), "id": e.ID,
		"time": e.Time.UTC().Format(time.RFC3339Nano), "arrivalTime": e.Arrival.UTC().Format(time.RFC3339Nano),
		"message": e.Message, "occurrences": 1, "priority": e.Priority,
		"type": map[string]string{"name": e.Type},
	}
	if d := find(s.st.Doors, e.Door); d != nil {
		m["door"] = ref{Href: s.href(r, p, "doors", d.ID), Name: d.Name}
		m["source"] = ref{Href: s.href(r, p, "doors", d.ID), Name: d.Name}
	} else {
		m["source"] = map[string]string{"name": e.Source}
	}
	if c := s.st.Cardholders[e.Cardholder]; c != nil {
		m["cardholder"] = ref{Href: s.href(r, p, "cardholders", c.ID), Name: c.name()}
	} else if e.Cardholder != "" {
		m["cardholder"] = map[string]string{"name": "(deleted cardholder)"}
	}
	return m
}

// events answers GET events (a page from pos, oldest first) and GET
// events/updates (the long poll: it waits until an event after pos
// arrives or the long-poll time is up, then answers an empty page).
func (s *Server) events(w http.ResponseWriter, r *http.Request, wait bool) {
	n, err := top(r)
	if err != nil {
		s.failErr(w, err)
		return
	}
	var pos int64
	havePos := false
	if v := r.URL.Query().Get("pos"); v != "" {
		pos, err = strconv.ParseInt(v, 10, 64)
		if err != nil || pos < 0 {
			s.fail(w, http.StatusBadRequest, "invalid pos")
			return
		}
		havePos = true
	}
	var timeout <-chan time.Time
	for {
		s.mu.Lock()
		if !havePos && wait {
			// updates without a position: only what arrives from now on.
			pos, havePos = s.st.EventSeq, true
		}
		var page []map[string]any
		last := pos
		for _, e := range s.st.Events {
			if e.Seq > pos && len(page) < n {
				page = append(page, s.renderEvent(r, e))
				last = e.Seq
			}
		}
		notify := s.notify
		prefix := s.st.Prefix
		s.mu.Unlock()
		if len(page) > 0 || !wait {
			s.writeEvents(w, r, prefix, page, last)
			return
		}
		if timeout == nil {
			t := time.NewTimer(s.cfg.LongPoll)
			defer t.Stop()
			timeout = t.C
		}
		s.waiting.Add(1)
		if s.cfg.OnWait != nil {
			s.cfg.OnWait()
		}
		select {
		case <-notify:
			s.waiting.Add(-1)
		case <-timeout:
			s.waiting.Add(-1)
			s.writeEvents(w, r, prefix, nil, pos)
			return
		case <-r.Context().Done():
			s.waiting.Add(-1)
			s.fail(w, http.StatusServiceUnavailable, "shutting down")
			return
		}
	}
}

func (s *Server) writeEvents(w http.ResponseWriter, r *http.Request, prefix string, page []map[string]any, last int64) {
	if page == nil {
		page = []map[string]any{}
	}
	q := r.URL.Query()
	q.Set("pos", strconv.FormatInt(last, 10))
	q.Del("deadline")
	link := func(path string) ref { return ref{Href: s.href(r, prefix, path) + "?" + q.Encode()} }
	s.writeJSON(w, http.StatusOK, map[string]any{
		"events": page, "next": link("events"), "updates": link("events/updates"),
	})
}

// Waiting returns how many long polls are parked now.
func (s *Server) Waiting() int { return int(s.waiting.Load()) }

// changes answers GET cardholders/changes. Without pos it answers no
// results and a bookmark at the present; with one, the changes after it.
// The bookmark in next changes at every call, even with no changes.
func (s *Server) changes(w http.ResponseWriter, r *http.Request) {
	n, err := top(r)
	if err != nil {
		s.failErr(w, err)
		return
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.st.Prefix
	from := s.st.ChangeSeq
	results := []map[string]any{}
	if v := r.URL.Query().Get("pos"); v != "" {
		seq, _, ok := strings.Cut(v, "-")
		from, err = strconv.ParseInt(seq, 36, 64)
		if !ok || err != nil || from < 0 || from > s.st.ChangeSeq {
			s.fail(w, http.StatusBadRequest, "invalid changes bookmark %q", v)
			return
		}
		for _, c := range s.st.Changes {
			if c.Seq <= from || len(results) >= n {
				continue
			}
			m := map[string]any{
				"time": c.Time.UTC().Format(time.RFC3339Nano), "type": c.Type,
				"item": ref{Href: s.href(r, p, "cardholders", c.Item)},
			}
			if c.OldValues != nil {
				m["oldValues"] = c.OldValues
			}
			if c.NewValues != nil {
				m["newValues"] = c.NewValues
			}
			results = append(results, m)
			from = c.Seq
		}
	}
	s.nonce++
	bookmark := fmt.Sprintf("%s-%s", strconv.FormatInt(from, 36), strconv.FormatInt(s.nonce*7919+now.Unix()%7919, 36))
	q := r.URL.Query()
	q.Set("pos", bookmark)
	s.writeJSON(w, http.StatusOK, map[string]any{
		"results": results,
		"next":    ref{Href: s.href(r, p, "cardholders/changes") + "?" + q.Encode()},
	})
}

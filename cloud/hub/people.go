package hub

import (
	"fmt"
	"net/http"

	"github.com/gatehouse/gatehouse/cloud/auth"
	"github.com/gatehouse/gatehouse/cloud/people"
)

// openPeople starts the cardholder API (cloud/people) when the hub has a
// store.
func (h *Hub) openPeople() error {
	if h.state == nil {
		return nil
	}
	svc, err := people.New(people.Config{State: h.state, Entities: h.store, Logger: h.log, Occupiers: h.cfg.Occupiers})
	if err != nil {
		return fmt.Errorf("hub: people service: %w", err)
	}
	h.people = svc
	return nil
}

// mountPeople serves the cardholder API on mux, every call authenticated
// by keys. Its handlers bound request bodies themselves (an import may be
// up to people.MaxImportBytes), so mux must not be behind the hub's
// general body limit.
func (h *Hub) mountPeople(mux *http.ServeMux, keys *auth.Keyring) {
	if h.people == nil {
		return
	}
	for path, handler := range h.people.Handlers(keys) {
		mux.Handle(path, handler)
	}
}

package visits

import (
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/store"
	"github.com/gatehouse/gatehouse/replication"
)

// The endpoints sites call, authenticated as a site with the credentials
// of their sync uplink (Options.SiteAuth): what a site needs of the hub's
// hub-only records to check guests in while it may be offline. Both answer
// JSON with Cache-Control: no-store; docs/visitors.md §4 is the contract.

// Paths of the site endpoints.
const (
	SiteWatchlistPath    = "/visits/site-watchlist"
	SiteVisitorTypesPath = "/visits/site-visitor-types"
)

// SiteWatchlist is the answer of GET /visits/site-watchlist.
type SiteWatchlist struct {
	// Site is the authenticated site.
	Site string `json:"site"`
	// Version counts the changes ever made to the watchlist: it grows with
	// every change, and equal versions mean equal lists.
	Version uint64 `json:"version"`
	// Entries are the entries, by surname.
	Entries []SiteWatchEntry `json:"entries"`
}

// SiteWatchEntry is one watchlist entry as sites receive it.
type SiteWatchEntry struct {
	ID             string `json:"id"`
	GivenNames     string `json:"given_names"`
	Surname        string `json:"surname"`
	BirthDate      string `json:"birth_date"` // YYYY-MM-DD, or "" when unknown
	DocumentNumber string `json:"document_number"`
	Action         string `json:"action"` // "hold" or "deny"
	Reason         string `json:"reason"`
}

// SiteVisitorTypes is the answer of GET /visits/site-visitor-types.
type SiteVisitorTypes struct {
	// Site is the authenticated site.
	Site string `json:"site"`
	// Version counts the changes ever made to visitor types.
	Version uint64 `json:"version"`
	// VisitorTypes are the types not deleted, by name.
	VisitorTypes []SiteVisitorType `json:"visitor_types"`
}

// SiteVisitorType is a visitor type as sites receive it. AllowedGroups
// leaves out the groups the hub knows to be of another site.
type SiteVisitorType struct {
	ID                 string   `json:"id"`
	Name               string   `json:"name"`
	AllowedGroups      []string `json:"allowed_groups"`
	RequiredDocuments  []string `json:"required_documents"`
	MaxDurationSeconds int64    `json:"max_duration_seconds"` // 0: no limit
	EscortRequired     bool     `json:"escort_required"`
}

// SiteHandler returns the site endpoints: GET /visits/site-watchlist and
// GET /visits/site-visitor-types. A request no site made gets 401, a
// method other than GET or HEAD 405, a query or a body 400 or 413; every
// refusal is JSON {"error": "..."} and changes nothing.
func (s *Service) SiteHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(SiteWatchlistPath, s.siteEndpoint(func(ctx context.Context, site string) (any, error) {
		return s.siteWatchlist(ctx, site)
	}))
	mux.Handle(SiteVisitorTypesPath, s.siteEndpoint(func(ctx context.Context, site string) (any, error) {
		return s.siteVisitorTypes(ctx, site)
	}))
	return mux
}

// siteEndpoint checks a site's request and answers with what fn returns.
func (s *Service) siteEndpoint(fn func(ctx context.Context, site string) (any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Type", "application/json")
		h.Set("X-Content-Type-Options", "nosniff")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			jsonError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed: use GET")
			return
		}
		site := ""
		err := access.Errorf(access.Denied, "no site authenticator configured")
		if s.siteAuth != nil {
			site, err = s.siteAuth(r.Context(), r.Header, r.TLS)
		}
		if err == nil {
			if verr := replication.ValidateOrigin(site); verr != nil || site == "hub" {
				err = access.Errorf(access.Denied, "site %q is not a valid origin", site)
			}
		}
		if err != nil {
			s.log.Warn("visits: site request refused", "path", r.URL.Path, "err", err)
			h.Set("WWW-Authenticate", `Bearer realm="gatehouse-sites"`)
			jsonError(w, http.StatusUnauthorized, "not an authenticated site: present the site's sync token or client certificate")
			return
		}
		switch {
		case r.ContentLength != 0:
			jsonError(w, http.StatusRequestEntityTooLarge, "this endpoint takes no request body")
			return
		case r.URL.RawQuery != "":
			jsonError(w, http.StatusBadRequest, "this endpoint takes no query parameters")
			return
		}
		out, err := fn(r.Context(), site)
		if err != nil {
			s.log.Error("visits: site request failed", "site", site, "path", r.URL.Path, "err", err)
			status := http.StatusInternalServerError
			if access.ErrorCode(err) == access.Unavailable {
				status = http.StatusServiceUnavailable
			}
			jsonError(w, status, "the hub could not read its records; retry later")
			return
		}
		b, err := json.Marshal(out)
		if err != nil {
			jsonError(w, http.StatusInternalServerError, "encoding the answer failed")
			return
		}
		s.log.Debug("visits: site request served", "site", site, "path", r.URL.Path)
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(append(b, '\n'))
		}
	})
}

// jsonError writes {"error": msg} with status.
func jsonError(w http.ResponseWriter, status int, msg string) {
	b, _ := json.Marshal(map[string]string{"error": msg})
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// siteWatchlist returns the watchlist for site.
func (s *Service) siteWatchlist(ctx context.Context, site string) (SiteWatchlist, error) {
	out := SiteWatchlist{Site: site, Entries: []SiteWatchEntry{}}
	var entries []access.WatchEntry
	err := scanAll(ctx, s.st, KindWatch, func(e store.Entity) error {
		out.Version += e.Version
		var w watchEntry
		if err := json.Unmarshal(e.Data, &w); err != nil {
			return err
		}
		if !w.Deleted {
			entries = append(entries, w.WatchEntry)
		}
		return nil
	})
	if err != nil {
		return out, err
	}
	slices.SortFunc(entries, func(a, b access.WatchEntry) int {
		return cmp.Or(cmp.Compare(a.Surname, b.Surname), cmp.Compare(a.ID, b.ID))
	})
	for _, e := range entries {
		se := SiteWatchEntry{ID: string(e.ID), GivenNames: e.GivenNames, Surname: e.Surname, DocumentNumber: e.DocumentNumber,
			Action: e.Action.String(), Reason: e.Reason}
		if !e.BirthDate.IsZero() {
			se.BirthDate = e.BirthDate.Format(time.DateOnly)
		}
		out.Entries = append(out.Entries, se)
	}
	return out, nil
}

// siteVisitorTypes returns the visitor types for site.
func (s *Service) siteVisitorTypes(ctx context.Context, site string) (SiteVisitorTypes, error) {
	out := SiteVisitorTypes{Site: site, VisitorTypes: []SiteVisitorType{}}
	var types []visitorType
	err := scanAll(ctx, s.st, KindVisitorType, func(e store.Entity) error {
		out.Version += e.Version
		var vt visitorType
		if err := json.Unmarshal(e.Data, &vt); err != nil {
			return err
		}
		if !vt.Deleted {
			types = append(types, vt)
		}
		return nil
	})
	if err != nil {
		return out, err
	}
	slices.SortFunc(types, func(a, b visitorType) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID)) })
	var groupSite func(access.ID) (access.ID, bool)
	s.state.View(func(r *replication.Replica) {
		known := map[access.ID]access.ID{}
		for _, vt := range types {
			for _, g := range vt.AllowedGroups {
				if grp, ok := r.Group(g); ok {
					known[g] = grp.SiteID
				}
			}
		}
		groupSite = func(g access.ID) (access.ID, bool) { s, ok := known[g]; return s, ok }
	})
	for _, vt := range types {
		st := SiteVisitorType{ID: string(vt.ID), Name: vt.Name, AllowedGroups: []string{}, RequiredDocuments: []string{},
			MaxDurationSeconds: int64(vt.MaxDuration / time.Second), EscortRequired: vt.EscortRequired}
		for _, g := range vt.AllowedGroups {
			if gs, ok := groupSite(g); ok && string(gs) != site {
				continue
			}
			st.AllowedGroups = append(st.AllowedGroups, string(g))
		}
		st.RequiredDocuments = append(st.RequiredDocuments, vt.RequiredDocuments...)
		out.VisitorTypes = append(out.VisitorTypes, st)
	}
	return out, nil
}

package visits

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"
	"strings"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/store"
)

// Visitor types and the watchlist: hub-only store entities, replaced
// whole and deleted by a mark (the store keeps no deletions).

// visitorType returns the visitor type id, or ErrNotFound.
func (s *Service) visitorType(ctx context.Context, id access.ID) (visitorType, error) {
	var vt visitorType
	ver, err := getJSON(ctx, s.st, KindVisitorType, string(id), &vt)
	if err != nil {
		return vt, err
	}
	if ver == 0 || vt.Deleted {
		return vt, access.Errorf(access.NotFound, "visitor type %s: %w", id, ErrNotFound)
	}
	return vt, nil
}

// PutVisitorType creates (empty ID) or replaces a visitor type and
// returns it as stored. It returns an Invalid error for a type that does
// not validate.
func (s *Service) PutVisitorType(ctx context.Context, vt access.VisitorType) (access.VisitorType, error) {
	if vt.ID == "" {
		id, err := s.newID()
		if err != nil {
			return vt, err
		}
		vt.ID = id
	}
	vt.Name = strings.TrimSpace(vt.Name)
	if err := vt.Validate(); err != nil {
		return vt, err
	}
	var old visitorType
	ver, err := getJSON(ctx, s.st, KindVisitorType, string(vt.ID), &old)
	if err != nil {
		return vt, err
	}
	rec := visitorType{ID: vt.ID, Name: vt.Name, AllowedGroups: vt.AllowedGroups, RequiredDocuments: vt.RequiredDocuments,
		MaxDuration: vt.MaxDuration, EscortRequired: vt.EscortRequired}
	put, err := putJSON(KindVisitorType, string(vt.ID), ver, rec)
	if err != nil {
		return vt, err
	}
	return vt, s.st.Commit(ctx, store.Batch{Puts: []store.Put{put}})
}

// VisitorTypes returns the visitor types not deleted, by name.
func (s *Service) VisitorTypes(ctx context.Context) ([]access.VisitorType, error) {
	var out []access.VisitorType
	err := scanAll(ctx, s.st, KindVisitorType, func(e store.Entity) error {
		var vt visitorType
		if err := json.Unmarshal(e.Data, &vt); err != nil {
			return err
		}
		if !vt.Deleted {
			out = append(out, vt.domain())
		}
		return nil
	})
	slices.SortFunc(out, func(a, b access.VisitorType) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID)) })
	return out, err
}

// DeleteVisitorType deletes a visitor type, or returns ErrNotFound.
func (s *Service) DeleteVisitorType(ctx context.Context, id access.ID) error {
	var vt visitorType
	ver, err := getJSON(ctx, s.st, KindVisitorType, string(id), &vt)
	if err != nil {
		return err
	}
	if ver == 0 || vt.Deleted {
		return access.Errorf(access.NotFound, "visitor type %s: %w", id, ErrNotFound)
	}
	vt.Deleted = true
	put, err := putJSON(KindVisitorType, string(id), ver, vt)
	if err != nil {
		return err
	}
	return s.st.Commit(ctx, store.Batch{Puts: []store.Put{put}})
}

// PutWatchEntry creates (empty ID) or replaces a watchlist entry.
func (s *Service) PutWatchEntry(ctx context.Context, e access.WatchEntry) (access.WatchEntry, error) {
	if e.ID == "" {
		id, err := s.newID()
		if err != nil {
			return e, err
		}
		e.ID = id
	}
	if err := e.Validate(); err != nil {
		return e, err
	}
	var old watchEntry
	ver, err := getJSON(ctx, s.st, KindWatch, string(e.ID), &old)
	if err != nil {
		return e, err
	}
	put, err := putJSON(KindWatch, string(e.ID), ver, watchEntry{WatchEntry: e})
	if err != nil {
		return e, err
	}
	return e, s.st.Commit(ctx, store.Batch{Puts: []store.Put{put}})
}

// watchlist returns the entries not deleted, by surname.
func (s *Service) watchlist(ctx context.Context) ([]access.WatchEntry, error) {
	var out []access.WatchEntry
	err := scanAll(ctx, s.st, KindWatch, func(e store.Entity) error {
		var w watchEntry
		if err := json.Unmarshal(e.Data, &w); err != nil {
			return err
		}
		if !w.Deleted {
			out = append(out, w.WatchEntry)
		}
		return nil
	})
	slices.SortFunc(out, func(a, b access.WatchEntry) int {
		return cmp.Or(cmp.Compare(a.Surname, b.Surname), cmp.Compare(a.ID, b.ID))
	})
	return out, err
}

// Watchlist returns the watchlist, by surname.
func (s *Service) Watchlist(ctx context.Context) ([]access.WatchEntry, error) {
	return s.watchlist(ctx)
}

// DeleteWatchEntry deletes a watchlist entry, or returns ErrNotFound.
func (s *Service) DeleteWatchEntry(ctx context.Context, id access.ID) error {
	var w watchEntry
	ver, err := getJSON(ctx, s.st, KindWatch, string(id), &w)
	if err != nil {
		return err
	}
	if ver == 0 || w.Deleted {
		return access.Errorf(access.NotFound, "watchlist entry %s: %w", id, ErrNotFound)
	}
	w.Deleted = true
	put, err := putJSON(KindWatch, string(id), ver, w)
	if err != nil {
		return err
	}
	return s.st.Commit(ctx, store.Batch{Puts: []store.Put{put}})
}

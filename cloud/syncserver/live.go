package syncserver

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/gatehouse/gatehouse/cloud/store"
)

// Connected reports whether this hub process serves an open Sync stream of
// site now. A site streaming to another hub process over a shared store
// is not seen here (see Live). It is safe for concurrent use.
func (s *Server) Connected(site string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.streams[site]
	return ok
}

// ConnectedSites returns the sites whose Sync stream this hub process
// serves now, sorted. It is safe for concurrent use.
func (s *Server) ConnectedSites() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.streams))
	for site := range s.streams {
		out = append(out, site)
	}
	slices.Sort(out)
	return out
}

// Live reports whether site is in contact with the hub: a Sync stream
// open in this process (Connected), or the site's stream lease held,
// unexpired, by another hub process sharing the store (a stream or a
// unary call served there; a lease outlives a vanished process by up to
// its TTL). It returns the store's error when reading the lease fails.
// It is safe for concurrent use.
func (s *Server) Live(ctx context.Context, site string) (bool, error) {
	if s.Connected(site) {
		return true, nil
	}
	l, err := s.cfg.Leases.Lease(ctx, site)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("sync: lease of site %s: %w", site, err)
	}
	return l.Owner != s.cfg.Owner, nil
}

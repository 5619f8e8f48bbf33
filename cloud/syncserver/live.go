package syncserver

import "slices"

// Connected reports whether this hub process serves an open Sync stream of
// site now. A site streaming to another hub process over a shared store
// is not seen here. It is safe for concurrent use.
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

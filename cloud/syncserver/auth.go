package syncserver

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/replication"
)

// Authenticate names the site making a request from its headers and, over
// TLS, its connection state (for client certificates), or returns an error
// when the caller is not a site. It is the seam where mTLS with per-site
// certificates (cloud/pki) plugs in; TokenAuth is the per-site token form.
// The sync server calls it when a call opens and again before each batch
// a stream carries, so a credential revoked meanwhile cuts the stream. It
// must be safe for concurrent use.
type Authenticate func(ctx context.Context, header http.Header, conn *tls.ConnectionState) (site string, err error)

// ErrUnauthenticated reports a request that no configured site made.
var ErrUnauthenticated = errors.New("sync: not an authenticated site")

// SiteToken is one site's sync credential.
type SiteToken struct {
	// Site is the site's ID, which is also its replication origin.
	Site string
	// Token is the bearer token the site presents.
	Token string
}

// TokenAuth returns an Authenticate that accepts "Authorization: Bearer
// <token>" when token is one of the sites' tokens, and names that site. The
// presented token is compared with every configured token in constant
// time. It returns an error for a site ID that is not a valid origin, an
// empty or short token (fewer than 16 bytes), or a site or token listed
// twice.
func TokenAuth(sites []SiteToken) (Authenticate, error) {
	seenSite := map[string]bool{}
	seenToken := map[string]bool{}
	for _, s := range sites {
		if err := replication.ValidateOrigin(s.Site); err != nil {
			return nil, fmt.Errorf("sync token of site %q: %w", s.Site, err)
		}
		if s.Site == "hub" {
			return nil, errors.New(`sync token: "hub" is not a site`)
		}
		if len(s.Token) < 16 {
			return nil, fmt.Errorf("sync token of site %s: shorter than 16 bytes", s.Site)
		}
		if seenSite[s.Site] || seenToken[s.Token] {
			return nil, fmt.Errorf("sync token of site %s: site or token listed twice", s.Site)
		}
		seenSite[s.Site], seenToken[s.Token] = true, true
	}
	sites = append([]SiteToken(nil), sites...)
	return func(_ context.Context, h http.Header, _ *tls.ConnectionState) (string, error) {
		got, ok := strings.CutPrefix(h.Get("Authorization"), "Bearer ")
		if !ok || got == "" {
			return "", fmt.Errorf("%w: no bearer token", ErrUnauthenticated)
		}
		site := ""
		for _, s := range sites { // every one, whatever matches
			if subtle.ConstantTimeCompare([]byte(got), []byte(s.Token)) == 1 {
				site = s.Site
			}
		}
		if site == "" {
			return "", fmt.Errorf("%w: unknown token", ErrUnauthenticated)
		}
		return site, nil
	}, nil
}

// tlsKey is the context key under which the handler keeps the request's
// TLS connection state for Authenticate.
type tlsKey struct{}

// withTLS makes the request's TLS state reachable from Connect handlers.
func withTLS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			r = r.WithContext(context.WithValue(r.Context(), tlsKey{}, r.TLS))
		}
		next.ServeHTTP(w, r)
	})
}

// authenticate runs the configured Authenticate and maps a refusal to
// Unauthenticated.
func (s *Server) authenticate(ctx context.Context, h http.Header) (string, error) {
	conn, _ := ctx.Value(tlsKey{}).(*tls.ConnectionState)
	site, err := s.cfg.Authenticate(ctx, h, conn)
	if err != nil {
		return "", connect.NewError(connect.CodeUnauthenticated, err)
	}
	if err := replication.ValidateOrigin(site); err != nil || site == "hub" {
		return "", connect.NewError(connect.CodeUnauthenticated, fmt.Errorf("%w: site %q is not a valid origin", ErrUnauthenticated, site))
	}
	return site, nil
}

package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// Hub is the hub process's view of a PKI directory: its server key pair,
// the CA it trusts for site certificates, the revocation list and the site
// token hashes. The lists are re-read when their files change, so `gatehouse
// cloud site revoke` takes effect without a restart; the server key pair
// is read once (restart the hub after renewing it). A Hub is safe for
// concurrent use. It never needs the CA key.
type Hub struct {
	now     func() time.Time
	ca      *x509.Certificate
	pool    *x509.CertPool
	cert    tls.Certificate
	revoked *watched[map[string]Revocation]
	tokens  *watched[map[string]tokenHash]
}

// LoadHub loads the hub's side of the PKI in dir. now is the clock for
// certificate validity (time.Now when nil). It fails if a file is missing
// or malformed, or if hub.key may be read by group or others.
func LoadHub(dir string, now func() time.Time) (*Hub, error) {
	if now == nil {
		now = time.Now
	}
	ca, err := readCert(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("load hub PKI: %w", err)
	}
	if err := checkPrivate(filepath.Join(dir, HubKeyFile)); err != nil {
		return nil, fmt.Errorf("load hub PKI: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, HubCertFile), filepath.Join(dir, HubKeyFile))
	if err != nil {
		return nil, fmt.Errorf("load hub PKI: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	h := &Hub{
		now: now, ca: ca, pool: pool, cert: cert,
		revoked: &watched[map[string]Revocation]{path: filepath.Join(dir, RevokedFile), parse: parseRevocations},
		tokens:  &watched[map[string]tokenHash]{path: filepath.Join(dir, TokensFile), parse: parseTokens},
	}
	if _, err := h.revoked.get(); err != nil {
		return nil, fmt.Errorf("load hub PKI: %w", err)
	}
	if _, err := h.tokens.get(); err != nil {
		return nil, fmt.Errorf("load hub PKI: %w", err)
	}
	return h, nil
}

// ServerCertificate returns the hub's TLS server certificate, e.g. to check
// with VerifyHostname that it names the host sites dial, or to show its
// expiry. The caller must not modify it.
func (h *Hub) ServerCertificate() *x509.Certificate { return h.cert.Leaf }

// ClientAuth says what a hub listener asks of sites.
type ClientAuth int

const (
	// RequireSiteCert refuses, during the handshake, a client without a
	// valid, unrevoked site certificate (mTLS).
	RequireSiteCert ClientAuth = iota
	// SiteCertOrToken verifies a client certificate if one is sent and
	// otherwise lets the handshake through; the handler must then call
	// Authenticate, which accepts a bearer token instead. Use it on a
	// listener that also serves sites with tokens, or other clients.
	SiteCertOrToken
)

// ServerTLSConfig returns a new TLS configuration for a hub listener: TLS
// 1.3 only, the hub's certificate, HTTP/2 and HTTP/1.1, and site
// certificates verified against the hub CA, with revoked and malformed
// ones refused during the handshake. Serve it with
// http.Server{TLSConfig: cfg}.ServeTLS(ln, "", ""). Handlers must still
// call SiteIDFromTLS or Authenticate on each request to learn the site
// (and to refuse one revoked since its connection was made).
func (h *Hub) ServerTLSConfig(auth ClientAuth) *tls.Config {
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{h.cert},
		ClientCAs:    h.pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		NextProtos:   []string{"h2", "http/1.1"},
		Time:         h.now,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return nil // SiteCertOrToken without a certificate
			}
			_, err := h.SiteIDFromTLS(cs)
			return err
		},
	}
	if auth == SiteCertOrToken {
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return cfg
}

// SiteIDFromTLS returns the site that a connection's client certificate
// identifies. It refuses, with an error wrapping the sentinel named:
// no certificate (ErrNoClientCert); a certificate not verified up to this
// hub's CA, e.g. from a configuration that does not verify (ErrUntrusted);
// one that is not a site certificate — wrong extended key usage such as a
// server certificate, missing, several or malformed URI SANs, a common name
// that differs (ErrNotSiteCert); one on the revocation list, or any
// certificate when the list cannot be read (ErrRevoked); one outside its
// validity now (ErrExpired).
func (h *Hub) SiteIDFromTLS(cs tls.ConnectionState) (string, error) {
	if len(cs.PeerCertificates) == 0 {
		return "", ErrNoClientCert
	}
	leaf := cs.PeerCertificates[0]
	fromCA := false
	for _, chain := range cs.VerifiedChains {
		if len(chain) > 0 && chain[0].Equal(leaf) && bytes.Equal(chain[len(chain)-1].Raw, h.ca.Raw) {
			fromCA = true
			break
		}
	}
	if !fromCA {
		return "", fmt.Errorf("%w: serial %s, subject %q", ErrUntrusted, serialText(leaf.SerialNumber), leaf.Subject.String())
	}
	id, err := SiteIDFromCert(leaf)
	if err != nil {
		return "", err
	}
	serial := serialText(leaf.SerialNumber)
	revoked, err := h.revoked.get()
	if err != nil {
		return "", fmt.Errorf("%w: site %s refused, the revocation list is unreadable: %v", ErrRevoked, id, err)
	}
	if r, ok := revoked[serial]; ok {
		return "", fmt.Errorf("%w: serial %s of site %s, revoked at %s", ErrRevoked, serial, id, r.RevokedAt.Format(time.RFC3339))
	}
	if now := h.now(); now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return "", fmt.Errorf("%w: serial %s of site %s is valid from %s to %s", ErrExpired, serial, id, leaf.NotBefore.Format(time.RFC3339), leaf.NotAfter.Format(time.RFC3339))
	}
	return id, nil
}

// VerifyToken returns the site whose current token is token, comparing in
// constant time. Errors wrap ErrBadToken (malformed, unknown site, wrong or
// revoked token) or say that the token list is unreadable.
func (h *Hub) VerifyToken(token string) (string, error) {
	hashes, err := h.tokens.get()
	if err != nil {
		return "", fmt.Errorf("%w: the token list is unreadable: %v", ErrBadToken, err)
	}
	return verifyToken(token, hashes)
}

// Authenticate returns the site that made r: by its client certificate if
// the connection has one (SiteIDFromTLS), else by its
// "Authorization: Bearer" token (VerifyToken). A request not over TLS, or
// with neither credential, gets ErrUnauthenticated.
func (h *Hub) Authenticate(r *http.Request) (string, error) {
	if r.TLS == nil {
		return "", fmt.Errorf("%w: not over TLS", ErrUnauthenticated)
	}
	if len(r.TLS.PeerCertificates) > 0 {
		return h.SiteIDFromTLS(*r.TLS)
	}
	if tok := BearerToken(r.Header); tok != "" {
		return h.VerifyToken(tok)
	}
	return "", fmt.Errorf("%w: no client certificate and no bearer token", ErrUnauthenticated)
}

// Site is an edge site's view of the files `gatehouse cloud site add` wrote
// for it. Its client certificate is re-read when site.crt changes, so a
// renewed certificate copied into place is used from the next handshake. A
// Site is safe for concurrent use.
type Site struct {
	id    string
	pool  *x509.CertPool
	token string
	cert  *watched[*tls.Certificate]
}

// LoadSite loads the site files in dir (ca.crt, site.crt, site.key and,
// if present, site.token). It fails if the certificate is not a site
// certificate or site.key may be read by group or others.
func LoadSite(dir string) (*Site, error) {
	ca, err := readCert(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("load site PKI: %w", err)
	}
	s := &Site{pool: x509.NewCertPool()}
	s.pool.AddCert(ca)
	certPath, keyPath := filepath.Join(dir, SiteCertFile), filepath.Join(dir, SiteKeyFile)
	s.cert = &watched[*tls.Certificate]{path: certPath, parse: func(b []byte) (*tls.Certificate, error) {
		if b == nil {
			return nil, fmt.Errorf("%s: missing", certPath)
		}
		if err := checkPrivate(keyPath); err != nil {
			return nil, err
		}
		key, err := os.ReadFile(keyPath)
		if err != nil {
			return nil, err
		}
		c, err := tls.X509KeyPair(b, key)
		if err != nil {
			return nil, err
		}
		id, err := SiteIDFromCert(c.Leaf)
		if err != nil {
			return nil, err
		}
		if s.id != "" && id != s.id {
			return nil, fmt.Errorf("%s: for site %s, not %s", certPath, id, s.id)
		}
		return &c, nil
	}}
	c, err := s.cert.get()
	if err != nil {
		return nil, fmt.Errorf("load site PKI: %w", err)
	}
	s.id, _ = SiteIDFromCert(c.Leaf)
	if tok, err := os.ReadFile(filepath.Join(dir, SiteTokenFile)); err == nil {
		s.token = string(bytes.TrimSpace(tok))
		if site, err := tokenSite(s.token); err != nil || site != s.id {
			return nil, fmt.Errorf("load site PKI: %s is not a token of site %s", SiteTokenFile, s.id)
		}
	}
	return s, nil
}

// ID returns the site's ID.
func (s *Site) ID() string { return s.id }

// Token returns the site's bearer token, or "" if it has none.
func (s *Site) Token() string { return s.token }

// NotAfter returns when the site's current certificate expires; renew
// it well before.
func (s *Site) NotAfter() (time.Time, error) {
	c, err := s.cert.get()
	if err != nil {
		return time.Time{}, err
	}
	return c.Leaf.NotAfter, nil
}

// ClientTLSConfig returns a new TLS configuration for the site's uplink:
// TLS 1.3 only, the hub verified against the hub CA (and not the system
// roots), and the site's client certificate. Use it as an
// http.Transport's TLSClientConfig with ForceAttemptHTTP2, or for a
// token-only uplink (the certificate is offered but a SiteCertOrToken
// listener does not require it).
func (s *Site) ClientTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    s.pool,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return s.cert.get()
		},
	}
}

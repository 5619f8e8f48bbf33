package pki

import "errors"

// Sentinel errors. Errors returned by this package wrap one of them (or an
// error of the os, x509 or tls packages) with context.
var (
	// ErrExists is returned when a file or entry to be created already
	// exists: this package never overwrites a key, certificate or token.
	ErrExists = errors.New("already exists")
	// ErrNoCAKey is returned when issuing with an Authority whose ca.key
	// is not in its directory.
	ErrNoCAKey = errors.New("the CA private key is not in the PKI directory")
	// ErrBadSiteID is returned for a site ID that is not a canonical ULID.
	ErrBadSiteID = errors.New("bad site ID")
	// ErrUnknownSite is returned when renewing a site that was never added
	// or has been revoked.
	ErrUnknownSite = errors.New("unknown site")
	// ErrNoClientCert is returned when a connection carries no client
	// certificate.
	ErrNoClientCert = errors.New("no client certificate")
	// ErrUntrusted is returned when a client certificate was not verified
	// up to this hub's CA.
	ErrUntrusted = errors.New("client certificate not verified by the hub CA")
	// ErrNotSiteCert is returned when a certificate is not a well-formed
	// site certificate (extended key usage, URI SAN, common name).
	ErrNotSiteCert = errors.New("not a site certificate")
	// ErrRevoked is returned for a certificate whose serial is on the
	// revocation list.
	ErrRevoked = errors.New("certificate revoked")
	// ErrExpired is returned when a client certificate is outside its
	// validity period at the time of the check.
	ErrExpired = errors.New("certificate expired or not yet valid")
	// ErrBadToken is returned when a token is malformed, unknown or wrong.
	ErrBadToken = errors.New("bad site token")
	// ErrUnauthenticated is returned by Hub.Authenticate when a request
	// carries neither a client certificate nor a token over TLS.
	ErrUnauthenticated = errors.New("no site credentials")
)

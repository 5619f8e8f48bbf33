// Package pki is the public-key infrastructure of the site ↔ hub link
// (DESIGN.md §6, docs/security.md): a private certificate authority owned by
// the hub, the hub's TLS server certificate, one client certificate per
// site, a revocation list the hub checks, and per-site bearer tokens as the
// alternative to client certificates.
//
// It uses the standard library only. Keys are ECDSA P-256: TLS 1.3 in Go
// supports it as well as Ed25519, and P-256 is also what TPMs, HSMs, cloud
// KMSes and the TLS stacks of embedded edge hardware support, so a site key
// can later move into a TPM without changing the CA.
//
// There are three roles, one type each:
//
//   - [Authority] (the operator, `gatehouse cloud pki` and `gatehouse cloud
//     site`): creates the CA in a directory, issues, renews and revokes site
//     certificates and tokens. Only issuing needs the CA's private key.
//   - [Hub] (the hub process): loads the CA certificate, its server key pair,
//     the revocation list and the token hashes; gives the server
//     [*tls.Config] and tells which site a connection or request is
//     ([Hub.SiteIDFromTLS], [Hub.Authenticate]).
//   - [Site] (the edge uplink): loads what `cloud site add` wrote and gives
//     the client [*tls.Config] and the site's token.
//
// The files of a PKI directory (all keys 0600, the directory 0700):
//
//	ca.crt            the CA certificate (copied to every site)
//	ca.key            the CA private key (needed only to issue; may be kept offline)
//	hub.crt, hub.key  the hub's TLS server certificate and key
//	issued/SERIAL.crt every certificate issued to a site, by serial
//	revoked.json      the revocation list: serials the hub refuses
//	site-tokens.json  SHA-256 hashes of the per-site tokens
//
// The files of a site directory ([SiteBundle.WriteDir], all 0600):
//
//	ca.crt, site.crt, site.key, site.token
//
// A site's identity is carried by its certificate as exactly one URI SAN
// gatehouse://site/{siteID} (the site ID a canonical ULID), the same ID as
// the subject common name, and the extended key usage client
// authentication only.
package pki

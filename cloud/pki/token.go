package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
)

// A site token is "gh1.{siteID}.{secret}", the secret 32 random bytes in
// unpadded base64url. The site ID in clear lets the hub find the site's
// hash; the hash covers the whole string, so a token is bound to its site.
// The hub keeps only the SHA-256 of the token: the secret is random, so a
// slow password hash would add nothing. A token is sent as
// "Authorization: Bearer TOKEN", and only over TLS.
const tokenPrefix = "gh1"

// newToken returns a fresh token for siteID and its hex SHA-256.
func newToken(siteID string) (token, hash string, err error) {
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", "", err
	}
	token = tokenPrefix + "." + siteID + "." + base64.RawURLEncoding.EncodeToString(secret[:])
	sum := sha256.Sum256([]byte(token))
	return token, hex.EncodeToString(sum[:]), nil
}

// tokenSite returns the site ID a token names, checking its form.
func tokenSite(token string) (string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] != tokenPrefix {
		return "", fmt.Errorf("%w: not of the form %s.SITE.SECRET", ErrBadToken, tokenPrefix)
	}
	if err := checkSiteID(parts[1]); err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	if b, err := base64.RawURLEncoding.DecodeString(parts[2]); err != nil || len(b) != 32 {
		return "", fmt.Errorf("%w: the secret is not 32 bytes of base64url", ErrBadToken)
	}
	return parts[1], nil
}

// verifyToken checks token against the hashes, in constant time in the
// token's content, and returns its site.
func verifyToken(token string, hashes map[string]tokenHash) (string, error) {
	site, err := tokenSite(token)
	if err != nil {
		return "", err
	}
	got := sha256.Sum256([]byte(token))
	h, known := hashes[site]
	want, err := hex.DecodeString(h.SHA256)
	if !known || err != nil || len(want) != sha256.Size {
		want = make([]byte, sha256.Size) // compare anyway: same work for unknown sites
		known = false
	}
	if subtle.ConstantTimeCompare(got[:], want) != 1 || !known {
		return "", fmt.Errorf("%w: not the current token of site %s", ErrBadToken, site)
	}
	return site, nil
}

// BearerToken returns the token of an "Authorization: Bearer TOKEN" header,
// or "" when there is none.
func BearerToken(h http.Header) string {
	scheme, tok, ok := strings.Cut(h.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

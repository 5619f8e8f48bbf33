package pki

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// The revocation list is a local deny list, not a signed CRL: the hub is the
// only party that checks site certificates, and it trusts revoked.json on its
// own disk exactly as much as its own key next to it, so a signature would
// add nothing. The hub re-reads the file when it changes, so a revocation
// takes effect at the next handshake and the next request without a
// restart. An unreadable or malformed list refuses every site (fail closed).

// Revocation is one entry of the revocation list.
type Revocation struct {
	// Serial is the revoked certificate's serial number in lower-case hex.
	Serial string `json:"serial"`
	// SiteID is the site the certificate was issued to.
	SiteID string `json:"site_id"`
	// NotAfter is when the certificate expires anyway; the entry may be
	// dropped after it.
	NotAfter time.Time `json:"not_after"`
	// RevokedAt is when it was revoked.
	RevokedAt time.Time `json:"revoked_at"`
	// Reason is the operator's note.
	Reason string `json:"reason,omitempty"`
}

// revocationFile is the JSON form of revoked.json.
type revocationFile struct {
	Version int          `json:"version"`
	Revoked []Revocation `json:"revoked"`
}

// parseRevocations parses revoked.json (nil: no file, nothing revoked)
// into a map by serial.
func parseRevocations(b []byte) (map[string]Revocation, error) {
	m := map[string]Revocation{}
	if b == nil {
		return m, nil
	}
	var f revocationFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("revocation list: %w", err)
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("revocation list: version %d, want 1", f.Version)
	}
	for i, r := range f.Revoked {
		s, err := normalizeSerial(r.Serial)
		if err != nil {
			return nil, fmt.Errorf("revocation list: entry %d: %w", i, err)
		}
		r.Serial = s
		m[s] = r
	}
	return m, nil
}

// tokenFile is the JSON form of site-tokens.json: only hashes.
type tokenFile struct {
	Version int                  `json:"version"`
	Sites   map[string]tokenHash `json:"sites"`
}

// tokenHash is what the hub keeps of one site's token.
type tokenHash struct {
	// SHA256 is the hex SHA-256 of the whole token string.
	SHA256    string    `json:"sha256"`
	CreatedAt time.Time `json:"created_at"`
}

// parseTokens parses site-tokens.json (nil: no file, no tokens).
func parseTokens(b []byte) (map[string]tokenHash, error) {
	f := tokenFile{Version: 1, Sites: map[string]tokenHash{}}
	if b == nil {
		return f.Sites, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("site tokens: %w", err)
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("site tokens: version %d, want 1", f.Version)
	}
	if f.Sites == nil {
		f.Sites = map[string]tokenHash{}
	}
	for id, h := range f.Sites {
		if err := checkSiteID(id); err != nil {
			return nil, fmt.Errorf("site tokens: %w", err)
		}
		if len(h.SHA256) != 64 {
			return nil, fmt.Errorf("site tokens: site %s: sha256 must be 64 hex digits", id)
		}
	}
	return f.Sites, nil
}

package access

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"time"
)

// Invitation tokens are what a guest's QR code carries: a visit, signed by
// the hub with Ed25519, valid for a time window. Sites hold only the public
// keys, so a site (or a kiosk) can verify a token with the WAN down but
// cannot make one. Keys rotate: the hub signs with its newest key, and
// verifiers keep older public keys until every token they signed has
// expired, or retire one at once when it may have leaked.
//
// Text form: "GH1." then the unpadded base64url of
//
//	version (1) | key ID (8) | visit, site, guest (each 1-byte length + ULID)
//	| not before, expires (each 8-byte big-endian Unix seconds) | nonce (8)
//	| Ed25519 signature of everything before it (64)
//
// Replay: a token stays valid until it expires, so what stops a second use
// is the visit itself (a visit checks in once; its lifecycle never goes
// back). Verifiers that must refuse any second scan keep TokenID values.

// The token errors, wrapped by TokenKeyring.Verify: Invalid errors for the
// first three, Denied for the others.
var (
	// ErrTokenMalformed: not a Gatehouse invitation token.
	ErrTokenMalformed = errors.New("malformed invitation token")
	// ErrTokenUnknownKey: signed with a key the verifier does not know.
	ErrTokenUnknownKey = errors.New("invitation token signed by an unknown key")
	// ErrTokenSignature: the signature does not match: altered or forged.
	ErrTokenSignature = errors.New("invitation token signature is not valid")
	// ErrTokenExpired: the token's window has ended.
	ErrTokenExpired = errors.New("invitation token expired")
	// ErrTokenNotYetValid: the token's window has not started.
	ErrTokenNotYetValid = errors.New("invitation token not yet valid")
	// ErrTokenKeyRetired: the key that signed it was retired.
	ErrTokenKeyRetired = errors.New("invitation token signed by a retired key")
)

const (
	tokenPrefix  = "GH1."
	tokenVersion = 1
	// MaxTokenLen bounds the text of a token a verifier reads.
	MaxTokenLen = 512
	// TokenClockSkew is how early before its window a token is accepted,
	// for a kiosk whose clock runs behind.
	TokenClockSkew = 2 * time.Minute
)

// TokenClaims is what an invitation token says.
type TokenClaims struct {
	Visit     ID
	Site      ID
	Guest     ID // the invited person
	NotBefore time.Time
	Expires   time.Time
	Nonce     [8]byte // random, so two tokens for one visit differ
	KeyID     TokenKeyID
}

// TokenID identifies one token (its key and nonce), for verifiers that
// keep a record of tokens already used.
func (c TokenClaims) TokenID() string {
	return hex.EncodeToString(c.KeyID[:]) + hex.EncodeToString(c.Nonce[:])
}

// TokenKeyID names a signing key: the first 8 bytes of the SHA-256 of its
// public key.
type TokenKeyID [8]byte

// String returns the key ID in hex.
func (k TokenKeyID) String() string { return hex.EncodeToString(k[:]) }

// KeyIDOf returns the ID of public key pub.
func KeyIDOf(pub ed25519.PublicKey) TokenKeyID {
	sum := sha256.Sum256(pub)
	var id TokenKeyID
	copy(id[:], sum[:8])
	return id
}

// TokenSigner signs invitation tokens with one private key.
type TokenSigner struct {
	key  ed25519.PrivateKey
	id   TokenKeyID
	rand io.Reader
}

// NewTokenSigner returns a signer for key; rand supplies nonces
// (crypto/rand.Reader in production).
func NewTokenSigner(key ed25519.PrivateKey, rand io.Reader) (*TokenSigner, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, Errorf(Invalid, "token signer: private key of %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	return &TokenSigner{key: key, id: KeyIDOf(key.Public().(ed25519.PublicKey)), rand: rand}, nil
}

// KeyID returns the ID of the signer's key.
func (s *TokenSigner) KeyID() TokenKeyID { return s.id }

// Sign returns the text of a token for c (its Nonce and KeyID are set by
// Sign). It returns an Invalid error when an ID is malformed or the window
// is empty.
func (s *TokenSigner) Sign(c TokenClaims) (string, error) {
	for _, f := range []struct {
		what string
		id   ID
	}{{"visit", c.Visit}, {"site", c.Site}, {"guest", c.Guest}} {
		if err := requireID("invitation token: "+f.what, f.id); err != nil {
			return "", err
		}
	}
	if !c.Expires.After(c.NotBefore) {
		return "", Errorf(Invalid, "invitation token: expires %s is not after not-before %s", c.Expires, c.NotBefore)
	}
	if _, err := io.ReadFull(s.rand, c.Nonce[:]); err != nil {
		return "", Errorf(Unavailable, "invitation token: nonce: %w", err)
	}
	c.KeyID = s.id
	body := encodeClaims(c)
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(append(body, ed25519.Sign(s.key, body)...)), nil
}

func encodeClaims(c TokenClaims) []byte {
	b := []byte{tokenVersion}
	b = append(b, c.KeyID[:]...)
	for _, id := range []ID{c.Visit, c.Site, c.Guest} {
		b = append(b, byte(len(id)))
		b = append(b, id...)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(c.NotBefore.Unix()))
	b = binary.BigEndian.AppendUint64(b, uint64(c.Expires.Unix()))
	return append(b, c.Nonce[:]...)
}

// TokenKey is a public key a verifier trusts, with the time it was retired
// (zero while in use).
type TokenKey struct {
	Public  ed25519.PublicKey
	Retired time.Time
}

// TokenKeyring verifies tokens against the public keys it holds. The zero
// value holds none. It is not safe for concurrent mutation; build a new one
// to change keys.
type TokenKeyring struct {
	keys map[TokenKeyID]TokenKey
}

// Add trusts key k. It returns an Invalid error for a malformed key.
func (r *TokenKeyring) Add(k TokenKey) error {
	if len(k.Public) != ed25519.PublicKeySize {
		return Errorf(Invalid, "token keyring: public key of %d bytes, want %d", len(k.Public), ed25519.PublicKeySize)
	}
	if r.keys == nil {
		r.keys = map[TokenKeyID]TokenKey{}
	}
	r.keys[KeyIDOf(k.Public)] = k
	return nil
}

// Verify parses token and checks its signature, key and window at now. It
// returns the claims, or an error wrapping one of the token errors.
func (r *TokenKeyring) Verify(token string, now time.Time) (TokenClaims, error) {
	c, body, sig, err := parseToken(token)
	if err != nil {
		return TokenClaims{}, err
	}
	k, ok := r.keys[c.KeyID]
	if !ok {
		return TokenClaims{}, Errorf(Invalid, "key %s: %w", c.KeyID, ErrTokenUnknownKey)
	}
	if !ed25519.Verify(k.Public, body, sig) {
		return TokenClaims{}, Errorf(Invalid, "%w", ErrTokenSignature)
	}
	switch {
	case !k.Retired.IsZero() && !now.Before(k.Retired):
		return TokenClaims{}, Errorf(Denied, "key %s retired %s: %w", c.KeyID, k.Retired.UTC().Format(time.RFC3339), ErrTokenKeyRetired)
	case !now.Before(c.Expires):
		return TokenClaims{}, Errorf(Denied, "visit %s: expired %s: %w", c.Visit, c.Expires.UTC().Format(time.RFC3339), ErrTokenExpired)
	case now.Add(TokenClockSkew).Before(c.NotBefore):
		return TokenClaims{}, Errorf(Denied, "visit %s: valid from %s: %w", c.Visit, c.NotBefore.UTC().Format(time.RFC3339), ErrTokenNotYetValid)
	}
	return c, nil
}

// parseToken decodes a token's text without checking its signature.
func parseToken(token string) (c TokenClaims, body, sig []byte, err error) {
	bad := func(format string, args ...any) (TokenClaims, []byte, []byte, error) {
		return TokenClaims{}, nil, nil, Errorf(Invalid, "%w: "+format, append([]any{ErrTokenMalformed}, args...)...)
	}
	if len(token) > MaxTokenLen {
		return bad("%d bytes, more than %d", len(token), MaxTokenLen)
	}
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok {
		return bad("does not start with %q", tokenPrefix)
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(rest)
	if err != nil {
		return bad("not base64url")
	}
	if len(raw) < 1+8+3+16+8+ed25519.SignatureSize {
		return bad("%d bytes, too short", len(raw))
	}
	body, sig = raw[:len(raw)-ed25519.SignatureSize], raw[len(raw)-ed25519.SignatureSize:]
	rd := bytes.NewReader(body)
	if v, _ := rd.ReadByte(); v != tokenVersion {
		return bad("version %d, want %d", v, tokenVersion)
	}
	_, _ = io.ReadFull(rd, c.KeyID[:])
	for _, dst := range []*ID{&c.Visit, &c.Site, &c.Guest} {
		n, err := rd.ReadByte()
		if err != nil || int(n) > rd.Len() {
			return bad("truncated")
		}
		s := make([]byte, n)
		_, _ = io.ReadFull(rd, s)
		id, err := ParseID(string(s))
		if err != nil {
			return bad("id %q: %v", s, err)
		}
		*dst = id
	}
	if rd.Len() != 8+8+8 {
		return bad("%d bytes after the IDs, want 24", rd.Len())
	}
	var u [8]byte
	_, _ = io.ReadFull(rd, u[:])
	c.NotBefore = time.Unix(int64(binary.BigEndian.Uint64(u[:])), 0).UTC()
	_, _ = io.ReadFull(rd, u[:])
	c.Expires = time.Unix(int64(binary.BigEndian.Uint64(u[:])), 0).UTC()
	_, _ = io.ReadFull(rd, c.Nonce[:])
	if !c.Expires.After(c.NotBefore) {
		return bad("empty window")
	}
	return c, body, sig, nil
}

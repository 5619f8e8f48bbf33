package access

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

type tokenFixture struct {
	signer *TokenSigner
	pub    ed25519.PublicKey
	claims TokenClaims
}

func newTokenFixture(t testing.TB, seed byte) tokenFixture {
	t.Helper()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	s, err := NewTokenSigner(priv, rand.NewChaCha8([32]byte{seed}))
	if err != nil {
		t.Fatal(err)
	}
	ids := NewIDGen(rand.NewChaCha8([32]byte{seed + 1}))
	at := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	newID := func() ID {
		id, err := ids.New(at)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	return tokenFixture{
		signer: s, pub: priv.Public().(ed25519.PublicKey),
		claims: TokenClaims{Visit: newID(), Site: newID(), Guest: newID(), NotBefore: at, Expires: at.Add(10 * time.Hour)},
	}
}

func (f tokenFixture) keyring(t testing.TB, keys ...TokenKey) *TokenKeyring {
	t.Helper()
	var r TokenKeyring
	for _, k := range append([]TokenKey{{Public: f.pub}}, keys...) {
		if err := r.Add(k); err != nil {
			t.Fatal(err)
		}
	}
	return &r
}

func TestTokenRoundTrip(t *testing.T) {
	f := newTokenFixture(t, 1)
	tok, err := f.signer.Sign(f.claims)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, "GH1.") || len(tok) > MaxTokenLen {
		t.Fatalf("token %q", tok)
	}
	got, err := f.keyring(t).Verify(tok, f.claims.NotBefore.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	want := f.claims
	want.KeyID, want.Nonce = f.signer.KeyID(), got.Nonce
	if got != want {
		t.Errorf("claims\n got %+v\nwant %+v", got, want)
	}
	again, err := f.signer.Sign(f.claims)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := f.keyring(t).Verify(again, f.claims.NotBefore)
	if err != nil || again == tok || c2.TokenID() == got.TokenID() {
		t.Errorf("two tokens for one visit are not distinct: %v", err)
	}
}

func TestTokenWindowAndKeys(t *testing.T) {
	f := newTokenFixture(t, 2)
	tok, err := f.signer.Sign(f.claims)
	if err != nil {
		t.Fatal(err)
	}
	other := newTokenFixture(t, 3)
	start, end := f.claims.NotBefore, f.claims.Expires
	for _, tc := range []struct {
		name string
		ring *TokenKeyring
		now  time.Time
		want error
		code Code
	}{
		{"at the start", f.keyring(t), start, nil, ""},
		{"a kiosk clock a minute behind", f.keyring(t), start.Add(-time.Minute), nil, ""},
		{"an hour early", f.keyring(t), start.Add(-time.Hour), ErrTokenNotYetValid, Denied},
		{"last second", f.keyring(t), end.Add(-time.Second), nil, ""},
		{"at expiry", f.keyring(t), end, ErrTokenExpired, Denied},
		{"unknown key", other.keyring(t), start, ErrTokenUnknownKey, Invalid},
		{"rotated: old key still trusted", other.keyring(t, TokenKey{Public: f.pub}), start, nil, ""},
		{"old key retired", other.keyring(t, TokenKey{Public: f.pub, Retired: start}), start.Add(time.Minute), ErrTokenKeyRetired, Denied},
		{"retired later", other.keyring(t, TokenKey{Public: f.pub, Retired: end}), start, nil, ""},
		{"empty keyring", &TokenKeyring{}, start, ErrTokenUnknownKey, Invalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.ring.Verify(tok, tc.now)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
			if err != nil && ErrorCode(err) != tc.code {
				t.Errorf("code %s, want %s", ErrorCode(err), tc.code)
			}
		})
	}
}

func TestTokenTampering(t *testing.T) {
	f := newTokenFixture(t, 4)
	tok, err := f.signer.Sign(f.claims)
	if err != nil {
		t.Fatal(err)
	}
	ring := f.keyring(t)
	raw, _ := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(tok, "GH1."))
	// Every single-bit flip anywhere in the token is refused.
	for i := range raw {
		for bit := range 8 {
			b := bytes.Clone(raw)
			b[i] ^= 1 << bit
			if _, err := ring.Verify("GH1."+base64.RawURLEncoding.EncodeToString(b), f.claims.NotBefore); err == nil {
				t.Fatalf("flipping bit %d of byte %d was accepted", bit, i)
			}
		}
	}
	// A token re-signed by another key with the original key ID.
	forged := bytes.Clone(raw)
	body := forged[:len(forged)-ed25519.SignatureSize]
	copy(forged[len(body):], ed25519.Sign(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{5}, 32)), body))
	if _, err := ring.Verify("GH1."+base64.RawURLEncoding.EncodeToString(forged), f.claims.NotBefore); !errors.Is(err, ErrTokenSignature) {
		t.Errorf("forged signature: %v", err)
	}
}

func TestTokenMalformed(t *testing.T) {
	f := newTokenFixture(t, 6)
	tok, _ := f.signer.Sign(f.claims)
	for _, s := range []string{"", "GH1.", "GH2." + tok[4:], tok[4:], tok[:len(tok)-3], tok + "=", tok + "AAAA", "GH1.!!!!", strings.Repeat("A", MaxTokenLen+1)} {
		_, err := f.keyring(t).Verify(s, f.claims.NotBefore)
		if err == nil || ErrorCode(err) != Invalid {
			t.Errorf("Verify(%.40q) = %v, want an invalid error", s, err)
		}
	}
}

func TestTokenSignRefusesBadClaims(t *testing.T) {
	f := newTokenFixture(t, 7)
	for _, mut := range []func(*TokenClaims){
		func(c *TokenClaims) { c.Visit = "" },
		func(c *TokenClaims) { c.Site = "nope" },
		func(c *TokenClaims) { c.Expires = c.NotBefore },
	} {
		c := f.claims
		mut(&c)
		if _, err := f.signer.Sign(c); ErrorCode(err) != Invalid {
			t.Errorf("Sign(%+v) = %v, want invalid", c, err)
		}
	}
	if _, err := NewTokenSigner(make([]byte, 3), nil); ErrorCode(err) != Invalid {
		t.Errorf("short key accepted: %v", err)
	}
	var r TokenKeyring
	if err := r.Add(TokenKey{Public: make([]byte, 5)}); ErrorCode(err) != Invalid {
		t.Errorf("short public key accepted: %v", err)
	}
}

func FuzzTokenVerify(f *testing.F) {
	fx := newTokenFixture(f, 8)
	tok, err := fx.signer.Sign(fx.claims)
	if err != nil {
		f.Fatal(err)
	}
	ring := fx.keyring(f)
	f.Add(tok)
	f.Add("GH1.AQ")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ring.Verify(s, fx.claims.NotBefore)
		if err != nil {
			if code := ErrorCode(err); code != Invalid && code != Denied {
				t.Fatalf("error %v has code %s", err, code)
			}
			return
		}
		// Only a token the signer made verifies: the fixture made one.
		if c.Visit != fx.claims.Visit || c.Site != fx.claims.Site || c.Guest != fx.claims.Guest {
			t.Fatalf("accepted claims the signer never made: %+v", c)
		}
	})
}

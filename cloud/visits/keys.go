package visits

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

// KeyFile is the name of the token key file inside the key directory.
const KeyFile = "token-keys.json"

// keyEntry is one key as the key file holds it.
type keyEntry struct {
	Seed    []byte    `json:"seed"` // the Ed25519 private key seed (32 bytes)
	Created time.Time `json:"created"`
	Retired time.Time `json:"retired,omitzero"`
}

// Keys holds the hub's invitation-token signing keys in a file of the key
// directory (mode 0600): every key it has made, the newest one not retired
// signing. Rotation adds a key; older keys keep verifying what they
// signed until they are retired. A Keys is safe for concurrent use; it
// assumes it is the only writer of its file (one hub process, or hub
// processes sharing a read-only key file).
type Keys struct {
	dir string

	mu     sync.RWMutex
	keys   []keyEntry // oldest first
	signer *access.TokenSigner
	ring   access.TokenKeyring
}

// OpenKeys reads the key file in dir, creating dir and a first key when
// there is none. It returns an error when the file cannot be read or
// written or holds no valid key.
func OpenKeys(dir string) (*Keys, error) {
	k := &Keys{dir: dir}
	b, err := os.ReadFile(filepath.Join(dir, KeyFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("visits: token keys: %w", err)
		}
		if _, err := k.Rotate(false, time.Now()); err != nil {
			return nil, err
		}
		return k, nil
	case err != nil:
		return nil, fmt.Errorf("visits: token keys: %w", err)
	}
	var file struct {
		Keys []keyEntry `json:"keys"`
	}
	if err := json.Unmarshal(b, &file); err != nil {
		return nil, fmt.Errorf("visits: token keys %s: %w", filepath.Join(dir, KeyFile), err)
	}
	if err := k.install(file.Keys); err != nil {
		return nil, err
	}
	return k, nil
}

// install checks keys and makes them the current set. k.mu must be held
// for writing, or k not yet shared.
func (k *Keys) install(keys []keyEntry) error {
	var ring access.TokenKeyring
	var signer *access.TokenSigner
	for _, e := range keys {
		if len(e.Seed) != ed25519.SeedSize {
			return fmt.Errorf("visits: token keys: a seed of %d bytes, want %d", len(e.Seed), ed25519.SeedSize)
		}
		priv := ed25519.NewKeyFromSeed(e.Seed)
		if err := ring.Add(access.TokenKey{Public: priv.Public().(ed25519.PublicKey), Retired: e.Retired}); err != nil {
			return err
		}
		if e.Retired.IsZero() {
			s, err := access.NewTokenSigner(priv, rand.Reader)
			if err != nil {
				return err
			}
			signer = s
		}
	}
	if signer == nil {
		return errors.New("visits: token keys: no key that is not retired; rotate to make one")
	}
	k.keys, k.signer, k.ring = keys, signer, ring
	return nil
}

// Rotate makes a new signing key, stored before it is used. With
// retireOld, every older key not yet retired is retired at now (their
// tokens are refused from then on); otherwise they keep verifying. It
// returns the new key.
func (k *Keys) Rotate(retireOld bool, now time.Time) (PublicKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return PublicKey{}, err
	}
	keys := slices.Clone(k.keys)
	if retireOld {
		for i := range keys {
			if keys[i].Retired.IsZero() {
				keys[i].Retired = now.UTC()
			}
		}
	}
	keys = append(keys, keyEntry{Seed: seed, Created: now.UTC()})
	b, err := json.MarshalIndent(struct {
		Keys []keyEntry `json:"keys"`
	}{keys}, "", "  ")
	if err != nil {
		return PublicKey{}, err
	}
	if err := writeFileAtomic(filepath.Join(k.dir, KeyFile), b); err != nil {
		return PublicKey{}, fmt.Errorf("visits: token keys: %w", err)
	}
	if err := k.install(keys); err != nil {
		return PublicKey{}, err
	}
	return k.public()[0], nil
}

// writeFileAtomic writes b to path through a temporary file renamed over
// it, fsynced, mode 0600.
func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// PublicKey is a public key that verifies invitation tokens.
type PublicKey struct {
	ID      access.TokenKeyID
	Public  ed25519.PublicKey
	Created time.Time
	Retired time.Time // zero while in use
	Current bool      // the key new tokens are signed with
}

// Public returns every public key, newest first.
func (k *Keys) Public() []PublicKey {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.public()
}

func (k *Keys) public() []PublicKey {
	out := make([]PublicKey, 0, len(k.keys))
	for i := len(k.keys) - 1; i >= 0; i-- {
		e := k.keys[i]
		pub := ed25519.NewKeyFromSeed(e.Seed).Public().(ed25519.PublicKey)
		id := access.KeyIDOf(pub)
		out = append(out, PublicKey{ID: id, Public: pub, Created: e.Created, Retired: e.Retired, Current: id == k.signer.KeyID()})
	}
	return out
}

// Sign signs c with the current key.
func (k *Keys) Sign(c access.TokenClaims) (string, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.signer.Sign(c)
}

// Verify verifies token at now against every key (see
// access.TokenKeyring.Verify).
func (k *Keys) Verify(token string, now time.Time) (access.TokenClaims, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.ring.Verify(token, now)
}

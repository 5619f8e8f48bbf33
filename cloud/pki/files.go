package pki

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// Names of the files in a PKI directory and in a site directory.
const (
	CACertFile     = "ca.crt"
	CAKeyFile      = "ca.key"
	HubCertFile    = "hub.crt"
	HubKeyFile     = "hub.key"
	IssuedDir      = "issued"
	RevokedFile    = "revoked.json"
	TokensFile     = "site-tokens.json"
	SiteCertFile   = "site.crt"
	SiteKeyFile    = "site.key"
	SiteTokenFile  = "site.token"
	lockFile       = ".lock"
	privateFile    = 0o600
	privateDir     = 0o700
	pemCertificate = "CERTIFICATE"
	pemPrivateKey  = "PRIVATE KEY"
)

// writeNew creates path with data and mode perm, failing with ErrExists if
// it is already there. The data is synced before it returns.
func writeNew(path string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s: %w (refusing to overwrite)", path, ErrExists)
	}
	if err != nil {
		return err
	}
	err = f.Chmod(perm) // exactly perm, whatever the umask
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// writeAtomic replaces path with data: a reader sees the old or the new
// content, never a mix.
func writeAtomic(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// lockDir takes an exclusive advisory lock on dir, serializing the
// read-modify-write of revoked.json and site-tokens.json between
// concurrent commands. The returned function releases it.
func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, privateFile)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
	}, nil
}

// certPEM encodes a DER certificate.
func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: der})
}

// keyPEM encodes key as PKCS #8.
func keyPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), nil
}

// readCert reads the one PEM certificate in path.
func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseCertPEM(path, b)
}

func parseCertPEM(name string, b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != pemCertificate {
		return nil, fmt.Errorf("%s: no PEM %s block", name, pemCertificate)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return c, nil
}

// readKey reads the PKCS #8 ECDSA key in path, refusing a key file that
// group or others may read.
func readKey(path string) (*ecdsa.PrivateKey, error) {
	if err := checkPrivate(path); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != pemPrivateKey {
		return nil, fmt.Errorf("%s: no PEM %s block", path, pemPrivateKey)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an ECDSA key", path)
	}
	return ek, nil
}

// checkPrivate fails if path may be read by group or others.
func checkPrivate(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s: mode %v: a private key must not be readable by group or others (chmod 600)", path, fi.Mode().Perm())
	}
	return nil
}

// watched is a value parsed from a file and parsed again whenever the file
// is replaced or changed, so that a running process sees a new revocation
// list or a renewed certificate without a restart. It is safe for
// concurrent use.
type watched[T any] struct {
	path  string
	parse func(b []byte) (T, error) // b is nil when the file does not exist
	mu    sync.Mutex
	fi    fs.FileInfo // of the file val was parsed from; nil: none yet or missing
	val   T
	ok    bool
}

// get returns the value of the file as it is now. A missing file is parsed
// as nil; an unreadable or unparsable file is an error (callers fail
// closed).
func (w *watched[T]) get() (T, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fi, err := os.Stat(w.path)
	if errors.Is(err, fs.ErrNotExist) {
		if w.ok && w.fi == nil {
			return w.val, nil
		}
		v, err := w.parse(nil)
		if err != nil {
			var zero T
			return zero, err
		}
		w.fi, w.val, w.ok = nil, v, true
		return v, nil
	}
	if err != nil {
		var zero T
		return zero, err
	}
	if w.ok && w.fi != nil && os.SameFile(w.fi, fi) && fi.ModTime().Equal(w.fi.ModTime()) && fi.Size() == w.fi.Size() {
		return w.val, nil
	}
	b, err := os.ReadFile(w.path)
	if err != nil {
		var zero T
		return zero, err
	}
	v, err := w.parse(b)
	if err != nil {
		var zero T
		return zero, fmt.Errorf("%s: %w", w.path, err)
	}
	w.fi, w.val, w.ok = fi, v, true
	return v, nil
}

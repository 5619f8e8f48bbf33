package pki

import (
	"cmp"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// Default validities. Site certificates are short-lived so that a lost
// site key stops working on its own; renew them well before expiry (a site
// offline past its certificate's end cannot reconnect until renewed).
const (
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour
	DefaultHubValidity  = 397 * 24 * time.Hour
	DefaultSiteValidity = 90 * 24 * time.Hour
	// clockSkew backdates NotBefore so that a site or hub whose clock is a
	// little behind accepts a certificate issued just now.
	clockSkew  = 5 * time.Minute
	maxNameLen = 64 // upper bound of an X.509 organizational unit
)

// InitOptions configures Init.
type InitOptions struct {
	// Hosts are the DNS names and IP addresses the hub is reached at; they
	// go into the hub's server certificate and into the CA's name
	// constraints. At least one is required.
	Hosts []string
	// CAValidity and HubValidity are the certificates' lifetimes (defaults
	// DefaultCAValidity, DefaultHubValidity).
	CAValidity, HubValidity time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Authority is the operator's view of a PKI directory: it issues, renews
// and revokes. Its methods may be called from several processes at once
// (the lists are updated under a file lock), but an Authority is not meant
// to be shared between goroutines.
type Authority struct {
	dir  string
	now  func() time.Time
	cert *x509.Certificate
	pem  []byte
	key  *ecdsa.PrivateKey // nil when ca.key is absent
}

// Init creates a PKI in dir (made 0700 if absent): a self-signed CA and the
// hub's server certificate for o.Hosts. It refuses, with ErrExists, to
// touch a directory that already holds a CA or hub key or certificate.
//
// The CA is constrained to sign only for o.Hosts (DNS names and IPs; no IP
// at all when o.Hosts has none) and for URIs whose host is "site", with a
// path length of zero: it cannot mint certificates for other names or
// intermediate CAs, should its certificate ever be trusted elsewhere.
// Changing the hub's host names therefore means a new CA.
func Init(dir string, o InitOptions) (*Authority, error) {
	if len(o.Hosts) == 0 {
		return nil, errors.New("pki init: name at least one host (DNS name or IP) of the hub")
	}
	dnsNames, ips, err := splitHosts(o.Hosts)
	if err != nil {
		return nil, fmt.Errorf("pki init: %w", err)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.CAValidity <= 0 {
		o.CAValidity = DefaultCAValidity
	}
	if o.HubValidity <= 0 {
		o.HubValidity = DefaultHubValidity
	}
	if err := os.MkdirAll(dir, privateDir); err != nil {
		return nil, fmt.Errorf("pki init: %w", err)
	}
	for _, name := range []string{CACertFile, CAKeyFile, HubCertFile, HubKeyFile} {
		if _, err := os.Lstat(filepath.Join(dir, name)); !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("pki init: %s: %w (refusing to overwrite a CA)", filepath.Join(dir, name), ErrExists)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, IssuedDir), privateDir); err != nil {
		return nil, fmt.Errorf("pki init: %w", err)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := o.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Gatehouse hub CA " + serialText(serial)[:8], Organization: []string{"Gatehouse"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(o.CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,

		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         dnsNames,
		PermittedURIDomains:         []string{siteURIHost},
	}
	for _, ip := range ips {
		bits := 8 * len(ip)
		tmpl.PermittedIPRanges = append(tmpl.PermittedIPRanges, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
	}
	if len(ips) == 0 {
		tmpl.ExcludedIPRanges = []*net.IPNet{{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, {IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("pki init: create CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	a := &Authority{dir: dir, now: o.Now, cert: cert, pem: certPEM(der), key: key}
	kp, err := keyPEM(key)
	if err != nil {
		return nil, err
	}
	// The key first: a crash leaves a directory that Init refuses and that
	// has no certificate without its key.
	if err := writeNew(filepath.Join(dir, CAKeyFile), kp, privateFile); err != nil {
		return nil, err
	}
	if err := writeNew(filepath.Join(dir, CACertFile), a.pem, 0o644); err != nil {
		return nil, err
	}
	hubCert, hubKey, _, err := a.issue(pkix.Name{CommonName: "Gatehouse hub", Organization: []string{"Gatehouse"}}, o.HubValidity, func(t *x509.Certificate) {
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		t.DNSNames, t.IPAddresses = dnsNames, ips
	})
	if err != nil {
		return nil, fmt.Errorf("pki init: hub certificate: %w", err)
	}
	if err := writeNew(filepath.Join(dir, HubKeyFile), hubKey, privateFile); err != nil {
		return nil, err
	}
	if err := writeNew(filepath.Join(dir, HubCertFile), hubCert, 0o644); err != nil {
		return nil, err
	}
	return a, nil
}

// splitHosts sorts hosts into DNS names and IPs.
func splitHosts(hosts []string) (dnsNames []string, ips []net.IP, err error) {
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if ip := net.ParseIP(h); ip != nil {
			if v4 := ip.To4(); v4 != nil {
				ip = v4
			}
			ips = append(ips, ip)
			continue
		}
		if h == "" || strings.ContainsAny(h, " /:@*") || strings.HasPrefix(h, ".") || strings.HasSuffix(h, ".") {
			return nil, nil, fmt.Errorf("host %q: want a DNS name or an IP address", h)
		}
		dnsNames = append(dnsNames, strings.ToLower(h))
	}
	return dnsNames, ips, nil
}

// OpenAuthority opens the PKI in dir made by Init. The CA key may be
// absent (kept offline): then revoking works and issuing fails with
// ErrNoCAKey. now is the clock (time.Now when nil).
func OpenAuthority(dir string, now func() time.Time) (*Authority, error) {
	if now == nil {
		now = time.Now
	}
	b, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("open PKI (run \"gatehouse cloud pki init\" first?): %w", err)
	}
	cert, err := parseCertPEM(CACertFile, b)
	if err != nil {
		return nil, err
	}
	a := &Authority{dir: dir, now: now, cert: cert, pem: b}
	key, err := readKey(filepath.Join(dir, CAKeyFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	case !key.PublicKey.Equal(cert.PublicKey):
		return nil, fmt.Errorf("%s does not match %s", CAKeyFile, CACertFile)
	default:
		a.key = key
	}
	return a, nil
}

// CACert returns the CA certificate.
func (a *Authority) CACert() *x509.Certificate { return a.cert }

// newSerial returns a random positive 128-bit serial number.
func newSerial() (*big.Int, error) {
	for {
		n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
		if err != nil {
			return nil, err
		}
		if n.BitLen() > 64 { // never short, never zero
			return n, nil
		}
	}
}

// issue signs a new key's certificate for subject, valid from now (less
// clockSkew) for validity and never past the CA, after edit sets its names
// and usages.
func (a *Authority) issue(subject pkix.Name, validity time.Duration, edit func(*x509.Certificate)) (certPEMBytes, keyPEMBytes []byte, cert *x509.Certificate, err error) {
	if a.key == nil {
		return nil, nil, nil, ErrNoCAKey
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, nil, err
	}
	now := a.now()
	notAfter := now.Add(validity)
	if notAfter.After(a.cert.NotAfter) {
		notAfter = a.cert.NotAfter
	}
	t := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	edit(t)
	der, err := x509.CreateCertificate(rand.Reader, t, a.cert, &key.PublicKey, a.key)
	if err != nil {
		return nil, nil, nil, err
	}
	if cert, err = x509.ParseCertificate(der); err != nil {
		return nil, nil, nil, err
	}
	kp, err := keyPEM(key)
	if err != nil {
		return nil, nil, nil, err
	}
	return certPEM(der), kp, cert, nil
}

// SiteBundle is what a site needs to connect to the hub: the CA
// certificate, its certificate and key, and (when just added) its token.
type SiteBundle struct {
	SiteID   string
	Serial   string
	NotAfter time.Time
	CACert   []byte // PEM
	Cert     []byte // PEM
	Key      []byte // PEM
	Token    string // "" when renewing: the site keeps its token
}

// WriteDir writes the bundle's files into dir (made 0700 if absent), each
// 0600, refusing with ErrExists to overwrite any.
func (b *SiteBundle) WriteDir(dir string) error {
	files := []struct {
		name string
		data []byte
	}{{CACertFile, b.CACert}, {SiteKeyFile, b.Key}, {SiteCertFile, b.Cert}}
	if b.Token != "" {
		files = append(files, struct {
			name string
			data []byte
		}{SiteTokenFile, []byte(b.Token + "\n")})
	}
	if err := os.MkdirAll(dir, privateDir); err != nil {
		return err
	}
	for _, f := range files {
		if _, err := os.Lstat(filepath.Join(dir, f.name)); !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: %w (refusing to overwrite; use an empty directory)", filepath.Join(dir, f.name), ErrExists)
		}
	}
	for _, f := range files {
		if err := writeNew(filepath.Join(dir, f.name), f.data, privateFile); err != nil {
			return err
		}
	}
	return nil
}

// issueSite issues a site certificate and records it in issued/.
func (a *Authority) issueSite(siteID, name string, validity time.Duration) (*SiteBundle, error) {
	if validity <= 0 {
		validity = DefaultSiteValidity
	}
	subject := pkix.Name{CommonName: siteID, Organization: []string{"Gatehouse site"}}
	if name != "" {
		subject.OrganizationalUnit = []string{name}
	}
	c, k, cert, err := a.issue(subject, validity, func(t *x509.Certificate) {
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		t.URIs = []*url.URL{SiteURI(siteID)}
	})
	if err != nil {
		return nil, fmt.Errorf("issue certificate for site %s: %w", siteID, err)
	}
	if err := os.MkdirAll(filepath.Join(a.dir, IssuedDir), privateDir); err != nil {
		return nil, err
	}
	serial := serialText(cert.SerialNumber)
	if err := writeNew(filepath.Join(a.dir, IssuedDir, serial+".crt"), c, 0o644); err != nil {
		return nil, err
	}
	return &SiteBundle{SiteID: siteID, Serial: serial, NotAfter: cert.NotAfter, CACert: a.pem, Cert: c, Key: k}, nil
}

// checkName validates a site's display name.
func checkName(name string) error {
	if len(name) > maxNameLen {
		return fmt.Errorf("site name is %d bytes, at most %d", len(name), maxNameLen)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("site name %q holds a control character", name)
		}
	}
	return nil
}

// AddSite issues a new site's certificate and token and stores the
// token's hash. It refuses with ErrExists a site that has a token or a
// certificate neither revoked nor expired: renew it, or revoke it first.
func (a *Authority) AddSite(siteID, name string, validity time.Duration) (*SiteBundle, error) {
	if err := checkSiteID(siteID); err != nil {
		return nil, err
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	if a.key == nil {
		return nil, ErrNoCAKey
	}
	unlock, err := lockDir(a.dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	tokens, err := a.readTokens()
	if err != nil {
		return nil, err
	}
	if _, ok := tokens[siteID]; ok {
		return nil, fmt.Errorf("site %s: %w: it has a token (renew its certificate, or revoke the site first)", siteID, ErrExists)
	}
	live, err := a.liveCerts(siteID)
	if err != nil {
		return nil, err
	}
	if len(live) > 0 {
		return nil, fmt.Errorf("site %s: %w: certificate %s is valid until %s (renew, or revoke the site first)", siteID, ErrExists, serialText(live[0].SerialNumber), live[0].NotAfter.Format(time.RFC3339))
	}
	token, hash, err := newToken(siteID)
	if err != nil {
		return nil, err
	}
	b, err := a.issueSite(siteID, name, validity)
	if err != nil {
		return nil, err
	}
	tokens[siteID] = tokenHash{SHA256: hash, CreatedAt: a.now().UTC()}
	if err := a.writeTokens(tokens); err != nil {
		return nil, err
	}
	b.Token = token
	return b, nil
}

// RenewSite issues a new certificate (and key) to a site that was added
// and not revoked, with the display name of its latest certificate. The
// old certificate stays valid until it expires or is revoked by serial, so
// that the site can switch over at its own pace. The token is unchanged.
func (a *Authority) RenewSite(siteID string, validity time.Duration) (*SiteBundle, error) {
	if err := checkSiteID(siteID); err != nil {
		return nil, err
	}
	if a.key == nil {
		return nil, ErrNoCAKey
	}
	live, err := a.liveCerts(siteID)
	if err != nil {
		return nil, err
	}
	if len(live) == 0 {
		return nil, fmt.Errorf("site %s: %w: no certificate that is neither revoked nor expired (add the site again)", siteID, ErrUnknownSite)
	}
	var name string
	if ou := live[len(live)-1].Subject.OrganizationalUnit; len(ou) > 0 {
		name = ou[0]
	}
	return a.issueSite(siteID, name, validity)
}

// SiteCert is a certificate issued to a site, as listed by Sites.
type SiteCert struct {
	SiteID   string
	Name     string
	Serial   string
	NotAfter time.Time
	Revoked  bool
}

// Certs lists every certificate in issued/, oldest first.
func (a *Authority) Certs() ([]SiteCert, error) {
	all, err := a.issued()
	if err != nil {
		return nil, err
	}
	revoked, err := a.readRevocations()
	if err != nil {
		return nil, err
	}
	var out []SiteCert
	for _, c := range all {
		id, _ := SiteIDFromCert(c)
		sc := SiteCert{SiteID: id, Serial: serialText(c.SerialNumber), NotAfter: c.NotAfter}
		if len(c.Subject.OrganizationalUnit) > 0 {
			sc.Name = c.Subject.OrganizationalUnit[0]
		}
		_, sc.Revoked = revoked[sc.Serial]
		out = append(out, sc)
	}
	return out, nil
}

// issued returns the certificates in issued/, oldest first.
func (a *Authority) issued() ([]*x509.Certificate, error) {
	entries, err := os.ReadDir(filepath.Join(a.dir, IssuedDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".crt") {
			continue
		}
		c, err := readCert(filepath.Join(a.dir, IssuedDir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].NotBefore.Before(out[j].NotBefore) })
	return out, nil
}

// liveCerts returns siteID's certificates that are neither revoked nor
// expired, oldest first.
func (a *Authority) liveCerts(siteID string) ([]*x509.Certificate, error) {
	all, err := a.issued()
	if err != nil {
		return nil, err
	}
	revoked, err := a.readRevocations()
	if err != nil {
		return nil, err
	}
	now := a.now()
	var live []*x509.Certificate
	for _, c := range all {
		if id, err := SiteIDFromCert(c); err != nil || id != siteID {
			continue
		}
		if _, r := revoked[serialText(c.SerialNumber)]; r || now.After(c.NotAfter) {
			continue
		}
		live = append(live, c)
	}
	return live, nil
}

// RevokeSite revokes every live certificate of siteID and deletes its
// token hash, and returns the serials revoked. The hub refuses the site
// from its next handshake or request. Adding the site again afterwards
// issues new credentials. It does not need the CA key.
func (a *Authority) RevokeSite(siteID, reason string) ([]string, error) {
	if err := checkSiteID(siteID); err != nil {
		return nil, err
	}
	unlock, err := lockDir(a.dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	live, err := a.liveCerts(siteID)
	if err != nil {
		return nil, err
	}
	tokens, err := a.readTokens()
	if err != nil {
		return nil, err
	}
	_, hadToken := tokens[siteID]
	if len(live) == 0 && !hadToken {
		return nil, fmt.Errorf("site %s: %w: no live certificate and no token to revoke", siteID, ErrUnknownSite)
	}
	var serials []string
	var add []Revocation
	for _, c := range live {
		s := serialText(c.SerialNumber)
		serials = append(serials, s)
		add = append(add, Revocation{Serial: s, SiteID: siteID, NotAfter: c.NotAfter, RevokedAt: a.now().UTC(), Reason: reason})
	}
	// Revoke the certificates before dropping the token: a crash in
	// between leaves the site with less access, never more.
	if err := a.addRevocations(add); err != nil {
		return nil, err
	}
	if hadToken {
		delete(tokens, siteID)
		if err := a.writeTokens(tokens); err != nil {
			return serials, err
		}
	}
	return serials, nil
}

// RevokeSerial revokes one certificate, e.g. a site's old certificate
// after it switched to a renewed one. The serial may be written as this
// package prints it or as openssl does. The certificate must be in
// issued/.
func (a *Authority) RevokeSerial(serial, reason string) error {
	s, err := normalizeSerial(serial)
	if err != nil {
		return err
	}
	unlock, err := lockDir(a.dir)
	if err != nil {
		return err
	}
	defer unlock()
	c, err := readCert(filepath.Join(a.dir, IssuedDir, s+".crt"))
	if err != nil {
		return fmt.Errorf("revoke serial %s: not issued by this PKI: %w", s, err)
	}
	id, _ := SiteIDFromCert(c)
	return a.addRevocations([]Revocation{{Serial: s, SiteID: id, NotAfter: c.NotAfter, RevokedAt: a.now().UTC(), Reason: reason}})
}

// addRevocations appends entries to revoked.json (under the lock), dropping
// entries for certificates that have expired anyway.
func (a *Authority) addRevocations(add []Revocation) error {
	m, err := a.readRevocations()
	if err != nil {
		return err
	}
	for _, r := range add {
		if _, ok := m[r.Serial]; !ok {
			m[r.Serial] = r
		}
	}
	f := revocationFile{Version: 1, Revoked: []Revocation{}}
	now := a.now()
	for _, r := range m {
		if now.After(r.NotAfter) && !r.NotAfter.IsZero() {
			continue
		}
		f.Revoked = append(f.Revoked, r)
	}
	slices.SortFunc(f.Revoked, func(x, y Revocation) int {
		return cmp.Or(x.RevokedAt.Compare(y.RevokedAt), strings.Compare(x.Serial, y.Serial))
	})
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(a.dir, RevokedFile), append(b, '\n'), privateFile)
}

func (a *Authority) readRevocations() (map[string]Revocation, error) {
	return readOptional(filepath.Join(a.dir, RevokedFile), parseRevocations)
}

func (a *Authority) readTokens() (map[string]tokenHash, error) {
	return readOptional(filepath.Join(a.dir, TokensFile), parseTokens)
}

func (a *Authority) writeTokens(m map[string]tokenHash) error {
	b, err := json.MarshalIndent(tokenFile{Version: 1, Sites: m}, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(a.dir, TokensFile), append(b, '\n'), privateFile)
}

// readOptional parses path, or nil when it does not exist.
func readOptional[T any](path string, parse func([]byte) (T, error)) (T, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return parse(nil)
	}
	if err != nil {
		var zero T
		return zero, err
	}
	v, err := parse(b)
	if err != nil {
		return v, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

package pki

import (
	"crypto/x509"
	"fmt"
	"math/big"
	"net/url"
	"slices"
	"strings"

	"github.com/gatehouse/gatehouse/access"
)

// The URI SAN of a site certificate is gatehouse://site/{siteID}.
const (
	siteURIScheme = "gatehouse"
	siteURIHost   = "site"
)

// SiteURI returns the URI SAN that identifies siteID in its certificate.
func SiteURI(siteID string) *url.URL {
	return &url.URL{Scheme: siteURIScheme, Host: siteURIHost, Path: "/" + siteID}
}

// checkSiteID returns an error wrapping ErrBadSiteID unless id is a ULID in
// canonical (upper-case) form, so that one site has one spelling.
func checkSiteID(id string) error {
	p, err := access.ParseID(id)
	if err != nil {
		return fmt.Errorf("%w %q: %v", ErrBadSiteID, id, err)
	}
	if string(p) != id {
		return fmt.Errorf("%w %q: not canonical, want %q", ErrBadSiteID, id, p)
	}
	return nil
}

// SiteIDFromCert returns the site ID that c identifies, checking only its
// form: not a CA, extended key usage client authentication and nothing
// else, exactly one SAN, the URI gatehouse://site/{siteID} with a canonical
// site ID, and the same ID as the subject common name. It does not verify
// the signature, validity or revocation; Hub.SiteIDFromTLS does. Errors wrap
// ErrNotSiteCert.
func SiteIDFromCert(c *x509.Certificate) (string, error) {
	bad := func(format string, args ...any) (string, error) {
		return "", fmt.Errorf("%w: serial %s: %s", ErrNotSiteCert, serialText(c.SerialNumber), fmt.Sprintf(format, args...))
	}
	if c.IsCA {
		return bad("it is a CA certificate")
	}
	if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || len(c.UnknownExtKeyUsage) > 0 {
		return bad("extended key usage must be client authentication only (a server certificate is not a site certificate)")
	}
	if len(c.DNSNames)+len(c.IPAddresses)+len(c.EmailAddresses) > 0 {
		return bad("it names hosts or email addresses; a site certificate names only its site URI")
	}
	switch len(c.URIs) {
	case 0:
		return bad("no URI SAN %s://%s/{siteID}", siteURIScheme, siteURIHost)
	case 1:
	default:
		return bad("%d URI SANs, want exactly one", len(c.URIs))
	}
	u := c.URIs[0]
	id, ok := strings.CutPrefix(u.Path, "/")
	if u.Scheme != siteURIScheme || u.Host != siteURIHost || u.Opaque != "" || u.User != nil ||
		u.RawQuery != "" || u.Fragment != "" || u.RawPath != "" || !ok || strings.Contains(id, "/") {
		return bad("URI SAN %q is not %s://%s/{siteID}", u.String(), siteURIScheme, siteURIHost)
	}
	if err := checkSiteID(id); err != nil {
		return bad("URI SAN %q: %v", u.String(), err)
	}
	if c.Subject.CommonName != id {
		return bad("common name %q differs from the URI SAN's site %s", c.Subject.CommonName, id)
	}
	return id, nil
}

// serialText is the form of a serial number in files and messages: lower-case
// hexadecimal without separators.
func serialText(n *big.Int) string {
	if n == nil {
		return "<none>"
	}
	return n.Text(16)
}

// normalizeSerial accepts a serial as printed by this package or by openssl
// (upper case, colons) and returns serialText's form.
func normalizeSerial(s string) (string, error) {
	s = strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	n, ok := new(big.Int).SetString(s, 16)
	if !ok || n.Sign() <= 0 {
		return "", fmt.Errorf("serial %q: want a positive hexadecimal number", s)
	}
	return serialText(n), nil
}

package mqttgw_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/edge/mqttgw"
)

// testTLS returns a server config with a fresh self-signed certificate for
// 127.0.0.1, and a client config that trusts only it.
func testTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "gatehouse test site"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
	client = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return server, client
}

func TestEmbeddedBrokerTLS(t *testing.T) {
	server, client := testTLS(t)
	s := newTestSite(t)
	g, _ := startGateway(t, s, s.siteID, func(c *mqttgw.Config) { c.TLS = server })
	reader, err := dial(t, s.reader.proto(), clientOpts{addr: g.Addr(), password: s.reader.secret, subscribe: true, tls: client})
	if err != nil {
		t.Fatalf("connect over TLS: %v", err)
	}
	reader.tap("tls:1", s.main, cardAlice)
	if d, _ := reader.decision("tls:1"); !d.Grant {
		t.Errorf("decision over TLS: %v, want a grant", d.Reason)
	}
	if _, err := dial(t, s.reader.proto(), clientOpts{addr: g.Addr(), password: s.reader.secret}); err == nil {
		t.Error("plain MQTT accepted by a TLS listener")
	}
}

package pki

import "testing"

func TestServerCertificate(t *testing.T) {
	dir, a := MustInit(t)
	c := MustLoadHub(t, dir).ServerCertificate()
	if c == nil {
		t.Fatal("no server certificate")
	}
	if err := c.CheckSignatureFrom(a.CACert()); err != nil {
		t.Fatalf("not signed by the CA: %v", err)
	}
	for _, host := range []string{"127.0.0.1", "localhost"} {
		if err := c.VerifyHostname(host); err != nil {
			t.Errorf("VerifyHostname(%s): %v", host, err)
		}
	}
	if err := c.VerifyHostname("hub.example.com"); err == nil {
		t.Error("the certificate names a host it was not made for")
	}
}

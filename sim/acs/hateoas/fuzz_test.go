package hateoas

import (
	"net"
	"testing"
)

func newListener() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

// FuzzDecodeCardholder checks that the JSON decoder of cardholder bodies
// never panics and returns a body or an error, never both. The corpus is
// in testdata/fuzz/FuzzDecodeCardholder.
func FuzzDecodeCardholder(f *testing.F) {
	f.Add([]byte(`{"firstName":"A","lastName":"B","division":{"href":"http://h/api/p/divisions/1"},"@Email":"a@b"}`), false)
	f.Add([]byte(`{"cards":{"add":[{"type":{"href":"x"},"number":"1"}],"update":[{"href":"y","status":{"value":"Lost"}}],"remove":[{"href":"z"}]}}`), true)
	f.Add([]byte(`{"accessGroups":[{"accessGroup":{"href":"g"},"from":"2026-01-01T00:00:00Z","until":""}]}`), false)
	f.Add([]byte(`{"@":1,"authorised":"yes"}`), true)
	f.Fuzz(func(t *testing.T, b []byte, patch bool) {
		in, err := decodeCardholder(b, patch)
		if (in == nil) == (err == nil) {
			t.Fatalf("decodeCardholder returned %v and %v", in, err)
		}
	})
}

package hub

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/cloud/auth"
	peoplev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1/peoplev1connect"
)

// The hub serves the cardholder API when it has a store, to API keys only,
// and an import larger than the hub's general 4 MiB body limit gets
// through.
func TestPeopleAPI(t *testing.T) {
	const key = "admin-key-0123456789"
	cfg := DefaultConfig()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Store.Dir = filepath.Join(t.TempDir(), "store")
	cfg.APIKeys = []auth.Key{{ID: "admin", SHA256: auth.HashKey(key), Role: auth.Admin}}
	h := New(cfg, testLogger(t))
	if err := h.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	ctx := context.Background()
	url := "http://" + h.Addr()

	anon := peoplev1connect.NewPeopleServiceClient(http.DefaultClient, url)
	if _, err := anon.ListPeople(ctx, connect.NewRequest(&peoplev1.ListPeopleRequest{})); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("without a key: %v", err)
	}
	c := peoplev1connect.NewPeopleServiceClient(http.DefaultClient, url, connect.WithInterceptors(auth.Bearer(key)))
	if _, err := c.CreatePerson(ctx, connect.NewRequest(&peoplev1.CreatePersonRequest{Name: "Ann", Kind: peoplev1.PersonKind_PERSON_KIND_ACCESS_USER,
		Cards: []*peoplev1.CardSpec{{Number: 42}}})); err != nil {
		t.Fatal(err)
	}

	var b strings.Builder
	b.WriteString("name,notes\n")
	notes := strings.Repeat("n", 3000)
	for i := range 2000 {
		b.WriteString("Person ")
		b.WriteString(strings.Repeat("x", i%7))
		b.WriteString("," + notes + "\n")
	}
	if b.Len() < 5<<20 {
		t.Fatalf("file of %d bytes, want over 5 MiB", b.Len())
	}
	stream, err := c.ImportPeople(ctx, connect.NewRequest(&peoplev1.ImportPeopleRequest{Csv: []byte(b.String()), Kind: peoplev1.PersonKind_PERSON_KIND_ACCESS_USER}))
	if err != nil {
		t.Fatal(err)
	}
	var res *peoplev1.ImportResult
	for stream.Receive() {
		if r := stream.Msg().GetResult(); r != nil {
			res = r
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if !res.GetAccepted() || res.GetCreated() != 2000 {
		t.Fatalf("import: %v", res)
	}
	list, err := c.ListPeople(ctx, connect.NewRequest(&peoplev1.ListPeopleRequest{Filter: &peoplev1.PeopleFilter{Query: "42"}}))
	if err != nil || list.Msg.GetTotalSize() != 1 || list.Msg.GetPeople()[0].GetName() != "Ann" {
		t.Fatalf("search by card: %v %v", list, err)
	}
}

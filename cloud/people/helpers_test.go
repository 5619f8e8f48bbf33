package people_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/auth"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/cloud/importer"
	"github.com/gatehouse/gatehouse/cloud/people"
	"github.com/gatehouse/gatehouse/cloud/store"
	"github.com/gatehouse/gatehouse/cloud/store/badgerstore"
	peoplev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1/peoplev1connect"
	"github.com/gatehouse/gatehouse/replication"
)

var ctx = context.Background()

// Fixed IDs of the test world.
var (
	siteA  = tid(1)
	siteB  = tid(2)
	doorA1 = tid(11)
	doorA2 = tid(12)
	doorB1 = tid(21)
	occA   = tid(101)
	occB   = tid(102)
)

func tid(n int) access.ID { return access.ID(fmt.Sprintf("01JC0%021d", n)) }

// The API keys of the test hub, by role.
const (
	keyAdmin = "admin-key-0123456789"
	keySec   = "security-key-0123456789"
	keyHost  = "host-key-0123456789"
	keyOccA  = "occupier-a-key-0123456789"
	keyOccB  = "occupier-b-key-0123456789"
)

func testKeys() []auth.Key {
	return []auth.Key{
		{ID: "admin", SHA256: auth.HashKey(keyAdmin), Role: auth.Admin},
		{ID: "security", SHA256: auth.HashKey(keySec), Role: auth.Security},
		{ID: "host", SHA256: auth.HashKey(keyHost), Role: auth.Host},
		{ID: "occ-a", SHA256: auth.HashKey(keyOccA), Role: auth.OccupierAdmin, Occupier: occA},
		{ID: "occ-b", SHA256: auth.HashKey(keyOccB), Role: auth.OccupierAdmin, Occupier: occB},
	}
}

// occupiers are the occupiers the test hub knows by name: A and B, and the
// synthetic files' names.
func occupiers() []people.Occupier {
	out := []people.Occupier{{ID: occA, Name: "Occupier A"}, {ID: occB, Name: "Occupier B"}}
	for i, n := range importer.SyntheticOccupiers {
		out = append(out, people.Occupier{ID: tid(200 + i), Name: n})
	}
	return out
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// env is a hub for the cardholder API: a Badger store, the durable
// replica, the service, served over HTTP on a loopback port.
type env struct {
	dir   string
	st    store.Store
	state *hubstate.State
	svc   *people.Service
	url   string
}

// serve opens the store in dir and serves the API on ln until the returned
// stop is called. It is what the test hub and the crash child both run.
func serve(dir string, ln net.Listener, log *slog.Logger, events people.Events) (*env, func(), error) {
	st, err := badgerstore.Open(ctx, dir, store.Options{Kinds: hubstate.Kinds, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	state, err := hubstate.Open(ctx, st, hubstate.Options{Logger: log})
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	svc, err := people.New(people.Config{State: state, Entities: st, Events: events, Logger: log, Occupiers: occupiers()})
	if err != nil {
		return nil, nil, err
	}
	kr, err := auth.NewKeyring(testKeys())
	if err != nil {
		return nil, nil, err
	}
	mux := http.NewServeMux()
	for p, h := range svc.Handlers(kr) {
		mux.Handle(p, h)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	e := &env{dir: dir, st: st, state: state, svc: svc, url: "http://" + ln.Addr().String()}
	stop := func() {
		srv.Close()
		svc.Close()
		state.Close()
		st.Close()
	}
	return e, stop, nil
}

// MustOpenEnv starts a test hub with sites A and B (doors A1, A2 at A, B1
// at B) and closes it at cleanup.
func MustOpenEnv(tb testing.TB, events people.Events) *env {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(tWriter{tb}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	e, stop, err := serve(tb.TempDir(), ln, log, events)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(stop)
	seedSites(tb, e.state)
	return e
}

// seedSites writes the sites and doors, as sync from the sites would.
func seedSites(tb testing.TB, state *hubstate.State) {
	tb.Helper()
	if err := seed(state); err != nil {
		tb.Fatal(err)
	}
}

func seed(state *hubstate.State) error {
	_, err := state.Write(ctx, func(tx *hubstate.Tx) error {
		tx.Change(replication.KindSite, string(siteA), replication.SetOp("name", "Site A"))
		tx.Change(replication.KindSite, string(siteB), replication.SetOp("name", "Site B"))
		for door, site := range map[access.ID]access.ID{doorA1: siteA, doorA2: siteA, doorB1: siteB} {
			tx.Change(replication.KindDoor, string(door), replication.SetOp("site", string(site)), replication.SetOp("name", "Door "+string(door[len(door)-2:])))
		}
		return nil
	})
	return err
}

// clients of the API with one key.
type clients struct {
	people peoplev1connect.PeopleServiceClient
	groups peoplev1connect.GroupServiceClient
}

func (e *env) as(key string) clients {
	opt := connect.WithInterceptors(auth.Bearer(key))
	return clients{people: peoplev1connect.NewPeopleServiceClient(http.DefaultClient, e.url, opt),
		groups: peoplev1connect.NewGroupServiceClient(http.DefaultClient, e.url, opt)}
}

// mustGroup creates a group of doors at site.
func (c clients) mustGroup(tb testing.TB, site access.ID, name string, doors ...access.ID) *peoplev1.Group {
	tb.Helper()
	req := &peoplev1.CreateGroupRequest{SiteId: string(site), Name: name}
	for _, d := range doors {
		req.DoorIds = append(req.DoorIds, string(d))
	}
	res, err := c.groups.CreateGroup(ctx, connect.NewRequest(req))
	if err != nil {
		tb.Fatal(err)
	}
	return res.Msg.GetGroup()
}

// mustCreate creates a person.
func (c clients) mustCreate(tb testing.TB, req *peoplev1.CreatePersonRequest) *peoplev1.Person {
	tb.Helper()
	res, err := c.people.CreatePerson(ctx, connect.NewRequest(req))
	if err != nil {
		tb.Fatal(err)
	}
	return res.Msg.GetPerson()
}

// list returns the people matching f, every page, in order.
func (c clients) list(tb testing.TB, f *peoplev1.PeopleFilter, pageSize int32) []*peoplev1.Person {
	tb.Helper()
	var out []*peoplev1.Person
	tok := ""
	for {
		res, err := c.people.ListPeople(ctx, connect.NewRequest(&peoplev1.ListPeopleRequest{Filter: f, PageSize: pageSize, PageToken: tok}))
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, res.Msg.GetPeople()...)
		if tok = res.Msg.GetNextPageToken(); tok == "" {
			return out
		}
	}
}

// importFile streams an import and returns its progress phases and result.
func (c clients) importFile(ctx context.Context, req *peoplev1.ImportPeopleRequest, onProgress func(*peoplev1.ImportProgress)) (*peoplev1.ImportResult, error) {
	stream, err := c.people.ImportPeople(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, err
	}
	defer stream.Close()
	var res *peoplev1.ImportResult
	for stream.Receive() {
		switch ev := stream.Msg().GetEvent().(type) {
		case *peoplev1.ImportPeopleResponse_Progress:
			if onProgress != nil {
				onProgress(ev.Progress)
			}
		case *peoplev1.ImportPeopleResponse_Result:
			res = ev.Result
		}
	}
	if err := stream.Err(); err != nil {
		return nil, err
	}
	if res == nil {
		return nil, errors.New("import stream ended without a result")
	}
	return res, nil
}

// wantCode fails unless err has code.
func wantCode(tb testing.TB, err error, code connect.Code) {
	tb.Helper()
	if connect.CodeOf(err) != code || err == nil {
		tb.Fatalf("error %v, want code %v", err, code)
	}
}

// vector returns the hub's durable vector, to check nothing was written.
func (e *env) vector() replication.Vector { return e.state.Vector() }

var _ = io.Discard
var _ = os.Getenv

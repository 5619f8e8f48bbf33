package bench

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"syscall"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/cloud/importer"
	"github.com/gatehouse/gatehouse/cloud/people"
	peoplev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1/peoplev1connect"
	"github.com/gatehouse/gatehouse/replication"
)

func init() {
	Default.Register(Bench{
		Name: "people",
		Help: "the hub's cardholder API end to end: a 100,000-row CSV imported through Connect into a Badger hub (against cloud/importer alone on the same file), then search and filter p50/p99 at 100k people (against a GetPerson round trip)",
		Run:  runPeople,
	})
}

var (
	peopleFull  = struct{ rows, queries int }{100_000, 400}
	peopleQuick = struct{ rows, queries int }{20_000, 100}
)

// runPeople starts a hub's cardholder API (Badger store, durable replica,
// Connect over loopback HTTP), imports a synthetic file through it and
// measures:
//
//   - import_total_s: ImportPeople from the request to the result, one
//     atomic hub write, against importer.Import of the same file with
//     in-memory lookups (the engine alone: the floor);
//   - import_cpu_s: the CPU time (user and system) this process spent
//     over the same span, against the engine's: unlike the wall time, it
//     hardly moves when other processes load the machine;
//   - search_p50_ms, search_p99_ms: ListPeople with a mix of text, email,
//     card and filter queries, a page of 50, against GetPerson's round trip.
func runPeople(ctx context.Context, opt Options, emit func(Result)) error {
	p := peopleFull
	if opt.Quick {
		p = peopleQuick
	}
	st, closeStore, err := openHubStore(ctx, opt, "people")
	if err != nil {
		return err
	}
	defer closeStore()
	state, err := hubstate.Open(ctx, st, hubstate.Options{Logger: opt.Log})
	if err != nil {
		return err
	}
	defer state.Close()
	var occs []people.Occupier
	for _, n := range importer.SyntheticOccupiers {
		occs = append(occs, people.Occupier{ID: access.MustNewID(), Name: n})
	}
	api, err := servePeopleAPI(people.Config{State: state, Entities: st, Occupiers: occs})
	if err != nil {
		return err
	}
	defer api.Close()
	url, copt := api.url, api.auth
	pc := peoplev1connect.NewPeopleServiceClient(http.DefaultClient, url, copt)
	gc := peoplev1connect.NewGroupServiceClient(http.DefaultClient, url, copt)

	site, door := access.MustNewID(), access.MustNewID()
	if _, err := state.Write(ctx, func(tx *hubstate.Tx) error {
		tx.Change(replication.KindSite, string(site), replication.SetOp("name", "Bench"))
		tx.Change(replication.KindDoor, string(door), replication.SetOp("site", string(site)), replication.SetOp("name", "Front"))
		return nil
	}); err != nil {
		return err
	}
	var groups []string
	for _, g := range importer.SyntheticGroups {
		res, err := gc.CreateGroup(ctx, connect.NewRequest(&peoplev1.CreateGroupRequest{SiteId: string(site), Name: g, DoorIds: []string{string(door)}}))
		if err != nil {
			return err
		}
		groups = append(groups, res.Msg.GetGroup().GetId())
	}

	var file bytes.Buffer
	if err := importer.WriteSynthetic(&file, p.rows); err != nil {
		return err
	}
	suffix := fmt.Sprintf("_%dk", p.rows/1000)
	floorStart, floorCPU := time.Now(), processCPU()
	if err := peopleEngineOnly(ctx, file.Bytes()); err != nil {
		return err
	}
	floor, floorCPU := time.Since(floorStart), processCPU()-floorCPU
	start, startCPU := time.Now(), processCPU()
	stream, err := pc.ImportPeople(ctx, connect.NewRequest(&peoplev1.ImportPeopleRequest{Csv: file.Bytes(), Kind: peoplev1.PersonKind_PERSON_KIND_OCCUPIER_USER, EnableAccess: true}))
	if err != nil {
		return err
	}
	var result *peoplev1.ImportResult
	for stream.Receive() {
		if r := stream.Msg().GetResult(); r != nil {
			result = r
		}
	}
	if err := stream.Err(); err != nil {
		return err
	}
	if !result.GetAccepted() || int(result.GetCreated()) != p.rows {
		return fmt.Errorf("people: import %v", result)
	}
	emit(NewResult("people", "import_total_s"+suffix, time.Since(start).Seconds(), "s", floor.Seconds()))
	emit(NewResult("people", "import_cpu_s"+suffix, (processCPU() - startCPU).Seconds(), "s", floorCPU.Seconds()))

	// Warm the index, then measure.
	first, err := pc.ListPeople(ctx, connect.NewRequest(&peoplev1.ListPeopleRequest{PageSize: 1}))
	if err != nil {
		return err
	}
	someone := first.Msg.GetPeople()[0].GetId()
	var rtt, lat []time.Duration
	for i := range p.queries {
		t0 := time.Now()
		if _, err := pc.GetPerson(ctx, connect.NewRequest(&peoplev1.GetPersonRequest{PersonId: someone})); err != nil {
			return err
		}
		rtt = append(rtt, time.Since(t0))
		row := (i * 7919) % p.rows
		format, num, fac := importer.SyntheticCard(row)
		_ = format
		f := []*peoplev1.PeopleFilter{
			{Query: "person" + strconv.Itoa(row) + "@"},
			{Query: fac + ":" + num},
			{Query: "smith", OccupierId: string(occs[i%len(occs)].ID)},
			{GroupId: groups[i%len(groups)], State: peoplev1.PersonState_PERSON_STATE_ACTIVE},
			{Query: "anne"},
		}[i%5]
		t0 = time.Now()
		if _, err := pc.ListPeople(ctx, connect.NewRequest(&peoplev1.ListPeopleRequest{Filter: f, PageSize: 50})); err != nil {
			return err
		}
		lat = append(lat, time.Since(t0))
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	emit(NewResult("people", "search_p50_ms"+suffix, ms(Percentile(lat, 0.5)), "ms", ms(Percentile(rtt, 0.5))))
	emit(NewResult("people", "search_p99_ms"+suffix, ms(Percentile(lat, 0.99)), "ms", ms(Percentile(rtt, 0.99))))
	return nil
}

// peopleEngineOnly imports data with cloud/importer alone, lookups in memory.
func peopleEngineOnly(ctx context.Context, data []byte) error {
	ids := map[string]access.ID{}
	for _, n := range append(append([]string(nil), importer.SyntheticGroups...), importer.SyntheticOccupiers...) {
		ids[n] = access.MustNewID()
	}
	resolve := func(_ context.Context, refs []string) (map[string]access.ID, error) {
		out := make(map[string]access.ID, len(refs))
		for _, r := range refs {
			if id, ok := ids[r]; ok {
				out[r] = id
			}
		}
		return out, nil
	}
	_, err := importer.Import(ctx, bytes.NewReader(data), importer.Options{Kind: access.Occupier, Groups: resolve, Occupiers: resolve})
	return err
}

// processCPU returns the CPU time, user and system, this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

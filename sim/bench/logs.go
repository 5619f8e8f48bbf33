package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/cloud/people"
	peoplev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1/peoplev1connect"
	"github.com/gatehouse/gatehouse/replication"
)

func init() {
	Default.Register(Bench{
		Name: "logs",
		Help: "access logs at the hub: 1,000,000 events of 3 sites committed as their sync sessions would, then ListAccessLogs p50/p99 over Connect (newest page, by person, door, site and result, time window, next page) against a GetPerson round trip; and the time to rebuild the event index on open",
		Run:  runLogs,
	})
}

var (
	logsFull  = struct{ events, people, queries int }{1_000_000, 2000, 600}
	logsQuick = struct{ events, people, queries int }{100_000, 500, 150}
)

// runLogs fills a Badger hub with access events and measures the access-log
// API:
//
//   - ingest_events_per_s: events committed (fsynced) and indexed per
//     second through hubstate.Apply in batches of 4096, as a site's sync
//     session hands them over (no floor);
//   - list_p50_ms, list_p99_ms: ListAccessLogs, a page of 100, over
//     Connect on loopback, with a mix of filters, against GetPerson's
//     round trip through the same server (the floor);
//   - open_index_s: reopening the hub state, which reads every event back
//     from the store and rebuilds the index (no floor).
func runLogs(ctx context.Context, opt Options, emit func(Result)) error {
	p := logsFull
	if opt.Quick {
		p = logsQuick
	}
	suffix := fmt.Sprintf("_%dk", p.events/1000)
	st, closeStore, err := openHubStore(ctx, opt, "logs")
	if err != nil {
		return err
	}
	defer closeStore()
	state, err := hubstate.Open(ctx, st, hubstate.Options{Logger: opt.Log})
	if err != nil {
		return err
	}

	// The world: 3 sites of 20 doors, people with a card each.
	rng := rand.New(rand.NewPCG(7, 11))
	sites := make([]access.ID, 3)
	var doors []access.ID
	persons := make([]access.ID, p.people)
	occ := access.MustNewID()
	if _, err := state.Write(ctx, func(tx *hubstate.Tx) error {
		for i := range sites {
			sites[i] = access.MustNewID()
			tx.Change(replication.KindSite, string(sites[i]), replication.SetOp("name", fmt.Sprint("Site ", i)))
			for range 20 {
				d := access.MustNewID()
				doors = append(doors, d)
				tx.Change(replication.KindDoor, string(d), replication.SetOp("site", string(sites[i])), replication.SetOp("name", "Door"))
			}
		}
		for i := range persons {
			persons[i] = access.MustNewID()
			id := string(persons[i])
			tx.Change(replication.KindPerson, id, replication.SetOp("kind", "occupier"), replication.SetOp("occupier", string(occ)),
				replication.SetOp("name", fmt.Sprint("Person ", i)), tx.Replica().EnableOp(replication.KindPerson, id))
			card := access.CardNumber(100000 + i).String()
			tx.Change(replication.KindCard, card, replication.AddOp("holders", id), tx.Replica().EnableOp(replication.KindCard, card))
		}
		return nil
	}); err != nil {
		return err
	}

	// The events: a day of taps per site, in the order each site records
	// them, the sites' batches interleaved.
	t0 := time.Now().Add(-24 * time.Hour).Truncate(time.Second)
	perSite := p.events / len(sites)
	const batch = 4096
	start := time.Now()
	for from := 0; from < perSite; from += batch {
		for si, site := range sites {
			n := min(batch, perSite-from)
			ds := make([]replication.Delta, n)
			for i := range n {
				seq := from + i + 1
				who := rng.IntN(len(persons) + len(persons)/20) // some unknown cards
				r := replication.EventRecord{At: t0.Add(time.Duration(seq) * (24 * time.Hour / time.Duration(perSite))),
					Door: doors[si*20+rng.IntN(20)], Granted: true, Reason: access.ReasonGranted,
					RequestID: fmt.Sprintf("req-%d-%d", si, seq), Node: "n1"}
				if who < len(persons) {
					r.Card, r.Holder = access.CardNumber(100000+who), persons[who]
					if rng.IntN(10) == 0 {
						r.Granted, r.Reason = false, access.ReasonNoGroup
					}
				} else {
					r.Card, r.Granted, r.Reason = access.CardNumber(900000+rng.IntN(100000)), false, access.ReasonUnknownCard
				}
				if ds[i], err = replication.EventDelta(string(site), uint64(seq), r); err != nil {
					return err
				}
			}
			if err := state.Apply(ctx, replication.Source{Origin: string(site), Lane: replication.LaneEvents}, ds, nil); err != nil {
				return err
			}
		}
	}
	total := perSite * len(sites)
	emit(NewResult("logs", "ingest_events_per_s"+suffix, float64(total)/time.Since(start).Seconds(), "events/s", 0))
	if err := state.Close(); err != nil {
		return err
	}
	start = time.Now()
	state, err = hubstate.Open(ctx, st, hubstate.Options{Logger: opt.Log})
	if err != nil {
		return err
	}
	defer state.Close()
	if n := state.EventCount(); n != total {
		return fmt.Errorf("logs: %d events after reopening, want %d", n, total)
	}
	emit(NewResult("logs", "open_index_s"+suffix, time.Since(start).Seconds(), "s", 0))

	// The API over loopback Connect.
	api, err := servePeopleAPI(people.Config{State: state, Entities: st})
	if err != nil {
		return err
	}
	defer api.Close()
	pc := peoplev1connect.NewPeopleServiceClient(http.DefaultClient, api.url, api.auth)

	var rtt, lat []time.Duration
	var token string
	for i := range p.queries {
		t := time.Now()
		if _, err := pc.GetPerson(ctx, connect.NewRequest(&peoplev1.GetPersonRequest{PersonId: string(persons[i%len(persons)])})); err != nil {
			return err
		}
		rtt = append(rtt, time.Since(t))
		from := t0.Add(time.Duration(rng.IntN(23)) * time.Hour)
		req := []*peoplev1.ListAccessLogsRequest{
			{},
			{PersonId: string(persons[rng.IntN(len(persons))])},
			{DoorId: string(doors[rng.IntN(len(doors))])},
			{SiteId: string(sites[i%len(sites)]), Result: peoplev1.AccessResult_ACCESS_RESULT_DENIED},
			{FromMs: from.UnixMilli(), UntilMs: from.Add(time.Hour).UnixMilli()},
			{PageToken: token},
		}[i%6]
		req.PageSize = 100
		t = time.Now()
		res, err := pc.ListAccessLogs(ctx, connect.NewRequest(req))
		if err != nil {
			return err
		}
		lat = append(lat, time.Since(t))
		if len(res.Msg.GetLogs()) == 0 {
			return fmt.Errorf("logs: query %d (%v) found nothing", i, req)
		}
		if i%6 == 0 {
			token = res.Msg.GetNextPageToken()
		}
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	emit(NewResult("logs", "list_p50_ms"+suffix, ms(Percentile(lat, 0.5)), "ms", ms(Percentile(rtt, 0.5))))
	emit(NewResult("logs", "list_p99_ms"+suffix, ms(Percentile(lat, 0.99)), "ms", ms(Percentile(rtt, 0.99))))
	return nil
}

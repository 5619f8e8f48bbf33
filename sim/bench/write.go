package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/edge/node"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

func init() {
	Default.Register(Bench{
		Name: "write",
		Help: "site write path: committed ops/s of a 3-node site at 1-256 clients and commit latency, against fsync",
		Run:  runWrite,
	})
}

// writeParams sizes the write benchmark.
type writeParams struct {
	warm    time.Duration // load before each measured window, not counted
	window  time.Duration // measured time per concurrency level
	fencing time.Duration // measured time of the fencing-commit run
	fsyncN  int           // fsyncs for the floor
}

var (
	writeFull  = writeParams{warm: time.Second, window: 5 * time.Second, fencing: 3 * time.Second, fsyncN: 500}
	writeQuick = writeParams{warm: 200 * time.Millisecond, window: time.Second, fencing: 500 * time.Millisecond, fsyncN: 200}
	// writeTest, when set, replaces writeQuick (tests keep `make test` short).
	writeTest *writeParams
)

// writeNodes is the size of the measured site; tests may change it (one
// node isolates the write path from replication).
var writeNodes = 3

// writeLevels are the concurrent client counts measured on the leader.
var writeLevels = []int{1, 16, 64, 256}

// writePeople is how many people the workload's grants are spread over.
// A real site has many people with a few grants each; piling every grant on
// a handful of people would make each new grant cost time in proportion to
// that person's grants (access.State keeps a copy-on-write slice of grants
// per holder) and measure that instead of the write path.
const writePeople = 10000

// runWrite measures the site write path: a real 3-node site on loopback
// with default Raft timings, and clients that each propose one small
// non-fencing command per call (a new live grant) in a loop. The floor of
// a rate is what one client would get if each operation cost exactly one
// fsync of the same disk (1e6/fsync p50 in µs); the floor of a latency is
// the fsync latency itself, both measured in the same run on the same
// directory. Group commit is what lets the ratio of a rate go above 1.
func runWrite(ctx context.Context, opt Options, emit func(Result)) error {
	p := writeFull
	if opt.Quick {
		p = writeQuick
		if writeTest != nil {
			p = *writeTest
		}
	}
	dir, cleanup, err := benchDir(opt.Dir, "write")
	if err != nil {
		return err
	}
	defer cleanup()

	fs, err := FsyncLatency(ctx, dir, p.fsyncN)
	if err != nil {
		return err
	}
	fsyncP50, fsyncP99 := Micros(Percentile(fs, 0.50)), Micros(Percentile(fs, 0.99))
	opt.Log.Info("write: fsync floor", "p50_us", round(fsyncP50), "p99_us", round(fsyncP99))
	rateFloor := 1e6 / fsyncP50

	site, err := startSite(ctx, dir, writeNodes, opt.Log, false)
	if err != nil {
		return err
	}
	defer site.close()
	li, err := site.leader(ctx)
	if err != nil {
		return err
	}
	leader := site.nodes[li]
	data, err := setupData(ctx, leader, site.siteID, writePeople)
	if err != nil {
		return err
	}

	var granted []string // live grants from the first run (1 client), revoked below
	for _, c := range writeLevels {
		before := site.batchStats()
		r, err := writeLoad(ctx, leader, c, p, func(w *grantWriter) (*raftv1.Command, string) { return w.command() }, data)
		if err != nil {
			return fmt.Errorf("%d clients on the leader: %w", c, err)
		}
		st := site.batchStats().sub(before)
		opt.Log.Info("write: level done", "clients", c, "ops_per_s", round(r.rate), "ops", r.ops, "failed", r.failed)
		st.log(opt.Log, li, c)
		emit(NewResult("write", fmt.Sprintf("ops_per_s_c%d", c), r.rate, "ops/s", rateFloor))
		// Commands per Raft entry over the whole run (warm-up included):
		// what group commit achieved. Its floor is 1, no grouping at all.
		emit(NewResult("write", fmt.Sprintf("ops_per_entry_c%d", c), st.opsPerEntry(), "ops/entry", 1))
		if c == 1 {
			emit(NewResult("write", "commit_p50_us", Micros(Percentile(r.lat, 0.50)), "us", fsyncP50))
			emit(NewResult("write", "commit_p99_us", Micros(Percentile(r.lat, 0.99)), "us", fsyncP99))
		}
		if granted == nil {
			// The first level's grants (profiling runs may skip 1 client).
			granted = r.ids
		}
	}

	// The same load through a follower, which forwards every call to the
	// leader's cluster API.
	fi := site.follower(li)
	if fi < 0 {
		fi = li // a one-node site: the leader again
	}
	r, err := writeLoad(ctx, site.nodes[fi], 64, p, func(w *grantWriter) (*raftv1.Command, string) { return w.command() }, data)
	if err != nil {
		return fmt.Errorf("64 clients on a follower: %w", err)
	}
	opt.Log.Info("write: level done", "clients", 64, "via", "follower", "ops_per_s", round(r.rate), "ops", r.ops, "failed", r.failed)
	emit(NewResult("write", "ops_per_s_c64_follower", r.rate, "ops/s", rateFloor))

	// Fencing commits: revoking a grant is acknowledged only once every voter
	// has applied it (or certainly lost its lease), so it costs more than a
	// plain commit. One client, on the leader, revoking the grants made above.
	next := 0
	revoke := func(*grantWriter) (*raftv1.Command, string) {
		if next >= len(granted) {
			return nil, ""
		}
		id := granted[next]
		next++
		return &raftv1.Command{Actor: "bench", RequestId: "bench-revoke-" + id,
			Op: &raftv1.Command_RemoveGrant{RemoveGrant: &raftv1.RemoveGrant{GrantId: id}}}, id
	}
	fp := p
	fp.warm, fp.window = min(p.warm, 100*time.Millisecond), p.fencing
	r, err = writeLoad(ctx, leader, 1, fp, revoke, data)
	if err != nil {
		return fmt.Errorf("fencing commits: %w", err)
	}
	if len(r.lat) == 0 {
		// Percentiles of a handful of samples are rough, but a loaded
		// machine may allow only that many in a short window; none at
		// all is an error.
		return fmt.Errorf("fencing commits: no sample (%d grants to revoke)", len(granted))
	}
	opt.Log.Info("write: fencing done", "samples", len(r.lat))
	emit(NewResult("write", "fencing_commit_p50_us", Micros(Percentile(r.lat, 0.50)), "us", fsyncP50))
	emit(NewResult("write", "fencing_commit_p99_us", Micros(Percentile(r.lat, 0.99)), "us", fsyncP99))
	return nil
}

// loadResult is what one run of writeLoad measured.
type loadResult struct {
	rate   float64         // operations completed per second in the window
	ops    int             // operations completed in the window
	failed int             // calls that returned an error, whole run
	lat    []time.Duration // latency of each call started in the window
	ids    []string        // IDs of the commands acknowledged, whole run
}

// writeLoad runs c clients against nd, each calling Propose with one
// command per call in a loop, for p.warm and then the measured p.window.
// next makes a client's next command (and an ID to report for it) and
// returns nil when there is nothing left to do. More than 1% failed calls
// make it an error: in a healthy site none should fail.
func writeLoad(ctx context.Context, nd *node.Node, c int, p writeParams,
	next func(*grantWriter) (*raftv1.Command, string), data benchData) (loadResult, error) {
	ctx, cancel := context.WithTimeout(ctx, p.warm+p.window+60*time.Second)
	defer cancel()
	start := time.Now()
	from, until := start.Add(p.warm), start.Add(p.warm+p.window)
	var (
		mu       sync.Mutex
		res      loadResult
		firstErr error
		wg       sync.WaitGroup
	)
	for i := range c {
		wg.Go(func() {
			// Clients start evenly spaced over the people, so that each
			// person gets a few grants (see writePeople), not the clients
			// all walking the same few dozen people one after the other.
			w := newGrantWriter(data, i*len(data.people)/c)
			var (
				ops, failed int
				lat         []time.Duration
				ids         []string
				ferr        error
			)
			for {
				t0 := time.Now()
				if !t0.Before(until) || ctx.Err() != nil {
					break
				}
				cmd, id := next(w)
				if cmd == nil {
					break
				}
				_, err := nd.Propose(ctx, cmd)
				t1 := time.Now()
				if err != nil {
					failed++
					if ferr == nil {
						ferr = err
					}
					continue
				}
				ids = append(ids, id)
				if !t0.Before(from) {
					lat = append(lat, t1.Sub(t0))
				}
				if !t1.Before(from) && !t1.After(until) {
					ops++
				}
			}
			mu.Lock()
			defer mu.Unlock()
			res.ops += ops
			res.failed += failed
			res.lat = append(res.lat, lat...)
			res.ids = append(res.ids, ids...)
			if firstErr == nil {
				firstErr = ferr
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return res, err
	}
	res.rate = float64(res.ops) / p.window.Seconds()
	if res.failed > 0 && (res.ops == 0 || res.failed*100 > res.ops+res.failed) {
		return res, fmt.Errorf("%w: %d of %d calls, first: %v", errTooManyFailures, res.failed, res.ops+res.failed, firstErr)
	}
	return res, nil
}

// benchDir makes a scratch directory for one benchmark under dir (the
// system temp dir when empty) and returns a function that removes it.
func benchDir(dir, name string) (string, func(), error) {
	if dir == "" {
		dir = os.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", nil, err
	}
	d, err := os.MkdirTemp(dir, name+"-*")
	if err != nil {
		return "", nil, err
	}
	return d, func() { _ = os.RemoveAll(d) }, nil
}

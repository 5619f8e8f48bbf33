package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse/gatehouse/cloud/store"
	"github.com/gatehouse/gatehouse/cloud/store/badgerstore"
	"github.com/gatehouse/gatehouse/cloud/store/pgstore"
)

func init() {
	Default.Register(Bench{
		Name: "store",
		Help: "hub store: durable commit latency and batched append rate of the Badger store (and PostgreSQL if GATEHOUSE_BENCH_PG is set), against fsync",
		Run:  runStore,
	})
}

// storeParams sizes the store benchmark.
type storeParams struct {
	commits  int           // sequential one-record commits for the latency
	window   time.Duration // measured time of the batched append rate
	fsyncN   int           // fsyncs for the floor
	batch    int           // records per batch in the rate run
	clients  int           // concurrent appenders (one origin each) in the rate run
	recBytes int           // bytes per record
}

var (
	storeFull  = storeParams{commits: 1000, window: 3 * time.Second, fsyncN: 500, batch: 100, clients: 8, recBytes: 200}
	storeQuick = storeParams{commits: 100, window: 500 * time.Millisecond, fsyncN: 100, batch: 100, clients: 8, recBytes: 200}
)

// runStore measures the hub store the way sync uses it: each commit is
// durable before it returns. The latency of a one-record commit is read
// against the fsync latency of the same directory; the rate of records
// appended in batches of 100 by 8 concurrent origins against one record
// per fsync (1e6/fsync p50 in µs). The PostgreSQL store is measured only
// when GATEHOUSE_BENCH_PG holds a connection string; it works in a schema
// of its own, dropped at the end. Its floor is still this directory's
// fsync, which is only the server's if it runs on the same disk.
func runStore(ctx context.Context, opt Options, emit func(Result)) error {
	p := storeFull
	if opt.Quick {
		p = storeQuick
	}
	dir := opt.Dir
	if dir == "" {
		dir = os.TempDir()
	}
	fs, err := FsyncLatency(ctx, dir, p.fsyncN)
	if err != nil {
		return err
	}
	f50, f99 := Micros(Percentile(fs, 0.50)), Micros(Percentile(fs, 0.99))
	opts := store.Options{Kinds: []string{"bench"}}

	bdir, err := os.MkdirTemp(dir, "store-badger-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(bdir)
	bs, err := badgerstore.Open(ctx, filepath.Join(bdir, "db"), opts)
	if err != nil {
		return err
	}
	err = measureStore(ctx, "badger", bs, p, f50, f99, emit)
	if cerr := bs.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}

	conn := os.Getenv("GATEHOUSE_BENCH_PG")
	if conn == "" {
		opt.Log.Info("store bench: GATEHOUSE_BENCH_PG not set; PostgreSQL not measured", "bench", "store")
		return nil
	}
	schema := fmt.Sprintf("gatehouse_bench_%d", time.Now().UnixNano())
	ps, err := pgstore.Open(ctx, pgstore.Config{ConnString: conn, Schema: schema, MaxConns: int32(p.clients + 2)}, opts)
	if err != nil {
		return err
	}
	err = measureStore(ctx, "pg", ps, p, f50, f99, emit)
	ps.Close()
	if c, cerr := pgx.Connect(ctx, conn); cerr == nil {
		if _, derr := c.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); derr != nil && err == nil {
			err = derr
		}
		c.Close(ctx)
	} else if err == nil {
		err = cerr
	}
	return err
}

// measureStore emits NAME_commit_p50_us, NAME_commit_p99_us and
// NAME_records_per_s_bB_cC for one store.
func measureStore(ctx context.Context, name string, s store.Store, p storeParams, f50, f99 float64, emit func(Result)) error {
	data := make([]byte, p.recBytes)
	lat := make([]time.Duration, 0, p.commits)
	for seq := uint64(1); seq <= uint64(p.commits); seq++ {
		start := time.Now()
		if err := s.Append(ctx, "latency", store.Record{Seq: seq, Lane: store.Normal, Data: data}); err != nil {
			return fmt.Errorf("%s: append: %w", name, err)
		}
		lat = append(lat, time.Since(start))
	}
	emit(NewResult("store", name+"_commit_p50_us", Micros(Percentile(lat, 0.50)), "us", f50))
	emit(NewResult("store", name+"_commit_p99_us", Micros(Percentile(lat, 0.99)), "us", f99))

	var (
		records atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		runErr  error
	)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	deadline := start.Add(p.window)
	for c := range p.clients {
		wg.Go(func() {
			origin := fmt.Sprintf("rate-%d", c)
			recs := make([]store.Record, p.batch)
			for next := uint64(1); time.Now().Before(deadline) && rctx.Err() == nil; next += uint64(p.batch) {
				for i := range recs {
					recs[i] = store.Record{Seq: next + uint64(i), Lane: store.Normal, Data: data}
				}
				if err := s.Append(rctx, origin, recs...); err != nil {
					errOnce.Do(func() { runErr = fmt.Errorf("%s: append: %w", name, err); cancel() })
					return
				}
				records.Add(int64(p.batch))
			}
		})
	}
	wg.Wait()
	if runErr != nil {
		return runErr
	}
	rate := float64(records.Load()) / time.Since(start).Seconds()
	emit(NewResult("store", fmt.Sprintf("%s_records_per_s_b%d_c%d", name, p.batch, p.clients), rate, "records/s", 1e6/f50))
	return nil
}

package bench

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/importer"
)

func init() {
	Default.Register(Bench{
		Name: "import",
		Help: "bulk CSV import of cardholders: a 100,000-row file read, validated and built by cloud/importer (lookups in memory), against encoding/csv reading the same file",
		Run:  runImport,
	})
}

// importParams sizes the import benchmark.
type importParams struct {
	rows int // data rows in the file
	runs int // imports measured; the best is reported
}

var (
	importFull  = importParams{rows: 100_000, runs: 3}
	importQuick = importParams{rows: 20_000, runs: 1}
)

// runImport writes a synthetic file of occupier users to opt.Dir and
// measures, from the file:
//
//   - total_s: Import of every row (parse, validate, card lookups in
//     batches of 1000, group and occupier lookups, IDs and values built),
//     against reading the same file with encoding/csv and doing nothing;
//   - rows_per_s: the same as a rate, against encoding/csv's rows/s;
//   - reject_total_s: Import of the same file with one duplicate card number
//     in the last tenth, which produces nothing and a one-line report,
//     against the same floor;
//   - heap_mb: the live heap holding the accepted result (no floor).
//
// The metric names carry the row count (total_s_100k). The lookups answer
// from maps in memory, so the store's own cost is not in these numbers.
func runImport(ctx context.Context, opt Options, emit func(Result)) error {
	p := importFull
	if opt.Quick {
		p = importQuick
	}
	dir := opt.Dir
	if dir == "" {
		dir = os.TempDir()
	}
	var buf bytes.Buffer
	if err := importer.WriteSynthetic(&buf, p.rows); err != nil {
		return err
	}
	good, err := importWriteTemp(dir, "import-good-*.csv", buf.Bytes())
	if err != nil {
		return err
	}
	defer os.Remove(good)
	// The duplicate: the card of row 100 again on a row in the last tenth.
	lines := strings.Split(buf.String(), "\n")
	dupRow := p.rows - p.rows/10 + 17
	cells := strings.Split(lines[dupRow], ",")
	format, num, fac := importer.SyntheticCard(99)
	cells[4], cells[5], cells[6] = format, fac, num
	lines[dupRow] = strings.Join(cells, ",")
	bad, err := importWriteTemp(dir, "import-dup-*.csv", []byte(strings.Join(lines, "\n")))
	if err != nil {
		return err
	}
	defer os.Remove(bad)
	buf = bytes.Buffer{}
	lines = nil

	suffix := fmt.Sprintf("_%dk", p.rows/1000)
	floor, err := importBest(p.runs, func() error { return importCSVFloor(good) })
	if err != nil {
		return err
	}
	var heap float64
	total, err := importBest(p.runs, func() error {
		res, err := importFile(ctx, good)
		if err != nil {
			return err
		}
		if len(res.Rows) != p.rows {
			return fmt.Errorf("import: %d rows, want %d", len(res.Rows), p.rows)
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heap = float64(ms.HeapAlloc) / (1 << 20)
		runtime.KeepAlive(res)
		return nil
	})
	if err != nil {
		return err
	}
	emit(NewResult("import", "total_s"+suffix, total.Seconds(), "s", floor.Seconds()))
	emit(NewResult("import", "rows_per_s"+suffix, float64(p.rows)/total.Seconds(), "rows/s", float64(p.rows)/floor.Seconds()))
	reject, err := importBest(p.runs, func() error {
		_, err := importFile(ctx, bad)
		var rep *importer.Report
		if !errors.As(err, &rep) {
			return fmt.Errorf("import with a duplicate: %v, want a report", err)
		}
		if len(rep.Errors) != 1 || rep.Errors[0].Line != dupRow+1 {
			return fmt.Errorf("import with a duplicate: report %v, want line %d only", rep, dupRow+1)
		}
		return nil
	})
	if err != nil {
		return err
	}
	emit(NewResult("import", "reject_total_s"+suffix, reject.Seconds(), "s", floor.Seconds()))
	emit(NewResult("import", "heap_mb"+suffix, heap, "MiB", 0))
	return nil
}

// importWriteTemp writes data to a new file in dir and returns its name.
func importWriteTemp(dir, pattern string, data []byte) (string, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// importBest runs f n times and returns the shortest duration.
func importBest(n int, f func() error) (time.Duration, error) {
	var min time.Duration
	for range n {
		start := time.Now()
		if err := f(); err != nil {
			return 0, err
		}
		if d := time.Since(start); min == 0 || d < min {
			min = d
		}
	}
	return min, nil
}

// importCSVFloor reads every record of the file with encoding/csv and nothing else.
func importCSVFloor(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.ReuseRecord = true
	r.FieldsPerRecord = -1
	for {
		_, err := r.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// importFile imports the file with in-memory lookups that know the synthetic
// groups and occupiers and hold no card numbers.
func importFile(ctx context.Context, name string) (*importer.Result, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
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
	taken := map[access.CardNumber]bool{}
	return importer.Import(ctx, f, importer.Options{
		Kind:      access.Occupier,
		Groups:    resolve,
		Occupiers: resolve,
		CardsTaken: func(_ context.Context, nums []access.CardNumber) ([]access.CardNumber, error) {
			var out []access.CardNumber
			for _, n := range nums {
				if taken[n] {
					out = append(out, n)
				}
			}
			return out, nil
		},
	})
}

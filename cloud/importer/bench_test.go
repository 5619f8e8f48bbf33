package importer

import (
	"bytes"
	"context"
	"testing"

	"github.com/gatehouse/gatehouse/access"
)

// BenchmarkImport100k validates and builds a 100,000-row file with every
// lookup in memory.
func BenchmarkImport100k(b *testing.B) {
	data := synthetic(b, 100_000)
	p := newPlatform()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		opt := p.options(access.Occupier)
		res, err := Import(context.Background(), bytes.NewReader(data), opt)
		if err != nil || len(res.Rows) != 100_000 {
			b.Fatal(err)
		}
	}
}

package hubstate

import (
	"fmt"
	"testing"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/replication"
)

// BenchmarkPlanScope measures what scoping adds to a bulk import: planning
// the scoped records of 100,000 people, each with a card and a grant of
// one of two sites' groups (300,000 deltas).
func BenchmarkPlanScope(b *testing.B) {
	const n = 100_000
	w, err := replication.NewWriter(Origin, nil)
	if err != nil {
		b.Fatal(err)
	}
	clock, _ := replication.NewClock(Origin, 0, nil)
	s := &State{rep: replication.NewReplica(), scope: newScopeIndex()}
	var ds []replication.Delta
	mk := func(k replication.Kind, id string, ops ...replication.Op) {
		d, err := w.Make(clock.Now(), k, id, ops...)
		if err != nil {
			b.Fatal(err)
		}
		ds = append(ds, d)
	}
	tid := func(i int) string { return fmt.Sprintf("01JBX%021d", i) }
	mk(replication.KindGroup, tid(1), replication.SetOp("site", tid(11)))
	mk(replication.KindGroup, tid(2), replication.SetOp("site", tid(12)))
	for i := range n {
		p := tid(1000 + i)
		mk(replication.KindPerson, p, replication.SetOp("name", "P"), replication.SetOp("kind", "occupier"))
		mk(replication.KindCard, access.CardNumber(100_000+i).String(), replication.AddOp("holders", p))
		mk(replication.KindGrant, tid(1_000_000+i), replication.Op{Type: replication.OpGrant,
			Value: replication.GrantValue(access.Grant{HolderID: access.ID(p), GroupID: access.ID(tid(1 + i%2))})})
	}
	b.ResetTimer()
	for range b.N {
		p := s.planScope(ds)
		if len(p.appends()) != 2 {
			b.Fatal("want two sites' appends")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/100k-people")
}

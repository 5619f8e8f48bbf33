package hubstate

import (
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/replication"
)

// BenchmarkPlanArrival measures what scoping adds to a site's batches at
// the hub: planning 100,000 deltas of a site's normal lane (visits with
// their visitors, as a site's kiosk makes them), none of which concerns
// another site, in batches of 4,096 as Apply commits them.
func BenchmarkPlanArrival(b *testing.B) {
	const n = 100_000
	site := fmt.Sprintf("01JBX%021d", 7)
	w, err := replication.NewWriter(site, nil)
	if err != nil {
		b.Fatal(err)
	}
	tid := func(i int) string { return fmt.Sprintf("01JBX%021d", i) }
	var ds []replication.Delta
	for i := range n {
		var d replication.Delta
		if i%2 == 0 {
			d, err = w.Make(replication.Stamp{Wall: time.Now().UnixNano(), Origin: site}, replication.KindPerson, tid(1000+i),
				replication.SetOp("name", "V"), replication.SetOp("kind", "visitor"))
		} else {
			d, err = w.Make(replication.Stamp{Wall: time.Now().UnixNano(), Origin: site}, replication.KindVisit, tid(1000+i),
				replication.SetOp("site", site), replication.SetOp("visitor", tid(1000+i-1)), replication.AdvanceOp(access.VisitInvited))
		}
		if err != nil {
			b.Fatal(err)
		}
		ds = append(ds, d)
	}
	s := &State{rep: replication.NewReplica(), scope: newScopeIndex()}
	b.ResetTimer()
	for range b.N {
		s.scope = newScopeIndex()
		for i := 0; i < n; i += commitItems {
			p := s.planArrival(ds[i:min(i+commitItems, n)])
			if len(p.order) != 0 {
				b.Fatal("a site's own visits scoped to another site")
			}
			p.merge()
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/100k-deltas")
}

package uplink_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/edge/uplink"
	"github.com/gatehouse/gatehouse/replication"
)

// replicaSite is a Site over an in-memory replica (a function of the
// Site seam; the hub, its store and the stream are real).
type replicaSite struct {
	mu      sync.Mutex
	rep     *replication.Replica
	changed chan struct{}
}

func (s *replicaSite) Leader() bool { return true }
func (s *replicaSite) Vector() replication.Vector {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rep.Vector()
}
func (s *replicaSite) OwnVector() replication.Vector {
	v := replication.Vector{}
	for src, n := range s.Vector() {
		if src.Origin == testSite {
			v[src] = n
		}
	}
	return v
}
func (s *replicaSite) Deltas(src replication.Source, after uint64, max int) ([]replication.Delta, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rep.Deltas(src, after, max)
}
func (s *replicaSite) ApplyDeltas(_ context.Context, ds []replication.Delta) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(ds) == 0 {
		return nil
	}
	err := s.rep.ApplyBatch(ds[0].Source(), ds)
	close(s.changed)
	s.changed = make(chan struct{})
	return err
}
func (s *replicaSite) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// TestDigestsFromSite: the site's copy of the hub's lane holds one delta
// silently changed. Both ends send a digest as the session opens (the
// uplink's is wired by digest.go's hook); the mismatch is narrowed to that
// delta and reported on both ends (the uplink's Divergences, the hub's),
// nothing replaced.
func TestDigestsFromSite(t *testing.T) {
	h := openHub(t, t.TempDir())
	h.write(t, func(tx *hubstate.Tx) {
		for i := range 150 {
			tx.Change(replication.KindZone, newID(t), replication.SetOp("site", testSite), replication.SetOp("name", fmt.Sprint("zone ", i)))
		}
	})
	src := replication.Source{Origin: hubstate.Origin, Lane: replication.LaneNormal}
	ds, err := h.state.Deltas(src, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	const bad = 93
	site := &replicaSite{rep: replication.NewReplica(), changed: make(chan struct{})}
	for _, d := range ds {
		if d.Seq == bad {
			d.Ops = []replication.Op{replication.SetOp("name", "silently different")}
		}
		if _, err := site.rep.Apply(d); err != nil {
			t.Fatal(err)
		}
	}
	u, err := uplink.New(uplink.Config{SiteID: testSite, HubURL: "http://" + h.Addr(), Token: siteToken,
		Logger: testLogger(t, 0)}, site)
	if err != nil {
		t.Fatal(err)
	}
	u.Open()
	defer u.Close()
	want := replication.Divergence{Source: src, Seq: bad}
	waitFor(t, "the uplink to report the divergence", func() bool { return len(u.Divergences()) > 0 })
	if d := u.Divergences(); len(d) != 1 || d[0] != want {
		t.Fatalf("uplink divergences %v, want %v", d, want)
	}
	waitFor(t, "the hub to report it too", func() bool { return len(h.srv.Divergences(testSite)) > 0 })
	got, _ := site.Deltas(src, bad-1, 1)
	if got[0].Ops[0].Value != "silently different" {
		t.Fatalf("the site's delta %d was replaced: %+v", bad, got[0])
	}
}

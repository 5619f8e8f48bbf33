package sitestate

import (
	"crypto/rand"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
	"github.com/gatehouse/gatehouse/replication"
)

// BenchmarkApplyGrants measures what the state machine costs per command on
// every node under the load of `gatehouse bench write`: new live grants
// with request IDs, spread over 10,000 people, 64 commands per entry, each
// entry in one Badger transaction; one op is one command. "fresh" is a new
// site (no request record has expired yet, as in the benchmark);
// "expiring" is a site that has run longer than the dedup window, where
// every command prunes the record that has just expired (a 1 s window
// here, commands stamped 1 ms apart); "expiring-iterating" prunes by
// iterating the transaction, as before pruneState.
func BenchmarkApplyGrants(b *testing.B) {
	b.Run("fresh", func(b *testing.B) { benchApplyGrants(b, 0) })
	b.Run("expiring", func(b *testing.B) { benchApplyGrants(b, time.Second) })
	b.Run("expiring-iterating", func(b *testing.B) {
		pruneFromCommitted = false
		b.Cleanup(func() { pruneFromCommitted = true })
		benchApplyGrants(b, time.Second)
	})
}

func benchApplyGrants(b *testing.B, window time.Duration) {
	db := MustOpenDB(b)
	m := New(siteID, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if window > 0 {
		m.SetDedupWindow(window)
	}
	if err := m.Load(db); err != nil {
		b.Fatal(err)
	}
	index, wall := uint64(0), now
	entry := func(cmds []*raftv1.Command) {
		index++
		txn := db.NewTransaction(true)
		defer txn.Discard()
		for _, c := range cmds {
			wall = wall.Add(time.Millisecond)
			c.Stamp = &accessv1.Stamp{WallUnixNano: wall.UnixNano(), Origin: string(siteID)}
			res, err := m.Apply(txn, index, c)
			if err != nil {
				b.Fatal(err)
			}
			if res.GetErrorCode() != "" {
				b.Fatalf("%T: %s", c.GetOp(), res.GetError())
			}
		}
		if err := txn.Commit(); err != nil {
			b.Fatal(err)
		}
		m.Committed(index, cmds, nil)
	}
	entry(siteCmds())
	const people = 10000
	ids := make([]string, people)
	gen := access.NewIDGen(rand.Reader)
	for i := range ids {
		id, err := gen.New(now)
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = string(id)
	}
	for i := 0; i < people; i += 500 {
		var cmds []*raftv1.Command
		for _, id := range ids[i:min(i+500, people)] {
			cmds = append(cmds, &raftv1.Command{Op: &raftv1.Command_PutPerson{PutPerson: &accessv1.Person{Id: id,
				Kind: accessv1.PersonKind_PERSON_KIND_ACCESS_USER, Name: "P " + id, Active: true}}})
		}
		entry(cmds)
	}
	const perEntry = 64
	grants := func(n, from int) {
		for done := 0; done < n; done += perEntry {
			cmds := make([]*raftv1.Command, min(perEntry, n-done))
			for i := range cmds {
				id, err := gen.New(now)
				if err != nil {
					b.Fatal(err)
				}
				cmds[i] = &raftv1.Command{Actor: "bench", RequestId: "bench-" + string(id),
					Op: &raftv1.Command_PutGrant{PutGrant: &accessv1.Grant{Id: string(id),
						HolderId: ids[(from+done+i)*7919%people], GroupId: string(groupID)}}}
			}
			entry(cmds)
		}
	}
	if window > 0 {
		// Past the window: from here on every command finds an expired
		// record.
		grants(int(2*window/time.Millisecond), 0)
	}
	b.ReportAllocs()
	b.ResetTimer()
	grants(b.N, 0)
}

// BenchmarkApplyDeltas measures what every node of a site spends per delta
// the hub sends during `gatehouse bench catchup`: ApplyDeltas commands of
// 2,000 new zones each (what one 256 KiB command of the uplink carries),
// each command in one Badger transaction as raftnode applies an entry;
// one op is one delta.
func BenchmarkApplyDeltas(b *testing.B) {
	db := MustOpenDB(b)
	m := New(siteID, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := m.Load(db); err != nil {
		b.Fatal(err)
	}
	w, err := replication.NewWriter("hub", nil)
	if err != nil {
		b.Fatal(err)
	}
	gen := access.NewIDGen(rand.Reader)
	index, wall := uint64(0), now.UnixNano()
	apply := func(cmds ...*raftv1.Command) {
		index++
		txn := db.NewTransaction(true)
		defer txn.Discard()
		for _, c := range cmds {
			res, err := m.Apply(txn, index, c)
			if err != nil {
				b.Fatal(err)
			}
			if res.GetErrorCode() != "" {
				b.Fatalf("%T: %s", c.GetOp(), res.GetError())
			}
		}
		if err := txn.Commit(); err != nil {
			b.Fatal(err)
		}
		m.Committed(index, cmds, nil)
	}
	apply(siteCmds()...)
	const perCmd = 2000
	// The deltas are made before the clock starts: the hub's work.
	var cmds []*raftv1.Command
	for done := 0; done < b.N; done += perCmd {
		op := &raftv1.ApplyDeltas{}
		for i := 0; i < min(perCmd, b.N-done); i++ {
			id, err := gen.New(now)
			if err != nil {
				b.Fatal(err)
			}
			wall += 1000
			d, err := w.Make(replication.Stamp{Wall: wall, Origin: "hub"}, replication.KindZone, string(id),
				replication.SetOp("site", string(siteID)), replication.SetOp("name", "hub zone "+string(id)))
			if err != nil {
				b.Fatal(err)
			}
			enc, err := d.MarshalBinary()
			if err != nil {
				b.Fatal(err)
			}
			op.Deltas = append(op.Deltas, enc)
		}
		cmds = append(cmds, &raftv1.Command{Actor: "hub", Op: &raftv1.Command_ApplyDeltas{ApplyDeltas: op}})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for _, c := range cmds {
		apply(c)
	}
}

package syncwire_test

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	syncv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/sync/v1"
	"github.com/gatehouse/gatehouse/replication"
	"github.com/gatehouse/gatehouse/syncwire"
)

const siteA = "01JBX000000000000000000001"

func tid(n int) string { return fmt.Sprintf("01JBX%021d", n) }

// FuzzFromWire feeds arbitrary protobuf bytes to the decoder of session
// messages: it never panics, and what it accepts encodes back to a message
// it decodes to the same thing.
func FuzzFromWire(f *testing.F) {
	d := replication.Delta{Origin: siteA, Lane: replication.LaneNormal, Seq: 1,
		Stamp: replication.Stamp{Wall: time.Unix(1_800_000_000, 0).UnixNano(), Origin: siteA},
		Kind:  replication.KindVisit, ID: tid(1), Ops: []replication.Op{replication.SetOp("site", siteA)}}
	for _, m := range []replication.Message{
		{Type: replication.MsgHello, Vector: replication.Vector{{Origin: siteA, Lane: replication.LaneNormal}: 3}},
		{Type: replication.MsgAck, Vector: replication.Vector{}},
		{Type: replication.MsgBatch, Source: d.Source(), Deltas: []replication.Delta{d}},
		{Type: replication.MsgDigest, Digests: []replication.DigestEntry{{Source: d.Source(), Seq: 3, Hash: replication.Hash{7}},
			{Source: d.Source(), Lo: 1, Seq: 2, Hi: 3}, {Source: d.Source(), Seq: 2, Diverged: true}}},
	} {
		pm, err := syncwire.ToWire(siteA, m)
		if err != nil {
			f.Fatal(err)
		}
		b, _ := proto.Marshal(pm)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var pm syncv1.SessionMessage
		if proto.Unmarshal(data, &pm) != nil {
			return
		}
		m, err := syncwire.FromWire(siteA, &pm)
		if err != nil {
			return
		}
		again, err := syncwire.ToWire(siteA, m)
		if err != nil {
			t.Fatalf("accepted %v but cannot encode it: %v", m, err)
		}
		m2, err := syncwire.FromWire(siteA, again)
		if err != nil {
			t.Fatalf("re-encoded message refused: %v", err)
		}
		if m.Type != m2.Type || !m.Vector.Equal(m2.Vector) || m.Source != m2.Source || len(m.Deltas) != len(m2.Deltas) ||
			fmt.Sprint(m.Digests) != fmt.Sprint(m2.Digests) {
			t.Fatalf("round trip changed %+v into %+v", m, m2)
		}
	})
}

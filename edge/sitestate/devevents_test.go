package sitestate

import (
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/gatehouse/gatehouse/access"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	edgev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

var ctrlID = access.ID("01J00000000000000000000C7X")

func devEvents(skip uint64, seqs ...uint64) *raftv1.Command {
	op := &raftv1.RecordDeviceEvents{DeviceId: string(ctrlID), SkipTo: skip}
	for _, s := range seqs {
		op.Events = append(op.Events, &accessv1.AccessEvent{DeviceSeq: s, DoorId: string(doorID), Type: "door_opened", AtMs: now.UnixMilli()})
	}
	return &raftv1.Command{Op: &raftv1.Command_RecordDeviceEvents{RecordDeviceEvents: op}}
}

// deviceSeqs returns the device sequence numbers in the event log, in
// site sequence order.
func (f *fixture) deviceSeqs() []uint64 {
	f.t.Helper()
	var out []uint64
	err := f.db.View(func(txn *badger.Txn) error {
		evs, err := ReadEvents(txn, 0, 1000)
		for _, e := range evs {
			if e.GetDeviceId() != string(ctrlID) {
				f.t.Errorf("event %d: device %q", e.GetSeq(), e.GetDeviceId())
			}
			out = append(out, e.GetDeviceSeq())
		}
		return err
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

func TestRecordDeviceEvents(t *testing.T) {
	f := newFixture(t)
	f.mustApply(devEvents(0, 1, 2, 3))
	// Duplicates are skipped; the rest is recorded.
	f.mustApply(devEvents(0, 2, 3, 4))
	// A gap stops recording at the gap.
	f.mustApply(devEvents(0, 5, 7, 8))
	if got, want := f.m.DeviceSeq(ctrlID), uint64(5); got != want {
		t.Fatalf("watermark %d, want %d", got, want)
	}
	// The same command applied twice in one entry (a split transaction
	// re-applies it) records its events once.
	cmd := devEvents(0, 6)
	f.index++
	for range 2 {
		txn := f.db.NewTransaction(true)
		if _, err := f.m.Apply(txn, f.index, cmd); err != nil {
			t.Fatal(err)
		}
		txn.Discard()
	}
	txn := f.db.NewTransaction(true)
	if res, err := f.m.Apply(txn, f.index, cmd); err != nil || res.GetErrorCode() != "" {
		t.Fatal(err, res)
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	// A permanent gap: the device no longer holds 7..9.
	f.mustApply(devEvents(9, 10))
	if got, want := f.deviceSeqs(), []uint64{1, 2, 3, 4, 5, 6, 10}; !equal(got, want) {
		t.Errorf("recorded %v, want %v", got, want)
	}
	// The watermark survives a reload from Badger.
	m2 := New(siteID, f.m.log)
	if err := m2.Load(f.db); err != nil {
		t.Fatal(err)
	}
	if got, want := m2.DeviceSeq(ctrlID), uint64(10); got != want {
		t.Errorf("watermark after load %d, want %d", got, want)
	}
	if codes := f.apply(&raftv1.Command{Op: &raftv1.Command_RecordDeviceEvents{RecordDeviceEvents: &raftv1.RecordDeviceEvents{DeviceId: "nope"}}}); codes[0] != string(access.Invalid) {
		t.Errorf("bad device id: code %q", codes[0])
	}
}

func TestChangedSignalsStateChanges(t *testing.T) {
	f := newFixture(t)
	ch := f.m.Changed()
	f.m.Committed(1, []*raftv1.Command{devEvents(0, 1)}, nil)
	select {
	case <-ch:
		t.Fatal("event recording signalled a change")
	default:
	}
	f.m.Committed(2, siteCmds(), nil)
	select {
	case <-ch:
	default:
		t.Fatal("a site change was not signalled")
	}
}

// TestEventsRecordedSignalsEvents: recording events closes EventsRecorded
// (and not Changed); other changes, and a failed recording, do not.
func TestEventsRecordedSignalsEvents(t *testing.T) {
	f := newFixture(t)
	ev := f.m.EventsRecorded()
	f.m.Committed(1, siteCmds(), nil)
	select {
	case <-ev:
		t.Fatal("a site change signalled recorded events")
	default:
	}
	f.m.Committed(2, []*raftv1.Command{devEvents(0, 1)}, []*edgev1.CommandResult{{ErrorCode: string(access.Invalid)}})
	select {
	case <-ev:
		t.Fatal("a refused recording signalled recorded events")
	default:
	}
	ch := f.m.Changed()
	f.m.Committed(3, []*raftv1.Command{devEvents(0, 1)}, nil)
	select {
	case <-ev:
	default:
		t.Fatal("recorded events were not signalled")
	}
	select {
	case <-ch:
		t.Fatal("recorded events signalled a change")
	default:
	}
	// A load signals both: a restored snapshot may hold new events.
	ev, ch = f.m.EventsRecorded(), f.m.Changed()
	if err := f.m.Load(f.db); err != nil {
		t.Fatal(err)
	}
	for _, c := range []<-chan struct{}{ev, ch} {
		select {
		case <-c:
		default:
			t.Fatal("a load was not signalled")
		}
	}
}

func equal(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

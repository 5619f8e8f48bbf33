package sitestate

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/gatehouse/gatehouse/access"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

// MustOpenDB opens a real Badger database in a temporary directory.
func MustOpenDB(t testing.TB) *badger.DB {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(t.TempDir()).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

type fixture struct {
	t     *testing.T
	db    *badger.DB
	m     *Machine
	index uint64
}

func newFixture(t *testing.T) *fixture {
	return &fixture{t: t, db: MustOpenDB(t), m: New(siteID, slog.New(slog.NewTextHandler(io.Discard, nil)))}
}

// apply runs cmds as one entry in one transaction and returns the error
// codes of the results ("" for success).
func (f *fixture) apply(cmds ...*raftv1.Command) []string {
	f.t.Helper()
	f.index++
	txn := f.db.NewTransaction(true)
	defer txn.Discard()
	var codes []string
	for _, c := range cmds {
		res, err := f.m.Apply(txn, f.index, c)
		if err != nil {
			f.t.Fatalf("storage error: %v", err)
		}
		codes = append(codes, res.GetErrorCode())
	}
	if err := txn.Commit(); err != nil {
		f.t.Fatal(err)
	}
	return codes
}

func (f *fixture) mustApply(cmds ...*raftv1.Command) {
	f.t.Helper()
	for i, code := range f.apply(cmds...) {
		if code != "" {
			f.t.Fatalf("command %d (%T) failed with %s", i, cmds[i].GetOp(), code)
		}
	}
}

var (
	siteID   = access.ID("01J00000000000000000000S1T")
	zoneID   = access.ID("01J00000000000000000000Z0N")
	doorID   = access.ID("01J00000000000000000000D00")
	groupID  = access.ID("01J00000000000000000000GRP")
	aliceID  = access.ID("01J0000000000000000000A1CE")
	bobID    = access.ID("01J00000000000000000000B0B")
	grantID  = access.ID("01J00000000000000000000GR1")
	visitID  = access.ID("01J00000000000000000000V1S")
	guestID  = access.ID("01J00000000000000000000GST")
	now      = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	aliceNum = uint64(4242)
)

func siteCmds() []*raftv1.Command {
	return []*raftv1.Command{
		{Op: &raftv1.Command_PutSite{PutSite: &accessv1.Site{Id: string(siteID), Name: "HQ", TimeZone: "Europe/Berlin"}}},
		{Op: &raftv1.Command_PutZone{PutZone: &accessv1.Zone{Id: string(zoneID), SiteId: string(siteID), Name: "Lobby"}}},
		{Op: &raftv1.Command_PutDoor{PutDoor: &accessv1.Door{Id: string(doorID), SiteId: string(siteID), ZoneId: string(zoneID), Name: "Main", Direction: accessv1.Direction_DIRECTION_IN}}},
		{Op: &raftv1.Command_PutGroup{PutGroup: &accessv1.Group{Id: string(groupID), SiteId: string(siteID), Name: "Staff", DoorIds: []string{string(doorID)}, Kind: accessv1.GroupKind_GROUP_KIND_ACCESS}}},
		{Op: &raftv1.Command_PutPerson{PutPerson: &accessv1.Person{Id: string(aliceID), Kind: accessv1.PersonKind_PERSON_KIND_ACCESS_USER, Name: "Alice", Active: true}}},
		{Op: &raftv1.Command_PutCard{PutCard: &accessv1.Card{Number: aliceNum, PersonId: string(aliceID), Status: accessv1.CardStatus_CARD_STATUS_ACTIVE}}},
		{Op: &raftv1.Command_PutGrant{PutGrant: &accessv1.Grant{Id: string(grantID), HolderId: string(aliceID), GroupId: string(groupID)}}},
	}
}

func (f *fixture) decide(card uint64) access.Decision {
	return f.m.Decide(access.Request{Card: access.CardNumber(card), Door: doorID, At: now, Mode: access.Online})
}

func TestApplyAndDecide(t *testing.T) {
	f := newFixture(t)
	f.mustApply(siteCmds()...)
	if d := f.decide(aliceNum); !d.Grant {
		t.Fatalf("alice denied: %v", d.Reason)
	}
	// Revocation: removing the grant denies; a stale re-put of the grant
	// does not resurrect it.
	f.mustApply(&raftv1.Command{Op: &raftv1.Command_RemoveGrant{RemoveGrant: &raftv1.RemoveGrant{GrantId: string(grantID)}}})
	if d := f.decide(aliceNum); d.Grant || d.Reason != access.ReasonNoGroup {
		t.Fatalf("after revocation: %+v", d)
	}
	f.mustApply(siteCmds()[6])
	if d := f.decide(aliceNum); d.Grant {
		t.Fatal("a stale grant resurrected a revocation")
	}
}

func TestLoadRebuildsIndex(t *testing.T) {
	f := newFixture(t)
	f.mustApply(siteCmds()...)
	f.mustApply(&raftv1.Command{Op: &raftv1.Command_RecordEvents{RecordEvents: &raftv1.RecordEvents{Events: []*accessv1.AccessEvent{
		{AtMs: now.UnixMilli(), DoorId: string(doorID), Card: aliceNum, Granted: true, Reason: accessv1.Reason_REASON_GRANTED},
	}}}})
	fresh := New(siteID, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := fresh.Load(f.db); err != nil {
		t.Fatal(err)
	}
	if d := fresh.Decide(access.Request{Card: access.CardNumber(aliceNum), Door: doorID, At: now, Mode: access.Online}); !d.Grant {
		t.Fatalf("reloaded state denies alice: %v", d.Reason)
	}
	if got, want := fresh.LastSeq(), uint64(1); got != want {
		t.Fatalf("LastSeq = %d, want %d", got, want)
	}
	var got, want access.Counts
	fresh.View(func(st *access.State) { got = st.Counts() })
	f.m.View(func(st *access.State) { want = st.Counts() })
	// Passages are derived from events and are not persisted as entities.
	want.Passages, got.Passages = 0, 0
	if got != want {
		t.Fatalf("reloaded counts %+v, want %+v", got, want)
	}
}

func TestRecordEventsSequence(t *testing.T) {
	f := newFixture(t)
	f.mustApply(siteCmds()...)
	ev := func(n int) *raftv1.Command {
		var evs []*accessv1.AccessEvent
		for range n {
			evs = append(evs, &accessv1.AccessEvent{AtMs: now.UnixMilli(), DoorId: string(doorID), Card: 1, Reason: accessv1.Reason_REASON_UNKNOWN_CARD})
		}
		return &raftv1.Command{Op: &raftv1.Command_RecordEvents{RecordEvents: &raftv1.RecordEvents{Events: evs}}}
	}
	f.mustApply(ev(3), ev(2))
	if got, want := f.m.LastSeq(), uint64(5); got != want {
		t.Fatalf("LastSeq = %d, want %d", got, want)
	}
	// Re-applying the same command at the same index (raftnode's split
	// retry) keeps its sequence numbers.
	c := ev(4)
	txn := f.db.NewTransaction(true)
	r1, _ := f.m.Apply(txn, 99, c)
	txn.Discard()
	txn = f.db.NewTransaction(true)
	r2, _ := f.m.Apply(txn, 99, c)
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	if r1.GetFirstSeq() != 6 || r2.GetFirstSeq() != 6 || f.m.LastSeq() != 9 {
		t.Fatalf("re-apply: first seqs %d, %d, last %d; want 6, 6, 9", r1.GetFirstSeq(), r2.GetFirstSeq(), f.m.LastSeq())
	}
}

func TestBadCommands(t *testing.T) {
	otherSite := access.ID("01J00000000000000000000THR")
	for _, tc := range []struct {
		name string
		cmd  *raftv1.Command
		want access.Code
	}{
		{"ErrNoOp", &raftv1.Command{}, access.Invalid},
		{"ErrOtherSite", &raftv1.Command{Op: &raftv1.Command_PutDoor{PutDoor: &accessv1.Door{Id: string(doorID), SiteId: string(otherSite), Name: "x"}}}, access.Denied},
		{"ErrPutOtherSiteRecord", &raftv1.Command{Op: &raftv1.Command_PutSite{PutSite: &accessv1.Site{Id: string(otherSite), Name: "x", TimeZone: "UTC"}}}, access.Denied},
		{"ErrBadTimeZone", &raftv1.Command{Op: &raftv1.Command_PutSite{PutSite: &accessv1.Site{Id: string(siteID), Name: "x", TimeZone: "Mars/Olympus"}}}, access.Invalid},
		{"ErrCardTaken", &raftv1.Command{Op: &raftv1.Command_PutCard{PutCard: &accessv1.Card{Number: aliceNum, PersonId: string(bobID), Status: accessv1.CardStatus_CARD_STATUS_ACTIVE}}}, access.Conflict},
		{"ErrCardZero", &raftv1.Command{Op: &raftv1.Command_PutCard{PutCard: &accessv1.Card{PersonId: string(bobID), Status: accessv1.CardStatus_CARD_STATUS_ACTIVE}}}, access.Invalid},
		{"ErrUnknownCardStatus", &raftv1.Command{Op: &raftv1.Command_SetCardStatus{SetCardStatus: &raftv1.SetCardStatus{Number: 777, Status: accessv1.CardStatus_CARD_STATUS_SUSPENDED}}}, access.NotFound},
		{"ErrBadStatus", &raftv1.Command{Op: &raftv1.Command_SetCardStatus{SetCardStatus: &raftv1.SetCardStatus{Number: aliceNum, Status: 99}}}, access.Invalid},
		{"ErrRemoveUnknownCard", &raftv1.Command{Op: &raftv1.Command_RemoveCard{RemoveCard: &raftv1.RemoveCard{Number: 777}}}, access.NotFound},
		{"ErrRemoveGrantBadID", &raftv1.Command{Op: &raftv1.Command_RemoveGrant{RemoveGrant: &raftv1.RemoveGrant{GrantId: "nope"}}}, access.Invalid},
		{"ErrAdvanceUnknownVisit", &raftv1.Command{Op: &raftv1.Command_AdvanceVisit{AdvanceVisit: &raftv1.AdvanceVisit{VisitId: string(visitID), State: accessv1.VisitState_VISIT_STATE_CHECKED_IN}}}, access.NotFound},
		{"ErrDeleteUnknown", &raftv1.Command{Op: &raftv1.Command_DeletePerson{DeletePerson: &raftv1.DeletePerson{PersonId: string(bobID)}}}, access.NotFound},
		{"ErrNoEvents", &raftv1.Command{Op: &raftv1.Command_RecordEvents{RecordEvents: &raftv1.RecordEvents{}}}, access.Invalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.mustApply(siteCmds()...)
			var before access.Counts
			f.m.View(func(st *access.State) { before = st.Counts() })
			codes := f.apply(tc.cmd)
			if got := codes[0]; got != string(tc.want) {
				t.Fatalf("code = %q, want %q", got, tc.want)
			}
			var after access.Counts
			f.m.View(func(st *access.State) { after = st.Counts() })
			if after != before {
				t.Fatalf("a refused command changed the state: %+v -> %+v", before, after)
			}
			if d := f.decide(aliceNum); !d.Grant {
				t.Fatalf("a refused command changed a decision: %v", d.Reason)
			}
		})
	}
}

func TestVisitLifecycleForwardOnly(t *testing.T) {
	f := newFixture(t)
	f.mustApply(siteCmds()...)
	visit := &accessv1.Visit{Id: string(visitID), SiteId: string(siteID), HostId: string(aliceID), VisitorId: string(guestID),
		FromMs: now.Add(-time.Hour).UnixMilli(), UntilMs: now.Add(time.Hour).UnixMilli(), State: accessv1.VisitState_VISIT_STATE_INVITED}
	adv := func(s accessv1.VisitState) *raftv1.Command {
		return &raftv1.Command{Op: &raftv1.Command_AdvanceVisit{AdvanceVisit: &raftv1.AdvanceVisit{VisitId: string(visitID), State: s}}}
	}
	f.mustApply(&raftv1.Command{Op: &raftv1.Command_PutVisit{PutVisit: visit}}, adv(accessv1.VisitState_VISIT_STATE_CHECKED_OUT))
	if got := f.apply(adv(accessv1.VisitState_VISIT_STATE_CHECKED_IN))[0]; got != string(access.Conflict) {
		t.Fatalf("reopening a checked-out visit: code %q, want conflict", got)
	}
	// A stale put of the visit does not move it back either.
	f.mustApply(&raftv1.Command{Op: &raftv1.Command_PutVisit{PutVisit: visit}})
	f.m.View(func(st *access.State) {
		v, _ := st.Visit(visitID)
		if v.State != access.VisitCheckedOut {
			t.Fatalf("visit state = %v, want checked_out", v.State)
		}
	})
}

func TestDevices(t *testing.T) {
	f := newFixture(t)
	f.mustApply(siteCmds()...)
	dev := access.ID("01J00000000000000000000DEV")
	put := &raftv1.Command{Op: &raftv1.Command_PutDevice{PutDevice: &accessv1.Device{Id: string(dev), SiteId: string(siteID),
		Kind: accessv1.DeviceKind_DEVICE_KIND_READER, DoorId: string(doorID), SecretHash: access.HashSecret([]byte("s3cret-s3cret-s3cret"))}}}
	f.mustApply(put)
	fresh := New(siteID, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := fresh.Load(f.db); err != nil {
		t.Fatal(err)
	}
	fresh.View(func(st *access.State) {
		d, ok := st.Device(dev)
		if !ok || !d.Authenticate([]byte("s3cret-s3cret-s3cret")) || d.Authenticate([]byte("guess")) {
			t.Fatalf("reloaded device %+v does not authenticate as it should", d)
		}
	})
	noDoor := &raftv1.Command{Op: &raftv1.Command_PutDevice{PutDevice: &accessv1.Device{Id: string(dev), SiteId: string(siteID),
		Kind: accessv1.DeviceKind_DEVICE_KIND_READER, SecretHash: access.HashSecret([]byte("x"))}}}
	if got := f.apply(noDoor)[0]; got != string(access.Invalid) {
		t.Fatalf("reader without door: %q, want invalid", got)
	}
	f.mustApply(&raftv1.Command{Op: &raftv1.Command_RemoveDevice{RemoveDevice: &raftv1.RemoveDevice{DeviceId: string(dev)}}})
	f.m.View(func(st *access.State) {
		if _, ok := st.Device(dev); ok {
			t.Fatal("removed device still known")
		}
	})
}

func TestDeletePersonFreesCard(t *testing.T) {
	f := newFixture(t)
	f.mustApply(siteCmds()...)
	f.mustApply(&raftv1.Command{Op: &raftv1.Command_DeletePerson{DeletePerson: &raftv1.DeletePerson{PersonId: string(aliceID)}}})
	if d := f.decide(aliceNum); d.Grant || d.Reason != access.ReasonUnknownCard {
		t.Fatalf("deleted person's card: %+v", d)
	}
	// The number is free for someone else; the deleted person never comes back.
	codes := f.apply(
		&raftv1.Command{Op: &raftv1.Command_PutPerson{PutPerson: &accessv1.Person{Id: string(bobID), Kind: accessv1.PersonKind_PERSON_KIND_ACCESS_USER, Name: "Bob", Active: true}}},
		&raftv1.Command{Op: &raftv1.Command_PutCard{PutCard: &accessv1.Card{Number: aliceNum, PersonId: string(bobID), Status: accessv1.CardStatus_CARD_STATUS_ACTIVE}}},
		&raftv1.Command{Op: &raftv1.Command_PutPerson{PutPerson: &accessv1.Person{Id: string(aliceID), Kind: accessv1.PersonKind_PERSON_KIND_ACCESS_USER, Name: "Alice", Active: true}}},
	)
	if codes[0] != "" || codes[1] != "" || codes[2] != string(access.Conflict) {
		t.Fatalf("codes = %q, want [\"\" \"\" conflict]", codes)
	}
}

// TestEnumNumbering asserts that the wire enums and the domain enums are
// numbered alike, which the conversions rely on.
func TestEnumNumbering(t *testing.T) {
	checks := []struct {
		name       string
		wire, mine int
	}{
		{"direction in", int(accessv1.Direction_DIRECTION_IN), int(access.DirIn)},
		{"direction out", int(accessv1.Direction_DIRECTION_OUT), int(access.DirOut)},
		{"occupier", int(accessv1.PersonKind_PERSON_KIND_OCCUPIER), int(access.Occupier)},
		{"visitor", int(accessv1.PersonKind_PERSON_KIND_VISITOR), int(access.Visitor)},
		{"card returned", int(accessv1.CardStatus_CARD_STATUS_RETURNED), int(access.CardReturned)},
		{"visitor profile", int(accessv1.GroupKind_GROUP_KIND_VISITOR_PROFILE), int(access.GroupVisitorProfile)},
		{"visit requested", int(accessv1.VisitState_VISIT_STATE_REQUESTED), int(access.VisitRequested)},
		{"visit denied", int(accessv1.VisitState_VISIT_STATE_DENIED), int(access.VisitDenied)},
		{"device reader", int(accessv1.DeviceKind_DEVICE_KIND_READER), int(access.DeviceReader)},
		{"device dispenser", int(accessv1.DeviceKind_DEVICE_KIND_DISPENSER), int(access.DeviceDispenser)},
	}
	for _, r := range access.Reasons() {
		name := "REASON_" + upper(r.String())
		checks = append(checks, struct {
			name       string
			wire, mine int
		}{name, int(accessv1.Reason_value[name]), int(r)})
	}
	for _, c := range checks {
		if c.wire != c.mine {
			t.Errorf("%s: wire %d, domain %d", c.name, c.wire, c.mine)
		}
	}
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 32
		}
	}
	return string(b)
}

func TestRequestIDDedup(t *testing.T) {
	f := newFixture(t)
	f.mustApply(siteCmds()...)
	ev := func() *raftv1.Command {
		return &raftv1.Command{RequestId: "retry-1", Op: &raftv1.Command_RecordEvents{RecordEvents: &raftv1.RecordEvents{Events: []*accessv1.AccessEvent{
			{AtMs: now.UnixMilli(), DoorId: string(doorID), Card: 1, Reason: accessv1.Reason_REASON_UNKNOWN_CARD}}}}}
	}
	f.mustApply(ev())
	f.mustApply(ev()) // the retry: same request ID
	if got := f.m.LastSeq(); got != 1 {
		t.Fatalf("a retried command recorded again: last seq %d, want 1", got)
	}
	// A refused command keeps its refusal for retries too.
	bad := &raftv1.Command{RequestId: "retry-2", Op: &raftv1.Command_RemoveCard{RemoveCard: &raftv1.RemoveCard{Number: 999}}}
	if got := f.apply(bad)[0]; got != string(access.NotFound) {
		t.Fatalf("first: %q", got)
	}
	if got := f.apply(bad)[0]; got != string(access.NotFound) {
		t.Fatalf("retry: %q", got)
	}
	long := &raftv1.Command{RequestId: string(make([]byte, MaxRequestID+1)), Op: ev().GetOp()}
	if got := f.apply(long)[0]; got != string(access.Invalid) {
		t.Fatalf("oversized request id: %q, want invalid", got)
	}
}

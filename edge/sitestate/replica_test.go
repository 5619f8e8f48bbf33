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
	"github.com/gatehouse/gatehouse/replication"
)

// stamped gives each command a stamp of the site, as the leader would.
func stamped(wall int64, cmds ...*raftv1.Command) []*raftv1.Command {
	for i, c := range cmds {
		c.Stamp = &accessv1.Stamp{WallUnixNano: wall + int64(i), Origin: string(siteID)}
	}
	return cmds
}

// siteDeltas reads every delta of the site's own log from Badger.
func (f *fixture) siteDeltas() map[replication.Source][]replication.Delta {
	f.t.Helper()
	out := map[replication.Source][]replication.Delta{}
	err := f.db.View(func(txn *badger.Txn) error {
		for src := range f.m.OwnVector() {
			ds, err := ReadDeltas(txn, src, 0, 0)
			if err != nil {
				return err
			}
			out[src] = ds
		}
		return nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

// hub is a stand-in for the hub's replica: it applies what the site sends
// and makes deltas of origin "hub".
type hub struct {
	t    *testing.T
	rep  *replication.Replica
	w    *replication.Writer
	wall int64
}

func newHub(t *testing.T) *hub {
	w, err := replication.NewWriter("hub", nil)
	if err != nil {
		t.Fatal(err)
	}
	return &hub{t: t, rep: replication.NewReplica(), w: w, wall: now.UnixNano()}
}

// take applies the site's deltas to the hub's replica.
func (h *hub) take(logs map[replication.Source][]replication.Delta) {
	h.t.Helper()
	for src, ds := range logs {
		if err := h.rep.ApplyBatch(src, ds); err != nil {
			h.t.Fatal(err)
		}
	}
}

// make makes, and applies at the hub, one hub delta.
func (h *hub) make(k replication.Kind, id string, ops ...replication.Op) replication.Delta {
	h.t.Helper()
	h.wall += 1000
	d, err := h.w.Make(replication.Stamp{Wall: h.wall, Origin: "hub"}, k, id, ops...)
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.rep.Apply(d); err != nil {
		h.t.Fatal(err)
	}
	return d
}

// cmd returns the ApplyDeltas command carrying ds.
func deltasCmd(t *testing.T, ds ...replication.Delta) *raftv1.Command {
	t.Helper()
	op := &raftv1.ApplyDeltas{}
	for _, d := range ds {
		b, err := d.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		op.Deltas = append(op.Deltas, b)
	}
	return &raftv1.Command{Op: &raftv1.Command_ApplyDeltas{ApplyDeltas: op}}
}

var (
	prio   = replication.Source{Origin: string(siteID), Lane: replication.LanePriority}
	normal = replication.Source{Origin: string(siteID), Lane: replication.LaneNormal}
)

// visitorCmds is the site's own config and a visitor checked in at it:
// everything the hub takes from a site.
func visitorCmds() []*raftv1.Command {
	cmds := siteCmds()[:4]
	return append(cmds,
		&raftv1.Command{Op: &raftv1.Command_PutPerson{PutPerson: &accessv1.Person{Id: string(guestID), Kind: accessv1.PersonKind_PERSON_KIND_VISITOR, Name: "Guest", Active: true}}},
		&raftv1.Command{Op: &raftv1.Command_PutVisit{PutVisit: &accessv1.Visit{Id: string(visitID), SiteId: string(siteID), HostId: string(aliceID),
			VisitorId: string(guestID), TypeId: string(groupID), FromMs: now.Add(-time.Hour).UnixMilli(), UntilMs: now.Add(time.Hour).UnixMilli(),
			State: accessv1.VisitState_VISIT_STATE_CHECKED_IN}}},
		&raftv1.Command{Op: &raftv1.Command_PutCard{PutCard: &accessv1.Card{Number: guestNum, PersonId: string(guestID), VisitId: string(visitID),
			SiteId: string(siteID), Status: accessv1.CardStatus_CARD_STATUS_ACTIVE}}},
		&raftv1.Command{Op: &raftv1.Command_PutGrant{PutGrant: &accessv1.Grant{Id: string(grantID), HolderId: string(visitID), GroupId: string(groupID)}}},
	)
}

const guestNum = 7777

func TestSiteChangesMakeDeltas(t *testing.T) {
	f := newFixture(t)
	f.mustApply(stamped(now.UnixNano(), visitorCmds()...)...)
	if d := f.decide(guestNum); !d.Grant {
		t.Fatalf("guest denied at the site: %v", d.Reason)
	}
	if got, want := f.m.OwnVector(), (replication.Vector{normal: 8}); !got.Equal(want) {
		t.Fatalf("own vector %s, want %s", got, want)
	}
	h := newHub(t)
	h.take(f.siteDeltas())
	snap := h.rep.Snapshot()
	if len(snap.People) != 1 || !snap.People[0].Active || snap.People[0].Name != "Guest" {
		t.Fatalf("hub people: %+v", snap.People)
	}
	if len(snap.Cards) != 1 || snap.Cards[0].PersonID != guestID || snap.Cards[0].Status != access.CardActive {
		t.Fatalf("hub cards: %+v", snap.Cards)
	}
	if len(snap.Grants) != 1 || snap.Grants[0].Removed {
		t.Fatalf("hub grants: %+v", snap.Grants)
	}
	// The hub's materialised state decides like the site's.
	st, errs := h.rep.State()
	if len(errs) != 0 {
		t.Fatalf("hub state: %v", errs)
	}
	if d := access.Decide(st, access.Request{Card: guestNum, Door: doorID, At: now, Mode: access.Online}); !d.Grant {
		t.Fatalf("hub denies the guest: %v", d.Reason)
	}

	// A command that changes nothing replication covers makes no delta; an
	// edit makes a delta of the changed fields only.
	f.mustApply(stamped(now.UnixNano()+100, visitorCmds()[4])...)
	if got := f.m.OwnVector()[normal]; got != 8 {
		t.Fatalf("re-putting the guest made deltas: normal lane at %d", got)
	}
	f.mustApply(stamped(now.UnixNano()+200, &raftv1.Command{Op: &raftv1.Command_PutPerson{PutPerson: &accessv1.Person{
		Id: string(guestID), Kind: accessv1.PersonKind_PERSON_KIND_VISITOR, Name: "Guest B.", Active: true}}})...)
	logs := f.siteDeltas()
	last := logs[normal][len(logs[normal])-1]
	if len(last.Ops) != 1 || last.Ops[0].Field != "name" || last.Ops[0].Value != "Guest B." {
		t.Fatalf("edit delta ops %+v, want one set of name", last.Ops)
	}

	// Revocations go in the priority lane: a checkout.
	f.mustApply(stamped(now.UnixNano()+300, &raftv1.Command{Op: &raftv1.Command_AdvanceVisit{AdvanceVisit: &raftv1.AdvanceVisit{
		VisitId: string(visitID), State: accessv1.VisitState_VISIT_STATE_CHECKED_OUT}}})...)
	logs = f.siteDeltas()
	if got := len(logs[prio]); got != 1 || logs[prio][0].Kind != replication.KindVisit {
		t.Fatalf("priority lane: %+v", logs[prio])
	}
	h.take(map[replication.Source][]replication.Delta{prio: logs[prio], normal: logs[normal][8:]})
	st, _ = h.rep.State()
	if d := access.Decide(st, access.Request{Card: guestNum, Door: doorID, At: now, Mode: access.Online}); d.Grant {
		t.Fatal("the hub still grants the guest after the site's checkout")
	}
}

// Changes the hub would refuse from a site (an access user, a card homed
// at the hub) count at the site under its local origin and are not sent.
func TestLocalOnlyChanges(t *testing.T) {
	f := newFixture(t)
	f.mustApply(stamped(now.UnixNano(), siteCmds()...)...)
	if d := f.decide(aliceNum); !d.Grant {
		t.Fatalf("alice denied: %v", d.Reason)
	}
	local := replication.Source{Origin: LocalOrigin(siteID), Lane: replication.LaneNormal}
	if got, want := f.m.OwnVector(), (replication.Vector{normal: 5}); !got.Equal(want) {
		t.Fatalf("own vector %s, want %s (site, zone, door, group, grant)", got, want)
	}
	if got, want := f.m.LocalVector(), (replication.Vector{local: 2}); !got.Equal(want) {
		t.Fatalf("local vector %s, want %s (alice, her card)", got, want)
	}
	// A disable of anyone is the site's to report: it is sent.
	f.mustApply(stamped(now.UnixNano()+100, &raftv1.Command{Op: &raftv1.Command_SetCardStatus{SetCardStatus: &raftv1.SetCardStatus{
		Number: aliceNum, Status: accessv1.CardStatus_CARD_STATUS_LOST}}})...)
	if got := f.m.OwnVector()[prio]; got != 1 {
		t.Fatalf("a card disable was not sent: priority lane at %d", got)
	}
}

func TestStampsAreRaisedAboveApplied(t *testing.T) {
	f := newFixture(t)
	// No stamps in the commands at all, and then a stamp behind the
	// last: every delta still gets a strictly greater stamp.
	f.mustApply(visitorCmds()...)
	f.mustApply(stamped(5, &raftv1.Command{Op: &raftv1.Command_RemoveGrant{RemoveGrant: &raftv1.RemoveGrant{GrantId: string(grantID)}}})...)
	var all []replication.Delta
	for _, ds := range f.siteDeltas() {
		all = append(all, ds...)
	}
	seen := map[replication.Stamp]bool{}
	for _, d := range all {
		if seen[d.Stamp] {
			t.Fatalf("stamp %s used twice", d.Stamp)
		}
		seen[d.Stamp] = true
	}
	if got := f.siteDeltas()[prio][0].Stamp; !f.siteDeltas()[normal][7].Stamp.Less(got) {
		t.Fatalf("removal stamp %s not after the grant's", got)
	}
}

func TestLoadRebuildsReplica(t *testing.T) {
	f := newFixture(t)
	f.mustApply(stamped(now.UnixNano(), siteCmds()...)...)
	h := newHub(t)
	f.mustApply(deltasCmd(t, h.make(replication.KindPerson, string(bobID), replication.SetOp("name", "Bob"))))
	fresh := New(siteID, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := fresh.Load(f.db); err != nil {
		t.Fatal(err)
	}
	if got, want := fresh.Vector(), f.m.Vector(); !got.Equal(want) {
		t.Fatalf("reloaded vector %s, want %s", got, want)
	}
	// The reloaded machine numbers on from where the log ends.
	f.m = fresh
	f.mustApply(stamped(now.UnixNano()+1000, &raftv1.Command{Op: &raftv1.Command_RemoveGrant{RemoveGrant: &raftv1.RemoveGrant{GrantId: string(grantID)}}})...)
	if got := f.m.OwnVector(); got[prio] != 1 || got[normal] != 5 {
		t.Fatalf("own vector after reload and removal: %s", got)
	}
}

func TestReapplyAfterDiscardedTxn(t *testing.T) {
	f := newFixture(t)
	f.mustApply(stamped(now.UnixNano(), siteCmds()...)...)
	cmd := stamped(now.UnixNano()+10, &raftv1.Command{Op: &raftv1.Command_RemoveGrant{RemoveGrant: &raftv1.RemoveGrant{GrantId: string(grantID)}}})[0]
	h := newHub(t)
	remote := deltasCmd(t, h.make(replication.KindPerson, string(bobID), replication.SetOp("name", "Bob")))
	f.index++
	// raftnode discards a transaction and applies the same commands again
	// when an entry does not fit: memory must not change twice, and the
	// second transaction must hold everything.
	txn := f.db.NewTransaction(true)
	for _, c := range []*raftv1.Command{cmd, remote} {
		if _, err := f.m.Apply(txn, f.index, c); err != nil {
			t.Fatal(err)
		}
	}
	txn.Discard()
	txn = f.db.NewTransaction(true)
	for _, c := range []*raftv1.Command{cmd, remote} {
		if res, err := f.m.Apply(txn, f.index, c); err != nil || res.GetErrorCode() != "" {
			t.Fatalf("re-apply: %v %v", res, err)
		}
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	hub1 := replication.Source{Origin: "hub", Lane: replication.LaneNormal}
	if got := f.m.Vector(); got[prio] != 1 || got[hub1] != 1 {
		t.Fatalf("vector after re-apply %s", got)
	}
	fresh := New(siteID, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := fresh.Load(f.db); err != nil {
		t.Fatal(err)
	}
	if got, want := fresh.Vector(), f.m.Vector(); !got.Equal(want) {
		t.Fatalf("Badger holds %s, memory %s", got, want)
	}
}

func TestApplyDeltasFromHub(t *testing.T) {
	f := newFixture(t)
	f.mustApply(stamped(now.UnixNano(), siteCmds()...)...)
	h := newHub(t)
	h.take(f.siteDeltas())
	const bobNum = 5151
	bobCard := access.CardNumber(bobNum).String()
	bobGrant := access.ID("01J00000000000000000000GR2")
	person := h.make(replication.KindPerson, string(bobID), replication.SetOp("kind", "access_user"),
		replication.SetOp("name", "Bob"), h.rep.EnableOp(replication.KindPerson, string(bobID)))
	card := h.make(replication.KindCard, bobCard, replication.AddOp("holders", string(bobID)),
		h.rep.EnableOp(replication.KindCard, bobCard))
	grant := h.make(replication.KindGrant, string(bobGrant), h.rep.GrantOp(access.Grant{HolderID: bobID, GroupID: groupID}))
	f.mustApply(deltasCmd(t, person, card, grant))
	if d := f.decide(bobNum); !d.Grant {
		t.Fatalf("bob, added at the hub, denied: %v", d.Reason)
	}
	if Fencing(deltasCmd(t, grant)) {
		t.Error("a batch that only grants is fencing")
	}
	if !Fencing(deltasCmd(t, person, card, grant)) {
		t.Error("a batch that sets a person's fields and binds a card is not fencing")
	}

	t.Run("Duplicate", func(t *testing.T) {
		before := f.m.Vector()
		f.mustApply(deltasCmd(t, person, card, grant))
		if got := f.m.Vector(); !got.Equal(before) {
			t.Fatalf("a duplicate batch moved the vector to %s", got)
		}
	})

	removal := h.make(replication.KindGrant, string(bobGrant), replication.RemoveGrantOp())
	if !Fencing(deltasCmd(t, removal)) {
		t.Fatal("a hub revocation is not fencing")
	}

	bad := []struct {
		name string
		cmd  *raftv1.Command
		code access.Code
	}{
		{"ErrGap", deltasCmd(t, h.make(replication.KindPerson, string(bobID), replication.SetOp("name", "Bobby")),
			h.make(replication.KindPerson, string(bobID), replication.SetOp("email", "bob@example.com"))), access.Conflict},
		{"ErrBadEncoding", &raftv1.Command{Op: &raftv1.Command_ApplyDeltas{ApplyDeltas: &raftv1.ApplyDeltas{Deltas: [][]byte{{1, 2, 3}}}}}, access.Invalid},
		{"OwnOrigin", deltasCmd(t, f.siteDeltas()[normal][0]), access.Denied},
		{"Empty", &raftv1.Command{Op: &raftv1.Command_ApplyDeltas{ApplyDeltas: &raftv1.ApplyDeltas{}}}, access.Invalid},
	}
	// The gap case: the batch holds the removal's successor of the normal
	// lane without the one before it (made, but left out).
	bad[0].cmd = deltasCmd(t, mustDecode(t, bad[0].cmd)[1])
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			before := f.m.Vector()
			f.index++
			txn := f.db.NewTransaction(true)
			res, err := f.m.Apply(txn, f.index, tc.cmd)
			txn.Discard()
			if err != nil {
				t.Fatal(err)
			}
			if got := access.Code(res.GetErrorCode()); got != tc.code {
				t.Fatalf("code %q (%s), want %q", got, res.GetError(), tc.code)
			}
			if got := f.m.Vector(); !got.Equal(before) {
				t.Fatalf("a refused batch moved the vector to %s", got)
			}
			if d := f.decide(bobNum); !d.Grant {
				t.Fatalf("a refused batch changed a decision: %v", d.Reason)
			}
		})
	}

	// The removal applies: bob is denied, on disk too.
	f.mustApply(deltasCmd(t, removal))
	if d := f.decide(bobNum); d.Grant {
		t.Fatal("bob still granted after the hub removed his grant")
	}
	fresh := New(siteID, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := fresh.Load(f.db); err != nil {
		t.Fatal(err)
	}
	if d := fresh.Decide(access.Request{Card: bobNum, Door: doorID, At: now, Mode: access.Online}); d.Grant {
		t.Fatal("bob granted after reload")
	}
}

func mustDecode(t *testing.T, c *raftv1.Command) []replication.Delta {
	t.Helper()
	var out []replication.Delta
	for _, b := range c.GetApplyDeltas().GetDeltas() {
		var d replication.Delta
		if err := d.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

// A disable at the hub concurrent with an enable at the site ends
// disabled at both; a membership revocation at the hub concurrent with a
// new grant of it at the site ends removed.
func TestConcurrentRevocationWins(t *testing.T) {
	f := newFixture(t)
	f.mustApply(stamped(now.UnixNano(), visitorCmds()...)...)
	h := newHub(t)
	h.take(f.siteDeltas())
	seen := f.m.OwnVector()

	// The hub disables the guest's card and revokes the visit's
	// membership of Staff.
	card := access.CardNumber(guestNum).String()
	disable := h.make(replication.KindCard, card, replication.DisableOp("lost"))
	revoke := h.make(replication.KindVisit, string(visitID), replication.RevokeOp(groupID))

	// Meanwhile the site suspends and re-enables the card, and grants
	// Staff again under a new grant ID: neither saw the hub's changes.
	regrant := access.ID("01J00000000000000000000GR3")
	f.mustApply(stamped(now.UnixNano()+100,
		&raftv1.Command{Op: &raftv1.Command_SetCardStatus{SetCardStatus: &raftv1.SetCardStatus{Number: guestNum, Status: accessv1.CardStatus_CARD_STATUS_SUSPENDED}}},
		&raftv1.Command{Op: &raftv1.Command_SetCardStatus{SetCardStatus: &raftv1.SetCardStatus{Number: guestNum, Status: accessv1.CardStatus_CARD_STATUS_ACTIVE}}},
		&raftv1.Command{Op: &raftv1.Command_PutGrant{PutGrant: &accessv1.Grant{Id: string(regrant), HolderId: string(visitID), GroupId: string(groupID)}}},
	)...)
	if d := f.decide(guestNum); !d.Grant {
		t.Fatalf("before the merge the site grants the guest: %v", d.Reason)
	}

	// Both sides merge.
	f.mustApply(deltasCmd(t, disable, revoke))
	logs := f.siteDeltas()
	h.take(map[replication.Source][]replication.Delta{prio: logs[prio][seen[prio]:], normal: logs[normal][seen[normal]:]})

	if d := f.decide(guestNum); d.Grant {
		t.Fatal("site grants the guest after merging the hub's disable and revocation")
	}
	c, _ := h.rep.Card(guestNum)
	var sc access.Card
	f.m.View(func(st *access.State) { sc, _ = st.CardByNumber(guestNum) })
	if c.Status != access.CardLost || sc.Status != access.CardLost {
		t.Fatalf("card status hub %s, site %s; want lost at both", c.Status, sc.Status)
	}
	for _, id := range []access.ID{grantID, regrant} {
		hg, _ := h.rep.Grant(id)
		var sg access.Grant
		f.m.View(func(st *access.State) { sg, _ = st.Grant(id) })
		if !hg.Removed || !sg.Removed {
			t.Fatalf("grant %s: removed at hub %v, at site %v; want removed at both", id, hg.Removed, sg.Removed)
		}
	}
}

// A site that ran before it replicated holds entities its replica never
// saw. Revocations from the hub must still take effect on them: a person
// disabled, a visit checked out, a membership revoked.
func TestHubRevokesPreReplicationState(t *testing.T) {
	f := newFixture(t)
	f.mustApply(stamped(now.UnixNano(), siteCmds()...)...)
	f.mustApply(stamped(now.UnixNano()+100, visitorCmds()[4:7]...)...)
	guestGrant := &raftv1.Command{Op: &raftv1.Command_PutGrant{PutGrant: &accessv1.Grant{Id: "01J00000000000000000000GR4", HolderId: string(visitID), GroupId: string(groupID)}}}
	f.mustApply(stamped(now.UnixNano()+200, guestGrant)...)
	// Forget the delta log, as if these were written by an older version.
	err := f.db.Update(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixDelta)})
		var keys [][]byte
		for it.Rewind(); it.Valid(); it.Next() {
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		it.Close()
		keys = append(keys, []byte(keyVector))
		for _, k := range keys {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	f.m = New(siteID, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := f.m.Load(f.db); err != nil {
		t.Fatal(err)
	}
	if len(f.m.Vector()) != 0 {
		t.Fatalf("vector %s after forgetting the log", f.m.Vector())
	}
	if f.decide(aliceNum).Grant != true || f.decide(guestNum).Grant != true {
		t.Fatal("setup: alice and the guest should pass")
	}
	h := newHub(t)
	// The hub renames alice (she stays active), then disables her.
	f.mustApply(deltasCmd(t, h.make(replication.KindPerson, string(aliceID), replication.SetOp("name", "Alice R."))))
	if d := f.decide(aliceNum); !d.Grant {
		t.Fatalf("a rename from the hub denied alice: %v", d.Reason)
	}
	f.mustApply(deltasCmd(t, h.make(replication.KindPerson, string(aliceID), replication.DisableOp("left"))))
	if d := f.decide(aliceNum); d.Grant {
		t.Fatal("alice still passes after the hub disabled her")
	}
	// The hub revokes the visit's membership of the group.
	f.mustApply(deltasCmd(t, h.make(replication.KindVisit, string(visitID), replication.RevokeOp(groupID))))
	if d := f.decide(guestNum); d.Grant {
		t.Fatal("the guest still passes after the hub revoked the visit's membership")
	}
	// And checks the visit out.
	f.mustApply(deltasCmd(t, h.make(replication.KindVisit, string(visitID), replication.AdvanceOp(access.VisitCheckedOut))))
	var v access.Visit
	f.m.View(func(st *access.State) { v, _ = st.Visit(visitID) })
	if v.State != access.VisitCheckedOut || v.HostID != aliceID {
		t.Fatalf("visit after the hub's checkout: %+v", v)
	}
}

// Deleting a person is the hub's business: a site deletion stays local,
// but its disable is sent.
func TestDeletePersonSendsDisable(t *testing.T) {
	f := newFixture(t)
	f.mustApply(stamped(now.UnixNano(), visitorCmds()...)...)
	f.mustApply(stamped(now.UnixNano()+100, &raftv1.Command{Op: &raftv1.Command_DeletePerson{DeletePerson: &raftv1.DeletePerson{PersonId: string(guestID)}}})...)
	ds := f.siteDeltas()[prio]
	if len(ds) != 1 || len(ds[0].Ops) != 1 || ds[0].Ops[0].Type != replication.OpDisable {
		t.Fatalf("priority lane %+v, want one disable", ds)
	}
	if got := f.m.LocalVector()[replication.Source{Origin: LocalOrigin(siteID), Lane: replication.LanePriority}]; got != 1 {
		t.Fatalf("local priority lane at %d, want the deletion", got)
	}
	if d := f.decide(guestNum); d.Grant {
		t.Fatal("deleted guest passes")
	}
}

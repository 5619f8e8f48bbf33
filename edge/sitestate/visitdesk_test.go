package sitestate

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
	"github.com/gatehouse/gatehouse/replication"
)

// invitedCmds is the site, an invited guest's visit with one profile.
func invitedCmds(state accessv1.VisitState) []*raftv1.Command {
	cmds := siteCmds()[:5]
	return append(cmds,
		&raftv1.Command{Op: &raftv1.Command_PutPerson{PutPerson: &accessv1.Person{Id: string(guestID), Kind: accessv1.PersonKind_PERSON_KIND_VISITOR, Name: "Guest, Anna", Active: true}}},
		&raftv1.Command{Op: &raftv1.Command_PutVisit{PutVisit: &accessv1.Visit{Id: string(visitID), SiteId: string(siteID), HostId: string(aliceID),
			VisitorId: string(guestID), FromMs: now.Add(-time.Hour).UnixMilli(), UntilMs: now.Add(time.Hour).UnixMilli(), State: state}}},
		&raftv1.Command{Op: &raftv1.Command_PutGrant{PutGrant: &accessv1.Grant{Id: string(grantID), HolderId: string(visitID), GroupId: string(groupID)}}},
	)
}

func checkIn(n uint64) *raftv1.Command {
	return &raftv1.Command{Stamp: &accessv1.Stamp{WallUnixNano: now.UnixNano()},
		Op: &raftv1.Command_CheckInVisit{CheckInVisit: &raftv1.CheckInVisit{VisitId: string(visitID), CardNumber: n}}}
}

func checkOut(visit access.ID, n uint64) *raftv1.Command {
	return &raftv1.Command{Stamp: &accessv1.Stamp{WallUnixNano: now.Add(time.Minute).UnixNano()},
		Op: &raftv1.Command_CheckOutVisit{CheckOutVisit: &raftv1.CheckOutVisit{VisitId: string(visit), CardNumber: n}}}
}

func TestCheckInAndOut(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		f := newFixture(t)
		f.mustApply(stamped(now.UnixNano(), invitedCmds(accessv1.VisitState_VISIT_STATE_INVITED)...)...)
		f.mustApply(checkIn(9001))
		if d := f.decide(9001); !d.Grant {
			t.Fatalf("checked-in guest denied: %v", d.Reason)
		}
		var c access.Card
		f.m.View(func(st *access.State) { c, _ = st.CardByNumber(9001) })
		if c.VisitID != visitID || c.PersonID != guestID || c.SiteID != siteID || !c.ValidFrom.Equal(now) {
			t.Fatalf("card %+v", c)
		}
		// The check-in replicates: the visit's state and the card's holder.
		var st access.VisitState
		var holders int
		f.m.ViewReplica(func(r *replication.Replica) {
			v, _ := r.Visit(visitID)
			st = v.State
			holders = len(r.CardHolders(9001))
		})
		if st != access.VisitCheckedIn || holders != 1 {
			t.Fatalf("replica: visit %s, %d holders", st, holders)
		}
		// A second check-in of the same visit, with another number: refused.
		if got := f.apply(checkIn(9002)); got[0] != string(access.Conflict) {
			t.Fatalf("second check-in: %q", got)
		}
		// Check out by card: visit checked out, card unbound.
		f.mustApply(checkOut("", 9001))
		f.m.View(func(st *access.State) {
			if _, ok := st.CardByNumber(9001); ok {
				t.Error("card still bound after checkout")
			}
			if v, _ := st.Visit(visitID); v.State != access.VisitCheckedOut {
				t.Errorf("visit %s after checkout", v.State)
			}
		})
		f.m.ViewReplica(func(r *replication.Replica) {
			if v, _ := r.Visit(visitID); v.State != access.VisitCheckedOut || len(r.CardHolders(9001)) != 0 {
				t.Errorf("replica after checkout: %s, holders %v", v.State, r.CardHolders(9001))
			}
		})
		if got := f.apply(checkOut(visitID, 0)); got[0] != string(access.Conflict) {
			t.Fatalf("second checkout: %q", got)
		}
		if !Fencing(checkOut(visitID, 0)) || Fencing(checkIn(1)) {
			t.Error("fencing: checkout must fence, check-in need not")
		}
	})
	t.Run("Refused", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			state accessv1.VisitState
			cmd   *raftv1.Command
			code  access.Code
		}{
			{"Held", accessv1.VisitState_VISIT_STATE_REQUESTED, checkIn(9001), access.Conflict},
			{"Final", accessv1.VisitState_VISIT_STATE_CANCELLED, checkIn(9001), access.Conflict},
			{"NumberTaken", accessv1.VisitState_VISIT_STATE_INVITED, checkIn(aliceNum), access.Conflict},
			{"NoNumber", accessv1.VisitState_VISIT_STATE_INVITED, checkIn(0), access.Invalid},
			{"UnknownVisit", accessv1.VisitState_VISIT_STATE_INVITED, &raftv1.Command{Op: &raftv1.Command_CheckInVisit{CheckInVisit: &raftv1.CheckInVisit{VisitId: string(bobID), CardNumber: 5}}}, access.NotFound},
			{"BadVisit", accessv1.VisitState_VISIT_STATE_INVITED, &raftv1.Command{Op: &raftv1.Command_CheckInVisit{CheckInVisit: &raftv1.CheckInVisit{VisitId: "x", CardNumber: 5}}}, access.Invalid},
			{"OutBoth", accessv1.VisitState_VISIT_STATE_INVITED, checkOut(visitID, 5), access.Invalid},
			{"OutNeither", accessv1.VisitState_VISIT_STATE_INVITED, checkOut("", 0), access.Invalid},
			{"OutUnknownCard", accessv1.VisitState_VISIT_STATE_INVITED, checkOut("", 12345), access.NotFound},
			{"OutStaffCard", accessv1.VisitState_VISIT_STATE_INVITED, checkOut("", aliceNum), access.Invalid},
		} {
			t.Run(tc.name, func(t *testing.T) {
				f := newFixture(t)
				f.mustApply(stamped(now.UnixNano(), invitedCmds(tc.state)...)...)
				f.mustApply(stamped(now.UnixNano()+100, &raftv1.Command{Op: &raftv1.Command_PutCard{PutCard: &accessv1.Card{Number: aliceNum, PersonId: string(aliceID), Status: accessv1.CardStatus_CARD_STATUS_ACTIVE}}})...)
				before := f.m.Vector()
				if got := f.apply(tc.cmd); got[0] != string(tc.code) {
					t.Fatalf("got %q, want %s", got[0], tc.code)
				}
				if got := f.m.Vector(); !got.Equal(before) {
					t.Errorf("a refused command made deltas: %s -> %s", before, got)
				}
				f.m.View(func(st *access.State) {
					if v, _ := st.Visit(visitID); v.State != access.VisitState(tc.state) {
						t.Errorf("visit moved to %s", v.State)
					}
				})
			})
		}
	})
	t.Run("ReapplyAfterDiscardedTxn", func(t *testing.T) {
		f := newFixture(t)
		f.mustApply(stamped(now.UnixNano(), invitedCmds(accessv1.VisitState_VISIT_STATE_PRE_REGISTERED)...)...)
		cmd := checkIn(9001)
		f.index++
		txn := f.db.NewTransaction(true)
		if _, err := f.m.Apply(txn, f.index, cmd); err != nil {
			t.Fatal(err)
		}
		txn.Discard()
		txn = f.db.NewTransaction(true)
		if res, err := f.m.Apply(txn, f.index, cmd); err != nil || res.GetErrorCode() != "" {
			t.Fatalf("re-apply: %v %v", res, err)
		}
		if err := txn.Commit(); err != nil {
			t.Fatal(err)
		}
		fresh := New(siteID, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err := fresh.Load(f.db); err != nil {
			t.Fatal(err)
		}
		fresh.View(func(st *access.State) {
			if c, ok := st.CardByNumber(9001); !ok || c.VisitID != visitID {
				t.Errorf("card not on disk after re-apply: %+v", c)
			}
		})
	})
}

// TestCheckInOfHubVisitReplicates checks in and out a visit made at the
// hub and checks that the hub, taking the site's deltas, sees both: they
// are of the site's origin, none local-only.
func TestCheckInOfHubVisitReplicates(t *testing.T) {
	f := newFixture(t)
	f.mustApply(stamped(now.UnixNano(), siteCmds()...)...)
	h := newHub(t)
	h.take(f.siteDeltas())
	person := h.make(replication.KindPerson, string(guestID), replication.SetOp("kind", "visitor"),
		replication.SetOp("name", "Guest, Anna"), h.rep.EnableOp(replication.KindPerson, string(guestID)))
	visit := h.make(replication.KindVisit, string(visitID), replication.SetOp("site", string(siteID)),
		replication.SetOp("host", string(aliceID)), replication.SetOp("visitor", string(guestID)),
		replication.SetOp("from", replication.TimeValue(now.Add(-time.Hour))), replication.SetOp("until", replication.TimeValue(now.Add(time.Hour))),
		replication.SetOp("escort", replication.BoolValue(false)), replication.AdvanceOp(access.VisitInvited))
	grant := h.make(replication.KindGrant, "01J00000000000000000000GR9", h.rep.GrantOp(access.Grant{HolderID: visitID, GroupID: groupID}))
	f.mustApply(deltasCmd(t, person, visit, grant))
	local := f.m.LocalVector()

	ci := checkIn(9001)
	ci.Stamp.WallUnixNano = now.Add(time.Second).UnixNano()
	f.mustApply(ci)
	h.take(f.siteDeltas())
	v, _ := h.rep.Visit(visitID)
	holders := h.rep.CardHolders(9001)
	if v.State != access.VisitCheckedIn || len(holders) != 1 || holders[0].VisitID != visitID || holders[0].PersonID != guestID {
		t.Fatalf("hub after the check-in: visit %s, holders %+v", v.State, holders)
	}
	co := checkOut(visitID, 0)
	co.Stamp.WallUnixNano = now.Add(2 * time.Second).UnixNano()
	f.mustApply(co)
	h2 := newHub(t) // a fresh hub replica taking the whole log again
	h2.take(f.siteDeltas())
	h.rep = h2.rep
	if v, _ := h.rep.Visit(visitID); v.State != access.VisitCheckedOut || len(h.rep.CardHolders(9001)) != 0 {
		t.Fatalf("hub after the checkout: visit %s, holders %v", v.State, h.rep.CardHolders(9001))
	}
	// The checkout disabled the card as returned before unbinding it.
	returned := false
	for _, ds := range f.siteDeltas() {
		for _, d := range ds {
			for _, op := range d.Ops {
				if d.Kind == replication.KindCard && d.ID == "9001" && op.Type == replication.OpDisable && op.Value == "returned" {
					returned = true
				}
			}
		}
	}
	if !returned {
		t.Error("no delta disables the returned card")
	}
	// The number is free: the next check-in binds it again, enabled.
	f.mustApply(stamped(now.Add(3*time.Second).UnixNano(),
		&raftv1.Command{Op: &raftv1.Command_PutPerson{PutPerson: &accessv1.Person{Id: string(bobID), Kind: accessv1.PersonKind_PERSON_KIND_VISITOR, Name: "Bob", Active: true}}},
		&raftv1.Command{Op: &raftv1.Command_PutVisit{PutVisit: &accessv1.Visit{Id: "01J00000000000000000000V2S", SiteId: string(siteID), HostId: string(aliceID),
			VisitorId: string(bobID), FromMs: now.Add(-time.Hour).UnixMilli(), UntilMs: now.Add(time.Hour).UnixMilli(), State: accessv1.VisitState_VISIT_STATE_INVITED}}},
		&raftv1.Command{Op: &raftv1.Command_CheckInVisit{CheckInVisit: &raftv1.CheckInVisit{VisitId: "01J00000000000000000000V2S", CardNumber: 9001}}})...)
	h3 := newHub(t)
	h3.take(f.siteDeltas())
	if c, live := h3.rep.Card(9001); !live || c.Status != access.CardActive || c.PersonID != bobID {
		t.Fatalf("hub after the number was reused: %+v live=%t", c, live)
	}
	if got := f.m.LocalVector(); !got.Equal(local) {
		t.Errorf("the check-in or checkout made local-only deltas: %s -> %s", local, got)
	}
}

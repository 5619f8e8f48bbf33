package sitestate

import (
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/gatehouse/gatehouse/access"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
	"github.com/gatehouse/gatehouse/replication"
)

// deskPlan is what a CheckInVisit or CheckOutVisit command does, decided
// once per (index, command) and memoised in Machine.deskMemo, so that a
// command re-applied after raftnode discarded its transaction writes the
// same records again instead of being refused by the state it already
// changed in memory.
type deskPlan struct {
	visit access.Visit
	put   []access.Card       // cards to store
	drop  []access.CardNumber // cards to unbind
}

// refs returns the replicated entities the plan changes.
func (p *deskPlan) refs() []entRef {
	out := []entRef{{replication.KindVisit, string(p.visit.ID)}}
	for _, c := range p.put {
		out = append(out, entRef{replication.KindCard, c.Number.String()})
	}
	for _, n := range p.drop {
		out = append(out, entRef{replication.KindCard, n.String()})
	}
	return out
}

// deskPlanOf returns the memoised plan of cmd, if any.
func (m *Machine) deskPlanOf(cmd *raftv1.Command) *deskPlan { return m.deskMemo[cmd] }

// runDesk writes plan to txn and the in-memory index, and memoises it.
func (m *Machine) runDesk(txn *badger.Txn, cmd *raftv1.Command, p *deskPlan) error {
	if m.deskMemo == nil {
		m.deskMemo = map[*raftv1.Command]*deskPlan{}
	}
	m.deskMemo[cmd] = p
	if err := store(put(txn, entityKey("visit", string(p.visit.ID)), VisitToProto(p.visit))); err != nil {
		return err
	}
	for _, c := range p.put {
		if err := store(put(txn, cardKey(c.Number), CardToProto(c))); err != nil {
			return err
		}
	}
	for _, n := range p.drop {
		if err := store(txn.Delete(cardKey(n))); err != nil {
			return err
		}
	}
	if err := m.st.PutVisit(p.visit); err != nil {
		return err
	}
	for _, c := range p.put {
		if err := m.st.PutCard(c); err != nil {
			return err
		}
	}
	for _, n := range p.drop {
		m.st.RemoveCard(n)
	}
	return nil
}

// checkInVisit applies CheckInVisit (see raft.proto): the visit moves to
// checked_in and the card is bound to its guest with VisitID set, valid
// from the command's stamp (the time in) to the end of the visit window.
func (m *Machine) checkInVisit(txn *badger.Txn, cmd *raftv1.Command, op *raftv1.CheckInVisit) error {
	if p := m.deskPlanOf(cmd); p != nil {
		return m.runDesk(txn, cmd, p)
	}
	st := m.st
	id := access.ID(op.GetVisitId())
	if _, err := access.ParseID(string(id)); err != nil {
		return access.Errorf(access.Invalid, "check in: visit: %w", err)
	}
	n := access.CardNumber(op.GetCardNumber())
	if n == 0 {
		return access.Errorf(access.Invalid, "check in visit %s: card number is required", id)
	}
	v, ok := st.Visit(id)
	if !ok {
		return access.Errorf(access.NotFound, "check in: visit %s is not known at this site", id)
	}
	if v.SiteID != m.site {
		return access.Errorf(access.Denied, "check in: visit %s is of site %s; this node serves site %s", id, v.SiteID, m.site)
	}
	switch v.State {
	case access.VisitInvited, access.VisitPreRegistered:
	case access.VisitRequested:
		return access.Errorf(access.Conflict, "check in: visit %s is held for security (requested, not invited)", id)
	default:
		return access.Errorf(access.Conflict, "check in: visit %s is %s", id, v.State)
	}
	guest, ok := st.Person(v.VisitorID)
	if !ok {
		return access.Errorf(access.NotFound, "check in: visit %s: guest %s is not known at this site", id, v.VisitorID)
	}
	if guest.Deleted {
		return access.Errorf(access.Conflict, "check in: visit %s: guest %s is deleted", id, v.VisitorID)
	}
	if old, ok := st.CardByNumber(n); ok && old.Status != access.CardReturned {
		return access.Errorf(access.Conflict, "check in: card %s is bound to another holder", n.Redacted())
	}
	next, err := v.Advance(access.VisitCheckedIn)
	if err != nil {
		return err
	}
	in := time.Unix(0, cmd.GetStamp().GetWallUnixNano()).Truncate(time.Millisecond)
	if cmd.GetStamp().GetWallUnixNano() <= 0 {
		in = time.Time{}
	}
	c := access.Card{Number: n, PersonID: v.VisitorID, VisitID: v.ID, SiteID: m.site, Status: access.CardActive,
		ValidFrom: in, ValidUntil: v.Until}
	if !c.ValidFrom.IsZero() && !c.ValidUntil.After(c.ValidFrom) {
		return access.Errorf(access.Conflict, "check in: visit %s ended at %s", id, v.Until.UTC().Format(time.RFC3339))
	}
	if err := c.Validate(); err != nil {
		return err
	}
	return m.runDesk(txn, cmd, &deskPlan{visit: next, put: []access.Card{c}})
}

// checkOutVisit applies CheckOutVisit (see raft.proto).
func (m *Machine) checkOutVisit(txn *badger.Txn, cmd *raftv1.Command, op *raftv1.CheckOutVisit) error {
	if p := m.deskPlanOf(cmd); p != nil {
		return m.runDesk(txn, cmd, p)
	}
	st := m.st
	id := access.ID(op.GetVisitId())
	n := access.CardNumber(op.GetCardNumber())
	switch {
	case id != "" && n != 0:
		return access.Errorf(access.Invalid, "check out: give a visit or a card, not both")
	case id == "" && n == 0:
		return access.Errorf(access.Invalid, "check out: a visit or a card is required")
	case n != 0:
		c, ok := st.CardByNumber(n)
		if !ok {
			return access.Errorf(access.NotFound, "check out: card %s is not known at this site", n.Redacted())
		}
		if c.VisitID.IsZero() {
			return access.Errorf(access.Invalid, "check out: card %s is not a visitor card", n.Redacted())
		}
		id = c.VisitID
	default:
		if _, err := access.ParseID(string(id)); err != nil {
			return access.Errorf(access.Invalid, "check out: visit: %w", err)
		}
	}
	v, ok := st.Visit(id)
	if !ok {
		return access.Errorf(access.NotFound, "check out: visit %s is not known at this site", id)
	}
	if v.SiteID != m.site {
		return access.Errorf(access.Denied, "check out: visit %s is of site %s; this node serves site %s", id, v.SiteID, m.site)
	}
	if v.State.Final() {
		return access.Errorf(access.Conflict, "check out: visit %s is already %s", id, v.State)
	}
	to := access.VisitState(op.GetState())
	switch to {
	case 0:
		to = access.VisitCheckedOut
		if v.State < access.VisitCheckedIn {
			to = access.VisitExpired
		}
	case access.VisitCheckedOut, access.VisitExpired:
	default:
		return access.Errorf(access.Invalid, "check out: state %s: want checked_out or expired", to)
	}
	next, err := v.Advance(to)
	if err != nil {
		return err
	}
	var drop []access.CardNumber
	for c := range st.Cards() {
		if c.VisitID == id {
			drop = append(drop, c.Number)
		}
	}
	slices.Sort(drop) // map order must not reach the log
	return m.runDesk(txn, cmd, &deskPlan{visit: next, drop: drop})
}

// deskOps adds to the replication ops of entity r what a checkout does to
// a visitor card besides unbinding it: the card is disabled with reason
// "returned" (its status at the hub), before its holder is removed, so
// the hub sees a returned card whose number is free again. A later
// check-in binding the number enables it again (observing this disable).
func (m *Machine) deskOps(cmd *raftv1.Command, r entRef, ops []replication.Op) []replication.Op {
	p := m.deskMemo[cmd]
	if p == nil || r.kind != replication.KindCard || len(p.drop) == 0 {
		return ops
	}
	n, err := access.ParseCardNumber(r.id)
	if err != nil || !slices.Contains(p.drop, n) {
		return ops
	}
	if cur, live := m.rep.Card(n); !live || cur.Status == access.CardReturned {
		return ops
	}
	return append([]replication.Op{replication.DisableOp(access.CardReturned.String())}, ops...)
}

// deskFencing reports whether a visit desk command takes access away.
func deskFencing(cmd *raftv1.Command) (fencing, ok bool) {
	switch cmd.GetOp().(type) {
	case *raftv1.Command_CheckOutVisit:
		return true, true
	case *raftv1.Command_CheckInVisit:
		// Binding a free number takes nothing away from anyone.
		return false, true
	}
	return false, false
}

package sitestate

import (
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

// Fencing reports whether cmd can take access away: a revocation, a
// disable, a checkout or a deletion. The site acknowledges such a command
// only once every node that serves taps has applied it or has certainly
// fenced itself (DESIGN.md §5); edge/raftnode calls this through
// Config.IsFencing. When in doubt it answers true: fencing costs latency,
// not safety.
func Fencing(cmd *raftv1.Command) bool {
	if f, ok := deskFencing(cmd); ok {
		return f
	}
	switch op := cmd.GetOp().(type) {
	case *raftv1.Command_RemoveGrant, *raftv1.Command_RemoveCard, *raftv1.Command_DeletePerson, *raftv1.Command_RemoveDevice:
		return true
	case *raftv1.Command_SetCardStatus:
		return op.SetCardStatus.GetStatus() != accessv1.CardStatus_CARD_STATUS_ACTIVE
	case *raftv1.Command_PutCard:
		// Replacing a card may shorten its validity or rebind it.
		return true
	case *raftv1.Command_PutPerson:
		// Any change of a person may deactivate them or shorten validity.
		return true
	case *raftv1.Command_PutGrant:
		return op.PutGrant.GetRemoved()
	case *raftv1.Command_AdvanceVisit:
		return op.AdvanceVisit.GetState() >= accessv1.VisitState_VISIT_STATE_CHECKED_OUT
	case *raftv1.Command_PutVisit:
		return true
	case *raftv1.Command_PutDevice:
		return true
	case *raftv1.Command_ApplyDeltas:
		// Changes from the hub: fencing when any may take access away.
		return deltasFencing(op.ApplyDeltas)
	case *raftv1.Command_PutGroup, *raftv1.Command_PutSchedule, *raftv1.Command_PutDoor, *raftv1.Command_PutZone, *raftv1.Command_PutSite:
		// A group may lose a door, a schedule a window, a door its zone.
		return true
	}
	return false
}

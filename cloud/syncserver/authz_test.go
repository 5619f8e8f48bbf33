package syncserver_test

import (
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/syncserver"
	"github.com/gatehouse/gatehouse/replication"
)

// facts is what the hub knows, for the authorizer's table test.
type facts struct {
	fields  map[[3]string]string // kind, id, field
	grants  map[access.ID]access.Grant
	holders map[access.CardNumber][]replication.Holder
	held    replication.Vector
}

func (f facts) Field(k replication.Kind, id, field string) (string, bool) {
	v, ok := f.fields[[3]string{k.String(), id, field}]
	return v, ok
}
func (f facts) Grant(id access.ID) (access.Grant, bool) { g, ok := f.grants[id]; return g, ok }
func (f facts) CardHolders(n access.CardNumber) []replication.Holder {
	return f.holders[n]
}
func (f facts) Holds(src replication.Source, seq uint64) bool { return f.held[src] >= seq }

func TestAuthorizer(t *testing.T) {
	a, b := siteA, siteB
	doorA, doorB, groupA, groupB, visitA, visitB := tid(10), tid(11), tid(20), tid(21), tid(30), tid(31)
	employee, visitor, unknown := tid(40), tid(41), tid(42)
	grantA, grantB := tid(50), tid(51)
	known := facts{
		fields: map[[3]string]string{
			{"door", string(doorA), "site"}: a, {"door", string(doorB), "site"}: b,
			{"group", string(groupA), "site"}: a, {"group", string(groupB), "site"}: b,
			{"visit", string(visitA), "site"}: a, {"visit", string(visitB), "site"}: b,
			{"card", "100", "site"}: a, {"card", "200", "site"}: b,
			{"person", string(employee), "kind"}: "occupier", {"person", string(visitor), "kind"}: "visitor",
		},
		grants: map[access.ID]access.Grant{
			grantA: {ID: grantA, HolderID: employee, GroupID: groupA},
			grantB: {ID: grantB, HolderID: employee, GroupID: groupB},
		},
		holders: map[access.CardNumber][]replication.Holder{300: {{PersonID: employee}}}, // hub-homed
		held:    replication.Vector{{Origin: b, Lane: replication.LaneNormal}: 5},
	}
	set, del := replication.SetOp, replication.DeleteOp()
	grant := func(g access.ID) replication.Op {
		return replication.Op{Type: replication.OpGrant, Value: replication.GrantValue(access.Grant{HolderID: employee, GroupID: g})}
	}
	for _, tc := range []struct {
		name   string
		origin string
		kind   replication.Kind
		id     string
		ops    []replication.Op
		seq    uint64
		ok     bool
	}{
		{"OwnSite", a, replication.KindSite, a, []replication.Op{set("name", "A")}, 1, true},
		{"ErrOtherSite", a, replication.KindSite, b, []replication.Op{set("name", "B")}, 1, false},
		{"ErrDeleteOwnSite", a, replication.KindSite, a, []replication.Op{del}, 1, false},
		{"OwnDoor", a, replication.KindDoor, string(doorA), []replication.Op{set("name", "x")}, 1, true},
		{"ErrOtherSitesDoor", a, replication.KindDoor, string(doorB), []replication.Op{set("name", "x")}, 1, false},
		{"ErrMoveDoorHere", a, replication.KindDoor, string(doorB), []replication.Op{set("site", a)}, 1, false},
		{"ErrDoorSetToOtherSite", a, replication.KindDoor, string(tid(12)), []replication.Op{set("site", b)}, 1, false},
		{"NewDoorWithSite", a, replication.KindDoor, string(tid(13)), []replication.Op{set("site", a), set("name", "n")}, 1, true},
		{"ErrNewDoorWithoutSite", a, replication.KindDoor, string(tid(14)), []replication.Op{set("name", "n")}, 1, false},
		{"RevokeUnknownVisit", a, replication.KindVisit, string(tid(15)), []replication.Op{replication.AdvanceOp(access.VisitCheckedOut)}, 1, true},
		{"OwnVisit", a, replication.KindVisit, string(visitA), []replication.Op{replication.AdvanceOp(access.VisitCheckedIn)}, 1, true},
		{"ErrOtherSitesVisit", a, replication.KindVisit, string(visitB), []replication.Op{replication.AdvanceOp(access.VisitCheckedOut)}, 1, false},
		{"OwnCard", a, replication.KindCard, "100", []replication.Op{replication.AddOp("holders", string(visitor))}, 1, true},
		{"ErrOtherSitesCard", a, replication.KindCard, "200", []replication.Op{replication.AddOp("holders", string(visitor))}, 1, false},
		{"ErrHubHomedCard", a, replication.KindCard, "300", []replication.Op{set("site", a), replication.AddOp("holders", string(visitor))}, 1, false},
		{"ClaimHubHomedCard", a, replication.KindCard, "300", []replication.Op{set("site", a), replication.AddOp("holders", replication.HolderValue(visitor, visitA)), {Type: replication.OpEnable}}, 1, true},
		{"ClaimOtherSitesCard", a, replication.KindCard, "200", []replication.Op{set("site", a), replication.AddOp("holders", replication.HolderValue(visitor, visitA))}, 1, true},
		{"ErrClaimForOtherSitesVisit", a, replication.KindCard, "300", []replication.Op{set("site", a), replication.AddOp("holders", replication.HolderValue(visitor, visitB))}, 1, false},
		{"ErrClaimMovesToOtherSite", a, replication.KindCard, "300", []replication.Op{set("site", b), replication.AddOp("holders", replication.HolderValue(visitor, visitA))}, 1, false},
		{"ErrRemoveHubHolder", a, replication.KindCard, "300", []replication.Op{{Type: replication.OpRemove, Field: "holders", Value: string(employee)}, replication.AddOp("holders", replication.HolderValue(visitor, visitA))}, 1, false},
		{"ErrRedateHubCard", a, replication.KindCard, "300", []replication.Op{set("valid_until", replication.TimeValue(time.Unix(1_900_000_000, 0)))}, 1, false},
		{"ErrEnableHubCard", a, replication.KindCard, "300", []replication.Op{{Type: replication.OpEnable}}, 1, false},
		{"DisableAnyCard", a, replication.KindCard, "300", []replication.Op{replication.DisableOp("lost")}, 1, true},
		{"DisableAnyPerson", a, replication.KindPerson, string(employee), []replication.Op{replication.DisableOp("badge reported")}, 1, true},
		{"NewVisitor", a, replication.KindPerson, string(unknown), []replication.Op{set("kind", "visitor"), set("name", "V")}, 1, true},
		{"EditVisitor", a, replication.KindPerson, string(visitor), []replication.Op{set("name", "V")}, 1, true},
		{"ErrEditEmployee", a, replication.KindPerson, string(employee), []replication.Op{set("name", "E")}, 1, false},
		{"ErrMakeEmployee", a, replication.KindPerson, string(tid(43)), []replication.Op{set("kind", "occupier")}, 1, false},
		{"ErrDeletePerson", a, replication.KindPerson, string(visitor), []replication.Op{del}, 1, false},
		{"RevokeOwnGroup", a, replication.KindPerson, string(employee), []replication.Op{replication.RevokeOp(groupA)}, 1, true},
		{"ErrRevokeOtherSitesGroup", a, replication.KindPerson, string(employee), []replication.Op{replication.RevokeOp(groupB)}, 1, false},
		{"GrantOwnGroup", a, replication.KindGrant, string(tid(60)), []replication.Op{grant(groupA)}, 1, true},
		{"ErrGrantOtherSitesGroup", a, replication.KindGrant, string(tid(61)), []replication.Op{grant(groupB)}, 1, false},
		{"ErrGrantUnknownGroup", a, replication.KindGrant, string(tid(62)), []replication.Op{grant(tid(99))}, 1, false},
		{"RemoveOwnGrant", a, replication.KindGrant, string(grantA), []replication.Op{replication.RemoveGrantOp()}, 1, true},
		{"ErrRemoveOtherSitesGrant", a, replication.KindGrant, string(grantB), []replication.Op{replication.RemoveGrantOp()}, 1, false},
		{"RemoveUnknownGrant", a, replication.KindGrant, string(tid(63)), []replication.Op{replication.RemoveGrantOp()}, 1, true},
		{"ErrAnotherOrigin", b, replication.KindVisit, string(visitB), []replication.Op{set("escort", "true")}, 6, false},
		{"EchoOfHeldDelta", b, replication.KindVisit, string(visitB), []replication.Op{set("escort", "true")}, 5, true},
		{"ErrHubOrigin", "hub", replication.KindPerson, string(employee), []replication.Op{set("name", "x")}, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			authz := syncserver.NewAuthorizer(a, known)
			d := replication.Delta{Origin: tc.origin, Lane: replication.LaneOf(tc.ops), Seq: tc.seq,
				Stamp: replication.Stamp{Wall: time.Now().UnixNano(), Origin: tc.origin}, Kind: tc.kind, ID: tc.id, Ops: tc.ops}
			if err := d.Validate(); err != nil {
				t.Fatalf("test delta: %v", err)
			}
			err := authz(tc.origin, d)
			if (err == nil) != tc.ok {
				t.Fatalf("authorize = %v, want allowed %v", err, tc.ok)
			}
		})
	}
	t.Run("CreatedEarlierInSession", func(t *testing.T) {
		authz := syncserver.NewAuthorizer(a, known)
		mk := func(seq uint64, k replication.Kind, id string, ops ...replication.Op) replication.Delta {
			return replication.Delta{Origin: a, Lane: replication.LaneOf(ops), Seq: seq,
				Stamp: replication.Stamp{Wall: time.Now().UnixNano(), Origin: a}, Kind: k, ID: id, Ops: ops}
		}
		door, person := string(tid(70)), string(tid(71))
		for _, d := range []replication.Delta{
			mk(1, replication.KindDoor, door, set("site", a)),
			mk(2, replication.KindDoor, door, set("name", "later")),
			mk(3, replication.KindPerson, person, set("kind", "visitor")),
			mk(4, replication.KindPerson, person, set("name", "later")),
		} {
			if err := authz(a, d); err != nil {
				t.Fatalf("delta %d: %v", d.Seq, err)
			}
		}
	})
}

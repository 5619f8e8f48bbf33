package people

import (
	"context"
	"errors"
	"slices"
	"strings"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/auth"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/cloud/store"
	peoplev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1"
	"github.com/gatehouse/gatehouse/replication"
)

// groupService is the GroupService half of Service.
type groupService struct{ s *Service }

func (v *view) groupProto(ctx context.Context, g access.Group) *peoplev1.Group {
	out := &peoplev1.Group{Id: string(g.ID), SiteId: string(g.SiteID), Name: g.Name, ScheduleId: string(g.ScheduleID)}
	for _, d := range g.Doors {
		out.DoorIds = append(out.DoorIds, string(d))
	}
	for _, e := range v.members[g.ID] {
		if auth.InScope(ctx, e.p.OccupierID) {
			out.Members++
		}
	}
	return out
}

// CreateGroup creates an access group of doors at one site. Admin and
// security only.
func (gs groupService) CreateGroup(ctx context.Context, req *connect.Request[peoplev1.CreateGroupRequest]) (*connect.Response[peoplev1.CreateGroupResponse], error) {
	s := gs.s
	if _, err := auth.Require(ctx, auth.Admin, auth.Security); err != nil {
		return nil, err
	}
	m := req.Msg
	if prev, ok, err := s.idempotent(ctx, "CreateGroup", m.GetIdempotencyKey()); err != nil || ok {
		if err != nil {
			return nil, err
		}
		return gs.created(ctx, access.ID(prev))
	}
	site, err := parseID("site_id", m.GetSiteId())
	if err != nil {
		return nil, err
	}
	name := strings.TrimSpace(m.GetName())
	if err := checkText("name", name, importer200); err != nil {
		return nil, err
	}
	if name == "" {
		return nil, invalid("name is required")
	}
	if len(m.GetDoorIds()) > 1000 {
		return nil, invalid("at most 1000 doors")
	}
	var doors []access.ID
	for _, d := range m.GetDoorIds() {
		id, err := parseID("door_id", d)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(doors, id) {
			doors = append(doors, id)
		}
	}
	var sched access.ID
	if m.GetScheduleId() != "" {
		if sched, err = parseID("schedule_id", m.GetScheduleId()); err != nil {
			return nil, err
		}
	}
	id, err := s.newID()
	if err != nil {
		return nil, connectErr(err)
	}
	known := s.index.current().sites[site]
	_, err = s.state.Write(ctx, func(tx *hubstate.Tx) error {
		r := tx.Replica()
		if _, ok := r.Site(site); !ok && !known {
			return notFound("site %s not known at the hub", site)
		}
		ops := []replication.Op{replication.SetOp("site", string(site)), replication.SetOp("name", name),
			replication.SetOp("schedule", string(sched)), replication.SetOp("kind", access.GroupAccess.String())}
		for _, d := range doors {
			door, ok := r.Door(d)
			if !ok {
				return notFound("door %s not found", d)
			}
			if door.SiteID != site {
				return invalid("door %s is at another site", d)
			}
			ops = append(ops, replication.AddOp("doors", string(d)))
		}
		tx.Change(replication.KindGroup, string(id), ops...)
		tx.Change(replication.KindSite, string(site), replication.AddOp("groups", string(id)))
		s.putIdem(ctx, tx, "CreateGroup", m.GetIdempotencyKey(), string(id))
		return nil
	})
	if errors.Is(err, store.ErrVersionMismatch) {
		if prev, ok, err := s.idempotent(ctx, "CreateGroup", m.GetIdempotencyKey()); err == nil && ok {
			return gs.created(ctx, access.ID(prev))
		}
	}
	if err != nil {
		return nil, connectErr(err)
	}
	return gs.created(ctx, id)
}

// importer200 is the longest group name.
const importer200 = 200

func (gs groupService) created(ctx context.Context, id access.ID) (*connect.Response[peoplev1.CreateGroupResponse], error) {
	v := gs.s.index.current()
	g, ok := v.groups[id]
	if !ok {
		return nil, notFound("group %s not found", id)
	}
	return connect.NewResponse(&peoplev1.CreateGroupResponse{Group: v.groupProto(ctx, g)}), nil
}

// ListGroups lists groups by site and name. Every manager may read them.
func (gs groupService) ListGroups(ctx context.Context, req *connect.Request[peoplev1.ListGroupsRequest]) (*connect.Response[peoplev1.ListGroupsResponse], error) {
	if _, err := auth.Require(ctx, managers...); err != nil {
		return nil, err
	}
	var site access.ID
	if req.Msg.GetSiteId() != "" {
		var err error
		if site, err = parseID("site_id", req.Msg.GetSiteId()); err != nil {
			return nil, err
		}
	}
	v := gs.s.index.current()
	var gl []access.Group
	for _, g := range v.groups {
		if g.Kind == access.GroupAccess && (site == "" || g.SiteID == site) {
			gl = append(gl, g)
		}
	}
	slices.SortFunc(gl, func(a, b access.Group) int {
		if c := strings.Compare(string(a.SiteID), string(b.SiteID)); c != 0 {
			return c
		}
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(string(a.ID), string(b.ID))
	})
	res := &peoplev1.ListGroupsResponse{}
	for _, g := range gl {
		res.Groups = append(res.Groups, v.groupProto(ctx, g))
	}
	return connect.NewResponse(res), nil
}

// members parses a group change: the group and the people, each in the
// caller's scope.
func (gs groupService) members(ctx context.Context, group string, people []string) (access.ID, []access.ID, error) {
	if _, err := auth.Require(ctx, managers...); err != nil {
		return "", nil, err
	}
	gid, err := parseID("group_id", group)
	if err != nil {
		return "", nil, err
	}
	if len(people) == 0 || len(people) > maxBatch {
		return "", nil, invalid("person_ids: 1 to %d people", maxBatch)
	}
	var ids []access.ID
	for _, p := range people {
		id, err := parseID("person_id", p)
		if err != nil {
			return "", nil, err
		}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return gid, ids, nil
}

// checkMembers checks, inside a write, that the group and people exist
// and the caller may manage each person.
func checkMembers(ctx context.Context, r *replication.Replica, gid access.ID, ids []access.ID) error {
	if g, ok := r.Group(gid); !ok || g.Kind != access.GroupAccess {
		return notFound("group %s not found", gid)
	}
	for _, id := range ids {
		p, ok := r.Person(id)
		if !ok || p.Deleted || p.Kind == access.Visitor {
			return notFound("person %s not found", id)
		}
		if err := auth.ScopeOccupier(ctx, p.OccupierID); err != nil {
			return err
		}
	}
	return nil
}

// AddMembers grants the group to each person not holding it yet.
func (gs groupService) AddMembers(ctx context.Context, req *connect.Request[peoplev1.AddMembersRequest]) (*connect.Response[peoplev1.AddMembersResponse], error) {
	s := gs.s
	gid, ids, err := gs.members(ctx, req.Msg.GetGroupId(), req.Msg.GetPersonIds())
	if err != nil {
		return nil, err
	}
	from, until := msTime(req.Msg.GetValidFromMs()), msTime(req.Msg.GetValidUntilMs())
	if !from.IsZero() && !until.IsZero() && !until.After(from) {
		return nil, invalid("valid_until must be after valid_from")
	}
	holding := map[access.ID]bool{}
	for _, e := range s.index.current().members[gid] {
		holding[e.p.ID] = true
	}
	grants := map[access.ID]access.ID{}
	for _, id := range ids {
		if !holding[id] {
			if grants[id], err = s.newID(); err != nil {
				return nil, connectErr(err)
			}
		}
	}
	res := &peoplev1.AddMembersResponse{}
	_, err = s.state.Write(ctx, func(tx *hubstate.Tx) error {
		r := tx.Replica()
		if err := checkMembers(ctx, r, gid, ids); err != nil {
			return err
		}
		for _, id := range ids {
			if gr, ok := grants[id]; ok {
				g := access.Grant{ID: gr, HolderID: id, GroupID: gid, ValidFrom: from, ValidUntil: until}
				tx.Change(replication.KindGrant, string(gr), r.GrantOp(g))
				res.GrantIds = append(res.GrantIds, string(gr))
			}
		}
		return nil
	})
	if err != nil {
		return nil, connectErr(err)
	}
	return connect.NewResponse(res), nil
}

// RemoveMembers revokes each person's membership of the group: every grant
// of it they hold is removed.
func (gs groupService) RemoveMembers(ctx context.Context, req *connect.Request[peoplev1.RemoveMembersRequest]) (*connect.Response[peoplev1.RemoveMembersResponse], error) {
	s := gs.s
	gid, ids, err := gs.members(ctx, req.Msg.GetGroupId(), req.Msg.GetPersonIds())
	if err != nil {
		return nil, err
	}
	var grants []access.ID
	for _, e := range s.index.current().members[gid] {
		if slices.Contains(ids, e.p.ID) {
			for _, g := range e.grants {
				if g.GroupID == gid {
					grants = append(grants, g.ID)
				}
			}
		}
	}
	removed := 0
	_, err = s.state.Write(ctx, func(tx *hubstate.Tx) error {
		r := tx.Replica()
		if err := checkMembers(ctx, r, gid, ids); err != nil {
			return err
		}
		for _, g := range grants {
			if gr, ok := r.Grant(g); ok && !gr.Removed {
				removed++
			}
		}
		// A revocation of the membership, not a removal of the grants
		// seen: it also removes a grant of it made concurrently elsewhere.
		for _, id := range ids {
			tx.Change(replication.KindPerson, string(id), replication.RevokeOp(gid))
		}
		return nil
	})
	if err != nil {
		return nil, connectErr(err)
	}
	return connect.NewResponse(&peoplev1.RemoveMembersResponse{Removed: int32(removed)}), nil
}

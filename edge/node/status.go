package node

import (
	"context"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/edge/doors"
	"github.com/gatehouse/gatehouse/edge/raftnode"
	statusv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/status/v1"
)

// statusService answers StatusService for one edge node: itself in full,
// the other members as this node sees them.
type statusService struct{ n *Node }

func (s *statusService) GetStatus(context.Context, *connect.Request[statusv1.GetStatusRequest]) (*connect.Response[statusv1.GetStatusResponse], error) {
	n := s.n
	st := n.raft.Status()
	lease := n.raft.LeaseValid(time.Now())
	healthy := st.State != raftnode.StateShutdown && st.LeaderID != "" && lease
	detail := ""
	switch {
	case st.State == raftnode.StateShutdown:
		detail = "shut down"
	case st.LeaderID == "":
		detail = "no leader known"
	case !lease:
		detail = "leader lease expired: deciding under the offline rule"
	}
	siteName := n.cfg.SiteName
	n.machine.View(func(as *access.State) {
		if site, ok := as.Site(access.ID(n.cfg.SiteID)); ok {
			siteName = site.Name
		}
	})
	site := &statusv1.SiteStatus{SiteId: n.cfg.SiteID, Name: siteName}
	for _, m := range st.Members {
		ns := &statusv1.NodeStatus{Id: m.ID, ApiAddr: m.APIAddr, RaftAddr: m.RaftAddr, LeaderId: st.LeaderID}
		switch {
		case m.ID == st.NodeID:
			ns.Role, ns.Healthy, ns.Detail = string(st.State), healthy, detail
			if u := n.uplinkDetail(); u != "" {
				ns.Detail = strings.TrimPrefix(ns.Detail+"; "+u, "; ")
			}
			if v := n.deskDetail(); v != "" {
				ns.Detail = strings.TrimPrefix(ns.Detail+"; "+v, "; ")
			}
			ns.AppliedIndex, ns.CommitIndex = st.AppliedIndex, st.CommitIndex
		case m.ID == st.LeaderID:
			ns.Role = string(raftnode.StateLeader)
		default:
			ns.Role = string(raftnode.StateFollower)
		}
		site.Nodes = append(site.Nodes, ns)
	}
	if n.gateway != nil {
		var doorsByID map[access.ID]doors.Status
		if n.mqttDoors != nil {
			doorsByID = map[access.ID]doors.Status{}
			for _, d := range n.mqttDoors.Devices() {
				doorsByID[d.ID] = d
			}
		}
		for _, d := range n.gateway.Devices() {
			ds := &statusv1.DeviceStatus{Id: string(d.ID), Kind: d.Kind.String(), Online: d.Online, Node: n.cfg.NodeID,
				Firmware: d.Firmware, Transport: "mqtt"}
			if !d.LastSeen.IsZero() {
				ds.LastSeenMs = d.LastSeen.UnixMilli()
			}
			if dst, ok := doorsByID[d.ID]; ok {
				doorStatus(ds, dst)
			}
			site.Devices = append(site.Devices, ds)
		}
	}
	if n.canDoors != nil {
		for _, d := range n.canDoors.Devices() {
			ds := &statusv1.DeviceStatus{Id: string(d.ID), Kind: access.DeviceDoor.String(), Online: d.Online,
				Node: n.cfg.NodeID, Transport: "can"}
			if d.State != nil {
				ds.Firmware = d.State.Firmware
			}
			doorStatus(ds, d)
			site.Devices = append(site.Devices, ds)
		}
	}
	return connect.NewResponse(&statusv1.GetStatusResponse{
		Self: &statusv1.Component{Kind: "edge", Id: n.cfg.NodeID, Version: n.cfg.Version, Healthy: healthy,
			Detail: detail, UptimeS: int64(time.Since(n.started).Seconds()), ApiAddr: n.URL()},
		Sites: []*statusv1.SiteStatus{site},
	}), nil
}

// doorStatus adds what the door manager knows of a controller to ds.
func doorStatus(ds *statusv1.DeviceStatus, d doors.Status) {
	ds.Alarms = d.Alarms
	ds.AckedSeq = d.Acked
	ds.CacheVersion = d.CacheVersion
	ds.CacheEntries = uint32(d.CacheEntries)
	if d.State == nil || d.State.Door == nil || !d.Online {
		return
	}
	ds.CutOff, ds.Tamper = d.State.Door.Offline, d.State.Door.Tamper
	for _, x := range d.State.Door.Doors {
		ds.Doors = append(ds.Doors, &statusv1.DoorState{DoorId: string(x.Door), Mode: string(x.Mode), Open: x.Open,
			CacheVersion: x.CacheVersion, FailSecure: x.FailSecure})
	}
}

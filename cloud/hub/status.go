package hub

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"sync"
	"time"

	"connectrpc.com/connect"

	statusv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/status/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/status/v1/statusv1connect"
)

// statusService reports the hub's own health and probes every configured
// site node's StatusService in parallel.
type statusService struct {
	hub *Hub
}

var _ statusv1connect.StatusServiceHandler = (*statusService)(nil)

func (s *statusService) GetStatus(ctx context.Context, _ *connect.Request[statusv1.GetStatusRequest]) (*connect.Response[statusv1.GetStatusResponse], error) {
	h := s.hub
	resp := &statusv1.GetStatusResponse{
		Self: &statusv1.Component{
			Kind:    "hub",
			Id:      "hub",
			Version: h.cfg.Version,
			Healthy: true,
			UptimeS: int64(time.Since(h.started).Seconds()),
			ApiAddr: h.Addr(),
		},
	}
	resp.Sites = make([]*statusv1.SiteStatus, len(h.cfg.Sites))
	devices := make([][][]*statusv1.DeviceStatus, len(h.cfg.Sites)) // per site, per node
	var wg sync.WaitGroup
	for i, site := range h.cfg.Sites {
		resp.Sites[i] = &statusv1.SiteStatus{SiteId: site.ID, Name: site.Name, Nodes: make([]*statusv1.NodeStatus, len(site.Nodes))}
		devices[i] = make([][]*statusv1.DeviceStatus, len(site.Nodes))
		for j, addr := range site.Nodes {
			wg.Go(func() { resp.Sites[i].Nodes[j], devices[i][j] = h.probe(ctx, site.ID, addr) })
		}
	}
	wg.Wait()
	for i := range resp.Sites {
		resp.Sites[i].Devices = mergeDevices(devices[i])
	}
	return connect.NewResponse(resp), nil
}

// mergeDevices combines the nodes' views of the site's devices: a device
// connected to one node's broker is offline (or unknown) at the others, so
// the most recent sighting wins, and the result is sorted by kind and ID.
func mergeDevices(views [][]*statusv1.DeviceStatus) []*statusv1.DeviceStatus {
	byID := map[string]*statusv1.DeviceStatus{}
	for _, v := range views {
		for _, d := range v {
			if cur, ok := byID[d.GetId()]; !ok || d.GetLastSeenMs() > cur.GetLastSeenMs() {
				byID[d.GetId()] = d
			}
		}
	}
	out := make([]*statusv1.DeviceStatus, 0, len(byID))
	for _, d := range byID {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b *statusv1.DeviceStatus) int {
		return cmp.Or(cmp.Compare(a.GetKind(), b.GetKind()), cmp.Compare(a.GetId(), b.GetId()))
	})
	return out
}

// probeClient is shared by all probes. Status is a unary call, so plain
// HTTP/1.1 reaches every node whatever else it speaks.
var probeClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2}}

// probe asks one edge node for its status; an unreachable node is reported
// as such, never as healthy.
func (h *Hub) probe(ctx context.Context, siteID, baseURL string) (*statusv1.NodeStatus, []*statusv1.DeviceStatus) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(h.cfg.ProbeTimeout))
	defer cancel()
	client := statusv1connect.NewStatusServiceClient(probeClient, baseURL)
	res, err := client.GetStatus(ctx, connect.NewRequest(&statusv1.GetStatusRequest{}))
	if err != nil {
		return &statusv1.NodeStatus{ApiAddr: baseURL, Role: "unreachable", Detail: err.Error()}, nil
	}
	for _, site := range res.Msg.GetSites() {
		if site.GetSiteId() != siteID {
			continue
		}
		for _, n := range site.GetNodes() {
			if n.GetId() == res.Msg.GetSelf().GetId() {
				n.ApiAddr = baseURL
				return n, site.GetDevices()
			}
		}
	}
	self := res.Msg.GetSelf()
	return &statusv1.NodeStatus{Id: self.GetId(), ApiAddr: baseURL, Role: "unknown",
		Detail: "node does not report itself as a member of site " + siteID}, nil
}

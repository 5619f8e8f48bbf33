package hub

import (
	"context"
	"errors"
	"net/http"
	"slices"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	consolev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/console/v1"
	"github.com/gatehouse/gatehouse/replication"
)

// ListDivergences serves the divergences the hub's digest exchanges found
// with each site (syncserver.Server.Divergences; docs/replication.md §11).
// The caller must present an API key of role admin or security. A site that is neither one of
// the hub's sync_sites nor one of its sites is NotFound; a hub without a
// store (which replicates nothing) answers FailedPrecondition. It is safe
// for concurrent use.
func (s *consoleService) ListDivergences(ctx context.Context, req *connect.Request[consolev1.ListDivergencesRequest]) (*connect.Response[consolev1.ListDivergencesResponse], error) {
	h := s.hub
	ctx, err := h.authorizeConsole(ctx, req.Header())
	if err != nil {
		return nil, err
	}
	if h.sync == nil {
		return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("this hub has no store: it replicates with no site, so it digests nothing"))
	}
	sites := h.divergenceSites()
	if want := req.Msg.GetSiteId(); want != "" {
		if !slices.Contains(sites, want) {
			return nil, connect.NewError(connect.CodeNotFound, errors.New("site "+want+" is not one of this hub's sites (sync_sites or sites)"))
		}
		sites = []string{want}
	}
	resp := &consolev1.ListDivergencesResponse{}
	for _, site := range sites {
		out := &consolev1.SiteDivergences{SiteId: site, SiteName: h.siteName(site)}
		var err error
		if out.Connected, err = h.sync.Live(ctx, site); err != nil {
			h.log.Warn("reading a site's stream lease failed", "site", site, "err", err)
			return nil, connect.NewError(connect.CodeUnavailable, err)
		}
		for _, d := range h.sync.Divergences(site) {
			out.Divergences = append(out.Divergences, &consolev1.SyncDivergence{
				Origin: d.Source.Origin, Lane: d.Source.Lane.String(), Seq: d.Seq, Source: d.Source.String()})
		}
		resp.Total += int32(len(out.Divergences))
		resp.Sites = append(resp.Sites, out)
	}
	return connect.NewResponse(resp), nil
}

// divergenceSites returns the IDs of the sites the hub knows, from its
// sync_sites and its sites, sorted and without repeats.
func (h *Hub) divergenceSites() []string {
	var ids []string
	for _, s := range h.cfg.SyncSites {
		ids = append(ids, s.ID)
	}
	for _, s := range h.cfg.Sites {
		ids = append(ids, s.ID)
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// siteName returns a site's display name from the configuration, or "".
func (h *Hub) siteName(id string) string {
	for _, s := range h.cfg.Sites {
		if s.ID == id {
			return s.Name
		}
	}
	return ""
}

// divergencesDesc describes gatehouse_sync_divergences on the hub; the
// edge node exports the same name with the same labels.
var divergencesDesc = prometheus.NewDesc("gatehouse_sync_divergences",
	"Divergences found by digest exchanges with the site since this process started: sequence numbers of the source from which the hub and the site hold different deltas (docs/replication.md §11). Present only for a source found divergent.",
	[]string{"site", "source"}, nil)

// divergenceCollector reads the sync server's divergences at each scrape.
type divergenceCollector struct{ hub *Hub }

func (c divergenceCollector) Describe(ch chan<- *prometheus.Desc) { ch <- divergencesDesc }

func (c divergenceCollector) Collect(ch chan<- prometheus.Metric) {
	if c.hub.sync == nil {
		return
	}
	for _, site := range c.hub.divergenceSites() {
		for src, n := range countBySource(c.hub.sync.Divergences(site)) {
			ch <- prometheus.MustNewConstMetric(divergencesDesc, prometheus.GaugeValue, float64(n), site, src.String())
		}
	}
}

// countBySource counts divergences per source.
func countBySource(ds []replication.Divergence) map[replication.Source]int {
	out := map[replication.Source]int{}
	for _, d := range ds {
		out[d.Source]++
	}
	return out
}

// MetricsHandler returns the hub's Prometheus metrics handler, served on
// GET /metrics: gatehouse_sync_divergences by site and source, and the Go
// runtime's and the process's collectors. It is valid between Open and
// Close and safe for concurrent use.
func (h *Hub) MetricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), divergenceCollector{hub: h})
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

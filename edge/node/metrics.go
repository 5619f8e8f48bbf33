package node

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/edge/raftnode"
	"github.com/gatehouse/gatehouse/edge/uplink"
	"github.com/gatehouse/gatehouse/replication"
)

// metrics are the node's Prometheus metrics, served on /metrics of the
// local API. The device gateway registers its own on the same registry.
type metrics struct {
	reg       *prometheus.Registry
	proposeMs *prometheus.HistogramVec
}

func newMetrics(n *Node) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		reg: reg,
		proposeMs: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "gatehouse", Subsystem: "edge", Name: "commit_seconds",
			Help:    "Time from a proposal to its commands' results (Raft commit and apply; fencing commands include the fence).",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16),
		}, []string{"outcome"}),
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), m.proposeMs)
	gauge := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "gatehouse", Subsystem: "edge", Name: name, Help: help}, f))
	}
	status := func() raftnode.Status { return n.raft.Status() }
	gauge("applied_index", "Highest Raft log index applied to the state machine.", func() float64 { return float64(status().AppliedIndex) })
	gauge("commit_index", "Highest Raft log index known committed.", func() float64 { return float64(status().CommitIndex) })
	gauge("is_leader", "1 while this node leads its site's Raft cluster.", func() float64 {
		if status().State == raftnode.StateLeader {
			return 1
		}
		return 0
	})
	gauge("lease_valid", "1 while this node may decide taps under the online rule.", func() float64 {
		if n.raft.LeaseValid(time.Now()) {
			return 1
		}
		return 0
	})
	gauge("cards", "Cards in the node's applied state.", func() float64 {
		var c int
		n.machine.View(func(st *access.State) { c = st.Counts().Cards })
		return float64(c)
	})
	gauge("event_seq", "Last access-event sequence number assigned at the site.", func() float64 { return float64(n.machine.LastSeq()) })
	gauge("replication_local_deltas", "Changes kept at the site under its local origin because the hub would refuse them from a site.", func() float64 {
		var c uint64
		for _, seq := range n.machine.LocalVector() {
			c += seq
		}
		return float64(c)
	})
	if n.uplink != nil {
		for _, lane := range []replication.Lane{replication.LanePriority, replication.LaneNormal, replication.LaneEvents} {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "gatehouse", Subsystem: "edge", Name: "uplink_lag",
				Help:        "Deltas of the site's own log in this lane (for the events lane: access events) that the hub has not acknowledged (on the leader; 0 elsewhere).",
				ConstLabels: prometheus.Labels{"lane": lane.String()}},
				func() float64 { return float64(n.uplink.Status().Lag[lane]) }))
		}
		gauge("uplink_connected", "1 while this node (the leader) has a session open with the hub.", func() float64 {
			if n.uplink.Status().Connected {
				return 1
			}
			return 0
		})
		gauge("uplink_last_sync_seconds", "Unix time at which the hub last acknowledged everything the site had sent (0: never).", func() float64 {
			if t := n.uplink.Status().LastSync; !t.IsZero() {
				return float64(t.UnixNano()) / 1e9
			}
			return 0
		})
		reg.MustRegister(divergenceCollector{site: n.cfg.SiteID, uplink: n.uplink})
		gauge("uplink_applied_batches", "Batches received from the hub and committed through Raft by this node's uplink.", func() float64 {
			return float64(n.uplink.Status().Applied)
		})
	}
	return m
}

// divergencesDesc describes gatehouse_sync_divergences on an edge node;
// the hub exports the same name with the same labels.
var divergencesDesc = prometheus.NewDesc("gatehouse_sync_divergences",
	"Divergences this node's uplink found by digest exchanges with the hub since the node started: sequence numbers of the source from which the site and the hub hold different deltas (docs/replication.md §11). Present only for a source found divergent.",
	[]string{"site", "source"}, nil)

// divergenceCollector reads the uplink's divergences at each scrape.
type divergenceCollector struct {
	site   string
	uplink *uplink.Uplink
}

func (c divergenceCollector) Describe(ch chan<- *prometheus.Desc) { ch <- divergencesDesc }

func (c divergenceCollector) Collect(ch chan<- prometheus.Metric) {
	perSource := map[replication.Source]float64{}
	for _, d := range c.uplink.Divergences() {
		perSource[d.Source]++
	}
	for src, n := range perSource {
		ch <- prometheus.MustNewConstMetric(divergencesDesc, prometheus.GaugeValue, n, c.site, src.String())
	}
}

func (m *metrics) observePropose(start time.Time, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.proposeMs.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

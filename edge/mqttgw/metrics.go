package mqttgw

import "github.com/prometheus/client_golang/prometheus"

// Tap results, the values of the "result" label of taps_total.
const (
	resultGranted   = "granted"
	resultDenied    = "denied"
	resultRefused   = "refused"
	resultMalformed = "malformed"
	resultDuplicate = "duplicate"
)

// metrics are the gateway's Prometheus collectors. They always exist (so the
// code never checks for nil) and are registered only when the config names a
// Registerer.
type metrics struct {
	taps          *prometheus.CounterVec // by result
	tapGranted    prometheus.Counter     // taps by result, resolved once
	tapDenied     prometheus.Counter
	tapRefused    prometheus.Counter
	tapMalformed  prometheus.Counter
	tapDuplicate  prometheus.Counter
	latency       prometheus.Histogram   // tap received → decision published
	messages      *prometheus.CounterVec // non-tap messages by channel and result
	deviceEvents  *prometheus.CounterVec // decoded device events by kind and type
	eventsQueued  prometheus.Counter     // access events queued for recording
	eventsRecord  prometheus.Counter     // access events recorded by the site
	eventsDropped prometheus.Counter     // access events dropped (queue full, or lost at Close)
	recordErrors  prometheus.Counter     // failed RecordEvents calls
	queueLen      prometheus.Gauge       // access events waiting
	clients       prometheus.Gauge       // devices connected to the embedded broker
	authFailures  *prometheus.CounterVec // refused connects by reason
	aclRefusals   *prometheus.CounterVec // refused publishes and subscribes by action
	all           []prometheus.Collector // everything above, for (un)registering
	registered    []prometheus.Collector // what Open registered
	reg           prometheus.Registerer  // where
}

// newMetrics makes the collectors, labelled with the site and node.
func newMetrics(site, node string) *metrics {
	l := prometheus.Labels{"site": site, "node": node}
	m := &metrics{}
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "gatehouse", Subsystem: "mqttgw", Name: name, Help: help, ConstLabels: l}
	}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts(opts(name, help)))
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts(opts(name, help)))
	}
	vec := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts(opts(name, help)), labels)
	}
	m.taps = vec("taps_total", "Taps received, by result: granted, denied, refused (device or door not allowed), malformed (payload or topic refused) or duplicate (repeated request ID, answered again).", "result")
	m.tapGranted = m.taps.WithLabelValues(resultGranted)
	m.tapDenied = m.taps.WithLabelValues(resultDenied)
	m.tapRefused = m.taps.WithLabelValues(resultRefused)
	m.tapMalformed = m.taps.WithLabelValues(resultMalformed)
	m.tapDuplicate = m.taps.WithLabelValues(resultDuplicate)
	m.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "gatehouse", Subsystem: "mqttgw", Name: "decision_seconds", ConstLabels: l,
		Help:    "Time from receiving a tap to publishing its decision, in seconds.",
		Buckets: prometheus.ExponentialBucketsRange(25e-6, 1, 16),
	})
	m.messages = vec("messages_total", "State and event messages from devices, by channel and result: ok, refused or malformed.", "channel", "result")
	m.deviceEvents = vec("device_events_total", "Device events decoded, by device kind and event type.", "kind", "type")
	m.eventsQueued = counter("events_queued_total", "Access events queued for recording in the site's event log.")
	m.eventsRecord = counter("events_recorded_total", "Access events recorded in the site's event log.")
	m.eventsDropped = counter("events_dropped_total", "Access events dropped: the oldest when the queue was full, or those still queued when Close gave up.")
	m.recordErrors = counter("record_errors_total", "Failed calls to record access events (each is retried).")
	m.queueLen = gauge("events_queue_length", "Access events waiting to be recorded.")
	m.clients = gauge("clients_connected", "Devices connected to the embedded broker.")
	m.authFailures = vec("auth_failures_total", "Device connections refused by the embedded broker, by reason.", "reason")
	m.aclRefusals = vec("acl_refusals_total", "Publishes and subscriptions refused by the embedded broker's access rules, by action.", "action")
	m.all = []prometheus.Collector{
		m.taps, m.latency, m.messages, m.deviceEvents, m.eventsQueued, m.eventsRecord,
		m.eventsDropped, m.recordErrors, m.queueLen, m.clients, m.authFailures, m.aclRefusals,
	}
	return m
}

// register registers every collector with reg (nil: none). On an error it
// unregisters what it registered and returns the error.
func (m *metrics) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	m.reg = reg
	for _, c := range m.all {
		if err := reg.Register(c); err != nil {
			m.unregister()
			return err
		}
		m.registered = append(m.registered, c)
	}
	return nil
}

// unregister removes what register registered.
func (m *metrics) unregister() {
	for _, c := range m.registered {
		m.reg.Unregister(c)
	}
	m.registered = nil
}

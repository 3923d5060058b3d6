package metrics

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every metric name of the service.
const Namespace = "cdc_broadcaster"

// Options configure a Metrics.
type Options struct {
	// Sources are read at each scrape; Watch replaces them. Default none.
	Sources Sources
	// Now is the clock for ages and latencies. Default time.Now.
	Now func() time.Time
	// Version, when set, is exposed as cdc_broadcaster_build_info.
	Version string
	// NoRuntimeMetrics leaves out the Go runtime and process collectors
	// (for tests, whose output they would make unpredictable).
	NoRuntimeMetrics bool
}

// Metrics holds the service's Prometheus registry: the Go runtime and
// process collectors, a collector that reads Sources at each scrape, and the
// latency histograms fed by ObserveDelivery, ObserveSQL and ObservePublish.
type Metrics struct {
	now      func() time.Time
	reg      *prometheus.Registry
	sources  atomic.Pointer[Sources]
	delivery prometheus.Histogram
	aclSQL   prometheus.Histogram
	publish  prometheus.Histogram
}

// Latency histogram buckets, in seconds.
var (
	deliveryBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}
	sqlBuckets      = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
)

// New returns a Metrics with its own registry.
func New(opts Options) *Metrics {
	m := &Metrics{now: opts.Now, reg: prometheus.NewRegistry()}
	if m.now == nil {
		m.now = time.Now
	}
	m.Watch(opts.Sources)
	m.delivery = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace,
		Name:      "commit_to_send_seconds",
		Help:      "Time from an event's commit in the database to its frame written to a client.",
		Buckets:   deliveryBuckets,
	})
	m.aclSQL = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace,
		Name:      "acl_sql_query_duration_seconds",
		Help:      "Duration of the queries of sql access rules.",
		Buckets:   sqlBuckets,
	})
	m.publish = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace,
		Name:      "stream_publish_seconds",
		Help:      "Time from publishing an event to the JetStream stream to its acknowledgement.",
		Buckets:   sqlBuckets,
	})
	m.reg.MustRegister(m.delivery, m.aclSQL, m.publish, &collector{m: m})
	if opts.Version != "" {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace:   Namespace,
			Name:        "build_info",
			Help:        "Always 1; the version label says which build is running.",
			ConstLabels: prometheus.Labels{"version": opts.Version},
		}, func() float64 { return 1 }))
	}
	if !opts.NoRuntimeMetrics {
		m.reg.MustRegister(
			collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		)
	}
	return m
}

// Watch replaces the sources read at each scrape.
func (m *Metrics) Watch(src Sources) {
	m.sources.Store(&src)
}

// Registry returns the registry, to register more collectors or to gather.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition format: the
// handler of GET /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.InstrumentMetricHandler(m.reg, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
}

// ObserveDelivery records the commit-to-send latency of an event whose
// frame has just been written to a client; commit is the event's commit
// time. A zero commit time is ignored, and a commit time ahead of the local
// clock counts as no latency. It is the gateway's delivery hook.
func (m *Metrics) ObserveDelivery(commit time.Time) {
	if commit.IsZero() {
		return
	}
	m.delivery.Observe(max(m.now().Sub(commit), 0).Seconds())
}

// ObserveSQL records the duration of an sql access rule's query. It is the
// access rules' query hook.
func (m *Metrics) ObserveSQL(d time.Duration) {
	m.aclSQL.Observe(d.Seconds())
}

// ObservePublish records how long the stream took to acknowledge an event
// published to it. It is the stream writer's hook (natslog.Options).
func (m *Metrics) ObservePublish(d time.Duration) {
	m.publish.Observe(d.Seconds())
}

package metrics

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/paperrec/recommender/internal/store"
)

// Metrics holds the service's collectors in a registry of its own.
type Metrics struct {
	registry *prometheus.Registry

	rpcs          *prometheus.CounterVec
	rpcDuration   *prometheus.HistogramVec
	embedRequests *prometheus.CounterVec
	embedRetries  prometheus.Counter
	embedDuration prometheus.Histogram
	embedInputs   prometheus.Counter
	embedTokens   prometheus.Counter
	storeDuration *prometheus.HistogramVec
	ingested      *prometheus.CounterVec
}

// New creates the collectors, plus Go runtime and process metrics.
func New() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		rpcs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "recommender_rpcs_total", Help: "RPCs handled, by method, status code and transport."}, []string{"method", "code", "transport"}),
		rpcDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "recommender_rpc_duration_seconds", Help: "RPC latency, by method, status code and transport.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"method", "code", "transport"}),
		embedRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "recommender_embedding_requests_total", Help: "HTTP requests to the embedding API, by outcome (ok or error)."}, []string{"outcome"}),
		embedRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "recommender_embedding_retries_total", Help: "Embedding requests retried after a transient failure."}),
		embedDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "recommender_embedding_request_duration_seconds", Help: "Latency of embedding API requests.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}),
		embedInputs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "recommender_embedding_inputs_total", Help: "Texts embedded."}),
		embedTokens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "recommender_embedding_tokens_total", Help: "Estimated tokens embedded (3 bytes a token)."}),
		storeDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "recommender_store_operation_duration_seconds", Help: "Latency of store operations, by backend and operation.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18)}, []string{"backend", "operation"}),
		ingested: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "recommender_ingested_papers_total", Help: "Papers received by UpsertPapers and IngestPapers (backfills), by outcome."}, []string{"outcome"}),
	}
	m.registry.MustRegister(m.rpcs, m.rpcDuration, m.embedRequests, m.embedRetries, m.embedDuration, m.embedInputs,
		m.embedTokens, m.storeDuration, m.ingested,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// ObserveRPC records one RPC. The transport is how it came: grpc (the gRPC port), or on the
// HTTP port http-json (POST /v1/), connect, grpc-web or grpc-http.
func (m *Metrics) ObserveRPC(method, code, transport string, d time.Duration) {
	if m == nil {
		return
	}
	m.rpcs.WithLabelValues(method, code, transport).Inc()
	m.rpcDuration.WithLabelValues(method, code, transport).Observe(d.Seconds())
}

// ObserveIngest counts papers by outcome: inserted, updated, unchanged or rejected.
func (m *Metrics) ObserveIngest(outcome string, n int64) {
	if m == nil || n == 0 {
		return
	}
	m.ingested.WithLabelValues(outcome).Add(float64(n))
}

// ObserveRequest implements embed.Observer.
func (m *Metrics) ObserveRequest(d time.Duration, inputs, tokens int, err error) {
	if m == nil {
		return
	}
	m.embedDuration.Observe(d.Seconds())
	if err != nil {
		m.embedRequests.WithLabelValues("error").Inc()
		return
	}
	m.embedRequests.WithLabelValues("ok").Inc()
	m.embedInputs.Add(float64(inputs))
	m.embedTokens.Add(float64(tokens))
}

// ObserveRetry implements embed.Observer.
func (m *Metrics) ObserveRetry() {
	if m != nil {
		m.embedRetries.Inc()
	}
}

// PaperCount exports the store's paper count and, when it keeps two vector sets, how many
// papers have a vector in the second (a re-embedding's progress), read at each scrape.
func (m *Metrics) PaperCount(st store.Store) {
	if m == nil {
		return
	}
	m.gauge("recommender_papers", "Papers in the store.", func(ctx context.Context) (float64, error) {
		s, err := st.Stats(ctx)
		return float64(s.PaperCount), err
	})
	if vs, ok := store.As[store.VectorSets](st); ok {
		m.gauge("recommender_other_vector_set_papers",
			"Papers with a vector in the store's second vector set (filled by a re-embedding, or kept after a switch); 0 when there is none.",
			func(ctx context.Context) (float64, error) {
				s, err := vs.VectorSetStatus(ctx)
				return float64(s.OtherVectors), err
			})
	}
}

// gauge registers a gauge read by read at each scrape; -1 when it fails.
func (m *Metrics) gauge(name, help string, read func(context.Context) (float64, error)) {
	m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		v, err := read(ctx)
		if err != nil {
			return -1
		}
		return v
	}))
}

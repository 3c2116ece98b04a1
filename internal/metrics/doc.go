// Package metrics exposes the service's Prometheus metrics: RPCs, embedding calls, store
// operations and ingest progress. A nil *Metrics records nothing, so tests can leave it out.
package metrics

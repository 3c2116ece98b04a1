package metrics

import (
	"context"
	"time"

	"github.com/paperrec/recommender/internal/store"
)

// InstrumentStore wraps st so every operation's latency is recorded. It keeps st's
// HealthChecker, when it has one.
func (m *Metrics) InstrumentStore(st store.Store, backend string) store.Store {
	if m == nil {
		return st
	}
	s := &instrumented{Store: st, m: m, backend: backend}
	if hc, ok := st.(store.HealthChecker); ok {
		return &instrumentedPinger{instrumented: s, hc: hc}
	}
	return s
}

type instrumented struct {
	store.Store
	m       *Metrics
	backend string
}

type instrumentedPinger struct {
	*instrumented
	hc store.HealthChecker
}

func (s *instrumentedPinger) Ping(ctx context.Context) error { return s.hc.Ping(ctx) }

// Unwrap implements store.Wrapper, so the store's optional interfaces stay reachable.
func (s *instrumented) Unwrap() store.Store { return s.Store }

func (s *instrumented) observe(op string, start time.Time) {
	s.m.storeDuration.WithLabelValues(s.backend, op).Observe(time.Since(start).Seconds())
}

func (s *instrumented) Upsert(ctx context.Context, papers []store.Paper) ([]store.Outcome, error) {
	defer s.observe("upsert", time.Now())
	return s.Store.Upsert(ctx, papers)
}

func (s *instrumented) Get(ctx context.Context, ids []string) ([]store.Paper, error) {
	defer s.observe("get", time.Now())
	return s.Store.Get(ctx, ids)
}

func (s *instrumented) Lookup(ctx context.Context, ids []string) ([]store.Paper, error) {
	defer s.observe("lookup", time.Now())
	return s.Store.Lookup(ctx, ids)
}

func (s *instrumented) Delete(ctx context.Context, ids []string) ([]string, error) {
	defer s.observe("delete", time.Now())
	return s.Store.Delete(ctx, ids)
}

func (s *instrumented) Search(ctx context.Context, q store.Query) (store.Lists, error) {
	defer s.observe("search", time.Now())
	return s.Store.Search(ctx, q)
}

func (s *instrumented) Read(ctx context.Context, ids []string, fields store.Fields, denseSet string) ([]store.Record, error) {
	defer s.observe("read", time.Now())
	return s.Store.Read(ctx, ids, fields, denseSet)
}

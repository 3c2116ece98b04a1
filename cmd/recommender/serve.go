package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/app"
	"github.com/paperrec/recommender/internal/auth"
	"github.com/paperrec/recommender/internal/cli"
	"github.com/paperrec/recommender/internal/demo"
	"github.com/paperrec/recommender/internal/embed"
	"github.com/paperrec/recommender/internal/httpapi"
	"github.com/paperrec/recommender/internal/metrics"
	"github.com/paperrec/recommender/internal/neighbours"
	"github.com/paperrec/recommender/internal/server"
	"github.com/paperrec/recommender/internal/store"
	"github.com/paperrec/recommender/internal/tracing"
)

const serveHelp = `
Runs the recommender gRPC service. By default papers are kept in the embedded store on disk
under the data directory (durable once a write returns); with --store qdrant they are kept in a
Qdrant collection, and any number of replicas can serve it. Without an embedding API papers are
recommended by BM25 over titles and abstracts.
The gRPC health service and server reflection are on, so grpcurl works against it.

With an embedding API configured (EMBEDDING_BASE_URL, EMBEDDING_MODEL, EMBEDDING_API_KEY),
papers are embedded as they are ingested and recommendations are hybrid by default: dense
cosine similarity fused with BM25. A data directory stays bound to the first model it is used
with; starting with another model or size is refused. To move it to another model without
downtime, start it with both: the current one (EMBEDDING_*) and the new one (--reembed-model,
--reembed-base-url, --reembed-dimensions, the prefixes; REEMBED_API_KEY, else EMBEDDING_API_KEY).
It keeps answering with the current model while it embeds every paper again into a second set
of vectors in the background (GetIndexInfo's other_vector_set shows the progress; a restart
resumes), then switches atomically and embeds with the new model from then on. The former
vectors stay, so moving back is the same move the other way, until RetireVectorSet deletes
them (recommender retire-vectors).

Every flag can also be set by the environment variable named in its description; a flag given
on the command line wins. With OTEL_EXPORTER_OTLP_ENDPOINT set, every RPC is traced with
OpenTelemetry and the spans are sent there over OTLP/gRPC (the other OTEL_EXPORTER_OTLP_*
variables apply).`

func runServe(ctx context.Context, args []string, _, stderr io.Writer) error {
	var f serveFlags
	fs := cli.NewEnvFlags("serve", "[flags]", serveHelp, stderr) // cli.ApplyEnv reads the variables
	f.register(fs)
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if err := cli.ApplyEnv(fs); err != nil {
		return err
	}
	c, err := f.Validate(stderr)
	if err != nil {
		return err
	}
	log := c.log
	if flush, err := startTracing(ctx, &c.grpc, log); err != nil {
		return err
	} else if flush != nil {
		defer flush() // last: the spans of the final RPCs
	}
	st, closeStore, err := openStore(ctx, &f.store, c, log)
	if err != nil {
		return err
	}
	defer closeStore() // after every in-flight RPC has finished: every acknowledged write is in
	a, err := newApp(ctx, st, c, log)
	if err != nil {
		return err
	}
	svc := server.NewService(a)
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	if err := startBackground(ctx, stop, svc, &f, c, log); err != nil {
		return err
	}
	srv, err := server.Listen(c.grpc, svc, log)
	if err != nil {
		return err
	}
	stopPorts, err := servePorts(ctx, srv, svc, &f, c, log)
	defer stopPorts() // both drain from the same signal, within the same timeout
	if err != nil {
		return err
	}
	if err := watchAndAnnounce(ctx, st, srv, &f, c, log); err != nil {
		return err
	}
	if err := srv.Serve(ctx); err != nil {
		return err
	}
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("stopped")
	return nil
}

// Bounds of the neighbour lists' settings: a list serves at most a page of 100.
const (
	maxNeighbours       = 100
	maxNeighbourWorkers = 64
)

// serveFlags are serve's settings as given: its flags, each with its environment variable
// (cli.EnvName, read by cli.ApplyEnv), checked together by Validate.
type serveFlags struct {
	grpc                                                server.Config
	store                                               cli.StoreFlags
	sec                                                 serverSecurity
	emb, reemb                                          cli.EmbeddingFlags
	httpAddr, corsOrigins, metricsAddr, load, logFormat string
	demo, fallback                                      bool
	neighbours, neighbourWorkers                        int
}

func (f *serveFlags) register(fs *flag.FlagSet) {
	f.grpc = server.DefaultConfig()
	fs.StringVar(&f.grpc.Addr, "grpc-addr", f.grpc.Addr, "gRPC listen address, host:port; port 0 picks a free port")
	f.store.Register(fs)
	f.sec.register(fs)
	fs.BoolVar(&f.grpc.Reflection, "reflection", true, "serve gRPC reflection so tools like grpcurl need no .proto files")
	fs.DurationVar(&f.grpc.MaxConnectionAge, "max-connection-age", f.grpc.MaxConnectionAge,
		"close each client connection after this long (calls in flight finish first), so clients "+
			"reconnect and reach replicas added since; 0: never")
	fs.DurationVar(&f.grpc.ShutdownTimeout, "shutdown-timeout", f.grpc.ShutdownTimeout,
		"on SIGTERM, how long in-flight RPCs may run before they are cut")
	fs.IntVar(&f.grpc.MaxRecvMsgBytes, "max-message-bytes", f.grpc.MaxRecvMsgBytes, "largest request message accepted")
	fs.StringVar(&f.httpAddr, "http-addr", "127.0.0.1:8080",
		"HTTP listen address for the JSON API (POST /v1/<Method>), /openapi.json and the page at /; empty: off")
	fs.StringVar(&f.corsOrigins, "cors-origins", "", "comma-separated origins allowed to call the JSON API from a browser; none by default")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics; empty: off")
	fs.BoolVar(&f.demo, "demo", false, "load the built-in demo corpus (48 papers written for this project) at start")
	fs.StringVar(&f.load, "load", "", "`FILE` of papers to load at start, in the background while serving: JSON lines as backfill reads them (plain or .gz); unchanged papers are skipped, so restarting with it costs nothing")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	f.emb.Register(fs)
	f.reemb.RegisterAs(fs, "reembed", "REEMBED", false)
	fs.BoolVar(&f.fallback, "embedding-fallback-lexical", false,
		"when the embedding API is down, answer text queries that leave the mode to the server lexically instead of UNAVAILABLE")
	fs.IntVar(&f.neighbours, "neighbours", neighbours.DefaultLength,
		"keep each paper's `N` most similar papers precomputed in the store, for SimilarPapers and the page's similar papers (built in the background, then kept current as papers are written); 0: none, every request searched")
	fs.IntVar(&f.neighbourWorkers, "neighbour-workers", 1,
		"papers whose lists this process computes at a time (building them, and keeping them current; replicas over one Qdrant take turns, one at a time); 0: serve the lists only")
}

// serveConfig is serve's configuration, checked and resolved: keys read, TLS loaded, models
// known.
type serveConfig struct {
	grpc      server.Config
	keys      *auth.Keys
	embedding *embed.Config // nil: lexical
	reembed   *embed.Config // nil: no move to another model
	origins   []string
	metrics   *metrics.Metrics // nil: no metrics port
	fallback  bool
	log       *slog.Logger
	// neighbours is the lists' length (0: none); neighbourWorkers how many this process computes
	// at a time (0: it serves them only).
	neighbours, neighbourWorkers int
}

// Validate checks every setting and returns the configuration they make.
func (f *serveFlags) Validate(stderr io.Writer) (serveConfig, error) {
	c := serveConfig{grpc: f.grpc, fallback: f.fallback, neighbours: f.neighbours, neighbourWorkers: f.neighbourWorkers}
	if f.neighbours < 0 || f.neighbours > maxNeighbours {
		return c, cli.UsageError{Msg: fmt.Sprintf("--neighbours must be 0 (none) to %d, got %d", maxNeighbours, f.neighbours)}
	}
	if f.neighbourWorkers < 0 || f.neighbourWorkers > maxNeighbourWorkers {
		return c, cli.UsageError{Msg: fmt.Sprintf("--neighbour-workers must be 0 (serve the lists only) to %d, got %d", maxNeighbourWorkers, f.neighbourWorkers)}
	}
	if err := f.store.Validate(); err != nil {
		return c, err
	}
	embCfg, useEmbedder, err := f.emb.Config()
	if err != nil {
		return c, err
	}
	f.reemb.Inherit(embCfg)
	nextCfg, reembedding, err := f.reemb.Config()
	switch {
	case err != nil:
		return c, err
	case !reembedding && f.reemb.Cfg.Model != "":
		return c, cli.UsageError{Msg: "--reembed-model needs --reembed-base-url or --embedding-base-url: where to embed with it"}
	case reembedding && useEmbedder && embCfg.Model == nextCfg.Model && embCfg.Prefixes == nextCfg.Prefixes && embCfg.Dimensions == nextCfg.Dimensions:
		return c, cli.UsageError{Msg: "--reembed-model names the model the store is already embedded with; leave it unset"}
	}
	if useEmbedder {
		c.embedding = &embCfg
	}
	if reembedding {
		c.reembed = &nextCfg
	}
	if c.log, err = newLogger(f.logFormat, stderr); err != nil {
		return c, err
	}
	if c.keys, err = f.sec.keys(); err != nil {
		return c, err
	}
	if c.grpc.TLS, err = f.sec.tlsConfig(); err != nil {
		return c, err
	}
	gate, err := auth.NewGate(c.keys, f.sec.rateLimit, f.sec.rateBurst)
	if err != nil {
		return c, cli.UsageError{Msg: err.Error()}
	}
	c.grpc.Gate, c.grpc.AllowUnauthenticated = gate, f.sec.allowUnauthenticated
	c.grpc.MaxCallsPerCaller, c.grpc.MaxConnsPerAddress = f.sec.maxCalls, f.sec.maxConns
	if err := c.grpc.Validate(); err != nil {
		return c, cli.UsageError{Msg: err.Error()}
	}
	if f.httpAddr != "" {
		httpCfg := c.grpc
		httpCfg.Addr = f.httpAddr
		if err := httpCfg.Validate(); err != nil {
			return c, cli.UsageError{Msg: "--http-addr: " + err.Error()}
		}
	}
	if c.origins, err = parseOrigins(f.corsOrigins); err != nil {
		return c, cli.UsageError{Msg: "--cors-origins: " + err.Error()}
	}
	if f.metricsAddr != "" {
		c.metrics = metrics.New()
		c.grpc.Metrics = c.metrics
	}
	return c, nil
}

// startTracing traces every RPC to OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set; flush sends the
// last spans.
func startTracing(ctx context.Context, cfg *server.Config, log *slog.Logger) (flush func(), err error) {
	if !tracing.Enabled() {
		return nil, nil
	}
	opt, shutdown, err := tracing.Setup(ctx, "recommender")
	if err != nil {
		return nil, err
	}
	cfg.ExtraOptions = append(cfg.ExtraOptions, opt)
	log.Info("tracing to OTLP", "endpoint", cli.EnvOr("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT")))
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdown(sctx); err != nil {
			log.Warn("flush traces", "error", err)
		}
	}, nil
}

// openStore opens the store, instrumented. Its close, called last, is bounded with the rest of
// the stop by the shutdown timeout: what the drain leaves of it is the store's saves'.
func openStore(ctx context.Context, sf *cli.StoreFlags, c serveConfig, log *slog.Logger) (store.Store, func(), error) {
	raw, err := sf.Open(ctx, log)
	if err != nil {
		return nil, nil, err
	}
	var stopAt atomic.Int64
	context.AfterFunc(ctx, func() { stopAt.Store(time.Now().UnixNano()) })
	closeStore := func() {
		closeStore := raw.Close
		if w, ok := raw.(interface{ CloseWithin(context.Context) error }); ok && stopAt.Load() != 0 {
			cctx, cancel := context.WithDeadline(context.Background(), time.Unix(0, stopAt.Load()).Add(c.grpc.ShutdownTimeout))
			defer cancel()
			closeStore = func() error { return w.CloseWithin(cctx) }
		}
		if err := closeStore(); err != nil {
			log.Error("close store", "error", err)
		}
	}
	st := c.metrics.InstrumentStore(raw, sf.Backend)
	c.metrics.PaperCount(st)
	return st, closeStore, nil
}

// newApp makes the application over st with the configured models. A remote store may come up
// after the service: the binding then waits for it (startBackground).
func newApp(ctx context.Context, st store.Store, c serveConfig, log *slog.Logger) (*app.App, error) {
	var emb embed.Embedder
	opts := []app.Option{app.WithMetrics(c.metrics), app.WithDeferredBinding()}
	if c.fallback {
		opts = append(opts, app.WithLexicalFallback())
	}
	if c.neighbours > 0 {
		opts = append(opts, app.WithNeighbourLists(c.neighbours, c.neighbourWorkers))
	}
	for _, m := range []struct {
		cfg  *embed.Config
		what string
		use  func(embed.Embedder)
	}{
		{c.embedding, "embedding model configured", func(e embed.Embedder) { emb = e }},
		{c.reembed, "re-embedding model configured", func(e embed.Embedder) { opts = append(opts, app.WithReembedding(e)) }},
	} {
		if m.cfg == nil {
			continue
		}
		if c.metrics != nil {
			m.cfg.Observer = c.metrics
		}
		m.cfg.Logger = log
		client, err := embed.New(*m.cfg)
		if err != nil {
			return nil, err
		}
		m.use(client)
		log.Info(m.what, "embedding", *m.cfg)
	}
	return app.New(ctx, st, emb, opts...)
}

// startBackground starts what serving does beside answering: binding a store that is not up
// yet, the demo corpus, --load's file, re-embedding. A failure that makes serving wrong (a store
// of another model) stops the server through stop.
func startBackground(ctx context.Context, stop context.CancelCauseFunc, svc *server.Service, f *serveFlags, c serveConfig, log *slog.Logger) error {
	a := svc.App()
	demoPending := f.demo
	if demoPending && a.Ready() { // the demo corpus loads now when the store answers, else once it does
		err := loadDemoCorpus(ctx, svc, log)
		var ue *store.UnavailableError
		if err != nil && !errors.As(err, &ue) {
			return err
		}
		demoPending = err != nil
	}
	if !a.Ready() || demoPending {
		log.Warn("store unavailable at start: serving NOT_SERVING until it answers", "store", f.store.Backend)
		go func() {
			err := a.AwaitBinding(ctx, log)
			if err == nil && demoPending {
				err = app.RetryWhileUnavailable(ctx, log, "load the demo corpus",
					func(ctx context.Context) error { return loadDemoCorpus(ctx, svc, log) })
			}
			if err != nil && ctx.Err() == nil {
				stop(err) // another model's store, say: stop serving and say why
			}
		}()
	}
	if f.load != "" {
		go func() {
			if err := a.AwaitBinding(ctx, log); err != nil {
				return
			}
			if err := loadFile(ctx, svc, f.load, 10*time.Second, log); err != nil && ctx.Err() == nil {
				log.Error("load stopped; serving what is stored", "file", f.load, "error", err)
			}
		}()
	}
	if c.neighbours > 0 && c.neighbourWorkers > 0 {
		go func() {
			if err := a.AwaitBinding(ctx, log); err != nil {
				return
			}
			if err := a.KeepNeighbourLists(ctx, log); err != nil && ctx.Err() == nil {
				log.Error("neighbour lists no longer kept current; similar papers are served from them as they are, and searched where a list is missing", "error", err)
			}
		}()
	}
	if c.reembed != nil || c.embedding != nil {
		// In the background of serving; a failure is logged and serving goes on with the
		// current model (a restart resumes where it stopped). Without --reembed-model there is
		// something to do only when the store's papers were stored before it had a model.
		go func() {
			if err := a.AwaitBinding(ctx, log); err != nil {
				return
			}
			if err := a.Reembed(ctx, log); err != nil && ctx.Err() == nil {
				log.Error("re-embedding stopped; still serving with the current model", "error", err)
			}
		}()
	}
	return nil
}

// servePorts serves the metrics port and the HTTP port (JSON API, Connect, the page) beside the
// gRPC one; stop drains them.
func servePorts(ctx context.Context, srv *server.Server, svc *server.Service, f *serveFlags, c serveConfig, log *slog.Logger) (stop func(), err error) {
	var stops []func()
	stop = func() {
		for _, s := range slices.Backward(stops) {
			s()
		}
	}
	if f.metricsAddr != "" {
		var h http.Handler = metricsMux(c.metrics)
		if listensOnLoopback(f.metricsAddr) {
			h = httpapi.LoopbackHostsOnly(h) // no page on a rebound name reads the metrics
		}
		s, err := serveHTTP(ctx, "metrics", f.metricsAddr, nil, h, c.grpc.ShutdownTimeout, c.grpc.MaxConnsPerAddress, log)
		if err != nil {
			return stop, err
		}
		stops = append(stops, s)
	}
	if f.httpAddr != "" {
		rpc, err := srv.HTTPHandler()
		if err != nil {
			return stop, err
		}
		h := httpapi.Handler(svc, srv.UnaryInterceptor(), httpapi.Config{CORSOrigins: c.origins, MaxBodyBytes: int64(c.grpc.MaxRecvMsgBytes),
			LoopbackHostsOnly: c.keys == nil && listensOnLoopback(f.httpAddr), RPC: rpc, Gate: srv})
		if tracing.Enabled() {
			h = tracing.HTTPHandler(h)
		}
		s, err := serveHTTP(ctx, "http", f.httpAddr, c.grpc.TLS, h, c.grpc.ShutdownTimeout, c.grpc.MaxConnsPerAddress, log)
		if err != nil {
			return stop, err
		}
		stops = append(stops, s)
	}
	return stop, nil
}

// watchAndAnnounce follows a remote store's health, and logs what is served how.
func watchAndAnnounce(ctx context.Context, st store.Store, srv *server.Server, f *serveFlags, c serveConfig, log *slog.Logger) error {
	stats, err := st.Stats(ctx)
	var ue *store.UnavailableError
	if err != nil && !errors.As(err, &ue) {
		return err
	}
	if hc, ok := st.(store.HealthChecker); ok {
		srv.WatchStore(ctx, hc, f.store.HealthInterval)
	}
	authMode := "none: loopback only"
	switch {
	case c.keys != nil:
		authMode = fmt.Sprintf("%d API keys", c.keys.Len())
	case c.grpc.AllowUnauthenticated:
		authMode = "none, allowed on a reachable address"
	}
	if c.keys == nil {
		log.Warn("no API keys configured: every caller may read and write")
	}
	retrieval := server.LexicalModel
	if c.embedding != nil {
		retrieval = "hybrid"
	}
	log.Info("serving", "grpc_addr", srv.Addr().String(), "tls", c.grpc.TLS != nil, "mtls", c.grpc.TLS != nil && c.grpc.TLS.ClientCAs != nil,
		"auth", authMode, "rate_limit", f.sec.rateLimit, "store", stats.Backend,
		"papers", stats.PaperCount, "retrieval", retrieval, "reflection", c.grpc.Reflection, "metrics_addr", f.metricsAddr, "version", cli.Version())
	return nil
}

func metricsMux(m *metrics.Metrics) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	return mux
}

// serveHTTP serves h on addr (over TLS when tlsCfg is set) until ctx is done or the returned stop
// is called, then lets requests in flight finish for up to grace and cuts the rest: it drains
// alongside the gRPC server, within the same shutdown timeout. stop waits for that.
func serveHTTP(ctx context.Context, name, addr string, tlsCfg *tls.Config, h http.Handler, grace time.Duration, maxConns int, log *slog.Logger) (func(), error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s listener: %w", name, err)
	}
	lis = server.LimitPerAddress(lis, maxConns)
	if tlsCfg != nil {
		tlsCfg = tlsCfg.Clone()
		tlsCfg.NextProtos = []string{"h2", "http/1.1"} // gRPC clients need HTTP/2
		lis = tls.NewListener(lis, tlsCfg)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	// HTTP/2 without TLS too (h2c): gRPC clients reach the HTTP port's gRPC paths with it.
	hs.Protocols = new(http.Protocols)
	hs.Protocols.SetHTTP1(true)
	hs.Protocols.SetHTTP2(true)
	hs.Protocols.SetUnencryptedHTTP2(true)
	go func() {
		if err := hs.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(name+" server", "error", err)
		}
	}()
	log.Info(name, "addr", lis.Addr().String())
	stopping, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-ctx.Done():
		case <-stopping:
		}
		sctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		if err := hs.Shutdown(sctx); err != nil {
			_ = hs.Close() // past the grace: cut what is left, as the gRPC server does
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(stopping) })
		<-stopped
	}, nil
}

func loadDemoCorpus(ctx context.Context, svc *server.Service, log *slog.Logger) error {
	papers, err := demo.Papers()
	if err != nil {
		return err
	}
	start := time.Now()
	resp, err := svc.UpsertPapers(ctx, &recommenderv1.UpsertPapersRequest{Papers: papers})
	if err != nil {
		return fmt.Errorf("load demo corpus: %w", err)
	}
	log.Info("demo corpus loaded", "inserted", resp.GetInserted(), "updated", resp.GetUpdated(),
		"unchanged", resp.GetUnchanged(), "duration", time.Since(start))
	return nil
}

func newLogger(format string, w io.Writer) (*slog.Logger, error) {
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	}
	return nil, cli.UsageError{Msg: fmt.Sprintf("--log-format must be text or json, got %q", format)}
}

// listensOnLoopback reports whether addr (host:port) takes connections from this machine only.
// A keyless server there checks each request's Host, --allow-unauthenticated or not: a page on a
// name that resolves to 127.0.0.1 (DNS rebinding) would otherwise reach it through the browser.
func listensOnLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && server.IsLoopbackHost(host)
}

// parseOrigins reads a comma-separated list of browser origins (scheme://host[:port]). A
// wildcard is refused: the API takes keys and writes, so every site it trusts is named.
func parseOrigins(list string) ([]string, error) {
	var origins []string
	for _, o := range strings.Split(list, ",") {
		if o = strings.TrimRight(strings.TrimSpace(o), "/"); o == "" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || strings.Contains(o, "*") {
			return nil, fmt.Errorf("%q is not an origin such as https://app.example.com (wildcards are not allowed: name each site)", o)
		}
		origins = append(origins, o)
	}
	return origins, nil
}

package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/cli"
	"github.com/paperrec/recommender/internal/demo"
	"github.com/paperrec/recommender/internal/embed"
	"github.com/paperrec/recommender/internal/httpapi"
	"github.com/paperrec/recommender/internal/metrics"
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
	cfg := server.DefaultConfig()
	fs := cli.NewEnvFlags("serve", "[flags]", serveHelp, stderr) // cli.ApplyEnv reads the variables
	fs.StringVar(&cfg.Addr, "grpc-addr", cfg.Addr, "gRPC listen address, host:port; port 0 picks a free port")
	var sf cli.StoreFlags
	sf.Register(fs)
	var sec serverSecurity
	sec.register(fs)
	fs.BoolVar(&cfg.Reflection, "reflection", true, "serve gRPC reflection so tools like grpcurl need no .proto files")
	fs.DurationVar(&cfg.MaxConnectionAge, "max-connection-age", cfg.MaxConnectionAge,
		"close each client connection after this long (calls in flight finish first), so clients "+
			"reconnect and reach replicas added since; 0: never")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout,
		"on SIGTERM, how long in-flight RPCs may run before they are cut")
	fs.IntVar(&cfg.MaxRecvMsgBytes, "max-message-bytes", cfg.MaxRecvMsgBytes, "largest request message accepted")
	httpAddr := fs.String("http-addr", "127.0.0.1:8080",
		"HTTP listen address for the JSON API (POST /v1/<Method>), /openapi.json and the page at /; empty: off")
	corsOrigins := fs.String("cors-origins", "", "comma-separated origins allowed to call the JSON API from a browser; none by default")
	metricsAddr := fs.String("metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics; empty: off")
	loadDemo := fs.Bool("demo", false, "load the built-in demo corpus (48 papers written for this project) at start")
	load := fs.String("load", "", "`FILE` of papers to load at start, in the background while serving: JSON lines as backfill reads them (plain or .gz); unchanged papers are skipped, so restarting with it costs nothing")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	var ef cli.EmbeddingFlags
	ef.Register(fs)
	var rf cli.EmbeddingFlags
	rf.RegisterAs(fs, "reembed", "REEMBED", false)
	fallback := fs.Bool("embedding-fallback-lexical", false,
		"when the embedding API is down, answer text queries that leave the mode to the server lexically instead of UNAVAILABLE")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if err := cli.ApplyEnv(fs); err != nil {
		return err
	}
	embCfg, useEmbedder, err := ef.Config()
	if err != nil {
		return err
	}
	rf.Inherit(embCfg)
	nextCfg, reembedding, err := rf.Config()
	switch {
	case err != nil:
		return err
	case !reembedding && rf.Cfg.Model != "":
		return cli.UsageError{Msg: "--reembed-model needs --reembed-base-url or --embedding-base-url: where to embed with it"}
	case reembedding && useEmbedder && embCfg.Model == nextCfg.Model && embCfg.Prefixes == nextCfg.Prefixes && embCfg.Dimensions == nextCfg.Dimensions:
		return cli.UsageError{Msg: "--reembed-model names the model the store is already embedded with; leave it unset"}
	}
	log, err := newLogger(*logFormat, stderr)
	if err != nil {
		return err
	}
	if cfg.Keys, err = sec.keys(); err != nil {
		return err
	}
	if cfg.TLS, err = sec.tlsConfig(); err != nil {
		return err
	}
	cfg.AllowUnauthenticated, cfg.RateLimit, cfg.RateBurst = sec.allowUnauthenticated, sec.rateLimit, sec.rateBurst
	cfg.MaxCallsPerCaller, cfg.MaxConnsPerAddress = sec.maxCalls, sec.maxConns
	if err := cfg.Validate(); err != nil {
		return cli.UsageError{Msg: err.Error()}
	}
	if *httpAddr != "" {
		httpCfg := cfg
		httpCfg.Addr = *httpAddr
		if err := httpCfg.Validate(); err != nil {
			return cli.UsageError{Msg: "--http-addr: " + err.Error()}
		}
	}
	origins, err := parseOrigins(*corsOrigins)
	if err != nil {
		return cli.UsageError{Msg: "--cors-origins: " + err.Error()}
	}
	if *metricsAddr != "" {
		cfg.Metrics = metrics.New()
	}
	if tracing.Enabled() {
		opt, shutdown, err := tracing.Setup(ctx, "recommender")
		if err != nil {
			return err
		}
		cfg.ExtraOptions = append(cfg.ExtraOptions, opt)
		defer func() { // last: flush the spans of the final RPCs
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := shutdown(sctx); err != nil {
				log.Warn("flush traces", "error", err)
			}
		}()
		log.Info("tracing to OTLP", "endpoint", cli.EnvOr("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT")))
	}

	raw, err := sf.Open(ctx, log)
	if err != nil {
		return err
	}
	// Closed last: by then every in-flight RPC has finished, so every acknowledged write is in.
	// The shutdown timeout bounds the whole stop, the saves of a store that keeps a snapshot
	// included: what the drain leaves of it is theirs.
	var stopAt atomic.Int64
	context.AfterFunc(ctx, func() { stopAt.Store(time.Now().UnixNano()) })
	defer func() {
		closeStore := raw.Close
		if w, ok := raw.(interface{ CloseWithin(context.Context) error }); ok && stopAt.Load() != 0 {
			cctx, cancel := context.WithDeadline(context.Background(), time.Unix(0, stopAt.Load()).Add(cfg.ShutdownTimeout))
			defer cancel()
			closeStore = func() error { return w.CloseWithin(cctx) }
		}
		if err := closeStore(); err != nil {
			log.Error("close store", "error", err)
		}
	}()
	st := cfg.Metrics.InstrumentStore(raw, sf.Backend)
	cfg.Metrics.PaperCount(st)
	var emb embed.Embedder
	retrieval := server.LexicalModel
	if useEmbedder {
		if cfg.Metrics != nil {
			embCfg.Observer = cfg.Metrics
		}
		embCfg.Logger = log
		client, err := embed.New(embCfg)
		if err != nil {
			return err
		}
		emb, retrieval = client, "hybrid"
		log.Info("embedding model configured", "embedding", embCfg)
	}
	// A remote store may come up after the service: it starts anyway, NOT_SERVING, and binds
	// (and loads the demo corpus) in the background once the store answers.
	opts := []server.Option{server.WithMetrics(cfg.Metrics), server.WithDeferredBinding()}
	if *fallback {
		opts = append(opts, server.WithLexicalFallback())
	}
	if reembedding {
		if cfg.Metrics != nil {
			nextCfg.Observer = cfg.Metrics
		}
		nextCfg.Logger = log
		next, err := embed.New(nextCfg)
		if err != nil {
			return err
		}
		opts = append(opts, server.WithReembedding(next))
		log.Info("re-embedding model configured", "embedding", nextCfg)
	}
	svc, err := server.NewService(ctx, st, emb, opts...)
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	// The demo corpus loads now when the store answers, else once it does.
	demoPending := *loadDemo
	if demoPending && svc.Ready() {
		err := loadDemoCorpus(ctx, svc, log)
		var ue *store.UnavailableError
		if err != nil && !errors.As(err, &ue) {
			return err
		}
		demoPending = err != nil
	}
	if !svc.Ready() || demoPending {
		log.Warn("store unavailable at start: serving NOT_SERVING until it answers", "store", sf.Backend)
		go func() {
			err := svc.AwaitBinding(ctx, log)
			if err == nil && demoPending {
				err = server.RetryWhileUnavailable(ctx, log, "load the demo corpus",
					func(ctx context.Context) error { return loadDemoCorpus(ctx, svc, log) })
			}
			if err != nil && ctx.Err() == nil {
				stop(err) // another model's store, say: stop serving and say why
			}
		}()
	}
	srv, err := server.Listen(cfg, svc, log)
	if err != nil {
		return err
	}
	if *load != "" {
		go func() {
			if err := svc.AwaitBinding(ctx, log); err != nil {
				return
			}
			if err := loadFile(ctx, svc, *load, 10*time.Second, log); err != nil && ctx.Err() == nil {
				log.Error("load stopped; serving what is stored", "file", *load, "error", err)
			}
		}()
	}
	if reembedding || useEmbedder {
		// In the background of serving; a failure is logged and serving goes on with the
		// current model (a restart resumes where it stopped). Without --reembed-model there is
		// something to do only when the store's papers were stored before it had a model.
		go func() {
			if err := svc.AwaitBinding(ctx, log); err != nil {
				return
			}
			if err := svc.Reembed(ctx, log); err != nil && ctx.Err() == nil {
				log.Error("re-embedding stopped; still serving with the current model", "error", err)
			}
		}()
	}
	if *metricsAddr != "" {
		var h http.Handler = metricsMux(cfg.Metrics)
		if listensOnLoopback(*metricsAddr) {
			h = httpapi.LoopbackHostsOnly(h) // no page on a rebound name reads the metrics
		}
		stop, err := serveHTTP(ctx, "metrics", *metricsAddr, nil, h, cfg.ShutdownTimeout, cfg.MaxConnsPerAddress, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	if *httpAddr != "" {
		rpc, err := srv.HTTPHandler()
		if err != nil {
			return err
		}
		h := httpapi.Handler(svc, srv.UnaryInterceptor(), httpapi.Config{CORSOrigins: origins, MaxBodyBytes: int64(cfg.MaxRecvMsgBytes),
			LoopbackHostsOnly: cfg.Keys == nil && listensOnLoopback(*httpAddr), RPC: rpc, Gate: srv})
		if tracing.Enabled() {
			h = tracing.HTTPHandler(h)
		}
		stop, err := serveHTTP(ctx, "http", *httpAddr, cfg.TLS, h, cfg.ShutdownTimeout, cfg.MaxConnsPerAddress, log)
		if err != nil {
			return err
		}
		defer stop() // both drain from the same signal, within the same timeout
	}
	stats, err := st.Stats(ctx)
	var ue *store.UnavailableError
	if err != nil && !errors.As(err, &ue) {
		return err
	}
	if hc, ok := st.(store.HealthChecker); ok {
		srv.WatchStore(ctx, hc, sf.HealthInterval)
	}
	authMode := "none: loopback only"
	switch {
	case cfg.Keys != nil:
		authMode = fmt.Sprintf("%d API keys", cfg.Keys.Len())
	case cfg.AllowUnauthenticated:
		authMode = "none, allowed on a reachable address"
	}
	if cfg.Keys == nil {
		log.Warn("no API keys configured: every caller may read and write")
	}
	log.Info("serving", "grpc_addr", srv.Addr().String(), "tls", cfg.TLS != nil, "mtls", cfg.TLS != nil && cfg.TLS.ClientCAs != nil,
		"auth", authMode, "rate_limit", cfg.RateLimit, "store", stats.Backend,
		"papers", stats.PaperCount, "retrieval", retrieval, "reflection", cfg.Reflection, "metrics_addr", *metricsAddr, "version", cli.Version())
	if err := srv.Serve(ctx); err != nil {
		return err
	}
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("stopped")
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

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/demo"
	"github.com/paperrec/recommender/internal/embed"
	"github.com/paperrec/recommender/internal/server"
	"github.com/paperrec/recommender/internal/store"
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
with; starting with another model or size is refused.

Every flag can also be set by the environment variable named in its description; a flag given
on the command line wins.`

func runServe(ctx context.Context, args []string, _, stderr io.Writer) error {
	cfg := server.DefaultConfig()
	fs := newFlags("serve", "[flags]", serveHelp, stderr)
	fs.StringVar(&cfg.Addr, "grpc-addr", envOr("RECOMMENDER_GRPC_ADDR", cfg.Addr),
		"gRPC listen address, host:port; port 0 picks a free port (env RECOMMENDER_GRPC_ADDR)")
	var sf storeFlags
	sf.register(fs)
	reflectionDefault, err := strconv.ParseBool(envOr("RECOMMENDER_REFLECTION", "true"))
	if err != nil {
		return usageError{"RECOMMENDER_REFLECTION must be true or false"}
	}
	fs.BoolVar(&cfg.Reflection, "reflection", reflectionDefault,
		"serve gRPC reflection so tools like grpcurl need no .proto files (env RECOMMENDER_REFLECTION)")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout,
		"on SIGTERM, how long in-flight RPCs may run before they are cut")
	loadDemo := fs.Bool("demo", false, "load the built-in demo corpus (48 papers written for this project) at start")
	logFormat := fs.String("log-format", envOr("RECOMMENDER_LOG_FORMAT", "text"), "log format: text or json (env RECOMMENDER_LOG_FORMAT)")
	var ef embeddingFlags
	ef.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	embCfg, useEmbedder, err := ef.config()
	if err != nil {
		return err
	}
	log, err := newLogger(*logFormat, stderr)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err.Error()}
	}

	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("close store", "error", err)
		}
	}()
	var emb embed.Embedder
	retrieval := server.LexicalModel
	if useEmbedder {
		client, err := embed.New(embCfg)
		if err != nil {
			return err
		}
		emb, retrieval = client, "hybrid"
		log.Info("embedding model configured", "embedding", embCfg)
	}
	svc, err := server.NewService(ctx, st, emb)
	if err != nil {
		return err
	}
	if *loadDemo {
		if err := loadDemoCorpus(ctx, svc, log); err != nil {
			return err
		}
	}
	srv, err := server.Listen(cfg, svc, log)
	if err != nil {
		return err
	}
	stats, err := st.Stats(ctx)
	if err != nil {
		return err
	}
	if hc, ok := st.(store.HealthChecker); ok {
		go srv.WatchStore(ctx, hc, sf.healthInterval)
	}
	log.Info("serving", "grpc_addr", srv.Addr().String(), "store", stats.Backend,
		"papers", stats.PaperCount, "retrieval", retrieval, "reflection", cfg.Reflection)
	if err := srv.Serve(ctx); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
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
	return nil, usageError{fmt.Sprintf("--log-format must be text or json, got %q", format)}
}

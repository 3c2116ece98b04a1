package server_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/paperrec/recommender/internal/app"
	"github.com/paperrec/recommender/internal/embed"
	"github.com/paperrec/recommender/internal/server"
	"github.com/paperrec/recommender/internal/store"
	"github.com/paperrec/recommender/internal/testutil"
)

// sample serves the shared arXiv sample to the tests that only read it, ingested once.
var sample testutil.SharedSample

func TestMain(m *testing.M) {
	code := m.Run()
	if err := sample.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "shared sample server:", err)
		code = 1
	}
	os.Exit(code)
}

// startLoopback serves the application over st on loopback.
func startLoopback(ctx context.Context, st store.Store, emb embed.Embedder, opts ...app.Option) (*server.Loopback, error) {
	a, err := app.New(ctx, st, emb, opts...)
	if err != nil {
		return nil, err
	}
	return server.StartLoopback(a)
}

package server_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/paperrec/recommender/internal/app"
	"github.com/paperrec/recommender/internal/embed"
	"github.com/paperrec/recommender/internal/server"
	"github.com/paperrec/recommender/internal/store"
	"github.com/paperrec/recommender/internal/store/embedded"
	"github.com/paperrec/recommender/internal/store/qdrant"
	"github.com/paperrec/recommender/internal/store/qdrant/qdranttest"
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

// eachStore runs test on the embedded store, on Qdrant's contract double, and on a real Qdrant
// when QDRANT_URL is set; open returns a new, empty store (name tells a test's stores apart).
func eachStore(t *testing.T, test func(t *testing.T, open func(t *testing.T, name string) store.Store)) {
	t.Run("embedded", func(t *testing.T) {
		test(t, func(t *testing.T, _ string) store.Store {
			st, err := embedded.Open(context.Background(), embedded.Options{Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.Close() })
			return st
		})
	})
	d, err := qdranttest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	urls := map[string]string{"qdrant-double": d.URL()}
	if url := os.Getenv("QDRANT_URL"); url != "" {
		urls["qdrant"] = url
	}
	for name, url := range urls {
		t.Run(name, func(t *testing.T) {
			prefix := fmt.Sprintf("test_%08x", rand.Uint32())
			test(t, func(t *testing.T, name string) store.Store {
				o := qdrant.Defaults()
				o.URL, o.Collection = url, prefix+"_"+name
				o.WriteSettle, o.AliasRefresh = 0, 50*time.Millisecond
				st, err := qdrant.Open(o)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					cleanupCollections(t, url, o.Collection)
					_ = st.Close()
				})
				return st
			})
		})
	}
}

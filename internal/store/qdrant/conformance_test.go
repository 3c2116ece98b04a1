package qdrant_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	qc "github.com/qdrant/go-client/qdrant"

	"github.com/paperrec/recommender/internal/store"
	"github.com/paperrec/recommender/internal/store/qdrant"
	"github.com/paperrec/recommender/internal/store/storetest"
)

// TestConformance runs the store conformance suite against a real Qdrant. Bring one up (with
// `docker compose -f deploy/docker-compose.yml up -d qdrant`, or a binary built from Qdrant's
// source), then:
//
//	QDRANT_URL=http://localhost:6334 go test ./internal/store/...
//
// (QDRANT_API_KEY is sent when set; over http it needs QDRANT_ALLOW_INSECURE_API_KEY=true.)
// Each subtest uses a collection of its own and drops it afterwards. Against a cluster, set
// QDRANT_SHARDS and QDRANT_REPLICAS: the collections are made with them.
func TestConformance(t *testing.T) {
	url := os.Getenv("QDRANT_URL")
	if url == "" {
		t.Skip("set QDRANT_URL=http://localhost:6334 to run the conformance suite against a real Qdrant (see deploy/docker-compose.yml)")
	}
	storetest.Run(t, func(t *testing.T) store.Store {
		o := qdrant.Defaults()
		o.URL, o.APIKey = url, os.Getenv("QDRANT_API_KEY")
		o.AllowInsecureAPIKey = os.Getenv("QDRANT_ALLOW_INSECURE_API_KEY") == "true"
		o.Collection = fmt.Sprintf("conformance_%08x", rand.Uint32())
		o.WriteSettle = 0 // one writer, no clocks to disagree
		o.Shards, o.Replicas = envUint32(t, "QDRANT_SHARDS", 1), envUint32(t, "QDRANT_REPLICAS", 1)
		s, err := qdrant.Open(o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = s.Close()
			admin, err := qc.NewClient(&qc.Config{Host: hostOf(t, url), Port: portOf(t, url), APIKey: o.APIKey, SkipCompatibilityCheck: true})
			if err == nil { // the collection, its feeds and those of other models (VectorSets)
				names, _ := admin.ListCollections(ctx)
				for _, name := range names {
					if strings.HasPrefix(name, o.Collection) {
						_ = admin.DeleteCollection(ctx, name)
					}
				}
				_ = admin.Close()
			}
		})
		return s
	}, storetest.Features{Shards: int(envUint32(t, "QDRANT_SHARDS", 1))})
}

// envUint32 is the positive whole number in the variable name, or def when it is unset.
func envUint32(t *testing.T, name string, def uint32) uint32 {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n == 0 {
		t.Fatalf("%s=%q: want a positive whole number", name, v)
	}
	return uint32(n)
}

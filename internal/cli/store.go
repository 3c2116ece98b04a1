package cli

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/paperrec/recommender/internal/store"
	"github.com/paperrec/recommender/internal/store/embedded"
	"github.com/paperrec/recommender/internal/store/qdrant"
)

// storeFlags choose and configure the store backend.
type StoreFlags struct {
	Backend        string
	dataDir        string
	allowEmpty     bool
	ann            embedded.ANNOptions
	qdrant         qdrant.Options
	qdrantKeyFile  string
	HealthInterval time.Duration
	fs             *flag.FlagSet
}

func (f *StoreFlags) Register(fs *flag.FlagSet) {
	d := qdrant.Defaults()
	fs.StringVar(&f.Backend, "store", "embedded",
		"store backend: embedded (on disk, one process) or qdrant (shared by any number of replicas) (env RECOMMENDER_STORE)")
	fs.StringVar(&f.dataDir, "data-dir", "recommender-data",
		"directory of the embedded store, created if missing (env RECOMMENDER_DATA_DIR)")
	fs.BoolVar(&f.allowEmpty, "allow-empty-store", false,
		"embedded store: start empty in a data directory whose papers.db is missing or empty although its other files remain "+
			"(otherwise refused: the papers were lost, say by a restore that missed the file)")
	da := embedded.DefaultANN()
	fs.StringVar(&f.ann.Quantization, "ann-quantization", da.Quantization,
		"embedded store: vectors the nearest-neighbour graph walks on, int8 (faster, candidates rescored exactly) or none (env RECOMMENDER_ANN_QUANTIZATION)")
	fs.IntVar(&f.ann.EfSearch, "ann-ef-search", da.EfSearch,
		"embedded store: candidates a graph search explores (at least the results asked); higher is more exact and slower")
	fs.StringVar(&f.qdrant.Collection, "qdrant-collection", d.Collection,
		"Qdrant collection holding the papers (env QDRANT_COLLECTION)")
	f.registerQdrantConnection(fs)
	f.qdrant.Shards, f.qdrant.Replicas = 1, 1
	fs.Func("qdrant-shards", "shards of a new collection (env QDRANT_SHARDS, default 1)", setUint32(&f.qdrant.Shards))
	fs.Func("qdrant-replicas", "replication factor of a new collection (env QDRANT_REPLICAS, default 1)", setUint32(&f.qdrant.Replicas))
	fs.DurationVar(&f.qdrant.WriteSettle, "qdrant-write-settle", d.WriteSettle,
		"how old a write must be before feeds stream it from Qdrant: more than the replicas' clock skew plus a write's duration")
	fs.DurationVar(&f.qdrant.AliasRefresh, "qdrant-alias-refresh", d.AliasRefresh,
		"how often a replica looks again which collection is current (it changes when the store moves to another embedding model)")
	fs.DurationVar(&f.HealthInterval, "qdrant-health-interval", 5*time.Second,
		"how often Qdrant is pinged; while it is unreachable the gRPC health service reports NOT_SERVING")
	f.qdrant.BatchSize = d.BatchSize
}

// registerEval registers the store flags of eval and bench-grpc, which serve from stores of
// their own: embedded ones under --data-dir (described by dataDirHelp), or Qdrant collections.
func (f *StoreFlags) RegisterEval(fs *flag.FlagSet, dataDirHelp string) {
	f.qdrant = qdrant.Defaults()
	fs.StringVar(&f.Backend, "store", "embedded", "where the papers are stored: embedded, or qdrant (collections named after the command, kept between runs)")
	fs.StringVar(&f.dataDir, "data-dir", "", dataDirHelp)
	f.registerQdrantConnection(fs)
}

// openEval opens a store of eval or bench-grpc: the embedded store in --data-dir/name (a
// temporary folder, removed by cleanup, when --data-dir is empty), or the Qdrant collection.
func (f *StoreFlags) OpenEval(ctx context.Context, name, collection string) (st store.Store, cleanup func(), err error) {
	switch f.Backend {
	case "embedded":
		dir, cleanup := filepath.Join(f.dataDir, name), func() {}
		if f.dataDir == "" {
			if dir, err = os.MkdirTemp("", "recommender-eval"); err != nil {
				return nil, nil, err
			}
			cleanup = func() { _ = os.RemoveAll(dir) }
		}
		es, err := embedded.Open(ctx, embedded.Options{Dir: dir})
		if err != nil {
			cleanup()
			return nil, nil, err
		}
		return es, func() { _ = es.Close(); cleanup() }, nil
	case "qdrant":
		qs, err := f.openQdrant(collection)
		if err != nil {
			return nil, nil, err
		}
		return qs, func() { _ = qs.Close() }, nil
	}
	return nil, nil, UsageError{Msg: fmt.Sprintf("--store must be embedded or qdrant, got %q", f.Backend)}
}

// registerQdrantConnection registers the flags that reach Qdrant: its address, credentials
// and call timeout.
func (f *StoreFlags) registerQdrantConnection(fs *flag.FlagSet) {
	f.fs = fs
	fs.StringVar(&f.qdrant.URL, "qdrant-url", "",
		"Qdrant gRPC endpoint, http://host:6334 or https://host:6334 (env QDRANT_URL)")
	fs.StringVar(&f.qdrantKeyFile, "qdrant-api-key-file", "",
		"file holding the Qdrant API key (env QDRANT_API_KEY_FILE); or set QDRANT_API_KEY")
	fs.BoolVar(&f.qdrant.AllowInsecureAPIKey, "qdrant-allow-insecure-api-key", false,
		"allow sending the Qdrant API key over a plaintext http:// connection (env QDRANT_ALLOW_INSECURE_API_KEY)")
	fs.DurationVar(&f.qdrant.Timeout, "qdrant-timeout", qdrant.Defaults().Timeout, "timeout of one call to Qdrant")
	fs.Float64Var(&f.qdrant.AverageLength, "qdrant-bm25-average-length", qdrant.Defaults().AverageLength,
		"average document length (weighted terms of title and abstract) BM25 normalises by, fixed when a collection is "+
			"created (an existing one keeps its own): Qdrant cannot renormalise stored weights as the corpus grows, so set "+
			"your corpus's (arXiv abstracts: 180)")
}

func setUint32(p *uint32) func(string) error {
	return func(s string) error {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil || n == 0 {
			return fmt.Errorf("want a positive whole number, got %q", s)
		}
		*p = uint32(n)
		return nil
	}
}

// Validate checks the settings of Register's flags.
func (f *StoreFlags) Validate() error {
	switch {
	case f.Backend != "embedded" && f.Backend != "qdrant":
		return UsageError{Msg: fmt.Sprintf("--store must be embedded or qdrant, got %q", f.Backend)}
	case f.Backend == "embedded" && f.ann.EfSearch < 1:
		return UsageError{Msg: "--ann-ef-search must be at least 1"}
	case f.Backend == "qdrant" && f.qdrant.URL == "":
		return UsageError{Msg: "--store qdrant needs --qdrant-url (or QDRANT_URL)"}
	}
	return nil
}

// ApplyEnv sets the flags that reach Qdrant from their variables (QDRANT_URL...), for a command
// whose other flags have none.
func (f *StoreFlags) ApplyEnv() error {
	return ApplyEnvTo(f.fs, "qdrant-url", "qdrant-api-key-file", "qdrant-allow-insecure-api-key", "qdrant-timeout", "qdrant-bm25-average-length")
}

// Open opens the chosen store; log hears what opening repaired.
func (f *StoreFlags) Open(ctx context.Context, log *slog.Logger) (store.Store, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	if f.Backend == "qdrant" {
		return f.openQdrant(f.qdrant.Collection)
	}
	return embedded.Open(ctx, embedded.Options{Dir: f.dataDir, ANN: f.ann, AllowEmpty: f.allowEmpty, Log: log})
}

// openQdrant opens a Qdrant collection with the connection flags.
func (f *StoreFlags) openQdrant(collection string) (*qdrant.Store, error) {
	if f.qdrant.URL == "" {
		return nil, UsageError{Msg: "--store qdrant needs --qdrant-url (or QDRANT_URL)"}
	}
	o := f.qdrant
	o.Collection = collection
	var err error
	if o.APIKey, err = Secret("QDRANT_API_KEY", f.qdrantKeyFile, "Qdrant API key"); err != nil {
		return nil, err
	}
	if err := o.Validate(); err != nil {
		return nil, UsageError{Msg: err.Error()}
	}
	return qdrant.Open(o)
}

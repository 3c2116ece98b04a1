package qdrant

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// Options configures the Qdrant store.
type Options struct {
	// URL of Qdrant's gRPC endpoint: http://host:6334, or https://host:6334 for TLS.
	URL string
	// APIKey for Qdrant; from the environment or a file, never a flag or a log.
	APIKey string
	// AllowInsecureAPIKey permits sending the API key over a plaintext connection (a sidecar on
	// loopback, say). Off by default: a key sent in the clear is a key given away.
	AllowInsecureAPIKey bool
	// Collection holds the papers.
	Collection string
	// Timeout bounds each call to Qdrant when the caller's deadline is later or absent.
	Timeout time.Duration
	// BatchSize bounds points per upsert request.
	BatchSize int
	// AverageLength is the average document length (in weighted terms and pairs) that BM25's
	// length normalisation assumes; 180 is the arXiv sample's. Qdrant applies idf at query time but cannot renormalise stored
	// term weights as the corpus grows, so the collection fixes it at creation.
	AverageLength float64
	// Shards and Replicas are used when the collection is created.
	Shards, Replicas uint32
	// WriteSettle is how old a write must be before the write log (feeds' streams) shows it:
	// writes are ordered by their writer's clock, and a stream must not pass a write that
	// another replica, its clock behind or its call still in flight, has yet to make visible.
	WriteSettle time.Duration
	// AliasRefresh is how often a replica looks again at which collection is current: after a
	// move to another embedding model (a new collection and an alias swap) replicas follow
	// within it.
	AliasRefresh time.Duration
}

// Defaults returns the default options.
func Defaults() Options {
	return Options{Collection: "papers", Timeout: 10 * time.Second, BatchSize: 256, AverageLength: 180, Shards: 1, Replicas: 1,
		WriteSettle: 5 * time.Second, AliasRefresh: 2 * time.Second}
}

// endpoint is a parsed Options.URL.
type endpoint struct {
	host string
	port int
	tls  bool
}

func (o Options) endpoint() (endpoint, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return endpoint{}, fmt.Errorf("qdrant URL %q must look like http://host:6334 or https://host:6334", o.URL)
	}
	port := 6334
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil {
			return endpoint{}, fmt.Errorf("qdrant URL %q: bad port", o.URL)
		}
	}
	return endpoint{host: u.Hostname(), port: port, tls: u.Scheme == "https"}, nil
}

// Validate reports every problem at once.
func (o Options) Validate() error {
	var errs []error
	ep, err := o.endpoint()
	if err != nil {
		errs = append(errs, err)
	} else if o.APIKey != "" && !ep.tls && !o.AllowInsecureAPIKey {
		errs = append(errs, errors.New("refusing to send the Qdrant API key over plaintext: use an https:// URL, or allow it explicitly"))
	}
	if o.Collection == "" {
		errs = append(errs, errors.New("qdrant collection name is empty"))
	}
	if o.WriteSettle < 0 || o.AliasRefresh < 0 {
		errs = append(errs, errors.New("qdrant write settle and alias refresh must not be negative"))
	}
	if o.Timeout <= 0 || o.BatchSize <= 0 || o.Shards == 0 || o.Replicas == 0 {
		errs = append(errs, errors.New("qdrant timeout, batch size, shards and replicas must be positive"))
	}
	if !(o.AverageLength >= 1 && o.AverageLength <= 1e6) { // NaN included
		errs = append(errs, fmt.Errorf("qdrant BM25 average length must be 1 to 1e6 terms, got %v", o.AverageLength))
	}
	return errors.Join(errs...)
}

package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/paperrec/recommender/gen/client"
	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
)

// Dial a recommender, with the key your service was given and a deadline for every call, and
// ask it something. Calls that meet a restarting server (UNAVAILABLE) or a rate limit
// (RESOURCE_EXHAUSTED with RetryInfo) are retried under the default policy.
func Example() {
	addr, stop := startFake(&fake{}) // stands in for `recommender serve`; e.g. "recommender.search.svc:50051"
	defer stop()
	c, err := client.Dial(addr, client.Options{
		APIKey:  "read-key", // e.g. os.Getenv("RECOMMENDER_API_KEY")
		Timeout: 2 * time.Second,
		// TLS: &tls.Config{MinVersion: tls.VersionTLS12}, for a server reached over the network
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	info, err := c.GetIndexInfo(context.Background(), &recommenderv1.GetIndexInfoRequest{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(info.GetPaperCount(), "papers in the", info.GetStoreBackend(), "store")
	// Output: 48 papers in the embedded store
}

// A policy of its own: fewer attempts, a longer first wait.
func ExampleRetryPolicy() {
	addr, stop := startFake(&fake{})
	defer stop()
	c, err := client.Dial(addr, client.Options{
		Retry: client.RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Second},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	_, err = c.GetIndexInfo(context.Background(), &recommenderv1.GetIndexInfoRequest{})
	fmt.Println(err)
	// Output: <nil>
}

// Command consumer is what another service's code looks like when it asks the recommender for
// papers: go run . "graph neural networks" (RECOMMENDER_SERVER, default 127.0.0.1:50051, and
// RECOMMENDER_API_KEY when the server has keys).
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/paperrec/recommender/gen/client"
	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
)

func main() {
	addr := os.Getenv("RECOMMENDER_SERVER")
	if addr == "" {
		addr = "127.0.0.1:50051"
	}
	c, err := client.Dial(addr, client.Options{APIKey: os.Getenv("RECOMMENDER_API_KEY"), Timeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	resp, err := c.Recommend(context.Background(), &recommenderv1.RecommendRequest{
		Query: strings.Join(os.Args[1:], " "), PageSize: 5})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range resp.GetResults() {
		fmt.Printf("%.3f  %s  %s\n", r.GetScore(), r.GetPaper().GetId(), r.GetPaper().GetTitle())
	}
}

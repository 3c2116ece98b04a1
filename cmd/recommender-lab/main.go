// Command recommender-lab measures the recommender and feeds it test data: quality (eval),
// benchmarks against peers (bench-ann, bench-lexical, bench-grpc) and synthetic papers (synth).
// It is a binary of its own so that the service links none of the test doubles these use.
package main

import "github.com/paperrec/recommender/internal/cli"

var commands = []cli.Command{
	{Name: "eval", Summary: "measure quality: NDCG on CSFCube, topic precision on the arXiv sample", Run: runEval},
	{Name: "bench-ann", Summary: "benchmark the vector index against hnswlib on the same vectors", Run: runBenchANN},
	{Name: "bench-lexical", Summary: "benchmark lexical search alone, pruned and not, against tantivy on the same papers", Run: runBenchLexical},
	{Name: "bench-grpc", Summary: "load-test Recommend over gRPC with synthetic papers", Run: runBenchGRPC},
	{Name: "bench-neighbours", Summary: "measure the neighbour lists: build, lookups, freshness and agreement with a search", Run: runBenchNeighbours},
	{Name: "synth", Summary: "write synthetic papers that read like a sample's, for runs at millions of papers", Run: runSynth},
}

func main() {
	cli.Main("recommender-lab", "measures and test data for the paper recommender.", commands)
}

// Command recommender is the paper recommendation service and its command-line clients.
package main

import (
	"context"
	"fmt"
	"io"

	"github.com/paperrec/recommender/internal/cli"
)

var commands = []cli.Command{
	{Name: "serve", Summary: "run the gRPC service on the embedded store", Run: runServe},
	{Name: "backfill", Summary: "stream papers from a JSON-lines file (plain or .gz) into a running server", Run: runBackfill},
	{Name: "recommend", Summary: "ask a running server for papers similar to a text or to seed papers", Run: runRecommend},
	{Name: "similar", Summary: "ask a running server for the papers most like one stored paper (from its precomputed list)", Run: runSimilar},
	{Name: "neighbours", Summary: "export every paper's precomputed neighbour list from a running server as JSON lines", Run: runNeighbours},
	{Name: "info", Summary: "show a running server's index: size, backend, model, version", Run: runInfo},
	{Name: "retire-vectors", Summary: "delete the vectors a running server's store kept from before it moved to another model", Run: runRetireVectors},
	{Name: "feed", Summary: "save feeds of new papers like a text or seeds, and follow them as papers are written", Run: runFeed},
	{Name: "health", Summary: "ask a running server whether it is serving (a container health check)", Run: runHealth},
	{Name: "check", Summary: "verify an embedded store's data directory offline (papers, records, vector index)", Run: runCheck},
}

// Quality measures, benchmarks and synthetic data are recommender-lab's: asked of this binary,
// they say where they went.
func init() {
	for _, name := range []string{"eval", "bench-ann", "bench-lexical", "bench-grpc", "synth"} {
		commands = append(commands, cli.Command{Name: name, Hidden: true, Run: func(context.Context, []string, io.Writer, io.Writer) error {
			return cli.ExitError{Code: 2, Msg: fmt.Sprintf("%s is a command of recommender-lab, which measures the service: go run ./cmd/recommender-lab %s", name, name)}
		}})
	}
}

func main() { cli.Main("recommender", "semantic paper recommendation over gRPC.", commands) }

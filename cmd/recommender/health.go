package main

import (
	"context"
	"fmt"
	"io"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/cli"
)

const healthHelp = `
Asks a running server's gRPC health service whether it is serving, and exits 0 when it is, 1
when not (or unreachable). Health needs no API key. It is the container health check where the
image has no shell: ["CMD", "/recommender", "health"]. --service "" asks about the process
itself (what a liveness check wants); the default, the recommender service, turns NOT_SERVING
while its store is unreachable (what a readiness check wants).`

func runHealth(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf clientFlags
	fs := cli.NewFlags("health", "[flags]", healthHelp, stderr)
	cf.register(fs, 5*time.Second)
	service := fs.String("service", "recommender.v1.RecommenderService", "the health service name to ask about; empty: the process as a whole")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	cl, err := cf.dialClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := withTimeout(ctx, cf.timeout)
	defer cancel()
	resp, err := healthpb.NewHealthClient(cl.Conn()).Check(ctx, &healthpb.HealthCheckRequest{Service: *service})
	if err != nil {
		return cli.RPCError(err)
	}
	fmt.Fprintln(stdout, resp.GetStatus())
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("%s is %s", cf.server, resp.GetStatus())
	}
	// Details, when the index can be read (with a read key, if the server has keys): a server
	// that serves while it still embeds its papers says so.
	if *service != "" {
		if info, err := recommenderv1.NewRecommenderServiceClient(cl.Conn()).GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{}); err == nil {
			if o := info.GetOtherVectorSet(); o.GetFilling() {
				fmt.Fprintf(stdout, "embedding:  filling %s: %s; answers use %s until then\n", o.GetModel(),
					coverage(o.GetPapersWithVectors(), info.GetPaperCount()), info.GetEmbeddingModel())
			} else if info.GetEmbeddingDimensions() > 0 && info.GetPapersWithVectors() < info.GetPaperCount() {
				fmt.Fprintf(stdout, "embedding:  %s%s\n", coverage(info.GetPapersWithVectors(), info.GetPaperCount()), holes(info))
			}
		}
	}
	return nil
}

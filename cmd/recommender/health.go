package main

import (
	"context"
	"fmt"
	"io"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

const healthHelp = `
Asks a running server's gRPC health service whether it is serving, and exits 0 when it is, 1
when not (or unreachable). Health needs no API key. It is the container health check where the
image has no shell: ["CMD", "/recommender", "health"]. --service "" asks about the process
itself (what a liveness check wants); the default, the recommender service, turns NOT_SERVING
while its store is unreachable (what a readiness check wants).`

func runHealth(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf clientFlags
	fs := newFlags("health", "[flags]", healthHelp, stderr)
	cf.register(fs, 5*time.Second)
	service := fs.String("service", "recommender.v1.RecommenderService", "the health service name to ask about; empty: the process as a whole")
	if err := parseFlags(fs, args); err != nil {
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
		return rpcError(err)
	}
	fmt.Fprintln(stdout, resp.GetStatus())
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("%s is %s", cf.server, resp.GetStatus())
	}
	return nil
}

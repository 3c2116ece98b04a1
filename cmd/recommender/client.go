package main

import (
	"flag"
	"fmt"
	"time"

	"google.golang.org/grpc"

	"github.com/paperrec/recommender/gen/client"
	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/cli"
)

// clientFlags are the connection flags shared by the client commands.
type clientFlags struct {
	server   string
	timeout  time.Duration
	security clientSecurity
	fs       *flag.FlagSet
}

func (c *clientFlags) register(fs *flag.FlagSet, defaultTimeout time.Duration) {
	c.fs = fs
	fs.StringVar(&c.server, "server", "127.0.0.1:50051",
		"address of the recommender gRPC server, host:port (env RECOMMENDER_SERVER)")
	fs.DurationVar(&c.timeout, "timeout", defaultTimeout, "deadline for the whole call; 0 means none")
	c.security.register(fs)
}

// dial connects through the client package: TLS, the API key, and retries of UNAVAILABLE and
// advised RESOURCE_EXHAUSTED for the unary commands (the deadline is the --timeout context's).
func (c *clientFlags) dial() (recommenderv1.RecommenderServiceClient, func(), error) {
	cl, err := c.dialClient()
	if err != nil {
		return nil, nil, err
	}
	return cl, func() { _ = cl.Close() }, nil
}

// dialClient connects with the flags' address and security.
func (c *clientFlags) dialClient() (*client.Client, error) {
	if err := cli.ApplyEnvTo(c.fs, "server", "api-key-file"); err != nil { // RECOMMENDER_SERVER, RECOMMENDER_API_KEY_FILE
		return nil, err
	}
	if c.server == "" {
		return nil, cli.UsageError{Msg: errNoServer.Error()}
	}
	o, err := c.security.options()
	if err != nil {
		return nil, err
	}
	o.DialOptions = []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(16<<20), grpc.MaxCallRecvMsgSize(16<<20))}
	cl, err := client.Dial(c.server, o)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", c.server, err)
	}
	return cl, nil
}

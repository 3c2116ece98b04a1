package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/paperrec/recommender/internal/app"
)

// Loopback is an application served over real gRPC on 127.0.0.1, with a client connected to
// it: for tests, benchmarks and the eval command, which measure the service through its API.
type Loopback struct {
	Conn *grpc.ClientConn
	Addr string
	App  *app.App
	stop func() error
}

// StartLoopback serves a on 127.0.0.1:0 until Close. The caller still owns a's store.
func StartLoopback(a *app.App) (*Loopback, error) {
	svc := NewService(a)
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	srv, err := Listen(cfg, svc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx) }()
	conn, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		cancel()
		return nil, errors.Join(err, <-done)
	}
	return &Loopback{Conn: conn, Addr: srv.Addr().String(), App: a, stop: sync.OnceValue(func() error {
		cerr := conn.Close()
		cancel()
		return errors.Join(cerr, <-done)
	})}, nil
}

// Close stops the server and closes the client connection; later calls return the first's result.
func (l *Loopback) Close() error { return l.stop() }

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/cli"
)

// ingester sends papers through IngestPapers streams. The batches of the open stream are kept
// until the server acknowledges it: when the server fails the stream as unavailable (its store
// restarting, say) or overloaded, the whole stream is sent again on a new one after a backoff,
// until retryFor has passed without success. Sending a paper twice is safe: the second time it
// is counted unchanged.
type ingester struct {
	ctx      context.Context
	client   recommenderv1.RecommenderServiceClient
	retryFor time.Duration
	stderr   io.Writer

	stream recommenderv1.RecommenderService_IngestPapersClient
	cancel context.CancelFunc       // ends the open stream
	sent   [][]*recommenderv1.Paper // batches of the open stream
	papers int                      // papers in sent
}

// send sends a batch on the open stream, opening one if needed. The ingester keeps the batch.
func (g *ingester) send(batch []*recommenderv1.Paper) error {
	g.sent = append(g.sent, batch)
	g.papers += len(batch)
	return g.retry(func(again bool) error {
		if again {
			return g.sendAll()
		}
		return g.sendOne(batch)
	})
}

// close ends the open stream and returns the server's summary; nil when no stream is open.
func (g *ingester) close() (*recommenderv1.IngestPapersResponse, error) {
	if g.stream == nil && len(g.sent) == 0 {
		return nil, nil
	}
	var resp *recommenderv1.IngestPapersResponse
	err := g.retry(func(again bool) error {
		if again {
			if err := g.sendAll(); err != nil {
				return err
			}
		}
		var err error
		resp, err = g.stream.CloseAndRecv()
		return err
	})
	g.drop()
	g.sent, g.papers = nil, 0
	return resp, err
}

func (g *ingester) sendOne(batch []*recommenderv1.Paper) error {
	if g.stream == nil {
		ctx, cancel := context.WithCancel(g.ctx)
		stream, err := g.client.IngestPapers(ctx)
		if err != nil {
			cancel()
			return err
		}
		g.stream, g.cancel = stream, cancel
	}
	err := g.stream.Send(&recommenderv1.IngestPapersRequest{Papers: batch})
	if errors.Is(err, io.EOF) { // the server ended the stream; its status says why
		_, err = g.stream.CloseAndRecv()
	}
	return err
}

// drop forgets the open stream, ending it if the server has not.
func (g *ingester) drop() {
	if g.cancel != nil {
		g.cancel()
	}
	g.stream, g.cancel = nil, nil
}

// sendAll sends every batch of the stream again on a new one.
func (g *ingester) sendAll() error {
	g.drop()
	for _, b := range g.sent {
		if err := g.sendOne(b); err != nil {
			return err
		}
	}
	return nil
}

// retry runs op, and while it fails with a retryable status, waits and runs it again with
// again set: the stream is then to be replayed in full.
func (g *ingester) retry(op func(again bool) error) error {
	err := op(false)
	var giveUp time.Time
	delay := 100 * time.Millisecond
	for err != nil {
		if code := status.Code(err); code != codes.Unavailable && code != codes.ResourceExhausted {
			return cli.RPCError(err)
		}
		if giveUp.IsZero() {
			giveUp = time.Now().Add(g.retryFor)
		}
		if time.Now().Add(delay).After(giveUp) {
			if g.retryFor == 0 {
				return cli.RPCError(err)
			}
			return fmt.Errorf("gave up retrying after %s: %w", g.retryFor, cli.RPCError(err))
		}
		g.drop()
		fmt.Fprintf(g.stderr, "%v (sending the %d papers of this stream again in %s)\n", cli.RPCError(err), g.papers, delay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-g.ctx.Done():
			t.Stop()
			return g.ctx.Err()
		}
		delay = min(2*delay, 5*time.Second)
		err = op(true)
	}
	return nil
}

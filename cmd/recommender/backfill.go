package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/term"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/arxiv"
)

const backfillHelp = `
Streams papers from a JSON-lines file into a running server through IngestPapers, in batches.
The file may be plain or gzip-compressed ("-" reads standard input). Each line is one paper in
the arXiv metadata snapshot format: id, title, abstract, authors (one string, or authors_parsed),
categories (space-separated), update_date, versions; the shared sample's year and topics are
read too, and unknown fields are ignored.

Malformed lines are reported with their line number and skipped; papers the server rejects are
reported with the reason. Re-running a backfill is safe: unchanged papers are counted and not
rewritten. Progress is shown when standard error is a terminal; a summary is printed at the end.`

// maxReported bounds the per-line problems printed; the summary still counts them all.
const maxReported = 20

func runBackfill(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf clientFlags
	fs := newFlags("backfill", "--file PATH [flags]", backfillHelp, stderr)
	cf.register(fs, 0)
	file := fs.String("file", "", "JSON-lines file to read, plain or .gz; - for standard input (required)")
	batchSize := fs.Int("batch-size", 500, "papers per IngestPapers message (1 to 1000)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *file == "" {
		return usageError{"--file is required"}
	}
	if *batchSize < 1 || *batchSize > 1000 {
		return usageError{fmt.Sprintf("--batch-size must be 1 to 1000, got %d", *batchSize)}
	}
	in := io.Reader(os.Stdin)
	if *file != "-" {
		f, err := os.Open(*file)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	reader, err := arxiv.NewReader(in)
	if err != nil {
		return fmt.Errorf("%s: %w", *file, err)
	}

	client, closeConn, err := cf.dial()
	if err != nil {
		return err
	}
	defer closeConn()
	ctx, cancel := withTimeout(ctx, cf.timeout)
	defer cancel()
	stream, err := client.IngestPapers(ctx)
	if err != nil {
		return rpcError(err)
	}

	b := &backfill{stderr: stderr, start: time.Now(), tty: isTerminal(stderr)}
	batch := make([]*recommenderv1.Paper, 0, *batchSize)
	send := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := stream.Send(&recommenderv1.IngestPapersRequest{Papers: batch}); err != nil {
			if errors.Is(err, io.EOF) { // the server ended the stream; its status says why
				_, err = stream.CloseAndRecv()
			}
			return rpcError(err)
		}
		b.sent += len(batch)
		batch = batch[:0]
		b.progress(false)
		return nil
	}
	for {
		p, err := reader.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		var lerr *arxiv.LineError
		if errors.As(err, &lerr) {
			b.malformed++
			b.report("line %d: %v", lerr.Line, lerr.Err)
			continue
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", *file, err)
		}
		b.lines = append(b.lines, int32(reader.Line()))
		batch = append(batch, p)
		if len(batch) == cap(batch) {
			if err := send(); err != nil {
				return err
			}
		}
	}
	if err := send(); err != nil {
		return err
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return rpcError(err)
	}
	b.progress(true)
	for _, r := range resp.GetRejections() {
		line := int32(0)
		if r.GetPosition() < int64(len(b.lines)) {
			line = b.lines[r.GetPosition()]
		}
		b.report("line %d (id %q) rejected: %s", line, r.GetPaperId(), r.GetReason())
	}
	elapsed := time.Since(b.start)
	fmt.Fprintf(stdout, "backfill: %d papers sent in %.1fs (%.0f papers/s)\n", b.sent, elapsed.Seconds(), float64(b.sent)/elapsed.Seconds())
	fmt.Fprintf(stdout, "inserted %d, updated %d, unchanged %d, rejected %d, malformed lines %d\n",
		resp.GetInserted(), resp.GetUpdated(), resp.GetUnchanged(), resp.GetRejected(), b.malformed)
	return nil
}

// backfill tracks one backfill run for progress and reporting.
type backfill struct {
	stderr    io.Writer
	tty       bool
	start     time.Time
	lastShown time.Time
	sent      int
	malformed int
	reported  int
	lines     []int32 // line number of each paper sent, by stream position
}

func (b *backfill) progress(final bool) {
	if !b.tty || (!final && time.Since(b.lastShown) < 200*time.Millisecond) {
		return
	}
	b.lastShown = time.Now()
	rate := float64(b.sent) / time.Since(b.start).Seconds()
	fmt.Fprintf(b.stderr, "\r%d papers sent, %.0f papers/s", b.sent, rate)
	if final {
		fmt.Fprintln(b.stderr)
	}
}

func (b *backfill) report(format string, args ...any) {
	b.reported++
	switch {
	case b.reported <= maxReported:
		if b.tty {
			fmt.Fprint(b.stderr, "\r\033[K")
		}
		fmt.Fprintf(b.stderr, format+"\n", args...)
	case b.reported == maxReported+1:
		fmt.Fprintln(b.stderr, "(further problems are counted in the summary, not listed)")
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

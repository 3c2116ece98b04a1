package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/term"
	"google.golang.org/protobuf/proto"

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
rewritten, and cost no embedding call. The papers go in streams of --stream-papers, each
acknowledged by the server. While the server answers UNAVAILABLE (its store restarting, say) or
RESOURCE_EXHAUSTED, the stream is sent again with backoff, for up to --retry-for; the papers of it
already stored then count as unchanged. With --checkpoint, the checkpoint file records the last
line acknowledged: a backfill that is killed and run again with the same checkpoint resumes after it.
Progress is shown when standard error is a terminal; a summary is printed at the end.`

// maxReported bounds the per-line problems printed; the summary still counts them all.
const maxReported = 20

// maxMessageBytes keeps each IngestPapers message under the server's 4 MiB default.
const maxMessageBytes = 3 << 20

func runBackfill(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf clientFlags
	fs := newFlags("backfill", "--file PATH [flags]", backfillHelp, stderr)
	cf.register(fs, 0)
	file := fs.String("file", "", "JSON-lines file to read, plain or .gz; - for standard input (required)")
	batchSize := fs.Int("batch-size", 500, "papers per IngestPapers message (1 to 1000); messages also stay under 3 MiB")
	checkpoint := fs.String("checkpoint", "", "file recording progress, to resume an interrupted backfill from it")
	streamPapers := fs.Int("stream-papers", 5000, "papers per acknowledged stream: what a retry sends again, and how far a checkpoint moves at a time")
	retryFor := fs.Duration("retry-for", 10*time.Minute, "how long to keep sending a stream again while the server answers UNAVAILABLE or RESOURCE_EXHAUSTED (its store restarting, say); 0: fail at once")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *file == "" {
		return usageError{"--file is required"}
	}
	if *batchSize < 1 || *batchSize > 1000 {
		return usageError{fmt.Sprintf("--batch-size must be 1 to 1000, got %d", *batchSize)}
	}
	if *streamPapers < 1 || *retryFor < 0 {
		return usageError{"--stream-papers must be positive and --retry-for at least 0"}
	}
	if *checkpoint != "" && *file == "-" {
		return usageError{"--checkpoint needs a --file, not standard input"}
	}
	in := io.Reader(os.Stdin)
	var source sourceID
	if *file != "-" {
		f, err := os.Open(*file)
		if err != nil {
			return err
		}
		defer f.Close()
		if source, err = identify(f, *file); err != nil {
			return err
		}
		in = f
	}
	reader, err := arxiv.NewReader(in)
	if err != nil {
		return fmt.Errorf("%s: %w", *file, err)
	}
	resumeAfter := 0
	if *checkpoint != "" {
		if resumeAfter, err = readCheckpoint(*checkpoint, source); err != nil {
			return err
		}
		if resumeAfter > 0 {
			fmt.Fprintf(stderr, "resuming after line %d (checkpoint %s)\n", resumeAfter, *checkpoint)
		}
	}

	client, closeConn, err := cf.dial()
	if err != nil {
		return err
	}
	defer closeConn()
	ctx, cancel := withTimeout(ctx, cf.timeout)
	defer cancel()

	b := &backfill{stderr: stderr, start: time.Now(), tty: isTerminal(stderr)}
	g := &ingester{ctx: ctx, client: client, retryFor: *retryFor, stderr: stderr}
	var batch []*recommenderv1.Paper
	var batchBytes, inStream int
	var lines []int32 // line of each paper of the current stream, by position
	send := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := g.send(batch); err != nil {
			return err
		}
		b.sent += len(batch)
		batch, batchBytes = nil, 0 // the ingester keeps the batch until the stream is acknowledged
		b.progress(false)
		return nil
	}
	// finish closes the current stream; once the server has acknowledged it, everything up to
	// line is stored and the checkpoint moves there.
	finish := func(line int) error {
		if err := send(); err != nil {
			return err
		}
		resp, err := g.close()
		if err != nil {
			return err
		}
		if resp != nil {
			b.add(resp, lines)
			inStream, lines = 0, lines[:0]
		}
		if *checkpoint != "" && line > resumeAfter {
			return writeCheckpoint(*checkpoint, source, line)
		}
		return nil
	}
	for {
		p, err := reader.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		var lerr *arxiv.LineError
		if errors.As(err, &lerr) {
			if lerr.Line > resumeAfter {
				b.malformed++
				b.report("line %d: %v", lerr.Line, lerr.Err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", *file, err)
		}
		if reader.Line() <= resumeAfter {
			continue
		}
		size := proto.Size(p)
		if size > maxMessageBytes {
			b.malformed++
			b.report("line %d: paper of %d bytes is larger than a message may be", reader.Line(), size)
			continue
		}
		if len(batch) == *batchSize || batchBytes+size > maxMessageBytes {
			if err := send(); err != nil {
				return err
			}
		}
		batch = append(batch, p)
		batchBytes += size
		lines = append(lines, int32(reader.Line()))
		if inStream++; inStream == *streamPapers {
			if err := finish(reader.Line()); err != nil {
				return err
			}
		}
	}
	if err := finish(reader.Line()); err != nil {
		return err
	}
	b.progress(true)
	elapsed := time.Since(b.start)
	fmt.Fprintf(stdout, "backfill: %d papers sent in %.1fs (%s papers/s)\n", b.sent, elapsed.Seconds(), rate(float64(b.sent)/elapsed.Seconds()))
	fmt.Fprintf(stdout, "inserted %d, updated %d, unchanged %d, rejected %d, malformed lines %d\n",
		b.total.GetInserted(), b.total.GetUpdated(), b.total.GetUnchanged(), b.total.GetRejected(), b.malformed)
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
	total     recommenderv1.IngestPapersResponse
}

// add counts a stream's summary and reports its rejections by line.
func (b *backfill) add(resp *recommenderv1.IngestPapersResponse, lines []int32) {
	b.total.Inserted += resp.GetInserted()
	b.total.Updated += resp.GetUpdated()
	b.total.Unchanged += resp.GetUnchanged()
	b.total.Rejected += resp.GetRejected()
	for _, r := range resp.GetRejections() {
		line := int32(0)
		if r.GetPosition() < int64(len(lines)) {
			line = lines[r.GetPosition()]
		}
		b.report("line %d (id %q) rejected: %s", line, r.GetPaperId(), r.GetReason())
	}
}

func (b *backfill) progress(final bool) {
	if !b.tty || (!final && time.Since(b.lastShown) < 200*time.Millisecond) {
		return
	}
	b.lastShown = time.Now()
	fmt.Fprintf(b.stderr, "\r%d papers sent, %s papers/s", b.sent, rate(float64(b.sent)/time.Since(b.start).Seconds()))
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

// sourceID identifies an input file, so a checkpoint is only used for the file it was made for.
type sourceID struct {
	Path    string `json:"path"`
	Size    int64  `json:"size"`
	ModTime int64  `json:"mod_time_unix_nano"`
}

func identify(f *os.File, path string) (sourceID, error) {
	fi, err := f.Stat()
	if err != nil {
		return sourceID{}, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return sourceID{}, err
	}
	return sourceID{Path: abs, Size: fi.Size(), ModTime: fi.ModTime().UnixNano()}, nil
}

type checkpointFile struct {
	Source sourceID `json:"source"`
	Line   int      `json:"line"` // every line up to this one is acknowledged by the server
}

// readCheckpoint returns the line to resume after: 0 when there is no checkpoint, or it was made
// for another file (or the file changed since).
func readCheckpoint(path string, src sourceID) (int, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read checkpoint: %w", err)
	}
	var cp checkpointFile
	if err := json.Unmarshal(b, &cp); err != nil {
		return 0, fmt.Errorf("checkpoint %s is corrupt (delete it to start over): %w", path, err)
	}
	if cp.Source != src {
		return 0, nil
	}
	return cp.Line, nil
}

// writeCheckpoint replaces the checkpoint atomically (write, fsync, rename), so a kill at any
// moment leaves the old checkpoint or the new one, never a torn file.
func writeCheckpoint(path string, src sourceID, line int) error {
	b, err := json.Marshal(checkpointFile{Source: src, Line: line})
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	return os.Rename(tmp, path)
}

// rate formats a rate with a decimal when it is small (a CPU embedding model ingests a few
// papers a second).
func rate(r float64) string {
	if r < 100 {
		return strconv.FormatFloat(r, 'f', 1, 64)
	}
	return strconv.FormatFloat(r, 'f', 0, 64)
}

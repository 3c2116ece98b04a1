package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/term"
	"google.golang.org/protobuf/proto"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/arxiv"
	"github.com/paperrec/recommender/internal/cli"
)

const backfillHelp = `
Streams papers from a JSON-lines file into a running server through IngestPapers, in batches.
The file may be plain or gzip-compressed ("-" reads standard input). Each line is one paper in
the arXiv metadata snapshot format: id, title, abstract, authors (one string, or authors_parsed),
categories (space-separated), update_date, versions; the shared sample's year and topics are
read too, and unknown fields are ignored.

Malformed lines are reported with their line number and skipped; papers the server rejects are
reported with the reason. Re-running a backfill is safe: unchanged papers are counted and not
rewritten, and cost no embedding call. The papers go in streams, each acknowledged by the server
once it has stored them (embedded them too, with a model): the first of 100 papers, the next
sized to about 30 s of the server's work at the rate it acknowledged the last (a lexical server
takes thousands a second, a local model a few), at most --stream-papers. While the server answers UNAVAILABLE (its store restarting, say) or
RESOURCE_EXHAUSTED, the stream is sent again with backoff, for up to --retry-for; the papers of it
already stored then count as unchanged. With --checkpoint, the checkpoint file records the last
line acknowledged: a backfill that is killed and run again with the same checkpoint resumes after it.
The checkpoint also keeps the counts, so the summary of a resumed backfill covers the whole file;
a checkpoint made for another file (or before the file changed) is set aside with a message.

Progress: on a terminal a line that updates in place; otherwise (a CronJob's log) a line every
--progress-every with the papers acknowledged, the share of the file they reach, the rate, an
estimate of the time left, and how long the server has been working on the papers sent and not
yet acknowledged. A summary is printed at the end.

Exit codes: 0 when every line was stored or found unchanged; 3 ("completed with errors") when
some lines were malformed or rejected, reported above the summary; 1 when the backfill stopped
(the server unreachable past --retry-for, or more than --max-errors problem lines); 2 for a
mistake in the command line. --max-errors N accepts up to N problem lines with exit 0.`

// maxReported bounds the per-line problems printed; the summary still counts them all.
const maxReported = 20

// maxMessageBytes keeps each IngestPapers message under the server's 4 MiB default.
const maxMessageBytes = 3 << 20

func runBackfill(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf clientFlags
	fs := cli.NewFlags("backfill", "--file PATH [flags]", backfillHelp, stderr)
	cf.register(fs, 0)
	file := fs.String("file", "", "JSON-lines file to read, plain or .gz; - for standard input (required)")
	batchSize := fs.Int("batch-size", 500, "papers per IngestPapers message (1 to 1000); messages also stay under 3 MiB")
	checkpoint := fs.String("checkpoint", "", "file recording progress, to resume an interrupted backfill from it")
	streamPapers := fs.Int("stream-papers", 5000, "the most papers per acknowledged stream (streams start at 100 and grow to about 30 s of the server's work): what a retry sends again, and how far a checkpoint moves at a time")
	retryFor := fs.Duration("retry-for", 10*time.Minute, "how long to keep sending a stream again while the server answers UNAVAILABLE or RESOURCE_EXHAUSTED (its store restarting, say); 0: fail at once")
	maxErrors := fs.Int("max-errors", -1, "malformed or rejected lines accepted with exit 0; one more stops the backfill (exit 1). Default: none accepted, but the backfill runs to the end and exits 3")
	progressEvery := fs.Duration("progress-every", 30*time.Second, "interval of the progress lines when standard error is not a terminal; 0: none")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if *maxErrors < -1 || *progressEvery < 0 {
		return cli.UsageError{Msg: "--max-errors must be 0 or more, and --progress-every at least 0"}
	}
	if *file == "" {
		return cli.UsageError{Msg: "--file is required"}
	}
	if *batchSize < 1 || *batchSize > 1000 {
		return cli.UsageError{Msg: fmt.Sprintf("--batch-size must be 1 to 1000, got %d", *batchSize)}
	}
	if *streamPapers < 1 || *retryFor < 0 {
		return cli.UsageError{Msg: "--stream-papers must be positive and --retry-for at least 0"}
	}
	if *checkpoint != "" && *file == "-" {
		return cli.UsageError{Msg: "--checkpoint needs a --file, not standard input"}
	}
	b := &backfill{stderr: stderr, start: time.Now(), tty: isTerminal(stderr), maxErrors: *maxErrors}
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
		b.size = source.Size
		in = f
	}
	reader, err := arxiv.NewReader(in)
	if err != nil {
		return fmt.Errorf("%s: %w", *file, err)
	}
	resumeAfter := 0
	if *checkpoint != "" {
		cp, found, err := readCheckpoint(*checkpoint)
		switch {
		case err != nil:
			return err
		case found && cp.Source != source:
			fmt.Fprintf(stderr, "checkpoint %s was made for another file or an earlier version of it (%s, %d bytes, modified %s); "+
				"starting from the first line, and the checkpoint will follow this file\n",
				*checkpoint, cp.Source.Path, cp.Source.Size, time.Unix(0, cp.Source.ModTime).UTC().Format(time.RFC3339))
		case found:
			resumeAfter = cp.Line
			b.restore(cp.Totals)
			fmt.Fprintf(stderr, "resuming after line %d (checkpoint %s; %d papers acknowledged before)\n", resumeAfter, *checkpoint, b.before)
		}
	}

	ctx, client, done, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer done()

	if !b.tty && *progressEvery > 0 {
		defer b.reportEvery(*progressEvery)()
	}
	g := &ingester{ctx: ctx, client: client, retryFor: *retryFor, stderr: stderr}
	var batch []*recommenderv1.Paper
	var batchBytes, inStream int
	var lines []int32 // line of each paper of the current stream, by position
	streamTarget := min(firstStreamPapers, *streamPapers)
	var streamStart time.Time
	send := func() error {
		if len(batch) == 0 {
			return nil
		}
		if inStream == len(batch) {
			streamStart = time.Now()
		}
		if err := g.send(batch); err != nil {
			return err
		}
		b.mu.Lock()
		if b.sent == int(b.acknowledged()-b.before) {
			b.waitingSince = time.Now() // the first papers the server has not answered for
		}
		b.sent += len(batch)
		b.mu.Unlock()
		batch, batchBytes = nil, 0 // the ingester keeps the batch until the stream is acknowledged
		b.progress(false)
		return nil
	}
	// finish closes the current stream; once the server has acknowledged it, everything up to
	// line is stored and the checkpoint moves there.
	finish := func(line int) error {
		readTo := reader.Consumed() // the file up to line
		if err := send(); err != nil {
			return err
		}
		resp, err := g.close()
		if err != nil {
			return err
		}
		if resp != nil {
			b.add(resp, lines, readTo)
			streamTarget = nextStreamPapers(inStream, time.Since(streamStart), *streamPapers)
			inStream, lines = 0, lines[:0]
			b.progress(false)
		}
		if *checkpoint != "" && line > resumeAfter {
			if err := writeCheckpoint(*checkpoint, checkpointFile{Source: source, Line: line, Totals: b.totals()}); err != nil {
				return err
			}
		}
		return b.tooManyErrors()
	}
	err = reader.Each(*file, func(p *recommenderv1.Paper) error {
		if reader.Line() <= resumeAfter {
			return nil
		}
		size := proto.Size(p)
		if size > maxMessageBytes {
			b.malformed++
			b.report("line %d: paper of %d bytes is larger than a message may be", reader.Line(), size)
			return b.tooManyErrors()
		}
		if len(batch) == *batchSize || batchBytes+size > maxMessageBytes {
			if err := send(); err != nil {
				return err
			}
		}
		batch = append(batch, p)
		batchBytes += size
		lines = append(lines, int32(reader.Line()))
		if inStream++; inStream == streamTarget {
			return finish(reader.Line())
		}
		return nil
	}, func(lerr *arxiv.LineError) error {
		if lerr.Line <= resumeAfter {
			return nil
		}
		b.malformed++
		b.report("line %d: %v", lerr.Line, lerr.Err)
		return b.tooManyErrors()
	})
	if err != nil {
		return err
	}
	if err := finish(reader.Line()); err != nil {
		return err
	}
	b.progress(true)
	elapsed := time.Since(b.start)
	fmt.Fprintf(stdout, "backfill: %d papers sent in %.1fs (%s papers/s)\n", b.sent, elapsed.Seconds(), cli.Rate(float64(b.sent)/elapsed.Seconds()))
	before := ""
	if b.before > 0 {
		before = fmt.Sprintf(" (the whole file: %d papers were acknowledged before the resume)", b.before)
	}
	fmt.Fprintf(stdout, "inserted %d, updated %d, unchanged %d, rejected %d, malformed lines %d%s\n",
		b.total.GetInserted(), b.total.GetUpdated(), b.total.GetUnchanged(), b.total.GetRejected(), b.malformed, before)
	if n := b.errors(); n > 0 && n > b.maxErrors {
		return cli.ExitError{Code: exitCompletedWithErrors, Msg: fmt.Sprintf("completed with errors: %d rejected papers and %d malformed lines (listed above; --max-errors accepts some)", b.total.GetRejected(), b.malformed)}
	}
	return nil
}

// Streams start small, so that a slow server (a local model: a few papers a second)
// acknowledges, and the checkpoint moves, within seconds, then grow to about streamWork of the
// server's time at the rate it acknowledged the last one.
const (
	firstStreamPapers = 100
	streamWork        = 30 * time.Second
)

// nextStreamPapers sizes the next stream from the last: n papers acknowledged in took.
func nextStreamPapers(n int, took time.Duration, most int) int {
	next := int(float64(n) * streamWork.Seconds() / max(took.Seconds(), 1e-3))
	return max(min(next, most), min(firstStreamPapers, most))
}

// backfill tracks one backfill run for progress and reporting.
type backfill struct {
	stderr    io.Writer
	tty       bool
	start     time.Time
	lastShown time.Time
	maxErrors int   // -1: none accepted, but the run goes on
	size      int64 // of the input file; 0 when unknown (standard input)

	mu           sync.Mutex // the counts below, which the periodic reporter reads
	sent         int
	malformed    int
	reported     int
	before       int64 // papers acknowledged before a resume
	total        recommenderv1.IngestPapersResponse
	ackedRead    int64     // bytes of the file read when the last acknowledged stream ended
	waitingSince time.Time // when the oldest paper sent and not acknowledged was sent
}

// exitCompletedWithErrors is the exit code of a backfill that ran to the end with problem lines.
const exitCompletedWithErrors = 3

// acknowledged counts the papers the server has answered for: stored, unchanged or rejected.
func (b *backfill) acknowledged() int64 {
	return b.total.GetInserted() + b.total.GetUpdated() + b.total.GetUnchanged() + b.total.GetRejected()
}

func (b *backfill) errors() int { return int(b.total.GetRejected()) + b.malformed }

// tooManyErrors stops the backfill once the problem lines pass --max-errors.
func (b *backfill) tooManyErrors() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.maxErrors >= 0 && b.errors() > b.maxErrors {
		return fmt.Errorf("stopped: %d malformed or rejected lines, more than --max-errors %d (the checkpoint, if any, holds what was acknowledged)", b.errors(), b.maxErrors)
	}
	return nil
}

// reportEvery prints a progress line every interval until the returned stop is called: what a
// log collector shows of a backfill that runs for hours.
func (b *backfill) reportEvery(interval time.Duration) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintln(b.stderr, b.status())
			}
		}
	}()
	return func() { close(done); <-finished }
}

// status is a progress line: papers acknowledged, share of the file read, rate and time left.
func (b *backfill) status() string {
	b.mu.Lock()
	acked, sent, ackedRead, waitingSince := b.acknowledged(), b.sent, b.ackedRead, b.waitingSince
	b.mu.Unlock()
	elapsed := time.Since(b.start)
	line := fmt.Sprintf("progress: %d papers acknowledged (%d sent this run), %s papers/s", acked, sent, cli.Rate(float64(acked-b.before)/elapsed.Seconds()))
	if b.size > 0 {
		// The share of the file stored, not read: a stream is read and sent long before a slow
		// server has embedded it.
		frac := float64(ackedRead) / float64(b.size)
		line += fmt.Sprintf(", %.1f%% of the file done", 100*frac)
		if frac > 0 && frac < 1 {
			left := time.Duration(float64(elapsed) * (1 - frac) / frac)
			line += fmt.Sprintf(", about %s left", left.Round(time.Second))
		}
	}
	if pending := int64(sent) - (acked - b.before); pending > 0 {
		line += fmt.Sprintf("; the server is storing %d papers, sent %s ago", pending, time.Since(waitingSince).Round(time.Second))
	}
	return line
}

// add counts a stream's summary and reports its rejections by line.
func (b *backfill) add(resp *recommenderv1.IngestPapersResponse, lines []int32, readTo int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ackedRead = readTo
	b.waitingSince = time.Now()
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
	b.mu.Lock()
	acked, sent := b.acknowledged()-b.before, b.sent
	b.mu.Unlock()
	fmt.Fprintf(b.stderr, "\r\033[K%d papers acknowledged of %d sent, %s papers/s", acked, sent, cli.Rate(float64(acked)/time.Since(b.start).Seconds()))
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
	Totals counts   `json:"totals"`
}

// counts are a backfill's counts so far, kept in the checkpoint so a resumed run reports the
// whole file.
type counts struct {
	Inserted, Updated, Unchanged, Rejected int64
	Malformed                              int
}

// restore starts the counts from a checkpoint's.
func (b *backfill) restore(c counts) {
	b.total.Inserted, b.total.Updated, b.total.Unchanged, b.total.Rejected = c.Inserted, c.Updated, c.Unchanged, c.Rejected
	b.malformed = c.Malformed
	b.before = b.acknowledged()
}

func (b *backfill) totals() counts {
	b.mu.Lock()
	defer b.mu.Unlock()
	return counts{b.total.GetInserted(), b.total.GetUpdated(), b.total.GetUnchanged(), b.total.GetRejected(), b.malformed}
}

// readCheckpoint reads the checkpoint; found is false when there is none.
func readCheckpoint(path string) (cp checkpointFile, found bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return cp, false, nil
	}
	if err != nil {
		return cp, false, fmt.Errorf("read checkpoint: %w", err)
	}
	if err := json.Unmarshal(b, &cp); err != nil {
		return cp, false, fmt.Errorf("checkpoint %s is corrupt (delete it to start over): %w", path, err)
	}
	return cp, true, nil
}

// writeCheckpoint replaces the checkpoint atomically (write, fsync, rename), so a kill at any
// moment leaves the old checkpoint or the new one, never a torn file.
func writeCheckpoint(path string, cp checkpointFile) error {
	b, err := json.Marshal(cp)
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

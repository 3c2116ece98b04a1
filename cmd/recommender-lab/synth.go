package main

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/arxiv"
	"github.com/paperrec/recommender/internal/cli"
	"github.com/paperrec/recommender/internal/synth"
)

const synthHelp = `
Writes N synthetic papers that read like a sample's (its vocabulary, topics, abstract lengths,
years and author names, recombined: no sample sentence or title is copied) as JSON lines in the
arXiv format backfill and bench-grpc --arxiv read, for runs at sizes no sample has (1M, 2.7M).
The same --seed and sample make the same file. Embeddings are not written: serve them with a
deterministic fake embedding API (bench-grpc does).`

func runSynth(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlags("synth", "--from SAMPLE --papers N --out FILE [flags]", synthHelp, stderr)
	from := fs.String("from", "", "the sample: a JSON-lines file (plain or .gz) of papers with titles, abstracts and topics")
	n := fs.Int("papers", 1_000_000, "papers to write")
	seed := fs.Uint64("seed", 1, "random seed")
	out := fs.String("out", "", "file to write (.gz: compressed); - for standard output")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if *from == "" || *out == "" {
		return cli.UsageError{Msg: "give --from and --out"}
	}
	if *n < 1 {
		return cli.UsageError{Msg: fmt.Sprintf("--papers must be positive, got %d", *n)}
	}
	papers, err := arxiv.ReadFile(*from)
	if err != nil {
		return err
	}
	m := synth.Train(papers)
	w, closeOut, err := createOutput(*out, stdout)
	if err != nil {
		return err
	}
	start := time.Now()
	rng := rand.New(rand.NewPCG(*seed, *seed))
	enc := json.NewEncoder(w)
	for i := range *n {
		if i%10_000 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if err := enc.Encode(toRecord(m.Paper(rng, fmt.Sprintf("synth-%07d", i)))); err != nil {
			return err
		}
	}
	if err := closeOut(); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "synth: %d papers on %d topics from %d sample papers in %s\n", *n, m.Topics(), len(papers), time.Since(start).Round(time.Millisecond))
	return nil
}

// record is a paper in the arXiv JSON-lines format (authors as one string, as arXiv writes them).
type record struct {
	ID       string   `json:"id"`
	Title    string   `json:"title"`
	Authors  string   `json:"authors"`
	Abstract string   `json:"abstract"`
	Year     int32    `json:"year"`
	Topics   []string `json:"topics,omitempty"`
}

func toRecord(p *recommenderv1.Paper) record {
	return record{ID: p.GetId(), Title: p.GetTitle(), Authors: strings.Join(p.GetAuthors(), ", "), Abstract: p.GetAbstract(),
		Year: p.GetYear(), Topics: p.GetTopics()}
}

// createOutput opens the output, buffered and gzip-compressed for a .gz name; close flushes it.
func createOutput(name string, stdout io.Writer) (io.Writer, func() error, error) {
	if name == "-" {
		bw := bufio.NewWriter(stdout)
		return bw, bw.Flush, nil
	}
	f, err := os.Create(name)
	if err != nil {
		return nil, nil, err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	if !strings.HasSuffix(name, ".gz") {
		return bw, func() error { return closeAll(bw.Flush, f.Close) }, nil
	}
	zw := gzip.NewWriter(bw)
	return zw, func() error { return closeAll(zw.Close, bw.Flush, f.Close) }, nil
}

func closeAll(fns ...func() error) error {
	var first error
	for _, fn := range fns {
		if err := fn(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

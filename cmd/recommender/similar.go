package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/cli"
)

const similarHelp = `
Asks a running server for the papers most like one stored paper, best first with their
relevance (as recommend --seed ID would). A request of the default shape (no filter, at most as
many results as the server's lists hold) is answered from the paper's precomputed neighbour
list; the first line says whether the answer came from the list or from a search, and why.`

func runSimilar(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf clientFlags
	var categories cli.ListFlag
	fs := cli.NewFlags("similar", "--paper ID [flags]", similarHelp, stderr)
	cf.register(fs, 30*time.Second)
	paper := fs.String("paper", "", "`ID` of the stored paper whose similar papers to show")
	limit := fs.Int("limit", 10, "results (at most 100)")
	minYear := fs.Int("min-year", 0, "earliest publication year (makes the request a search)")
	maxYear := fs.Int("max-year", 0, "latest publication year (makes the request a search)")
	fs.Var(&categories, "category", "only papers in this `CATEGORY` (repeatable: any of them; makes the request a search)")
	asJSON := fs.Bool("json", false, "print the response as JSON")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if *paper == "" {
		return cli.UsageError{Msg: "give the paper: recommender similar --paper ID"}
	}
	req := &recommenderv1.SimilarPapersRequest{PaperId: *paper, PageSize: int32(*limit)}
	if *minYear != 0 || *maxYear != 0 || len(categories) > 0 {
		req.Filter = &recommenderv1.Filter{MinYear: int32(*minYear), MaxYear: int32(*maxYear), Categories: categories}
	}
	ctx, client, done, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer done()
	resp, err := client.SimilarPapers(ctx, req)
	if err != nil {
		return cli.RPCError(err)
	}
	if *asJSON {
		return printJSON(stdout, resp)
	}
	source := "from its precomputed list"
	if resp.GetSource() != recommenderv1.NeighbourSource_NEIGHBOUR_SOURCE_LIST {
		source = "searched: " + resp.GetSearchReason()
	}
	fmt.Fprintf(stdout, "papers like %s, %s\n", printable(req.GetPaperId()), source)
	printRecommendations(stdout, &recommenderv1.RecommendResponse{Results: resp.GetResults(), Mode: resp.GetMode()})
	return nil
}

// exportedList is one line of neighbours' output.
type exportedList struct {
	PaperID    string              `json:"paper_id"`
	Neighbours []exportedNeighbour `json:"neighbours"`
	ComputedAt string              `json:"computed_at"`
}

type exportedNeighbour struct {
	PaperID   string  `json:"paper_id"`
	Score     float32 `json:"score"`
	Relevance float32 `json:"relevance"`
}

const neighboursHelp = `
Exports every paper's precomputed neighbour list from a running server as JSON lines, one paper
per line: {"paper_id": ..., "neighbours": [{"paper_id": ..., "score": ..., "relevance": ...}, ...],
"computed_at": ...}, for batch consumers. Lists come in an order of the store's; an export cut
short is resumed with --after and the last paper id written (standard error names it).`

func runNeighbours(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf clientFlags
	fs := cli.NewFlags("neighbours", "[--out FILE] [--after ID] [flags]", neighboursHelp, stderr)
	cf.register(fs, 0)
	out := fs.String("out", "-", "`FILE` to write the JSON lines to; - for standard output")
	after := fs.String("after", "", "resume after this paper `ID` (the last one an earlier export wrote)")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	w := stdout
	if *out != "-" {
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	ctx, client, done, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer done()
	stream, err := client.ExportNeighbourLists(ctx, &recommenderv1.ExportNeighbourListsRequest{AfterPaperId: *after})
	if err != nil {
		return cli.RPCError(err)
	}
	written, last := 0, ""
	cut := func(err error) error {
		if ferr := bw.Flush(); ferr != nil {
			return ferr
		}
		if last != "" {
			fmt.Fprintf(stderr, "%d lists written before the export stopped; resume with --after %s\n", written, printable(last))
		}
		return err
	}
	enc := json.NewEncoder(bw) // one line per list, stable spacing (protojson's is not)
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return cut(cli.RPCError(err))
		}
		for _, l := range resp.GetLists() {
			line := exportedList{PaperID: l.GetPaperId(), Neighbours: make([]exportedNeighbour, len(l.GetNeighbours())), ComputedAt: l.GetComputedAt()}
			for i, n := range l.GetNeighbours() {
				line.Neighbours[i] = exportedNeighbour{PaperID: n.GetPaperId(), Score: n.GetScore(), Relevance: n.GetRelevance()}
			}
			if err := enc.Encode(line); err != nil {
				return cut(err)
			}
			written, last = written+1, l.GetPaperId()
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "%d lists written\n", written)
	return nil
}

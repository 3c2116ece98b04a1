package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
)

const recommendHelp = `
Asks a running server for papers similar to a free-text query and/or to seed papers (given by
id, repeatable), optionally away from negative seeds, and prints them best first with their
relevance: the calibrated chance that a reader finds the paper relevant. At least one of --query
or --seed is required. When more results exist, the next page's token is printed.`

func runRecommend(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf clientFlags
	var seeds, negatives, categories, authors, exclude listFlag
	fs := newFlags("recommend", "[--query TEXT] [--seed ID]... [flags]", recommendHelp, stderr)
	cf.register(fs, 30*time.Second)
	query := fs.String("query", "", "free text: a topic, a question or an abstract")
	fs.Var(&seeds, "seed", "`ID` of a paper the results should resemble (repeatable)")
	fs.Var(&negatives, "negative", "`ID` of a paper the results should not resemble (repeatable)")
	limit := fs.Int("limit", 10, "results per page (at most 100)")
	pageToken := fs.String("page-token", "", "token printed by a previous call, for the next page")
	minYear := fs.Int("min-year", 0, "earliest publication year")
	maxYear := fs.Int("max-year", 0, "latest publication year")
	fs.Var(&categories, "category", "only papers in this `CATEGORY` (repeatable: any of them)")
	fs.Var(&authors, "author", "only papers by this `AUTHOR` (repeatable: any of them)")
	fs.Var(&exclude, "exclude", "never return the paper with this `ID` (repeatable)")
	mode := fs.String("mode", "", "retrieval mode: lexical, dense or hybrid (default: the server's choice)")
	strategy := fs.String("strategy", "", "how several seeds make one list: per-seed (each seed's own neighbours, interleaved) or centroid (papers like all of them); default: the server's choice, per-seed")
	asJSON := fs.Bool("json", false, "print the response as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *query == "" && len(seeds) == 0 {
		return usageError{"give --query or at least one --seed"}
	}
	req := &recommenderv1.RecommendRequest{
		Query: *query, PositivePaperIds: seeds, NegativePaperIds: negatives,
		PageSize: int32(*limit), PageToken: *pageToken,
		Filter: &recommenderv1.Filter{MinYear: int32(*minYear), MaxYear: int32(*maxYear),
			Categories: categories, Authors: authors, ExcludePaperIds: exclude},
	}
	if *mode != "" {
		v, ok := recommenderv1.RetrievalMode_value["RETRIEVAL_MODE_"+strings.ToUpper(*mode)]
		if !ok {
			return usageError{fmt.Sprintf("--mode must be lexical, dense or hybrid, got %q", *mode)}
		}
		req.Mode = recommenderv1.RetrievalMode(v)
	}
	if *strategy != "" {
		v, ok := recommenderv1.SeedStrategy_value["SEED_STRATEGY_"+strings.ToUpper(strings.ReplaceAll(*strategy, "-", "_"))]
		if !ok || v == 0 {
			return usageError{fmt.Sprintf("--strategy must be per-seed or centroid, got %q", *strategy)}
		}
		req.Strategy = recommenderv1.SeedStrategy(v)
	}

	client, closeConn, err := cf.dial()
	if err != nil {
		return err
	}
	defer closeConn()
	ctx, cancel := withTimeout(ctx, cf.timeout)
	defer cancel()
	resp, err := client.Recommend(ctx, req)
	if err != nil {
		return rpcError(err)
	}
	if *asJSON {
		b, err := protojson.MarshalOptions{Multiline: true}.Marshal(resp)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, string(b))
		return err
	}
	printRecommendations(stdout, resp)
	return nil
}

func printRecommendations(w io.Writer, resp *recommenderv1.RecommendResponse) {
	mode := strings.ToLower(strings.TrimPrefix(resp.GetMode().String(), "RETRIEVAL_MODE_"))
	fmt.Fprintf(w, "%d results (%s)\n", len(resp.GetResults()), mode)
	for i, r := range resp.GetResults() {
		p := r.GetPaper()
		year := ""
		if p.GetYear() != 0 {
			year = fmt.Sprintf(" (%d)", p.GetYear())
		}
		fmt.Fprintf(w, "%3d. %3.0f%%  %-12s %s%s\n", i+1, 100*r.GetRelevance(), p.GetId(), p.GetTitle(), year)
		if len(p.GetAuthors()) > 0 {
			fmt.Fprintf(w, "     %s\n", strings.Join(p.GetAuthors(), ", "))
		}
	}
	if t := resp.GetNextPageToken(); t != "" {
		fmt.Fprintf(w, "next page: --page-token %s\n", t)
	}
}

func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

const infoHelp = `Shows a running server's index: paper count, store backend, embedding model and index version.`

func runInfo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf clientFlags
	fs := newFlags("info", "[flags]", infoHelp, stderr)
	cf.register(fs, 10*time.Second)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	client, closeConn, err := cf.dial()
	if err != nil {
		return err
	}
	defer closeConn()
	ctx, cancel := withTimeout(ctx, cf.timeout)
	defer cancel()
	info, err := client.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{})
	if err != nil {
		return rpcError(err)
	}
	fmt.Fprintf(stdout, "papers:     %d\nbackend:    %s\nmodel:      %s\ndimensions: %d\nversion:    %d\n",
		info.GetPaperCount(), info.GetStoreBackend(), info.GetEmbeddingModel(), info.GetEmbeddingDimensions(), info.GetIndexVersion())
	if q, d := info.GetEmbeddingQueryPrefix(), info.GetEmbeddingDocumentPrefix(); q != "" || d != "" {
		fmt.Fprintf(stdout, "prefixes:   query %q, document %q\n", q, d)
	}
	return nil
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/cli"
)

const recommendHelp = `
Asks a running server for papers similar to a free-text query and/or to seed papers, optionally
away from negative seeds, and prints them best first with their relevance: the calibrated chance
that a reader finds the paper relevant. Seeds are stored papers given by id (--seed), or papers
the server does not hold given by their text: --seed-title and --seed-abstract for one, or
--seed-file for papers in a JSON file (an object, or one per line: title, abstract, and
optionally authors, year, categories; "-" reads standard input). Inline seeds are analysed for
this request only, never stored. At least one of --query or a positive seed is required. Seeds
the server did not use (an unknown id, a repeat) are noted on standard error. When more
results exist, the next page's token is printed.`

func runRecommend(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf clientFlags
	var seeds, negatives, categories, authors, exclude, candidates cli.ListFlag
	fs := cli.NewFlags("recommend", "[--query TEXT] [--seed ID]... [--seed-file FILE]... [flags]", recommendHelp, stderr)
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
	var seedFiles, negativeFiles cli.ListFlag
	fs.Var(&seedFiles, "seed-file", "`FILE` of inline seed papers, JSON: an object or one per line (repeatable; - for standard input)")
	fs.Var(&negativeFiles, "negative-file", "`FILE` of inline papers the results should not resemble, as --seed-file")
	seedTitle := fs.String("seed-title", "", "title of an inline seed paper (with --seed-abstract or alone)")
	seedAbstract := fs.String("seed-abstract", "", "abstract of an inline seed paper")
	asJSON := fs.Bool("json", false, "print the response as JSON")
	diversity := fs.Float64("diversity", 0, "0 to 1: how much to favour results unlike those above them (maximal marginal relevance); 0 ranks by relevance alone")
	recency := fs.Float64("recency-half-life", 0, "`DAYS`: halve a result's score for every this many days of its age; 0 leaves age out")
	explain := fs.Bool("explain", false, "say why each result was chosen: the words it shares, its closeness in meaning, and the signals' scores")
	fs.Var(&candidates, "candidate", "rank only these papers: a candidate `ID` (repeatable, up to 1,000); every one comes back, unknown ids noted")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	positivePapers, err := readSeedFiles(seedFiles)
	if err != nil {
		return err
	}
	negativePapers, err := readSeedFiles(negativeFiles)
	if err != nil {
		return err
	}
	if *seedTitle != "" || *seedAbstract != "" {
		positivePapers = append(positivePapers, &recommenderv1.SeedPaper{Title: *seedTitle, Abstract: *seedAbstract})
	}
	if *query == "" && len(seeds) == 0 && len(positivePapers) == 0 {
		return cli.UsageError{Msg: "give --query, --seed, --seed-file or --seed-title/--seed-abstract"}
	}
	req := &recommenderv1.RecommendRequest{
		Query: *query, PositivePaperIds: seeds, NegativePaperIds: negatives,
		PositivePapers: positivePapers, NegativePapers: negativePapers,
		PageSize: int32(*limit), PageToken: *pageToken,
		Diversity: float32(*diversity), RecencyHalfLifeDays: float32(*recency), Explain: *explain, CandidatePaperIds: candidates,
		Filter: &recommenderv1.Filter{MinYear: int32(*minYear), MaxYear: int32(*maxYear),
			Categories: categories, Authors: authors, ExcludePaperIds: exclude},
	}
	if *mode != "" {
		v, ok := recommenderv1.RetrievalMode_value["RETRIEVAL_MODE_"+strings.ToUpper(*mode)]
		if !ok {
			return cli.UsageError{Msg: fmt.Sprintf("--mode must be lexical, dense or hybrid, got %q", *mode)}
		}
		req.Mode = recommenderv1.RetrievalMode(v)
	}
	if *strategy != "" {
		v, ok := recommenderv1.SeedStrategy_value["SEED_STRATEGY_"+strings.ToUpper(strings.ReplaceAll(*strategy, "-", "_"))]
		if !ok || v == 0 {
			return cli.UsageError{Msg: fmt.Sprintf("--strategy must be per-seed or centroid, got %q", *strategy)}
		}
		req.Strategy = recommenderv1.SeedStrategy(v)
	}

	ctx, client, done, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer done()
	resp, err := client.Recommend(ctx, req)
	if err != nil {
		return cli.RPCError(err)
	}
	noteSeeds(stderr, resp)
	for _, id := range resp.GetUnknownCandidateIds() {
		fmt.Fprintf(stderr, "note: candidate %s is not stored: left out\n", printable(id))
	}
	if *asJSON {
		return printJSON(stdout, resp)
	}
	printRecommendations(stdout, resp)
	return nil
}

// readSeedFiles reads inline seed papers: each file holds a JSON object, or one per line.
func readSeedFiles(names []string) ([]*recommenderv1.SeedPaper, error) {
	var out []*recommenderv1.SeedPaper
	for _, name := range names {
		var b []byte
		var err error
		if name == "-" {
			b, err = io.ReadAll(os.Stdin)
		} else {
			b, err = os.ReadFile(name)
		}
		if err != nil {
			return nil, err
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		for i := 1; ; i++ {
			var raw json.RawMessage
			if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return nil, cli.UsageError{Msg: fmt.Sprintf("%s: paper %d: %v", name, i, err)}
			}
			p := &recommenderv1.SeedPaper{}
			// Unknown fields (an id, a date, a whole stored paper's) are ignored.
			if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw, p); err != nil {
				return nil, cli.UsageError{Msg: fmt.Sprintf("%s: paper %d: %v (want title, abstract, authors [list], year, categories [list])", name, i, err)}
			}
			out = append(out, p)
		}
	}
	return out, nil
}

// noteSeeds says which seeds the server did not use, and why.
func noteSeeds(w io.Writer, resp *recommenderv1.RecommendResponse) {
	for _, s := range resp.GetSeeds() {
		name := s.GetPaperId()
		if _, ok := s.GetSource().(*recommenderv1.Seed_InlineIndex); ok {
			name = fmt.Sprintf("inline paper %d", s.GetInlineIndex()+1)
			if s.GetNegative() {
				name = "inline negative paper " + strconv.Itoa(int(s.GetInlineIndex())+1)
			}
		}
		switch s.GetStatus() {
		case recommenderv1.SeedStatus_SEED_STATUS_NOT_FOUND:
			fmt.Fprintf(w, "note: seed %s is not stored: left out\n", name)
		case recommenderv1.SeedStatus_SEED_STATUS_DUPLICATE:
			fmt.Fprintf(w, "note: seed %s repeats an earlier seed: left out\n", name)
		case recommenderv1.SeedStatus_SEED_STATUS_NO_EMBEDDING:
			fmt.Fprintf(w, "note: seed %s has no embedding yet (the server is still embedding the store): used by its words\n", name)
		}
	}
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
		fmt.Fprintf(w, "%3d. %3.0f%%  %-12s %s%s\n", i+1, 100*r.GetRelevance(), printable(p.GetId()), printable(p.GetTitle()), year)
		if len(p.GetAuthors()) > 0 {
			fmt.Fprintf(w, "     %s\n", printable(strings.Join(p.GetAuthors(), ", ")))
		}
		if x := r.GetExplanation(); x != nil {
			fmt.Fprintf(w, "     why: %s (lexical %.2f, dense %.2f)\n", printable(x.GetSummary()), x.GetLexicalScore(), x.GetDenseScore())
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

const infoHelp = `Shows a running server's index: paper count, store backend, embedding model and index version,
and the second set of vectors the store keeps while it moves to another model (with how many
papers have a vector in it) or after such a move (until retire-vectors).`

func runInfo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	ctx, client, done, err := simpleCommand(ctx, "info", infoHelp, 10*time.Second, args, stderr)
	if err != nil {
		return err
	}
	defer done()
	info, err := client.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{})
	if err != nil {
		return cli.RPCError(err)
	}
	fmt.Fprintf(stdout, "papers:     %d\nbackend:    %s\nmodel:      %s\ndimensions: %d\nversion:    %d\n",
		info.GetPaperCount(), info.GetStoreBackend(), info.GetEmbeddingModel(), info.GetEmbeddingDimensions(), info.GetIndexVersion())
	if q, d := info.GetEmbeddingQueryPrefix(), info.GetEmbeddingDocumentPrefix(); q != "" || d != "" {
		fmt.Fprintf(stdout, "prefixes:   query %q, document %q\n", q, d)
	}
	if info.GetEmbeddingDimensions() > 0 {
		fmt.Fprintf(stdout, "embedded:   %s%s\n", coverage(info.GetPapersWithVectors(), info.GetPaperCount()), holes(info))
	}
	if o := info.GetOtherVectorSet(); o != nil {
		state := "kept from before a switch, for a rollback: recommender retire-vectors deletes it"
		if o.GetFilling() {
			state = "being filled: the server switches to it once every paper has a vector"
		}
		share := 0.0
		if n := info.GetPaperCount(); n > 0 {
			share = 100 * float64(o.GetPapersWithVectors()) / float64(n)
		}
		fmt.Fprintf(stdout, "other set:  model %s (%d dimensions), %d of %d papers (%.1f%%); %s\n", o.GetModel(), o.GetDimensions(),
			o.GetPapersWithVectors(), info.GetPaperCount(), share, state)
	}
	if l := info.GetNeighbourLists(); l != nil {
		state := "built"
		switch {
		case !l.GetBuilt():
			state = "building"
		case l.GetPendingWrites() > 0:
			state = fmt.Sprintf("built; %d writes to take in", l.GetPendingWrites())
		}
		fmt.Fprintf(stdout, "neighbours: %d lists of %d similar papers, %s\n", l.GetLists(), l.GetLength(), state)
	}
	return nil
}

// coverage says how many of n papers have a vector.
// holes says how a bound store's papers without a vector get one, when some have none.
func holes(info *recommenderv1.GetIndexInfoResponse) string {
	if info.GetOtherVectorSet().GetFilling() || info.GetPapersWithVectors() >= info.GetPaperCount() {
		return ""
	}
	return ", until written again (backfill or serve --load of their file embeds them)"
}

func coverage(with, n int64) string {
	if n == 0 {
		return "no papers yet"
	}
	s := fmt.Sprintf("%d of %d papers (%.1f%%)", with, n, 100*float64(with)/float64(n))
	if with < n {
		s += "; the others are found by their words only"
	}
	return s
}

const retireVectorsHelp = `Deletes the second set of vectors a running server's store keeps after it moved to another
embedding model (serve --reembed-model): from then on the move cannot be rolled back. Refused
while a re-embedding is filling that set. Needs a write key.`

func runRetireVectors(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	ctx, client, done, err := simpleCommand(ctx, "retire-vectors", retireVectorsHelp, time.Minute, args, stderr)
	if err != nil {
		return err
	}
	defer done()
	resp, err := client.RetireVectorSet(ctx, &recommenderv1.RetireVectorSetRequest{})
	if err != nil {
		return cli.RPCError(err)
	}
	r := resp.GetRetired()
	fmt.Fprintf(stdout, "retired the vectors of model %s (%d dimensions, %d papers)\n", r.GetModel(), r.GetDimensions(), r.GetPapersWithVectors())
	return nil
}

// simpleCommand parses the flags of a command that makes one call (the client's only) and
// dials the server; done closes the connection and ends the call's deadline.
func simpleCommand(ctx context.Context, name, help string, timeout time.Duration, args []string, stderr io.Writer) (context.Context, recommenderv1.RecommenderServiceClient, func(), error) {
	var cf clientFlags
	fs := cli.NewFlags(name, "[flags]", help, stderr)
	cf.register(fs, timeout)
	if err := cli.ParseFlags(fs, args); err != nil {
		return nil, nil, nil, err
	}
	return cf.connect(ctx)
}

// connect dials the server and bounds ctx by --timeout; done releases both.
func (c *clientFlags) connect(ctx context.Context) (_ context.Context, _ recommenderv1.RecommenderServiceClient, done func(), _ error) {
	client, closeConn, err := c.dial()
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := withTimeout(ctx, c.timeout)
	return ctx, client, func() { cancel(); closeConn() }, nil
}

// printJSON prints a response as indented protobuf JSON.
func printJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

// printable shows text from the server as text: control characters (a title holding ESC [2J
// would clear the terminal, OSC sequences retitle it) and invisible format characters (bidi
// overrides reorder what follows) are written as escapes.
func printable(s string) string {
	if !strings.ContainsFunc(s, hidden) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case !hidden(r):
			b.WriteRune(r)
		case r < 0x100:
			fmt.Fprintf(&b, "\\x%02x", r)
		default:
			fmt.Fprintf(&b, "\\u%04x", r)
		}
	}
	return b.String()
}

func hidden(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }

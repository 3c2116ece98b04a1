package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/cli"
)

const feedHelp = `
Manages saved feeds ("new papers like these") on a running server and follows them:

  feed create --query TEXT [--seed ID]... [--seed-file FILE]... [--min-relevance R] [--name N]
  feed list
  feed get FEED_ID
  feed delete FEED_ID
  feed stream FEED_ID [--cursor C | --since RFC3339]

stream prints each matching paper as it is written (first the backlog from the cursor or time,
else from now), one line each, until interrupted; it prints the cursor to resume from on
standard error when it stops.`

func runFeed(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf clientFlags
	var seeds, seedFiles, categories cli.ListFlag
	fs := cli.NewFlags("feed", "create|list|get|delete|stream [FEED_ID] [flags]", feedHelp, stderr)
	cf.register(fs, 10*time.Second)
	query := fs.String("query", "", "create: free text to follow")
	fs.Var(&seeds, "seed", "create: `ID` of a paper to follow papers like (repeatable)")
	fs.Var(&seedFiles, "seed-file", "create: `FILE` of inline seed papers, as recommend --seed-file (repeatable)")
	fs.Var(&categories, "category", "create: only papers in this `CATEGORY` (repeatable: any of them)")
	minRelevance := fs.Float64("min-relevance", 0.5, "create: the relevance a new paper needs, 0 to 1")
	name := fs.String("name", "", "create: a label for people")
	cursor := fs.String("cursor", "", "stream: resume after this cursor (printed when a stream stops)")
	since := fs.String("since", "", "stream: start with the papers written since this RFC 3339 time")
	asJSON := fs.Bool("json", false, "print responses (stream: events, one per line) as JSON")
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if err := cli.ParseFlags(fs, args); err != nil {
			return err
		}
		return cli.UsageError{Msg: "give a subcommand: create, list, get, delete or stream"}
	}
	sub, rest := args[0], args[1:]
	var id string
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		id, rest = rest[0], rest[1:]
	}
	if err := cli.ParseFlags(fs, rest); err != nil {
		return err
	}
	needsID := sub == "get" || sub == "delete" || sub == "stream"
	switch {
	case sub != "create" && sub != "list" && !needsID:
		return cli.UsageError{Msg: fmt.Sprintf("unknown feed subcommand %q: create, list, get, delete or stream", sub)}
	case needsID && id == "":
		return cli.UsageError{Msg: fmt.Sprintf("feed %s needs a FEED_ID", sub)}
	}
	client, closeConn, err := cf.dial()
	if err != nil {
		return err
	}
	defer closeConn()
	show := func(f *recommenderv1.Feed) error {
		if *asJSON {
			b, err := protojson.Marshal(f)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(stdout, string(b))
			return err
		}
		_, err := fmt.Fprintf(stdout, "%s  %s  min %.0f%%  %s\n", printable(f.GetFeedId()), f.GetCreateTime(), 100*f.GetMinRelevance(), describeFeed(f))
		return err
	}
	if sub == "stream" {
		return streamFeed(ctx, client, &recommenderv1.StreamFeedRequest{FeedId: id, Cursor: *cursor, Since: *since}, *asJSON, stdout, stderr)
	}
	ctx, cancel := withTimeout(ctx, cf.timeout)
	defer cancel()
	switch sub {
	case "create":
		papers, err := readSeedFiles(seedFiles)
		if err != nil {
			return err
		}
		resp, err := client.CreateFeed(ctx, &recommenderv1.CreateFeedRequest{Feed: &recommenderv1.Feed{Name: *name, Query: *query,
			PositivePaperIds: seeds, PositivePapers: papers, MinRelevance: float32(*minRelevance),
			Filter: &recommenderv1.Filter{Categories: categories}}})
		if err != nil {
			return cli.RPCError(err)
		}
		return show(resp.GetFeed())
	case "list":
		resp, err := client.ListFeeds(ctx, &recommenderv1.ListFeedsRequest{})
		if err != nil {
			return cli.RPCError(err)
		}
		for _, f := range resp.GetFeeds() {
			if err := show(f); err != nil {
				return err
			}
		}
		return nil
	case "get":
		resp, err := client.GetFeed(ctx, &recommenderv1.GetFeedRequest{FeedId: id})
		if err != nil {
			return cli.RPCError(err)
		}
		return show(resp.GetFeed())
	default: // delete
		if _, err := client.DeleteFeed(ctx, &recommenderv1.DeleteFeedRequest{FeedId: id}); err != nil {
			return cli.RPCError(err)
		}
		_, err := fmt.Fprintf(stdout, "deleted %s\n", id)
		return err
	}
}

func describeFeed(f *recommenderv1.Feed) string {
	var parts []string
	if f.GetName() != "" {
		parts = append(parts, fmt.Sprintf("%q", f.GetName()))
	}
	if f.GetQuery() != "" {
		parts = append(parts, fmt.Sprintf("query %q", f.GetQuery()))
	}
	if n := len(f.GetPositivePaperIds()) + len(f.GetPositivePapers()); n > 0 {
		parts = append(parts, fmt.Sprintf("%d seeds", n))
	}
	return strings.Join(parts, ", ")
}

// streamFeed prints matching papers until the stream or the process ends, then the cursor to
// resume from.
func streamFeed(ctx context.Context, client recommenderv1.RecommenderServiceClient, req *recommenderv1.StreamFeedRequest, asJSON bool, stdout, stderr io.Writer) error {
	stream, err := client.StreamFeed(ctx, req)
	if err != nil {
		return cli.RPCError(err)
	}
	last := req.GetCursor()
	defer func() {
		if last != "" {
			fmt.Fprintf(stderr, "resume with: --cursor %s\n", last)
		}
	}()
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled || ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return cli.RPCError(err)
		}
		last = ev.GetCursor()
		switch {
		case asJSON:
			b, err := protojson.Marshal(ev)
			if err != nil {
				return err
			}
			fmt.Fprintln(stdout, string(b))
		case ev.GetPaper() != nil:
			p := ev.GetPaper()
			fmt.Fprintf(stdout, "%3.0f%%  %-14s %s  (written %s)\n", 100*ev.GetRelevance(), printable(p.GetId()), printable(p.GetTitle()), ev.GetWriteTime())
		}
	}
}

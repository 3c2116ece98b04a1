package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/app"
	"github.com/paperrec/recommender/internal/cli"
	"github.com/paperrec/recommender/internal/embed"
	"github.com/paperrec/recommender/internal/embed/embedtest"
)

const benchNeighboursHelp = `
Measures the neighbour lists over --papers synthetic papers (those of bench-grpc, so a store it
kept with --data-dir serves here too), served over real gRPC on loopback:

  1. the build: every paper's list computed by the service's upkeep (--workers at a time), the
     time until every list is stored (a rerun over a store whose lists are built skips it);
  2. lookups: SimilarPapers answered from the lists, one client, p50 and p99, beside the
     search that computes a list (the same paper as one seed, Recommend) in the same run;
  3. --writes new papers written one UpsertPapers each at --write-rate a second while the
     upkeep follows, with the freshness of every 20th: from its write's acknowledgement until
     its list (stored with the lists it enters) is served;
  4. agreement after the writes: for --sample papers (half of them new) the list's top 10
     against a fresh search's, and for the new ones, of the papers whose fresh search ranks the
     new paper in its top 10, the share whose list has it.

The new papers are deleted at the end, so a rerun finds the store as it was.`

func runBenchNeighbours(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlags("bench-neighbours", "[flags]", benchNeighboursHelp, stderr)
	n := fs.Int("papers", 100_000, "synthetic papers in the store")
	dims := fs.Int("dims", 384, "embedding dimensions")
	length := fs.Int("length", 20, "papers per list")
	workers := fs.Int("workers", 2, "lists computed at a time")
	writes := fs.Int("writes", 10_000, "new papers written while the upkeep follows")
	rate := fs.Float64("write-rate", 20, "new papers written a second")
	sample := fs.Int("sample", 400, "papers whose lists are compared with a fresh search after the writes")
	seconds := fs.Float64("seconds", 10, "duration of each lookup measure")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the lookups to this file")
	var sf cli.StoreFlags
	sf.RegisterEval(fs, "keep the embedded store here between runs (default: a temporary folder)")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if err := sf.ApplyEnv(); err != nil {
		return err
	}
	if *n < 100 || *length < 1 || *length > 100 || *workers < 1 || *writes < 0 || *rate <= 0 || *sample < 2 || *seconds <= 0 {
		return cli.UsageError{Msg: "--papers at least 100, --length 1 to 100, --workers at least 1, --writes 0 or more, --write-rate, --sample (2 or more) and --seconds above 0"}
	}
	api := embedtest.New(*dims)
	defer api.Close()
	emb, err := embed.New(embed.Config{BaseURL: api.BaseURL(), Model: "fake-hash", Dimensions: *dims, MaxInputs: 512})
	if err != nil {
		return err
	}
	all := syntheticPapers(*n + *writes) // the first n are bench-grpc's, the rest new
	papers, fresh := all[:*n], all[*n:]
	opts := []app.Option{app.WithNeighbourLists(*length, *workers)}
	return withEvalStore(ctx, &sf, "", "bench_neighbours", emb, opts, papers, func(r evalRun) error {
		b := neighbourBench{c: r.client, length: *length, out: stdout}
		kctx, stop := context.WithCancel(ctx)
		kept := make(chan error, 1)
		go func() {
			kept <- r.app.KeepNeighbourLists(kctx, slog.New(slog.NewTextHandler(stderr, nil)))
		}()
		defer func() { stop(); <-kept }()
		if err := b.build(ctx, *n, *workers); err != nil {
			return err
		}
		stopProfile, err := cpuProfileTo(*cpuProfile)
		if err != nil {
			return err
		}
		err = b.lookups(ctx, papers, time.Duration(*seconds*float64(time.Second)))
		stopProfile()
		if err != nil {
			return err
		}
		if len(fresh) == 0 {
			return nil
		}
		defer b.deleteNew(fresh)
		if err := b.write(ctx, fresh, *rate); err != nil {
			return err
		}
		return b.agreement(ctx, papers, fresh, *sample)
	})
}

type neighbourBench struct {
	c      recommenderv1.RecommenderServiceClient
	length int
	out    io.Writer
}

// current waits until the lists reflect every write, printing progress every minute.
func (b *neighbourBench) current(ctx context.Context) (*recommenderv1.NeighbourListsInfo, error) {
	lastLog := time.Now()
	for {
		info, err := b.c.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{})
		if err != nil {
			return nil, cli.RPCError(err)
		}
		l := info.GetNeighbourLists()
		if l.GetBuilt() && l.GetPendingWrites() == 0 {
			return l, nil
		}
		if time.Since(lastLog) > time.Minute {
			fmt.Fprintf(b.out, "  ... %d lists, %d writes pending\n", l.GetLists(), l.GetPendingWrites())
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func (b *neighbourBench) build(ctx context.Context, n, workers int) error {
	info, err := b.c.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{})
	if err != nil {
		return cli.RPCError(err)
	}
	if l := info.GetNeighbourLists(); l.GetBuilt() && l.GetLists() >= int64(n) {
		fmt.Fprintf(b.out, "build: the store's %d lists are built already (a rerun); not measured again\n", l.GetLists())
		_, err := b.current(ctx)
		return err
	}
	start := time.Now()
	l, err := b.current(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(b.out, "build: %d lists of %d over %d papers in %s with %d workers (%.0f lists/s)\n",
		l.GetLists(), b.length, n, time.Since(start).Round(time.Second), workers, float64(l.GetLists())/time.Since(start).Seconds())
	return nil
}

func (b *neighbourBench) lookups(ctx context.Context, papers []*recommenderv1.Paper, d time.Duration) error {
	fmt.Fprintf(b.out, "%-34s %10s %10s %12s\n", "request (1 client)", "p50", "p99", "requests/s")
	for _, kind := range []struct {
		name string
		send func(context.Context, *recommenderv1.Paper) error
	}{
		{"SimilarPapers, from the list", func(ctx context.Context, p *recommenderv1.Paper) error {
			resp, err := b.c.SimilarPapers(ctx, &recommenderv1.SimilarPapersRequest{PaperId: p.GetId(), PageSize: int32(min(b.length, 10))})
			if err == nil && resp.GetSource() != recommenderv1.NeighbourSource_NEIGHBOUR_SOURCE_LIST {
				err = fmt.Errorf("%s searched: %s", p.GetId(), resp.GetSearchReason())
			}
			return err
		}},
		{"SimilarPapers, from the list, BRIEF", func(ctx context.Context, p *recommenderv1.Paper) error {
			resp, err := b.c.SimilarPapers(ctx, &recommenderv1.SimilarPapersRequest{PaperId: p.GetId(), PageSize: int32(min(b.length, 10)),
				View: recommenderv1.PaperView_PAPER_VIEW_BRIEF})
			if err == nil && resp.GetSource() != recommenderv1.NeighbourSource_NEIGHBOUR_SOURCE_LIST {
				err = fmt.Errorf("%s searched: %s", p.GetId(), resp.GetSearchReason())
			}
			return err
		}},
		{"GetPaper (a call's floor)", func(ctx context.Context, p *recommenderv1.Paper) error {
			_, err := b.c.GetPaper(ctx, &recommenderv1.GetPaperRequest{PaperId: p.GetId()})
			return err
		}},
		{"Recommend, the paper as seed", func(ctx context.Context, p *recommenderv1.Paper) error {
			_, err := b.c.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePaperIds: []string{p.GetId()}})
			return err
		}},
	} {
		if _, err := loadLevel(ctx, papers, kind.send, 1, d/5, warmupStream); err != nil {
			return err
		}
		lat, err := loadLevel(ctx, papers, kind.send, 1, d, timedStream)
		if err != nil {
			return err
		}
		slices.Sort(lat)
		fmt.Fprintf(b.out, "%-34s %10s %10s %12.0f\n", kind.name, round(lat[len(lat)/2]), round(lat[len(lat)*99/100]), float64(len(lat))/d.Seconds())
	}
	return nil
}

// write sends the new papers one by one at rate a second, and measures the freshness of every
// 20th in the background.
func (b *neighbourBench) write(ctx context.Context, fresh []*recommenderv1.Paper, rate float64) error {
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var lags []time.Duration
	var lagErr error
	every := time.Duration(float64(time.Second) / rate)
	for i, p := range fresh {
		if wait := time.Until(start.Add(time.Duration(i) * every)); wait > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		}
		if _, err := b.c.UpsertPapers(ctx, &recommenderv1.UpsertPapersRequest{Papers: []*recommenderv1.Paper{p}}); err != nil {
			return cli.RPCError(err)
		}
		acked := time.Now()
		if i%20 != 0 {
			continue
		}
		wg.Go(func() {
			for {
				resp, err := b.c.SimilarPapers(ctx, &recommenderv1.SimilarPapersRequest{PaperId: p.GetId(), PageSize: 1})
				if err != nil {
					mu.Lock()
					lagErr = cmp.Or(lagErr, err)
					mu.Unlock()
					return
				}
				if resp.GetSource() == recommenderv1.NeighbourSource_NEIGHBOUR_SOURCE_LIST {
					mu.Lock()
					lags = append(lags, time.Since(acked))
					mu.Unlock()
					return
				}
				time.Sleep(20 * time.Millisecond) // polling for the list: the resolution of the measure
			}
		})
	}
	wrote := time.Since(start)
	wg.Wait()
	if lagErr != nil {
		return cli.RPCError(lagErr)
	}
	if _, err := b.current(ctx); err != nil {
		return err
	}
	slices.Sort(lags)
	fmt.Fprintf(b.out, "writes: %d new papers in %s (%.1f/s), every list current %s after the first write\n",
		len(fresh), wrote.Round(time.Second), float64(len(fresh))/wrote.Seconds(), time.Since(start).Round(time.Second))
	fmt.Fprintf(b.out, "freshness of %d of them (write acknowledged -> its list and its place in others' served): p50 %s, p99 %s, max %s\n",
		len(lags), lags[len(lags)/2].Round(time.Millisecond), lags[len(lags)*99/100].Round(time.Millisecond), lags[len(lags)-1].Round(time.Millisecond))
	return nil
}

// agreement compares lists with fresh searches after the writes.
func (b *neighbourBench) agreement(ctx context.Context, papers, fresh []*recommenderv1.Paper, sample int) error {
	rng := rand.New(rand.NewPCG(7, 7))
	top := func(id string) ([]string, error) {
		resp, err := b.c.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePaperIds: []string{id}, PageSize: 10})
		return resultIDs(resp.GetResults()), err
	}
	listed := func(id string) ([]string, error) {
		resp, err := b.c.SimilarPapers(ctx, &recommenderv1.SimilarPapersRequest{PaperId: id, PageSize: 10})
		if err == nil && resp.GetSource() != recommenderv1.NeighbourSource_NEIGHBOUR_SOURCE_LIST {
			return nil, fmt.Errorf("%s has no list: %s", id, resp.GetSearchReason())
		}
		return resultIDs(resp.GetResults()), err
	}
	var overlapOld, overlapNew float64
	var entered, belongs int
	for i := range sample {
		p := papers[rng.IntN(len(papers))]
		isNew := i%2 == 1
		if isNew {
			p = fresh[rng.IntN(len(fresh))]
		}
		want, err := top(p.GetId())
		if err != nil {
			return cli.RPCError(err)
		}
		got, err := listed(p.GetId())
		if err != nil {
			return cli.RPCError(err)
		}
		o := overlap(want, got)
		if !isNew {
			overlapOld += o
			continue
		}
		overlapNew += o
		// The lists the new paper belongs in: its fresh neighbours whose fresh search ranks it.
		for _, c := range want {
			theirs, err := top(c)
			if err != nil {
				return cli.RPCError(err)
			}
			if !slices.Contains(theirs, p.GetId()) {
				continue
			}
			belongs++
			if l, err := listed(c); err != nil {
				return cli.RPCError(err)
			} else if slices.Contains(l, p.GetId()) {
				entered++
			}
		}
	}
	half := float64(sample / 2)
	fmt.Fprintf(b.out, "agreement with a fresh search after the writes, top-10 overlap: %.3f over %d papers (stored before: %.3f, new: %.3f)\n",
		(overlapOld+overlapNew)/float64(sample), sample, overlapOld/(float64(sample)-half), overlapNew/half)
	fmt.Fprintf(b.out, "reverse neighbours: the new papers are in %d of the %d top-10 lists a fresh search puts them in (%.3f)\n",
		entered, belongs, float64(entered)/float64(max(belongs, 1)))
	return nil
}

func overlap(want, got []string) float64 {
	if len(want) == 0 {
		return 1
	}
	n := 0
	for _, id := range want {
		if slices.Contains(got, id) {
			n++
		}
	}
	return float64(n) / float64(len(want))
}

func resultIDs(rs []*recommenderv1.Recommendation) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.GetPaper().GetId()
	}
	return out
}

// deleteNew removes the papers the run wrote, so a rerun finds the store as it was.
func (b *neighbourBench) deleteNew(fresh []*recommenderv1.Paper) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := 0; i < len(fresh); i += 500 {
		var ids []string
		for _, p := range fresh[i:min(i+500, len(fresh))] {
			ids = append(ids, p.GetId())
		}
		if _, err := b.c.DeletePapers(ctx, &recommenderv1.DeletePapersRequest{PaperIds: ids}); err != nil {
			fmt.Fprintln(b.out, "delete the new papers:", cli.RPCError(err))
			return
		}
	}
}

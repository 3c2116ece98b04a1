package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/apierr"
	"github.com/paperrec/recommender/internal/arxiv"
	"github.com/paperrec/recommender/internal/server"
)

// loadBatch is the papers of one write of serve --load: enough to keep a local model's workers
// busy, few enough that progress shows every few seconds.
const loadBatch = 64

// loadFile writes the papers of a JSON-lines file (backfill's format) into the service, in
// the process: serve --load. Unchanged papers are counted and cost no embedding; a batch the
// service refuses is written again paper by paper, so one bad line costs only itself. Progress
// is logged every interval.
func loadFile(ctx context.Context, svc *server.Service, path string, interval time.Duration, log *slog.Logger) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	reader, err := arxiv.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var total recommenderv1.UpsertPapersResponse
	var rejected, malformed int
	start, last := time.Now(), time.Now()
	write := func(batch []*recommenderv1.Paper) error {
		resp, err := svc.UpsertPapers(ctx, &recommenderv1.UpsertPapersRequest{Papers: batch})
		var invalid *apierr.ValidationError
		switch {
		case errors.As(err, &invalid) && len(batch) > 1:
			for _, p := range batch {
				if err := write1(ctx, svc, p, &total, log); err != nil {
					if !errors.As(err, &invalid) {
						return err
					}
					rejected++
				}
			}
			return nil
		case err != nil:
			return err
		}
		total.Inserted += resp.GetInserted()
		total.Updated += resp.GetUpdated()
		total.Unchanged += resp.GetUnchanged()
		return nil
	}
	var batch []*recommenderv1.Paper
	err = reader.Each(path, func(p *recommenderv1.Paper) error {
		if batch = append(batch, p); len(batch) < loadBatch {
			return nil
		}
		if err := write(batch); err != nil {
			return err
		}
		batch = batch[:0]
		if time.Since(last) >= interval {
			last = time.Now()
			done := total.GetInserted() + total.GetUpdated() + total.GetUnchanged()
			log.Info("load: in progress", "file", path, "papers_stored", done,
				"papers_per_second", fmt.Sprintf("%.1f", float64(done)/time.Since(start).Seconds()))
		}
		return nil
	}, func(lerr *arxiv.LineError) error {
		malformed++
		log.Warn("load: malformed line skipped", "file", path, "line", lerr.Line, "error", lerr.Err)
		return nil
	})
	if err != nil {
		return err
	}
	if len(batch) > 0 {
		if err := write(batch); err != nil {
			return err
		}
	}
	log.Info("load: done", "file", path, "inserted", total.GetInserted(), "updated", total.GetUpdated(),
		"unchanged", total.GetUnchanged(), "rejected", rejected, "malformed_lines", malformed, "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// write1 writes one paper, logging why it is refused.
func write1(ctx context.Context, svc *server.Service, p *recommenderv1.Paper, total *recommenderv1.UpsertPapersResponse, log *slog.Logger) error {
	resp, err := svc.UpsertPapers(ctx, &recommenderv1.UpsertPapersRequest{Papers: []*recommenderv1.Paper{p}})
	if err != nil {
		log.Warn("load: paper rejected", "id", p.GetId(), "error", err)
		return err
	}
	total.Inserted += resp.GetInserted()
	total.Updated += resp.GetUpdated()
	total.Unchanged += resp.GetUnchanged()
	return nil
}

package app

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"

	"github.com/paperrec/recommender/internal/apierr"
	"github.com/paperrec/recommender/internal/neighbours"
	"github.com/paperrec/recommender/internal/recommend"
	"github.com/paperrec/recommender/internal/store"
)

// WithNeighbourLists keeps each paper's top length similar papers precomputed in the store
// (KeepNeighbourLists builds and updates them, workers at a time), and answers SimilarPapers
// requests of the default shape from them.
func WithNeighbourLists(length, workers int) Option {
	return func(s *App) { s.listLength, s.listWorkers = length, workers }
}

// keeper returns the neighbour lists' keeper, or nil when the service keeps none (not asked,
// or a store that cannot hold them).
func (s *App) keeper() *neighbours.Keeper {
	s.keeperOnce.Do(func() {
		nl, ok := store.As[store.NeighbourLists](s.store)
		cl, logged := store.As[store.ChangeLog](s.store)
		if s.listLength <= 0 || !ok || !logged {
			return
		}
		host, _ := os.Hostname()
		s.lists = &neighbours.Keeper{Lists: nl, Log: cl, Compute: s.computeList, Key: s.listKey, Papers: s.paperCount,
			Length: s.listLength, Workers: s.listWorkers, Logger: slog.Default(),
			ID: fmt.Sprintf("%s/%d/%08x", host, os.Getpid(), rand.Uint32())}
	})
	return s.lists
}

// listKey names what the lists are computed with: the active ranking, its mode and the length.
func (s *App) listKey() string {
	return s.eng().Ranking() + "\x00" + s.listMode().String() + "\x00" + strconv.Itoa(s.listLength)
}

// listMode is the mode the lists are computed in: the one a request leaving it to the service
// gets.
func (s *App) listMode() recommend.Mode {
	if s.eng().Embedder != nil {
		return recommend.ModeHybrid
	}
	return recommend.ModeLexical
}

// computeList is a paper's list: the default request with the paper as its one seed (which,
// as every transport does, excludes the seed).
func (s *App) computeList(ctx context.Context, id string) ([]neighbours.Entry, error) {
	res, err := s.Recommend(ctx, func(string) (recommend.Request, error) {
		return recommend.Request{Positive: []string{id}, PageSize: s.listLength, Filter: store.Filter{ExcludeIDs: []string{id}}}, nil
	})
	if err != nil {
		return nil, err
	}
	if len(res.Seeds) == 0 || res.Seeds[0].Status != recommend.SeedFound {
		return nil, &store.NotFoundError{IDs: []string{id}}
	}
	entries := make([]neighbours.Entry, len(res.Items))
	for i, it := range res.Items {
		entries[i] = neighbours.Entry{ID: it.Paper.ID, Score: it.Score, Relevance: it.Relevance}
	}
	return entries, nil
}

func (s *App) paperCount(ctx context.Context) (int64, error) {
	st, err := s.store.Stats(ctx)
	return st.PaperCount, err
}

// KeepNeighbourLists builds the lists and keeps them current until ctx ends; it returns nil at
// once when the service keeps none. A store that is unavailable is waited for.
func (s *App) KeepNeighbourLists(ctx context.Context, log *slog.Logger) error {
	k := s.keeper()
	if k == nil {
		return nil
	}
	k.Logger = log
	return RetryWhileUnavailable(ctx, log, "keep the neighbour lists", k.Run)
}

// SimilarRequest asks for the papers most like one stored paper.
type SimilarRequest struct {
	ID       string
	PageSize int
	Filter   store.Filter
	Mode     recommend.Mode
	// Brief asks for the papers' id, title, year and date only.
	Brief bool
}

// Similar is the answer: a search's result, or a list's (FromList).
type Similar struct {
	*recommend.Result
	FromList     bool
	SearchReason string // why a search answered
}

// SimilarPapers answers from the paper's neighbour list when the request has the default shape
// and the list is built, else by a search.
func (s *App) SimilarPapers(ctx context.Context, r SimilarRequest) (*Similar, error) {
	if err := s.ready(); err != nil {
		return nil, err
	}
	reason, err := s.fromList(ctx, r)
	if err != nil {
		return nil, err
	}
	if reason.res != nil {
		return &Similar{Result: reason.res, FromList: true}, nil
	}
	res, err := s.Recommend(ctx, func(string) (recommend.Request, error) {
		return recommend.Request{Positive: []string{r.ID}, Filter: r.Filter, Mode: r.Mode, PageSize: r.PageSize}, nil
	})
	if err != nil {
		return nil, err
	}
	if len(res.Seeds) > 0 && res.Seeds[0].Status == recommend.SeedNotFound {
		return nil, &store.NotFoundError{IDs: []string{r.ID}}
	}
	if r.Brief {
		for i := range res.Items {
			p := &res.Items[i].Paper
			*p = store.Paper{ID: p.ID, Title: p.Title, Year: p.Year, Date: p.Date}
		}
	}
	return &Similar{Result: res, SearchReason: reason.why}, nil
}

// listAnswer is a list's answer, or why there is none.
type listAnswer struct {
	res *recommend.Result
	why string
}

func (s *App) fromList(ctx context.Context, r SimilarRequest) (listAnswer, error) {
	k := s.keeper()
	mode := s.listMode()
	switch {
	case k == nil:
		return listAnswer{why: "the server keeps no neighbour lists"}, nil
	case !filterUnset(r.Filter, r.ID):
		return listAnswer{why: "a filter is set"}, nil
	case r.Mode != recommend.ModeAuto && r.Mode != mode:
		return listAnswer{why: fmt.Sprintf("mode %s asked; the lists are %s", r.Mode, mode)}, nil
	case r.PageSize > s.listLength:
		return listAnswer{why: fmt.Sprintf("%d results asked; the lists hold %d", r.PageSize, s.listLength)}, nil
	}
	l, ok, err := k.Lookup(ctx, r.ID)
	if err != nil {
		return listAnswer{}, err
	}
	if !ok {
		return listAnswer{why: "the paper's list is not built yet"}, nil
	}
	ids := make([]string, len(l.Entries))
	for i, e := range l.Entries {
		ids[i] = e.ID
	}
	// The page's papers, and the rest of the list only when some were deleted since it was
	// computed (they are left out); when that leaves too few, the paper is searched.
	want := min(r.PageSize, len(ids))
	fields := store.Metadata
	if r.Brief {
		fields = 0 // id, title, date and year: what Read always fills in
	}
	recs, err := s.store.Read(ctx, ids[:want], fields, "")
	if err == nil && len(recs) < want {
		var more []store.Record
		more, err = s.store.Read(ctx, ids[want:], fields, "")
		recs = append(recs, more...)
	}
	if err != nil {
		return listAnswer{}, err
	}
	if len(recs) < want {
		return listAnswer{why: "papers of its list were deleted"}, nil
	}
	res := &recommend.Result{Mode: mode, Model: s.eng().ModelName()}
	entry := make(map[string]neighbours.Entry, len(l.Entries))
	for _, e := range l.Entries {
		entry[e.ID] = e
	}
	for _, rec := range recs[:min(r.PageSize, len(recs))] {
		e := entry[rec.Paper.ID]
		res.Items = append(res.Items, recommend.Item{Paper: rec.Paper, Score: e.Score, Relevance: e.Relevance})
	}
	return listAnswer{res: res}, nil
}

// filterUnset reports whether f restricts a search for seed's neighbours in no way but the
// seed's own exclusion.
func filterUnset(f store.Filter, seed string) bool {
	return f.MinYear == 0 && f.MaxYear == 0 && len(f.Categories) == 0 && len(f.Authors) == 0 && f.OnlyIDs == nil &&
		!slices.ContainsFunc(f.ExcludeIDs, func(id string) bool { return id != seed })
}

// ListsInfo describes the neighbour lists (Length 0: the service keeps none).
type ListsInfo struct {
	Length int
	neighbours.Status
}

func (s *App) listsInfo(ctx context.Context) (ListsInfo, error) {
	k := s.keeper()
	if k == nil {
		return ListsInfo{}, nil
	}
	st, err := k.Status(ctx)
	return ListsInfo{Length: s.listLength, Status: st}, err
}

// ExportedList is one paper's list as exported.
type ExportedList = neighbours.List

// ExportNeighbourLists sends every stored list computed with the current ranking, in batches,
// after the paper named after (empty: from the first), until the last or until send fails.
func (s *App) ExportNeighbourLists(ctx context.Context, after string, send func([]ExportedList) error) error {
	if err := s.ready(); err != nil {
		return err
	}
	k := s.keeper()
	if k == nil {
		return &apierr.PreconditionError{Reason: apierr.NoNeighbourLists, Subject: "server",
			Message: "this server keeps no neighbour lists (serve --neighbours 0, or a store that cannot hold them)"}
	}
	for {
		lists, last, err := k.Scan(ctx, after, exportBatch)
		if err != nil {
			return err
		}
		if last == "" {
			return nil
		}
		if len(lists) > 0 {
			if err := s.dropDeleted(ctx, lists); err != nil {
				return err
			}
			if err := send(lists); err != nil {
				return err
			}
		}
		after = last
	}
}

// dropDeleted leaves the papers deleted since a list was computed out of it.
func (s *App) dropDeleted(ctx context.Context, lists []ExportedList) error {
	var ids []string
	for _, l := range lists {
		for _, e := range l.Entries {
			ids = append(ids, e.ID)
		}
	}
	recs, err := s.store.Read(ctx, ids, 0, "")
	if err != nil {
		return err
	}
	stored := make(map[string]bool, len(recs))
	for _, r := range recs {
		stored[r.Paper.ID] = true
	}
	for i := range lists {
		lists[i].Entries = slices.DeleteFunc(lists[i].Entries, func(e neighbours.Entry) bool { return !stored[e.ID] })
	}
	return nil
}

// exportBatch is how many lists an export reads and sends at a time.
const exportBatch = 256

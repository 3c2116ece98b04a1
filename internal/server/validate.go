package server

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/store"
)

// Limits of the API, documented in the .proto.
const (
	MaxIDBytes       = 128
	MaxTitleChars    = 1_000
	MaxAbstractChars = 20_000
	MaxQueryChars    = 10_000
	MaxSeeds         = 100
	MaxCandidates    = 1_000
	MaxBatch         = 1_000
	MaxAuthors       = 20_000 // physics collaborations list thousands
	MaxCategories    = 100
	MaxNameChars     = 300
	DefaultPageSize  = 10
	MaxPageSize      = 100
	// MaxResults bounds how deep paging goes: each page recomputes the top offset+size papers,
	// so unbounded depth would make deep pages arbitrarily expensive.
	MaxResults = 1_000
)

// arxivVersioned matches arXiv ids with a version suffix, new style (2103.12906v3) and old style
// (hep-th/9901001v2, math.GT/0309136v1).
var arxivVersioned = regexp.MustCompile(`^(\d{4}\.\d{4,5}|[a-z][a-z-]*(?:\.[A-Z]{2})?/\d{7})v\d+$`)

// CanonicalID trims an id, drops an "arXiv:" prefix and an arXiv version suffix, so every
// version of a paper is stored and looked up under one id.
func CanonicalID(id string) string {
	id = strings.TrimSpace(id)
	if len(id) > 6 && strings.EqualFold(id[:6], "arxiv:") {
		id = id[6:]
	}
	if m := arxivVersioned.FindStringSubmatch(id); m != nil {
		return m[1]
	}
	return id
}

// checkID validates a canonical id, recording a violation under field.
func checkID(v *ValidationError, field, id string) {
	switch {
	case id == "":
		v.add(field, "must not be empty")
	case len(id) > MaxIDBytes:
		v.add(field, "is %d bytes, more than the limit of %d", len(id), MaxIDBytes)
	case strings.IndexFunc(id, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		v.add(field, "must not contain white space or control characters")
	}
}

// toStorePaper validates a paper and converts it to its stored form, with the id canonical, text
// trimmed, the year derived from the date when missing, and the lexical vector computed.
func toStorePaper(v *ValidationError, field string, in *recommenderv1.Paper) store.Paper {
	if in == nil {
		v.add(field, "must be set")
		return store.Paper{}
	}
	p := store.Paper{
		ID:         CanonicalID(in.GetId()),
		Title:      strings.TrimSpace(in.GetTitle()),
		Abstract:   strings.TrimSpace(in.GetAbstract()),
		Year:       in.GetYear(),
		Date:       strings.TrimSpace(in.GetDate()),
		Authors:    cleanList(v, field+".authors", in.GetAuthors(), MaxAuthors),
		Categories: cleanList(v, field+".categories", in.GetCategories(), MaxCategories),
		Topics:     cleanList(v, field+".topics", in.GetTopics(), MaxCategories),
	}
	checkID(v, field+".id", p.ID)
	if p.Title == "" && p.Abstract == "" {
		v.add(field+".title", "title and abstract are both empty")
	}
	if n := utf8.RuneCountInString(p.Title); n > MaxTitleChars {
		v.add(field+".title", "is %d characters, more than the limit of %d", n, MaxTitleChars)
	}
	if n := utf8.RuneCountInString(p.Abstract); n > MaxAbstractChars {
		v.add(field+".abstract", "is %d characters, more than the limit of %d", n, MaxAbstractChars)
	}
	if p.Date != "" {
		d, err := time.Parse(time.DateOnly, p.Date)
		if err != nil {
			v.add(field+".date", "must be YYYY-MM-DD, got %q", p.Date)
		} else if p.Year == 0 {
			p.Year = int32(d.Year())
		}
	}
	if p.Year != 0 && (p.Year < 1000 || p.Year > 9999) {
		v.add(field+".year", "must be 0 (unknown) or a four-digit year, got %d", p.Year)
	}
	p.Lexical = lexical.Document(p.Title, p.Abstract)
	return p
}

// cleanList trims entries and drops empty ones, checking the count and entry lengths.
func cleanList(v *ValidationError, field string, in []string, maxLen int) []string {
	if len(in) > maxLen {
		v.add(field, "has %d entries, more than the limit of %d", len(in), maxLen)
		return nil
	}
	var out []string
	for i, s := range in {
		s = strings.Join(strings.Fields(s), " ")
		if s == "" {
			continue
		}
		if utf8.RuneCountInString(s) > MaxNameChars {
			v.add(fmt.Sprintf("%s[%d]", field, i), "is longer than %d characters", MaxNameChars)
			continue
		}
		out = append(out, s)
	}
	return out
}

// toProtoPaper converts a stored paper for a response.
func toProtoPaper(p *store.Paper) *recommenderv1.Paper {
	return &recommenderv1.Paper{
		Id:         p.ID,
		Title:      p.Title,
		Abstract:   p.Abstract,
		Authors:    p.Authors,
		Categories: p.Categories,
		Year:       p.Year,
		Date:       p.Date,
		Topics:     p.Topics,
	}
}

// recommendRequest is a validated RecommendRequest.
type recommendRequest struct {
	query      string
	positive   []string
	negative   []string
	candidates []string // nil: the whole corpus
	filter     store.Filter
	pageSize   int
	offset     int
	mode       recommenderv1.RetrievalMode
	pageToken  pageToken
	diversity  float64
	halfLife   time.Duration
	explain    bool
	exact      bool
}

func parseRecommend(req *recommenderv1.RecommendRequest) (*recommendRequest, error) {
	v := &ValidationError{}
	r := &recommendRequest{mode: req.GetMode()}

	if q := req.GetQuery(); q != "" {
		r.query = strings.TrimSpace(q)
		switch n := utf8.RuneCountInString(q); {
		case r.query == "":
			v.add("query", "is blank: send text or leave it empty")
		case n > MaxQueryChars:
			v.add("query", "is %d characters, more than the limit of %d", n, MaxQueryChars)
		}
	}
	r.positive = seedIDs(v, "positive_paper_ids", req.GetPositivePaperIds())
	r.negative = seedIDs(v, "negative_paper_ids", req.GetNegativePaperIds())
	if req.GetQuery() == "" && len(req.GetPositivePaperIds()) == 0 {
		v.add("query", "either query or positive_paper_ids is required")
	}
	if n := len(r.positive) + len(r.negative); n > MaxSeeds {
		v.add("positive_paper_ids", "%d seed papers, more than the limit of %d", n, MaxSeeds)
	}
	for _, id := range r.negative {
		if slices.Contains(r.positive, id) {
			v.add("negative_paper_ids", "paper %s is also a positive seed", id)
		}
	}

	f := req.GetFilter()
	r.filter = store.Filter{MinYear: f.GetMinYear(), MaxYear: f.GetMaxYear(),
		Categories: f.GetCategories(), Authors: f.GetAuthors()}
	if r.filter.MinYear < 0 {
		v.add("filter.min_year", "must not be negative")
	}
	if r.filter.MaxYear < 0 {
		v.add("filter.max_year", "must not be negative")
	}
	if r.filter.MinYear != 0 && r.filter.MaxYear != 0 && r.filter.MinYear > r.filter.MaxYear {
		v.add("filter.min_year", "%d is after max_year %d", r.filter.MinYear, r.filter.MaxYear)
	}
	for _, id := range f.GetExcludePaperIds() {
		r.filter.ExcludeIDs = append(r.filter.ExcludeIDs, CanonicalID(id))
	}
	// Seeds never recommend themselves, and negative seeds are never wanted.
	r.filter.ExcludeIDs = append(r.filter.ExcludeIDs, r.positive...)
	r.filter.ExcludeIDs = append(r.filter.ExcludeIDs, r.negative...)

	switch ps := req.GetPageSize(); {
	case ps < 0:
		v.add("page_size", "must not be negative")
	case ps == 0:
		r.pageSize = DefaultPageSize
	default:
		r.pageSize = min(int(ps), MaxPageSize)
	}
	if _, ok := recommenderv1.RetrievalMode_name[int32(r.mode)]; !ok {
		v.add("mode", "unknown retrieval mode %d", r.mode)
	}

	if n := len(req.GetCandidatePaperIds()); n > MaxCandidates {
		v.add("candidate_paper_ids", "%d candidates, more than the limit of %d", n, MaxCandidates)
	} else if n > 0 {
		r.candidates = seedIDs(v, "candidate_paper_ids", req.GetCandidatePaperIds())
	}
	switch d := float64(req.GetDiversity()); {
	case math.IsNaN(d) || d < 0 || d > 1:
		v.add("diversity", "must be between 0 and 1, got %v", d)
	default:
		r.diversity = d
	}
	switch h := float64(req.GetRecencyHalfLifeDays()); {
	case math.IsNaN(h) || math.IsInf(h, 0) || h < 0:
		v.add("recency_half_life_days", "must be 0 (off) or a positive number of days, got %v", h)
	default:
		r.halfLife = time.Duration(h * float64(24*time.Hour))
	}
	r.explain, r.exact = req.GetExplain(), req.GetExact()

	r.pageToken = newPageToken(req)
	if t := req.GetPageToken(); t != "" {
		off, err := r.pageToken.decode(t)
		if err != nil {
			v.add("page_token", "%v", err)
		}
		r.offset = off
	}
	return r, v.errOrNil()
}

// seedIDs canonicalises and de-duplicates seed ids.
func seedIDs(v *ValidationError, field string, ids []string) []string {
	var out []string
	for i, raw := range ids {
		id := CanonicalID(raw)
		checkID(v, fmt.Sprintf("%s[%d]", field, i), id)
		if id != "" && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

package server

import (
	"fmt"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/apierr"
	"github.com/paperrec/recommender/internal/recommend"
	"github.com/paperrec/recommender/internal/store"
)

// Limits of the API, documented in the .proto.
const (
	MaxIDBytes       = 128
	MaxTitleChars    = 1_000
	MaxAbstractChars = 20_000
	MaxQueryChars    = 10_000
	MaxSeeds         = recommend.MaxSeeds
	MaxSeedList      = 100 // authors or categories of an inline seed
	MaxCandidates    = 1_000
	MaxExcluded      = 1_000 // filter.exclude_paper_ids
	MaxFilterAuthors = 100
	MaxBatch         = 1_000
	MaxAuthors       = 20_000 // physics collaborations list thousands
	MaxCategories    = 100
	MaxNameChars     = 300
	// Recency's half-life: shorter than a day is finer than papers' dates, longer than a
	// century changes no ranking (and past 292 years overflows a time.Duration).
	MinHalfLifeDays = 1
	MaxHalfLifeDays = 36_525
	DefaultPageSize = 10
	MaxPageSize     = 100
	// MaxResults bounds how deep paging goes (see recommend.MaxResults).
	MaxResults = recommend.MaxResults
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
func checkID(v *apierr.ValidationError, field, id string) {
	switch {
	case id == "":
		v.Add(field, "must not be empty")
	case len(id) > MaxIDBytes:
		v.Add(field, "is %d bytes, more than the limit of %d", len(id), MaxIDBytes)
	case !utf8.ValidString(id):
		v.Add(field, "is not valid UTF-8")
	default:
		if i := strings.IndexFunc(id, unseen); i >= 0 {
			r, _ := utf8.DecodeRuneInString(id[i:])
			v.Add(field, "holds %U at byte %d: white space, control, format (invisible or bidi) and private-use characters are not allowed in ids", r, i)
		}
	}
}

// unseen reports characters an id must not hold: what does not show, or shows as something
// else (two ids that print alike must be one id): white space, controls, format characters
// (zero-width, bidi overrides and isolates, soft hyphen, BOM), private use, unpaired surrogates,
// the replacement character, and the invisible letters and marks Unicode lists as default
// ignorable.
func unseen(r rune) bool {
	return unicode.IsSpace(r) || unicode.In(r, unicode.Cc, unicode.Cf, unicode.Co, unicode.Cs) ||
		r == utf8.RuneError || unicode.Is(invisible, r)
}

// invisible holds the default-ignorable code points outside category Cf (Unicode's
// DerivedCoreProperties): the combining grapheme joiner, Hangul fillers, Khmer inherent vowels
// and the variation selectors.
var invisible = &unicode.RangeTable{
	R16: []unicode.Range16{
		{Lo: 0x034f, Hi: 0x034f, Stride: 1},
		{Lo: 0x115f, Hi: 0x1160, Stride: 1},
		{Lo: 0x17b4, Hi: 0x17b5, Stride: 1},
		{Lo: 0x180b, Hi: 0x180f, Stride: 1},
		{Lo: 0x3164, Hi: 0x3164, Stride: 1},
		{Lo: 0xfe00, Hi: 0xfe0f, Stride: 1},
		{Lo: 0xffa0, Hi: 0xffa0, Stride: 1},
	},
	R32: []unicode.Range32{
		{Lo: 0xe0100, Hi: 0xe01ef, Stride: 1},
	},
}

// toStorePaper validates a paper and converts it to its stored form, with the id canonical, text
// trimmed and the year derived from the date when missing (the application analyses it).
func toStorePaper(v *apierr.ValidationError, field string, in *recommenderv1.Paper) store.Paper {
	if in == nil {
		v.Add(field, "must be set")
		return store.Paper{}
	}
	p := store.Paper{
		ID:         CanonicalID(in.GetId()),
		Title:      strings.TrimSpace(in.GetTitle()),
		Abstract:   strings.TrimSpace(in.GetAbstract()),
		Year:       in.GetYear(),
		Date:       strings.TrimSpace(in.GetDate()),
		URL:        strings.TrimSpace(in.GetUrl()),
		Authors:    cleanList(v, field+".authors", in.GetAuthors(), MaxAuthors),
		Categories: cleanList(v, field+".categories", in.GetCategories(), MaxCategories),
		Topics:     cleanList(v, field+".topics", in.GetTopics(), MaxCategories),
	}
	checkID(v, field+".id", p.ID)
	if p.Title == "" && p.Abstract == "" {
		v.Add(field+".title", "title and abstract are both empty")
	}
	if n := utf8.RuneCountInString(p.Title); n > MaxTitleChars {
		v.Add(field+".title", "is %d characters, more than the limit of %d", n, MaxTitleChars)
	}
	if n := utf8.RuneCountInString(p.Abstract); n > MaxAbstractChars {
		v.Add(field+".abstract", "is %d characters, more than the limit of %d", n, MaxAbstractChars)
	}
	if p.Date != "" {
		d, err := time.Parse(time.DateOnly, p.Date)
		if err != nil {
			v.Add(field+".date", "must be YYYY-MM-DD, got %q", p.Date)
		} else if p.Year == 0 {
			p.Year = int32(d.Year())
		}
	}
	if p.Year != 0 && (p.Year < 1000 || p.Year > 9999) {
		v.Add(field+".year", "must be 0 (unknown) or a four-digit year, got %d", p.Year)
	}
	checkURL(v, field+".url", p.URL)
	return p
}

// cleanList trims entries and drops empty ones, checking the count and entry lengths.
func cleanList(v *apierr.ValidationError, field string, in []string, maxLen int) []string {
	if len(in) > maxLen {
		v.Add(field, "has %d entries, more than the limit of %d", len(in), maxLen)
		return nil
	}
	var out []string
	for i, s := range in {
		s = strings.Join(strings.Fields(s), " ")
		if s == "" {
			continue
		}
		if utf8.RuneCountInString(s) > MaxNameChars {
			v.Add(fmt.Sprintf("%s[%d]", field, i), "is longer than %d characters", MaxNameChars)
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
		Url:        p.URL,
	}
}

// MaxURLBytes bounds a paper's url.
const MaxURLBytes = 2048

// checkURL accepts an empty url or an absolute http(s) one with a host: the page makes it a
// link, so a javascript: or data: URL must never get through.
func checkURL(v *apierr.ValidationError, field, s string) {
	if s == "" {
		return
	}
	if len(s) > MaxURLBytes {
		v.Add(field, "is %d bytes, more than the limit of %d", len(s), MaxURLBytes)
		return
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.ContainsAny(s, " \t\n") {
		v.Add(field, "must be an absolute http or https URL, got %q", s)
	}
}

// recommendRequest is a validated RecommendRequest: the pipeline's request and the page token
// that fingerprints it.
type recommendRequest struct {
	recommend.Request
	pageToken pageToken
}

// parseRecommend validates a request; ranking names the service's ranking (recommend.Engine's
// Ranking), which page tokens carry.
func parseRecommend(req *recommenderv1.RecommendRequest, ranking string) (*recommendRequest, error) {
	v := &apierr.ValidationError{}
	r := &recommendRequest{}

	if q := req.GetQuery(); q != "" {
		r.Text = strings.TrimSpace(q)
		switch n := utf8.RuneCountInString(q); {
		case r.Text == "":
			v.Add("query", "is blank: send text or leave it empty")
		case n > MaxQueryChars:
			v.Add("query", "is %d characters, more than the limit of %d", n, MaxQueryChars)
		}
	}
	r.Positive = idList(v, "positive_paper_ids", req.GetPositivePaperIds(), MaxSeeds)
	r.Negative = idList(v, "negative_paper_ids", req.GetNegativePaperIds(), MaxSeeds)
	r.InlinePositive = inlineSeeds(v, "positive_papers", req.GetPositivePapers())
	r.InlineNegative = inlineSeeds(v, "negative_papers", req.GetNegativePapers())
	if req.GetQuery() == "" && len(req.GetPositivePaperIds()) == 0 && len(req.GetPositivePapers()) == 0 {
		v.Add("query", "one of query, positive_paper_ids or positive_papers is required")
	}
	if n := len(r.Positive) + len(r.Negative) + len(r.InlinePositive) + len(r.InlineNegative); n > MaxSeeds {
		v.Add("positive_paper_ids", "%d seed papers, more than the limit of %d", n, MaxSeeds)
	}
	for _, id := range r.Negative {
		if slices.Contains(r.Positive, id) {
			v.Add("negative_paper_ids", "paper %s is also a positive seed", id)
		}
	}

	f := req.GetFilter()
	r.Filter = store.Filter{MinYear: f.GetMinYear(), MaxYear: f.GetMaxYear(),
		Categories: f.GetCategories(), Authors: f.GetAuthors()}
	if r.Filter.MinYear < 0 {
		v.Add("filter.min_year", "must not be negative")
	}
	if r.Filter.MaxYear < 0 {
		v.Add("filter.max_year", "must not be negative")
	}
	if r.Filter.MinYear != 0 && r.Filter.MaxYear != 0 && r.Filter.MinYear > r.Filter.MaxYear {
		v.Add("filter.min_year", "%d is after max_year %d", r.Filter.MinYear, r.Filter.MaxYear)
	}
	r.Filter.ExcludeIDs = idList(v, "filter.exclude_paper_ids", f.GetExcludePaperIds(), MaxExcluded)
	if n := len(f.GetCategories()); n > MaxCategories {
		v.Add("filter.categories", "has %d entries, more than the limit of %d", n, MaxCategories)
	}
	if n := len(f.GetAuthors()); n > MaxFilterAuthors {
		v.Add("filter.authors", "has %d entries, more than the limit of %d", n, MaxFilterAuthors)
	}
	// Seeds never recommend themselves, and negative seeds are never wanted.
	r.Filter.ExcludeIDs = append(r.Filter.ExcludeIDs, r.Positive...)
	r.Filter.ExcludeIDs = append(r.Filter.ExcludeIDs, r.Negative...)

	switch ps := req.GetPageSize(); {
	case ps < 0:
		v.Add("page_size", "must not be negative")
	case ps == 0:
		r.PageSize = DefaultPageSize
	default:
		r.PageSize = min(int(ps), MaxPageSize)
	}
	var ok bool
	if r.Mode, ok = modes[req.GetMode()]; !ok {
		v.Add("mode", "unknown retrieval mode %d", req.GetMode())
	}
	if r.Strategy, ok = strategies[req.GetStrategy()]; !ok {
		v.Add("strategy", "unknown seed strategy %d", req.GetStrategy())
	}

	if len(req.GetCandidatePaperIds()) > 0 {
		r.Candidates = idList(v, "candidate_paper_ids", req.GetCandidatePaperIds(), MaxCandidates)
	}
	switch d := float64(req.GetDiversity()); {
	case math.IsNaN(d) || d < 0 || d > 1:
		v.Add("diversity", "must be between 0 and 1, got %v", d)
	default:
		r.Diversity = d
	}
	switch h := float64(req.GetRecencyHalfLifeDays()); {
	case h != 0 && !(h >= MinHalfLifeDays && h <= MaxHalfLifeDays):
		v.Add("recency_half_life_days", "must be 0 (off) or %v to %v days, got %v", MinHalfLifeDays, MaxHalfLifeDays, h)
	default:
		r.HalfLife = time.Duration(h * float64(24*time.Hour))
	}
	r.Explain, r.Exact = req.GetExplain(), req.GetExact()

	r.pageToken = newPageToken(req, ranking)
	if t := req.GetPageToken(); t != "" {
		off, err := r.pageToken.decode(t)
		if err != nil {
			v.Add("page_token", "%v", err)
		}
		r.Offset = off
	}
	return r, v.ErrOrNil()
}

// inlineSeeds validates seeds given by their text.
func inlineSeeds(v *apierr.ValidationError, field string, in []*recommenderv1.SeedPaper) []recommend.InlineSeed {
	out := make([]recommend.InlineSeed, 0, len(in))
	for i, s := range in {
		f := fmt.Sprintf("%s[%d]", field, i)
		seed := recommend.InlineSeed{Title: strings.TrimSpace(s.GetTitle()), Abstract: strings.TrimSpace(s.GetAbstract()),
			Authors: cleanList(v, f+".authors", s.GetAuthors(), MaxSeedList), Categories: cleanList(v, f+".categories", s.GetCategories(), MaxSeedList),
			Year: s.GetYear()}
		if n := utf8.RuneCountInString(seed.Title); n > MaxTitleChars {
			v.Add(f+".title", "is %d characters, more than the limit of %d", n, MaxTitleChars)
		}
		if n := utf8.RuneCountInString(seed.Abstract); n > MaxQueryChars {
			v.Add(f+".abstract", "is %d characters, more than the limit of %d", n, MaxQueryChars)
		}
		if !seed.HasWords() {
			v.Add(f, "has no searchable words in its title or abstract")
		}
		if seed.Year != 0 && (seed.Year < 1000 || seed.Year > 9999) {
			v.Add(f+".year", "must be 0 (unknown) or a four-digit year, got %d", seed.Year)
		}
		out = append(out, seed)
	}
	return out
}

// idList canonicalises and de-duplicates a list of at most limit ids, in one pass; a longer
// list is one violation, and none of it is looked at.
func idList(v *apierr.ValidationError, field string, ids []string, limit int) []string {
	if len(ids) > limit {
		v.Add(field, "has %d ids, more than the limit of %d", len(ids), limit)
		return nil
	}
	out := make([]string, 0, len(ids))
	seen := make(map[string]bool, len(ids))
	for i, raw := range ids {
		id := CanonicalID(raw)
		checkID(v, fmt.Sprintf("%s[%d]", field, i), id)
		if id != "" && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

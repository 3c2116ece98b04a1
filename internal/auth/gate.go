package auth

import (
	"context"
	"fmt"
	"time"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/apierr"
)

// MethodScopes is the scope each RPC of the API needs; methods not listed (health, reflection)
// are open.
var MethodScopes = map[string]Scope{
	recommenderv1.RecommenderService_Recommend_FullMethodName:            Read,
	recommenderv1.RecommenderService_GetPaper_FullMethodName:             Read,
	recommenderv1.RecommenderService_GetIndexInfo_FullMethodName:         Read,
	recommenderv1.RecommenderService_UpsertPapers_FullMethodName:         Write,
	recommenderv1.RecommenderService_DeletePapers_FullMethodName:         Write,
	recommenderv1.RecommenderService_IngestPapers_FullMethodName:         Write,
	recommenderv1.RecommenderService_CreateFeed_FullMethodName:           Write,
	recommenderv1.RecommenderService_DeleteFeed_FullMethodName:           Write,
	recommenderv1.RecommenderService_GetFeed_FullMethodName:              Read,
	recommenderv1.RecommenderService_ListFeeds_FullMethodName:            Read,
	recommenderv1.RecommenderService_StreamFeed_FullMethodName:           Read,
	recommenderv1.RecommenderService_RetireVectorSet_FullMethodName:      Write,
	recommenderv1.RecommenderService_SimilarPapers_FullMethodName:        Read,
	recommenderv1.RecommenderService_ExportNeighbourLists_FullMethodName: Read,
}

// Gate admits calls: it authenticates the caller's key (when the API has keys), checks that the
// key has the scope the method needs (MethodScopes), and charges the caller's rate.
type Gate struct {
	keys    *Keys    // nil: every caller may read and write
	limiter *Limiter // nil: unlimited
}

// NewGate admits with keys (nil: no authentication), each caller limited to perSecond calls a
// second (0: unlimited) in bursts of burst, unless its key has a rate of its own.
func NewGate(keys *Keys, perSecond float64, burst int) (*Gate, error) {
	if !(perSecond >= 0 && perSecond <= MaxRate) || burst < 1 || burst > MaxRate {
		return nil, fmt.Errorf("rate limit must be 0 (off) to %g requests a second, with a burst of 1 to %g; got %v and %d",
			float64(MaxRate), float64(MaxRate), perSecond, burst)
	}
	g := &Gate{keys: keys}
	if perSecond > 0 || (keys != nil && keys.HasRates()) {
		g.limiter = NewLimiter(perSecond, burst)
	}
	return g, nil
}

// Authenticates reports whether callers must show a key.
func (g *Gate) Authenticates() bool { return g.keys != nil }

// Admit authenticates a call to a guarded method and checks its scope and rate: it returns the
// caller's name (its key's, else its address), and for a call over the caller's rate how long
// until the rate allows one. A refusal is an *apierr.AccessError.
func (g *Gate) Admit(ctx context.Context, method string) (caller string, overRate time.Duration, err error) {
	need, guarded := MethodScopes[method]
	if !guarded {
		return "", 0, nil
	}
	var p Principal
	if g.keys != nil {
		if p, err = g.keys.Authenticate(ctx); err != nil {
			return "", 0, &apierr.AccessError{Message: err.Error()}
		}
		if p.Scope < need {
			return p.ID, 0, &apierr.AccessError{Denied: true, KeyID: p.ID, Scope: p.Scope.String(), Required: need.String(),
				Message: fmt.Sprintf("API key %s has %s scope; %s needs %s", p.ID, p.Scope, method, need)}
		}
	}
	caller = Caller(ctx, p)
	if g.limiter != nil {
		if ok, retry := g.limiter.Allow(caller, p.Rate); !ok {
			overRate = max(retry, time.Millisecond)
		}
	}
	return caller, overRate, nil
}

package lexical

import (
	"maps"
	"slices"
)

// stopWords are English function words plus boilerplate that appears in most abstracts. The
// boilerplate is listed because it carries no topic: idf alone would down-weight it, but dropping
// it keeps posting lists and seed queries short.
var stopWords = toSet(`
a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing down during each either else etc few for
from further had has have having he her here hers herself him himself his how however i if in into
is it its itself just let may me might more most much must my myself neither no nor not of off on
once only or other our ours ourselves out over own per same shall she should so some such than
that the their theirs them themselves then there these they this those through thus to too under
until up upon us very via was we were what when where whether which while who whom whose why will
with within without would yet you your yours yourself yourselves
abstract paper article propose proposed present presents presented show shows shown study
studies work works result results approach approaches method methods novel new based using use
used uses well also furthermore moreover respectively several various different many one two three
first second however existing recent recently demonstrate demonstrates significantly`)

func toSet(words string) map[string]struct{} {
	set := map[string]struct{}{}
	start := -1
	for i := 0; i <= len(words); i++ {
		if i < len(words) && words[i] > ' ' {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			set[words[start:i]] = struct{}{}
			start = -1
		}
	}
	return set
}

// StopWords returns the words analysis drops, sorted: for a peer benchmark to analyse alike.
func StopWords() []string { return slices.Sorted(maps.Keys(stopWords)) }

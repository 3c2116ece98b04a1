package rank

// RRFK is the reciprocal rank fusion constant from Cormack et al. (2009), also Qdrant's default:
// it damps the weight of the very top ranks so that one list cannot dominate.
const RRFK = 60

// Scored is an id with a score.
type Scored struct {
	ID    string
	Score float32
}

// Better orders Scored items: higher score first, then ascending id.
func Better(a, b Scored) bool {
	if a.Score != b.Score {
		return a.Score > b.Score
	}
	return a.ID < b.ID
}

// FuseRRF merges ranked lists (each best first) by reciprocal rank fusion: an id scores
// sum(1 / (RRFK + rank)) over the lists it appears in, rank counted from 1. It returns the best
// limit ids.
func FuseRRF(limit int, lists ...[]Scored) []Scored {
	n := 0
	for _, list := range lists {
		n += len(list)
	}
	fused := make(map[string]float32, n)
	for _, list := range lists {
		for i, s := range list {
			fused[s.ID] += 1 / float32(RRFK+i+1)
		}
	}
	top := NewTopK(limit, Better)
	for id, score := range fused {
		top.Push(Scored{ID: id, Score: score})
	}
	return top.Sorted()
}

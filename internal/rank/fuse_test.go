package rank_test

import (
	"slices"
	"testing"

	"github.com/paperrec/recommender/internal/rank"
	"github.com/paperrec/recommender/internal/store"
)

func TestFuse(t *testing.T) {
	a := []store.Scored{{ID: "x"}, {ID: "y"}, {ID: "z"}}
	b := []store.Scored{{ID: "y"}, {ID: "w"}}
	f := rank.Fusion{K: 60, LexicalWeight: 1, DenseWeight: 1}
	got := f.Fuse(3, a, b)
	ids := []string{got[0].ID, got[1].ID, got[2].ID}
	// y is ranked in both lists; x and w are first/second in one list each.
	if !slices.Equal(ids, []string{"y", "x", "w"}) {
		t.Fatalf("fused order = %v, want [y x w]", ids)
	}
	// Qdrant's formula: rank r (from 1) scores 1/(r + K - 1).
	if want := float32(1.0/61 + 1.0/60); got[0].Score != want {
		t.Fatalf("y score = %v, want %v", got[0].Score, want)
	}
	// Weight 3 on the dense list compresses its ranks: w (its 2nd) now beats x (lexical 1st),
	// and the dense list's 3rd would count as the lexical list's 1st.
	f.DenseWeight = 3
	if got := f.Fuse(3, a, b); got[1].ID != "w" {
		t.Fatalf("weighted order = %v, want w second", got)
	}
	if f.PositionScore(3, 3) != f.PositionScore(1, 1) {
		t.Fatal("rank 3 at weight 3 must score as rank 1 at weight 1")
	}
	if f.PositionScore(1, 0) != 0 {
		t.Fatal("a list of weight 0 must not count")
	}
}

func TestFuseScores(t *testing.T) {
	lex := []store.Scored{{ID: "a", Score: 9}, {ID: "b", Score: 5}, {ID: "c", Score: 1}}
	dense := []store.Scored{{ID: "c", Score: 0.9}, {ID: "b", Score: 0.8}, {ID: "a", Score: 0.1}}
	// Min-max: a = 1 + 0, b = 0.5 + 0.875, c = 0 + 1: b first, then a and c tied on 1.
	got := rank.Fusion{Method: rank.FuseMinMax, LexicalWeight: 1, DenseWeight: 1}.Fuse(3, lex, dense)
	if ids := []string{got[0].ID, got[1].ID, got[2].ID}; !slices.Equal(ids, []string{"b", "a", "c"}) || got[0].Score != 1.375 {
		t.Fatalf("min-max fused %v", got)
	}
	// Weight 10 on dense makes c (dense's best) first: 10 against b's 0.5 + 8.75.
	got = rank.Fusion{Method: rank.FuseMinMax, LexicalWeight: 1, DenseWeight: 10}.Fuse(1, lex, dense)
	if got[0].ID != "c" {
		t.Fatalf("dense-weighted min-max fused %v", got)
	}
	// DBSF maps each list within mean ± 3 sd into [0, 1]: the sum stays within the weights.
	got = rank.Fusion{Method: rank.FuseDBSF, LexicalWeight: 1, DenseWeight: 1}.Fuse(3, lex, dense)
	for _, s := range got {
		if s.Score < 0 || s.Score > 2 {
			t.Fatalf("DBSF score %v outside [0, 2]", s)
		}
	}
	if got[0].ID != "b" {
		t.Fatalf("DBSF fused %v, want b (second in both) first", got)
	}
	// Each entry keeps its score in each list; 0 where a list lacks it.
	got = rank.DefaultFusion.Fuse(3, lex[:2], dense[:1])
	want := map[string][2]float32{"a": {9, 0}, "b": {5, 0}, "c": {0, 0.9}}
	for _, f := range got {
		if w := want[f.ID]; f.Lexical != w[0] || f.Dense != w[1] {
			t.Fatalf("%s: signal scores %v and %v, want %v", f.ID, f.Lexical, f.Dense, w)
		}
	}
	if one := rank.OneSignal(dense, false); one[0].Dense != 0.9 || one[0].Lexical != 0 || one[0].Score != 0.9 {
		t.Fatalf("one signal: %+v", one[0])
	}
}

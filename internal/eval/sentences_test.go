package eval

import (
	"slices"
	"strings"
	"testing"
)

func TestSentences(t *testing.T) {
	got := Sentences("A Title", "We study graphs, e.g. trees, as in Smith et al. [3]. Results follow. "+
		"J. Doe showed 3.5 times more. (This holds.) Is it new? Yes: 2 proofs are given.")
	want := []string{"A Title",
		"We study graphs, e.g. trees, as in Smith et al. [3]. Results follow.",
		"J. Doe showed 3.5 times more.",
		"(This holds.) Is it new?",
		"Yes: 2 proofs are given."}
	if !slices.Equal(got, want) {
		t.Fatalf("Sentences:\n got %q\nwant %q", got, want)
	}
	if got := Sentences("", "No title here, and one sentence without its period"); len(got) != 1 {
		t.Errorf("no title: %q", got)
	}
	long := strings.Repeat("This sentence is long enough to stand. ", 40)
	if got := Sentences("T", long); len(got) != MaxSentences {
		t.Errorf("%d sentences, want at most %d", len(got), MaxSentences)
	}
}

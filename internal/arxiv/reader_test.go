package arxiv_test

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/arxiv"
)

const snapshot = `{"id":"0704.0001","submitter":"P. Nadolsky","authors":"C. Bal\\'azs, E. L. Berger","title":"Calculation of prompt\n  diphoton production","comments":"37 pages","categories":"hep-ph cs.LG","abstract":"  A fully differential\n calculation.\n","update_date":"2008-11-13","versions":[{"version":"v1","created":"Mon, 2 Apr 2007 19:18:42 GMT"}],"authors_parsed":[["Balázs","C.",""],["Berger","E. L.",""]]}
{"id": "1911.03165", "title": "Sample", "authors": "Yilei Shi, Qingyu Li and Xiao Xiang Zhu", "abstract": "Text.", "year": 2019, "topics": ["Semantic_Segmentation"]}

{"id": "broken", "title": 
{"id": 12345, "title": "Numeric id", "categories": ["cs.IR", "cs.DB"], "update_date": "2020-01-02"}
`

func readAll(t *testing.T, in []byte) ([]*recommenderv1.Paper, []int) {
	t.Helper()
	r, err := arxiv.NewReader(bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	var papers []*recommenderv1.Paper
	var badLines []int
	for {
		p, err := r.Next()
		if errors.Is(err, io.EOF) {
			return papers, badLines
		}
		var le *arxiv.LineError
		if errors.As(err, &le) {
			badLines = append(badLines, le.Line)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		papers = append(papers, p)
	}
}

func TestReaderFormats(t *testing.T) {
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	_, _ = w.Write([]byte(snapshot))
	_ = w.Close()
	for name, in := range map[string][]byte{"plain": []byte(snapshot), "gzip": gz.Bytes()} {
		t.Run(name, func(t *testing.T) {
			papers, bad := readAll(t, in)
			if !slices.Equal(bad, []int{4}) {
				t.Fatalf("malformed lines %v, want [4]", bad)
			}
			if len(papers) != 3 {
				t.Fatalf("%d papers, want 3", len(papers))
			}
			p := papers[0]
			if p.GetTitle() != "Calculation of prompt diphoton production" || p.GetAbstract() != "A fully differential calculation." {
				t.Errorf("white space not folded: %q / %q", p.GetTitle(), p.GetAbstract())
			}
			if !slices.Equal(p.GetAuthors(), []string{"C. Balázs", "E. L. Berger"}) {
				t.Errorf("authors_parsed: %q", p.GetAuthors())
			}
			if !slices.Equal(p.GetCategories(), []string{"hep-ph", "cs.LG"}) || p.GetDate() != "2007-04-02" {
				t.Errorf("categories %q date %q", p.GetCategories(), p.GetDate())
			}
			s := papers[1]
			if !slices.Equal(s.GetAuthors(), []string{"Yilei Shi", "Qingyu Li", "Xiao Xiang Zhu"}) || s.GetYear() != 2019 ||
				!slices.Equal(s.GetTopics(), []string{"Semantic_Segmentation"}) {
				t.Errorf("sample line: %v", s)
			}
			n := papers[2]
			if n.GetId() != "12345" || !slices.Equal(n.GetCategories(), []string{"cs.IR", "cs.DB"}) || n.GetDate() != "2020-01-02" {
				t.Errorf("numeric id line: %v", n)
			}
		})
	}
}

func TestReaderLongLines(t *testing.T) {
	long := `{"id":"x","title":"T","abstract":"` + strings.Repeat("word ", 400_000) + `"}` + "\n"
	papers, bad := readAll(t, []byte(long))
	if len(bad) != 0 || len(papers) != 1 || len(papers[0].GetAbstract()) != 5*400_000-1 {
		t.Fatalf("long line: %d papers, bad %v", len(papers), bad)
	}
}

// Consumed follows the lines read, not the reader's megabyte buffers, in plain and gzipped
// input alike: half the papers read is about half the file.
func TestReaderConsumed(t *testing.T) {
	var plain bytes.Buffer
	const n = 20000
	for i := range n {
		fmt.Fprintf(&plain, `{"id":"p-%d","title":"Paper %d","abstract":"words %d %d %d"}`+"\n", i, i*7, i*13, i*31, i%97)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(plain.Bytes())
	zw.Close()
	for name, in := range map[string][]byte{"plain": plain.Bytes(), "gzip": gz.Bytes()} {
		r, err := arxiv.NewReader(bytes.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		for range n / 2 {
			if _, err := r.Next(); err != nil {
				t.Fatal(err)
			}
		}
		if share := float64(r.Consumed()) / float64(len(in)); share < 0.45 || share > 0.55 {
			t.Errorf("%s: half the lines read, Consumed %d of %d bytes (%.2f)", name, r.Consumed(), len(in), share)
		}
	}
}

package demo

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/arxiv"
)

//go:embed papers.jsonl
var papersJSONL []byte

// Papers returns the demo corpus.
func Papers() ([]*recommenderv1.Paper, error) {
	r, err := arxiv.NewReader(bytes.NewReader(papersJSONL))
	if err != nil {
		return nil, err
	}
	var out []*recommenderv1.Paper
	for {
		p, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("demo corpus: %w", err)
		}
		out = append(out, p)
	}
}

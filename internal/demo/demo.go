package demo

import (
	"bytes"
	_ "embed"
	"fmt"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/arxiv"
)

//go:embed papers.jsonl
var papersJSONL []byte

// Papers returns the demo corpus.
func Papers() ([]*recommenderv1.Paper, error) {
	papers, err := arxiv.ReadAll(bytes.NewReader(papersJSONL))
	if err != nil {
		return nil, fmt.Errorf("demo corpus: %w", err)
	}
	return papers, nil
}

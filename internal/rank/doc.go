// Package rank orders candidates: deterministic top-k selection, rank fusion, duplicate folding,
// recency, diversity (MMR) and the shared terms of explanations.
package rank

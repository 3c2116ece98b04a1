// Package rank orders candidates: deterministic top-k selection and rank fusion.
package rank

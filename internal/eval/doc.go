// Package eval measures recommendation quality through the gRPC API: NDCG on the CSFCube test
// collection and topic precision on the arXiv sample.
package eval

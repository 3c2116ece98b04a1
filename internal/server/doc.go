// Package server implements the RecommenderService gRPC API over a store: request validation,
// conversion to and from the pipeline (internal/recommend), paging tokens, the mapping of errors
// to gRPC status codes, and server wiring.
package server

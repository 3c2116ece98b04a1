// Package server implements the RecommenderService gRPC API over a store: request validation,
// query building, paging, the mapping of errors to gRPC status codes, and server wiring.
package server

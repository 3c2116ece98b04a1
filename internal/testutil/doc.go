// Package testutil starts real recommender gRPC servers on loopback for tests and benchmarks, and
// finds the shared data sets next to the repository.
package testutil

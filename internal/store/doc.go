// Package store defines the paper store: the interface every backend (embedded, Qdrant)
// implements, its shared types and its typed errors.
package store

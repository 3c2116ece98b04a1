// Package embedded is the default, zero-configuration paper store: in-process, durable on disk
// (bbolt), with an in-memory BM25 inverted index and exact dense search.
package embedded

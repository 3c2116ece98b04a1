// Package lexical turns paper text into sparse term vectors for BM25 retrieval: the signal that
// recommends when no embedding model is configured, and the lexical half of hybrid search.
package lexical

// Package arxiv reads paper metadata as JSON lines in the arXiv metadata snapshot format (plain or
// gzip-compressed) and converts each line to an API Paper.
package arxiv

// Package demo ships a small corpus of 48 fictional papers, written for this project, that
// `serve --demo` loads so a fresh clone has something to recommend from.
package demo

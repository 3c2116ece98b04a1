// Package auth authenticates API keys and rate-limits callers: keys carry a scope (read or
// write), are compared in constant time, and each key has its own token bucket.
package auth

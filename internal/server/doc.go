// Package server is the transport of the RecommenderService API: it decodes requests, validates
// their wire shape, calls the application (internal/app) and converts its answers, signs page
// tokens, and maps errors to gRPC status codes in one place (errors.go). It also wires the gRPC
// server: admission (a Gate such as auth.Gate), limits, health and graceful shutdown.
package server

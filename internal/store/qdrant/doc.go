// Package qdrant is the paper store for deployments past one machine: papers are points in a
// Qdrant collection, with a named dense vector, a sparse lexical vector and the fields as
// payload, so any number of stateless recommender replicas can share it.
package qdrant

// Package deploy holds the deployment files (Dockerfile, docker-compose.yml, Kubernetes
// manifests under k8s/, the Helm chart under helm/) and the tests that check them. It is a
// module of its own so that Helm's and Kubernetes' libraries, which only the tests use, stay
// out of the service's dependency graph (they would raise bbolt, the embedded store's engine).
package deploy

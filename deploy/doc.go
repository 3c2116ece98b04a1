// Package deploy holds the deployment files (Dockerfile, docker-compose.yml, Kubernetes
// manifests under k8s/) and the tests that parse them.
package deploy

#!/usr/bin/env bash
# Regenerates the protobuf/gRPC Go code in gen/ with the pinned local plugins (tools/go.mod),
# and the OpenAPI description in internal/httpapi/openapi.json.
set -euo pipefail
cd "$(dirname "$0")/.."
go tool -modfile=tools/go.mod buf lint
go tool -modfile=tools/go.mod buf generate
# The OpenAPI description of the HTTP/JSON API, from the descriptors with their comments.
image=$(mktemp)
trap 'rm -f "$image"' EXIT
go tool -modfile=tools/go.mod buf build --as-file-descriptor-set -o "$image"
go run ./internal/httpapi/openapigen "$image" > internal/httpapi/openapi.json

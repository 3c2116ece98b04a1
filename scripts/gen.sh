#!/usr/bin/env bash
# Regenerates the protobuf/gRPC Go code in gen/ and the TypeScript client in
# clients/typescript/src/gen (which the page bundles too)
# with the pinned local plugins (tools/go.mod, web/package.json), the OpenAPI description in
# internal/httpapi/openapi.json, and the page's bundle internal/httpapi/web/app.js.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x web/node_modules/.bin/protoc-gen-es ]; then
  echo "web/node_modules is missing: run (cd web && npm ci) first" >&2
  exit 1
fi
go tool -modfile=tools/go.mod buf lint
go tool -modfile=tools/go.mod buf generate
# The OpenAPI description of the HTTP/JSON API, from the descriptors with their comments.
image=$(mktemp)
trap 'rm -f "$image"' EXIT
go tool -modfile=tools/go.mod buf build --as-file-descriptor-set -o "$image"
go run ./internal/httpapi/openapigen "$image" > internal/httpapi/openapi.json
# The page with its generated client, bundled (esbuild, pinned in web/package.json).
(cd web && npm run --silent build)

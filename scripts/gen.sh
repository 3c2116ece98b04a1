#!/usr/bin/env bash
# Regenerates the protobuf/gRPC Go code in gen/ with the pinned local plugins (tools/go.mod).
set -euo pipefail
cd "$(dirname "$0")/.."
go tool -modfile=tools/go.mod buf lint
go tool -modfile=tools/go.mod buf generate

#!/usr/bin/env bash
# Builds what the kind suite loads, without a Docker daemon: the static release binaries and
# FROM scratch images of the operator and node installer for the cluster's architecture
# (scripts/dist.sh, buildah) and the test modules as OCI archives (image and
# Wasm artifact forms). Writes everything to OUT (default target/kind).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:-$ROOT/target/kind}
ARCH=${ARCH:-amd64}
bash "$ROOT/scripts/dist.sh" --arch "$ARCH" --tag "${TAG:-e2e}" "$OUT"
cargo run --locked --quiet -p wasmkube-e2e --bin wasmkube-fixtures -- "$OUT"

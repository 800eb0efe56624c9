#!/usr/bin/env bash
# The demo: builds the shim and the hello example, starts a private containerd with the
# wasmkube runtime registered, and runs hello through it. Everything it starts is stopped on
# exit or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
echo "==> cargo build --workspace (first build takes several minutes)"
cargo build --workspace --locked
exec target/debug/wasmkube-demo "$@"

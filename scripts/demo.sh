#!/usr/bin/env bash
# The demo: builds everything, starts a local registry and a private containerd with CRI, CNI
# and the wasmkube handler, pushes the examples (as an image and as a Wasm OCI artifact) and
# runs them as pods through CRI, the way a kubelet does; `--kind` runs the kind cluster flow
# instead. Everything it starts is stopped on exit or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
echo "==> cargo build --workspace (first build takes several minutes)"
cargo build --workspace --locked
exec target/debug/wasmkube-demo "$@"

#!/usr/bin/env bash
# The demo, the user's main job: a real single-node Kubernetes 1.20 cluster on this machine
# (scripts/cluster.sh; its binaries are built from Debian's sources once and cached under
# /opt/wasmkube-tools), the chart installed with helm, the examples pushed to the cluster's
# registry and applied as WasmApps, then kubectl get/logs/exec and a request to the HTTP app
# through its Service (e2e/cluster/demo.sh). Everything it starts is stopped on exit or Ctrl-C.
#
#   bash scripts/demo.sh          the real-cluster demo
#   bash scripts/demo.sh --kind   the kind cluster flow (e2e/kind/run.sh), where Docker and kind exist
#   bash scripts/demo.sh --cri    the node-level demo: CRI driven directly, as a kubelet does
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
echo "==> cargo build --workspace (first build takes several minutes)"
cargo build --workspace --locked
case ${1:-} in
  --kind) exec bash e2e/kind/run.sh ;;
  --cri) exec target/debug/wasmkube-demo ;;
  "") exec bash e2e/cluster/demo.sh ;;
  *) echo "usage: $0 [--kind|--cri]" >&2; exit 2 ;;
esac

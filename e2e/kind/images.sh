#!/usr/bin/env bash
# Builds what the kind suite loads, without a Docker daemon: static (musl) release binaries,
# the operator and node-installer images FROM scratch (buildah), and the test modules as OCI
# archives (image and Wasm artifact forms). Writes everything to OUT (default target/kind).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:-$ROOT/target/kind}
TAG=${TAG:-e2e}
TARGET=${TARGET:-x86_64-unknown-linux-musl}
mkdir -p "$OUT"

rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"
cargo build --locked --release --target "$TARGET" \
  --bin wasmkube-operator --bin wasmkube-node-installer --bin containerd-shim-wasmkube-v1
bin="$ROOT/target/$TARGET/release"

# image NAME USER ENTRYPOINT FILE... : a FROM scratch image holding FILEs under /opt/wasmkube.
image() {
  local name=$1 user=$2 entry=$3
  shift 3
  local ctr
  ctr=$(buildah from scratch)
  for file in "$@"; do
    buildah copy --chmod 0755 "$ctr" "$file" "/opt/wasmkube/$(basename "$file")"
  done
  buildah config --entrypoint "[\"/opt/wasmkube/$entry\"]" --user "$user" \
    --label org.opencontainers.image.source=wasmkube "$ctr"
  buildah commit --quiet "$ctr" "docker.io/wasmkube/$name:$TAG"
  buildah rm "$ctr" >/dev/null
  rm -f "$OUT/$name.tar"
  buildah push --quiet "docker.io/wasmkube/$name:$TAG" "oci-archive:$OUT/$name.tar:docker.io/wasmkube/$name:$TAG"
  echo "built $OUT/$name.tar"
}

image wasmkube-operator 65532 wasmkube-operator "$bin/wasmkube-operator"
# The installer edits the host as root; its image carries the shim it installs.
image wasmkube-node-installer 0 wasmkube-node-installer "$bin/wasmkube-node-installer" "$bin/containerd-shim-wasmkube-v1"

# The module stub every node needs for Wasm artifacts (the installer's job on real nodes).
"$bin/containerd-shim-wasmkube-v1" --write-stub-image "$OUT/module-stub.tar"
cargo run --locked --quiet -p wasmkube-e2e --bin wasmkube-fixtures -- "$OUT"

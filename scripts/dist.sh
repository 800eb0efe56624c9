#!/usr/bin/env bash
# Builds wasmkube for distribution, without a Docker daemon: static (musl) binaries of the shim,
# the operator and the node installer for each architecture, their FROM scratch images
# (buildah, private storage under OUT), and one multi-arch image index per image.
#
#   scripts/dist.sh [--arch amd64,arm64] [--profile dist] [--tag TAG] [--push HOST:PORT] [OUT]
#
# OUT (default target/dist) receives bin/ARCH/*, NAME-ARCH.tar (single-arch OCI archives, what
# `kind load image-archive` takes) and NAME.tar (the multi-arch index with every platform).
# --push copies each index to HOST:PORT/wasmkube/NAME:TAG over plain HTTP (a local registry).
# --profile dev gives the same binaries faster (what CI checks); dist is the release profile.
# Installs what it needs: apt musl-tools, gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, buildah;
# rustup musl targets.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ARCHES=amd64,arm64
PROFILE=dist
TAG=${TAG:-$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -1)}
PUSH=
OUT=$ROOT/target/dist
while (($#)); do
  case $1 in
    --arch) ARCHES=$2; shift 2 ;;
    --profile) PROFILE=$2; shift 2 ;;
    --tag) TAG=$2; shift 2 ;;
    --push) PUSH=$2; shift 2 ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    -*) echo "dist: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) OUT=$1; shift ;;
  esac
done
IMAGES=(wasmkube-operator wasmkube-node-installer)

triple() {
  case $1 in
    amd64) echo x86_64-unknown-linux-musl ;;
    arm64) echo aarch64-unknown-linux-musl ;;
    *) echo "dist: unsupported architecture $1 (amd64, arm64)" >&2; exit 2 ;;
  esac
}

# shellcheck source=scripts/lib.sh disable=SC1091
source "$ROOT/scripts/lib.sh"

IFS=, read -r -a arches <<<"$ARCHES"
need_apt buildah musl-tools
# The cross C compiler and the aarch64 libc headers (a recommends of the compiler, which
# --no-install-recommends leaves out; ring's C code needs them).
[[ ,$ARCHES, == *,arm64,* ]] && need_apt gcc-aarch64-linux-gnu libc6-dev-arm64-cross
mkdir -p "$OUT"

# buildah with its own storage under OUT: nothing is left in the machine's image store.
B=(buildah --root "$OUT/storage" --runroot "$OUT/run" --storage-driver vfs)

for arch in "${arches[@]}"; do
  target=$(triple "$arch")
  rustup target list --installed | grep -qx "$target" || rustup target add "$target"
  echo "==> cargo build --profile $PROFILE --target $target"
  (cd "$ROOT" && cargo build --locked --profile "$PROFILE" --target "$target" \
    --bin containerd-shim-wasmkube-v1 --bin wasmkube-operator --bin wasmkube-node-installer)
  dir=$PROFILE
  [[ $PROFILE == dev ]] && dir=debug
  mkdir -p "$OUT/bin/$arch"
  for bin in containerd-shim-wasmkube-v1 wasmkube-operator wasmkube-node-installer; do
    src="$ROOT/target/$target/$dir/$bin"
    # Static: nothing from the image or the host's libc is needed at run time.
    file -L "$src" | grep -Eq 'static(ally|-pie) linked' || { echo "dist: $src is not static: $(file -L "$src")" >&2; exit 1; }
    install -m 0755 "$src" "$OUT/bin/$arch/$bin"
  done
done

# image NAME ARCH USER FILE... : a FROM scratch image for linux/ARCH holding FILEs under
# /opt/wasmkube, its entrypoint the first one.
image() {
  local name=$1 arch=$2 user=$3
  shift 3
  local ctr
  ctr=$("${B[@]}" from --arch "$arch" scratch)
  for file in "$@"; do
    "${B[@]}" copy --chmod 0755 "$ctr" "$file" "/opt/wasmkube/$(basename "$file")"
  done
  "${B[@]}" config --os linux --arch "$arch" --user "$user" \
    --entrypoint "[\"/opt/wasmkube/$(basename "$1")\"]" \
    --label org.opencontainers.image.title="$name" \
    --label org.opencontainers.image.version="$TAG" "$ctr"
  "${B[@]}" commit --quiet --rm "$ctr" "localhost/$name:$TAG-$arch" >/dev/null
  rm -f "$OUT/$name-$arch.tar"
  "${B[@]}" push --quiet "localhost/$name:$TAG-$arch" \
    "oci-archive:$OUT/$name-$arch.tar:docker.io/wasmkube/$name:$TAG"
}

for name in "${IMAGES[@]}"; do
  echo "==> image $name:$TAG for ${arches[*]}"
  "${B[@]}" manifest rm "localhost/$name:$TAG" >/dev/null 2>&1 || true
  "${B[@]}" manifest create "localhost/$name:$TAG" >/dev/null
  for arch in "${arches[@]}"; do
    bin="$OUT/bin/$arch"
    case $name in
      wasmkube-operator) image "$name" "$arch" 65532 "$bin/wasmkube-operator" ;;
      # The installer edits the host as root; its image carries the shim it installs.
      wasmkube-node-installer) image "$name" "$arch" 0 "$bin/wasmkube-node-installer" "$bin/containerd-shim-wasmkube-v1" ;;
    esac
    "${B[@]}" manifest add --os linux --arch "$arch" "localhost/$name:$TAG" \
      "containers-storage:localhost/$name:$TAG-$arch" >/dev/null
  done
  rm -f "$OUT/$name.tar"
  "${B[@]}" manifest push --quiet --all --format oci "localhost/$name:$TAG" \
    "oci-archive:$OUT/$name.tar:docker.io/wasmkube/$name:$TAG"
  if [[ -n $PUSH ]]; then
    "${B[@]}" manifest push --quiet --all --format oci --tls-verify=false \
      "localhost/$name:$TAG" "docker://$PUSH/wasmkube/$name:$TAG"
    echo "pushed $PUSH/wasmkube/$name:$TAG"
  fi
done
echo "dist: binaries in $OUT/bin, images in $OUT (tag $TAG, ${arches[*]})"

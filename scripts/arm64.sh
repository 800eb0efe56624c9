#!/usr/bin/env bash
# The x86_64 + aarch64 check (run by CI): builds the static binaries and FROM scratch images for
# both architectures (scripts/dist.sh), runs the hello module through the aarch64 shim under
# qemu-aarch64 next to the x86_64 one (the same .wasm must print the same output and exit code),
# pushes the multi-arch images to a local registry and checks that the index lists linux/amd64
# and linux/arm64 and that each platform's image carries a binary for that platform.
#
#   scripts/arm64.sh            # release (dist) binaries, as CI runs it
#   PROFILE=dev scripts/arm64.sh # debug binaries (reuses a dev build)
#
# Installs what it needs (apt qemu-user-static docker-registry skopeo, plus dist.sh's list).
# The registry it starts is stopped by its PID on exit, pass or fail.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PROFILE=${PROFILE:-dist}
OUT=$ROOT/target/multiarch
TAG=ci

# shellcheck source=scripts/lib.sh disable=SC1091
source "$ROOT/scripts/lib.sh"
need_apt qemu-user-static docker-registry skopeo file

fail() { echo "arm64: FAILED: $*" >&2; exit 1; }

# A private registry on a free loopback port, stopped by PID on exit.
work=$(mktemp -d)
registry_pid=
cleanup() {
  if [[ -n $registry_pid ]]; then
    kill "$registry_pid" 2>/dev/null || true
    # Its status is 143 (SIGTERM); the script's own status must stand.
    wait "$registry_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<EOF
version: 0.1
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
log:
  level: error
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!

bash scripts/dist.sh --arch amd64,arm64 --profile "$PROFILE" --tag "$TAG" --push "127.0.0.1:$port" "$OUT"

echo "==> building hello for wasm32-wasip1"
(cd examples && cargo build --quiet --locked --release --target wasm32-wasip1 \
  --target-dir ../target/wasm)
module=target/wasm/wasm32-wasip1/release/hello.wasm

host=$OUT/bin/amd64/containerd-shim-wasmkube-v1
arm=$OUT/bin/arm64/containerd-shim-wasmkube-v1
file "$arm" | grep -q "ARM aarch64" || fail "$arm is not an aarch64 binary"
file "$host" | grep -q "x86-64" || fail "$host is not an x86-64 binary"

run() { "$@" --run "$module" same args --exit 3; }
set +e
host_out=$(run "$host"); host_code=$?
# Static binaries: qemu needs no aarch64 sysroot.
arm_out=$(run qemu-aarch64-static "$arm"); arm_code=$?
set -e
host_engine=$("$host" --engine-info)
arm_engine=$(qemu-aarch64-static "$arm" --engine-info)
allocator() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])["allocator"])' "$1"; }
printf '| build | exit | first line | allocator |\n| --- | --- | --- | --- |\n'
printf '| x86_64 (static) | %s | %s | %s |\n' "$host_code" "$(head -1 <<<"$host_out")" "$(allocator "$host_engine")"
printf '| aarch64 (static, qemu) | %s | %s | %s |\n' "$arm_code" "$(head -1 <<<"$arm_out")" "$(allocator "$arm_engine")"
if [[ $host_code != 3 || $arm_code != 3 || "$host_out" != "$arm_out" ]]; then
  diff <(echo "$host_out") <(echo "$arm_out") >&2 || true
  fail "outputs differ or exit codes are not 3"
fi
echo "arm64: the same module gives the same output and exit code on both architectures"

echo "==> multi-arch images in the registry (127.0.0.1:$port)"
for name in wasmkube-operator wasmkube-node-installer; do
  ref="docker://127.0.0.1:$port/wasmkube/$name:$TAG"
  platforms=$(skopeo inspect --tls-verify=false --raw "$ref" | python3 -c '
import json, sys
index = json.load(sys.stdin)
assert index["mediaType"] == "application/vnd.oci.image.index.v1+json", index["mediaType"]
print(" ".join(sorted(m["platform"]["os"] + "/" + m["platform"]["architecture"] for m in index["manifests"])))')
  [[ $platforms == "linux/amd64 linux/arm64" ]] || fail "$name index lists [$platforms], want linux/amd64 linux/arm64"
  for arch in amd64 arm64; do
    # Each platform's image, as a node of that architecture would pull it.
    dir="$work/$name-$arch"
    skopeo copy --quiet --src-tls-verify=false --override-arch "$arch" --override-os linux "$ref" "oci:$dir:x" >/dev/null
    config=$(python3 - "$dir" <<'PY'
import json, sys, os
root = sys.argv[1]
blob = lambda d: os.path.join(root, "blobs", *d.split(":"))
index = json.load(open(os.path.join(root, "index.json")))
manifest = json.load(open(blob(index["manifests"][0]["digest"])))
config = json.load(open(blob(manifest["config"]["digest"])))
print(config["os"], config["architecture"], config["config"]["Entrypoint"][0], manifest["layers"][0]["digest"])
PY
)
    read -r os cfg_arch entry layer <<<"$config"
    [[ $os/$cfg_arch == linux/$arch ]] || fail "$name for $arch has config platform $os/$cfg_arch"
    mkdir -p "$dir/rootfs"
    tar -xf "$dir/blobs/${layer/://}" -C "$dir/rootfs"
    want=x86-64
    [[ $arch == arm64 ]] && want="ARM aarch64"
    file "$dir/rootfs$entry" | grep -q "$want" || fail "$name for $arch: $entry is $(file -b "$dir/rootfs$entry")"
    printf '| %s | linux/%s | %s | %s |\n' "$name" "$arch" "$entry" "$(file -b "$dir/rootfs$entry" | cut -d, -f1-2)"
  done
done
echo "arm64: both images are one index with linux/amd64 and linux/arm64, each with its own binaries"

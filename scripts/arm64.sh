#!/usr/bin/env bash
# Cross-builds the shim for aarch64 and runs the hello module through its engine under
# qemu-aarch64, next to the host build: the same .wasm must print the same output on both.
# Installs what it needs (apt cross toolchain + qemu-user-static, rustup target). Exits
# non-zero on any difference.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "==> apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu

echo "==> building the shim for x86_64 and aarch64"
cargo build --workspace --locked   # the host shim, as the test command builds it
cargo build --locked --bin containerd-shim-wasmkube-v1 --target aarch64-unknown-linux-gnu
echo "==> building hello for wasm32-wasip1"
(cd examples && cargo build --quiet --locked --release --target wasm32-wasip1 \
  --target-dir ../target/wasm)
module=target/wasm/wasm32-wasip1/release/hello.wasm

host=target/debug/containerd-shim-wasmkube-v1
arm=target/aarch64-unknown-linux-gnu/debug/containerd-shim-wasmkube-v1
file "$arm" | grep -q "ARM aarch64" || { echo "arm64: $arm is not an aarch64 binary" >&2; exit 1; }

run() { "$@" --run "$module" same args --exit 3; }
set +e
host_out=$(run "$host"); host_code=$?
arm_out=$(run qemu-aarch64-static -L /usr/aarch64-linux-gnu "$arm"); arm_code=$?
set -e
printf '| build | exit | first line |\n| --- | --- | --- |\n'
printf '| x86_64 | %s | %s |\n' "$host_code" "$(head -1 <<<"$host_out")"
printf '| aarch64 (qemu) | %s | %s |\n' "$arm_code" "$(head -1 <<<"$arm_out")"
if [[ $host_code != 3 || $arm_code != 3 || "$host_out" != "$arm_out" ]]; then
  echo "arm64: outputs differ or exit codes are not 3" >&2
  diff <(echo "$host_out") <(echo "$arm_out") >&2 || true
  exit 1
fi
echo "arm64: the same module gives the same output and exit code on both architectures"

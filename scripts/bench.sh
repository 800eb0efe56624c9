#!/usr/bin/env bash
# Runs the benchmarks against a release build of the shim, each printing tables (with the
# targets beside the figures) and writing target/bench/<name>.json:
#
#   bash scripts/bench.sh [start|density|compute|module_cache|http|churn]...   (default: the
#   first four)
#
# start: cold start through ctr and CRI, Wasm (cached, uncached, a 2 MiB module) vs runc, and
# the engine-allocator lever; density: idle pods at WASMKUBE_DENSITY levels (default
# 50,200,500) vs runc, shim overhead; compute: n-body Wasm vs native under runc;
# module_cache: the compiled-module cache lever; http: wasi:http hello req/s and latency, pod vs
# the same server run directly (target 30,000 req/s); churn: the leak test (e2e/tests/churn.rs) at
# full size, 1,000 pod cycles one at a time and 200 ten at a time (the test command runs
# 100 and 50). WASMKUBE_BENCH_RUNS overrides the runs.
# Needs root (private containerd); set-up is scripts/setup.sh. Not part of the test command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
benches=("$@")
((${#benches[@]})) || benches=(start density compute module_cache)
echo "==> release shim"
cargo build --release --locked -p containerd-shim-wasmkube --bin containerd-shim-wasmkube-v1
WASMKUBE_SHIM=$PWD/target/release/containerd-shim-wasmkube-v1
export WASMKUBE_SHIM
for bench in "${benches[@]}"; do
  if [[ $bench == churn ]]; then
    echo "==> churn, full size (cargo test --test churn, release shim)"
    WASMKUBE_CHURN_SEQUENTIAL=${WASMKUBE_CHURN_SEQUENTIAL:-1000} \
      WASMKUBE_CHURN_PARALLEL=${WASMKUBE_CHURN_PARALLEL:-200} \
      cargo test --locked -p wasmkube-e2e --test churn
    continue
  fi
  echo "==> cargo bench --bench $bench"
  cargo bench --locked -p wasmkube-e2e --bench "$bench"
done

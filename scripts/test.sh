#!/usr/bin/env bash
# The whole test suite: set-up, build, unit and engine tests, the containerd suite (needs root;
# it fails, never skips silently, where root or containerd is missing).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
echo "==> cargo build --workspace"
cargo build --workspace --locked
echo "==> cargo test --workspace"
set +e
cargo test --workspace --locked --no-fail-fast 2>&1 | tee target/test.log
status=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo '[0-9]+ passed' target/test.log | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' target/test.log | awk '{s+=$1} END {print s+0}')
echo
echo "summary: ${passed} passed, ${failed} failed"
exit "$status"

#!/usr/bin/env bash
# The whole test suite: set-up, build, unit and engine tests, the containerd and CRI suites
# (need root; they fail, never skip silently, where root or containerd is missing), then the
# kind cluster suite, which runs where Docker and kind exist and is reported as skipped where
# they do not (never as passed).
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

echo "==> kind e2e (e2e/kind/run.sh, log in target/kind.log)"
set +e
bash e2e/kind/run.sh >target/kind.log 2>&1
kind_status=$?
set -e
case $kind_status in
  0) kind="kind e2e: passed" ;;
  77) kind=$(grep -m1 'kind e2e: skipped' target/kind.log) ;;
  *) kind="kind e2e: FAILED (exit $kind_status, see target/kind.log)"; status=1 ;;
esac
echo
echo "summary: ${passed} passed, ${failed} failed; ${kind}"
exit "$status"

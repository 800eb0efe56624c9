#!/usr/bin/env bash
# The whole test suite: set-up (including the real cluster's cached binaries), build, unit and
# engine tests, the containerd and CRI suites on apt's containerd 1.6 and the CRD checks on the
# current CRD API server (cargo test; they need root and fail, never skip silently, where root or
# a component is missing), the containerd suites again on containerd 1.7 and 2.1
# (scripts/containerd-matrix.sh), the cluster suite on a real Kubernetes 1.20 cluster
# (e2e/cluster/run.sh), then the kind suite, which runs where Docker and kind exist and is
# reported as skipped where they do not (never as passed).
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

# add_counts LOG: adds a suite's closing "N passed, M failed" line to the totals.
add_counts() {
  local line
  line=$(grep -E '^[a-z0-9 .:-]*[0-9]+ passed, [0-9]+ failed' "$1" | tail -n 1 || true)
  if [[ -z $line ]]; then
    failed=$((failed + 1))
    return
  fi
  passed=$((passed + $(grep -Eo '[0-9]+ passed' <<<"$line" | grep -Eo '[0-9]+')))
  failed=$((failed + $(grep -Eo '[0-9]+ failed' <<<"$line" | grep -Eo '[0-9]+')))
}

suites=()
if [[ -f scripts/containerd-matrix.sh ]]; then
  echo "==> containerd 1.7 and 2.1 (scripts/containerd-matrix.sh, log in target/containerd-matrix.log)"
  set +e
  bash scripts/containerd-matrix.sh 2>&1 | tee target/containerd-matrix.log
  matrix_status=${PIPESTATUS[0]}
  set -e
  add_counts target/containerd-matrix.log
  if ((matrix_status != 0)); then status=1; fi
  suites+=("$(grep -E '^containerd [0-9]' target/containerd-matrix.log | paste -sd';' -)")
fi

echo "==> cluster e2e on Kubernetes 1.20 (e2e/cluster/run.sh, log in target/cluster.log)"
set +e
bash e2e/cluster/run.sh 2>&1 | tee target/cluster.log
cluster_status=${PIPESTATUS[0]}
set -e
add_counts target/cluster.log
if ((cluster_status != 0)); then status=1; fi
suites+=("$(grep -E '^cluster e2e:' target/cluster.log | tail -n 1 || echo 'cluster e2e: FAILED before the scenarios')")

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
for s in "${suites[@]}"; do echo "  $s"; done
echo "  $kind"
echo "summary: ${passed} passed, ${failed} failed"
exit "$status"

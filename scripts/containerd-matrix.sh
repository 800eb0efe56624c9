#!/usr/bin/env bash
# The containerd compatibility matrix: the containerd suites run again on the containerd
# versions besides this system's 1.6 (which the whole suite already runs on), each from its own
# binaries (scripts/cluster/build-containerd.sh fetches and caches them). The harness starts
# whatever `containerd` and `ctr` come first on PATH, so each run gets PATH prefixed with that
# version's bin dir; the harness checks the version it got against WASMKUBE_CONTAINERD_VERSION.
#
# Usage: scripts/containerd-matrix.sh [VERSION...]      (default: 1.7 2.1; 1.6 runs /usr/bin's)
# Suites: WASMKUBE_MATRIX_SUITES (default "ctr cri exec restart churn"; churn at its short
# default size). Logs: target/containerd-<version>.log. Prints each version's wall time, then
# one line per version, `containerd 1.7.24: N passed, M failed`, and the total
# `N passed, M failed`; exits non-zero if any test failed or a suite did not reach its result.
# The test binaries are built once up front, with the flags of `cargo build --workspace`
# (nothing is rebuilt after it), so a version's time is its tests' alone.
set -euo pipefail
cd "$(dirname "$0")/.."

versions=("$@")
((${#versions[@]})) || versions=(1.7 2.1)
read -r -a suites <<<"${WASMKUBE_MATRIX_SUITES:-ctr cri exec restart churn}"
tests=()
for s in "${suites[@]}"; do tests+=(--test "$s"); done

bash scripts/cluster/build-containerd.sh
mkdir -p target
echo "==> cargo test --no-run ${tests[*]}"
cargo test --workspace --locked --no-run "${tests[@]}"

# count LOG: "<passed> <failed>" over the test binaries in a cargo test log; a binary that
# started ("Running ...") but printed no `test result:` line (it crashed, or churn's main
# returned an error before its table) counts as one failure.
count() {
  awk '
    /^ *Running / { if (open) { failed++ }; open = 1; next }
    /^test result: / {
      for (i = 1; i <= NF; i++) {
        if ($(i + 1) ~ /^passed/) passed += $i
        if ($(i + 1) ~ /^failed/) failed += $i
      }
      open = 0
    }
    END { if (open) failed++; print passed + 0, failed + 0 }
  ' "$1"
}

total_passed=0
total_failed=0
status=0
lines=()
for v in "${versions[@]}"; do
  prefix=$(bash scripts/cluster/build-containerd.sh --print-path "$v" 2>/dev/null)
  full=$(PATH="$prefix:$PATH" containerd --version | awk '{print $3}')
  full=${full%%[~+]*}
  log=target/containerd-$full.log
  echo "==> containerd $full ($prefix): cargo test ${tests[*]} (log in $log)"
  started=$(date +%s)
  set +e
  PATH="$prefix:$PATH" WASMKUBE_CONTAINERD_VERSION=$full \
    cargo test --workspace --locked --no-fail-fast "${tests[@]}" >"$log" 2>&1
  rc=$?
  set -e
  seconds=$(($(date +%s) - started))
  read -r passed failed < <(count "$log")
  if ((rc != 0 && failed == 0)); then
    # cargo failed without a failing test (a build error): say so, count it.
    failed=1
    echo "cargo test exited $rc without a failing test; see $log" >&2
  fi
  ((failed == 0)) || status=1
  grep -E '^test .* FAILED$|^---- .* stdout ----$' "$log" | sed 's/^/    /' || true
  line="containerd $full: $passed passed, $failed failed"
  echo "==> $line in ${seconds} s"
  lines+=("$line")
  total_passed=$((total_passed + passed))
  total_failed=$((total_failed + failed))
done
echo
printf '%s\n' "${lines[@]}"
echo "$total_passed passed, $total_failed failed"
exit "$status"

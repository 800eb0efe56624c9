#!/usr/bin/env bash
# Fuzzing with cargo-fuzz (libFuzzer) of the parsers that take untrusted input:
#   run_spec           an OCI runtime spec through the shim's create path (entrypoint inside
#                      the rootfs, policy, preopens, cgroup path, engine limits)
#   annotations        wasmkube.dev/* annotations through the shim's policy and module handoff
#   containerd_config  the node installer's edit of containerd's config file
#   wasmapp            WasmApp YAML through the CRD's CEL rules and the operator's builders
#
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]     (default: 20 s per target, every target)
#
# Each target first replays fuzz/regressions/<target>/* (inputs that crashed it once), then
# fuzzes for SECONDS starting from fuzz/seeds/<target>; the corpus grows in fuzz/corpus/ (not
# committed). A crash fails the script and leaves the input in fuzz/artifacts/<target>/ with
# the command that reproduces it; fixed crashes go into fuzz/regressions/. Runs on the stable
# toolchain without a sanitizer (`-s none`: panics and assertion failures); for AddressSanitizer
# use a nightly toolchain: `cd fuzz && cargo +nightly fuzz run run_spec`.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_FUZZ_VERSION=0.13.2

secs=${1:-20}
shift || true
if ! cargo fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
  echo "==> cargo install cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
cd fuzz
targets=("$@")
if ((${#targets[@]} == 0)); then
  mapfile -t targets < <(cargo fuzz list)
fi
echo "==> cargo fuzz build (instrumented release build of every crate)"
cargo fuzz build -s none
for t in "${targets[@]}"; do
  for input in regressions/"$t"/*; do
    [[ -e $input ]] || continue
    echo "==> $t: regression $input"
    cargo fuzz run -s none "$t" "$input" >/dev/null 2>&1 || {
      echo "fuzz: $t crashes again on $input; reproduce with: cd fuzz && cargo fuzz run -s none $t $input" >&2
      exit 1
    }
  done
  echo "==> $t: fuzzing for ${secs}s"
  mkdir -p corpus/"$t" seeds/"$t"
  if ! cargo fuzz run -s none "$t" corpus/"$t" seeds/"$t" -- -max_total_time="$secs" \
      >"artifacts-$t.log" 2>&1; then
    grep -E 'panicked|Test unit written|cargo fuzz run' "artifacts-$t.log" >&2 || tail -20 "artifacts-$t.log" >&2
    echo "fuzz: $t found a crash (log: fuzz/artifacts-$t.log)" >&2
    exit 1
  fi
  grep -E '^Done' "artifacts-$t.log" | sed "s/^/    $t: /"
  rm -f "artifacts-$t.log"
done
echo "fuzz: ${#targets[@]} targets, ${secs}s each, no crash"

#!/usr/bin/env bash
# Coverage-guided fuzzing of what the fleet decodes from outside (fuzz/fuzz_targets/), for a
# bounded time per target: `make test` runs it after the test suite.
#
# cargo-fuzz (libFuzzer) from the crate registry, installed into .fleet/tools. It runs on the stable
# toolchain with `--sanitizer none` (coverage instrumentation needs no nightly flags).
# Each run starts from the committed seed corpus fuzz/corpus/<target> and writes what it finds
# to a scratch corpus, so the repository's corpus changes only when someone adds seeds.
#   FLEET_FUZZ_SECONDS=60 scripts/fuzz.sh            # longer runs
#   scripts/fuzz.sh probe_output                     # one target
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_FUZZ_VERSION=0.13.2
seconds="${FLEET_FUZZ_SECONDS:-20}"
tools="$PWD/.fleet/tools"
fuzz="$tools/bin/cargo-fuzz"
if ! "$fuzz" --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION (crate registry) into .fleet/tools"
  cargo install --quiet --locked --version "$CARGO_FUZZ_VERSION" --root "$tools" cargo-fuzz
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(job_request task_message outcome_notice probe_output)
cd fuzz
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
echo "fuzz: building the targets (release, coverage-instrumented)"
if ! "$fuzz" build --sanitizer none >"$scratch/build.log" 2>&1; then
  tail -n 40 "$scratch/build.log" >&2
  echo "fuzz: building the fuzz targets failed" >&2
  exit 1
fi
failed=0
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t"
  echo "fuzz: $t for ${seconds} s"
  if ! "$fuzz" run --sanitizer none "$t" "$scratch/$t" "corpus/$t" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
      >"$scratch/$t.log" 2>&1; then
    echo "fuzz: $t FAILED (crash input under fuzz/artifacts/$t):" >&2
    tail -n 40 "$scratch/$t.log" >&2
    failed=$((failed + 1))
  else
    grep -E "stat::number_of_executed_units|Done [0-9]+ runs" "$scratch/$t.log" | tail -n 1 | sed 's/^/  /'
  fi
done
passed=$(( ${#targets[@]} - failed ))
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

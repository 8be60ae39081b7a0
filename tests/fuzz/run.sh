#!/usr/bin/env bash
# Runs every libFuzzer target in BUILD_DIR: the stream parser for SECONDS, every other target
# for half of it (at least 10 s), seeded from examples/ and
# tests/fuzz/seeds/<target>/, with the XMPP dictionary. A finding fails the run and leaves the
# crashing input in build dir's fuzz-findings/ (turn it into a regression test).
#   bash tests/fuzz/run.sh build-fuzz 60
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:?usage: run.sh BUILD_DIR SECONDS}
seconds=${2:-60}
findings=$build/fuzz-findings
mkdir -p "$findings"
status=0
for bin in "$build"/tests/fuzz_*; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin")
  corpus=$build/fuzz-corpus/$name
  mkdir -p "$corpus"
  seeds=()
  [ -d "tests/fuzz/seeds/$name" ] && seeds+=("tests/fuzz/seeds/$name")
  case $name in
    fuzz_parser|fuzz_session) seeds+=(examples/captures) ;;
    fuzz_rules) seeds+=(examples/rules) ;;
  esac
  t=$seconds
  [ "$name" = fuzz_parser ] || t=$(( seconds / 2 > 10 ? seconds / 2 : 10 ))
  echo "fuzz: $name for ${t}s"
  if ! ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 "$bin" -max_total_time="$t" \
      -dict=tests/fuzz/xmpp.dict -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$findings/" -print_final_stats=1 "$corpus" "${seeds[@]}" \
      >"$build/$name.log" 2>&1; then
    echo "fuzz: $name FOUND A PROBLEM; input in $findings/, log $build/$name.log" >&2
    tail -n 40 "$build/$name.log" >&2
    status=1
  else
    grep -E '^stat::number_of_executed_units|^#[0-9]+ *DONE' "$build/$name.log" | tail -n 2 || true
  fi
done
exit $status

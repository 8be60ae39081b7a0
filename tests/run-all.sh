#!/usr/bin/env bash
# The test command: installs what is needed (Debian 12, apt-get), builds xmppscope with ASan and
# UBSan, runs every test under ctest (unit, integration against a real Prosody, fuzz corpora),
# runs each libFuzzer target for a fixed time, and a short smoke run of the benchmarks.
#
#   bash tests/run-all.sh            everything (what CI runs)
#   XS_FUZZ_SECONDS=600 bash tests/run-all.sh    longer fuzzing
#
# Build trees go to build-ci/ (tests) and build-fuzz/ (fuzz targets) in the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
fuzz_seconds=${XS_FUZZ_SECONDS:-40}
jobs=$(nproc 2>/dev/null || echo 2)
start=$(date +%s)
step() { printf '\n== %s (%ds)\n' "$*" $(( $(date +%s) - start )); }

step "installing dependencies"
bash tests/install-deps.sh

step "building with ASan+UBSan (build-ci)"
export CC=clang
cmake -S . -B build-ci -G Ninja -DCMAKE_BUILD_TYPE=Debug -DXS_WERROR=ON \
  -DXS_SANITIZE=address,undefined >/dev/null
ninja -C build-ci -j "$jobs"

step "running the tests (ctest)"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions=$top/tests/lsan.supp
(cd build-ci && ctest --output-on-failure -j "$jobs" --timeout 600)

step "building the fuzz targets (build-fuzz)"
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DXS_FUZZ=ON \
  -DXS_SANITIZE=address,undefined -DXS_TESTS=OFF -DXS_BENCH=OFF >/dev/null
ninja -C build-fuzz -j "$jobs" $(cd build-fuzz && ninja -t targets all | sed -n 's/^\(fuzz_[a-z0-9_]*\):.*/\1/p' | sort -u)

step "fuzzing, ${fuzz_seconds}s per target"
bash tests/fuzz/run.sh build-fuzz "$fuzz_seconds"

step "benchmark smoke run (speed is not asserted)"
./build-ci/tests/bench_parser 4 1

step "all tests passed"

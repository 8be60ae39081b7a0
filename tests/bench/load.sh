#!/usr/bin/env bash
# The load and soak test of xmppscope, in one command: builds a Release tree and runs bench_load,
# which prints its table on stdout (progress on stderr) and exits 0 only when every check passed.
#
#   bash tests/bench/load.sh                     load: 200 sessions x 2000 stanzas each way, 3 waves
#   bash tests/bench/load.sh --smoke             what ctest runs (200 x 1000, 2 waves)
#   bash tests/bench/load.sh --soak 600          soak: 200 sessions kept going for 10 minutes,
#                                                RSS sampled every 5 s (--sample-s S) in a table
#   bash tests/bench/load.sh --sessions 500 --stanzas 5000 --json load.json
#   bash tests/bench/load.sh --proxy-arg --rules --proxy-arg examples/rules/twenty.rules
#   bash tests/bench/load.sh --help              every option
#
# Every stanza is unique and checked: echoed exactly once, in order, byte exact, and counted at
# both ends. The proxy's RSS and open descriptors are read at a baseline, during and after each
# wave; tests/bench/bench_load.c says what passes and why. bench_load raises its open-files limit
# to the hard limit (the proxy needs two descriptors per session) and says so.
# Environment: XS_BENCH_BUILD=DIR picks the build tree (default build-rel in the checkout, the
# one tests/bench/run.sh uses too).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${XS_BENCH_BUILD:-build-rel}

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DXS_TESTS=OFF -DXS_BENCH=ON \
  -DXS_WERROR=ON >/dev/null
ninja -C "$build" xmppscope bench_load >&2

echo "machine: $(nproc) CPU(s), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(uname -sr); $(date -u '+%Y-%m-%d %H:%M UTC')" >&2
exec "$build/tests/bench_load" --xmppscope "$build/proxy/xmppscope" "$@"

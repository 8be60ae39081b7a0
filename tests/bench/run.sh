#!/usr/bin/env bash
# The proxy benchmark, in one command: builds a Release tree and runs bench_proxy, which prints
# the results table (stdout, then one JSON line) with progress on stderr.
#
#   bash tests/bench/run.sh                      the full benchmark (a few minutes on 2 cores)
#   bash tests/bench/run.sh --smoke              every scenario tiny (seconds), as CI runs it
#   bash tests/bench/run.sh --reps 5 --json bench.json
#   bash tests/bench/run.sh --scenarios bulk --targets xmppscope \
#        --profile 'perf record -g -o perf.data -p %p'     profile the proxy during bulk
#   bash tests/bench/run.sh --help               every option
#
# The peer comparison needs sslsplit (Debian: apt-get install -y sslsplit); without it those
# columns stay empty. The benchmark raises its open-files limit itself as far as the hard limit
# allows (the idle scenario needs two descriptors per session in the proxy) and says so.
# Environment: XS_BENCH_BUILD=DIR picks the build tree (default build-rel in the checkout).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${XS_BENCH_BUILD:-build-rel}

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DXS_TESTS=OFF -DXS_BENCH=ON \
  -DXS_WERROR=ON >/dev/null
ninja -C "$build" xmppscope bench_proxy >&2

echo "machine: $(nproc) CPU(s), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(uname -sr); $(date -u '+%Y-%m-%d %H:%M UTC')" >&2
exec "$build/tests/bench_proxy" --xmppscope "$build/proxy/xmppscope" "$@"

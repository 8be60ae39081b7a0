#!/usr/bin/env bash
# Bulk throughput through `xmppscope proxy --web` with one browser watching vs none, paired:
# runs of the two alternate (A B A B ...), so that the machine's load falls on both alike, and the
# medians are compared. Uses tests/bench/bench_proxy's bulk scenario through bench-watched.sh.
#
#   bash tests/integration/web/bench-pair.sh [ROUNDS] [MIB]     (default 4 rounds of 128 MiB)
#
# Needs a Release tree with bench_proxy (bash tests/bench/run.sh --help builds build-rel) and
# playwright-core (bash tests/integration/web/install.sh).
set -euo pipefail
cd "$(dirname "$0")/../../.."
build=${XS_BENCH_BUILD:-build-rel}
rounds=${1:-4}
mib=${2:-128}
export XS_WEB_REAL=$PWD/$build/proxy/xmppscope
one() {
  "$build/tests/bench_proxy" --xmppscope "$PWD/tests/integration/web/bench-watched.sh" \
    --scenarios bulk --targets xmppscope --reps 1 --bulk-mib "$mib" --sslsplit none 2>/dev/null |
    tail -1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["results"]["bulk"]["xmppscope"]["median"]["MBps"])'
}
a=() b=()
for ((i = 0; i < rounds; i++)); do
  a+=("$(XS_WEB_NO_BROWSER=1 one)")
  b+=("$(one)")
  echo "round $((i + 1)): no browser ${a[-1]} MB/s, one browser watching ${b[-1]} MB/s" >&2
done
python3 - "${a[*]}" "${b[*]}" <<'PY'
import statistics, sys
a = [float(x) for x in sys.argv[1].split()]
b = [float(x) for x in sys.argv[2].split()]
ma, mb = statistics.median(a), statistics.median(b)
print(f"bulk through --web: no browser {ma:.1f} MB/s, one browser watching {mb:.1f} MB/s: "
      f"ratio {mb / ma:.2f} (medians of {len(a)} alternating runs)")
PY

#!/usr/bin/env bash
# A stand-in for the xmppscope binary that tests/bench/bench_proxy runs: the proxy with --web on a
# free port, watched by a real browser (watch.mjs) for as long as it runs. For the paired
# measurement "bulk throughput with one browser watching vs without":
#
#   bash tests/integration/web/install.sh                  # playwright-core, once
#   XS_WEB_REAL=build-rel/proxy/xmppscope \
#     build-rel/tests/bench_proxy --xmppscope tests/integration/web/bench-watched.sh \
#     --scenarios bulk --targets xmppscope
#
# Its process becomes the proxy (exec), so the benchmark measures and stops the proxy itself.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
real=${XS_WEB_REAL:?set XS_WEB_REAL to the xmppscope binary}
deps=$(bash "$here/install.sh")
cp "$here/watch.mjs" "$deps/watch.mjs"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
me=$$
(
  # The URL is on the proxy's standard error (a file the benchmark gave it).
  for _ in $(seq 100); do
    url=$(grep -ao 'http://[^ ]*token=[0-9a-f]*' "/proc/$me/fd/2" 2>/dev/null | head -1 || true)
    [[ -n "$url" ]] && break
    sleep 0.1
  done
  [[ -n "$url" ]] && cd "$deps" && exec node watch.mjs "$url" "$me" </dev/null >&2
) &
exec "$real" "$@" --web "127.0.0.1:$port"

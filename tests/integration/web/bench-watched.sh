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
# XS_WEB_NO_BROWSER=1: the same proxy with --web and no browser (the other half of the pair).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
real=${XS_WEB_REAL:?set XS_WEB_REAL to the xmppscope binary}
deps=$(bash "$here/install.sh")
cp "$here/watch.mjs" "$deps/watch.mjs"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
me=$$
if [[ -z "${XS_WEB_NO_BROWSER:-}" ]]; then
  # The browser starts first (its start-up is not part of watching); it finds the URL on this
  # process's standard error once it is the proxy.
  ready=$(mktemp -u /tmp/xs-watch-ready.XXXXXX)
  (cd "$deps" && exec node watch.mjs "$me" "$ready" </dev/null >&2) &
  for _ in $(seq 300); do [[ -e "$ready" ]] && break; sleep 0.05; done
  rm -f "$ready"
fi
exec "$real" "$@" --web "127.0.0.1:$port"

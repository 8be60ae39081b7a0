#!/usr/bin/env bash
# Regenerates examples/primer.md: builds xmppscope, records a real session (a private Prosody on
# 127.0.0.1, slixmpp clients through xmppscope; the log, secrets masked, goes to
# examples/captures/primer.jsonl), then explains it with `xmppscope inspect --explain` in English
# and Simplified Chinese. Without --record only the page is rebuilt from the committed log.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build xmppscope >/dev/null
exec /usr/bin/python3 examples/primer.py --record "$@"

#!/usr/bin/env bash
# The demo: installs what is needed (Debian 12, as root), builds xmppscope, starts a private
# Prosody on 127.0.0.1 with two users, puts xmppscope in front of it and runs a real client
# session through it (log in, roster, presence, a message from alice to bob). The stanzas of
# both directions stay on the screen.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build xmppscope >/dev/null
exec /usr/bin/python3 examples/demo.py "$@"

#!/usr/bin/env bash
# Installs playwright-core (drives Debian's chromium; no browser is downloaded), at the versions pinned in package-lock.json beside this script, into a cache
# folder for the web inspector's browser tests (tests/integration/test_web.py), and prints that
# folder. Nothing is installed into the checkout.
#
#   bash tests/integration/web/install.sh [DIR]
#
# DIR defaults to ${XDG_CACHE_HOME:-~/.cache}/xmppscope/web-HASH, HASH naming the lock file, so
# a new pin gets a new folder. Quick when the folder is complete: npm runs only when it is not.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
hash=$(sha256sum "$here/package-lock.json" | cut -c1-12)
dir=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/xmppscope/web-$hash}

if [[ -f "$dir/.complete" ]] && cmp -s "$here/package-lock.json" "$dir/package-lock.json"; then
  echo "$dir"
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "web/install.sh: npm not found: install nodejs and npm (bash tests/install-deps.sh)" >&2
  exit 1
fi
mkdir -p "$dir"
rm -f "$dir/.complete"
cp "$here/package.json" "$here/package-lock.json" "$dir/"
log="$dir/npm-ci.log"
# npm ci installs exactly the lock file's versions and checks their integrity hashes; no
# install scripts are run.
if ! (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund --omit-lockfile-registry-resolved \
      </dev/null >"$log" 2>&1); then
  echo "web/install.sh: 'npm ci' failed in $dir (log: $log):" >&2
  tail -n 20 "$log" >&2 || true
  exit 1
fi
touch "$dir/.complete"
echo "$dir"

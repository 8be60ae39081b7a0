#!/usr/bin/env bash
# Installs what xmppscope needs to build and test on Debian 12 (run as root, no stdin), and
# xmpp.js from npm into a cache folder for the interoperability matrix.
# Fast and offline-safe when everything is already there: apt-get runs only for missing packages,
# npm only when the pinned xmpp.js is not in its cache folder.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config
  clang libclang-rt-14-dev            # clang's libFuzzer and sanitizer runtimes
  libuv1-dev libssl-dev openssl libxml2-dev libjansson-dev libpcre2-dev libcmocka-dev
  prosody                             # lua5.4-unbound (a Recommends) is not needed: s2s is off
  python3 python3-slixmpp
  ca-certificates
  iproute2                            # ss
  # The interoperability matrix (tests/integration/test_interop.py): a second server and the
  # clients besides slixmpp.
  ejabberd
  libstrophe-dev                      # tests/integration/clients/strophe_send.c
  go-sendxmpp sendxmpp
  # Understanding a session: --pcap (libpcap's dump API) read back by tshark; JID checks
  # (libidn2: IDNA2008 for domain parts).
  libpcap-dev tshark libidn2-dev
  # The web inspector (libwebsockets on the libuv loop) and the browser its tests drive.
  libwebsockets-dev chromium
  # Reaching every server: c-ares on the loop for SRV, dnsmasq as the tests' private resolver.
  libc-ares-dev dnsmasq-base
  # ... and its tests: a real HAProxy for the PROXY protocol, proxychains4 to give slixmpp a
  # SOCKS5 proxy, nftables for the transparent mode's REDIRECT in network namespaces.
  haproxy proxychains4 nftables
)
# xmpp.js runs on the machine's Node.js. A nodejs from another source may bundle npm and conflict
# with Debian's npm package: ask for either package only when its command is missing.
command -v node >/dev/null || PACKAGES+=(nodejs)
command -v npm >/dev/null || PACKAGES+=(npm)

# xmpp.js at the versions pinned in tests/integration/clients/xmppjs/package-lock.json.
install_xmppjs() {
  local dir
  if ! dir=$(bash "$(dirname "$0")/integration/clients/xmppjs/install.sh"); then
    echo "install-deps: installing xmpp.js from npm failed (see above)" >&2
    exit 1
  fi
  echo "install-deps: xmpp.js is in $dir"
}

# playwright-core for the web inspector's browser tests (tests/integration/web/package-lock.json);
# it drives Debian's chromium, no browser is downloaded.
install_web() {
  local dir
  if ! dir=$(bash "$(dirname "$0")/integration/web/install.sh"); then
    echo "install-deps: installing playwright-core from npm failed (see above)" >&2
    exit 1
  fi
  echo "install-deps: playwright-core is in $dir"
}

# One dpkg-query for all; a package it does not know is simply absent from its output.
declare -A installed=()
while read -r name status; do
  if [[ "$status" == "install ok installed" ]]; then installed["${name%%:*}"]=1; fi
done < <(dpkg-query -W -f='${Package} ${Status}\n' "${PACKAGES[@]}" 2>/dev/null || true)
missing=()
for p in "${PACKAGES[@]}"; do
  [[ -n "${installed[$p]:-}" ]] || missing+=("$p")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#PACKAGES[@]} packages already installed; nothing to do"
  install_xmppjs
  install_web
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: missing packages (${missing[*]}) and not root: cannot install" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp /tmp/install-deps.XXXXXX.log)
if ! apt-get update -qq >"$log" 2>&1; then
  echo "install-deps: 'apt-get update' failed and packages are missing: ${missing[*]} (log: $log)" >&2
  tail -n 20 "$log" >&2 || true
  exit 1
fi
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    </dev/null >"$log" 2>&1; then
  echo "install-deps: 'apt-get install' failed for: ${missing[*]} (log: $log)" >&2
  tail -n 30 "$log" >&2 || true
  exit 1
fi
rm -f "$log"
echo "install-deps: installed ${#missing[@]} missing packages: ${missing[*]}"
install_xmppjs
install_web

#!/usr/bin/python3
"""The live demo: Prosody on 127.0.0.1, xmppscope in front of it, alice and bob through it.

Run by examples/demo.sh after the build. Everything lives in a temporary folder (Prosody's
config and data, xmppscope's CA, the JSON Lines log) that is removed at the end, unless
--keep is given."""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

from xmpptest.client import alice_to_bob  # noqa: E402
from xmpptest.prosody import Prosody  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--format", default="pretty", help="pretty (default), compact or json")
    ap.add_argument("--mech", default="SCRAM-SHA-1", help="SASL mechanism (default SCRAM-SHA-1)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--binary", default=os.path.join(HERE, "..", "build", "proxy", "xmppscope"))
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="xmppscope-demo.")
    log = os.path.join(tmp, "session.jsonl")
    with Prosody() as server:
        server.register("alice", "alicepass")
        server.register("bob", "bobpass")
        print(f"demo: Prosody {server.domain} on 127.0.0.1:{server.starttls_port} (STARTTLS)",
              flush=True)
        proxy = subprocess.Popen(
            [args.binary, "proxy", "--listen", "127.0.0.1:0", "--upstream",
             f"127.0.0.1:{server.starttls_port}", "--upstream-ca", server.ca_file,
             "--ca-dir", os.path.join(tmp, "ca"), "--write", log, "--format", args.format],
            stderr=subprocess.PIPE, text=True)
        port = None
        deadline = time.time() + 10
        while port is None and time.time() < deadline:
            line = proxy.stderr.readline()
            if not line:
                break
            sys.stderr.write(line)
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
        if port is None:
            proxy.kill()
            sys.exit("demo: xmppscope did not start (see above)")
        print(f"demo: xmppscope on 127.0.0.1:{port}; alice and bob log in through it\n",
              flush=True)
        result = alice_to_bob("alice@example.test", "alicepass", "bob@example.test", "bobpass",
                              "127.0.0.1", port, "starttls",
                              os.path.join(tmp, "ca", "ca.crt"), args.mech,
                              message="Hello Bob, this went through xmppscope!", timeout=20)
        time.sleep(0.3)
        proxy.send_signal(signal.SIGTERM)
        try:
            rest = proxy.communicate(timeout=10)[1]
        except subprocess.TimeoutExpired:
            proxy.kill()
            rest = proxy.communicate()[1]
        sys.stderr.write(rest)
    print()
    if result["ok"] and result["delivered"]:
        print("demo: alice's message was delivered to bob through xmppscope.")
    else:
        print(f"demo: the session failed: {result['error']}")
    print(f"demo: the JSON Lines log has {sum(1 for _ in open(log))} events; read it back with")
    print(f"      build/proxy/xmppscope inspect {log}" if args.keep else
          "      xmppscope inspect FILE (run with --keep to keep it)")
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if result["ok"] and result["delivered"] else 1


if __name__ == "__main__":
    sys.exit(main())

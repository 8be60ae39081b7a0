"""A private HAProxy on 127.0.0.1 that relays TCP to a backend and sends it a PROXY protocol
header first (send-proxy: v1, send-proxy-v2: v2), as a load balancer in front of xmppscope does.

    with HAProxy(backend=("127.0.0.1", 5222), version=2) as h:
        ... connect to h.port ...
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time

from .prosody import _listening_ports, free_ports, wait_gone

__all__ = ["HAProxy", "HAProxyError", "HAPROXY"]

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


class HAProxyError(RuntimeError):
    """HAProxy could not be started."""


class HAProxy:
    def __init__(self, backend, version=1):
        if not os.path.exists(HAPROXY):
            raise HAProxyError(f"{HAPROXY} not found (apt-get install haproxy)")
        self.tmpdir = tempfile.mkdtemp(prefix="xmpptest-haproxy-")
        self.port = free_ports(1)[0]
        self.cfg = os.path.join(self.tmpdir, "haproxy.cfg")
        send = "send-proxy" if version == 1 else "send-proxy-v2"
        with open(self.cfg, "w") as f:
            f.write("global\n  maxconn 100\n"
                    "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n"
                    "  timeout server 60s\n"
                    f"frontend fe\n  bind 127.0.0.1:{self.port}\n  default_backend be\n"
                    f"backend be\n  server xmppscope {backend[0]}:{backend[1]} {send}\n")
        self.log_path = os.path.join(self.tmpdir, "haproxy.log")
        log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen([HAPROXY, "-db", "-f", self.cfg], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise HAProxyError(f"haproxy exited with {self.proc.returncode}:\n"
                                   f"{self.log_text()}")
            if self.port in _listening_ports():
                return
            if time.monotonic() > deadline:
                self.cleanup()
                raise HAProxyError(f"haproxy did not listen within 10 s\n{self.log_text()}")
            time.sleep(0.02)

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def cleanup(self):
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            wait_gone(proc.pid)
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()
        return False

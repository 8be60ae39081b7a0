"""A private DNS server (dnsmasq) on 127.0.0.1 with the records a test gives, for the proxy's
--dns. It never reads /etc/resolv.conf or /etc/hosts and forwards nothing.

    with Dns(srv=[("_xmpp-client._tcp.a.test", "xmpp.a.test", 5222, 10, 0)],
             hosts={"xmpp.a.test": ["127.0.0.1"]}) as d:
        ... xmppscope proxy --dns 127.0.0.1:{d.port} ...
"""

import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

from .prosody import free_ports, wait_gone

__all__ = ["Dns", "DnsError", "DNSMASQ"]

DNSMASQ = "/usr/sbin/dnsmasq"


class DnsError(RuntimeError):
    """dnsmasq could not be started."""


def _query(port, name, qtype=33, timeout=0.5):
    """One UDP query to 127.0.0.1:port; returns the answer count (for the readiness check)."""
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\0"
    msg = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(msg, ("127.0.0.1", port))
        data, _ = s.recvfrom(4096)
    return struct.unpack(">H", data[6:8])[0]


class Dns:
    """One dnsmasq on 127.0.0.1 (UDP and TCP) on a free port.

    srv    [(name, target, port, priority, weight)]: SRV records ("." as target: not offered)
    hosts  {name: [address, ...]}: A and AAAA records
    """

    def __init__(self, srv=(), hosts=None, start=True):
        if not os.path.exists(DNSMASQ):
            raise DnsError(f"{DNSMASQ} not found (install dnsmasq-base: tests/install-deps.sh)")
        self.srv = list(srv)
        self.hosts = dict(hosts or {})
        self.tmpdir = tempfile.mkdtemp(prefix="xmpptest-dns-")
        self.port = free_ports(1)[0]
        self.proc = None
        if start:
            self.start()

    @property
    def server(self):
        return f"127.0.0.1:{self.port}"

    def argv(self):
        a = [DNSMASQ, "--no-daemon", "--port", str(self.port), "--listen-address", "127.0.0.1",
             "--bind-interfaces", "--no-resolv", "--no-hosts", "--no-negcache",
             "--log-queries", "--log-facility=-", "--pid-file=" + os.path.join(self.tmpdir, "pid"),
             "--user=" + ("root" if os.geteuid() == 0 else str(os.getuid()))]
        for name, target, port, prio, weight in self.srv:
            if target == ".":
                a.append(f"--srv-host={name}")  # no target: "the service is not offered"
            else:
                a.append(f"--srv-host={name},{target},{port},{prio},{weight}")
        for name, addrs in self.hosts.items():
            a.append(f"--host-record={name}," + ",".join(addrs))
        return a

    def start(self):
        self.log_path = os.path.join(self.tmpdir, "dnsmasq.log")
        log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise DnsError(f"dnsmasq exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                _query(self.port, "ready.invalid", 1, 0.2)
                return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise DnsError(f"dnsmasq did not answer within 10 s\n{self.log_text()}")
            time.sleep(0.02)

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        wait_gone(proc.pid)

    def cleanup(self):
        self.stop()
        if not os.environ.get("XMPPTEST_KEEP"):
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()
        return False

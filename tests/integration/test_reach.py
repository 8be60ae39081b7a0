"""The proxy reaches servers the way a client does: SRV records (--upstream DOMAIN), the domain
each client asks for (--upstream auto, --allow-domain), behind a load balancer (--proxy-protocol),
as a SOCKS5 proxy (--listen-socks) and transparently (--listen-transparent), over IPv4 and IPv6.

    cd tests/integration
    XMPPSCOPE=../../build/proxy/xmppscope /usr/bin/python3 -m unittest -v test_reach

A private DNS server (dnsmasq on 127.0.0.1, xmpptest/dns.py) holds SRV records for two domains
served by two Prosody instances; real slixmpp clients log in through the proxy, directly, behind
a real HAProxy (xmpptest/haproxy.py), or under proxychains4 (a real SOCKS5 client). Everything
listens on 127.0.0.1, except in the two network namespaces that TestTransparent makes (and
removes) for the kernel's redirection and for IPv6. Each test's proxy is stopped with SIGTERM and
must exit 0 with no sanitizer report. Needs dnsmasq-base, haproxy, proxychains4 and nftables.
"""

import ctypes
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from xmpptest.client import run_session  # noqa: E402
from xmpptest import rawclient  # noqa: E402
from xmpptest.dns import Dns  # noqa: E402
from xmpptest.haproxy import HAProxy  # noqa: E402
from xmpptest.prosody import Prosody, free_ports  # noqa: E402
from xmpptest.proxy import Proxy, ProxyError, xmppscope_binary  # noqa: E402

HOST = "127.0.0.1"
PASSWORD = "alicepass"


class ReachCase(unittest.TestCase):
    """Two Prosody servers (a.test and b.test), a DNS server with their SRV records, and proxies
    that tearDown stops (exit 0, no sanitizer report, else the proxy's output is shown)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="xmpptest-reach-")
        cls.ca_dir = os.path.join(cls.tmp, "ca")
        cls.pa = Prosody(domain="a.test")
        cls.pb = Prosody(domain="b.test")
        for p in (cls.pa, cls.pb):
            p.register("alice", PASSWORD)
        # The proxy trusts both servers' CAs.
        cls.bundle = os.path.join(cls.tmp, "servers-ca.pem")
        with open(cls.bundle, "w") as f:
            for p in (cls.pa, cls.pb):
                with open(p.ca_file) as g:
                    f.write(g.read())
        cls.dead = free_ports(1)[0]  # nothing listens there
        pa, pb = cls.pa, cls.pb
        cls.dns = Dns(
            srv=[
                # a.test: the best target is down, the next one answers (STARTTLS); a direct TLS
                # target comes after both.
                ("_xmpp-client._tcp.a.test", "down.a.test", cls.dead, 5, 0),
                ("_xmpp-client._tcp.a.test", "xmpp.a.test", pa.starttls_port, 10, 0),
                ("_xmpps-client._tcp.a.test", "xmpp.a.test", pa.direct_tls_port, 20, 0),
                # b.test: direct TLS first (XEP-0368), STARTTLS after.
                ("_xmpps-client._tcp.b.test", "tls.b.test", pb.direct_tls_port, 5, 0),
                ("_xmpp-client._tcp.b.test", "tls.b.test", pb.starttls_port, 10, 0),
                # c.test exists, but a proxy limited by --allow-domain must not go there.
                ("_xmpp-client._tcp.c.test", "xmpp.a.test", pa.starttls_port, 0, 0),
                # d.test: its only server is down.
                ("_xmpp-client._tcp.d.test", "down.a.test", cls.dead, 0, 0),
            ],
            hosts={"down.a.test": [HOST], "xmpp.a.test": [HOST], "tls.b.test": [HOST]})

    @classmethod
    def tearDownClass(cls):
        for x in (cls.dns, cls.pa, cls.pb):
            x.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.proxies = []

    def start_proxy(self, upstream, extra=(), dns=True, **kw):
        kw.setdefault("ca_dir", self.ca_dir)
        x = Proxy(upstream=upstream, upstream_ca=self.bundle,
                  extra=(["--dns", self.dns.server] if dns else []) + list(extra), **kw)
        self.proxies.append(x)
        return x

    def _failed(self):
        result = getattr(getattr(self, "_outcome", None), "result", None)
        for test, _ in list(getattr(result, "failures", [])) + list(getattr(result, "errors", [])):
            if test is self or getattr(test, "test_case", None) is self:
                return True
        return False

    def tearDown(self):
        problems = []
        for x in self.proxies:
            try:
                rc = x.stop(timeout=10)
                if rc != 0:
                    problems.append(f"xmppscope exited with {rc} after SIGTERM")
            except ProxyError as e:
                problems.append(str(e))
            rep = x.sanitizer_report()
            if rep:
                problems.append("sanitizer report on xmppscope's stderr:\n" + rep[-4000:])
        if problems or self._failed():
            for x in self.proxies:
                sys.stderr.write(f"\n===== {self.id()}: xmppscope output =====\n{x.dump()}")
            if self.dns is not None:
                sys.stderr.write(f"\n===== dnsmasq =====\n{self.dns.log_text()[-3000:]}")
        for x in self.proxies:
            x.cleanup()
        if problems:
            self.fail("\n".join(problems))

    def login(self, x, domain, tls="starttls", **kw):
        port = x.tls_port if tls == "direct" else x.port
        return run_session(f"alice@{domain}", PASSWORD, HOST, port, tls=tls, ca_file=x.ca_file,
                           timeout=kw.pop("timeout", 15), **kw)

    def assertInOrder(self, text, *patterns):
        pos = 0
        for p in patterns:
            m = re.compile(p).search(text, pos)
            self.assertIsNotNone(m, f"{p!r} not found after offset {pos}")
            pos = m.end()


class TestSrv(ReachCase):
    def test_auto_carries_a_login_to_each_domain(self):
        """One proxy in auto mode: alice@a.test (STARTTLS) and alice@b.test (direct TLS) each
        reach their own server, found by SRV; a.test's first target is down."""
        x = self.start_proxy("auto")
        ra = self.login(x, "a.test")
        self.assertTrue(ra["ok"], ra["error"])
        self.assertTrue(ra["bound_jid"].startswith("alice@a.test/"))
        rb = self.login(x, "b.test", tls="direct")
        self.assertTrue(rb["ok"], rb["error"])
        self.assertTrue(rb["bound_jid"].startswith("alice@b.test/"))
        out = x.stdout_text()
        pa, pb = self.pa, self.pb
        # a.test: every target shown in order, the first one fails, the second is used.
        self.assertInOrder(
            out,
            rf"SRV _xmpp-client\._tcp\.a\.test → down\.a\.test:{self.dead} \(prio 5",
            rf"SRV _xmpp-client\._tcp\.a\.test → xmpp\.a\.test:{pa.starttls_port} \(prio 10",
            rf"SRV _xmpps-client\._tcp\.a\.test → xmpp\.a\.test:{pa.direct_tls_port} \(prio 20",
            rf"cannot connect to 127\.0\.0\.1:{self.dead} \(down\.a\.test\): connection refused",
            rf"connected to 127\.0\.0\.1:{pa.starttls_port} \(xmpp\.a\.test:{pa.starttls_port}, "
            r"STARTTLS\)",
            r"server leg: connected \(starttls\)",
            r"server certificate CN=a\.test \(ok\)")
        # b.test: the direct TLS target has the better priority: the server leg is direct TLS.
        self.assertInOrder(
            out,
            rf"SRV _xmpps-client\._tcp\.b\.test → tls\.b\.test:{pb.direct_tls_port} \(prio 5",
            rf"connected to 127\.0\.0\.1:{pb.direct_tls_port} \(tls\.b\.test:"
            rf"{pb.direct_tls_port}, direct TLS\)",
            r"server leg: connected \(direct\)",
            r"server certificate CN=b\.test \(ok\)")

    def test_domain_upstream_checks_the_domain_not_the_target(self):
        """--upstream a.test: the SRV target is xmpp.a.test, the certificate names only a.test
        (RFC 6125: the domain is the reference identity), and the login succeeds."""
        x = self.start_proxy("a.test")
        self.assertIn("upstream a.test", x.stderr_text())
        r = self.login(x, "a.test", tls="direct")
        self.assertTrue(r["ok"], r["error"])
        self.assertRegex(x.stdout_text(), r"server certificate CN=a\.test \(ok\)")

    def test_upstream_tls_starttls_follows_only_xmpp_client(self):
        """--upstream-tls starttls: b.test's better direct TLS target is not used."""
        x = self.start_proxy("b.test", upstream_tls="starttls")
        r = self.login(x, "b.test", tls="direct")
        self.assertTrue(r["ok"], r["error"])
        out = x.stdout_text()
        self.assertNotIn("_xmpps-client", out)
        self.assertRegex(out, rf"connected to 127\.0\.0\.1:{self.pb.starttls_port} .*STARTTLS")

    def test_allow_domain_refuses_another_domain(self):
        x = self.start_proxy("auto", extra=["--allow-domain", "a.test",
                                            "--allow-domain", "*.b.test"])
        self.assertIn("auto: connecting only to a.test, *.b.test", x.stderr_text())
        r = self.login(x, "c.test", timeout=8)
        self.assertFalse(r["ok"])
        self.assertEqual((r["stream_error"] or {}).get("condition"), "remote-connection-failed",
                         r["error"])
        self.assertRegex(x.stdout_text(),
                         r"error: upstream: cannot connect to the server: c\.test is not allowed "
                         r"by --allow-domain: refused: <remote-connection-failed/> to the client")
        self.assertNotIn("_xmpp-client._tcp.c.test", self.dns.log_text())
        # The allowed domain still works through the same proxy.
        r = self.login(x, "a.test")
        self.assertTrue(r["ok"], r["error"])

    def test_every_target_down(self):
        x = self.start_proxy("auto")
        r = self.login(x, "d.test", timeout=8)
        self.assertEqual((r["stream_error"] or {}).get("condition"), "remote-connection-failed",
                         r["error"])
        self.assertRegex(x.stdout_text(), r"every server of d\.test failed \(last: down\.a\.test:"
                                          rf"{self.dead} \(127\.0\.0\.1:{self.dead}\): connection "
                                          r"refused\)")

    def test_auto_without_allow_domain_listens_on_loopback_only(self):
        r = subprocess.run([xmppscope_binary(), "proxy", "--upstream", "auto", "--ca-dir",
                            self.ca_dir, "--listen", "0.0.0.0:0", "--dns", self.dns.server],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--upstream auto without --allow-domain listens on loopback only",
                      r.stderr)

    def test_bad_options(self):
        cases = [
            (["--upstream", "exa mple"], "cannot read --upstream 'exa mple'"),
            (["--upstream", "a.test", "--upstream-direct", "127.0.0.1:1"],
             "--upstream-direct goes with --upstream HOST:PORT"),
            (["--upstream", "127.0.0.1:1", "--allow-domain", "a.test"],
             "--allow-domain goes with --upstream auto"),
            (["--upstream", "auto", "--allow-domain", "a b"], "--allow-domain takes a domain"),
            (["--upstream", "auto", "--dns", "not-an-address"], "cannot read --dns"),
        ]
        for args, want in cases:
            with self.subTest(args=args):
                r = subprocess.run([xmppscope_binary(), "proxy", "--ca-dir", self.ca_dir,
                                    "--listen", "127.0.0.1:0", *args],
                                   stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                   timeout=20)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(want, r.stderr)


class TestProxyProtocol(ReachCase):
    """--proxy-protocol behind a real HAProxy (send-proxy and send-proxy-v2)."""

    def start_pp_proxy(self):
        pa = self.pa
        return self.start_proxy((HOST, pa.starttls_port), dns=False,
                                upstream_direct=(HOST, pa.direct_tls_port),
                                extra=["--proxy-protocol"])

    def test_v1_and_v2_from_haproxy(self):
        x = self.start_pp_proxy()
        for version, tls, port in ((1, "starttls", x.port), (2, "direct", x.tls_port)):
            with self.subTest(version=version), HAProxy((HOST, port), version=version) as h:
                before = x.stdout_text()
                r = run_session("alice@a.test", PASSWORD, HOST, h.port, tls=tls,
                                ca_file=x.ca_file, timeout=15)
                self.assertTrue(r["ok"], f"{r['error']}\n{h.log_text()}")
                out = x.stdout_text()[len(before):]
                m = re.search(rf"PROXY protocol v{version} from 127\.0\.0\.1:(\d+): the client is "
                              rf"127\.0\.0\.1:(\d+), it connected to 127\.0\.0\.1:{h.port}", out)
                self.assertIsNotNone(m, out[:3000])
                sender, client = m.groups()
                self.assertNotEqual(sender, client)
                # The session is the client's: its first line names the real client.
                self.assertRegex(out, rf"client 127\.0\.0\.1:{client} connected")

    def test_bad_header_refused_without_affecting_other_sessions(self):
        x = self.start_pp_proxy()
        good = rawclient.RawClient(x.port)
        good.send(b"PROXY TCP4 192.0.2.10 127.0.0.1 40000 5222\r\n" +
                  rawclient.stream_header("a.test"))
        self.assertIn(b"starttls", good.read_features())
        bad_inputs = [
            b"PROXY TCP4 192.0.2.10 127.0.0.1 40000 522222\r\n",
            b"PROXY TCP4 192.0.2.10  127.0.0.1 40000 5222\r\n",
            b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x05\x00\x00\x00\x00\x00",
            rawclient.stream_header("a.test"),
            b"PROXY UNKNOWN " + b"x" * 200,
        ]
        for data in bad_inputs:
            with self.subTest(data=data[:30]):
                with rawclient.RawClient(x.port) as c:
                    c.send(data)
                    got = c.read_all(timeout=5)
                self.assertEqual(got, b"", "nothing is said to a sender with a bad header")
        err = x.stderr_text()
        for why in ("v1: an address or a port cannot be read",
                    "v1: expected 'PROXY TCP4|TCP6 SRC DST SPORT DPORT' with single spaces",
                    "v2: shorter than the addresses of its family",
                    "no PROXY protocol header (neither 'PROXY ' nor the v2 signature)",
                    "v1: no CRLF within 107 bytes"):
            self.assertRegex(err, r"refusing the connection of 127\.0\.0\.1:\d+ on "
                                  r"127\.0\.0\.1:\d+: bad PROXY protocol header: " + re.escape(why))
        # The good session goes on: STARTTLS and a login on the same connection.
        good.send(rawclient.STARTTLS)
        self.assertRegex(good.read_until(rb"<proceed"), rb"<proceed")
        good.close()
        self.assertRegex(x.stdout_text(), r"client 192\.0\.2\.10:40000 connected")
        self.assertIn("the client is 192.0.2.10:40000, it connected to 127.0.0.1:5222",
                      x.stdout_text())
        self.assertTrue(x.running)


PROXYCHAINS = shutil.which("proxychains4")


class TestSocks(ReachCase):
    """--listen-socks: slixmpp, a real client, made to use SOCKS5 by proxychains4 (a real SOCKS5
    client: it hooks the process's connect() and resolves names through the proxy, so the
    request names the server: CONNECT xmpp.a.test:PORT)."""

    def setUp(self):
        super().setUp()
        if PROXYCHAINS is None:
            self.fail("proxychains4 is needed (apt-get install proxychains4)")

    def start_socks_proxy(self, extra=()):
        x = self.start_proxy((HOST, self.pa.starttls_port), extra=["--listen-socks", f"{HOST}:0",
                                                                    *extra])
        m = re.search(r"SOCKS5 proxy on 127\.0\.0\.1:(\d+)", x.stderr_text())
        self.assertIsNotNone(m, x.stderr_text())
        return x, int(m.group(1))

    def socks_login(self, socks_port, x, domain, host, port, tls, auth=""):
        conf = os.path.join(self.tmp, f"proxychains-{socks_port}.conf")
        with open(conf, "w") as f:
            f.write("strict_chain\nproxy_dns\nremote_dns_subnet 224\n"
                    "tcp_read_time_out 15000\ntcp_connect_time_out 8000\n"
                    f"[ProxyList]\nsocks5 127.0.0.1 {socks_port} {auth}\n")
        r = subprocess.run([PROXYCHAINS, "-q", "-f", conf, sys.executable, "-m", "xmpptest.client",
                            "session", "--jid", f"alice@{domain}", "--password", PASSWORD,
                            "--host", host, "--port", str(port), "--tls", tls,
                            "--ca-file", x.ca_file, "--timeout", "15"],
                           cwd=os.path.dirname(os.path.abspath(__file__)),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        try:
            return json.loads(r.stdout)
        except ValueError:
            return {"ok": False, "error": f"exit {r.returncode}: {r.stdout[-500:]}{r.stderr[-1500:]}"}

    def test_slixmpp_logs_in_through_socks5(self):
        x, sp = self.start_socks_proxy()
        pa, pb = self.pa, self.pb
        for domain, host, port, tls in (("a.test", "xmpp.a.test", pa.starttls_port, "starttls"),
                                        ("a.test", "xmpp.a.test", pa.direct_tls_port, "direct"),
                                        ("b.test", "tls.b.test", pb.direct_tls_port, "direct")):
            with self.subTest(host=host, tls=tls):
                before = len(x.stdout_text())
                r = self.socks_login(sp, x, domain, host, port, tls)
                self.assertTrue(r["ok"], r["error"])
                self.assertTrue(r["bound_jid"].startswith(f"alice@{domain}/"))
                out = x.stdout_text()[before:]
                first = "TLS first \\(direct TLS\\)" if tls == "direct" else \
                    "XMPP first \\(STARTTLS\\)"
                self.assertRegex(out, rf"SOCKS5 from 127\.0\.0\.1:\d+: CONNECT {re.escape(host)}:"
                                      rf"{port}, connected to {re.escape(host)}:{port}; the client "
                                      rf"speaks {first}")
                self.assertRegex(out, rf"server certificate CN={re.escape(domain)} \(ok\)")

    def test_username_password(self):
        x, sp = self.start_socks_proxy(extra=["--socks-auth", "bob:s3cret"])
        self.assertIn("username/password required", x.stderr_text())
        r = self.socks_login(sp, x, "a.test", "xmpp.a.test", self.pa.starttls_port, "starttls",
                             auth="bob s3cret")
        self.assertTrue(r["ok"], r["error"])
        self.assertIn("(user 'bob')", x.stdout_text())
        r = self.socks_login(sp, x, "a.test", "xmpp.a.test", self.pa.starttls_port, "starttls",
                             auth="bob wrong")
        self.assertFalse(r["ok"])
        self.assertRegex(x.stderr_text(), r"refusing the SOCKS5 client 127\.0\.0\.1:\d+: wrong "
                                          r"SOCKS user name or password")

    def raw_socks(self, port, data, expect_len):
        with socket.create_connection((HOST, port), timeout=10) as s:
            s.sendall(data)
            got = b""
            while len(got) < expect_len:
                chunk = s.recv(100)
                if not chunk:
                    break
                got += chunk
            s.settimeout(5)
            rest = s.recv(100)  # then the proxy closes
            return got, rest

    def test_refusals(self):
        x, sp = self.start_socks_proxy(extra=["--allow-domain", "*.a.test"])
        name = b"xmpp.c.test"
        req = b"\x05\x01\x00" + b"\x05\x01\x00\x03" + bytes([len(name)]) + name + b"\x14\x66"
        got, rest = self.raw_socks(sp, req, 12)
        self.assertEqual(got[:4], b"\x05\x00\x05\x02", "not allowed by ruleset")
        self.assertEqual(rest, b"")
        self.assertRegex(x.stderr_text(), r"CONNECT xmpp\.c\.test:5222: refused: xmpp\.c\.test is "
                                          r"not allowed by --allow-domain")
        name = b"down.a.test"
        req = (b"\x05\x01\x00\x05\x01\x00\x03" + bytes([len(name)]) + name +
               self.dead.to_bytes(2, "big"))
        got, rest = self.raw_socks(sp, req, 12)
        self.assertEqual(got[:4], b"\x05\x00\x05\x05", "connection refused")
        self.assertRegex(x.stderr_text(), rf"CONNECT down\.a\.test:{self.dead} refused: every "
                                          r"server of down\.a\.test failed")
        got, rest = self.raw_socks(sp, b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00", 1)
        self.assertEqual(got, b"")
        self.assertIn("SOCKS4 is not supported: use SOCKS5", x.stderr_text())
        self.assertTrue(x.running)

    def test_non_loopback_needs_allow_domain(self):
        r = subprocess.run([xmppscope_binary(), "proxy", "--ca-dir", self.ca_dir,
                            "--listen-socks", "0.0.0.0:0"], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=20)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--listen-socks without --allow-domain listens on loopback only", r.stderr)


class NetNs:
    """Two network namespaces made by the test and removed by cleanup(): C (the client's) and P
    (the proxy's and the server's), joined by a veth pair, 10.77.0.2 and fd77::2 in C, 10.77.0.1
    and fd77::1 in P. Everything in P that the test starts is started from inside P (setns on
    the test's own thread, then back)."""

    CLONE_NEWNET = 0x40000000

    def __init__(self):
        tag = f"{os.getpid() % 100000}"
        self.c, self.p = f"xsc{tag}", f"xsp{tag}"
        self.made = []
        self.libc = ctypes.CDLL(None, use_errno=True)

    @staticmethod
    def ip(*args, check=True):
        return subprocess.run(["ip", *args], capture_output=True, text=True, check=check,
                              timeout=20)

    @classmethod
    def unavailable(cls):
        """Why namespaces cannot be used here, or None."""
        if os.geteuid() != 0:
            return "network namespaces need root"
        name = f"xsprobe{os.getpid() % 100000}"
        r = cls.ip("netns", "add", name, check=False)
        if r.returncode != 0:
            return f"'ip netns add' is refused here: {r.stderr.strip()}"
        cls.ip("netns", "del", name, check=False)
        return None

    def create(self, redirect_ports, to_port):
        for ns in (self.c, self.p):
            self.ip("netns", "add", ns)
            self.made.append(ns)
            self.ip("-n", ns, "link", "set", "lo", "up")
        self.ip("link", "add", "vc", "netns", self.c, "type", "veth", "peer", "name", "vp",
                "netns", self.p)
        for ns, dev, a4, a6 in ((self.c, "vc", "10.77.0.2/24", "fd77::2/64"),
                                (self.p, "vp", "10.77.0.1/24", "fd77::1/64")):
            self.ip("-n", ns, "addr", "add", a4, "dev", dev)
            self.ip("-n", ns, "addr", "add", a6, "dev", dev, "nodad")
            self.ip("-n", ns, "link", "set", dev, "up")
        # A second address of the server's, which REDIRECT does not keep (it uses the first).
        self.ip("-n", self.p, "addr", "add", "10.77.0.9/24", "dev", "vp")
        ports = ", ".join(str(p) for p in redirect_ports)
        rules = "".join(f"table {fam} xs {{\n  chain pre {{\n"
                        "    type nat hook prerouting priority dstnat; policy accept;\n"
                        f"    iifname \"vp\" tcp dport {{ {ports} }} redirect to :{to_port}\n"
                        "  }\n}\n" for fam in ("ip", "ip6"))
        r = subprocess.run(["ip", "netns", "exec", self.p, "nft", "-f", "-"], input=rules,
                           text=True, capture_output=True, timeout=20)
        if r.returncode != 0:
            raise RuntimeError(f"nft refused the REDIRECT rules: {r.stderr}")

    def enter_p(self):
        """Context: the test's thread in P (children started inside stay there)."""
        ns = self

        class _In:
            def __enter__(self):
                self.home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
                fd = os.open(f"/run/netns/{ns.p}", os.O_RDONLY)
                try:
                    if ns.libc.setns(fd, NetNs.CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns")
                finally:
                    os.close(fd)

            def __exit__(self, *exc):
                try:
                    if ns.libc.setns(self.home, NetNs.CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns back")
                finally:
                    os.close(self.home)
                return False
        return _In()

    def in_c(self, argv, **kw):
        return subprocess.run(["ip", "netns", "exec", self.c, *argv], **kw)

    def cleanup(self):
        for ns in self.made:
            self.ip("netns", "del", ns, check=False)
        self.made = []


class TestTransparent(ReachCase):
    """--listen-transparent in network namespaces: the client's traffic to the server
    (10.77.0.1 or fd77::1) is redirected by nftables in the proxy's namespace to the proxy, which
    connects to the destination the client dialled. IPv4 and IPv6, STARTTLS and direct TLS."""

    TPORT = 15222

    @classmethod
    def setUpClass(cls):
        why = NetNs.unavailable()
        if why:
            raise unittest.SkipTest(why)
        if shutil.which("nft") is None:  # a missing package is a failure, not a skip
            raise RuntimeError("nft is needed for the REDIRECT rules (apt-get install nftables)")
        cls.tmp = tempfile.mkdtemp(prefix="xmpptest-transparent-")
        cls.ca_dir = os.path.join(cls.tmp, "ca")
        cls.dns = None
        cls.ns = NetNs()
        try:
            cls.server = Prosody(domain="t.test", start=False,
                                 extra_config='interfaces = { "10.77.0.1", "10.77.0.9", '
                                              '"fd77::1" }')
            cls.server.host = "10.77.0.1"
            cls.server._write_config()
            srv = cls.server
            cls.ns.create([srv.starttls_port, srv.direct_tls_port], cls.TPORT)
            with cls.ns.enter_p():
                srv.start()
            srv.register("alice", PASSWORD)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        srv = getattr(cls, "server", None)
        if srv is not None:
            srv.cleanup()
        cls.ns.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def start_transparent_proxy(self, listen, extra=()):
        srv = self.server
        x = Proxy(upstream=("10.77.0.1", srv.starttls_port), upstream_ca=srv.ca_file,
                  ca_dir=self.ca_dir, extra=["--listen-transparent", listen, *extra], start=False)
        self.proxies.append(x)
        with self.ns.enter_p():
            x.start()
        return x

    def client_in_c(self, x, host, port, tls):
        r = self.ns.in_c([sys.executable, "-m", "xmpptest.client", "session", "--jid",
                          "alice@t.test", "--password", PASSWORD, "--host", host, "--port",
                          str(port), "--tls", tls, "--ca-file", x.ca_file, "--timeout", "15"],
                         cwd=os.path.dirname(os.path.abspath(__file__)),
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        try:
            return json.loads(r.stdout)
        except ValueError:
            return {"ok": False, "error": f"exit {r.returncode}: {r.stdout[-500:]}{r.stderr[-1500:]}"}

    def test_redirected_clients_reach_their_destination(self):
        x = self.start_transparent_proxy(f"[::]:{self.TPORT}")
        self.assertRegex(x.stderr_text(), rf"transparent listener on \[::\]:{self.TPORT}")
        srv = self.server
        for host, port, tls in (("10.77.0.1", srv.starttls_port, "starttls"),
                                ("10.77.0.1", srv.direct_tls_port, "direct"),
                                ("fd77::1", srv.starttls_port, "starttls"),
                                ("fd77::1", srv.direct_tls_port, "direct")):
            with self.subTest(host=host, tls=tls):
                before = len(x.stdout_text())
                r = self.client_in_c(x, host, port, tls)
                self.assertTrue(r["ok"], r["error"])
                out = x.stdout_text()[before:]
                dest = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                client = r"\[fd77::2\]" if ":" in host else r"10\.77\.0\.2"
                self.assertRegex(out, rf"client {client}:\d+ connected")
                first = "TLS first" if tls == "direct" else "XMPP first"
                self.assertRegex(out, rf"transparent: {client}:\d+ dialled {re.escape(dest)}, "
                                      rf"connected to {re.escape(host)}:{port}; the client speaks "
                                      rf"{first}")
                self.assertRegex(out, r"server certificate CN=t\.test \(ok\)")

    def test_a_connection_that_was_not_redirected_is_refused(self):
        x = self.start_transparent_proxy(f"0.0.0.0:{self.TPORT}")
        r = self.ns.in_c([sys.executable, "-c",
                          "import socket; s = socket.create_connection(('10.77.0.1', "
                          f"{self.TPORT}), 5); s.settimeout(5); print(repr(s.recv(10)))"],
                         capture_output=True, text=True, timeout=30)
        self.assertEqual(r.stdout.strip(), "b''", r.stderr)
        self.assertRegex(x.stderr_text(), r"refusing 10\.77\.0\.2:\d+ on 0\.0\.0\.0:15222: it "
                                          r"connected to the transparent listener itself")

    def test_certificate_names_the_address_dialled(self):
        """A client that dials 10.77.0.9 without SNI checks that address; the kernel redirected
        it to the proxy's 10.77.0.1, and the forged certificate names 10.77.0.9."""
        x = self.start_transparent_proxy(f"0.0.0.0:{self.TPORT}", extra=["--server-name", "t.test"])
        code = ("import ssl, socket\n"
                f"ctx = ssl.create_default_context(cafile={x.ca_file!r})\n"
                f"s = socket.create_connection(('10.77.0.9', {self.server.direct_tls_port}), 5)\n"
                "t = ctx.wrap_socket(s, server_hostname='10.77.0.9')\n"
                "print([v for k, v in t.getpeercert()['subjectAltName'] if k == 'IP Address'])\n"
                "t.close()\n")
        r = self.ns.in_c([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr + x.dump())
        self.assertIn("10.77.0.9", r.stdout)
        self.assertNotIn("10.77.0.1'", r.stdout)
        self.assertRegex(x.stdout_text(), r"transparent: 10\.77\.0\.2:\d+ dialled 10\.77\.0\.9:")

    def run_in_p(self, argv, timeout=60):
        return subprocess.run(["ip", "netns", "exec", self.ns.p, *argv],
                              cwd=os.path.dirname(os.path.abspath(__file__)),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)

    def test_ipv6_everywhere(self):
        """In the proxy's namespace: a listener on [::1], SRV targets with only an AAAA record,
        an upstream given as [fd77::1]:PORT, and a forged certificate that names ::1 for a
        client that dials [::1] without SNI."""
        srv = self.server
        with self.ns.enter_p():
            dns = Dns(srv=[("_xmpps-client._tcp.t.test", "v6.t.test", srv.direct_tls_port, 5, 0),
                           ("_xmpp-client._tcp.t.test", "v6.t.test", srv.starttls_port, 10, 0)],
                      hosts={"v6.t.test": ["fd77::1"]})
        try:
            proxies = {}
            for name, upstream, direct in (("srv", "t.test", None),
                                           ("literal", f"[fd77::1]:{srv.starttls_port}",
                                            f"[fd77::1]:{srv.direct_tls_port}")):
                extra = ["--listen-tls=[::1]:0"]  # "=": the helper waits for 127.0.0.1 only
                if name == "srv":
                    extra += ["--dns", dns.server]
                x = Proxy(upstream=upstream, upstream_direct=direct, upstream_ca=srv.ca_file,
                          ca_dir=self.ca_dir, listen_tls=False, extra=extra, start=False)
                self.proxies.append(x)
                with self.ns.enter_p():
                    x.start()
                m = x.wait_for_stderr(r"listening on \[::1\]:(\d+) \(client TLS: direct\)")
                self.assertIsNotNone(m, x.stderr_text())
                proxies[name] = (x, int(m.group(1)))
            for name, (x, port) in proxies.items():
                with self.subTest(upstream=name):
                    r = self.run_in_p([sys.executable, "-m", "xmpptest.client", "session",
                                       "--jid", "alice@t.test", "--password", PASSWORD, "--host",
                                       "::1", "--port", str(port), "--tls", "direct",
                                       "--ca-file", x.ca_file, "--timeout", "15"])
                    res = json.loads(r.stdout) if r.stdout.strip().startswith("{") else \
                        {"ok": False, "error": r.stderr[-1500:]}
                    self.assertTrue(res["ok"], res["error"])
                    self.assertRegex(x.stdout_text(), r"client \[::1\]:\d+ connected")
                    self.assertRegex(x.stdout_text(), r"server certificate CN=t\.test \(ok\)")
            out = proxies["srv"][0].stdout_text()
            self.assertRegex(out, rf"SRV _xmpps-client\._tcp\.t\.test → v6\.t\.test:"
                                  rf"{srv.direct_tls_port} \(prio 5")
            self.assertRegex(out, r"v6\.t\.test → \[fd77::1\]:\d+")
            self.assertRegex(out, rf"connected to \[fd77::1\]:{srv.direct_tls_port} "
                                  r"\(v6\.t\.test:\d+, direct TLS\)")
            # No SNI, the address checked: the forged certificate (for the domain t.test) also
            # names ::1, the address the client dialled.
            x, port = proxies["srv"]
            code = ("import ssl, socket, sys\n"
                    f"ctx = ssl.create_default_context(cafile={x.ca_file!r})\n"
                    f"s = socket.create_connection(('::1', {port}), 5)\n"
                    "t = ctx.wrap_socket(s, server_hostname='::1')\n"
                    "print([v for k, v in t.getpeercert()['subjectAltName'] if k == 'IP Address'])\n")
            r = self.run_in_p([sys.executable, "-c", code], timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("0:0:0:0:0:0:0:1", r.stdout)
        finally:
            dns.cleanup()

    def test_no_srv_record_falls_back_to_5222(self):
        """A domain without SRV records is reached on its own name, port 5222 (RFC 6120 3.2.2):
        a Prosody on 5222 in the proxy's namespace, a DNS server that knows only f.test's
        address."""
        fb = Prosody(domain="f.test", start=False,
                     extra_config='interfaces = { "10.77.0.1" }')
        dns = None
        try:
            fb.host = "10.77.0.1"
            fb.starttls_port = 5222
            fb._write_config()
            with self.ns.enter_p():
                fb.start()
                dns = Dns(hosts={"f.test": ["10.77.0.1"]})
            fb.register("alice", PASSWORD)
            x = Proxy(upstream="f.test", upstream_ca=fb.ca_file, ca_dir=self.ca_dir,
                      listen_tls=False, extra=["--dns", dns.server], start=False)
            self.proxies.append(x)
            with self.ns.enter_p():
                x.start()
            r = self.run_in_p([sys.executable, "-m", "xmpptest.client", "session", "--jid",
                               "alice@f.test", "--password", PASSWORD, "--host", "127.0.0.1",
                               "--port", str(x.port), "--ca-file", x.ca_file, "--timeout", "15"])
            res = json.loads(r.stdout) if r.stdout.strip().startswith("{") else \
                {"ok": False, "error": r.stderr[-1500:]}
            self.assertTrue(res["ok"], res["error"])
            self.assertInOrder(x.stdout_text(),
                               r"no SRV record for f\.test: trying f\.test:5222 \(RFC 6120 3\.2\.2\)",
                               r"f\.test → 10\.77\.0\.1:5222",
                               r"connected to 10\.77\.0\.1:5222 \(f\.test:5222, STARTTLS\)",
                               r"server certificate CN=f\.test \(ok\)")
        finally:
            if dns is not None:
                dns.cleanup()
            fb.cleanup()


if __name__ == "__main__":
    unittest.main()

"""xmppscope's proxy against a real Prosody, real slixmpp clients, a fake server and raw clients.

    cd tests/integration
    XMPPSCOPE=../../build/proxy/xmppscope /usr/bin/python3 -m unittest -v test_proxy

Everything listens on 127.0.0.1 only. Each test starts its own proxy (stopped with SIGTERM in
tearDown, which must exit 0 with no sanitizer report); each class with real sessions starts one
Prosody. On a failure the proxy's stderr and stdout are printed.
"""

import ssl
import base64
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import unittest
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from xmpptest import rawclient  # noqa: E402
from xmpptest.client import alice_to_bob, run_session  # noqa: E402
from xmpptest.fakeserver import FakeServer, server_header  # noqa: E402
from xmpptest.prosody import Prosody, free_ports, make_ca, make_server_cert  # noqa: E402
from xmpptest.proxy import SANITIZER_PATTERN as SANITIZER  # noqa: E402
from xmpptest.proxy import Proxy, ProxyError, xmppscope_binary  # noqa: E402

DOMAIN = "example.test"
HOST = "127.0.0.1"
H = rawclient.stream_header(DOMAIN)      # the client's stream header used by raw clients
NS_STREAMS_ERR = "urn:ietf:params:xml:ns:xmpp-streams"
STREAM_ERROR_RE = re.compile(rb"<stream:error>\s*<([a-z-]+)\s+xmlns=['\"]" +
                             NS_STREAMS_ERR.encode() + rb"['\"]")
PASSWORD = "alicepass"
SECRET_FORMS = [PASSWORD, base64.b64encode(b"\0alice\0" + PASSWORD.encode()).decode(),
                base64.b64encode(PASSWORD.encode()).decode()]

# A client stream with odd but valid formatting: both quote styles, prefixes, entities and
# character references, UTF-8 (incl. 4-byte), CDATA, '>' inside attribute values, whitespace
# keepalives and whitespace inside tags.
ODD_C2S = [
    b"<message to='bob@example.test' type=\"chat\" id='a\"b&apos;c'><body>1 &lt; 2 &amp;&amp; "
    b"3 &gt; 2 &#x1F600; &#128512; \xc3\xbcn\xc3\xafc\xc3\xb8d\xc3\xa9 \xf0\x9f\x98\x80 "
    b"\xe6\x97\xa5\xe6\x9c\xac</body></message>",
    b"\n  \t",
    b"<iq type='get' id=\"q>1\" xmlns:foo='urn:x:foo'><foo:query foo:attr='x > y' "
    b"xmlns:bar=\"urn:x:bar\"><bar:item/></foo:query></iq>",
    b" ",
    b"<message><body><![CDATA[<not a tag> & ]] stuff]]></body></message>",
    b"<presence/>",
    b"\r\n",
    b"<message xmlns=\"jabber:client\"   to = \"bob@example.test\"\n><body xml:lang='en'>tab\there"
    b"</body></message >",
    b"<ns0:message xmlns:ns0='jabber:client'><ns0:body>prefixed</ns0:body></ns0:message>",
    b"<iq type='set' id='end-c2s'><query xmlns='jabber:iq:private'/></iq>",
]
ODD_S2C = [
    b"<message from='alice@example.test/r' to='bob@example.test' type='chat'><body>"
    b"&quot;quoted&quot; &#60;tag&#62; \xf0\x9f\x98\x80\xe2\x82\xac</body></message>",
    b" ",
    b"<iq type=\"result\" id='q>1'><x:query xmlns:x='urn:x:foo' x:a=\"1 > 0\"/></iq>",
    b"\n",
    b"<message><body><![CDATA[]]><![CDATA[x<y]]></body><thread>t1</thread></message>",
    b"<presence from='alice@example.test/r'><status>  spaced  </status></presence>",
    b"<presence id='end-s2c'/>",
]
CHUNKS = (1, 7, 3, 64, 2, 13, 1, 1, 29, 5)


def stream_error(data):
    """The condition of the first <stream:error/> in `data` (bytes), or None."""
    m = STREAM_ERROR_RE.search(data)
    return m.group(1).decode() if m else None


def cut(data, sizes=CHUNKS):
    out, i, k = [], 0, 0
    while i < len(data):
        out.append(data[i:i + sizes[k % len(sizes)]])
        i += sizes[k % len(sizes)]
        k += 1
    return out


def send_chunked(c, data, sizes=CHUNKS):
    """Write `data` in odd-sized writes (Nagle off, a tiny pause so writes stay separate)."""
    for part in cut(data, sizes):
        c.send(part)
        time.sleep(0.001)


def raw(port, **kw):
    """A RawClient with TCP_NODELAY, so that every send() is its own segment."""
    kw.setdefault("timeout", 5)
    c = rawclient.RawClient(port, **kw)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c



def proc_rss_kib(pid):
    """VmRSS of a process in KiB (Linux)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

class ProxyCase(unittest.TestCase):
    """Starts proxies and fake servers and cleans them up; tearDown stops each proxy with
    SIGTERM and fails the test if it did not exit 0 or a sanitizer reported anything."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="xmpptest-proxycase-")
        cls.ca_dir = os.path.join(cls.tmp, "ca")   # xmppscope's CA, shared by the class

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.proxies, self.servers = [], []

    def start_proxy(self, **kw):
        kw.setdefault("ca_dir", self.ca_dir)
        x = Proxy(**kw)
        self.proxies.append(x)
        return x

    def fake_server(self, **kw):
        s = FakeServer(**kw)
        self.servers.append(s)
        return s

    def _failed(self):
        outcome = getattr(self, "_outcome", None)
        result = getattr(outcome, "result", None)
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
        for s in self.servers:
            s.close()
        if problems or self._failed():
            for x in self.proxies:
                sys.stderr.write(f"\n===== {self.id()}: xmppscope output =====\n{x.dump()}")
        for x in self.proxies:
            x.cleanup()
        if problems:
            self.fail("\n".join(problems))

    # -- helpers ----------------------------------------------------------------------------
    def assertStreamError(self, data, condition, msg=None):
        self.assertEqual(stream_error(data), condition,
                         (msg + ": " if msg else "") + f"received {data[-700:]!r}")

    def assert_serves(self, x, srv, port=None, tls=False, ca_file=None):
        """The proxy still works: a new client on `port` gets the fake server's answer."""
        n = len(srv.conns)
        port = port or x.port
        with raw(port, direct_tls=tls, domain=DOMAIN, ca_file=ca_file or x.ca_file) as c:
            c.send(H)
            got = c.read_features()
            self.assertIn(b"id='fake-1'", got)
            conn = srv.wait_connection(index=n)
            conn.wait_for(H)
            c.send(rawclient.STREAM_END)
            conn.wait_for(rawclient.STREAM_END)
        self.assertTrue(x.running)


# =================================================================================================
# 1, 2, 5, 6: real sessions through the proxy to a Prosody that requires encryption
# =================================================================================================
class ProsodyCase(ProxyCase):
    """One Prosody per class (PROSODY_KW), users alice and bob, and chat helpers."""
    PROSODY_KW = {}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.p = Prosody(**cls.PROSODY_KW)
        try:
            cls.alice = cls.p.register("alice", PASSWORD)
            cls.bob = cls.p.register("bob", "bobpass")
        except BaseException:
            cls.p.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.p.cleanup()
        super().tearDownClass()
    def proxy(self, **kw):
        kw.setdefault("upstream_ca", self.p.ca_file)
        return self.start_proxy(upstream=(HOST, self.p.starttls_port),
                                upstream_direct=(HOST, self.p.direct_tls_port), **kw)

    def chat(self, x, client, mech=None, **kw):
        """alice -> bob through proxy x with client leg `client`; asserts a good session."""
        port = x.tls_port if client == "direct" else x.port
        r = alice_to_bob(self.alice, PASSWORD, self.bob, "bobpass", HOST, port, tls=client,
                         ca_file=x.ca_file, mech=mech, timeout=10, **kw)
        self.assertTrue(r["ok"], json.dumps(r, indent=1, default=str)[-3000:])
        self.assertTrue(r["delivered"])
        self.assertEqual([m["body"] for m in r["bob"]["received"]], [r["message"]])
        self.assertTrue(r["bob"]["received"][0]["from"].startswith(self.alice + "/"))
        for side in (r["alice"], r["bob"]):
            self.assertTrue(side["bound_jid"])
            self.assertTrue(side["clean_close"])
            if mech:
                self.assertEqual(side["mechanism"], mech)
            if client == "none":
                self.assertIsNone(side["tls_version"])
            else:
                self.assertEqual(side["tls_version"], "TLSv1.3")
        if client == "starttls":
            self.assertEqual(r["alice"]["features"][0], ["starttls"])
        return r

    def assert_legs(self, x, client, server):
        """The log says each session used these legs, and TLS came up where it should."""
        x.stop()
        notes = [e["message"] for e in x.log_events() if e.get("event") == "note"]
        conn = [n for n in notes if n.startswith("client ") and "connected" in n]
        self.assertEqual(len(conn), 2, notes)
        for n in conn:
            self.assertIn(f"(client leg {client}, server leg {server})", n)
        self.assertEqual(sum(n.startswith("server leg: TLS up") for n in notes),
                         0 if server == "none" else 2, notes)
        self.assertEqual(sum(n.startswith("client leg: TLS up") for n in notes),
                         0 if client == "none" else 2, notes)



class RealSessions(ProsodyCase):
    """Prosody as configured by the harness: c2s_require_encryption = true."""

    # -- 1: sessions --------------------------------------------------------------------------
    def test_starttls_mirror_plain(self):
        x = self.proxy()
        self.chat(x, "starttls", "PLAIN")
        self.assert_legs(x, "starttls", "starttls")

    def test_starttls_mirror_scram(self):
        x = self.proxy()
        self.chat(x, "starttls", "SCRAM-SHA-1")
        self.assert_legs(x, "starttls", "starttls")

    def test_direct_mirror_plain(self):
        x = self.proxy()
        r = self.chat(x, "direct", "PLAIN")
        self.assertIn("mechanisms", r["alice"]["features"][0])
        self.assert_legs(x, "direct", "direct")

    def test_direct_mirror_scram(self):
        x = self.proxy()
        self.chat(x, "direct", "SCRAM-SHA-1")
        self.assert_legs(x, "direct", "direct")

    def test_matrix_secured_server_legs(self):
        # client leg {starttls, direct, none} x server leg {starttls, direct}.
        for client in ("starttls", "direct", "none"):
            for server in ("starttls", "direct"):
                with self.subTest(client=client, server=server):
                    x = self.proxy(upstream_tls=server,
                                   client_tls="none" if client == "none" else None)
                    self.chat(x, client, "SCRAM-SHA-1" if server == "direct" else "PLAIN")
                    self.assert_legs(x, client, server)

    def test_whitespace_after_starttls(self):
        # go-xmpp (go-sendxmpp) and several PHP libraries send a newline after <starttls/>: it
        # ends the plaintext stream, and must not reach TLS ("wrong version number", issue 11).
        x = self.proxy()
        with raw(x.port) as c:
            c.send(H)
            self.assertIn(b"<starttls", c.read_features())
            c.send(rawclient.STARTTLS + b"\n")
            c.read_until(rawclient.PROCEED)
            c.send(b" \r\n")          # more whitespace, in a segment of its own
            time.sleep(0.05)
            c.wrap_tls(DOMAIN, ca_file=x.ca_file)
            c.send(rawclient.stream_header(DOMAIN, xml_decl=False))
            self.assertIn(b"PLAIN", c.read_features())
            creds = base64.b64encode(b"\0alice\0" + PASSWORD.encode())
            c.send(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + creds
                   + b"</auth>")
            self.assertIn(b"<success", c.read_until(re.compile(rb"<success\b[^>]*>")))
            c.send(rawclient.STREAM_END)
            c.read_until(rawclient.STREAM_END)
        x.stop()
        notes = [e for e in x.log_events() if e.get("event") == "note"]
        self.assertEqual([n["message"] for n in notes if n.get("level") in ("warn", "error")], [])
        self.assertEqual(sum(n["message"].startswith("client leg: TLS up") for n in notes), 1)
        self.assertEqual(sum(n["message"].startswith("server leg: TLS up") for n in notes), 1)

    def test_server_leg_none_to_server_requiring_tls_fails_cleanly(self):
        # Prosody requires STARTTLS; a plain server leg cannot log in. The client must learn
        # it from a stream error at once, not wait with empty stream features until it gives up.
        x = self.proxy(upstream_tls="none")
        t = time.monotonic()
        r = run_session(self.alice, PASSWORD, HOST, x.port, tls="starttls", ca_file=x.ca_file,
                        mech="PLAIN", timeout=6)
        elapsed = time.monotonic() - t
        self.assertFalse(r["ok"])
        self.assertIsNone(r["bound_jid"])
        self.assertTrue(r["stream_error"], f"no stream error; the client saw: {r['error']}, "
                                           f"features {r['features']}")
        self.assertLess(elapsed, 4, r["error"])
        self.assertTrue(x.running)

    # -- 2: the JSON log, secrets, inspect ------------------------------------------------------
    def test_log_holds_both_directions_and_no_secrets(self):
        x = self.proxy()
        plain = self.chat(x, "starttls", "PLAIN")
        scram = self.chat(x, "direct", "SCRAM-SHA-1")
        self.assertEqual(x.stop(), 0)
        self.assertEqual(stat.S_IMODE(os.stat(x.log_path).st_mode), 0o600)
        text, out = x.log_text(), x.stdout_text()
        for secret in SECRET_FORMS:
            self.assertNotIn(secret, text)
            self.assertNotIn(secret, out)
            self.assertNotIn(secret, x.stderr_text())
        events = x.log_events()
        self.assertEqual(len(events), len(text.splitlines()), "every line is JSON")
        self.assertTrue(all(e.get("session") for e in events))
        self.assertEqual(len({e["session"] for e in events}), 4)   # alice, bob, alice, bob
        self.assertEqual({e.get("dir") for e in events} - {None}, {"c2s", "s2c"})
        self.assertEqual({e.get("phase") for e in events} - {None}, {"plain", "tls", "authed"})
        for r in (plain, scram):
            sent = [e for e in events if e.get("name") == "message" and e.get("dir") == "c2s"
                    and r["message"] in e.get("raw", "")]
            got = [e for e in events if e.get("name") == "message" and e.get("dir") == "s2c"
                   and r["message"] in e.get("raw", "")]
            self.assertEqual(len(sent), 1)
            self.assertEqual(len(got), 1)
            self.assertNotEqual(sent[0]["session"], got[0]["session"])
            self.assertEqual(sent[0]["phase"], "authed")
            self.assertIn(f"<body>{r['message']}</body>", got[0]["raw"])
        # SASL payloads are redacted, the annotation says what was there.
        auths = [e for e in events if e.get("dir") == "c2s" and e.get("name") == "auth"]
        self.assertEqual(len(auths), 4)
        plain_auths = [e for e in auths if "PLAIN" in e["raw"]]
        self.assertEqual(len(plain_auths), 2)
        for e in plain_auths:
            self.assertTrue(e.get("redacted"))
            self.assertIn(">***</auth>", e["raw"])
            self.assertIn("password=***", e.get("sasl", ""))
        finals = [e for e in events if e.get("dir") == "c2s" and e.get("name") == "response"]
        self.assertEqual(len(finals), 2)
        for e in finals:
            self.assertIn(">***</response>", e["raw"])
            self.assertIn("p=***", e.get("sasl", ""))
            self.assertNotRegex(e.get("sasl", ""), r"p=[A-Za-z0-9+/]{8}")
        # inspect reads the log back.
        r = subprocess.run([xmppscope_binary(), "inspect", x.log_path], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30,
                           env=dict(os.environ, NO_COLOR="1"))
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace")[-2000:])
        self.assertNotRegex(r.stderr.decode(errors="replace"), r"ERROR: \w+Sanitizer")
        shown = r.stdout.decode("utf-8", "replace")
        self.assertIn(plain["message"], shown)
        self.assertIn(scram["message"], shown)
        for secret in SECRET_FORMS:
            self.assertNotIn(secret, shown)

    def test_show_secrets(self):
        x = self.proxy(extra=["--show-secrets"])
        self.chat(x, "starttls", "PLAIN")
        self.assertEqual(x.stop(), 0)
        auths = [e for e in x.log_events() if e.get("dir") == "c2s" and e.get("name") == "auth"
                 and e.get("session") and "alice" in e.get("sasl", "")]
        self.assertEqual(len(auths), 1)
        self.assertIn(f'password="{PASSWORD}"', auths[0]["sasl"])
        self.assertIn(PASSWORD, x.stdout_text())

    # -- 4 (with Prosody): an untrusted server certificate ---------------------------------------
    def test_upstream_tls_untrusted_direct(self):
        other_ca, _ = make_ca(self.tmp, name="other-ca", cn="not the server's CA")
        for label, ca in (("system store", None), ("other CA", other_ca)):
            with self.subTest(label):
                x = self.start_proxy(upstream=(HOST, self.p.starttls_port),
                                     upstream_direct=(HOST, self.p.direct_tls_port),
                                     upstream_ca=ca)
                for _ in range(2):   # and the next client gets the same, the proxy lives on
                    r = run_session(self.alice, PASSWORD, HOST, x.tls_port, tls="direct",
                                    ca_file=x.ca_file, mech="PLAIN", timeout=5)
                    self.assertFalse(r["ok"])
                    self.assertEqual((r["stream_error"] or {}).get("condition"),
                                     "remote-connection-failed", r["error"])
                self.assertTrue(x.running)
                self.assertTrue(x.wait_for_log(
                    lambda e: "certificate verify failed" in e.get("message", "")))

    # -- 5: SIGTERM -------------------------------------------------------------------------------
    def test_sigterm_with_open_tls_session(self):
        x = self.proxy()
        with raw(x.tls_port, direct_tls=True, domain=DOMAIN, ca_file=x.ca_file) as c:
            c.send(H)
            mechs = rawclient.parse_mechanisms(c.read_features())
            self.assertEqual(sorted(mechs), ["PLAIN", "SCRAM-SHA-1"])
            t = time.monotonic()
            x.proc.send_signal(signal.SIGTERM)
            got = c.read_until(b"</stream:stream>", timeout=5)
            self.assertStreamError(got, "system-shutdown")
            c.read_all(timeout=3)
            self.assertTrue(c.closed_by_peer)
        self.assertEqual(x.wait(timeout=5), 0, "no prompt exit 0 after one SIGTERM")
        self.assertLess(time.monotonic() - t, 3)
        self.assertIn("stopped", x.stderr_text())

    # -- direct TLS by IP address (issue 11, item 2) ---------------------------------------------
    def no_sni_client(self, x):
        """A direct-TLS client that dialled 127.0.0.1, as xmpp.js given xmpps://127.0.0.1:PORT:
        no SNI, the chain verified against the proxy's CA, and the certificate checked against the
        address by hand (Python checks names only when it sends one)."""
        c = rawclient.RawClient(x.tls_port, timeout=5)
        ctx = ssl.create_default_context(cafile=x.ca_file)
        ctx.check_hostname = False
        try:
            c.sock = ctx.wrap_socket(c.sock, server_hostname=None)
        except BaseException:
            c.close()
            raise
        return c

    def assert_ip_san_and_session(self, x, dns_name):
        with self.no_sni_client(x) as c:
            sans = c.sock.getpeercert().get("subjectAltName", ())
            self.assertIn(("IP Address", HOST), sans)
            self.assertIn(("DNS", dns_name), sans)
            c.send(H)
            self.assertIn(b"mechanisms", c.read_features())
            c.send(rawclient.STREAM_END)

    def test_direct_tls_by_ip_without_sni_gets_ip_san(self):
        x = self.proxy(extra=["--server-name", DOMAIN])
        self.assert_ip_san_and_session(x, DOMAIN)
        # A real client on the same terms logs in and delivers a message.
        self.chat(x, "direct", "PLAIN")

    def test_direct_tls_without_sni_falls_back_to_upstream_name(self):
        # --upstream-direct by name (localhost is 127.0.0.1 here) and no --server-name: the
        # certificate is for that name and the address the client dialled.
        x = self.start_proxy(upstream=(HOST, self.p.starttls_port),
                             upstream_direct=("localhost", self.p.direct_tls_port),
                             upstream_ca=self.p.ca_file)
        self.assert_ip_san_and_session(x, "localhost")

    def test_direct_tls_without_any_name_says_use_server_name(self):
        x = self.proxy()  # the upstream is an IP address, and no --server-name
        with self.assertRaises(ssl.SSLError):
            with self.no_sni_client(x):
                pass
        deadline = time.monotonic() + 5
        while "--server-name" not in x.stderr_text() + x.stdout_text() and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        out = x.stderr_text() + x.stdout_text()
        self.assertIn("no server name (SNI)", out)
        self.assertIn("pass --server-name NAME", out)

    # -- 6: key log -------------------------------------------------------------------------------
    def test_keylog(self):
        keylog = os.path.join(self.tmp, f"keys-{time.monotonic_ns()}.log")
        x = self.proxy(extra=["--keylog", keylog])
        self.chat(x, "direct", "PLAIN")
        self.assertEqual(x.stop(), 0)
        self.assertEqual(stat.S_IMODE(os.stat(keylog).st_mode), 0o600)
        with open(keylog) as f:
            lines = f.read().splitlines()
        hs = [ln.split() for ln in lines if ln.startswith("CLIENT_HANDSHAKE_TRAFFIC_SECRET ")]
        for parts in hs:
            self.assertEqual(len(parts), 3)
            self.assertRegex(parts[1], r"^[0-9a-f]{64}$")
            self.assertRegex(parts[2], r"^[0-9a-f]{64,96}$")
        # Two sessions (alice, bob), two TLS legs each: four handshakes.
        self.assertEqual(len({p[1] for p in hs}), 4, lines)
        for label in ("SERVER_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0",
                      "SERVER_TRAFFIC_SECRET_0"):
            self.assertEqual(sum(ln.startswith(label + " ") for ln in lines), 4, label)


# =================================================================================================
# 1: server leg "none", to a Prosody that does not require encryption
# =================================================================================================
class RealSessionsPlainServer(ProsodyCase):
    """A Prosody that allows plaintext (and PLAIN without TLS), for server legs 'none'."""
    PROSODY_KW = {"extra_config": "c2s_require_encryption = false\n"
                                  "allow_unencrypted_plain_auth = true"}

    def test_matrix_server_leg_none(self):
        # client leg {starttls, direct, none} x server leg none.
        for client in ("starttls", "direct", "none"):
            with self.subTest(client=client):
                x = self.proxy(upstream_tls="none",
                               client_tls="none" if client == "none" else None)
                r = self.chat(x, client, "PLAIN")
                if client != "none":
                    # The proxy secured the client leg itself: no STARTTLS offer reaches it.
                    for feats in r["alice"]["features"][1:]:
                        self.assertNotIn("starttls", feats)
                self.assert_legs(x, client, "none")

    def test_client_none_mirror_scram(self):
        x = self.proxy(client_tls="none")
        self.chat(x, "none", "SCRAM-SHA-1")
        self.assert_legs(x, "none", "none")
        for secret in SECRET_FORMS:
            self.assertNotIn(secret, x.log_text())
            self.assertNotIn(secret, x.stdout_text())


# =================================================================================================
# 3: byte-exact forwarding against a fake server
# =================================================================================================
class ByteExact(ProxyCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv_ca, cls.srv_ca_key = make_ca(cls.tmp, name="fake-ca", cn="fake server CA")
        cls.srv_cert, cls.srv_key = make_server_cert(cls.tmp, cls.srv_ca, cls.srv_ca_key,
                                                     [DOMAIN], name="fake-server")

    def exchange_odd_streams(self, c, srv, client_header):
        """Client sends header + ODD_C2S in odd writes; the server answers (header + features,
        automatically) and sends ODD_S2C in odd writes; then both close their streams.
        Returns (conn, bytes the client sent, client mark where its stream begins)."""
        mark = len(c.received)
        sent = client_header + b"".join(ODD_C2S)
        send_chunked(c, sent)
        conn = srv.wait_connection()
        self.assertEqual(conn.wait_len(len(sent)), sent, "server received other bytes")
        c.read_features()
        conn.send(b"".join(ODD_S2C), chunks=CHUNKS, pause=0.001)
        c.read_until(b"<presence id='end-s2c'/>")
        self.assertEqual(c.received[mark:], conn.sent, "client received other bytes")
        # Both close; the closes pass unchanged too.
        c.send(b"</stream:stream>")
        conn.wait_for(b"</stream:stream>")
        conn.send(b"</stream:stream>")
        c.read_all(timeout=3)
        self.assertTrue(c.closed_by_peer)
        self.assertEqual(conn.received, sent + b"</stream:stream>")
        self.assertEqual(c.received[mark:], conn.sent)
        return conn, sent, mark

    def test_plain_both_legs_whole_stream_identical(self):
        srv = self.fake_server(mode="none")
        x = self.start_proxy(upstream=srv.address, client_tls="none", upstream_tls="none")
        with raw(x.port) as c:
            self.exchange_odd_streams(c, srv, H)
            # The whole stream, header included, both ways.
            self.assertEqual(c.received, srv.conns[0].sent)
        self.assert_serves(x, srv)
        # And the log shows the stanzas with their exact bytes.
        x.stop()
        c2s = [e for e in x.log_events() if e.get("dir") == "c2s" and e.get("event") == "stanza"
               and e.get("session") == "1"]
        self.assertEqual(len(c2s), 7)
        self.assertEqual(c2s[0]["raw"].encode(), ODD_C2S[0])

    def test_direct_tls_both_legs(self):
        srv = self.fake_server(mode="direct", cert=self.srv_cert, key=self.srv_key)
        x = self.start_proxy(upstream=srv.address, upstream_direct=srv.address,
                             upstream_ca=self.srv_ca)
        with raw(x.tls_port, direct_tls=True, domain=DOMAIN, ca_file=x.ca_file) as c:
            self.exchange_odd_streams(c, srv, H)
            self.assertEqual(c.received, srv.conns[0].sent)
            self.assertEqual(srv.conns[0].tls_version, "TLSv1.3")
        self.assert_serves(x, srv, port=x.tls_port, tls=True)

    def test_starttls_both_legs(self):
        srv = self.fake_server(mode="starttls", cert=self.srv_cert, key=self.srv_key)
        x = self.start_proxy(upstream=srv.address, upstream_ca=self.srv_ca)
        first = rawclient.stream_header(DOMAIN, lang="de")
        with raw(x.port) as c:
            pre = c.starttls(DOMAIN, ca_file=x.ca_file, header=first)
            self.assertIn(b"<starttls", pre)
            second = rawclient.stream_header(DOMAIN, xml_decl=False)
            conn, _, _ = self.exchange_odd_streams(c, srv, second)
            # The server got the client's first header byte for byte before its STARTTLS.
            self.assertTrue(conn.pre_tls.startswith(first), conn.pre_tls)
            self.assertEqual(conn.tls_version, "TLSv1.3")

    def test_upstream_address_connects_without_resolver_threads(self):
        """An upstream given as an address is connected to at once: no resolver thread (libuv
        starts its thread pool at the first lookup, and the hand-off cost every session set-up
        two thread switches). A host name still goes through the resolver."""
        srv = self.fake_server(mode="none")

        def threads(x):
            return len(os.listdir(f"/proc/{x.pid}/task"))

        x = self.start_proxy(upstream=srv.address, client_tls="none", upstream_tls="none")
        before = threads(x)
        for _ in range(3):
            self.assert_serves(x, srv)
        self.assertEqual(threads(x), before, "the proxy started threads for an address")
        first = socket.getaddrinfo("localhost", srv.port, type=socket.SOCK_STREAM)[0]
        if first[0] != socket.AF_INET or first[4][0] != HOST:
            return  # localhost is not 127.0.0.1 first here: the resolver path cannot be shown
        y = self.start_proxy(upstream=f"localhost:{srv.port}", client_tls="none",
                             upstream_tls="none")
        before = threads(y)
        self.assert_serves(y, srv)
        self.assertGreater(threads(y), before, "a host name went through no resolver")

    def test_keepalive_passes_at_once(self):
        srv = self.fake_server(mode="none")
        x = self.start_proxy(upstream=srv.address, client_tls="none", upstream_tls="none")
        with raw(x.port) as c:
            c.send(H)
            c.read_features()
            conn = srv.wait_connection()
            c.send(b"<presence/>")
            conn.wait_for(b"<presence/>")
            # A lone keepalive must not wait for the next '<'.
            c.send(b" ")
            conn.wait_len(len(H) + len(b"<presence/>") + 1, timeout=2)
            self.assertEqual(conn.received, H + b"<presence/> ")
            n = len(c.received)
            conn.send(b"\n")
            c.read_until(b"\n", timeout=2)
            self.assertEqual(c.received[n:], b"\n")
            self.assertEqual(c.received, conn.sent)


# =================================================================================================
# 4, 5: error cases against a fake server; the proxy keeps serving afterwards
# =================================================================================================
class ErrorCases(ProxyCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv_ca, cls.srv_ca_key = make_ca(cls.tmp, name="fake-ca", cn="fake server CA")
        cls.srv_cert, cls.srv_key = make_server_cert(cls.tmp, cls.srv_ca, cls.srv_ca_key,
                                                     [DOMAIN], name="fake-server")

    def plain_pair(self, **kw):
        """A plain fake server and a proxy with plain legs (--listen none, --listen-tls direct,
        server leg none)."""
        srv = self.fake_server(mode="none", **{k: kw.pop(k) for k in ("features",) if k in kw})
        x = self.start_proxy(upstream=srv.address, client_tls="none", upstream_tls="none", **kw)
        return srv, x

    def open_session(self, x, srv):
        """A plain client session through x to srv, forwarding (features seen)."""
        n = len(srv.conns)
        c = raw(x.port)
        c.send(H)
        c.read_features()
        conn = srv.wait_connection(index=n)
        conn.wait_for(H)
        return c, conn

    def client_fault(self, x, srv, data, condition, forwarded=b""):
        """Client sends `data` in an open session: it gets <condition/>, the server `forwarded`
        (the good stanzas before the fault) and a clean </stream:stream> (nothing of the bad
        stanza), both connections close."""
        c, conn = self.open_session(x, srv)
        with c:
            before = len(conn.received)
            c.send(data)
            got = c.read_all(timeout=3)
            self.assertStreamError(got, condition)
            self.assertTrue(got.endswith(b"</stream:error></stream:stream>"), got)
            self.assertTrue(c.closed_by_peer)
        self.assertTrue(conn.wait_closed(3))
        self.assertEqual(conn.received[before:], forwarded + b"</stream:stream>")
        self.assertTrue(x.wait_for_log(lambda e: e.get("level") == "error"
                                       and f"<{condition}/>" in e.get("message", "")))

    # -- half-open streams and backpressure --------------------------------------------------------
    def test_close_timeout_when_server_never_closes_its_stream(self):
        """The client closes its stream; the server never closes its own: after --close-timeout
        the client still gets a clean </stream:stream> and both connections are closed."""
        srv, x = self.plain_pair(extra=["--close-timeout", "1"])
        c, conn = self.open_session(x, srv)
        with c:
            c.send(b"</stream:stream>")
            conn.wait_for(b"</stream:stream>")
            t0 = time.monotonic()
            got = c.read_all(timeout=5)
            waited = time.monotonic() - t0
            self.assertTrue(got.endswith(b"</stream:stream>"), got)
            self.assertTrue(c.closed_by_peer)
            self.assertGreater(waited, 0.7)
            self.assertLess(waited, 4.0)
        self.assertTrue(conn.wait_closed(3))
        self.assertTrue(x.wait_for_log(lambda e: "did not close its stream within 1 s"
                                       in e.get("message", "")))

    def test_backpressure_stops_reading_a_client_when_the_server_does_not_read(self):
        """A server that stops reading makes the proxy stop reading the client: what the client
        can push is bounded by socket buffers and the proxy's high-water mark (1 MiB), and the
        proxy's memory does not grow with what the client tries to send."""
        srv, x = self.plain_pair()
        c, conn = self.open_session(x, srv)
        conn.stop_reading = True          # the fake server's reader thread stops consuming
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stanza = (b"<message to='bob@example.test' type='chat'><body>" + b"x" * 4000 +
                  b"</body></message>")
        rss_before = proc_rss_kib(x.pid)
        sock = c.sock
        sock.setblocking(False)
        sent, stalled_since, at = 0, None, 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                n = sock.send(stanza[at:])  # partial writes continue the same stanza
                sent += n
                at = (at + n) % len(stanza)
                stalled_since = None
            except (BlockingIOError, ssl.SSLWantWriteError):
                stalled_since = stalled_since or time.monotonic()
                if time.monotonic() - stalled_since > 1.5:
                    break
                time.sleep(0.01)
        self.assertIsNotNone(stalled_since, "the client was never stopped")
        # Kernel buffers on both sides plus the proxy's 1 MiB high-water mark and one read:
        # a few MiB. Without backpressure the proxy would take all the client sends.
        self.assertLess(sent, 24 << 20, f"the client pushed {sent} bytes into the proxy")
        # RSS is only a loose check: the ASan build keeps freed memory in quarantine.
        grown = proc_rss_kib(x.pid) - rss_before
        self.assertLess(grown, 512 << 10, f"the proxy grew by {grown} KiB")
        self.assertTrue(x.running)
        print(f"backpressure: the client could push {sent >> 10} KiB; proxy RSS +{grown} KiB",
              file=sys.stderr)
        c.close()

    # -- unreachable / untrusted upstream ---------------------------------------------------------
    def test_upstream_unreachable(self):
        closed_port, = free_ports(1)
        for client_tls in ("starttls", "none"):
            x = self.start_proxy(upstream=(HOST, closed_port), client_tls=client_tls)
            with self.subTest(listener=f"--listen {client_tls}"):
                for _ in range(2):   # twice: the proxy serves the next client the same way
                    with raw(x.port) as c:
                        c.send(H)
                        got = c.read_all(timeout=3)
                    self.assertStreamError(got, "remote-connection-failed")
                    self.assertTrue(c.closed_by_peer)
            with self.subTest(listener="--listen-tls"):
                with raw(x.tls_port, direct_tls=True, domain=DOMAIN, ca_file=x.ca_file) as c:
                    c.send(H)
                    got = c.read_all(timeout=3)
                self.assertStreamError(got, "remote-connection-failed")
            self.assertTrue(x.running)
        r = run_session("alice@" + DOMAIN, PASSWORD, HOST, x.tls_port, tls="direct",
                        ca_file=x.ca_file, timeout=5)
        self.assertEqual((r["stream_error"] or {}).get("condition"), "remote-connection-failed",
                         r["error"])

    def test_upstream_tls_wrong_ca_direct(self):
        srv = self.fake_server(mode="direct", cert=self.srv_cert, key=self.srv_key)
        other_ca, _ = make_ca(self.tmp, name="other-ca", cn="another CA")
        x = self.start_proxy(upstream=srv.address, upstream_ca=other_ca)
        for _ in range(2):
            with raw(x.tls_port, direct_tls=True, domain=DOMAIN, ca_file=x.ca_file) as c:
                c.send(H)
                got = c.read_all(timeout=3)
            self.assertStreamError(got, "remote-connection-failed")
        self.assertIn(b"certificate verify failed", got)
        self.assertTrue(srv.conns[0].wait_closed(3))
        self.assertEqual(srv.conns[0].received, b"", "nothing may reach an untrusted server")
        self.assertTrue(x.running)

    def test_upstream_tls_wrong_ca_starttls_client(self):
        # STARTTLS client leg: the server leg fails its TLS handshake while the client is
        # securing its own leg. The client must still get <remote-connection-failed/> on the
        # stream it opens over TLS, not a bare close.
        srv = self.fake_server(mode="starttls", cert=self.srv_cert, key=self.srv_key)
        other_ca, _ = make_ca(self.tmp, name="other-ca", cn="another CA")
        x = self.start_proxy(upstream=srv.address, upstream_ca=other_ca)
        with raw(x.port) as c:
            try:
                c.starttls(DOMAIN, ca_file=x.ca_file)
            except rawclient.RawClientError as e:
                # On a loaded machine the server leg may fail before the client asked for
                # STARTTLS: then it is told at once, on its plaintext stream.
                got = e.data
            else:
                # Let the server leg fail first (deterministic), then open the secured stream.
                self.assertTrue(x.wait_for_log(
                    lambda e: "certificate verify failed" in e.get("message", "")))
                try:
                    c.send(H)
                except OSError:
                    pass
                got = c.read_all(timeout=3)
        self.assertStreamError(got, "remote-connection-failed")
        self.assertTrue(x.running)

    # -- bad input from the client ----------------------------------------------------------------
    def test_malformed_xml_from_client(self):
        srv, x = self.plain_pair()
        self.client_fault(x, srv, b"<message><body>x</bod></message>", "not-well-formed")
        self.client_fault(x, srv, b"<message><body>x</body></message><a b='1' b='2'/>",
                          "not-well-formed", forwarded=b"<message><body>x</body></message>")
        self.assert_serves(x, srv)

    def test_restricted_xml(self):
        srv, x = self.plain_pair()
        cases = {
            "comment": b"<message><!-- hi --><body>x</body></message>",
            "comment between stanzas": b"<!-- hi -->",
            "processing instruction": b"<?foo bar?>",
            "entity reference": b"<message><body>&foo;</body></message>",
        }
        for name, data in cases.items():
            with self.subTest(name):
                self.client_fault(x, srv, data, "restricted-xml")
        with self.subTest("DTD before the stream"):
            n = len(srv.conns)
            with raw(x.port) as c:
                c.send(b"<?xml version='1.0'?><!DOCTYPE stream:stream [<!ENTITY foo 'bar'>]>"
                       + H[len(b"<?xml version='1.0'?>"):])
                got = c.read_all(timeout=3)
            self.assertStreamError(got, "restricted-xml")
            self.assertTrue(c.closed_by_peer)
            for conn in srv.conns[n:]:   # if the server was contacted, it saw no DTD
                self.assertNotIn(b"DOCTYPE", conn.received)
        self.assert_serves(x, srv)

    def test_stanza_over_max_stanza(self):
        srv, x = self.plain_pair(extra=["--max-stanza", "4096"])
        c, conn = self.open_session(x, srv)
        with c:
            ok = b"<message><body>" + b"y" * 3000 + b"</body></message>"
            c.send(ok)
            conn.wait_for(ok)
            before = len(conn.received)
            c.send(b"<message><body>" + b"x" * 5000 + b"</body></message>")
            got = c.read_all(timeout=3)
        self.assertStreamError(got, "policy-violation")
        self.assertTrue(conn.wait_closed(3))
        self.assertEqual(conn.received[before:], b"</stream:stream>")
        self.assert_serves(x, srv)

    def test_text_at_depth_1(self):
        srv, x = self.plain_pair()
        self.client_fault(x, srv, b"hello", "bad-format")
        self.assert_serves(x, srv)

    def test_malformed_xml_from_server(self):
        srv, x = self.plain_pair()
        c, conn = self.open_session(x, srv)
        with c:
            mark = len(c.received)
            conn.send(b"<message><body>x</bod></message>")
            got = conn.wait_for(b"</stream:stream>", timeout=3)
            self.assertStreamError(got, "not-well-formed")
            self.assertEqual(c.read_all(timeout=3), b"</stream:stream>")
            self.assertEqual(c.received[mark:], b"</stream:stream>")
            self.assertTrue(c.closed_by_peer)
        self.assert_serves(x, srv)

    # -- timeouts and garbage ------------------------------------------------------------------
    def test_silent_client_closed_after_handshake_timeout(self):
        srv, x = self.plain_pair(extra=["--handshake-timeout", "2"])
        t = time.monotonic()
        with raw(x.port, timeout=6) as c1, raw(x.tls_port, timeout=6) as c2:
            got1 = c1.read_all(timeout=6)
            t1 = time.monotonic() - t
            got2 = c2.read_all(timeout=6)
            t2 = time.monotonic() - t
        self.assertTrue(c1.closed_by_peer and c2.closed_by_peer)
        self.assertTrue(1.8 <= t1 < 4, t1)
        self.assertTrue(1.8 <= t2 < 4, t2)
        self.assertStreamError(got1, "connection-timeout")
        self.assertNotIn(b"<stream", got2)   # no XML where TLS was expected
        self.assertEqual(srv.conns, [], "a silent client never makes the proxy connect")
        self.assert_serves(x, srv)

    def test_max_sessions_refuses_extra_connections(self):
        """Beyond --max-sessions a new connection is closed at once with a log line; the open
        session is unharmed and, once it ends, a new one is served."""
        srv, x = self.plain_pair(extra=["--max-sessions", "1"])
        c, conn = self.open_session(x, srv)
        with c:
            for _ in range(3):
                with raw(x.port, timeout=3) as extra:
                    got = extra.read_all(timeout=3)
                self.assertEqual(got, b"")
                self.assertTrue(extra.closed_by_peer)
            msg = b"<message to='bob@example.test'><body>still here</body></message>"
            c.send(msg)
            conn.wait_for(msg)
            self.assertTrue(x.running)
            c.send(b"</stream:stream>")
            conn.wait_for(b"</stream:stream>")
            conn.send(b"</stream:stream>")
            c.read_all(timeout=3)
        self.assertTrue(x.wait_for_stderr(re.escape("sessions open (--max-sessions)")))
        self.assertTrue(x.wait_for_log(lambda e: "session closed" in e.get("message", "")))
        self.assert_serves(x, srv)

    def test_garbage_instead_of_client_hello(self):
        srv, x = self.plain_pair()
        for junk in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", H, bytes(range(256)) * 4):
            with raw(x.tls_port) as c:
                try:
                    c.send(junk)
                except OSError:
                    pass
                got = c.read_all(timeout=3)
            self.assertTrue(c.closed_by_peer, junk[:20])
            self.assertNotIn(b"<stream", got)
            self.assertTrue(x.running)
        self.assertEqual(srv.conns, [])
        self.assert_serves(x, srv, port=x.tls_port, tls=True)
        self.assert_serves(x, srv)

    # -- the features rewrite -------------------------------------------------------------------
    FEATURES_CB = (b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                   b"<mechanism>SCRAM-SHA-1-PLUS</mechanism><mechanism>SCRAM-SHA-1</mechanism>"
                   b"<mechanism>PLAIN</mechanism></mechanisms>"
                   b"<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>"
                   b"<channel-binding type='tls-exporter'/>"
                   b"<channel-binding type='tls-server-end-point'/></sasl-channel-binding>"
                   b"</stream:features>")

    def features_seen(self, x, srv):
        with raw(x.port) as c:
            c.send(H)
            feats = rawclient.features_block(c.read_features())
            conn = srv.conns[-1]
            # What follows the features is forwarded unchanged.
            conn.send(b"<message><body>after</body></message>")
            c.read_until(b"</message>")
            self.assertTrue(c.received.endswith(b"</stream:features><message><body>after</body>"
                                                b"</message>"))
            self.assertTrue(c.received.startswith(server_header()))
        wrapped = (b"<r xmlns:stream='http://etherx.jabber.org/streams'>" + feats + b"</r>")
        ET.fromstring(wrapped)   # well-formed
        return feats

    def test_features_rewrite_drops_channel_binding(self):
        srv, x = self.plain_pair(features=self.FEATURES_CB)
        feats = self.features_seen(x, srv)
        self.assertEqual(rawclient.parse_mechanisms(feats), ["SCRAM-SHA-1", "PLAIN"])
        self.assertNotIn(b"-PLUS", feats)
        self.assertNotIn(b"sasl-channel-binding", feats)
        self.assertNotIn(b"channel-binding", feats)
        self.assertTrue(x.wait_for_log(lambda e: "features rewritten" in e.get("message", "")))

    def test_features_rewrite_can_be_turned_off(self):
        srv, x = self.plain_pair(features=self.FEATURES_CB, extra=["--no-rewrite", "sasl-plus"])
        feats = self.features_seen(x, srv)
        self.assertEqual(rawclient.parse_mechanisms(feats),
                         ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-1", "PLAIN"])
        self.assertNotIn(b"sasl-channel-binding", feats)   # that rewrite is still on
        srv2, x2 = self.plain_pair(features=self.FEATURES_CB,
                                   extra=["--no-rewrite", "sasl-plus",
                                          "--no-rewrite", "channel-binding"])
        self.assertEqual(self.features_seen(x2, srv2), self.FEATURES_CB)   # byte for byte

    # -- 5: SIGTERM -------------------------------------------------------------------------------
    def test_sigterm_with_open_session(self):
        srv, x = self.plain_pair()
        c, conn = self.open_session(x, srv)
        with c:
            mark = len(c.received)
            t = time.monotonic()
            x.proc.send_signal(signal.SIGTERM)
            got = c.read_all(timeout=5)
            self.assertStreamError(got, "system-shutdown")
            self.assertEqual(c.received[mark:], got)
            self.assertTrue(got.endswith(b"</stream:error></stream:stream>"), got)
            self.assertTrue(c.closed_by_peer)
        self.assertTrue(conn.wait_closed(3))
        self.assertTrue(conn.received.endswith(H + b"</stream:stream>"), conn.received)
        self.assertEqual(x.wait(timeout=5), 0, "no prompt exit 0 after one SIGTERM")
        self.assertLess(time.monotonic() - t, 3)


# =================================================================================================
# Files trusted as found (issue 11, item 9): what a local user could plant is refused at start-up
# =================================================================================================
class FileSafety(unittest.TestCase):
    """--keylog, SSLKEYLOGFILE, --write and --ca-dir as ssh's StrictModes would have them: no
    link followed, no FIFO waited on, only files and directories of our own that nobody else
    can write. Each refusal is a configuration error (exit status 2) that names the path, the
    cause and the fix, and comes at once (a timeout proves that a FIFO does not hang)."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="xmpptest-files-")
        self.ca_dir = os.path.join(self.tmp, "ca")
        self.target = os.path.join(self.tmp, "target")   # what a planted link points at
        with open(self.target, "w") as f:
            f.write("precious\n")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run_proxy(self, *args, env=None, ca_dir=None, timeout=15):
        """Starts `xmppscope proxy` expecting it to give up at start-up; returns (status,
        stderr). The upstream is never contacted: the files are opened before anything
        listens."""
        e = dict(os.environ)
        e.pop("SSLKEYLOGFILE", None)
        e.update(env or {})
        argv = [xmppscope_binary(), "proxy", "--upstream", f"{HOST}:1", "--listen", f"{HOST}:0",
                "--ca-dir", ca_dir or self.ca_dir, "--format", "none", *args]
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=e,
                           timeout=timeout, cwd=self.tmp)
        err = r.stderr.decode("utf-8", "replace")
        self.assertIsNone(SANITIZER.search(err), err)
        return r.returncode, err

    def assert_refused(self, status, err, *needles):
        self.assertEqual(status, 2, err)
        for n in needles:
            self.assertIn(n, err)
        self.assertNotIn("listening on", err)
        with open(self.target) as f:
            self.assertEqual(f.read(), "precious\n", "the link's target was written")

    def link(self, name):
        path = os.path.join(self.tmp, name)
        os.symlink(self.target, path)
        return path

    def test_keylog_symlink_refused(self):
        path = self.link("keys")
        status, err = self.run_proxy("--keylog", path)
        self.assert_refused(status, err, f"refusing --keylog {path}: it is a symbolic link",
                            "give the real path")

    def test_sslkeylogfile_symlink_refused(self):
        path = self.link("keys")
        status, err = self.run_proxy(env={"SSLKEYLOGFILE": path})
        self.assert_refused(status, err, f"refusing SSLKEYLOGFILE {path}: it is a symbolic link")

    def test_write_symlink_refused(self):
        path = self.link("log.jsonl")
        status, err = self.run_proxy("--write", path)
        self.assert_refused(status, err, f"refusing --write {path}: it is a symbolic link")

    def test_keylog_of_another_user_refused(self):
        if os.geteuid() != 0:
            self.skipTest("only root can give a file to another user")
        path = os.path.join(self.tmp, "keys")
        with open(path, "w"):
            pass
        os.chmod(path, 0o600)
        os.chown(path, 65534, 65534)
        status, err = self.run_proxy("--keylog", path)
        self.assert_refused(status, err, f"refusing --keylog {path}: it belongs to uid 65534")
        self.assertEqual(os.path.getsize(path), 0)

    def test_write_fifo_refused_without_hang(self):
        path = os.path.join(self.tmp, "log.jsonl")
        os.mkfifo(path, 0o600)
        status, err = self.run_proxy("--write", path, timeout=10)
        self.assert_refused(status, err, f"refusing --write {path}: it is a FIFO (named pipe)")

    def test_keylog_writable_by_others_refused(self):
        path = os.path.join(self.tmp, "keys")
        with open(path, "w"):
            pass
        os.chmod(path, 0o666)
        status, err = self.run_proxy("--keylog", path)
        self.assert_refused(status, err, "writable by group or others (mode 0666)",
                            f"chmod go-w {path}")

    def test_ca_dir_symlink_refused(self):
        real = os.path.join(self.tmp, "real-ca")
        os.mkdir(real, 0o700)
        link = os.path.join(self.tmp, "ca-link")
        os.symlink(real, link)
        status, err = self.run_proxy(ca_dir=link)
        self.assert_refused(status, err, f"refusing the CA directory {link}: it is a symbolic link")
        self.assertEqual(os.listdir(real), [], "a CA was created through the link")

    def test_ca_dir_world_writable_refused(self):
        os.mkdir(self.ca_dir)
        os.chmod(self.ca_dir, 0o1777)
        status, err = self.run_proxy()
        self.assert_refused(status, err, f"refusing the CA directory {self.ca_dir}",
                            "writable by group or others (mode 1777)")
        self.assertEqual(os.listdir(self.ca_dir), [])
        r = subprocess.run([xmppscope_binary(), "ca", "show", "--ca-dir", self.ca_dir],
                           capture_output=True, timeout=10)
        self.assertEqual(r.returncode, 2, r.stderr)

    def test_ca_crt_fifo_refused_without_hang(self):
        os.mkdir(self.ca_dir, 0o700)
        os.mkfifo(os.path.join(self.ca_dir, "ca.crt"), 0o644)
        fd = os.open(os.path.join(self.ca_dir, "ca.key"), os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
        status, err = self.run_proxy(timeout=10)
        self.assert_refused(status, err, "refusing the CA certificate",
                            "it is a FIFO (named pipe), not a regular file")

    def test_good_files_are_used(self):
        # The same flags with files of our own start the proxy (it is stopped at once).
        keylog = os.path.join(self.tmp, "keys")
        log = os.path.join(self.tmp, "log.jsonl")
        x = Proxy(upstream=(HOST, 1), ca_dir=self.ca_dir, write=False,
                  extra=["--keylog", keylog, "--write", log])
        try:
            self.assertEqual(x.stop(), 0)
        finally:
            x.cleanup()
        for p in (keylog, log):
            self.assertEqual(stat.S_IMODE(os.stat(p).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(self.ca_dir).st_mode), 0o700)


if __name__ == "__main__":
    unittest.main()

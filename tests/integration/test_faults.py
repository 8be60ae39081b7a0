"""Faults and hostile input through the real proxy (issue 6): each side disconnecting at every
phase, resets and half-closes, hostile streams, slow and idle peers, an unwritable log.

    cd tests/integration
    XMPPSCOPE=../../build/proxy/xmppscope /usr/bin/python3 -m unittest -v test_faults

Each test checks what each side gets, that the proxy logs the cause and the per-session
"session closed" summary (the session was freed), and that it serves the next client.
Only 127.0.0.1 is used.
"""

import html
import os
import select
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import test_proxy as tp  # noqa: E402  (not "from": its test classes would run here too)
from xmpptest import rawclient  # noqa: E402
from xmpptest.faults import ScriptServer, client_hello, closed_notes, rst_close  # noqa: E402
from xmpptest.prosody import make_ca, make_server_cert  # noqa: E402
from xmpptest.proxy import SANITIZER_PATTERN, xmppscope_binary  # noqa: E402

DOMAIN, HOST, H = tp.DOMAIN, tp.HOST, tp.H
END = rawclient.STREAM_END
raw = tp.raw


class FaultCase(tp.ProxyCase):
    plain_pair = tp.ErrorCases.plain_pair
    open_session = tp.ErrorCases.open_session

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv_ca, cls.srv_ca_key = make_ca(cls.tmp, name="fake-ca", cn="fake server CA")
        cls.srv_cert, cls.srv_key = make_server_cert(cls.tmp, cls.srv_ca, cls.srv_ca_key,
                                                     [DOMAIN], name="fake-server")

    def assert_closed(self, x, n=1, cause=None, timeout=5.0):
        """At least n "session closed" notes; the last one names `cause` (a substring)."""
        deadline = time.monotonic() + timeout
        while True:
            notes = closed_notes(x)
            if len(notes) >= n and (cause is None or cause in notes[n - 1]):
                return notes
            if time.monotonic() > deadline:
                self.fail(f"expected {n} session-closed notes, the last with {cause!r}: {notes}")
            time.sleep(0.02)

    def assert_logged(self, x, text, timeout=5.0):
        ev = x.wait_for_log(lambda e: text in e.get("message", ""), timeout)
        self.assertIsNotNone(ev, f"no log event with {text!r}")
        return ev


# =================================================================================================
# Disconnects at every phase
# =================================================================================================
class Disconnects(FaultCase):

    def test_client_closes_before_stream_header(self):
        srv, x = self.plain_pair()
        with raw(x.port) as c:
            c.send(b"<?xml version='1.0'?><stream:str")
        self.assert_closed(x, 1, "client")
        self.assertEqual(srv.conns, [], "the server is not contacted for half a header")
        self.assert_serves(x, srv)

    def test_client_closes_after_stream_header(self):
        srv, x = self.plain_pair()
        c, conn = self.open_session(x, srv)
        c.close()
        self.assertTrue(conn.wait_closed(3))
        self.assertEqual(conn.received, H + END, "the server gets a clean end of stream")
        self.assert_closed(x, 1, "client")
        self.assert_logged(x, "client closed the connection without closing its stream")
        self.assert_serves(x, srv)

    def test_client_closes_mid_stanza(self):
        srv, x = self.plain_pair()
        c, conn = self.open_session(x, srv)
        c.send(b"<message><body>complete</body></message><message><bo")
        conn.wait_for(b"complete</body></message>")
        c.close()
        self.assertTrue(conn.wait_closed(3))
        self.assertEqual(conn.received, H + b"<message><body>complete</body></message>" + END,
                         "half a stanza is never forwarded")
        self.assert_closed(x, 1, "client")
        self.assert_serves(x, srv)

    def test_client_closes_after_stream_end(self):
        srv, x = self.plain_pair()
        c, conn = self.open_session(x, srv)
        c.send(END)
        conn.wait_for(END)
        c.close()
        # The client's FIN could be a half-close: the proxy waits for the server's end of
        # stream (bounded by --close-timeout), which a real server sends at once.
        conn.send(END)
        self.assertTrue(conn.wait_closed(3))
        self.assertEqual(conn.received, H + END, "exactly one </stream:stream>")
        self.assert_closed(x, 1)
        self.assert_serves(x, srv)

    def test_client_half_close_after_stream_end_still_gets_server_end(self):
        srv, x = self.plain_pair()
        c, conn = self.open_session(x, srv)
        with c:
            mark = len(c.received)
            c.send(END)
            c.sock.shutdown(socket.SHUT_WR)
            conn.wait_for(END)
            conn.send(b"<message><body>last</body></message>" + END)
            c.read_all(timeout=3)
            self.assertEqual(c.received[mark:], b"<message><body>last</body></message>" + END,
                             "after its half-close the client still gets the server's end")
            self.assertTrue(c.closed_by_peer)
        self.assertTrue(conn.wait_closed(3))
        self.assertEqual(conn.received, H + END)
        self.assert_closed(x, 1)
        self.assert_serves(x, srv)

    def test_client_tls_half_close_said_once(self):
        """A TLS client closes its stream, sends close_notify, then half-closes (sendxmpp does):
        the proxy says once that it waits for the server, and the server's end still arrives."""
        srv, x = self.plain_pair()
        sock = socket.create_connection((HOST, x.tls_port), timeout=5)
        try:
            ctx = rawclient.make_ssl_context(x.ca_file)
            inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
            tls = ctx.wrap_bio(inc, out, server_hostname=DOMAIN)

            def pump():
                data = out.read()
                if data:
                    sock.sendall(data)

            def fill():
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("closed")
                inc.write(data)

            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    pump()
                    fill()
            pump()
            tls.write(H)
            pump()
            conn = srv.wait_connection()
            conn.wait_for(H)
            tls.write(END)
            pump()
            conn.wait_for(END)
            try:
                tls.unwrap()        # sends close_notify; the proxy's comes later
            except ssl.SSLWantReadError:
                pass
            pump()
            sock.shutdown(socket.SHUT_WR)
            line = ("client closed its side of the connection after closing its stream; "
                    "waiting for the server to close its stream")
            self.assert_logged(x, line)
            time.sleep(0.3)         # the FIN after close_notify has been read
            conn.send(END)
            self.assertTrue(conn.wait_closed(3))
        finally:
            sock.close()
        self.assert_closed(x, 1)
        notes = [e.get("message", "") for e in x.log_events()]
        self.assertEqual(sum(line in n for n in notes), 1, notes)
        self.assertEqual(sum(line in n for n in x.stdout_text().splitlines()), 1)

    def test_client_rst(self):
        srv, x = self.plain_pair()
        c, conn = self.open_session(x, srv)
        c.send(b"<presence/>")
        conn.wait_for(b"<presence/>")
        rst_close(c.sock)
        self.assertTrue(conn.wait_closed(3))
        self.assertEqual(conn.received, H + b"<presence/>" + END)
        self.assert_closed(x, 1, "client")
        self.assert_serves(x, srv)

    def test_client_closes_mid_tls_handshake(self):
        srv, x = self.plain_pair()
        hello = client_hello(DOMAIN.encode())
        for port in (x.tls_port,):
            with raw(port) as c:
                c.send(hello[:len(hello) // 2])
                time.sleep(0.2)
        self.assert_closed(x, 1, "client")
        self.assertEqual(srv.conns, [])
        self.assert_serves(x, srv, port=x.tls_port, tls=True)
        self.assert_serves(x, srv)

    def test_client_closes_mid_starttls_handshake(self):
        srv = self.fake_server(mode="starttls", cert=self.srv_cert, key=self.srv_key)
        x = self.start_proxy(upstream=srv.address, upstream_ca=self.srv_ca)
        with raw(x.port) as c:
            c.send(H)
            c.read_features()
            c.send(rawclient.STARTTLS)
            c.read_until(rawclient.PROCEED)
            hello = client_hello(DOMAIN.encode())
            c.send(hello[:len(hello) // 2])
            time.sleep(0.2)
        self.assert_closed(x, 1, "client")
        self.assertTrue(x.running)
        # The next client gets a whole session up to the server's features.
        with raw(x.port) as c:
            c.starttls(DOMAIN, ca_file=x.ca_file)
            c.send(H)
            self.assertIn(b"id='fake-1'", c.read_features())

    def test_client_rst_mid_tls_handshake(self):
        srv, x = self.plain_pair()
        hello = client_hello(DOMAIN.encode())
        with raw(x.tls_port) as c:
            c.send(hello)
            time.sleep(0.2)
            rst_close(c.sock)
        self.assert_closed(x, 1, "client")
        self.assert_serves(x, srv, port=x.tls_port, tls=True)

    # -- the server side --------------------------------------------------------------------------
    def test_server_closes_before_answering(self):
        srv = self.fake_server(mode="none", answer=False)
        x = self.start_proxy(upstream=srv.address, client_tls="none", upstream_tls="none")
        with raw(x.port) as c:
            c.send(H)
            conn = srv.wait_connection()
            conn.wait_for(H)
            conn.close()
            got = c.read_all(timeout=3)
        self.assertStreamError(got, "remote-connection-failed")
        self.assertTrue(c.closed_by_peer)
        self.assert_closed(x, 1, "remote-connection-failed")
        srv.answer = True
        self.assert_serves(x, srv)

    def test_server_closes_mid_stanza(self):
        srv, x = self.plain_pair()
        c, conn = self.open_session(x, srv)
        with c:
            mark = len(c.received)
            conn.send(b"<message><body>whole</body></message><message><bo")
            c.read_until(b"whole</body></message>")
            conn.close()
            c.read_all(timeout=3)
            self.assertEqual(c.received[mark:], b"<message><body>whole</body></message>" + END,
                             "half a stanza is never forwarded; the client gets a clean end")
            self.assertTrue(c.closed_by_peer)
        self.assert_closed(x, 1, "server")
        self.assert_logged(x, "server closed the connection without closing its stream")
        self.assert_serves(x, srv)

    def test_server_rst(self):
        srv, x = self.plain_pair()
        c, conn = self.open_session(x, srv)
        with c:
            mark = len(c.received)
            conn.send(b"<presence/>")
            c.read_until(b"<presence/>")
            rst_close(conn.sock)
            c.read_all(timeout=3)
            self.assertEqual(c.received[mark:], b"<presence/>" + END)
            self.assertTrue(c.closed_by_peer)
        self.assert_closed(x, 1, "server")
        self.assert_serves(x, srv)

    def test_server_closes_mid_tls_handshake(self):
        def handler(s, sock, i):
            s.recv_some(sock, i)          # the ClientHello (or part of it)
            sock.sendall(b"\x16\x03\x03\x00\x40\x02")   # the start of a ServerHello
            time.sleep(0.1)
            sock.close()
        with ScriptServer(handler) as ss:
            x = self.start_proxy(upstream=ss.address, upstream_direct=ss.address,
                                 upstream_ca=self.srv_ca, upstream_tls="direct")
            for _ in range(2):   # twice: the next client gets the same
                with raw(x.tls_port, direct_tls=True, domain=DOMAIN, ca_file=x.ca_file) as c:
                    c.send(H)
                    got = c.read_all(timeout=3)
                self.assertStreamError(got, "remote-connection-failed")
                self.assertTrue(c.closed_by_peer)
            self.assertEqual(ss.accepted, 2)
            self.assertTrue(ss.received[0].startswith(b"\x16\x03"), ss.received[0][:10])
            self.assertEqual(ss.errors, [])
        self.assert_closed(x, 2, "remote-connection-failed")
        self.assertTrue(x.running)


# =================================================================================================
# Hostile streams
# =================================================================================================
class HostileStreams(FaultCase):
    client_fault = tp.ErrorCases.client_fault

    def test_invalid_utf8(self):
        srv, x = self.plain_pair()
        for bad in (b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80"):
            with self.subTest(bad=bad):
                self.client_fault(x, srv, b"<message><body>a" + bad + b"</body></message>",
                                  "not-well-formed")
        self.assert_closed(x, 5, "not-well-formed")
        self.assert_serves(x, srv)

    def test_nul_byte(self):
        srv, x = self.plain_pair()
        self.client_fault(x, srv, b"<message><body>a\x00b</body></message>", "not-well-formed")
        # Between stanzas a NUL is text at depth 1: bad-format.
        self.client_fault(x, srv, b"<presence/>\x00", "bad-format", forwarded=b"<presence/>")
        self.assert_closed(x, 2, "bad-format")
        self.assert_serves(x, srv)

    def test_second_root_element_after_stream_end(self):
        srv = self.fake_server(mode="none", answer=True)
        x = self.start_proxy(upstream=srv.address, client_tls="none", upstream_tls="none",
                             extra=["--close-timeout", "1"])
        c, conn = self.open_session(x, srv)
        with c:
            c.send(END + H + b"<presence/>")
            got = c.read_all(timeout=4)
            self.assertTrue(c.closed_by_peer)
        self.assertTrue(conn.wait_closed(3))
        self.assertEqual(conn.received, H + END, "nothing after the first root is forwarded")
        self.assertNotIn(b"<presence/>", got)
        self.assert_closed(x, 1)
        self.assert_serves(x, srv)

    def test_26000_attributes_refused_at_once(self):
        """libxml2 2.9 checks attributes pairwise: 26,000 of them cost seconds. The proxy
        refuses the element at the 65th (--max-attrs), from either side, and stays quick."""
        attrs = b"".join(b" a%d=''" % k for k in range(26000))
        srv, x = self.plain_pair()
        t0 = time.monotonic()
        self.client_fault(x, srv, b"<presence/><message" + attrs + b"/>", "policy-violation",
                          forwarded=b"<presence/>")
        self.assertLess(time.monotonic() - t0, 3.0)
        self.assert_logged(x, "an element has more than 64 attributes (limit --max-attrs)")
        # The server's side: the client gets a clean end, the server the stream error.
        c, conn = self.open_session(x, srv)
        with c:
            mark = len(c.received)
            conn.send(b"<presence/><iq><query" + attrs + b"/></iq>")
            c.read_all(timeout=3)
            self.assertEqual(c.received[mark:], b"<presence/>" + END)
            self.assertTrue(c.closed_by_peer)
        self.assertTrue(conn.wait_closed(3))
        self.assertStreamError(conn.received, "policy-violation")
        self.assert_closed(x, 2, "policy-violation")
        self.assert_serves(x, srv)

    def test_nesting_10000_deep(self):
        srv, x = self.plain_pair()
        self.client_fault(x, srv, b"<message>" + b"<a>" * 10000, "policy-violation")
        self.assert_closed(x, 1, "policy-violation")
        self.assert_serves(x, srv)

    def test_100mb_stanza_is_cut_off_early(self):
        srv, x = self.plain_pair()
        c, conn = self.open_session(x, srv)
        before = len(conn.received)
        sock = c.sock
        sock.setblocking(False)
        total = 100 << 20
        chunk = b"x" * 65536
        sent, got, at = 0, b"", 0
        data = b"<message><body>"
        deadline = time.monotonic() + 20
        closed = False
        while sent < total and time.monotonic() < deadline and not closed:
            r, w, _ = select.select([sock], [sock], [], 0.5)
            if r:
                try:
                    d = sock.recv(65536)
                except OSError:
                    closed = True
                    break
                if not d:
                    closed = True
                    break
                got += d
            if w:
                try:
                    n = sock.send(data[at:] if at < len(data) else chunk)
                except OSError:
                    closed = True
                    break
                if at < len(data):
                    at += n
                sent += n
        # Whatever is still on its way to the client.
        sock.setblocking(True)
        c._pending = b""
        got += c.read_all(timeout=2)
        c.close()
        self.assertTrue(closed or c.closed_by_peer, f"never cut off after {sent} bytes")
        self.assertLess(sent, 16 << 20, "the client could push far past --max-stanza")
        self.assertStreamError(got, "policy-violation")
        self.assertTrue(conn.wait_closed(3))
        self.assertEqual(conn.received[before:], END, "nothing of the huge stanza forwarded")
        self.assert_closed(x, 1, "policy-violation")
        print(f"100 MB stanza: cut off after {sent >> 10} KiB", file=sys.stderr)
        self.assert_serves(x, srv)

    def test_5000_stanzas_without_reading_replies(self):
        srv, x = self.plain_pair()
        c, conn = self.open_session(x, srv)
        with c:
            mark = len(c.received)
            stanzas = b"".join(b"<message id='m%d' to='bob@example.test'><body>%d</body></message>"
                               % (i, i) for i in range(5000))
            replies = b"".join(b"<message id='r%d'><body>%d</body></message>" % (i, i)
                               for i in range(5000))
            # The server answers everything while the client writes and reads nothing.
            conn.send(replies)
            c.send(stanzas)
            self.assertEqual(conn.wait_len(len(H) + len(stanzas), timeout=15), H + stanzas)
            c.read_until(b"<message id='r4999'><body>4999</body></message>", timeout=15)
            self.assertEqual(c.received[mark:], replies)
            c.send(END)
            conn.wait_for(END)
            conn.send(END)
            c.read_all(timeout=3)
            self.assertTrue(c.closed_by_peer)
        notes = self.assert_closed(x, 1)
        self.assertIn("c2s 5000 stanzas", notes[0])
        self.assertIn("s2c 5001 stanzas", notes[0])   # the features count as one
        self.assert_serves(x, srv)

    def test_console_nobody_reads(self):
        """Standard output is a pipe nobody reads (a pager left on its first screen): the console
        drops what it cannot show, the traffic goes on at full speed, the --write log keeps
        everything, and standard error says how many events were not shown."""
        srv, x = self.plain_pair(fmt="pretty", stdout_pipe=True)
        c, conn = self.open_session(x, srv)
        n = 5000
        with c:
            pad = b"x" * 2000
            stanzas = b"".join(b"<message id='m%d' to='bob@example.test'><body>%d %s</body>"
                               b"</message>" % (i, i, pad) for i in range(n))
            c.send(stanzas)
            # The pipe holds 64 KiB and the console's queue 8 MiB: about 4,000 of these events,
            # pretty-printed; the rest is dropped.
            self.assertEqual(conn.wait_len(len(H) + len(stanzas), timeout=15), H + stanzas)
            c.send(END)
            conn.wait_for(END)
            conn.send(END)
            c.read_all(timeout=3)
        notes = self.assert_closed(x, 1)
        self.assertIn(f"c2s {n} stanzas", notes[0])
        self.assertEqual(x.stop(), 0)
        self.assertRegex(x.stderr_text(), r"the console did not keep up: \d+ events were not "
                                          r"shown")
        logged = [e for e in x.log_events() if e.get("name") == "message"]
        self.assertEqual(len(logged), n)

    def test_absurd_sni(self):
        srv, x = self.plain_pair()
        for sni in (b"a" * 300 + b".example.test", b"bad name\x00<&>.test", b"\xff" * 40,
                    b"." * 255, b"a." * 127, b""):
            with self.subTest(sni=sni[:20]):
                with raw(x.tls_port) as c:
                    c.send(client_hello(sni))
                    c.read_all(timeout=1)
                self.assertTrue(x.running)
        self.assertEqual(srv.conns, [])
        self.assert_closed(x, 6)          # every one of them was freed
        self.assert_serves(x, srv, port=x.tls_port, tls=True)
        self.assert_serves(x, srv)


# =================================================================================================
# Between STARTTLS and the TLS handshake (issue 11)
# =================================================================================================
INJECTED = b"<message to='bob@example.test'><body>injected</body></message>"


class StarttlsGap(FaultCase):
    """Whitespace after <starttls/> or <proceed/> ends the plaintext stream and is consumed;
    any other plaintext there is the STARTTLS command injection class: never forwarded, never
    given to TLS, and the leg fails with a line that says what came."""

    def starttls_pair(self, **kw):
        srv = self.fake_server(mode="starttls", cert=self.srv_cert, key=self.srv_key, **kw)
        x = self.start_proxy(upstream=srv.address, upstream_ca=self.srv_ca)
        return srv, x

    def test_server_whitespace_after_proceed(self):
        srv, x = self.starttls_pair(after_proceed=b"\r\n ")
        with raw(x.port) as c:
            c.starttls(DOMAIN, ca_file=x.ca_file)
            c.send(H)
            self.assertIn(b"id='fake-1'", c.read_features())
            conn = srv.wait_connection()
            self.assertEqual(conn.tls_version, "TLSv1.3")
            c.send(END)
            conn.wait_for(END)
            conn.send(END)
            c.read_all(timeout=3)
        self.assert_closed(x, 1, "both streams closed")

    def test_client_injection_after_starttls(self):
        srv, x = self.starttls_pair()
        with raw(x.port) as c:
            c.send(H)
            c.read_features()
            c.send(rawclient.STARTTLS + INJECTED)
            c.read_until(rawclient.PROCEED)
            got = c.read_all(timeout=3)
            self.assertTrue(c.closed_by_peer)
            self.assertNotIn(b"injected", got)
        self.assert_logged(x, "bytes of plaintext after <starttls/> before the TLS handshake: "
                              "'<message to='bob@example.test'><body>inj...' "
                              "(STARTTLS injection?)")
        self.assert_closed(x, 1, "STARTTLS injection?")
        for conn in srv.conns:
            self.assertNotIn(b"injected", conn.pre_tls + conn.received)
        self.assert_serves_starttls(x, srv)

    def test_server_injection_after_proceed(self):
        srv, x = self.starttls_pair(
            after_proceed=b"\n<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>\x1b[2J")
        with raw(x.port) as c:
            # The server leg negotiates while the client does: the failure may reach the client
            # before its own STARTTLS (in plaintext) or after it; either way it is told why.
            try:
                c.starttls(DOMAIN, ca_file=x.ca_file)
                c.send(H)
                got = c.read_all(timeout=5)
            except rawclient.RawClientError as e:
                got = e.data
            self.assertStreamError(got, "remote-connection-failed")
            self.assertIn(b"STARTTLS injection?", got)
            self.assertNotIn(b"success", got)
        ev = self.assert_logged(x, "bytes of plaintext after <proceed/> before the TLS handshake: "
                                   "'<success xmlns='urn:ietf:params:xml:ns:x...' (STARTTLS injection?)")
        self.assertIn("(STARTTLS injection?)", ev["message"])
        self.assertNotIn("\x1b", x.stderr_text() + x.log_text())
        self.assert_closed(x, 1, "remote-connection-failed")

    def assert_serves_starttls(self, x, srv):
        with raw(x.port) as c:
            c.starttls(DOMAIN, ca_file=x.ca_file)
            c.send(H)
            self.assertIn(b"id='fake-1'", c.read_features())
        self.assertTrue(x.running)


# =================================================================================================
# Data after the client's </stream:stream>, through the proxy to Prosody
# =================================================================================================
class DataAfterStreamEnd(tp.ProsodyCase):

    def test_sm_ack_after_stream_end(self):
        """xmpp.js may send an XEP-0198 <a/> after its </stream:stream>. XML allows nothing but
        whitespace after the root element: the client gets <not-well-formed/> naming what came
        after what; Prosody gets what came before and exactly one </stream:stream>."""
        x = self.proxy(client_tls="none", upstream_tls="starttls")
        with raw(x.port) as c:
            c.send(H)
            c.read_features()
            c.send(b"<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
            c.read_until(b"id='p1'")
            c.send(END + b"<a xmlns='urn:xmpp:sm:3' h='3'/>")
            got = c.read_all(timeout=5)
            self.assertTrue(c.closed_by_peer)
        self.assertStreamError(got, "not-well-formed")
        self.assertTrue(got.endswith(b"</stream:stream>"), got)
        text = html.unescape(got.decode("utf-8", "replace"))
        want = ("'<a xmlns='urn:xmpp:sm:3' h='3'/>' arrived after the stream was closed with "
                "</stream:stream>")
        self.assertIn(want, text)
        ev = self.assert_closed_note(x, "not-well-formed")
        self.assertIn(want, ev)
        console = x.stdout_text()
        self.assertIn("<not-well-formed/> to the client: " + want, console)
        self.assertNotIn("bad-format", console)
        self.assertNotIn("the stream element is empty", console)
        # Prosody got the stanza and one clean end of the client's stream, nothing after it.
        sent = [e for e in x.log_events() if e.get("dir") == "c2s"]
        self.assertEqual(sum(e.get("event") == "stream-close" for e in sent), 1, sent)

    def assert_closed_note(self, x, condition):
        ev = x.wait_for_log(lambda e: e.get("level") == "error"
                            and f"<{condition}/>" in e.get("message", ""))
        self.assertIsNotNone(ev, x.log_text()[-3000:])
        return ev["message"]


# =================================================================================================
# Slow and idle peers
# =================================================================================================
class SlowPeers(FaultCase):

    def test_slowloris_client_cut_off_by_handshake_timeout(self):
        srv, x = self.plain_pair(extra=["--handshake-timeout", "2"])
        t = time.monotonic()
        sent = 0
        with raw(x.port, timeout=6) as c:
            try:
                for b in H:
                    c.send(bytes([b]))
                    sent += 1
                    r, _, _ = select.select([c.sock], [], [], 0.2)
                    if r:
                        break
            except OSError:
                pass
            got = c.read_all(timeout=3)
            elapsed = time.monotonic() - t
        self.assertLess(sent, len(H), "the header was finished")
        self.assertTrue(1.8 <= elapsed < 4, elapsed)
        self.assertStreamError(got, "connection-timeout")
        self.assertTrue(c.closed_by_peer)
        self.assert_closed(x, 1, "connection-timeout")
        self.assert_serves(x, srv)

    def test_server_never_answers(self):
        srv = self.fake_server(mode="none", answer=False)
        x = self.start_proxy(upstream=srv.address, client_tls="none", upstream_tls="none",
                             extra=["--handshake-timeout", "2"])
        t = time.monotonic()
        with raw(x.port, timeout=6) as c:
            c.send(H)
            got = c.read_all(timeout=5)
        elapsed = time.monotonic() - t
        self.assertIn(tp.stream_error(got), ("remote-connection-failed", "connection-timeout"),
                      got)
        self.assertTrue(c.closed_by_peer)
        self.assertTrue(1.8 <= elapsed < 3.5, elapsed)
        self.assertTrue(srv.conns[0].wait_closed(3))
        self.assert_closed(x, 1)
        srv.answer = True
        self.assert_serves(x, srv)


# =================================================================================================
# The log file
# =================================================================================================
class ResourceExhaustion(FaultCase):
    def test_more_connections_than_the_fd_limit(self):
        """With a limit of 64 open files, a flood of connections: new ones are refused with a
        log line (the accept error), the session already open goes on unharmed, and once the
        flood is gone new clients are served again."""
        srv = self.fake_server(mode="none")
        x = tp.Proxy(upstream=srv.address, client_tls="none", upstream_tls="none",
                     ca_dir=self.ca_dir, start=False)
        self.proxies.append(x)
        x.argv = ["prlimit", "--nofile=64:64", "--"] + x.argv
        x.start()
        c, conn = self.open_session(x, srv)
        flood = []
        try:
            for _ in range(80):
                try:
                    s = socket.create_connection((tp.HOST, x.port), timeout=2)
                    s.sendall(H)  # each accepted one wants a server leg too
                    flood.append(s)
                except OSError:
                    break
            self.assertTrue(x.wait_for_stderr(r"refusing a connection on .*: \d+ sessions open, "
                                              r"the most the open-files limit \(64\) allows",
                                              timeout=10), x.dump())
            msg = b"<message to='bob@example.test'><body>unharmed</body></message>"
            c.send(msg)
            conn.wait_for(msg)
            reply = b"<message from='bob@example.test'><body>still here</body></message>"
            conn.send(reply)
            c.read_until(reply, timeout=5)
        finally:
            for s in flood:
                s.close()
        with c:
            c.send(END)
            conn.wait_for(END)
            conn.send(END)
            c.read_all(timeout=3)
        self.assertTrue(x.running)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                self.assert_serves(x, srv)
                break
            except (AssertionError, rawclient.RawClientError, OSError):
                # Until the flood's sessions are gone, a new one may still be refused (reset).
                if time.monotonic() > deadline - 0.5:
                    raise
                time.sleep(0.3)


class LogDiskFull(FaultCase):
    def test_log_on_a_full_disk_forwarding_goes_on(self):
        """--write to a device that is always full (/dev/full): the session is forwarded
        byte for byte all the same, and the console says once that the log cannot be written."""
        srv = self.fake_server(mode="none")
        x = self.start_proxy(upstream=srv.address, client_tls="none", upstream_tls="none",
                             write=False, extra=["--write", "/dev/full"])
        c, conn = self.open_session(x, srv)
        with c:
            msg = b"<message to='bob@example.test'><body>logged nowhere</body></message>"
            c.send(msg)
            conn.wait_for(msg)
            conn.send(msg)
            c.read_until(msg, timeout=5)
            c.send(END)
            conn.wait_for(END)
            conn.send(END)
            c.read_all(timeout=3)
        deadline = time.monotonic() + 5
        while "cannot write the --write log" not in x.stdout_text():
            self.assertLess(time.monotonic(), deadline, x.dump())
            time.sleep(0.05)
        self.assertEqual(x.stdout_text().count("cannot write the --write log"), 1)
        self.assertTrue(x.running)

    def test_log_on_a_full_disk_stop(self):
        """--on-log-error stop with a log that cannot be written: the client gets
        <internal-server-error/>, nothing of its stream reaches the server (the first event
        could not be logged), the console says why, and the proxy goes on serving."""
        srv = self.fake_server(mode="none")
        x = self.start_proxy(upstream=srv.address, client_tls="none", upstream_tls="none",
                             write=False, extra=["--write", "/dev/full", "--on-log-error", "stop"])
        for _ in range(2):
            c = raw(x.port)
            with c:
                c.send(H)
                got = c.read_all(timeout=5)
                self.assertStreamError(got, "internal-server-error")
                self.assertIn(b"cannot write its log", got)
                self.assertTrue(c.closed_by_peer)
        self.assertEqual(len(srv.conns), 0)
        self.assertEqual(x.stdout_text().count("error: cannot write the --write log"), 2,
                         x.dump())
        self.assertTrue(x.running)

    def test_on_log_error_needs_write(self):
        r = subprocess.run([xmppscope_binary(), "proxy", "--upstream", "127.0.0.1:1",
                            "--on-log-error", "stop"], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=15)
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"--on-log-error goes with --write FILE", r.stderr)
        r = subprocess.run([xmppscope_binary(), "proxy", "--upstream", "127.0.0.1:1",
                            "--write", "/dev/null", "--on-log-error", "maybe"],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=15)
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"--on-log-error takes continue or stop, not 'maybe'", r.stderr)


class UnwritableLog(unittest.TestCase):

    def run_proxy(self, path):
        ca = tempfile.mkdtemp(prefix="xmpptest-faults-ca-")
        r = subprocess.run([xmppscope_binary(), "proxy", "--upstream", "127.0.0.1:1",
                            "--listen", "127.0.0.1:0", "--ca-dir", ca, "--write", path],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=15,
                           env=dict(os.environ, NO_COLOR="1"))
        return r.returncode, r.stderr.decode("utf-8", "replace")

    def check(self, path, cause):
        rc, err = self.run_proxy(path)
        self.assertEqual(rc, 1, err)
        self.assertIn(path, err)
        self.assertIn(cause, err)
        self.assertNotIn("listening on", err)
        self.assertNotRegex(err, SANITIZER_PATTERN)

    def test_nonexistent_directory(self):
        self.check("/nonexistent-xmppscope-dir/log.jsonl", "No such file or directory")

    def test_read_only_location(self):
        # sysfs refuses new files even to root.
        self.check(f"/sys/xmppscope-{os.getpid()}.jsonl", "Permission denied")

    @unittest.skipIf(os.geteuid() == 0, "root ignores directory permissions")
    def test_read_only_directory(self):
        d = tempfile.mkdtemp(prefix="xmpptest-ro-")
        os.chmod(d, 0o500)
        try:
            self.check(os.path.join(d, "log.jsonl"), "Permission denied")
        finally:
            os.chmod(d, 0o700)
            os.rmdir(d)

    def test_path_through_a_file(self):
        with tempfile.NamedTemporaryFile() as f:
            self.check(os.path.join(f.name, "log.jsonl"), "Not a directory")


if __name__ == "__main__":
    unittest.main()

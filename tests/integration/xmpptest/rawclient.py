"""A tiny raw-socket XMPP client for error-case tests.

It writes exactly the bytes it is given and returns exactly the bytes it reads, so a test can
send broken, partial or hostile input and see what comes back.  Only for 127.0.0.1.

    c = RawClient(port)                       # plain TCP
    c.starttls("example.test", ca_file=ca)    # manual STARTTLS: header, features, <starttls/>, <proceed/>, wrap
    c.send(stream_header("example.test"))
    data = c.read_until(b"</stream:features>")
    c.close()

    data = exchange(port, b"<garbage", tls="starttls", domain="example.test", ca_file=ca)
"""

import re
import socket
import ssl
import time

__all__ = ["RawClient", "RawClientError", "stream_header", "make_ssl_context", "exchange",
           "offered_mechanisms", "parse_mechanisms", "features_block", "STARTTLS", "STREAM_END"]

HOST = "127.0.0.1"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
STARTTLS = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
STREAM_END = b"</stream:stream>"
FEATURES_END = re.compile(rb"</(?:[A-Za-z0-9_.-]+:)?features\s*>|<(?:[A-Za-z0-9_.-]+:)?features\b[^>]*/>")
PROCEED = re.compile(rb"<proceed\b[^>]*(?:/>|>\s*</proceed>)")
TLS_FAILURE = re.compile(rb"<failure\b[^>]*" + re.escape(NS_TLS.encode()))


class RawClientError(Exception):
    """Unexpected reply or timeout; `data` holds what was received."""

    def __init__(self, msg, data=b""):
        super().__init__(f"{msg}; received {data[-600:]!r}")
        self.data = data


def stream_header(domain, lang="en", version="1.0", xml_decl=True, from_jid=None):
    """The client's opening <stream:stream> tag as bytes."""
    frm = f" from='{from_jid}'" if from_jid else ""
    decl = "<?xml version='1.0'?>" if xml_decl else ""
    return (f"{decl}<stream:stream to='{domain}'{frm} version='{version}' xml:lang='{lang}' "
            "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>").encode()


def make_ssl_context(ca_file=None, verify=True, tls_max=None, alpn=None):
    """Client SSL context. verify=False: no chain or name check. tls_max: "1.2" or "1.3"."""
    ctx = ssl.create_default_context(cafile=ca_file) if verify else ssl.SSLContext(
        ssl.PROTOCOL_TLS_CLIENT)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls_max:
        ctx.maximum_version = {"1.2": ssl.TLSVersion.TLSv1_2,
                               "1.3": ssl.TLSVersion.TLSv1_3}[str(tls_max)]
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


class RawClient:
    """A socket to host:port, optionally wrapped in TLS at once (direct_tls) or later."""

    def __init__(self, port, host=HOST, timeout=5.0, direct_tls=False, domain=None,
                 ca_file=None, verify=True, tls_max=None, alpn=None):
        self.host, self.port, self.timeout = host, port, timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.received = b""   # everything read on this connection (plain and TLS parts)
        self._pending = b""   # read but not yet returned by read_until
        self.leftover_before_tls = b""  # plaintext read after <proceed/> (should be empty)
        self.closed_by_peer = False
        if direct_tls:
            self.wrap_tls(domain, ca_file=ca_file, verify=verify, tls_max=tls_max, alpn=alpn)

    # -- TLS ----------------------------------------------------------------------------------
    @property
    def tls(self):
        return isinstance(self.sock, ssl.SSLSocket)

    def wrap_tls(self, domain, ca_file=None, verify=True, tls_max=None, alpn=None):
        """TLS handshake on the current socket, with SNI `domain`. Raises ssl.SSLError."""
        ctx = make_ssl_context(ca_file, verify, tls_max, alpn)
        self.leftover_before_tls, self._pending = self._pending, b""
        self.sock.settimeout(self.timeout)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=domain)
        return self.sock

    def tls_info(self):
        """(version, cipher name, peer certificate DER) of the TLS layer, or None."""
        if not self.tls:
            return None
        return self.sock.version(), self.sock.cipher()[0], self.sock.getpeercert(True)

    def starttls(self, domain, ca_file=None, verify=True, tls_max=None, header=None):
        """The STARTTLS dance by hand: send the stream header, read features (must offer
        starttls), send <starttls/>, read <proceed/>, wrap.  Returns the bytes read before TLS."""
        start = len(self.received)
        self.send(header if header is not None else stream_header(domain))
        data = self.read_features()
        if b"<starttls" not in data:
            raise RawClientError("no <starttls> in stream features", self.received[start:])
        self.send(STARTTLS)
        self.read_until(PROCEED)
        pre = self.received[start:]
        self.wrap_tls(domain, ca_file=ca_file, verify=verify, tls_max=tls_max)
        return pre

    # -- I/O ----------------------------------------------------------------------------------
    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _recv_once(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout()
        self.sock.settimeout(left)
        chunk = self.sock.recv(65536)
        if not chunk:
            self.closed_by_peer = True
        self.received += chunk
        return chunk

    def read_until(self, pattern, timeout=None):
        """Read until `pattern` (bytes or compiled bytes regex) appears; return the bytes up to
        and including the match (bytes after it stay buffered for the next read).  Raises
        RawClientError on timeout or on close before the pattern."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        what = getattr(pattern, "pattern", pattern)
        got, self._pending = self._pending, b""
        while True:
            if hasattr(pattern, "search"):
                m = pattern.search(got)
                end = m.end() if m else -1
            else:
                i = got.find(pattern)
                end = i + len(pattern) if i >= 0 else -1
            if end >= 0:
                self._pending = got[end:]
                return got[:end]
            try:
                chunk = self._recv_once(deadline)
            except (socket.timeout, TimeoutError):
                raise RawClientError(f"timeout waiting for {what!r}", got) from None
            except (ConnectionError, ssl.SSLError) as e:
                raise RawClientError(f"connection error ({e}) waiting for {what!r}", got) from None
            if not chunk:
                raise RawClientError(f"closed by peer before {what!r}", got)
            got += chunk

    def read_features(self, timeout=None):
        """Read up to and including the end of a <stream:features> element."""
        return self.read_until(FEATURES_END, timeout)

    def read_all(self, timeout=None):
        """Read until the peer closes or `timeout` passes; return what is buffered plus what this
        call read.  Never raises for timeout, reset or TLS errors (check closed_by_peer)."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        got, self._pending = self._pending, b""
        while True:
            try:
                chunk = self._recv_once(deadline)
            except (socket.timeout, TimeoutError):
                return got
            except (ConnectionError, ssl.SSLError, OSError):
                self.closed_by_peer = True
                return got
            if not chunk:
                return got
            got += chunk

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def exchange(port, data, tls=None, domain="example.test", ca_file=None, verify=True,
             tls_max=None, timeout=3.0, host=HOST, send_header=False):
    """Connect, optionally do TLS (tls=None | "starttls" | "direct"), optionally send a stream
    header (send_header=True), send `data` (bytes or list of bytes, sent one by one), read until
    the peer closes or `timeout`; return every byte received after the TLS set-up (for
    tls="starttls" the pre-TLS bytes are in the `pre` key)."""
    with RawClient(port, host=host, timeout=timeout, direct_tls=(tls == "direct"),
                   domain=domain, ca_file=ca_file, verify=verify, tls_max=tls_max) as c:
        pre = c.starttls(domain, ca_file, verify, tls_max) if tls == "starttls" else b""
        mark = len(c.received)
        if send_header:
            c.send(stream_header(domain))
        for part in ([data] if isinstance(data, (bytes, str)) else data):
            c.send(part)
        c.read_all(timeout)
        return {"pre": pre, "data": c.received[mark:], "closed": c.closed_by_peer,
                "tls": c.tls_info()[:2] if c.tls else None}


def features_block(data):
    """The last complete <features> element in `data` (bytes), or b""."""
    ends = list(FEATURES_END.finditer(data))
    if not ends:
        return b""
    end = ends[-1]
    start = data.rfind(b"features", 0, end.start() if end.group().startswith(b"</") else end.end())
    start = data.rfind(b"<", 0, start)
    return data[start:end.end()]


def parse_mechanisms(data):
    """SASL <mechanism> names in `data` (bytes), in order."""
    return [m.decode() for m in re.findall(rb"<mechanism>\s*([A-Za-z0-9_-]+)\s*</mechanism>", data)]


def offered_mechanisms(port, domain, ca_file=None, direct_tls=False, tls_max=None, host=HOST,
                       verify=True, timeout=5.0):
    """Connect (STARTTLS or direct TLS) and return the SASL mechanisms offered after TLS."""
    with RawClient(port, host=host, timeout=timeout, direct_tls=direct_tls, domain=domain,
                   ca_file=ca_file, verify=verify, tls_max=tls_max) as c:
        if not direct_tls:
            c.starttls(domain, ca_file, verify, tls_max)
        c.send(stream_header(domain))
        mechs = parse_mechanisms(c.read_features())
        try:
            c.send(STREAM_END)
        except OSError:
            pass
        return mechs

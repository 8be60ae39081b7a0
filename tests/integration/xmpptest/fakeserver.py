"""A scripted fake XMPP server on 127.0.0.1 that records every byte it receives.

    with FakeServer(mode="none") as srv:             # or "direct" / "starttls" with cert+key
        ... point a proxy's --upstream at srv.port ...
        conn = srv.wait_connection()
        conn.wait_for(b"<message")
        conn.send(b"<message ...>...</message>")
        conn.received                                # every byte of its (secured) stream

For each connection it waits for the client's stream header and answers with `header` and
`features` (unless answer=False); in "starttls" mode the first stream offers STARTTLS (required),
answers <starttls/> with <proceed/>, and the second stream (over TLS) is answered as above.
After the answer it only records; the test sends whatever it wants with conn.send().
"""

import re
import socket
import ssl
import threading
import time

__all__ = ["FakeServer", "FakeConn", "server_header", "DEFAULT_FEATURES", "HEADER_RE"]

HOST = "127.0.0.1"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
HEADER_RE = re.compile(rb"<(?:[A-Za-z0-9_.-]+:)?stream\b[^>]*>")
DEFAULT_FEATURES = (b"<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
                    b"</stream:features>")


def server_header(domain="example.test", sid="fake-1"):
    return (f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
            f"xmlns:stream='http://etherx.jabber.org/streams' from='{domain}' id='{sid}' "
            f"version='1.0' xml:lang='en'>").encode()


class FakeConn:
    """One accepted connection."""

    def __init__(self, server, sock):
        self.server = server
        self.sock = sock
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.received = b""       # bytes of the stream that is forwarded (after TLS if any)
        self.pre_tls = b""        # starttls mode: the plaintext stream before <proceed/>
        self.sent = b""           # every byte this side sent on the secured stream
        self.closed = False       # EOF or error seen
        self.error = None         # TLS or socket error text
        self.tls_version = None
        self.sni = None
        self.answered = False
        self.stop_reading = False  # set by a test: stop consuming what arrives

    # -- for tests ----------------------------------------------------------------------------
    def send(self, data, chunks=None, pause=0.0):
        """Send bytes (or a list of byte strings, one write each; or `data` cut into `chunks`
        sizes, cycling). A short pause between writes keeps them separate on the wire."""
        if isinstance(data, str):
            data = data.encode()
        parts = data if isinstance(data, list) else _cut(data, chunks)
        for part in parts:
            with self.lock:
                self.sent += part
            self.sock.sendall(part)
            if pause:
                time.sleep(pause)

    def wait_for(self, pattern, timeout=5.0, start=0):
        """Wait until `pattern` (bytes or compiled regex) is in received[start:]; return
        received. Raises AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                hay = self.received[start:]
                found = (pattern.search(hay) if hasattr(pattern, "search") else pattern in hay)
                if found:
                    return self.received
                left = deadline - time.monotonic()
                if left <= 0 or (self.closed and not found):
                    raise AssertionError(f"fake server: no {getattr(pattern, 'pattern', pattern)!r}"
                                         f" (closed={self.closed}, error={self.error}); received "
                                         f"{self.received[-800:]!r}")
                self.changed.wait(min(left, 0.1))

    def wait_len(self, n, timeout=5.0):
        """Wait until at least n bytes were received; return received."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(self.received) < n and not self.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.changed.wait(min(left, 0.1))
            return self.received

    def wait_closed(self, timeout=5.0):
        """Wait for the peer's EOF (or an error); return True if it came."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while not self.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(min(left, 0.1))
            return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- the connection's thread ----------------------------------------------------------------
    def _recv(self):
        if self.stop_reading:
            # A server that stops reading: the test checks the proxy's backpressure.
            time.sleep(0.05)
            return None
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return None
        except (OSError, ssl.SSLError) as e:
            self.error = f"{type(e).__name__}: {e}"
            return b""
        return data

    def _append(self, data, pre=False):
        with self.lock:
            if pre:
                self.pre_tls += data
            else:
                self.received += data
            self.changed.notify_all()

    def _mark_closed(self):
        with self.lock:
            self.closed = True
            self.changed.notify_all()
        # Like a real server: once the peer is gone (or we stop), close our side too.
        self.close()

    def _wrap(self):
        self.sock.settimeout(5)
        try:
            self.sock = self.server.ssl_ctx.wrap_socket(self.sock, server_side=True)
        except (OSError, ssl.SSLError) as e:
            self.error = f"TLS handshake: {type(e).__name__}: {e}"
            return False
        self.tls_version = self.sock.version()
        return True

    def run(self):
        srv = self.server
        try:
            self.sock.settimeout(0.2)
            if srv.mode == "direct" and not self._wrap():
                return
            if srv.mode == "starttls":
                buf = b""
                while not srv.stopping:
                    data = self._recv()
                    if data is None:
                        continue
                    if not data:
                        return
                    self._append(data, pre=True)
                    buf += data
                    if HEADER_RE.search(buf) and b"<stream:features" not in self.sent:
                        self._send_raw(srv.header + b"<stream:features><starttls xmlns='"
                                       + NS_TLS.encode() + b"'><required/></starttls>"
                                       b"</stream:features>")
                    if re.search(rb"<starttls\b[^>]*" + NS_TLS.encode(), buf):
                        self._send_raw(b"<proceed xmlns='" + NS_TLS.encode() + b"'/>"
                                       + srv.after_proceed)
                        if not self._wrap():
                            return
                        break
                with self.lock:
                    self.sent = b""
            self.sock.settimeout(0.2)
            while not srv.stopping:
                data = self._recv()
                if data is None:
                    continue
                if not data:
                    return
                self._append(data)
                if srv.answer and not self.answered and HEADER_RE.search(self.received):
                    self.answered = True
                    self._send_raw(srv.header + (srv.features or b""))
        finally:
            self._mark_closed()

    def _send_raw(self, data):
        with self.lock:
            self.sent += data
        try:
            self.sock.sendall(data)
        except OSError as e:
            self.error = f"send: {e}"


def _cut(data, chunks):
    if not chunks:
        return [data]
    out, i, k = [], 0, 0
    while i < len(data):
        n = chunks[k % len(chunks)]
        out.append(data[i:i + n])
        i += n
        k += 1
    return out


def loopback_listener():
    """A listening TCP socket on 127.0.0.1 with a port of the system's choice, accepting with a
    0.2 s timeout (so an accept loop can notice it should stop): (socket, port, "HOST:PORT")."""
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((HOST, 0))
    lsock.listen(16)
    lsock.settimeout(0.2)
    port = lsock.getsockname()[1]
    return lsock, port, f"{HOST}:{port}"


class FakeServer:
    """Listens on 127.0.0.1:<ephemeral>.

    mode      "none" (plain TCP), "direct" (TLS at once) or "starttls"
    cert,key  the server certificate for TLS modes
    header    the stream header sent in answer (default server_header())
    features  the <stream:features/> sent after it (bytes; None: none)
    answer    answer the client's header automatically (default True)
    after_proceed  bytes sent with <proceed/>, before the TLS handshake (starttls mode)
    """

    def __init__(self, mode="none", cert=None, key=None, header=None,
                 features=DEFAULT_FEATURES, answer=True, after_proceed=b""):
        if mode not in ("none", "direct", "starttls"):
            raise ValueError(mode)
        self.mode = mode
        self.header = header if header is not None else server_header()
        self.features = features
        self.answer = answer
        self.after_proceed = after_proceed
        self.ssl_ctx = None
        if mode != "none":
            self.ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ssl_ctx.load_cert_chain(cert, key)
        self.conns = []
        self.stopping = False
        self._cond = threading.Condition()
        self.lsock, self.port, self.address = loopback_listener()
        self._threads = []
        t = threading.Thread(target=self._accept_loop, daemon=True, name="fakeserver-accept")
        t.start()
        self._threads.append(t)

    def _accept_loop(self):
        while not self.stopping:
            try:
                sock, _ = self.lsock.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            conn = FakeConn(self, sock)
            t = threading.Thread(target=conn.run, daemon=True, name="fakeserver-conn")
            with self._cond:
                self.conns.append(conn)
                self._cond.notify_all()
            t.start()
            self._threads.append(t)

    def wait_connection(self, index=-1, count=None, timeout=5.0):
        """Wait until `count` connections were accepted (default: one more than index, or
        1); return conns[index]."""
        want = count if count is not None else (index + 1 if index >= 0 else 1)
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.conns) < want:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"fake server: {len(self.conns)} connections, "
                                         f"expected {want}")
                self._cond.wait(min(left, 0.1))
            return self.conns[index]

    def close(self):
        self.stopping = True
        try:
            self.lsock.close()
        except OSError:
            pass
        for c in list(self.conns):
            c.close()
        for t in self._threads:
            t.join(2)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

"""Helpers for the fault and hostile-input tests (test_faults.py).

    hello = client_hello("example.test")       # a TLS 1.3 ClientHello record, built by hand
    rst_close(sock)                            # close with SO_LINGER 0: the peer gets a RST
    with ScriptServer(handler) as s:           # accepts on 127.0.0.1, runs handler(sock) per
        ... s.port ...                         # connection in a thread; s.received holds bytes
"""

import os
import socket
import struct
import threading

from .fakeserver import loopback_listener

__all__ = ["client_hello", "rst_close", "ScriptServer", "closed_notes"]


def _ext(kind, body):
    return struct.pack("!HH", kind, len(body)) + body


def client_hello(sni=b"example.test", alpn=None):
    """A TLS record with a complete ClientHello (TLS 1.3, x25519, AES-GCM); `sni` is put in the
    server_name extension as given (bytes), so it can be absurd; None: no SNI."""
    if isinstance(sni, str):
        sni = sni.encode()
    exts = b""
    if sni is not None:
        name = b"\x00" + struct.pack("!H", len(sni)) + sni
        exts += _ext(0, struct.pack("!H", len(name)) + name)
    exts += _ext(43, b"\x02\x03\x04")                                  # supported_versions
    exts += _ext(10, b"\x00\x02\x00\x1d")                              # groups: x25519
    exts += _ext(13, b"\x00\x08\x04\x03\x08\x04\x04\x01\x08\x07")      # signature algorithms
    share = b"\x00\x1d\x00\x20" + os.urandom(32)
    exts += _ext(51, struct.pack("!H", len(share)) + share)           # key_share
    if alpn:
        lst = b"".join(bytes([len(p)]) + p for p in alpn)
        exts += _ext(16, struct.pack("!H", len(lst)) + lst)
    suites = b"\x13\x01\x13\x02\x13\x03"
    body = (b"\x03\x03" + os.urandom(32) + b"\x20" + os.urandom(32) +
            struct.pack("!H", len(suites)) + suites + b"\x01\x00" +
            struct.pack("!H", len(exts)) + exts)
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def rst_close(sock):
    """Close `sock` so that the peer gets a TCP RST instead of a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class ScriptServer:
    """A listener on 127.0.0.1 that runs handler(server, sock) for each accepted connection
    (in its own thread). handler may record into server.received (a list, one bytes per
    connection, appended by server.recv_some)."""

    def __init__(self, handler):
        self.handler = handler
        self.received = []
        self.accepted = 0
        self.errors = []
        self.stopping = False
        self.done = threading.Event()
        self.lsock, self.port, self.address = loopback_listener()
        self._threads = []
        t = threading.Thread(target=self._loop, daemon=True)
        t.start()
        self._threads.append(t)

    def _loop(self):
        while not self.stopping:
            try:
                sock, _ = self.lsock.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            self.accepted += 1
            self.received.append(b"")
            t = threading.Thread(target=self._run, args=(sock, len(self.received) - 1),
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def _run(self, sock, index):
        try:
            self.handler(self, sock, index)
        except Exception as e:   # recorded for the test, never raised in a thread
            self.errors.append(repr(e))
        finally:
            self.done.set()

    def recv_some(self, sock, index, until=None, timeout=5.0):
        """Read into received[index] until `until` (bytes) is in it, EOF or timeout."""
        sock.settimeout(timeout)
        while until is None or until not in self.received[index]:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            self.received[index] += data
            if until is None:
                return

    def close(self):
        self.stopping = True
        try:
            self.lsock.close()
        except OSError:
            pass
        for t in self._threads:
            t.join(2)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def closed_notes(proxy):
    """The messages of the per-session "session closed ..." notes in the proxy's --write log."""
    return [e.get("message", "") for e in proxy.log_events()
            if e.get("message", "").startswith("session closed")]

"""Start and stop xmppscope's proxy for tests.

    with Proxy(upstream=("127.0.0.1", p.starttls_port), upstream_direct=(..., p.direct_tls_port),
               upstream_ca=p.ca_file) as x:
        ... connect to x.port (--listen) or x.tls_port (--listen-tls); trust x.ca_file ...
    x.stop()  -> exit status; x.stderr_text(), x.stdout_text(), x.log_events()

The binary comes from $XMPPSCOPE (ctest sets it), else build/proxy/xmppscope in the checkout.
stdout and stderr go to files in the proxy's temporary folder; the bound ports are read from
the "listening on ADDR:PORT (client TLS: MODE)" lines on stderr. Only 127.0.0.1 is used.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

__all__ = ["Proxy", "ProxyError", "xmppscope_binary", "SANITIZER_PATTERN"]

HOST = "127.0.0.1"
DEFAULT_BINARY = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                              "..", "..", "..", "build", "proxy", "xmppscope"))
LISTEN_RE = re.compile(r"listening on 127\.0\.0\.1:(\d+) \(client TLS: (\w+)\)")
# What AddressSanitizer, LeakSanitizer and UBSan print when they find something.
SANITIZER_PATTERN = re.compile(r"ERROR: (?:Address|Leak|Memory|Thread)Sanitizer|"
                               r"runtime error:|SUMMARY: \w+Sanitizer")


def xmppscope_binary():
    return os.environ.get("XMPPSCOPE") or DEFAULT_BINARY


class ProxyError(RuntimeError):
    """The proxy did not start, or did not stop in time."""


def _hp(x):
    return x if isinstance(x, str) else f"{x[0]}:{x[1]}"


class Proxy:
    """One `xmppscope proxy` process.

    upstream, upstream_direct  (host, port) or "host:port"
    listen_tls                 also open the direct-TLS listener (--listen-tls); the plain
                               one (--listen) is always opened (its default is not port 0)
    client_tls                 --client-tls for the --listen socket (None: the default)
    upstream_tls               --upstream-tls (None: the default, mirror)
    upstream_ca                --upstream-ca FILE (None: the system store)
    ca_dir                     --ca-dir (default: a fresh folder in the temporary folder)
    write                      True: --write tmpdir/log.jsonl
    fmt                        --format (default compact)
    extra                      more arguments, e.g. ["--max-stanza", "4096"]
    """

    def __init__(self, upstream, upstream_direct=None, listen_tls=True,
                 client_tls=None, upstream_tls=None, upstream_ca=None, ca_dir=None, write=True,
                 fmt="compact", extra=(), env=None, start=True, start_timeout=15.0,
                 stdout_pipe=False):
        self.tmpdir = tempfile.mkdtemp(prefix="xmpptest-proxy-")
        self.ca_dir = ca_dir or os.path.join(self.tmpdir, "ca")
        self.ca_file = os.path.join(self.ca_dir, "ca.crt")
        self.log_path = os.path.join(self.tmpdir, "log.jsonl") if write else None
        self.stdout_path = os.path.join(self.tmpdir, "stdout.txt")
        self.stderr_path = os.path.join(self.tmpdir, "stderr.txt")
        self.port = self.tls_port = None
        # stdout_pipe: standard output is a pipe that nobody reads (a stuck pager).
        self.stdout_pipe = os.pipe() if stdout_pipe else None
        self.proc = None
        self.returncode = None
        argv = [xmppscope_binary(), "proxy", "--upstream", _hp(upstream), "--ca-dir", self.ca_dir]
        if upstream_direct is not None:
            argv += ["--upstream-direct", _hp(upstream_direct)]
        argv += ["--listen", f"{HOST}:0"]
        if listen_tls:
            argv += ["--listen-tls", f"{HOST}:0"]
        if client_tls:
            argv += ["--client-tls", client_tls]
        if upstream_tls:
            argv += ["--upstream-tls", upstream_tls]
        if upstream_ca:
            argv += ["--upstream-ca", upstream_ca]
        if self.log_path:
            argv += ["--write", self.log_path]
        if fmt:
            argv += ["--format", fmt]
        argv += list(extra)
        self.argv = argv
        self.n_listeners = 1 + int(bool(listen_tls))
        self.env = dict(os.environ if env is None else env)
        self.env.setdefault("NO_COLOR", "1")
        self.env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        self.env.pop("SSLKEYLOGFILE", None)
        self.start_timeout = start_timeout
        if start:
            try:
                self.start()
            except BaseException:
                self.cleanup()
                raise

    def start(self):
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
                    stdout = self.stdout_pipe[1] if self.stdout_pipe else out
                    self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                                 stdout=stdout, stderr=err, env=self.env,
                                                 cwd=self.tmpdir)
                break
            except OSError as e:
                # The binary is being relinked (EACCES / ETXTBSY / ENOENT for a moment).
                if time.monotonic() > deadline:
                    raise ProxyError(f"cannot run {self.argv[0]}: {e}") from e
                time.sleep(0.1)
        delay = 0.005
        while True:
            found = LISTEN_RE.findall(self.stderr_text())
            if len(found) >= self.n_listeners:
                # Printed in order: the --listen socket first, then --listen-tls.
                ports = [int(p) for p, _ in found]
                self.port = ports.pop(0)
                if "--listen-tls" in self.argv:
                    self.tls_port = ports.pop(0)
                return self
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                raise ProxyError(f"xmppscope exited with {self.returncode} while starting: "
                                 f"{' '.join(self.argv)}\n{self.stderr_text()}")
            if time.monotonic() > deadline:
                raise ProxyError(f"xmppscope did not listen within {self.start_timeout}s\n"
                                 f"{self.stderr_text()}")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    # -- state --------------------------------------------------------------------------------
    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Send `sig` and wait; returns the exit status (SIGKILL after `timeout`, then raises
        ProxyError). Idempotent."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                self.returncode = self.proc.returncode
                self.proc = None
                raise ProxyError(f"xmppscope did not exit within {timeout}s of signal {sig}")
        self.returncode = self.proc.returncode
        self.proc = None
        return self.returncode

    def wait(self, timeout=10.0):
        """Wait for the process to exit on its own; return its status, or None on timeout."""
        if self.proc is None:
            return self.returncode
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self.proc = None
        return self.returncode

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc is not None:
            self.returncode = self.proc.returncode
        self.proc = None

    # -- output -------------------------------------------------------------------------------
    @staticmethod
    def _read(path):
        try:
            with open(path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stderr_text(self):
        return self._read(self.stderr_path)

    def stdout_text(self):
        return self._read(self.stdout_path)

    def log_text(self):
        return self._read(self.log_path) if self.log_path else ""

    def log_events(self):
        """The --write log as a list of dicts (an incomplete last line is skipped)."""
        events = []
        for line in self.log_text().splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                pass
        return events

    def sanitizer_report(self):
        """The sanitizer report on stderr, or "" if there is none."""
        text = self.stderr_text()
        m = SANITIZER_PATTERN.search(text)
        return text[max(0, m.start() - 200):] if m else ""

    def wait_for_log(self, predicate, timeout=5.0):
        """Poll the log until some event satisfies predicate; return it (None on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.log_events():
                if predicate(ev):
                    return ev
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)

    def wait_for_stderr(self, pattern, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.stderr_text())
            if m or time.monotonic() > deadline:
                return m
            time.sleep(0.02)

    def dump(self, limit=6000):
        """stdout and stderr tails, for a failure message."""
        return (f"--- xmppscope argv: {' '.join(self.argv)}\n"
                f"--- stderr ({self.stderr_path}):\n{self.stderr_text()[-limit:]}\n"
                f"--- stdout ({self.stdout_path}):\n{self.stdout_text()[-limit:]}\n")

    def cleanup(self, keep=False):
        self.kill()
        if self.stdout_pipe:
            for fd in self.stdout_pipe:
                os.close(fd)
            self.stdout_pipe = None
        if not keep and not os.environ.get("XMPPTEST_KEEP"):
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.stop()
        finally:
            self.cleanup()
        return False

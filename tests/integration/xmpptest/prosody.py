"""A private Prosody server on 127.0.0.1 for tests.

Everything lives in a fresh temporary folder: a test CA and a server certificate made with the
``openssl`` command, the config, the data, the pid file and the log.  Nothing is committed and
nothing listens on any address but 127.0.0.1.

    with Prosody() as p:
        p.register("alice", "alicepass")
        ... connect to p.host:p.starttls_port (STARTTLS) or p.direct_tls_port (XEP-0368) ...
"""

import atexit
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref

__all__ = ["Prosody", "ProsodyError", "free_ports", "make_ca", "make_server_cert"]

HOST = "127.0.0.1"
PROSODY = "prosody"
PROSODYCTL = "prosodyctl"


class ProsodyError(RuntimeError):
    """Prosody could not be set up, started, stopped or asked something."""


def free_ports(count, host=HOST):
    """Return `count` distinct free TCP ports on `host` (bind port 0, read it, close).

    All sockets stay open until every port is picked, so the ports are distinct."""
    socks, ports = [], []
    try:
        while len(ports) < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _run(argv, what, timeout=30, cwd=None):
    try:
        r = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout)
    except FileNotFoundError as e:
        raise ProsodyError(f"{what}: {argv[0]} not found (run tests/install-deps.sh)") from e
    except subprocess.TimeoutExpired as e:
        raise ProsodyError(f"{what}: timed out after {timeout}s: {' '.join(argv)}") from e
    if r.returncode != 0:
        out = r.stdout.decode("utf-8", "replace").strip()
        raise ProsodyError(f"{what} failed (exit {r.returncode}): {' '.join(argv)}\n{out}")
    return r.stdout.decode("utf-8", "replace")


def make_ca(folder, name="ca", cn="xmppscope test CA", days=30):
    """Make a self-signed EC P-256 CA in `folder`; return (cert_path, key_path)."""
    cert = os.path.join(folder, name + ".pem")
    key = os.path.join(folder, name + ".key")
    _run(["openssl", "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
          "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
          "-days", str(days), "-subj", "/CN=" + cn,
          "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign"], "openssl CA")
    return cert, key


def make_server_cert(folder, ca_cert, ca_key, names, name="server", days=30, ips=()):
    """Make an EC P-256 server certificate for DNS `names` (first one is the CN) and IP
    addresses `ips`, signed by the CA; return (cert_path, key_path)."""
    cert = os.path.join(folder, name + ".pem")
    key = os.path.join(folder, name + ".key")
    csr = os.path.join(folder, name + ".csr")
    ext = os.path.join(folder, name + ".ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectKeyIdentifier=hash\n"
                "authorityKeyIdentifier=keyid\n"
                "subjectAltName=" + ",".join(["DNS:" + n for n in names] +
                                             ["IP:" + a for a in ips]) + "\n")
    _run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
          "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=" + names[0]], "openssl CSR")
    _run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key,
          "-set_serial", str(random.getrandbits(63) | 1), "-days", str(days), "-out", cert,
          "-extfile", ext], "openssl sign")
    os.unlink(csr)
    os.unlink(ext)
    return cert, key


def _lua_str(s):
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _lua_list(items):
    return "{ " + ", ".join(_lua_str(i) if isinstance(i, str) else str(i) for i in items) + " }"


def _listening_ports(host=HOST):
    """Set of TCP ports in LISTEN state on `host` (read from /proc/net/tcp: no subprocess)."""
    want = "%08X" % int.from_bytes(socket.inet_aton(host), "little")
    ports = set()
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split()
                addr, port = parts[1].split(":")
                if parts[3] == "0A" and addr in (want, "00000000"):
                    ports.add(int(port, 16))
    except OSError:
        out = subprocess.run(["ss", "-Hltn"], stdout=subprocess.PIPE, text=True).stdout
        for line in out.splitlines():
            local = line.split()[3]
            a, _, p = local.rpartition(":")
            if a in (host, "0.0.0.0", "*"):
                ports.add(int(p))
    return ports


def _is_gone(pid):
    """True if `pid` no longer exists or is a zombie (kill -0 succeeds on zombies)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("State:"):
                    return line.split()[1] in ("Z", "X")
    except OSError:
        return True
    return False


_LIVE = weakref.WeakSet()


@atexit.register
def _cleanup_all():
    """Stop every server still running when the interpreter exits (e.g. a test forgot)."""
    for p in list(_LIVE):
        try:
            p.cleanup()
        except Exception:
            pass


def wait_gone(pid, timeout=5.0):
    """Wait until `pid` is gone or a zombie (kill -0 succeeds on zombies)."""
    deadline = time.monotonic() + timeout
    while not _is_gone(pid) and time.monotonic() < deadline:
        time.sleep(0.01)


class ServerProcess:
    """What a private server in a temporary folder has whatever it is: its process (`proc`), its
    folder (`tmpdir`), its domain, and a life that ends in cleanup() however the test ends.
    Subclasses start it, register it in _LIVE and define stop()."""

    proc = None
    tmpdir = None

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def jid(self, user):
        return f"{user}@{self.domain}"

    def _wait_ready(self, error, name, delay, ready=lambda: True):
        """Wait until the server listens on both ports and `ready()` holds; raise `error` (with
        the server's output) when it exits or the start timeout passes."""
        want = {self.starttls_port, self.direct_tls_port}
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self.proc = None
                raise error(f"{name} exited with {rc} while starting\n"
                            f"{self._stdout_tail()}{self.log_tail()}")
            if want <= _listening_ports(self.host) and ready():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise error(f"{name} did not listen on {sorted(want)} within "
                            f"{self.start_timeout}s\n{self._stdout_tail()}{self.log_tail()}")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def cleanup(self):
        """Stop the server and remove the temporary folder. Idempotent."""
        self.stop()
        if self.tmpdir and os.path.isdir(self.tmpdir) and not os.environ.get("XMPPTEST_KEEP"):
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def close(self):
        self.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()
        return False

    def __del__(self):
        try:
            if self.proc is not None:
                self.stop()
        except Exception:
            pass


class Prosody(ServerProcess):
    """A private Prosody 0.12 on 127.0.0.1 in a temporary folder.

    Parameters
      domain         the VirtualHost and certificate name (default example.test)
      tls12          if True Prosody allows only TLS 1.2 (ssl protocol "tlsv1_2"); it then offers
                     SCRAM-SHA-1-PLUS (tls-unique) besides PLAIN and SCRAM-SHA-1.  With TLS 1.3
                     (the default) Prosody 0.12 offers no -PLUS mechanism.
      extra_modules  more modules_enabled (e.g. "smacks", "carbons")
      offline        keep mod_offline (default False: a message to an offline user bounces with
                     an error instead of being stored, so sessions do not leak into each other)
      log_level      Prosody log level for log_path (default "debug")
      extra_config   Lua text appended to the global section
      start          start at once (default True); otherwise call start()
      cert_ips       IP addresses the certificate also names (for clients that connect to
                     127.0.0.1 and check the certificate against the address)

    Attributes: host, domain, starttls_port, direct_tls_port, ca_file, ca_key, cert_file,
    key_file, tmpdir, config_path, log_path, pid (while running).
    """

    def __init__(self, domain="example.test", tls12=False, extra_modules=(), offline=False,
                 log_level="debug", extra_config="", start=True, start_timeout=10.0,
                 cert_ips=()):
        self.host = HOST
        self.domain = domain
        self.tls12 = tls12
        self.extra_modules = list(extra_modules)
        self.offline = offline
        self.log_level = log_level
        self.extra_config = extra_config
        self.start_timeout = start_timeout
        self.proc = None
        self._mechs = None
        self.tmpdir = tempfile.mkdtemp(prefix="xmpptest-prosody-")
        try:
            self.config_path = os.path.join(self.tmpdir, "prosody.cfg.lua")
            self.log_path = os.path.join(self.tmpdir, "prosody.log")
            self.pidfile = os.path.join(self.tmpdir, "prosody.pid")
            self.data_path = os.path.join(self.tmpdir, "data")
            self.certs_dir = os.path.join(self.tmpdir, "certs")
            os.mkdir(self.data_path, 0o700)
            os.mkdir(self.certs_dir, 0o700)
            self.ca_file, self.ca_key = make_ca(self.tmpdir)
            self.cert_file, self.key_file = make_server_cert(
                self.tmpdir, self.ca_file, self.ca_key, [domain], ips=cert_ips)
            self.starttls_port, self.direct_tls_port = free_ports(2)
            self._write_config()
            if start:
                self.start()
        except BaseException:
            self.cleanup()
            raise

    # -- config -----------------------------------------------------------------------------
    def _ssl_block(self):
        items = [f"certificate = {_lua_str(self.cert_file)}", f"key = {_lua_str(self.key_file)}"]
        if self.tls12:
            items.append('protocol = "tlsv1_2"')
        return "{ " + "; ".join(items) + " }"

    def _write_config(self):
        modules = ["roster", "saslauth", "tls", "disco", "ping", "posix"] + self.extra_modules
        disabled = ["s2s"] + ([] if self.offline else ["offline"])
        lines = [
            "-- generated by tests/integration/xmpptest/prosody.py",
            f"run_as_root = {'true' if os.geteuid() == 0 else 'false'}",
            f"pidfile = {_lua_str(self.pidfile)}",
            f"data_path = {_lua_str(self.data_path)}",
            f"certificates = {_lua_str(self.certs_dir)}",
            f"interfaces = {{ {_lua_str(self.host)} }}",
            f"local_interfaces = {{ {_lua_str(self.host)} }}",
            f"c2s_ports = {{ {self.starttls_port} }}",
            f"c2s_direct_tls_ports = {{ {self.direct_tls_port} }}",
            "s2s_ports = { }",
            "c2s_require_encryption = true",
            "allow_registration = false",
            'authentication = "internal_hashed"',
            'storage = "internal"',
            "admins = { }",
            f"modules_enabled = {_lua_list(modules)}",
            f"modules_disabled = {_lua_list(disabled)}",
            f"log = {{ {{ levels = {{ min = {_lua_str(self.log_level)} }}; to = \"file\"; "
            f"filename = {_lua_str(self.log_path)} }} }}",
            f"ssl = {self._ssl_block()}",
            f"c2s_direct_tls_ssl = {self._ssl_block()}",
            self.extra_config,
            "",
            f"VirtualHost {_lua_str(self.domain)}",
            f"    ssl = {self._ssl_block()}",
            "",
        ]
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines))

    # -- life cycle -------------------------------------------------------------------------
    def log_tail(self, lines=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def start(self):
        if self.proc is not None:
            raise ProsodyError("already started")
        out = open(os.path.join(self.tmpdir, "stdout.log"), "wb")
        try:
            self.proc = subprocess.Popen([PROSODY, "-F", "--config", self.config_path],
                                         cwd=self.tmpdir, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        except FileNotFoundError as e:
            raise ProsodyError("prosody not found (run tests/install-deps.sh)") from e
        finally:
            out.close()
        _LIVE.add(self)
        # Ready means listening on both ports and its pid file written (Prosody writes it a
        # moment after it starts listening; under load the gap is visible).
        return self._wait_ready(ProsodyError, "prosody", 0.005,
                                lambda: os.path.exists(self.pidfile))

    def _stdout_tail(self):
        try:
            with open(os.path.join(self.tmpdir, "stdout.log"), errors="replace") as f:
                text = f.read()[-2000:]
            return text + ("\n" if text else "")
        except OSError:
            return ""

    def stop(self, timeout=10.0):
        """SIGTERM, wait (reaping the child), SIGKILL after `timeout`. Idempotent."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        # Popen.wait reaps our child; still make sure no zombie/process is left under that pid.
        wait_gone(proc.pid)

    # -- users and queries ------------------------------------------------------------------
    def prosodyctl(self, *args, timeout=30):
        return _run([PROSODYCTL, "--config", self.config_path, *args], "prosodyctl",
                    timeout=timeout, cwd=self.tmpdir)

    def register(self, user, password):
        """Create user@domain with `password`; return the bare JID."""
        self.prosodyctl("register", user, self.domain, password)
        return f"{user}@{self.domain}"

    def offered_mechanisms(self, direct_tls=False, tls_max=None):
        """SASL mechanisms Prosody offers after TLS (one raw connection, a few ms)."""
        from . import rawclient
        port = self.direct_tls_port if direct_tls else self.starttls_port
        return rawclient.offered_mechanisms(port, self.domain, ca_file=self.ca_file,
                                            direct_tls=direct_tls, tls_max=tls_max,
                                            host=self.host)

    @property
    def sasl_mechanisms(self):
        """Mechanisms offered after STARTTLS with the best TLS version (cached)."""
        if self._mechs is None:
            self._mechs = self.offered_mechanisms()
        return self._mechs

    def __repr__(self):
        return (f"<Prosody {self.domain} starttls={self.host}:{self.starttls_port} "
                f"direct_tls={self.host}:{self.direct_tls_port} tmpdir={self.tmpdir}>")

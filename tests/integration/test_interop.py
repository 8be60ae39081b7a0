"""The interoperability matrix: real client stacks x real servers x both TLS modes, each cell
direct and through xmppscope.

    cd tests/integration
    XMPPSCOPE=../../build/proxy/xmppscope XS_STROPHE_SEND=../../build/tests/strophe_send \\
        /usr/bin/python3 -m unittest -v test_interop

Clients, none of them written here: slixmpp (Debian's python3-slixmpp), xmpp.js (@xmpp/client
from npm, pinned in clients/xmppjs/package-lock.json and installed into a cache folder by
clients/xmppjs/install.sh), libstrophe (a small C client, clients/strophe_send.c, that CMake
builds when libstrophe is installed), go-sendxmpp and sendxmpp (Debian's packages).
Servers: Prosody 0.12 and ejabberd 23.01 from Debian, each started privately on 127.0.0.1.

In each cell the client logs in as its own account, sends a chat message with a text unique to
the cell, and closes its stream. The cell passes when the client reports success and bob, logged
in directly to that server with slixmpp, receives exactly that text from that account; through
the proxy the proxy's log must also hold the message on its way to the server. One Prosody, one
ejabberd and one proxy in front of each serve every cell; cells run a few at a time.

The table of results is printed on stderr (Markdown, as in README's "Interoperability").
A client or server that is not installed fails the test when CI is set (CI=true), and only skips
its cells otherwise; the reason says what to install.
"""

import asyncio
import concurrent.futures
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from xmpptest.ejabberd import Ejabberd  # noqa: E402
from xmpptest.live import LiveClient  # noqa: E402
from xmpptest.prosody import Prosody  # noqa: E402
from xmpptest.proxy import Proxy, ProxyError  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.normpath(os.path.join(HERE, "..", ".."))
HOST = "127.0.0.1"
DOMAIN = "example.test"
CLIENTS = ("slixmpp", "xmpp.js", "libstrophe", "go-sendxmpp", "sendxmpp")
SERVERS = ("Prosody", "ejabberd")
TLS_MODES = ("starttls", "direct")
TLS_TITLE = {"starttls": "STARTTLS", "direct": "direct TLS"}
PATHS = ("direct", "proxy")
ACCOUNT = {"slixmpp": "slix", "xmpp.js": "xmppjs", "libstrophe": "strophe",
           "go-sendxmpp": "gosend", "sendxmpp": "sendxmpp"}
PASSWORD = "interop-pass"
BOB, BOB_PASSWORD = "bob", "bobpass"
PARALLEL = 4            # cells at once: each is a short burst of CPU (a client start, TLS, SASL)
CLIENT_TIMEOUT = 30     # seconds for one client run
DELIVERY_TIMEOUT = 8    # seconds for bob to see a message after its client said it was sent


def in_ci():
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def strophe_binary():
    return os.environ.get("XS_STROPHE_SEND") or os.path.join(TOP, "build", "tests",
                                                             "strophe_send")


class Cell:
    def __init__(self, client, server, tls, path):
        self.client, self.server, self.tls, self.path = client, server, tls, path
        self.key = f"{client}/{server}/{tls}/{path}"
        self.resource = "cell-" + "-".join(x.replace(".", "").replace(" ", "")
                                           for x in (client, server, tls, path))
        self.body = f"interop {self.key} {time.time_ns()}"
        self.ok = False
        self.status = "not run"     # ok, fail, missing
        self.why = ""
        self.output = ""
        self.rc = None
        self.delivered = False
        self.proxy_logged = None
        self.elapsed = 0.0

    def __repr__(self):
        return f"<Cell {self.key} {self.status}>"


class Interop(unittest.TestCase):
    """One test: the whole matrix, then one subtest per cell."""

    @classmethod
    def setUpClass(cls):
        cls.t0 = time.monotonic()
        cls.tmp = tempfile.mkdtemp(prefix="xmpptest-interop-")
        cls.home = os.path.join(cls.tmp, "home")      # no ~/.sendxmpprc or go-sendxmpp config
        os.mkdir(cls.home, 0o700)
        cls.servers, cls.proxies, cls.missing = {}, {}, {}
        cls.xmppjs_dir = None
        try:
            cls._find_clients()
            cls._start_servers()
        except BaseException:
            cls._teardown()
            raise

    @classmethod
    def tearDownClass(cls):
        cls._teardown()

    @classmethod
    def _teardown(cls):
        for x in cls.proxies.values():
            x.cleanup()
        for s in cls.servers.values():
            s.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # -- set-up -------------------------------------------------------------------------------
    @classmethod
    def _find_clients(cls):
        m = cls.missing
        try:
            import slixmpp  # noqa: F401
        except ImportError:
            m["slixmpp"] = "python3-slixmpp is not installed (bash tests/install-deps.sh)"
        if shutil.which("node") is None:
            m["xmpp.js"] = "node is not installed: install nodejs and npm (tests/install-deps.sh)"
        else:
            r = subprocess.run(["bash", os.path.join(HERE, "clients", "xmppjs", "install.sh")],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, timeout=300)
            if r.returncode != 0:
                m["xmpp.js"] = "installing xmpp.js failed: " + r.stderr.strip()[-1500:]
            else:
                cls.xmppjs_dir = r.stdout.strip().splitlines()[-1]
        if not os.access(strophe_binary(), os.X_OK):
            m["libstrophe"] = (f"{strophe_binary()} was not built: install libstrophe-dev "
                               "(tests/install-deps.sh) and run cmake again")
        for name in ("go-sendxmpp", "sendxmpp"):
            if shutil.which(name) is None:
                m[name] = f"{name} is not installed (Debian package {name}, tests/install-deps.sh)"

    @classmethod
    def _start_server(cls, name):
        # The certificates also name 127.0.0.1: xmpp.js connecting to xmpps://127.0.0.1 checks
        # the certificate against the address, as it would with any server reached by address.
        kind = Prosody if name == "Prosody" else Ejabberd
        kw = {"log_level": "info"} if kind is Prosody else {}
        srv = kind(domain=DOMAIN, cert_ips=[HOST], **kw)
        try:
            users = [(BOB, BOB_PASSWORD)] + [(a, PASSWORD) for a in ACCOUNT.values()]
            # ejabberdctl starts an Erlang VM for each call (about 0.7 s): a few at a time.
            with concurrent.futures.ThreadPoolExecutor(3) as pool:
                list(pool.map(lambda u: srv.register(*u), users))
        except BaseException:
            srv.cleanup()
            raise
        return srv

    @classmethod
    def _start_servers(cls):
        if not os.access("/usr/sbin/ejabberdctl", os.X_OK):
            cls.missing["ejabberd"] = "ejabberd is not installed (tests/install-deps.sh)"
        names = [n for n in SERVERS if n not in cls.missing]
        with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
            futures = {n: pool.submit(cls._start_server, n) for n in names}
            errors = []
            for n, f in futures.items():
                try:
                    cls.servers[n] = f.result()
                except Exception as e:      # keep the other server for its cleanup
                    errors.append(f"{n}: {e}")
            if errors:
                raise RuntimeError("cannot start the servers:\n" + "\n".join(errors))
        for n, srv in cls.servers.items():
            cls.proxies[n] = Proxy(upstream=(HOST, srv.starttls_port),
                                   upstream_direct=(HOST, srv.direct_tls_port),
                                   upstream_ca=srv.ca_file, fmt="compact",
                                   # The upstream is an address: a client that sends no SNI
                                   # (sendxmpp given an address) needs the name to forge.
                                   extra=["--server-name", DOMAIN])

    # -- one cell -----------------------------------------------------------------------------
    def _target(self, cell):
        """(port, CA file) the client of `cell` connects to and trusts."""
        srv = self.servers[cell.server]
        if cell.path == "proxy":
            x = self.proxies[cell.server]
            return (x.tls_port if cell.tls == "direct" else x.port), x.ca_file
        return (srv.direct_tls_port if cell.tls == "direct" else srv.starttls_port), srv.ca_file

    def _command(self, cell):
        """(argv, extra environment, stdin bytes) that runs the client of `cell`."""
        port, ca = self._target(cell)
        direct = cell.tls == "direct"
        user = ACCOUNT[cell.client]
        jid, to = f"{user}@{DOMAIN}", f"{BOB}@{DOMAIN}"
        env = {"HOME": self.home}
        if cell.client == "slixmpp":
            argv = ["/usr/bin/python3", "-m", "xmpptest.client", "session", "--jid",
                    f"{jid}/{cell.resource}", "--password", PASSWORD, "--host", HOST,
                    "--port", str(port), "--tls", cell.tls, "--ca-file", ca, "--peer-jid", to,
                    "--message", cell.body, "--timeout", "20"]
            env["PYTHONPATH"] = HERE
            return argv, env, None
        if cell.client == "xmpp.js":
            service = f"{'xmpps' if direct else 'xmpp'}://{HOST}:{port}"
            argv = ["node", os.path.join(HERE, "clients", "xmppjs", "send.mjs"), service, DOMAIN,
                    user, PASSWORD, to, cell.body, cell.resource]
            env.update(XS_XMPPJS_DIR=self.xmppjs_dir, NODE_EXTRA_CA_CERTS=ca)
            return argv, env, None
        if cell.client == "libstrophe":
            argv = [strophe_binary(), HOST, str(port), f"{jid}/{cell.resource}", PASSWORD, to,
                    cell.body, "--ca-file", ca] + (["--direct-tls"] if direct else [])
            return argv, env, None
        if cell.client == "go-sendxmpp":
            # It checks the certificate against the system store, which SSL_CERT_FILE replaces.
            argv = ["go-sendxmpp", "-u", jid, "-p", PASSWORD, "-j", f"{HOST}:{port}",
                    "-r", cell.resource, "--timeout", "20"] + (["-t"] if direct else []) + [to]
            env["SSL_CERT_FILE"] = ca
            return argv, env, (cell.body + "\n").encode()
        if cell.client == "sendxmpp":
            argv = ["sendxmpp", "-u", user, "-p", PASSWORD, "-j", f"{HOST}:{port}", "-o", DOMAIN,
                    "-r", cell.resource, "-a", ca, "-e" if direct else "-t", to]
            return argv, env, (cell.body + "\n").encode()
        raise AssertionError(cell.client)

    async def _run_cell(self, cell, bob, sem):
        async with sem:
            argv, extra, stdin = self._command(cell)
            t = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                *argv, cwd=HERE, env=dict(os.environ, **extra),
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            try:
                out, _ = await asyncio.wait_for(proc.communicate(stdin), CLIENT_TIMEOUT)
                cell.rc = proc.returncode
            except asyncio.TimeoutError:
                proc.kill()
                out, _ = await proc.communicate()
                cell.rc = None
            cell.output = out.decode("utf-8", "replace").strip()
            sender = f"{ACCOUNT[cell.client]}@{DOMAIN}/"
            msg = await bob.wait_message(
                lambda m: m["body"].strip() == cell.body and m["from"].startswith(sender),
                timeout=DELIVERY_TIMEOUT if cell.rc == 0 else 1.0)
            cell.delivered = msg is not None
            cell.elapsed = time.monotonic() - t
        if cell.rc is None:
            cell.why = f"the client did not finish within {CLIENT_TIMEOUT}s"
        elif cell.rc != 0:
            cell.why = f"the client exited with {cell.rc}"
        elif not cell.delivered:
            cell.why = f"bob did not receive the message within {DELIVERY_TIMEOUT}s"

    def _check_proxy_log(self, cells):
        """Proxy cells: the proxy's log holds each delivered message, client to server."""
        for server, x in self.proxies.items():
            bodies = [ev.get("raw", "") for ev in x.log_events()
                      if ev.get("event") == "stanza" and ev.get("dir") == "c2s"
                      and ev.get("name") == "message"]
            for c in cells:
                if c.path == "proxy" and c.server == server:
                    c.proxy_logged = any(c.body in raw for raw in bodies)
                    if not c.why and not c.proxy_logged:
                        c.why = "the proxy's log does not show the message going to the server"

    async def _run_matrix(self, cells):
        bobs = {}
        try:
            for name, srv in self.servers.items():
                bob = LiveClient(f"{BOB}@{DOMAIN}", BOB_PASSWORD, srv.starttls_port,
                                 ca_file=srv.ca_file, timeout=20)
                bobs[name] = await bob.start()
            sem = asyncio.Semaphore(PARALLEL)
            await asyncio.gather(*(self._run_cell(c, bobs[c.server], sem) for c in cells))
        finally:
            for bob in bobs.values():
                await bob.close()

    # -- the test -----------------------------------------------------------------------------
    def test_matrix(self):
        cells = [Cell(c, s, t, p) for c in CLIENTS for s in SERVERS for t in TLS_MODES
                 for p in PATHS]
        runnable = []
        for c in cells:
            why = self.missing.get(c.client) or self.missing.get(c.server)
            if why:
                c.status, c.why = "missing", why
            else:
                runnable.append(c)
        t = time.monotonic()
        asyncio.run(self._run_matrix(runnable))
        elapsed = time.monotonic() - t
        proxy_problems = []
        for name, x in self.proxies.items():
            try:
                rc = x.stop(timeout=10)
                if rc != 0:
                    proxy_problems.append(f"{name}'s proxy exited with {rc} after SIGTERM")
            except ProxyError as e:
                proxy_problems.append(f"{name}'s proxy: {e}")
            rep = x.sanitizer_report()
            if rep:
                proxy_problems.append(f"sanitizer report from {name}'s proxy:\n{rep[-4000:]}")
        self._check_proxy_log(runnable)
        for c in runnable:
            c.ok = not c.why
            c.status = "ok" if c.ok else "fail"
        sys.stderr.write("\n" + self.table(cells) + "\n")
        sys.stderr.write(f"{len(runnable)} cells in {elapsed:.1f} s "
                         f"(module {time.monotonic() - self.t0:.1f} s so far)\n")
        failed = [c for c in runnable if not c.ok]
        if failed:
            for name, x in self.proxies.items():
                sys.stderr.write(f"\n===== {name}'s proxy =====\n{x.dump(limit=12000)}")
        for c in cells:
            with self.subTest(cell=c.key):
                if c.status == "missing":
                    if in_ci():
                        self.fail(f"{c.key}: a dependency is missing (CI must have it): {c.why}")
                    self.skipTest(c.why)
                self.assertTrue(c.ok, f"{c.key}: {c.why}\n--- client output:\n{c.output[-3000:]}")
        self.assertEqual(proxy_problems, [])

    @staticmethod
    def table(cells):
        """Markdown: one row per client, one column per server and TLS mode, each cell
        'direct / through xmppscope'."""
        by = {c.key: c for c in cells}
        cols = [(s, t) for s in SERVERS for t in TLS_MODES]
        head = "| client | " + " | ".join(f"{s} {TLS_TITLE[t]}" for s, t in cols) + " |"
        lines = [head, "|---" * (len(cols) + 1) + "|"]
        for client in CLIENTS:
            row = [client]
            for s, t in cols:
                row.append(" / ".join(by[f"{client}/{s}/{t}/{p}"].status for p in PATHS))
            lines.append("| " + " | ".join(row) + " |")
        return ("Interoperability: each cell is direct / through xmppscope (a message delivered "
                "to a second account)\n" + "\n".join(lines))


if __name__ == "__main__":
    unittest.main()

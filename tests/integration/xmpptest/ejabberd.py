"""A private ejabberd (Debian's 23.01) on 127.0.0.1 for tests, like xmpptest.prosody.

Everything lives in a fresh temporary folder: a test CA and a server certificate made with the
``openssl`` command, a copy of ejabberdctl that does not switch to the ``ejabberd`` user, its
config, the Mnesia spool, the logs and the Erlang cookie.  The Erlang distribution listens on a
free port of 127.0.0.1 (no epmd is started), and so do the two client listeners.

    with Ejabberd() as e:
        e.register("alice", "alicepass")
        ... connect to e.host:e.starttls_port (STARTTLS) or e.direct_tls_port (XEP-0368) ...
"""

import os
import re
import signal
import subprocess
import tempfile
import time

from .prosody import (_LIVE, ProsodyError, ServerProcess, free_ports,
                      make_ca, make_server_cert, wait_gone)

__all__ = ["Ejabberd", "EjabberdError"]

HOST = "127.0.0.1"
EJABBERDCTL = "/usr/sbin/ejabberdctl"


class EjabberdError(ProsodyError):
    """ejabberd could not be set up, started, stopped or asked something."""


def _group_alive(pgid):
    """True while a process of group `pgid` that is not a zombie exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        # After the command: state, ppid, pgrp.
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def _yaml_str(s):
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


class Ejabberd(ServerProcess):
    """A private ejabberd 23.01 on 127.0.0.1 in a temporary folder.

    Parameters
      domain      the host served and the certificate name (default example.test)
      offline     keep mod_offline (default False: a message to an offline user bounces)
      loglevel    ejabberd's log level (default "info")
      start       start at once (default True); otherwise call start()
      cert_ips    IP addresses the certificate also names

    Attributes: host, domain, starttls_port, direct_tls_port, ca_file, ca_key, cert_file,
    key_file, tmpdir, config_path, log_path, pid (of the process group leader, while running).
    """

    def __init__(self, domain="example.test", offline=False, loglevel="info", start=True,
                 start_timeout=30.0, cert_ips=()):
        if not os.access(EJABBERDCTL, os.X_OK):
            raise EjabberdError(f"{EJABBERDCTL} not found (run tests/install-deps.sh)")
        self.host = HOST
        self.domain = domain
        self.offline = offline
        self.loglevel = loglevel
        self.start_timeout = start_timeout
        self.proc = None
        self.tmpdir = tempfile.mkdtemp(prefix="xmpptest-ejabberd-")
        try:
            self.config_dir = os.path.join(self.tmpdir, "etc")
            self.spool_dir = os.path.join(self.tmpdir, "spool")
            self.logs_dir = os.path.join(self.tmpdir, "logs")
            for d in (self.config_dir, self.spool_dir, self.logs_dir):
                os.mkdir(d, 0o700)
            self.config_path = os.path.join(self.config_dir, "ejabberd.yml")
            self.ctl_config_path = os.path.join(self.config_dir, "ejabberdctl.cfg")
            self.log_path = os.path.join(self.logs_dir, "ejabberd.log")
            self.ctl_path = os.path.join(self.tmpdir, "ejabberdctl")
            self.ca_file, self.ca_key = make_ca(self.tmpdir)
            self.cert_file, self.key_file = make_server_cert(
                self.tmpdir, self.ca_file, self.ca_key, [domain], ips=cert_ips)
            # ejabberd reads certificate and key from one PEM file.
            self.bundle = os.path.join(self.config_dir, "server-bundle.pem")
            with open(self.bundle, "w") as out:
                for part in (self.cert_file, self.key_file):
                    with open(part) as f:
                        out.write(f.read())
            os.chmod(self.bundle, 0o600)
            self.starttls_port, self.direct_tls_port, self.dist_port = free_ports(3)
            # A unique node name: two test runs at once must not meet on the distribution.
            self.node = f"xmpptest{os.getpid()}x{self.dist_port}@localhost"
            self._write_files()
            if start:
                self.start()
        except BaseException:
            self.cleanup()
            raise

    # -- config -----------------------------------------------------------------------------
    def _write_files(self):
        # As root, Debian's ejabberdctl switches to the ejabberd user, who cannot read this
        # folder: a copy with INSTALLUSER emptied runs as whoever runs the tests.
        with open(EJABBERDCTL) as f:
            text = f.read()
        text, n = re.subn(r"(?m)^INSTALLUSER=.*$", "INSTALLUSER=", text)
        if n != 1:
            raise EjabberdError(f"{EJABBERDCTL}: no INSTALLUSER= line to empty; this test "
                                "harness knows Debian's ejabberd 23.01 only")
        with open(self.ctl_path, "w") as f:
            f.write(text)
        os.chmod(self.ctl_path, 0o700)
        with open(os.path.join(self.config_dir, "inetrc"), "w") as f:
            f.write('{lookup,["file","native"]}.\n{host,{127,0,0,1}, ["localhost"]}.\n')
        ctl_cfg = [
            f"ERLANG_NODE={self.node}",
            "INET_DIST_INTERFACE=127.0.0.1",
            # With ERL_DIST_PORT the node listens there and needs no epmd.
            f"ERL_DIST_PORT={self.dist_port}",
            "POLL=true",
            'ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0"',
            f"EJABBERD_PID_PATH={self.tmpdir}/ejabberd.pid",
            f"EJABBERD_CONFIG_PATH={self.config_path}",
            f"CONTRIB_MODULES_PATH={self.tmpdir}/contrib",
            f"CONTRIB_MODULES_CONF_DIR={self.config_dir}/modules.d",
            "",
        ]
        with open(self.ctl_config_path, "w") as f:
            f.write("\n".join(ctl_cfg))
        c2s = ["    ip: \"127.0.0.1\"", "    module: ejabberd_c2s",
               "    max_stanza_size: 262144", "    access: c2s"]
        modules = ["mod_roster", "mod_disco", "mod_ping", "mod_stream_mgmt", "mod_caps"]
        if self.offline:
            modules.append("mod_offline")
        lines = [
            "# generated by tests/integration/xmpptest/ejabberd.py",
            f"loglevel: {self.loglevel}",
            "log_rotate_count: 0",
            "hosts:",
            f"  - {_yaml_str(self.domain)}",
            "certfiles:",
            f"  - {_yaml_str(self.bundle)}",
            "acme:",
            "  auto: false",
            "listen:",
            "  -",
            f"    port: {self.starttls_port}",
            *c2s,
            "    starttls_required: true",
            "  -",
            f"    port: {self.direct_tls_port}",
            *c2s,
            "    tls: true",
            "auth_method: internal",
            "auth_password_format: scram",
            "s2s_access: none",
            "acl:",
            "  local:",
            "    user_regexp: \"\"",
            "access_rules:",
            "  c2s:",
            "    allow: all",
            "  local:",
            "    allow: local",
            "shaper_rules:",
            "  c2s_shaper: none",
            "modules:",
            *[f"  {m}: {{}}" for m in modules],
            "",
        ]
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines))

    def _env(self):
        env = dict(os.environ)
        # Erlang keeps its cookie in $HOME/.erlang.cookie: a private one in the folder.
        env["HOME"] = self.tmpdir
        return env

    def _ctl_argv(self, *args):
        return [self.ctl_path, "--ctl-config", self.ctl_config_path, "--config-dir",
                self.config_dir, "--config", self.config_path, "--spool", self.spool_dir,
                "--logs", self.logs_dir, *args]

    # -- life cycle -------------------------------------------------------------------------
    def log_tail(self, lines=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def _stdout_tail(self):
        try:
            with open(os.path.join(self.tmpdir, "stdout.log"), errors="replace") as f:
                text = f.read()[-3000:]
            return text + ("\n" if text else "")
        except OSError:
            return ""

    def start(self):
        if self.proc is not None:
            raise EjabberdError("already started")
        out = open(os.path.join(self.tmpdir, "stdout.log"), "wb")
        try:
            self.proc = subprocess.Popen(self._ctl_argv("foreground"), cwd=self.tmpdir,
                                         stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, env=self._env(),
                                         start_new_session=True)
        finally:
            out.close()
        _LIVE.add(self)
        return self._wait_ready(EjabberdError, "ejabberd", 0.02)

    def stop(self, timeout=15.0):
        """SIGTERM to ejabberd's process group (the script and the Erlang VM it started; the VM
        shuts down cleanly on SIGTERM), SIGKILL after `timeout`. Idempotent."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        # The group is the one start() made for this server alone (start_new_session).
        pgid = proc.pid
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        # The script dies at once; the VM takes a moment: wait until the group is empty.
        deadline = time.monotonic() + timeout
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.02)
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)
        wait_gone(proc.pid)

    # -- users ------------------------------------------------------------------------------
    def ctl(self, *args, timeout=60):
        """Run `ejabberdctl ARGS` against this node; its output (raises on failure)."""
        try:
            r = subprocess.run(self._ctl_argv(*args), cwd=self.tmpdir, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=self._env(), timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise EjabberdError(f"ejabberdctl {' '.join(args)}: timed out after {timeout}s") from e
        text = r.stdout.decode("utf-8", "replace")
        if r.returncode != 0:
            raise EjabberdError(f"ejabberdctl {' '.join(args)} failed (exit {r.returncode}):\n"
                                f"{text}{self.log_tail()}")
        return text

    def register(self, user, password):
        """Create user@domain with `password`; return the bare JID.  The node may still be
        starting its modules when its ports are open: retry for a few seconds."""
        deadline = time.monotonic() + 15
        while True:
            try:
                self.ctl("register", user, self.domain, password)
                return f"{user}@{self.domain}"
            except EjabberdError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def __repr__(self):
        return (f"<Ejabberd {self.domain} starttls={self.host}:{self.starttls_port} "
                f"direct_tls={self.host}:{self.direct_tls_port} tmpdir={self.tmpdir}>")


"""Proves the integration-test harness against Prosody directly (no xmppscope involved).

    cd tests/integration && /usr/bin/python3 -m unittest -v test_harness
"""

import json
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from xmpptest import rawclient  # noqa: E402
from xmpptest.client import alice_to_bob, run_session  # noqa: E402
from xmpptest.prosody import Prosody, _is_gone, _listening_ports  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


class HarnessAgainstProsody(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.p = Prosody()
        cls.alice = cls.p.register("alice", "alice-pass")
        cls.bob = cls.p.register("bob", "bob-pass")

    @classmethod
    def tearDownClass(cls):
        cls.p.cleanup()

    def chat(self, port, tls, mech, **kw):
        r = alice_to_bob(self.alice, "alice-pass", self.bob, "bob-pass", self.p.host, port,
                         tls=tls, ca_file=self.p.ca_file, mech=mech, timeout=10, **kw)
        self.assertTrue(r["ok"], json.dumps(r, indent=1, default=str))
        self.assertTrue(r["delivered"])
        bodies = [m["body"] for m in r["bob"]["received"]]
        self.assertIn(r["message"], bodies)
        self.assertTrue(r["bob"]["received"][0]["from"].startswith(self.alice + "/"))
        for side in (r["alice"], r["bob"]):
            self.assertTrue(side["tls_version"].startswith("TLSv1."))
            self.assertTrue(side["bound_jid"])
            self.assertTrue(side["clean_close"])
        return r

    def test_chat_starttls_plain(self):
        r = self.chat(self.p.starttls_port, "starttls", "PLAIN")
        self.assertEqual(r["alice"]["mechanism"], "PLAIN")
        self.assertEqual(r["alice"]["features"][0], ["starttls"])
        self.assertIn("bind", r["alice"]["features"][-1])

    def test_chat_starttls_scram(self):
        r = self.chat(self.p.starttls_port, "starttls", "SCRAM-SHA-1")
        self.assertEqual(r["alice"]["mechanism"], "SCRAM-SHA-1")
        self.assertEqual(r["bob"]["mechanism"], "SCRAM-SHA-1")

    def test_chat_direct_tls(self):
        r = self.chat(self.p.direct_tls_port, "direct", None)
        self.assertNotIn("starttls", r["alice"]["features"][0])
        self.assertIn("mechanisms", r["alice"]["features"][0])

    def test_scram_plus_with_tls12(self):
        # Prosody 0.12 offers SCRAM-SHA-1-PLUS (tls-unique) only on TLS 1.2.
        r = run_session(self.alice, "alice-pass", self.p.host, self.p.starttls_port,
                        ca_file=self.p.ca_file, tls_max="1.2", timeout=10)
        self.assertTrue(r["ok"], r["error"])
        self.assertEqual(r["tls_version"], "TLSv1.2")
        self.assertEqual(r["mechanism"], "SCRAM-SHA-1-PLUS")
        # Forcing plain SCRAM-SHA-1 there sends gs2 flag 'y': the server must refuse it.
        r = run_session(self.alice, "alice-pass", self.p.host, self.p.starttls_port,
                        ca_file=self.p.ca_file, tls_max="1.2", mech="SCRAM-SHA-1", timeout=10)
        self.assertFalse(r["ok"])
        self.assertIn("authentication failed", r["error"])

    def test_failures_are_reported_not_hung(self):
        t = time.monotonic()
        r = run_session(self.alice, "wrong", self.p.host, self.p.starttls_port,
                        ca_file=self.p.ca_file, mech="PLAIN", timeout=10)
        self.assertFalse(r["ok"])
        self.assertIn("not-authorized", r["error"])
        r = run_session(self.alice, "alice-pass", self.p.host, self.p.starttls_port,
                        timeout=10)  # system CAs do not trust the test CA
        self.assertFalse(r["ok"])
        self.assertIn("CERTIFICATE_VERIFY_FAILED", r["error"])
        r = run_session(self.alice, "alice-pass", self.p.host, self.p.starttls_port,
                        ca_file=self.p.ca_file, peer_jid="nobody@" + self.p.domain,
                        message="x", timeout=10)
        self.assertFalse(r["ok"])
        self.assertIn("service-unavailable", r["error"])
        self.assertLess(time.monotonic() - t, 5)

    def test_raw_header_features_starttls(self):
        with rawclient.RawClient(self.p.starttls_port, timeout=5) as c:
            c.send(rawclient.stream_header(self.p.domain))
            data = c.read_features()
            self.assertIn(b"<stream:stream", data)
            self.assertRegex(data, rb"<starttls xmlns=.urn:ietf:params:xml:ns:xmpp-tls.>"
                                   rb"\s*<required\s*/>\s*</starttls>")
            self.assertNotIn(b"<mechanism>", data)  # no SASL before TLS
            c.send(rawclient.STARTTLS)
            c.read_until(rawclient.PROCEED)
            c.wrap_tls(self.p.domain, ca_file=self.p.ca_file)
            self.assertEqual(c.leftover_before_tls, b"")
            c.send(rawclient.stream_header(self.p.domain))
            mechs = rawclient.parse_mechanisms(c.read_features())
            self.assertEqual(sorted(mechs), ["PLAIN", "SCRAM-SHA-1"])
            c.send(rawclient.STREAM_END)
            rest = c.read_all(timeout=3)
            self.assertIn(b"</stream:stream>", rest)
            self.assertTrue(c.closed_by_peer)

    def test_raw_direct_tls_and_garbage(self):
        self.assertEqual(sorted(self.p.offered_mechanisms(direct_tls=True)),
                         ["PLAIN", "SCRAM-SHA-1"])
        r = rawclient.exchange(self.p.starttls_port, b"<not-xml <<<", tls="starttls",
                               domain=self.p.domain, ca_file=self.p.ca_file, send_header=True)
        self.assertIn(b"<stream:stream", r["pre"])
        self.assertIn(b"not-well-formed", r["data"])
        self.assertTrue(r["closed"])

    def test_cli_chat(self):
        env = dict(os.environ, PYTHONPATH=HERE)
        t = time.monotonic()
        out = subprocess.run(
            [sys.executable, "-m", "xmpptest.client", "chat",
             "--alice", self.alice + ":alice-pass", "--bob", self.bob + ":bob-pass",
             "--port", str(self.p.starttls_port), "--ca-file", self.p.ca_file,
             "--mech", "SCRAM-SHA-1", "--message", "via the CLI", "--timeout", "10"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30, text=True)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        r = json.loads(out.stdout)
        self.assertTrue(r["ok"])
        self.assertEqual(r["bob"]["received"][0]["body"], "via the CLI")
        out = subprocess.run(
            [sys.executable, "-m", "xmpptest.client", "session", "--jid", self.alice,
             "--password", "wrong", "--port", str(self.p.starttls_port),
             "--ca-file", self.p.ca_file, "--timeout", "10"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30, text=True)
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        self.assertFalse(json.loads(out.stdout)["ok"])
        self.assertEqual(out.stderr, "")
        self.assertLess(time.monotonic() - t, 10)


class ProsodyLifecycle(unittest.TestCase):
    def test_start_stop_cleanup(self):
        with Prosody(tls12=True) as p:
            pid, ports, tmpdir = p.pid, {p.starttls_port, p.direct_tls_port}, p.tmpdir
            self.assertTrue(p.running)
            with open(p.pidfile) as f:
                self.assertEqual(int(f.read().strip()), pid)
            self.assertIn("SCRAM-SHA-1-PLUS", p.sasl_mechanisms)
            for path in (p.ca_file, p.cert_file, p.key_file, p.config_path, p.log_path):
                self.assertTrue(os.path.isfile(path), path)
        self.assertTrue(_is_gone(pid))
        self.assertFalse(ports & _listening_ports())
        self.assertFalse(os.path.exists(tmpdir))


if __name__ == "__main__":
    unittest.main()

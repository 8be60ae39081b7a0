"""--explain (issue 13, section 4) with a real Prosody and real slixmpp clients.

    cd tests/integration
    XMPPSCOPE=../../build/proxy/xmppscope /usr/bin/python3 -m unittest -v test_explain

Alice and Bob log in through the proxy (STARTTLS, SCRAM-SHA-1 or PLAIN), fetch the roster, send
presence, and Alice sends Bob a message. The proxy runs with --explain: its console must explain
SASL, resource binding, the roster, presence and the message, never show the password or the
SCRAM proof, and `xmppscope inspect --explain --lang zh` on the --write log must say the same in
Chinese. Everything is on 127.0.0.1; each proxy must exit 0 on SIGTERM with no sanitizer report.
"""

import base64
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import test_proxy  # noqa: E402  (ProsodyCase: one Prosody, alice and bob, proxies checked)
from test_proxy import PASSWORD, SECRET_FORMS  # noqa: E402
from xmpptest.proxy import SANITIZER_PATTERN, xmppscope_binary  # noqa: E402


def explained(events, pred):
    """The explanations of the events matching pred, one string."""
    return "\n".join(e["explain"] for e in events if "explain" in e and pred(e))


def inspect(*args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run([xmppscope_binary(), "inspect", *args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60, env=e)
    err = r.stderr.decode(errors="replace")
    if SANITIZER_PATTERN.search(err):
        raise AssertionError("sanitizer report:\n" + err)
    return r


class ExplainWithProsody(test_proxy.ProsodyCase):
    def session(self, mech, lang="en"):
        """A chat through a proxy with --explain; returns (proxy, console events)."""
        x = self.proxy(fmt="json", extra=["--explain", "--lang", lang])
        self.chat(x, "starttls", mech=mech)
        self.assertEqual(x.stop(), 0, x.dump())
        events = [json.loads(ln) for ln in x.stdout_text().splitlines() if ln.startswith("{")]
        self.assertTrue(events, x.dump())
        return x, events

    def assert_no_secret(self, text):
        for s in SECRET_FORMS:
            self.assertNotIn(s, text)

    def test_proxy_explains_a_scram_session(self):
        x, ev = self.session("SCRAM-SHA-1")
        sasl = explained(ev, lambda e: e.get("ns") == "urn:ietf:params:xml:ns:xmpp-sasl")
        self.assertIn("SCRAM (Salted Challenge Response Authentication Mechanism)", sasl)
        self.assertIn("SCRAM client-first: user name alice and a fresh random client nonce", sasl)
        self.assertIn("SCRAM server-first: the nonce extended by the server", sasl)
        self.assertRegex(sasl, r"the salt [A-Za-z0-9+/=]+ and the iteration count \d+ used")
        self.assertIn("The proof shows the client knows the salted password", sasl)
        self.assertIn("server signature", sasl)
        self.assertIn("Authentication succeeded", sasl)
        # No proof (p=) nor server signature (v=) in any explanation, and the stanzas that
        # carry them are masked.
        self.assertNotRegex(sasl, r"\b[pv]=[A-Za-z0-9+/]")
        for e in ev:
            if e.get("name") == "response":
                self.assertEqual(e.get("redacted"), True)
        feats = explained(ev, lambda e: e.get("name") == "features")
        self.assertIn("STARTTLS: the server offers", feats)
        self.assertIn("mechanisms offered:", feats)
        self.assertIn("Resource binding: the client must now bind", feats)
        self.assertIn("[RFC 6120 §5.4.1, https://www.rfc-editor.org/rfc/rfc6120#section-5.4.1]",
                      feats)
        iq = explained(ev, lambda e: e.get("name") == "iq")
        self.assertRegex(iq, r"Resource binding: the client (asks for the resource|lets the server choose)")
        self.assertIn("Resource bound: the client's full JID is alice@example.test/", iq)
        self.assertIn("Roster get: the client asks for its contact list", iq)
        self.assertIn("Roster result: the contact list", iq)
        pres = explained(ev, lambda e: e.get("name") == "presence")
        self.assertIn("Available presence", pres)
        msg = explained(ev, lambda e: e.get("name") == "message" and e.get("dir") == "c2s")
        self.assertRegex(msg, r"(one-to-one chat message|A normal message)")
        self.assertIn("closes its XML stream",
                      explained(ev, lambda e: e.get("event") == "stream-close"))
        self.assert_no_secret(x.stdout_text())

    def test_proxy_explains_plain_without_the_password(self):
        x, ev = self.session("PLAIN")
        auth = explained(ev, lambda e: e.get("name") == "auth")
        self.assertIn("PLAIN decoded: log in as alice", auth)
        self.assertIn("[RFC 4616 §2, https://www.rfc-editor.org/rfc/rfc4616#section-2]", auth)
        self.assertNotIn(PASSWORD, x.stdout_text())
        self.assert_no_secret(x.stdout_text())
        self.assert_no_secret(x.log_text())

    def test_inspect_explains_the_log_in_chinese(self):
        x, _ = self.session("SCRAM-SHA-1", lang="zh")
        self.assertIn("SCRAM（加盐质询-应答认证机制）", x.stdout_text())
        r = inspect("--explain", "--lang", "zh", x.log_path)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout.decode()
        for want in ("  ? SCRAM 客户端首条消息：用户名 alice", "资源已绑定：客户端的完整 JID 为 alice@example.test/",
                     "花名册获取", "可用出席", "【RFC 6121 §2.1.3，https://www.rfc-editor.org/rfc/rfc6121#section-2.1.3】"):
            self.assertIn(want, out)
        self.assert_no_secret(out)
        # The default comes from the locale variables; --lang wins over them.
        r = inspect("--explain", "--format", "json", x.log_path, env={"LC_ALL": "zh_CN.UTF-8"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("花名册获取", r.stdout.decode())
        r = inspect("--explain", "--lang", "en", x.log_path, env={"LC_ALL": "zh_CN.UTF-8"})
        self.assertIn("Roster get", r.stdout.decode())
        self.assertNotIn("花名册", r.stdout.decode())
        r = inspect("--explain", x.log_path, env={"LC_ALL": "", "LC_MESSAGES": "", "LANG": "C"})
        self.assertIn("Roster get", r.stdout.decode())

    def test_without_explain_nothing_is_explained(self):
        x = self.proxy(fmt="json")
        self.chat(x, "starttls", mech="PLAIN")
        self.assertEqual(x.stop(), 0, x.dump())
        self.assertNotIn('"explain"', x.stdout_text())
        self.assertNotIn('"explain"', x.log_text())
        r = inspect("--format", "compact", x.log_path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("\n  ? ", r.stdout.decode())
        r = inspect("--format", "compact", "--explain", x.log_path)
        self.assertIn("\n  ? ", r.stdout.decode())


class ExplainUsage(unittest.TestCase):
    def test_bad_lang_is_a_usage_error(self):
        r = inspect("--explain", "--lang", "fr", os.devnull)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--lang takes en or zh, not 'fr'", r.stderr.decode())
        r = subprocess.run([xmppscope_binary(), "proxy", "--upstream", "127.0.0.1:1",
                            "--lang", "xx"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--lang takes en or zh", r.stderr.decode())

    def test_help_documents_the_options(self):
        for cmd in ("proxy", "inspect"):
            r = subprocess.run([xmppscope_binary(), cmd, "--help"], stdout=subprocess.PIPE,
                               timeout=30)
            out = r.stdout.decode()
            self.assertIn("--explain", out)
            self.assertIn("--lang LANG", out)


if __name__ == "__main__":
    unittest.main()

"""The filter language (issue 13, section 1) through xmppscope's proxy and `inspect`.

    cd tests/integration
    XMPPSCOPE=../../build/proxy/xmppscope /usr/bin/python3 -m unittest -v test_filter

Real slixmpp clients (alice, bob, carol) chat through the proxy with a private Prosody on
127.0.0.1. The console is JSON Lines (--format json) so that what it shows can be read exactly.
Each proxy is stopped with SIGTERM in tearDown, which must exit 0 with no sanitizer report.
"""

import asyncio
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import test_proxy  # noqa: E402  (ProsodyCase: a Prosody with alice and bob, proxies)
from xmpptest.live import LiveClient  # noqa: E402
from xmpptest.proxy import SANITIZER_PATTERN, xmppscope_binary  # noqa: E402


def json_lines(text):
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def stanzas(events):
    return [e for e in events if e.get("event") == "stanza"]


def msg_id(e):
    return e.get("id")


def run(*args, timeout=30):
    env = dict(os.environ, NO_COLOR="1")
    p = subprocess.run([xmppscope_binary(), *args], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=timeout, env=env)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


class FilterWithProsody(test_proxy.ProsodyCase):
    """Three accounts chat in pairs; filters keep what concerns one of them."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.carol = cls.p.register("carol", "carolpass")
        except BaseException:
            cls.tearDownClass()
            raise

    def live(self, x, who):
        jid, pw = {"alice": (self.alice, test_proxy.PASSWORD), "bob": (self.bob, "bobpass"),
                   "carol": (self.carol, "carolpass")}[who]
        return LiveClient(jid, pw, x.port, ca_file=x.ca_file, timeout=10)

    def chat_all(self, x):
        """alice->bob, bob->alice, alice->carol, carol->alice, bob->carol; every message
        arrives. Returns each client's bound JID."""
        async def scenario():
            async with self.live(x, "alice") as alice, self.live(x, "bob") as bob, \
                    self.live(x, "carol") as carol:
                sends = [(alice, bob, self.bob, "a2b"), (bob, alice, self.alice, "b2a"),
                         (alice, carol, self.carol, "a2c"), (carol, alice, self.alice, "c2a"),
                         (bob, carol, self.carol, "b2c")]
                for src, _dst, to, mid in sends:
                    src.send_message(to, f"hello from {mid}", msg_id=mid)
                for _src, dst, _to, mid in sends:
                    got = await dst.wait_message(lambda m, i=mid: m["id"] == i, timeout=5)
                    self.assertIsNotNone(got, f"message {mid} did not arrive")
                for c in (alice, bob, carol):
                    await c.sync()
                return {"alice": alice.bound_jid, "bob": bob.bound_jid, "carol": carol.bound_jid}

        return asyncio.run(asyncio.wait_for(scenario(), 60))

    def session_of(self, log, bound_jid):
        """The session whose bind result gave bound_jid, from the full log."""
        for e in stanzas(log):
            if e.get("dir") == "s2c" and e.get("name") == "iq" and f"<jid>{bound_jid}</jid>" in \
                    e.get("raw", ""):
                return e["session"]
        self.fail(f"no bind result for {bound_jid} in the log")

    def test_console_shows_exactly_bobs_messages_and_inspect_agrees(self):
        expr = "jid:bob@example.test and message"
        x = self.proxy(fmt="json", extra=["--filter", expr])
        bound = self.chat_all(x)
        self.assertEqual(x.stop(), 0, x.dump())
        console = json_lines(x.stdout_text())
        log = x.log_events()
        sessions = {who: self.session_of(log, jid) for who, jid in bound.items()}

        # Exactly bob's messages: those he sent (c2s on his session, s2c on the recipient's)
        # and those sent to him, each once per leg; nothing of alice's and carol's exchange.
        got = sorted((e["session"], e["dir"], msg_id(e)) for e in stanzas(console))
        want = sorted([(sessions["alice"], "c2s", "a2b"), (sessions["bob"], "s2c", "a2b"),
                       (sessions["bob"], "c2s", "b2a"), (sessions["alice"], "s2c", "b2a"),
                       (sessions["bob"], "c2s", "b2c"), (sessions["carol"], "s2c", "b2c")])
        self.assertEqual(got, want, x.dump())
        self.assertTrue(all(e["name"] == "message" for e in stanzas(console)))
        # bob's client sends no `from`: only the JID bound to his session makes them his.
        for e in stanzas(console):
            if e["session"] == sessions["bob"] and e["dir"] == "c2s":
                self.assertNotIn("from", e, "the client sent a from; the test proves less")
        # Nothing else but warnings and errors (none expected here) reaches the console.
        others = [e for e in console if e.get("event") != "stanza"]
        self.assertEqual([e for e in others if e.get("level") not in ("warn", "error")], [])
        # The log, written without --write-filter, holds everything, the other messages too.
        logged = {msg_id(e) for e in stanzas(log) if e.get("name") == "message"}
        self.assertTrue({"a2c", "c2a"} <= logged, logged)

        # inspect --filter on the log shows the same stanzas, byte for byte, in the same order
        # (offsets and stream numbers are not compared: the log's replay counts them on what the
        # log holds, masked SASL payloads shorter than sent, no STARTTLS restart on the server's
        # side).
        rc, out, err = run("inspect", "--format", "json", "--filter", expr, x.log_path)
        self.assertEqual(rc, 0, err)
        self.assertFalse(SANITIZER_PATTERN.search(err), err)
        key = ("session", "dir", "raw")
        offline = [tuple(e.get(k) for k in key) for e in stanzas(json_lines(out))]
        live = [tuple(e.get(k) for k in key) for e in stanzas(console)]
        self.assertEqual(offline, live)

        # Other filters on the same log, checked against the log itself.
        rc, out, _ = run("inspect", "--format", "json", "--filter",
                         f"session:{sessions['carol']} and dir:c2s and message", x.log_path)
        self.assertEqual(rc, 0)
        self.assertEqual([msg_id(e) for e in stanzas(json_lines(out))], ["c2a"])
        rc, out, _ = run("inspect", "--format", "json", "--filter",
                         'text:"HELLO FROM A2C" or (ns:roster and type:result)', x.log_path)
        self.assertEqual(rc, 0)
        shown = stanzas(json_lines(out))
        self.assertEqual(sorted(msg_id(e) for e in shown if e["name"] == "message"),
                         ["a2c", "a2c"])
        roster = [e for e in shown if e["name"] == "iq"]
        self.assertEqual(len(roster), 3, "one roster result per client")
        self.assertTrue(all("jabber:iq:roster" in e["raw"] for e in roster))

    def test_write_filter_limits_the_log_which_reads_back(self):
        expr = "jid:alice@example.test and message"
        x = self.proxy(fmt="none", extra=["--write-filter", expr])
        bound = self.chat_all(x)
        self.assertEqual(x.stop(), 0, x.dump())
        log = x.log_events()
        kept = sorted(msg_id(e) for e in stanzas(log))
        self.assertEqual(kept, sorted(["a2b", "a2b", "b2a", "b2a", "a2c", "a2c", "c2a", "c2a"]),
                         "the log keeps alice's messages, and nothing else (no b2c, no iq)")
        # Every stream header is kept (three sessions, both directions, restarts after TLS and
        # SASL), so that the log reads back.
        opens = [e for e in log if e.get("event") == "stream-open"]
        self.assertGreaterEqual(len(opens), 3 * 2 * 3)
        rc, out, err = run("inspect", "--format", "json", x.log_path)
        self.assertEqual(rc, 0, err)
        self.assertEqual(sorted(msg_id(e) for e in stanzas(json_lines(out))), kept)
        self.assertTrue(bound["alice"].startswith(self.alice + "/"))


class FilterCommandLine(unittest.TestCase):
    """`xmppscope filter check` and bad filters given to proxy and inspect."""

    def test_check_prints_the_normalised_form(self):
        rc, out, err = run("filter", "check", "jid:bob@example.test message or (iq ns:roster)")
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(out, "jid:bob@example.test and message or iq and ns:jabber:iq:roster\n")
        # What it prints reads back to itself.
        rc, again, _ = run("filter", "check", out.strip())
        self.assertEqual((rc, again), (0, out))

    def test_check_error_has_column_and_caret(self):
        rc, out, err = run("filter", "check", "jid:bob@example.test and (message or")
        self.assertEqual(rc, 2)
        self.assertEqual(out, "")
        lines = err.splitlines()
        self.assertEqual(lines[0], "xmppscope filter: column 37: expected an atom (message, "
                                   "jid:JID, type:error, ...), 'not' or '(' after 'or', not the end")
        self.assertEqual(lines[1], "  jid:bob@example.test and (message or")
        self.assertEqual(lines[2].index("^"), 2 + 36)
        rc, _, err = run("filter", "check", "type:chat colour:red")
        self.assertEqual(rc, 2)
        self.assertIn("column 11: unknown key 'colour:'", err)

    def test_bad_filters_stop_proxy_and_inspect_before_anything_starts(self):
        rc, out, err = run("proxy", "--upstream", "127.0.0.1:1", "--listen", "127.0.0.1:0",
                           "--filter", "message and", timeout=10)
        self.assertEqual(rc, 2)
        self.assertIn("xmppscope proxy: --filter: column 12: expected an atom", err)
        self.assertNotIn("listening", err)
        rc, _, err = run("proxy", "--upstream", "127.0.0.1:1", "--listen", "127.0.0.1:0",
                         "--write", "/nonexistent/x.jsonl", "--write-filter", "dir:up", timeout=10)
        self.assertEqual(rc, 2)
        self.assertIn("--write-filter: column 5: expected c2s or s2c", err)
        rc, _, err = run("proxy", "--upstream", "127.0.0.1:1", "--write-filter", "iq")
        self.assertEqual(rc, 2)
        self.assertIn("--write-filter goes with --write FILE", err)
        rc, _, err = run("proxy", "--upstream", "127.0.0.1:1", "--format", "none", "--filter", "iq")
        self.assertEqual(rc, 2)
        self.assertIn("--format none shows nothing", err)
        rc, _, err = run("inspect", "--filter", "xpath:\"/message[foo:x]\"", "/dev/null")
        self.assertEqual(rc, 2)
        self.assertIn("xmppscope inspect: --filter: column 17: in the XPath: unknown namespace "
                      "prefix 'foo'", err)


if __name__ == "__main__":
    unittest.main()

"""`xmppscope inspect` as a user runs it: raw captures, JSON Lines logs, errors, exit codes."""

import json
import os
import re
import subprocess
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.normpath(os.path.join(HERE, "..", ".."))
XMPPSCOPE = os.environ.get("XMPPSCOPE", os.path.join(TOP, "build", "proxy", "xmppscope"))
CAPTURES = os.path.join(TOP, "examples", "captures")


def run(*args, stdin=None, env=None):
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run([XMPPSCOPE, *args], input=stdin, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60, env=e)
    if b"ERROR: AddressSanitizer" in r.stderr or b"runtime error:" in r.stderr:
        raise AssertionError("sanitizer report:\n" + r.stderr.decode(errors="replace"))
    return r


class InspectTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name, data):
        p = os.path.join(self.tmp.name, name)
        with open(p, "wb") as f:
            f.write(data)
        return p

    def test_inspect_pretty_shows_stanzas_and_masks_password(self):
        r = run("inspect", os.path.join(CAPTURES, "c2s-plain.xml"))
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout.decode()
        self.assertIn("Hi Bob", out)
        self.assertIn('PLAIN authzid="" authcid="alice" password=***', out)
        self.assertNotIn("alicepass", out)
        self.assertNotIn("AGFsaWNlAGFsaWNlcGFzcw", out)  # the base64 of the password
        self.assertNotIn("\x1b[", out)  # not a terminal: no colour

    def test_inspect_show_secrets(self):
        r = run("inspect", "--show-secrets", os.path.join(CAPTURES, "c2s-plain.xml"))
        self.assertEqual(r.returncode, 0)
        self.assertIn("alicepass", r.stdout.decode())

    def test_inspect_color_always_and_no_color(self):
        r = run("inspect", "--color", "always", os.path.join(CAPTURES, "s2c-plain.xml"))
        self.assertIn("\x1b[", r.stdout.decode())
        r = run("inspect", "--color", "auto", os.path.join(CAPTURES, "s2c-plain.xml"),
                env={"NO_COLOR": "1"})
        self.assertNotIn("\x1b[", r.stdout.decode())

    def test_inspect_compact_is_one_line_per_event(self):
        r = run("inspect", "--format", "compact", os.path.join(CAPTURES, "s2c-plain.xml"))
        self.assertEqual(r.returncode, 0)
        lines = r.stdout.decode().splitlines()
        # 3 stream headers, 11 stanzas, 1 close: no keepalives in this capture.
        self.assertEqual(len(lines), 15, lines)

    def test_inspect_json_round_trip(self):
        src = os.path.join(CAPTURES, "c2s-plain.xml")
        r = run("inspect", "--format", "json", src)
        self.assertEqual(r.returncode, 0)
        events = [json.loads(l) for l in r.stdout.decode().splitlines()]
        kinds = [e["event"] for e in events]
        self.assertEqual(kinds.count("stream-open"), 3)
        self.assertEqual(kinds.count("stanza"), 8)
        self.assertEqual(kinds.count("stream-close"), 1)
        auth = [e for e in events if e.get("name") == "auth"][0]
        self.assertTrue(auth["redacted"])
        self.assertNotIn("alicepass", json.dumps(events))
        msg = [e for e in events if e.get("id") == "m1"][0]
        self.assertEqual(msg["to"], "bob@example.test")
        self.assertEqual(msg["dir"] if "dir" in msg else None, None)
        # The log reads back: the same stanzas, detected as JSON Lines by its first byte.
        log = self.path("c2s.jsonl", r.stdout)
        r2 = run("inspect", "--format", "json", log)
        self.assertEqual(r2.returncode, 0, r2.stderr)
        again = [json.loads(l) for l in r2.stdout.decode().splitlines()]
        self.assertEqual([e["event"] for e in again], kinds)
        self.assertEqual([e.get("name") for e in again], [e.get("name") for e in events])

    def test_inspect_stats(self):
        r = run("inspect", "--stats", "--format", "none",
                os.path.join(CAPTURES, "c2s-plain.xml"), os.path.join(CAPTURES, "s2c-plain.xml"))
        self.assertEqual(r.returncode, 0)
        out = r.stdout.decode()
        self.assertRegex(out, r"\n  message +3 +\d+\n")
        self.assertRegex(out, r"http://jabber.org/protocol/chatstates +2 ")
        self.assertIn("total: 6 streams, 19 stanzas", out)
        r = run("inspect", "--stats", "--format", "json", os.path.join(CAPTURES, "c2s-plain.xml"))
        stats = json.loads(r.stdout.decode().splitlines()[-1])
        self.assertEqual(stats["event"], "stats")
        self.assertEqual(stats["kinds"]["message"]["count"], 2)

    def test_inspect_stdin(self):
        with open(os.path.join(CAPTURES, "s2c-plain.xml"), "rb") as f:
            r = run("inspect", "--format", "compact", "-", stdin=f.read())
        self.assertEqual(r.returncode, 0)
        self.assertIn("stdin", r.stdout.decode())

    def test_inspect_malformed_prints_events_then_error(self):
        p = self.path("bad.xml", b"<stream:stream xmlns='jabber:client' "
                      b"xmlns:stream='http://etherx.jabber.org/streams'>\n"
                      b"<message id='ok'><body>fine</body></message>\n"
                      b"<message id='bad'><body>&bogus;</body></message>\n")
        r = run("inspect", "--format", "compact", p)
        self.assertEqual(r.returncode, 1)
        self.assertIn("id=ok", r.stdout.decode())
        err = r.stderr.decode()
        self.assertRegex(err, r"bad\.xml:3:\d+: restricted-xml: .*bogus")

    def test_inspect_refuses_doctype_at_once(self):
        p = self.path("lol.xml", b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]><x/>")
        r = run("inspect", p)
        self.assertEqual(r.returncode, 1)
        self.assertIn("restricted-xml", r.stderr.decode())

    def test_inspect_bad_json_line(self):
        p = self.path("bad.jsonl", b'{"event":"stream-open","raw":"<stream:stream xmlns:stream='
                      b'\'http://etherx.jabber.org/streams\'>"}\n{not json\n')
        r = run("inspect", p)
        self.assertEqual(r.returncode, 1)
        self.assertIn("bad.jsonl:2: not JSON", r.stderr.decode())

    def test_inspect_rules_regex_budget_warns_as_the_proxy_does(self):
        # Issue 11 item 10: a pattern that backtracks without end, run by a global replace-text on
        # a thousand text nodes, used to cost seconds per stanza. Each stanza now has one regex
        # budget; when it runs out the stanza passes unchanged with the proxy's "warn" note.
        header = (b"<stream:stream xmlns='jabber:client' "
                  b"xmlns:stream='http://etherx.jabber.org/streams' to='e.org' version='1.0'>")
        body = b"".join(b"<body>" + b"x" * 240 + b"!</body>" for _ in range(1000))
        cap = self.path("boom.xml", header + b"<message id='m1'>" + body + b"</message>"
                        + b"<message id='m2'><body>ok!</body></message>")
        rules = self.path("boom.rules", b'rule "boom"\n match /message\n'
                          b' then replace-text //body "(x+x+)+y|!" "?"\nend\n')
        size = len(b"<message id='m1'>" + body + b"</message>")
        want = ('rules: rule "boom": replace-text: the regex budget of this stanza was used up '
                '(%d steps); the stanza passes unchanged' % (1000000 + 16 * size))
        r = run("inspect", "--rules", rules, "--format", "compact", cap)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.decode().splitlines()
        self.assertIn("warn: " + want, lines[1])
        self.assertIn("id=m1", lines[2])
        self.assertNotIn("rewritten", lines[2])
        self.assertIn("rewritten", lines[3])  # m2 is small and quick: rewritten as usual
        r = run("inspect", "--rules", rules, "--format", "json", cap)
        events = [json.loads(l) for l in r.stdout.decode().splitlines()]
        notes = [e for e in events if e["event"] == "note"]
        self.assertEqual([(e["level"], e["message"]) for e in notes], [("warn", want)])
        m1 = [e for e in events if e.get("id") == "m1"][0]
        self.assertNotIn("rewritten", m1)
        self.assertNotIn("rules", m1)

    # Issue 11 item 11: characters a terminal acts on, or that hide or reorder text.
    UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e"
                        "\u2060-\u2064\u2066-\u2069\ufeff]")

    def assert_terminal_safe(self, r, what):
        for name, data in (("stdout", r.stdout), ("stderr", r.stderr)):
            text = data.decode("utf-8", errors="replace")
            m = self.UNSAFE.search(text)
            self.assertIsNone(m, "%s: %s has U+%04X at %d: %r" % (
                what, name, ord(m.group()) if m else 0, m.start() if m else 0, text[:2000]))

    def test_inspect_never_prints_raw_controls(self):
        odd = "\x7f\u0080\u009b\u061c\u200b\u200c\u200d\u200e\u200f\u2028\u202a\u202e" \
              "\u2060\u2066\u2069\ufeff"
        header = ("<stream:stream xmlns='jabber:client' "
                  "xmlns:stream='http://etherx.jabber.org/streams'>")
        cap = self.path("odd.xml", (header + "<message id='a%sb'><body>x%sy</body></message>"
                                    "<x xmlns='urn:a\u009b31m\u202e b'/>" % (odd, odd)).encode())
        bad = self.path("odd.jsonl", b'{"event":"stream-open","raw":"<stream:stream xmlns:stream='
                        b'\'http://etherx.jabber.org/streams\'>"}\n'
                        b'{"event":"stanza" \x1b[2J\xc2\x9b\xe2\x80\xae}\n')
        for fmt in ("pretty", "compact", "json"):
            r = run("inspect", "--format", fmt, cap)
            self.assertEqual(r.returncode, 1)
            self.assert_terminal_safe(r, "odd.xml " + fmt)
            # The namespace URI is named in the error, escaped.
            self.assertIn("urn:a\\u009B31m\\u202E b", r.stderr.decode())
            self.assertIn("not a valid URI", r.stderr.decode())
            r = run("inspect", "--format", fmt, bad)
            self.assertEqual(r.returncode, 1)
            self.assert_terminal_safe(r, "odd.jsonl " + fmt)
            self.assertIn("odd.jsonl:2: not JSON", r.stderr.decode())
            self.assertIn("\\x1B", r.stderr.decode())
        # JSON carries them as \u escapes and reads back as the same characters, through a log
        # file and a second inspect.
        r = run("inspect", "--format", "json", cap)
        events = [json.loads(l) for l in r.stdout.decode().splitlines()]
        msg = [e for e in events if e.get("name") == "message"][0]
        self.assertEqual(msg["id"], "a%sb" % odd)
        self.assertIn("<body>x%sy</body>" % odd, msg["raw"])
        log = self.path("odd-log.jsonl", r.stdout)
        r2 = run("inspect", "--format", "json", log)
        self.assert_terminal_safe(r2, "odd-log.jsonl")
        again = [json.loads(l) for l in r2.stdout.decode().splitlines()]
        kept = ("stream-open", "stanza")
        self.assertEqual([e.get("raw") for e in again if e["event"] in kept],
                         [e.get("raw") for e in events if e["event"] in kept])
        # A rules file's names and XPaths are shown escaped too.
        rules = self.path("odd.rules", ('rule "a\u202eb"\n match /message[@id="\u200b"]\n'
                                        ' then tag t\u009b\nend\n').encode())
        r = run("rules", "list", rules)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_terminal_safe(r, "rules list")
        self.assertIn('rule "a\\u202Eb"', r.stdout.decode())

    def test_inspect_usage_errors_exit_2(self):
        for args in (["--format", "fancy"], ["--bogus"], ["--max-stanza", "-5"],
                     ["--max-depth", "0"], ["--color", "sometimes"]):
            r = run("inspect", *args, os.path.join(CAPTURES, "c2s-plain.xml"))
            self.assertEqual(r.returncode, 2, args)
            self.assertIn("Try 'xmppscope inspect --help'", r.stderr.decode())
        r = run("inspect", "--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("usage: xmppscope inspect", r.stdout.decode())
        r = run("inspect", "/nonexistent/file.xml")
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot open /nonexistent/file.xml", r.stderr.decode())

    def test_inspect_limits_from_command_line(self):
        p = self.path("big.xml", b"<stream:stream xmlns='jabber:client' "
                      b"xmlns:stream='http://etherx.jabber.org/streams'>"
                      b"<message><body>" + b"x" * 5000 + b"</body></message>")
        self.assertEqual(run("inspect", p).returncode, 0)
        r = run("inspect", "--max-stanza", "1024", p)
        self.assertEqual(r.returncode, 1)
        self.assertIn("policy-violation", r.stderr.decode())

    def test_top_level_help_and_version(self):
        r = run("--help")
        self.assertEqual(r.returncode, 0)
        for cmd in ("proxy", "inspect", "ca"):
            self.assertIn(cmd, r.stdout.decode())
        self.assertEqual(run("--version").returncode, 0)
        self.assertEqual(run("frobnicate").returncode, 2)
        self.assertEqual(run().returncode, 2)


if __name__ == "__main__":
    unittest.main()

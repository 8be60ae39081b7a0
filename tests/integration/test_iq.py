"""IQ pairing and timing, and the protocol checks (issue 13, sections 2 and 3), through the proxy
to a real Prosody with real slixmpp clients, and `xmppscope inspect` on the log it wrote.

    cd tests/integration
    XMPPSCOPE=../../build/proxy/xmppscope /usr/bin/python3 -m unittest -v test_iq

Everything is on 127.0.0.1. Each proxy is stopped with SIGTERM in tearDown, which must exit 0
with no sanitizer report on its stderr.
"""

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import test_proxy  # noqa: E402  (ProsodyCase: one Prosody per class, proxies cleaned up)
from xmpptest.live import LiveClient, LiveError  # noqa: E402
from xmpptest.proxy import xmppscope_binary  # noqa: E402

NS_VERSION = "jabber:iq:version"
RTT_LINE = re.compile(r"^\S+ \d+ S→C \[authed\] iq \d+ B ↩ (\d+\.\d) ms$", re.M)


def checks_of(events, check_id):
    """Every report of check_id in a list of JSON events: on a stanza ("checks") or on its own
    ("event": "check")."""
    found = []
    for e in events:
        if e.get("event") == "check" and e.get("check") == check_id:
            found.append(e)
        for c in e.get("checks", []):
            if c.get("check") == check_id:
                found.append(dict(c, on=e))
    return found


def all_check_ids(events):
    ids = []
    for e in events:
        if e.get("event") == "check":
            ids.append(e["check"])
        ids += [c["check"] for c in e.get("checks", [])]
    return sorted(ids)


def pairs_of(events):
    """(session, answer's dir and id, the request's dir and id, rtt_ms) of every answer that was
    paired, the request found by the offset the answer's "pair" gives. Offsets themselves are
    not compared across a live log and its replay: the replay counts only the bytes the log
    holds (no XML declaration before a stream header)."""
    at = {(e["session"], e["dir"], e["offset"]): e for e in events
          if e.get("event") == "stanza"}
    pairs = []
    for e in events:
        if e.get("event") != "stanza" or "pair" not in e:
            continue
        req = at.get((e["session"], e["pair"]["dir"], e["pair"]["offset"]))
        if req is None:
            raise AssertionError(f"the pair of {e} points at no stanza")
        pairs.append((e["session"], e["dir"], e.get("id"), req["dir"], req.get("id"),
                      req.get("type"), e.get("rtt_ms")))
    return sorted(pairs, key=repr)


class IqWithProsody(test_proxy.ProsodyCase):
    PROSODY_KW = {"extra_modules": ["version", "smacks"]}

    def live(self, x, who="alice", **kw):
        jid, pw = (self.alice, test_proxy.PASSWORD) if who == "alice" else (self.bob, "bobpass")
        return LiveClient(jid, pw, x.port, ca_file=x.ca_file, timeout=10, **kw)

    def arun(self, coro, timeout=60):
        return asyncio.run(asyncio.wait_for(coro, timeout))

    def rules_file(self, text):
        path = os.path.join(self.tmp, f"{self.id().rpartition('.')[2]}.rules")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def inspect(self, log_path, *args):
        """`xmppscope inspect --format json ARGS LOG`: (exit status, events, stderr)."""
        r = subprocess.run([xmppscope_binary(), "inspect", "--format", "json", *args, log_path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        out = r.stdout.decode("utf-8")
        events = [json.loads(ln) for ln in out.splitlines() if ln.strip()]
        return r.returncode, events, r.stderr.decode("utf-8", "replace")

    def assert_inspect_agrees(self, x, *args):
        """inspect on the proxy's log pairs the same IQs (same round trips) and reports the
        same checks."""
        live = x.log_events()
        rc, offline, err = self.inspect(x.log_path, *args)
        self.assertEqual(rc, 0, err)
        self.assertEqual(pairs_of(offline), pairs_of(live))
        self.assertEqual(all_check_ids(offline), all_check_ids(live))
        return offline

    # -- an IQ answered: its round trip on the console and in the log -------------------------
    def test_iq_answered_round_trip(self):
        x = self.proxy(fmt="pretty")

        async def scenario():
            async with self.live(x) as alice:
                reply = await alice.iq_get(test_proxy.DOMAIN, NS_VERSION, iq_id="ver-1")
                self.assertIsNotNone(reply, "Prosody did not answer the version request")
                self.assertEqual(reply.get("type"), "result")

        self.arun(scenario())
        self.assertEqual(x.stop(), 0, x.dump())
        log = x.log_events()
        req, = [e for e in log if e.get("event") == "stanza" and e.get("id") == "ver-1"
                and e["dir"] == "c2s"]
        ans, = [e for e in log if e.get("event") == "stanza" and e.get("id") == "ver-1"
                and e["dir"] == "s2c"]
        self.assertEqual(ans["pair"], {"dir": "c2s", "offset": req["offset"],
                                       "stream": req["stream"]})
        self.assertGreater(ans["rtt_ms"], 0)
        self.assertLess(ans["rtt_ms"], 5000)
        # Every IQ of a normal login is answered, and nothing is wrong with it.
        gets = [e for e in log if e.get("name") == "iq" and e.get("type") in ("get", "set")]
        answers = [e for e in log if e.get("name") == "iq" and "pair" in e]
        self.assertEqual(len(gets), len(answers), "an IQ of the login was not paired")
        self.assertEqual(all_check_ids(log), [], "checks on a valid session")
        # The console shows the round trip on the answer's line, the summary at the end.
        out = x.stdout_text()
        rtts = [float(v) for v in RTT_LINE.findall(out)]
        self.assertEqual(len(rtts), len(answers), out[-3000:])
        self.assertIn(round(ans["rtt_ms"], 1), rtts)
        self.assertIn("= IQ jabber:iq:version: 1 request, p50 ", out)
        closed = [e for e in log if e.get("event") == "note" and "summary" in e]
        self.assertEqual(len(closed), 1)
        self.assertTrue(closed[0]["summary"][0].startswith(f"IQ: {len(gets)} requests, "
                                                           f"{len(gets)} answered"))
        # Offline: the same pairs and round trips, and the statistics by namespace.
        self.assert_inspect_agrees(x)
        rc, ev, err = self.inspect(x.log_path, "--stats")
        self.assertEqual(rc, 0, err)
        stats = ev[-1]
        self.assertEqual(stats["event"], "stats")
        ver = stats["iq"][NS_VERSION]
        self.assertEqual((ver["requests"], ver["answered"], ver["unanswered"]), (1, 1, 0))
        self.assertAlmostEqual(ver["max_ms"], ans["rtt_ms"], places=2)
        self.assertAlmostEqual(ver["p50_ms"], ans["rtt_ms"], places=2)

    # -- an IQ a rule drops: flagged unanswered after --iq-timeout -----------------------------
    def test_dropped_iq_flagged_unanswered(self):
        path = self.rules_file("""
rule "swallow version requests"
    direction c2s
    match /iq[@type='get']/*[local-name()='query' and namespace-uri()='jabber:iq:version']
    then drop
end
""")
        x = self.proxy(extra=["--rules", path, "--iq-timeout", "1"], fmt="compact")

        async def scenario():
            async with self.live(x) as alice:
                t0 = time.monotonic()
                reply = await alice.iq_get(test_proxy.DOMAIN, NS_VERSION, iq_id="lost-1",
                                           timeout=4)
                self.assertIsNone(reply, "the dropped request was answered")
                # The warning came while the session was still open (at a tick).
                hit = x.wait_for_log(lambda e: e.get("event") == "check"
                                     and e.get("check") == "iq-unanswered", timeout=3)
                self.assertIsNotNone(hit, x.dump())
                self.assertGreaterEqual(time.monotonic() - t0, 1.0)
                return hit

        hit = self.arun(scenario())
        self.assertEqual(x.stop(), 0, x.dump())
        log = x.log_events()
        req, = [e for e in log if e.get("event") == "stanza" and e.get("id") == "lost-1"]
        self.assertEqual(req["verdict"], "drop")
        self.assertEqual(hit["pair"], {"dir": "c2s", "offset": req["offset"],
                                       "stream": req["stream"]})
        self.assertEqual(hit["ref"], "RFC 6120 §8.2.3")
        self.assertIn("'lost-1'", hit["message"])
        self.assertIn("within 1 s", hit["message"])
        self.assertIn("a rule dropped it", hit["message"])
        self.assertEqual(len(checks_of(log, "iq-unanswered")), 1, "reported more than once")
        self.assertEqual(all_check_ids(log), ["iq-unanswered"])
        self.assertIn("check iq-unanswered: the get (jabber:iq:version) id 'lost-1'",
                      x.stdout_text())
        # Offline, by the log's own times: the same warning.
        offline = self.assert_inspect_agrees(x, "--iq-timeout", "1")
        self.assertEqual(len(checks_of(offline, "iq-unanswered")), 1)
        # With a long timeout offline it is reported at the end of the input instead.
        rc, ev, err = self.inspect(x.log_path, "--iq-timeout", "600")
        self.assertEqual(rc, 0, err)
        end, = checks_of(ev, "iq-unanswered")
        self.assertIn("before the input ended (session 1)", end["message"])
        # And --no-checks says nothing.
        rc, ev, err = self.inspect(x.log_path, "--no-checks")
        self.assertEqual(rc, 0, err)
        self.assertEqual(all_check_ids(ev), [])
        self.assertEqual(pairs_of(ev), [])

    # -- stream management: a rule drops a stanza, the server's h falls short -----------------
    def test_sm_h_mismatch_when_a_rule_drops(self):
        path = self.rules_file("""
rule "drop one message"
    direction c2s
    match /message/body[. = 'drop me']
    then drop
end
""")
        x = self.proxy(extra=["--rules", path], fmt="compact")

        async def scenario():
            bob = self.live(x, "bob")
            alice = self.live(x)
            alice.xmpp.register_plugin("xep_0198", {"window": 1000})
            sm = alice.xmpp["xep_0198"]
            async with bob, alice:
                for _ in range(50):
                    if sm.enabled_out:
                        break
                    await asyncio.sleep(0.05)
                self.assertTrue(sm.enabled_out, "stream management was not enabled")
                alice.send_message(self.bob, "one", msg_id="sm-1")
                alice.send_message(self.bob, "drop me", msg_id="sm-2")
                alice.send_message(self.bob, "three", msg_id="sm-3")
                # A ping round trip: the messages are out (request_ack() bypasses the queue).
                await alice.sync()
                sm.request_ack()
                got = await bob.wait_message(lambda m: m["id"] == "sm-3", timeout=5)
                self.assertIsNotNone(got)
                hit = x.wait_for_log(lambda e: any(c.get("check") == "sm-h-mismatch"
                                                   for c in e.get("checks", [])), timeout=5)
                self.assertIsNotNone(hit, x.dump())
                return hit

        hit = self.arun(scenario())
        self.assertEqual(x.stop(), 0, x.dump())
        self.assertEqual(hit["dir"], "s2c")
        self.assertEqual(hit["name"], "a")
        c, = [c for c in hit["checks"] if c["check"] == "sm-h-mismatch"]
        self.assertEqual(c["ref"], "XEP-0198 §4")
        self.assertRegex(c["message"], r"had sent (\d+) stanzas before its <r/>: 1 stanza would "
                                       r"be lost")
        self.assertIn("a rule dropped 1 of them", c["message"])
        log = x.log_events()
        self.assertEqual(len(checks_of(log, "sm-h-mismatch")), 1)
        # The log holds what inspect needs to find the same.
        offline = self.assert_inspect_agrees(x)
        self.assertEqual(len(checks_of(offline, "sm-h-mismatch")), 1)

    # -- resumption: a stanza a rule dropped on its way to the client -------------------------
    def test_sm_resume_mismatch_across_sessions(self):
        path = self.rules_file("""
rule "drop one message to alice"
    direction s2c
    match /message/body[. = 'drop me']
    then drop
end
""")
        x = self.proxy(extra=["--rules", path], fmt="compact")

        async def scenario():
            alice = self.live(x)
            alice.xmpp.register_plugin("xep_0198", {"window": 1000})
            sm = alice.xmpp["xep_0198"]
            async with self.live(x, "bob") as bob:
                await alice.start()
                for _ in range(50):
                    if sm.enabled_in and sm.sm_id:
                        break
                    await asyncio.sleep(0.05)
                self.assertTrue(sm.sm_id, "no resumable stream management session")
                for body in ("one", "drop me", "three"):
                    bob.send_message(alice.bound_jid, body)
                got = await alice.wait_message(lambda m: m["body"] == "three", timeout=5)
                self.assertIsNotNone(got)
                self.assertEqual([m["body"] for m in alice.messages], ["one", "three"])
                # The connection dies without a stream close; the client resumes.
                alice.xmpp.abort()
                await asyncio.sleep(0.3)
                loop = asyncio.get_running_loop()
                back = loop.create_future()
                for name in ("session_resumed", "session_start"):
                    alice.xmpp.add_event_handler(
                        name, lambda _e, n=name: back.done() or back.set_result(n))
                alice.xmpp.connect(address=(test_proxy.HOST, x.port), force_starttls=True)
                await asyncio.wait_for(back, 10)
                await alice.close()

        self.arun(scenario())
        self.assertEqual(x.stop(), 0, x.dump())
        log = x.log_events()
        resume, = [e for e in log if e.get("name") == "resume"]
        previd = re.search(r"previd=[\"']([^\"']+)", resume["raw"]).group(1)
        first, = [e for e in log if e.get("name") == "enabled" and previd in e["raw"]]
        self.assertNotEqual(resume["session"], first["session"])
        c, = [c for c in resume["checks"] if c["check"] == "sm-resume-mismatch"]
        self.assertEqual(c["ref"], "XEP-0198 §5")
        self.assertRegex(c["message"], r"^the client resumes with h=(\d+) but the server sent "
                                       r"(\d+) stanzas in session \d+: 1 would be sent again")
        # The client's acks in the first session fall one short too when Prosody asked for one
        # after the drop (its timing): said once at most.
        acks = [c for c in checks_of(log, "sm-h-mismatch") if c["on"]["dir"] == "c2s"]
        self.assertLessEqual(len(acks), 1, acks)
        for c in acks:
            self.assertIn("a rule dropped 1 of them", c["message"])
        self.assert_inspect_agrees(x)


class DowngradeWithProsody(test_proxy.ProsodyCase):
    """Prosody on TLS 1.2 offers SCRAM-SHA-1-PLUS; the proxy's sasl-plus rewrite hides it."""
    PROSODY_KW = {"tls12": True}

    def test_sasl_downgrade_flagged(self):
        x = self.proxy(fmt="compact")

        async def scenario():
            c = LiveClient(self.alice, test_proxy.PASSWORD, x.port, ca_file=x.ca_file,
                           mech="SCRAM-SHA-1", timeout=10)
            with self.assertRaises(LiveError):   # the server refuses the downgraded login
                await c.start()

        asyncio.run(asyncio.wait_for(scenario(), 40))
        self.assertEqual(x.stop(), 0, x.dump())
        log = x.log_events()
        auth, = [e for e in log if e.get("event") == "stanza" and e.get("name") == "auth"]
        self.assertEqual(auth.get("gs2"), "y")
        c, = [c for c in auth.get("checks", []) if c["check"] == "sasl-downgrade"]
        self.assertEqual(c["ref"], "RFC 5802 §6")
        self.assertIn("SCRAM-SHA-1-PLUS", c["message"])
        self.assertIn("sasl-plus rewrite", c["message"])
        self.assertIn("sasl-downgrade", x.stdout_text())
        # Offline too: the log keeps the server's features as sent.
        r = subprocess.run([xmppscope_binary(), "inspect", "--format", "json", x.log_path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        offline = [json.loads(ln) for ln in r.stdout.decode().splitlines() if ln.strip()]
        self.assertEqual(len(checks_of(offline, "sasl-downgrade")), 1)


class CommandLine(unittest.TestCase):
    def run_x(self, *args):
        return subprocess.run([xmppscope_binary(), *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=30)

    def test_options_documented_and_checked(self):
        for cmd in ("proxy", "inspect"):
            r = self.run_x(cmd, "--help")
            self.assertEqual(r.returncode, 0)
            self.assertIn(b"--iq-timeout S", r.stdout)
            self.assertIn(b"--no-checks", r.stdout)
        for bad in ("0", "-1", "abc", "1e9"):
            r = self.run_x("inspect", "--iq-timeout", bad, "/dev/null")
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(b"--iq-timeout takes seconds", r.stderr)
            r = self.run_x("proxy", "--upstream", "127.0.0.1:1", "--iq-timeout", bad)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(b"--iq-timeout takes seconds", r.stderr)


if __name__ == "__main__":
    unittest.main()

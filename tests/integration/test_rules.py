"""Filter and rewrite rules (issue 4) through xmppscope's proxy, and `rules check` / `inspect`.

    cd tests/integration
    XMPPSCOPE=../../build/proxy/xmppscope /usr/bin/python3 -m unittest -v test_rules

Real slixmpp clients go through the proxy to a private Prosody (with mod_version, mod_smacks and
mod_stanza_debug, whose log shows every stanza Prosody received); a scripted fake server is used
where exact bytes matter or Prosody cannot show it. Everything is on 127.0.0.1. Each proxy is
stopped with SIGTERM in tearDown, which must exit 0 with no sanitizer report on its stderr.
"""

import asyncio
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import test_proxy  # noqa: E402  (ProxyCase / ProsodyCase: start, stop and check proxies)
from test_proxy import DOMAIN, H, HOST, raw  # noqa: E402
from xmpptest import rawclient  # noqa: E402
from xmpptest.live import NS_STANZAS, LiveClient, stanza_error  # noqa: E402
from xmpptest.prosody import make_ca, make_server_cert  # noqa: E402
from xmpptest.proxy import SANITIZER_PATTERN, xmppscope_binary  # noqa: E402

NS_CLIENT = "jabber:client"
NS_VERSION = "jabber:iq:version"
HITS_LINE = re.compile(r"^\s+(\d+)  (.+)$")


def rule_hits(stderr):
    """{rule name: hits} from the 'rule hits:' block the proxy prints at exit."""
    lines = stderr.splitlines()
    idx = [i for i, ln in enumerate(lines) if ln.rstrip().endswith("rule hits:")]
    if not idx:
        return None
    hits = {}
    for ln in lines[idx[-1] + 1:]:
        m = HITS_LINE.match(ln)
        if not m:
            break
        hits[m.group(2)] = int(m.group(1))
    return hits


def parse_stanza(xml_text):
    """A stanza serialized for a jabber:client stream, parsed in such a stream."""
    wrapped = (f"<stream:stream xmlns='{NS_CLIENT}' "
               f"xmlns:stream='http://etherx.jabber.org/streams'>{xml_text}</stream:stream>")
    return ET.fromstring(wrapped)[0]


def q(tag, ns=NS_CLIENT):
    return f"{{{ns}}}{tag}"


def stanza_events(x, **want):
    """Stanza events of the proxy's JSON log whose fields equal `want`."""
    return [e for e in x.log_events() if e.get("event") == "stanza"
            and all(e.get(k) == v for k, v in want.items())]


class RulesMixin:
    def rules_file(self, text, name=None):
        name = name or f"{self.id().rpartition('.')[2]}-{time.monotonic_ns()}.rules"
        path = os.path.join(self.tmp, name)
        with open(path + ".new", "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(path + ".new", path)   # atomic: a SIGHUP never reads half a file
        return path

    def stop_and_hits(self, x):
        self.assertEqual(x.stop(), 0, x.dump())
        hits = rule_hits(x.stderr_text())
        self.assertIsNotNone(hits, "no 'rule hits:' block at exit\n" + x.dump())
        return hits

    def arun(self, coro, timeout=40):
        return asyncio.run(asyncio.wait_for(coro, timeout))


# =================================================================================================
# Through the proxy to a real Prosody, with real slixmpp clients
# =================================================================================================
class RulesWithProsody(RulesMixin, test_proxy.ProsodyCase):
    PROSODY_KW = {"extra_modules": ["version", "smacks", "stanza_debug"]}

    def live(self, x, who, **kw):
        jid, pw = (self.alice, test_proxy.PASSWORD) if who == "alice" else (self.bob, "bobpass")
        return LiveClient(jid, pw, x.port, ca_file=x.ca_file, timeout=10, **kw)

    def prosody_log(self):
        try:
            with open(self.p.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def wait_prosody_log(self, text, timeout=5.0):
        deadline = time.monotonic() + timeout
        while text not in self.prosody_log():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    # -- 1: drop -----------------------------------------------------------------------------
    def test_dropped_message_never_arrives(self):
        path = self.rules_file("""
# the first rule that drops stops the rest: "tag chat" never sees the secret
rule "drop secrets"
    direction c2s
    match /message/body[contains(., 'secret')]
    then drop
    then tag dropped-secret
end

rule "tag chat"
    direction any
    match /message[@type = 'chat']/body
    then tag chat
end

rule "never matches"
    match /presence[@type = 'no-such-type']
    then drop
end
""")
        x = self.proxy(extra=["--rules", path])

        async def scenario():
            async with self.live(x, "bob") as bob, self.live(x, "alice") as alice:
                alice.send_message(self.bob, "the secret is 42", msg_id="drop-1")
                alice.send_message(self.bob, "nothing to hide", msg_id="keep-2")
                got = await bob.wait_message(lambda m: m["id"] == "keep-2", timeout=5)
                self.assertIsNotNone(got, "the message after the dropped one did not arrive")
                # Round trips on both sides, and a little more: a late one would show now.
                await alice.sync()
                await bob.sync()
                await asyncio.sleep(0.3)
                return [m["body"] for m in bob.messages], alice.message_errors

        bodies, errors = self.arun(scenario())
        self.assertEqual(bodies, ["nothing to hide"])
        self.assertEqual(errors, [], "a drop is silent: no error goes back to the sender")
        self.assertTrue(self.wait_prosody_log("keep-2"))
        self.assertNotIn("drop-1", self.prosody_log(), "Prosody received the dropped stanza")
        # 9: hit counters at exit: tag chat saw keep-2 twice (c2s from alice, s2c to bob).
        hits = self.stop_and_hits(x)
        self.assertEqual(hits, {"drop secrets": 1, "tag chat": 2, "never matches": 0})
        # The log shows the verdict and the rules on the dropped stanza.
        ev, = [e for e in stanza_events(x, dir="c2s", name="message") if "drop-1" in e["raw"]]
        self.assertEqual(ev["verdict"], "drop")
        self.assertEqual([(r["rule"], r["action"]) for r in ev["rules"]],
                         [("drop secrets", "drop"), ("drop secrets", "tag")])
        self.assertFalse([e for e in stanza_events(x, dir="s2c") if "secret" in e["raw"]])

    # -- 2: rewrite ----------------------------------------------------------------------------
    def test_rewritten_body_arrives_rewritten_and_is_logged(self):
        path = self.rules_file(r"""
rule "mask codes"
    direction c2s
    match /message/body
    then replace-text /message/body "code=(\w+)-\d+" "code=$1-XXXX"
end
""")
        x = self.proxy(extra=["--rules", path])
        original = "größe ✓ code=alpha-1234 and code=beta-99 ok"
        expected = "größe ✓ code=alpha-XXXX and code=beta-XXXX ok"

        async def scenario():
            async with self.live(x, "bob") as bob, self.live(x, "alice") as alice:
                alice.send_message(self.bob, original, msg_id="rw-1")
                return await bob.wait_message(lambda m: m["id"] == "rw-1", timeout=5)

        got = self.arun(scenario())
        self.assertIsNotNone(got, "the rewritten message did not arrive")
        self.assertEqual(got["body"], expected)
        self.assertTrue(got["from"].startswith(self.alice + "/"))
        self.assertEqual(x.stop(), 0)
        ev, = [e for e in stanza_events(x, dir="c2s", name="message") if "rw-1" in e["raw"]]
        self.assertEqual(ev["verdict"], "rewritten")
        self.assertEqual([(r["rule"], r["action"]) for r in ev["rules"]],
                         [("mask codes", "replace-text")])
        self.assertIn("code=alpha-1234", ev["raw"], "raw must be the original bytes")
        self.assertIn("größe ✓", ev["raw"])
        new = parse_stanza(ev["rewritten"])
        self.assertEqual(new.tag, q("message"))
        self.assertEqual(new.get("id"), "rw-1")
        self.assertEqual(new.get("to"), self.bob)
        self.assertEqual(new.find(q("body")).text, expected)
        self.assertNotIn("1234", ev["rewritten"])
        # What Prosody passed to bob is the rewritten stanza.
        out, = [e for e in stanza_events(x, dir="s2c", name="message") if "rw-1" in e["raw"]]
        self.assertIn(expected, out["raw"])
        self.assertNotIn("verdict", out)

    # -- secrets stay masked in what a rule rewrote ----------------------------------------------
    def test_rewritten_sasl_auth_stays_masked(self):
        path = self.rules_file("""
rule "mark auth"
    direction c2s
    match /sasl:auth
    then set-attr /sasl:auth xs-mark yes
end
""")
        x = self.proxy(extra=["--rules", path], fmt="pretty")
        self.chat(x, "starttls", mech="PLAIN")
        self.assertEqual(x.stop(), 0, x.dump())
        auths = stanza_events(x, dir="c2s", name="auth")
        self.assertEqual(len(auths), 2, auths)   # alice's and bob's
        for ev in auths:
            self.assertEqual(ev["verdict"], "rewritten")
            self.assertIn("xs-mark", ev["rewritten"])
            self.assertIn("***", ev["rewritten"])
        self.assertIn("=> rewritten: <auth", x.stdout_text())
        leaks = [base64.b64encode(f"\0{u}\0{pw}".encode()).decode()
                 for u, pw in (("alice", test_proxy.PASSWORD), (self.alice, test_proxy.PASSWORD),
                               ("bob", "bobpass"), (self.bob, "bobpass"))]
        for where, text in (("console", x.stdout_text()), ("log", x.log_text())):
            self.assertNotIn(test_proxy.PASSWORD, text, where)
            self.assertNotIn("bobpass", text, where)
            for b in leaks:
                self.assertNotIn(b, text, where)

    # -- 3: bounce -----------------------------------------------------------------------------
    def test_bounced_iq_gets_error_reply(self):
        path = self.rules_file("""
rule "bounce version"
    direction c2s
    match /iq[@type = 'get'][starts-with(@id, 'bounce-')]/version:query
    then bounce
end

rule "bounce version, named"
    direction c2s
    match /iq[@type = 'get'][starts-with(@id, 'named-')]/version:query
    then bounce not-allowed
end
""")
        x = self.proxy(extra=["--rules", path])

        async def scenario():
            async with self.live(x, "bob") as bob, self.live(x, "alice") as alice:
                r = {"ctl": await alice.iq_get(DOMAIN, NS_VERSION, iq_id="ctl-1"),
                     "dflt": await alice.iq_get(DOMAIN, NS_VERSION, iq_id="bounce-1"),
                     "named": await alice.iq_get(DOMAIN, NS_VERSION, iq_id="named-1"),
                     "bob": await alice.iq_get(bob.bound_jid, NS_VERSION, iq_id="bounce-2")}
                return r, bob.bound_jid

        r, bob_full = self.arun(scenario())
        # Control: unbounced, Prosody's mod_version answers with a result.
        self.assertIsNotNone(r["ctl"], "no answer to the control IQ")
        self.assertEqual(r["ctl"].get("type"), "result")
        self.assertEqual(r["ctl"].find(f"{{{NS_VERSION}}}query/{{{NS_VERSION}}}name").text,
                         "Prosody")
        for key, iq_id, peer, cond in (("dflt", "bounce-1", DOMAIN, "service-unavailable"),
                                       ("named", "named-1", DOMAIN, "not-allowed"),
                                       ("bob", "bounce-2", bob_full, "service-unavailable")):
            with self.subTest(key):
                el = r[key]
                self.assertIsNotNone(el, f"no answer to {iq_id}")
                self.assertEqual(el.get("type"), "error", ET.tostring(el))
                self.assertEqual(el.get("id"), iq_id)
                self.assertEqual(el.get("from"), peer, "from/to swapped")
                self.assertEqual(stanza_error(el), ("cancel", cond), ET.tostring(el))
        # The server never received the bounced IQs (it logs every stanza it receives).
        self.assertTrue(self.wait_prosody_log("ctl-1"))
        log = self.prosody_log()
        for iq_id in ("bounce-1", "named-1", "bounce-2"):
            self.assertNotIn(iq_id, log, f"Prosody received {iq_id}")
        self.assertEqual(x.stop(), 0)
        verdicts = {}
        for e in stanza_events(x, dir="c2s", name="iq"):
            m = re.search(r"""id=['"]([a-z]+-\d)['"]""", e["raw"])
            if m:
                verdicts[m.group(1)] = e.get("verdict")
        self.assertEqual(verdicts, {"ctl-1": None, "bounce-1": "bounce", "named-1": "bounce",
                                    "bounce-2": "bounce"})

    # -- 4: inject -----------------------------------------------------------------------------
    def test_injected_messages_arrive(self):
        path = self.rules_file("""
rule "echo and copy"
    direction c2s
    match /message[body = 'inject please']
    then inject s2c "<message from='{to}' type='chat' id='echo-{id}'><body>proxy saw {id}</body></message>"
    then inject c2s "<message to='{to}' type='chat' id='copy-{id}'><body>copy of {id}</body></message>"
end
""")
        x = self.proxy(extra=["--rules", path])

        async def scenario():
            async with self.live(x, "bob") as bob, self.live(x, "alice") as alice:
                alice.send_message(self.bob, "inject please", msg_id="inj-1")
                echo = await alice.wait_message(lambda m: m["id"] == "echo-inj-1", timeout=5)
                copy = await bob.wait_message(lambda m: m["id"] == "copy-inj-1", timeout=5)
                return echo, copy, list(bob.messages)

        echo, copy, bob_msgs = self.arun(scenario())
        self.assertIsNotNone(echo, "the s2c injection did not reach alice")
        self.assertEqual(echo["body"], "proxy saw inj-1")
        self.assertEqual(echo["from"], self.bob)
        self.assertIsNotNone(copy, "the c2s injection did not reach bob")
        self.assertEqual(copy["body"], "copy of inj-1")
        self.assertTrue(copy["from"].startswith(self.alice + "/"), "Prosody routed it as alice's")
        # The original goes first, the injected stanza after it.
        self.assertEqual([m["id"] for m in bob_msgs], ["inj-1", "copy-inj-1"])

    # -- 5: features, with a real server offering stream management -----------------------------
    def test_stream_management_removed_from_real_features(self):
        # Prosody offers XEP-0198 in two versions: urn:xmpp:sm:3 (built-in prefix sm) and 2.
        path = self.rules_file("""
namespace sm2 urn:xmpp:sm:2
rule "no stream management"
    direction s2c
    match /stream:features/sm:sm
    then remove /stream:features/sm:sm
    then remove /stream:features/sm2:sm
end
""")
        seen = {}
        for label, extra in (("without rules", []), ("with the rule", ["--rules", path])):
            x = self.proxy(extra=extra)

            async def scenario():
                async with self.live(x, "alice") as alice:
                    return alice.features

            seen[label] = self.arun(scenario())
        self.assertIn("sm", seen["without rules"][-1], seen)
        self.assertIn("bind", seen["without rules"][-1], seen)
        self.assertFalse(any("sm" in f for f in seen["with the rule"]), seen)
        self.assertEqual(seen["with the rule"][-1],
                         [f for f in seen["without rules"][-1] if f != "sm"])

    # -- 6: SIGHUP -------------------------------------------------------------------------------
    def test_sighup_reload_applies_to_running_session(self):
        first = """
rule "tag bodies"
    match /message/body
    then tag body
end
"""
        second = first + """
rule "stamp"
    direction c2s
    match /message/body
    then set-text /message/body "reloaded: {id}"
end
"""
        bad = """rule "broken"
    match /message/zz:body
    then drop
end
rule "also broken"
    match /message
    then frobnicate
end
"""
        path = self.rules_file(first)
        x = self.proxy(extra=["--rules", path])
        self.assertTrue(x.wait_for_stderr(r"rules: 1 from "), x.dump())

        async def send(alice, bob, msg_id, body):
            alice.send_message(self.bob, body, msg_id=msg_id)
            m = await bob.wait_message(lambda m: m["id"] == msg_id, timeout=5)
            self.assertIsNotNone(m, f"{msg_id} did not arrive")
            return m["body"]

        async def hup(pattern):
            n = len(x.stderr_text())
            x.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 5
            while not re.search(pattern, x.stderr_text()[n:]):
                self.assertLess(time.monotonic(), deadline, f"no {pattern!r}\n{x.dump()}")
                await asyncio.sleep(0.02)
            return x.stderr_text()[n:]

        async def scenario():
            async with self.live(x, "bob") as bob, self.live(x, "alice") as alice:
                self.assertEqual(await send(alice, bob, "hup-0", "before"), "before")
                self.rules_file(second, name=os.path.basename(path))
                await hup(r"SIGHUP: reloaded .*: 2 rules")
                self.assertEqual(await send(alice, bob, "hup-1", "after"), "reloaded: hup-1")
                self.rules_file(bad, name=os.path.basename(path))
                said = await hup(r"has errors; keeping the 2 rules in use")
                self.assertEqual(await send(alice, bob, "hup-2", "after bad"),
                                 "reloaded: hup-2")
                return said

        said = self.arun(scenario())
        self.assertRegex(said, re.escape(path) + r":2:20: match: unknown namespace prefix 'zz'")
        self.assertRegex(said, re.escape(path) + r":7:10: unknown action 'frobnicate'")
        self.assertTrue(x.running)
        self.assertEqual(self.stop_and_hits(x), {"tag bodies": 4, "stamp": 2})

    # -- 7: delay --------------------------------------------------------------------------------
    def test_delay_keeps_order_within_direction(self):
        path = self.rules_file("""
rule "slow first"
    direction c2s
    match /message[starts-with(body, 'slow')]
    then delay 300
end
""")
        x = self.proxy(extra=["--rules", path])

        async def scenario():
            async with self.live(x, "bob") as bob, self.live(x, "alice") as alice:
                _, t1 = alice.send_message(self.bob, "slow one", msg_id="d-1")
                _, t2 = alice.send_message(self.bob, "fast two", msg_id="d-2")
                m2 = await bob.wait_message(lambda m: m["id"] == "d-2", timeout=5)
                self.assertIsNotNone(m2)
                return t1, t2, list(bob.messages)

        t1, t2, msgs = self.arun(scenario())
        self.assertEqual([m["id"] for m in msgs], ["d-1", "d-2"], "order within c2s kept")
        self.assertGreaterEqual(msgs[0]["t"] - t1, 0.25, "the first was not held ~300 ms")
        self.assertLess(msgs[0]["t"] - t1, 3.0)
        # The second was not delayed by a rule, but waited behind the first.
        self.assertGreaterEqual(msgs[1]["t"], msgs[0]["t"])
        self.assertGreaterEqual(msgs[1]["t"] - t2, 0.2)


# =================================================================================================
# Against the scripted fake server: exact bytes, and what the server never received
# =================================================================================================
class RulesWithFakeServer(RulesMixin, test_proxy.ProxyCase):
    SM_FEATURES = (b"<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
                   b"<sm xmlns='urn:xmpp:sm:3'/><csi xmlns='urn:xmpp:csi:0'/>"
                   b"</stream:features>")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv_ca, cls.srv_ca_key = make_ca(cls.tmp, name="fake-ca", cn="fake server CA")
        cls.srv_cert, cls.srv_key = make_server_cert(cls.tmp, cls.srv_ca, cls.srv_ca_key,
                                                     [DOMAIN], name="fake-server")

    def plain_pair(self, rules=None, **kw):
        srv = self.fake_server(mode="none", **{k: kw.pop(k) for k in ("features",) if k in kw})
        extra = ["--rules", rules] if rules else []
        x = self.start_proxy(upstream=srv.address, client_tls="none", upstream_tls="none",
                             extra=extra, **kw)
        return srv, x

    def open_session(self, x, srv):
        n = len(srv.conns)
        c = raw(x.port)
        c.send(H)
        c.read_features()
        conn = srv.wait_connection(index=n)
        conn.wait_for(H)
        return c, conn

    # -- 5: stream management removed from the post-TLS features ---------------------------------
    def test_strip_sm_from_post_tls_features(self):
        path = self.rules_file("""
rule "no stream management"
    direction s2c
    match /stream:features/sm:sm
    then remove /stream:features/sm:sm
    then tag sm-hidden
end
""")
        after = b"<message from='example.test'><body>after</body></message>"
        seen = {}
        for label, rules in (("without", None), ("with", path)):
            srv = self.fake_server(mode="starttls", cert=self.srv_cert, key=self.srv_key,
                                   features=self.SM_FEATURES)
            x = self.start_proxy(upstream=srv.address, upstream_ca=self.srv_ca,
                                 extra=["--rules", rules] if rules else [])
            with raw(x.port) as c:
                c.starttls(DOMAIN, ca_file=x.ca_file)
                c.send(H)
                feats = rawclient.features_block(c.read_features())
                conn = srv.wait_connection()
                conn.send(after)
                c.read_until(b"</message>")
                # An untouched stanza after the rewritten features still passes byte for byte.
                self.assertTrue(c.received.endswith(b"</stream:features>" + after), c.received)
                self.assertIsNotNone(conn.tls_version, "the server leg is not TLS")
            seen[label] = (feats, x)
        self.assertEqual(seen["without"][0], self.SM_FEATURES)
        feats = seen["with"][0]
        el = ET.fromstring(b"<r xmlns:stream='http://etherx.jabber.org/streams'>" + feats + b"</r>")
        children = [c.tag for c in el[0]]
        self.assertEqual(children, ["{urn:ietf:params:xml:ns:xmpp-bind}bind",
                                    "{urn:xmpp:csi:0}csi"])
        x = seen["with"][1]
        self.assertEqual(x.stop(), 0)
        ev, = stanza_events(x, dir="s2c", name="features", phase="tls")
        self.assertEqual(ev["verdict"], "rewritten")
        self.assertEqual([(r["rule"], r["action"]) for r in ev["rules"]],
                         [("no stream management", "remove"), ("no stream management", "tag")])
        self.assertIn("urn:xmpp:sm:3", ev["raw"])
        self.assertNotIn("urn:xmpp:sm:3", ev["rewritten"])

    # -- 3: a bounce never reaches the other side; both directions --------------------------------
    def test_bounce_never_reaches_server(self):
        path = self.rules_file("""
rule "bounce version"
    direction c2s
    match /iq/version:query
    then bounce item-not-found
end

rule "bounce server pings"
    direction s2c
    match /iq/ping:ping
    then bounce feature-not-implemented
end
""")
        srv, x = self.plain_pair(rules=path)
        c, conn = self.open_session(x, srv)
        with c:
            c.send(b"<iq type='get' id='v1' to='example.test' from='alice@example.test/r'>"
                   b"<query xmlns='jabber:iq:version'/></iq>")
            # A result and an error are never bounced (dropped instead).
            c.send(b"<iq type='result' id='v2' to='example.test'>"
                   b"<query xmlns='jabber:iq:version'/></iq>")
            c.send(b"<message id='m-after'><body>after</body></message>")
            conn.wait_for(b"m-after")
            got = c.read_until(b"</iq>")
            conn.send(b"<iq type='get' id='p1' from='example.test' to='alice@example.test/r'>"
                      b"<ping xmlns='urn:xmpp:ping'/></iq><message id='s-after'/>")
            c.read_until(b"s-after")
            srv_got = conn.wait_for(b"</iq>")
        self.assertNotIn(b"v1", conn.received, "the bounced IQ reached the server")
        self.assertNotIn(b"v2", conn.received, "a matched result must be dropped, not bounced")
        self.assertNotIn(b"urn:xmpp:ping", c.received, "the bounced ping reached the client")
        self.assertEqual(c.received.count(b"<iq"), 1, c.received)
        for data, iq_id, frm, to, cond in (
                (got, "v1", "example.test", "alice@example.test/r", "item-not-found"),
                (srv_got, "p1", "alice@example.test/r", "example.test",
                 "feature-not-implemented")):
            with self.subTest(iq_id):
                el = parse_stanza(data[data.rindex(b"<iq"):].decode())
                self.assertEqual(el.tag, q("iq"))
                self.assertEqual((el.get("type"), el.get("id"), el.get("from"), el.get("to")),
                                 ("error", iq_id, frm, to))
                err = el.find(q("error"))
                self.assertIsNotNone(err, data)
                self.assertEqual(err.get("type"), "cancel")
                self.assertIsNotNone(err.find(f"{{{NS_STANZAS}}}{cond}"), data)

    # -- 9: hit counters at exit -------------------------------------------------------------------
    def test_hit_counters_printed_at_exit(self):
        path = self.rules_file("""
rule "c2s messages"
    direction c2s
    match /message
    then tag c2s
end

rule "s2c messages, then stop"
    direction s2c
    match /message
    then tag s2c
    then pass
end

rule "any message"
    match /message
    then tag any
end

rule "presence"
    match /presence
    then tag presence
end

rule "nothing"
    match /iq[@type = 'no-such-type']
    then drop
end
""")
        srv, x = self.plain_pair(rules=path)
        c, conn = self.open_session(x, srv)
        with c:
            for i in range(3):
                c.send(f"<message id='c{i}'><body>{i}</body></message>".encode())
            c.send(b"<presence/>")
            conn.wait_for(b"<presence/>")
            conn.send(b"<message id='s0'/><message id='s1'/><presence id='s-end'/>")
            c.read_until(b"s-end")
        hits = self.stop_and_hits(x)
        # In file order; "pass" stops the s2c messages before "any message".
        self.assertEqual(list(hits.items()),
                         [("c2s messages", 3), ("s2c messages, then stop", 2), ("any message", 3),
                          ("presence", 2), ("nothing", 0)])
        self.assertIn("stopped", x.stderr_text())

    # -- 8: inspect --rules on a log the proxy wrote -----------------------------------------------
    def test_inspect_dry_run_on_proxy_log(self):
        srv, x = self.plain_pair()
        c, conn = self.open_session(x, srv)
        with c:
            c.send(b"<message id='i1' to='bob@example.test'><body>the secret</body></message>")
            c.send(b"<message id='i2' to='bob@example.test'><body>code=ab-123</body></message>")
            conn.wait_for(b"i2")
            conn.send(b"<message id='i3'><body>secret back code=zz-9</body></message>")
            c.read_until(b"i3")
        self.assertEqual(x.stop(), 0)
        rules = self.rules_file(r"""
rule "drop secrets"
    direction c2s
    match /message/body[contains(., 'secret')]
    then drop
end

rule "mask codes"
    match /message/body
    then replace-text /message/body "code=(\w+)-\d+" "code=$1-X"
end

rule "unused"
    match /iq
    then drop
end
""")

        def inspect(*args):
            r = subprocess.run([xmppscope_binary(), "inspect", "--rules", rules, *args],
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
                               env=dict(os.environ, NO_COLOR="1"))
            err = r.stderr.decode(errors="replace")
            self.assertEqual(r.returncode, 0, err)
            self.assertNotRegex(err, SANITIZER_PATTERN)
            return r.stdout.decode("utf-8", "replace")

        out = inspect("--format", "compact", x.log_path)
        table = {}
        for ln in out[out.index("rule (dry run)"):].splitlines()[1:]:
            m = re.match(r"^\s+(.+?)\s+(\d+)$", ln)
            if m:
                table[m.group(1)] = int(m.group(2))
        # i1 (c2s) is dropped; i3 (s2c) is not, the rule is c2s only; i2 is rewritten.
        self.assertEqual(table, {"drop secrets": 1, "mask codes": 2, "unused": 0}, out)
        self.assertIn("drop secrets", out[:out.index("rule (dry run)")])
        # The JSON output says for each stanza what would have happened.
        events = [json.loads(ln) for ln in inspect("--format", "json", x.log_path).splitlines()
                  if ln.startswith("{")]
        verdict = {}
        for e in events:
            m = re.search(r"id='(i\d)'", e.get("raw", ""))
            if m and e.get("event") == "stanza":
                verdict[m.group(1)] = (e.get("verdict"), [r["rule"] for r in e.get("rules", [])])
        self.assertEqual(verdict, {"i1": ("drop", ["drop secrets"]),
                                   "i2": ("rewritten", ["mask codes"]),
                                   "i3": ("rewritten", ["mask codes"])}, verdict)
        i2, = [e for e in events if "id='i2'" in e.get("raw", "")]
        self.assertIn("code=ab-123", i2["raw"])
        self.assertEqual(parse_stanza(i2["rewritten"]).find(q("body")).text, "code=ab-X")

    # -- secrets stay masked in what a rule rewrote, in the proxy's outputs and in inspect ------
    SECRET_RULES = """
rule "mark auth"
    direction c2s
    match /sasl:auth
    then set-attr /sasl:auth xs-mark yes
end

rule "mark iq"
    direction c2s
    match /iq[@type = 'set']
    then set-attr /iq xs-mark yes
end

rule "mark join"
    direction c2s
    match /presence
    then set-attr /presence xs-mark yes
end

rule "mark invite"
    direction c2s
    match /message
    then set-attr /message xs-mark yes
end
"""
    # PLAIN "\0alice\0Calliope-s3cr3t", XEP-0077, XEP-0078, XEP-0133, XEP-0249, MUC.
    SECRET_STANZAS = (
        b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
        b"AGFsaWNlAENhbGxpb3BlLXMzY3IzdA==</auth>",
        b"<iq type='set' id='reg1'><query xmlns='jabber:iq:register'><username>bill</username>"
        b"<password>Calliope-s3cr3t</password></query></iq>",
        b"<iq type='set' id='auth1'><query xmlns='jabber:iq:auth'><username>bill</username>"
        b"<password>Calliope-s3cr3t</password><resource>r</resource></query></iq>",
        b"<iq type='set' id='chg1'><command xmlns='http://jabber.org/protocol/commands' "
        b"node='http://jabber.org/protocol/admin#change-user-password'><x xmlns='jabber:x:data' "
        b"type='submit'><field var='accountjid'><value>bill@example.test</value></field>"
        b"<field var='password'><value>Calliope-s3cr3t</value></field></x></command></iq>",
        b"<message id='inv1' to='hecate@example.test'><x xmlns='jabber:x:conference' "
        b"jid='room@muc.example.test' password='Calliope-s3cr3t'/></message>",
        b"<presence id='join1' to='room@muc.example.test/bill'>"
        b"<x xmlns='http://jabber.org/protocol/muc'><password>Calliope-s3cr3t</password></x>"
        b"</presence>",
    )
    SECRET_LEAKS = ("Calliope", "AGFsaWNlAENhbGxpb3Bl")

    def test_rewritten_secrets_stay_masked(self):
        rules = self.rules_file(self.SECRET_RULES)
        for fmt in ("pretty", "json"):
            with self.subTest(console=fmt):
                srv, x = self.plain_pair(rules=rules, fmt=fmt)
                c, conn = self.open_session(x, srv)
                with c:
                    for st in self.SECRET_STANZAS:
                        c.send(st)
                    conn.wait_for(b"join1")
                    # The server got the rewritten stanzas, secrets and all.
                    self.assertIn(b"Calliope-s3cr3t</password>", conn.received)
                self.assertEqual(x.stop(), 0, x.dump())
                verdicts = [e.get("verdict") for e in stanza_events(x, dir="c2s")]
                self.assertEqual(verdicts.count("rewritten"), len(self.SECRET_STANZAS), verdicts)
                for e in stanza_events(x, dir="c2s"):
                    self.assertIn("***", e["rewritten"], e)
                for where, text in (("console", x.stdout_text()), ("log", x.log_text())):
                    for leak in self.SECRET_LEAKS:
                        self.assertNotIn(leak, text, f"{where}:\n{text}")

    def test_inspect_rules_keeps_rewritten_secrets_masked(self):
        rules = self.rules_file(self.SECRET_RULES)
        cap = os.path.join(self.tmp, "secrets-capture.xml")
        with open(cap, "wb") as f:
            f.write(H + b"".join(self.SECRET_STANZAS))
        for fmt in ("pretty", "compact", "json"):
            with self.subTest(format=fmt):
                r = subprocess.run([xmppscope_binary(), "inspect", "--rules", rules,
                                    "--direction", "c2s", "--format", fmt, cap],
                                   stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
                                   env=dict(os.environ, NO_COLOR="1"))
                out = r.stdout.decode("utf-8", "replace") + r.stderr.decode("utf-8", "replace")
                self.assertEqual(r.returncode, 0, out)
                self.assertNotRegex(out, SANITIZER_PATTERN)
                self.assertIn("rewritten", out)
                for leak in self.SECRET_LEAKS:
                    self.assertNotIn(leak, out, out)

    def test_inspect_dry_run_on_raw_capture(self):
        # A raw capture has no direction: with --direction c2s the c2s and 'any' rules apply;
        # without it "only 'direction any' rules" (inspect --help).
        rules = self.rules_file(r"""
rule "drop secrets"
    direction c2s
    match /message/body[contains(., 'secret')]
    then drop
end

rule "mask codes"
    match /message/body
    then replace-text /message/body "code=(\w+)-\d+" "code=$1-X"
end
""")
        cap = os.path.join(self.tmp, "c2s-capture.xml")
        with open(cap, "wb") as f:
            f.write(H + b"<message id='r1'><body>a secret</body></message>"
                    b"<message id='r2'><body>code=ab-1</body></message>")
        for args, want in ((["--direction", "c2s"], {"drop secrets": 1, "mask codes": 1}),
                           ([], {"drop secrets": 0, "mask codes": 2})):
            with self.subTest(args=args):
                r = subprocess.run([xmppscope_binary(), "inspect", "--rules", rules,
                                    "--format", "compact", *args, cap],
                                   stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
                                   env=dict(os.environ, NO_COLOR="1"))
                out = r.stdout.decode("utf-8", "replace")
                self.assertEqual(r.returncode, 0, r.stderr)
                table = dict((m.group(1), int(m.group(2))) for m in
                             re.finditer(r"^\s+(drop secrets|mask codes)\s+(\d+)$", out, re.M))
                self.assertEqual(table, want, out)
                self.assertIn("{mask codes: replace-text => rewritten}", out)

    # -- the session's figures do not change when rules are loaded --------------------------------
    def test_session_byte_counts_unchanged_by_rules(self):
        path = self.rules_file("""
rule "matches nothing"
    match /iq[@type = 'no-such-type']
    then drop
end
""")
        closed = re.compile(r"session closed .*: c2s (\d+) stanzas (\d+) bytes, "
                            r"s2c (\d+) stanzas (\d+) bytes")
        figures = {}
        for label, rules in (("without rules", None), ("with rules", path)):
            srv, x = self.plain_pair(rules=rules)
            c, conn = self.open_session(x, srv)
            with c:
                c.send(b"<message id='e'><body>hello</body></message><presence/>"
                       b"</stream:stream>")
                conn.wait_for(b"</stream:stream>")
                conn.send(b"<message id='f'/></stream:stream>")
                c.read_until(b"</stream:stream>")
            ev = x.wait_for_log(lambda e: closed.search(e.get("message", "")))
            self.assertIsNotNone(ev, x.dump())
            figures[label] = closed.search(ev["message"]).groups()
        self.assertEqual(figures["with rules"], figures["without rules"], figures)


# =================================================================================================
# 8: xmppscope rules check
# =================================================================================================
class RulesCheck(RulesMixin, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="xmpptest-rules-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def check(self, path):
        r = subprocess.run([xmppscope_binary(), "rules", "check", path], capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=30, env=dict(os.environ, NO_COLOR="1"))
        out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
        self.assertNotRegex(err, SANITIZER_PATTERN)
        return r.returncode, out, err

    def test_check_ok(self):
        path = self.rules_file("""# two rules
namespace x urn:example:x
rule "a"
    direction c2s
    match /message[x:thing]
    then drop
end
rule "b"
    match /iq/version:query
    then bounce
end
""")
        self.assertEqual(self.check(path), (0, "ok: 2 rules\n", ""))
        here = os.path.dirname(os.path.abspath(__file__))
        examples = os.path.join(here, "..", "..", "examples", "rules")
        for name in sorted(os.listdir(examples)):
            if name.endswith(".rules"):
                with self.subTest(name):
                    rc, out, err = self.check(os.path.join(examples, name))
                    self.assertEqual(rc, 0, err)
                    self.assertRegex(out, r"^ok: \d+ rules?\n$")

    def test_check_errors_with_positions(self):
        path = self.rules_file("""# errors of every kind
rule "one"
    match /message/zz:body
    then drop
end
rule "two"
    match /message[[
    then replace-text /message/body "(unclosed" "x"
    then frobnicate
    then insert /message "<a><b></a>"
end
rule "three"
    match /message
    then drop
""")
        rc, out, err = self.check(path)
        self.assertEqual(rc, 2, (out, err))
        self.assertNotIn("ok:", out)
        lines = [ln for ln in (out + err).splitlines() if ln.strip()]
        pos = [tuple(map(int, m.groups())) for m in
               (re.match(re.escape(path) + r":(\d+):(\d+): ", ln) for ln in lines) if m]
        self.assertEqual(len(pos), len(lines), lines)   # every line is FILE:LINE:COL: message
        self.assertEqual([p[0] for p in pos], [3, 7, 8, 9, 10, 12], lines)
        text = "\n".join(lines)
        self.assertIn(f"{path}:3:20: match: unknown namespace prefix 'zz'", text)
        self.assertIn(f"{path}:8:47: replace-text: bad regex", text)
        self.assertIn(f"{path}:9:10: unknown action 'frobnicate'", text)
        self.assertIn(f"{path}:12:1: missing 'end'", text)
        self.assertRegex(text, re.escape(path) + r":10:\d+: insert: bad XML")
        self.assertRegex(text, re.escape(path) + r":7:\d+: match: ")
        # A file that cannot be read: exit 2 too, naming the file.
        rc, out, err = self.check(os.path.join(self.tmp, "missing.rules"))
        self.assertEqual(rc, 2)
        self.assertIn("missing.rules", err)

    def test_proxy_refuses_bad_rules_at_start(self):
        # Exit 2 before listening; every error once, as FILE:LINE:COL: message, and nothing
        # else about the file (load_rules() says "cannot load the rules" only when the
        # compiler reported no error of its own).
        path = self.rules_file("""rule "one"
    match /message/zz:body
    then drop
end
rule "two"
    match /message
    then frobnicate
end
""")
        r = subprocess.run([xmppscope_binary(), "proxy", "--upstream", f"{HOST}:1",
                            "--listen", f"{HOST}:0", "--ca-dir", os.path.join(self.tmp, "ca"),
                            "--format", "none", "--rules", path],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
                           env=dict(os.environ, NO_COLOR="1"))
        err = r.stderr.decode(errors="replace")
        self.assertEqual(r.returncode, 2, err)
        self.assertNotRegex(err, SANITIZER_PATTERN)
        self.assertNotIn("listening on", err)
        about = [ln for ln in err.splitlines() if path in ln]
        self.assertEqual(len(about), 2, err)
        self.assertRegex(about[0], re.escape(path) + r":2:20: match: unknown namespace prefix")
        self.assertRegex(about[1], re.escape(path) + r":7:10: unknown action 'frobnicate'")


if __name__ == "__main__":
    unittest.main()

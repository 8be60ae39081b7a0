"""Real XMPP client sessions with slixmpp (Debian's python3-slixmpp 1.8.3), for tests and the demo.

As a module:
    r = run_session("alice@example.test", "alicepass", "127.0.0.1", port, ca_file=ca)
    r = alice_to_bob("alice@example.test", "alicepass", "bob@example.test", "bobpass",
                     "127.0.0.1", port, ca_file=ca, message="hi bob")
As a CLI (PYTHONPATH=tests/integration, Debian's /usr/bin/python3):
    python3 -m xmpptest.client session --jid J --password P --port N --ca-file CA [...]
    python3 -m xmpptest.client chat --alice J:P --bob J:P --port N --ca-file CA [...]
Each prints a JSON result and exits 0 on success, 1 on failure.

The client connects to exactly host:port (DNS is never asked), sends SNI and checks the
certificate for the JID's domain against ca_file, and can be forced to one SASL mechanism.
"""

import argparse
import asyncio
import json
import logging
import ssl
import sys
import time

# Without this, slixmpp's warnings and errors ("Using slower stringprep", "No appropriate login
# method") reach stderr through logging's last-resort handler; results carry the errors instead.
logging.getLogger("slixmpp").addHandler(logging.NullHandler())

import slixmpp  # noqa: E402
from slixmpp.exceptions import IqError, IqTimeout  # noqa: E402

__all__ = ["run_session", "session", "alice_to_bob", "chat", "main"]

log = logging.getLogger("xmpptest.client")
NS_STREAM = "http://etherx.jabber.org/streams"


class _Client(slixmpp.ClientXMPP):
    """ClientXMPP that connects to a fixed address and records what it sees."""

    def __init__(self, jid, password, result, target, require_tls, **kw):
        super().__init__(jid, password, **kw)
        self._xt_result = result
        self._xt_target = target          # (domain, host, port) returned instead of DNS
        self._xt_require_tls = require_tls
        self._xt_fatal = None             # callback(reason) set by session()

    async def get_dns_records(self, domain, port=None):
        return [self._xt_target]

    async def _handle_stream_features(self, features):
        names = sorted(features["features"].keys()) if features["features"] else []
        # Child element local names, as sent (slixmpp keeps only the ones it knows in 'features').
        children = [c.tag.rpartition("}")[2] for c in features.xml]
        self._xt_result["features"].append(children or names)
        mechs = [m.text for m in features.xml.iter("{urn:ietf:params:xml:ns:xmpp-sasl}mechanism")]
        if mechs:
            self._xt_result["mechanisms_offered"] = mechs
        tls_up = self.transport is not None and self.transport.get_extra_info("ssl_object")
        if tls_up:
            self._xt_result["tls_version"] = tls_up.version()
            self._xt_result["cipher"] = tls_up.cipher()[0]
        if self._xt_require_tls and not tls_up and "starttls" not in children:
            self._xt_fatal("server offered no STARTTLS before TLS (refusing plaintext)")
            return True
        return await super()._handle_stream_features(features)


def _ssl_context(ca_file, verify, tls_max):
    ctx = ssl.create_default_context()
    if verify:
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls_max:
        ctx.maximum_version = {"1.2": ssl.TLSVersion.TLSv1_2,
                               "1.3": ssl.TLSVersion.TLSv1_3}[str(tls_max)]
    return ctx


async def session(jid, password, host="127.0.0.1", port=5222, tls="starttls", ca_file=None,
                  mech=None, peer_jid=None, message=None, expect_from=None, expect_body=None,
                  timeout=20.0, verify=True, tls_max=None, ready=None, domain=None):
    """One client session as a coroutine (see run_session for the arguments and the result).
    `ready`, an asyncio.Event, is set once the session is online (roster fetched, presence
    sent and processed by the server)."""
    t0 = time.monotonic()
    domain = domain or slixmpp.JID(jid).domain
    result = {
        "ok": False, "error": None, "jid": jid, "bound_jid": None, "tls_mode": tls,
        "tls_version": None, "cipher": None, "features": [], "mechanisms_offered": [],
        "mechanism": None, "roster": None, "sent": None, "received": [], "message_errors": [],
        "stream_error": None, "clean_close": False, "elapsed": None,
    }
    if tls not in ("starttls", "direct", "none"):
        raise ValueError("tls must be 'starttls', 'direct' or 'none'")
    kw = {"sasl_mech": mech} if mech else {}
    xmpp = _Client(jid, password, result, (domain, host, int(port)), tls == "starttls", **kw)
    xmpp.ssl_context = _ssl_context(ca_file, verify, tls_max)
    if ca_file and verify:
        xmpp.ca_certs = ca_file
    if tls == "none":
        # No TLS at all (e.g. through a proxy whose client leg is plain): never STARTTLS, and
        # allow PLAIN without TLS (slixmpp refuses it by default).
        xmpp.unregister_feature("starttls", 0)
        xmpp["feature_mechanisms"].config["unencrypted_plain"] = True
    xmpp.register_plugin("xep_0030")
    xmpp.register_plugin("xep_0199", {"keepalive": False})
    xmpp.whitespace_keepalive = False
    xmpp.auto_reconnect = False

    loop = asyncio.get_running_loop()
    finished = loop.create_future()
    got_expected = asyncio.Event()

    def finish(error=None):
        if error and not result["error"]:
            result["error"] = error
        if not finished.done():
            finished.set_result(None)

    xmpp._xt_fatal = lambda reason: (finish(reason), xmpp.abort())

    def want_message(msg):
        if expect_from and msg["from"].bare != slixmpp.JID(expect_from).bare:
            return False
        if expect_body is not None and msg["body"] != expect_body:
            return False
        return True

    def on_message_error(msg):
        result["message_errors"].append({"from": str(msg["from"]),
                                         "condition": msg["error"]["condition"],
                                         "text": msg["error"]["text"]})

    def on_message(msg):
        if msg["type"] in ("chat", "normal") and msg["body"]:
            result["received"].append({"from": str(msg["from"]), "body": msg["body"],
                                       "type": msg["type"]})
            if expect_from and want_message(msg):
                got_expected.set()

    async def ping_server(left):
        # A round trip: the server handles one session's stanzas in order, so after this reply
        # everything sent before (presence, message) has been processed and any bounce is in.
        await xmpp["xep_0199"].send_ping(slixmpp.JID(domain), timeout=max(1.0, left))

    async def on_session_start(_event):
        try:
            result["bound_jid"] = str(xmpp.boundjid)
            mech_obj = getattr(xmpp["feature_mechanisms"], "mech", None)
            result["mechanism"] = getattr(mech_obj, "name", None)
            left = lambda: timeout - (time.monotonic() - t0)
            roster = await xmpp.get_roster(timeout=max(1.0, left()))
            result["roster"] = [str(j) for j in roster["roster"]["items"].keys()]
            xmpp.send_presence()
            await ping_server(left())
            if ready is not None:
                ready.set()
            if peer_jid and message is not None:
                xmpp.send_message(mto=peer_jid, mbody=message, mtype="chat")
                await ping_server(left())
                result["sent"] = {"to": peer_jid, "body": message}
                if result["message_errors"]:
                    finish("message bounced: " + result["message_errors"][0]["condition"])
                    return
            if expect_from:
                try:
                    await asyncio.wait_for(got_expected.wait(), max(0.1, left()))
                except asyncio.TimeoutError:
                    finish(f"no message from {expect_from} within {timeout}s")
                    return
            result["ok"] = True
            finish()
        except IqError as e:
            finish(f"IQ error: {e.iq['error']['condition']} ({e.iq['error']['text']})")
        except IqTimeout:
            finish("IQ timeout")
        except Exception as e:  # report, never hang
            finish(f"{type(e).__name__}: {e}")

    def on_connection_failed(err):
        xmpp.cancel_connection_attempt()
        finish(f"connection failed: {err}")

    def on_failed_auth(stanza):
        mech_obj = getattr(xmpp["feature_mechanisms"], "mech", None)
        result["mechanism"] = getattr(mech_obj, "name", None)
        result.setdefault("auth_failures", []).append(stanza["condition"])

    def on_invalid_chain(err):
        finish(f"TLS handshake failed: {err}")
        xmpp.abort()

    def on_failed_all_auth(_e):
        conds = result.get("auth_failures") or []
        finish("authentication failed" + (f": {', '.join(conds)}" if conds else
                                          " (no usable mechanism)"))

    def on_stream_error(err):
        result["stream_error"] = {"condition": err["condition"], "text": err["text"]}
        finish(f"stream error: {err['condition']}")

    def on_disconnected(reason):
        finish(f"disconnected before the session ended: {reason}")

    xmpp.add_event_handler("session_start", on_session_start)
    xmpp.add_event_handler("message", on_message)
    xmpp.add_event_handler("message_error", on_message_error)
    xmpp.add_event_handler("ssl_invalid_chain", on_invalid_chain)
    xmpp.add_event_handler("connection_failed", on_connection_failed)
    xmpp.add_event_handler("failed_auth", on_failed_auth)
    xmpp.add_event_handler("failed_all_auth", on_failed_all_auth)
    xmpp.add_event_handler("no_auth", on_failed_all_auth)
    xmpp.add_event_handler("stream_error", on_stream_error)
    xmpp.add_event_handler("disconnected", on_disconnected)

    xmpp.connect(address=(host, int(port)), use_ssl=(tls == "direct"),
                 force_starttls=(tls == "starttls"))
    xmpp.default_domain = domain   # SNI and hostname check for the JID's domain, not the IP
    try:
        await asyncio.wait_for(asyncio.shield(finished), timeout)
    except asyncio.TimeoutError:
        finish(f"timeout after {timeout}s")
    finally:
        xmpp.del_event_handler("disconnected", on_disconnected)
        xmpp.cancel_connection_attempt()
        if xmpp.transport is not None:
            try:
                await asyncio.wait_for(xmpp.disconnect(wait=2.0), 3.0)
            except (asyncio.TimeoutError, Exception):
                pass
            if xmpp.transport is not None:
                xmpp.abort()
            else:
                result["clean_close"] = True
        if xmpp._run_out_filters is not None:
            xmpp._run_out_filters.cancel()
        result["elapsed"] = round(time.monotonic() - t0, 3)
    if result["error"]:
        result["ok"] = False
    return result


def run_session(jid, password, host="127.0.0.1", port=5222, tls="starttls", ca_file=None,
                mech=None, peer_jid=None, message=None, expect_from=None, timeout=20.0,
                **kw):
    """Run one client session to completion and return a result dict.

    Logs in to exactly host:port (tls "starttls", "direct" = XEP-0368, or "none": no TLS
    at all, STARTTLS ignored and PLAIN allowed in the clear), with SNI and a
    certificate check for the JID's domain against ca_file (verify=False skips the check;
    tls_max="1.2" caps the TLS version), forcing SASL `mech` ("PLAIN", "SCRAM-SHA-1",
    "SCRAM-SHA-1-PLUS"; None lets slixmpp pick), fetches the roster, sends presence, optionally
    sends `message` to `peer_jid`, optionally waits for a message from `expect_from` (and with
    expect_body=..., that exact body), then closes the stream.

    Result keys: ok, error, jid, bound_jid, tls_mode, tls_version, cipher, features (one list
    of child names per <stream:features>), mechanisms_offered, mechanism, roster, sent,
    received ([{from, body, type}]), message_errors, stream_error, clean_close, elapsed, and
    auth_failures (SASL failure conditions) after a failed login; mechanism is then the one
    tried last.
    Never raises for network or XMPP failures; never runs past `timeout` (+ ~3 s to close).
    Must not be called from a running event loop (use `session` there)."""
    return asyncio.run(session(jid, password, host, port, tls, ca_file, mech, peer_jid,
                               message, expect_from, timeout=timeout, **kw))


async def chat(alice_jid, alice_password, bob_jid, bob_password, host="127.0.0.1", port=5222,
               tls="starttls", ca_file=None, mech=None, message=None, timeout=20.0,
               bob_overrides=None, **kw):
    """Coroutine of alice_to_bob."""
    message = message if message is not None else f"hello bob {time.time_ns()}"
    ready = asyncio.Event()
    bob_kw = dict(kw, host=host, port=port, tls=tls, ca_file=ca_file, mech=mech,
                  expect_from=alice_jid, expect_body=message, timeout=timeout, ready=ready)
    bob_kw.update(bob_overrides or {})
    bob_task = asyncio.ensure_future(session(bob_jid, bob_password, **bob_kw))
    ready_task = asyncio.ensure_future(ready.wait())
    await asyncio.wait({bob_task, ready_task}, return_when=asyncio.FIRST_COMPLETED)
    ready_task.cancel()
    if ready.is_set():
        alice = await session(alice_jid, alice_password, host, port, tls, ca_file, mech,
                              peer_jid=bob_jid, message=message, timeout=timeout, **kw)
    else:
        alice = {"ok": False, "error": "not started: bob did not come online"}
    bob = await bob_task
    delivered = any(r["body"] == message for r in bob.get("received", []))
    ok = bool(alice["ok"] and bob["ok"] and delivered)
    error = None
    if not ok:
        error = (f"bob: {bob['error']}" if bob.get("error") else
                 f"alice: {alice['error']}" if alice.get("error") else "message not delivered")
    return {"ok": ok, "error": error, "message": message, "delivered": delivered,
            "alice": alice, "bob": bob}


def alice_to_bob(alice_jid, alice_password, bob_jid, bob_password, host="127.0.0.1", port=5222,
                 tls="starttls", ca_file=None, mech=None, message=None, timeout=20.0,
                 bob_overrides=None, **kw):
    """Bob logs in and waits; once he is online Alice logs in and sends him `message` (default:
    a unique text).  Both use the same host/port/tls/ca_file/mech/kw unless bob_overrides (a
    dict of run_session arguments) says otherwise for Bob.  Returns {ok, error, message,
    delivered, alice: result, bob: result}."""
    return asyncio.run(chat(alice_jid, alice_password, bob_jid, bob_password, host, port, tls,
                            ca_file, mech, message, timeout, bob_overrides, **kw))


def _split_cred(s):
    jid, sep, pw = s.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError("expected JID:PASSWORD")
    return jid, pw


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m xmpptest.client",
                                 description="slixmpp test sessions; prints JSON")
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p):
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--tls", choices=("starttls", "direct", "none"), default="starttls")
        p.add_argument("--ca-file")
        p.add_argument("--no-verify", action="store_true", help="skip certificate checks")
        p.add_argument("--tls-max", choices=("1.2", "1.3"))
        p.add_argument("--mech", help="force a SASL mechanism (PLAIN, SCRAM-SHA-1, ...)")
        p.add_argument("--timeout", type=float, default=20.0)
        p.add_argument("--debug", action="store_true", help="slixmpp debug log on stderr")

    s = sub.add_parser("session", help="one session")
    s.add_argument("--jid", required=True)
    s.add_argument("--password", required=True)
    s.add_argument("--peer-jid")
    s.add_argument("--message")
    s.add_argument("--expect-from")
    s.add_argument("--expect-body")
    common(s)
    c = sub.add_parser("chat", help="bob waits, alice sends him a message")
    c.add_argument("--alice", type=_split_cred, required=True, metavar="JID:PASSWORD")
    c.add_argument("--bob", type=_split_cred, required=True, metavar="JID:PASSWORD")
    c.add_argument("--message")
    common(c)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.debug else logging.CRITICAL,
                        stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    kw = dict(host=a.host, port=a.port, tls=a.tls, ca_file=a.ca_file, mech=a.mech,
              timeout=a.timeout, verify=not a.no_verify, tls_max=a.tls_max)
    if a.cmd == "session":
        r = run_session(a.jid, a.password, peer_jid=a.peer_jid, message=a.message,
                        expect_from=a.expect_from, expect_body=a.expect_body, **kw)
    else:
        r = alice_to_bob(a.alice[0], a.alice[1], a.bob[0], a.bob[1], message=a.message, **kw)
    json.dump(r, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

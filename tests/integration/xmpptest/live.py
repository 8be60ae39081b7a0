"""Logged-in slixmpp clients that a test drives step by step (send this, wait for that).

Use inside a running asyncio loop (e.g. a coroutine given to asyncio.run):

    async with LiveClient("alice@example.test", "alicepass", port, ca_file=ca) as alice:
        mid, t_sent = alice.send_message("bob@example.test", "hi")
        msg = await bob.wait_message(lambda m: m["body"] == "hi", timeout=5)
        reply = await alice.iq_get("example.test", "jabber:iq:version", iq_id="v1")
        # reply: the answer's ElementTree element (result or error), None on timeout

Like xmpptest.client, the client connects to exactly host:port (DNS is never asked), sends SNI
and checks the certificate for the JID's domain against ca_file.  Messages are recorded with
the time.monotonic() at which they arrived, so tests can measure delays.
"""

import asyncio
import time

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout

from .client import _Client, _ssl_context

__all__ = ["LiveClient", "LiveError", "NS_STANZAS", "stanza_error"]

HOST = "127.0.0.1"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


class LiveError(RuntimeError):
    """The client could not log in, or a step failed."""


def stanza_error(el):
    """(type, condition) of the <error/> child of a stanza element, or (None, None)."""
    if el is None:
        return None, None
    for err in el:
        if err.tag.rpartition("}")[2] != "error":
            continue
        for c in err:
            ns, _, name = c.tag[1:].partition("}") if c.tag.startswith("{") else ("", "", c.tag)
            if ns == NS_STANZAS and name != "text":
                return err.get("type"), name
        return err.get("type"), None
    return None, None


class LiveClient:
    """One slixmpp session, online after `await start()` (roster fetched, presence sent and
    processed: a ping round trip to the server).

    Attributes after start: bound_jid, features (one list of child names per
    <stream:features>), messages ([{from, to, id, type, body, t}] in arrival order), iq_gets
    (IQ gets addressed to this client that it saw, as ElementTree elements).
    """

    def __init__(self, jid, password, port, host=HOST, tls="starttls", ca_file=None, mech="PLAIN",
                 timeout=10.0, verify=True):
        self.jid, self.password = jid, password
        self.host, self.port, self.tls = host, int(port), tls
        self.timeout = timeout
        self.domain = slixmpp.JID(jid).domain
        self.result = {"features": [], "mechanisms_offered": [], "tls_version": None,
                       "cipher": None, "error": None}
        self.messages = []
        self.message_errors = []
        self.bound_jid = None
        self._arrived = asyncio.Event()
        kw = {"sasl_mech": mech} if mech else {}
        x = _Client(jid, password, self.result, (self.domain, host, self.port),
                    tls == "starttls", **kw)
        x.ssl_context = _ssl_context(ca_file, verify, None)
        if ca_file and verify:
            x.ca_certs = ca_file
        if tls == "none":
            x.unregister_feature("starttls", 0)
            x["feature_mechanisms"].config["unencrypted_plain"] = True
        x.register_plugin("xep_0030")
        x.register_plugin("xep_0199", {"keepalive": False})
        x.whitespace_keepalive = False
        x.auto_reconnect = False
        self.xmpp = x

    @property
    def features(self):
        return self.result["features"]

    # -- life cycle ---------------------------------------------------------------------------
    async def start(self):
        x = self.xmpp
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def finish(err=None):
            if not done.done():
                done.set_result(err)

        x._xt_fatal = lambda reason: (finish(reason), x.abort())
        handlers = {
            "session_start": lambda _e: finish(None),
            "failed_all_auth": lambda _e: finish("authentication failed"),
            "no_auth": lambda _e: finish("no usable SASL mechanism"),
            "stream_error": lambda e: finish(f"stream error: {e['condition']}"),
            "connection_failed": lambda e: finish(f"connection failed: {e}"),
            "disconnected": lambda e: finish(f"disconnected: {e}"),
            "ssl_invalid_chain": lambda e: finish(f"TLS: {e}"),
        }
        for name, fn in handlers.items():
            x.add_event_handler(name, fn)
        x.add_event_handler("message", self._on_message)
        x.add_event_handler("message_error", self._on_message_error)
        x.connect(address=(self.host, self.port), use_ssl=(self.tls == "direct"),
                  force_starttls=(self.tls == "starttls"))
        x.default_domain = self.domain
        try:
            err = await asyncio.wait_for(asyncio.shield(done), self.timeout)
        except asyncio.TimeoutError:
            err = f"no session within {self.timeout}s"
        finally:
            for name, fn in handlers.items():
                x.del_event_handler(name, fn)
        if err:
            self.result["error"] = err
            await self.close()
            raise LiveError(f"{self.jid}: {err} (features seen: {self.features})")
        self.bound_jid = str(x.boundjid)
        await x.get_roster(timeout=self.timeout)
        x.send_presence()
        await self.sync()
        return self

    async def close(self):
        x = self.xmpp
        x.cancel_connection_attempt()
        if x.transport is not None:
            try:
                await asyncio.wait_for(x.disconnect(wait=2.0), 3.0)
            except (asyncio.TimeoutError, Exception):
                pass
            if x.transport is not None:
                x.abort()
        if x._run_out_filters is not None:
            x._run_out_filters.cancel()

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc):
        await self.close()
        return False

    # -- messages -----------------------------------------------------------------------------
    def _on_message(self, msg):
        if msg["type"] in ("chat", "normal") and msg["body"]:
            self.messages.append({"from": str(msg["from"]), "to": str(msg["to"]),
                                  "id": msg["id"], "type": msg["type"], "body": msg["body"],
                                  "t": time.monotonic()})
            self._arrived.set()

    def _on_message_error(self, msg):
        self.message_errors.append({"from": str(msg["from"]), "id": msg["id"],
                                    "condition": msg["error"]["condition"]})

    def send_message(self, to, body, msg_id=None, mtype="chat"):
        """Send a message; returns (its id, time.monotonic() just before sending)."""
        m = self.xmpp.make_message(mto=to, mbody=body, mtype=mtype)
        if msg_id:
            m["id"] = msg_id
        t = time.monotonic()
        m.send()
        return m["id"], t

    async def wait_message(self, pred, timeout=5.0):
        """The first recorded message satisfying pred (waits for it); None on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            for m in self.messages:
                if pred(m):
                    return m
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), min(left, 0.2))
            except asyncio.TimeoutError:
                pass

    # -- IQs ----------------------------------------------------------------------------------
    async def iq_get(self, to, ns, iq_id=None, timeout=5.0):
        """Send <iq type='get' to=to id=iq_id><query xmlns=ns/></iq> and return the answer as
        an ElementTree element (a result or an error), or None when none came in time."""
        iq = self.xmpp.make_iq_get(queryxmlns=ns, ito=to)
        if iq_id:
            iq["id"] = iq_id
        try:
            reply = await iq.send(timeout=timeout)
        except IqError as e:
            reply = e.iq
        except IqTimeout:
            return None
        return reply.xml

    async def sync(self, timeout=None):
        """A ping round trip to the server: everything sent before it has been handled."""
        await self.xmpp["xep_0199"].send_ping(slixmpp.JID(self.domain),
                                              timeout=timeout or self.timeout)

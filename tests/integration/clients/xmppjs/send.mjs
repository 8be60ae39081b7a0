// One xmpp.js (@xmpp/client) session for the interoperability matrix: log in, send one chat
// message, make sure the server handled it (a ping round trip), close the stream.
//
//   XS_XMPPJS_DIR=DIR NODE_EXTRA_CA_CERTS=CA \
//       node send.mjs SERVICE DOMAIN USER PASSWORD TO BODY [RESOURCE]
//
// SERVICE is xmpp://127.0.0.1:PORT (STARTTLS) or xmpps://127.0.0.1:PORT (direct TLS). DIR is the
// folder where install.sh beside this file put node_modules. Prints one JSON line
// {ok, error, jid} and exits 0 on success, 1 on failure.
import { pathToFileURL } from "node:url";
import path from "node:path";

const [service, domain, username, password, to, body, resource] = process.argv.slice(2);
const dir = process.env.XS_XMPPJS_DIR;
const result = { ok: false, error: null, jid: null, warning: null };

function finish(code) {
  process.stdout.write(JSON.stringify(result) + "\n");
  process.exit(code);
}

if (!dir || !body) {
  result.error = "usage: XS_XMPPJS_DIR=DIR node send.mjs SERVICE DOMAIN USER PASSWORD TO BODY";
  finish(2);
}

const entry = path.join(dir, "node_modules", "@xmpp", "client", "index.js");
const { client, xml } = await import(pathToFileURL(entry).href);
const xmpp = client({
  service,
  domain,
  username,
  password,
  resource: resource || "xmppjs",
  timeout: 10000,
});
const timer = setTimeout(() => {
  result.error = "timed out after 20 s";
  finish(1);
}, 20000);

// xmpp.js 0.14 answers a server's XEP-0198 <r/> with an <a/> from an event handler whose promise
// nobody awaits: when the <r/> comes while the client closes (its socket already gone), that
// write rejects ("Cannot read properties of null (reading 'write')", or "Connection is closing")
// and node ends the process. Seen with ejabberd, whose <r/> can cross the client's
// </stream:stream>. Once the message was delivered and the ping answered, the session's work is
// done: such a failure while closing is reported, not fatal. Before that, it fails the run.
let closing = false;
function clientBug(err) {
  const text = String(err && (err.message || err));
  if (closing) {
    result.warning = `xmpp.js failed while closing (ignored): ${text}`;
    return;
  }
  result.error = `xmpp.js failed: ${text}`;
  finish(1);
}
process.on("unhandledRejection", clientBug);
process.on("uncaughtException", clientBug);

xmpp.on("error", (err) => {
  result.error = result.error || String(err && (err.condition || err.message || err));
});
xmpp.on("online", async (address) => {
  try {
    result.jid = address.toString();
    await xmpp.send(xml("presence"));
    await xmpp.send(xml("message", { type: "chat", to }, xml("body", {}, body)));
    await xmpp.iqCaller.request(
      xml("iq", { type: "get", to: domain }, xml("ping", { xmlns: "urn:xmpp:ping" })),
    );
    closing = true;
    await xmpp.stop();
    clearTimeout(timer);
    result.ok = true;
    result.error = null;
    finish(0);
  } catch (err) {
    result.error = String(err && (err.condition || err.message || err));
    finish(1);
  }
});

try {
  await xmpp.start();
} catch (err) {
  result.error = String(err && (err.condition || err.message || err));
  finish(1);
}

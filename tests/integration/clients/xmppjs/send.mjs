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
const result = { ok: false, error: null, jid: null };

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

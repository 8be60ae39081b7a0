// xmppscope's web inspector: one WebSocket to the proxy, events as the JSON printer writes them
// (the "e" of each record), filters evaluated by the proxy ("f" of each record). No framework.
'use strict';

const ROW_H = 22;
// The page keeps at most MAX_EVENTS events (the proxy's history is bounded in bytes too): past
// it, the oldest are forgotten down to KEEP_EVENTS, and the page says so.
const MAX_EVENTS = 300000;
const KEEP_EVENTS = 200000;
const $ = (id) => document.getElementById(id);

const state = {
  ws: null,
  live: false,
  events: [],            // every record received, in order
  sessions: new Map(),   // id -> session summary
  selected: null,        // session id
  selRow: -1,            // index into the session's rows
  filter: '',
  lost: 0,
  histDropped: 0,
  held: [],
  dirty: false,
  forgotten: 0,
  lastSlow: -1000,
};

function session(id) {
  let s = state.sessions.get(id);
  if (!s) {
    s = { id, client: '', jid: '', tls: ['', ''], state: 'open', counts: [0, 0], warnings: 0,
          rows: [], byKey: new Map(), answerOf: new Map() };
    state.sessions.set(id, s);
  }
  return s;
}

function keyOf(dir, stream, offset) { return dir + ':' + stream + ':' + offset; }

// ---- events ---------------------------------------------------------------------------------

function take(rec) {
  const e = rec.e || {};
  const idx = state.events.length;
  state.events.push(rec);
  const sid = e.session;
  if (sid === undefined || sid === null) return;
  const s = session(String(sid));
  if (rec.a) s.jid = rec.a;
  if (rec.k === 'note' && typeof e.message === 'string') {
    const m = /^client (\S+) connected/.exec(e.message);
    if (m) s.client = m[1];
  }
  if (rec.k === 'tls') s.tls[rec.side] = 'TLS';
  if (rec.k === 'closed') s.state = 'closed';
  if (e.checks) s.warnings += e.checks.length;
  if (e.event === 'stanza') {
    s.counts[e.dir === 's2c' ? 1 : 0]++;
    s.byKey.set(keyOf(e.dir, e.stream, e.offset), idx);
    if (e.pair) s.answerOf.set(keyOf(e.pair.dir, e.pair.stream, e.pair.offset), idx);
  }
  const shown = e.event === 'stanza' || e.event === 'error' || e.event === 'check' ||
                (e.event === 'note' && /injected|intercept/.test(e.message || ''));
  if (shown && (state.filter === '' || rec.f === 1)) s.rows.push(idx);
}

function onMessage(msg) {
  if (Array.isArray(msg)) { msg.forEach(onMessage); return; }
  switch (msg.t) {
  case 'hello':
    state.live = msg.live;
    $('title').textContent = msg.title;
    $('status').textContent = msg.live ? 'live' : 'saved log';
    break;
  case 'evs':
    if (msg.lost) state.lost += msg.lost;
    state.histDropped = msg.hist_dropped || 0;
    msg.list.forEach(take);
    if (state.events.length > MAX_EVENTS) forget(state.events.length - KEEP_EVENTS);
    state.dirty = true; schedule();
    break;
  case 'filter':
    if (msg.ok) {
      $('filter-error').textContent = '';
      state.filter = msg.expr;
      resetEvents();
    } else {
      const col = msg.column || 1;
      $('filter-error').textContent = $('filter').value + '\n' + ' '.repeat(col - 1) + '^ ' +
        'column ' + col + ': ' + msg.message;
    }
    break;
  case 'sent':
    $('send-result').textContent = msg.ok ? 'sent' : 'refused: ' + msg.message;
    $('send-result').className = msg.ok ? '' : 'error';
    break;
  case 'intercept':
    $('bp-result').textContent = msg.ok ? (msg.expr ? 'breakpoint: ' + msg.expr + ' (' + msg.timeout + ' s)' : 'no breakpoint')
                                        : 'column ' + msg.column + ': ' + msg.message;
    $('bp-result').className = msg.ok ? 'muted' : 'error';
    break;
  case 'rec': {
    // The whole record (with its bytes) for the detail pane.
    const s = cur();
    if (msg.r && s && state.selRow >= 0) {
      const rec = state.events[s.rows[state.selRow]];
      if (rec && rec.n === msg.n) { rec.e = msg.r.e; delete rec.lite; renderDetail(); }
    } else if (msg.gone) {
      const raw = document.getElementById('raw');
      if (raw) raw.textContent = '(no longer in the history: see the --write log)';
    }
    break;
  }
  case 'released':
    if (!msg.ok) $('bp-result').textContent = 'refused: ' + msg.message;
    break;
  case 'held': {
    // Re-drawn only when the set changes, so that an edit in progress stays; else the countdowns.
    const keys = (l) => l.map((h) => h.session + '/' + h.dir + '/' + h.id).join(',');
    const same = keys(msg.list) === keys(state.held);
    state.held = msg.list;
    if (!same) renderHeld();
    else document.querySelectorAll('#held .held-item .muted').forEach((el, i) => { el.textContent = 'goes on in ' + msg.list[i].left_s + ' s'; });
    break;
  }
  }
}

// Forgets the `n` oldest events: indices shift down by n in every session's rows and maps.
function forget(n) {
  state.events = state.events.slice(n);
  state.forgotten += n;
  for (const s of state.sessions.values()) {
    const rows = [];
    for (const i of s.rows) if (i >= n) rows.push(i - n);
    const sel = state.selected === s.id && state.selRow >= 0 ? s.rows[state.selRow] - n : -1;
    s.rows = rows;
    if (state.selected === s.id) state.selRow = sel >= 0 ? rows.indexOf(sel) : -1;
    for (const m of [s.byKey, s.answerOf]) for (const [k, v] of m) { if (v < n) m.delete(k); else m.set(k, v - n); }
  }
}

function resetEvents() {
  state.events = [];
  state.sessions = new Map();
  state.selRow = -1;
  state.dirty = true; schedule();
}

function connect() {
  const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws', 'xmppscope');
  state.ws = ws;
  ws.onopen = () => { ws.send(JSON.stringify({ t: 'hello' })); $('status').textContent = 'connected'; };
  ws.onmessage = (ev) => { try { onMessage(JSON.parse(ev.data)); } catch (err) { console.error(err); } };
  ws.onclose = () => { $('status').textContent = 'disconnected'; };
}

function send(obj) { if (state.ws && state.ws.readyState === 1) state.ws.send(JSON.stringify(obj)); }

// ---- rendering ------------------------------------------------------------------------------

function esc(s) {
  return String(s === undefined || s === null ? '' : s).replace(/[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}

function renderSessions() {
  const tb = $('sessions').tBodies[0];
  const rows = [];
  for (const s of state.sessions.values()) {
    rows.push('<tr data-id="' + esc(s.id) + '"' + (s.id === state.selected ? ' class="selected"' : '') + '><td>' +
      esc(s.id) + '</td><td title="' + esc(s.client) + '">' + esc(s.client) + '</td><td title="' + esc(s.jid) + '">' +
      esc(s.jid) + '</td><td>' + esc((s.tls[0] ? 'c' : '-') + '/' + (s.tls[1] ? 's' : '-')) + '</td><td>' +
      esc(s.state) + '</td><td>' + s.counts[0] + '/' + s.counts[1] + '</td><td class="warn">' +
      (s.warnings || '') + '</td></tr>');
  }
  tb.innerHTML = rows.join('');
  if (state.selected === null && state.sessions.size > 0) select(state.sessions.keys().next().value);
}

function cur() { return state.selected !== null ? state.sessions.get(state.selected) : null; }

function timeOf(e) { return e.time ? e.time.substring(11, 23) : ''; }

function rowHtml(i, idx) {
  const rec = state.events[idx];
  const e = rec.e;
  let kind = e.event === 'stanza' ? e.name + (e.type ? ':' + e.type : '') : e.event;
  if (e.event === 'note') kind = 'note';
  const fromTo = e.event === 'stanza' ? (e.from || '') + ' → ' + (e.to || '') : (e.message || '');
  let badges = '';
  (e.checks || []).forEach((c) => { badges += '<span class="badge check" title="' + esc(c.message) + '">' + esc(c.check) + '</span>'; });
  (e.rules || []).forEach((r) => { badges += '<span class="badge rule">' + esc(r.action === 'tag' ? r.detail : r.rule) + '</span>'; });
  if (e.event === 'note' && /injected/.test(e.message)) badges += '<span class="badge note">injected</span>';
  if (e.event === 'note' && /intercept/.test(e.message)) badges += '<span class="badge note">intercept</span>';
  const cls = 'row' + (i === state.selRow ? ' selected' : '') + (e.event === 'note' ? ' injected' : '');
  return '<div class="' + cls + '" data-i="' + i + '" style="top:' + (i * ROW_H) + 'px;position:absolute;left:0;right:0">' +
    '<span>' + esc(timeOf(e)) + '</span><span class="dir-' + esc(e.dir) + '">' + esc(e.dir || '') + '</span><span>' +
    esc(kind) + '</span><span title="' + esc(fromTo) + '">' + esc(fromTo) + '</span><span title="' + esc(e.id) + '">' +
    esc(e.id || '') + '</span><span>' + (e.size || '') + '</span><span>' + (e.rtt_ms !== undefined ? esc(e.rtt_ms.toFixed(1)) + ' ms' : '') +
    '</span><span>' + badges + '</span></div>';
}

function renderList() {
  const s = cur();
  const list = $('list');
  const n = s ? s.rows.length : 0;
  $('list-spacer').style.height = (n * ROW_H) + 'px';
  $('count').textContent = n + (state.filter ? ' matching' : '') + ' rows';
  if ($('follow').checked && n > 0) list.scrollTop = n * ROW_H;
  const first = Math.max(0, Math.floor(list.scrollTop / ROW_H) - 5);
  const last = Math.min(n, first + Math.ceil(list.clientHeight / ROW_H) + 10);
  const html = [];
  for (let i = first; i < last; i++) html.push(rowHtml(i, s.rows[i]));
  $('list-rows').innerHTML = html.join('');
}

function renderLost() {
  let t = '';
  if (state.lost) t += 'this page lost ' + state.lost + ' events (it read too slowly) ';
  if (state.histDropped) t += '· the history dropped its ' + state.histDropped + ' oldest events (--web-history) ';
  if (state.forgotten) t += '· this page forgot its ' + state.forgotten + ' oldest events';
  $('lost').textContent = t;
}

// Pretty XML with folding: parsed by the browser's XML parser, shown as nested <details>.
function xmlNode(n) {
  if (n.nodeType === 3) {
    const t = n.nodeValue;
    return t.trim() === '' ? '' : '<div class="leaf t-text">' + esc(t) + '</div>';
  }
  if (n.nodeType !== 1) return '';
  let open = '<span class="t-punct">&lt;</span><span class="t-name">' + esc(n.nodeName) + '</span>';
  for (const a of n.attributes) open += ' <span class="t-attr">' + esc(a.name) + '</span>=<span class="t-val">"' + esc(a.value) + '"</span>';
  const kids = Array.from(n.childNodes).map(xmlNode).join('');
  if (!kids) return '<div class="leaf">' + open + '<span class="t-punct">/&gt;</span></div>';
  return '<details open><summary>' + open + '<span class="t-punct">&gt;</span></summary>' + kids +
    '<div class="leaf"><span class="t-punct">&lt;/</span><span class="t-name">' + esc(n.nodeName) + '</span><span class="t-punct">&gt;</span></div></details>';
}

function prettyXml(raw) {
  const decl = ' xmlns:stream="http://etherx.jabber.org/streams"';
  const doc = new DOMParser().parseFromString('<w' + decl + '>' + raw + '</w>', 'application/xml');
  if (doc.getElementsByTagName('parsererror').length > 0) return '<pre>' + esc(raw) + '</pre>';
  return '<div class="xml">' + Array.from(doc.documentElement.childNodes).map(xmlNode).join('') + '</div>';
}

function renderDetail() {
  const s = cur();
  const d = $('detail');
  if (!s || state.selRow < 0 || state.selRow >= s.rows.length) { d.innerHTML = '<p class="muted">Select a stanza.</p>'; return; }
  const rec = state.events[s.rows[state.selRow]];
  const e = rec.e;
  let h = '<div class="kv"><b>event</b><span>' + esc(e.event) + ' #' + rec.n + '</span>' +
    '<b>time</b><span>' + esc(e.time) + '</span><b>direction</b><span class="dir-' + esc(e.dir) + '">' + esc(e.dir) + '</span>';
  if (e.event === 'stanza') {
    h += '<b>from</b><span>' + esc(e.from) + '</span><b>to</b><span>' + esc(e.to) + '</span><b>id</b><span>' + esc(e.id) +
      '</span><b>size</b><span>' + e.size + ' bytes, offset ' + e.offset + ' of stream ' + e.stream + '</span>';
  }
  if (e.verdict) h += '<b>verdict</b><span>' + esc(e.verdict) + '</span>';
  if (e.sasl) h += '<b>SASL</b><span>' + esc(e.sasl) + '</span>';
  h += '</div>';
  if (e.pair) {
    const req = s.byKey.get(keyOf(e.pair.dir, e.pair.stream, e.pair.offset));
    h += '<p id="pair">answer to <a data-ev="' + req + '">the request (' + esc(e.pair.dir) + ' offset ' + e.pair.offset + ')</a>' +
      (e.rtt_ms !== undefined ? ', round trip <b id="rtt">' + e.rtt_ms.toFixed(3) + ' ms</b>' : '') + '</p>';
  } else if (e.event === 'stanza') {
    const ans = s.answerOf.get(keyOf(e.dir, e.stream, e.offset));
    if (ans !== undefined) {
      const a = state.events[ans].e;
      h += '<p id="pair">answered by <a data-ev="' + ans + '">the ' + esc(a.type) + ' (' + esc(a.dir) + ')</a>' +
        (a.rtt_ms !== undefined ? ', round trip <b id="rtt">' + a.rtt_ms.toFixed(3) + ' ms</b>' : '') + '</p>';
    }
  }
  if (e.checks && e.checks.length) h += '<h2>Checks</h2><ul class="checks">' + e.checks.map((c) => '<li><b>' + esc(c.check) + '</b>: ' + esc(c.message) + ' (' + esc(c.ref) + ')</li>').join('') + '</ul>';
  if (e.explain) h += '<h2>Explanation</h2><pre>' + esc(e.explain) + '</pre>';
  if (e.rules && e.rules.length) h += '<h2>Rules</h2><ul>' + e.rules.map((r) => '<li>' + esc(r.rule) + ': ' + esc(r.action) + (r.detail ? ' ' + esc(r.detail) : '') + '</li>').join('') + '</ul>';
  if (e.message && e.event !== 'stanza') h += '<pre>' + esc(e.message) + '</pre>';
  if (rec.lite) {
    h += '<h2>Stanza</h2><pre id="raw" class="muted">loading…</pre>';
    send({ t: 'get', n: rec.n });
  }
  if (e.raw !== undefined) {
    h += '<h2>Stanza' + (e.redacted ? ' (secrets masked)' : '') + '</h2>' + prettyXml(e.raw);
    h += '<h2>Exact bytes</h2><pre id="raw">' + esc(e.raw) + '</pre>';
  }
  if (e.rewritten) h += '<h2>Forwarded instead (rewritten)</h2>' + prettyXml(e.rewritten);
  d.innerHTML = h;
}

function drawTimeline() {
  const c = $('timeline');
  const g = c.getContext('2d');
  g.clearRect(0, 0, c.width, c.height);
  const s = cur();
  if (!s) return;
  const bins = new Map();
  const rtts = [];
  let t0 = Infinity, t1 = -Infinity;
  for (const idx of s.rows) {
    const e = state.events[idx].e;
    if (e.event !== 'stanza' || !e.time) continue;
    const t = Math.floor(Date.parse(e.time) / 1000);
    t0 = Math.min(t0, t); t1 = Math.max(t1, t);
    const b = bins.get(t) || [0, 0];
    b[e.dir === 's2c' ? 1 : 0]++;
    bins.set(t, b);
    if (e.rtt_ms !== undefined) rtts.push([t, e.rtt_ms]);
  }
  if (t0 === Infinity) return;
  const span = Math.max(1, t1 - t0 + 1);
  let max = 1; for (const b of bins.values()) max = Math.max(max, b[0], b[1]);
  let maxR = 1; for (const r of rtts) maxR = Math.max(maxR, r[1]);
  const w = (c.width - 40) / span, H = c.height - 16;
  g.font = '10px sans-serif'; g.fillStyle = '#777';
  g.fillText(max + '/s', 0, 10); g.fillText(maxR.toFixed(0) + ' ms', c.width - 38, 10);
  for (const [t, b] of bins) {
    const x = 30 + (t - t0) * w;
    g.fillStyle = '#1f6fd1'; g.fillRect(x, H - H * b[0] / max, Math.max(1, w / 2 - 1), H * b[0] / max);
    g.fillStyle = '#1b8a4c'; g.fillRect(x + w / 2, H - H * b[1] / max, Math.max(1, w / 2 - 1), H * b[1] / max);
  }
  g.fillStyle = '#b25b00';
  for (const [t, r] of rtts) { g.beginPath(); g.arc(30 + (t - t0 + 0.5) * w, H - H * r / maxR, 2.5, 0, 7); g.fill(); }
  g.fillStyle = '#777'; g.fillText(span + ' s', 30, c.height - 2);
}

function renderHeld() {
  const box = $('held');
  if (!state.held.length) { box.innerHTML = '<p class="muted">Nothing held.</p>'; return; }
  box.innerHTML = state.held.map((h, i) => '<div class="held-item" data-i="' + i + '"><b>session ' + esc(h.session) + ' ' + esc(h.dir) +
    ' hold ' + h.id + '</b> <span class="muted">goes on in ' + h.left_s + ' s</span><textarea rows="3" spellcheck="false">' + esc(h.xml) +
    '</textarea><button data-act="forward">Forward</button> <button data-act="edit">Forward edited</button> <button data-act="drop">Drop</button></div>').join('');
}

// Drawing is scheduled only when something changed (no animation loop: an idle page costs no
// CPU): the list at most five times a second while events stream in, the sessions and the
// timeline, which walk more, once a second.
let scheduled = false;
function schedule() {
  if (scheduled) return;
  scheduled = true;
  setTimeout(() => requestAnimationFrame(draw), 200);
}
function draw(now) {
  scheduled = false;
  if (!state.dirty) return;
  state.dirty = false;
  renderList();
  renderLost();
  // A session that appeared or went is drawn at once.
  if (now - state.lastSlow > 1000 || $('sessions').tBodies[0].rows.length !== state.sessions.size) {
    state.lastSlow = now;
    renderSessions();
    drawTimeline();
  } else {
    state.dirty = true;
    schedule();
  }
}

function select(id) {
  state.selected = id;
  state.selRow = -1;
  state.dirty = true; schedule();
  renderDetail();
}

// ---- interaction ----------------------------------------------------------------------------

$('sessions').addEventListener('click', (ev) => { const tr = ev.target.closest('tr[data-id]'); if (tr) select(tr.dataset.id); });
$('list').addEventListener('scroll', () => { const s = cur(); if (s) { const l = $('list'); if (l.scrollTop + l.clientHeight < s.rows.length * ROW_H - ROW_H) $('follow').checked = false; } renderListOnly(); });
function renderListOnly() { const f = $('follow').checked; $('follow').checked = false; renderList(); $('follow').checked = f; }
$('list-rows').addEventListener('click', (ev) => { const r = ev.target.closest('.row'); if (!r) return; state.selRow = +r.dataset.i; $('follow').checked = false; renderListOnly(); renderDetail(); });
$('detail').addEventListener('click', (ev) => {
  const a = ev.target.closest('a[data-ev]'); if (!a) return;
  const s = cur(); const i = s.rows.indexOf(+a.dataset.ev);
  if (i >= 0) { state.selRow = i; $('list').scrollTop = i * ROW_H - 100; renderListOnly(); renderDetail(); }
});
$('filter-form').addEventListener('submit', (ev) => { ev.preventDefault(); send({ t: 'filter', expr: $('filter').value.trim() }); });
$('search-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const s = cur(); const q = $('search').value.toLowerCase(); if (!s || !q) return;
  for (let k = 1; k <= s.rows.length; k++) {
    const i = (state.selRow + k) % s.rows.length;
    if (JSON.stringify(state.events[s.rows[i]].e).toLowerCase().includes(q)) {
      state.selRow = i; $('follow').checked = false; $('list').scrollTop = i * ROW_H - 100; renderListOnly(); renderDetail(); return;
    }
  }
});

function templates(name) {
  const s = cur(); const jid = s && s.jid ? s.jid : 'user@example.test/res';
  const domain = jid.replace(/^[^@]*@/, '').replace(/\/.*$/, '');
  const id = 'xs' + Math.random().toString(36).slice(2, 8);
  switch (name) {
  case 'message': return "<message to='bob@" + domain + "' type='chat' id='" + id + "'><body>hello from xmppscope</body></message>";
  case 'presence': return '<presence/>';
  case 'disco': return "<iq type='get' to='" + domain + "' id='" + id + "'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>";
  case 'ping': return "<iq type='get' to='" + domain + "' id='" + id + "'><ping xmlns='urn:xmpp:ping'/></iq>";
  case 'version': return "<iq type='get' to='" + domain + "' id='" + id + "'><query xmlns='jabber:iq:version'/></iq>";
  case 'roster': return "<iq type='get' id='" + id + "'><query xmlns='jabber:iq:roster'/></iq>";
  }
  return '';
}
$('send-template').addEventListener('change', (ev) => { if (ev.target.value) $('send-xml').value = templates(ev.target.value); ev.target.value = ''; });
$('send-button').addEventListener('click', () => {
  if (state.selected === null) { $('send-result').textContent = 'select a session first'; return; }
  send({ t: 'send', session: state.selected, dir: $('send-dir').value, xml: $('send-xml').value });
});
$('bp-form').addEventListener('submit', (ev) => { ev.preventDefault(); send({ t: 'intercept', expr: $('bp').value.trim(), timeout: +$('bp-timeout').value }); });
$('held').addEventListener('click', (ev) => {
  const b = ev.target.closest('button[data-act]'); if (!b) return;
  const item = b.closest('.held-item'); const h = state.held[+item.dataset.i];
  const msg = { t: 'release', session: h.session, dir: h.dir, id: h.id, action: b.dataset.act === 'drop' ? 'drop' : 'forward' };
  if (b.dataset.act === 'edit') msg.xml = item.querySelector('textarea').value;
  send(msg);
});

renderHeld();
connect();

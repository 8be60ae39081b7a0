#!/usr/bin/python3
"""Writes examples/primer.md: every exchange of a typical XMPP session, explained by
`xmppscope inspect --explain` in English and in Simplified Chinese.

Two steps, both run by examples/primer.sh:
  1. (--record) A real session: a private Prosody on 127.0.0.1, xmppscope in front of it with
     --write, and two slixmpp clients through it: bob logs in with SCRAM-SHA-1, alice with PLAIN;
     both fetch the roster and send presence, alice pings the server and sends bob a message.
     The proxy writes the log with --show-secrets (the throwaway passwords of a private test
     server), so that `inspect` reads the SASL payloads as they were on the wire and masks them
     itself, exactly as the proxy does live; it is kept as examples/captures/primer.jsonl.
  2. The page: `xmppscope inspect --explain --format json --lang en|zh` on that log; the events
     of each step of the walk and their explanations go into examples/primer.md.

    python3 examples/primer.py --record      # both steps (needs Prosody and slixmpp)
    python3 examples/primer.py               # step 2 only, from the committed log
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.normpath(os.path.join(HERE, ".."))
LOG = os.path.join(HERE, "captures", "primer.jsonl")
PAGE = os.path.join(HERE, "primer.md")


def record(binary):
    sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
    from xmpptest.client import alice_to_bob
    from xmpptest.prosody import Prosody

    tmp = tempfile.mkdtemp(prefix="xmppscope-primer.")
    log = os.path.join(tmp, "session.jsonl")
    with Prosody() as server:
        server.register("alice", "alicepass")
        server.register("bob", "bobpass")
        # Contacts in Prosody's own store, so that the roster has items and subscription states.
        rosters = os.path.join(server.data_path, "example%2etest", "roster")
        os.makedirs(rosters, mode=0o700, exist_ok=True)
        for user, contacts in (("alice", [("bob", "both", "Bob"), ("carol", "to", "Carol")]),
                               ("bob", [("alice", "both", "Alice")])):
            with open(os.path.join(rosters, f"{user}.dat"), "w") as f:
                f.write("return {\n\t[false] = { [\"version\"] = 1; };\n")
                for c, sub, name in contacts:
                    f.write(f'\t["{c}@example.test"] = {{ ["subscription"] = "{sub}"; '
                            f'["name"] = "{name}"; ["groups"] = {{ ["Friends"] = true; }}; }};\n')
                f.write("};\n")
        proxy = subprocess.Popen(
            [binary, "proxy", "--listen", "127.0.0.1:0", "--upstream",
             f"127.0.0.1:{server.starttls_port}", "--upstream-ca", server.ca_file,
             "--ca-dir", os.path.join(tmp, "ca"), "--write", log, "--format", "none",
             "--show-secrets"],
            stderr=subprocess.PIPE, text=True)
        port = None
        deadline = time.time() + 10
        while port is None and time.time() < deadline:
            line = proxy.stderr.readline()
            if not line:
                break
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            port = int(m.group(1)) if m else None
        if port is None:
            proxy.kill()
            sys.exit("primer: xmppscope did not start")
        r = alice_to_bob("alice@example.test", "alicepass", "bob@example.test", "bobpass",
                         "127.0.0.1", port, "starttls", os.path.join(tmp, "ca", "ca.crt"),
                         "PLAIN", message="Hi Bob! What is SCRAM?", timeout=20,
                         bob_overrides={"mech": "SCRAM-SHA-1"})
        time.sleep(0.3)
        proxy.send_signal(signal.SIGTERM)
        proxy.communicate(timeout=10)
    if not (r["ok"] and r["delivered"]):
        sys.exit(f"primer: the session failed: {r['error']}")
    os.replace(log, LOG)
    print(f"primer: wrote {os.path.relpath(LOG, TOP)}")


def explain(binary, lang, stdin=None):
    """The events of `inspect --explain` on the log (or on a raw capture given as stdin)."""
    out = subprocess.run([binary, "inspect", "--explain", "--lang", lang, "--format", "json",
                          LOG if stdin is None else "-"], check=True, input=stdin,
                         stdout=subprocess.PIPE).stdout.decode()
    return [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]


# What slixmpp did not send (Prosody marks the session optional), as an older client sends it:
# a raw capture of one direction, explained by the same command.
SESSION_CAPTURE = (b"<stream:stream xmlns='jabber:client' xmlns:stream="
                   b"'http://etherx.jabber.org/streams' to='example.test' version='1.0'>"
                   b"<iq type='set' id='sess_1'><session "
                   b"xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")


def sessions(events):
    """{"plain": session of the PLAIN login (alice), "scram": of the SCRAM one (bob)}."""
    found = {}
    for e in events:
        if e.get("name") == "auth" and e.get("dir") == "c2s":
            mech = "scram" if "SCRAM" in e.get("raw", "") else "plain"
            found[mech] = e["session"]
    return found


def pick(events, session, n=1, **want):
    """The first n events of session whose fields match want (values: str or callable)."""
    out = []
    for e in events:
        if e.get("session") != session:
            continue
        ok = True
        for k, v in want.items():
            val = e.get(k)
            ok = ok and (v(val, e) if callable(v) else val == v)
        if ok:
            out.append(e)
            if len(out) == n:
                break
    return out


def has(text):
    return lambda _v, e: text in e.get("raw", "")


# The walk: (English title, Chinese title, English intro, Chinese intro, selection).
# A selection is a list of (which session, fields to match, how many).
STEPS = [
    ("1. Opening the stream", "1. 打开流",
     "The client opens an XML stream; the server answers and lists its stream features.",
     "客户端打开 XML 流；服务器应答并列出其流特性。",
     [("plain", dict(dir="c2s", event="stream-open", stream=1)),
      ("plain", dict(dir="s2c", event="stream-open", stream=1)),
      ("plain", dict(dir="s2c", name="features", stream=1))]),
    ("2. STARTTLS", "2. STARTTLS",
     "The connection is upgraded to TLS, and the stream starts again inside it.",
     "连接升级为 TLS，流在其中重新开始。",
     [("plain", dict(dir="c2s", name="starttls")),
      ("plain", dict(dir="s2c", name="proceed")),
      ("plain", dict(dir="c2s", event="stream-open", stream=2)),
      ("plain", dict(dir="s2c", name="features", stream=2))]),
    ("3. SASL PLAIN", "3. SASL PLAIN",
     "Alice logs in with PLAIN: her user name and password in one message (the password is "
     "masked by xmppscope).",
     "Alice 用 PLAIN 登录：用户名和密码在同一条消息中（密码已被 xmppscope 遮蔽）。",
     [("plain", dict(dir="c2s", name="auth")),
      ("plain", dict(dir="s2c", name="success"))]),
    ("4. SASL SCRAM-SHA-1: what SCRAM is", "4. SASL SCRAM-SHA-1：SCRAM 是什么",
     "Bob logs in with SCRAM-SHA-1 (RFC 5802). SCRAM, the Salted Challenge Response "
     "Authentication Mechanism, never sends the password: the server keeps only a salted, "
     "iterated hash of it (SHA-1 here); the client proves that it can compute that hash from "
     "the password (the proof), the server proves that it holds it too (the server "
     "signature), and fresh nonces from both sides make every exchange unique. Four messages:",
     "Bob 用 SCRAM-SHA-1（RFC 5802）登录。SCRAM（加盐质询-应答认证机制）从不发送密码：服务器只保存"
     "密码经加盐、多次迭代后的哈希（此处为 SHA-1）；客户端证明自己能由密码算出该哈希（证明），服务器"
     "证明自己也持有它（服务器签名），双方各自生成的随机 nonce 使每次交换都独一无二。共四条消息：",
     [("scram", dict(dir="c2s", name="auth")),
      ("scram", dict(dir="s2c", name="challenge")),
      ("scram", dict(dir="c2s", name="response")),
      ("scram", dict(dir="s2c", name="success"))]),
    ("5. After login: a new stream", "5. 登录之后：新的流",
     "After SASL success the stream restarts once more; the features now offer binding.",
     "SASL 成功后流再次重启；此时的流特性提供资源绑定。",
     [("plain", dict(dir="c2s", event="stream-open", stream=3)),
      ("plain", dict(dir="s2c", name="features", stream=3))]),
    ("6. Resource binding", "6. 资源绑定",
     "The client gets its full JID.", "客户端获得完整 JID。",
     [("plain", dict(dir="c2s", name="iq", raw=has("xmpp-bind"))),
      ("plain", dict(dir="s2c", name="iq", raw=has("xmpp-bind")))]),
    ("7. Session", "7. 会话",
     "Prosody marks session establishment optional (see the features above), so slixmpp skips "
     "it. Here is the request older clients send, from a one-stanza capture "
     "(`xmppscope inspect --explain -` on it):",
     "Prosody 把会话建立标为可选（见上面的流特性），所以 slixmpp 跳过了它。下面是旧客户端发送的请求，"
     "取自只含这一个节的抓包（对其运行 `xmppscope inspect --explain -`）：",
     [("plain", dict(name="iq", raw=has("xmpp-session"))),
      ("capture", dict(name="iq", raw=has("xmpp-session")))]),
    ("8. The roster", "8. 花名册",
     "The contact list, fetched right after login.", "登录后立即获取的联系人列表。",
     [("plain", dict(dir="c2s", name="iq", raw=has("jabber:iq:roster"))),
      ("plain", dict(dir="s2c", name="iq", raw=has("jabber:iq:roster")))]),
    ("9. Presence", "9. 出席",
     "Alice says she is online; the server reflects it.", "Alice 宣告自己在线；服务器回显。",
     [("plain", dict(dir="c2s", name="presence")),
      ("plain", dict(dir="s2c", name="presence"))]),
    ("10. Messages", "10. 消息",
     "Alice writes to Bob; Bob's session receives it.", "Alice 给 Bob 发消息；Bob 的会话收到它。",
     [("plain", dict(dir="c2s", name="message")),
      ("scram", dict(dir="s2c", name="message"))]),
    ("11. IQ: request and answer", "11. IQ：请求与应答",
     "An IQ get and its result (here a ping).", "一个 IQ get 及其 result（此处为 ping）。",
     [("plain", dict(dir="c2s", name="iq", raw=has("urn:xmpp:ping"))),
      ("plain", dict(dir="s2c", name="iq", type="result", raw=lambda _v, e: "<" not in
                     e.get("raw", "")[1:]))]),
    ("12. Closing", "12. 关闭",
     "Each side closes its stream.", "双方各自关闭自己的流。",
     [("plain", dict(dir="c2s", event="stream-close")),
      ("plain", dict(dir="s2c", event="stream-close"))]),
]


def render(lang, events, extra):
    who = sessions(events)
    who["capture"] = "stdin"
    events = events + extra
    out = []
    for en_t, zh_t, en_i, zh_i, sel in STEPS:
        out.append(f"\n### {en_t if lang == 'en' else zh_t}\n\n{en_i if lang == 'en' else zh_i}\n")
        shown = 0
        for which, want in sel:
            for e in pick(events, who.get(which), **want):
                shown += 1
                arrow = {"c2s": "C→S", "s2c": "S→C"}.get(e.get("dir"), "C→S (capture)")
                raw = e.get("raw", "").replace("```", "`\u200b``")
                if len(raw) > 600:
                    raw = raw[:600] + " …"
                out.append(f"\n{arrow} `{e.get('name', e.get('event'))}`\n\n```xml\n{raw}\n```\n")
                for line in e.get("explain", "").split("\n"):
                    if line:
                        out.append(f"> {line}  \n")
        if shown == 0:
            out.append("\n" + ("(not in this session)" if lang == "en" else "（本次会话中没有）")
                       + "\n")
    return "".join(out)


HEADER = """# The XMPP primer, explained by xmppscope

Every exchange of a typical XMPP session (the walk of the primer this project grew from: stream
features, STARTTLS, SASL PLAIN and SCRAM-SHA-1, resource binding, session, presence, messages,
IQ and the roster), with the explanation `xmppscope inspect --explain` gives for it, in English
and in Simplified Chinese. Nothing below was written by hand but the titles and the one-line
introductions: the stanzas come from a real session (slixmpp 1.8 clients through xmppscope to
Prosody 0.12 on 127.0.0.1), kept in `examples/captures/primer.jsonl`, and the lines under them
(`>`) are what `--explain` printed. That log was written with `--show-secrets` (the throwaway
passwords `alicepass` and `bobpass` of a private test server), so that `inspect` sees the SASL
payloads as they were on the wire and masks them itself, as the proxy does live: every secret
below is masked (`***`), and the explanations name the user, never the password. (A log
written without `--show-secrets` keeps only masked payloads; `--explain` then says which SCRAM
step a masked payload is, but cannot name the PLAIN user.)

Read it live:

```sh
xmppscope inspect --explain examples/captures/primer.jsonl             # English
xmppscope inspect --explain --lang zh examples/captures/primer.jsonl   # 简体中文
xmppscope proxy --upstream xmpp.example.org:5222 --explain            # live, any session
```

Regenerate this page: `bash examples/primer.sh` (a new session through a private Prosody, then
this page), or `python3 examples/primer.py` (this page only, from the committed log). The
explanations come from `inspect/explain/en.txt` and `inspect/explain/zh.txt`, one entry per thing
explained, which a translator can edit.

- [English](#english)
- [简体中文](#简体中文)
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--record", action="store_true", help="record a new session first")
    ap.add_argument("--binary", default=os.path.join(TOP, "build", "proxy", "xmppscope"))
    args = ap.parse_args()
    if args.record:
        record(args.binary)
    page = [HEADER]
    for lang, title in (("en", "English"), ("zh", "简体中文")):
        extra = explain(args.binary, lang, SESSION_CAPTURE)
        page += [f"\n## {title}\n", render(lang, explain(args.binary, lang), extra)]
    with open(PAGE + ".new", "w", encoding="utf-8") as f:
        f.write("".join(page))
    os.replace(PAGE + ".new", PAGE)
    print(f"primer: wrote {os.path.relpath(PAGE, TOP)}")


if __name__ == "__main__":
    main()

"""pcap for Wireshark (issue 13, section 5): `proxy --pcap FILE` and `inspect --pcap OUT LOG`.

    cd tests/integration
    XMPPSCOPE=../../build/proxy/xmppscope /usr/bin/python3 -m unittest -v test_pcap

Real slixmpp clients (alice and bob, STARTTLS with PLAIN and direct TLS with SCRAM) go through
xmppscope to a private Prosody on 127.0.0.1, with --pcap and --write. tshark (Debian's, as
tests/install-deps.sh installs it) reads the capture: every stream header, stanza and stream
close of the log must be an XMPP frame of the right TCP connection (the client's address and
port to the server's, as the log's stream-open lines name them), in the same number; the same
for the capture `inspect --pcap` makes from the log. The capture holds no secret, and is mode
0600. Prosody listens on ports other than 5222, so tshark is told (`-d tcp.port==P,xmpp`) what
Wireshark's XMPP dissector assumes of 5222 by default.
"""

import collections
import os
import shutil
import stat
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import test_proxy  # noqa: E402  (ProsodyCase: a private Prosody, proxies, chat helpers)
from test_proxy import HOST, SECRET_FORMS  # noqa: E402
from xmpptest.proxy import SANITIZER_PATTERN, xmppscope_binary  # noqa: E402

TSHARK = shutil.which("tshark")
PARSER_EVENTS = ("stream-open", "stanza", "stream-close")


def run(argv, timeout=60):
    env = dict(os.environ, NO_COLOR="1")
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout, env=env)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


@unittest.skipUnless(TSHARK or os.environ.get("CI") == "true", "tshark is not installed")
class PcapWithProsody(test_proxy.ProsodyCase):
    def tshark(self, path, *args):
        """tshark on a capture, with Prosody's two ports decoded as XMPP."""
        argv = [TSHARK, "-r", path, "-n"]
        for port in (self.p.starttls_port, self.p.direct_tls_port):
            argv += ["-d", f"tcp.port=={port},xmpp"]
        rc, out, err = run(argv + list(args))
        self.assertEqual(rc, 0, err)
        return out

    def xmpp_frames(self, path):
        """[(client "IP:PORT", server "IP:PORT", direction, kind)] of every XMPP frame."""
        out = self.tshark(path, "-Y", "xmpp", "-T", "fields", "-E", "separator=|",
                          "-e", "ip.src", "-e", "tcp.srcport", "-e", "ip.dst",
                          "-e", "tcp.dstport", "-e", "xmpp.iq", "-e", "xmpp.message",
                          "-e", "xmpp.presence")
        servers = {self.p.starttls_port, self.p.direct_tls_port}
        frames = []
        for line in out.splitlines():
            src, sport, dst, dport, iq, msg, pres = line.split("|")
            kind = "iq" if iq else "message" if msg else "presence" if pres else "other"
            if int(dport) in servers:
                frames.append((f"{src}:{sport}", f"{dst}:{dport}", "c2s", kind))
            else:
                frames.append((f"{dst}:{dport}", f"{src}:{sport}", "s2c", kind))
        return frames

    def log_parser_events(self, x):
        """[(client, server, direction, kind)] of the log's stream headers, stanzas and stream
        closes, with the addresses its stream-open lines gave each session."""
        events = x.log_events()
        addrs = {}
        for e in events:
            if e.get("event") == "stream-open":
                a = addrs.setdefault(e["session"], {})
                for k in ("client", "server"):
                    if k in e:
                        self.assertEqual(a.setdefault(k, e[k]), e[k], "an address changed")
        out = []
        for e in events:
            if e.get("event") in PARSER_EVENTS and e.get("dir"):
                name = e.get("name") if e.get("event") == "stanza" else None
                kind = name if name in ("iq", "message", "presence") else "other"
                a = addrs[e["session"]]
                out.append((a["client"], a["server"], e["dir"], kind))
        return out, addrs

    def assert_same_conversations(self, frames, logged):
        self.assertEqual(collections.Counter(frames), collections.Counter(logged))

    def test_proxy_pcap_decodes_every_stanza_and_inspect_converts_the_log(self):
        pcap = os.path.join(self.tmp, "live.pcap")
        x = self.proxy(extra=["--pcap", pcap])
        plain = self.chat(x, "starttls", "PLAIN")
        scram = self.chat(x, "direct", "SCRAM-SHA-1")
        self.assertEqual(x.stop(), 0, x.dump())
        self.assertEqual(stat.S_IMODE(os.stat(pcap).st_mode), 0o600)

        logged, addrs = self.log_parser_events(x)
        # Four sessions (alice and bob, twice), each with both real addresses.
        self.assertEqual(len(addrs), 4, addrs)
        for a in addrs.values():
            self.assertRegex(a["client"], r"^127\.0\.0\.1:\d+$")
            self.assertIn(a["server"], {f"{HOST}:{self.p.starttls_port}",
                                        f"{HOST}:{self.p.direct_tls_port}"})
        stanzas = [e for e in logged if e[3] != "other"]
        self.assertGreater(len(stanzas), 20)
        for kind in ("iq", "message", "presence"):
            self.assertTrue(any(e[3] == kind for e in stanzas), kind)

        frames = self.xmpp_frames(pcap)
        self.assert_same_conversations(frames, logged)
        # One TCP connection per session, from the client's port to the server's.
        streams = self.tshark(pcap, "-Y", "tcp.flags.syn==1 && tcp.flags.ack==0", "-T", "fields",
                              "-e", "ip.src", "-e", "tcp.srcport", "-e", "ip.dst",
                              "-e", "tcp.dstport").split("\n")
        conns = {tuple(line.split("\t")) for line in streams if line}
        self.assertEqual({(a["client"].rsplit(":", 1)[0], a["client"].rsplit(":", 1)[1],
                           a["server"].rsplit(":", 1)[0], a["server"].rsplit(":", 1)[1])
                          for a in addrs.values()}, conns)
        # Wireshark finds nothing wrong with the TCP side: no bad checksum, no lost segment,
        # no retransmission, no ACK of unseen data.
        bad = self.tshark(pcap, "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
                          "-Y", "tcp.checksum.status==0 || ip.checksum.status==0 || "
                          "tcp.analysis.flags && !tcp.analysis.window_update")
        self.assertEqual(bad.strip(), "")
        # The messages are there, decoded; the secrets are not.
        with open(pcap, "rb") as f:
            data = f.read()
        for r in (plain, scram):
            self.assertIn(f"<body>{r['message']}</body>".encode(), data)
        for secret in SECRET_FORMS:
            self.assertNotIn(secret.encode(), data)
        self.assertIn(b">***</auth>", data)

        # `inspect --pcap` makes the same conversations from the log, byte for byte.
        out = os.path.join(self.tmp, "offline.pcap")
        rc, _, err = run([xmppscope_binary(), "inspect", "--format", "none", "--pcap", out,
                          x.log_path])
        self.assertEqual(rc, 0, err)
        self.assertNotRegex(err, SANITIZER_PATTERN)
        self.assertEqual(stat.S_IMODE(os.stat(out).st_mode), 0o600)
        self.assert_same_conversations(self.xmpp_frames(out), logged)
        fields = ["-T", "fields", "-e", "frame.time_epoch", "-e", "ip.src", "-e", "tcp.srcport",
                  "-e", "tcp.seq_raw", "-e", "tcp.ack_raw", "-e", "tcp.flags", "-e", "tcp.payload"]
        live_pkts = sorted(self.tshark(pcap, *fields).splitlines())
        offline_pkts = sorted(self.tshark(out, *fields).splitlines())
        self.assertEqual(live_pkts, offline_pkts)

    def test_stanza_larger_than_a_segment(self):
        """A 100 KB message is split into segments of at most 65495 bytes, which Wireshark puts
        back together into one XMPP frame: the counts still match the log's."""
        pcap = os.path.join(self.tmp, "big.pcap")
        x = self.proxy(extra=["--pcap", pcap])
        text = "big " + "0123456789" * 10000
        self.chat(x, "starttls", "PLAIN", message=text)
        self.assertEqual(x.stop(), 0, x.dump())
        logged, _ = self.log_parser_events(x)
        self.assert_same_conversations(self.xmpp_frames(pcap), logged)
        big = [e for e in x.log_events()
               if e.get("name") == "message" and text in e.get("raw", "")]
        self.assertEqual(len(big), 2)   # alice sent it, bob received it
        lens = [int(n) for n in self.tshark(pcap, "-T", "fields", "-e", "tcp.len").split()]
        self.assertTrue(all(n <= 65495 for n in lens), max(lens))
        self.assertGreaterEqual(sum(n == 65495 for n in lens), 2)
        bodies = self.tshark(pcap, "-Y", "xmpp.message", "-T", "fields",
                             "-e", "tcp.reassembled.length")
        self.assertEqual(sorted(int(n) for n in bodies.split()),
                         sorted(e["size"] for e in big))

    def test_show_secrets_puts_the_exact_bytes(self):
        pcap = os.path.join(self.tmp, "secrets.pcap")
        x = self.proxy(extra=["--pcap", pcap, "--show-secrets"])
        self.chat(x, "starttls", "PLAIN")
        self.assertEqual(x.stop(), 0, x.dump())
        with open(pcap, "rb") as f:
            data = f.read()
        self.assertIn(SECRET_FORMS[1].encode(), data)
        self.assert_same_conversations(self.xmpp_frames(pcap), self.log_parser_events(x)[0])

    def test_refuses_a_symbolic_link(self):
        target = os.path.join(self.tmp, "precious")
        with open(target, "w") as f:
            f.write("keep me")
        link = os.path.join(self.tmp, "link.pcap")
        os.symlink(target, link)
        for argv in ([xmppscope_binary(), "proxy", "--upstream", "127.0.0.1:1", "--listen",
                      "127.0.0.1:0", "--pcap", link],
                     [xmppscope_binary(), "inspect", "--pcap", link,
                      os.path.join(os.path.dirname(__file__), "..", "..", "examples", "captures",
                                   "c2s-plain.xml")]):
            rc, _, err = run(argv, timeout=20)
            self.assertEqual(rc, 2, err)
            self.assertIn(f"refusing --pcap {link}: it is a symbolic link", err)
        with open(target) as f:
            self.assertEqual(f.read(), "keep me")


if __name__ == "__main__":
    unittest.main()

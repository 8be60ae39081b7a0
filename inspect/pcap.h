/* A pcap file of the decrypted XMPP traffic, for Wireshark (`--pcap FILE`, `inspect --pcap`).
 *
 * An observer (observer.h) that writes each session as one TCP connection between the real
 * client address:port and the real server address:port: the bytes the client sent (c2s) one way,
 * the bytes the server sent (s2c) the other, so that Wireshark's XMPP dissector sees one
 * conversation from the first stream header to the last `</stream:stream>`. The file is written
 * with libpcap's dump API (pcap_open_dead + pcap_dump_fopen), link type LINKTYPE_RAW: each record
 * is an IPv4 or IPv6 packet, with valid IP and TCP checksums.
 *
 * What goes in, per session:
 *   - a synthesized three-way handshake (SYN, SYN-ACK, ACK) at the time of the session's first
 *     event;
 *   - each parser event's bytes (stream header, stanza, keepalive, stream close) as one segment,
 *     or several of at most 65535 bytes of IP packet each when it is larger, stamped with the
 *     event's time. The bytes are those the observers see: the exact bytes read (xs_event.raw),
 *     or, when a secret was masked (masked->xml), the masked XML, as in the log; with
 *     --show-secrets nothing is masked and the segments are the exact plaintext. A stanza a rule
 *     changed or dropped appears as its sender sent it (the log's "raw");
 *   - sequence and acknowledgement numbers that run on across stream restarts (STARTTLS, SASL):
 *     the plaintext of a direction simply continues;
 *   - FIN from the client, FIN-ACK from the server and the last ACK when the session ends
 *     (XS_OBS_CLOSED; offline, at the end of the input).
 * What xmppscope itself said on a leg (its own answer to a STARTTLS client, stream errors, a
 * rule's injected or bounced stanzas) is not in the file: only what the two sides sent.
 *
 * Addresses come from the events' meta (xs_print_meta.client_addr, server_addr: "IP:PORT" or
 * "[IPv6]:PORT"). The server's is known only once the proxy connected to it, after the client's
 * first stream header: a session's events are held in memory (up to `max_pending` bytes, and
 * `max_held` for all sessions together) until it is known, then written in order with their own
 * times. A session whose server address never comes (unreachable, a log without addresses, a raw
 * capture), or does not come within those bytes, is written with placeholders from the
 * documentation ranges: the client 192.0.2.1 (port 40000 + a number derived from the session),
 * the server 192.0.2.2:5222. When one side is IPv4 and the other IPv6, the IPv4 one is written as
 * an IPv4-mapped IPv6 address (::ffff:a.b.c.d).
 *
 * The observer keeps one small record per open session (keyed by meta->session), freed when the
 * session ends. In the proxy it writes and flushes each event at once (flush_each), so a file cut
 * by a crash holds every event up to it. Nothing of it runs when --pcap is not given.
 */
#ifndef XS_INSPECT_PCAP_H
#define XS_INSPECT_PCAP_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "inspect/observer.h"

typedef struct xs_pcap xs_pcap;

/* The payload of one segment at most, so that the IP packet stays within 65535 bytes: 65535 - 40
 * for IPv4 (20 of IP, 20 of TCP), 65535 - 60 for IPv6. */
#define XS_PCAP_MAX_PAYLOAD_V4 65495u
#define XS_PCAP_MAX_PAYLOAD_V6 65475u

/* Bytes held for a session while its server address is unknown, by default, and by all sessions
 * together. */
#define XS_PCAP_DEFAULT_MAX_PENDING ((size_t)1 << 20)
#define XS_PCAP_DEFAULT_MAX_HELD ((size_t)64 << 20)

typedef struct xs_pcap_options {
    /* Events without a direction (a raw capture read offline) go the client's way (0) or the
     * server's (1). */
    int raw_s2c;
    /* Bytes of events held for a session whose server address is not known yet; past it, the
     * session is written with the placeholder server address. 0: XS_PCAP_DEFAULT_MAX_PENDING. */
    size_t max_pending;
    /* The same for all sessions together (a log naming thousands of sessions and no server).
     * 0: XS_PCAP_DEFAULT_MAX_HELD. */
    size_t max_held;
    /* Flush the file after each event (the proxy: a crash loses nothing, and a reader following
     * the file sees each event at once); else stdio's buffer fills first (offline, where the
     * flush costs more than the rest of the work). */
    int flush_each;
} xs_pcap_options;

/* Starts a capture on `f`, a file opened for writing by the caller (with the checks of
 * proxy/file.h), which the capture takes over whatever the result: it writes the pcap header at
 * once and closes `f` in xs_pcap_close(). `opt` may be NULL. Returns 0 and sets *out, XS_ENOMEM,
 * or XS_EIO when the header cannot be written. */
int xs_pcap_new(FILE *f, const xs_pcap_options *opt, xs_pcap **out);

/* Ends every session still open (FIN, as at XS_OBS_CLOSED), flushes and closes the file, and
 * frees the capture. Returns 0, or XS_EIO when anything could not be written (the file may then
 * lack its end). NULL is allowed. */
int xs_pcap_close(xs_pcap *p);

/* The observer that writes into `p` (which must outlive every session that uses it). Its failure
 * is XS_EIO (the file cannot be written) or XS_ENOMEM; `policy` says what that does. */
xs_observer xs_pcap_observer(xs_pcap *p, xs_obs_policy policy);

/* Records written so far (every packet, handshakes and FINs included). */
uint64_t xs_pcap_packets(const xs_pcap *p);

/* Reads an address as the meta carries it: "IP:PORT" or "[IPv6]:PORT". Sets *v6 (0 or 1), ip
 * (4 or 16 bytes) and *port. Returns 0, or XS_EINVAL for anything else. */
int xs_pcap_parse_addr(const char *s, int *v6, uint8_t ip[16], uint16_t *port);

#endif

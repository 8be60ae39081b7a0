/* The synthetic XMPP server of the benchmark.
 *
 * On the STARTTLS socket it answers a stream header with features requiring STARTTLS, answers
 * <starttls/> with <proceed/>, does the TLS handshake and answers the new stream header with
 * features offering only <bind/> (no SASL: nothing in the benchmark authenticates). On the
 * direct TLS socket (XEP-0368) it starts with the handshake. Then it echoes every stanza back
 * as the exact bytes received, or, when the stream header carries bench:mode='sink' in the
 * namespace urn:xmppscope:bench, only counts it. When the client closes its stream, the server
 * reports what it received before closing its own:
 *   <count xmlns='urn:xmppscope:bench' stanzas='N' bytes='B'/></stream:stream>
 * so the client can check both ends, then waits for the client to close the connection (RFC 6120
 * 4.4) before it closes its side. One thread, one libuv loop; it runs in a process of its own, so
 * that the load generator, the server and the proxy are one thread each.
 */
#ifndef XS_BENCH_BENCH_SERVER_H
#define XS_BENCH_BENCH_SERVER_H

#define BN_NS_BENCH "urn:xmppscope:bench"

/* Serves on two sockets that are bound and listening already (the caller learnt their ports
 * before forking), with dir's server.crt and server.key, as `domain`, until SIGTERM or SIGINT.
 * Returns 0, or 1 after printing why it could not start. */
int bn_server_main(int starttls_fd, int direct_fd, const char *pki_dir, const char *domain);

#endif

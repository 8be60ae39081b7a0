/* `xmppscope proxy`: the command line of the proxy. */
#include "proxy/cmd/proxy_cmd.h"

#include "filters/features.h"
#include "proxy/cmd/cli.h"
#include "proxy/cmd/filter_cmd.h"
#include "inspect/check.h"
#include "inspect/error.h"
#include "inspect/explain.h"
#include "inspect/pcap.h"
#include "proxy/proxy.h"
#include "proxy/resolve.h"
#include "proxy/web.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: xmppscope proxy --upstream HOST:PORT|DOMAIN|auto [options]\n"
            "       xmppscope proxy --listen-socks ADDR:PORT|--listen-transparent ADDR:PORT "
            "[options]\n"
            "\n"
            "Sits between XMPP clients and their server: terminates TLS on both legs, shows\n"
            "every stanza of both directions, logs them, and forwards them byte for byte.\n"
            "Point the client at the --listen address (and make it trust xmppscope's CA).\n"
            "\n"
            "where:\n"
            "  --listen ADDR:PORT        plain TCP listener, STARTTLS offered (default %s)\n"
            "  --listen-tls ADDR:PORT    direct TLS listener (XEP-0368, ALPN xmpp-client)\n"
            "  --upstream HOST:PORT      the real server (its STARTTLS or plain port)\n"
            "  --upstream-direct HOST:PORT\n"
            "                            the server's direct TLS port, for server legs in\n"
            "                            direct mode (default: --upstream)\n"
            "reaching servers:\n"
            "  --upstream DOMAIN         find the server as a client does: SRV records\n"
            "                            _xmpp-client._tcp (STARTTLS) and _xmpps-client._tcp\n"
            "                            (direct TLS) in priority and weight order, else\n"
            "                            DOMAIN:5222; each target tried in turn; the server's\n"
            "                            certificate is checked against DOMAIN\n"
            "  --upstream auto           each session goes to the domain its client asks for\n"
            "                            (SNI or the stream's 'to'), found as above\n"
            "  --allow-domain PATTERN    with auto or --listen-socks: connect only to this\n"
            "                            domain, or to names under *.example.org\n"
            "                            (repeatable); without it, they listen on loopback\n"
            "                            only\n"
            "  --dns ADDR:PORT           ask this DNS server (default: /etc/resolv.conf's)\n"
            "  --listen-socks ADDR:PORT  a SOCKS5 listener (RFC 1928, CONNECT by name or\n"
            "                            address): each client names its server; the first\n"
            "                            byte after the reply decides direct TLS or STARTTLS;\n"
            "                            --allow-domain limits the destinations, and without\n"
            "                            it the listener must be on loopback\n"
            "  --listen-transparent ADDR:PORT\n"
            "                            connections redirected here by the kernel\n"
            "                            (nftables/iptables REDIRECT, TPROXY) go to the\n"
            "                            destination they were meant for (SO_ORIGINAL_DST)\n"
            "  --socks-auth USER:PASS    require RFC 1929 username/password (default: none;\n"
            "                            a client that sends some is let in)\n"
            "  --proxy-protocol          connections to --listen and --listen-tls start with\n"
            "                            a PROXY protocol v1 or v2 header (HAProxy, nginx):\n"
            "                            the client it names is shown and logged; a\n"
            "                            connection without a valid one is closed\n"
            "TLS:\n"
            "  --client-tls MODE         on the --listen socket: starttls (default; required\n"
            "                            of the client), direct or none\n"
            "  --upstream-tls MODE       mirror (default: what the client leg does),\n"
            "                            starttls, direct or none\n"
            "  --ca-dir DIR              the CA that signs the certificates forged for clients\n"
            "                            (default $XDG_CONFIG_HOME/xmppscope or\n"
            "                            ~/.config/xmppscope; created on first use)\n"
            "  --cert FILE --key FILE    present this certificate to clients instead\n"
            "  --upstream-ca FILE        trust these CA certificates for the server (default:\n"
            "                            the system store)\n"
            "  --upstream-insecure       do not verify the server's certificate (loud)\n"
            "  --server-name NAME        the name the server's certificate must carry, and the\n"
            "                            SNI (default: the domain the client asked for)\n"
            "  --keylog FILE             append TLS secrets of both legs (NSS key log format,\n"
            "                            for Wireshark; SSLKEYLOGFILE works too)\n"
            "output:\n"
            "  --format FMT              console output: pretty (default), compact, json, none\n"
            "  --write FILE              append every event as JSON Lines to FILE (mode 0600)\n"
            "  --pcap FILE               write the decrypted traffic of every session as a TCP\n"
            "                            connection from the client to the server, for\n"
            "                            Wireshark (mode 0600; an existing FILE is replaced;\n"
            "                            secrets masked unless --show-secrets)\n"
            "  --on-log-error WHAT        when --write fails (disk full): continue (default;\n"
            "                            said once per session, forwarding goes on) or stop\n"
            "                            (the session ends: nothing unlogged is forwarded)\n"
            "  --filter EXPR             show on the console only the stanzas EXPR selects\n"
            "                            ('xmppscope filter --help' has the language):\n"
            "                            --filter 'jid:bob@example.test message'. Errors and\n"
            "                            warnings are always shown; stream headers, TLS,\n"
            "                            notes and summaries when EXPR says yes to them:\n"
            "                            they are no message, so 'message' hides them and\n"
            "                            'session:3' or 'not presence' shows them; a JID atom\n"
            "                            asks about the JID the session is bound to\n"
            "  --write-filter EXPR       keep in the --write log only what EXPR selects (the\n"
            "                            same way; default everything), and every stream\n"
            "                            header, so that 'inspect' reads the log back\n"
            "  --show-secrets            show SASL and password payloads in clear\n"
            "web inspector:\n"
            "  --web [ADDR:PORT]         serve the live web inspector on ADDR:PORT (default\n"
            "                            " XS_WEB_DEFAULT_ADDR "): open the URL with its token\n"
            "                            printed at start; sessions, stanzas, filter, send\n"
            "                            and intercept. Loopback unless told otherwise\n"
            "  --web-history BYTES       events kept for the page (default 64M; K, M, G\n"
            "                            suffixes); the oldest go first\n"
            "analysis (on by default when the console, --write or --web shows it; warnings\n"
            "under the stanza, \"checks\" in JSON):\n"
            "  --iq-timeout S            flag an IQ get/set with no answer after S seconds\n"
            "                            (iq-unanswered; default 30); answers show their\n"
            "                            round trip, the session summary IQ latencies\n"
            "  --no-checks               no IQ pairing, round trips or protocol checks\n"
            "  --color WHEN              auto (default), always or never\n"
            "  --explain                 under each event, one or two lines of what it is and\n"
            "                            why it is there, with its RFC/XEP section and link\n"
            "                            (never a secret: computed from the masked event)\n"
            "  --lang LANG               language of --explain: en or zh (default: from\n"
            "                            LC_ALL, LC_MESSAGES or LANG; zh* gives zh, else en)\n"
            "limits:\n"
            "  --max-stanza N            bytes per stanza (default %u); bigger: policy-violation\n"
            "  --max-depth N             element nesting (default %u)\n"
            "  --max-attrs N             attributes of an element, and namespace declarations\n"
            "                            in scope in a stanza (default %u, at most %u)\n"
            "  --handshake-timeout S     seconds to set a session up (default %u)\n"
            "  --close-timeout S         seconds a side has to close its stream after the\n"
            "                            other closed its own (default %u)\n"
            "  --max-sessions N          refuse connections beyond N sessions (default: none)\n"
            "rules:\n"
            "  --rules FILE              apply the rules in FILE to both directions (see\n"
            "                            'xmppscope rules --help'); SIGHUP reloads it\n"
            "rewrites (built in, each shown in the output when it applies):\n"
            "  --no-rewrite NAME         turn one off: sasl-plus (drop SCRAM -PLUS\n"
            "                            mechanisms), channel-binding (drop XEP-0440 hints),\n"
            "                            compression (drop XEP-0138)\n"
            "  -h, --help                show this help\n"
            "\n"
            "Exit status: 0 after SIGINT/SIGTERM, 1 runtime failure, 2 usage error.\n"
            "\n"
            "example:\n"
            "  xmppscope proxy --listen 127.0.0.1:5222 --upstream xmpp.example.org:5222 \\\n"
            "                  --write session.jsonl\n",
            XS_PROXY_DEFAULT_LISTEN, XS_PARSER_DEFAULT_MAX_STANZA, XS_PARSER_DEFAULT_MAX_DEPTH,
            XS_PARSER_DEFAULT_MAX_ATTRS, XS_PARSER_MAX_MAX_ATTRS,
            XS_PROXY_DEFAULT_HANDSHAKE_TIMEOUT, XS_PROXY_DEFAULT_CLOSE_TIMEOUT);
}

/* The long options of `xmppscope proxy` (getopt_long values above any character). */
enum {
    O_LISTEN = 256,
    O_LISTEN_TLS,
    O_UPSTREAM,
    O_UPSTREAM_DIRECT,
    O_CLIENT_TLS,
    O_UPSTREAM_TLS,
    O_CA_DIR,
    O_CERT,
    O_KEY,
    O_UPSTREAM_CA,
    O_INSECURE,
    O_SERVER_NAME,
    O_KEYLOG,
    O_FORMAT,
    O_WRITE,
    O_SECRETS,
    O_COLOR,
    O_MAX_STANZA,
    O_MAX_DEPTH,
    O_MAX_ATTRS,
    O_HS_TIMEOUT,
    O_CLOSE_TIMEOUT,
    O_MAX_SESSIONS,
    O_NO_REWRITE,
    O_RULES,
    O_ON_LOG_ERROR,
    O_WEB,
    O_WEB_HISTORY,
    O_EXPLAIN,
    O_LANG,
    O_PCAP,
    O_FILTER,
    O_WRITE_FILTER,
    O_DNS,
    O_ALLOW_DOMAIN,
    O_PROXY_PROTOCOL,
    O_LISTEN_SOCKS,
    O_SOCKS_AUTH,
    O_LISTEN_TRANSPARENT,
    O_IQ_TIMEOUT,
    O_NO_CHECKS,
};

static const struct option longopts[] = {
    {"listen", required_argument, NULL, O_LISTEN},
    {"listen-tls", required_argument, NULL, O_LISTEN_TLS},
    {"upstream", required_argument, NULL, O_UPSTREAM},
    {"upstream-direct", required_argument, NULL, O_UPSTREAM_DIRECT},
    {"client-tls", required_argument, NULL, O_CLIENT_TLS},
    {"upstream-tls", required_argument, NULL, O_UPSTREAM_TLS},
    {"ca-dir", required_argument, NULL, O_CA_DIR},
    {"cert", required_argument, NULL, O_CERT},
    {"key", required_argument, NULL, O_KEY},
    {"upstream-ca", required_argument, NULL, O_UPSTREAM_CA},
    {"upstream-insecure", no_argument, NULL, O_INSECURE},
    {"server-name", required_argument, NULL, O_SERVER_NAME},
    {"keylog", required_argument, NULL, O_KEYLOG},
    {"format", required_argument, NULL, O_FORMAT},
    {"write", required_argument, NULL, O_WRITE},
    {"show-secrets", no_argument, NULL, O_SECRETS},
    {"color", required_argument, NULL, O_COLOR},
    {"colour", required_argument, NULL, O_COLOR},
    {"max-stanza", required_argument, NULL, O_MAX_STANZA},
    {"max-depth", required_argument, NULL, O_MAX_DEPTH},
    {"max-attrs", required_argument, NULL, O_MAX_ATTRS},
    {"handshake-timeout", required_argument, NULL, O_HS_TIMEOUT},
    {"close-timeout", required_argument, NULL, O_CLOSE_TIMEOUT},
    {"max-sessions", required_argument, NULL, O_MAX_SESSIONS},
    {"no-rewrite", required_argument, NULL, O_NO_REWRITE},
    {"dns", required_argument, NULL, O_DNS},
    {"allow-domain", required_argument, NULL, O_ALLOW_DOMAIN},
    {"proxy-protocol", no_argument, NULL, O_PROXY_PROTOCOL},
    {"listen-socks", required_argument, NULL, O_LISTEN_SOCKS},
    {"socks-auth", required_argument, NULL, O_SOCKS_AUTH},
    {"listen-transparent", required_argument, NULL, O_LISTEN_TRANSPARENT},
    {"rules", required_argument, NULL, O_RULES},
    {"on-log-error", required_argument, NULL, O_ON_LOG_ERROR},
    {"web", optional_argument, NULL, O_WEB},
    {"web-history", required_argument, NULL, O_WEB_HISTORY},
    {"explain", no_argument, NULL, O_EXPLAIN},
    {"lang", required_argument, NULL, O_LANG},
    {"pcap", required_argument, NULL, O_PCAP},
    {"filter", required_argument, NULL, O_FILTER},
    {"write-filter", required_argument, NULL, O_WRITE_FILTER},
    {"iq-timeout", required_argument, NULL, O_IQ_TIMEOUT},
    {"no-checks", no_argument, NULL, O_NO_CHECKS},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* The options as given: the configuration, and what decides part of it once all are read. */
typedef struct proxy_args {
    xs_proxy_config cfg;
    const char *color;
    int listen_given;
    int explain;                                   /* --explain */
    xs_lang lang;                                  /* --lang, else from the environment */
    const char *pcap_path;                         /* --pcap FILE; NULL: none */
    const char *filter, *write_filter;             /* --filter, --write-filter as given */
    const char *allow[XS_PROXY_MAX_ALLOW_DOMAINS]; /* --allow-domain, in cfg.allow_domains */
    char socks_user[256];                          /* --socks-auth's user */
    xs_analysis_cfg an;                            /* IQ pairing and checks */
} proxy_args;

/* Takes an option whose value is a number in a range (limits and timeouts). Returns 0, or the exit
 * status of a usage error. */
static int take_number(proxy_args *a, int c, const char *arg)
{
    unsigned long long v;

    switch (c) {
    case O_MAX_STANZA:
        if (xs_cli_parse_uint(arg, 1024, 1u << 30, &v) < 0)
            return xs_cli_usage_error(
                "proxy", "--max-stanza takes bytes from 1024 to 1073741824, not '%s'", arg);
        a->cfg.limits.max_stanza = (size_t)v;
        break;
    case O_MAX_DEPTH:
        if (xs_cli_parse_uint(arg, 2, 200, &v) < 0)
            return xs_cli_usage_error("proxy", "--max-depth takes a number from 2 to 200, not '%s'",
                                      arg);
        a->cfg.limits.max_depth = (unsigned)v;
        break;
    case O_MAX_ATTRS:
        if (xs_cli_parse_uint(arg, 1, XS_PARSER_MAX_MAX_ATTRS, &v) < 0)
            return xs_cli_usage_error("proxy", "--max-attrs takes a number from 1 to %u, not '%s'",
                                      XS_PARSER_MAX_MAX_ATTRS, arg);
        a->cfg.limits.max_attrs = (unsigned)v;
        break;
    case O_HS_TIMEOUT:
        if (xs_cli_parse_uint(arg, 1, 86400, &v) < 0)
            return xs_cli_usage_error(
                "proxy", "--handshake-timeout takes seconds from 1 to 86400, not '%s'", arg);
        a->cfg.handshake_timeout = (unsigned)v;
        break;
    case O_CLOSE_TIMEOUT:
        if (xs_cli_parse_uint(arg, 1, 3600, &v) < 0)
            return xs_cli_usage_error(
                "proxy", "--close-timeout takes seconds from 1 to 3600, not '%s'", arg);
        a->cfg.close_timeout = (unsigned)v;
        break;
    case O_MAX_SESSIONS:
        if (xs_cli_parse_uint(arg, 1, 10000000, &v) < 0)
            return xs_cli_usage_error("proxy", "--max-sessions takes a number from 1, not '%s'",
                                      arg);
        a->cfg.max_sessions = (unsigned)v;
        break;
    }
    return 0;
}

/* The options of reaching servers (--dns, --allow-domain, --listen-socks, ...). Returns 0, or the
 * exit status of a usage error. */
static int take_reach_option(proxy_args *a, int c, const char *arg)
{
    switch (c) {
    case O_DNS:
        a->cfg.dns = arg;
        break;
    case O_PROXY_PROTOCOL:
        a->cfg.proxy_protocol = 1;
        break;
    case O_LISTEN_SOCKS:
        a->cfg.listen_socks = arg;
        break;
    case O_LISTEN_TRANSPARENT:
        a->cfg.listen_transparent = arg;
        break;
    case O_SOCKS_AUTH: {
        const char *colon = strchr(arg, ':');
        size_t ul = colon ? (size_t)(colon - arg) : 0;
        if (colon == NULL || ul == 0 || ul > 255 || strlen(colon + 1) > 255 || colon[1] == 0)
            return xs_cli_usage_error("proxy",
                                      "--socks-auth takes USER:PASS (each 1 to 255 bytes)");
        snprintf(a->socks_user, sizeof(a->socks_user), "%.*s", (int)ul, arg);
        a->cfg.socks_user = a->socks_user;
        a->cfg.socks_pass = colon + 1;
        break;
    }
    case O_ALLOW_DOMAIN: {
        const char *name = strncmp(arg, "*.", 2) == 0 ? arg + 2 : arg;
        if (!xs_dns_name_ok(name))
            return xs_cli_usage_error("proxy",
                                      "--allow-domain takes a domain or *.DOMAIN, not '%s'", arg);
        if (a->cfg.n_allow_domains >= XS_PROXY_MAX_ALLOW_DOMAINS)
            return xs_cli_usage_error("proxy", "--allow-domain may be given at most %d times",
                                      XS_PROXY_MAX_ALLOW_DOMAINS);
        a->allow[a->cfg.n_allow_domains++] = arg;
        a->cfg.allow_domains = a->allow;
        break;
    }
    }
    return 0;
}

/* Takes an option of the analysers (IQ pairing and checks). Returns 0, or the exit status of a
 * usage error. */
static int take_analysis(proxy_args *a, int c, const char *arg)
{
    if (c == O_NO_CHECKS) {
        a->an.pairing = a->an.checks = 0;
        return 0;
    }
    if (xs_analysis_parse_timeout(arg, &a->an.iq_timeout) < 0)
        return xs_cli_usage_error("proxy",
                                  "--iq-timeout takes seconds from 0.001 to 86400, not '%s'", arg);
    return 0;
}

/* The options of what is shown and kept: the console, the log, --pcap, filters, --explain, --web.
 * Returns 0, or the exit status of a usage error. */
static int take_output_option(proxy_args *a, int c, const char *arg)
{
    switch (c) {
    case O_FORMAT:
        if (xs_format_parse(arg, &a->cfg.console.format) < 0)
            return xs_cli_usage_error("proxy",
                                      "unknown format '%s' (pretty, compact, json or none)", arg);
        break;
    case O_WRITE:
        a->cfg.write_path = arg;
        break;
    case O_PCAP:
        a->pcap_path = arg;
        break;
    case O_SECRETS:
        a->cfg.console.show_secrets = 1;
        break;
    case O_COLOR:
        if (strcmp(arg, "auto") != 0 && strcmp(arg, "always") != 0 && strcmp(arg, "never") != 0)
            return xs_cli_usage_error("proxy", "--color takes auto, always or never, not '%s'",
                                      arg);
        a->color = arg;
        break;
    case O_ON_LOG_ERROR:
        if (strcmp(arg, "continue") != 0 && strcmp(arg, "stop") != 0)
            return xs_cli_usage_error("proxy", "--on-log-error takes continue or stop, not '%s'",
                                      arg);
        a->cfg.log_stop = strcmp(arg, "stop") == 0;
        break;
    case O_EXPLAIN:
        a->explain = 1;
        break;
    case O_LANG:
        if (xs_lang_parse(arg, &a->lang) < 0)
            return xs_cli_usage_error("proxy", "--lang takes en or zh, not '%s'", arg);
        break;
    case O_FILTER:
        a->filter = arg;
        break;
    case O_WRITE_FILTER:
        a->write_filter = arg;
        break;
    case O_WEB:
        a->cfg.web = arg != NULL ? arg : XS_WEB_DEFAULT_ADDR;
        break;
    case O_WEB_HISTORY:
        if (xs_web_parse_size(arg, &a->cfg.web_history) < 0)
            return xs_cli_usage_error("proxy",
                                      "--web-history takes bytes from 1M to 64G (K, M, G "
                                      "suffixes), not '%s'",
                                      arg);
        break;
    }
    return 0;
}

/* Takes one option and its value. Returns 0, or the exit status of a usage error. */
static int take_option(proxy_args *a, int c, const char *arg)
{
    switch (c) {
    case O_FORMAT:
    case O_WRITE:
    case O_PCAP:
    case O_SECRETS:
    case O_COLOR:
    case O_ON_LOG_ERROR:
    case O_EXPLAIN:
    case O_LANG:
    case O_FILTER:
    case O_WRITE_FILTER:
    case O_WEB:
    case O_WEB_HISTORY:
        return take_output_option(a, c, arg);
    case O_DNS:
    case O_ALLOW_DOMAIN:
    case O_PROXY_PROTOCOL:
    case O_LISTEN_SOCKS:
    case O_SOCKS_AUTH:
    case O_LISTEN_TRANSPARENT:
        return take_reach_option(a, c, arg);
    case O_MAX_STANZA:
    case O_MAX_DEPTH:
    case O_MAX_ATTRS:
    case O_HS_TIMEOUT:
    case O_CLOSE_TIMEOUT:
    case O_MAX_SESSIONS:
        return take_number(a, c, arg);
    case O_LISTEN:
        a->cfg.listen = arg;
        a->listen_given = 1;
        break;
    case O_LISTEN_TLS:
        a->cfg.listen_tls = arg;
        break;
    case O_UPSTREAM:
        a->cfg.upstream = arg;
        break;
    case O_UPSTREAM_DIRECT:
        a->cfg.upstream_direct = arg;
        break;
    case O_CLIENT_TLS:
        if (xs_tls_mode_parse(arg, &a->cfg.client_tls) < 0 ||
            a->cfg.client_tls == XS_TLSMODE_MIRROR)
            return xs_cli_usage_error("proxy",
                                      "--client-tls takes starttls, direct or none, not '%s'", arg);
        break;
    case O_UPSTREAM_TLS:
        if (xs_tls_mode_parse(arg, &a->cfg.upstream_tls) < 0)
            return xs_cli_usage_error("proxy",
                                      "--upstream-tls takes mirror, starttls, direct or none, "
                                      "not '%s'",
                                      arg);
        break;
    case O_CA_DIR:
        a->cfg.ca_dir = arg;
        break;
    case O_CERT:
        a->cfg.cert_file = arg;
        break;
    case O_KEY:
        a->cfg.key_file = arg;
        break;
    case O_UPSTREAM_CA:
        a->cfg.upstream_ca = arg;
        break;
    case O_INSECURE:
        a->cfg.upstream_insecure = 1;
        break;
    case O_SERVER_NAME:
        a->cfg.server_name = arg;
        break;
    case O_KEYLOG:
        a->cfg.keylog_path = arg;
        break;
    case O_NO_REWRITE: {
        unsigned bit;
        if (xs_rewrite_parse(arg, &bit) < 0 || bit == XS_REWRITE_STARTTLS)
            return xs_cli_usage_error("proxy",
                                      "--no-rewrite takes sasl-plus, channel-binding or "
                                      "compression, not '%s'",
                                      arg);
        a->cfg.rewrites &= ~bit;
        break;
    }
    case O_RULES:
        a->cfg.rules_path = arg;
        break;
    case O_IQ_TIMEOUT:
    case O_NO_CHECKS:
        return take_analysis(a, c, arg);
    }
    return 0;
}

/* Checks the options together and fills in what they leave to defaults. Returns 0, or the exit
 * status of a usage error. */
static int finish_args(proxy_args *a)
{
    bool named = a->cfg.listen_socks != NULL || a->cfg.listen_transparent != NULL;
    if (a->cfg.upstream == NULL && named && (a->listen_given || a->cfg.listen_tls != NULL))
        return xs_cli_usage_error("proxy", "--listen and --listen-tls need --upstream (only "
                                           "--listen-socks and --listen-transparent clients "
                                           "bring their destinations)");
    if (a->cfg.socks_user != NULL && a->cfg.listen_socks == NULL)
        return xs_cli_usage_error("proxy", "--socks-auth goes with --listen-socks");
    if (a->cfg.upstream == NULL && !named)
        return xs_cli_usage_error("proxy",
                                  "--upstream HOST:PORT, DOMAIN or auto is required (the real XMPP "
                                  "server, or how to find it)");
    if ((a->cfg.cert_file == NULL) != (a->cfg.key_file == NULL))
        return xs_cli_usage_error("proxy", "--cert and --key go together");
    if (a->cfg.cert_file != NULL && a->cfg.ca_dir != NULL)
        return xs_cli_usage_error("proxy", "--cert/--key and --ca-dir exclude each other");
    if (a->cfg.upstream_ca != NULL && a->cfg.upstream_insecure)
        return xs_cli_usage_error("proxy",
                                  "--upstream-ca and --upstream-insecure exclude each other");
    if (a->cfg.log_stop && a->cfg.write_path == NULL)
        return xs_cli_usage_error("proxy", "--on-log-error goes with --write FILE");
    if (a->write_filter != NULL && a->cfg.write_path == NULL)
        return xs_cli_usage_error("proxy", "--write-filter goes with --write FILE");
    if (a->filter != NULL && a->cfg.console.format == XS_FORMAT_NONE)
        return xs_cli_usage_error("proxy", "--filter selects what the console shows, and "
                                           "--format none shows nothing (--write-filter "
                                           "selects what the log keeps)");
    int rc = 0;
    if (a->filter != NULL)
        rc = xs_filter_cmd_compile("proxy", "--filter", a->filter, &a->cfg.console_filter);
    if (rc == 0 && a->write_filter != NULL)
        rc =
            xs_filter_cmd_compile("proxy", "--write-filter", a->write_filter, &a->cfg.write_filter);
    if (rc != 0)
        return rc;
    if (!a->listen_given && a->cfg.listen_tls == NULL && a->cfg.upstream != NULL)
        a->cfg.listen = XS_PROXY_DEFAULT_LISTEN;
    if (strcmp(a->color, "always") == 0)
        a->cfg.console.color = 1;
    else if (strcmp(a->color, "auto") == 0)
        a->cfg.console.color = xs_color_wanted(STDOUT_FILENO);
    return 0;
}

/* What the command adds to the proxy's observers (xs_proxy_config.observers), after the console
 * and the log, and owns. */
typedef struct cmd_observers {
    xs_observer obs[XS_PROXY_MAX_OBSERVERS - 2];
    size_t n;
    xs_analysis *an;         /* IQ pairing and checks */
    xs_explainer *explainer; /* --explain */
    xs_pcap *pcap;           /* --pcap */
} cmd_observers;

/* Makes the observers the options ask for into *co and hands them to a->cfg. Returns 0 or an
 * exit status; free_observers() in both cases. */
static int add_observers(proxy_args *a, cmd_observers *co)
{
    /* The analysers, shared by every session (they keep each session's state apart), only when
     * something shows what they find (the console, the log or the web inspector): a proxy that
     * shows nothing does no analysis either, and keeps its cheapest path. */
    bool shown =
        a->cfg.console.format != XS_FORMAT_NONE || a->cfg.write_path != NULL || a->cfg.web != NULL;
    if ((a->an.pairing || a->an.checks) && shown) {
        if (xs_analysis_new(&a->an, &co->an) < 0) {
            xs_term_printf(stderr, "xmppscope: out of memory\n");
            return 1;
        }
        co->obs[co->n++] = xs_analysis_observer(co->an);
    }
    /* --explain: an analyser too; without it nothing of it runs. */
    if (a->explain) {
        char err[256];
        if (xs_explainer_new(a->lang, &co->explainer, err, sizeof(err)) < 0) {
            xs_term_printf(stderr, "xmppscope: cannot load the explanations: %s\n", err);
            return 1;
        }
        co->obs[co->n++] = xs_explainer_observer(co->explainer);
    }
    if (a->pcap_path != NULL) {
        int rc = xs_cli_open_pcap("proxy", a->pcap_path, 0, 1, &co->pcap);
        if (rc != 0)
            return rc;
        co->obs[co->n++] = xs_pcap_observer(co->pcap, XS_OBS_WARN);
    }
    a->cfg.observers = co->obs;
    a->cfg.n_observers = co->n;
    return 0;
}

/* Frees the observers and the filters. Returns the exit status of closing the --pcap file (0 or
 * 1). */
static int free_observers(proxy_args *a, cmd_observers *co)
{
    xs_analysis_free(co->an);
    xs_explainer_free(co->explainer);
    xs_filter_free(a->cfg.console_filter);
    xs_filter_free(a->cfg.write_filter);
    a->cfg.console_filter = a->cfg.write_filter = NULL;
    int st = xs_cli_close_pcap("proxy", a->pcap_path, co->pcap);
    co->pcap = NULL;
    return st;
}

int xs_proxy_main(int argc, char **argv)
{
    proxy_args a = {
        .cfg =
            {
                .client_tls = XS_TLSMODE_STARTTLS,
                .upstream_tls = XS_TLSMODE_MIRROR,
                .console = {.format = XS_FORMAT_PRETTY},
                .rewrites = XS_REWRITE_DEFAULT,
                .handshake_timeout = XS_PROXY_DEFAULT_HANDSHAKE_TIMEOUT,
                .close_timeout = XS_PROXY_DEFAULT_CLOSE_TIMEOUT,
            },
        .color = "auto",
        .lang = xs_lang_from_env(),
        .an = {.pairing = 1, .checks = 1},
    };
    int c, rc;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            usage(stdout);
            return 0;
        case ':':
            return xs_cli_usage_error("proxy", "option '%s' needs a value", argv[optind - 1]);
        case '?':
            return xs_cli_usage_error("proxy", "unknown option '%s'", argv[optind - 1]);
        default:
            /* --web ADDR:PORT as well as --web=ADDR:PORT: its value is optional. */
            if (c == O_WEB && optarg == NULL && optind < argc && argv[optind][0] != '-')
                optarg = argv[optind++];
            if ((rc = take_option(&a, c, optarg)) != 0)
                return rc;
        }
    }
    if (optind < argc)
        return xs_cli_usage_error("proxy", "unexpected argument '%s'", argv[optind]);
    if ((rc = finish_args(&a)) != 0) {
        xs_filter_free(a.cfg.console_filter);
        return rc;
    }
    cmd_observers co = {0};
    if ((rc = add_observers(&a, &co)) != 0) {
        free_observers(&a, &co);
        return rc;
    }
    xs_diag diag;
    rc = xs_proxy_run(&a.cfg, &diag);
    int pcap_status = free_observers(&a, &co);
    if (diag.text[0] != 0)
        xs_term_printf(stderr, "xmppscope: %s\n", diag.text);
    /* The exit statuses of the proxy: 0 after a clean stop, 2 for a configuration it refuses,
     * 1 for a runtime failure. */
    return rc == 0 ? pcap_status : rc == XS_EINVAL ? 2 : 1;
}

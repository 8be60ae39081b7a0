/* Listen sockets: opening them, and handing each accepted connection to a new conn. */
#include "proxy/proxy_impl.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void on_connection(uv_stream_t *server, int status)
{
    xs_listener *ls = server->data;
    if (status < 0) {
        xs_proxy_say("accept on %s failed: %s", ls->addr, uv_strerror(status));
        return;
    }
    xs_conn_accept(ls, server);
}

/* The listener's bound address, "IP:PORT" or "[IP6]:PORT", into ls->addr; a warning when it is
 * not loopback. */
static void name_bound(xs_listener *ls)
{
    struct sockaddr_storage addr;
    int len = sizeof(addr);
    uv_tcp_getsockname(&ls->tcp, (struct sockaddr *)&addr, &len);
    char ip[48];
    unsigned bound;
    if (addr.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&addr, ip, sizeof(ip));
        bound = ntohs(((struct sockaddr_in6 *)&addr)->sin6_port);
        snprintf(ls->addr, sizeof(ls->addr), "[%s]:%u", ip, bound);
    } else {
        uv_ip4_name((struct sockaddr_in *)&addr, ip, sizeof(ip));
        bound = ntohs(((struct sockaddr_in *)&addr)->sin_port);
        snprintf(ls->addr, sizeof(ls->addr), "%s:%u", ip, bound);
    }
    if (strcmp(ip, "127.0.0.1") != 0 && strcmp(ip, "::1") != 0)
        xs_proxy_say("warning: listening on %s, which is not loopback: anyone who can reach it can "
                     "use this proxy",
                     ls->addr);
}

int xs_listener_open(xs_proxy *p, xs_listener *ls, const char *spec, xs_listener_kind kind,
                     xs_tls_mode mode, xs_diag *diag)
{
    char host[256], port[16];
    struct sockaddr_storage addr;
    if (xs_proxy_split_hostport(spec, host, sizeof(host), port, sizeof(port)) < 0)
        return xs_diag_set(
            diag, XS_EINVAL,
            "cannot read the listen address '%s': expected ADDR:PORT, e.g. 127.0.0.1:5222", spec);
    if (uv_ip4_addr(host, atoi(port), (struct sockaddr_in *)&addr) != 0 &&
        uv_ip6_addr(host, atoi(port), (struct sockaddr_in6 *)&addr) != 0)
        return xs_diag_set(diag, XS_EINVAL,
                           "the listen address must be an IP address, not '%s' (e.g. 127.0.0.1)",
                           host);
    ls->p = p;
    ls->kind = kind;
    ls->client_mode = mode;
    ls->proxy_protocol = kind == XS_LST_XMPP && p->cfg->proxy_protocol != 0;
    /* The same for every session of the listener: one copy here rather than one per session.
     * The printers exist by now; the rules are read through &p->rules at every stanza. */
    ls->scfg = (xs_session_cfg){
        .client_mode = mode,
        .server_mode = p->cfg->upstream_tls,
        .rewrites = p->cfg->rewrites,
        .limits = p->cfg->limits,
        .observers = p->observers,
        .n_observers = p->n_observers,
        .show_secrets = p->cfg->console.show_secrets,
        /* A domain's certificate is checked against the domain, not the SRV target (RFC 6125). */
        .server_name = p->cfg->server_name != NULL  ? p->cfg->server_name
                       : p->up_kind == XS_UP_DOMAIN ? p->up_host
                                                    : NULL,
        .rules = &p->rules,
        .user_rules = p->cfg->rules_path != NULL,
    };
    ls->scfg_tls = ls->scfg;
    ls->scfg_tls.client_mode = XS_TLSMODE_DIRECT;
    uv_tcp_init(p->loop, &ls->tcp);
    ls->tcp.data = ls;
    ls->open = true;
    int rc = uv_tcp_bind(&ls->tcp, (struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&ls->tcp, 511, on_connection);
    if (rc < 0)
        return xs_diag_set(diag, rc, "cannot listen on %s: %s%s", spec, uv_strerror(rc),
                           rc == UV_EADDRINUSE ? " (another program uses it: pick another port)"
                           : rc == UV_EACCES   ? " (ports below 1024 need privileges)"
                                               : "");
    name_bound(ls);
    return 0;
}

void xs_listener_close(xs_listener *ls)
{
    if (ls->open && !uv_is_closing((uv_handle_t *)&ls->tcp))
        uv_close((uv_handle_t *)&ls->tcp, NULL);
}

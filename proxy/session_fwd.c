/* The stanzas of the secured streams: the rules, their verdicts, forwarding, and what the
 * server's features say. See session_impl.h. */
#include "proxy/session_impl.h"

#include "inspect/alloc.h"
#include "inspect/error.h"
#include "filters/features.h"

#include <stdlib.h>
#include <string.h>

/* ---- forwarding ---------------------------------------------------------------------------- */

bool xs_sess_is_el(const xs_event *ev, const char *ns, const char *name)
{
    return ev->ns != NULL && strcmp(ev->ns, ns) == 0 && strcmp(ev->name, name) == 0;
}

/* Sends an event of the client's secured stream to the server, or keeps it until the server leg
 * is secured. */
void xs_sess_to_server(xs_session *s, const char *data, size_t len)
{
    if (s->sst == SL_SECURE) {
        xs_sess_put(s, XS_SERVER, data, len);
        sess_set(s, XS_SF_SERVER_OPENED);
        return;
    }
    int rc = xs_sess_bytes_append(&s->pending, data, len, 2 * s->max_stanza + 65536);
    if (rc < 0)
        xs_sess_fail(s, XS_CLIENT, "policy-violation",
                     "the client sent more than the limit while the server leg was not ready");
}

/* What goes on in place of a stanza of a secured stream: the original bytes, the rewritten
 * ones, or nothing; a bounce goes back to the sender and injected stanzas where they were sent.
 * `out`/`out_len` receive the bytes to forward (NULL: none). */
void xs_sess_rules_verdict(xs_session *s, const xs_sess_event *sx, const char **out,
                           size_t *out_len)
{
    const xs_rule_result *res = sx->res;
    const xs_event *ev = sx->ev;
    xs_side from = sx->from;
    *out = ev->raw;
    *out_len = ev->len;
    if (res == NULL)
        return;
    switch (res->verdict) {
    case XS_VERDICT_UNCHANGED:
        break;
    case XS_VERDICT_REWRITTEN:
        *out = res->xml;
        *out_len = res->len;
        break;
    case XS_VERDICT_DROP:
        *out = NULL;
        *out_len = 0;
        break;
    case XS_VERDICT_BOUNCE:
        *out = NULL;
        *out_len = 0;
        if (res->bounce != NULL) {
            if (from == XS_CLIENT)
                xs_sess_put(s, XS_CLIENT, res->bounce, res->bounce_len);
            else
                xs_sess_to_server(s, res->bounce, res->bounce_len);
        }
        break;
    }
}

/* Sends a stanza of a secured stream on, after the rules: delayed when a rule said so. */
void xs_sess_forward(xs_session *s, const xs_sess_event *sx, xs_side to, const char *data,
                     size_t len)
{
    if (data == NULL || len == 0 || xs_sess_hold_take(s, sx, to, data, len))
        return;
    unsigned long ms = sx->res != NULL ? sx->res->delay_ms : 0;
    if (ms > 0 && s->io->write_delayed != NULL &&
        !sess_has(s, side_bit(XS_SF_LEG_CLOSED_CLIENT, to))) {
        int rc = s->io->write_delayed(s->io_ctx, to, data, len, ms);
        if (rc < 0 && s->state != SS_CLOSING) {
            xs_sess_note(s, "error", "cannot delay a stanza: %s", xs_strerror(rc));
            xs_sess_close_both(s);
        }
        if (to == XS_SERVER)
            sess_set(s, XS_SF_SERVER_OPENED);
        return;
    }
    if (to == XS_SERVER)
        xs_sess_to_server(s, data, len);
    else
        xs_sess_put(s, XS_CLIENT, data, len);
}

/* Stanzas the rules inject go out after the stanza that triggered them. */
void xs_sess_rules_inject(xs_session *s, const xs_sess_event *sx)
{
    const xs_rule_result *res = sx->res;
    for (size_t i = 0; res != NULL && i < res->n_injects && s->state != SS_CLOSING; i++) {
        if (res->injects[i].direction == XS_RULE_S2C)
            xs_sess_put(s, XS_CLIENT, res->injects[i].xml, res->injects[i].len);
        else
            xs_sess_to_server(s, res->injects[i].xml, res->injects[i].len);
    }
}

/* At most this many declarations, with at most this many bytes of strings, are kept. */
#define S2C_NS_MAX 8
#define S2C_NS_POOL 512

void xs_sess_remember_s2c_namespaces(xs_session *s, const xs_event *ev)
{
    size_t n = 0, pool = 0;
    xs_free(s->s2c_ns);
    s->s2c_ns = NULL;
    s->n_s2c_ns = 0;
    /* Two passes: the size of the block, then its contents (the same selection). */
    for (size_t i = 0; i < ev->n_nsdecls && n < S2C_NS_MAX; i++) {
        const char *p = ev->nsdecls[i].prefix, *u = ev->nsdecls[i].uri;
        size_t pl = p ? strlen(p) + 1 : 0, ul = u ? strlen(u) + 1 : 0;
        if (u == NULL || pool + pl + ul > S2C_NS_POOL)
            continue;
        n++;
        pool += pl + ul;
    }
    if (n == 0)
        return;
    /* Out of memory the features are parsed without the header's declarations, as for a
     * header that has none: a prefixed features element then fails to parse and is forwarded
     * unchanged. */
    xs_attr *arr = xs_calloc(1, n * sizeof(*arr) + pool);
    if (arr == NULL)
        return;
    char *strings = (char *)(arr + n);
    size_t used = 0;
    for (size_t i = 0; i < ev->n_nsdecls && s->n_s2c_ns < n; i++) {
        const char *p = ev->nsdecls[i].prefix, *u = ev->nsdecls[i].uri;
        size_t pl = p ? strlen(p) + 1 : 0, ul = u ? strlen(u) + 1 : 0;
        if (u == NULL || used + pl + ul > S2C_NS_POOL)
            continue;
        xs_attr *a = &arr[s->n_s2c_ns++];
        if (p != NULL) {
            a->prefix = memcpy(strings + used, p, pl);
            used += pl;
        }
        a->uri = memcpy(strings + used, u, ul);
        used += ul;
    }
    s->s2c_ns = arr;
}

/* The server's <stream:features/>, after the rules (the built-in rewrites among them) ran:
 * remembers whether it offered channel binding, says what the built-in rules removed, and fails
 * the server leg when it requires STARTTLS that a plain leg cannot do. Returns whether the leg
 * failed. */
bool xs_sess_server_features(xs_session *s, const xs_sess_event *sx)
{
    const xs_rule_result *res = sx->res;
    char removed[256] = "";
    size_t used = 0;
    for (size_t i = 0; res != NULL && i < res->n_tags; i++)
        if (strcmp(res->tags[i], "channel-binding-offered") == 0)
            sess_set(s, XS_SF_SERVER_BINDING);
    for (size_t i = 0; res != NULL && i < res->n_applied; i++) {
        const xs_rule_applied *a = &res->applied[i];
        unsigned bit;
        if (a->nodes == 0 || xs_rewrite_parse(a->rule, &bit) < 0 || used >= sizeof(removed))
            continue;
        used += (size_t)snprintf(removed + used, sizeof(removed) - used, "%s%s (%s)",
                                 used ? ", " : "", a->rule, a->detail ? a->detail : "");
    }
    /* A server leg kept plain by choice cannot do STARTTLS through xmppscope (the proxy would
     * have to follow a TLS session it is not part of): the offer goes (built-in rule
     * "starttls"), and a server that insists cannot be used. */
    if (s->server_mode == XS_TLSMODE_NONE && sx->features != NULL &&
        xs_features_starttls_required(sx->features)) {
        xs_sess_upstream_failed(s, "the server requires STARTTLS, but the server leg is plain "
                                   "(--upstream-tls none); use --upstream-tls starttls");
        return true;
    }
    if (used > 0)
        xs_sess_note(
            s, "info",
            "features rewritten for the client by built-in rules: %s (each can be turned off "
            "with --no-rewrite NAME)",
            removed);
    return false;
}

/* Runs the rules for a stanza of a secured stream; sets sx->res when they ran. Without the
 * parser's tree (no console, log or rules of the user's: the parser builds none), only the
 * server's <stream:features/> is parsed from its bytes, for the built-in rewrites. */
void xs_sess_run_rules(xs_session *s, xs_sess_event *sx)
{
    const xs_event *ev = sx->ev;
    xs_rules *rules = s->cfg->rules != NULL ? *s->cfg->rules : NULL;
    bool features = sx->from == XS_SERVER && xs_sess_is_el(ev, NS_STREAMS, "features");
    xs_event tree_ev = *ev;

    if (ev->node == NULL && features && ev->raw != NULL) {
        xmlNode *el = NULL;
        /* The parsed tree lives while the event is handled (xs_sess_event_done()). */
        if (xs_element_parse(ev->raw, ev->len, s->s2c_ns, s->n_s2c_ns, &sx->features_doc, &el) == 0)
            tree_ev.node = el;
    }
    if (features)
        sx->features = tree_ev.node;
    if (rules == NULL || tree_ev.node == NULL)
        return;
    xs_rule_ctx rc = {
        .direction = sx->from == XS_CLIENT ? XS_RULE_C2S : XS_RULE_S2C,
        .session = s->id_str,
        /* The STARTTLS offer goes only on a plain server leg (see xs_sess_server_features()).
         */
        .builtin_off = s->server_mode == XS_TLSMODE_NONE ? 0u : (unsigned)XS_REWRITE_STARTTLS,
    };
    if (xs_rules_apply(rules, &rc, &tree_ev, &sx->result) == 0) {
        sx->res = &sx->result; /* the result owns its data until xs_sess_event_done() */
        if (sx->result.error != NULL)
            xs_sess_note(s, "warn", "rules: %s", sx->result.error);
    } else {
        xs_rule_result_clear(&sx->result);
        xs_sess_note(s, "error", "rules: out of memory; the stanza is forwarded unchanged");
    }
}

/* Frees what handling the event took: the rules' result and a features tree parsed from bytes.
 */
void xs_sess_event_done(xs_sess_event *sx)
{
    if (sx->res != NULL)
        xs_rule_result_clear(&sx->result);
    sx->res = NULL;
    sx->features = NULL;
    xmlFreeDoc(sx->features_doc);
    sx->features_doc = NULL;
}

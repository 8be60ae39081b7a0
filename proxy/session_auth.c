/* SASL as the session watches it: the SCRAM GS2 header of a login, channel binding, and a
 * downgrade the removal of -PLUS mechanisms may cause. See session_impl.h. */
#include "proxy/session_impl.h"

#include "inspect/alloc.h"
#include "inspect/error.h"
#include "filters/features.h"
#include "inspect/b64.h"
#include "inspect/redact.h"

#include <stdio.h>
#include <string.h>

/* Reads a SCRAM client-first message (RFC 5802 section 7): a GS2 header (RFC 5801 section 4),
 * then [reserved-mext ","] "n=" username "," "r=" nonce. Returns its channel binding flag ('n',
 * 'y' or 'p', with the binding's name in cb, cut to fit), or 0 when d is not such a message. */
static int scram_client_first(const unsigned char *d, size_t len, char *cb, size_t cap)
{
    char name[256];
    if (memchr(d, '\0', len) != NULL)
        return 0;
    int flag = xs_sasl_gs2_flag((const char *)d, len, name, sizeof(name));
    if (flag == 0)
        return 0;
    /* The header is the flag and the optional authzid, each ended by a comma; neither holds
     * one. */
    const unsigned char *c1 = memchr(d, ',', len);
    const unsigned char *c2 = c1 != NULL ? memchr(c1 + 1, ',', len - (size_t)(c1 + 1 - d)) : NULL;
    if (c2 == NULL)
        return 0;
    const unsigned char *bare = c2 + 1, *end = d + len;
    if (end - bare >= 2 && bare[0] == 'm' && bare[1] == '=') {
        const unsigned char *c = memchr(bare, ',', (size_t)(end - bare));
        if (c == NULL)
            return 0;
        bare = c + 1;
    }
    if (end - bare < 2 || bare[0] != 'n' || bare[1] != '=')
        return 0;
    const unsigned char *c = memchr(bare, ',', (size_t)(end - bare));
    if (c == NULL || end - c < 3 || c[1] != 'r' || c[2] != '=')
        return 0;
    /* The channel binding type is shown cut to the caller's room. */
    snprintf(cb, cap, "%.*s", (int)(cap > 0 ? cap - 1 : 0), flag == 'p' ? name : "");
    return flag;
}

/* The decoded initial response of a client's SASL <auth/> or SASL2 <authenticate/> when its
 * mechanism is SCRAM (or not named, as a SCRAM payload may come): its channel binding flag, as
 * scram_client_first() gives it. The tree is the parser's or one parsed from the bytes; nothing
 * here masks or shows anything. */
static int sasl_client_first(const xs_event *ev, char *cb, size_t cap)
{
    xmlDoc *doc = NULL;
    const xmlNode *el = ev->node;
    int flag = 0;
    if (el == NULL) {
        xmlNode *parsed = NULL;
        if (ev->raw == NULL || xs_element_parse(ev->raw, ev->len, NULL, 0, &doc, &parsed) < 0)
            return 0;
        el = parsed;
    }
    xmlChar *mech = xmlGetNoNsProp(el, (const xmlChar *)"mechanism");
    if (mech != NULL && xmlStrncasecmp(mech, (const xmlChar *)"SCRAM-", 6) != 0)
        goto out;
    const xmlNode *payload = el;
    if (xmlStrEqual(el->name, (const xmlChar *)"authenticate")) {
        for (payload = el->children; payload != NULL; payload = payload->next)
            if (payload->type == XML_ELEMENT_NODE && payload->ns != NULL &&
                xmlStrEqual(payload->ns->href, (const xmlChar *)NS_SASL2) &&
                xmlStrEqual(payload->name, (const xmlChar *)"initial-response"))
                break;
        if (payload == NULL)
            goto out;
    }
    /* The payload is the element's text; an element inside makes it no SCRAM message. */
    for (const xmlNode *k = payload->children; k != NULL; k = k->next)
        if (k->type != XML_TEXT_NODE && k->type != XML_CDATA_SECTION_NODE)
            goto out;
    xmlChar *text = xmlNodeGetContent(payload);
    unsigned char *dec = NULL;
    size_t dlen = 0;
    if (text != NULL &&
        xs_base64_decode((const char *)text, strlen((const char *)text), &dec, &dlen) == 0)
        flag = scram_client_first(dec, dlen, cb, cap);
    xs_free(dec);
    xmlFree(text);
out:
    xmlFree(mech);
    xmlFreeDoc(doc);
    return flag;
}

void xs_sess_check_channel_binding(xs_session *s, const xs_event *ev)
{
    if (!xs_sess_is_el(ev, NS_SASL, "auth") && !xs_sess_is_el(ev, NS_SASL2, "authenticate"))
        return;
    char cb[32] = "";
    int flag = sasl_client_first(ev, cb, sizeof(cb));
    if (sess_has(s, XS_SF_WARNED_BINDING))
        return;
    if (flag == 'p') {
        sess_set(s, XS_SF_WARNED_BINDING);
        xs_sess_note(
            s, "warn",
            "channel binding: the client binds its login to the TLS channel (%s), but the "
            "client and the server see two different TLS channels through xmppscope, so the "
            "server will refuse this login. To proceed, turn channel binding off in the client "
            "or use a mechanism without -PLUS (keep the default rewrite 'sasl-plus' on).",
            cb[0] ? cb : "p=");
    } else if (flag == 'y' && sess_has(s, XS_SF_SERVER_BINDING) &&
               (s->cfg->rewrites & XS_REWRITE_SASL_PLUS)) {
        /* RFC 5802 section 6: a server that supports channel binding MUST fail a login whose
         * gs2 flag is 'y', the sign that its -PLUS offer was removed on the way. Servers differ
         * (ejabberd 23.01 accepts it), so what is certain is said here, and the server's answer
         * is reported when it comes (xs_sess_server_auth_answer()). */
        sess_set(s, XS_SF_WARNED_BINDING);
        sess_set(s, XS_SF_DOWNGRADE_SENT);
        xs_sess_note(
            s, "warn",
            "channel binding: the server offers SCRAM -PLUS mechanisms, which xmppscope "
            "removed (built-in rewrite 'sasl-plus'), and the client's SCRAM header says 'y' "
            "(it supports channel binding but believes the server does not). This is a "
            "downgrade the server should detect and refuse (RFC 5802 section 6: a server that "
            "supports channel binding must fail this login). A man in the middle cannot carry "
            "channel binding (RFC 9266: it binds the login to one TLS connection). If the "
            "server refuses the login, log in with PLAIN for this test, or make the server not "
            "offer -PLUS (e.g. TLS 1.3 on Prosody 0.12).");
    }
}

/* The server's answer to a SASL login: after a SCRAM 'y' login that follows a removed -PLUS
 * offer (xs_sess_check_channel_binding()), <success/> means the server did not detect the
 * downgrade. */
void xs_sess_server_auth_answer(xs_session *s, const xs_event *ev)
{
    if (!sess_has(s, XS_SF_DOWNGRADE_SENT))
        return;
    if (xs_sess_is_el(ev, NS_SASL, "success") || xs_sess_is_el(ev, NS_SASL2, "success")) {
        sess_clear(s, XS_SF_DOWNGRADE_SENT);
        xs_sess_note(
            s, "warn",
            "channel binding: the server did not detect the downgrade: it accepted a SCRAM "
            "login with gs2 flag 'y' although it offers channel binding (RFC 5802 section 6 "
            "says it must refuse it)");
    } else if (xs_sess_is_el(ev, NS_SASL, "failure") || xs_sess_is_el(ev, NS_SASL2, "failure")) {
        sess_clear(s, XS_SF_DOWNGRADE_SENT);
    }
}

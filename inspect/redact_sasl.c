/* Secrets redaction, SASL: the payloads of SASL (RFC 6120) and SASL2 (XEP-0388) elements, PLAIN
 * and SCRAM told apart and described in the note, and XEP-0484 FAST tokens; and the GS2 header a
 * SCRAM client-first message starts with, which the session reads for channel binding. See
 * redact.h. */
#include "inspect/redact.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/tree.h>

#include "inspect/b64.h"
#include "inspect/error.h"
#include "inspect/redact_impl.h"

/* Most attributes a SCRAM message may have before we call it something else. */
#define SCRAM_MAX_ATTRS 16

/* ---- GS2 header ---------------------------------------------------------------------------- */

/* Parses `gs2-cbind-flag "," [authzid] ","` at the start of d. Returns the header's length, or 0
 * when there is none; sets *flag and the channel binding name's place in d. */
static size_t gs2_header(const unsigned char *d, size_t len, int *flag, size_t *cb_off,
                         size_t *cb_len)
{
    size_t i;

    *flag = 0;
    *cb_off = 0;
    *cb_len = 0;
    if (len < 3)
        return 0;
    if (d[0] == 'n' || d[0] == 'y') {
        i = 1;
    } else if (d[0] == 'p' && d[1] == '=') {
        /* cb-name = 1*(ALPHA / DIGIT / "." / "-") */
        for (i = 2; i < len; i++) {
            unsigned char c = d[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-'))
                break;
        }
        if (i == 2)
            return 0;
        *cb_off = 2;
        *cb_len = i - 2;
    } else {
        return 0;
    }
    if (i >= len || d[i] != ',')
        return 0;
    i++;
    if (i < len && d[i] == 'a') {
        if (i + 1 >= len || d[i + 1] != '=')
            return 0;
        for (i += 2; i < len && d[i] != ','; i++)
            if (d[i] == '\0')
                return 0;
    }
    if (i >= len || d[i] != ',')
        return 0;
    *flag = d[0];
    return i + 1;
}

int xs_sasl_gs2_flag(const char *decoded, size_t len, char *cb_name_out, size_t cap)
{
    int flag;
    size_t cb_off, cb_len;

    if (cb_name_out != NULL && cap > 0)
        cb_name_out[0] = '\0';
    if (decoded == NULL ||
        gs2_header((const unsigned char *)decoded, len, &flag, &cb_off, &cb_len) == 0)
        return 0;
    if (flag == 'p' && cb_name_out != NULL) {
        if (cb_len >= cap)
            return 0;
        memcpy(cb_name_out, decoded + cb_off, cb_len);
        cb_name_out[cb_len] = '\0';
    }
    return flag;
}

/* ---- SASL ---------------------------------------------------------------------------------- */

typedef struct sattr {
    char key;
    const unsigned char *val;
    size_t len;
} sattr;

/* Splits a SCRAM message into its `k=value` attributes. Returns their count, or 0 when d is not
 * such a list. */
static size_t scram_attrs(const unsigned char *d, size_t len, sattr *a, size_t max)
{
    size_t n = 0, i = 0;

    while (i <= len) {
        const unsigned char *end = memchr(d + i, ',', len - i);
        size_t plen = end != NULL ? (size_t)(end - (d + i)) : len - i;

        if (n == max || plen < 2 || d[i + 1] != '=' ||
            !((d[i] >= 'a' && d[i] <= 'z') || (d[i] >= 'A' && d[i] <= 'Z')))
            return 0;
        a[n].key = (char)d[i];
        a[n].val = d + i + 2;
        a[n].len = plen - 2;
        n++;
        i += plen + 1;
    }
    return n;
}

static const sattr *scram_find(const sattr *a, size_t n, char key)
{
    for (size_t i = 0; i < n; i++)
        if (a[i].key == key)
            return &a[i];
    return NULL;
}

/* Writes the mechanism (or family) a note is about. */
static void note_prefix(rctx *c, const char *prefix)
{
    xs_note_bytes(&c->note, prefix, strlen(prefix));
    xs_note_str(&c->note, " ");
}

/* Writes a SCRAM message attribute by attribute, masking the one keyed `secret`. */
static void note_scram(rctx *c, const char *prefix, const char *what, const sattr *a, size_t n,
                       char secret)
{
    note_prefix(c, prefix);
    xs_note_str(&c->note, what);
    xs_note_str(&c->note, " \"");
    for (size_t i = 0; i < n; i++) {
        char k[3] = {a[i].key, '=', '\0'};
        if (i > 0)
            xs_note_str(&c->note, ",");
        xs_note_str(&c->note, k);
        if (a[i].key == secret && !c->show)
            xs_note_str(&c->note, XS_REDACT_MASK);
        else
            xs_note_bytes(&c->note, a[i].val, a[i].len);
    }
    xs_note_str(&c->note, "\"");
}

/* Annotates a SCRAM message and says whether it carries a secret. Returns 1 when d is a SCRAM
 * message (with *secret set), 0 (having written nothing) when it is not one. */
static int scram_payload(rctx *c, const char *prefix, const unsigned char *d, size_t len,
                         int *secret)
{
    sattr a[SCRAM_MAX_ATTRS];
    size_t n, hlen, cb_off, cb_len;
    int flag;

    *secret = 0;
    if (memchr(d, '\0', len) != NULL)
        return 0;
    hlen = gs2_header(d, len, &flag, &cb_off, &cb_len);
    if (hlen > 0) {
        /* client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions] */
        size_t first;

        n = scram_attrs(d + hlen, len - hlen, a, SCRAM_MAX_ATTRS);
        first = n > 0 && a[0].key == 'm' ? 1 : 0;
        if (n < first + 2 || a[first].key != 'n' || a[first + 1].key != 'r')
            return 0;
        note_prefix(c, prefix);
        xs_note_str(&c->note, "client-first \"");
        xs_note_bytes(&c->note, d, len);
        xs_note_str(&c->note, "\" gs2=");
        c->out->gs2_flag = flag;
        if (flag == 'p') {
            size_t l = cb_len < sizeof(c->out->cb_name) ? cb_len : sizeof(c->out->cb_name) - 1;
            memcpy(c->out->cb_name, d + cb_off, l);
            c->out->cb_name[l] = '\0';
            xs_note_str(&c->note, "p (channel binding ");
            xs_note_bytes(&c->note, d + cb_off, cb_len);
            xs_note_str(&c->note, ")");
        } else if (flag == 'y') {
            xs_note_str(&c->note,
                        "y (client supports channel binding, thinks the server does not)");
        } else {
            xs_note_str(&c->note, "n (no channel binding)");
        }
        return 1;
    }
    n = scram_attrs(d, len, a, SCRAM_MAX_ATTRS);
    if (n == 0)
        return 0;
    switch (a[0].key) {
    case 'r':
        if (scram_find(a, n, 's') == NULL || scram_find(a, n, 'i') == NULL)
            return 0;
        note_scram(c, prefix, "server-first", a, n, '\0');
        return 1;
    case 'c':
        /* The proof, with the salt and nonces seen before, allows a dictionary attack on the
         * password: the whole client-final message is masked in the XML. */
        note_scram(c, prefix, "client-final", a, n, 'p');
        *secret = 1;
        return 1;
    case 'v':
        note_scram(c, prefix, "server-final", a, n, 'v');
        *secret = 1;
        return 1;
    case 'e':
        note_scram(c, prefix, "server-final", a, n, '\0');
        return 1;
    default:
        return 0;
    }
}

/* Annotates a PLAIN message (authzid NUL authcid NUL password). Returns 0, having written
 * nothing, when d is not one. */
static int plain_payload(rctx *c, const char *prefix, const unsigned char *d, size_t len)
{
    const unsigned char *nul1 = memchr(d, '\0', len), *nul2, *pw;
    size_t l1, l2;

    if (nul1 == NULL)
        return 0;
    l1 = (size_t)(nul1 - d);
    nul2 = memchr(nul1 + 1, '\0', len - l1 - 1);
    if (nul2 == NULL)
        return 0;
    l2 = (size_t)(nul2 - (nul1 + 1));
    pw = nul2 + 1;
    if (memchr(pw, '\0', len - l1 - l2 - 2) != NULL)
        return 0;
    note_prefix(c, prefix);
    xs_note_str(&c->note, "authzid=\"");
    xs_note_bytes(&c->note, d, l1);
    xs_note_str(&c->note, "\" authcid=\"");
    xs_note_bytes(&c->note, nul1 + 1, l2);
    if (c->show) {
        xs_note_str(&c->note, "\" password=\"");
        xs_note_bytes(&c->note, pw, len - l1 - l2 - 2);
        xs_note_str(&c->note, "\"");
    } else {
        xs_note_str(&c->note, "\" password=" XS_REDACT_MASK);
    }
    return 1;
}

static size_t count_nul(const unsigned char *d, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += d[i] == '\0';
    return n;
}

/* Handles the base64 payload of one SASL element. `mech` is the mechanism when the element
 * names it, NULL when the content must tell. */
static int sasl_payload(rctx *c, xmlNode *el, const char *mech)
{
    char *text = NULL;
    unsigned char *dec = NULL;
    size_t len, dlen, sig = 0;
    int odd, rc, known, secret = 0, opaque = 0;

    rc = xs_redact_element_text(el, &text, &len, &odd);
    if (rc != 0)
        goto out;
    for (size_t i = 0; i < len; i++)
        sig += !xs_base64_space((unsigned char)text[i]);
    if (!odd && sig == 0)
        goto out; /* no payload at all, as in <auth mechanism='PLAIN'/> */
    xs_note_sep(&c->note);
    if (odd) {
        if (mech != NULL)
            note_prefix(c, mech);
        xs_note_str(&c->note, "unexpected child elements");
        secret = opaque = 1;
        goto out;
    }
    rc = xs_base64_decode(text, len, &dec, &dlen);
    if (rc == XS_EPARSE) {
        rc = 0;
        if (mech != NULL)
            note_prefix(c, mech);
        xs_note_fmt(&c->note, "invalid base64 (%zu bytes)", len);
        secret = opaque = 1;
        goto out;
    }
    if (rc != 0)
        goto out;
    if (dlen == 0) {
        if (mech != NULL)
            note_prefix(c, mech);
        xs_note_str(&c->note, "(empty)");
        goto out;
    }
    if (mech != NULL && strcasecmp(mech, "PLAIN") == 0) {
        known = plain_payload(c, mech, dec, dlen);
        secret = 1;
    } else if (mech != NULL && strncasecmp(mech, "SCRAM-", 6) == 0) {
        known = scram_payload(c, mech, dec, dlen, &secret);
    } else if (mech != NULL) {
        known = 0;
    } else if (count_nul(dec, dlen) == 2) {
        known = plain_payload(c, "PLAIN", dec, dlen);
        secret = 1;
    } else {
        known = scram_payload(c, "SCRAM", dec, dlen, &secret);
    }
    if (!known) {
        /* OAUTHBEARER and X-OAUTH2 tokens, DIGEST-MD5 responses, FAST HT-* hashes...: any of it
         * may be secret. */
        note_prefix(c, mech != NULL ? mech : "SASL");
        xs_note_fmt(&c->note, "payload (%zu bytes)", dlen);
        if (c->show) {
            xs_note_str(&c->note, " \"");
            xs_note_bytes(&c->note, dec, dlen);
            xs_note_str(&c->note, "\"");
        }
        secret = opaque = 1;
    }
out:
    if (rc == 0 && secret && !c->show) {
        if (opaque)
            xs_note_str(&c->note, " masked");
        rc = xs_redact_mask_children(c, el);
    }
    free(text);
    free(dec);
    return rc;
}

/* Masks the token attribute of a XEP-0484 FAST <token/> handed out in a SASL2 <success/>. */
static int fast_token(rctx *c, xmlNode *el)
{
    xmlChar *tok;
    int rc = xs_redact_get_prop(el, "token", &tok);

    if (rc != 0 || tok == NULL)
        return rc;
    xs_note_sep(&c->note);
    if (c->show) {
        xs_note_str(&c->note, "FAST token=\"");
        xs_note_bytes(&c->note, tok, strlen((const char *)tok));
        xs_note_str(&c->note, "\"");
    } else {
        xs_note_str(&c->note, "FAST token=" XS_REDACT_MASK);
        c->out->masked++;
        if (xmlSetProp(el, (const xmlChar *)"token", (const xmlChar *)XS_REDACT_MASK) == NULL)
            rc = XS_ENOMEM;
    }
    xmlFree(tok);
    return rc;
}

/* SASL (RFC 6120 section 6) and SASL2 (XEP-0388) elements directly inside the stream. */
int xs_redact_sasl(rctx *c, xmlNode *st)
{
    xmlChar *mech = NULL;
    int rc = 0;

    if (xs_redact_is_el(st, NS_SASL, NULL)) {
        const char *name = (const char *)st->name;
        if (strcmp(name, "auth") == 0)
            rc = xs_redact_get_prop(st, "mechanism", &mech);
        if (rc == 0 && (strcmp(name, "auth") == 0 || strcmp(name, "response") == 0 ||
                        strcmp(name, "challenge") == 0 || strcmp(name, "success") == 0))
            rc = sasl_payload(c, st, (const char *)mech);
        goto out;
    }
    if (xs_redact_is_el(st, NS_SASL2, "response") || xs_redact_is_el(st, NS_SASL2, "challenge")) {
        rc = sasl_payload(c, st, NULL);
        goto out;
    }
    if (xs_redact_is_el(st, NS_SASL2, "authenticate")) {
        rc = xs_redact_get_prop(st, "mechanism", &mech);
        for (xmlNode *k = st->children; rc == 0 && k != NULL; k = k->next)
            if (xs_redact_is_el(k, NS_SASL2, "initial-response"))
                rc = sasl_payload(c, k, (const char *)mech);
        goto out;
    }
    if (xs_redact_is_el(st, NS_SASL2, "success") || xs_redact_is_el(st, NS_SASL2, "continue")) {
        for (xmlNode *k = st->children; rc == 0 && k != NULL; k = k->next) {
            if (xs_redact_is_el(k, NS_SASL2, "additional-data"))
                rc = sasl_payload(c, k, NULL);
            else if (xs_redact_is_el(k, NS_FAST, "token"))
                rc = fast_token(c, k);
        }
    }
out:
    xmlFree(mech);
    return rc;
}

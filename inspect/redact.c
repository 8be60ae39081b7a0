/* Secrets redaction: see redact.h.
 *
 * The tree of the event is never touched. A stanza that may carry a secret is first copied into a
 * document of our own, under a wrapper element declaring the namespaces the stanza inherited, and
 * the secrets are masked in that copy. The annotation is built in a fixed buffer, so a hostile
 * payload can make it long only up to XS_REDACT_NOTE_MAX.
 *
 * A stanza without a tree (the parser builds none unless asked) is looked at from its names and
 * bytes first (may_be_candidate), which rules out nearly every stanza of a session at the cost
 * of a few comparisons; the rest are parsed from their raw bytes, under a wrapper declaring what
 * the event tells of the namespaces in scope, and masked as with a tree. The tests compare the
 * two ways stanza by stanza (tests/unit/test_redact.c, test_print.c).
 */
#include "inspect/redact.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/parser.h>

#include "inspect/b64.h"
#include "inspect/buf.h"
#include "inspect/error.h"
#include "inspect/fragment.h"
#include "inspect/utf8.h"

#define NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_SASL2 "urn:xmpp:sasl:2"
#define NS_REGISTER "jabber:iq:register"
#define NS_IQ_AUTH "jabber:iq:auth"
#define NS_XDATA "jabber:x:data"
#define NS_FAST "urn:xmpp:fast:0"
#define NS_MUC "http://jabber.org/protocol/muc"
#define NS_MUC_USER "http://jabber.org/protocol/muc#user"
#define NS_CONFERENCE "jabber:x:conference"

/* Prefixes of the stanza's attributes declared on the wrapper at most; the others must be
 * declared by the stanza itself, else it cannot be parsed and is masked whole. A bound, so that a
 * stanza with thousands of prefixed attributes costs no more than one with a few. */
#define RAW_MAX_ATTR_PREFIXES 8

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

/* ---- the annotation ------------------------------------------------------------------------ */

typedef struct note {
    char buf[XS_REDACT_NOTE_MAX + 1];
    size_t len;
    int full;
} note;

/* Appends one unit (a character or an escape) whole, or ends the note with "...". */
static void note_put(note *n, const char *s, size_t len)
{
    if (n->full)
        return;
    if (len > XS_REDACT_NOTE_MAX - 3 - n->len) {
        memcpy(n->buf + n->len, "...", 3);
        n->len += 3;
        n->full = 1;
        return;
    }
    memcpy(n->buf + n->len, s, len);
    n->len += len;
}

static void note_str(note *n, const char *s)
{
    /* Our own fixed strings: short, so put whole. */
    note_put(n, s, strlen(s));
}

static void note_fmt(note *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note_fmt(note *n, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    int k;

    va_start(ap, fmt);
    k = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (k > 0)
        note_put(n, tmp, (size_t)k < sizeof(tmp) ? (size_t)k : sizeof(tmp) - 1);
}

/* Terminal controls and bidirectional overrides that must not reach a terminal as they are. */
static int unsafe_cp(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || (cp >= 0x202a && cp <= 0x202e) ||
           (cp >= 0x2066 && cp <= 0x2069) || cp == 0x2028 || cp == 0x2029;
}

/* Appends bytes of a payload for display between double quotes: NUL as \0, other non-printable
 * or invalid bytes as \xNN, '"' and '\' escaped, valid printable UTF-8 as it is. */
static void note_bytes(note *n, const void *data, size_t len)
{
    const unsigned char *s = data;
    size_t i = 0;

    while (i < len && !n->full) {
        uint32_t cp;
        size_t k = xs_utf8_next(s + i, len - i, &cp);
        char esc[40];
        size_t e = 0;

        if (k == 0) {
            snprintf(esc, sizeof(esc), "\\x%02X", s[i]);
            note_str(n, esc);
            i++;
            continue;
        }
        if (cp == 0) {
            note_str(n, "\\0");
        } else if (cp == '"' || cp == '\\') {
            esc[0] = '\\';
            esc[1] = (char)cp;
            note_put(n, esc, 2);
        } else if (unsafe_cp(cp)) {
            for (size_t j = 0; j < k; j++)
                e += (size_t)snprintf(esc + e, sizeof(esc) - e, "\\x%02X", s[i + j]);
            note_put(n, esc, e);
        } else {
            note_put(n, (const char *)s + i, k);
        }
        i += k;
    }
}

static void note_sep(note *n)
{
    if (n->len > 0)
        note_str(n, "; ");
}

/* ---- tree helpers -------------------------------------------------------------------------- */

typedef struct rctx {
    int show;
    xs_redaction *out;
    note note;
} rctx;

static int is_el(const xmlNode *n, const char *ns, const char *name)
{
    return n != NULL && n->type == XML_ELEMENT_NODE && n->ns != NULL && n->ns->href != NULL &&
           strcmp((const char *)n->ns->href, ns) == 0 &&
           (name == NULL || strcmp((const char *)n->name, name) == 0);
}

/* Next node after cur in document order, staying inside root. */
static xmlNode *walk_next(xmlNode *root, xmlNode *cur)
{
    if (cur->type == XML_ELEMENT_NODE && cur->children != NULL)
        return cur->children;
    while (cur != root) {
        if (cur->next != NULL)
            return cur->next;
        cur = cur->parent;
    }
    return NULL;
}

/* Reads an attribute without a namespace. *val is NULL when absent; the caller xmlFree()s it. */
static int get_prop(const xmlNode *n, const char *name, xmlChar **val)
{
    *val = NULL;
    if (xmlHasNsProp(n, (const xmlChar *)name, NULL) == NULL)
        return 0;
    *val = xmlGetNoNsProp(n, (const xmlChar *)name);
    return *val != NULL ? 0 : XS_ENOMEM;
}

/* Collects the text of el's text and CDATA children into a malloc'd string. *odd is set when el
 * has children of another kind (elements), which no secret-bearing element should have. */
static int element_text(const xmlNode *el, char **text, size_t *len, int *odd)
{
    size_t total = 0;
    char *buf;

    *text = NULL;
    *len = 0;
    *odd = 0;
    for (const xmlNode *k = el->children; k != NULL; k = k->next) {
        if (k->type == XML_TEXT_NODE || k->type == XML_CDATA_SECTION_NODE) {
            if (k->content != NULL)
                total += strlen((const char *)k->content);
        } else {
            *odd = 1;
        }
    }
    buf = malloc(total + 1);
    if (buf == NULL)
        return XS_ENOMEM;
    for (const xmlNode *k = el->children; k != NULL; k = k->next) {
        if ((k->type == XML_TEXT_NODE || k->type == XML_CDATA_SECTION_NODE) && k->content != NULL) {
            size_t l = strlen((const char *)k->content);
            memcpy(buf + *len, k->content, l);
            *len += l;
        }
    }
    buf[*len] = '\0';
    *text = buf;
    return 0;
}

/* Replaces everything inside el with the mask. */
static int mask_children(rctx *c, xmlNode *el)
{
    xmlNode *t;

    while (el->children != NULL) {
        xmlNode *k = el->children;
        xmlUnlinkNode(k);
        xmlFreeNode(k);
    }
    c->out->masked++;
    t = xmlNewDocText(el->doc, (const xmlChar *)XS_REDACT_MASK);
    if (t == NULL)
        return XS_ENOMEM;
    if (xmlAddChild(el, t) == NULL) {
        xmlFreeNode(t);
        return XS_ENOMEM;
    }
    return 0;
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
    note_bytes(&c->note, prefix, strlen(prefix));
    note_str(&c->note, " ");
}

/* Writes a SCRAM message attribute by attribute, masking the one keyed `secret`. */
static void note_scram(rctx *c, const char *prefix, const char *what, const sattr *a, size_t n,
                       char secret)
{
    note_prefix(c, prefix);
    note_str(&c->note, what);
    note_str(&c->note, " \"");
    for (size_t i = 0; i < n; i++) {
        char k[3] = {a[i].key, '=', '\0'};
        if (i > 0)
            note_str(&c->note, ",");
        note_str(&c->note, k);
        if (a[i].key == secret && !c->show)
            note_str(&c->note, XS_REDACT_MASK);
        else
            note_bytes(&c->note, a[i].val, a[i].len);
    }
    note_str(&c->note, "\"");
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
        note_str(&c->note, "client-first \"");
        note_bytes(&c->note, d, len);
        note_str(&c->note, "\" gs2=");
        c->out->gs2_flag = flag;
        if (flag == 'p') {
            size_t l = cb_len < sizeof(c->out->cb_name) ? cb_len : sizeof(c->out->cb_name) - 1;
            memcpy(c->out->cb_name, d + cb_off, l);
            c->out->cb_name[l] = '\0';
            note_str(&c->note, "p (channel binding ");
            note_bytes(&c->note, d + cb_off, cb_len);
            note_str(&c->note, ")");
        } else if (flag == 'y') {
            note_str(&c->note, "y (client supports channel binding, thinks the server does not)");
        } else {
            note_str(&c->note, "n (no channel binding)");
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
    note_str(&c->note, "authzid=\"");
    note_bytes(&c->note, d, l1);
    note_str(&c->note, "\" authcid=\"");
    note_bytes(&c->note, nul1 + 1, l2);
    if (c->show) {
        note_str(&c->note, "\" password=\"");
        note_bytes(&c->note, pw, len - l1 - l2 - 2);
        note_str(&c->note, "\"");
    } else {
        note_str(&c->note, "\" password=" XS_REDACT_MASK);
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

    rc = element_text(el, &text, &len, &odd);
    if (rc != 0)
        goto out;
    for (size_t i = 0; i < len; i++)
        sig += !xs_base64_space((unsigned char)text[i]);
    if (!odd && sig == 0)
        goto out; /* no payload at all, as in <auth mechanism='PLAIN'/> */
    note_sep(&c->note);
    if (odd) {
        if (mech != NULL)
            note_prefix(c, mech);
        note_str(&c->note, "unexpected child elements");
        secret = opaque = 1;
        goto out;
    }
    rc = xs_base64_decode(text, len, &dec, &dlen);
    if (rc == XS_EPARSE) {
        rc = 0;
        if (mech != NULL)
            note_prefix(c, mech);
        note_fmt(&c->note, "invalid base64 (%zu bytes)", len);
        secret = opaque = 1;
        goto out;
    }
    if (rc != 0)
        goto out;
    if (dlen == 0) {
        if (mech != NULL)
            note_prefix(c, mech);
        note_str(&c->note, "(empty)");
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
        note_fmt(&c->note, "payload (%zu bytes)", dlen);
        if (c->show) {
            note_str(&c->note, " \"");
            note_bytes(&c->note, dec, dlen);
            note_str(&c->note, "\"");
        }
        secret = opaque = 1;
    }
out:
    if (rc == 0 && secret && !c->show) {
        if (opaque)
            note_str(&c->note, " masked");
        rc = mask_children(c, el);
    }
    free(text);
    free(dec);
    return rc;
}

/* Masks the token attribute of a XEP-0484 FAST <token/> handed out in a SASL2 <success/>. */
static int fast_token(rctx *c, xmlNode *el)
{
    xmlChar *tok;
    int rc = get_prop(el, "token", &tok);

    if (rc != 0 || tok == NULL)
        return rc;
    note_sep(&c->note);
    if (c->show) {
        note_str(&c->note, "FAST token=\"");
        note_bytes(&c->note, tok, strlen((const char *)tok));
        note_str(&c->note, "\"");
    } else {
        note_str(&c->note, "FAST token=" XS_REDACT_MASK);
        c->out->masked++;
        if (xmlSetProp(el, (const xmlChar *)"token", (const xmlChar *)XS_REDACT_MASK) == NULL)
            rc = XS_ENOMEM;
    }
    xmlFree(tok);
    return rc;
}

/* SASL (RFC 6120 section 6) and SASL2 (XEP-0388) elements directly inside the stream. */
static int sasl_stanza(rctx *c, xmlNode *st)
{
    xmlChar *mech = NULL;
    int rc = 0;

    if (is_el(st, NS_SASL, NULL)) {
        const char *name = (const char *)st->name;
        if (strcmp(name, "auth") == 0)
            rc = get_prop(st, "mechanism", &mech);
        if (rc == 0 && (strcmp(name, "auth") == 0 || strcmp(name, "response") == 0 ||
                        strcmp(name, "challenge") == 0 || strcmp(name, "success") == 0))
            rc = sasl_payload(c, st, (const char *)mech);
        goto out;
    }
    if (is_el(st, NS_SASL2, "response") || is_el(st, NS_SASL2, "challenge")) {
        rc = sasl_payload(c, st, NULL);
        goto out;
    }
    if (is_el(st, NS_SASL2, "authenticate")) {
        rc = get_prop(st, "mechanism", &mech);
        for (xmlNode *k = st->children; rc == 0 && k != NULL; k = k->next)
            if (is_el(k, NS_SASL2, "initial-response"))
                rc = sasl_payload(c, k, (const char *)mech);
        goto out;
    }
    if (is_el(st, NS_SASL2, "success") || is_el(st, NS_SASL2, "continue")) {
        for (xmlNode *k = st->children; rc == 0 && k != NULL; k = k->next) {
            if (is_el(k, NS_SASL2, "additional-data"))
                rc = sasl_payload(c, k, NULL);
            else if (is_el(k, NS_FAST, "token"))
                rc = fast_token(c, k);
        }
    }
out:
    xmlFree(mech);
    return rc;
}

/* ---- XEP-0077 and XEP-0078 ----------------------------------------------------------------- */

/* Masks the text of one secret-bearing element of a registration or legacy auth query. */
static int mask_field(rctx *c, xmlNode *el, const char *ns, const char *label)
{
    char *text = NULL;
    size_t len;
    int odd, rc;

    if (el->children == NULL)
        return 0; /* an empty field, as in the form a server sends: nothing secret */
    note_sep(&c->note);
    note_str(&c->note, ns);
    note_str(&c->note, " ");
    note_str(&c->note, label);
    if (!c->show) {
        note_str(&c->note, "=" XS_REDACT_MASK);
        return mask_children(c, el);
    }
    rc = element_text(el, &text, &len, &odd);
    if (rc != 0)
        return rc;
    note_str(&c->note, "=\"");
    note_bytes(&c->note, text, len);
    note_str(&c->note, odd ? "\" (and child elements)" : "\"");
    free(text);
    return 0;
}

/* Whether a data form field's var names a password: XEP-0077's and XEP-0133's "password" and
 * "password-verify" (a submitted form need not repeat the field's type), and XEP-0045's room
 * password. */
static int secret_var(const char *var)
{
    static const char *const vars[] = {"password", "password-verify", "muc#roomconfig_roomsecret"};

    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        if (strcmp(var, vars[i]) == 0)
            return 1;
    return 0;
}

/* A data form field (XEP-0004) that holds a password: of type text-private, or one whose var
 * names a password (secret_var), in any stanza: a registration form, a XEP-0133 change-password
 * or add-user command, a XEP-0045 room configuration. */
static int secret_field(const xmlNode *el)
{
    xmlAttr *var, *type;
    const xmlNode *v, *t;

    if (!is_el(el, NS_XDATA, "field"))
        return 0;
    var = xmlHasNsProp(el, (const xmlChar *)"var", NULL);
    type = xmlHasNsProp(el, (const xmlChar *)"type", NULL);
    v = var != NULL ? var->children : NULL;
    t = type != NULL ? type->children : NULL;
    /* Attribute values the parser made are one text node; anything else is treated as secret. */
    if ((v != NULL && (v->type != XML_TEXT_NODE || v->next != NULL)) ||
        (t != NULL && (t->type != XML_TEXT_NODE || t->next != NULL)))
        return 1;
    return (v != NULL && v->content != NULL && secret_var((const char *)v->content)) ||
           (t != NULL && t->content != NULL &&
            strcmp((const char *)t->content, "text-private") == 0);
}

/* A MUC room password (XEP-0045): sent in the <x/> of a join presence, and by the room in a
 * mediated invitation. */
static int muc_password(const xmlNode *el)
{
    return is_el(el, NS_MUC, "password") || is_el(el, NS_MUC_USER, "password");
}

/* A XEP-0249 direct invitation, which carries the room's password in an attribute. */
static int conference_invite(const xmlNode *el)
{
    return is_el(el, NS_CONFERENCE, "x") && xmlHasNsProp(el, (const xmlChar *)"password", NULL);
}

/* Whether el, anywhere in a stanza, holds a secret of a form or of a room. */
static int stanza_secret(const xmlNode *el)
{
    return secret_field(el) || muc_password(el) || conference_invite(el);
}

/* The namespace a form field's note is labelled with: the XEP-0077 or XEP-0078 query it is in,
 * or the data form's own. */
static const char *form_label(const xmlNode *st, const xmlNode *field)
{
    for (const xmlNode *a = field->parent; a != NULL && a != st->parent; a = a->parent)
        if (is_el(a, NS_REGISTER, "query") || is_el(a, NS_IQ_AUTH, "query"))
            return (const char *)a->ns->href;
    return NS_XDATA;
}

/* Masks the password attribute of a XEP-0249 direct invitation, as mask_field() masks an element:
 * an empty one hides nothing. */
static int conference_password(rctx *c, xmlNode *el)
{
    xmlChar *pw;
    int rc = get_prop(el, "password", &pw);

    if (rc != 0 || pw == NULL || pw[0] == '\0')
        goto out;
    note_sep(&c->note);
    note_str(&c->note, NS_CONFERENCE " password");
    if (c->show) {
        note_str(&c->note, "=\"");
        note_bytes(&c->note, pw, strlen((const char *)pw));
        note_str(&c->note, "\"");
    } else {
        note_str(&c->note, "=" XS_REDACT_MASK);
        c->out->masked++;
        if (xmlSetProp(el, (const xmlChar *)"password", (const xmlChar *)XS_REDACT_MASK) == NULL)
            rc = XS_ENOMEM;
    }
out:
    xmlFree(pw);
    return rc;
}

/* Masks the values of password fields of data forms, MUC passwords and the room passwords of
 * direct invitations anywhere in the stanza. */
static int form_secrets(rctx *c, xmlNode *st)
{
    int rc = 0;

    for (xmlNode *e = st; rc == 0 && e != NULL; e = walk_next(st, e)) {
        if (e->type != XML_ELEMENT_NODE)
            continue;
        if (secret_field(e)) {
            const char *label = form_label(st, e);
            for (xmlNode *v = e->children; rc == 0 && v != NULL; v = v->next)
                if (is_el(v, NS_XDATA, "value"))
                    rc = mask_field(c, v, label, "form field");
        } else if (muc_password(e)) {
            rc = mask_field(c, e, (const char *)e->ns->href, "password");
        } else if (conference_invite(e)) {
            rc = conference_password(c, e);
        }
    }
    return rc;
}

static int query_secrets(rctx *c, xmlNode *q)
{
    const char *ns = (const char *)q->ns->href;
    int rc = 0;

    for (xmlNode *e = walk_next(q, q); rc == 0 && e != NULL; e = walk_next(q, e)) {
        if (e->type != XML_ELEMENT_NODE)
            continue;
        if (is_el(e, ns, "password"))
            rc = mask_field(c, e, ns, "password");
        else if (is_el(e, NS_IQ_AUTH, "digest"))
            rc = mask_field(c, e, ns, "digest");
    }
    return rc;
}

static int iq_secrets(rctx *c, xmlNode *st)
{
    int rc = 0;

    if (strcmp((const char *)st->name, "iq") == 0)
        for (xmlNode *k = st->children; rc == 0 && k != NULL; k = k->next)
            if (is_el(k, NS_REGISTER, "query") || is_el(k, NS_IQ_AUTH, "query"))
                rc = query_secrets(c, k);
    if (rc == 0)
        rc = form_secrets(c, st);
    return rc;
}

/* ---- the event ----------------------------------------------------------------------------- */

/* Whether a stanza is worth copying: only the authentication elements, iq queries, data forms,
 * MUC elements and direct invitations can carry the secrets we know about, and most stanzas are
 * none of these. */
static int candidate(const xmlNode *st)
{
    if (st == NULL || st->type != XML_ELEMENT_NODE)
        return 0;
    if (is_el(st, NS_SASL, NULL) || is_el(st, NS_SASL2, NULL))
        return 1;
    if (strcmp((const char *)st->name, "iq") == 0)
        for (const xmlNode *k = st->children; k != NULL; k = k->next)
            if (is_el(k, NS_REGISTER, "query") || is_el(k, NS_IQ_AUTH, "query"))
                return 1;
    for (xmlNode *e = (xmlNode *)st; e != NULL; e = walk_next((xmlNode *)st, e))
        if (e->type == XML_ELEMENT_NODE && stanza_secret(e))
            return 1;
    return 0;
}

/* Whether the n bytes at s start with the string w. */
static int starts(const char *s, size_t n, const char *w)
{
    size_t k = strlen(w);

    return n >= k && memcmp(s, w, k) == 0;
}

/* Whether the n bytes at s hold the string w, whose first character is rare in XML ('q'):
 * memchr() to each of those, cheaper here than memmem(), which prepares its search first. */
static int contains(const char *s, size_t n, const char *w)
{
    const char *end = s + n;

    for (const char *c = memchr(s, w[0], n); c != NULL;
         c = memchr(c + 1, w[0], (size_t)(end - c - 1)))
        if (starts(c, (size_t)(end - c), w))
            return 1;
    return 0;
}

/* Whether the bytes of an iq may hold a query in the XEP-0077 or XEP-0078 namespace whose name
 * does not depend on the stream (see may_be_candidate): the name "query", and "&" (a reference
 * may spell a namespace), a prefixed ":query" (the prefix may be the stream's), or one of the two
 * namespaces written out. One pass over the colons, which are few outside namespace names, finds
 * the last two. */
static int iq_may_hold_query(const char *raw, size_t len)
{
    static const char *const nss[] = {NS_REGISTER, NS_IQ_AUTH};
    const char *end = raw + len;

    if (!contains(raw, len, "query"))
        return 0;
    if (memchr(raw, '&', len) != NULL)
        return 1;
    for (const char *c = memchr(raw, ':', len); c != NULL;
         c = memchr(c + 1, ':', (size_t)(end - c - 1))) {
        if (starts(c + 1, (size_t)(end - c - 1), "query"))
            return 1;
        for (size_t i = 0; i < sizeof(nss) / sizeof(nss[0]); i++) {
            /* The namespace written out, found from its first colon. */
            size_t k = (size_t)(strchr(nss[i], ':') - nss[i]);
            if ((size_t)(c - raw) >= k && starts(c - k, (size_t)(end - (c - k)), nss[i]))
                return 1;
        }
    }
    return 0;
}

/* Whether the n bytes at s hold `name` as an element's name: after "<", "</" or a prefix's ":".
 * Text ("password: hunter2") does not count. */
static int has_element_name(const char *s, size_t n, const char *name)
{
    const char *end = s + n;

    for (const char *c = memchr(s, name[0], n); c != NULL;
         c = memchr(c + 1, name[0], (size_t)(end - c - 1)))
        if (c > s && (c[-1] == '<' || c[-1] == '/' || c[-1] == ':') &&
            starts(c, (size_t)(end - c), name))
            return 1;
    return 0;
}

/* Whether the n bytes at s hold a start tag named `name` with attributes: `name` after "<" or a
 * prefix's ":", then the whitespace that must come before an attribute. Namespace names such as
 * "urn:xmpp:ping" do not count for "x". */
static int has_start_tag_with_attrs(const char *s, size_t n, const char *name)
{
    const char *end = s + n;
    size_t k = strlen(name);

    for (const char *c = memchr(s, name[0], n); c != NULL;
         c = memchr(c + 1, name[0], (size_t)(end - c - 1)))
        if (c > s && (c[-1] == '<' || c[-1] == ':') && (size_t)(end - c) > k &&
            memcmp(c, name, k) == 0 &&
            (c[k] == ' ' || c[k] == '\t' || c[k] == '\r' || c[k] == '\n'))
            return 1;
    return 0;
}

/* Whether the bytes of a stanza may hold what stanza_secret() looks for. Element and attribute
 * names are written as they are: a MUC <password>, a data form <field>, the password attribute
 * of a direct invitation's <x> (whose namespace may come from the stream, so any <x> counts).
 * Attribute values may be spelled with character references ("&#"; the five named references
 * spell no letter): the field's var ("password", "password-verify", "...roomsecret") or type
 * ("text-private"). */
static int may_hold_stanza_secret(const char *raw, size_t len)
{
    if (has_element_name(raw, len, "password"))
        return 1;
    if (has_start_tag_with_attrs(raw, len, "x") && contains(raw, len, "password"))
        return 1;
    if (!has_element_name(raw, len, "field"))
        return 0;
    return contains(raw, len, "password") || contains(raw, len, "private") ||
           contains(raw, len, "roomsecret") || contains(raw, len, "&#");
}

/* For a stanza that came without a tree: whether candidate() might accept it, told from the
 * event's names and a search of its bytes, so that ordinary stanzas are not parsed. It must
 * never say no where candidate() would say yes on the stanza's tree, so it errs towards yes.
 *
 * The root's name and namespace are the event's. Any stanza may carry a data form's password
 * field or a room password (may_hold_stanza_secret). An iq is also a candidate with a child named
 * "query" in one of the two namespaces, and the name is written as it is in the bytes. So is the
 * namespace, unless it is spelled with references ('&'), or comes from outside the stanza: from
 * a prefix the stream element declares (a prefixed query), or from the default namespace in
 * scope at the iq (its own when it is unprefixed, which the event tells; unknown when it is
 * prefixed). */
static int may_be_candidate(const xs_event *ev)
{
    if (ev->name == NULL)
        return 1;
    if (ev->ns != NULL && (strcmp(ev->ns, NS_SASL) == 0 || strcmp(ev->ns, NS_SASL2) == 0))
        return 1;
    if (may_hold_stanza_secret(ev->raw, ev->len))
        return 1;
    if (strcmp(ev->name, "iq") != 0)
        return 0;
    if (ev->prefix != NULL ||
        (ev->ns != NULL && (strcmp(ev->ns, NS_REGISTER) == 0 || strcmp(ev->ns, NS_IQ_AUTH) == 0)))
        return contains(ev->raw, ev->len, "query");
    return iq_may_hold_query(ev->raw, ev->len);
}

static int declared_on(const xmlNode *n, const xmlChar *prefix)
{
    for (const xmlNs *ns = n->nsDef; ns != NULL; ns = ns->next)
        if (xmlStrEqual(ns->prefix, prefix))
            return 1;
    return 0;
}

/* Binds *ns, a name's namespace in the copy, to the declaration in scope at el with the prefix
 * of `orig`, the original's, when that one declares the same namespace. */
static void same_prefix(xmlNode *el, xmlNs **ns, const xmlNs *orig)
{
    xmlNs *want;

    if (*ns == NULL || xmlStrEqual((*ns)->prefix, orig->prefix))
        return;
    want = xmlSearchNs(el->doc, el, orig->prefix);
    if (want != NULL && xmlStrEqual(want->href, orig->href))
        *ns = want;
}

/* xmlDOMWrapCloneNode() binds each name of the copy to some declaration of its namespace in
 * scope, which need not have the original's prefix when the stream element declares one
 * namespace twice (as the default namespace and with a prefix). Puts the original's prefixes
 * back, so that the masked copy reads as the stanza did, and as the same stanza parsed from its
 * raw bytes (parse_raw). The two trees have the same shape. */
static void keep_prefixes(xmlNode *orig, xmlNode *copy)
{
    xmlNode *o = orig, *c = copy;

    while (o != NULL && c != NULL) {
        if (o->type == XML_ELEMENT_NODE && c->type == XML_ELEMENT_NODE) {
            xmlAttr *oa = o->properties, *ca = c->properties;

            if (o->ns != NULL)
                same_prefix(c, &c->ns, o->ns);
            for (; oa != NULL && ca != NULL; oa = oa->next, ca = ca->next)
                if (oa->ns != NULL)
                    same_prefix(c, &ca->ns, oa->ns);
        }
        o = walk_next(orig, o);
        c = walk_next(copy, c);
    }
}

/* A set of namespace declarations (pointers), by open addressing: which ones copy_stanza() has
 * met, so that each costs one look-up whatever the number of declarations in scope. */
typedef struct nsset {
    const xmlNs **slot;
    size_t cap, n; /* cap is 0 or a power of two, at least twice n */
} nsset;

static size_t nsset_hash(const xmlNs *ns, size_t cap)
{
    uint64_t h = (uint64_t)(uintptr_t)ns * UINT64_C(0x9e3779b97f4a7c15);

    return (size_t)(h >> 32) & (cap - 1);
}

/* Adds ns. Returns 1 when it was added, 0 when it was there, XS_ENOMEM. */
static int nsset_add(nsset *s, const xmlNs *ns)
{
    size_t i;

    if (2 * (s->n + 1) > s->cap) {
        size_t cap = s->cap > 0 ? 2 * s->cap : 16;
        const xmlNs **slot = calloc(cap, sizeof(*slot));

        if (slot == NULL)
            return XS_ENOMEM;
        for (size_t k = 0; k < s->cap; k++) {
            if (s->slot[k] == NULL)
                continue;
            for (i = nsset_hash(s->slot[k], cap); slot[i] != NULL; i = (i + 1) & (cap - 1))
                ;
            slot[i] = s->slot[k];
        }
        free(s->slot);
        s->slot = slot;
        s->cap = cap;
    }
    for (i = nsset_hash(ns, s->cap); s->slot[i] != NULL; i = (i + 1) & (s->cap - 1))
        if (s->slot[i] == ns)
            return 0;
    s->slot[i] = ns;
    s->n++;
    return 1;
}

/* Declares on w a namespace the stanza takes from outside itself (from the stream element), the
 * first time the stanza refers to it. A declaration made inside the stanza is in `seen` before
 * any reference to it (it is on the referring element or an ancestor, met first in document
 * order), so it is never declared again. */
static int declare_used(xmlNode *w, nsset *seen, const xmlNs *ns)
{
    int rc;

    if (ns == NULL)
        return 0;
    rc = nsset_add(seen, ns);
    if (rc <= 0)
        return rc;
    /* The xml prefix is bound without a declaration (libxml2 refuses to declare it). */
    if (xmlStrEqual(ns->prefix, (const xmlChar *)"xml"))
        return 0;
    if (xmlNewNs(w, ns->href, ns->prefix) != NULL)
        return 0;
    /* Two declarations of one prefix from outside: the tree of a well-formed stream has none;
     * the first stays. Only this rare failure pays for a search. */
    return declared_on(w, ns->prefix) ? 0 : XS_ENOMEM;
}

/* 1 when `copy` has every name, value and text that `orig` has. libxml2 2.9's
 * xmlDOMWrapCloneNode() does not check its xmlStrdup() of names: when one fails it returns
 * success with an element whose name is NULL, which the masking would then dereference. */
static int clone_complete(const xmlNode *orig, const xmlNode *copy)
{
    for (; orig != NULL && copy != NULL; orig = orig->next, copy = copy->next) {
        if ((orig->name != NULL && copy->name == NULL) ||
            (orig->content != NULL && copy->content == NULL))
            return 0;
        if (orig->type == XML_ELEMENT_NODE) {
            const xmlAttr *a = orig->properties, *b = copy->properties;
            for (; a != NULL && b != NULL; a = a->next, b = b->next)
                if (b->name == NULL || !clone_complete(a->children, b->children))
                    return 0;
            if (a != NULL || b != NULL || !clone_complete(orig->children, copy->children))
                return 0;
        }
    }
    return orig == NULL && copy == NULL;
}

/* Copies `node` into a new document under a wrapper element that declares what the stanza
 * inherited, so the copy keeps the same namespaces without repeating their declarations. Only
 * the namespaces the stanza uses are declared, not every one in scope: a stream header with
 * thousands of declarations must not make every copy cost thousands (the copy, and libxml2's
 * look-ups in it, would grow with the header times the stanzas). */
static int copy_stanza(const xmlNode *node, xmlDoc **doc_out, xmlNode **copy_out)
{
    xmlDoc *doc;
    xmlNode *w, *copy = NULL;
    nsset seen = {0};
    int rc = XS_ENOMEM;

    *doc_out = NULL;
    *copy_out = NULL;
    doc = xmlNewDoc((const xmlChar *)"1.0");
    if (doc == NULL)
        return XS_ENOMEM;
    w = xmlNewDocNode(doc, NULL, (const xmlChar *)"w", NULL);
    if (w == NULL)
        goto out;
    xmlDocSetRootElement(doc, w);
    for (xmlNode *e = (xmlNode *)node; e != NULL; e = walk_next((xmlNode *)node, e)) {
        if (e->type != XML_ELEMENT_NODE)
            continue;
        for (const xmlNs *d = e->nsDef; d != NULL; d = d->next)
            if (nsset_add(&seen, d) < 0)
                goto out;
        if (declare_used(w, &seen, e->ns) < 0)
            goto out;
        for (const xmlAttr *a = e->properties; a != NULL; a = a->next)
            if (declare_used(w, &seen, a->ns) < 0)
                goto out;
    }
    if (xmlDOMWrapCloneNode(NULL, node->doc, (xmlNode *)node, &copy, doc, w, 1, 0) != 0 ||
        copy == NULL || copy->name == NULL || !clone_complete(node->children, copy->children)) {
        xmlFreeNode(copy);
        goto out;
    }
    if (xmlAddChild(w, copy) == NULL) {
        xmlFreeNode(copy);
        goto out;
    }
    keep_prefixes((xmlNode *)node, copy);
    *doc_out = doc;
    *copy_out = copy;
    doc = NULL;
    rc = 0;
out:
    free(seen.slot);
    xmlFreeDoc(doc);
    return rc;
}

static int declared_prefix(const char *prefix, const char *const *seen, size_t n_seen)
{
    for (size_t i = 0; i < n_seen; i++)
        if (strcmp(seen[i], prefix) == 0)
            return 1;
    return 0;
}

/* Fills decls (room for 1 + RAW_MAX_ATTR_PREFIXES) with the namespace declarations of the
 * wrapper a stanza without a tree is parsed in (element w): what the event says the stanza
 * inherited, nothing more. That is the binding of the root's prefix, or for an unprefixed root
 * the default namespace (the root's own), and the bindings of the root's attribute prefixes.
 * Anything else the stanza takes from the stream element is left undeclared: an undeclared prefix
 * makes the parse fail, and reliance on the stream's default namespace is found by
 * relies_on_stream_default(). The xml prefix needs no declaration. Returns how many, or -1 when
 * the event names a prefix without its namespace. */
static int wrapper_decls(const xs_event *ev, xs_attr *decls)
{
    const char *seen[RAW_MAX_ATTR_PREFIXES + 1];
    size_t n_seen = 0, n_attr_decls = 0;
    int n = 0;

    if (ev->prefix == NULL) {
        if (ev->ns != NULL)
            decls[n++] = (xs_attr){.prefix = NULL, .uri = ev->ns};
    } else if (strcmp(ev->prefix, "xml") != 0) {
        if (ev->ns == NULL)
            return -1;
        decls[n++] = (xs_attr){.prefix = ev->prefix, .uri = ev->ns};
        seen[n_seen++] = ev->prefix;
    }
    for (size_t i = 0; ev->attrs != NULL && i < ev->n_attrs; i++) {
        const xs_attr *a = &ev->attrs[i];

        if (n_attr_decls == RAW_MAX_ATTR_PREFIXES)
            break;
        if (a->prefix == NULL || a->uri == NULL || strcmp(a->prefix, "xml") == 0 ||
            declared_prefix(a->prefix, seen, n_seen))
            continue;
        decls[n++] = (xs_attr){.prefix = a->prefix, .uri = a->uri};
        seen[n_seen++] = a->prefix;
        n_attr_decls++;
    }
    return n;
}

/* Whether an element of the stanza is in the stream's default namespace, which the event does not
 * tell: in no namespace, with no default namespace declared on it or above it in the stanza.
 * Only for a prefixed root; an unprefixed root's default namespace is declared on the wrapper. */
static int relies_on_stream_default(xmlNode *st)
{
    for (xmlNode *e = st; e != NULL; e = walk_next(st, e)) {
        const xmlNode *a;

        if (e->type != XML_ELEMENT_NODE || e->ns != NULL)
            continue;
        for (a = e; a != st->parent; a = a->parent)
            if (declared_on(a, NULL))
                break;
        if (a == st->parent)
            return 1;
    }
    return 0;
}

/* Parses the raw bytes of a stanza that came without a tree, in a wrapper declaring the
 * namespaces the event tells of, so that its names resolve as in the stream. Returns XS_EPARSE
 * when they are not one well-formed, namespace-well-formed element in that wrapper, or when the
 * names of its elements depend on the stream's default namespace, which the event does not tell:
 * then the names could not be known, and the caller masks the stanza whole. */
static int parse_raw(const xs_event *ev, xmlDoc **doc_out, xmlNode **st_out)
{
    xs_attr decls[1 + RAW_MAX_ATTR_PREFIXES];
    xs_fragment_ctx ctx = {.root = "w", .decls = decls};
    xmlDoc *doc = NULL;
    xmlNode *st = NULL;
    int n = wrapper_decls(ev, decls), rc;

    *doc_out = NULL;
    *st_out = NULL;
    if (n < 0)
        return XS_EPARSE;
    ctx.n_decls = (size_t)n;
    rc = xs_fragment_parse(&ctx, ev->raw, ev->len, &doc, &st, NULL);
    if (rc == XS_ENOMEM)
        return rc;
    if (rc != 0 || (ev->prefix != NULL && relies_on_stream_default(st))) {
        xmlFreeDoc(doc);
        return XS_EPARSE;
    }
    /* Serialized like the copy of a tree (copy_stanza), in a document without an encoding:
     * non-ASCII characters of attribute values then come out as character references. */
    xmlFree((xmlChar *)doc->encoding);
    doc->encoding = NULL;
    *doc_out = doc;
    *st_out = st;
    return 0;
}

static int serialize(xmlDoc *doc, xmlNode *st, char **xml, size_t *len)
{
    xmlBuffer *b = xmlBufferCreate();
    int rc = XS_ENOMEM;

    if (b == NULL)
        return XS_ENOMEM;
    if (xmlNodeDump(b, doc, st, 0, 0) < 0)
        goto out;
    *len = (size_t)xmlBufferLength(b);
    *xml = malloc(*len + 1);
    if (*xml == NULL)
        goto out;
    memcpy(*xml, xmlBufferContent(b), *len);
    (*xml)[*len] = '\0';
    rc = 0;
out:
    xmlBufferFree(b);
    return rc;
}

void xs_redaction_clear(xs_redaction *r)
{
    if (r == NULL)
        return;
    free(r->xml);
    free(r->note);
    xmlFreeDoc(r->doc);
    memset(r, 0, sizeof(*r));
}

int xs_redact_event(const xs_event *ev, int show_secrets, xs_redaction *out)
{
    rctx *c = NULL;
    xmlDoc *doc = NULL;
    xmlNode *st = NULL;
    int rc = 0;

    if (out == NULL)
        return XS_EINVAL;
    memset(out, 0, sizeof(*out));
    if (ev == NULL)
        return XS_EINVAL;
    if (ev->kind != XS_EV_STANZA)
        return 0;
    if (ev->node != NULL) {
        if (!candidate(ev->node))
            return 0;
        rc = copy_stanza(ev->node, &doc, &st);
    } else if (ev->raw != NULL && ev->len > 0) {
        if (!may_be_candidate(ev))
            return 0;
        out->parsed = 1;
        rc = parse_raw(ev, &doc, &st);
    } else {
        return 0;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        rc = XS_ENOMEM;
        goto out;
    }
    c->show = show_secrets;
    c->out = out;
    if (rc == XS_EPARSE) {
        /* Without a tree we cannot tell where a secret would be: hide it all. */
        rc = 0;
        note_str(&c->note, "stanza could not be parsed on its own to look for secrets");
        if (!show_secrets) {
            note_str(&c->note, "; masked whole");
            out->xml = strdup(XS_REDACT_MASK);
            out->xml_len = strlen(XS_REDACT_MASK);
            out->masked = 1;
            if (out->xml == NULL)
                rc = XS_ENOMEM;
        }
        goto note;
    }
    if (rc != 0 || !candidate(st))
        goto out;
    rc = sasl_stanza(c, st);
    if (rc == 0)
        rc = iq_secrets(c, st);
    if (rc != 0)
        goto out;
    if (out->masked > 0) {
        rc = serialize(doc, st, &out->xml, &out->xml_len);
        if (rc != 0)
            goto out;
        out->doc = doc;
        out->node = st;
        doc = NULL;
    }
note:
    if (c->note.len > 0) {
        out->note = malloc(c->note.len + 1);
        if (out->note == NULL) {
            rc = XS_ENOMEM;
        } else {
            memcpy(out->note, c->note.buf, c->note.len);
            out->note[c->note.len] = '\0';
        }
    }
out:
    xmlFreeDoc(doc);
    free(c);
    if (rc != 0)
        xs_redaction_clear(out);
    return rc;
}

int xs_redact_rewritten(const xs_event *ev, const char *xml, size_t len, int show_secrets,
                        xs_redaction *out)
{
    xs_event shadow;

    if (out == NULL)
        return XS_EINVAL;
    memset(out, 0, sizeof(*out));
    if (ev == NULL || (xml == NULL && len > 0))
        return XS_EINVAL;
    if (ev->kind != XS_EV_STANZA || xml == NULL)
        return 0;
    /* The rewritten bytes are the same element in the same stream: the event's names tell the
     * namespaces they inherit, as for a stanza that came without a tree. What they take from the
     * stream that the event does not tell (a rule may make that) makes them masked whole. */
    shadow = *ev;
    shadow.node = NULL;
    shadow.raw = xml;
    shadow.len = len;
    if (len == 0)
        return 0;
    return xs_redact_event(&shadow, show_secrets, out);
}

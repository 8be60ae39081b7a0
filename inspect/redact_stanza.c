/* Secrets redaction in stanzas: the password fields of XEP-0077 registration and XEP-0078
 * legacy auth queries, XEP-0004 data form fields that hold a password, MUC room passwords
 * (XEP-0045) and the password of a XEP-0249 direct invitation. See redact.h. */
#include "inspect/redact.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/tree.h>

#include "inspect/error.h"
#include "inspect/redact_impl.h"

/* ---- XEP-0077 and XEP-0078 ----------------------------------------------------------------- */

/* Masks the text of one secret-bearing element of a registration or legacy auth query. */
static int mask_field(rctx *c, xmlNode *el, const char *ns, const char *label)
{
    char *text = NULL;
    size_t len;
    int odd, rc;

    if (el->children == NULL)
        return 0; /* an empty field, as in the form a server sends: nothing secret */
    xs_note_sep(&c->note);
    xs_note_str(&c->note, ns);
    xs_note_str(&c->note, " ");
    xs_note_str(&c->note, label);
    if (!c->show) {
        xs_note_str(&c->note, "=" XS_REDACT_MASK);
        return xs_redact_mask_children(c, el);
    }
    rc = xs_redact_element_text(el, &text, &len, &odd);
    if (rc != 0)
        return rc;
    xs_note_str(&c->note, "=\"");
    xs_note_bytes(&c->note, text, len);
    xs_note_str(&c->note, odd ? "\" (and child elements)" : "\"");
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

    if (!xs_redact_is_el(el, NS_XDATA, "field"))
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
    return xs_redact_is_el(el, NS_MUC, "password") || xs_redact_is_el(el, NS_MUC_USER, "password");
}

/* A XEP-0249 direct invitation, which carries the room's password in an attribute. */
static int conference_invite(const xmlNode *el)
{
    return xs_redact_is_el(el, NS_CONFERENCE, "x") &&
           xmlHasNsProp(el, (const xmlChar *)"password", NULL);
}

/* Whether el, anywhere in a stanza, holds a secret of a form or of a room. */
int xs_redact_stanza_secret(const xmlNode *el)
{
    return secret_field(el) || muc_password(el) || conference_invite(el);
}

/* The namespace a form field's note is labelled with: the XEP-0077 or XEP-0078 query it is in,
 * or the data form's own. */
static const char *form_label(const xmlNode *st, const xmlNode *field)
{
    for (const xmlNode *a = field->parent; a != NULL && a != st->parent; a = a->parent)
        if (xs_redact_is_el(a, NS_REGISTER, "query") || xs_redact_is_el(a, NS_IQ_AUTH, "query"))
            return (const char *)a->ns->href;
    return NS_XDATA;
}

/* Masks the password attribute of a XEP-0249 direct invitation, as mask_field() masks an element:
 * an empty one hides nothing. */
static int conference_password(rctx *c, xmlNode *el)
{
    xmlChar *pw;
    int rc = xs_redact_get_prop(el, "password", &pw);

    if (rc != 0 || pw == NULL || pw[0] == '\0')
        goto out;
    xs_note_sep(&c->note);
    xs_note_str(&c->note, NS_CONFERENCE " password");
    if (c->show) {
        xs_note_str(&c->note, "=\"");
        xs_note_bytes(&c->note, pw, strlen((const char *)pw));
        xs_note_str(&c->note, "\"");
    } else {
        xs_note_str(&c->note, "=" XS_REDACT_MASK);
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

    for (xmlNode *e = st; rc == 0 && e != NULL; e = xs_redact_walk_next(st, e)) {
        if (e->type != XML_ELEMENT_NODE)
            continue;
        if (secret_field(e)) {
            const char *label = form_label(st, e);
            for (xmlNode *v = e->children; rc == 0 && v != NULL; v = v->next)
                if (xs_redact_is_el(v, NS_XDATA, "value"))
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

    for (xmlNode *e = xs_redact_walk_next(q, q); rc == 0 && e != NULL;
         e = xs_redact_walk_next(q, e)) {
        if (e->type != XML_ELEMENT_NODE)
            continue;
        if (xs_redact_is_el(e, ns, "password"))
            rc = mask_field(c, e, ns, "password");
        else if (xs_redact_is_el(e, NS_IQ_AUTH, "digest"))
            rc = mask_field(c, e, ns, "digest");
    }
    return rc;
}

int xs_redact_iq(rctx *c, xmlNode *st)
{
    int rc = 0;

    if (strcmp((const char *)st->name, "iq") == 0)
        for (xmlNode *k = st->children; rc == 0 && k != NULL; k = k->next)
            if (xs_redact_is_el(k, NS_REGISTER, "query") || xs_redact_is_el(k, NS_IQ_AUTH, "query"))
                rc = query_secrets(c, k);
    if (rc == 0)
        rc = form_secrets(c, st);
    return rc;
}

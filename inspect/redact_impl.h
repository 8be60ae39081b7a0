/* The redactor's insides, shared by its files (redact.c: the event, the candidate checks and the
 * copy or parse of a stanza; redact_sasl.c: SASL, SASL2 and FAST payloads; redact_stanza.c:
 * registration and legacy auth queries, data forms, room passwords and direct invitations). Not
 * for use outside them: see redact.h for the interface. */
#ifndef XS_INSPECT_REDACT_IMPL_H
#define XS_INSPECT_REDACT_IMPL_H

#include <stddef.h>

#include <libxml/tree.h>

#include "inspect/buf.h"
#include "inspect/redact.h"

#define NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_SASL2 "urn:xmpp:sasl:2"
#define NS_REGISTER "jabber:iq:register"
#define NS_IQ_AUTH "jabber:iq:auth"
#define NS_XDATA "jabber:x:data"
#define NS_FAST "urn:xmpp:fast:0"
#define NS_MUC "http://jabber.org/protocol/muc"
#define NS_MUC_USER "http://jabber.org/protocol/muc#user"
#define NS_CONFERENCE "jabber:x:conference"

/* ---- the annotation (redact.c) -------------------------------------------------------------- */

/* The one-line annotation of what was found, capped at XS_REDACT_NOTE_MAX bytes: a unit that
 * does not fit ends it with "...", so a hostile payload can make it long only up to the cap. */
typedef struct xs_note {
    xs_buf b; /* capped at XS_REDACT_NOTE_MAX; its sticky error is the caller's to report */
    int full; /* "..." written: later units are dropped */
} xs_note;

void xs_note_init(xs_note *n);
/* Appends one unit (a character or an escape) whole, or ends the note with "...". */
void xs_note_put(xs_note *n, const char *s, size_t len);
/* Appends one of our own fixed strings. */
void xs_note_str(xs_note *n, const char *s);
/* Appends a short formatted piece (cut at 127 bytes). */
void xs_note_fmt(xs_note *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends bytes of a payload for display between double quotes: NUL as \0, other non-printable
 * or invalid bytes as \xNN, '"' and '\' escaped, valid printable UTF-8 as it is. */
void xs_note_bytes(xs_note *n, const void *data, size_t len);
/* Separates the next finding from the ones before, if any. */
void xs_note_sep(xs_note *n);

/* ---- one stanza's redaction and tree helpers (redact.c) ------------------------------------- */

typedef struct rctx {
    int show;          /* show the secrets (in the note) instead of masking them */
    xs_redaction *out; /* the result being made; out->masked counts the masks */
    xs_note note;
} rctx;

/* Whether n is an element in namespace ns, named name (any name when NULL). */
int xs_redact_is_el(const xmlNode *n, const char *ns, const char *name);
/* Next node after cur in document order, staying inside root. */
xmlNode *xs_redact_walk_next(xmlNode *root, xmlNode *cur);
/* Reads an attribute without a namespace. *val is NULL when absent; the caller xmlFree()s it. */
int xs_redact_get_prop(const xmlNode *n, const char *name, xmlChar **val);
/* Collects the text of el's text and CDATA children into a malloc'd string. *odd is set when el
 * has children of another kind (elements), which no secret-bearing element should have. */
int xs_redact_element_text(const xmlNode *el, char **text, size_t *len, int *odd);
/* Replaces everything inside el with the mask. */
int xs_redact_mask_children(rctx *c, xmlNode *el);

/* ---- the kinds of secrets ------------------------------------------------------------------- */

/* Masks the payload of a SASL or SASL2 element and a FAST token (redact_sasl.c). */
int xs_redact_sasl(rctx *c, xmlNode *st);
/* Masks the secrets of an iq's registration or legacy auth query, and those any stanza may carry:
 * data form password fields, room passwords, direct invitations' passwords (redact_stanza.c). */
int xs_redact_iq(rctx *c, xmlNode *st);
/* Whether el, anywhere in a stanza, holds a secret of a form or of a room (redact_stanza.c). */
int xs_redact_stanza_secret(const xmlNode *el);

#endif

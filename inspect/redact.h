/* Secrets redaction for everything xmppscope shows or logs.
 *
 * Stanzas of the authentication phase carry credentials: SASL (RFC 6120 section 6) and SASL2
 * (XEP-0388) payloads, XEP-0077 registration and XEP-0078 legacy authentication passwords,
 * XEP-0484 FAST tokens; and outside of it, password fields of data forms (XEP-0004 text-private,
 * XEP-0133 change-password and add-user commands, XEP-0045 room configuration) and room
 * passwords (XEP-0045 <password>, the password attribute of a XEP-0249 direct invitation).
 * xs_redact_event() looks at one parser event and, when the stanza carries
 * such a payload, gives back a copy of the stanza with the secrets replaced by "***" and a
 * one-line annotation of the decoded payload for a human reader.
 *
 * It is stateless: a SASL <response> carries no mechanism, so its payload is recognised from its
 * content (two NUL bytes: PLAIN; SCRAM attributes: SCRAM). A payload that is recognised as
 * neither, and any payload of another mechanism (OAUTHBEARER, X-OAUTH2, DIGEST-MD5, ...), is
 * masked whole. When in doubt, mask: a stanza that cannot be parsed to look for secrets is masked
 * whole too.
 */
#ifndef XS_INSPECT_REDACT_H
#define XS_INSPECT_REDACT_H

#include <stddef.h>
#include <stdint.h>

#include <libxml/tree.h>

#include "inspect/parser.h"

/* What replaces a secret, in the XML and in the annotation. */
#define XS_REDACT_MASK "***"

/* Upper bound of xs_redaction.note in bytes, without the NUL. A longer annotation ends in "...". */
#define XS_REDACT_NOTE_MAX 4096u

/* The result of xs_redact_event(). Zero it or let xs_redact_event() do so; release what it holds
 * with xs_redaction_clear(). */
typedef struct xs_redaction {
    /* The stanza serialized with its secrets masked: NUL-terminated, xml_len bytes, malloc'd.
     * Show it wherever the raw XML would be shown. NULL when nothing was masked (no secret, or
     * show_secrets was set). */
    char *xml;
    size_t xml_len;

    /* The tree of that masked copy: `node` is the stanza, the only child of a wrapper element
     * (the document's root) that declares the namespaces the original inherited from the stream
     * element, so `node` shows the same namespace declarations as the original. NULL when xml is
     * NULL, and when the stanza had to be masked whole because it could not be parsed. */
    xmlDoc *doc;
    xmlNode *node;

    /* One line of valid UTF-8 describing the decoded payload, e.g.
     * `PLAIN authzid="" authcid="alice" password=***`; non-printable bytes appear as \0 or \xNN.
     * malloc'd; NULL when the stanza carries nothing to describe. Set with show_secrets too,
     * then with the secrets in clear. */
    char *note;

    /* Secrets masked (0 when show_secrets was set). */
    unsigned masked;

    /* 1 when the stanza came without a tree and its raw bytes were parsed to look for secrets;
     * 0 when it had a tree or was told apart from its names and bytes alone. */
    int parsed;

    /* For a SCRAM client-first message: the GS2 channel binding flag, 'n' (client does not
     * support channel binding), 'y' (client supports it but believes the server does not) or
     * 'p' (client binds to the channel; cb_name says how, e.g. "tls-exporter"). 0 otherwise.
     * Through a man in the middle 'p' cannot succeed and 'y' makes a server that offers
     * -PLUS mechanisms refuse the login. */
    int gs2_flag;
    char cb_name[32];
} xs_redaction;

/* Looks for secrets in one parser event. Only XS_EV_STANZA events can carry any; for other
 * events *out is left empty. The stanza is taken from ev->node. Without a tree, a stanza that may
 * carry a secret is parsed from ev->raw on its own: one in the SASL or SASL2 namespace (ev->ns),
 * or an iq whose bytes may hold a XEP-0077 or XEP-0078 query. The others, nearly all, are told
 * apart from ev->name, ev->prefix, ev->ns and a search of ev->raw, without parsing, and come out
 * as they would with a tree. A parsed stanza is masked exactly as with a tree, its names resolved
 * with the namespaces the event tells of (the root's and its attributes'); one that cannot be
 * parsed that way (it uses a prefix declared on the stream element, or depends on the stream's
 * default namespace under a prefixed root) is masked whole. ev and its tree are not modified.
 * With show_secrets, nothing is masked but the annotation is still made.
 *
 * Returns 0 with *out filled (possibly empty), XS_EINVAL when ev or out is NULL, or XS_ENOMEM;
 * on error *out is empty. The caller releases *out with xs_redaction_clear(). */
int xs_redact_event(const xs_event *ev, int show_secrets, xs_redaction *out);

/* Looks for secrets in `xml` (len bytes), the stanza a rule forwarded instead of ev's (the
 * xs_rule_result.xml of filters/rules.h): the same element in the same stream, so its names
 * resolve with what ev tells of the namespaces in scope, as a stanza without a tree does in
 * xs_redact_event(). Fills *out as xs_redact_event() does; out->xml, when set, is what to show
 * instead of `xml` (masked whole, "***", when the bytes cannot be parsed on their own). Every
 * output of a rewritten stanza goes through this, as the original goes through
 * xs_redact_event().
 *
 * Returns 0 (with *out empty when ev is not a stanza, xml is NULL or len is 0), XS_EINVAL when ev
 * or out is NULL, or XS_ENOMEM. The caller releases *out with xs_redaction_clear(). */
int xs_redact_rewritten(const xs_event *ev, const char *xml, size_t len, int show_secrets,
                        xs_redaction *out);

/* Frees what *r holds and empties it. Safe on an empty or already cleared redaction. */
void xs_redaction_clear(xs_redaction *r);

/* Reads the GS2 header (RFC 5801 section 4) at the start of a decoded SASL payload, such as a
 * SCRAM client-first message "n,,n=alice,r=..." or "p=tls-unique,,n=...". Returns 'n', 'y' or
 * 'p', or 0 when the payload does not start with a well-formed GS2 header. For 'p' the
 * channel binding name is copied, NUL-terminated, to cb_name_out (when cb_name_out is not NULL);
 * a name that does not fit in cap bytes makes the result 0. Binary-safe: `decoded` need not be
 * NUL-terminated. */
int xs_sasl_gs2_flag(const char *decoded, size_t len, char *cb_name_out, size_t cap);

#endif

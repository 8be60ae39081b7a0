/* Built-in rewrites of stream features that a man in the middle needs.
 *
 * Channel binding ties a login to the TLS channel it runs over; with xmppscope in the middle the
 * client and the server see two different channels, so a login that uses it must fail. The
 * server's stream features are therefore rewritten before the client sees them: SASL mechanisms
 * ending in -PLUS and the XEP-0440 channel-binding advertisement are removed, and so is stream
 * compression (XEP-0138), which xmppscope cannot parse through. Each rewrite can be turned off.
 * A STARTTLS offer is removed when the proxy has already secured the client leg itself. The rule
 * engine applies these rewrites as built-in rules (xs_rules_builtin()); the tests keep a direct
 * implementation to compare it with (tests/unit/features_ref.c). */
#ifndef XS_FILTERS_FEATURES_H
#define XS_FILTERS_FEATURES_H

#include <stddef.h>

#include "inspect/parser.h"

#include <libxml/tree.h>

enum {
    XS_REWRITE_SASL_PLUS = 1u << 0,       /* <mechanism>…-PLUS</mechanism> (SASL and SASL2) */
    XS_REWRITE_CHANNEL_BINDING = 1u << 1, /* <sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'/> */
    XS_REWRITE_COMPRESSION =
        1u << 2,                   /* <compression xmlns='http://jabber.org/features/compress'/> */
    XS_REWRITE_STARTTLS = 1u << 3, /* <starttls/>, when the proxy did STARTTLS itself */
    XS_REWRITE_DEFAULT = XS_REWRITE_SASL_PLUS | XS_REWRITE_CHANNEL_BINDING | XS_REWRITE_COMPRESSION,
};

/* Name of a rewrite for the command line and the log ("sasl-plus", "channel-binding",
 * "compression", "starttls"), and the reverse. */
const char *xs_rewrite_name(unsigned bit);
int xs_rewrite_parse(const char *name, unsigned *bit);

/* Parses one depth-1 element given as its raw bytes (a stanza, stream features) in the context
 * of the stream header's namespace declarations (`nsdecls`, as in the stream-open event): the
 * element comes back attached to a wrapper element that makes those declarations, as a parser
 * tree (XS_PARSER_TREE) is attached to its stream element, so it can go to xs_rules_apply().
 * Returns 0 and sets *doc (free it with xmlFreeDoc()) and *element; XS_ENOTWF when the bytes do
 * not parse, XS_ETOOBIG, XS_ENOMEM. */
int xs_element_parse(const char *raw, size_t len, const xs_attr *nsdecls, size_t n_nsdecls,
                     xmlDoc **doc, xmlNode **element);

/* Whether <stream:features/> offers <starttls><required/></starttls>. */
int xs_features_starttls_required(const xmlNode *features);

#endif

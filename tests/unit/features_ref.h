/* The direct implementation of the built-in feature rewrites, kept by the tests only.
 *
 * The proxy applies these rewrites as built-in rules of the rule engine (xs_rules_builtin());
 * this independent implementation is the reference that test_features and test_rules compare the
 * engine's output with. It lives in tests/ because nothing else uses it. */
#ifndef XS_TESTS_FEATURES_REF_H
#define XS_TESTS_FEATURES_REF_H

#include <stddef.h>

#include "filters/features.h"
#include "inspect/parser.h"

typedef struct xs_features_result {
    char *xml; /* the rewritten element, malloc'd; NULL when nothing changed */
    size_t len;
    char removed[512]; /* what was removed, for the log: "SCRAM-SHA-1-PLUS, sasl-channel-binding" */
    int offered_binding;   /* the original offered -PLUS mechanisms or channel-binding types */
    int starttls_required; /* the original offered <starttls><required/></starttls> */
} xs_features_result;

/* Rewrites a <stream:features/> element given as its raw bytes, in the context of the stream
 * header's namespace declarations (`nsdecls`, as in the stream-open event). `which` selects the
 * rewrites. On success fills *out (free out->xml with free()) and returns 0; returns XS_ENOTWF if
 * the bytes do not parse, XS_ENOMEM when out of memory. Elements other than features are left
 * alone (out->xml NULL). */
int xs_features_rewrite(const char *raw, size_t len, const xs_attr *nsdecls, size_t n_nsdecls,
                        unsigned which, xs_features_result *out);

#endif

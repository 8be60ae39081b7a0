/* The quick evaluator's compiled form, shared by its compiler (xpath_compile.c) and its
 * evaluator (xpath_ns.c); see rules_impl.h for what the subset is. Not for use outside those two
 * files. */
#ifndef XS_FILTERS_XPATH_QUICK_H
#define XS_FILTERS_XPATH_QUICK_H

#include <stdbool.h>
#include <stddef.h>

#include "filters/rules_impl.h"

typedef enum xs_qtype { XS_QT_NODES, XS_QT_STRING, XS_QT_NUMBER, XS_QT_BOOLEAN } xs_qtype;

typedef enum xs_qkind {
    XS_Q_PATH,
    XS_Q_LITERAL,
    XS_Q_NUMBER,
    XS_Q_OR,
    XS_Q_AND,
    XS_Q_CMP,
    XS_Q_NOT,
    XS_Q_TRUE,
    XS_Q_FALSE,
    XS_Q_BOOLEAN,
    XS_Q_CONTAINS,
    XS_Q_STARTS_WITH,
    XS_Q_STRING_LENGTH,
    XS_Q_STRING,
    XS_Q_TO_NUMBER,
    XS_Q_COUNT,
    XS_Q_LOCAL_NAME,
    XS_Q_NAMESPACE_URI,
} xs_qkind;

typedef enum xs_qop { XS_OP_EQ, XS_OP_NE, XS_OP_LT, XS_OP_LE, XS_OP_GT, XS_OP_GE } xs_qop;

typedef enum xs_qstep_kind { XS_ST_ELEMENT, XS_ST_ATTRIBUTE, XS_ST_TEXT, XS_ST_SELF } xs_qstep_kind;

/* Namespaces of name tests, besides an index in the URI table. */
#define XS_QNS_STANZA (-1) /* xs-s: the stream's content namespace */
#define XS_QNS_ANY (-2)    /* `*` or `@*`: any name in any namespace */
#define XS_QNS_NONE (-3)   /* an attribute name without a prefix: no namespace */

typedef struct xs_qnode xs_qnode;

typedef struct xs_qstep {
    xs_qstep_kind kind;
    int ns;      /* for XS_ST_ELEMENT and XS_ST_ATTRIBUTE */
    char *local; /* NULL: any local name */
    xs_qnode **preds;
    size_t n_preds;
} xs_qstep;

struct xs_qnode {
    xs_qkind kind;
    xs_qtype type;
    xs_qnode *a, *b; /* operands and arguments, NULL when absent */
    xs_qop op;       /* XS_Q_CMP */
    bool absolute;
    xs_qstep *steps; /* XS_Q_PATH */
    size_t n_steps;
    char *str; /* XS_Q_LITERAL, NUL-terminated */
    size_t len;
    double num; /* XS_Q_NUMBER */
};

struct xs_qx {
    xs_qnode *top;
};

/* Frees a compiled node and everything under it (NULL is fine). */
void xs_qnode_free(xs_qnode *q);

#endif

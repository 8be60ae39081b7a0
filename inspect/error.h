/* Error codes shared by every module of xmppscope.
 *
 * Functions return 0 on success or a negative code. Codes from libuv (negative errno values,
 * all above -4096) pass through unchanged; our own codes live below XS_E_BASE so the two
 * ranges never collide. xs_strerror() names either kind. */
#ifndef XS_INSPECT_ERROR_H
#define XS_INSPECT_ERROR_H

#include <stddef.h>

#define XS_E_BASE (-20000)

enum xs_error {
    XS_ENOMEM = XS_E_BASE - 1,      /* allocation failed */
    XS_EINVAL = XS_E_BASE - 2,      /* invalid argument or configuration */
    XS_ENOTWF = XS_E_BASE - 3,      /* XML not well-formed */
    XS_ERESTRICTED = XS_E_BASE - 4, /* XML outside RFC 6120 section 11 */
    XS_ETOOBIG = XS_E_BASE - 5,     /* a limit on size was exceeded */
    XS_ETOODEEP = XS_E_BASE - 6,    /* a limit on nesting depth was exceeded */
    XS_EBADFORMAT = XS_E_BASE - 7,  /* well-formed XML that is not an XMPP stream */
    XS_ESTATE = XS_E_BASE - 8,      /* call not valid in the current state */
    XS_ETLS = XS_E_BASE - 9,        /* TLS failure; details went to the log */
    XS_EIO = XS_E_BASE - 10,        /* read or write failed */
    XS_ECLOSED = XS_E_BASE - 11,    /* stream already closed */
    XS_EPARSE = XS_E_BASE - 12,     /* malformed input other than XML (JSON, base64, rules) */
    XS_ELAST = XS_E_BASE - 13
};

/* Returns a static English description of `err` (ours, libuv's or a negative errno). */
const char *xs_strerror(int err);

/* Returns the symbolic name ("XS_ENOMEM", "ECONNREFUSED") of `err`. */
const char *xs_errname(int err);

/* Appends at most `max` bytes of s[0, n) to the NUL-terminated string in out (room for cap bytes
 * in all) as printable ASCII, every other byte and the backslash as \xHH, then "..." when cut.
 * Wire bytes go into an error message only so: it may reach a terminal. */
void xs_quote_bytes(char *out, size_t cap, const char *s, size_t n, size_t max);

/* The diagnostics out-parameter of the one error convention: a function that fails returns a
 * negative XS_E code (or libuv's) and, when its caller passed a diag, says why in it, in one line
 * with the cause and the fix ("cannot read the CA key /x/ca.key: ...; run 'xmppscope ca init'").
 * The caller owns it (on its stack, usually) and decides where the text goes; only the commands
 * turn codes into exit statuses. An empty text means the callee had nothing to add to the code. */
typedef struct xs_diag {
    char text[768]; /* as long as the longest message of ca.c and file.c, uncut */
} xs_diag;

/* Sets d's text (when d is not NULL), cut to fit. Returns `err`, so that a failure path reads
 * `return xs_diag_set(diag, XS_EINVAL, "...", ...);`. */
int xs_diag_set(xs_diag *d, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif

/* The proxy's side of the web inspector's send and intercept: finds a live session by its id
 * and calls it, then lets its legs write what it queued. See web.h (xs_web_control). */
#include "proxy/web_ctl.h"

#include "proxy/proxy_impl.h"

#include <string.h>

static xs_conn *find(xs_proxy *p, const char *session)
{
    for (xs_conn *c = p->conns; c != NULL; c = c->next)
        if (c->s != NULL && strcmp(xs_session_id(c->s), session) == 0)
            return c;
    return NULL;
}

static int ctl_inject(void *ctx, const char *session, xs_side to, const char *xml, size_t len,
                      xs_diag *diag)
{
    xs_conn *c = find(ctx, session);
    if (c == NULL)
        return xs_diag_set(diag, XS_EINVAL, "no live session %s", session);
    int rc = xs_session_inject(c->s, to, xml, len, diag);
    xs_conn_settle(c);
    return rc;
}

static int ctl_release(void *ctx, const char *session, xs_side from, uint64_t id, const char *xml,
                       size_t len, int drop, const char *why, xs_diag *diag)
{
    xs_conn *c = find(ctx, session);
    if (c == NULL)
        return xs_diag_set(diag, XS_EINVAL, "no live session %s", session);
    int rc = xs_session_hold_release(c->s, from, id, xml, len, drop, why, diag);
    xs_conn_settle(c);
    return rc;
}

xs_web_control xs_web_ctl_of(struct xs_proxy *p)
{
    return (xs_web_control){.inject = ctl_inject, .release = ctl_release, .ctx = p};
}

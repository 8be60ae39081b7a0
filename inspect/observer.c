/* Observers: masking once, and the printers as observers. See observer.h. */
#include "inspect/observer.h"

#include "inspect/error.h"

#include <string.h>

int xs_obs_mask(const xs_event *ev, const xs_print_meta *meta, int show_secrets, xs_obs_masked *out)
{
    int rc;

    memset(out, 0, sizeof(*out));
    if (meta != NULL)
        out->meta = *meta;
    rc = xs_redact_event(ev, show_secrets, &out->red);
    if (rc == 0 && meta != NULL && meta->rewritten != NULL) {
        rc = xs_redact_rewritten(ev, meta->rewritten, strlen(meta->rewritten), show_secrets,
                                 &out->rew);
        if (rc == 0 && out->rew.xml != NULL)
            out->meta.rewritten = out->rew.xml;
    }
    if (rc != 0) {
        xs_obs_masked_clear(out);
        return rc;
    }
    out->event = (xs_obs_event){.kind = XS_OBS_PARSED,
                                .meta = meta != NULL ? &out->meta : NULL,
                                .ev = ev,
                                .masked = &out->red};
    return 0;
}

void xs_obs_masked_clear(xs_obs_masked *m)
{
    if (m == NULL)
        return;
    xs_redaction_clear(&m->red);
    xs_redaction_clear(&m->rew);
    memset(m, 0, sizeof(*m));
}

int xs_obs_call(const xs_observer *o, const xs_obs_event *ev)
{
    /* State changes are for the log; the console shows what a person needs. */
    if (!o->debug && ev->kind != XS_OBS_PARSED && ev->level != NULL &&
        strcmp(ev->level, "debug") == 0)
        return 0;
    return o->on_event(o->ctx, ev);
}

int xs_obs_emit_event(const xs_observer *obs, size_t n, const xs_print_meta *meta,
                      const xs_event *ev, int show_secrets)
{
    xs_obs_masked m;
    int rc = xs_obs_mask(ev, meta, show_secrets, &m), first = 0;

    if (rc != 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        rc = xs_obs_call(&obs[i], &m.event);
        if (rc < 0 && first == 0)
            first = rc;
    }
    xs_obs_masked_clear(&m);
    return first;
}

static int printer_on_event(void *ctx, const xs_obs_event *ev)
{
    xs_printer *p = ctx;

    if (ev->kind == XS_OBS_PARSED)
        return xs_printer_masked(p, ev->meta, ev->ev, ev->masked);
    return xs_printer_note(p, ev->meta, ev->level, ev->text);
}

xs_observer xs_printer_observer(xs_printer *printer, xs_obs_policy policy, int debug,
                                const char *name)
{
    return (xs_observer){.on_event = printer_on_event,
                         .ctx = printer,
                         .policy = policy,
                         .debug = debug,
                         .needs_tree = xs_printer_needs_tree(printer),
                         .name = name};
}

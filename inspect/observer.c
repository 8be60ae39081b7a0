/* Observers: masking once, and the printers as observers. See observer.h. */
#include "inspect/observer.h"

#include "inspect/error.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Copies the part of *from that is in use. */
static void annot_copy(xs_annot *to, const xs_annot *from)
{
    memcpy(to, from, offsetof(xs_annot, checks));
    memcpy(to->checks, from->checks, from->n_checks * sizeof(from->checks[0]));
    to->explain_len = from->explain_len;
    memcpy(to->explain, from->explain, from->explain_len + 1);
}

int xs_obs_mask(const xs_event *ev, const xs_print_meta *meta, int show_secrets, xs_obs_masked *out)
{
    int rc;

    /* The annotation's array of checks is left as it is: it is read only up to n_checks. */
    memset(out, 0, offsetof(xs_obs_masked, annot));
    xs_annot_init(&out->annot);
    if (meta != NULL) {
        out->meta = *meta;
        /* Annotated already by the caller: the analysers go on from there. */
        if (meta->annot != NULL)
            annot_copy(&out->annot, meta->annot);
    }
    out->meta.annot = &out->annot;
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
                                .masked = &out->red,
                                .annot = &out->annot};
    return 0;
}

void xs_obs_masked_clear(xs_obs_masked *m)
{
    if (m == NULL)
        return;
    xs_redaction_clear(&m->red);
    xs_redaction_clear(&m->rew);
    memset(m, 0, offsetof(xs_obs_masked, annot));
    xs_annot_init(&m->annot);
}

int xs_obs_call(const xs_observer *o, const xs_obs_event *ev)
{
    if (o->on_event == NULL)
        return 0;
    /* State changes are for the log; the console shows what a person needs. */
    if (!o->debug && ev->kind != XS_OBS_PARSED && ev->level != NULL &&
        strcmp(ev->level, "debug") == 0)
        return 0;
    return o->on_event(o->ctx, ev);
}

void xs_obs_annotate(const xs_observer *obs, size_t n, const xs_obs_event *ev)
{
    for (size_t i = 0; i < n; i++)
        if (obs[i].annotate != NULL)
            obs[i].annotate(obs[i].ctx, ev, ev->annot);
}

int xs_obs_emit_other_but(const xs_observer *obs, size_t n, size_t skip, const xs_obs_event *ev)
{
    xs_obs_event e = *ev;
    xs_print_meta m;
    xs_annot a;
    int first = 0;

    if (e.annot == NULL) {
        xs_annot_init(&a);
        e.annot = &a;
    }
    if (e.meta != NULL && e.meta->annot != e.annot) {
        m = *e.meta;
        m.annot = e.annot;
        e.meta = &m;
    }
    xs_obs_annotate(obs, n, &e);
    for (size_t i = 0; i < n; i++) {
        if (i == skip)
            continue;
        int rc = xs_obs_call(&obs[i], &e);
        if (rc < 0 && first == 0)
            first = rc;
    }
    return first;
}

int xs_obs_emit_other(const xs_observer *obs, size_t n, const xs_obs_event *ev)
{
    return xs_obs_emit_other_but(obs, n, SIZE_MAX, ev);
}

int xs_obs_emit_event(const xs_observer *obs, size_t n, const xs_print_meta *meta,
                      const xs_event *ev, int show_secrets)
{
    xs_obs_masked m;
    int rc = xs_obs_mask(ev, meta, show_secrets, &m), first = 0;

    if (rc != 0)
        return rc;
    xs_obs_annotate(obs, n, &m.event);
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
    int rc = 0;
    /* A tick has no line of its own, nor has the end of an offline input (no text). */
    if (ev->kind != XS_OBS_TICK && ev->text != NULL)
        rc = xs_printer_note(p, ev->meta, ev->level, ev->text);
    if (rc == 0 && ev->meta != NULL && ev->meta->annot != NULL && ev->meta->annot->n_checks > 0)
        rc = xs_printer_checks(p, ev->meta);
    return rc;
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

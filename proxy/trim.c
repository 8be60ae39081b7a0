/* Giving memory back.
 *
 * Idle sessions must cost their TLS state and little else, so a quiet leg gives back what it
 * holds for traffic, in two steps. Quiet for QUIET_BUFFERS_MS (nothing read or written): its TLS
 * record buffers and ciphertext buffers (about 40 KiB; getting them back when traffic resumes is
 * a malloc) and its write request. Quiet for XS_PROXY_IDLE_MS (nothing read): its parser's
 * libxml2 context (about 17 KiB; rebuilt from the saved stream header when the next stanza comes,
 * which costs more, hence the longer wait). Not much longer: what a leg holds for traffic lies
 * between the lasting allocations of the sessions set up after it, and once freed leaves holes
 * that pin their pages; with a second's wait, 3,000 sessions opened at 400-540/s and then idle
 * cost 40-42 KiB each (up to 45 at 900/s), with 250 ms 38-39. For each step the legs that may have
 * something to give back are kept in a list in the order they fall due, traffic moves a leg to the
 * end, and one timer fires for the first due: nothing walks all the sessions. It fires on
 * QUIET_GRAIN_MS boundaries, so that legs falling due together are trimmed in one go. */
#include "proxy/proxy_impl.h"

#include <malloc.h>

#define QUIET_BUFFERS_MS 100
#define QUIET_GRAIN_MS 100
/* malloc_trim() walks the whole heap: at most once per this long. */
#define HEAP_TRIM_MS 1000
static const uint64_t quiet_ms[2] = {QUIET_BUFFERS_MS, XS_PROXY_IDLE_MS};

static void on_idle_timer(uv_timer_t *t);

void xs_trim_init(xs_proxy *p)
{
    uv_timer_init(p->loop, &p->idle_timer); /* started by the first leg that carries something */
    p->idle_timer.data = p;
}

/* Makes the timer fire at `at` (rounded up to the grain) unless it fires earlier already. */
static void quiet_arm(xs_proxy *p, uint64_t at)
{
    if (uv_is_closing((uv_handle_t *)&p->idle_timer))
        return;
    at = (at + QUIET_GRAIN_MS - 1) / QUIET_GRAIN_MS * QUIET_GRAIN_MS;
    if (uv_is_active((uv_handle_t *)&p->idle_timer) && p->idle_due <= at)
        return;
    uint64_t now = uv_now(p->loop);
    p->idle_due = at;
    uv_timer_start(&p->idle_timer, on_idle_timer, at > now ? at - now : 0, 0);
}

static void quiet_unlink(xs_proxy *p, xs_leg *l, int k)
{
    if (!l->q[k].listed)
        return;
    if (l->q[k].prev != NULL)
        l->q[k].prev->q[k].next = l->q[k].next;
    else
        p->quiet[k].head = l->q[k].next;
    if (l->q[k].next != NULL)
        l->q[k].next->q[k].prev = l->q[k].prev;
    else
        p->quiet[k].tail = l->q[k].prev;
    l->q[k].prev = l->q[k].next = NULL;
    l->q[k].listed = false;
}

void xs_trim_forget(xs_proxy *p, xs_leg *l)
{
    for (int k = 0; k < 2; k++)
        quiet_unlink(p, l, k);
}

/* Puts the leg at the end of list k, due quiet_ms[k] from now. Every entry of a list is due a
 * fixed delay after it was put there, so the list stays in order. */
static void quiet_push(xs_proxy *p, xs_leg *l, int k, uint64_t now)
{
    l->q[k].at = now + quiet_ms[k];
    if (!l->q[k].listed || p->quiet[k].tail != l) { /* a busy leg is already last */
        quiet_unlink(p, l, k);
        l->q[k].prev = p->quiet[k].tail;
        if (p->quiet[k].tail != NULL)
            p->quiet[k].tail->q[k].next = l;
        else
            p->quiet[k].head = l;
        p->quiet[k].tail = l;
        l->q[k].listed = true;
    }
    quiet_arm(p, p->quiet[k].head->q[k].at);
}

void xs_trim_touch(xs_leg *l, bool read)
{
    xs_proxy *p = l->c->p;
    uint64_t now = uv_now(p->loop);
    quiet_push(p, l, XS_TRIM_BUFFERS, now);
    if (read)
        quiet_push(p, l, XS_TRIM_PARSER, now);
}

/* A leg that never had a socket, or whose conn is going, has nothing worth trimming. */
static bool trimmable(const xs_leg *l)
{
    return l->state != XS_LEG_IDLE && l->state != XS_LEG_CLOSED && !l->c->dead;
}

static void on_idle_timer(uv_timer_t *t)
{
    xs_proxy *p = t->data;
    uint64_t now = uv_now(p->loop);
    xs_leg *l;
    while ((l = p->quiet[XS_TRIM_BUFFERS].head) != NULL && l->q[XS_TRIM_BUFFERS].at <= now) {
        quiet_unlink(p, l, XS_TRIM_BUFFERS);
        if (!trimmable(l))
            continue;
        int given = xs_leg_trim(l);
        if (given < 0)
            quiet_push(p, l, XS_TRIM_BUFFERS, now); /* tried again later, once written out */
        else
            p->heap_given += (unsigned)given;
    }
    while ((l = p->quiet[XS_TRIM_PARSER].head) != NULL && l->q[XS_TRIM_PARSER].at <= now) {
        quiet_unlink(p, l, XS_TRIM_PARSER);
        if (trimmable(l))
            p->heap_given += (unsigned)xs_session_trim(l->c->s, l->side);
    }
    /* What was given back lies between live allocations; hand its pages to the system when it
     * is worth a walk of the heap (a few milliseconds for thousands of sessions), at most once
     * per HEAP_TRIM_MS. */
    bool heap_due = p->heap_given >= 64;
    if (heap_due && now >= p->heap_trimmed_at + HEAP_TRIM_MS) {
        malloc_trim(0);
        p->heap_given = 0;
        p->heap_trimmed_at = now;
        heap_due = false;
    }
    for (int k = 0; k < 2; k++)
        if (p->quiet[k].head != NULL)
            quiet_arm(p, p->quiet[k].head->q[k].at);
    if (heap_due)
        quiet_arm(p, p->heap_trimmed_at + HEAP_TRIM_MS);
}

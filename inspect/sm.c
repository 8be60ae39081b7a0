/* XEP-0198 stream management counters. See sm.h. */
#include "inspect/sm.h"

#include "inspect/alloc.h"
#include "inspect/check_impl.h"

#include <stdlib.h>
#include <string.h>

#define REF_ACK "XEP-0198 §4"
#define REF_RESUME "XEP-0198 §5"

static const char *side(int d)
{
    return d == 0 ? "the client" : "the server";
}

/* Reads h: a decimal number up to 2^32 - 1. Returns 0 when it is not one. */
static int read_h(const char *v, uint32_t *out)
{
    if (v == NULL || *v == '\0')
        return 0;
    uint64_t h = 0;
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9')
            return 0;
        h = h * 10 + (uint64_t)(*p - '0');
        if (h > UINT32_MAX)
            return 0;
    }
    *out = (uint32_t)h;
    return 1;
}

/* "s" unless n is 1, for "%d stanza%s". */
static const char *s_if(int64_t n)
{
    return n == 1 ? "" : "s";
}

static int32_t diff(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b);
}

/* "(a rule of xmppscope dropped N of them)" when some were dropped. */
static const char *dropped_note(const xs_sm_dir *d, char *buf, size_t cap)
{
    if (d->dropped == 0)
        return "";
    snprintf(buf, cap, "; a rule dropped %u of them, so they never arrived", d->dropped);
    return buf;
}

/* <a h=…/> from direction dir acknowledges the stanzas of the other direction. */
static void ack(xs_analysis *an, xs_an_sess *s, int dir, uint32_t h, xs_annot *a)
{
    xs_sm_dir *d = &s->sm.d[!dir];
    char note[96];
    if (!d->on)
        return;
    if (diff(h, d->count) > 0) {
        xs_an_check(an, a, XS_CHECK_SM_H_MISMATCH, REF_ACK,
                    "%s acknowledged h=%u but %s sent only %u stanza%s since stream management "
                    "began: %d would count as handled that were never sent",
                    side(dir), h, side(!dir), d->count, s_if((int64_t)d->count), diff(h, d->count));
    } else if (d->have_h && diff(h, d->last_h) < 0) {
        xs_an_check(an, a, XS_CHECK_SM_H_MISMATCH, REF_ACK,
                    "h went back from %u to %u: %s would send %d stanza%s again (duplicates)",
                    d->last_h, h, side(!dir), diff(d->last_h, h), s_if(diff(d->last_h, h)));
    } else if (d->r_n > 0 && diff(d->r_at[d->r_head], h) > 0 &&
               diff(d->r_at[d->r_head], h) != d->said_lost) {
        /* Once stanzas are lost, every later <a/> is short by as many: said once. */
        uint32_t want = d->r_at[d->r_head];
        d->said_lost = diff(want, h);
        xs_an_check(an, a, XS_CHECK_SM_H_MISMATCH, REF_ACK,
                    "%s acknowledged h=%u but %s had sent %u stanza%s before its <r/>: %d "
                    "stanza%s would be lost (or sent again on resumption)%s",
                    side(dir), h, side(!dir), want, s_if((int64_t)want), diff(want, h),
                    s_if(diff(want, h)), dropped_note(d, note, sizeof(note)));
    }
    if (d->r_n > 0) {
        d->r_head = (d->r_head + 1) % XS_SM_MAX_R;
        d->r_n--;
    }
    /* An h past what was sent is not taken as the new mark: the next sane one is compared with
     * the last sane one. */
    if (diff(h, d->count) <= 0) {
        d->last_h = h;
        d->have_h = 1;
    }
}

static xs_sm_id *id_find(xs_sm_ids *t, const char *id)
{
    for (size_t i = 0; i < XS_SM_MAX_IDS; i++)
        if (t->slot[i].id != NULL && strcmp(t->slot[i].id, id) == 0)
            return &t->slot[i];
    return NULL;
}

static void id_counts(const xs_sm_id *e, uint32_t count[2])
{
    for (int i = 0; i < 2; i++)
        count[i] = e->live != NULL ? e->live->sm.d[i].count : e->count[i];
}

/* The server gave the session a resumable id. */
static void id_enabled(xs_analysis *an, xs_an_sess *s, const char *id)
{
    xs_sm_id *e = id_find(&an->ids, id);
    if (e == NULL) {
        e = &an->ids.slot[an->ids.next];
        an->ids.next = (an->ids.next + 1) % XS_SM_MAX_IDS;
        if (e->live != NULL)
            e->live->sm.slot = -1;
        xs_free(e->id);
        xs_free(e->session);
        memset(e, 0, sizeof(*e));
        e->id = xs_strndup(id, 1024);
        if (e->id == NULL)
            return;
    }
    xs_free(e->session);
    e->session = xs_strdup(s->key);
    if (e->live != NULL && e->live != s)
        e->live->sm.slot = -1;
    e->live = s;
    s->sm.slot = (int)(e - an->ids.slot);
}

/* <resume previd h/> (dir 0) or <resumed previd h/> (dir 1). */
static void resume(xs_analysis *an, xs_an_sess *s, int dir, const char *previd, uint32_t h,
                   xs_annot *a)
{
    xs_sm_id *e = previd != NULL ? id_find(&an->ids, previd) : NULL;
    if (e == NULL)
        return; /* a session this run never saw: nothing to compare with */
    uint32_t count[2];
    id_counts(e, count);
    /* The client's h counts the server's stanzas, the server's h the client's. */
    int other = !dir;
    uint32_t sent = count[other];
    const char *where = e->session != NULL ? e->session : "?";
    if (h != sent) {
        int32_t k = diff(sent, h);
        if (k > 0)
            xs_an_check(an, a, XS_CHECK_SM_RESUME_MISMATCH, REF_RESUME,
                        "%s resumes with h=%u but %s sent %u stanza%s in session %s: %d would be "
                        "sent again (duplicated if %s had handled them, lost otherwise)",
                        side(dir), h, side(other), sent, s_if((int64_t)sent), where, k, side(dir));
        else
            xs_an_check(an, a, XS_CHECK_SM_RESUME_MISMATCH, REF_RESUME,
                        "%s resumes with h=%u but %s sent only %u stanza%s in session %s: %d "
                        "acknowledged that were never sent, so as many later ones would be "
                        "taken as handled and lost",
                        side(dir), h, side(other), sent, s_if((int64_t)sent), where, -k);
    }
    if (dir == 1) {
        /* Resumed: this session goes on with the old counters, as both sides do. */
        s->sm.d[0] = (xs_sm_dir){.on = 1, .count = h};
        s->sm.d[1] = (xs_sm_dir){.on = 1, .count = s->sm.d[1].count};
        s->bound = 1;
        id_enabled(an, s, previd);
    } else {
        /* The server resends from the client's h on. */
        s->sm.d[1] = (xs_sm_dir){.on = 1, .count = h};
    }
}

void xs_sm_element(xs_analysis *an, xs_an_sess *s, int dir, const xs_event *ev, xs_annot *a)
{
    const char *name = ev->name;
    uint32_t h;
    if (strcmp(name, "r") == 0) {
        xs_sm_dir *d = &s->sm.d[dir];
        if (!d->on)
            return;
        if (d->r_n == XS_SM_MAX_R) { /* too many unanswered <r/>: forget the oldest */
            d->r_head = (d->r_head + 1) % XS_SM_MAX_R;
            d->r_n--;
        }
        d->r_at[(d->r_head + d->r_n++) % XS_SM_MAX_R] = d->count;
    } else if (strcmp(name, "a") == 0) {
        if (read_h(xs_an_attr(ev, "h"), &h))
            ack(an, s, dir, h, a);
    } else if (strcmp(name, "enable") == 0 && dir == 0) {
        s->sm.d[0] = (xs_sm_dir){.on = 1};
    } else if (strcmp(name, "enabled") == 0 && dir == 1) {
        s->sm.d[1] = (xs_sm_dir){.on = 1};
        const char *id = xs_an_attr(ev, "id");
        if (id != NULL && *id != '\0')
            id_enabled(an, s, id);
    } else if (strcmp(name, "failed") == 0 && dir == 1) {
        s->sm.d[0].on = s->sm.d[1].on = 0;
    } else if ((strcmp(name, "resume") == 0 && dir == 0) ||
               (strcmp(name, "resumed") == 0 && dir == 1)) {
        if (read_h(xs_an_attr(ev, "h"), &h))
            resume(an, s, dir, xs_an_attr(ev, "previd"), h, a);
    }
}

void xs_sm_end(xs_analysis *an, xs_an_sess *s)
{
    if (s->sm.slot < 0)
        return;
    xs_sm_id *e = &an->ids.slot[s->sm.slot];
    if (e->live == s) {
        e->count[0] = s->sm.d[0].count;
        e->count[1] = s->sm.d[1].count;
        e->live = NULL;
    }
    s->sm.slot = -1;
}

void xs_sm_ids_free(xs_sm_ids *t)
{
    for (size_t i = 0; i < XS_SM_MAX_IDS; i++) {
        xs_free(t->slot[i].id);
        xs_free(t->slot[i].session);
    }
    memset(t, 0, sizeof(*t));
}

/* XEP-0198 stream management counters, inside the analysers (check.h).
 *
 * After the client's <enable/> every stanza it sends counts (the server counts what it handles
 * from then on), after the server's <enabled/> every stanza the server sends. Each <a h=…/>
 * acknowledges the other side's stanzas: it may not go back, may not count more than were sent,
 * and when it answers an <r/> it must count every stanza sent before that <r/> (the other side
 * handles a stream in order). On <resume h=…/> (client) and <resumed h=…/> (server) in a later
 * session, h is compared with what the session of that id sent: the difference is what will be
 * sent again (duplicated when it had been handled) or what is lost. */
#ifndef XS_INSPECT_SM_H
#define XS_INSPECT_SM_H

#include <stddef.h>
#include <stdint.h>

#include "inspect/annot.h"
#include "inspect/check.h"
#include "inspect/parser.h"

struct xs_analysis;
struct xs_an_sess;
struct xs_print_meta;

#define XS_SM_MAX_R 16 /* <r/> waiting for their <a/>, per direction */

/* The stanzas one side sent since stream management began. */
typedef struct xs_sm_dir {
    int on;
    uint32_t count;   /* stanzas sent (mod 2^32, as h) */
    uint32_t dropped; /* of which a rule dropped (they never arrived) */
    uint32_t last_h;  /* the last h the other side acknowledged */
    int have_h;
    int32_t said_lost;          /* the shortfall reported last: the same one is not said again */
    uint32_t r_at[XS_SM_MAX_R]; /* count when each <r/> was sent, oldest first */
    unsigned r_head, r_n;
} xs_sm_dir;

typedef struct xs_sm_sess {
    xs_sm_dir d[2]; /* [0]: the client's stanzas, [1]: the server's */
    int slot;       /* its id in the table of ids, -1 none */
} xs_sm_sess;

/* The ids given by <enabled id=…/>, for resumption in later sessions. */
typedef struct xs_sm_id {
    char *id;
    char *session;           /* the session that has it now */
    struct xs_an_sess *live; /* that session while it lives (its counters), else: */
    uint32_t count[2];       /* its counters when it ended */
} xs_sm_id;

typedef struct xs_sm_ids {
    xs_sm_id slot[XS_SM_MAX_IDS];
    unsigned next; /* the slot to use next (the oldest goes first) */
} xs_sm_ids;

/* A stanza (message, presence, iq) of direction dir: counted. `dropped`: a rule dropped it. */
static inline void xs_sm_stanza(struct xs_an_sess *s, xs_sm_sess *sm, int dir, int dropped)
{
    (void)s;
    if (sm->d[dir].on) {
        sm->d[dir].count++;
        sm->d[dir].dropped += dropped != 0;
    }
}

/* An element of the urn:xmpp:sm:3 (or :2) namespace of direction dir: enable, enabled, r, a,
 * resume, resumed, failed. */
void xs_sm_element(struct xs_analysis *an, struct xs_an_sess *s, int dir, const xs_event *ev,
                   xs_annot *a);

/* The session ends: its id, if any, keeps its final counters. */
void xs_sm_end(struct xs_analysis *an, struct xs_an_sess *s);

void xs_sm_ids_free(xs_sm_ids *t);

#endif

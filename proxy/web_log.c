/* `xmppscope web LOG.jsonl`: a saved log served by the web inspector, through the same observer
 * as a live proxy's events. See web.h (xs_web_run_log). */
#include "proxy/web.h"

#include "inspect/check.h"
#include "inspect/jsonl.h"
#include "proxy/file.h"
#include "proxy/proxy_impl.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct log_run {
    xs_observer obs[2]; /* the analysers (pairs, round trips, checks), then the web inspector */
    size_t n_obs;
    xs_web *web;
    uv_signal_t sigint, sigterm;
} log_run;

static int on_log_event(void *user, const xs_print_meta *meta, const xs_event *ev)
{
    log_run *r = user;
    (void)xs_obs_emit_event(r->obs, r->n_obs, meta, ev, 0);
    return 0;
}

static int on_log_note(void *user, const xs_print_meta *meta, const char *level, const char *text)
{
    log_run *r = user;
    xs_obs_event e = {.kind = XS_OBS_NOTE, .meta = meta, .level = level, .text = text};
    (void)xs_obs_emit_other(r->obs, r->n_obs, &e);
    return 0;
}

/* Reads the log line by line (each line at most XS_JSONL_MAX_LINE). */
static int read_log(log_run *r, const char *path, xs_diag *diag)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return xs_diag_set(diag, XS_EIO, "cannot open %s: %s", path, strerror(errno));
    xs_parser_limits lim = {0};
    xs_jsonl_reader *rd = NULL;
    int rc = xs_jsonl_reader_new(&lim, on_log_event, on_log_note, r, &rd);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    unsigned long lineno = 0, bad = 0;
    while (rc == 0 && (n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (n > 0 && line[n - 1] == '\n')
            n--;
        if (n == 0)
            continue;
        char err[256];
        if ((size_t)n > XS_JSONL_MAX_LINE ||
            xs_jsonl_reader_line(rd, line, (size_t)n, err, sizeof(err)) < 0) {
            if (bad++ == 0)
                xs_proxy_say("%s:%lu: skipped: %s", path, lineno,
                             (size_t)n > XS_JSONL_MAX_LINE ? "line too long" : err);
        }
    }
    if (bad > 1)
        xs_proxy_say("%s: %lu lines skipped in all", path, bad);
    free(line);
    fclose(f);
    xs_print_meta end = {.untimed = 1};
    xs_obs_event e = {.kind = XS_OBS_CLOSED, .meta = &end};
    (void)xs_obs_emit_other(r->obs, r->n_obs, &e);
    xs_jsonl_reader_free(rd);
    return rc;
}

static void on_signal(uv_signal_t *h, int signum)
{
    log_run *r = h->data;
    (void)signum;
    uv_close((uv_handle_t *)&r->sigint, NULL);
    uv_close((uv_handle_t *)&r->sigterm, NULL);
    xs_web_close(r->web);
}

int xs_web_run_log(const xs_web_opts *opts, const char *path, xs_diag *diag)
{
    xs_diag_set(diag, 0, "%s", "");
    log_run r = {0};
    uv_loop_t *loop = uv_default_loop();
    xs_analysis *an = NULL;
    xs_analysis_cfg acfg = {.pairing = 1, .checks = 1, .lazy_timeouts = 1};
    int rc = xs_analysis_new(&acfg, &an);
    if (rc < 0)
        return rc;
    r.obs[r.n_obs++] = xs_analysis_observer(an);
    xs_web_opts wo = *opts;
    wo.control = NULL;
    wo.title = path;
    rc = xs_web_new(loop, &wo, &r.web, diag);
    if (rc == 0) {
        r.obs[r.n_obs++] = xs_web_observer(r.web);
        rc = read_log(&r, path, diag);
    }
    if (rc == 0) {
        uv_signal_init(loop, &r.sigint);
        uv_signal_init(loop, &r.sigterm);
        r.sigint.data = r.sigterm.data = &r;
        uv_signal_start(&r.sigint, on_signal, SIGINT);
        uv_signal_start(&r.sigterm, on_signal, SIGTERM);
        signal(SIGPIPE, SIG_IGN);
        xs_proxy_say("serving %s; Ctrl-C stops", path);
        fflush(stderr);
        uv_run(loop, UV_RUN_DEFAULT);
    } else {
        xs_web_close(r.web);
        uv_run(loop, UV_RUN_DEFAULT);
    }
    xs_web_free(r.web);
    xs_analysis_free(an);
    uv_loop_close(loop);
    return rc;
}

/* `status`: queues, labs, semaphore and regimes, as tables or one JSON object. */
#define CGA_LOG_COMPONENT "status"
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "cgalpha/alloc.h"
#include "cgalpha/app.h"
#include "cgalpha/clock.h"
#include "cgalpha/config.h"
#include "cgalpha/err.h"
#include "cgalpha/keys.h"
#include "cgalpha/log.h"
#include "cgalpha/queue.h"
#include "cgalpha/redis.h"
#include "cgalpha/state.h"
#include "bufview.h"
#include "snapshot.h"
#include "ops.h"

typedef struct status_s {
    cga_app_t *app;
    int done, json;
    int code;
    const char *ns;
    ops_bufview_t buf;
} status_t;

static void print_json(const status_t *st, const ops_snapshot_t *s, uint64_t now) {
    FILE *f = stdout;
    fputs("{\"namespace\":", f);
    ops_json_str(f, st->ns, strlen(st->ns));
    fputs(",\"redis\":{\"reachable\":true},", f);
    ops_snapshot_json(f, s, now);
    fputs(",\"buffer\":", f);
    ops_bufview_json(f, &st->buf, st->ns, now / 1000);
    fputs("}\n", f);
}

/* Redis cannot be read: what is known without it (the outage and the local task buffer). */
static void print_unreachable(const status_t *s, const char *ns, int json, int rc) {
    FILE *f = stdout;
    uint64_t now = cga_clock_wall_us();
    const char *why = cga_strerror(rc ? rc : CGA_ENOTCONN);
    if (json) {
        fputs("{\"namespace\":", f);
        ops_json_str(f, ns, strlen(ns));
        fputs(",\"redis\":{\"reachable\":false,\"error\":", f);
        ops_json_str(f, why, strlen(why));
        fputs("},\"queues\":null,\"semaphore\":null,\"labs\":[],\"regimes\":[],\"buffer\":", f);
        ops_bufview_json(f, &s->buf, ns, now / 1000);
        fputs(",\"undecodable\":0}\n", f);
    } else {
        fprintf(f, "namespace %s\n\nredis      UNREACHABLE: %s (queues, labs, semaphore and "
                "regimes unknown)\n\n", ns, why);
        ops_bufview_text(f, &s->buf, ns, now / 1000);
    }
    fflush(f);
}

static void print_human(const status_t *st, const ops_snapshot_t *s, uint64_t now) {
    FILE *f = stdout;
    const char *ns = st->ns;
    fprintf(f, "namespace %s\n\n", ns);
    fprintf(f, "%-10s %10s %10s %10s %8s %10s %7s\n", "QUEUE", "LENGTH", "LAG", "PENDING",
            "DEAD", "CONSUMERS", "GROUPS");
    for (int i = 0; i < 2; i++) {
        const cga_queue_info_t *q = &s->queues[i];
        fprintf(f, "%-10s %10" PRIu64 " %10" PRIu64 " %10" PRIu64 " %8" PRIu64 " %10" PRIu64
                " %7" PRIu64 "\n", ops_queue_names[i], q->length, q->lag, q->pending, q->dead,
                q->consumers, q->groups);
    }
    fputs("\n", f);
    char sem[256];
    ops_semaphore_line(sem, sizeof sem, s, now);
    fprintf(f, "%s\n", sem);
    if (s->sem_found) fprintf(f, "           %s\n", s->sem_reason);
    fprintf(f, "\nlabs alive: %zu\n", s->nlabs);
    if (s->nlabs) {
        fprintf(f, "%-32s %-28s %10s %8s %8s %8s  %s\n", "ID", "PLUGINS", "PROCESSED", "FAILED",
                "INFLIGHT", "AGE", "STATE");
        for (size_t i = 0; i < s->nlabs; i++) {
            const ops_lab_row_t *r = &s->labs[i];
            fprintf(f, "%-32s %-28s %10" PRIu64 " %8" PRIu64 " %8" PRIu32 " %6.1f s  %s\n",
                    r->id, r->plugins, r->processed, r->failed, r->inflight,
                    ops_age_s(r->ts_us, now), r->stalled ? "STALLED" : "ok");
        }
    }
    fprintf(f, "\nregimes: %zu symbols\n", s->nregimes);
    if (s->nregimes) {
        fprintf(f, "%-16s %-10s %-10s %6s %-18s %5s %8s\n", "SYMBOL", "REGIME", "FROM", "SEQ",
                "WINDOW START", "CONF", "AGE");
        for (size_t i = 0; i < s->nregimes; i++) {
            const ops_regime_row_t *r = &s->regimes[i];
            char ws[32];
            ops_fmt_utc(ws, sizeof ws, r->ws, 0);
            fprintf(f, "%-16s %-10s %-10s %6" PRIu64 " %-18s %5.2f %6.1f s\n", r->symbol,
                    cga_regime_name(r->regime), cga_regime_name(r->from), r->seq, ws, r->conf,
                    ops_age_s(r->ts_us, now));
        }
    }
    fputs("\n", f);
    ops_bufview_text(f, &st->buf, ns, now / 1000);
    if (s->undecodable) fprintf(f, "\n%zu state values could not be decoded\n", s->undecodable);
}

static void on_snapshot(const ops_snapshot_t *s, void *arg) {
    status_t *st = arg;
    st->done = 1;
    if (s->err) {
        st->code = cga_app_exit_code(s->err);
        if (st->code == CGA_EXIT_OK) st->code = CGA_EXIT_FAILURE;
        ops_error("status", "reading Redis failed: %s", cga_strerror(s->err));
    } else {
        uint64_t now = cga_clock_wall_us();
        if (st->json)
            print_json(st, s, now);
        else
            print_human(st, s, now);
        st->code = fflush(stdout) == 0 ? CGA_EXIT_OK : CGA_EXIT_FAILURE;
    }
    cga_app_stop(st->app);
}

static void on_closed(void *arg) {
    *(int *)arg = 1;
}

int ops_cmd_status(cga_app_t *a) {
    const cga_config_t *cfg = cga_app_config(a);
    status_t st = {.app = a, .json = cga_config_bool(cfg, "OPS_JSON"), .ns = cga_app_ns(a)};
    cga_redis_t *redis = cga_app_redis(a);
    /* The local task buffer, read-only: shown whether or not Redis answers. */
    ops_bufview_read(&st.buf, cga_config_str(cfg, "OPS_BUFFER_PATH"));
    int code = ops_connect(a, "status");
    if (code >= 0) {
        if (code == CGA_EXIT_UNAVAILABLE || code == CGA_EXIT_AUTH)
            print_unreachable(&st, st.ns, st.json, cga_redis_last_error(redis));
        ops_bufview_free(&st.buf);
        return code;
    }
    uv_loop_t *loop = cga_app_loop(a);
    ops_snapper_t *sn = NULL;
    int rc = ops_snapper_create(&sn, loop, redis, st.ns, 0);
    if (rc == CGA_OK) rc = ops_snapper_take(sn, on_snapshot, &st);
    if (rc == CGA_OK) cga_app_run(a);
    int closed = !sn;
    ops_snapper_close(sn, on_closed, &closed);
    while (!closed) uv_run(loop, UV_RUN_ONCE);
    if (rc != CGA_OK || !st.done) { /* refused up front, or interrupted */
        if (rc == CGA_OK) rc = CGA_ECANCELED;
        code = cga_app_exit_code(rc);
        if (code == CGA_EXIT_OK) code = CGA_EXIT_FAILURE;
        ops_error("status", "reading Redis failed: %s", cga_strerror(rc));
    } else {
        code = st.code;
    }
    ops_bufview_free(&st.buf);
    return code;
}

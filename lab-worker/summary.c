#define CGA_LOG_COMPONENT "lab"
#include "summary.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cgalpha/alloc.h"
#include "cgalpha/err.h"
#include "cgalpha/keys.h"
#include "cgalpha/log.h"
#include "cgalpha/proto.h"
#include "cgalpha/queue.h"
#include "cgalpha/redis.h"
#include "cgalpha/state.h"

#define PAGE 500
#define MAX_ERRORS 20

/* A set of strings (open addressing, FNV-1a). */
typedef struct strset_s {
    char **slots;
    size_t cap, n;
} strset_t;

static uint64_t fnv1a(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

static void strset_put(strset_t *s, const char *p, size_t len);

static void strset_grow(strset_t *s) {
    strset_t old = *s;
    s->cap = old.cap ? old.cap * 2 : 1024;
    s->slots = cga_calloc(s->cap, sizeof *s->slots);
    s->n = 0;
    for (size_t i = 0; i < old.cap; i++) {
        if (!old.slots[i]) continue;
        strset_put(s, old.slots[i], strlen(old.slots[i]));
        free(old.slots[i]);
    }
    free(old.slots);
}

static void strset_put(strset_t *s, const char *p, size_t len) {
    if ((s->n + 1) * 2 > s->cap) strset_grow(s);
    size_t i = (size_t)(fnv1a(p, len) & (s->cap - 1));
    while (s->slots[i]) {
        if (strlen(s->slots[i]) == len && memcmp(s->slots[i], p, len) == 0) return;
        i = (i + 1) & (s->cap - 1);
    }
    s->slots[i] = cga_strndup(p, len);
    s->n++;
}

static void strset_clear(strset_t *s) {
    for (size_t i = 0; i < s->cap; i++) free(s->slots[i]);
    free(s->slots);
    memset(s, 0, sizeof *s);
}

typedef struct summary_s {
    uv_loop_t *loop;
    int done;
    int status;
    /* XRANGE page */
    char next[64];
    size_t got;
    /* totals */
    uint64_t reports, ok, error, undecodable, workers;
    strset_t tasks;
    char *errors[MAX_ERRORS];
    size_t nerrors;
    cga_proto_reader_t *reader;
    cga_queue_info_t info;
} summary_t;

static void wait_done(summary_t *s) {
    while (!s->done) uv_run(s->loop, UV_RUN_ONCE);
    s->done = 0;
}

static void add_entry(summary_t *s, const char *data, size_t len) {
    const cga_report_t *r = NULL;
    size_t n = 0;
    if (cga_proto_decode_reports(s->reader, data, len, &r, &n) != CGA_OK) {
        s->undecodable++;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        s->reports++;
        strset_put(&s->tasks, r[i].task_id.ptr, r[i].task_id.len);
        if (r[i].status == CGA_REPORT_OK) {
            s->ok++;
            continue;
        }
        s->error++;
        if (s->nerrors < MAX_ERRORS) {
            size_t sz = r[i].task_id.len + r[i].error.len + 2;
            char *line = cga_malloc(sz);
            snprintf(line, sz, "%.*s %.*s", (int)r[i].task_id.len, r[i].task_id.ptr,
                     (int)r[i].error.len, r[i].error.ptr);
            s->errors[s->nerrors++] = line;
        }
    }
}

static void on_range(int status, struct redisReply *reply, void *arg) {
    summary_t *s = arg;
    s->done = 1;
    s->status = status;
    s->got = 0;
    if (status != CGA_OK || reply->type != REDIS_REPLY_ARRAY) return;
    s->got = reply->elements;
    for (size_t i = 0; i < reply->elements; i++) {
        redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) continue;
        if (e->element[0]->type == REDIS_REPLY_STRING)
            snprintf(s->next, sizeof s->next, "(%s", e->element[0]->str);
        redisReply *f = e->element[1];
        if (f->type != REDIS_REPLY_ARRAY) continue;
        for (size_t k = 0; k + 1 < f->elements; k += 2) {
            if (f->element[k]->type == REDIS_REPLY_STRING &&
                f->element[k + 1]->type == REDIS_REPLY_STRING &&
                strcmp(f->element[k]->str, CGA_PROTO_FIELD) == 0)
                add_entry(s, f->element[k + 1]->str, f->element[k + 1]->len);
        }
    }
}

static void on_info(int status, const cga_queue_info_t *info, void *arg) {
    summary_t *s = arg;
    s->done = 1;
    s->status = status;
    if (status == CGA_OK) s->info = *info;
}

static void on_scan(int status, const char *const *names, size_t n, void *arg) {
    summary_t *s = arg;
    (void)names;
    s->done = 1;
    s->status = status;
    s->workers = status == CGA_OK ? n : 0;
}

static void on_closed(void *arg) {
    summary_t *s = arg;
    s->done = 1;
}

int lab_summary_run(cga_app_t *app, FILE *out) {
    summary_t s;
    memset(&s, 0, sizeof s);
    s.loop = cga_app_loop(app);
    cga_redis_t *redis = cga_app_redis(app);
    const char *ns = cga_app_ns(app);
    cga_queue_t *q = NULL;
    cga_state_t *st = NULL;
    int code = CGA_EXIT_OK;
    int rc = cga_proto_reader_create(&s.reader, NULL);
    if (rc != CGA_OK) goto fail;

    char key[CGA_KEY_MAX];
    rc = cga_key(key, sizeof key, ns, CGA_KIND_QUEUE, CGA_QUEUE_REPORTS, NULL);
    if (rc < 0) goto fail;
    snprintf(s.next, sizeof s.next, "-");
    for (;;) {
        char count[16];
        snprintf(count, sizeof count, "%d", PAGE);
        const char *argv[] = {"XRANGE", key, s.next, "+", "COUNT", count};
        size_t lens[6];
        for (int i = 0; i < 6; i++) lens[i] = strlen(argv[i]);
        rc = cga_redis_commandv(redis, CGA_REDIS_WAIT, 0, on_range, &s, 6, argv, lens);
        if (rc != CGA_OK) goto fail;
        wait_done(&s);
        if ((rc = s.status) != CGA_OK) goto fail;
        if (s.got < PAGE) break;
    }

    cga_queue_opts_t qo;
    cga_queue_opts_init(&qo);
    qo.ns = ns;
    qo.name = CGA_QUEUE_ANALYSIS;
    qo.group = CGA_GROUP_ANALYSIS;
    qo.consumer = "summary";
    rc = cga_queue_create(&q, s.loop, redis, &qo);
    if (rc != CGA_OK) goto fail;
    rc = cga_queue_info(q, on_info, &s);
    if (rc != CGA_OK) goto fail;
    wait_done(&s);
    if ((rc = s.status) != CGA_OK) goto fail;

    rc = cga_state_create(&st, redis, ns);
    if (rc != CGA_OK) goto fail;
    rc = cga_state_scan(st, "worker:*", on_scan, &s);
    if (rc != CGA_OK) goto fail;
    wait_done(&s);
    if ((rc = s.status) != CGA_OK) goto fail;

    fprintf(out, "reports %" PRIu64 "\n", s.reports);
    fprintf(out, "report_tasks %zu\n", s.tasks.n);
    fprintf(out, "report_ok %" PRIu64 "\n", s.ok);
    fprintf(out, "report_error %" PRIu64 "\n", s.error);
    fprintf(out, "report_undecodable %" PRIu64 "\n", s.undecodable);
    fprintf(out, "analysis_length %" PRIu64 "\n", s.info.length);
    fprintf(out, "analysis_lag %" PRIu64 "\n", s.info.lag);
    fprintf(out, "analysis_pending %" PRIu64 "\n", s.info.pending);
    fprintf(out, "analysis_dead %" PRIu64 "\n", s.info.dead);
    fprintf(out, "workers %" PRIu64 "\n", s.workers);
    for (size_t i = 0; i < s.nerrors; i++) fprintf(out, "error %s\n", s.errors[i]);
    fflush(out);
    goto done;

fail:
    CGA_LOG(CGA_LOG_ERROR, rc, "summary failed");
    code = rc == CGA_ENOTCONN || rc == CGA_ETIMEDOUT || rc == CGA_ECONNLOST
               ? CGA_EXIT_UNAVAILABLE
               : CGA_EXIT_FAILURE;
done:
    if (q) {
        cga_queue_close(q, on_closed, &s);
        wait_done(&s);
    }
    cga_state_free(st);
    cga_proto_reader_free(s.reader);
    strset_clear(&s.tasks);
    for (size_t i = 0; i < s.nerrors; i++) free(s.errors[i]);
    return code;
}

/* `cgalpha-ops bench`: the bare transport. The Redis commands of the pipeline with the same
 * batch sizes, and nothing else: no msgpack, no plugin, no event loop. Payloads are opaque blobs
 * of the size of an encoded task / report, each carrying its task's enqueue time (8 bytes) so
 * that latency is measured per task, as in the full pipeline.
 *
 *   producer   XADD <akey> * m <batch of tasks>, up to max_inflight entries (and
 *              max_inflight_bytes) pipelined (as ops)
 *   lab x K    XREADGROUP GROUP labs COUNT c BLOCK 100 > ; then, in one write: for each group of
 *              claimed entries (<= 1024 reports, <= 256 entries) MULTI, XADD <rkey> * m
 *              <reports>, XACK, EXEC, and the next XREADGROUP (the lab's complete overlaps its
 *              next claim too); one connection per lab, as the lab's
 *   nexus      XREADGROUP GROUP nexus COUNT n BLOCK 100 > ; MULTI, XACK, EXEC; then claims
 *              again (nexus is sequential: claim, fold, commit)
 *
 * Each role is a thread with its own blocking hiredis connection. */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "bench.h"
#include "cgalpha/alloc.h"
#include "cgalpha/clock.h"
#include "cgalpha/proto.h"

#define GROUP_MAX_REPORTS 1024u /* as lab-worker/worker.c */
#define GROUP_MAX_ENTRIES 256u
#define GROUP_MAX_BYTES (1024u * 1024u)
#define BLOCK_MS "100"

typedef struct bare_s bare_t;

typedef struct lab_s {
    bare_t *b;
    redisContext *c;
    char name[32];
    pthread_t th;
    int started;
} lab_t;

struct bare_s {
    const bench_bare_opts_t *o;
    redisContext *pc, *nc; /* producer, nexus */
    lab_t *labs;
    atomic_int stop;
    atomic_int failed;
    char err[256];
    pthread_mutex_t mu; /* err */
    uint64_t t_first_us, t_enqueued_us, t_end_us; /* monotonic */
    atomic_uint_fast64_t calls;
    bench_lat_t lat;
    uint64_t reports;
};

/* Records the first failure ("bare transport: <what>") and stops every thread. */
static void fail(bare_t *b, const char *what) {
    pthread_mutex_lock(&b->mu);
    if (!atomic_load(&b->failed)) {
        snprintf(b->err, sizeof b->err, "bare transport: %s", what);
        atomic_store(&b->failed, 1);
    }
    pthread_mutex_unlock(&b->mu);
    atomic_store(&b->stop, 1);
}

static const char *ctx_err(redisContext *c) {
    return c->errstr[0] ? c->errstr : "connection error";
}

/* Reads one reply; NULL after fail(). An error reply fails too. */
static redisReply *get_reply(bare_t *b, redisContext *c, const char *what) {
    void *r = NULL;
    if (redisGetReply(c, &r) != REDIS_OK || !r) {
        fail(b, ctx_err(c));
        return NULL;
    }
    redisReply *rep = r;
    if (rep->type == REDIS_REPLY_ERROR) {
        char msg[200];
        snprintf(msg, sizeof msg, "%s: %.150s", what, rep->str);
        freeReplyObject(rep);
        fail(b, msg);
        return NULL;
    }
    return rep;
}

static void sleep_us(uint64_t us) {
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* ---- producer ------------------------------------------------------------------------- */

static void *producer_main(void *arg) {
    bare_t *b = arg;
    const bench_bare_opts_t *o = b->o;
    redisContext *c = b->pc;
    size_t cap = o->batch * o->task_bytes;
    char *blob = cga_malloc(cap);
    memset(blob, 'x', cap);
    uint64_t sent = 0, inflight = 0;
    uint64_t t0 = cga_clock_mono_us();
    b->t_first_us = t0;
    while (sent < o->tasks && !atomic_load(&b->stop)) {
        size_t n = o->batch;
        if (o->tasks - sent < n) n = (size_t)(o->tasks - sent);
        if (o->rate) { /* the tasks due by now, at most a batch per entry */
            uint64_t due = (cga_clock_mono_us() - t0) * o->rate / 1000000u;
            if (due > o->tasks) due = o->tasks;
            if (due <= sent) {
                while (inflight > 0) { /* the tick's entries: answered before sleeping */
                    redisReply *r = get_reply(b, c, "XADD");
                    if (!r) goto out;
                    freeReplyObject(r);
                    inflight--;
                }
                sleep_us(200);
                continue;
            }
            if (due - sent < n) n = (size_t)(due - sent);
        }
        uint64_t now = cga_clock_wall_us();
        for (size_t i = 0; i < n; i++) memcpy(blob + i * o->task_bytes, &now, sizeof now);
        const char *argv[5] = {"XADD", o->akey, "*", "m", blob};
        size_t len[5] = {4, strlen(o->akey), 1, 1, n * o->task_bytes};
        redisAppendCommandArgv(c, 5, argv, len);
        atomic_fetch_add(&b->calls, 1);
        inflight++;
        sent += n;
        while (inflight >= o->max_inflight || (sent == o->tasks && inflight > 0) ||
               inflight * o->batch * o->task_bytes >= o->max_inflight_bytes) {
            redisReply *r = get_reply(b, c, "XADD");
            if (!r) goto out;
            freeReplyObject(r);
            inflight--;
        }
    }
    b->t_enqueued_us = cga_clock_mono_us();
out:
    free(blob);
    return NULL;
}

/* ---- labs ----------------------------------------------------------------------------- */

/* The entries of an XREADGROUP reply, or NULL (nil: none). */
static const redisReply *entries_of(const redisReply *r) {
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1) return NULL;
    const redisReply *s = r->element[0];
    if (s->type != REDIS_REPLY_ARRAY || s->elements != 2) return NULL;
    const redisReply *l = s->element[1];
    return l->type == REDIS_REPLY_ARRAY ? l : NULL;
}

/* The m field of an entry ([id, [f, v, ...]]), or NULL. */
static const redisReply *entry_m(const redisReply *e) {
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) return NULL;
    const redisReply *f = e->element[1];
    if (f->type != REDIS_REPLY_ARRAY) return NULL;
    for (size_t i = 0; i + 1 < f->elements; i += 2)
        if (f->element[i]->len == 1 && f->element[i]->str[0] == 'm') return f->element[i + 1];
    return NULL;
}

typedef struct scratch_s {
    char *rblob;
    size_t rcap;
    const char **argv;
    size_t *len;
    size_t argcap;
} scratch_t;

static void scratch_args(scratch_t *s, size_t n) {
    if (n <= s->argcap) return;
    s->argv = cga_realloc(s->argv, n * sizeof *s->argv);
    s->len = cga_realloc(s->len, n * sizeof *s->len);
    s->argcap = n;
}

/* Appends MULTI, XADD reports, XACK, EXEC for entries [from, to) of list. Returns the number of
 * commands appended (4). */
static void append_complete(bare_t *b, redisContext *c, scratch_t *s, const redisReply *list,
                            size_t from, size_t to) {
    const bench_bare_opts_t *o = b->o;
    size_t ntasks = 0;
    for (size_t i = from; i < to; i++) {
        const redisReply *m = entry_m(list->element[i]);
        ntasks += m ? (size_t)m->len / o->task_bytes : 0;
    }
    size_t need = ntasks * o->report_bytes;
    if (need > s->rcap) {
        s->rblob = cga_realloc(s->rblob, need);
        memset(s->rblob, 'r', need);
        s->rcap = need;
    }
    size_t k = 0;
    for (size_t i = from; i < to; i++) {
        const redisReply *m = entry_m(list->element[i]);
        size_t n = m ? (size_t)m->len / o->task_bytes : 0;
        for (size_t t = 0; t < n; t++, k++)
            memcpy(s->rblob + k * o->report_bytes, m->str + t * o->task_bytes, sizeof(uint64_t));
    }
    redisAppendCommand(c, "MULTI");
    const char *xadd[5] = {"XADD", o->rkey, "*", "m", s->rblob};
    size_t xlen[5] = {4, strlen(o->rkey), 1, 1, need ? need : 1};
    redisAppendCommandArgv(c, 5, xadd, xlen);
    size_t argc = 3 + (to - from);
    scratch_args(s, argc);
    s->argv[0] = "XACK";
    s->argv[1] = o->akey;
    s->argv[2] = "labs";
    for (size_t i = from; i < to; i++) {
        const redisReply *id = list->element[i]->element[0];
        s->argv[3 + i - from] = id->str;
    }
    for (size_t i = 0; i < argc; i++) s->len[i] = strlen(s->argv[i]);
    redisAppendCommandArgv(c, (int)argc, s->argv, s->len);
    redisAppendCommand(c, "EXEC");
    atomic_fetch_add(&b->calls, 4);
}

static void *lab_main(void *arg) {
    lab_t *l = arg;
    bare_t *b = l->b;
    const bench_bare_opts_t *o = b->o;
    redisContext *c = l->c;
    scratch_t s = {0};
    char count[24];
    snprintf(count, sizeof count, "%zu", o->lab_claim);
    redisReply *r = NULL;
    while (!atomic_load(&b->stop)) {
        if (!r) { /* nothing in hand: wait for work */
            r = redisCommand(c, "XREADGROUP GROUP labs %s COUNT %s BLOCK " BLOCK_MS
                             " STREAMS %s >", l->name, count, o->akey);
            atomic_fetch_add(&b->calls, 1);
            if (!r) {
                fail(b, ctx_err(c));
                break;
            }
            if (r->type == REDIS_REPLY_ERROR) {
                char msg[200];
                snprintf(msg, sizeof msg, "XREADGROUP: %.150s", r->str);
                fail(b, msg);
                break;
            }
        }
        const redisReply *list = entries_of(r);
        size_t n = list ? list->elements : 0;
        if (n == 0) {
            freeReplyObject(r);
            r = NULL;
            continue;
        }
        /* Groups as the lab's complete: <= 1024 reports, <= 256 entries, <= 1 MiB. */
        size_t groups = 0, from = 0;
        while (from < n) {
            size_t to = from, reports = 0, bytes = 0;
            while (to < n) {
                const redisReply *m = entry_m(list->element[to]);
                size_t t = m ? (size_t)m->len / o->task_bytes : 0;
                if (to > from && (reports + t > GROUP_MAX_REPORTS || to - from >= GROUP_MAX_ENTRIES ||
                                  bytes >= GROUP_MAX_BYTES))
                    break;
                reports += t;
                bytes += t * o->report_bytes;
                to++;
            }
            append_complete(b, c, &s, list, from, to);
            groups++;
            from = to;
        }
        redisAppendCommand(c, "XREADGROUP GROUP labs %s COUNT %s STREAMS %s >", l->name, count,
                           o->akey);
        atomic_fetch_add(&b->calls, 1);
        freeReplyObject(r);
        r = NULL;
        for (size_t g = 0; g < groups * 4; g++) {
            redisReply *x = get_reply(b, c, "complete");
            if (!x) goto out;
            if (g % 4 == 3 && x->type != REDIS_REPLY_ARRAY) {
                freeReplyObject(x);
                fail(b, "EXEC aborted");
                goto out;
            }
            freeReplyObject(x);
        }
        r = get_reply(b, c, "XREADGROUP");
        if (!r) goto out;
    }
out:
    if (r) freeReplyObject(r);
    free(s.rblob);
    free(s.argv);
    free(s.len);
    return NULL;
}

/* ---- nexus ---------------------------------------------------------------------------- */

static void *nexus_main(void *arg) {
    bare_t *b = arg;
    const bench_bare_opts_t *o = b->o;
    redisContext *c = b->nc;
    scratch_t s = {0};
    char count[24];
    snprintf(count, sizeof count, "%zu", o->nexus_claim);
    while (!atomic_load(&b->stop)) {
        redisReply *r = redisCommand(c, "XREADGROUP GROUP nexus bare-nexus COUNT %s BLOCK "
                                     BLOCK_MS " STREAMS %s >", count, o->rkey);
        atomic_fetch_add(&b->calls, 1);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            char msg[200];
            snprintf(msg, sizeof msg, "XREADGROUP reports: %.150s", r ? r->str : ctx_err(c));
            fail(b, msg);
            if (r) freeReplyObject(r);
            break;
        }
        uint64_t now = cga_clock_wall_us();
        const redisReply *list = entries_of(r);
        size_t n = list ? list->elements : 0;
        if (n == 0) {
            freeReplyObject(r);
            continue;
        }
        scratch_args(&s, n + 3);
        s.argv[0] = "XACK";
        s.argv[1] = o->rkey;
        s.argv[2] = "nexus";
        for (size_t i = 0; i < n; i++) {
            const redisReply *e = list->element[i];
            const redisReply *m = entry_m(e);
            size_t k = m ? (size_t)m->len / o->report_bytes : 0;
            for (size_t t = 0; t < k; t++) {
                uint64_t enq;
                memcpy(&enq, m->str + t * o->report_bytes, sizeof enq);
                bench_lat_add(&b->lat, now > enq ? now - enq : 0);
            }
            b->reports += k;
            s.argv[3 + i] = e->element[0]->str;
        }
        for (size_t i = 0; i < n + 3; i++) s.len[i] = strlen(s.argv[i]);
        redisAppendCommand(c, "MULTI");
        redisAppendCommandArgv(c, (int)(n + 3), s.argv, s.len);
        redisAppendCommand(c, "EXEC");
        atomic_fetch_add(&b->calls, 3);
        freeReplyObject(r);
        for (int i = 0; i < 3; i++) {
            redisReply *x = get_reply(b, c, "XACK");
            if (!x) goto out;
            freeReplyObject(x);
        }
        if (b->reports >= o->tasks) {
            b->t_end_us = cga_clock_mono_us();
            atomic_store(&b->stop, 1);
        }
    }
out:
    free(s.argv);
    free(s.len);
    return NULL;
}

/* ---- run -------------------------------------------------------------------------------- */

static int simple(redisContext *c, const char *fmt, const char *a1, const char *a2) {
    redisReply *r = redisCommand(c, fmt, a1, a2);
    int ok = r && r->type != REDIS_REPLY_ERROR;
    if (r) freeReplyObject(r);
    return ok ? 0 : -1;
}

void bench_bare_run(const bench_bare_opts_t *o, bench_bare_result_t *res) {
    memset(res, 0, sizeof *res);
    bare_t b;
    memset(&b, 0, sizeof b);
    b.o = o;
    pthread_mutex_init(&b.mu, NULL);
    bench_lat_init(&b.lat, (size_t)o->tasks);
    b.labs = cga_calloc(o->labs, sizeof *b.labs);
    pthread_t pt, nt;
    int p_started = 0, n_started = 0;

    /* Every connection is made here, on the calling thread (config is not thread-safe). */
    char err[256] = "";
    b.pc = bench_connect(o->cfg, err, sizeof err);
    if (b.pc) b.nc = bench_connect(o->cfg, err, sizeof err);
    for (size_t i = 0; b.nc && i < o->labs; i++) {
        b.labs[i].b = &b;
        snprintf(b.labs[i].name, sizeof b.labs[i].name, "bare-lab-%zu", i);
        b.labs[i].c = bench_connect(o->cfg, err, sizeof err);
        if (!b.labs[i].c) break;
    }
    if (err[0]) {
        snprintf(res->err, sizeof res->err, "%s", err);
        goto done;
    }
    if (simple(b.pc, "DEL %s %s", o->akey, o->rkey) != 0 ||
        simple(b.pc, "XGROUP CREATE %s labs 0 MKSTREAM", o->akey, NULL) != 0 ||
        simple(b.pc, "XGROUP CREATE %s nexus 0 MKSTREAM", o->rkey, NULL) != 0) {
        snprintf(res->err, sizeof res->err, "bare transport: cannot create the streams");
        goto done;
    }

    n_started = pthread_create(&nt, NULL, nexus_main, &b) == 0;
    for (size_t i = 0; n_started && i < o->labs; i++)
        b.labs[i].started = pthread_create(&b.labs[i].th, NULL, lab_main, &b.labs[i]) == 0;
    /* Let the consumers block in XREADGROUP first, as the real labs and nexus do. */
    sleep_us(50000);
    p_started = n_started && pthread_create(&pt, NULL, producer_main, &b) == 0;
    if (!p_started) {
        snprintf(res->err, sizeof res->err, "bare transport: cannot start threads");
        atomic_store(&b.stop, 1);
    }
    uint64_t deadline = cga_clock_mono_ms() + (uint64_t)o->timeout_s * 1000u;
    while (!atomic_load(&b.stop)) {
        if (cga_clock_mono_ms() > deadline) {
            fail(&b, "timed out");
            break;
        }
        if (o->interrupted && *o->interrupted) {
            fail(&b, "interrupted");
            break;
        }
        sleep_us(5000);
    }
done:
    atomic_store(&b.stop, 1);
    if (p_started) pthread_join(pt, NULL);
    if (n_started) pthread_join(nt, NULL);
    for (size_t i = 0; i < o->labs; i++)
        if (b.labs[i].started) pthread_join(b.labs[i].th, NULL);
    if (atomic_load(&b.failed)) snprintf(res->err, sizeof res->err, "%s", b.err);
    if (b.pc) simple(b.pc, "DEL %s %s", o->akey, o->rkey);
    bench_disconnect(b.pc);
    bench_disconnect(b.nc);
    for (size_t i = 0; i < o->labs; i++) bench_disconnect(b.labs[i].c);
    free(b.labs);
    res->ok = !res->err[0] && b.reports >= o->tasks;
    if (res->ok) {
        res->e2e_s = (double)(b.t_end_us - b.t_first_us) / 1e6;
        res->enqueue_s = (double)(b.t_enqueued_us - b.t_first_us) / 1e6;
    }
    res->reports = b.reports;
    res->bench_calls = atomic_load(&b.calls);
    res->lat = b.lat;
    pthread_mutex_destroy(&b.mu);
}

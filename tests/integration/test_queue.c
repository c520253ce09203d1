/* Stream queue against a real redis-server: producing in batches, claiming, completing,
 * reclaiming, splitting, dead letters, trimming, NOGROUP recovery, failures while Redis is down,
 * malformed entries. Each test uses its own namespace on one shared server. */

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "cgalpha/clock.h"
#include "cgalpha/err.h"
#include "cgalpha/keys.h"
#include "cgalpha/log.h"
#include "cgalpha/proto.h"
#include "cgalpha/queue.h"
#include "cgalpha/redis.h"
#include "redis_server.h"
#include "test.h"

static uv_loop_t loop;
static uv_timer_t guard;
static cga_test_redis_t srv;
static cga_redis_t *redis;
static redisContext *sc; /* blocking connection for assertions */
static cga_proto_reader_t *reader;
static cga_test_redis_t *down_srv; /* the second server of the Redis-down test, while it runs */

/* A failed assertion exits: do not leave the servers running. */
static void stop_servers(void) {
    if (down_srv) cga_test_redis_stop(down_srv);
    cga_test_redis_stop(&srv);
}

/* ---- helpers ------------------------------------------------------------------------------- */

static void guard_cb(uv_timer_t *t) {
    (void)t;
}

/* Runs the loop until cond holds; fails after ms. A 5 ms guard timer keeps the loop waking. */
#define WAIT_FOR(cond, ms)                                                                  \
    do {                                                                                    \
        uint64_t dl_ = cga_clock_mono_ms() + (ms);                                          \
        uv_timer_start(&guard, guard_cb, 5, 5);                                             \
        while (!(cond)) {                                                                   \
            if (cga_clock_mono_ms() > dl_) CGA_FAIL_("timed out waiting for %s", #cond);    \
            uv_run(&loop, UV_RUN_ONCE);                                                     \
        }                                                                                   \
        uv_timer_stop(&guard);                                                              \
    } while (0)

/* Runs the loop for ms. */
static void run_for(unsigned ms) {
    uint64_t end = cga_clock_mono_ms() + ms;
    WAIT_FOR(cga_clock_mono_ms() >= end, ms + 1000);
}

static redisReply *cmd(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(sc, fmt, ap);
    va_end(ap);
    if (!r) CGA_FAIL_("sync command failed: %s", sc->errstr);
    return r;
}

static long long cmd_int(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(sc, fmt, ap);
    va_end(ap);
    if (!r) CGA_FAIL_("sync command failed: %s", sc->errstr);
    if (r->type != REDIS_REPLY_INTEGER) CGA_FAIL_("%s: not an integer reply: %s", fmt, r->str);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

/* Pending entries of a group (XPENDING summary count). */
static long long pending_count(const char *key, const char *group) {
    redisReply *r = cmd("XPENDING %s %s", key, group);
    CGA_ASSERT(r->type == REDIS_REPLY_ARRAY && r->elements >= 1);
    long long n = r->element[0]->integer;
    freeReplyObject(r);
    return n;
}

static void key_of(char *out, size_t n, const char *ns, const char *name, const char *suffix) {
    CGA_ASSERT(cga_key(out, n, ns, CGA_KIND_QUEUE, name, suffix) > 0);
}

typedef struct {
    int done;
    int status;
} done_t;

static void on_done(int status, void *arg) {
    done_t *d = arg;
    d->status = status;
    d->done++;
}

typedef struct {
    int done;
    int status;
    cga_queue_batch_t *b;
} claim_t;

static void on_claim(int status, cga_queue_batch_t *b, void *arg) {
    claim_t *c = arg;
    c->status = status;
    c->b = b;
    c->done++;
}

typedef struct {
    int done;
    int status;
    uint64_t n;
} count_t;

static void on_count(int status, uint64_t n, void *arg) {
    count_t *c = arg;
    c->status = status;
    c->n = n;
    c->done++;
}

typedef struct {
    size_t ok, failed, msgs_ok, msgs_failed;
    int last_status;
    char last_id[64];
    char data[8192]; /* bytes of the last failed entry */
    size_t len, count;
    uint64_t at_ms;
} sent_t;

static void on_sent(int status, const char *id, const char *data, size_t len, size_t count,
                    void *arg) {
    sent_t *s = arg;
    s->last_status = status;
    s->at_ms = cga_clock_mono_ms();
    if (status == CGA_OK) {
        CGA_ASSERT(id != NULL);
        snprintf(s->last_id, sizeof s->last_id, "%s", id);
        s->ok++;
        s->msgs_ok += count;
    } else {
        CGA_ASSERT(id == NULL);
        CGA_ASSERT(data != NULL && len > 0 && len <= sizeof s->data);
        memcpy(s->data, data, len);
        s->len = len;
        s->count = count;
        s->failed++;
        s->msgs_failed += count;
    }
}

static void on_closed(void *arg) {
    (*(int *)arg)++;
}

static cga_queue_t *mkq(cga_redis_t *r, const char *ns, const char *name, const char *group,
                        const char *consumer, const cga_queue_opts_t *base) {
    cga_queue_opts_t o;
    if (base) o = *base;
    else cga_queue_opts_init(&o);
    o.ns = ns;
    o.name = name;
    o.group = group;
    o.consumer = consumer;
    cga_queue_t *q = NULL;
    CGA_ASSERT_OK(cga_queue_create(&q, &loop, r, &o));
    return q;
}

static void closeq(cga_queue_t *q) {
    int closed = 0;
    cga_queue_close(q, on_closed, &closed);
    WAIT_FOR(closed == 1, 5000);
}

static void ensure_group(cga_queue_t *q) {
    done_t d = {0};
    CGA_ASSERT_OK(cga_queue_ensure_group(q, on_done, &d));
    WAIT_FOR(d.done, 5000);
    CGA_ASSERT_OK(d.status);
}

static void push_tasks(cga_queue_t *q, int from, int n) {
    for (int i = from; i < from + n; i++) {
        char id[32];
        snprintf(id, sizeof id, "SYM/%d/lab", i);
        cga_bar_t bar = {(int64_t)i * 60000, 1.0, 2.0, 0.5, 1.5, 10.0};
        cga_task_t t = {cga_str(id), cga_str("noop"), cga_str("SYM"), (uint64_t)i, &bar, 1};
        CGA_ASSERT_OK(cga_queue_push_task(q, &t));
    }
}

/* Index i of a task id "SYM/<i>/lab". */
static int task_index(const cga_task_t *t) {
    char buf[64];
    CGA_ASSERT(t->id.len < sizeof buf);
    memcpy(buf, t->id.ptr, t->id.len);
    buf[t->id.len] = '\0';
    int i = -1;
    CGA_ASSERT_EQ(sscanf(buf, "SYM/%d/lab", &i), 1);
    return i;
}

static cga_queue_batch_t *claim(cga_queue_t *q, size_t count, unsigned block_ms, int want) {
    claim_t c = {0};
    CGA_ASSERT_OK(cga_queue_claim(q, count, block_ms, on_claim, &c));
    WAIT_FOR(c.done, block_ms + 5000);
    CGA_ASSERT_EQ(c.status, want);
    if (want != CGA_OK) CGA_ASSERT(c.b == NULL);
    else CGA_ASSERT(c.b != NULL);
    return c.b;
}

static cga_queue_batch_t *reclaim(cga_queue_t *q, size_t count) {
    claim_t c = {0};
    CGA_ASSERT_OK(cga_queue_reclaim(q, count, on_claim, &c));
    WAIT_FOR(c.done, 5000);
    CGA_ASSERT_OK(c.status);
    CGA_ASSERT(c.b != NULL);
    return c.b;
}

/* Produces n tasks with the given batch size and waits until every entry is in. */
static void produce(const char *ns, int from, int n, size_t batch_max) {
    cga_queue_opts_t o;
    cga_queue_opts_init(&o);
    o.batch_max = batch_max;
    cga_queue_t *p = mkq(redis, ns, CGA_QUEUE_ANALYSIS, NULL, NULL, &o);
    sent_t s = {0};
    cga_queue_on_sent(p, on_sent, &s);
    push_tasks(p, from, n);
    cga_queue_flush(p);
    WAIT_FOR(s.msgs_ok + s.msgs_failed == (size_t)n, 5000);
    CGA_ASSERT_EQ(s.failed, 0);
    CGA_ASSERT_EQ(cga_queue_entries_in_flight(p), 0);
    closeq(p);
}

/* ---- tests --------------------------------------------------------------------------------- */

static void test_ensure_group_idempotent(void) {
    cga_queue_t *q = mkq(redis, "t1", CGA_QUEUE_ANALYSIS, "labs", "c1", NULL);
    CGA_ASSERT_STREQ(cga_queue_key(q), "t1:queue:analysis");
    ensure_group(q);
    ensure_group(q); /* BUSYGROUP is success */
    redisReply *r = cmd("XINFO GROUPS t1:queue:analysis");
    CGA_ASSERT_EQ(r->elements, 1);
    freeReplyObject(r);
    CGA_ASSERT_EQ(cmd_int("XLEN t1:queue:analysis"), 0); /* MKSTREAM made it */
    closeq(q);
}

static void test_push_1000_claim_in_order(void) {
    cga_queue_t *c = mkq(redis, "t2", CGA_QUEUE_ANALYSIS, "labs", "c1", NULL);
    ensure_group(c);

    cga_queue_opts_t o;
    cga_queue_opts_init(&o);
    o.batch_max = 32;
    o.linger_us = 1000000; /* only full batches and the explicit flush */
    cga_queue_t *p = mkq(redis, "t2", CGA_QUEUE_ANALYSIS, NULL, NULL, &o);
    sent_t s = {0};
    cga_queue_on_sent(p, on_sent, &s);
    push_tasks(p, 0, 1000);
    /* 31 full batches left; 8 messages wait. */
    CGA_ASSERT_EQ(cga_queue_messages_pending(p), 1000 - 31 * 32);
    CGA_ASSERT_EQ(cga_queue_entries_in_flight(p), 31);
    cga_queue_flush(p);
    CGA_ASSERT_EQ(cga_queue_messages_pending(p), 0);
    WAIT_FOR(s.ok == 32, 5000);
    CGA_ASSERT_EQ(s.failed, 0);
    CGA_ASSERT_EQ(s.msgs_ok, 1000);
    CGA_ASSERT_EQ(cga_queue_entries_in_flight(p), 0);
    CGA_ASSERT_EQ(cmd_int("XLEN t2:queue:analysis"), (1000 + 31) / 32);

    int next = 0, entries = 0;
    for (;;) {
        cga_queue_batch_t *b = claim(c, 10, 0, CGA_OK);
        if (b->n == 0) {
            cga_queue_batch_free(b);
            break;
        }
        for (size_t i = 0; i < b->n; i++) {
            const cga_queue_entry_t *e = &b->entries[i];
            CGA_ASSERT_EQ(e->deliveries, 1);
            CGA_ASSERT(e->data != NULL);
            const cga_task_t *t;
            size_t n;
            CGA_ASSERT_OK(cga_proto_decode_tasks(reader, e->data, e->len, &t, &n));
            CGA_ASSERT_EQ(n, entries < 31 ? 32 : 8);
            for (size_t k = 0; k < n; k++) {
                CGA_ASSERT_EQ(task_index(&t[k]), next);
                CGA_ASSERT_EQ(t[k].nbars, 1);
                CGA_ASSERT_EQ(t[k].bars[0].t, (int64_t)next * 60000);
                next++;
            }
            entries++;
        }
        cga_queue_batch_free(b);
    }
    CGA_ASSERT_EQ(next, 1000);
    CGA_ASSERT_EQ(entries, 32);
    CGA_ASSERT_EQ(pending_count("t2:queue:analysis", "labs"), 32);
    closeq(p);
    closeq(c);
}

static void test_linger_flushes_partial_batch(void) {
    static const unsigned lingers[] = {1000, 0, 5000};
    for (size_t k = 0; k < sizeof lingers / sizeof lingers[0]; k++) {
        char ns[16];
        snprintf(ns, sizeof ns, "t3-%zu", k);
        cga_queue_opts_t o;
        cga_queue_opts_init(&o);
        o.linger_us = lingers[k];
        cga_queue_t *p = mkq(redis, ns, CGA_QUEUE_ANALYSIS, NULL, NULL, &o);
        sent_t s = {0};
        cga_queue_on_sent(p, on_sent, &s);
        run_for(2); /* let the loop time catch up */
        uint64_t t0 = cga_clock_mono_ms();
        push_tasks(p, 7, 1);
        CGA_ASSERT_EQ(s.ok, 0); /* not inside push */
        WAIT_FOR(s.ok == 1, 1000);
        uint64_t took = s.at_ms - t0;
        fprintf(stderr, "   linger %u us: one task acknowledged by Redis after %" PRIu64 " ms\n",
                lingers[k], took);
        /* nothing in flight: it leaves at the next loop turn whatever the linger */
        CGA_ASSERT_OP(took, <=, 20);
        /* with an entry in flight (a full batch just sent) the rest lingers and fills */
        run_for(2);
        t0 = cga_clock_mono_ms();
        push_tasks(p, 100, 40); /* 32 leave at once, 8 wait */
        WAIT_FOR(s.ok == 3, 1000);
        took = s.at_ms - t0;
        fprintf(stderr, "   linger %u us: the partial batch behind a full one after %" PRIu64
                " ms\n", lingers[k], took);
        CGA_ASSERT_OP(took, <=, lingers[k] / 1000 + 20);
        if (lingers[k] >= 5000) CGA_ASSERT_OP(took, >=, 4);
        char key[64];
        key_of(key, sizeof key, ns, CGA_QUEUE_ANALYSIS, NULL);
        CGA_ASSERT_EQ(cmd_int("XLEN %s", key), 3);
        closeq(p);
    }
}

/* Claims everything there is (one claim; the tests keep streams small). */
static cga_queue_batch_t *claim_all(cga_queue_t *q) {
    return claim(q, 1000, 0, CGA_OK);
}

static void test_complete_atomic(void) {
    produce("t4", 0, 10, 4); /* 3 entries */
    cga_queue_t *c = mkq(redis, "t4", CGA_QUEUE_ANALYSIS, "labs", "c1", NULL);
    cga_queue_t *out = mkq(redis, "t4", CGA_QUEUE_REPORTS, NULL, NULL, NULL);
    ensure_group(c); /* after produce: id 0 so the entries are delivered */
    cga_queue_batch_t *b = claim_all(c);
    CGA_ASSERT_EQ(b->n, 3);
    CGA_ASSERT_EQ(pending_count("t4:queue:analysis", "labs"), 3);
    const char *ids[3] = {b->entries[0].id, b->entries[1].id, b->entries[2].id};
    static const char reports[] = "\x91\x81\xa1v\x01"; /* [{"v": 1}]: opaque to the queue */

    /* Out of memory: the transaction aborts, nothing is acknowledged. */
    redisReply *r = cmd("CONFIG SET maxmemory-policy noeviction");
    freeReplyObject(r);
    r = cmd("CONFIG SET maxmemory 1");
    freeReplyObject(r);
    done_t d = {0};
    CGA_ASSERT_OK(cga_queue_complete(c, out, reports, sizeof reports - 1, 1, ids, 2, on_done, &d));
    WAIT_FOR(d.done, 5000);
    r = cmd("CONFIG SET maxmemory 0");
    freeReplyObject(r);
    CGA_ASSERT_EQ(d.status, CGA_EOOM);
    CGA_ASSERT_EQ(pending_count("t4:queue:analysis", "labs"), 3);
    CGA_ASSERT_EQ(cmd_int("EXISTS t4:queue:reports"), 0);

    /* Now it goes through: one reports entry, two acknowledged. */
    memset(&d, 0, sizeof d);
    CGA_ASSERT_OK(cga_queue_complete(c, out, reports, sizeof reports - 1, 1, ids, 2, on_done, &d));
    WAIT_FOR(d.done, 5000);
    CGA_ASSERT_OK(d.status);
    CGA_ASSERT_EQ(pending_count("t4:queue:analysis", "labs"), 1);
    CGA_ASSERT_EQ(cmd_int("XLEN t4:queue:reports"), 1);
    r = cmd("XRANGE t4:queue:reports - +");
    CGA_ASSERT_EQ(r->elements, 1);
    redisReply *f = r->element[0]->element[1];
    CGA_ASSERT_EQ(f->elements, 2);
    CGA_ASSERT_STREQ(f->element[0]->str, "m");
    CGA_ASSERT_MEMEQ(f->element[1]->str, f->element[1]->len, reports, sizeof reports - 1);
    freeReplyObject(r);

    /* The last one: complete, then plain ack of nothing left. */
    memset(&d, 0, sizeof d);
    CGA_ASSERT_OK(cga_queue_complete(c, out, reports, sizeof reports - 1, 1, ids + 2, 1, on_done,
                                     &d));
    WAIT_FOR(d.done, 5000);
    CGA_ASSERT_OK(d.status);
    CGA_ASSERT_EQ(pending_count("t4:queue:analysis", "labs"), 0);
    CGA_ASSERT_EQ(cmd_int("XLEN t4:queue:reports"), 2);
    memset(&d, 0, sizeof d);
    CGA_ASSERT_OK(cga_queue_ack(c, ids, 1, on_done, &d));
    WAIT_FOR(d.done, 5000);
    CGA_ASSERT_OK(d.status);
    CGA_ASSERT_EQ(cga_queue_ack(c, ids, 0, on_done, &d), CGA_EINVAL);
    /* Reports without acknowledgements (n = 0) is just the XADD, still in a transaction. */
    memset(&d, 0, sizeof d);
    CGA_ASSERT_OK(cga_queue_complete(c, out, reports, sizeof reports - 1, 1, NULL, 0, on_done,
                                     &d));
    WAIT_FOR(d.done, 5000);
    CGA_ASSERT_OK(d.status);
    CGA_ASSERT_EQ(cmd_int("XLEN t4:queue:reports"), 3);
    cga_queue_batch_free(b);
    closeq(out);
    closeq(c);
}

static void test_reclaim_counts_deliveries(void) {
    produce("t5", 0, 3, 1); /* 3 entries */
    cga_queue_opts_t o;
    cga_queue_opts_init(&o);
    o.lease_ms = 100;
    cga_queue_t *a = mkq(redis, "t5", CGA_QUEUE_ANALYSIS, "labs", "a", &o);
    cga_queue_t *bq = mkq(redis, "t5", CGA_QUEUE_ANALYSIS, "labs", "b", &o);
    ensure_group(a);
    cga_queue_batch_t *b = claim_all(a);
    CGA_ASSERT_EQ(b->n, 3);
    char id0[48], id1[48], id2[48];
    strcpy(id0, b->entries[0].id);
    strcpy(id1, b->entries[1].id);
    strcpy(id2, b->entries[2].id);
    cga_queue_batch_free(b);

    /* Not idle long enough yet. */
    b = reclaim(bq, 10);
    CGA_ASSERT_EQ(b->n, 0);
    cga_queue_batch_free(b);

    /* The second entry disappears from the stream while pending: dropped, never returned. */
    CGA_ASSERT_EQ(cmd_int("XDEL t5:queue:analysis %s", id1), 1);
    run_for(130);
    b = reclaim(bq, 10);
    CGA_ASSERT_EQ(b->n, 2);
    CGA_ASSERT_STREQ(b->entries[0].id, id0);
    CGA_ASSERT_STREQ(b->entries[1].id, id2);
    CGA_ASSERT_EQ(b->entries[0].deliveries, 2);
    CGA_ASSERT_EQ(b->entries[1].deliveries, 2);
    const cga_task_t *t;
    size_t n;
    CGA_ASSERT_OK(cga_proto_decode_tasks(reader, b->entries[1].data, b->entries[1].len, &t, &n));
    CGA_ASSERT_EQ(n, 1);
    CGA_ASSERT_EQ(task_index(&t[0]), 2);
    cga_queue_batch_free(b);
    CGA_ASSERT_EQ(pending_count("t5:queue:analysis", "labs"), 2);

    /* Now owned by b; the next reclaim (by a, after the lease again) counts 3. */
    b = reclaim(a, 10);
    CGA_ASSERT_EQ(b->n, 0);
    cga_queue_batch_free(b);
    run_for(130);
    b = reclaim(a, 1); /* count is honoured: oldest first */
    CGA_ASSERT_EQ(b->n, 1);
    CGA_ASSERT_STREQ(b->entries[0].id, id0);
    CGA_ASSERT_EQ(b->entries[0].deliveries, 3);
    cga_queue_batch_free(b);
    b = reclaim(a, 10);
    CGA_ASSERT_EQ(b->n, 1);
    CGA_ASSERT_STREQ(b->entries[0].id, id2);
    CGA_ASSERT_EQ(b->entries[0].deliveries, 3);
    cga_queue_batch_free(b);
    closeq(bq);
    closeq(a);
}

static void test_split(void) {
    produce("t6", 0, 5, 32); /* one entry of 5 */
    cga_queue_t *c = mkq(redis, "t6", CGA_QUEUE_ANALYSIS, "labs", "c1", NULL);
    cga_queue_t *other = mkq(redis, "t6", CGA_QUEUE_ANALYSIS, "labs", "c2", NULL);
    ensure_group(c);
    cga_queue_batch_t *b = claim_all(c);
    CGA_ASSERT_EQ(b->n, 1);
    done_t d = {0};
    /* Only the consumer holding it may split it. */
    CGA_ASSERT_OK(cga_queue_split(other, &b->entries[0], on_done, &d));
    WAIT_FOR(d.done, 5000);
    CGA_ASSERT_EQ(d.status, CGA_ENOTFOUND);
    CGA_ASSERT_EQ(cmd_int("XLEN t6:queue:analysis"), 1);

    memset(&d, 0, sizeof d);
    CGA_ASSERT_OK(cga_queue_split(c, &b->entries[0], on_done, &d));
    WAIT_FOR(d.done, 5000);
    CGA_ASSERT_OK(d.status);
    CGA_ASSERT_EQ(cmd_int("XLEN t6:queue:analysis"), 6);
    CGA_ASSERT_EQ(pending_count("t6:queue:analysis", "labs"), 0);
    cga_queue_batch_free(b);

    b = claim_all(c);
    CGA_ASSERT_EQ(b->n, 5);
    for (size_t i = 0; i < 5; i++) {
        const cga_task_t *t;
        size_t n;
        CGA_ASSERT_OK(cga_proto_decode_tasks(reader, b->entries[i].data, b->entries[i].len, &t,
                                             &n));
        CGA_ASSERT_EQ(n, 1);
        CGA_ASSERT_EQ(task_index(&t[0]), (int)i);
        CGA_ASSERT_EQ(b->entries[i].deliveries, 1);
    }
    /* A one-message entry does not split. */
    CGA_ASSERT_EQ(cga_queue_split(c, &b->entries[0], on_done, &d), CGA_EINVAL);
    cga_queue_batch_free(b);
    closeq(other);
    closeq(c);
}

typedef struct {
    int done;
    int status;
    size_t n;
    char id[48], src[48], reason[128];
    uint64_t deliveries, ts;
    int has_data;
    char data[256];
    size_t len;
} dlist_t;

static void on_dlist(int status, const cga_dead_letter_t *d, size_t n, void *arg) {
    dlist_t *l = arg;
    l->status = status;
    l->n = n;
    l->done++;
    if (n == 0) return;
    const cga_dead_letter_t *x = &d[n - 1]; /* the last one */
    snprintf(l->id, sizeof l->id, "%s", x->id);
    snprintf(l->src, sizeof l->src, "%s", x->src);
    snprintf(l->reason, sizeof l->reason, "%s", x->reason);
    l->deliveries = x->deliveries;
    l->ts = x->ts_ms;
    l->has_data = x->data != NULL;
    l->len = x->len;
    if (x->data && x->len <= sizeof l->data) memcpy(l->data, x->data, x->len);
}

static dlist_t dead_list(cga_queue_t *q, const char *start, size_t count) {
    dlist_t l;
    memset(&l, 0, sizeof l);
    CGA_ASSERT_OK(cga_queue_dead_list(q, start, count, on_dlist, &l));
    WAIT_FOR(l.done, 5000);
    CGA_ASSERT_OK(l.status);
    return l;
}

static uint64_t count_op(int (*fn)(cga_queue_t *, cga_queue_count_cb, void *), cga_queue_t *q) {
    count_t c = {0};
    CGA_ASSERT_OK(fn(q, on_count, &c));
    WAIT_FOR(c.done, 10000);
    CGA_ASSERT_OK(c.status);
    return c.n;
}

static uint64_t requeue(cga_queue_t *q, const char *const *ids, size_t n) {
    count_t c = {0};
    CGA_ASSERT_OK(cga_queue_dead_requeue(q, ids, n, on_count, &c));
    WAIT_FOR(c.done, 10000);
    CGA_ASSERT_OK(c.status);
    return c.n;
}

static void test_dead_letters(void) {
    produce("t7", 0, 2, 32);
    cga_queue_t *c = mkq(redis, "t7", CGA_QUEUE_ANALYSIS, "labs", "c1", NULL);
    ensure_group(c);
    cga_queue_batch_t *b = claim_all(c);
    CGA_ASSERT_EQ(b->n, 1);
    cga_queue_entry_t e = b->entries[0];
    e.deliveries = 6; /* as if reclaimed that often */
    uint64_t before = cga_clock_wall_ms();
    done_t d = {0};
    CGA_ASSERT_OK(cga_queue_dead_letter(c, &e, "delivered 6 times (limit 5)", on_done, &d));
    WAIT_FOR(d.done, 5000);
    CGA_ASSERT_OK(d.status);
    CGA_ASSERT_EQ(cmd_int("XLEN t7:queue:analysis:dead"), 1);
    CGA_ASSERT_EQ(pending_count("t7:queue:analysis", "labs"), 0);
    /* Again: no longer pending, nothing happens. */
    memset(&d, 0, sizeof d);
    CGA_ASSERT_OK(cga_queue_dead_letter(c, &e, "again", on_done, &d));
    WAIT_FOR(d.done, 5000);
    CGA_ASSERT_EQ(d.status, CGA_ENOTFOUND);
    CGA_ASSERT_EQ(cmd_int("XLEN t7:queue:analysis:dead"), 1);

    dlist_t l = dead_list(c, "-", 10);
    CGA_ASSERT_EQ(l.n, 1);
    CGA_ASSERT_STREQ(l.src, e.id);
    CGA_ASSERT_STREQ(l.reason, "delivered 6 times (limit 5)");
    CGA_ASSERT_EQ(l.deliveries, 6);
    CGA_ASSERT_OP(l.ts, >=, before);
    CGA_ASSERT_OP(l.ts, <=, cga_clock_wall_ms());
    CGA_ASSERT(l.has_data);
    CGA_ASSERT_MEMEQ(l.data, l.len, e.data, e.len);
    dlist_t l2 = dead_list(c, l.id, 10); /* paging: after the last one, nothing */
    CGA_ASSERT_EQ(l2.n, 0);

    /* Back to the queue: a fresh entry with the same m. */
    const char *dead_id = l.id;
    CGA_ASSERT_EQ(requeue(c, &dead_id, 1), 1);
    CGA_ASSERT_EQ(cmd_int("XLEN t7:queue:analysis:dead"), 0);
    CGA_ASSERT_EQ(requeue(c, &dead_id, 1), 0); /* gone: skipped */
    cga_queue_batch_free(b);
    b = claim_all(c);
    CGA_ASSERT_EQ(b->n, 1);
    CGA_ASSERT_MEMEQ(b->entries[0].data, b->entries[0].len, l.data, l.len);
    CGA_ASSERT_EQ(b->entries[0].deliveries, 1);

    /* Dead again, then purge. */
    memset(&d, 0, sizeof d);
    CGA_ASSERT_OK(cga_queue_dead_letter(c, &b->entries[0], "poison", on_done, &d));
    WAIT_FOR(d.done, 5000);
    CGA_ASSERT_OK(d.status);
    CGA_ASSERT_EQ(count_op(cga_queue_dead_purge, c), 1);
    CGA_ASSERT_EQ(cmd_int("EXISTS t7:queue:analysis:dead"), 0);
    CGA_ASSERT_EQ(count_op(cga_queue_dead_purge, c), 0);
    cga_queue_batch_free(b);
    closeq(c);
}

/* Requeue all, across several chunks, with one dead letter that has no m (it stays). */
static void test_dead_requeue_all_in_chunks(void) {
    cga_queue_t *c = mkq(redis, "t8", CGA_QUEUE_ANALYSIS, "labs", "c1", NULL);
    ensure_group(c);
    const int n = 2345;
    for (int i = 0; i < n; i++) {
        if (i == 1500)
            redisAppendCommand(sc, "XADD t8:queue:analysis:dead * reason nom src 1-1");
        redisAppendCommand(sc, "XADD t8:queue:analysis:dead * m msg%d reason r src 1-%d", i, i);
    }
    for (int i = 0; i < n + 1; i++) {
        redisReply *r;
        CGA_ASSERT_EQ(redisGetReply(sc, (void **)&r), REDIS_OK);
        freeReplyObject(r);
    }
    CGA_ASSERT_EQ(requeue(c, NULL, 0), (uint64_t)n);
    CGA_ASSERT_EQ(cmd_int("XLEN t8:queue:analysis:dead"), 1);
    CGA_ASSERT_EQ(cmd_int("XLEN t8:queue:analysis"), n);
    redisReply *r = cmd("XRANGE t8:queue:analysis - + COUNT 1");
    CGA_ASSERT_STREQ(r->element[0]->element[1]->element[1]->str, "msg0");
    freeReplyObject(r);
    closeq(c);
}

typedef struct {
    int done;
    int status;
    cga_queue_info_t info;
} info_t;

static void on_info(int status, const cga_queue_info_t *info, void *arg) {
    info_t *i = arg;
    i->status = status;
    if (info) i->info = *info;
    i->done++;
}

static cga_queue_info_t get_info(cga_queue_t *q) {
    info_t i;
    memset(&i, 0, sizeof i);
    CGA_ASSERT_OK(cga_queue_info(q, on_info, &i));
    WAIT_FOR(i.done, 5000);
    CGA_ASSERT_OK(i.status);
    return i.info;
}

static void ack_ids(cga_queue_t *q, const cga_queue_batch_t *b, size_t from, size_t n) {
    const char *ids[64];
    for (size_t i = 0; i < n; i++) ids[i] = b->entries[from + i].id;
    done_t d = {0};
    CGA_ASSERT_OK(cga_queue_ack(q, ids, n, on_done, &d));
    WAIT_FOR(d.done, 5000);
    CGA_ASSERT_OK(d.status);
}

static void test_trim_two_groups_and_info(void) {
    cga_queue_t *a = mkq(redis, "t9", CGA_QUEUE_ANALYSIS, "fast", "a1", NULL);
    cga_queue_t *s = mkq(redis, "t9", CGA_QUEUE_ANALYSIS, "slow", "s1", NULL);

    /* No stream, then no groups: nothing to trim. */
    CGA_ASSERT_EQ(count_op(cga_queue_trim, a), 0);
    produce("t9", 0, 10, 1); /* 10 entries, no group yet */
    CGA_ASSERT_EQ(count_op(cga_queue_trim, a), 0);
    CGA_ASSERT_EQ(cmd_int("XLEN t9:queue:analysis"), 10);
    cga_queue_info_t in = get_info(a);
    CGA_ASSERT_EQ(in.length, 10);
    CGA_ASSERT_EQ(in.groups, 0);
    CGA_ASSERT_EQ(in.lag, 0);

    ensure_group(a);
    ensure_group(s);
    in = get_info(s);
    CGA_ASSERT_EQ(in.groups, 2);
    CGA_ASSERT_EQ(in.lag, 10);
    CGA_ASSERT_EQ(in.pending, 0);

    /* fast: everything delivered and acknowledged. */
    cga_queue_batch_t *fb = claim_all(a);
    CGA_ASSERT_EQ(fb->n, 10);
    ack_ids(a, fb, 0, 10);
    /* slow: 4 delivered, the first 2 acknowledged; 3 and 4 pending; 5..10 not delivered. */
    cga_queue_batch_t *sb = claim(s, 4, 0, CGA_OK);
    CGA_ASSERT_EQ(sb->n, 4);
    ack_ids(s, sb, 0, 2);
    in = get_info(s);
    CGA_ASSERT_EQ(in.length, 10);
    CGA_ASSERT_EQ(in.lag, 6);
    CGA_ASSERT_EQ(in.pending, 2);
    CGA_ASSERT_EQ(in.consumers, 1);
    CGA_ASSERT_EQ(in.dead, 0);

    CGA_ASSERT_EQ(count_op(cga_queue_trim, a), 2); /* entries 1 and 2 */
    CGA_ASSERT_EQ(cmd_int("XLEN t9:queue:analysis"), 8);
    CGA_ASSERT_EQ(count_op(cga_queue_trim, a), 0);

    ack_ids(s, sb, 2, 2); /* slow has nothing pending: up to its last delivered goes */
    CGA_ASSERT_EQ(count_op(cga_queue_trim, s), 2);
    CGA_ASSERT_EQ(cmd_int("XLEN t9:queue:analysis"), 6);

    /* Everything slow still needs is there, in order. */
    cga_queue_batch_t *rest = claim_all(s);
    CGA_ASSERT_EQ(rest->n, 6);
    for (size_t i = 0; i < 6; i++) CGA_ASSERT_STREQ(rest->entries[i].id, fb->entries[4 + i].id);
    in = get_info(s);
    CGA_ASSERT_EQ(in.lag, 0);
    CGA_ASSERT_EQ(in.pending, 6);
    ack_ids(s, rest, 0, 6);
    CGA_ASSERT_EQ(count_op(cga_queue_trim, s), 6);
    CGA_ASSERT_EQ(cmd_int("XLEN t9:queue:analysis"), 0);
    /* A new entry after that stays until delivered. */
    produce("t9", 10, 1, 1);
    CGA_ASSERT_EQ(count_op(cga_queue_trim, s), 0);
    CGA_ASSERT_EQ(cmd_int("XLEN t9:queue:analysis"), 1);
    cga_queue_batch_free(fb);
    cga_queue_batch_free(sb);
    cga_queue_batch_free(rest);
    closeq(s);
    closeq(a);
}

static void del_stream_cb(uv_timer_t *t) {
    (void)t;
    CGA_ASSERT_EQ(cmd_int("DEL t10:queue:analysis"), 1);
}

static void test_nogroup_recovery(void) {
    cga_queue_t *c = mkq(redis, "t10", CGA_QUEUE_ANALYSIS, "labs", "c1", NULL);
    ensure_group(c);
    /* The stream vanishes while a claim blocks (Redis restarted without its data, or an
     * operator's DEL). Within two claims the consumer gets CGA_ENOTFOUND and the group is back. */
    uv_timer_t del;
    uv_timer_init(&loop, &del);
    uv_timer_start(&del, del_stream_cb, 100, 0);
    claim_t cl = {0};
    CGA_ASSERT_OK(cga_queue_claim(c, 10, 400, on_claim, &cl));
    WAIT_FOR(cl.done, 5000);
    uv_close((uv_handle_t *)&del, NULL);
    if (cl.status == CGA_OK) { /* this Redis keeps the claim blocked until BLOCK times out */
        CGA_ASSERT_EQ(cl.b->n, 0);
        cga_queue_batch_free(cl.b);
        memset(&cl, 0, sizeof cl);
        CGA_ASSERT_OK(cga_queue_claim(c, 10, 0, on_claim, &cl));
        WAIT_FOR(cl.done, 5000);
    }
    CGA_ASSERT_EQ(cl.status, CGA_ENOTFOUND);
    CGA_ASSERT(cl.b == NULL);
    redisReply *r = cmd("XINFO GROUPS t10:queue:analysis");
    CGA_ASSERT_EQ(r->elements, 1);
    freeReplyObject(r);
    produce("t10", 0, 3, 32);
    cga_queue_batch_t *b = claim(c, 10, 0, CGA_OK);
    CGA_ASSERT_EQ(b->n, 1);
    cga_queue_batch_free(b);

    /* The same for reclaim. */
    CGA_ASSERT_EQ(cmd_int("DEL t10:queue:analysis"), 1);
    claim_t rc = {0};
    CGA_ASSERT_OK(cga_queue_reclaim(c, 10, on_claim, &rc));
    WAIT_FOR(rc.done, 5000);
    CGA_ASSERT_EQ(rc.status, CGA_ENOTFOUND);
    b = reclaim(c, 10);
    CGA_ASSERT_EQ(b->n, 0);
    cga_queue_batch_free(b);
    closeq(c);
}

static void test_garbage_entries_come_back(void) {
    cga_queue_t *c = mkq(redis, "t11", CGA_QUEUE_ANALYSIS, "labs", "c1", NULL);
    ensure_group(c);
    unsigned char junk[100];
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < sizeof junk; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        junk[i] = (unsigned char)x;
    }
    junk[10] = 0; /* binary safe */
    freeReplyObject(cmd("XADD t11:queue:analysis * x 1"));
    freeReplyObject(cmd("XADD t11:queue:analysis * m %b", junk, sizeof junk));
    freeReplyObject(cmd("XADD t11:queue:analysis * m %b", "", (size_t)0));
    cga_queue_batch_t *b = claim_all(c);
    CGA_ASSERT_EQ(b->n, 3);
    CGA_ASSERT(b->entries[0].data == NULL);
    CGA_ASSERT_EQ(b->entries[0].len, 0);
    CGA_ASSERT_MEMEQ(b->entries[1].data, b->entries[1].len, junk, sizeof junk);
    CGA_ASSERT(b->entries[2].data != NULL);
    CGA_ASSERT_EQ(b->entries[2].len, 0);
    const cga_task_t *t;
    size_t n;
    CGA_ASSERT_NE(cga_proto_decode_tasks(reader, b->entries[1].data, b->entries[1].len, &t, &n),
                  CGA_OK);
    done_t d = {0};
    CGA_ASSERT_EQ(cga_queue_split(c, &b->entries[0], on_done, &d), CGA_EINVAL);
    CGA_ASSERT_NE(cga_queue_split(c, &b->entries[1], on_done, &d), CGA_OK);
    CGA_ASSERT_EQ(cga_queue_split(c, &b->entries[2], on_done, &d), CGA_EPROTO);
    /* The caller dead-letters them. */
    for (size_t i = 0; i < 3; i++) {
        memset(&d, 0, sizeof d);
        CGA_ASSERT_OK(cga_queue_dead_letter(c, &b->entries[i], "malformed", on_done, &d));
        WAIT_FOR(d.done, 5000);
        CGA_ASSERT_OK(d.status);
    }
    CGA_ASSERT_EQ(pending_count("t11:queue:analysis", "labs"), 0);
    dlist_t l = dead_list(c, NULL, 1);
    CGA_ASSERT_EQ(l.n, 1);
    CGA_ASSERT(!l.has_data);
    CGA_ASSERT_STREQ(l.src, b->entries[0].id);
    l = dead_list(c, l.id, 1);
    CGA_ASSERT(l.has_data);
    CGA_ASSERT_MEMEQ(l.data, l.len, junk, sizeof junk);
    CGA_ASSERT_EQ(get_info(c).dead, 3);
    cga_queue_batch_free(b);
    closeq(c);
}

static void test_close_cancels_unsent(void) {
    cga_queue_opts_t o;
    cga_queue_opts_init(&o);
    o.linger_us = 10000000;
    cga_queue_t *p = mkq(redis, "t12", CGA_QUEUE_ANALYSIS, NULL, NULL, &o);
    sent_t s = {0};
    cga_queue_on_sent(p, on_sent, &s);
    push_tasks(p, 0, 3);
    int closed = 0;
    cga_queue_close(p, on_closed, &closed);
    CGA_ASSERT_EQ(s.failed, 1); /* inside close */
    CGA_ASSERT_EQ(s.last_status, CGA_ECANCELED);
    CGA_ASSERT_EQ(s.count, 3);
    const cga_task_t *t;
    size_t n;
    CGA_ASSERT_OK(cga_proto_decode_tasks(reader, s.data, s.len, &t, &n));
    CGA_ASSERT_EQ(n, 3);
    CGA_ASSERT_EQ(task_index(&t[2]), 2);
    CGA_ASSERT_EQ(closed, 0);
    WAIT_FOR(closed == 1, 5000);
    CGA_ASSERT_EQ(cmd_int("EXISTS t12:queue:analysis"), 0);
}

/* Entries sent while one is in flight still report after close; close waits for them. */
static void test_close_waits_for_in_flight(void) {
    cga_queue_t *p = mkq(redis, "t13", CGA_QUEUE_ANALYSIS, NULL, NULL, NULL);
    sent_t s = {0};
    cga_queue_on_sent(p, on_sent, &s);
    push_tasks(p, 0, 2);
    cga_queue_flush(p);
    CGA_ASSERT_OK(cga_queue_send_entry(p, "\x90", 1, 0));
    int closed = 0;
    cga_queue_close(p, on_closed, &closed);
    CGA_ASSERT_EQ(cga_queue_push_raw(p, "\x80", 1), CGA_ECLOSED);
    WAIT_FOR(closed == 1, 5000);
    CGA_ASSERT_EQ(s.ok, 2);
    CGA_ASSERT_EQ(s.failed, 0);
    CGA_ASSERT_EQ(cmd_int("XLEN t13:queue:analysis"), 2);
}

/* ---- Redis down: its own server, killed ----------------------------------------------------- */

static void on_redis_closed(void *arg) {
    (*(int *)arg)++;
}

static void test_sent_failure_when_redis_down(void) {
    static cga_test_redis_t s2;
    cga_test_redis_start(&s2, NULL);
    down_srv = &s2;
    cga_redis_opts_t ro;
    cga_redis_opts_init(&ro);
    ro.unix_path = s2.sock;
    ro.connect_timeout_ms = 200;
    ro.command_timeout_ms = 1000;
    ro.backoff_base_ms = 20;
    ro.backoff_cap_ms = 100;
    ro.queue_timeout_ms = 300;
    ro.breaker_failures = 1000000; /* this test is about the queue, not the breaker */
    cga_redis_t *r2;
    CGA_ASSERT_OK(cga_redis_create(&r2, &loop, &ro));
    WAIT_FOR(cga_redis_is_connected(r2), 5000);

    cga_queue_opts_t o;
    cga_queue_opts_init(&o);
    o.redis_flags = CGA_REDIS_FAILFAST;
    cga_queue_t *ff = mkq(r2, "t14", CGA_QUEUE_ANALYSIS, NULL, NULL, &o);
    o.redis_flags = CGA_REDIS_WAIT;
    cga_queue_t *wt = mkq(r2, "t14", CGA_QUEUE_ANALYSIS, NULL, NULL, &o);
    sent_t sf = {0}, sw = {0};
    cga_queue_on_sent(ff, on_sent, &sf);
    cga_queue_on_sent(wt, on_sent, &sw);
    push_tasks(ff, 0, 1);
    cga_queue_flush(ff);
    WAIT_FOR(sf.ok == 1, 5000);

    cga_test_redis_signal(&s2, SIGKILL);
    WAIT_FOR(!cga_redis_is_connected(r2), 5000);

    /* FAILFAST: refused at once, reported at the next loop turn with the bytes. */
    push_tasks(ff, 100, 2);
    cga_queue_flush(ff);
    CGA_ASSERT_EQ(sf.failed, 0);
    CGA_ASSERT_EQ(cga_queue_entries_in_flight(ff), 1);
    WAIT_FOR(sf.failed == 1, 1000);
    CGA_ASSERT_EQ(sf.last_status, CGA_ENOTCONN);
    CGA_ASSERT_EQ(sf.count, 2);
    CGA_ASSERT_EQ(cga_queue_entries_in_flight(ff), 0);
    const cga_task_t *t;
    size_t n;
    CGA_ASSERT_OK(cga_proto_decode_tasks(reader, sf.data, sf.len, &t, &n));
    CGA_ASSERT_EQ(n, 2);
    CGA_ASSERT_EQ(task_index(&t[0]), 100);
    CGA_ASSERT_EQ(task_index(&t[1]), 101);
    /* A ready-made entry, the same way. */
    CGA_ASSERT_OK(cga_queue_send_entry(ff, sf.data, sf.len, 2));
    WAIT_FOR(sf.failed == 2, 1000);
    CGA_ASSERT_EQ(sf.last_status, CGA_ENOTCONN);
    CGA_ASSERT_EQ(sf.count, 2);
    CGA_ASSERT_OK(cga_proto_decode_tasks(reader, sf.data, sf.len, &t, &n));
    CGA_ASSERT_EQ(task_index(&t[1]), 101);

    /* WAIT: waits for a reconnect up to queue_timeout_ms, then fails with the bytes. */
    uint64_t t0 = cga_clock_mono_ms();
    push_tasks(wt, 200, 3);
    cga_queue_flush(wt);
    WAIT_FOR(sw.failed == 1, 5000);
    CGA_ASSERT_EQ(sw.last_status, CGA_ETIMEDOUT);
    CGA_ASSERT_OP(cga_clock_mono_ms() - t0, >=, 250);
    CGA_ASSERT_EQ(sw.count, 3);
    CGA_ASSERT_OK(cga_proto_decode_tasks(reader, sw.data, sw.len, &t, &n));
    CGA_ASSERT_EQ(n, 3);
    CGA_ASSERT_EQ(task_index(&t[0]), 200);

    /* complete never waits for a reconnect, even on a WAIT handle: refused up front. */
    cga_queue_t *c = mkq(r2, "t14", CGA_QUEUE_ANALYSIS, "labs", "c1", &o);
    done_t d = {0};
    const char *ids[1] = {"1-1"};
    CGA_ASSERT_EQ(cga_queue_complete(c, wt, "\x90", 1, 0, ids, 1, on_done, &d), CGA_ENOTCONN);
    run_for(5);
    CGA_ASSERT_EQ(d.done, 0);
    closeq(c);
    /* Consumer calls fail up front with FAILFAST (no callback). */
    o.redis_flags = CGA_REDIS_FAILFAST;
    c = mkq(r2, "t14", CGA_QUEUE_ANALYSIS, "labs", "c1", &o);
    claim_t cl = {0};
    CGA_ASSERT_EQ(cga_queue_claim(c, 10, 0, on_claim, &cl), CGA_ENOTCONN);
    closeq(c);

    closeq(wt);
    closeq(ff);
    int rclosed = 0;
    cga_redis_close(r2, on_redis_closed, &rclosed);
    WAIT_FOR(rclosed == 1, 5000);
    cga_test_redis_stop(&s2);
    down_srv = NULL;
}

static void test_bad_arguments(void) {
    cga_queue_opts_t o;
    cga_queue_opts_init(&o);
    cga_queue_t *q = NULL;
    o.name = CGA_QUEUE_ANALYSIS;
    o.ns = "bad ns";
    CGA_ASSERT_EQ(cga_queue_create(&q, &loop, redis, &o), CGA_ECONFIG);
    o.ns = "ok";
    o.batch_max = 0;
    CGA_ASSERT_EQ(cga_queue_create(&q, &loop, redis, &o), CGA_EINVAL);
    o.batch_max = 32;
    q = mkq(redis, "t15", CGA_QUEUE_ANALYSIS, NULL, NULL, &o);
    claim_t cl = {0};
    CGA_ASSERT_EQ(cga_queue_claim(q, 10, 0, on_claim, &cl), CGA_EINVAL); /* no group */
    CGA_ASSERT_EQ(cga_queue_send_entry(q, "", 0, 0), CGA_EINVAL);
    cga_bar_t bars[2] = {{60000, 1, 1, 1, 1, 1}, {60000, 1, 1, 1, 1, 1}}; /* t not ascending */
    cga_task_t t = {cga_str("id"), cga_str("noop"), cga_str("SYM"), 1, bars, 2};
    CGA_ASSERT_EQ(cga_queue_push_task(q, &t), CGA_EINVAL);
    CGA_ASSERT(strlen(cga_queue_push_error(q)) > 0);
    CGA_ASSERT_EQ(cga_queue_messages_pending(q), 0);
    t.nbars = 1;
    CGA_ASSERT_OK(cga_queue_push_task(q, &t));
    CGA_ASSERT_STREQ(cga_queue_push_error(q), "");
    CGA_ASSERT_EQ(cga_queue_messages_pending(q), 1);
    closeq(q);
}

int main(void) {
    cga_log_set_level(CGA_LOG_WARN);
    CGA_ASSERT_OK(uv_loop_init(&loop));
    uv_timer_init(&loop, &guard);
    cga_test_redis_start(&srv, NULL);
    atexit(stop_servers);
    sc = cga_test_redis_connect(&srv, NULL);
    CGA_ASSERT_OK(cga_proto_reader_create(&reader, NULL));
    cga_redis_opts_t ro;
    cga_redis_opts_init(&ro);
    ro.unix_path = srv.sock;
    CGA_ASSERT_OK(cga_redis_create(&redis, &loop, &ro));
    WAIT_FOR(cga_redis_is_connected(redis), 5000);

    CGA_RUN(test_ensure_group_idempotent);
    CGA_RUN(test_push_1000_claim_in_order);
    CGA_RUN(test_linger_flushes_partial_batch);
    CGA_RUN(test_complete_atomic);
    CGA_RUN(test_reclaim_counts_deliveries);
    CGA_RUN(test_split);
    CGA_RUN(test_dead_letters);
    CGA_RUN(test_dead_requeue_all_in_chunks);
    CGA_RUN(test_trim_two_groups_and_info);
    CGA_RUN(test_nogroup_recovery);
    CGA_RUN(test_garbage_entries_come_back);
    CGA_RUN(test_close_cancels_unsent);
    CGA_RUN(test_close_waits_for_in_flight);
    CGA_RUN(test_sent_failure_when_redis_down);
    CGA_RUN(test_bad_arguments);

    int closed = 0;
    cga_redis_close(redis, on_redis_closed, &closed);
    WAIT_FOR(closed == 1, 5000);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    CGA_ASSERT_EQ(uv_loop_close(&loop), 0);
    cga_proto_reader_free(reader);
    redisFree(sc);
    cga_test_redis_stop(&srv);
    fprintf(stderr, "ok\n");
    return 0;
}

#define CGA_LOG_COMPONENT "lab"
#include "worker.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "cgalpha/alloc.h"
#include "cgalpha/clock.h"
#include "cgalpha/err.h"
#include "cgalpha/keys.h"
#include "cgalpha/log.h"
#include "cgalpha/metrics.h"
#include "cgalpha/proto.h"
#include "cgalpha/queue.h"
#include "cgalpha/redis.h"
#include "cgalpha/state.h"

#define HEARTBEAT_MS 2000u
#define HEARTBEAT_TTL_MS 10000u
#define CLAIM_POLL_MS 50u         /* claim again after an empty non-blocking claim */
#define BACKOFF_MIN_MS 50u
#define CLAIM_BACKOFF_MAX_MS 1000u
#define COMPLETE_BACKOFF_MAX_MS 2000u
#define CHUNK_TASKS 16u           /* tasks per chunk (a piece of an entry), at most */
#define GROUP_MAX_REPORTS 1024u   /* reports per reports entry (several claimed entries) */
#define GROUP_MAX_ENTRIES 256u    /* entries acknowledged by one complete */
#define GROUP_MAX_BYTES (1024u * 1024u)
#define SCRATCH_MAX 1024u         /* NUL-terminated copies of a task's id and symbol */
#define EXIT_DEL_WAIT_MS 1000u    /* grace expired: wait this long for the heartbeat DEL */
#define NHANDLES 8

/* One claim or reclaim reply: its entries' bytes live here until the last entry is done. */
typedef struct batch_s {
    cga_queue_batch_t *qb;
    size_t refs;
    struct batch_s *next; /* free list */
} batch_t;

typedef struct result_s {
    cga_lab_output_t out;
    uint32_t run_us;
    int failed;
} result_t;

typedef struct entry_s entry_t;

/* Tasks [first, first + count) of one entry: the unit a pool thread takes. */
typedef struct chunk_s {
    entry_t *entry;
    size_t first, count;
    struct chunk_s *qnext; /* in w's run queue, then in its done list (under w->mu) */
} chunk_t;

/* A thread-pool work item: a drain loop that takes chunks from the run queue until it is
 * empty, posting each finished chunk to the done list. A thread stuck in a plugin holds only
 * its own chunk; wake-ups are few (one per idle thread started, one per batch of results). */
typedef struct work_s {
    uv_work_t req; /* req.data = this item */
    lab_worker_t *w;
    struct work_s *next; /* free list */
} work_t;

enum entry_mode { MODE_RUN = 0, MODE_DEAD = 1, MODE_SPLIT = 2 };

/* One claimed stream entry being handled. Pooled: its reader, results and chunks are reused. */
struct entry_s {
    lab_worker_t *w;
    batch_t *batch;
    const cga_queue_entry_t *qe;
    int mode;
    size_t held; /* tasks this entry counts in w->held_tasks */
    cga_proto_reader_t *reader;
    const cga_task_t *tasks;
    size_t ntasks;
    result_t *results;
    size_t results_cap;
    chunk_t *chunks;
    size_t chunks_cap;
    size_t chunks_left;
    char reason[256];
    unsigned lane_seq; /* a reclaimed entry run in the lane (see do_reclaim), else 0 */
    entry_t *prev, *next; /* w->active list, or the free list */
};

/* Reports of finished entries, written and acknowledged by one cga_queue_complete. */
typedef struct group_s {
    lab_worker_t *w;
    cga_proto_writer_t *wr;
    char (*ids)[48];
    size_t ids_cap;
    const char **idp;
    size_t idp_cap;
    size_t nids, ntasks, nfailed;
    const char *data;
    size_t len;
    int finished;
    unsigned lane_seq; /* the lane entry among them, or 0 */
    struct group_s *next;
} group_t;

struct lab_worker_s {
    cga_app_t *app;
    uv_loop_t *loop;
    cga_redis_t *redis;
    lab_worker_opts_t o;
    char *id;
    char *metrics_file;
    cga_plugin_t **plugins;
    const char **pnames;
    size_t *pname_lens;
    size_t nplugins;
    char *plugin_list; /* "trend,volatility" */
    cga_queue_t *q;    /* analysis, group "labs" */
    cga_queue_t *rq;   /* reports, written only */
    cga_state_t *state;
    cga_metrics_t *metrics;
    cga_proto_writer_t *hb_writer;
    cga_proto_limits_t limits;
    char hb_name[CGA_KEY_MAX]; /* "worker:<id>" */
    char hb_key[CGA_KEY_MAX];  /* "<ns>:state:worker:<id>" */
    char host[256];
    uint64_t started_us;
    unsigned block_ms; /* effective BLOCK */

    uv_timer_t claim_timer, reclaim_timer, hb_timer, grace_timer, retry_timer, exit_timer;
    uv_check_t flush_check;
    int closing_left;

    int started, stopping, finishing, del_sent, closed, exiting;
    int claiming, claim_blocking, reclaiming, hb_pending;
    int claim_backoff_mode; /* claim_timer is an error backoff, not a poll */
    unsigned claim_backoff_ms, retry_backoff_ms;
    int claim_outage, complete_outage, hb_outage;
    uint64_t claim_outage_ms;
    int metrics_file_failed;
    /* stall detection: progress = an acknowledgement or a claim that returned entries */
    uint64_t last_progress_ms, last_ack_us;
    uint64_t backlog;  /* lag + pending of the group at the last heartbeat */
    int info_pending, stalled;
    size_t pending_ops; /* our Redis calls whose callback has not run yet */
    size_t held_tasks, held_entries;
    size_t running_tasks; /* handed to the pool threads (running or waiting for one) */
    double avg_tasks; /* tasks per entry, moving average, for the claim count */
    double task_us;   /* plugin time per task, moving average (0 until measured) */
    /* The lane: reclaimed entries (their lab died or hung: suspects) run one at a time, each
     * reclaimed only once the previous one is acknowledged (or ran longer than the lease), so
     * that a task that crashes its lab cannot push its neighbours' delivery counts up. */
    int lane;
    unsigned lane_seq;
    uint64_t lane_since_ms;
    size_t reclaim_streak;

    /* Chunks to run and chunks done, shared with the pool threads under mu. At most
     * o.concurrency drain loops are in the libuv pool at once (the pool has one thread more,
     * kept free for the Redis connection's name resolution). */
    uv_mutex_t mu;
    chunk_t *rq_head, *rq_tail; /* run queue */
    size_t rq_count;
    chunk_t *dq_head, *dq_tail; /* done list */
    uv_async_t done_async;      /* posted when the done list stops being empty */
    size_t drains;              /* drain loops in the pool (loop thread) */
    int batching;               /* handing out a claimed batch: pump once at its end */
    work_t *free_work;

    entry_t *active; /* entries being run, dead-lettered or split */
    entry_t *free_entries;
    batch_t *free_batches;
    group_t *open, *sending, *retry, *free_groups;

    cga_metric_t mscratch[CGA_LAB_MAX_METRICS];

    uint64_t processed, failed, dead, split, reclaimed;
    cga_counter_t *m_entries, *m_claimed, *m_ok, *m_fail, *m_dead, *m_split, *m_reclaimed;
    cga_gauge_t *g_running, *g_held;
    cga_histogram_t **h_run; /* per plugin */
    int exit_code;
};

static void maybe_claim(lab_worker_t *w);
static void maybe_finish(lab_worker_t *w);
static void group_send(lab_worker_t *w, group_t *g);
static void do_reclaim(lab_worker_t *w);

/* ---- small helpers --------------------------------------------------------------------------- */

static int is_transient(int rc) {
    switch (rc) {
    case CGA_EREPLY:
    case CGA_EINVAL:
    case CGA_ETOOBIG:
    case CGA_EPROTO:
    case CGA_ECANCELED:
    case CGA_ECLOSED:
        return 0;
    default:
        return 1;
    }
}

static void update_gauges(lab_worker_t *w) {
    cga_gauge_set(w->g_running, (double)w->running_tasks);
    cga_gauge_set(w->g_held, (double)w->held_tasks);
}

static batch_t *batch_get(lab_worker_t *w, cga_queue_batch_t *qb) {
    batch_t *b = w->free_batches;
    if (b)
        w->free_batches = b->next;
    else
        b = cga_calloc(1, sizeof *b);
    b->qb = qb;
    b->refs = 1;
    b->next = NULL;
    return b;
}

static void batch_unref(lab_worker_t *w, batch_t *b) {
    if (--b->refs > 0) return;
    cga_queue_batch_free(b->qb);
    b->qb = NULL;
    b->next = w->free_batches;
    w->free_batches = b;
}

static entry_t *entry_get(lab_worker_t *w, batch_t *b, const cga_queue_entry_t *qe) {
    entry_t *e = w->free_entries;
    if (e) {
        w->free_entries = e->next;
    } else {
        e = cga_calloc(1, sizeof *e);
        e->w = w;
        int rc = cga_proto_reader_create(&e->reader, &w->limits);
        if (rc != CGA_OK) {
            CGA_LOG(CGA_LOG_ERROR, rc, "cannot create a message reader");
            abort();
        }
    }
    e->batch = b;
    b->refs++;
    e->qe = qe;
    e->mode = MODE_RUN;
    e->held = 1;
    e->tasks = NULL;
    e->ntasks = 0;
    e->chunks_left = 0;
    e->reason[0] = '\0';
    e->lane_seq = 0;
    e->prev = NULL;
    e->next = w->active;
    if (w->active) w->active->prev = e;
    w->active = e;
    w->held_entries++;
    w->held_tasks += e->held;
    return e;
}

/* Returns e to the pool. release_held: 0 when its tasks moved to a report group. */
static void entry_put(lab_worker_t *w, entry_t *e, int release_held) {
    if (e->prev)
        e->prev->next = e->next;
    else
        w->active = e->next;
    if (e->next) e->next->prev = e->prev;
    if (release_held) {
        w->held_tasks -= e->held;
        w->held_entries--;
    }
    batch_unref(w, e->batch);
    e->batch = NULL;
    e->qe = NULL;
    e->tasks = NULL;
    e->prev = NULL;
    e->next = w->free_entries;
    w->free_entries = e;
    update_gauges(w);
}

static void entry_destroy(entry_t *e) {
    cga_proto_reader_free(e->reader);
    free(e->results);
    free(e->chunks);
    free(e);
}

static group_t *group_get(lab_worker_t *w) {
    group_t *g = w->free_groups;
    if (g) {
        w->free_groups = g->next;
    } else {
        g = cga_calloc(1, sizeof *g);
        g->w = w;
        int rc = cga_proto_writer_create(&g->wr, &w->limits);
        if (rc != CGA_OK) {
            CGA_LOG(CGA_LOG_ERROR, rc, "cannot create a message writer");
            abort();
        }
    }
    cga_proto_writer_reset(g->wr);
    g->nids = g->ntasks = g->nfailed = 0;
    g->data = NULL;
    g->len = 0;
    g->finished = 0;
    g->lane_seq = 0;
    g->next = NULL;
    return g;
}

/* Returns g to the pool; release_held: its entries stop counting as held. */
static void group_put(lab_worker_t *w, group_t *g, int release_held) {
    if (release_held) {
        w->held_tasks -= g->ntasks;
        w->held_entries -= g->nids;
    }
    g->next = w->free_groups;
    w->free_groups = g;
    update_gauges(w);
}

static void group_destroy(group_t *g) {
    cga_proto_writer_free(g->wr);
    free(g->ids);
    free(g->idp);
    free(g);
}

static void list_remove(group_t **head, group_t *g) {
    for (group_t **p = head; *p; p = &(*p)->next) {
        if (*p == g) {
            *p = g->next;
            g->next = NULL;
            return;
        }
    }
}

static int group_has(const group_t *g, const char *id) {
    for (; g; g = g->next)
        for (size_t i = 0; i < g->nids; i++)
            if (strcmp(g->ids[i], id) == 0) return 1;
    return 0;
}

/* Whether this process already holds the entry: HELD_RUN (running, or its reports not yet
 * acknowledged), HELD_OTHER (being dead-lettered or split), or 0. */
enum { HELD_RUN = 1, HELD_OTHER = 2 };
static int is_held_here(const lab_worker_t *w, const char *id) {
    for (const entry_t *e = w->active; e; e = e->next)
        if (strcmp(e->qe->id, id) == 0) return e->mode == MODE_RUN ? HELD_RUN : HELD_OTHER;
    if (group_has(w->open, id) || group_has(w->sending, id) || group_has(w->retry, id))
        return HELD_RUN;
    return 0;
}

static size_t find_plugin(const lab_worker_t *w, cga_str_t lab) {
    for (size_t i = 0; i < w->nplugins; i++)
        if (w->pname_lens[i] == lab.len && memcmp(w->pnames[i], lab.ptr, lab.len) == 0) return i;
    return SIZE_MAX;
}

static void copy_str(char *dst, cga_str_t s) {
    size_t n = s.len < SCRATCH_MAX ? s.len : SCRATCH_MAX;
    if (n) memcpy(dst, s.ptr, n);
    dst[n] = '\0';
}

/* ---- running tasks (thread pool) ------------------------------------------------------------- */

/* Runs one chunk's tasks (pool thread). */
static void run_chunk(const chunk_t *c) {
    entry_t *e = c->entry;
    lab_worker_t *w = e->w;
    char id[SCRATCH_MAX + 1], sym[SCRATCH_MAX + 1];
    for (size_t i = c->first; i < c->first + c->count; i++) {
        const cga_task_t *t = &e->tasks[i];
        result_t *r = &e->results[i];
        size_t pi = find_plugin(w, t->lab);
        if (pi == SIZE_MAX) {
            memset(&r->out, 0, sizeof r->out);
            snprintf(r->out.error, sizeof r->out.error, "plugin '%.*s' is not loaded in lab %s",
                     (int)(t->lab.len < 64 ? t->lab.len : 64), t->lab.ptr, w->id);
            r->failed = 1;
            r->run_us = 0;
            continue;
        }
        copy_str(id, t->id);
        copy_str(sym, t->symbol);
        cga_lab_input_t in = {id, sym, t->bars, t->nbars};
        uint64_t t0 = cga_clock_mono_us();
        int rc = cga_plugin_analyze(w->plugins[pi], &in, &r->out);
        uint64_t dt = cga_clock_mono_us() - t0;
        r->run_us = dt > UINT32_MAX ? UINT32_MAX : (uint32_t)dt;
        r->failed = rc != CGA_OK;
        if (r->failed && r->out.error[0] == '\0')
            snprintf(r->out.error, sizeof r->out.error, "plugin %s failed: %s", w->pnames[pi],
                     cga_strerror(rc));
        cga_histogram_observe(w->h_run[pi], (double)dt / 1e6);
    }
}

static void drain_run(uv_work_t *req) {
    work_t *wk = req->data;
    lab_worker_t *w = wk->w;
    for (;;) {
        uv_mutex_lock(&w->mu);
        chunk_t *c = w->rq_head;
        if (c) {
            w->rq_head = c->qnext;
            if (!w->rq_head) w->rq_tail = NULL;
            w->rq_count--;
        }
        uv_mutex_unlock(&w->mu);
        if (!c) return;
        run_chunk(c);
        uv_mutex_lock(&w->mu);
        int was_empty = w->dq_head == NULL;
        c->qnext = NULL;
        if (w->dq_tail)
            w->dq_tail->qnext = c;
        else
            w->dq_head = c;
        w->dq_tail = c;
        uv_mutex_unlock(&w->mu);
        if (was_empty) uv_async_send(&w->done_async);
    }
}

/* Appends the entry's reports to the open group (sealing it first when full). */
static void entry_report(lab_worker_t *w, entry_t *e) {
    group_t *g = w->open;
    if (g && g->nids > 0 &&
        (g->ntasks + e->ntasks > GROUP_MAX_REPORTS || g->nids >= GROUP_MAX_ENTRIES)) {
        w->open = NULL;
        group_send(w, g);
        g = NULL;
    }
    if (!g) g = w->open = group_get(w);
    uint64_t now = cga_clock_wall_us();
    cga_str_t wid = cga_str(w->id);
    for (size_t i = 0; i < e->ntasks; i++) {
        const cga_task_t *t = &e->tasks[i];
        const result_t *res = &e->results[i];
        cga_report_t r;
        memset(&r, 0, sizeof r);
        r.task_id = t->id;
        r.lab = t->lab;
        r.symbol = t->symbol;
        r.worker = wid;
        r.wstart = t->bars[0].t;
        r.wend = t->bars[t->nbars - 1].t;
        r.enq_us = t->enq_us;
        r.done_us = now;
        r.run_us = res->run_us;
        r.error = cga_str("");
        r.regime = CGA_REGIME_UNKNOWN;
        if (res->failed) {
            r.status = CGA_REPORT_ERROR;
            r.error = cga_str(res->out.error);
            g->nfailed++;
        } else {
            r.status = CGA_REPORT_OK;
            r.regime = res->out.regime;
            r.confidence = res->out.confidence;
            size_t nm = res->out.nmetrics;
            if (nm > CGA_LAB_MAX_METRICS) nm = CGA_LAB_MAX_METRICS;
            for (size_t k = 0; k < nm; k++) {
                w->mscratch[k].name = cga_str(res->out.metrics[k].name);
                w->mscratch[k].value = res->out.metrics[k].value;
            }
            r.metrics = w->mscratch;
            r.nmetrics = nm;
        }
        int rc = cga_proto_write_report(g->wr, &r);
        if (rc != CGA_OK) {
            /* The plugin's output does not fit the schema: say so in an error report. */
            char msg[CGA_LAB_ERROR_MAX];
            snprintf(msg, sizeof msg, "report rejected by the encoder: %s", cga_strerror(rc));
            if (r.status == CGA_REPORT_OK) g->nfailed++;
            r.status = CGA_REPORT_ERROR;
            r.error = cga_str(msg);
            r.regime = CGA_REGIME_UNKNOWN;
            r.confidence = 0;
            r.metrics = NULL;
            r.nmetrics = 0;
            rc = cga_proto_write_report(g->wr, &r);
            if (rc != CGA_OK)
                CGA_LOG(CGA_LOG_ERROR, rc, "task %.*s (entry %s): its report cannot be encoded",
                        (int)t->id.len, t->id.ptr, e->qe->id);
        }
    }
    if (e->lane_seq) g->lane_seq = e->lane_seq;
    cga_grow((void **)&g->ids, &g->ids_cap, g->nids + 1, sizeof g->ids[0]);
    memcpy(g->ids[g->nids], e->qe->id, sizeof g->ids[0]);
    g->ids[g->nids][sizeof g->ids[0] - 1] = '\0';
    g->nids++;
    g->ntasks += e->ntasks;
    if (cga_proto_writer_size(g->wr) >= GROUP_MAX_BYTES) {
        w->open = NULL;
        group_send(w, g);
    }
}

static void on_flush(uv_check_t *h) {
    lab_worker_t *w = h->data;
    uv_check_stop(h);
    group_t *g = w->open;
    w->open = NULL;
    if (g && g->nids > 0)
        group_send(w, g);
    else if (g)
        group_put(w, g, 1);
}

static void drain_after(uv_work_t *req, int status);

/* Starts drain loops while chunks wait and fewer than o.concurrency loops run. */
static void pump(lab_worker_t *w) {
    uv_mutex_lock(&w->mu);
    size_t queued = w->rq_count;
    uv_mutex_unlock(&w->mu);
    /* Running loops may be busy with a long chunk (or stuck in a plugin): each queued chunk
     * may need a loop of its own, up to the limit. */
    for (size_t started = 0; w->drains < w->o.concurrency && started < queued; started++) {
        work_t *wk = w->free_work;
        if (wk)
            w->free_work = wk->next;
        else
            wk = cga_calloc(1, sizeof *wk);
        wk->w = w;
        wk->next = NULL;
        wk->req.data = wk;
        int rc = uv_queue_work(w->loop, &wk->req, drain_run, drain_after);
        if (rc != 0) { /* only with a NULL work_cb: a programming error */
            CGA_LOG(CGA_LOG_ERROR, rc, "uv_queue_work");
            abort();
        }
        w->drains++;
    }
}

/* A chunk is done (loop thread): the entry's reports go out when it was the last one. */
static void chunk_done(lab_worker_t *w, chunk_t *c) {
    entry_t *e = c->entry;
    w->running_tasks -= c->count;
    uint64_t sum = 0;
    for (size_t i = c->first; i < c->first + c->count; i++) sum += e->results[i].run_us;
    double per = (double)sum / (double)c->count;
    w->task_us = w->task_us > 0 ? 0.9 * w->task_us + 0.1 * per : per;
    if (--e->chunks_left > 0) return;
    entry_report(w, e);
    if (w->open && !uv_is_active((uv_handle_t *)&w->flush_check))
        uv_check_start(&w->flush_check, on_flush);
    entry_put(w, e, 0); /* its tasks are held by the group now */
}

static void on_done_async(uv_async_t *h) {
    lab_worker_t *w = h->data;
    uv_mutex_lock(&w->mu);
    chunk_t *c = w->dq_head;
    w->dq_head = w->dq_tail = NULL;
    uv_mutex_unlock(&w->mu);
    while (c) {
        chunk_t *next = c->qnext; /* c's entry may be recycled by chunk_done */
        chunk_done(w, c);
        c = next;
    }
    update_gauges(w);
}

static void drain_after(uv_work_t *req, int status) {
    work_t *wk = req->data;
    lab_worker_t *w = wk->w;
    (void)status; /* never canceled */
    w->drains--;
    wk->next = w->free_work;
    w->free_work = wk;
    pump(w); /* a chunk queued while this loop was leaving */
    maybe_finish(w);
}

static void entry_run(lab_worker_t *w, entry_t *e) {
    size_t n = e->ntasks;
    if (e->results_cap < n) {
        free(e->results);
        e->results = cga_malloc(n * sizeof *e->results);
        e->results_cap = n;
    }
    size_t per = (n + w->o.concurrency - 1) / w->o.concurrency;
    if (per > CHUNK_TASKS) per = CHUNK_TASKS;
    if (per == 0) per = 1;
    size_t nchunks = (n + per - 1) / per;
    if (e->chunks_cap < nchunks) {
        free(e->chunks);
        e->chunks = cga_malloc(nchunks * sizeof *e->chunks);
        e->chunks_cap = nchunks;
    }
    e->chunks_left = nchunks;
    for (size_t k = 0; k < nchunks; k++) {
        chunk_t *c = &e->chunks[k];
        c->entry = e;
        c->first = k * per;
        c->count = k + 1 == nchunks ? n - c->first : per;
    }
    uv_mutex_lock(&w->mu);
    for (size_t k = 0; k < nchunks; k++) {
        chunk_t *c = &e->chunks[k];
        c->qnext = NULL;
        if (w->rq_tail)
            w->rq_tail->qnext = c;
        else
            w->rq_head = c;
        w->rq_tail = c;
    }
    w->rq_count += nchunks;
    uv_mutex_unlock(&w->mu);
    w->running_tasks += n;
    update_gauges(w);
    if (!w->batching) pump(w);
}

/* ---- dead letters and splits ----------------------------------------------------------------- */

/* The outcome of a dead-letter or a split (both atomic scripts that acknowledge the entry). */
static void entry_op_done(entry_t *e, int status, const char *what) {
    lab_worker_t *w = e->w;
    w->pending_ops--;
    if (status == CGA_OK && e->mode == MODE_DEAD) {
        w->dead++;
        cga_counter_add(w->m_dead, 1);
    } else if (status == CGA_OK) {
        w->split++;
        cga_counter_add(w->m_split, 1);
        CGA_LOG(CGA_LOG_INFO, 0,
                "entry %s (delivery %" PRIu64 ") split into %zu single-task entries",
                e->qe->id, e->qe->deliveries, e->ntasks);
    } else if (status == CGA_ENOTFOUND) {
        CGA_LOG(CGA_LOG_INFO, 0,
                "entry %s is no longer pending here (acknowledged, or taken by another lab)",
                e->qe->id);
    } else {
        CGA_LOG(CGA_LOG_WARN, status,
                "%s entry %s failed; it stays pending and comes back after the lease", what,
                e->qe->id);
    }
    entry_put(w, e, 1);
    maybe_claim(w);
    maybe_finish(w);
}

static void on_dead(int status, void *arg) { entry_op_done(arg, status, "dead-lettering"); }
static void on_split(int status, void *arg) { entry_op_done(arg, status, "splitting"); }

/* Starts a dead-letter (MODE_DEAD) or a split (MODE_SPLIT) of e; if Redis refuses it up front
 * the entry stays pending and comes back after the lease. */
static void entry_op_start(lab_worker_t *w, entry_t *e, int mode) {
    e->mode = mode;
    int rc;
    const char *what;
    if (mode == MODE_DEAD) {
        CGA_LOG(CGA_LOG_WARN, 0, "entry %s (delivery %" PRIu64 ") goes to the dead letters: %s",
                e->qe->id, e->qe->deliveries, e->reason);
        what = "dead-lettering";
        rc = cga_queue_dead_letter(w->q, e->qe, e->reason, on_dead, e);
    } else {
        what = "splitting";
        rc = cga_queue_split(w->q, e->qe, on_split, e);
    }
    if (rc != CGA_OK) {
        CGA_LOG(CGA_LOG_WARN, rc,
                "%s entry %s failed; it stays pending and comes back after the lease", what,
                e->qe->id);
        entry_put(w, e, 1);
        return;
    }
    w->pending_ops++;
}

static void entry_dead(lab_worker_t *w, entry_t *e) { entry_op_start(w, e, MODE_DEAD); }
static void entry_split(lab_worker_t *w, entry_t *e) { entry_op_start(w, e, MODE_SPLIT); }

/* ---- claimed entries ------------------------------------------------------------------------- */

static void handle_entry(lab_worker_t *w, batch_t *b, const cga_queue_entry_t *qe,
                         int reclaimed) {
    cga_counter_add(w->m_entries, 1);
    if (reclaimed) {
        w->reclaimed++;
        cga_counter_add(w->m_reclaimed, 1);
        /* Our own entry, still running here or being acknowledged: our copy goes on. Past the
         * delivery limit (a plugin that hangs) it still goes to the dead letters. */
        int held = is_held_here(w, qe->id);
        if (held == HELD_OTHER) return;
        if (held == HELD_RUN && qe->deliveries <= w->o.max_deliveries) return;
    }
    entry_t *e = entry_get(w, b, qe);
    if (qe->deliveries > w->o.max_deliveries) {
        snprintf(e->reason, sizeof e->reason, "delivered %" PRIu64 " times (limit %u)",
                 qe->deliveries, w->o.max_deliveries);
        entry_dead(w, e);
        return;
    }
    if (!qe->data) {
        snprintf(e->reason, sizeof e->reason, "entry has no field '%s'", CGA_PROTO_FIELD);
        entry_dead(w, e);
        return;
    }
    const cga_task_t *tasks = NULL;
    size_t n = 0;
    int rc = cga_proto_decode_tasks(e->reader, qe->data, qe->len, &tasks, &n);
    if (rc != CGA_OK) {
        const char *why = cga_proto_reader_error(e->reader);
        snprintf(e->reason, sizeof e->reason, "%s", why && *why ? why : cga_strerror(rc));
        entry_dead(w, e);
        return;
    }
    if (n == 0) {
        snprintf(e->reason, sizeof e->reason, "entry holds no task");
        entry_dead(w, e);
        return;
    }
    e->tasks = tasks;
    e->ntasks = n;
    w->held_tasks += n - e->held;
    e->held = n;
    w->avg_tasks = 0.8 * w->avg_tasks + 0.2 * (double)n;
    cga_counter_add(w->m_claimed, n);
    if (qe->deliveries > 1 && n > 1) {
        entry_split(w, e);
        return;
    }
    if (reclaimed) {
        e->lane_seq = ++w->lane_seq;
        w->lane = 1;
        w->lane_since_ms = cga_clock_mono_ms();
    }
    entry_run(w, e);
}

static void handle_batch(lab_worker_t *w, cga_queue_batch_t *qb, int reclaimed) {
    if (!qb) return;
    if (qb->n == 0) {
        cga_queue_batch_free(qb);
        return;
    }
    batch_t *b = batch_get(w, qb); /* one reference for this loop */
    w->batching = 1;
    for (size_t i = 0; i < qb->n; i++) handle_entry(w, b, &qb->entries[i], reclaimed);
    w->batching = 0;
    pump(w);
    batch_unref(w, b);
    update_gauges(w);
}

/* Tasks the lab may hold: --max-inflight, and no more than the plugin threads finish in a
 * quarter of the lease, so that claimed tasks never wait here long enough to be reclaimed by
 * another lab. */
static size_t inflight_limit(const lab_worker_t *w) {
    size_t lim = w->o.max_inflight;
    if (w->task_us > 0) {
        double n = (double)w->o.lease_ms * 1000.0 / 4.0 * w->o.concurrency / w->task_us;
        if (n < (double)w->o.concurrency) n = w->o.concurrency;
        if (n < (double)lim) lim = (size_t)n;
    }
    return lim;
}

/* ---- claim loop ------------------------------------------------------------------------------ */

static void on_claim_timer(uv_timer_t *t) {
    lab_worker_t *w = t->data;
    w->claim_backoff_mode = 0;
    maybe_claim(w);
}

static void on_ensure(int status, void *arg) {
    lab_worker_t *w = arg;
    w->pending_ops--;
    if (status != CGA_OK && !w->claim_outage)
        CGA_LOG(CGA_LOG_WARN, status, "creating the group %s on %s failed", CGA_GROUP_ANALYSIS,
                cga_queue_key(w->q));
    maybe_finish(w);
}

static void ensure_group(lab_worker_t *w) {
    if (cga_queue_ensure_group(w->q, on_ensure, w) == CGA_OK) w->pending_ops++;
}

static void claim_failed(lab_worker_t *w, int rc) {
    if (!w->claim_outage) {
        w->claim_outage = 1;
        w->claim_outage_ms = cga_clock_mono_ms();
        CGA_LOG(CGA_LOG_WARN, rc, "claiming from %s failed; retrying until Redis answers",
                cga_queue_key(w->q));
    }
    if (rc == CGA_EREPLY) ensure_group(w); /* NOGROUP and the like */
    if (w->stopping) return;
    w->claim_backoff_ms = w->claim_backoff_ms ? w->claim_backoff_ms * 2 : BACKOFF_MIN_MS;
    if (w->claim_backoff_ms > CLAIM_BACKOFF_MAX_MS) w->claim_backoff_ms = CLAIM_BACKOFF_MAX_MS;
    w->claim_backoff_mode = 1;
    uv_timer_start(&w->claim_timer, on_claim_timer, w->claim_backoff_ms, 0);
}

static void on_claim(int status, cga_queue_batch_t *batch, void *arg) {
    lab_worker_t *w = arg;
    w->pending_ops--;
    w->claiming = 0;
    if (status == CGA_ENOTFOUND) {
        /* The group vanished (Redis restarted without its data) and was created again. */
        cga_queue_batch_free(batch);
        CGA_LOG(CGA_LOG_WARN, 0, "the group %s on %s was missing and has been created again",
                CGA_GROUP_ANALYSIS, cga_queue_key(w->q));
        maybe_claim(w);
        maybe_finish(w);
        return;
    }
    if (status != CGA_OK) {
        cga_queue_batch_free(batch);
        claim_failed(w, status);
        maybe_finish(w);
        return;
    }
    if (w->claim_outage) {
        w->claim_outage = 0;
        CGA_LOG(CGA_LOG_INFO, 0, "claiming again (Redis answered after %" PRIu64 " ms)",
                cga_clock_mono_ms() - w->claim_outage_ms);
    }
    w->claim_backoff_ms = 0;
    size_t n = batch ? batch->n : 0;
    if (n) w->last_progress_ms = cga_clock_mono_ms();
    int was_blocking = w->claim_blocking;
    handle_batch(w, batch, 0);
    if (w->stopping) {
        maybe_finish(w);
        return;
    }
    if (n == 0 && !was_blocking) {
        w->claim_backoff_mode = 0;
        uv_timer_start(&w->claim_timer, on_claim_timer, CLAIM_POLL_MS, 0);
        return;
    }
    maybe_claim(w);
}

static void maybe_claim(lab_worker_t *w) {
    if (!w->started || w->stopping || w->claiming) return;
    if (uv_is_active((uv_handle_t *)&w->claim_timer)) {
        /* An error backoff always waits; a poll waits only while tasks are held. */
        if (w->claim_backoff_mode || w->held_tasks > 0) return;
        uv_timer_stop(&w->claim_timer);
    }
    size_t limit = inflight_limit(w);
    if (w->held_tasks >= limit) return; /* claimed again when tasks are done */
    size_t room = limit - w->held_tasks;
    double avg = w->avg_tasks < 1 ? 1 : w->avg_tasks;
    size_t count = (size_t)((double)room / avg);
    if (count < 1) count = 1;
    if (count > w->o.claim_count) count = w->o.claim_count;
    unsigned block = w->held_tasks == 0 ? w->block_ms : 0;
    int rc = cga_queue_claim(w->q, count, block, on_claim, w);
    if (rc != CGA_OK) {
        claim_failed(w, rc);
        return;
    }
    w->claiming = 1;
    w->claim_blocking = block > 0;
    w->pending_ops++;
}

/* ---- reclaim --------------------------------------------------------------------------------- */

/* 1 while a reclaimed entry runs in the lane (and has not run longer than the lease). */
static int lane_busy(const lab_worker_t *w) {
    return w->lane && cga_clock_mono_ms() - w->lane_since_ms < w->o.lease_ms;
}

static void lane_release(lab_worker_t *w, unsigned seq) {
    if (!w->lane || seq == 0 || seq != w->lane_seq) return;
    w->lane = 0;
    do_reclaim(w);
}

static void on_reclaim(int status, cga_queue_batch_t *batch, void *arg) {
    lab_worker_t *w = arg;
    w->pending_ops--;
    w->reclaiming = 0;
    if (status != CGA_OK) {
        cga_queue_batch_free(batch);
        if (!w->claim_outage && status != CGA_ENOTFOUND)
            CGA_LOG(CGA_LOG_WARN, status, "reclaiming idle entries failed");
        maybe_finish(w);
        return;
    }
    size_t n = batch ? batch->n : 0;
    for (size_t i = 0; i < n; i++)
        CGA_LOG(CGA_LOG_DEBUG, 0, "reclaimed entry %s (delivery %" PRIu64 ")",
                batch->entries[i].id, batch->entries[i].deliveries);
    if (n == 0 && w->reclaim_streak > 0) {
        CGA_LOG(CGA_LOG_INFO, 0, "reclaimed %zu entries idle for more than %u ms",
                w->reclaim_streak, w->o.lease_ms);
        w->reclaim_streak = 0;
    }
    w->reclaim_streak += n;
    handle_batch(w, batch, 1);
    if (n > 0) do_reclaim(w); /* the next one, unless the lane is busy now */
    maybe_claim(w);
    maybe_finish(w);
}

/* Reclaims one entry idle past the lease, unless one is running in the lane. */
static void do_reclaim(lab_worker_t *w) {
    if (!w->started || w->stopping || w->reclaiming || lane_busy(w)) return;
    if (w->held_tasks >= inflight_limit(w)) return; /* next tick */
    int rc = cga_queue_reclaim(w->q, 1, on_reclaim, w);
    if (rc != CGA_OK) {
        if (!w->claim_outage) CGA_LOG(CGA_LOG_WARN, rc, "reclaiming idle entries failed");
        return;
    }
    w->reclaiming = 1;
    w->pending_ops++;
}

static void on_reclaim_timer(uv_timer_t *t) {
    do_reclaim(t->data);
}

/* ---- completing (reports + ack) -------------------------------------------------------------- */

static void on_retry_timer(uv_timer_t *t) {
    lab_worker_t *w = t->data;
    group_t *list = w->retry;
    w->retry = NULL;
    while (list) {
        group_t *g = list;
        list = g->next;
        g->next = NULL;
        group_send(w, g);
    }
}

static void complete_failed(lab_worker_t *w, group_t *g, int rc) {
    if (!is_transient(rc)) {
        CGA_LOG(CGA_LOG_ERROR, rc,
                "writing %zu reports and acknowledging %zu entries failed; the entries stay "
                "pending and come back after the lease",
                g->ntasks, g->nids);
        unsigned seq = g->lane_seq;
        group_put(w, g, 1);
        lane_release(w, seq);
        return;
    }
    if (!w->complete_outage) {
        w->complete_outage = 1;
        CGA_LOG(CGA_LOG_WARN, rc,
                "writing reports failed; keeping them and retrying (the tasks stay pending)");
    }
    g->next = w->retry;
    w->retry = g;
    if (!uv_is_active((uv_handle_t *)&w->retry_timer)) {
        w->retry_backoff_ms = w->retry_backoff_ms ? w->retry_backoff_ms * 2 : BACKOFF_MIN_MS;
        if (w->retry_backoff_ms > COMPLETE_BACKOFF_MAX_MS)
            w->retry_backoff_ms = COMPLETE_BACKOFF_MAX_MS;
        uv_timer_start(&w->retry_timer, on_retry_timer, w->retry_backoff_ms, 0);
    }
}

static void on_complete(int status, void *arg) {
    group_t *g = arg;
    lab_worker_t *w = g->w;
    w->pending_ops--;
    list_remove(&w->sending, g);
    if (status != CGA_OK) {
        complete_failed(w, g, status);
        maybe_claim(w);
        maybe_finish(w);
        return;
    }
    if (w->complete_outage) {
        w->complete_outage = 0;
        CGA_LOG(CGA_LOG_INFO, 0, "writing reports again");
    }
    w->retry_backoff_ms = 0;
    w->last_progress_ms = cga_clock_mono_ms();
    w->last_ack_us = cga_clock_wall_us();
    w->processed += g->ntasks;
    w->failed += g->nfailed;
    cga_counter_add(w->m_ok, g->ntasks - g->nfailed);
    cga_counter_add(w->m_fail, g->nfailed);
    unsigned seq = g->lane_seq;
    group_put(w, g, 1);
    lane_release(w, seq);
    maybe_claim(w);
    maybe_finish(w);
}

static void group_send(lab_worker_t *w, group_t *g) {
    if (!g->finished) {
        cga_proto_writer_finish(g->wr, &g->data, &g->len);
        g->finished = 1;
        cga_grow((void **)&g->idp, &g->idp_cap, g->nids, sizeof g->idp[0]);
    }
    for (size_t i = 0; i < g->nids; i++) g->idp[i] = g->ids[i];
    size_t count = cga_proto_writer_count(g->wr);
    int rc = cga_queue_complete(w->q, w->rq, g->data, g->len, count, g->idp, g->nids,
                                on_complete, g);
    if (rc != CGA_OK) {
        complete_failed(w, g, rc);
        return;
    }
    g->next = w->sending;
    w->sending = g;
    w->pending_ops++;
}

/* ---- heartbeat ------------------------------------------------------------------------------- */

static void write_metrics_file(lab_worker_t *w) {
    if (!w->metrics_file) return;
    cga_app_metrics_refresh(w->app);
    int rc = cga_metrics_write_file(w->metrics, w->metrics_file);
    if (rc != CGA_OK && !w->metrics_file_failed)
        CGA_LOG(CGA_LOG_WARN, rc, "cannot write the metrics file %s", w->metrics_file);
    w->metrics_file_failed = rc != CGA_OK;
}

/* Stalled: work waits (tasks held here, or a backlog in the group) and nothing moved for
 * stall_ms. The failure this catches is the one users of other job frameworks report most: a
 * worker that stays up but silently stops consuming (after a reconnect, a failover, a hung
 * plugin). Said once in the log when it starts and ends, and in every heartbeat. */
static void check_stall(lab_worker_t *w) {
    if (!w->o.stall_ms) return;
    uint64_t now = cga_clock_mono_ms();
    int waits = w->held_tasks > 0 || w->backlog > 0;
    if (!waits) w->last_progress_ms = now; /* nothing to do is not a stall */
    int stalled = waits && now - w->last_progress_ms >= w->o.stall_ms;
    if (stalled && !w->stalled)
        CGA_LOG(CGA_LOG_ERROR, 0,
                "stalled: %zu tasks held, %" PRIu64 " entries waiting in the queue, nothing "
                "acknowledged or claimed for %" PRIu64 " s",
                w->held_tasks, w->backlog, (now - w->last_progress_ms) / 1000);
    else if (!stalled && w->stalled)
        CGA_LOG(CGA_LOG_INFO, 0, "no longer stalled");
    w->stalled = stalled;
}

int lab_worker_is_stalled(const lab_worker_t *w) { return w->stalled; }

/* /health: the stall flag and the tasks held; down (503) while stalled. */
static void lab_health(cga_health_t *h, void *arg) {
    lab_worker_t *w = arg;
    cga_health_bool(h, "stalled", w->stalled);
    cga_health_int(h, "held_tasks", (int64_t)w->held_tasks);
    cga_health_int(h, "processed", (int64_t)w->processed);
    if (w->stalled) cga_health_status(h, CGA_HEALTH_DOWN, "stalled: work waits, no ack or claim");
}

static void on_backlog(int status, const cga_queue_info_t *info, void *arg) {
    lab_worker_t *w = arg;
    w->pending_ops--;
    w->info_pending = 0;
    if (status == CGA_OK) w->backlog = info->lag + info->pending;
    check_stall(w);
    maybe_finish(w);
}

static void on_hb(int status, void *arg) {
    lab_worker_t *w = arg;
    w->pending_ops--;
    w->hb_pending = 0;
    if (status != CGA_OK && !w->hb_outage && !w->claim_outage)
        CGA_LOG(CGA_LOG_WARN, status, "heartbeat failed");
    w->hb_outage = status != CGA_OK;
    maybe_finish(w);
}

static void heartbeat(lab_worker_t *w) {
    write_metrics_file(w);
    if (w->finishing) return;
    check_stall(w);
    if (w->o.stall_ms && !w->info_pending &&
        cga_queue_info(w->q, on_backlog, w) == CGA_OK) {
        w->info_pending = 1;
        w->pending_ops++;
    }
    if (w->hb_pending) return;
    cga_worker_state_t s;
    memset(&s, 0, sizeof s);
    s.id = cga_str(w->id);
    s.host = cga_str(w->host);
    s.pid = (uint32_t)getpid();
    s.plugins = cga_str(w->plugin_list);
    s.started_us = w->started_us;
    s.processed = w->processed;
    s.failed = w->failed;
    s.inflight = (uint32_t)w->running_tasks;
    s.ts_us = cga_clock_wall_us();
    s.last_ack_us = w->last_ack_us;
    s.stalled = w->stalled;
    const char *data = NULL;
    size_t len = 0;
    int rc = cga_proto_encode_worker_state(w->hb_writer, &s, &data, &len);
    if (rc != CGA_OK) {
        CGA_LOG(CGA_LOG_ERROR, rc, "cannot encode the heartbeat");
        return;
    }
    rc = cga_state_set(w->state, w->hb_name, data, len, HEARTBEAT_TTL_MS, on_hb, w);
    if (rc != CGA_OK) {
        if (!w->hb_outage && !w->claim_outage) CGA_LOG(CGA_LOG_WARN, rc, "heartbeat failed");
        w->hb_outage = 1;
        return;
    }
    w->hb_pending = 1;
    w->pending_ops++;
}

static void on_hb_timer(uv_timer_t *t) {
    heartbeat(t->data);
}

static void on_redis_state(int up, int status, void *arg) {
    lab_worker_t *w = arg;
    if (!up || w->closed || !w->started) return;
    /* Redis is back: do not wait for the backoffs. */
    if (w->retry) {
        uv_timer_stop(&w->retry_timer);
        on_retry_timer(&w->retry_timer);
    }
    if (w->claim_backoff_mode && uv_is_active((uv_handle_t *)&w->claim_timer)) {
        uv_timer_stop(&w->claim_timer);
        w->claim_backoff_mode = 0;
        w->claim_backoff_ms = 0;
        maybe_claim(w);
    }
}

/* ---- shutdown -------------------------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h) {
    lab_worker_t *w = h->data;
    if (--w->closing_left == 0) cga_app_stop(w->app);
}

static void on_queue_closed(void *arg) {
    lab_worker_t *w = arg;
    if (--w->closing_left == 0) cga_app_stop(w->app);
}

static void close_all(lab_worker_t *w) {
    w->closed = 1;
    CGA_LOG(CGA_LOG_INFO, 0,
            "stopped: %" PRIu64 " tasks done (%" PRIu64 " with errors), %" PRIu64
            " entries dead-lettered, %" PRIu64 " split, %" PRIu64 " reclaimed",
            w->processed, w->failed, w->dead, w->split, w->reclaimed);
    write_metrics_file(w);
    w->closing_left = NHANDLES + 2;
    uv_handle_t *hs[NHANDLES] = {
        (uv_handle_t *)&w->claim_timer, (uv_handle_t *)&w->reclaim_timer,
        (uv_handle_t *)&w->hb_timer,    (uv_handle_t *)&w->grace_timer,
        (uv_handle_t *)&w->retry_timer, (uv_handle_t *)&w->exit_timer,
        (uv_handle_t *)&w->flush_check, (uv_handle_t *)&w->done_async,
    };
    for (int i = 0; i < NHANDLES; i++) uv_close(hs[i], on_handle_closed);
    cga_queue_t *q = w->q, *rq = w->rq;
    w->q = w->rq = NULL;
    cga_queue_close(q, on_queue_closed, w);
    cga_queue_close(rq, on_queue_closed, w);
}

static void on_del(int status, struct redisReply *reply, void *arg) {
    lab_worker_t *w = arg;
    (void)reply;
    w->pending_ops--;
    if (status != CGA_OK) CGA_LOG(CGA_LOG_WARN, status, "deleting the heartbeat key failed");
    if (w->exiting) {
        CGA_LOG(CGA_LOG_INFO, 0, "exiting");
        _exit(CGA_EXIT_OK);
    }
    maybe_finish(w);
}

/* Deletes the heartbeat key; returns 1 when the command was accepted. */
static int send_del(lab_worker_t *w) {
    w->del_sent = 1;
    if (cga_redis_command(w->redis, CGA_REDIS_FAILFAST, on_del, w, "DEL %s", w->hb_key) !=
        CGA_OK)
        return 0;
    w->pending_ops++;
    return 1;
}

static void maybe_finish(lab_worker_t *w) {
    if (!w->stopping || w->closed || w->exiting) return;
    if (!w->finishing) {
        if (w->held_entries > 0 || w->claiming || w->reclaiming || w->open || w->sending ||
            w->retry || w->drains > 0)
            return;
        w->finishing = 1;
        uv_timer_stop(&w->hb_timer); /* the grace timer stays: it bounds the closing too */
        uv_timer_stop(&w->claim_timer);
        uv_timer_stop(&w->reclaim_timer);
        uv_timer_stop(&w->retry_timer);
        if (w->started) send_del(w);
    }
    if (w->pending_ops == 0) close_all(w);
}

static void on_exit_timer(uv_timer_t *t) {
    lab_worker_t *w = t->data;
    (void)w;
    CGA_LOG(CGA_LOG_WARN, 0, "exiting without confirmation of the heartbeat key's deletion");
    _exit(CGA_EXIT_OK);
}

static void on_grace(uv_timer_t *t) {
    lab_worker_t *w = t->data;
    if (w->finishing) {
        /* Everything is acknowledged; only Redis replies (a heartbeat, its deletion) are
         * awaited, and Redis is slow or down: do not wait for them. */
        CGA_LOG(CGA_LOG_WARN, 0, "grace period of %u ms expired while closing; exiting",
                w->o.grace_ms);
        _exit(CGA_EXIT_OK);
    }
    CGA_LOG(CGA_LOG_WARN, 0,
            "grace period of %u ms expired: %zu tasks in %zu entries left pending (%zu not "
            "finished by a plugin); another lab reclaims them after the lease (%u ms)",
            w->o.grace_ms, w->held_tasks, w->held_entries, w->running_tasks, w->o.lease_ms);
    /* A plugin may still run on a pool thread: its code can be neither unloaded nor joined.
     * The pending entries are safe in Redis, so leave at once. */
    w->exiting = 1;
    write_metrics_file(w);
    uv_timer_stop(&w->hb_timer);
    uv_timer_start(&w->exit_timer, on_exit_timer, EXIT_DEL_WAIT_MS, 0);
    if (!send_del(w)) _exit(CGA_EXIT_OK);
}

void lab_worker_stop(lab_worker_t *w) {
    if (w->stopping) return;
    w->stopping = 1;
    CGA_LOG(CGA_LOG_INFO, 0, "stopping: %zu tasks held (%zu not run yet); grace period %u ms",
            w->held_tasks, w->running_tasks, w->o.grace_ms);
    uv_timer_stop(&w->claim_timer);
    uv_timer_stop(&w->reclaim_timer);
    uv_timer_start(&w->grace_timer, on_grace, w->o.grace_ms, 0);
    maybe_finish(w);
}

/* ---- life cycle ------------------------------------------------------------------------------ */

int lab_worker_create(lab_worker_t **out, cga_app_t *app, const lab_worker_opts_t *o,
                      cga_plugin_t **plugins, size_t nplugins) {
    lab_worker_t *w = cga_calloc(1, sizeof *w);
    int rc = uv_mutex_init(&w->mu);
    if (rc != 0) {
        for (size_t i = 0; i < nplugins; i++) cga_plugin_free(plugins[i]);
        free(w);
        *out = NULL;
        return rc;
    }
    w->app = app;
    w->loop = cga_app_loop(app);
    w->redis = cga_app_redis(app);
    w->o = *o;
    w->id = cga_strdup(o->id);
    w->metrics_file = cga_strdup(o->metrics_file);
    w->o.id = w->id;
    w->o.metrics_file = w->metrics_file;
    if (w->o.concurrency == 0) w->o.concurrency = 1;
    if (w->o.claim_count == 0) w->o.claim_count = 1;
    if (w->o.max_inflight == 0) {
        /* Room for a whole claim while the previous one is being acknowledged. */
        size_t by_threads = 4u * w->o.concurrency * 32u, by_claim = 2u * w->o.claim_count * 32u;
        w->o.max_inflight = by_threads > by_claim ? by_threads : by_claim;
    }
    w->avg_tasks = 1;
    w->exit_code = CGA_EXIT_OK;
    w->started_us = cga_clock_wall_us();
    w->last_progress_ms = cga_clock_mono_ms();
    if (gethostname(w->host, sizeof w->host - 1) != 0) snprintf(w->host, sizeof w->host, "?");
    w->host[sizeof w->host - 1] = '\0';
    cga_proto_limits_init(&w->limits);

    w->plugins = cga_memdup(plugins, nplugins * sizeof *plugins);
    w->nplugins = nplugins;
    w->pnames = cga_calloc(nplugins ? nplugins : 1, sizeof *w->pnames);
    w->pname_lens = cga_calloc(nplugins ? nplugins : 1, sizeof *w->pname_lens);
    size_t listlen = 1;
    for (size_t i = 0; i < nplugins; i++) {
        w->pnames[i] = cga_plugin_name(plugins[i]);
        w->pname_lens[i] = strlen(w->pnames[i]);
        listlen += w->pname_lens[i] + 1;
    }
    w->plugin_list = cga_malloc(listlen);
    w->plugin_list[0] = '\0';
    for (size_t i = 0; i < nplugins; i++) {
        if (i) strcat(w->plugin_list, ",");
        strcat(w->plugin_list, w->pnames[i]);
    }

    /* Effective BLOCK: commands queued behind a blocking XREADGROUP on the same connection
     * wait for it, so it stays well inside the command timeout. */
    w->block_ms = o->block_ms;
    int64_t cmd_to = cga_config_int(cga_app_config(app), "REDIS_COMMAND_TIMEOUT_MS");
    if (cmd_to > 0 && w->block_ms > (uint64_t)cmd_to / 2) w->block_ms = (unsigned)(cmd_to / 2);

    const char *ns = cga_app_ns(app);
    if (snprintf(w->hb_name, sizeof w->hb_name, "worker:%s", w->id) >= (int)sizeof w->hb_name ||
        cga_key(w->hb_key, sizeof w->hb_key, ns, CGA_KIND_STATE, "worker", w->id) < 0) {
        rc = CGA_ETOOBIG;
        goto fail;
    }

    cga_queue_opts_t qo;
    cga_queue_opts_init(&qo);
    qo.ns = ns;
    qo.name = CGA_QUEUE_ANALYSIS;
    qo.group = CGA_GROUP_ANALYSIS;
    qo.consumer = w->id;
    qo.lease_ms = w->o.lease_ms;
    qo.max_deliveries = w->o.max_deliveries;
    if (cmd_to > 0) qo.command_timeout_ms = (unsigned)cmd_to;
    w->limits = qo.limits;
    rc = cga_queue_create(&w->q, w->loop, w->redis, &qo);
    if (rc != CGA_OK) goto fail;
    cga_queue_opts_t ro;
    cga_queue_opts_init(&ro);
    ro.ns = ns;
    ro.name = CGA_QUEUE_REPORTS;
    if (cmd_to > 0) ro.command_timeout_ms = (unsigned)cmd_to;
    rc = cga_queue_create(&w->rq, w->loop, w->redis, &ro);
    if (rc != CGA_OK) goto fail;
    rc = cga_state_create(&w->state, w->redis, ns);
    if (rc != CGA_OK) goto fail;
    rc = cga_proto_writer_create(&w->hb_writer, &w->limits);
    if (rc != CGA_OK) goto fail;
    w->metrics = cga_app_metrics(app); /* served on /metrics when CGALPHA_HTTP_PORT is set */
    cga_app_track_state(app, w->state);
    cga_app_set_health(app, lab_health, w);

    cga_metrics_t *m = w->metrics;
    w->m_entries = cga_metrics_counter(m, "cgalpha_lab_entries_claimed_total",
                                       "Stream entries claimed or reclaimed", NULL);
    w->m_reclaimed = cga_metrics_counter(m, "cgalpha_lab_entries_reclaimed_total",
                                         "Stream entries reclaimed after the lease", NULL);
    w->m_claimed = cga_metrics_counter(m, "cgalpha_lab_tasks_claimed_total",
                                       "Tasks decoded from claimed entries", NULL);
    w->m_ok = cga_metrics_counter(m, "cgalpha_lab_tasks_succeeded_total",
                                  "Tasks reported with status ok and acknowledged", NULL);
    w->m_fail = cga_metrics_counter(m, "cgalpha_lab_tasks_failed_total",
                                    "Tasks reported with status error and acknowledged", NULL);
    w->m_dead = cga_metrics_counter(m, "cgalpha_lab_entries_dead_lettered_total",
                                    "Entries moved to the dead letters", NULL);
    w->m_split = cga_metrics_counter(m, "cgalpha_lab_entries_split_total",
                                     "Redelivered entries split into single-task entries", NULL);
    w->g_running = cga_metrics_gauge(m, "cgalpha_lab_tasks_running",
                                     "Tasks handed to the plugin threads, not finished", NULL);
    w->g_held = cga_metrics_gauge(m, "cgalpha_lab_tasks_held",
                                  "Tasks claimed and not yet acknowledged", NULL);
    w->h_run = cga_calloc(nplugins ? nplugins : 1, sizeof *w->h_run);
    for (size_t i = 0; i < nplugins; i++) {
        char labels[128] = "";
        cga_metrics_label_append(labels, sizeof labels, "plugin", w->pnames[i]);
        w->h_run[i] = cga_metrics_histogram(m, "cgalpha_lab_plugin_run_seconds",
                                            "Plugin run time per task", labels, NULL, 0);
    }

    /* Last fallible step; the handles below cannot fail. */
    rc = cga_redis_on_state(w->redis, on_redis_state, w);
    if (rc != CGA_OK) goto fail;

    uv_timer_t *timers[] = {&w->claim_timer, &w->reclaim_timer, &w->hb_timer,
                            &w->grace_timer, &w->retry_timer,   &w->exit_timer};
    for (size_t i = 0; i < sizeof timers / sizeof timers[0]; i++) {
        uv_timer_init(w->loop, timers[i]);
        timers[i]->data = w;
    }
    uv_unref((uv_handle_t *)&w->exit_timer); /* never keeps the loop alive by itself */
    uv_check_init(w->loop, &w->flush_check);
    w->flush_check.data = w;
    uv_async_init(w->loop, &w->done_async, on_done_async);
    w->done_async.data = w;
    uv_unref((uv_handle_t *)&w->done_async);
    *out = w;
    return CGA_OK;

fail:
    cga_app_set_health(app, NULL, NULL); /* the app outlives nothing of w's from here */
    cga_app_track_state(app, NULL);
    if (w->q) cga_queue_close(w->q, NULL, NULL); /* freed by the app's loop */
    if (w->rq) cga_queue_close(w->rq, NULL, NULL);
    w->q = w->rq = NULL;
    lab_worker_free(w);
    *out = NULL;
    return rc;
}

static void on_ensure_start(int status, void *arg) {
    lab_worker_t *w = arg;
    on_ensure(status, arg);
    if (w->stopping) return;
    do_reclaim(w);
    maybe_claim(w);
}

void lab_worker_start(lab_worker_t *w) {
    w->started = 1;
    CGA_LOG(CGA_LOG_INFO, 0,
            "lab %s consuming %s (group %s) with plugins %s: concurrency %u, claim %zu, "
            "block %u ms, lease %u ms, max deliveries %u, max in flight %zu",
            w->id, cga_queue_key(w->q), CGA_GROUP_ANALYSIS, w->plugin_list, w->o.concurrency,
            w->o.claim_count, w->block_ms, w->o.lease_ms, w->o.max_deliveries,
            w->o.max_inflight);
    heartbeat(w);
    uv_timer_start(&w->hb_timer, on_hb_timer, HEARTBEAT_MS, HEARTBEAT_MS);
    unsigned every = w->o.lease_ms / 2 ? w->o.lease_ms / 2 : 1;
    uv_timer_start(&w->reclaim_timer, on_reclaim_timer, every, every);
    if (cga_queue_ensure_group(w->q, on_ensure_start, w) == CGA_OK) {
        w->pending_ops++;
    } else {
        do_reclaim(w);
        maybe_claim(w);
    }
}

void lab_worker_free(lab_worker_t *w) {
    if (!w) return;
    /* Normal path: everything was released before the loop stopped. */
    while (w->free_entries) {
        entry_t *e = w->free_entries;
        w->free_entries = e->next;
        entry_destroy(e);
    }
    while (w->active) { /* only after an abnormal stop */
        entry_t *e = w->active;
        w->active = e->next;
        if (e->batch) batch_unref(w, e->batch);
        entry_destroy(e);
    }
    while (w->free_work) {
        work_t *wk = w->free_work;
        w->free_work = wk->next;
        free(wk);
    }
    while (w->free_batches) {
        batch_t *b = w->free_batches;
        w->free_batches = b->next;
        free(b);
    }
    group_t **lists[] = {&w->free_groups, &w->sending, &w->retry};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        while (*lists[i]) {
            group_t *g = *lists[i];
            *lists[i] = g->next;
            group_destroy(g);
        }
    }
    if (w->open) group_destroy(w->open);
    cga_proto_writer_free(w->hb_writer);
    cga_state_free(w->state);
    for (size_t i = 0; i < w->nplugins; i++) cga_plugin_free(w->plugins[i]);
    free(w->plugins);
    free(w->pnames);
    free(w->pname_lens);
    free(w->plugin_list);
    free(w->h_run);
    free(w->id);
    free(w->metrics_file);
    uv_mutex_destroy(&w->mu);
    free(w);
}

int lab_worker_exit_code(const lab_worker_t *w) {
    return w->exit_code;
}

#define CGA_LOG_COMPONENT "producer"
#include "producer.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cgalpha/alloc.h"
#include "cgalpha/buffer.h"
#include "cgalpha/clock.h"
#include "cgalpha/err.h"
#include "cgalpha/keys.h"
#include "cgalpha/log.h"
#include "cgalpha/metrics.h"
#include "cgalpha/queue.h"
#include "cgalpha/redis.h"
#include "window.h"

#define CHUNK_TASKS 1024          /* tasks per loop turn at most */
#define RETRY_MS 1000             /* between attempts while Redis or the buffer keeps refusing */
#define YELLOW_PAUSE_MS 10        /* unpaced source at yellow: pause after each batch */
#define ENTRY_MAX_BYTES (512 * 1024) /* an entry leaves once it holds this many bytes */
#define HOLD_MIN 64               /* entries held in memory before production pauses (at least) */
#define DRAIN_PEEK_BYTES (4u << 20) /* rows read from the buffer at once, in bytes of data */
#define LEASE_MS 10000            /* the drain lease; renewed every third of it */

/* An entry in memory: neither in Redis nor in the buffer yet. */
typedef struct held_s {
    struct held_s *next;
    uint64_t eseq;                /* production order */
    size_t len, count;
    char data[];
} held_t;

/* An entry sent to Redis, waiting for its outcome. */
typedef struct fly_s {
    uint64_t eseq;                /* direct: production order */
    int64_t row;                  /* drained: its buffer row (0 for a direct entry) */
    size_t len, count;
} fly_t;

struct ops_producer_s {
    uv_loop_t *loop;
    cga_redis_t *redis;
    cga_queue_t *q;
    cga_buffer_t *buf;
    char qkey[CGA_KEY_MAX];        /* the buffer's queue column for q's rows (q's stream key; a
                                      copy: q is closed before the last store) */
    ops_producer_opts_t o;
    ops_cutter_t *cutter;
    cga_proto_writer_t *w;         /* the entry being filled */
    cga_proto_writer_t *scratch;   /* measures a task over the limit */
    uint64_t linger_ms;
    size_t hold_max;
    uv_timer_t timer, linger;
    uv_poll_t poll;
    int poll_init, poll_active, poll_failed;
    int handles_open;
    int closing, quiesced, state_listening;
    void (*done)(void *);
    void *done_arg;
    void (*change_cb)(void *);
    void *change_arg;

    int active, stopped;
    cga_level_t level;
    size_t since_pause;            /* tasks since the last yellow pause */
    uint64_t pace_t0;              /* pacing origin (loop ms) and bars taken then */
    uint64_t pace_n0;
    uint64_t bars_taken;
    int was_producing;

    uint64_t eseq_next;
    fly_t *fly;                    /* in flight, oldest first: fly[fly_head .. fly_head+fly_n) */
    size_t fly_head, fly_n, fly_cap;
    size_t fly_bytes;              /* sum of their len */
    int fly_drained;               /* what is in flight: drained rows (1) or direct entries (0) */
    held_t *held_head, *held_tail;

    int buffered;                  /* rows of qkey may wait in the buffer */
    int leased;
    uint64_t lease_at;             /* loop ms of the last lease renewal */
    int lease_wait_logged;
    int64_t drain_after;           /* the last row sent in this pass */
    int drain_failed;              /* a drained row was refused: restart the pass */
    int drain_probe;               /* one row at a time until one is accepted */
    int drain_logged;              /* the start of this drain was logged */
    uint64_t drain_t0_us, drain_tasks0;
    uint64_t drain_retry_at;
    int drain_err_logged;
    int64_t *dels;                 /* rows Redis accepted, to delete */
    size_t ndel, del_cap;
    int del_err_logged;
    uint64_t store_retry_at;
    int outage;                    /* entries go to the buffer since a failure (logged once) */
    uint64_t outage_entries;       /* entries buffered during this outage */
    uint64_t gauges_at;            /* loop ms of the last gauge update */
    ops_producer_stats_t st;

    char idbuf[256];

    cga_counter_t *m_tasks, *m_entries, *m_failed, *m_bad, *m_tasks_ok, *m_buffered, *m_drained,
        *m_store_err;
    cga_gauge_t *m_held, *m_buf_entries, *m_buf_tasks;
};

static void pump(ops_producer_t *p);

static void notify(ops_producer_t *p) {
    if (p->change_cb && !p->closing) p->change_cb(p->change_arg);
}

static void on_timer(uv_timer_t *t) {
    pump(t->data);
}

/* Runs pump within ms (an earlier pending run is kept). */
static void schedule(ops_producer_t *p, uint64_t ms) {
    if (p->closing || p->quiesced) return;
    if (uv_is_active((uv_handle_t *)&p->timer) && uv_timer_get_due_in(&p->timer) <= ms) return;
    uv_timer_start(&p->timer, on_timer, ms, 0);
}

static int connected(const ops_producer_t *p) {
    return cga_redis_is_connected(p->redis);
}

static void update_gauges(ops_producer_t *p, int now) {
    if (p->m_held) cga_gauge_set(p->m_held, (double)p->st.held_entries);
    uint64_t t_ms = uv_now(p->loop);
    if (!now && t_ms - p->gauges_at < 200) return;
    p->gauges_at = t_ms;
    if (p->m_buf_entries || p->m_buf_tasks) {
        uint64_t e = 0, t = 0;
        if (cga_buffer_count(p->buf, &e, &t) == CGA_OK) {
            if (p->m_buf_entries) cga_gauge_set(p->m_buf_entries, (double)e);
            if (p->m_buf_tasks) cga_gauge_set(p->m_buf_tasks, (double)t);
        }
    }
}

/* ---- in flight --------------------------------------------------------------------------- */

static void fly_push(ops_producer_t *p, uint64_t eseq, int64_t row, size_t len, size_t count) {
    if (p->fly_head + p->fly_n == p->fly_cap) {
        if (p->fly_head > 0) {
            memmove(p->fly, p->fly + p->fly_head, p->fly_n * sizeof *p->fly);
            p->fly_head = 0;
        } else {
            p->fly_cap = p->fly_cap ? p->fly_cap * 2 : 64;
            p->fly = cga_realloc(p->fly, p->fly_cap * sizeof *p->fly);
        }
    }
    p->fly[p->fly_head + p->fly_n++] = (fly_t){eseq, row, len, count};
    p->fly_bytes += len;
    p->fly_drained = row != 0;
}

/* Room in the Redis window for one more entry: fewer than max_inflight entries and
 * max_inflight_bytes bytes unanswered (limit: max_inflight, or 1 while probing). */
static int window_open(const ops_producer_t *p, size_t limit) {
    return p->fly_n < limit && (p->fly_n == 0 || p->fly_bytes < p->o.max_inflight_bytes);
}

/* The in-flight record of an outcome: outcomes come back in the order of sending, so it is the
 * oldest one; the first one of the same size is taken in case one overtook another. Returns 0
 * when none matches (cannot happen). */
static int fly_take(ops_producer_t *p, size_t len, size_t count, fly_t *out) {
    for (size_t i = 0; i < p->fly_n; i++) {
        fly_t *f = &p->fly[p->fly_head + i];
        if (f->len != len || f->count != count) continue;
        *out = *f;
        p->fly_bytes -= f->len;
        if (i == 0) {
            p->fly_head++;
        } else {
            memmove(f, f + 1, (p->fly_n - i - 1) * sizeof *f);
        }
        if (--p->fly_n == 0) p->fly_head = 0;
        return 1;
    }
    return 0;
}

/* ---- held in memory ---------------------------------------------------------------------- */

/* Keeps a copy of data in memory, in production order (eseq). */
static void hold(ops_producer_t *p, uint64_t eseq, const char *data, size_t len, size_t count) {
    held_t *h = cga_malloc(sizeof *h + len);
    h->eseq = eseq;
    h->len = len;
    h->count = count;
    memcpy(h->data, data, len);
    held_t **at = &p->held_head;
    if (p->held_tail && p->held_tail->eseq <= eseq) at = &p->held_tail->next;
    while (*at && (*at)->eseq <= eseq) at = &(*at)->next;
    h->next = *at;
    *at = h;
    if (!h->next) p->held_tail = h;
    p->st.held_entries++;
    p->st.held_tasks += count;
}

static void free_held(ops_producer_t *p) {
    held_t *h = p->held_head;
    while (h) {
        held_t *next = h->next;
        free(h);
        h = next;
    }
    p->held_head = p->held_tail = NULL;
    p->st.held_entries = 0;
    p->st.held_tasks = 0;
}

static void outage_begins(ops_producer_t *p, int status) {
    if (p->outage || p->closing) return;
    p->outage = 1;
    p->outage_entries = 0;
    if (status)
        CGA_LOG(CGA_LOG_WARN, status, "Redis did not accept an entry of %s: new tasks go to the "
                "task buffer %s until it does (logged once per outage)", p->qkey,
                cga_buffer_path(p->buf));
    else
        CGA_LOG(CGA_LOG_WARN, 0, "Redis is not connected: new tasks go to the task buffer %s "
                "until it is (logged once per outage)", cga_buffer_path(p->buf));
}

/* The outage is over once nothing waits in memory or in the buffer. */
static void maybe_recovered(ops_producer_t *p) {
    if (!p->outage || p->buffered || p->held_head || p->closing || p->quiesced) return;
    p->outage = 0;
    CGA_LOG(CGA_LOG_INFO, 0, "Redis accepts entries again and the task buffer is empty: tasks "
            "go straight to Redis (%" PRIu64 " entries went through the buffer)",
            p->outage_entries);
}

/* Sends the held entries straight to Redis (the buffer refuses them and nothing older waits in
 * it), oldest first, while the window allows. */
static void send_held(ops_producer_t *p) {
    while (p->held_head && window_open(p, p->o.max_inflight)) {
        held_t *h = p->held_head;
        if (cga_queue_send_entry(p->q, h->data, h->len, h->count) != CGA_OK) return;
        fly_push(p, h->eseq, 0, h->len, h->count);
        p->held_head = h->next;
        if (!p->held_head) p->held_tail = NULL;
        p->st.held_entries--;
        p->st.held_tasks -= h->count;
        free(h);
    }
}

/* Appends the held entries to the buffer in one transaction. force: ignore the retry delay. */
static void store_held(ops_producer_t *p, int force) {
    if (!p->held_head) return;
    /* Entries sent to Redis before them come first: wait for their outcome. */
    if (p->fly_n > 0 && !p->fly_drained) return;
    uint64_t now = uv_now(p->loop);
    if (p->st.store_failing && !force && now < p->store_retry_at) {
        schedule(p, p->store_retry_at - now);
        return;
    }
    size_t n = p->st.held_entries;
    cga_buffer_entry_t *e = cga_calloc(n, sizeof *e);
    size_t i = 0;
    for (held_t *h = p->held_head; h; h = h->next, i++) {
        e[i].queue = p->qkey;
        e[i].data = h->data;
        e[i].len = h->len;
        e[i].count = h->count;
    }
    int rc = cga_buffer_append_many(p->buf, e, n);
    free(e);
    if (rc == CGA_OK) {
        if (p->st.store_failing)
            CGA_LOG(CGA_LOG_INFO, 0, "the task buffer accepts entries again: %zu held entries "
                    "(%" PRIu64 " tasks) stored", n, p->st.held_tasks);
        p->st.store_failing = 0;
        p->st.buffered_entries += n;
        p->st.buffered_tasks += p->st.held_tasks;
        p->outage_entries += n;
        if (p->m_buffered) cga_counter_add(p->m_buffered, p->st.held_tasks);
        free_held(p);
        p->buffered = 1;
        notify(p);
        return;
    }
    p->st.store_errors++;
    if (p->m_store_err) cga_counter_add(p->m_store_err, 1);
    if (!p->st.store_failing && !p->closing) {
        CGA_LOG(CGA_LOG_ERROR, 0, "cannot store %zu entries (%" PRIu64 " tasks) in the task "
                "buffer: %s; keeping them in memory and retrying Redis and the buffer every "
                "second (logged once until it works)", n, p->st.held_tasks,
                cga_buffer_errmsg(p->buf));
    }
    p->st.store_failing = 1;
    p->store_retry_at = now + RETRY_MS;
    notify(p);
    /* Redis may take them meanwhile, when nothing older waits in the buffer. */
    if (!p->buffered && !p->quiesced && !p->closing && connected(p) && p->fly_n == 0) send_held(p);
    schedule(p, RETRY_MS);
}

/* ---- outcomes ---------------------------------------------------------------------------- */

static void drain_done_log(ops_producer_t *p);

static void on_sent(int status, const char *entry_id, const char *data, size_t len, size_t count,
                    void *arg) {
    ops_producer_t *p = arg;
    (void)entry_id;
    fly_t f;
    if (!fly_take(p, len, count, &f)) {
        CGA_LOG(CGA_LOG_DEBUG, 0, "an outcome matches no entry in flight");
        f = (fly_t){0, 0, len, count};
    }
    if (p->o.on_write) p->o.on_write(status, p->o.on_write_arg);
    if (status == CGA_OK) {
        p->st.entries_ok++;
        p->st.tasks_ok += count;
        if (p->m_entries) cga_counter_add(p->m_entries, 1);
        if (p->m_tasks_ok) cga_counter_add(p->m_tasks_ok, count);
        if (f.row) {
            if (p->ndel == p->del_cap) {
                p->del_cap = p->del_cap ? p->del_cap * 2 : 64;
                p->dels = cga_realloc(p->dels, p->del_cap * sizeof *p->dels);
            }
            p->dels[p->ndel++] = f.row;
            p->st.drained_entries++;
            p->st.drained_tasks += count;
            if (p->m_drained) cga_counter_add(p->m_drained, count);
            p->drain_probe = 0;
            p->drain_err_logged = 0;
        } else {
            maybe_recovered(p);
        }
    } else {
        p->st.entries_failed++;
        if (p->m_failed) cga_counter_add(p->m_failed, 1);
        if (f.row) {
            /* The row stays in the buffer; the pass starts again from the oldest row. */
            p->drain_failed = 1;
            if (!p->drain_err_logged && !p->closing && !p->quiesced) {
                p->drain_err_logged = 1;
                CGA_LOG(CGA_LOG_WARN, status, "Redis did not accept a buffered entry: the drain "
                        "pauses and retries every second (logged once until one is accepted)");
            }
        } else {
            hold(p, f.eseq, data, len, count);
            outage_begins(p, status);
        }
    }
    schedule(p, 0);
    notify(p);
}

static void on_redis_state(int up, int status, void *arg) {
    ops_producer_t *p = arg;
    (void)status;
    if (up) {
        p->drain_retry_at = 0;
        schedule(p, 0);
    }
}

/* ---- draining ---------------------------------------------------------------------------- */

static void drain_done_log(ops_producer_t *p) {
    if (!p->drain_logged) return;
    p->drain_logged = 0;
    double secs = (double)(cga_clock_wall_us() - p->drain_t0_us) / 1e6;
    uint64_t tasks = p->st.drained_tasks - p->drain_tasks0;
    CGA_LOG(CGA_LOG_INFO, 0, "task buffer drained: %" PRIu64 " tasks sent to %s, %.1f s after "
            "the drain began", tasks, p->qkey, secs);
}

static void delete_accepted(ops_producer_t *p) {
    if (p->ndel == 0) return;
    int rc = cga_buffer_delete(p->buf, p->dels, p->ndel, NULL);
    if (rc == CGA_OK) {
        p->ndel = 0;
        p->del_err_logged = 0;
        return;
    }
    if (!p->del_err_logged && !p->closing) {
        p->del_err_logged = 1;
        CGA_LOG(CGA_LOG_ERROR, 0, "cannot delete %zu rows Redis accepted from the task buffer: "
                "%s; retrying (they are not sent again meanwhile)", p->ndel,
                cga_buffer_errmsg(p->buf));
    }
}

static void give_up_lease(ops_producer_t *p) {
    if (!p->leased) return;
    cga_buffer_drain_unlock(p->buf);
    p->leased = 0;
}

/* Sends rows of the buffer while the window allows; notices when none is left. */
static void drain(ops_producer_t *p) {
    if (p->ndel > 0) {
        delete_accepted(p);
        if (p->ndel > 0) {
            schedule(p, RETRY_MS);
            return;
        }
    }
    if (!p->buffered) return;
    if (p->fly_n > 0 && !p->fly_drained) return;
    uint64_t now = uv_now(p->loop);
    if (p->drain_failed) {
        if (p->fly_n > 0) return;
        p->drain_failed = 0;
        p->drain_after = 0;
        p->drain_probe = 1;
        p->drain_retry_at = now + RETRY_MS;
        give_up_lease(p);
    }
    if (!connected(p)) {
        if (p->fly_n == 0) give_up_lease(p);
        return;
    }
    if (now < p->drain_retry_at) {
        schedule(p, p->drain_retry_at - now);
        return;
    }
    if (!p->leased || now - p->lease_at >= LEASE_MS / 3) {
        int rc = cga_buffer_drain_lock(p->buf, LEASE_MS);
        if (rc != CGA_OK) {
            p->leased = 0;
            if (!p->lease_wait_logged) {
                p->lease_wait_logged = 1;
                CGA_LOG(rc == CGA_ELOCKED ? CGA_LOG_INFO : CGA_LOG_ERROR,
                        rc == CGA_ELOCKED ? 0 : rc, "%s; waiting to drain it",
                        cga_buffer_errmsg(p->buf));
            }
            p->drain_retry_at = now + RETRY_MS;
            schedule(p, RETRY_MS);
            return;
        }
        if (!p->leased) p->drain_after = 0; /* a fresh pass: rows may have gone meanwhile */
        p->leased = 1;
        p->lease_at = now;
        p->lease_wait_logged = 0;
    }
    size_t window = p->drain_probe ? 1 : p->o.max_inflight;
    while (window_open(p, window)) {
        cga_buffer_batch_t *b = NULL;
        int rc = cga_buffer_peek(p->buf, p->qkey, p->drain_after, window - p->fly_n,
                                 DRAIN_PEEK_BYTES, &b);
        if (rc != CGA_OK) {
            if (!p->drain_err_logged) {
                p->drain_err_logged = 1;
                CGA_LOG(CGA_LOG_ERROR, 0, "reading the task buffer failed: %s; retrying",
                        cga_buffer_errmsg(p->buf));
            }
            p->drain_retry_at = now + RETRY_MS;
            schedule(p, RETRY_MS);
            return;
        }
        if (b->n == 0) {
            cga_buffer_batch_free(b);
            if (p->fly_n == 0) {
                /* Nothing of this queue is left: entries go straight to Redis again. */
                p->buffered = 0;
                give_up_lease(p);
                drain_done_log(p);
                maybe_recovered(p);
                notify(p);
            }
            return;
        }
        if (!p->drain_logged) {
            uint64_t e = 0, t = 0;
            cga_buffer_count(p->buf, &e, &t);
            p->drain_logged = 1;
            p->drain_t0_us = cga_clock_wall_us();
            p->drain_tasks0 = p->st.drained_tasks;
            CGA_LOG(CGA_LOG_INFO, 0, "draining the task buffer %s: %" PRIu64 " entries (%" PRIu64
                    " tasks) wait in it", cga_buffer_path(p->buf), e, t);
        }
        size_t sent = 0;
        for (; sent < b->n; sent++) {
            const cga_buffer_entry_t *e = &b->entries[sent];
            if (cga_queue_send_entry(p->q, e->data, e->len, (size_t)e->count) != CGA_OK) break;
            fly_push(p, 0, e->seq, e->len, (size_t)e->count);
            p->drain_after = e->seq;
        }
        int stop = sent < b->n;
        cga_buffer_batch_free(b);
        if (stop) {
            p->drain_retry_at = now + RETRY_MS;
            schedule(p, RETRY_MS);
            return;
        }
    }
}

/* ---- producing --------------------------------------------------------------------------- */

/* The entry being filled is complete (or lingered long enough): to Redis or to the buffer. */
static void emit(ops_producer_t *p) {
    uv_timer_stop(&p->linger);
    size_t count = cga_proto_writer_count(p->w);
    if (count == 0) return;
    const char *data;
    size_t len;
    cga_proto_writer_finish(p->w, &data, &len);
    uint64_t eseq = p->eseq_next++;
    int direct = !p->closing && !p->quiesced && !p->buffered && !p->held_head &&
                 (p->fly_n == 0 || !p->fly_drained) && connected(p);
    if (direct && cga_queue_send_entry(p->q, data, len, count) == CGA_OK) {
        fly_push(p, eseq, 0, len, count);
    } else {
        if (!p->closing && !p->quiesced && !connected(p)) outage_begins(p, 0);
        hold(p, eseq, data, len, count);
        schedule(p, 0); /* stored at the next turn, with whatever else comes in this one */
    }
    cga_proto_writer_reset(p->w);
}

static void on_linger(uv_timer_t *t) {
    ops_producer_t *p = t->data;
    emit(p);
    notify(p);
}

static void on_poll(uv_poll_t *h, int status, int events) {
    ops_producer_t *p = h->data;
    (void)events;
    uv_poll_stop(h);
    p->poll_active = 0;
    if (status < 0) {
        CGA_LOG(CGA_LOG_WARN, status, "polling the input failed; reading it blocking");
        p->poll_failed = 1;
    }
    ops_source_readable(p->o.source);
    schedule(p, 0);
}

static int can_produce(const ops_producer_t *p) {
    return p->active && !p->stopped && !p->st.source_done && p->level != CGA_LEVEL_RED &&
           !p->closing && !p->quiesced;
}

static void pace_reset(ops_producer_t *p) {
    p->pace_t0 = uv_now(p->loop);
    p->pace_n0 = p->bars_taken;
}

/* Bars the pacing allows now; sets *wait_ms when none. Unpaced: unlimited. */
static uint64_t pace_allowance(ops_producer_t *p, uint64_t *wait_ms) {
    *wait_ms = 0;
    if (p->o.bar_rate == 0) return UINT64_MAX;
    unsigned nsym = ops_source_symbols(p->o.source);
    double rate = (double)p->o.bar_rate * (nsym ? nsym : 1); /* bars/s, all symbols */
    if (p->level == CGA_LEVEL_YELLOW) rate /= 2;
    uint64_t elapsed = uv_now(p->loop) - p->pace_t0;
    uint64_t allowed = (uint64_t)((double)elapsed * rate / 1000.0);
    uint64_t taken = p->bars_taken - p->pace_n0;
    if (taken < allowed) return allowed - taken;
    double next_ms = (double)(taken + 1) * 1000.0 / rate;
    uint64_t due = (uint64_t)next_ms + 1;
    *wait_ms = due > elapsed ? due - elapsed : 1;
    return 0;
}

static void bad_row(ops_producer_t *p, const char *what) {
    p->st.bad_rows++;
    if (p->m_bad) cga_counter_add(p->m_bad, 1);
    uint64_t bad = p->st.bad_rows + p->st.too_big;
    if (bad <= p->o.max_bad_logged) CGA_LOG(CGA_LOG_WARN, 0, "bad row, %s", what);
    if (bad == p->o.max_bad_logged + 1)
        CGA_LOG(CGA_LOG_WARN, 0, "more bad rows: counted, not logged one by one");
}

static void too_big(ops_producer_t *p, const cga_task_t *t) {
    p->st.too_big++;
    uint64_t bad = p->st.bad_rows + p->st.too_big;
    if (bad > p->o.max_bad_logged + 1) return;
    if (bad == p->o.max_bad_logged + 1) {
        CGA_LOG(CGA_LOG_WARN, 0, "more bad rows or tasks: counted, not logged one by one");
        return;
    }
    /* Its size: encoded alone without the limit. */
    cga_proto_writer_reset(p->scratch);
    if (cga_proto_write_task(p->scratch, t) == CGA_OK)
        CGA_LOG(CGA_LOG_ERROR, 0, "task %s refused: %zu bytes encoded, over the limit of %zu "
                "bytes (--max-task-bytes, OPS_MAX_TASK_BYTES)", p->idbuf,
                cga_proto_writer_size(p->scratch) - 1, p->o.max_task_bytes);
    else
        CGA_LOG(CGA_LOG_ERROR, 0, "task %s refused: %s (--max-task-bytes %zu)", p->idbuf,
                cga_proto_writer_error(p->w), p->o.max_task_bytes);
    cga_proto_writer_reset(p->scratch);
}

static void push_window(ops_producer_t *p, const char *sym, const cga_bar_t *bars) {
    uint64_t now_us = cga_clock_wall_us();
    p->st.windows++;
    for (size_t i = 0; i < p->o.nlabs; i++) {
        int n = snprintf(p->idbuf, sizeof p->idbuf, "%s/%lld/%s", sym, (long long)bars[0].t,
                         p->o.labs[i]);
        cga_task_t t;
        memset(&t, 0, sizeof t);
        t.id.ptr = p->idbuf;
        t.id.len = n > 0 && (size_t)n < sizeof p->idbuf ? (size_t)n : sizeof p->idbuf - 1;
        t.lab = cga_str(p->o.labs[i]);
        t.symbol = cga_str(sym);
        t.enq_us = now_us;
        t.bars = bars;
        t.nbars = p->o.window;
        int rc = cga_proto_write_task(p->w, &t);
        if (rc == CGA_ETOOBIG && cga_proto_writer_count(p->w) < p->o.batch) {
            too_big(p, &t);
            continue;
        }
        if (rc < 0) {
            p->st.rejected++;
            CGA_LOG(CGA_LOG_ERROR, rc, "task %s refused by the encoder: %s", p->idbuf,
                    cga_proto_writer_error(p->w));
            continue;
        }
        p->st.tasks++;
        p->since_pause++;
        if (p->m_tasks) cga_counter_add(p->m_tasks, 1);
        size_t count = cga_proto_writer_count(p->w);
        if (count >= p->o.batch || cga_proto_writer_size(p->w) >= ENTRY_MAX_BYTES)
            emit(p);
        else if (count == 1)
            uv_timer_start(&p->linger, on_linger, p->linger_ms, 0);
    }
}

/* Room for one more entry: in the Redis window, or in memory on its way to the buffer. */
static int has_room(ops_producer_t *p) {
    if (p->st.held_entries >= p->hold_max) return 0;
    return window_open(p, p->o.max_inflight) || p->fly_drained || p->buffered || !connected(p);
}

static void produce(ops_producer_t *p) {
    if (!can_produce(p)) {
        p->was_producing = 0;
        return;
    }
    if (!has_room(p)) {
        /* a paced source resumes at its rate, without a catch-up burst */
        if (p->st.held_entries >= p->hold_max) p->was_producing = 0;
                return;
    }
    if (!p->was_producing) {
        p->was_producing = 1;
        pace_reset(p);
    }
    size_t budget = CHUNK_TASKS;
    uint64_t wait_ms = 0;
    uint64_t allowance = pace_allowance(p, &wait_ms);
    char err[320];
    for (;;) {
        if (!has_room(p)) {
                        return;
        }
        if (allowance == 0) {
            schedule(p, wait_ms);
            return;
        }
        if (budget == 0) {
            schedule(p, 0);
            return;
        }
        if (p->level == CGA_LEVEL_YELLOW && p->o.bar_rate == 0 && p->since_pause >= p->o.batch) {
            p->since_pause = 0;
            schedule(p, YELLOW_PAUSE_MS); /* the partial entry leaves by its linger */
            return;
        }
        if (p->poll_failed) ops_source_readable(p->o.source);
        ops_row_t row;
        int rc = ops_source_next(p->o.source, &row, err, sizeof err);
        if (rc == OPS_SOURCE_ROW) {
            p->bars_taken++;
            if (allowance != UINT64_MAX) allowance--;
            const cga_bar_t *bars;
            const char *sym;
            int w = ops_cutter_push(p->cutter, row.symbol, row.symlen, &row.bar, &bars, &sym);
            if (w < 0) {
                char what[400];
                snprintf(what, sizeof what, "line %llu: timestamp %lld is not after the "
                         "previous bar of %s (%lld)",
                         (unsigned long long)ops_source_lines(p->o.source),
                         (long long)row.bar.t, row.symbol,
                         (long long)ops_cutter_last_t(p->cutter, row.symbol, row.symlen));
                bad_row(p, what);
            } else {
                p->st.rows++;
                if (w == 1) {
                    push_window(p, sym, bars);
                    budget = budget > p->o.nlabs ? budget - p->o.nlabs : 0;
                }
            }
            continue;
        }
        if (rc == OPS_SOURCE_BAD) {
            bad_row(p, err);
            continue;
        }
        if (rc == OPS_SOURCE_AGAIN) {
            emit(p);
            if (!p->poll_active) {
                int prc = uv_poll_start(&p->poll, UV_READABLE, on_poll);
                if (prc < 0) {
                    CGA_LOG(CGA_LOG_WARN, prc, "polling the input failed; reading it blocking");
                    p->poll_failed = 1;
                    schedule(p, 0);
                    return;
                }
                p->poll_active = 1;
            }
            return;
        }
        /* EOF or a read error: the source is done. */
        if (rc < 0) {
            CGA_LOG(CGA_LOG_ERROR, rc, "reading the source failed: %s", err);
            p->st.source_error = 1;
        }
        p->st.source_done = 1;
        emit(p);
        notify(p);
        return;
    }
}

static void pump(ops_producer_t *p) {
    if (p->closing || p->quiesced) return;
    store_held(p, 0);
    drain(p);
    produce(p);
    store_held(p, 0); /* what this turn produced while entries go to the buffer */
    if (p->held_head && p->st.store_failing) schedule(p, RETRY_MS);
    update_gauges(p, 0);
}

/* ---- life cycle -------------------------------------------------------------------------- */

int ops_producer_create(ops_producer_t **out, uv_loop_t *loop, cga_redis_t *redis,
                        cga_queue_t *q, cga_buffer_t *buffer, cga_metrics_t *metrics,
                        const ops_producer_opts_t *o) {
    *out = NULL;
    if (!o->source || o->window == 0 || o->step == 0 || o->nlabs == 0 || !buffer || !q)
        return CGA_EINVAL;
    ops_producer_t *p = cga_calloc(1, sizeof *p);
    p->loop = loop;
    p->redis = redis;
    p->q = q;
    p->buf = buffer;
    snprintf(p->qkey, sizeof p->qkey, "%s", cga_queue_key(q));
    p->o = *o;
    if (p->o.max_inflight == 0) p->o.max_inflight = 64;
    if (p->o.max_inflight_bytes == 0) p->o.max_inflight_bytes = 512 * 1024;
    if (p->o.batch == 0) p->o.batch = 32;
    if (p->o.max_bad_logged == 0) p->o.max_bad_logged = 100;
    if (p->o.max_task_bytes == 0) p->o.max_task_bytes = 1u << 20;
    p->linger_ms = ((uint64_t)p->o.linger_us + 500) / 1000;
    p->hold_max = p->o.max_inflight > HOLD_MIN ? p->o.max_inflight : HOLD_MIN;
    p->level = CGA_LEVEL_GREEN;
    p->eseq_next = 1;
    cga_proto_limits_t lim;
    cga_proto_limits_init(&lim);
    lim.max_message_bytes = p->o.max_task_bytes;
    if (lim.max_batch < p->o.batch) lim.max_batch = p->o.batch;
    int rc = ops_cutter_create(&p->cutter, o->window, o->step);
    if (rc == CGA_OK) rc = cga_proto_writer_create(&p->w, &lim);
    lim.max_message_bytes = SIZE_MAX / 4;
    if (rc == CGA_OK) rc = cga_proto_writer_create(&p->scratch, &lim);
    if (rc == CGA_OK) rc = cga_redis_on_state(redis, on_redis_state, p);
    if (rc != CGA_OK) {
        cga_proto_writer_free(p->scratch);
        cga_proto_writer_free(p->w);
        ops_cutter_free(p->cutter);
        free(p);
        return rc;
    }
    p->state_listening = 1;
    uv_timer_init(loop, &p->timer);
    uv_timer_init(loop, &p->linger);
    p->timer.data = p->linger.data = p;
    p->handles_open = 2;
    int fd = ops_source_poll_fd(o->source);
    if (fd >= 0) {
        rc = uv_poll_init(loop, &p->poll, fd);
        if (rc == 0) {
            p->poll.data = p;
            p->poll_init = 1;
            p->handles_open++;
        } else {
            p->poll_failed = 1;
        }
    }
    if (metrics) {
        p->m_tasks = cga_metrics_counter(metrics, "cgalpha_ops_tasks_produced_total",
                                         "Tasks encoded for the analysis queue", NULL);
        p->m_tasks_ok = cga_metrics_counter(metrics, "cgalpha_ops_tasks_accepted_total",
                                            "Tasks in entries Redis accepted", NULL);
        p->m_entries = cga_metrics_counter(metrics, "cgalpha_ops_entries_sent_total",
                                           "Entries Redis accepted", NULL);
        p->m_failed = cga_metrics_counter(metrics, "cgalpha_ops_entry_failures_total",
                                          "Entry sends Redis did not accept", NULL);
        p->m_bad = cga_metrics_counter(metrics, "cgalpha_ops_bad_rows_total",
                                       "Input rows refused", NULL);
        p->m_buffered = cga_metrics_counter(metrics, "cgalpha_ops_buffered_tasks_total",
                                            "Tasks written to the task buffer", NULL);
        p->m_drained = cga_metrics_counter(metrics, "cgalpha_ops_drained_tasks_total",
                                           "Tasks sent from the task buffer and accepted", NULL);
        p->m_store_err = cga_metrics_counter(metrics, "cgalpha_ops_buffer_errors_total",
                                             "Appends the task buffer refused", NULL);
        p->m_held = cga_metrics_gauge(metrics, "cgalpha_ops_held_entries",
                                      "Entries in memory, neither in Redis nor in the buffer",
                                      NULL);
        p->m_buf_entries = cga_metrics_gauge(metrics, "cgalpha_ops_buffer_entries",
                                             "Entries waiting in the task buffer", NULL);
        p->m_buf_tasks = cga_metrics_gauge(metrics, "cgalpha_ops_buffer_tasks",
                                           "Tasks waiting in the task buffer", NULL);
    }
    cga_queue_on_sent(q, on_sent, p);

    /* Rows left by an earlier run go first. */
    cga_buffer_batch_t *b = NULL;
    rc = cga_buffer_peek(buffer, p->qkey, 0, 1, 0, &b);
    if (rc != CGA_OK || b->n > 0) {
        p->buffered = 1; /* unreadable: assume rows; the drain reports the error */
        cga_buffer_stats_t *s = NULL;
        if (rc == CGA_OK && cga_buffer_stats(buffer, &s) == CGA_OK) {
            for (size_t i = 0; i < s->nqueues; i++) {
                const cga_buffer_queue_stats_t *qs = &s->queues[i];
                if (strcmp(qs->queue, p->qkey) != 0) continue;
                CGA_LOG(CGA_LOG_INFO, 0, "the task buffer %s holds %" PRIu64 " entries (%" PRIu64
                        " tasks, %s .. %s) from an earlier run: they go to Redis before any new "
                        "task", cga_buffer_path(buffer), qs->entries, qs->tasks, qs->first_id,
                        qs->last_id);
            }
        }
        cga_buffer_stats_free(s);
    }
    cga_buffer_batch_free(b);
    update_gauges(p, 1);
    schedule(p, 0);
    *out = p;
    return CGA_OK;
}

void ops_producer_quiesce(ops_producer_t *p) {
    p->quiesced = 1;
    uv_timer_stop(&p->timer);
    if (p->poll_active) {
        uv_poll_stop(&p->poll);
        p->poll_active = 0;
    }
}

uint64_t ops_producer_finish(ops_producer_t *p) {
    p->quiesced = 1;
    emit(p); /* the partial entry: held (nothing is sent any more) */
    if (p->fly_n > 0) {
        /* The queue reports every outcome before it closes; anything left is unknown. */
        CGA_LOG(CGA_LOG_DEBUG, 0, "%zu entries in flight without an outcome", p->fly_n);
        p->fly_n = 0;
        p->fly_bytes = 0;
    }
    store_held(p, 1);
    delete_accepted(p);
    give_up_lease(p);
    uint64_t lost = p->st.held_tasks;
    if (lost > 0)
        CGA_LOG(CGA_LOG_ERROR, 0, "%" PRIu64 " tasks (%zu entries) could be stored neither in "
                "Redis nor in the task buffer (%s): they are lost", lost, p->st.held_entries,
                cga_buffer_errmsg(p->buf));
    update_gauges(p, 1);
    return lost;
}

static void on_handle_closed(uv_handle_t *h) {
    ops_producer_t *p = h->data;
    if (--p->handles_open > 0) return;
    free_held(p);
    free(p->fly);
    free(p->dels);
    cga_proto_writer_free(p->w);
    cga_proto_writer_free(p->scratch);
    ops_cutter_free(p->cutter);
    void (*done)(void *) = p->done;
    void *arg = p->done_arg;
    free(p);
    if (done) done(arg);
}

void ops_producer_close(ops_producer_t *p, void (*done)(void *arg), void *arg) {
    if (!p) {
        if (done) done(arg);
        return;
    }
    p->closing = 1;
    p->done = done;
    p->done_arg = arg;
    if (p->state_listening) cga_redis_off_state(p->redis, on_redis_state, p);
    p->state_listening = 0;
    uv_close((uv_handle_t *)&p->timer, on_handle_closed);
    uv_close((uv_handle_t *)&p->linger, on_handle_closed);
    if (p->poll_init) uv_close((uv_handle_t *)&p->poll, on_handle_closed);
}

void ops_producer_set_active(ops_producer_t *p, int active) {
    p->active = active;
    if (!active) emit(p);
    schedule(p, 0);
}

void ops_producer_set_level(ops_producer_t *p, cga_level_t level) {
    if (level == p->level) return;
    p->level = level;
    p->since_pause = 0;
    pace_reset(p);
    schedule(p, 0);
}

void ops_producer_stop(ops_producer_t *p) {
    p->stopped = 1;
    if (p->poll_active) {
        uv_poll_stop(&p->poll);
        p->poll_active = 0;
    }
    emit(p);
    schedule(p, 0);
}

int ops_producer_is_settled(const ops_producer_t *p) {
    return !p->held_head && p->fly_n == 0 && p->ndel == 0 && cga_proto_writer_count(p->w) == 0;
}

int ops_producer_is_idle(const ops_producer_t *p) {
    return ops_producer_is_settled(p) && !p->buffered;
}

double ops_producer_tasks_per_entry(const ops_producer_t *p) {
    return p->st.entries_ok ? (double)p->st.tasks_ok / (double)p->st.entries_ok : 0.0;
}

void ops_producer_stats(const ops_producer_t *p, ops_producer_stats_t *s) {
    *s = p->st;
    s->buffer_pending = p->buffered;
}

void ops_producer_on_change(ops_producer_t *p, void (*cb)(void *arg), void *arg) {
    p->change_cb = cb;
    p->change_arg = arg;
}

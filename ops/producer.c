#define CGA_LOG_COMPONENT "producer"
#include "producer.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cgalpha/alloc.h"
#include "cgalpha/clock.h"
#include "cgalpha/err.h"
#include "cgalpha/log.h"
#include "cgalpha/metrics.h"
#include "cgalpha/queue.h"
#include "cgalpha/redis.h"
#include "window.h"

#define CHUNK_TASKS 1024        /* tasks per loop turn at most */
#define RETRY_MS 1000           /* between re-send attempts while Redis keeps failing */
#define RECHECK_MS 100          /* how often a kept list waits for the connection */
#define YELLOW_PAUSE_MS 10      /* unpaced source at yellow: pause after each batch */

typedef struct kept_s {
    struct kept_s *next;
    size_t len, count;
    char data[];
} kept_t;

struct ops_producer_s {
    uv_loop_t *loop;
    cga_redis_t *redis;
    cga_queue_t *q;
    ops_producer_opts_t o;
    ops_cutter_t *cutter;
    uv_timer_t timer;
    uv_poll_t poll;
    int poll_init, poll_active, poll_failed;
    int handles_open;
    int closing;
    void (*done)(void *);
    void *done_arg;
    void (*change_cb)(void *);
    void *change_arg;

    int active, stopped;
    cga_level_t level;
    int waiting_inflight;
    size_t since_pause;            /* tasks since the last yellow pause */
    uint64_t pace_t0;              /* pacing origin (loop ms) and bars taken then */
    uint64_t pace_n0;
    uint64_t bars_taken;
    int was_producing;

    kept_t *kept_head, *kept_tail;
    uint64_t retry_at;             /* loop ms before which kept entries are not re-sent */
    int outage;
    uint64_t outage_failed;        /* failed sends during this outage */
    ops_producer_stats_t st;

    char idbuf[256];

    cga_counter_t *m_tasks, *m_entries, *m_failed, *m_bad, *m_tasks_ok;
    cga_gauge_t *m_kept;
};

static void pump(ops_producer_t *p);

static void notify(ops_producer_t *p) {
    if (p->change_cb && !p->closing) p->change_cb(p->change_arg);
}

static void on_timer(uv_timer_t *t) {
    pump(t->data);
}

static void schedule(ops_producer_t *p, uint64_t ms) {
    if (p->closing) return;
    uv_timer_start(&p->timer, on_timer, ms, 0);
}

static size_t inflight(const ops_producer_t *p) {
    return cga_queue_entries_in_flight(p->q);
}

static void keep(ops_producer_t *p, const char *data, size_t len, size_t count) {
    kept_t *k = cga_malloc(sizeof *k + len);
    k->next = NULL;
    k->len = len;
    k->count = count;
    memcpy(k->data, data, len);
    if (p->kept_tail)
        p->kept_tail->next = k;
    else
        p->kept_head = k;
    p->kept_tail = k;
    p->st.kept_entries++;
    p->st.kept_tasks += count;
    if (p->m_kept) cga_gauge_set(p->m_kept, (double)p->st.kept_entries);
}

static void on_sent(int status, const char *entry_id, const char *data, size_t len, size_t count,
                    void *arg) {
    ops_producer_t *p = arg;
    (void)entry_id;
    if (status == CGA_OK) {
        p->st.entries_ok++;
        p->st.tasks_ok += count;
        if (p->m_entries) cga_counter_add(p->m_entries, 1);
        if (p->m_tasks_ok) cga_counter_add(p->m_tasks_ok, count);
        if (p->outage && !p->kept_head && !p->closing) {
            p->outage = 0;
            CGA_LOG(CGA_LOG_INFO, 0, "Redis accepts entries again; every kept entry was re-sent "
                    "(%" PRIu64 " failed sends during the outage)", p->outage_failed);
        }
    } else {
        p->st.entries_failed++;
        if (p->m_failed) cga_counter_add(p->m_failed, 1);
        keep(p, data, len, count);
        p->retry_at = uv_now(p->loop) + RETRY_MS;
        p->outage_failed++;
        if (!p->outage && !p->closing) {
            p->outage = 1;
            CGA_LOG(CGA_LOG_WARN, status, "could not add an entry of %zu tasks to %s: keeping "
                    "failed entries in memory and re-sending them when Redis is back (logged "
                    "once per outage)", count, cga_queue_key(p->q));
        }
    }
    if (!p->closing && !uv_is_active((uv_handle_t *)&p->timer)) {
        if (p->kept_head)
            schedule(p, RETRY_MS);
        else if (p->waiting_inflight && inflight(p) < p->o.max_inflight)
            schedule(p, 0);
    }
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
           !p->closing;
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
        int rc = cga_queue_push_task(p->q, &t);
        if (rc < 0) {
            p->st.rejected++;
            CGA_LOG(CGA_LOG_ERROR, rc, "task %s refused by the encoder", p->idbuf);
            continue;
        }
        p->st.tasks++;
        p->since_pause++;
        if (p->m_tasks) cga_counter_add(p->m_tasks, 1);
    }
}

static void bad_row(ops_producer_t *p, const char *what) {
    p->st.bad_rows++;
    if (p->m_bad) cga_counter_add(p->m_bad, 1);
    if (p->st.bad_rows <= p->o.max_bad_logged)
        CGA_LOG(CGA_LOG_WARN, 0, "bad row, %s", what);
    if (p->st.bad_rows == p->o.max_bad_logged + 1)
        CGA_LOG(CGA_LOG_WARN, 0, "more bad rows: counted, not logged one by one");
}

/* Re-sends kept entries. Returns 1 when production must wait (entries still kept). */
static int resend(ops_producer_t *p) {
    if (!p->kept_head) return 0;
    uint64_t now = uv_now(p->loop);
    while (p->kept_head && inflight(p) < p->o.max_inflight) {
        if (!cga_redis_is_connected(p->redis) || now < p->retry_at) {
            uint64_t wait = now < p->retry_at ? p->retry_at - now : RECHECK_MS;
            schedule(p, wait < RECHECK_MS ? wait : RECHECK_MS);
            return 1;
        }
        kept_t *k = p->kept_head;
        int rc = cga_queue_send_entry(p->q, k->data, k->len, k->count);
        if (rc < 0) {
            p->retry_at = now + RETRY_MS;
            schedule(p, RETRY_MS);
            return 1;
        }
        p->kept_head = k->next;
        if (!p->kept_head) p->kept_tail = NULL;
        p->st.kept_entries--;
        p->st.kept_tasks -= k->count;
        free(k);
    }
    if (p->m_kept) cga_gauge_set(p->m_kept, (double)p->st.kept_entries);
    if (p->kept_head) p->waiting_inflight = 1;
    return p->kept_head != NULL;
}

static void pump(ops_producer_t *p) {
    if (p->closing) return;
    p->waiting_inflight = 0;
    if (resend(p)) {
        p->was_producing = 0; /* a paced source resumes at its rate, without a catch-up burst */
        return;
    }
    if (!can_produce(p)) {
        p->was_producing = 0;
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
        if (inflight(p) >= p->o.max_inflight) {
            p->waiting_inflight = 1;
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
            cga_queue_flush(p->q);
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
        cga_queue_flush(p->q);
        notify(p);
        return;
    }
}

int ops_producer_create(ops_producer_t **out, uv_loop_t *loop, cga_redis_t *redis,
                        cga_queue_t *q, cga_metrics_t *metrics, const ops_producer_opts_t *o) {
    *out = NULL;
    if (!o->source || o->window == 0 || o->step == 0 || o->nlabs == 0) return CGA_EINVAL;
    ops_producer_t *p = cga_calloc(1, sizeof *p);
    p->loop = loop;
    p->redis = redis;
    p->q = q;
    p->o = *o;
    if (p->o.max_inflight == 0) p->o.max_inflight = 64;
    if (p->o.batch == 0) p->o.batch = 32;
    if (p->o.max_bad_logged == 0) p->o.max_bad_logged = 100;
    p->level = CGA_LEVEL_GREEN;
    int rc = ops_cutter_create(&p->cutter, o->window, o->step);
    if (rc < 0) {
        free(p);
        return rc;
    }
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    p->handles_open = 1;
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
                                         "Tasks pushed to the analysis queue", NULL);
        p->m_tasks_ok = cga_metrics_counter(metrics, "cgalpha_ops_tasks_accepted_total",
                                            "Tasks in entries Redis accepted", NULL);
        p->m_entries = cga_metrics_counter(metrics, "cgalpha_ops_entries_sent_total",
                                           "Entries Redis accepted", NULL);
        p->m_failed = cga_metrics_counter(metrics, "cgalpha_ops_entry_failures_total",
                                          "Entry sends that failed (kept and re-sent)", NULL);
        p->m_bad = cga_metrics_counter(metrics, "cgalpha_ops_bad_rows_total",
                                       "Input rows refused", NULL);
        p->m_kept = cga_metrics_gauge(metrics, "cgalpha_ops_kept_entries",
                                      "Entries kept in memory for a re-send", NULL);
    }
    cga_queue_on_sent(q, on_sent, p);
    *out = p;
    return CGA_OK;
}

static void on_handle_closed(uv_handle_t *h) {
    ops_producer_t *p = h->data;
    if (--p->handles_open > 0) return;
    kept_t *k = p->kept_head;
    while (k) {
        kept_t *next = k->next;
        free(k);
        k = next;
    }
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
    uv_close((uv_handle_t *)&p->timer, on_handle_closed);
    if (p->poll_init) uv_close((uv_handle_t *)&p->poll, on_handle_closed);
}

void ops_producer_set_active(ops_producer_t *p, int active) {
    p->active = active;
    if (!active) cga_queue_flush(p->q);
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
    cga_queue_flush(p->q);
    schedule(p, 0);
}

int ops_producer_is_idle(const ops_producer_t *p) {
    return !p->kept_head && cga_queue_entries_in_flight(p->q) == 0 &&
           cga_queue_messages_pending(p->q) == 0;
}

double ops_producer_tasks_per_entry(const ops_producer_t *p) {
    return p->st.entries_ok ? (double)p->st.tasks_ok / (double)p->st.entries_ok : 0.0;
}

void ops_producer_stats(const ops_producer_t *p, ops_producer_stats_t *s) {
    *s = p->st;
}

void ops_producer_on_change(ops_producer_t *p, void (*cb)(void *arg), void *arg) {
    p->change_cb = cb;
    p->change_arg = arg;
}

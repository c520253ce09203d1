/* `run` and `enqueue`: the producer, with the coordinator (run) or the semaphore follower
 * (enqueue), the lock and the graceful stop. */
#define CGA_LOG_COMPONENT "ops"
#include <errno.h>
#include <signal.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "cgalpha/alloc.h"
#include "cgalpha/app.h"
#include "cgalpha/buffer.h"
#include "cgalpha/clock.h"
#include "cgalpha/config.h"
#include "cgalpha/err.h"
#include "cgalpha/keys.h"
#include "cgalpha/lock.h"
#include "cgalpha/log.h"
#include "cgalpha/metrics.h"
#include "cgalpha/queue.h"
#include "cgalpha/redis.h"
#include "cgalpha/state.h"
#include "coord.h"
#include "dashboard.h"
#include "ops.h"
#include "producer.h"
#include "progress.h"
#include "source.h"

#define TICK_MS 200

typedef struct prod_s {
    cga_app_t *app;
    uv_loop_t *loop;
    cga_redis_t *redis;
    const cga_config_t *cfg;
    const char *ns;
    const char *cmd;
    int is_run;
    char **labs;
    size_t nlabs;
    ops_source_t *src;
    FILE *truth;
    char *truth_path;
    cga_queue_t *qa, *qr;
    cga_buffer_t *buffer;
    cga_state_t *state;
    cga_metrics_t *metrics;
    cga_lock_t *lock;
    ops_producer_t *prod;
    ops_coord_t *coord;
    ops_dashboard_t *dash; /* run with an HTTP port: the page at / and /api/snapshot */
    uv_timer_t check, tick;
    int timers_open;
    int exit_when_done;
    int stopping;
    int finished;
    int active;
    int done_logged;
    int store_stop;      /* enqueue: stopped because neither Redis nor the buffer took tasks */
    uint64_t grace_ms;
    uint64_t grace_deadline;
    uint64_t t0_us;
    int show_progress;
    int progress_shown;
    unsigned closes;
    char lockkey[CGA_KEY_MAX];
    char qkey[CGA_KEY_MAX];  /* the analysis queue's key: its rows in the buffer */
} prod_t;

/* "127.0.0.1:6379", "[::1]:6379" or "unix:/path" (db N), as configured. */
static void describe_redis(const cga_config_t *cfg, char *out, size_t n) {
    cga_redis_opts_t o;
    char err[256];
    if (cga_config_redis_opts(cfg, &o, err, sizeof err) != CGA_OK) {
        snprintf(out, n, "Redis");
        return;
    }
    if (o.unix_path)
        snprintf(out, n, "unix:%s", o.unix_path);
    else if (o.host && strchr(o.host, ':'))
        snprintf(out, n, "[%s]:%d", o.host, o.port);
    else
        snprintf(out, n, "%s:%d", o.host ? o.host : "127.0.0.1", o.port);
    if (o.db) snprintf(out + strlen(out), n - strlen(out), " db %d", o.db);
}

int ops_connect(cga_app_t *a, const char *command) {
    /* `run` is a service: Redis absent at start is an outage like any other, so it waits for
     * it (a wrong password still ends it at once); the one-shot tools give up after the
     * connect timeout, with one line on stderr (the connection's own log lines are held back
     * at the default log level, so that the line stands alone). */
    const cga_config_t *cfg = cga_app_config(a);
    int64_t t = cga_config_int(cfg, "REDIS_CONNECT_TIMEOUT_MS");
    int service = strcmp(command, "run") == 0;
    int level = cga_log_level_current;
    int quiet = !service && level >= CGA_LOG_WARN;
    if (quiet) cga_log_set_level(CGA_LOG_OFF);
    int rc = cga_app_wait_connected(a, service ? 0 : (unsigned)t);
    if (quiet) cga_log_set_level(level);
    if (rc == CGA_OK) return -1;
    int code = cga_app_exit_code(rc);
    if (rc == CGA_ECANCELED) return code;
    if (!quiet && level <= CGA_LOG_ERROR) return code; /* the connection logged it */
    char where[320];
    describe_redis(cfg, where, sizeof where);
    if (rc == CGA_EAUTH)
        ops_error(command, "cannot connect to %s: authentication failed (check REDIS_PASSWORD, "
                  "REDIS_USERNAME or REDIS_URL)", where);
    else if (rc == CGA_ESELECT)
        ops_error(command, "cannot connect to %s: the database index was rejected (check "
                  "REDIS_DB or REDIS_URL, and 'databases' in redis.conf)", where);
    else
        ops_error(command, "cannot connect to %s: %s (gave up after %lld ms)", where,
                  cga_strerror(rc), (long long)t);
    return code;
}

/* Opens the task buffer (OPS_BUFFER_PATH) read-write: exit code 1 with one line when it cannot
 * be used, -1 when open. */
int ops_open_buffer(const cga_config_t *cfg, const char *command, uint64_t max_bytes,
                    cga_buffer_t **out) {
    cga_buffer_opts_t bo;
    cga_buffer_opts_init(&bo);
    bo.max_bytes = max_bytes;
    char err[1024];
    int rc = cga_buffer_open(out, cga_config_str(cfg, "OPS_BUFFER_PATH"), &bo, err, sizeof err);
    if (rc == CGA_OK) return -1;
    ops_error(command, "%s (OPS_BUFFER_PATH / --buffer-path)", err);
    return CGA_EXIT_FAILURE;
}

static void split_labs(prod_t *p) {
    size_t n = 0;
    const char *const *items = cga_config_list(p->cfg, "OPS_LABS", &n);
    for (size_t i = 0; i < n; i++) {
        const char *s = items[i];
        while (*s) {
            const char *e = strchr(s, ',');
            size_t len = e ? (size_t)(e - s) : strlen(s);
            if (len > 0) {
                int dup = 0;
                for (size_t k = 0; k < p->nlabs; k++)
                    if (strlen(p->labs[k]) == len && memcmp(p->labs[k], s, len) == 0) dup = 1;
                if (!dup) {
                    p->labs = cga_realloc(p->labs, (p->nlabs + 1) * sizeof *p->labs);
                    p->labs[p->nlabs++] = cga_strndup(s, len);
                }
            }
            s += len;
            if (*s == ',') s++;
        }
    }
}

static void on_check(uv_timer_t *t);

static void kick(prod_t *p) {
    if (p->timers_open && !p->finished) uv_timer_start(&p->check, on_check, 0, 0);
}

static void on_change(void *arg) {
    kick(arg);
}

static void finish(prod_t *p) {
    if (p->finished) return;
    p->finished = 1;
    cga_app_stop(p->app);
}

static void clear_progress(prod_t *p) {
    if (p->progress_shown) {
        fputs("\r\033[K", stderr);
        p->progress_shown = 0;
    }
}

static void begin_stop(prod_t *p, const char *why) {
    p->stopping = 1;
    p->grace_deadline = uv_now(p->loop) + p->grace_ms;
    clear_progress(p);
    CGA_LOG(CGA_LOG_INFO, 0, "%s: stopping; waiting up to %" PRIu64 " ms for Redis (or the task "
            "buffer) to take what was produced", why, p->grace_ms);
    ops_producer_stop(p->prod);
    if (p->coord) ops_coord_stop(p->coord);
    kick(p);
}

static void evaluate(prod_t *p) {
    if (p->finished) return;
    ops_producer_stats_t st;
    ops_producer_stats(p->prod, &st);
    if (st.source_done && !p->done_logged) {
        p->done_logged = 1;
        int lvl = p->is_run ? CGA_LOG_INFO : CGA_LOG_DEBUG;
        CGA_LOG(lvl, 0, "source exhausted: %" PRIu64 " rows (%" PRIu64 " bad), %" PRIu64
                " tasks produced%s", st.rows, st.bad_rows, st.tasks,
                p->is_run && !p->exit_when_done && !p->stopping
                    ? "; running as coordinator until SIGINT/SIGTERM" : "");
    }
    int idle = ops_producer_is_idle(p->prod);
    if (p->stopping) {
        /* Everything in Redis; or in Redis and the buffer while Redis is away; or the grace
         * period is over (what is left goes to the buffer at the end). */
        if (idle || (ops_producer_is_settled(p->prod) && !cga_redis_is_connected(p->redis)) ||
            uv_now(p->loop) >= p->grace_deadline)
            finish(p);
        return;
    }
    if (!p->is_run && st.store_failing) {
        /* enqueue: the buffer refuses entries Redis did not take: stop producing, retry both for
         * the grace period, then report what could not be stored. */
        p->store_stop = 1;
        begin_stop(p, "the task buffer refuses entries that Redis did not take");
        return;
    }
    if (st.source_done && (!p->is_run || p->exit_when_done) && idle) finish(p);
}

static void on_check(uv_timer_t *t) {
    evaluate(t->data);
}

static void on_tick(uv_timer_t *t) {
    prod_t *p = t->data;
    evaluate(p);
    if (p->show_progress && !p->finished) {
        ops_producer_stats_t st;
        ops_producer_stats(p->prod, &st);
        uint64_t done, total;
        ops_source_progress(p->src, &done, &total);
        char line[160];
        double secs = (double)(cga_clock_wall_us() - p->t0_us) / 1e6;
        ops_progress_format(line, sizeof line, done, total, st.tasks_ok, secs);
        fprintf(stderr, "\r%s\033[K", line);
        p->progress_shown = 1;
    }
}

static void on_signal(int signum, void *arg) {
    prod_t *p = arg;
    if (p->stopping || p->finished) return;
    begin_stop(p, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

/* ---- the lock (run) ---------------------------------------------------------------------- */

static void become_active(prod_t *p) {
    p->active = 1;
    ops_producer_set_active(p->prod, 1);
    ops_coord_start(p->coord);
}

static void on_campaign(int status, int acquired, void *arg);

static void campaign(prod_t *p) {
    int64_t ttl = cga_config_int(p->cfg, "OPS_LOCK_TTL_MS");
    unsigned retry = (unsigned)(ttl / 10);
    if (retry < 100) retry = 100;
    if (retry > 1000) retry = 1000;
    int rc = cga_lock_campaign(p->lock, retry, on_campaign, p);
    if (rc < 0 && rc != CGA_EEXIST)
        CGA_LOG(CGA_LOG_ERROR, rc, "cannot campaign for %s", p->lockkey);
}

static void on_campaign(int status, int acquired, void *arg) {
    prod_t *p = arg;
    (void)status;
    if (!acquired || p->stopping || p->finished) return;
    CGA_LOG(CGA_LOG_INFO, 0, "took over %s: active (producing and coordinating)", p->lockkey);
    become_active(p);
}

static void on_first_attempt(int status, int acquired, void *arg) {
    prod_t *p = arg;
    if (status == CGA_ECANCELED || p->stopping || p->finished) return;
    if (acquired) {
        CGA_LOG(CGA_LOG_INFO, 0, "holding %s: active (producing and coordinating)", p->lockkey);
        become_active(p);
        return;
    }
    if (status == CGA_OK)
        CGA_LOG(CGA_LOG_INFO, 0, "another ops instance holds %s: standing by (taking over "
                "within the lock TTL if it goes)", p->lockkey);
    else
        CGA_LOG(CGA_LOG_WARN, status, "could not ask for %s: standing by", p->lockkey);
    campaign(p);
}

static void on_lost(void *arg) {
    prod_t *p = arg;
    if (p->stopping || p->finished) return;
    CGA_LOG(CGA_LOG_WARN, 0, "lost %s: production stopped, standing by", p->lockkey);
    p->active = 0;
    ops_producer_set_active(p->prod, 0);
    ops_coord_stop(p->coord);
    campaign(p);
}

/* ---- setup and teardown ------------------------------------------------------------------ */

static void on_level(cga_level_t level, void *arg) {
    prod_t *p = arg;
    ops_producer_set_level(p->prod, level);
}

static void on_write(int status, void *arg) {
    prod_t *p = arg;
    if (p->coord) ops_coord_note_write(p->coord, status);
}

static double tasks_per_entry(void *arg) {
    prod_t *p = arg;
    return ops_producer_tasks_per_entry(p->prod);
}

static void on_group(int status, void *arg) {
    const char *name = arg;
    if (status < 0 && status != CGA_ECANCELED)
        CGA_LOG(CGA_LOG_WARN, status, "could not create the consumer group of queue %s", name);
}

static void on_closed(void *arg) {
    prod_t *p = arg;
    p->closes--;
}

static void on_timer_closed(uv_handle_t *h) {
    prod_t *p = h->data;
    p->closes--;
}

static int make_queue(prod_t *p, cga_queue_t **q, const char *name, const char *group) {
    cga_queue_opts_t o;
    cga_queue_opts_init(&o);
    o.ns = p->ns;
    o.name = name;
    o.group = group;
    o.batch_max = (size_t)cga_config_int(p->cfg, "OPS_BATCH");
    o.linger_us = (unsigned)cga_config_int(p->cfg, "OPS_LINGER_US");
    /* Nothing waits for Redis in the connection's queue: while it is down entries go to the
     * task buffer at once, and coordinator rounds fail fast. */
    o.redis_flags = CGA_REDIS_FAILFAST;
    int64_t ct = cga_config_int(p->cfg, "REDIS_COMMAND_TIMEOUT_MS");
    if (ct > 0) o.command_timeout_ms = (unsigned)ct;
    int rc = cga_queue_create(q, p->loop, p->redis, &o);
    if (rc < 0) {
        ops_error(p->cmd, "cannot create queue %s: %s", name, cga_strerror(rc));
        return rc;
    }
    rc = cga_queue_ensure_group(*q, on_group, (void *)name);
    if (rc < 0) on_group(rc, (void *)name);
    return CGA_OK;
}

static int open_source(prod_t *p) {
    const char *spec = cga_config_str(p->cfg, "OPS_SOURCE");
    int synthetic = spec && strcmp(spec, "synthetic") == 0;
    const char *truth = cga_config_str(p->cfg, "OPS_TRUTH_OUT");
    if (!synthetic && cga_config_int(p->cfg, "OPS_BAR_RATE") > 0) {
        ops_error(p->cmd, "OPS_BAR_RATE: --bar-rate applies to --source synthetic only");
        return CGA_EXIT_USAGE;
    }
    if (truth && *truth) {
        if (!synthetic) {
            ops_error(p->cmd, "OPS_TRUTH_OUT: --truth-out applies to --source synthetic only");
            return CGA_EXIT_USAGE;
        }
        p->truth = fopen(truth, "w");
        if (!p->truth) {
            ops_error(p->cmd, "cannot write the truth file %s: %s", truth, strerror(errno));
            return CGA_EXIT_USAGE;
        }
        p->truth_path = cga_strdup(truth);
    }
    ops_source_opts_t so = {
        .spec = spec,
        .seed = (uint64_t)cga_config_int(p->cfg, "OPS_SEED"),
        .symbols = (unsigned)cga_config_int(p->cfg, "OPS_SYMBOLS"),
        .bars = (uint64_t)cga_config_int(p->cfg, "OPS_BARS"),
        .t0_ms = cga_config_int(p->cfg, "OPS_START_MS"),
        .truth = p->truth,
    };
    char err[512];
    int rc = ops_source_open(&p->src, &so, err, sizeof err);
    if (rc < 0) {
        ops_error(p->cmd, "%s", err);
        return CGA_EXIT_USAGE;
    }
    return -1;
}

static void print_summary(prod_t *p, const ops_producer_stats_t *st, uint64_t lost,
                          uint64_t left) {
    double secs = (double)(cga_clock_wall_us() - p->t0_us) / 1e6;
    double rate = secs > 0 ? (double)st->tasks_ok / secs : 0;
    printf("enqueued %" PRIu64 " tasks in %" PRIu64 " entries in %.3f s (%.0f tasks/s)",
           st->tasks_ok, st->entries_ok, secs, rate);
    if (st->drained_tasks) printf(", %" PRIu64 " via the task buffer", st->drained_tasks);
    if (st->bad_rows) printf(", %" PRIu64 " bad rows", st->bad_rows);
    if (st->too_big) printf(", %" PRIu64 " tasks too big", st->too_big);
    if (left) printf(", %" PRIu64 " tasks left in the task buffer", left);
    if (lost) printf(", %" PRIu64 " tasks could not be stored", lost);
    if (p->store_stop)
        printf(" (stopped)");
    else if (p->stopping)
        printf(" (interrupted)");
    printf("\n");
    fflush(stdout);
}

/* Tasks of this namespace's analysis queue in the buffer. */
static uint64_t buffer_left(prod_t *p) {
    cga_buffer_stats_t *s = NULL;
    uint64_t n = 0;
    if (!p->buffer || cga_buffer_stats(p->buffer, &s) != CGA_OK) return 0;
    for (size_t i = 0; i < s->nqueues; i++)
        if (strcmp(s->queues[i].queue, p->qkey) == 0) n += s->queues[i].tasks;
    cga_buffer_stats_free(s);
    return n;
}

/* /health of `run`: whether it is the active coordinator, and the tasks waiting in the buffer. */
static void ops_health(cga_health_t *h, void *arg) {
    prod_t *p = arg;
    uint64_t entries = 0, tasks = 0;
    if (p->buffer) cga_buffer_count(p->buffer, &entries, &tasks); /* O(1), unlike the stats */
    cga_health_bool(h, "active", p->lock && cga_lock_is_held(p->lock));
    cga_health_int(h, "buffer_entries", (int64_t)entries);
    cga_health_int(h, "buffer_tasks", (int64_t)tasks);
}

static int produce(cga_app_t *a, int is_run) {
    prod_t pr;
    prod_t *p = &pr;
    memset(p, 0, sizeof *p);
    p->app = a;
    p->loop = cga_app_loop(a);
    p->redis = cga_app_redis(a);
    p->cfg = cga_app_config(a);
    p->ns = cga_app_ns(a);
    p->cmd = is_run ? "run" : "enqueue";
    p->is_run = is_run;
    p->grace_ms = (uint64_t)cga_config_int(p->cfg, "OPS_GRACE_MS");
    p->exit_when_done = is_run ? cga_config_bool(p->cfg, "OPS_EXIT_WHEN_DONE") : 1;
    p->show_progress = !is_run && cga_config_bool(p->cfg, "OPS_PROGRESS") && isatty(2);
    cga_key(p->lockkey, sizeof p->lockkey, p->ns, CGA_KIND_LOCK, "ops", NULL);
    cga_key(p->qkey, sizeof p->qkey, p->ns, CGA_KIND_QUEUE, CGA_QUEUE_ANALYSIS, NULL);
    int code = -1;
    split_labs(p);
    if (p->nlabs == 0) {
        ops_error(p->cmd, "OPS_LABS: no lab given (--labs trend,volatility,momentum)");
        code = CGA_EXIT_USAGE;
        goto out;
    }
    code = open_source(p);
    if (code >= 0) goto out;
    /* The buffer first: a path that cannot be used fails before any task is at stake. */
    code = ops_open_buffer(p->cfg, p->cmd, (uint64_t)cga_config_int(p->cfg, "OPS_BUFFER_MAX_BYTES"),
                           &p->buffer);
    if (code >= 0) goto out;
    code = ops_connect(a, p->cmd);
    if (code >= 0) goto out;

    if (make_queue(p, &p->qa, CGA_QUEUE_ANALYSIS, CGA_GROUP_ANALYSIS) < 0 ||
        make_queue(p, &p->qr, CGA_QUEUE_REPORTS, CGA_GROUP_REPORTS) < 0) {
        code = CGA_EXIT_FAILURE;
        goto out;
    }
    cga_state_create(&p->state, p->redis, p->ns);
    p->metrics = cga_app_metrics(a); /* served on /metrics by `run` when CGALPHA_HTTP_PORT is set */
    if (is_run) {
        cga_app_enable_redis_info(a, 5000); /* the coordinator exports Redis INFO figures */
        cga_app_track_state(a, p->state);
        cga_app_set_health(a, ops_health, p);
        int drc = ops_dashboard_start(&p->dash, a);
        if (drc < 0) CGA_LOG(CGA_LOG_WARN, drc, "the dashboard is not served");
    }

    ops_producer_opts_t po = {
        .source = p->src,
        .window = (size_t)cga_config_int(p->cfg, "OPS_WINDOW"),
        .step = (size_t)cga_config_int(p->cfg, "OPS_STEP"),
        .labs = (const char *const *)p->labs,
        .nlabs = p->nlabs,
        .batch = (size_t)cga_config_int(p->cfg, "OPS_BATCH"),
        .bar_rate = (unsigned)cga_config_int(p->cfg, "OPS_BAR_RATE"),
        .linger_us = (unsigned)cga_config_int(p->cfg, "OPS_LINGER_US"),
        .max_inflight = (size_t)cga_config_int(p->cfg, "OPS_MAX_INFLIGHT"),
        .max_inflight_bytes = (size_t)cga_config_int(p->cfg, "OPS_MAX_INFLIGHT_BYTES"),
        .max_task_bytes = (size_t)cga_config_int(p->cfg, "OPS_MAX_TASK_BYTES"),
        .on_write = on_write,
        .on_write_arg = p,
    };
    int rc = ops_producer_create(&p->prod, p->loop, p->redis, p->qa, p->buffer, p->metrics, &po);
    if (rc < 0) {
        ops_error(p->cmd, "cannot start the producer: %s", cga_strerror(rc));
        code = CGA_EXIT_FAILURE;
        goto out;
    }
    ops_producer_on_change(p->prod, on_change, p);

    ops_coord_opts_t co = {
        .ns = p->ns,
        .follow = !is_run,
        .state_interval_ms = (unsigned)cga_config_int(p->cfg, "OPS_STATE_INTERVAL_MS"),
        .batch = (double)po.batch,
        .tasks_per_entry = tasks_per_entry,
        .tpe_arg = p,
    };
    if (is_run) {
        co.trim_interval_ms = (unsigned)cga_config_int(p->cfg, "OPS_TRIM_INTERVAL_MS");
        co.limits.yellow_backlog = (uint64_t)cga_config_int(p->cfg, "OPS_YELLOW_BACKLOG");
        co.limits.red_backlog = (uint64_t)cga_config_int(p->cfg, "OPS_RED_BACKLOG");
        co.limits.yellow_mem_pct = (unsigned)cga_config_int(p->cfg, "OPS_YELLOW_MEMORY_PCT");
        co.limits.red_mem_pct = (unsigned)cga_config_int(p->cfg, "OPS_RED_MEMORY_PCT");
    }
    rc = ops_coord_create(&p->coord, p->loop, p->redis, p->qa, p->qr, p->state, p->metrics,
                          &co);
    if (rc < 0) {
        ops_error(p->cmd, "cannot start the coordinator: %s", cga_strerror(rc));
        code = CGA_EXIT_FAILURE;
        goto out;
    }
    ops_coord_on_level(p->coord, on_level, p);

    uv_timer_init(p->loop, &p->check);
    uv_timer_init(p->loop, &p->tick);
    p->check.data = p->tick.data = p;
    p->timers_open = 1;
    uv_timer_start(&p->tick, on_tick, TICK_MS, TICK_MS);
    cga_app_on_signal(a, on_signal, p);
    p->t0_us = cga_clock_wall_us();

    if (is_run) {
        int64_t ttl = cga_config_int(p->cfg, "OPS_LOCK_TTL_MS");
        int single = cga_config_bool(p->cfg, "CGALPHA_SINGLE_INSTANCE");
        rc = cga_lock_create(&p->lock, p->loop, p->redis, p->ns, "ops", (unsigned)ttl, single);
        if (rc < 0) {
            ops_error(p->cmd, "cannot create the lock: %s", cga_strerror(rc));
            code = CGA_EXIT_FAILURE;
            goto out;
        }
        cga_lock_on_lost(p->lock, on_lost, p);
        rc = cga_lock_acquire(p->lock, on_first_attempt, p);
        if (rc < 0) {
            ops_error(p->cmd, "cannot ask for the lock: %s", cga_strerror(rc));
            code = CGA_EXIT_FAILURE;
            goto out;
        }
    } else {
        ops_producer_set_active(p->prod, 1);
        ops_coord_start(p->coord);
    }

    cga_app_run(a);
    code = CGA_EXIT_OK;

out:
    /* Teardown: the producer stops sending; the lock (released), the coordinator and the
     * queues close (outcomes of entries in flight come back to the producer); then whatever
     * Redis did not take goes to the buffer. */
    if (p->timers_open) {
        uv_timer_stop(&p->check);
        uv_timer_stop(&p->tick);
        p->closes += 2;
        uv_close((uv_handle_t *)&p->check, on_timer_closed);
        uv_close((uv_handle_t *)&p->tick, on_timer_closed);
        p->timers_open = 0;
    }
    clear_progress(p);
    if (p->prod) ops_producer_quiesce(p->prod);
    if (p->lock) {
        p->closes++;
        cga_lock_close(p->lock, on_closed, p);
    }
    if (p->coord) {
        p->closes++;
        ops_coord_close(p->coord, on_closed, p);
    }
    if (p->qa) {
        p->closes++;
        cga_queue_close(p->qa, on_closed, p);
    }
    if (p->qr) {
        p->closes++;
        cga_queue_close(p->qr, on_closed, p);
    }
    if (p->dash) {
        p->closes++;
        ops_dashboard_close(p->dash, on_closed, p);
    }
    while (p->closes > 0) uv_run(p->loop, UV_RUN_ONCE);
    if (p->prod) {
        uint64_t lost = ops_producer_finish(p->prod);
        ops_producer_stats_t st;
        ops_producer_stats(p->prod, &st);
        if (code == CGA_EXIT_OK) {
            uint64_t left = buffer_left(p);
            if (left > 0)
                CGA_LOG(CGA_LOG_WARN, 0, "%" PRIu64 " tasks wait in the task buffer %s (Redis "
                        "did not take them yet): the next run or enqueue with this buffer, or "
                        "`cgalpha-ops recover`, sends them", left, cga_buffer_path(p->buffer));
            if (lost > 0 || st.source_error || st.rejected) {
                code = CGA_EXIT_FAILURE;
            } else if (st.bad_rows > 0 || st.too_big > 0) {
                code = CGA_EXIT_DATA;
            }
            if (st.bad_rows > 0)
                CGA_LOG(CGA_LOG_WARN, 0, "%" PRIu64 " bad rows were refused (see above); the "
                        "%" PRIu64 " good rows were used", st.bad_rows, st.rows);
            if (st.too_big > 0)
                CGA_LOG(CGA_LOG_WARN, 0, "%" PRIu64 " tasks were refused as too big (see above; "
                        "--max-task-bytes %lld); the others were produced", st.too_big,
                        (long long)cga_config_int(p->cfg, "OPS_MAX_TASK_BYTES"));
            if (!is_run) print_summary(p, &st, lost, left);
        }
        p->closes++;
        ops_producer_close(p->prod, on_closed, p);
        while (p->closes > 0) uv_run(p->loop, UV_RUN_ONCE);
    }
    cga_app_set_health(a, NULL, NULL);
    cga_app_track_state(a, NULL);
    cga_buffer_free(p->buffer);
    cga_state_free(p->state);
    ops_source_close(p->src);
    if (p->truth && fclose(p->truth) != 0) {
        ops_error(p->cmd, "writing the truth file %s: %s", p->truth_path, strerror(errno));
        if (code == CGA_EXIT_OK) code = CGA_EXIT_FAILURE;
    }
    free(p->truth_path);
    for (size_t i = 0; i < p->nlabs; i++) free(p->labs[i]);
    free(p->labs);
    return code;
}

int ops_cmd_run(cga_app_t *a) {
    return produce(a, 1);
}

int ops_cmd_enqueue(cga_app_t *a) {
    return produce(a, 0);
}

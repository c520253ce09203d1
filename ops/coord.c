#define CGA_LOG_COMPONENT "coord"
#include "coord.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cgalpha/alloc.h"
#include "cgalpha/clock.h"
#include "cgalpha/err.h"
#include "cgalpha/keys.h"
#include "cgalpha/log.h"
#include "cgalpha/metrics.h"
#include "cgalpha/queue.h"
#include "cgalpha/redis.h"
#include "cgalpha/state.h"

/* The semaphore, written even when Redis refuses writes for want of memory (see coord.h). */
static const char LUA_PUBLISH_OOM[] =
    "#!lua flags=allow-oom\n"
    "return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n";

struct ops_coord_s {
    uv_loop_t *loop;
    cga_redis_t *redis;
    cga_queue_t *analysis, *reports;
    cga_state_t *state;
    ops_coord_opts_t o;
    cga_proto_writer_t *writer;
    cga_proto_reader_t *reader;
    uv_timer_t state_timer, trim_timer;
    int handles_open;
    int running;          /* timers started */
    int closing;
    unsigned busy;        /* requests in flight (any kind) */
    void (*done)(void *);
    void *done_arg;
    void (*level_cb)(cga_level_t, void *);
    void *level_arg;

    /* the current round */
    int in_round;
    unsigned round_left;
    int round_err;
    cga_queue_info_t info;
    uint64_t labs, used, maxmem;
    int maxmem_known;     /* INFO memory was read at least once */
    char policy[32];

    int oom;              /* Redis out of memory (latched: see ops_level_oom_latch) */
    cga_redis_script_t *s_publish;
    char key[CGA_KEY_MAX]; /* <ns>:state:global_resources */
    char *last_data;      /* the last ResourceState encoded (republished through OOM) */
    size_t last_len;

    cga_level_t level;
    int published_once;
    int warned;
    char reason[200];

    cga_gauge_t *g_backlog, *g_level, *g_labs;
    cga_counter_t *c_trimmed;
};

static void maybe_free(ops_coord_t *c) {
    if (!c->closing || c->busy > 0 || c->handles_open > 0) return;
    cga_proto_writer_free(c->writer);
    cga_proto_reader_free(c->reader);
    free(c->last_data);
    void (*done)(void *) = c->done;
    void *arg = c->done_arg;
    free(c);
    if (done) done(arg);
}

static void set_level(ops_coord_t *c, cga_level_t lvl, const char *reason) {
    if (c->g_level) cga_gauge_set(c->g_level, (double)lvl);
    if (lvl == c->level && c->published_once) return;
    int first = !c->published_once;
    c->published_once = 1;
    if (lvl != c->level || (first && !(c->o.follow && lvl == CGA_LEVEL_GREEN))) {
        int loglvl = lvl == CGA_LEVEL_GREEN ? CGA_LOG_INFO : CGA_LOG_WARN;
        const char *what = lvl == CGA_LEVEL_RED      ? "production paused"
                           : lvl == CGA_LEVEL_YELLOW ? "production throttled"
                                                     : "production at full speed";
        CGA_LOG(loglvl, 0, "semaphore %s (%s): %s", cga_level_name(lvl), reason, what);
    }
    cga_level_t old = c->level;
    c->level = lvl;
    if (old != lvl && c->level_cb) c->level_cb(lvl, c->level_arg);
}

static void round_failed(ops_coord_t *c, int rc, const char *what) {
    if (!c->round_err) c->round_err = rc ? rc : CGA_EPROTO;
    if (!c->warned && !c->closing) {
        c->warned = 1;
        CGA_LOG(CGA_LOG_WARN, rc, "semaphore not updated: %s failed (logged once until it "
                "works again)", what);
    }
}

static void on_published_oom(int status, struct redisReply *r, void *arg) {
    ops_coord_t *c = arg;
    (void)r;
    c->busy--;
    if (status < 0) round_failed(c, status, "SET global_resources (allow-oom script)");
    maybe_free(c);
}

static void publish_oom(ops_coord_t *c) {
    char ttl[16];
    snprintf(ttl, sizeof ttl, "%u", c->o.state_interval_ms * 3);
    const char *argv[3] = {c->key, c->last_data, ttl};
    size_t lens[3] = {strlen(c->key), c->last_len, strlen(ttl)};
    int rc = cga_redis_evalsha(c->redis, c->s_publish, CGA_REDIS_FAILFAST, on_published_oom, c, 1,
                               3, argv, lens);
    if (rc < 0)
        round_failed(c, rc, "SET global_resources (allow-oom script)");
    else
        c->busy++;
}

static void finish_round(ops_coord_t *c, int via_script);

static void on_state_set(int status, void *arg) {
    ops_coord_t *c = arg;
    c->busy--;
    if (status == CGA_EOOM && !c->closing && c->running) {
        /* Out of memory: red, published through the allow-oom script (by the round running
         * now, if one is). */
        c->oom = 1;
        if (!c->in_round) finish_round(c, 1);
    } else if (status < 0) {
        round_failed(c, status, "SET global_resources");
    }
    maybe_free(c);
}

/* Computes the level and publishes it: by SET, or by the allow-oom script when Redis refuses
 * writes (via_script: a SET was just answered OOM; or INFO says memory is full). */
static void finish_round(ops_coord_t *c, int via_script) {
    c->in_round = 0;
    if (c->closing || !c->running || c->round_err) return;
    if (c->warned) {
        c->warned = 0;
        CGA_LOG(CGA_LOG_INFO, 0, "semaphore updated again");
    }
    double tpe = c->o.tasks_per_entry ? c->o.tasks_per_entry(c->o.tpe_arg) : 0;
    uint64_t backlog = ops_backlog_tasks(c->info.lag + c->info.pending, tpe, c->o.batch);
    char reason[200];
    if (c->maxmem_known && !via_script)
        c->oom = ops_level_oom_latch(&c->o.limits, c->oom, c->used, c->maxmem, c->policy);
    cga_level_t lvl = ops_level_eval_oom(&c->o.limits, backlog, c->used, c->maxmem, c->policy,
                                         c->oom, reason, sizeof reason);
    int full = c->maxmem > 0 && c->used >= c->maxmem && strcmp(c->policy, "noeviction") == 0;
    snprintf(c->reason, sizeof c->reason, "%s", reason);
    if (c->g_backlog) cga_gauge_set(c->g_backlog, (double)backlog);
    if (c->g_labs) cga_gauge_set(c->g_labs, (double)c->labs);
    cga_resource_state_t m;
    memset(&m, 0, sizeof m);
    m.level = lvl;
    m.backlog = backlog;
    m.labs = c->labs;
    m.used_memory = c->used;
    m.maxmemory = c->maxmem;
    m.reason = cga_str(c->reason);
    m.ts_us = cga_clock_wall_us();
    const char *data;
    size_t len;
    int rc = cga_proto_encode_resource_state(c->writer, &m, &data, &len);
    if (rc < 0) {
        CGA_LOG(CGA_LOG_ERROR, rc, "encoding the ResourceState failed");
    } else if ((via_script || full) && c->s_publish) {
        free(c->last_data);
        c->last_data = cga_malloc(len);
        memcpy(c->last_data, data, len);
        c->last_len = len;
        publish_oom(c);
    } else {
        unsigned ttl = c->o.state_interval_ms * 3;
        rc = cga_state_set(c->state, CGA_STATE_RESOURCES, data, len, ttl, on_state_set, c);
        if (rc < 0)
            round_failed(c, rc, "SET global_resources");
        else
            c->busy++;
    }
    set_level(c, lvl, c->reason);
}

static void round_step_done(ops_coord_t *c) {
    c->busy--;
    if (--c->round_left == 0) finish_round(c, 0);
    maybe_free(c);
}

static void on_info(int status, const cga_queue_info_t *info, void *arg) {
    ops_coord_t *c = arg;
    if (status < 0)
        round_failed(c, status, "reading the analysis queue");
    else
        c->info = *info;
    round_step_done(c);
}

static void on_scan(int status, const char *const *names, size_t n, void *arg) {
    ops_coord_t *c = arg;
    (void)names;
    if (status < 0)
        round_failed(c, status, "listing lab heartbeats");
    else
        c->labs = n;
    round_step_done(c);
}

static void on_memory(int status, struct redisReply *r, void *arg) {
    ops_coord_t *c = arg;
    if (status < 0 || !r || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS)) {
        round_failed(c, status, "INFO memory");
    } else {
        uint64_t used = 0, maxmem = 0;
        if (ops_info_u64(r->str, r->len, "used_memory", &used) < 0 ||
            ops_info_u64(r->str, r->len, "maxmemory", &maxmem) < 0) {
            round_failed(c, CGA_EPROTO, "parsing INFO memory");
        } else {
            c->used = used;
            c->maxmem = maxmem;
            c->maxmem_known = 1;
            if (ops_info_str(r->str, r->len, "maxmemory_policy", c->policy, sizeof c->policy) < 0)
                c->policy[0] = '\0';
        }
    }
    round_step_done(c);
}

static void on_follow(int status, const char *data, size_t len, void *arg) {
    ops_coord_t *c = arg;
    c->busy--;
    c->in_round = 0;
    if (!c->closing) {
        if (status == CGA_ENOTFOUND) {
            set_level(c, CGA_LEVEL_GREEN, "no semaphore published");
        } else if (status < 0) {
            round_failed(c, status, "reading global_resources");
        } else {
            cga_resource_state_t m;
            int rc = cga_proto_decode_resource_state(c->reader, data, len, &m);
            if (rc < 0) {
                round_failed(c, rc, "decoding global_resources");
            } else {
                int n = (int)(m.reason.len < sizeof c->reason - 1 ? m.reason.len
                                                                 : sizeof c->reason - 1);
                snprintf(c->reason, sizeof c->reason, "%.*s", n, m.reason.ptr);
                c->warned = 0;
                set_level(c, m.level, c->reason);
            }
        }
    }
    maybe_free(c);
}

static void start_round(ops_coord_t *c) {
    if (c->in_round || c->closing) return;
    c->in_round = 1;
    c->round_err = 0;
    if (c->o.follow) {
        int rc = cga_state_get(c->state, CGA_STATE_RESOURCES, on_follow, c);
        if (rc < 0) {
            c->in_round = 0;
            round_failed(c, rc, "reading global_resources");
        } else {
            c->busy++;
        }
        return;
    }
    c->round_left = 1; /* held until every request is issued */
    int rc = cga_queue_info(c->analysis, on_info, c);
    if (rc < 0)
        round_failed(c, rc, "reading the analysis queue");
    else
        c->busy++, c->round_left++;
    rc = cga_state_scan(c->state, "worker:*", on_scan, c);
    if (rc < 0)
        round_failed(c, rc, "listing lab heartbeats");
    else
        c->busy++, c->round_left++;
    rc = cga_redis_command(c->redis, CGA_REDIS_WAIT, on_memory, c, "INFO memory");
    if (rc < 0)
        round_failed(c, rc, "INFO memory");
    else
        c->busy++, c->round_left++;
    c->busy++;
    round_step_done(c);
}

static void on_state_timer(uv_timer_t *t) {
    start_round(t->data);
}

static void on_trimmed(int status, uint64_t n, void *arg) {
    ops_coord_t *c = arg;
    c->busy--;
    if (status < 0) {
        if (!c->closing) CGA_LOG(CGA_LOG_DEBUG, status, "trim failed");
    } else {
        if (c->c_trimmed) cga_counter_add(c->c_trimmed, n);
        if (n) CGA_LOG(CGA_LOG_DEBUG, 0, "trimmed %" PRIu64 " entries", n);
    }
    maybe_free(c);
}

static void on_trim_timer(uv_timer_t *t) {
    ops_coord_t *c = t->data;
    cga_queue_t *qs[2] = {c->analysis, c->reports};
    for (int i = 0; i < 2; i++) {
        if (!qs[i]) continue;
        if (cga_queue_trim(qs[i], on_trimmed, c) == CGA_OK) c->busy++;
    }
}

int ops_coord_create(ops_coord_t **out, uv_loop_t *loop, cga_redis_t *redis,
                     cga_queue_t *analysis, cga_queue_t *reports, cga_state_t *state,
                     cga_metrics_t *metrics, const ops_coord_opts_t *o) {
    *out = NULL;
    if (!state || (!o->follow && !analysis)) return CGA_EINVAL;
    ops_coord_t *c = cga_calloc(1, sizeof *c);
    c->loop = loop;
    c->redis = redis;
    c->analysis = analysis;
    c->reports = reports;
    c->state = state;
    c->o = *o;
    if (!c->o.state_interval_ms) c->o.state_interval_ms = 5000;
    if (!c->o.trim_interval_ms) c->o.trim_interval_ms = 10000;
    if (c->o.batch <= 0) c->o.batch = 32;
    c->level = CGA_LEVEL_GREEN;
    if (!o->follow) {
        int rc = cga_key(c->key, sizeof c->key, o->ns ? o->ns : CGA_NAMESPACE_DEFAULT,
                         CGA_KIND_STATE, CGA_STATE_RESOURCES, NULL);
        if (rc < 0 || cga_redis_script_register(redis, LUA_PUBLISH_OOM, &c->s_publish) < 0)
            c->s_publish = NULL; /* OOM then leaves the semaphore to expire */
    }
    cga_proto_writer_create(&c->writer, NULL);
    cga_proto_reader_create(&c->reader, NULL);
    uv_timer_init(loop, &c->state_timer);
    uv_timer_init(loop, &c->trim_timer);
    c->state_timer.data = c->trim_timer.data = c;
    c->handles_open = 2;
    if (metrics && !o->follow) {
        c->g_backlog = cga_metrics_gauge(metrics, "cgalpha_ops_backlog_tasks",
                                         "Analysis backlog (tasks, estimated)", NULL);
        c->g_labs = cga_metrics_gauge(metrics, "cgalpha_ops_labs", "Live labs", NULL);
        c->c_trimmed = cga_metrics_counter(metrics, "cgalpha_ops_trimmed_entries_total",
                                           "Entries trimmed from the queues", NULL);
    }
    if (metrics)
        c->g_level = cga_metrics_gauge(metrics, "cgalpha_ops_level",
                                       "Semaphore level: 0 green, 1 yellow, 2 red", NULL);
    *out = c;
    return CGA_OK;
}

void ops_coord_note_write(ops_coord_t *c, int status) {
    if (status == CGA_EOOM && !c->oom) {
        c->oom = 1;
        /* tell the producers now rather than at the next interval */
        if (c->running && !c->closing && !c->o.follow) start_round(c);
    }
}

void ops_coord_on_level(ops_coord_t *c, void (*cb)(cga_level_t, void *), void *arg) {
    c->level_cb = cb;
    c->level_arg = arg;
}

void ops_coord_start(ops_coord_t *c) {
    if (c->running || c->closing) return;
    c->running = 1;
    uv_timer_start(&c->state_timer, on_state_timer, 0, c->o.state_interval_ms);
    if (!c->o.follow)
        uv_timer_start(&c->trim_timer, on_trim_timer, c->o.trim_interval_ms,
                       c->o.trim_interval_ms);
}

void ops_coord_stop(ops_coord_t *c) {
    c->running = 0;
    uv_timer_stop(&c->state_timer);
    uv_timer_stop(&c->trim_timer);
}

static void on_closed(uv_handle_t *h) {
    ops_coord_t *c = h->data;
    c->handles_open--;
    maybe_free(c);
}

void ops_coord_close(ops_coord_t *c, void (*done)(void *), void *arg) {
    if (!c) {
        if (done) done(arg);
        return;
    }
    ops_coord_stop(c);
    c->closing = 1;
    c->done = done;
    c->done_arg = arg;
    uv_close((uv_handle_t *)&c->state_timer, on_closed);
    uv_close((uv_handle_t *)&c->trim_timer, on_closed);
}

cga_level_t ops_coord_level(const ops_coord_t *c) {
    return c->level;
}

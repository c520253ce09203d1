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
#include "ops.h"

#define TXT 160

typedef struct lab_row_s {
    char id[TXT], host[TXT], plugins[TXT];
    uint32_t pid;
    uint64_t processed, failed, started_us, ts_us, last_ack_us;
    uint32_t inflight;
    int stalled;
} lab_row_t;

typedef struct regime_row_s {
    char symbol[TXT];
    cga_regime_t regime, from;
    uint64_t seq, ts_us;
    int64_t ws;
    double conf;
} regime_row_t;

typedef struct status_s {
    cga_app_t *app;
    cga_state_t *state;
    cga_proto_reader_t *reader;
    cga_queue_t *q[2];
    cga_queue_info_t info[2];
    unsigned pending;
    int err;
    int sem_found;
    cga_resource_state_t sem;
    char sem_reason[TXT * 2];
    lab_row_t *labs;
    size_t nlabs;
    regime_row_t *regimes;
    size_t nregimes;
    size_t undecodable;
    ops_bufview_t buf;
} status_t;

static const char *const queue_names[2] = {CGA_QUEUE_ANALYSIS, CGA_QUEUE_REPORTS};
static const char *const group_names[2] = {CGA_GROUP_ANALYSIS, CGA_GROUP_REPORTS};

static void copy_str(char *dst, size_t cap, cga_str_t s) {
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    if (n) memcpy(dst, s.ptr, n);
    dst[n] = '\0';
}

static void request_done(status_t *s, int status) {
    if (status < 0 && status != CGA_ENOTFOUND && !s->err) s->err = status;
    if (--s->pending == 0) cga_app_stop(s->app);
}

typedef struct info_req_s {
    status_t *s;
    int i;
} info_req_t;

static void on_queue_info(int status, const cga_queue_info_t *info, void *arg) {
    info_req_t *r = arg;
    if (status == CGA_OK) r->s->info[r->i] = *info;
    request_done(r->s, status);
}

static void on_sem(int status, const char *data, size_t len, void *arg) {
    status_t *s = arg;
    if (status == CGA_OK) {
        if (cga_proto_decode_resource_state(s->reader, data, len, &s->sem) == CGA_OK) {
            copy_str(s->sem_reason, sizeof s->sem_reason, s->sem.reason);
            s->sem.reason = cga_str(s->sem_reason);
            s->sem_found = 1;
        } else {
            CGA_LOG(CGA_LOG_WARN, 0, "global_resources does not decode: %s",
                    cga_proto_reader_error(s->reader));
            s->undecodable++;
        }
    }
    request_done(s, status);
}

static void on_worker(int status, const char *data, size_t len, void *arg) {
    status_t *s = arg;
    if (status == CGA_OK) {
        cga_worker_state_t w;
        if (cga_proto_decode_worker_state(s->reader, data, len, &w) == CGA_OK) {
            s->labs = cga_realloc(s->labs, (s->nlabs + 1) * sizeof *s->labs);
            lab_row_t *r = &s->labs[s->nlabs++];
            copy_str(r->id, sizeof r->id, w.id);
            copy_str(r->host, sizeof r->host, w.host);
            copy_str(r->plugins, sizeof r->plugins, w.plugins);
            r->pid = w.pid;
            r->processed = w.processed;
            r->failed = w.failed;
            r->inflight = w.inflight;
            r->started_us = w.started_us;
            r->ts_us = w.ts_us;
            r->last_ack_us = w.last_ack_us;
            r->stalled = w.stalled;
        } else {
            CGA_LOG(CGA_LOG_WARN, 0, "a worker heartbeat does not decode: %s",
                    cga_proto_reader_error(s->reader));
            s->undecodable++;
        }
    }
    request_done(s, status);
}

static void on_regime(int status, const char *data, size_t len, void *arg) {
    status_t *s = arg;
    if (status == CGA_OK) {
        cga_regime_change_t m;
        if (cga_proto_decode_regime_change(s->reader, data, len, &m) == CGA_OK) {
            s->regimes = cga_realloc(s->regimes, (s->nregimes + 1) * sizeof *s->regimes);
            regime_row_t *r = &s->regimes[s->nregimes++];
            copy_str(r->symbol, sizeof r->symbol, m.symbol);
            r->regime = m.to;
            r->from = m.from;
            r->seq = m.seq;
            r->ws = m.wstart;
            r->conf = m.confidence;
            r->ts_us = m.ts_us;
        } else {
            CGA_LOG(CGA_LOG_WARN, 0, "a regime state does not decode: %s",
                    cga_proto_reader_error(s->reader));
            s->undecodable++;
        }
    }
    request_done(s, status);
}

static void get_each(status_t *s, int status, const char *const *names, size_t n,
                     cga_state_get_cb cb) {
    if (status == CGA_OK) {
        for (size_t i = 0; i < n; i++) {
            int rc = cga_state_get(s->state, names[i], cb, s);
            if (rc < 0) {
                if (!s->err) s->err = rc;
            } else {
                s->pending++;
            }
        }
    }
    request_done(s, status);
}

static void on_workers(int status, const char *const *names, size_t n, void *arg) {
    get_each(arg, status, names, n, on_worker);
}

static void on_regimes(int status, const char *const *names, size_t n, void *arg) {
    get_each(arg, status, names, n, on_regime);
}

static double age_s(uint64_t ts_us, uint64_t now_us) {
    return ts_us && now_us > ts_us ? (double)(now_us - ts_us) / 1e6 : 0.0;
}

static int cmp_lab(const void *a, const void *b) {
    return strcmp(((const lab_row_t *)a)->id, ((const lab_row_t *)b)->id);
}

static int cmp_regime(const void *a, const void *b) {
    return strcmp(((const regime_row_t *)a)->symbol, ((const regime_row_t *)b)->symbol);
}

static void fmt_bytes(char *out, size_t n, uint64_t b) {
    if (b >= (UINT64_C(1) << 30))
        snprintf(out, n, "%.1f GiB", (double)b / (double)(UINT64_C(1) << 30));
    else if (b >= (UINT64_C(1) << 20))
        snprintf(out, n, "%.1f MiB", (double)b / (double)(UINT64_C(1) << 20));
    else
        snprintf(out, n, "%.1f KiB", (double)b / 1024.0);
}

static void fmt_time(char *out, size_t n, int64_t ms) {
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (gmtime_r(&t, &tm))
        strftime(out, n, "%Y-%m-%dT%H:%MZ", &tm);
    else
        snprintf(out, n, "%lld", (long long)ms);
}

static void print_json(const status_t *s, const char *ns, uint64_t now) {
    FILE *f = stdout;
    fputs("{\"namespace\":", f);
    ops_json_str(f, ns, strlen(ns));
    fputs(",\"redis\":{\"reachable\":true},\"queues\":{", f);
    for (int i = 0; i < 2; i++) {
        const cga_queue_info_t *q = &s->info[i];
        fprintf(f, "%s\"%s\":{\"length\":%" PRIu64 ",\"lag\":%" PRIu64 ",\"pending\":%" PRIu64
                ",\"dead\":%" PRIu64 ",\"consumers\":%" PRIu64 ",\"groups\":%" PRIu64 "}",
                i ? "," : "", queue_names[i], q->length, q->lag, q->pending, q->dead,
                q->consumers, q->groups);
    }
    fputs("},\"semaphore\":", f);
    if (s->sem_found) {
        fprintf(f, "{\"level\":\"%s\",\"backlog\":%" PRIu64 ",\"labs\":%" PRIu64
                ",\"used_memory\":%" PRIu64 ",\"maxmemory\":%" PRIu64 ",\"reason\":",
                cga_level_name(s->sem.level), s->sem.backlog, s->sem.labs, s->sem.used_memory,
                s->sem.maxmemory);
        ops_json_str(f, s->sem_reason, strlen(s->sem_reason));
        fprintf(f, ",\"age_s\":%.3f}", age_s(s->sem.ts_us, now));
    } else {
        fputs("null", f);
    }
    fputs(",\"labs\":[", f);
    for (size_t i = 0; i < s->nlabs; i++) {
        const lab_row_t *r = &s->labs[i];
        fputs(i ? ",{\"id\":" : "{\"id\":", f);
        ops_json_str(f, r->id, strlen(r->id));
        fputs(",\"host\":", f);
        ops_json_str(f, r->host, strlen(r->host));
        fputs(",\"plugins\":", f);
        ops_json_str(f, r->plugins, strlen(r->plugins));
        fprintf(f, ",\"pid\":%" PRIu32 ",\"processed\":%" PRIu64 ",\"failed\":%" PRIu64
                ",\"inflight\":%" PRIu32 ",\"uptime_s\":%.3f,\"age_s\":%.3f,\"stalled\":%s",
                r->pid, r->processed, r->failed, r->inflight, age_s(r->started_us, now),
                age_s(r->ts_us, now), r->stalled ? "true" : "false");
        if (r->last_ack_us)
            fprintf(f, ",\"last_ack_age_s\":%.3f}", age_s(r->last_ack_us, now));
        else
            fputs(",\"last_ack_age_s\":null}", f);
    }
    fputs("],\"regimes\":[", f);
    for (size_t i = 0; i < s->nregimes; i++) {
        const regime_row_t *r = &s->regimes[i];
        fputs(i ? ",{\"symbol\":" : "{\"symbol\":", f);
        ops_json_str(f, r->symbol, strlen(r->symbol));
        fprintf(f, ",\"regime\":\"%s\",\"from\":\"%s\",\"seq\":%" PRIu64 ",\"ws\":%lld"
                ",\"confidence\":%.4f,\"age_s\":%.3f}", cga_regime_name(r->regime),
                cga_regime_name(r->from), r->seq, (long long)r->ws, r->conf,
                age_s(r->ts_us, now));
    }
    fputs("],\"buffer\":", f);
    ops_bufview_json(f, &s->buf, ns, now / 1000);
    fprintf(f, ",\"undecodable\":%zu}\n", s->undecodable);
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

static void print_human(const status_t *s, const char *ns, uint64_t now) {
    FILE *f = stdout;
    fprintf(f, "namespace %s\n\n", ns);
    fprintf(f, "%-10s %10s %10s %10s %8s %10s %7s\n", "QUEUE", "LENGTH", "LAG", "PENDING",
            "DEAD", "CONSUMERS", "GROUPS");
    for (int i = 0; i < 2; i++) {
        const cga_queue_info_t *q = &s->info[i];
        fprintf(f, "%-10s %10" PRIu64 " %10" PRIu64 " %10" PRIu64 " %8" PRIu64 " %10" PRIu64
                " %7" PRIu64 "\n", queue_names[i], q->length, q->lag, q->pending, q->dead,
                q->consumers, q->groups);
    }
    fputs("\n", f);
    if (s->sem_found) {
        char used[32], max[32];
        fmt_bytes(used, sizeof used, s->sem.used_memory);
        if (s->sem.maxmemory)
            fmt_bytes(max, sizeof max, s->sem.maxmemory);
        else
            snprintf(max, sizeof max, "no maxmemory");
        fprintf(f, "semaphore  %s  backlog %" PRIu64 " tasks  labs %" PRIu64
                "  memory %s / %s  age %.1f s\n           %s\n", cga_level_name(s->sem.level),
                s->sem.backlog, s->sem.labs, used, max, age_s(s->sem.ts_us, now),
                s->sem_reason);
    } else {
        fprintf(f, "semaphore  none published (no active `cgalpha-ops run`)\n");
    }
    fprintf(f, "\nlabs alive: %zu\n", s->nlabs);
    if (s->nlabs) {
        fprintf(f, "%-32s %-28s %10s %8s %8s %8s  %s\n", "ID", "PLUGINS", "PROCESSED", "FAILED",
                "INFLIGHT", "AGE", "STATE");
        for (size_t i = 0; i < s->nlabs; i++) {
            const lab_row_t *r = &s->labs[i];
            fprintf(f, "%-32s %-28s %10" PRIu64 " %8" PRIu64 " %8" PRIu32 " %6.1f s  %s\n",
                    r->id, r->plugins, r->processed, r->failed, r->inflight,
                    age_s(r->ts_us, now), r->stalled ? "STALLED" : "ok");
        }
    }
    fprintf(f, "\nregimes: %zu symbols\n", s->nregimes);
    if (s->nregimes) {
        fprintf(f, "%-16s %-10s %-10s %6s %-18s %5s %8s\n", "SYMBOL", "REGIME", "FROM", "SEQ",
                "WINDOW START", "CONF", "AGE");
        for (size_t i = 0; i < s->nregimes; i++) {
            const regime_row_t *r = &s->regimes[i];
            char ws[32];
            fmt_time(ws, sizeof ws, r->ws);
            fprintf(f, "%-16s %-10s %-10s %6" PRIu64 " %-18s %5.2f %6.1f s\n", r->symbol,
                    cga_regime_name(r->regime), cga_regime_name(r->from), r->seq, ws, r->conf,
                    age_s(r->ts_us, now));
        }
    }
    fputs("\n", f);
    ops_bufview_text(f, &s->buf, ns, now / 1000);
    if (s->undecodable) fprintf(f, "\n%zu state values could not be decoded\n", s->undecodable);
}

static void on_queue_closed(void *arg) {
    unsigned *n = arg;
    (*n)--;
}

int ops_cmd_status(cga_app_t *a) {
    const cga_config_t *cfg = cga_app_config(a);
    int json = cga_config_bool(cfg, "OPS_JSON");
    status_t st;
    status_t *s = &st;
    memset(s, 0, sizeof *s);
    s->app = a;
    cga_redis_t *redis = cga_app_redis(a);
    /* The local task buffer, read-only: shown whether or not Redis answers. */
    ops_bufview_read(&s->buf, cga_config_str(cfg, "OPS_BUFFER_PATH"));
    int code = ops_connect(a, "status");
    if (code >= 0) {
        if (code == CGA_EXIT_UNAVAILABLE || code == CGA_EXIT_AUTH)
            print_unreachable(s, cga_app_ns(a), json, cga_redis_last_error(redis));
        ops_bufview_free(&s->buf);
        return code;
    }
    uv_loop_t *loop = cga_app_loop(a);
    const char *ns = cga_app_ns(a);
    cga_state_create(&s->state, redis, ns);
    cga_proto_reader_create(&s->reader, NULL);
    info_req_t reqs[2];
    s->pending = 1; /* held while issuing */
    for (int i = 0; i < 2; i++) {
        cga_queue_opts_t o;
        cga_queue_opts_init(&o);
        o.ns = ns;
        o.name = queue_names[i];
        o.group = group_names[i];
        int rc = cga_queue_create(&s->q[i], loop, redis, &o);
        if (rc < 0) {
            s->err = rc;
            continue;
        }
        reqs[i].s = s;
        reqs[i].i = i;
        rc = cga_queue_info(s->q[i], on_queue_info, &reqs[i]);
        if (rc < 0)
            s->err = rc;
        else
            s->pending++;
    }
    if (cga_state_get(s->state, CGA_STATE_RESOURCES, on_sem, s) == CGA_OK) s->pending++;
    if (cga_state_scan(s->state, "worker:*", on_workers, s) == CGA_OK) s->pending++;
    if (cga_state_scan(s->state, "regime:*", on_regimes, s) == CGA_OK) s->pending++;
    request_done(s, CGA_OK);
    cga_app_run(a);

    unsigned closing = 0;
    for (int i = 0; i < 2; i++) {
        if (!s->q[i]) continue;
        closing++;
        cga_queue_close(s->q[i], on_queue_closed, &closing);
    }
    while (closing > 0) uv_run(loop, UV_RUN_ONCE);

    if (s->pending > 0 && !s->err) s->err = CGA_ECANCELED; /* interrupted */
    if (s->err) {
        code = cga_app_exit_code(s->err);
        if (code == CGA_EXIT_OK) code = CGA_EXIT_FAILURE;
        ops_error("status", "reading Redis failed: %s", cga_strerror(s->err));
    } else {
        uint64_t now = cga_clock_wall_us();
        if (s->nlabs > 1) qsort(s->labs, s->nlabs, sizeof *s->labs, cmp_lab);
        if (s->nregimes > 1) qsort(s->regimes, s->nregimes, sizeof *s->regimes, cmp_regime);
        if (json)
            print_json(s, ns, now);
        else
            print_human(s, ns, now);
        code = fflush(stdout) == 0 ? CGA_EXIT_OK : CGA_EXIT_FAILURE;
    }
    free(s->labs);
    free(s->regimes);
    ops_bufview_free(&s->buf);
    cga_proto_reader_free(s->reader);
    cga_state_free(s->state);
    return code;
}

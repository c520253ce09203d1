/* One reading of the namespace for status, monitor and the dashboard (see snapshot.h). */
#define CGA_LOG_COMPONENT "snapshot"
#include "snapshot.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cgalpha/alloc.h"
#include "cgalpha/clock.h"
#include "cgalpha/err.h"
#include "cgalpha/keys.h"
#include "cgalpha/log.h"
#include "cgalpha/redis.h"
#include "cgalpha/state.h"
#include "ops.h"
#include "regime_log.h"

const char *const ops_queue_names[OPS_NQUEUES] = {CGA_QUEUE_ANALYSIS, CGA_QUEUE_REPORTS};
static const char *const group_names[OPS_NQUEUES] = {CGA_GROUP_ANALYSIS, CGA_GROUP_REPORTS};

typedef struct info_req_s {
    ops_snapper_t *sn;
    int i;
} info_req_t;

struct ops_snapper_s {
    struct cga_redis_s *redis;
    cga_state_t *state;
    cga_proto_reader_t *reader;
    cga_queue_t *q[OPS_NQUEUES];
    info_req_t reqs[OPS_NQUEUES];
    char log_key[CGA_KEY_MAX];
    size_t recent;
    ops_snapshot_t snap;
    unsigned pending; /* answers awaited by the reading in flight (0: idle) */
    ops_snap_cb cb;
    void *arg;
    int closing;
    unsigned queues_open;
    void (*done)(void *arg);
    void *done_arg;
    int warned; /* an undecodable value was logged (once per snapper) */
};

double ops_age_s(uint64_t ts_us, uint64_t now_us) {
    return ts_us && now_us > ts_us ? (double)(now_us - ts_us) / 1e6 : 0.0;
}

static void copy_str(char *dst, size_t cap, cga_str_t s) {
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    if (n) memcpy(dst, s.ptr, n);
    dst[n] = '\0';
}

static void undecodable(ops_snapper_t *sn, const char *what) {
    if (!sn->warned++)
        CGA_LOG(CGA_LOG_WARN, 0, "%s does not decode: %s (further ones only counted)", what,
                cga_proto_reader_error(sn->reader));
    sn->snap.undecodable++;
}

static void on_queue_closed(void *arg) {
    ops_snapper_t *sn = arg;
    if (--sn->queues_open > 0) return;
    if (sn->done) sn->done(sn->done_arg);
    free(sn);
}

static void release(ops_snapper_t *sn) {
    ops_snapshot_t *s = &sn->snap;
    free(s->labs);
    free(s->regimes);
    free(s->changes);
    cga_proto_reader_free(sn->reader);
    cga_state_free(sn->state);
    for (int i = 0; i < OPS_NQUEUES; i++)
        if (sn->q[i]) sn->queues_open++;
    if (!sn->queues_open) {
        sn->queues_open = 1;
        on_queue_closed(sn);
        return;
    }
    for (int i = 0; i < OPS_NQUEUES; i++)
        if (sn->q[i]) cga_queue_close(sn->q[i], on_queue_closed, sn);
}

static int cmp_lab(const void *a, const void *b) {
    return strcmp(((const ops_lab_row_t *)a)->id, ((const ops_lab_row_t *)b)->id);
}

static int cmp_regime(const void *a, const void *b) {
    return strcmp(((const ops_regime_row_t *)a)->symbol, ((const ops_regime_row_t *)b)->symbol);
}

static void answered(ops_snapper_t *sn, int status) {
    ops_snapshot_t *s = &sn->snap;
    if (status < 0 && status != CGA_ENOTFOUND && !s->err) s->err = status;
    if (--sn->pending > 0) return;
    if (sn->closing) {
        release(sn);
        return;
    }
    s->taken_us = cga_clock_wall_us();
    if (s->nlabs > 1) qsort(s->labs, s->nlabs, sizeof *s->labs, cmp_lab);
    if (s->nregimes > 1) qsort(s->regimes, s->nregimes, sizeof *s->regimes, cmp_regime);
    sn->cb(s, sn->arg);
}

static void on_queue_info(int status, const cga_queue_info_t *info, void *arg) {
    info_req_t *r = arg;
    if (status == CGA_OK) r->sn->snap.queues[r->i] = *info;
    answered(r->sn, status);
}

static void on_sem(int status, const char *data, size_t len, void *arg) {
    ops_snapper_t *sn = arg;
    ops_snapshot_t *s = &sn->snap;
    if (status == CGA_OK) {
        if (cga_proto_decode_resource_state(sn->reader, data, len, &s->sem) == CGA_OK) {
            copy_str(s->sem_reason, sizeof s->sem_reason, s->sem.reason);
            s->sem.reason = cga_str(s->sem_reason);
            s->sem_found = 1;
        } else {
            undecodable(sn, "global_resources");
        }
    }
    answered(sn, status);
}

static void on_worker(int status, const char *data, size_t len, void *arg) {
    ops_snapper_t *sn = arg;
    ops_snapshot_t *s = &sn->snap;
    cga_worker_state_t w;
    if (status == CGA_OK) {
        if (cga_proto_decode_worker_state(sn->reader, data, len, &w) == CGA_OK) {
            s->labs = cga_realloc(s->labs, (s->nlabs + 1) * sizeof *s->labs);
            ops_lab_row_t *r = &s->labs[s->nlabs++];
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
            undecodable(sn, "a worker heartbeat");
        }
    }
    answered(sn, status);
}

static void fill_regime(ops_regime_row_t *r, const cga_regime_change_t *m) {
    copy_str(r->symbol, sizeof r->symbol, m->symbol);
    r->regime = m->to;
    r->from = m->from;
    r->seq = m->seq;
    r->ws = m->wstart;
    r->conf = m->confidence;
    r->ts_us = m->ts_us;
}

static void on_regime(int status, const char *data, size_t len, void *arg) {
    ops_snapper_t *sn = arg;
    ops_snapshot_t *s = &sn->snap;
    cga_regime_change_t m;
    if (status == CGA_OK) {
        if (cga_proto_decode_regime_change(sn->reader, data, len, &m) == CGA_OK) {
            s->regimes = cga_realloc(s->regimes, (s->nregimes + 1) * sizeof *s->regimes);
            fill_regime(&s->regimes[s->nregimes++], &m);
        } else {
            undecodable(sn, "a regime state");
        }
    }
    answered(sn, status);
}

static void get_each(ops_snapper_t *sn, int status, const char *const *names, size_t n,
                     cga_state_get_cb cb) {
    if (status == CGA_OK && !sn->closing) {
        for (size_t i = 0; i < n; i++) {
            int rc = cga_state_get(sn->state, names[i], cb, sn);
            if (rc < 0) {
                if (!sn->snap.err) sn->snap.err = rc;
            } else {
                sn->pending++;
            }
        }
    }
    answered(sn, status);
}

static void on_workers(int status, const char *const *names, size_t n, void *arg) {
    get_each(arg, status, names, n, on_worker);
}

static void on_regimes(int status, const char *const *names, size_t n, void *arg) {
    get_each(arg, status, names, n, on_regime);
}

/* XREVRANGE: newest first; stored oldest first. */
static void on_changes(int status, redisReply *reply, void *arg) {
    ops_snapper_t *sn = arg;
    ops_snapshot_t *s = &sn->snap;
    if (status == CGA_OK && reply->type != REDIS_REPLY_ARRAY) status = CGA_EPROTO;
    if (status == CGA_OK && reply->elements) {
        s->changes = cga_realloc(s->changes, reply->elements * sizeof *s->changes);
        for (size_t i = reply->elements; i-- > 0;) {
            cga_regime_change_t m;
            const char *why;
            if (ops_rlog_decode(sn->reader, reply->element[i], &m, &why) == CGA_OK)
                fill_regime(&s->changes[s->nchanges++], &m);
            else
                undecodable(sn, "a regime log entry");
        }
    }
    answered(sn, status);
}

int ops_snapper_create(ops_snapper_t **out, struct uv_loop_s *loop, struct cga_redis_s *redis,
                       const char *ns, size_t recent) {
    ops_snapper_t *sn = cga_calloc(1, sizeof *sn);
    sn->redis = redis;
    sn->recent = recent;
    cga_key(sn->log_key, sizeof sn->log_key, ns, CGA_KIND_STATE, "regime_log", NULL);
    int rc = cga_state_create(&sn->state, redis, ns);
    if (rc == CGA_OK) rc = cga_proto_reader_create(&sn->reader, NULL);
    for (int i = 0; i < OPS_NQUEUES && rc == CGA_OK; i++) {
        cga_queue_opts_t o;
        cga_queue_opts_init(&o);
        o.ns = ns;
        o.name = ops_queue_names[i];
        o.group = group_names[i];
        rc = cga_queue_create(&sn->q[i], loop, redis, &o);
        sn->reqs[i] = (info_req_t){sn, i};
    }
    if (rc != CGA_OK) {
        release(sn); /* frees sn once the queues created are closed */
        return rc;
    }
    *out = sn;
    return CGA_OK;
}

int ops_snapper_busy(const ops_snapper_t *sn) {
    return sn->pending > 0;
}

int ops_snapper_take(ops_snapper_t *sn, ops_snap_cb cb, void *arg) {
    if (sn->pending || sn->closing) return CGA_EEXIST;
    ops_snapshot_t *s = &sn->snap;
    ops_lab_row_t *labs = s->labs;
    ops_regime_row_t *regimes = s->regimes, *changes = s->changes;
    memset(s, 0, sizeof *s);
    s->labs = labs; /* the arrays are reused (nlabs etc. are 0 again) */
    s->regimes = regimes;
    s->changes = changes;
    s->with_changes = sn->recent > 0;
    sn->cb = cb;
    sn->arg = arg;
    sn->pending = 1; /* held while issuing */
    int first = CGA_OK;
    for (int i = 0; i < OPS_NQUEUES; i++) {
        int rc = cga_queue_info(sn->q[i], on_queue_info, &sn->reqs[i]);
        if (rc < 0) {
            if (!first) first = rc;
        } else {
            sn->pending++;
        }
    }
    int rc = cga_state_get(sn->state, CGA_STATE_RESOURCES, on_sem, sn);
    if (rc == CGA_OK) sn->pending++;
    if (rc < 0 && !first) first = rc;
    if ((rc = cga_state_scan(sn->state, "worker:*", on_workers, sn)) == CGA_OK) sn->pending++;
    if (rc < 0 && !first) first = rc;
    if ((rc = cga_state_scan(sn->state, "regime:*", on_regimes, sn)) == CGA_OK) sn->pending++;
    if (rc < 0 && !first) first = rc;
    if (sn->recent) {
        char count[24];
        snprintf(count, sizeof count, "%zu", sn->recent);
        rc = cga_redis_command(sn->redis, CGA_REDIS_WAIT, on_changes, sn,
                               "XREVRANGE %s + - COUNT %s", sn->log_key, count);
        if (rc == CGA_OK) sn->pending++;
        if (rc < 0 && !first) first = rc;
    }
    if (sn->pending == 1 && first) { /* nothing was sent: refuse without calling back */
        sn->pending = 0;
        return first;
    }
    if (first && !s->err) s->err = first;
    answered(sn, CGA_OK);
    return CGA_OK;
}

void ops_snapper_close(ops_snapper_t *sn, void (*done)(void *arg), void *arg) {
    if (!sn || sn->closing) return;
    sn->closing = 1;
    sn->done = done;
    sn->done_arg = arg;
    if (!sn->pending) release(sn);
}

void ops_snapshot_json(FILE *f, const ops_snapshot_t *s, uint64_t now) {
    fputs("\"queues\":{", f);
    for (int i = 0; i < OPS_NQUEUES; i++) {
        const cga_queue_info_t *q = &s->queues[i];
        fprintf(f, "%s\"%s\":{\"length\":%" PRIu64 ",\"lag\":%" PRIu64 ",\"pending\":%" PRIu64
                ",\"dead\":%" PRIu64 ",\"consumers\":%" PRIu64 ",\"groups\":%" PRIu64 "}",
                i ? "," : "", ops_queue_names[i], q->length, q->lag, q->pending, q->dead,
                q->consumers, q->groups);
    }
    fputs("},\"semaphore\":", f);
    if (s->sem_found) {
        fprintf(f, "{\"level\":\"%s\",\"backlog\":%" PRIu64 ",\"labs\":%" PRIu64
                ",\"used_memory\":%" PRIu64 ",\"maxmemory\":%" PRIu64 ",\"reason\":",
                cga_level_name(s->sem.level), s->sem.backlog, s->sem.labs, s->sem.used_memory,
                s->sem.maxmemory);
        ops_json_str(f, s->sem_reason, strlen(s->sem_reason));
        fprintf(f, ",\"age_s\":%.3f}", ops_age_s(s->sem.ts_us, now));
    } else {
        fputs("null", f);
    }
    fputs(",\"labs\":[", f);
    for (size_t i = 0; i < s->nlabs; i++) {
        const ops_lab_row_t *r = &s->labs[i];
        fputs(i ? ",{\"id\":" : "{\"id\":", f);
        ops_json_str(f, r->id, strlen(r->id));
        fputs(",\"host\":", f);
        ops_json_str(f, r->host, strlen(r->host));
        fputs(",\"plugins\":", f);
        ops_json_str(f, r->plugins, strlen(r->plugins));
        fprintf(f, ",\"pid\":%" PRIu32 ",\"processed\":%" PRIu64 ",\"failed\":%" PRIu64
                ",\"inflight\":%" PRIu32 ",\"uptime_s\":%.3f,\"age_s\":%.3f,\"stalled\":%s",
                r->pid, r->processed, r->failed, r->inflight, ops_age_s(r->started_us, now),
                ops_age_s(r->ts_us, now), r->stalled ? "true" : "false");
        if (r->last_ack_us)
            fprintf(f, ",\"last_ack_age_s\":%.3f}", ops_age_s(r->last_ack_us, now));
        else
            fputs(",\"last_ack_age_s\":null}", f);
    }
    const char *names[2] = {"regimes", "changes"};
    const ops_regime_row_t *rows[2] = {s->regimes, s->changes};
    size_t counts[2] = {s->nregimes, s->nchanges};
    for (int k = 0; k < 2; k++) {
        if (k == 1 && !s->with_changes) break;
        fprintf(f, "],\"%s\":[", names[k]);
        for (size_t i = 0; i < counts[k]; i++) {
            const ops_regime_row_t *r = &rows[k][i];
            fputs(i ? ",{\"symbol\":" : "{\"symbol\":", f);
            ops_json_str(f, r->symbol, strlen(r->symbol));
            fprintf(f, ",\"regime\":\"%s\",\"from\":\"%s\",\"seq\":%" PRIu64 ",\"ws\":%lld"
                    ",\"confidence\":%.4f,\"ts_ms\":%" PRIu64 ",\"age_s\":%.3f}",
                    cga_regime_name(r->regime), cga_regime_name(r->from), r->seq,
                    (long long)r->ws, r->conf, r->ts_us / 1000, ops_age_s(r->ts_us, now));
        }
    }
    fprintf(f, "],\"undecodable\":%zu", s->undecodable);
}

void ops_semaphore_line(char *out, size_t n, const ops_snapshot_t *s, uint64_t now) {
    if (!s->sem_found) {
        snprintf(out, n, "semaphore  none published (no active `cgalpha-ops run`)");
        return;
    }
    char used[32], max[32];
    ops_fmt_bytes(used, sizeof used, s->sem.used_memory);
    if (s->sem.maxmemory)
        ops_fmt_bytes(max, sizeof max, s->sem.maxmemory);
    else
        snprintf(max, sizeof max, "no maxmemory");
    snprintf(out, n, "semaphore  %s  backlog %" PRIu64 " tasks  labs %" PRIu64
             "  memory %s / %s  age %.1f s", cga_level_name(s->sem.level), s->sem.backlog,
             s->sem.labs, used, max, ops_age_s(s->sem.ts_us, now));
}

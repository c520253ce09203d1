/* cgalpha-nexus: folds lab reports into a market regime per symbol and publishes each change.
 *
 * One active nexus per namespace (lock <ns>:lock:nexus); others wait as standbys and take over
 * within the lock's TTL. The active one loads the current regimes from Redis, then loops:
 * claim a batch of report entries -> fold them (fold.c) -> commit in one MULTI/EXEC: for each
 * change SET <ns>:state:regime:<sym>, XADD <ns>:state:regime_log, PUBLISH
 * <ns>:channel:market_regime, then XACK the entries. A commit that fails is retried as it is
 * (the fold already moved on, so the commit must not be lost); entries are acknowledged only
 * with their effects. */
#define CGA_LOG_COMPONENT "nexus"

#include <hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "cgalpha/alloc.h"
#include "cgalpha/app.h"
#include "cgalpha/clock.h"
#include "cgalpha/err.h"
#include "cgalpha/keys.h"
#include "cgalpha/lock.h"
#include "cgalpha/log.h"
#include "cgalpha/metrics.h"
#include "cgalpha/proto.h"
#include "cgalpha/queue.h"
#include "cgalpha/redis.h"
#include "cgalpha/state.h"
#include "fold.h"

#define REGIME_STATE_TTL_MS 300000u /* DESIGN: state keys live at most 5 min ... */
#define REGIME_REFRESH_MS 60000u    /* ... and the active nexus keeps them alive */
#define RETRY_MIN_MS 100u
#define RETRY_MAX_MS 2000u
#define LOG_RECOVER_COUNT "10000"
#define ID_LEN 48

#define INT_SETTING(e, f, d, lo, hi, h) \
    {.env = e, .flag = f, .type = CGA_SET_INT, .def = d, .min = lo, .max = hi, .help = h}

static const cga_setting_t nexus_settings[] = {
    INT_SETTING("NEXUS_HYSTERESIS", "hysteresis", "2", 1, 8,
                "consecutive settled windows that must agree before a regime changes"),
    INT_SETTING("NEXUS_KEEP_WINDOWS", "keep-windows", "16", 2, 64,
                "windows kept per symbol (late reports for older windows are ignored)"),
    INT_SETTING("NEXUS_CLAIM_COUNT", "claim-count", "64", 1, 10000, "report entries per claim"),
    INT_SETTING("NEXUS_BLOCK_MS", "block-ms", "1000", 1, 60000,
                "how long a claim waits for reports"),
    INT_SETTING("NEXUS_LEASE_MS", "lease-ms", "15000", 100, 86400000,
                "report entries idle this long (a dead nexus's) are reclaimed"),
    INT_SETTING("NEXUS_MAX_DELIVERIES", "max-deliveries", "5", 1, 1000,
                "deliveries of a report entry before it is dead-lettered"),
    INT_SETTING("NEXUS_LOCK_TTL_MS", "lock-ttl-ms", "10000", 300, 600000,
                "TTL of <ns>:lock:nexus: a standby takes over within it after the active dies"),
    INT_SETTING("NEXUS_REGIME_LOG_MAX", "regime-log-max", "100000", 100, 100000000,
                "regime changes kept in <ns>:state:regime_log (approximate cap)"),
    INT_SETTING("NEXUS_GRACE_MS", "grace-ms", "10000", 0, 600000,
                "on SIGTERM, how long to finish the batch in hand before exiting"),
    {.env = "NEXUS_ID", .flag = "id", .type = CGA_SET_STR,
     .help = "consumer name (default: host-pid-random)"},
    INT_SETTING("NEXUS_STALL_MS", "stall-ms", "60000", 0, 86400000,
                "active and stalled when reports wait and nothing was folded for this long (0: "
                "never)"),
    {.env = "NEXUS_METRICS_FILE", .flag = "metrics-file", .type = CGA_SET_STR,
     .help = "write the metrics (Prometheus text) to this file every second and at exit"},
};

typedef enum { ST_STANDBY, ST_LOADING, ST_ACTIVE, ST_STOPPING } nx_state_t;

typedef struct change_rec_s {
    char key[CGA_KEY_MAX]; /* <ns>:state:regime:<sym> */
    size_t off, len;       /* encoded RegimeChange in commit.buf */
} change_rec_t;

typedef struct commit_s {
    char *buf;
    size_t len, cap;
    change_rec_t *changes;
    size_t nchanges, changes_cap;
    char (*ids)[ID_LEN];
    size_t nids, ids_cap;
} commit_t;

typedef struct nexus_s {
    cga_app_t *app;
    uv_loop_t *loop;
    cga_redis_t *redis;
    const char *ns;
    const char *id;
    cga_queue_t *reports;
    cga_lock_t *lock;
    cga_state_t *state;
    cga_proto_reader_t *reader;
    cga_proto_writer_t *writer;
    nx_fold_t *fold;
    cga_metrics_t *metrics;
    cga_counter_t *m_reports, *m_changes, *m_dead, *m_entries;
    cga_histogram_t *m_latency;

    nx_state_t st;
    unsigned max_deliveries;
    size_t claim_count;
    unsigned block_ms, lease_ms, grace_ms, regime_log_max;
    char log_key[CGA_KEY_MAX];
    char channel_key[CGA_KEY_MAX];

    uv_timer_t retry;      /* next loop step after an error */
    uv_timer_t refresh;    /* keeps regime state keys alive */
    uv_timer_t grace;      /* bounds shutdown */
    uv_timer_t metrics_tick; /* writes metrics_file, checks for a stall */
    unsigned stall_ms;
    uint64_t last_progress_ms; /* a claim that returned entries, or a commit */
    uint64_t backlog;          /* lag + pending of the group, at the last check */
    int info_pending, stalled;
    const char *metrics_file;
    int metrics_file_failed;
    unsigned retry_ms;
    int busy;              /* a claim, reclaim or commit is outstanding */
    int dead_pending;      /* dead-letter calls outstanding */
    int load_pending;      /* state GETs outstanding while loading */
    uint64_t next_reclaim_ms;
    int outage_logged;
    int exit_code;
    commit_t commit;
} nexus_t;

static void loop_step(nexus_t *nx);
static void become_standby(nexus_t *nx);
static void finish_if_idle(nexus_t *nx);

/* ---- commit buffer --------------------------------------------------------------------- */

static void commit_reset(commit_t *c) {
    c->len = 0;
    c->nchanges = 0;
    c->nids = 0;
}

static void commit_free(commit_t *c) {
    free(c->buf);
    free(c->changes);
    free(c->ids);
    memset(c, 0, sizeof *c);
}

static void commit_add_id(commit_t *c, const char *id) {
    cga_grow((void **)&c->ids, &c->ids_cap, c->nids + 1, sizeof *c->ids);
    snprintf(c->ids[c->nids++], ID_LEN, "%s", id);
}

static void commit_add_change(nexus_t *nx, const nx_change_t *ch) {
    cga_regime_change_t m = {
        .symbol = {ch->symbol, ch->symbol_len},
        .seq = ch->seq,
        .from = ch->from,
        .to = ch->to,
        .wstart = ch->wstart,
        .confidence = ch->confidence,
        .ts_us = cga_clock_wall_us(),
    };
    const char *data;
    size_t len;
    int rc = cga_proto_encode_regime_change(nx->writer, &m, &data, &len);
    if (rc != CGA_OK) { /* cannot happen for a fold-made change; never drop it silently */
        CGA_LOG(CGA_LOG_ERROR, rc, "cannot encode regime change for %.*s", (int)ch->symbol_len,
                ch->symbol);
        return;
    }
    commit_t *c = &nx->commit;
    cga_grow((void **)&c->buf, &c->cap, c->len + len, 1);
    memcpy(c->buf + c->len, data, len);
    cga_grow((void **)&c->changes, &c->changes_cap, c->nchanges + 1, sizeof *c->changes);
    change_rec_t *r = &c->changes[c->nchanges++];
    char sym[40];
    snprintf(sym, sizeof sym, "%.*s", (int)ch->symbol_len, ch->symbol);
    cga_key(r->key, sizeof r->key, nx->ns, CGA_KIND_STATE, "regime", sym);
    r->off = c->len;
    r->len = len;
    c->len += len;

    time_t secs = (time_t)(ch->wstart / 1000);
    struct tm tm;
    char when[32];
    gmtime_r(&secs, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    CGA_LOG(CGA_LOG_INFO, 0, "regime %s: %s -> %s (seq %" PRIu64 ", window %s, confidence %.2f)",
            sym, cga_regime_name(ch->from), cga_regime_name(ch->to), ch->seq, when,
            ch->confidence);
}

/* ---- errors and retries ---------------------------------------------------------------- */

static void on_retry(uv_timer_t *t) { loop_step(t->data); }

static void retry_later(nexus_t *nx, int rc, const char *what) {
    if (!nx->outage_logged) {
        CGA_LOG(CGA_LOG_ERROR, rc, "%s failed; retrying until Redis answers", what);
        nx->outage_logged = 1;
    }
    nx->retry_ms = nx->retry_ms ? nx->retry_ms * 2 : RETRY_MIN_MS;
    if (nx->retry_ms > RETRY_MAX_MS) nx->retry_ms = RETRY_MAX_MS;
    uv_timer_start(&nx->retry, on_retry, nx->retry_ms, 0);
}

static void recovered(nexus_t *nx) {
    if (nx->outage_logged) CGA_LOG(CGA_LOG_INFO, 0, "Redis answers again; consuming");
    nx->outage_logged = 0;
    nx->retry_ms = 0;
}

/* ---- commit: effects and acknowledgements in one transaction ----------------------------- */

static void on_exec(int status, redisReply *reply, void *arg) {
    nexus_t *nx = arg;
    nx->busy = 0;
    if (status == CGA_OK && reply && reply->type == REDIS_REPLY_ARRAY) {
        nx->last_progress_ms = cga_clock_mono_ms();
        cga_counter_add(nx->m_changes, nx->commit.nchanges);
        commit_reset(&nx->commit);
        recovered(nx);
        loop_step(nx);
        return;
    }
    if (status == CGA_OK) status = CGA_EREPLY; /* nil: the transaction was aborted */
    retry_later(nx, status, "committing regime changes and acknowledgements");
}

static int send_commit(nexus_t *nx) {
    commit_t *c = &nx->commit;
    cga_redis_t *r = nx->redis;
    const unsigned ff = CGA_REDIS_FAILFAST; /* a transaction is sent whole or not at all */
    int rc = cga_redis_command(r, ff, NULL, NULL, "MULTI");
    if (rc != CGA_OK) return rc;
    char ttl[16], cap[24];
    snprintf(ttl, sizeof ttl, "%u", REGIME_STATE_TTL_MS);
    snprintf(cap, sizeof cap, "%u", nx->regime_log_max);
    for (size_t i = 0; i < c->nchanges && rc == CGA_OK; i++) {
        const change_rec_t *ch = &c->changes[i];
        const char *msg = c->buf + ch->off;
        const char *set[] = {"SET", ch->key, msg, "PX", ttl};
        size_t setl[] = {3, strlen(ch->key), ch->len, 2, strlen(ttl)};
        rc = cga_redis_commandv(r, ff, 0, NULL, NULL, 5, set, setl);
        if (rc != CGA_OK) break;
        const char *xadd[] = {"XADD", nx->log_key, "MAXLEN", "~", cap, "*", CGA_PROTO_FIELD, msg};
        size_t xaddl[] = {4, strlen(nx->log_key), 6, 1, strlen(cap), 1, 1, ch->len};
        rc = cga_redis_commandv(r, ff, 0, NULL, NULL, 8, xadd, xaddl);
        if (rc != CGA_OK) break;
        const char *pub[] = {"PUBLISH", nx->channel_key, msg};
        size_t publ[] = {7, strlen(nx->channel_key), ch->len};
        rc = cga_redis_commandv(r, ff, 0, NULL, NULL, 3, pub, publ);
    }
    if (rc == CGA_OK && c->nids > 0) {
        size_t argc = 3 + c->nids;
        const char **argv = cga_malloc(argc * sizeof *argv);
        size_t *argl = cga_malloc(argc * sizeof *argl);
        argv[0] = "XACK";
        argv[1] = cga_queue_key(nx->reports);
        argv[2] = CGA_GROUP_REPORTS;
        for (size_t i = 0; i < c->nids; i++) argv[3 + i] = c->ids[i];
        for (size_t i = 0; i < argc; i++) argl[i] = strlen(argv[i]);
        rc = cga_redis_commandv(r, ff, 0, NULL, NULL, (int)argc, argv, argl);
        free(argv);
        free(argl);
    }
    if (rc != CGA_OK) {
        /* Part of the transaction may be queued on the connection: DISCARD it. If even that is
         * refused, the connection is down and Redis drops the open MULTI with it. */
        cga_redis_command(r, ff, NULL, NULL, "DISCARD");
        return rc;
    }
    rc = cga_redis_command(r, ff, on_exec, nx, "EXEC");
    if (rc != CGA_OK) cga_redis_command(r, ff, NULL, NULL, "DISCARD");
    return rc;
}

static void commit(nexus_t *nx) {
    if (nx->commit.nchanges == 0 && nx->commit.nids == 0) {
        loop_step(nx);
        return;
    }
    nx->busy = 1;
    int rc = send_commit(nx);
    if (rc != CGA_OK) {
        nx->busy = 0;
        retry_later(nx, rc, "committing regime changes and acknowledgements");
    }
}

/* ---- consuming ------------------------------------------------------------------------- */

static void on_dead_lettered(int status, void *arg) {
    nexus_t *nx = arg;
    nx->dead_pending--;
    if (status == CGA_OK)
        cga_counter_add(nx->m_dead, 1);
    else if (status == CGA_ENOTFOUND) /* acknowledged meanwhile, or taken by another nexus */
        CGA_LOG(CGA_LOG_INFO, 0, "a report entry to dead-letter was no longer pending here");
    else
        CGA_LOG(CGA_LOG_WARN, status, "dead-lettering failed; the entry stays pending");
    finish_if_idle(nx);
}

static void dead_letter(nexus_t *nx, const cga_queue_entry_t *e, const char *reason) {
    CGA_LOG(CGA_LOG_WARN, 0, "report entry %s dead-lettered: %s", e->id, reason);
    nx->dead_pending++;
    int rc = cga_queue_dead_letter(nx->reports, e, reason, on_dead_lettered, nx);
    if (rc != CGA_OK) {
        nx->dead_pending--;
        CGA_LOG(CGA_LOG_WARN, rc, "dead-lettering %s failed; the entry stays pending", e->id);
    }
}

static void fold_entry(nexus_t *nx, const cga_queue_entry_t *e) {
    if (!e->data) {
        dead_letter(nx, e, "entry has no field \"" CGA_PROTO_FIELD "\"");
        return;
    }
    if (e->deliveries > nx->max_deliveries) {
        char why[96];
        snprintf(why, sizeof why, "delivered %" PRIu64 " times (limit %u)", e->deliveries,
                 nx->max_deliveries);
        dead_letter(nx, e, why);
        return;
    }
    const cga_report_t *reps;
    size_t n;
    int rc = cga_proto_decode_reports(nx->reader, e->data, e->len, &reps, &n);
    if (rc != CGA_OK) {
        dead_letter(nx, e, cga_proto_reader_error(nx->reader));
        return;
    }
    uint64_t now = cga_clock_wall_us();
    for (size_t i = 0; i < n; i++) {
        nx_change_t ch;
        if (nx_fold_apply(nx->fold, &reps[i], &ch)) commit_add_change(nx, &ch);
        if (reps[i].enq_us && now > reps[i].enq_us)
            cga_histogram_observe(nx->m_latency, (double)(now - reps[i].enq_us) / 1e6);
    }
    cga_counter_add(nx->m_reports, n);
    commit_add_id(&nx->commit, e->id);
}

static void on_batch(int status, cga_queue_batch_t *b, void *arg) {
    nexus_t *nx = arg;
    nx->busy = 0;
    if (status != CGA_OK) {
        cga_queue_batch_free(b);
        if (nx->st == ST_ACTIVE) retry_later(nx, status, "claiming reports");
        else finish_if_idle(nx);
        return;
    }
    recovered(nx);
    if (b->n) nx->last_progress_ms = cga_clock_mono_ms();
    cga_counter_add(nx->m_entries, b->n);
    for (size_t i = 0; i < b->n; i++) fold_entry(nx, &b->entries[i]);
    cga_queue_batch_free(b);
    commit(nx); /* even when stopping: what was folded is committed before exit */
}

static void loop_step(nexus_t *nx) {
    if (nx->busy) return;
    if (nx->commit.nchanges || nx->commit.nids) { /* a failed commit first, as it was */
        commit(nx);
        return;
    }
    if (nx->st != ST_ACTIVE) {
        finish_if_idle(nx);
        return;
    }
    nx->busy = 1;
    int rc;
    uint64_t now = cga_clock_mono_ms();
    if (now >= nx->next_reclaim_ms) {
        nx->next_reclaim_ms = now + nx->lease_ms / 2;
        rc = cga_queue_reclaim(nx->reports, nx->claim_count, on_batch, nx);
    } else {
        rc = cga_queue_claim(nx->reports, nx->claim_count, nx->block_ms, on_batch, nx);
    }
    if (rc != CGA_OK) {
        nx->busy = 0;
        retry_later(nx, rc, "claiming reports");
    }
}

/* ---- taking over: reload regimes, then consume ----------------------------------------- */

static void start_consuming(nexus_t *nx) {
    if (nx->st != ST_LOADING) return;
    nx->st = ST_ACTIVE;
    nx->next_reclaim_ms = 0; /* reclaim the previous leader's pending entries first */
    CGA_LOG(CGA_LOG_INFO, 0, "active: %zu symbols loaded; consuming %s", nx_fold_symbols(nx->fold),
            cga_queue_key(nx->reports));
    loop_step(nx);
}

static void on_log_range(int status, redisReply *reply, void *arg) {
    nexus_t *nx = arg;
    if (status == CGA_OK && reply->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < reply->elements; i++) {
            redisReply *e = reply->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) continue;
            redisReply *f = e->element[1];
            for (size_t k = 0; f->type == REDIS_REPLY_ARRAY && k + 1 < f->elements; k += 2) {
                if (strcmp(f->element[k]->str, CGA_PROTO_FIELD) != 0) continue;
                cga_regime_change_t m;
                if (cga_proto_decode_regime_change(nx->reader, f->element[k + 1]->str,
                                                   f->element[k + 1]->len, &m) == CGA_OK)
                    nx_fold_restore(nx->fold, m.symbol, m.to, m.seq);
            }
        }
    } else if (status != CGA_OK) {
        CGA_LOG(CGA_LOG_WARN, status, "could not read %s; sequence numbers restart from state",
                nx->log_key);
    }
    start_consuming(nx);
}

static void on_group(int status, void *arg) {
    nexus_t *nx = arg;
    if (status != CGA_OK) {
        CGA_LOG(CGA_LOG_WARN, status, "cannot create group %s on %s; retrying", CGA_GROUP_REPORTS,
                cga_queue_key(nx->reports));
    }
    /* the regime log has the highest sequence number of every symbol whose state expired */
    const char *argv[] = {"XREVRANGE", nx->log_key, "+", "-", "COUNT", LOG_RECOVER_COUNT};
    size_t argl[] = {9, strlen(nx->log_key), 1, 1, 5, strlen(LOG_RECOVER_COUNT)};
    if (cga_redis_commandv(nx->redis, CGA_REDIS_WAIT, 0, on_log_range, nx, 6, argv, argl) !=
        CGA_OK)
        start_consuming(nx);
}

static void load_done_one(nexus_t *nx) {
    if (--nx->load_pending > 0) return;
    if (cga_queue_ensure_group(nx->reports, on_group, nx) != CGA_OK) on_group(CGA_ENOTCONN, nx);
}

static void on_state_get(int status, const char *data, size_t len, void *arg) {
    nexus_t *nx = arg;
    cga_regime_change_t m;
    if (status == CGA_OK && cga_proto_decode_regime_change(nx->reader, data, len, &m) == CGA_OK)
        nx_fold_restore(nx->fold, m.symbol, m.to, m.seq);
    load_done_one(nx);
}

static void on_state_scan(int status, const char *const *names, size_t n, void *arg) {
    nexus_t *nx = arg;
    if (status != CGA_OK)
        CGA_LOG(CGA_LOG_WARN, status, "could not list regime state; starting from the log");
    nx->load_pending = 1;
    for (size_t i = 0; status == CGA_OK && i < n; i++) {
        nx->load_pending++;
        if (cga_state_get(nx->state, names[i], on_state_get, nx) != CGA_OK) nx->load_pending--;
    }
    load_done_one(nx);
}

static void on_refresh(uv_timer_t *t);

static void on_lost(void *arg) {
    nexus_t *nx = arg;
    if (nx->st == ST_STOPPING) return;
    CGA_LOG(CGA_LOG_ERROR, 0, "lost %s:lock:nexus; stopping and going back to standby", nx->ns);
    become_standby(nx);
}

static void on_lock(int status, int acquired, void *arg) {
    nexus_t *nx = arg;
    if (!acquired || nx->st != ST_STANDBY) return;
    CGA_LOG(CGA_LOG_INFO, 0, "acquired %s:lock:nexus; loading regimes", nx->ns);
    nx->st = ST_LOADING;
    nx_fold_clear(nx->fold);
    uv_timer_start(&nx->refresh, on_refresh, REGIME_REFRESH_MS, REGIME_REFRESH_MS);
    if (cga_state_scan(nx->state, "regime:*", on_state_scan, nx) != CGA_OK)
        on_state_scan(CGA_ENOTCONN, NULL, 0, nx);
}

static void become_standby(nexus_t *nx) {
    nx->st = ST_STANDBY;
    uv_timer_stop(&nx->refresh);
    uv_timer_stop(&nx->retry);
    CGA_LOG(CGA_LOG_INFO, 0, "standby: waiting for %s:lock:nexus", nx->ns);
    int rc = cga_lock_campaign(nx->lock, 1000, on_lock, nx);
    if (rc != CGA_OK) {
        CGA_LOG(CGA_LOG_ERROR, rc, "cannot campaign for the nexus lock");
        nx->exit_code = CGA_EXIT_FAILURE;
        cga_app_stop(nx->app);
    }
}

/* Keeps every known regime's state key alive while this nexus is active. */
static void refresh_one(cga_str_t symbol, cga_regime_t regime, uint64_t seq, void *arg) {
    nexus_t *nx = arg;
    (void)regime;
    (void)seq;
    char sym[40], key[CGA_KEY_MAX], ttl[16];
    snprintf(sym, sizeof sym, "%.*s", (int)symbol.len, symbol.ptr);
    cga_key(key, sizeof key, nx->ns, CGA_KIND_STATE, "regime", sym);
    snprintf(ttl, sizeof ttl, "%u", REGIME_STATE_TTL_MS);
    cga_redis_command(nx->redis, CGA_REDIS_FAILFAST, NULL, NULL, "PEXPIRE %s %s", key, ttl);
}

static void on_refresh(uv_timer_t *t) {
    nexus_t *nx = t->data;
    if (nx->st == ST_ACTIVE) nx_fold_each(nx->fold, refresh_one, nx);
}

static void write_metrics(nexus_t *nx) {
    if (!nx->metrics_file) return;
    cga_app_metrics_refresh(nx->app);
    int rc = cga_metrics_write_file(nx->metrics, nx->metrics_file);
    if (rc != CGA_OK && !nx->metrics_file_failed)
        CGA_LOG(CGA_LOG_WARN, rc, "cannot write the metrics file %s", nx->metrics_file);
    nx->metrics_file_failed = rc != CGA_OK;
}

/* Stalled: active, reports wait (lag + pending of the group) and nothing was claimed or
 * committed for stall_ms. Said once when it starts and once when it ends. */
static void check_stall(nexus_t *nx) {
    uint64_t now = cga_clock_mono_ms();
    int waits = nx->st == ST_ACTIVE && nx->backlog > 0;
    if (!waits) nx->last_progress_ms = now;
    int stalled = waits && nx->stall_ms && now - nx->last_progress_ms >= nx->stall_ms;
    if (stalled && !nx->stalled)
        CGA_LOG(CGA_LOG_ERROR, 0,
                "stalled: %" PRIu64 " report entries waiting, nothing folded for %" PRIu64 " s",
                nx->backlog, (now - nx->last_progress_ms) / 1000);
    else if (!stalled && nx->stalled)
        CGA_LOG(CGA_LOG_INFO, 0, "no longer stalled");
    nx->stalled = stalled;
}

static void on_backlog(int status, const cga_queue_info_t *info, void *arg) {
    nexus_t *nx = arg;
    nx->info_pending = 0;
    if (status == CGA_OK) nx->backlog = info->lag + info->pending;
    check_stall(nx);
}

/* /health: the role, the backlog and the stall flag; down (503) while stalled. */
static void nexus_health(cga_health_t *h, void *arg) {
    nexus_t *nx = arg;
    static const char *const roles[] = {"standby", "loading", "active", "stopping"};
    cga_health_str(h, "role", roles[nx->st]);
    cga_health_int(h, "backlog", (int64_t)nx->backlog);
    cga_health_bool(h, "stalled", nx->stalled);
    if (nx->stalled) cga_health_status(h, CGA_HEALTH_DOWN, "stalled: reports wait, nothing folded");
}

static void on_metrics_tick(uv_timer_t *t) {
    nexus_t *nx = t->data;
    write_metrics(nx);
    if (nx->stall_ms && nx->st == ST_ACTIVE && !nx->info_pending &&
        cga_queue_info(nx->reports, on_backlog, nx) == CGA_OK)
        nx->info_pending = 1;
}

/* ---- shutdown -------------------------------------------------------------------------- */

static void finish_if_idle(nexus_t *nx) {
    if (nx->st != ST_STOPPING || nx->busy || nx->dead_pending) return;
    if (nx->commit.nchanges || nx->commit.nids) return; /* retrying: the grace timer bounds it */
    cga_app_stop(nx->app);
}

static void on_grace(uv_timer_t *t) {
    nexus_t *nx = t->data;
    CGA_LOG(CGA_LOG_WARN, 0,
            "grace period over with %zu entries unacknowledged; they stay pending and the next "
            "active nexus reclaims them",
            nx->commit.nids);
    cga_app_stop(nx->app);
}

static void on_signal(int signum, void *arg) {
    nexus_t *nx = arg;
    CGA_LOG(CGA_LOG_INFO, 0, "signal %d: finishing the batch in hand, then exiting", signum);
    nx->st = ST_STOPPING;
    uv_timer_stop(&nx->refresh);
    uv_timer_start(&nx->grace, on_grace, nx->grace_ms, 0);
    if (uv_is_active((uv_handle_t *)&nx->retry)) { /* waiting for Redis: nothing in hand */
        uv_timer_stop(&nx->retry);
    }
    finish_if_idle(nx);
}

/* ---- main ------------------------------------------------------------------------------ */

static int setup(nexus_t *nx) {
    const cga_config_t *cfg = cga_app_config(nx->app);
    nx->loop = cga_app_loop(nx->app);
    nx->redis = cga_app_redis(nx->app);
    nx->ns = cga_app_ns(nx->app);
    nx->id = cga_config_str(cfg, "NEXUS_ID");
    if (!nx->id) nx->id = cga_app_instance_id(nx->app);
    nx->max_deliveries = (unsigned)cga_config_int(cfg, "NEXUS_MAX_DELIVERIES");
    nx->claim_count = (size_t)cga_config_int(cfg, "NEXUS_CLAIM_COUNT");
    nx->block_ms = (unsigned)cga_config_int(cfg, "NEXUS_BLOCK_MS");
    nx->lease_ms = (unsigned)cga_config_int(cfg, "NEXUS_LEASE_MS");
    nx->grace_ms = (unsigned)cga_config_int(cfg, "NEXUS_GRACE_MS");
    nx->regime_log_max = (unsigned)cga_config_int(cfg, "NEXUS_REGIME_LOG_MAX");
    nx->metrics_file = cga_config_str(cfg, "NEXUS_METRICS_FILE");
    nx->stall_ms = (unsigned)cga_config_int(cfg, "NEXUS_STALL_MS");
    nx->last_progress_ms = cga_clock_mono_ms();
    uv_timer_init(nx->loop, &nx->retry);
    uv_timer_init(nx->loop, &nx->refresh);
    uv_timer_init(nx->loop, &nx->grace);
    uv_timer_init(nx->loop, &nx->metrics_tick);
    nx->retry.data = nx->refresh.data = nx->grace.data = nx->metrics_tick.data = nx;
    uv_unref((uv_handle_t *)&nx->grace);
    cga_key(nx->log_key, sizeof nx->log_key, nx->ns, CGA_KIND_STATE, "regime_log", NULL);
    cga_key(nx->channel_key, sizeof nx->channel_key, nx->ns, CGA_KIND_CHANNEL,
            CGA_CHANNEL_REGIME, NULL);

    cga_queue_opts_t qo;
    cga_queue_opts_init(&qo);
    qo.ns = nx->ns;
    qo.name = CGA_QUEUE_REPORTS;
    qo.group = CGA_GROUP_REPORTS;
    qo.consumer = nx->id;
    qo.lease_ms = nx->lease_ms;
    qo.max_deliveries = nx->max_deliveries;
    int rc = cga_queue_create(&nx->reports, nx->loop, nx->redis, &qo);
    if (rc == CGA_OK)
        rc = cga_lock_create(&nx->lock, nx->loop, nx->redis, nx->ns, "nexus",
                             (unsigned)cga_config_int(cfg, "NEXUS_LOCK_TTL_MS"),
                             cga_config_bool(cfg, "CGALPHA_SINGLE_INSTANCE"));
    if (rc == CGA_OK) rc = cga_state_create(&nx->state, nx->redis, nx->ns);
    if (rc == CGA_OK) rc = cga_proto_reader_create(&nx->reader, &qo.limits);
    if (rc == CGA_OK) rc = cga_proto_writer_create(&nx->writer, &qo.limits);
    if (rc == CGA_OK)
        rc = nx_fold_create(&nx->fold, (unsigned)cga_config_int(cfg, "NEXUS_HYSTERESIS"),
                            (unsigned)cga_config_int(cfg, "NEXUS_KEEP_WINDOWS"));
    if (rc != CGA_OK) return rc;
    nx->metrics = cga_app_metrics(nx->app); /* served on /metrics when CGALPHA_HTTP_PORT is set */
    nx->m_reports = cga_metrics_counter(nx->metrics, "cgalpha_nexus_reports_total",
                                        "Reports folded", NULL);
    nx->m_entries = cga_metrics_counter(nx->metrics, "cgalpha_nexus_entries_total",
                                        "Report entries claimed", NULL);
    nx->m_changes = cga_metrics_counter(nx->metrics, "cgalpha_nexus_regime_changes_total",
                                        "Regime changes committed", NULL);
    nx->m_dead = cga_metrics_counter(nx->metrics, "cgalpha_nexus_dead_letters_total",
                                     "Report entries dead-lettered", NULL);
    nx->m_latency = cga_metrics_histogram(nx->metrics, "cgalpha_task_latency_seconds",
                                          "Task enqueue to report folded by nexus", NULL, NULL, 0);
    cga_lock_on_lost(nx->lock, on_lost, nx);
    cga_app_track_state(nx->app, nx->state);
    cga_app_set_health(nx->app, nexus_health, nx);
    if (nx->metrics_file || nx->stall_ms) {
        uv_timer_start(&nx->metrics_tick, on_metrics_tick, 1000, 1000);
        uv_unref((uv_handle_t *)&nx->metrics_tick);
    }
    return CGA_OK;
}

static void on_closed(void *arg) { (*(unsigned *)arg)++; }

/* Releases the lock (so that a standby takes over at once, not after the TTL) and closes the
 * queue, running the loop until both are done, before the app closes the connection. */
static void teardown(nexus_t *nx) {
    unsigned closed = 0, closing = 0;
    cga_app_set_health(nx->app, NULL, NULL);
    cga_app_track_state(nx->app, NULL);
    if (nx->loop) {
        uv_close((uv_handle_t *)&nx->retry, NULL);
        uv_close((uv_handle_t *)&nx->refresh, NULL);
        uv_close((uv_handle_t *)&nx->grace, NULL);
        uv_close((uv_handle_t *)&nx->metrics_tick, NULL);
    }
    if (nx->metrics) write_metrics(nx);
    if (nx->lock) {
        closing++;
        cga_lock_close(nx->lock, on_closed, &closed);
    }
    if (nx->reports) {
        closing++;
        cga_queue_close(nx->reports, on_closed, &closed);
    }
    while (closed < closing && uv_run(nx->loop, UV_RUN_ONCE)) {
    }
    cga_state_free(nx->state);
    cga_proto_reader_free(nx->reader);
    cga_proto_writer_free(nx->writer);
    nx_fold_free(nx->fold);
    commit_free(&nx->commit);
}

int main(int argc, char **argv) {
    static const cga_app_info_t info = {
        .name = "cgalpha-nexus",
        .summary = "fold lab reports into a market regime per symbol and publish each change",
        .usage = "cgalpha-nexus [OPTIONS]",
        .details =
            "Consumes <ns>:queue:reports (group \"nexus\"), keeps <ns>:state:regime:<symbol>,\n"
            "appends every change to <ns>:state:regime_log and publishes it on\n"
            "<ns>:channel:market_regime. One nexus is active per namespace (<ns>:lock:nexus);\n"
            "others wait as standbys and take over when it dies.",
        .settings = nexus_settings,
        .nsettings = sizeof nexus_settings / sizeof nexus_settings[0],
        .serve_http = 1,
    };
    nexus_t nx;
    memset(&nx, 0, sizeof nx);
    int code;
    cga_app_create(&nx.app, &code, &info, argc - 1, argv + 1);
    if (!nx.app) return code;

    int rc = cga_app_wait_connected(nx.app, 0);
    if (rc != CGA_OK) {
        code = cga_app_exit_code(rc);
        cga_app_free(nx.app);
        return code;
    }
    rc = setup(&nx);
    if (rc != CGA_OK) {
        CGA_LOG(CGA_LOG_ERROR, rc, "cannot start");
        teardown(&nx);
        cga_app_free(nx.app);
        return CGA_EXIT_FAILURE;
    }
    cga_app_on_signal(nx.app, on_signal, &nx);
    become_standby(&nx);
    cga_app_run(nx.app);
    CGA_LOG(CGA_LOG_INFO, 0, "stopped: %" PRIu64 " reports folded, %" PRIu64 " regime changes",
            cga_counter_value(nx.m_reports), cga_counter_value(nx.m_changes));
    code = nx.exit_code;
    teardown(&nx);
    cga_app_free(nx.app);
    return code;
}

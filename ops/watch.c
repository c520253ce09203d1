/* `watch`: prints regime changes as nexus publishes them.
 *
 * Pub/sub forgets what nobody heard (a reconnect, a slow start), so every change carries a
 * per-symbol sequence number: when one arrives with a gap after the last seen for its symbol,
 * the missing ones are read from the regime log and printed first, marked "recovered". With
 * --history the whole log is printed before following the channel. */
#define CGA_LOG_COMPONENT "watch"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "cgalpha/alloc.h"
#include "cgalpha/app.h"
#include "cgalpha/err.h"
#include "cgalpha/keys.h"
#include "cgalpha/log.h"
#include "cgalpha/proto.h"
#include "cgalpha/pubsub.h"
#include "ops.h"
#include "regime_log.h"

#define SYMBOL_MAX 64

typedef struct sym_seq_s {
    char name[SYMBOL_MAX + 1];
    uint64_t seq; /* last printed */
} sym_seq_t;

typedef struct watch_s {
    cga_app_t *app;
    cga_proto_reader_t *reader;
    cga_pubsub_t *pubsub;
    int json;
    uint64_t count;   /* stop after this many changes (0: never) */
    uint64_t printed;
    sym_seq_t *syms;  /* open addressing on the name, power-of-two capacity */
    size_t nsyms, cap;
    int recovering;   /* a regime log read is under way: messages wait in `held` */
    int replaying;    /* replaying `held` after a read: a gap left now is final */
    char **held;      /* raw messages that arrived meanwhile */
    size_t *held_len;
    size_t nheld, held_cap;
    uv_timer_t deadline;
    int sub_was_up;   /* the subscriber connection has been up before: a later up is a reconnect */
    int missed;       /* reconnected while a read was under way: read again after it */
    int err;
} watch_t;

static uint64_t hash_name(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

static sym_seq_t *sym_find(watch_t *w, const char *p, size_t n, int add) {
    if (n > SYMBOL_MAX) return NULL;
    if (add && (w->nsyms + 1) * 4 > w->cap * 3) {
        size_t ncap = w->cap ? w->cap * 2 : 64;
        sym_seq_t *ns = cga_calloc(ncap, sizeof *ns);
        for (size_t i = 0; i < w->cap; i++) {
            if (!w->syms[i].name[0]) continue;
            size_t k = hash_name(w->syms[i].name, strlen(w->syms[i].name)) & (ncap - 1);
            while (ns[k].name[0]) k = (k + 1) & (ncap - 1);
            ns[k] = w->syms[i];
        }
        free(w->syms);
        w->syms = ns;
        w->cap = ncap;
    }
    if (!w->cap) return NULL;
    for (size_t k = hash_name(p, n) & (w->cap - 1);; k = (k + 1) & (w->cap - 1)) {
        sym_seq_t *s = &w->syms[k];
        if (!s->name[0]) {
            if (!add) return NULL;
            memcpy(s->name, p, n);
            s->name[n] = '\0';
            w->nsyms++;
            return s;
        }
        if (strlen(s->name) == n && memcmp(s->name, p, n) == 0) return s;
    }
}

static void print_change(watch_t *w, const cga_regime_change_t *m, int recovered) {
    if (w->json) {
        fputs("{\"symbol\":", stdout);
        ops_json_str(stdout, m->symbol.ptr, m->symbol.len);
        printf(",\"seq\":%" PRIu64 ",\"from\":\"%s\",\"to\":\"%s\",\"window_start_ms\":%" PRId64
               ",\"confidence\":%.4f,\"ts_us\":%" PRIu64 ",\"recovered\":%s}\n",
               m->seq, cga_regime_name(m->from), cga_regime_name(m->to), m->wstart,
               m->confidence, m->ts_us, recovered ? "true" : "false");
    } else {
        time_t secs = (time_t)(m->wstart / 1000);
        struct tm tm;
        char when[32];
        gmtime_r(&secs, &tm);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
        printf("%s  %-12.*s %-9s -> %-9s  seq %-6" PRIu64 " confidence %.2f%s\n", when,
               (int)m->symbol.len, m->symbol.ptr, cga_regime_name(m->from),
               cga_regime_name(m->to), m->seq, m->confidence,
               recovered ? "  (from the regime log)" : "");
    }
    fflush(stdout);
    if (w->count && ++w->printed >= w->count) cga_app_stop(w->app);
}

/* Prints m if it is the next of its symbol or later; returns 1 when it left a gap before it. */
static int offer(watch_t *w, const cga_regime_change_t *m, int recovered) {
    if (w->count && w->printed >= w->count) return 0; /* done: the loop is stopping */
    sym_seq_t *s = sym_find(w, m->symbol.ptr, m->symbol.len, 1);
    if (!s) return 0;
    if (m->seq <= s->seq) return 0; /* seen already (a recovered one, or a duplicate) */
    if (!recovered && s->seq && m->seq > s->seq + 1) {
        if (!w->replaying) return 1;
        CGA_LOG(CGA_LOG_WARN, 0, "%.*s: changes %" PRIu64 "..%" PRIu64
                " are in neither the channel nor the regime log (capped)", (int)m->symbol.len,
                m->symbol.ptr, s->seq + 1, m->seq - 1);
    }
    print_change(w, m, recovered);
    s->seq = m->seq;
    return 0;
}

static void on_message(const char *data, size_t len, void *arg);

static void on_log_change(const cga_regime_change_t *m, void *arg) { offer(arg, m, 1); }

static void on_log_done(int status, uint64_t entries, uint64_t undecodable, void *arg) {
    watch_t *w = arg;
    (void)entries;
    (void)undecodable;
    if (status != CGA_OK)
        CGA_LOG(CGA_LOG_WARN, status, "cannot read the regime log; some changes were missed");
    w->recovering = 0;
    /* what arrived meanwhile, in order; a gap that remains starts another read */
    size_t n = w->nheld;
    char **held = w->held;
    size_t *held_len = w->held_len;
    w->held = NULL;
    w->held_len = NULL;
    w->nheld = w->held_cap = 0;
    w->replaying = 1;
    for (size_t i = 0; i < n; i++) {
        on_message(held[i], held_len[i], w);
        free(held[i]);
    }
    w->replaying = 0;
    free(held);
    free(held_len);
}

static void recover(watch_t *w) {
    w->recovering = 1;
    int rc = ops_rlog_read(cga_app_redis(w->app), cga_app_ns(w->app), on_log_change, on_log_done,
                           w);
    if (rc != CGA_OK) on_log_done(rc, 0, 0, w);
}

static void hold(watch_t *w, const char *data, size_t len) {
    size_t cap = w->held_cap;
    cga_grow((void **)&w->held, &cap, w->nheld + 1, sizeof *w->held);
    cga_grow((void **)&w->held_len, &w->held_cap, w->nheld + 1, sizeof *w->held_len);
    w->held[w->nheld] = cga_memdup(data, len);
    w->held_len[w->nheld++] = len;
}

static void on_message(const char *data, size_t len, void *arg) {
    watch_t *w = arg;
    if (w->recovering) {
        hold(w, data, len);
        return;
    }
    cga_regime_change_t m;
    if (cga_proto_decode_regime_change(w->reader, data, len, &m) != CGA_OK) {
        CGA_LOG(CGA_LOG_WARN, 0, "undecodable message on the regime channel: %s",
                cga_proto_reader_error(w->reader));
        return;
    }
    if (offer(w, &m, 0)) { /* a gap: read the log, then this message again */
        hold(w, data, len);
        recover(w);
    }
}

/* After a reconnect of the subscriber connection, whatever was published while it was down is
 * only in the regime log: read it (live messages wait meanwhile; gaps that remain are caught by
 * the next message's sequence number). */
static void on_sub_state(int up, int status, void *arg) {
    watch_t *w = arg;
    (void)status;
    if (!up) return;
    if (w->sub_was_up) {
        if (w->recovering) w->missed = 1;
        else recover(w);
    }
    w->sub_was_up = 1;
}

static void on_deadline(uv_timer_t *t) { cga_app_stop(((watch_t *)t->data)->app); }

static void on_signal(int signum, void *arg) {
    (void)signum;
    cga_app_stop(((watch_t *)arg)->app);
}

int ops_cmd_watch(cga_app_t *a) {
    const cga_config_t *cfg = cga_app_config(a);
    watch_t ww;
    watch_t *w = &ww;
    memset(w, 0, sizeof *w);
    w->app = a;
    w->json = cga_config_bool(cfg, "OPS_JSON");
    w->count = (uint64_t)cga_config_int(cfg, "OPS_COUNT");
    int64_t for_ms = cga_config_int(cfg, "OPS_FOR_MS");
    int code = ops_connect(a, "watch");
    if (code >= 0) return code;
    cga_proto_reader_create(&w->reader, NULL);
    cga_redis_t *sub = cga_app_redis_sub(a);
    w->sub_was_up = cga_redis_is_connected(sub);
    cga_redis_on_state(sub, on_sub_state, w);
    int rc = cga_pubsub_create(&w->pubsub, cga_app_redis(a), sub, cga_app_ns(a));
    if (rc == CGA_OK) rc = cga_pubsub_subscribe(w->pubsub, CGA_CHANNEL_REGIME, on_message, w);
    if (rc != CGA_OK) {
        ops_error("watch", "cannot subscribe: %s", cga_strerror(rc));
        code = CGA_EXIT_FAILURE;
        goto out;
    }
    uv_timer_init(cga_app_loop(a), &w->deadline);
    w->deadline.data = w;
    if (for_ms > 0) uv_timer_start(&w->deadline, on_deadline, (uint64_t)for_ms, 0);
    cga_app_on_signal(a, on_signal, w);
    if (cga_config_bool(cfg, "OPS_HISTORY")) {
        /* the log first (live messages wait meanwhile), then the channel */
        w->recovering = 1;
        rc = ops_rlog_read(cga_app_redis(a), cga_app_ns(a), on_log_change, on_log_done, w);
        if (rc != CGA_OK) on_log_done(rc, 0, 0, w);
    }
    cga_app_run(a);
    /* a log read in flight calls back into w: let it finish before w goes away */
    while (w->recovering && uv_run(cga_app_loop(a), UV_RUN_ONCE)) {
    }
    uv_close((uv_handle_t *)&w->deadline, NULL);
    code = CGA_EXIT_OK;
out:
    cga_redis_off_state(sub, on_sub_state, w);
    cga_pubsub_free(w->pubsub);
    cga_proto_reader_free(w->reader);
    for (size_t i = 0; i < w->nheld; i++) free(w->held[i]);
    free(w->held);
    free(w->held_len);
    free(w->syms);
    return code;
}

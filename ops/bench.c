/* `cgalpha-ops bench`: the end-to-end benchmark. See docs/PERFORMANCE.md and bench.h.
 *
 * One run = the bare transport (bench_bare.c), then the full pipeline: K cgalpha-lab processes
 * and one cgalpha-nexus are started in the bench namespace, N tasks are enqueued through a
 * cga_queue producer on this process's loop (what ops does), and the run ends when both groups
 * have nothing pending and nothing left to read (every report consumed by nexus). An observer
 * thread reads the reports stream with XREAD (no group, so it changes nothing for anyone) and
 * takes each report's exact latency; nexus's own histogram (its metrics file) is reported too.
 * Redis figures come from INFO before and after; process figures from /proc. */
#define CGA_LOG_COMPONENT "bench"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <hiredis/hiredis.h>

#include "bench.h"
#include "cgalpha/alloc.h"
#include "cgalpha/clock.h"
#include "cgalpha/err.h"
#include "cgalpha/keys.h"
#include "cgalpha/log.h"
#include "cgalpha/proto.h"
#include "cgalpha/queue.h"
#include "cgalpha/redis.h"
#include "ops.h"

#define CMD "bench"
#define MAX_LABS 64
#define START_MS INT64_C(1704067200000)
#define WALK_LEN 65536
#define READY_TIMEOUT_MS 20000u
#define STOP_TIMEOUT_MS 15000u
#define OBSERVER_COUNT "64"

static const char *check_ns(const char *v) {
    return cga_namespace_validate(v) == CGA_OK ? NULL : "is not 1..64 characters of [A-Za-z0-9_.-]";
}

static const char *check_plugin(const char *v) {
    for (const char *p = v; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
            return "is not a plugin name ([a-z0-9_-])";
    return *v ? NULL : "is empty";
}

const cga_setting_t ops_bench_settings[OPS_BENCH_NSETTINGS] = {
    {.env = "BENCH_TASKS", .flag = "tasks", .type = CGA_SET_INT, .def = "100000",
     .help = "tasks per run (N)", .min = 1, .max = 1000000000},
    {.env = "BENCH_BATCH", .flag = "batch", .type = CGA_SET_INT, .def = "32",
     .help = "tasks per analysis entry (1: one task per entry)", .min = 1, .max = 4096},
    {.env = "BENCH_LABS", .flag = "labs", .type = CGA_SET_INT, .def = "1",
     .help = "lab processes started (K)", .min = 1, .max = MAX_LABS},
    {.env = "BENCH_CONCURRENCY", .flag = "concurrency", .type = CGA_SET_INT, .def = "0",
     .help = "plugin threads per lab (0: the lab's default, one per CPU)", .min = 0, .max = 1024},
    {.env = "BENCH_LAB_CLAIM", .flag = "lab-claim", .type = CGA_SET_INT, .def = "16",
     .help = "entries per claim of a lab (LAB_CLAIM_COUNT)", .min = 1, .max = 10000},
    {.env = "BENCH_NEXUS_CLAIM", .flag = "nexus-claim", .type = CGA_SET_INT, .def = "64",
     .help = "report entries per claim of nexus (NEXUS_CLAIM_COUNT)", .min = 1, .max = 10000},
    {.env = "BENCH_PLUGIN", .flag = "plugin", .type = CGA_SET_STR, .def = "noop",
     .help = "lab plugin the tasks name (noop, trend, ...)", .check = check_plugin},
    {.env = "BENCH_BARS", .flag = "bars", .type = CGA_SET_INT, .def = "32",
     .help = "payload: bars per task", .min = 1, .max = 10000},
    {.env = "BENCH_SYMBOLS", .flag = "symbols", .type = CGA_SET_INT, .def = "64",
     .help = "symbols the tasks are spread over", .min = 1, .max = 100000},
    {.env = "BENCH_RATE", .flag = "rate", .type = CGA_SET_INT, .def = "0",
     .help = "steady rate in tasks/s (0: as fast as possible)", .min = 0, .max = 100000000},
    {.env = "BENCH_LINGER_US", .flag = "linger-us", .type = CGA_SET_INT, .def = "1000",
     .help = "producer: a partial entry leaves this long after its first task", .min = 0,
     .max = 1000000},
    {.env = "BENCH_MAX_INFLIGHT", .flag = "max-inflight", .type = CGA_SET_INT, .def = "64",
     .help = "producer: entries sent and not yet answered, at most", .min = 1, .max = 100000},
    {.env = "BENCH_MAX_INFLIGHT_BYTES", .flag = "max-inflight-bytes", .type = CGA_SET_INT,
     .def = "524288", .help = "producer: and their bytes, at most (one entry always goes)",
     .min = 1024, .max = INT64_C(1073741824)},
    {.env = "BENCH_RUNS", .flag = "runs", .type = CGA_SET_INT, .def = "1",
     .help = "runs; the JSON line gives the median of each figure", .min = 1, .max = 99},
    {.env = "BENCH_BARE", .flag = "bare", .type = CGA_SET_BOOL, .def = "1",
     .help = "also run the bare transport (--no-bare: skip it)"},
    {.env = "BENCH_PIPELINE", .flag = "pipeline", .type = CGA_SET_BOOL, .def = "1",
     .help = "run the full pipeline (--no-pipeline: the bare transport only)"},
    {.env = "BENCH_OBSERVE", .flag = "observe", .type = CGA_SET_BOOL, .def = "1",
     .help = "read the reports with XREAD for exact latencies (--no-observe: nexus's "
             "histogram only)"},
    {.env = "BENCH_TRIM_MS", .flag = "trim-ms", .type = CGA_SET_INT, .def = "0",
     .help = "XTRIM MINID both queues every this many ms, as the coordinator does (0: never; "
             "the reports queue only with --no-observe, whose reader is no consumer group)",
     .min = 0, .max = 3600000},
    {.env = "BENCH_TIMEOUT_S", .flag = "timeout-s", .type = CGA_SET_INT, .def = "600",
     .help = "a phase that takes longer fails", .min = 1, .max = 86400},
    {.env = "BENCH_BIN_DIR", .flag = "bin-dir", .type = CGA_SET_STR, .def = NULL,
     .help = "where cgalpha-lab and cgalpha-nexus are (default: next to cgalpha-ops)"},
    {.env = "BENCH_WORK_DIR", .flag = "work-dir", .type = CGA_SET_STR, .def = NULL,
     .help = "logs and metrics files of the processes (default: a new /tmp/cga-bench-*)"},
    {.env = "BENCH_KEEP", .flag = "keep", .type = CGA_SET_BOOL, .def = "0",
     .help = "keep the work dir (it is kept anyway when a run fails)"},
    {.env = "CGALPHA_NAMESPACE", .flag = "namespace", .type = CGA_SET_STR,
     .def = "cgalpha-bench",
     .help = "namespace of the run: must be empty; every key in it is deleted after each run",
     .check = check_ns},
};

/* ---- results ---------------------------------------------------------------------------- */

/* Every figure of a run (NAN: not measured). The JSON line gives each one's median. */
#define BENCH_FIELDS(X)                                                                         \
    X(e2e_tasks_per_s) X(enqueue_tasks_per_s) X(duration_s)                                     \
    X(lat_p50_ms) X(lat_p99_ms) X(lat_p999_ms) X(lat_max_ms)                                    \
    X(lab_lat_p50_ms) X(lab_lat_p99_ms) X(lab_lat_p999_ms)                                      \
    X(nexus_lat_p50_ms) X(nexus_lat_p99_ms) X(nexus_lat_p999_ms)                                \
    X(redis_cmds_per_task) X(redis_cpu_us_per_task) X(redis_cpu_us_per_task_pipeline)           \
    X(producer_cpu_us_per_task) X(lab_cpu_us_per_task) X(nexus_cpu_us_per_task)                 \
    X(observer_cpu_us_per_task) X(cores_busy)                                                   \
    X(rss_bench_peak_kib) X(rss_lab_idle_kib) X(rss_lab_peak_kib) X(rss_nexus_idle_kib)         \
    X(rss_nexus_peak_kib) X(rss_redis_peak_kib)                                                 \
    X(rss_lab_10pct_kib) X(rss_lab_50pct_kib) X(rss_lab_end_kib) X(trimmed_entries)             \
    X(reports_seen) X(report_errors) X(dead_letters) X(nexus_reports)                           \
    X(bare_e2e_tasks_per_s) X(bare_enqueue_tasks_per_s)                                         \
    X(bare_lat_p50_ms) X(bare_lat_p99_ms) X(bare_lat_p999_ms) X(bare_lat_max_ms)                \
    X(bare_redis_cmds_per_task) X(bare_redis_cpu_us_per_task)                                   \
    X(ratio_e2e) X(ratio_redis_cpu)

enum {
#define X(n) F_##n,
    BENCH_FIELDS(X)
#undef X
        F_COUNT
};

static const char *const field_names[F_COUNT] = {
#define X(n) #n,
    BENCH_FIELDS(X)
#undef X
};

typedef struct result_s {
    double v[F_COUNT];
    int ok;
} result_t;

/* ---- the command's state ---------------------------------------------------------------- */

typedef struct bench_s {
    cga_app_t *app;
    const cga_config_t *cfg;
    uv_loop_t *loop;
    cga_redis_t *redis;
    const char *ns;
    uint64_t tasks;
    size_t batch, labs, concurrency, lab_claim, nexus_claim, bars, symbols, max_inflight;
    size_t max_inflight_bytes;
    uint64_t rate;
    unsigned linger_us, timeout_s, runs, trim_ms;
    int bare, pipeline, observe, keep;
    char plugin[64];
    char akey[CGA_KEY_MAX], rkey[CGA_KEY_MAX], bare_akey[CGA_KEY_MAX], bare_rkey[CGA_KEY_MAX];
    char bindir[PATH_MAX], workdir[PATH_MAX];
    int made_workdir;
    int spawned; /* processes were started: their logs are worth keeping after a failure */
    size_t task_bytes, report_bytes;
    redisContext *ctl;
    volatile int interrupted;
    double *walk; /* closes of a random walk, for the bars */
    char **envp;
    char redis_version[32];
} bench_t;

static void on_signal(int signum, void *arg) {
    bench_t *b = arg;
    (void)signum;
    b->interrupted = 1;
    uv_stop(b->loop);
}

/* Lets the loop see a signal while we wait synchronously. */
static int interrupted(bench_t *b) {
    uv_run(b->loop, UV_RUN_NOWAIT);
    return b->interrupted;
}

static void sleep_ms(unsigned ms) {
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static uint64_t thread_cpu_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* utime + stime of pid in µs, or 0. */
static uint64_t proc_cpu_us(pid_t pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the name may hold spaces */
    if (!p) return 0;
    unsigned long long ut = 0, st = 0;
    /* after ") ": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
     * utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    long hz = sysconf(_SC_CLK_TCK);
    return (ut + st) * 1000000ull / (unsigned long long)(hz > 0 ? hz : 100);
}

/* ---- task and report sizes, bars ------------------------------------------------------- */

static void make_walk(bench_t *b) {
    b->walk = cga_malloc(WALK_LEN * sizeof *b->walk);
    uint64_t s = 0x9E3779B97F4A7C15ull;
    double price = 100.0;
    for (size_t i = 0; i < WALK_LEN; i++) {
        /* xorshift64*, two uniforms -> one normal (Box-Muller), sigma 0.006 */
        double u[2];
        for (int k = 0; k < 2; k++) {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            u[k] = ((double)((s * 0x2545F4914F6CDD1Dull) >> 11) + 0.5) / 9007199254740992.0;
        }
        double z = sqrt(-2 * log(u[0])) * cos(2 * M_PI * u[1]);
        price *= exp(0.006 * z);
        if (price < 1 || price > 10000) price = 100;
        b->walk[i] = price;
    }
}

/* Fills task i: window i / symbols of symbol i % symbols. id and sym are the caller's
 * buffers (>= 96 and 16 bytes); bars has b->bars room. */
static void make_task(const bench_t *b, uint64_t i, cga_task_t *t, cga_bar_t *bars, char *id,
                      char *sym) {
    uint64_t s = i % b->symbols, w = i / b->symbols;
    size_t step = b->bars / 2 ? b->bars / 2 : 1;
    int64_t t0 = START_MS + (int64_t)(w * step) * 60000;
    int n = snprintf(sym, 16, "SYM%" PRIu64, s);
    int m = snprintf(id, 96, "%s/%" PRId64 "/%s", sym, t0, b->plugin);
    size_t base = (size_t)((s * 7919u + w * step) % (WALK_LEN - b->bars - 1));
    for (size_t j = 0; j < b->bars; j++) {
        double o = b->walk[base + j], c = b->walk[base + j + 1];
        bars[j].t = t0 + (int64_t)j * 60000;
        bars[j].open = o;
        bars[j].close = c;
        bars[j].high = (o > c ? o : c) * 1.001;
        bars[j].low = (o < c ? o : c) * 0.999;
        bars[j].volume = 1000;
    }
    t->id = (cga_str_t){id, (size_t)m};
    t->lab = cga_str(b->plugin);
    t->symbol = (cga_str_t){sym, (size_t)n};
    t->bars = bars;
    t->nbars = b->bars;
    t->enq_us = cga_clock_wall_us();
}

/* Encoded sizes of one task and one report as the pipeline makes them (for the bare
 * transport's blobs). */
static void measure_sizes(bench_t *b) {
    cga_proto_writer_t *w = NULL;
    cga_proto_writer_create(&w, NULL);
    cga_bar_t *bars = cga_malloc(b->bars * sizeof *bars);
    char id[96], sym[16];
    cga_task_t t;
    make_task(b, 12345, &t, bars, id, sym);
    cga_proto_write_task(w, &t);
    b->task_bytes = cga_proto_writer_size(w) - 1;
    cga_proto_writer_reset(w);
    cga_metric_t met[4] = {{cga_str("mean_ret"), 0.0012345}, {cga_str("stdev_ret"), 0.0061},
                           {cga_str("t_stat"), 1.234}, {cga_str("n_returns"), 31}};
    cga_report_t r = {
        .task_id = t.id, .lab = t.lab, .symbol = t.symbol, .worker = cga_str("bench-lab-0"),
        .wstart = bars[0].t, .wend = bars[b->bars - 1].t, .enq_us = t.enq_us,
        .done_us = t.enq_us + 1234, .run_us = 3, .status = CGA_REPORT_OK, .error = cga_str(""),
        .regime = CGA_REGIME_SIDEWAYS, .confidence = 0.25,
        .metrics = strcmp(b->plugin, "noop") == 0 ? NULL : met,
        .nmetrics = strcmp(b->plugin, "noop") == 0 ? 0 : 4,
    };
    cga_proto_write_report(w, &r);
    b->report_bytes = cga_proto_writer_size(w) - 1;
    cga_proto_writer_free(w);
    free(bars);
    if (b->task_bytes < 8) b->task_bytes = 8;
    if (b->report_bytes < 8) b->report_bytes = 8;
}

/* ---- Redis helpers ---------------------------------------------------------------------- */

/* Deletes every key of the namespace (SCAN + UNLINK). Returns the number deleted, -1 on error;
 * with count_only, only counts them. */
static long ns_keys(bench_t *b, int count_only) {
    char match[CGA_KEY_MAX + 4];
    snprintf(match, sizeof match, "%s:*", b->ns);
    char cursor[32] = "0";
    long total = 0;
    do {
        redisReply *r = bench_cmd(b->ctl, "SCAN %s MATCH %s COUNT 1000", cursor, match);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            if (r) freeReplyObject(r);
            return -1;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        redisReply *keys = r->element[1];
        if (keys->elements > 0 && !count_only) {
            const char **argv = cga_malloc((keys->elements + 1) * sizeof *argv);
            size_t *len = cga_malloc((keys->elements + 1) * sizeof *len);
            argv[0] = "UNLINK";
            len[0] = 6;
            for (size_t i = 0; i < keys->elements; i++) {
                argv[i + 1] = keys->element[i]->str;
                len[i + 1] = (size_t)keys->element[i]->len;
            }
            redisReply *d = bench_cmdv(b->ctl, (int)keys->elements + 1, argv, len);
            if (d) freeReplyObject(d);
            free(argv);
            free(len);
        }
        total += (long)keys->elements;
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return total;
}

typedef struct group_state_s {
    int found;
    long long consumers, pending, lag; /* lag -1: unknown (nil) */
    char last_delivered[48];
} group_state_t;

static long long reply_field_int(const redisReply *g, const char *name, int *isnil) {
    for (size_t k = 0; k + 1 < g->elements; k += 2) {
        const redisReply *f = g->element[k], *v = g->element[k + 1];
        if (f->type == REDIS_REPLY_STRING && strcmp(f->str, name) == 0) {
            if (v->type == REDIS_REPLY_INTEGER) return v->integer;
            if (isnil) *isnil = 1;
            return -1;
        }
    }
    if (isnil) *isnil = 1;
    return -1;
}

static void parse_group(const redisReply *r, const char *group, group_state_t *out) {
    memset(out, 0, sizeof *out);
    if (!r || r->type != REDIS_REPLY_ARRAY) return;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *g = r->element[i];
        if (g->type != REDIS_REPLY_ARRAY) continue;
        int match = 0;
        for (size_t k = 0; k + 1 < g->elements; k += 2) {
            const redisReply *f = g->element[k], *v = g->element[k + 1];
            if (f->type == REDIS_REPLY_STRING && strcmp(f->str, "name") == 0 &&
                v->type == REDIS_REPLY_STRING && strcmp(v->str, group) == 0)
                match = 1;
            if (f->type == REDIS_REPLY_STRING && strcmp(f->str, "last-delivered-id") == 0 &&
                v->type == REDIS_REPLY_STRING)
                snprintf(out->last_delivered, sizeof out->last_delivered, "%s", v->str);
        }
        if (!match) continue;
        out->found = 1;
        out->consumers = reply_field_int(g, "consumers", NULL);
        out->pending = reply_field_int(g, "pending", NULL);
        int nil = 0;
        out->lag = reply_field_int(g, "lag", &nil);
        if (nil) out->lag = -1;
        return;
    }
}

/* XINFO GROUPS of both streams, pipelined. Returns 0, or -1 on a connection error. */
static int groups_now(bench_t *b, group_state_t *labs, group_state_t *nexus) {
    redisAppendCommand(b->ctl, "XINFO GROUPS %s", b->akey);
    redisAppendCommand(b->ctl, "XINFO GROUPS %s", b->rkey);
    void *r1 = NULL, *r2 = NULL;
    if (redisGetReply(b->ctl, &r1) != REDIS_OK || redisGetReply(b->ctl, &r2) != REDIS_OK) {
        if (r1) freeReplyObject(r1);
        return -1;
    }
    parse_group(r1, CGA_GROUP_ANALYSIS, labs);
    parse_group(r2, CGA_GROUP_REPORTS, nexus);
    freeReplyObject(r1);
    freeReplyObject(r2);
    return 0;
}

/* last-generated-id of a stream, for a group whose lag Redis cannot tell. */
static int stream_last_id(bench_t *b, const char *key, char *out, size_t n) {
    redisReply *r = bench_cmd(b->ctl, "XINFO STREAM %s", key);
    int ok = 0;
    if (r && r->type == REDIS_REPLY_ARRAY) {
        for (size_t k = 0; k + 1 < r->elements; k += 2) {
            if (r->element[k]->type == REDIS_REPLY_STRING &&
                strcmp(r->element[k]->str, "last-generated-id") == 0 &&
                r->element[k + 1]->type == REDIS_REPLY_STRING) {
                snprintf(out, n, "%s", r->element[k + 1]->str);
                ok = 1;
            }
        }
    }
    if (r) freeReplyObject(r);
    return ok ? 0 : -1;
}

static int group_drained(bench_t *b, const group_state_t *g, const char *key) {
    if (!g->found || g->pending != 0) return 0;
    if (g->lag >= 0) return g->lag == 0;
    char last[48];
    return stream_last_id(b, key, last, sizeof last) == 0 &&
           strcmp(last, g->last_delivered) == 0;
}

static long long xlen(bench_t *b, const char *key) {
    redisReply *r = bench_cmd(b->ctl, "XLEN %s", key);
    long long n = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r) freeReplyObject(r);
    return n;
}

/* ---- metrics files (Prometheus text) ----------------------------------------------------- */

typedef struct prom_s {
    double le[64], cum[64];
    size_t nb;
    double count;
} prom_hist_t;

/* The value of a sample line "<name> <value>" (no labels), or NAN. */
static double prom_value(const char *text, const char *name) {
    size_t n = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, name, n) == 0 && p[n] == ' ') return strtod(p + n + 1, NULL);
    return NAN;
}

static void prom_hist(const char *text, const char *name, prom_hist_t *h) {
    memset(h, 0, sizeof *h);
    char pre[160];
    int pn = snprintf(pre, sizeof pre, "%s_bucket{le=\"", name);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, pre, (size_t)pn) != 0 || h->nb >= 64) continue;
        const char *v = p + pn;
        double le = strncmp(v, "+Inf", 4) == 0 ? INFINITY : strtod(v, NULL);
        const char *sp = strstr(v, "} ");
        if (!sp) continue;
        h->le[h->nb] = le;
        h->cum[h->nb] = strtod(sp + 2, NULL);
        h->nb++;
    }
    char cn[160];
    snprintf(cn, sizeof cn, "%s_count", name);
    h->count = prom_value(text, cn);
}

/* Quantile by linear interpolation in the bucket, as Prometheus' histogram_quantile(); ms. */
static double prom_q(const prom_hist_t *h, double q) {
    if (h->nb == 0 || !(h->count > 0)) return NAN;
    double rank = q * h->count, prev_le = 0, prev_cum = 0;
    for (size_t i = 0; i < h->nb; i++) {
        if (h->cum[i] >= rank) {
            if (isinf(h->le[i])) return prev_le * 1000.0;
            double in = h->cum[i] - prev_cum;
            double f = in > 0 ? (rank - prev_cum) / in : 1;
            return (prev_le + (h->le[i] - prev_le) * f) * 1000.0;
        }
        prev_le = isinf(h->le[i]) ? prev_le : h->le[i];
        prev_cum = h->cum[i];
    }
    return prev_le * 1000.0;
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    size_t cap = 4096, len = 0;
    char *s = cga_malloc(cap);
    size_t n;
    while ((n = fread(s + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2) s = cga_realloc(s, cap *= 2);
    }
    fclose(f);
    s[len] = '\0';
    return s;
}

/* ---- observer: XREAD of the reports ------------------------------------------------------ */

typedef struct observer_s {
    bench_t *b;
    redisContext *c;
    uint64_t want;
    bench_lat_t lat;
    bench_lat_t lab_lat; /* enqueue -> report written (the report's ts, set by the lab) */
    uint64_t reports, errors, calls, cpu_us;
    atomic_int stop;
    atomic_int done;
    int failed;
    char err[160];
    pthread_t th;
} observer_t;

static void *observer_main(void *arg) {
    observer_t *ob = arg;
    uint64_t cpu0 = thread_cpu_us();
    cga_proto_reader_t *rd = NULL;
    cga_proto_reader_create(&rd, NULL);
    char last[64] = "0-0";
    while (!atomic_load(&ob->stop) && ob->reports < ob->want) {
        redisReply *r = bench_cmd(ob->c, "XREAD COUNT " OBSERVER_COUNT " BLOCK 100 STREAMS %s %s",
                                  ob->b->rkey, last);
        ob->calls++;
        uint64_t now = cga_clock_wall_us();
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(ob->err, sizeof ob->err, "observer: %s",
                     r ? r->str : (ob->c->errstr[0] ? ob->c->errstr : "connection error"));
            ob->failed = 1;
            if (r) freeReplyObject(r);
            break;
        }
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
            r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2) {
            const redisReply *list = r->element[0]->element[1];
            for (size_t i = 0; list->type == REDIS_REPLY_ARRAY && i < list->elements; i++) {
                const redisReply *e = list->element[i];
                if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) continue;
                snprintf(last, sizeof last, "%s", e->element[0]->str);
                const redisReply *f = e->element[1];
                for (size_t k = 0; f->type == REDIS_REPLY_ARRAY && k + 1 < f->elements; k += 2) {
                    if (strcmp(f->element[k]->str, CGA_PROTO_FIELD) != 0) continue;
                    const cga_report_t *reps;
                    size_t n;
                    const redisReply *m = f->element[k + 1];
                    if (cga_proto_decode_reports(rd, m->str, (size_t)m->len, &reps, &n) != CGA_OK) {
                        ob->errors++;
                        continue;
                    }
                    for (size_t j = 0; j < n; j++) {
                        const cga_report_t *rp = &reps[j];
                        bench_lat_add(&ob->lat, now > rp->enq_us ? now - rp->enq_us : 0);
                        bench_lat_add(&ob->lab_lat,
                                      rp->done_us > rp->enq_us ? rp->done_us - rp->enq_us : 0);
                        if (reps[j].status != CGA_REPORT_OK) ob->errors++;
                    }
                    ob->reports += n;
                }
            }
        }
        freeReplyObject(r);
    }
    cga_proto_reader_free(rd);
    ob->cpu_us = thread_cpu_us() - cpu0;
    atomic_store(&ob->done, 1);
    return NULL;
}

/* ---- children --------------------------------------------------------------------------- */

/* environ without the names we set, plus ours (NULL-terminated, owned). */
static void build_env(bench_t *b) {
    extern char **environ;
    const char *ours[] = {"CGALPHA_NAMESPACE", "CGALPHA_LOG_LEVEL", "LAB_PLUGINS",
                          "LAB_CONCURRENCY",   "LAB_CLAIM_COUNT",   "LAB_METRICS_FILE",
                          "LAB_ID",            "NEXUS_CLAIM_COUNT", "NEXUS_METRICS_FILE",
                          "NEXUS_ID",          "UV_THREADPOOL_SIZE"};
    size_t ncommon = 0;
    const cga_setting_t *common = cga_config_common_settings(&ncommon);
    size_t n = 0;
    for (char **e = environ; *e; e++) n++;
    char **env = cga_calloc(n + ncommon + 8, sizeof *env);
    size_t k = 0;
    for (char **e = environ; *e; e++) {
        int skip = 0;
        for (size_t i = 0; i < sizeof ours / sizeof ours[0] && !skip; i++) {
            size_t l = strlen(ours[i]);
            skip = strncmp(*e, ours[i], l) == 0 && (*e)[l] == '=';
        }
        for (size_t i = 0; i < ncommon && !skip; i++) {
            size_t l = strlen(common[i].env);
            skip = strncmp(*e, common[i].env, l) == 0 && (*e)[l] == '=';
        }
        if (!skip) env[k++] = cga_strdup(*e);
    }
    /* The Redis settings as this command sees them (flags and .env included). */
    for (size_t i = 0; i < ncommon; i++) {
        const char *name = common[i].env;
        if (strncmp(name, "REDIS_", 6) != 0 && strncmp(name, "BREAKER_", 8) != 0) continue;
        const char *src = cga_config_source(b->cfg, name);
        if (strcmp(src, "unset") == 0 || strcmp(src, "default") == 0) continue;
        char buf[1200];
        if (common[i].type == CGA_SET_INT)
            snprintf(buf, sizeof buf, "%s=%" PRId64, name, cga_config_int(b->cfg, name));
        else if (common[i].type == CGA_SET_STR && cga_config_str(b->cfg, name))
            snprintf(buf, sizeof buf, "%s=%s", name, cga_config_str(b->cfg, name));
        else
            continue;
        env[k++] = cga_strdup(buf);
    }
    char buf[CGA_KEY_MAX + 32];
    snprintf(buf, sizeof buf, "CGALPHA_NAMESPACE=%s", b->ns);
    env[k++] = cga_strdup(buf);
    env[k++] = cga_strdup("CGALPHA_LOG_LEVEL=warn");
    env[k] = NULL;
    b->envp = env;
}

static void free_env(bench_t *b) {
    for (char **e = b->envp; e && *e; e++) free(*e);
    free(b->envp);
    b->envp = NULL;
}

typedef struct procs_s {
    pid_t nexus;
    pid_t lab[MAX_LABS];
    size_t nlabs;
    long lab_idle[MAX_LABS], lab_peak[MAX_LABS], nexus_idle, nexus_peak;
    uint64_t lab_cpu0[MAX_LABS], nexus_cpu0;
} procs_t;

#define PATH_BUF (PATH_MAX + 64)

static void path_in(const bench_t *b, char *out, size_t n, const char *name) {
    if (snprintf(out, n, "%s/%s", b->workdir, name) >= (int)n) out[n - 1] = '\0';
}

static int spawn_all(bench_t *b, procs_t *p) {
    char path[PATH_BUF], log[PATH_BUF], prom[PATH_BUF + 32], claim[24], conc[24];
    memset(p, 0, sizeof *p);
    b->spawned = 1;
    snprintf(path, sizeof path, "%s/cgalpha-nexus", b->bindir);
    path_in(b, log, sizeof log, "nexus.log");
    snprintf(prom, sizeof prom, "NEXUS_METRICS_FILE=%s/nexus.prom", b->workdir);
    snprintf(claim, sizeof claim, "%zu", b->nexus_claim);
    /* NEXUS_METRICS_FILE as an environment variable: a nexus without it ignores it. */
    size_t ne = 0;
    while (b->envp[ne]) ne++;
    char **env = cga_calloc(ne + 2, sizeof *env);
    memcpy(env, b->envp, ne * sizeof *env);
    env[ne] = prom;
    char *nargv[] = {path, "--claim-count", claim, "--id", "bench-nexus", NULL};
    p->nexus = bench_spawn(path, nargv, env, log);
    free(env);
    if (p->nexus < 0) {
        ops_error(CMD, "cannot start %s: %s", path, strerror(errno));
        return -1;
    }
    snprintf(path, sizeof path, "%s/cgalpha-lab", b->bindir);
    snprintf(claim, sizeof claim, "%zu", b->lab_claim);
    snprintf(conc, sizeof conc, "%zu", b->concurrency);
    for (size_t i = 0; i < b->labs; i++) {
        char id[32], name[32];
        snprintf(id, sizeof id, "bench-lab-%zu", i);
        snprintf(name, sizeof name, "lab-%zu.log", i);
        path_in(b, log, sizeof log, name);
        snprintf(name, sizeof name, "lab-%zu.prom", i);
        path_in(b, prom, sizeof prom, name);
        char *largv[] = {path,    "--plugin",      b->plugin, "--claim-count", claim,
                         "--id",  id,              "--metrics-file",            prom,
                         "--concurrency", conc, NULL};
        p->lab[i] = bench_spawn(path, largv, b->envp, log);
        if (p->lab[i] < 0) {
            ops_error(CMD, "cannot start %s: %s", path, strerror(errno));
            return -1;
        }
        p->nlabs++;
    }
    return 0;
}

static void tail_log(const bench_t *b, const char *name) {
    char path[PATH_BUF];
    path_in(b, path, sizeof path, name);
    char *s = read_file(path);
    if (!s) return;
    size_t len = strlen(s);
    const char *from = len > 1500 ? s + len - 1500 : s;
    fprintf(stderr, "---- %s (end)\n%s\n", path, from);
    free(s);
}

/* 1 when the client list shows the process blocked in XREADGROUP (its client name is
 * "<prog>:<host>-<pid>-<hex>"; a consumer appears in XINFO only once it got an entry). */
static int is_claiming(const char *clients, const char *prog, pid_t pid) {
    char pat[64];
    snprintf(pat, sizeof pat, "-%ld-", (long)pid);
    size_t pl = strlen(prog);
    for (const char *line = clients; line && *line;) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        char buf[1024];
        if (len >= sizeof buf) len = sizeof buf - 1;
        memcpy(buf, line, len);
        buf[len] = '\0';
        const char *name = strstr(buf, " name=");
        if (name && strncmp(name + 6, prog, pl) == 0 && name[6 + pl] == ':') {
            const char *end = strchr(name + 6, ' ');
            const char *hit = strstr(name + 6, pat);
            if (hit && (!end || hit < end) && strstr(buf, " cmd=xreadgroup")) return 1;
        }
        line = eol ? eol + 1 : NULL;
    }
    return 0;
}

/* Waits until nexus and every lab wait for work in XREADGROUP. */
static int wait_ready(bench_t *b, procs_t *p) {
    uint64_t deadline = cga_clock_mono_ms() + READY_TIMEOUT_MS;
    for (;;) {
        int st;
        if (bench_child_exited(p->nexus, &st)) {
            ops_error(CMD, "cgalpha-nexus exited at start (status %d)", st);
            tail_log(b, "nexus.log");
            p->nexus = 0;
            return -1;
        }
        for (size_t i = 0; i < p->nlabs; i++) {
            if (bench_child_exited(p->lab[i], &st)) {
                char name[32];
                snprintf(name, sizeof name, "lab-%zu.log", i);
                ops_error(CMD, "cgalpha-lab %zu exited at start (status %d)", i, st);
                tail_log(b, name);
                p->lab[i] = 0;
                return -1;
            }
        }
        redisReply *r = bench_cmd(b->ctl, "CLIENT LIST");
        if (!r || r->type != REDIS_REPLY_STRING) {
            if (r) freeReplyObject(r);
            ops_error(CMD, "CLIENT LIST failed");
            return -1;
        }
        size_t ready = is_claiming(r->str, "cgalpha-nexus", p->nexus);
        for (size_t i = 0; i < p->nlabs; i++) ready += is_claiming(r->str, "cgalpha-lab", p->lab[i]);
        freeReplyObject(r);
        if (ready == p->nlabs + 1) return 0;
        if (cga_clock_mono_ms() > deadline) {
            ops_error(CMD, "labs and nexus not all waiting for work after %u ms (%zu of %zu)",
                      READY_TIMEOUT_MS, ready, p->nlabs + 1);
            tail_log(b, "nexus.log");
            tail_log(b, "lab-0.log");
            return -1;
        }
        if (interrupted(b)) {
            ops_error(CMD, "interrupted by a signal");
            return -1;
        }
        sleep_ms(20);
    }
}

static int stop_all(bench_t *b, procs_t *p) {
    int bad = 0;
    for (size_t i = 0; i < p->nlabs; i++) {
        if (p->lab[i] <= 0) continue;
        int st = bench_stop_child(p->lab[i], STOP_TIMEOUT_MS);
        if (st != 0) {
            ops_error(CMD, "cgalpha-lab %zu: exit status %d", i, st);
            bad = 1;
        }
        p->lab[i] = 0;
    }
    if (p->nexus > 0) {
        int st = bench_stop_child(p->nexus, STOP_TIMEOUT_MS);
        if (st != 0) {
            ops_error(CMD, "cgalpha-nexus: exit status %d", st);
            bad = 1;
        }
        p->nexus = 0;
    }
    (void)b;
    return bad ? -1 : 0;
}

/* ---- the pipeline phase: producer on the loop ------------------------------------------- */

#define RSS_SAMPLES 10 /* the first lab's VmRSS at each tenth of the tasks enqueued */

typedef struct pipe_s {
    bench_t *b;
    cga_queue_t *q, *qr; /* the producer's analysis queue; reports (trimming only) */
    uv_idle_t idle;
    uv_timer_t tick, poll, deadline, trim;
    pid_t lab0;
    long rss[RSS_SAMPLES];
    unsigned nrss;
    uint64_t trimmed;
    unsigned trims_out;
    int qr_closed;
    int handles;
    uint64_t pushed, tasks_ok;
    int failed;
    char err[200];
    uint64_t t0, t_enq, t_end; /* monotonic µs */
    int finished;
    int queue_closed;
    cga_bar_t *bars;
    uint64_t polls;
} pipe_t;

static void pipe_fail(pipe_t *p, const char *msg, int rc) {
    if (!p->failed) {
        snprintf(p->err, sizeof p->err, "%s%s%s", msg, rc ? ": " : "", rc ? cga_strerror(rc) : "");
        p->failed = 1;
    }
    uv_stop(p->b->loop);
}

static void push_one(pipe_t *p) {
    char id[96], sym[16];
    cga_task_t t;
    make_task(p->b, p->pushed, &t, p->bars, id, sym);
    int rc = cga_queue_push_task(p->q, &t);
    if (rc != CGA_OK) {
        pipe_fail(p, "cannot enqueue a task", rc);
        return;
    }
    p->pushed++;
}

static void on_poll(uv_timer_t *t) {
    pipe_t *p = t->data;
    bench_t *b = p->b;
    group_state_t gl, gn;
    p->polls++;
    if (groups_now(b, &gl, &gn) != 0) {
        pipe_fail(p, "Redis connection lost (control)", 0);
        return;
    }
    if (group_drained(b, &gl, b->akey) && group_drained(b, &gn, b->rkey)) {
        p->t_end = cga_clock_mono_us();
        p->finished = 1;
        uv_timer_stop(&p->poll);
        uv_stop(b->loop);
    }
}

/* Room for one more entry: as ops's producer, fewer than --max-inflight entries and
 * --max-inflight-bytes bytes unanswered (one entry always goes). */
static int window_open(const pipe_t *p) {
    size_t n = cga_queue_entries_in_flight(p->q);
    return n < p->b->max_inflight &&
           (n == 0 || cga_queue_bytes_in_flight(p->q) < p->b->max_inflight_bytes);
}

static void on_idle(uv_idle_t *h) {
    pipe_t *p = h->data;
    bench_t *b = p->b;
    for (int k = 0; k < 4096 && p->pushed < b->tasks && !p->failed; k++) {
        if (!window_open(p)) {
            uv_idle_stop(h); /* on_sent starts it again */
            return;
        }
        push_one(p);
    }
    if (p->pushed >= b->tasks) {
        cga_queue_flush(p->q);
        uv_idle_stop(h);
    }
}

static void on_tick(uv_timer_t *t) {
    pipe_t *p = t->data;
    bench_t *b = p->b;
    uint64_t due = (cga_clock_mono_us() - p->t0) * b->rate / 1000000u;
    if (due > b->tasks) due = b->tasks;
    while (p->pushed < due && !p->failed) push_one(p);
    if (p->pushed >= b->tasks) {
        cga_queue_flush(p->q);
        uv_timer_stop(t);
    }
}

static void on_sent(int status, const char *entry_id, const char *data, size_t len, size_t count,
                    void *arg) {
    pipe_t *p = arg;
    bench_t *b = p->b;
    (void)entry_id;
    (void)data;
    (void)len;
    if (status != CGA_OK) {
        if (status != CGA_ECANCELED) pipe_fail(p, "an entry was not added", status);
        return;
    }
    p->tasks_ok += count;
    while (p->nrss < RSS_SAMPLES && p->tasks_ok >= b->tasks * (p->nrss + 1) / RSS_SAMPLES)
        p->rss[p->nrss++] = bench_proc_kib(p->lab0, "VmRSS");
    if (p->tasks_ok >= b->tasks && !p->t_enq) {
        p->t_enq = cga_clock_mono_us();
        uv_timer_start(&p->poll, on_poll, 1, 1);
    }
    if (!b->rate && p->pushed < b->tasks && !uv_is_active((uv_handle_t *)&p->idle) &&
        window_open(p))
        uv_idle_start(&p->idle, on_idle);
}

static void on_trimmed(int status, uint64_t n, void *arg) {
    pipe_t *p = arg;
    p->trims_out--;
    if (status == CGA_OK) p->trimmed += n;
}

static void on_trim(uv_timer_t *t) {
    pipe_t *p = t->data;
    cga_queue_t *qs[2] = {p->q, p->qr};
    for (int i = 0; i < 2; i++)
        if (qs[i] && cga_queue_trim(qs[i], on_trimmed, p) == CGA_OK) p->trims_out++;
}

static void on_qr_closed(void *arg) {
    pipe_t *p = arg;
    p->qr_closed = 1;
}

static void on_deadline(uv_timer_t *t) {
    pipe_fail(t->data, "timed out (--timeout-s)", 0);
}

static void on_pipe_handle_closed(uv_handle_t *h) {
    pipe_t *p = h->data;
    p->handles--;
}

static void on_queue_closed(void *arg) {
    pipe_t *p = arg;
    p->queue_closed = 1;
}

/* ---- one run ---------------------------------------------------------------------------- */

static double per_task(double v, uint64_t n) {
    return n ? v / (double)n : NAN;
}

static void print_cmds(const char *title, const bench_info_t *i0, const bench_info_t *i1,
                       uint64_t n) {
    printf("  %s Redis commands per task:", title);
    int any = 0;
    for (size_t k = 0; k < i1->ncmds; k++) {
        uint64_t usec = 0;
        uint64_t c = bench_info_calls(i0, i1, i1->cmds[k].name, &usec);
        if ((double)c / (double)n < 0.001) continue;
        printf("%s %s %.3f (%.2f us)", any ? "," : "", i1->cmds[k].name, (double)c / (double)n,
               (double)usec / (double)n);
        any = 1;
    }
    printf("\n");
}

/* Commands the bench itself sends between the snapshots (control, observer, INFO). */
static uint64_t bench_own_calls(const bench_info_t *i0, const bench_info_t *i1, uint64_t *usec) {
    static const char *const own[] = {"info", "xinfo", "xread", "client", "auth", "select",
                                      "xlen", "scan"};
    uint64_t calls = 0, us = 0;
    for (size_t k = 0; k < sizeof own / sizeof own[0]; k++) {
        uint64_t u = 0;
        calls += bench_info_calls(i0, i1, own[k], &u);
        us += u;
    }
    if (usec) *usec = us;
    return calls;
}

static int run_bare(bench_t *b, result_t *res) {
    bench_info_t i0, i1;
    if (bench_info(b->ctl, &i0) != 0) {
        ops_error(CMD, "INFO failed");
        return -1;
    }
    size_t lab_inflight = 4 * (b->concurrency ? b->concurrency : (size_t)sysconf(_SC_NPROCESSORS_ONLN)) * 32;
    size_t claim = lab_inflight / b->batch;
    if (claim < 1) claim = 1;
    if (claim > b->lab_claim) claim = b->lab_claim;
    bench_bare_opts_t o = {
        .cfg = b->cfg, .akey = b->bare_akey, .rkey = b->bare_rkey, .tasks = b->tasks,
        .batch = b->batch, .labs = b->labs, .lab_claim = claim, .nexus_claim = b->nexus_claim,
        .task_bytes = b->task_bytes, .report_bytes = b->report_bytes, .rate = b->rate,
        .max_inflight = b->max_inflight, .max_inflight_bytes = b->max_inflight_bytes,
        .timeout_s = b->timeout_s,
        .interrupted = &b->interrupted,
    };
    bench_bare_result_t r;
    bench_bare_run(&o, &r);
    int ok = r.ok && bench_info(b->ctl, &i1) == 0;
    if (!ok) {
        ops_error(CMD, "bare transport failed: %s", r.err[0] ? r.err : "INFO failed");
        bench_lat_free(&r.lat);
        return -1;
    }
    double *v = res->v;
    uint64_t n = b->tasks;
    v[F_bare_e2e_tasks_per_s] = (double)n / r.e2e_s;
    v[F_bare_enqueue_tasks_per_s] = (double)n / r.enqueue_s;
    bench_lat_sort(&r.lat);
    v[F_bare_lat_p50_ms] = bench_lat_q(&r.lat, 0.5);
    v[F_bare_lat_p99_ms] = bench_lat_q(&r.lat, 0.99);
    v[F_bare_lat_p999_ms] = bench_lat_q(&r.lat, 0.999);
    v[F_bare_lat_max_ms] = bench_lat_q(&r.lat, 1.0);
    uint64_t own = bench_own_calls(&i0, &i1, NULL);
    v[F_bare_redis_cmds_per_task] = per_task((double)(bench_info_total_calls(&i0, &i1) - own), n);
    v[F_bare_redis_cpu_us_per_task] = per_task((i1.cpu_main_s - i0.cpu_main_s) * 1e6, n);
    printf("bare transport: end-to-end %.0f tasks/s (%.3f s), enqueue %.0f tasks/s\n",
           v[F_bare_e2e_tasks_per_s], r.e2e_s, v[F_bare_enqueue_tasks_per_s]);
    printf("  latency enqueue -> report read: p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, max %.3f "
           "ms\n", v[F_bare_lat_p50_ms], v[F_bare_lat_p99_ms], v[F_bare_lat_p999_ms],
           v[F_bare_lat_max_ms]);
    printf("  Redis: %.2f commands/task, %.3f us CPU/task (main thread)\n",
           v[F_bare_redis_cmds_per_task], v[F_bare_redis_cpu_us_per_task]);
    print_cmds("bare", &i0, &i1, n);
    bench_lat_free(&r.lat);
    return 0;
}

static int run_pipeline(bench_t *b, result_t *res) {
    double *v = res->v;
    uint64_t n = b->tasks;
    procs_t pr;
    observer_t ob;
    memset(&ob, 0, sizeof ob);
    pipe_t p;
    memset(&p, 0, sizeof p);
    p.b = b;
    int rc = -1, ob_started = 0;
    bench_info_t i0, i1;

    if (spawn_all(b, &pr) != 0 || wait_ready(b, &pr) != 0) goto out;
    sleep_ms(300); /* settle: heartbeats written, first blocking claims waiting */
    for (size_t i = 0; i < pr.nlabs; i++) {
        pr.lab_idle[i] = bench_proc_kib(pr.lab[i], "VmRSS");
        pr.lab_cpu0[i] = proc_cpu_us(pr.lab[i]);
    }
    pr.nexus_idle = bench_proc_kib(pr.nexus, "VmRSS");
    pr.nexus_cpu0 = proc_cpu_us(pr.nexus);

    if (b->observe) {
        char err[256];
        ob.b = b;
        ob.want = n;
        ob.c = bench_connect(b->cfg, err, sizeof err);
        if (!ob.c) {
            ops_error(CMD, "%s", err);
            goto out;
        }
        bench_lat_init(&ob.lat, (size_t)n);
        bench_lat_init(&ob.lab_lat, (size_t)n);
    }
    if (bench_info(b->ctl, &i0) != 0) {
        ops_error(CMD, "INFO failed");
        goto out;
    }
    if (b->observe) {
        if (pthread_create(&ob.th, NULL, observer_main, &ob) != 0) {
            ops_error(CMD, "cannot start the observer thread");
            goto out;
        }
        ob_started = 1;
    }

    /* The producer: a cga_queue on the app's connection, as ops uses it. */
    cga_queue_opts_t qo;
    cga_queue_opts_init(&qo);
    qo.ns = b->ns;
    qo.name = CGA_QUEUE_ANALYSIS;
    qo.batch_max = b->batch;
    qo.linger_us = b->linger_us;
    int qrc = cga_queue_create(&p.q, b->loop, b->redis, &qo);
    if (qrc != CGA_OK) {
        ops_error(CMD, "cannot create the producer queue: %s", cga_strerror(qrc));
        goto out;
    }
    cga_queue_on_sent(p.q, on_sent, &p);
    if (b->trim_ms && !b->observe) {
        qo.name = CGA_QUEUE_REPORTS;
        qrc = cga_queue_create(&p.qr, b->loop, b->redis, &qo);
        if (qrc != CGA_OK) {
            ops_error(CMD, "cannot create the reports queue: %s", cga_strerror(qrc));
            goto out;
        }
    }
    p.lab0 = pr.lab[0];
    p.bars = cga_malloc(b->bars * sizeof *p.bars);
    uv_idle_init(b->loop, &p.idle);
    uv_timer_init(b->loop, &p.tick);
    uv_timer_init(b->loop, &p.poll);
    uv_timer_init(b->loop, &p.deadline);
    uv_timer_init(b->loop, &p.trim);
    p.idle.data = p.tick.data = p.poll.data = p.deadline.data = p.trim.data = &p;
    p.handles = 5;
    if (b->trim_ms) uv_timer_start(&p.trim, on_trim, b->trim_ms, b->trim_ms);
    uint64_t cpu0 = thread_cpu_us();
    p.t0 = cga_clock_mono_us();
    uv_timer_start(&p.deadline, on_deadline, (uint64_t)b->timeout_s * 1000u, 0);
    if (b->rate)
        uv_timer_start(&p.tick, on_tick, 1, 1);
    else
        uv_idle_start(&p.idle, on_idle);
    while (!p.finished && !p.failed && !b->interrupted) uv_run(b->loop, UV_RUN_DEFAULT);
    uint64_t producer_cpu = thread_cpu_us() - cpu0;
    int got_i1 = p.finished && bench_info(b->ctl, &i1) == 0;
    if (b->trim_ms && p.finished) { /* a last trim once drained, as the coordinator's next one */
        uv_timer_stop(&p.trim);
        on_trim(&p.trim);
        while (p.trims_out > 0) uv_run(b->loop, UV_RUN_ONCE);
    }

    /* Figures of the processes, before they stop. */
    double lab_cpu = 0;
    for (size_t i = 0; i < pr.nlabs; i++) {
        pr.lab_peak[i] = bench_proc_kib(pr.lab[i], "VmHWM");
        lab_cpu += (double)(proc_cpu_us(pr.lab[i]) - pr.lab_cpu0[i]);
    }
    pr.nexus_peak = bench_proc_kib(pr.nexus, "VmHWM");
    double nexus_cpu = (double)(proc_cpu_us(pr.nexus) - pr.nexus_cpu0);

    /* The observer reads what nexus read: give it a moment to catch up. */
    if (ob_started) {
        uint64_t until = cga_clock_mono_ms() + 10000;
        while (!atomic_load(&ob.done) && cga_clock_mono_ms() < until && p.finished &&
               !interrupted(b))
            sleep_ms(2);
        atomic_store(&ob.stop, 1);
        pthread_join(ob.th, NULL);
        ob_started = 0;
    }

    uv_idle_stop(&p.idle);
    uv_timer_stop(&p.tick);
    uv_timer_stop(&p.poll);
    uv_timer_stop(&p.deadline);
    if (b->interrupted) {
        ops_error(CMD, "interrupted by a signal");
        goto out;
    }
    if (p.failed || !got_i1) {
        ops_error(CMD, "pipeline failed: %s", p.failed ? p.err : "INFO failed");
        goto out;
    }
    if (ob.failed) ops_error(CMD, "%s (latencies incomplete)", ob.err);

    double dur = (double)(p.t_end - p.t0) / 1e6;
    v[F_duration_s] = dur;
    v[F_e2e_tasks_per_s] = (double)n / dur;
    v[F_enqueue_tasks_per_s] = (double)n / ((double)(p.t_enq - p.t0) / 1e6);
    if (b->observe) {
        bench_lat_sort(&ob.lat);
        v[F_lat_p50_ms] = bench_lat_q(&ob.lat, 0.5);
        v[F_lat_p99_ms] = bench_lat_q(&ob.lat, 0.99);
        v[F_lat_p999_ms] = bench_lat_q(&ob.lat, 0.999);
        v[F_lat_max_ms] = bench_lat_q(&ob.lat, 1.0);
        bench_lat_sort(&ob.lab_lat);
        v[F_lab_lat_p50_ms] = bench_lat_q(&ob.lab_lat, 0.5);
        v[F_lab_lat_p99_ms] = bench_lat_q(&ob.lab_lat, 0.99);
        v[F_lab_lat_p999_ms] = bench_lat_q(&ob.lab_lat, 0.999);
        v[F_reports_seen] = (double)ob.reports;
        v[F_report_errors] = (double)ob.errors;
        v[F_observer_cpu_us_per_task] = per_task((double)ob.cpu_us, n);
    }
    uint64_t own_us = 0;
    uint64_t own = bench_own_calls(&i0, &i1, &own_us);
    double redis_cpu = (i1.cpu_main_s - i0.cpu_main_s) * 1e6;
    v[F_redis_cmds_per_task] = per_task((double)(bench_info_total_calls(&i0, &i1) - own), n);
    v[F_redis_cpu_us_per_task] = per_task(redis_cpu, n);
    v[F_redis_cpu_us_per_task_pipeline] = per_task(redis_cpu - (double)own_us, n);
    v[F_producer_cpu_us_per_task] = per_task((double)producer_cpu, n);
    v[F_lab_cpu_us_per_task] = per_task(lab_cpu, n);
    v[F_nexus_cpu_us_per_task] = per_task(nexus_cpu, n);
    v[F_cores_busy] = ((i1.cpu_total_s - i0.cpu_total_s) * 1e6 + lab_cpu + nexus_cpu +
                       (double)producer_cpu + (double)ob.cpu_us) / (dur * 1e6);
    long self = bench_proc_kib(getpid(), "VmHWM");
    v[F_rss_bench_peak_kib] = self >= 0 ? (double)self : NAN;
    double li = 0, lp = 0;
    for (size_t i = 0; i < pr.nlabs; i++) {
        if ((double)pr.lab_idle[i] > li) li = (double)pr.lab_idle[i];
        if ((double)pr.lab_peak[i] > lp) lp = (double)pr.lab_peak[i];
    }
    v[F_rss_lab_idle_kib] = li;
    v[F_rss_lab_peak_kib] = lp;
    v[F_rss_lab_10pct_kib] = p.nrss > 0 && p.rss[0] >= 0 ? (double)p.rss[0] : NAN;
    v[F_rss_lab_50pct_kib] = p.nrss > 4 && p.rss[4] >= 0 ? (double)p.rss[4] : NAN;
    long lab_end = bench_proc_kib(pr.lab[0], "VmRSS");
    v[F_rss_lab_end_kib] = lab_end >= 0 ? (double)lab_end : NAN;
    v[F_trimmed_entries] = b->trim_ms ? (double)p.trimmed : NAN;
    v[F_rss_nexus_idle_kib] = pr.nexus_idle >= 0 ? (double)pr.nexus_idle : NAN;
    v[F_rss_nexus_peak_kib] = pr.nexus_peak >= 0 ? (double)pr.nexus_peak : NAN;
    if (i1.pid > 0 && bench_proc_is((pid_t)i1.pid, "redis-server")) {
        long r = bench_proc_kib((pid_t)i1.pid, "VmHWM");
        v[F_rss_redis_peak_kib] = r >= 0 ? (double)r : NAN;
    }
    char dk[CGA_KEY_MAX];
    cga_key(dk, sizeof dk, b->ns, CGA_KIND_QUEUE, CGA_QUEUE_ANALYSIS, "dead");
    long long d1 = xlen(b, dk);
    cga_key(dk, sizeof dk, b->ns, CGA_KIND_QUEUE, CGA_QUEUE_REPORTS, "dead");
    long long d2 = xlen(b, dk);
    long long dead = (d1 > 0 ? d1 : 0) + (d2 > 0 ? d2 : 0);
    v[F_dead_letters] = (double)dead;

    printf("pipeline: end-to-end %.0f tasks/s (%.3f s), enqueue %.0f tasks/s\n",
           v[F_e2e_tasks_per_s], dur, v[F_enqueue_tasks_per_s]);
    if (b->observe)
        printf("  latency enqueue -> report in the stream (exact, %" PRIu64 " reports): p50 %.3f "
               "ms, p99 %.3f ms, p99.9 %.3f ms, max %.3f ms\n", ob.reports, v[F_lat_p50_ms],
               v[F_lat_p99_ms], v[F_lat_p999_ms], v[F_lat_max_ms]);
    if (b->observe)
        printf("  of which enqueue -> report written by the lab (its ts): p50 %.3f ms, p99 %.3f "
               "ms, p99.9 %.3f ms\n", v[F_lab_lat_p50_ms], v[F_lab_lat_p99_ms],
               v[F_lab_lat_p999_ms]);
    printf("  Redis: %.2f commands/task, %.3f us CPU/task (main thread; %.3f without the "
           "bench's own reads)\n", v[F_redis_cmds_per_task], v[F_redis_cpu_us_per_task],
           v[F_redis_cpu_us_per_task_pipeline]);
    print_cmds("pipeline", &i0, &i1, n);
    printf("  CPU per task: producer %.3f us, labs %.3f us, nexus %.3f us, observer %.3f us; "
           "%.2f cores busy (Redis, labs, nexus, bench)\n", v[F_producer_cpu_us_per_task],
           v[F_lab_cpu_us_per_task], v[F_nexus_cpu_us_per_task], v[F_observer_cpu_us_per_task],
           v[F_cores_busy]);
    printf("  RSS (KiB):");
    for (size_t i = 0; i < pr.nlabs; i++)
        printf(" lab[%zu] idle %ld peak %ld,", i, pr.lab_idle[i], pr.lab_peak[i]);
    printf(" nexus idle %ld peak %ld, bench peak %.0f, redis peak %.0f\n", pr.nexus_idle,
           pr.nexus_peak, v[F_rss_bench_peak_kib], v[F_rss_redis_peak_kib]);
    printf("  lab[0] RSS (KiB) at each tenth of the tasks enqueued:");
    for (unsigned i = 0; i < p.nrss; i++) printf(" %ld", p.rss[i]);
    printf("; after the run %ld\n", lab_end);
    if (b->trim_ms)
        printf("  trimmed %" PRIu64 " entries (XTRIM MINID every %u ms%s)\n", p.trimmed,
               b->trim_ms, b->observe ? ", analysis queue only: the observer reads the reports"
                                      : "");
    if (dead > 0 || ob.errors > 0)
        printf("  WARNING: %lld dead letters, %" PRIu64 " reports with errors\n", dead,
               ob.errors);
    rc = 0;

out:
    if (ob_started) {
        atomic_store(&ob.stop, 1);
        pthread_join(ob.th, NULL);
    }
    int stop_rc = stop_all(b, &pr);
    if (stop_rc != 0) rc = -1;
    if (rc == 0) {
        /* Written at exit: the final figures. */
        char path[PATH_BUF];
        path_in(b, path, sizeof path, "nexus.prom");
        char *text = read_file(path);
        if (text) {
            prom_hist_t h;
            prom_hist(text, "cgalpha_task_latency_seconds", &h);
            v[F_nexus_lat_p50_ms] = prom_q(&h, 0.5);
            v[F_nexus_lat_p99_ms] = prom_q(&h, 0.99);
            v[F_nexus_lat_p999_ms] = prom_q(&h, 0.999);
            v[F_nexus_reports] = prom_value(text, "cgalpha_nexus_reports_total");
            printf("  nexus: %.0f reports folded; latency enqueue -> folded (histogram): p50 %.3f "
                   "ms, p99 %.3f ms, p99.9 %.3f ms\n", v[F_nexus_reports], v[F_nexus_lat_p50_ms],
                   v[F_nexus_lat_p99_ms], v[F_nexus_lat_p999_ms]);
            free(text);
        } else {
            printf("  nexus: no metrics file (this nexus has no NEXUS_METRICS_FILE)\n");
        }
    }
    if (p.handles) uv_timer_stop(&p.trim);
    if (p.qr) {
        cga_queue_close(p.qr, on_qr_closed, &p);
        while (!p.qr_closed) uv_run(b->loop, UV_RUN_ONCE);
    }
    if (p.q) {
        cga_queue_close(p.q, on_queue_closed, &p);
        while (!p.queue_closed) uv_run(b->loop, UV_RUN_ONCE);
    }
    if (p.handles) {
        uv_close((uv_handle_t *)&p.trim, on_pipe_handle_closed);
        uv_close((uv_handle_t *)&p.idle, on_pipe_handle_closed);
        uv_close((uv_handle_t *)&p.tick, on_pipe_handle_closed);
        uv_close((uv_handle_t *)&p.poll, on_pipe_handle_closed);
        uv_close((uv_handle_t *)&p.deadline, on_pipe_handle_closed);
        while (p.handles > 0) uv_run(b->loop, UV_RUN_ONCE);
    }
    free(p.bars);
    bench_disconnect(ob.c);
    bench_lat_free(&ob.lat);
    bench_lat_free(&ob.lab_lat);
    return rc;
}

static void print_json(const bench_t *b, const result_t *r, unsigned runs_ok, FILE *f) {
    char model[128] = "";
    FILE *ci = fopen("/proc/cpuinfo", "r");
    if (ci) {
        char line[256];
        while (fgets(line, sizeof line, ci)) {
            if (strncmp(line, "model name", 10) == 0) {
                const char *c = strchr(line, ':');
                if (c) snprintf(model, sizeof model, "%s", c + 2);
                model[strcspn(model, "\n")] = '\0';
                break;
            }
        }
        fclose(ci);
    }
    fprintf(f, "{\"bench\":\"cgalpha\",\"version\":\"%s\",\"runs\":%u,\"runs_ok\":%u,"
            "\"tasks\":%" PRIu64 ",\"batch\":%zu,\"labs\":%zu,\"concurrency\":%zu,"
            "\"lab_claim\":%zu,\"nexus_claim\":%zu,\"plugin\":",
            CGA_VERSION_STRING, b->runs, runs_ok, b->tasks, b->batch, b->labs, b->concurrency,
            b->lab_claim, b->nexus_claim);
    ops_json_str(f, b->plugin, strlen(b->plugin));
    fprintf(f, ",\"bars\":%zu,\"symbols\":%zu,\"task_bytes\":%zu,\"report_bytes\":%zu,"
            "\"rate\":%" PRIu64 ",\"linger_us\":%u,\"max_inflight\":%zu,"
            "\"max_inflight_bytes\":%zu,\"observe\":%s,"
            "\"bare\":%s,\"pipeline\":%s,\"nproc\":%ld,\"cpu\":",
            b->bars, b->symbols, b->task_bytes, b->report_bytes, b->rate, b->linger_us,
            b->max_inflight, b->max_inflight_bytes, b->observe ? "true" : "false",
            b->bare ? "true" : "false",
            b->pipeline ? "true" : "false", sysconf(_SC_NPROCESSORS_ONLN));
    ops_json_str(f, model, strlen(model));
    fprintf(f, ",\"redis_version\":");
    ops_json_str(f, b->redis_version, strlen(b->redis_version));
    for (int i = 0; i < F_COUNT; i++) {
        fprintf(f, ",\"%s\":", field_names[i]);
        if (isnan(r->v[i]) || isinf(r->v[i]))
            fputs("null", f);
        else
            fprintf(f, "%.7g", r->v[i]);
    }
    fprintf(f, "}\n");
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median of each field over the runs that succeeded (NAN values left out). */
static void median(const result_t *rs, unsigned n, result_t *out) {
    double vals[99];
    for (int f = 0; f < F_COUNT; f++) {
        unsigned k = 0;
        for (unsigned i = 0; i < n; i++)
            if (rs[i].ok && !isnan(rs[i].v[f])) vals[k++] = rs[i].v[f];
        if (k == 0) {
            out->v[f] = NAN;
            continue;
        }
        qsort(vals, k, sizeof vals[0], cmp_double);
        out->v[f] = k % 2 ? vals[k / 2] : (vals[k / 2 - 1] + vals[k / 2]) / 2;
    }
}

static int setup(bench_t *b) {
    const cga_config_t *c = b->cfg;
    b->ns = cga_config_str(c, "CGALPHA_NAMESPACE");
    b->tasks = (uint64_t)cga_config_int(c, "BENCH_TASKS");
    b->batch = (size_t)cga_config_int(c, "BENCH_BATCH");
    b->labs = (size_t)cga_config_int(c, "BENCH_LABS");
    b->concurrency = (size_t)cga_config_int(c, "BENCH_CONCURRENCY");
    b->lab_claim = (size_t)cga_config_int(c, "BENCH_LAB_CLAIM");
    b->nexus_claim = (size_t)cga_config_int(c, "BENCH_NEXUS_CLAIM");
    b->bars = (size_t)cga_config_int(c, "BENCH_BARS");
    b->symbols = (size_t)cga_config_int(c, "BENCH_SYMBOLS");
    b->rate = (uint64_t)cga_config_int(c, "BENCH_RATE");
    b->linger_us = (unsigned)cga_config_int(c, "BENCH_LINGER_US");
    b->max_inflight = (size_t)cga_config_int(c, "BENCH_MAX_INFLIGHT");
    b->max_inflight_bytes = (size_t)cga_config_int(c, "BENCH_MAX_INFLIGHT_BYTES");
    b->runs = (unsigned)cga_config_int(c, "BENCH_RUNS");
    b->timeout_s = (unsigned)cga_config_int(c, "BENCH_TIMEOUT_S");
    b->bare = cga_config_bool(c, "BENCH_BARE");
    b->pipeline = cga_config_bool(c, "BENCH_PIPELINE");
    b->observe = cga_config_bool(c, "BENCH_OBSERVE");
    b->trim_ms = (unsigned)cga_config_int(c, "BENCH_TRIM_MS");
    b->keep = cga_config_bool(c, "BENCH_KEEP");
    snprintf(b->plugin, sizeof b->plugin, "%s", cga_config_str(c, "BENCH_PLUGIN"));
    if (b->bars + 2 >= WALK_LEN) {
        ops_error(CMD, "--bars: at most %d", WALK_LEN - 3);
        return CGA_EXIT_USAGE;
    }
    if (!b->bare && !b->pipeline) {
        ops_error(CMD, "--no-bare and --no-pipeline: nothing to run");
        return CGA_EXIT_USAGE;
    }
    cga_key(b->akey, sizeof b->akey, b->ns, CGA_KIND_QUEUE, CGA_QUEUE_ANALYSIS, NULL);
    cga_key(b->rkey, sizeof b->rkey, b->ns, CGA_KIND_QUEUE, CGA_QUEUE_REPORTS, NULL);
    cga_key(b->bare_akey, sizeof b->bare_akey, b->ns, "bare", CGA_QUEUE_ANALYSIS, NULL);
    cga_key(b->bare_rkey, sizeof b->bare_rkey, b->ns, "bare", CGA_QUEUE_REPORTS, NULL);

    const char *bin = cga_config_str(c, "BENCH_BIN_DIR");
    if (bin) {
        snprintf(b->bindir, sizeof b->bindir, "%s", bin);
    } else {
        ssize_t n = readlink("/proc/self/exe", b->bindir, sizeof b->bindir - 1);
        if (n <= 0) {
            ops_error(CMD, "cannot find my own executable: give --bin-dir");
            return CGA_EXIT_USAGE;
        }
        b->bindir[n] = '\0';
        char *slash = strrchr(b->bindir, '/');
        if (slash) *slash = '\0';
    }
    if (b->pipeline) {
        const char *names[] = {"cgalpha-lab", "cgalpha-nexus"};
        for (int i = 0; i < 2; i++) {
            char path[PATH_MAX + 32];
            snprintf(path, sizeof path, "%s/%s", b->bindir, names[i]);
            if (access(path, X_OK) != 0) {
                ops_error(CMD, "%s: %s (see --bin-dir)", path, strerror(errno));
                return CGA_EXIT_USAGE;
            }
        }
    }
    const char *wd = cga_config_str(c, "BENCH_WORK_DIR");
    if (wd) {
        snprintf(b->workdir, sizeof b->workdir, "%s", wd);
        if (mkdir(b->workdir, 0700) != 0 && errno != EEXIST) {
            ops_error(CMD, "--work-dir %s: %s", wd, strerror(errno));
            return CGA_EXIT_USAGE;
        }
    } else {
        snprintf(b->workdir, sizeof b->workdir, "/tmp/cga-bench-XXXXXX");
        if (!mkdtemp(b->workdir)) {
            ops_error(CMD, "cannot create a work dir in /tmp: %s", strerror(errno));
            return CGA_EXIT_FAILURE;
        }
        b->made_workdir = 1;
    }
    return -1;
}

static void remove_workdir(bench_t *b) {
    const char *files[] = {"nexus.log", "nexus.prom", "nexus.prom.tmp"};
    char path[PATH_MAX + 64];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", b->workdir, files[i]);
        unlink(path);
    }
    for (size_t i = 0; i < b->labs; i++) {
        const char *ext[] = {"log", "prom", "prom.tmp"};
        for (size_t k = 0; k < 3; k++) {
            snprintf(path, sizeof path, "%s/lab-%zu.%s", b->workdir, i, ext[k]);
            unlink(path);
        }
    }
    if (b->made_workdir) rmdir(b->workdir);
}

int ops_cmd_bench(cga_app_t *a) {
    bench_t b;
    memset(&b, 0, sizeof b);
    b.app = a;
    b.cfg = cga_app_config(a);
    b.loop = cga_app_loop(a);
    b.redis = cga_app_redis(a);
    int code = setup(&b);
    if (code >= 0) return code;
    code = ops_connect(a, CMD);
    if (code >= 0) {
        remove_workdir(&b);
        return code;
    }
    cga_app_on_signal(a, on_signal, &b);
    char err[256];
    b.ctl = bench_connect(b.cfg, err, sizeof err);
    if (!b.ctl) {
        ops_error(CMD, "%s", err);
        remove_workdir(&b);
        return CGA_EXIT_UNAVAILABLE;
    }
    redisReply *ver = bench_cmd(b.ctl, "INFO server");
    if (ver && ver->type == REDIS_REPLY_STRING) {
        const char *p = strstr(ver->str, "redis_version:");
        if (p) sscanf(p + 14, "%31[^\r\n]", b.redis_version);
    }
    if (ver) freeReplyObject(ver);
    make_walk(&b);
    measure_sizes(&b);
    build_env(&b);

    result_t *rs = cga_calloc(b.runs, sizeof *rs);
    unsigned runs_ok = 0;
    int failed = 0;
    printf("cgalpha bench: %" PRIu64 " tasks, %zu per entry, %zu lab(s) (concurrency %zu, claim "
           "%zu), nexus claim %zu, plugin %s, %zu bars/task (task %zu B, report %zu B), "
           "namespace %s, Redis %s\n", b.tasks, b.batch, b.labs, b.concurrency, b.lab_claim,
           b.nexus_claim, b.plugin, b.bars, b.task_bytes, b.report_bytes, b.ns,
           b.redis_version);
    if (!b.rate) printf("  as fast as possible (producer: %zu entries and %zu bytes in flight at "
                        "most)\n", b.max_inflight, b.max_inflight_bytes);
    if (b.rate) printf("  steady rate: %" PRIu64 " tasks/s\n", b.rate);
    for (unsigned run = 0; run < b.runs && !b.interrupted; run++) {
        result_t *r = &rs[run];
        for (int f = 0; f < F_COUNT; f++) r->v[f] = NAN;
        long keys = ns_keys(&b, 1);
        if (keys != 0) {
            if (keys < 0)
                ops_error(CMD, "SCAN failed");
            else
                ops_error(CMD, "namespace %s is not empty (%ld keys): the bench needs an empty "
                          "one (--namespace)", b.ns, keys);
            failed = 1;
            break;
        }
        printf("-- run %u of %u\n", run + 1, b.runs);
        fflush(stdout);
        int rc = 0;
        if (b.bare) rc = run_bare(&b, r);
        ns_keys(&b, 0);
        fflush(stdout);
        if (rc == 0 && b.pipeline && !b.interrupted) rc = run_pipeline(&b, r);
        ns_keys(&b, 0);
        if (rc == 0 && b.bare && b.pipeline) {
            r->v[F_ratio_e2e] = r->v[F_e2e_tasks_per_s] / r->v[F_bare_e2e_tasks_per_s];
            r->v[F_ratio_redis_cpu] =
                r->v[F_redis_cpu_us_per_task_pipeline] / r->v[F_bare_redis_cpu_us_per_task];
            printf("pipeline / bare: throughput %.2f, Redis CPU per task %.2f\n",
                   r->v[F_ratio_e2e], r->v[F_ratio_redis_cpu]);
        }
        fflush(stdout);
        if (rc != 0) {
            failed = 1;
            break;
        }
        r->ok = 1;
        runs_ok++;
    }
    result_t med;
    memset(&med, 0, sizeof med);
    median(rs, b.runs, &med);
    if (runs_ok > 1) printf("-- median of %u runs\n", runs_ok);
    if (runs_ok > 0) print_json(&b, &med, runs_ok, stdout);
    fflush(stdout);
    free(rs);
    free_env(&b);
    free(b.walk);
    bench_disconnect(b.ctl);
    if (b.keep || (failed && b.spawned)) {
        fprintf(stderr, "%s %s: logs and metrics of the processes are in %s\n", OPS_PROG, CMD,
                b.workdir);
    } else {
        remove_workdir(&b);
    }
    /* An interrupted benchmark has no result: that is a failure, not a graceful stop. */
    return failed || b.interrupted ? CGA_EXIT_FAILURE : CGA_EXIT_OK;
}

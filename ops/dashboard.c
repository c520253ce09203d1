/* The dashboard of `run`: its page, /api/snapshot and the per-queue gauges (see dashboard.h). */
#define CGA_LOG_COMPONENT "dashboard"
#include "dashboard.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cgalpha/alloc.h"
#include "cgalpha/clock.h"
#include "cgalpha/err.h"
#include "cgalpha/http.h"
#include "cgalpha/log.h"
#include "cgalpha/metrics.h"
#include "cgalpha/redis.h"
#include "ops.h"
#include "snapshot.h"

#define INTERVAL_MS 1000u
#define STALE_AFTER_MS (3u * INTERVAL_MS)
#define RECENT_CHANGES 500u
#define HISTORY 320u /* readings kept for /api/history: five minutes and some */

#define JSON_TYPE "application/json; charset=utf-8"

/* What the page gets when no reading succeeded yet. */
#define EMPTY_MEMBERS "\"queues\":null,\"semaphore\":null,\"labs\":[],\"regimes\":[]," \
                      "\"changes\":[],\"undecodable\":0"

enum { G_LENGTH, G_LAG, G_PENDING, G_DEAD, G_CONSUMERS, NGAUGES };

static const struct {
    const char *name, *help;
} gauge_defs[NGAUGES] = {
    {"cgalpha_queue_length", "Entries in the queue's stream (XLEN)"},
    {"cgalpha_queue_lag", "Entries not yet delivered to the queue's consumer group"},
    {"cgalpha_queue_pending", "Entries delivered to the queue's group and not acknowledged"},
    {"cgalpha_queue_dead_letters", "Entries in the queue's dead-letter stream"},
    {"cgalpha_queue_consumers", "Consumers in the queue's consumer group"},
};

/* One reading, as /api/history gives it to a page that opens. */
typedef struct point_s {
    uint64_t t_ms;
    uint64_t depth[OPS_NQUEUES]; /* lag + pending */
    uint64_t processed;          /* sum of the live labs' processed counts */
} point_t;

struct ops_dashboard_s {
    cga_app_t *app;
    cga_redis_t *redis;
    const char *ns;
    ops_snapper_t *snapper;
    uv_timer_t timer;
    unsigned closes;                 /* close callbacks awaited */
    void (*done)(void *arg);
    void *done_arg;
    char *members;                   /* the last good reading, rendered (NULL: none yet) */
    size_t members_len;
    uint64_t taken_ms;               /* when it was taken (0: never) */
    int last_err;                    /* the last reading's error (CGA_OK when it succeeded) */
    int logged_err;                  /* last_err was logged (once per run of failures) */
    cga_gauge_t *gauges[OPS_NQUEUES][NGAUGES];
    cga_gauge_t *labs_alive;
    point_t history[HISTORY];        /* a ring: the oldest at hist_head once full */
    size_t hist_head, hist_len;
};

/* The routes outlive the dashboard (the server cannot remove them): their handlers find the
 * running dashboard here, NULL once it is closed. */
static ops_dashboard_t *live;

static const ops_dash_asset_t *find_asset(const char *name) {
    for (size_t i = 0; i < ops_dash_nassets; i++)
        if (strcmp(ops_dash_assets[i].name, name) == 0) return &ops_dash_assets[i];
    return NULL;
}

static const char *content_type(const char *name) {
    const char *dot = strrchr(name, '.');
    if (dot && strcmp(dot, ".html") == 0) return "text/html; charset=utf-8";
    if (dot && strcmp(dot, ".js") == 0) return "text/javascript; charset=utf-8";
    if (dot && strcmp(dot, ".css") == 0) return "text/css; charset=utf-8";
    return "application/octet-stream";
}

/* Assets are static data: they are served even after the dashboard is closed. */
static void on_asset(const char *path, cga_http_response_t *res, void *arg) {
    (void)path;
    const ops_dash_asset_t *as = arg;
    res->status = 200;
    res->content_type = content_type(as->name);
    res->cache_control = "no-cache"; /* revalidate: a new binary may serve new assets */
    res->body = cga_malloc(as->len ? as->len : 1);
    memcpy(res->body, as->data, as->len);
    res->len = as->len;
}

/* The running dashboard and a JSON body being written, for the API handlers: NULL (the answer
 * already filled in: 503 while stopping, 500 without memory) or the dashboard with *f open. */
static ops_dashboard_t *json_begin(cga_http_response_t *res, FILE **f, char **buf, size_t *len) {
    ops_dashboard_t *d = live;
    if (!d) {
        cga_http_respond(res, 503, JSON_TYPE, "{\"error\":\"the dashboard is stopping\"}\n");
        return NULL;
    }
    *buf = NULL;
    *len = 0;
    *f = open_memstream(buf, len);
    if (!*f) {
        cga_http_respond(res, 500, JSON_TYPE, "{\"error\":\"out of memory\"}\n");
        return NULL;
    }
    return d;
}

/* Closes f and hands its text to the server as a 200 answer that no cache keeps. */
static void json_end(cga_http_response_t *res, FILE *f, char **buf, size_t *len) {
    fclose(f);
    res->status = 200;
    res->content_type = JSON_TYPE;
    res->cache_control = "no-store";
    res->body = *buf;
    res->len = *len;
}

static void on_api(const char *path, cga_http_response_t *res, void *arg) {
    (void)path;
    (void)arg;
    FILE *f;
    char *buf;
    size_t len;
    ops_dashboard_t *d = json_begin(res, &f, &buf, &len);
    if (!d) return;
    uint64_t now = cga_clock_wall_ms();
    int connected = cga_redis_is_connected(d->redis);
    const char *why = NULL;
    char text[160];
    if (!connected) {
        int e = cga_redis_last_error(d->redis);
        snprintf(text, sizeof text, "Redis not connected (%s)", cga_strerror(e ? e : CGA_ENOTCONN));
        why = text;
    } else if (d->last_err) {
        snprintf(text, sizeof text, "the last reading failed (%s)", cga_strerror(d->last_err));
        why = text;
    } else if (!d->taken_ms) {
        why = "no reading yet";
    } else if (now > d->taken_ms + STALE_AFTER_MS) {
        why = "the last reading is too old";
    }
    fputs("{\"namespace\":", f);
    ops_json_str(f, d->ns, strlen(d->ns));
    fprintf(f, ",\"version\":\"%s\",\"taken_ms\":%" PRIu64 ",\"served_ms\":%" PRIu64
            ",\"interval_ms\":%u,\"redis\":{\"connected\":%s},\"stale\":%s,\"error\":",
            CGA_VERSION_STRING, d->taken_ms, now, INTERVAL_MS, connected ? "true" : "false",
            why ? "true" : "false");
    if (why)
        ops_json_str(f, why, strlen(why));
    else
        fputs("null", f);
    fputc(',', f);
    if (d->members)
        fwrite(d->members, 1, d->members_len, f);
    else
        fputs(EMPTY_MEMBERS, f);
    fputs("}\n", f);
    json_end(res, f, &buf, &len);
}

static void on_history(const char *path, cga_http_response_t *res, void *arg) {
    (void)path;
    (void)arg;
    FILE *f;
    char *buf;
    size_t len;
    ops_dashboard_t *d = json_begin(res, &f, &buf, &len);
    if (!d) return;
    fprintf(f, "{\"interval_ms\":%u,\"fields\":[\"t_ms\",\"analysis_depth\",\"reports_depth\","
            "\"processed\"],\"points\":[", INTERVAL_MS);
    for (size_t i = 0; i < d->hist_len; i++) {
        const point_t *pt = &d->history[(d->hist_head + i) % HISTORY];
        fprintf(f, "%s[%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 "]", i ? "," : "", pt->t_ms,
                pt->depth[OPS_Q_ANALYSIS], pt->depth[OPS_Q_REPORTS], pt->processed);
    }
    fputs("]}\n", f);
    json_end(res, f, &buf, &len);
}

static void record(ops_dashboard_t *d, const ops_snapshot_t *s) {
    point_t *pt;
    if (d->hist_len < HISTORY) {
        pt = &d->history[(d->hist_head + d->hist_len++) % HISTORY];
    } else {
        pt = &d->history[d->hist_head];
        d->hist_head = (d->hist_head + 1) % HISTORY;
    }
    pt->t_ms = s->taken_us / 1000;
    for (int i = 0; i < OPS_NQUEUES; i++) pt->depth[i] = s->queues[i].lag + s->queues[i].pending;
    pt->processed = 0;
    for (size_t i = 0; i < s->nlabs; i++) pt->processed += s->labs[i].processed;
}

static void set_gauges(ops_dashboard_t *d, const ops_snapshot_t *s) {
    for (int i = 0; i < OPS_NQUEUES; i++) {
        const cga_queue_info_t *q = &s->queues[i];
        cga_gauge_set(d->gauges[i][G_LENGTH], (double)q->length);
        cga_gauge_set(d->gauges[i][G_LAG], (double)q->lag);
        cga_gauge_set(d->gauges[i][G_PENDING], (double)q->pending);
        cga_gauge_set(d->gauges[i][G_DEAD], (double)q->dead);
        cga_gauge_set(d->gauges[i][G_CONSUMERS], (double)q->consumers);
    }
    cga_gauge_set(d->labs_alive, (double)s->nlabs);
}

static void on_snapshot(const ops_snapshot_t *s, void *arg) {
    ops_dashboard_t *d = arg;
    d->last_err = s->err;
    if (s->err) { /* partial: keep the last good reading, say why it is stale */
        if (!d->logged_err++)
            CGA_LOG(CGA_LOG_WARN, s->err, "reading the namespace failed (the page "
                    "shows the last good reading as stale)");
        return;
    }
    if (d->logged_err) CGA_LOG(CGA_LOG_INFO, 0, "reading the namespace again");
    d->logged_err = 0;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return;
    ops_snapshot_json(f, s, s->taken_us);
    fclose(f);
    free(d->members);
    d->members = buf;
    d->members_len = len;
    d->taken_ms = s->taken_us / 1000;
    set_gauges(d, s);
    record(d, s);
}

static void on_tick(uv_timer_t *t) {
    ops_dashboard_t *d = t->data;
    if (ops_snapper_busy(d->snapper)) return; /* the last reading is still in flight */
    if (!cga_redis_is_connected(d->redis)) return; /* stale; nothing is queued meanwhile */
    int rc = ops_snapper_take(d->snapper, on_snapshot, d);
    if (rc < 0 && rc != CGA_EEXIST) {
        d->last_err = rc;
        if (!d->logged_err++)
            CGA_LOG(CGA_LOG_WARN, rc, "cannot read the namespace");
    }
}

static void register_gauges(ops_dashboard_t *d) {
    cga_metrics_t *m = cga_app_metrics(d->app);
    for (int i = 0; i < OPS_NQUEUES; i++) {
        char labels[64] = "";
        cga_metrics_label_append(labels, sizeof labels, "queue", ops_queue_names[i]);
        for (int g = 0; g < NGAUGES; g++)
            d->gauges[i][g] = cga_metrics_gauge(m, gauge_defs[g].name, gauge_defs[g].help,
                                                labels);
    }
    d->labs_alive = cga_metrics_gauge(m, "cgalpha_labs_alive",
                                      "Labs with a live heartbeat in the namespace", NULL);
}

static int add_routes(cga_http_t *h) {
    static const struct {
        const char *path, *asset;
    } pages[] = {
        {"/", "index.html"},
        {"/index.html", "index.html"},
        {"/app.js", "app.js"},
        {"/style.css", "style.css"},
    };
    for (size_t i = 0; i < sizeof pages / sizeof pages[0]; i++) {
        const ops_dash_asset_t *as = find_asset(pages[i].asset);
        if (!as) return CGA_ENOTFOUND; /* the build embedded another set of files */
        int rc = cga_http_route(h, pages[i].path, on_asset, (void *)as);
        if (rc < 0 && rc != CGA_EEXIST) return rc; /* EEXIST: routed by an earlier run */
    }
    int rc = cga_http_route(h, "/api/snapshot", on_api, NULL);
    if (rc == CGA_OK || rc == CGA_EEXIST) rc = cga_http_route(h, "/api/history", on_history, NULL);
    return rc == CGA_EEXIST ? CGA_OK : rc;
}

int ops_dashboard_start(ops_dashboard_t **out, cga_app_t *a) {
    *out = NULL;
    cga_http_t *h = cga_app_http(a);
    if (!h) return CGA_OK;
    if (live) return CGA_EEXIST;
    int rc = add_routes(h);
    if (rc < 0) return rc;
    ops_dashboard_t *d = cga_calloc(1, sizeof *d);
    d->app = a;
    d->redis = cga_app_redis(a);
    d->ns = cga_app_ns(a);
    rc = ops_snapper_create(&d->snapper, cga_app_loop(a), d->redis, d->ns, RECENT_CHANGES);
    if (rc < 0) {
        free(d);
        return rc;
    }
    register_gauges(d);
    uv_timer_init(cga_app_loop(a), &d->timer);
    d->timer.data = d;
    uv_timer_start(&d->timer, on_tick, 0, INTERVAL_MS);
    uv_unref((uv_handle_t *)&d->timer); /* like the HTTP server: never keeps the loop alive */
    live = d;
    *out = d;
    CGA_LOG(CGA_LOG_INFO, 0, "serving the operator's page at / and /api/snapshot on port %d",
            cga_http_port(h));
    return CGA_OK;
}

static void closed_one(ops_dashboard_t *d) {
    if (--d->closes > 0) return;
    void (*done)(void *) = d->done;
    void *done_arg = d->done_arg;
    free(d->members);
    free(d);
    if (done) done(done_arg);
}

static void on_timer_closed(uv_handle_t *h) {
    closed_one(h->data);
}

static void on_snapper_closed(void *arg) {
    closed_one(arg);
}

void ops_dashboard_close(ops_dashboard_t *d, void (*done)(void *arg), void *arg) {
    if (!d) return;
    if (live == d) live = NULL;
    d->done = done;
    d->done_arg = arg;
    d->closes = 2;
    uv_timer_stop(&d->timer);
    uv_close((uv_handle_t *)&d->timer, on_timer_closed);
    ops_snapper_close(d->snapper, on_snapper_closed, d);
}

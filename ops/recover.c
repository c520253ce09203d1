/* `recover`: sends the task buffer to Redis by hand, or shows what it would send (--dry-run). */
#define CGA_LOG_COMPONENT "recover"
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "cgalpha/alloc.h"
#include "cgalpha/app.h"
#include "cgalpha/buffer.h"
#include "cgalpha/clock.h"
#include "cgalpha/config.h"
#include "cgalpha/err.h"
#include "cgalpha/keys.h"
#include "cgalpha/log.h"
#include "cgalpha/queue.h"
#include "cgalpha/redis.h"
#include "bufview.h"
#include "ops.h"
#include "progress.h"

#define LEASE_MS 10000
#define PEEK_BYTES (4u << 20)

static const char *const queue_names[2] = {CGA_QUEUE_ANALYSIS, CGA_QUEUE_REPORTS};

typedef struct fly_s {
    int64_t seq;
    size_t len, count;
} fly_t;

typedef struct recover_s {
    cga_app_t *app;
    uv_loop_t *loop;
    cga_buffer_t *buf;
    cga_queue_t *q[2];
    fly_t *fly;                 /* in flight, oldest first */
    size_t nfly, capfly;
    int64_t *dels;              /* rows accepted, to delete */
    size_t ndel, capdel;
    int fail;                   /* the first refusal */
    int interrupted;
    uint64_t total_entries, total_tasks;
    uint64_t ok_entries, ok_tasks;
    uint64_t t0_us;
    int progress, shown;
    unsigned closes;
} recover_t;

static void on_sent(int status, const char *entry_id, const char *data, size_t len, size_t count,
                    void *arg) {
    recover_t *r = arg;
    (void)entry_id;
    (void)data;
    size_t i = 0;
    while (i < r->nfly && (r->fly[i].len != len || r->fly[i].count != count)) i++;
    if (i == r->nfly) return; /* cannot happen */
    int64_t seq = r->fly[i].seq;
    memmove(&r->fly[i], &r->fly[i + 1], (r->nfly - i - 1) * sizeof *r->fly);
    r->nfly--;
    if (status != CGA_OK) {
        if (!r->fail) r->fail = status;
        return;
    }
    if (r->ndel == r->capdel) {
        r->capdel = r->capdel ? r->capdel * 2 : 64;
        r->dels = cga_realloc(r->dels, r->capdel * sizeof *r->dels);
    }
    r->dels[r->ndel++] = seq;
    r->ok_entries++;
    r->ok_tasks += count;
}

static void on_signal(int signum, void *arg) {
    recover_t *r = arg;
    (void)signum;
    r->interrupted = 1;
}

static void on_closed(void *arg) {
    recover_t *r = arg;
    r->closes--;
}

static void show_progress(recover_t *r) {
    if (!r->progress) return;
    char line[160];
    double secs = (double)(cga_clock_wall_us() - r->t0_us) / 1e6;
    ops_progress_format(line, sizeof line, r->ok_entries, r->total_entries, r->ok_tasks, secs);
    fprintf(stderr, "\r%s\033[K", line);
    r->shown = 1;
}

/* Deletes the accepted rows. Returns 0, or the error (logged). */
static int delete_accepted(recover_t *r) {
    if (r->ndel == 0) return 0;
    int rc = cga_buffer_delete(r->buf, r->dels, r->ndel, NULL);
    if (rc != CGA_OK) {
        ops_error("recover", "cannot delete the rows Redis accepted: %s (they will be sent again "
                  "by the next drain: duplicates, not losses)", cga_buffer_errmsg(r->buf));
        return rc;
    }
    r->ndel = 0;
    return 0;
}

/* Sends every row of queue key through q, oldest first, window entries in flight at most. */
static int drain_queue(recover_t *r, cga_queue_t *q, const char *key, size_t window) {
    int64_t after = 0;
    int exhausted = 0;
    uint64_t lease_at = uv_now(r->loop);
    cga_queue_on_sent(q, on_sent, r);
    for (;;) {
        if (r->fail || r->interrupted) exhausted = 1;
        while (!exhausted && r->nfly < window) {
            cga_buffer_batch_t *b = NULL;
            int rc = cga_buffer_peek(r->buf, key, after, window - r->nfly, PEEK_BYTES, &b);
            if (rc != CGA_OK) {
                ops_error("recover", "reading the task buffer failed: %s",
                          cga_buffer_errmsg(r->buf));
                if (!r->fail) r->fail = rc;
                exhausted = 1;
                break;
            }
            if (b->n == 0) exhausted = 1;
            for (size_t i = 0; i < b->n; i++) {
                const cga_buffer_entry_t *e = &b->entries[i];
                if (r->nfly == r->capfly) {
                    r->capfly = r->capfly ? r->capfly * 2 : 64;
                    r->fly = cga_realloc(r->fly, r->capfly * sizeof *r->fly);
                }
                rc = cga_queue_send_entry(q, e->data, e->len, (size_t)e->count);
                if (rc != CGA_OK) {
                    if (!r->fail) r->fail = rc;
                    exhausted = 1;
                    break;
                }
                r->fly[r->nfly++] = (fly_t){e->seq, e->len, (size_t)e->count};
                after = e->seq;
            }
            cga_buffer_batch_free(b);
        }
        if (exhausted && r->nfly == 0) break;
        uv_run(r->loop, UV_RUN_ONCE);
        int rc = delete_accepted(r);
        if (rc && !r->fail) r->fail = rc;
        uint64_t now = uv_now(r->loop);
        if (now - lease_at >= LEASE_MS / 3) {
            rc = cga_buffer_drain_lock(r->buf, LEASE_MS);
            if (rc != CGA_OK) {
                ops_error("recover", "lost the drain lease: %s", cga_buffer_errmsg(r->buf));
                if (!r->fail) r->fail = rc;
            }
            lease_at = now;
        }
        show_progress(r);
    }
    int rc = delete_accepted(r);
    return rc;
}

static int dry_run(const char *path, const char *ns, int json) {
    ops_bufview_t v;
    int rc = ops_bufview_read(&v, path);
    uint64_t now = cga_clock_wall_ms();
    uint64_t entries = 0, tasks = 0;
    for (size_t i = 0; v.stats && i < v.stats->nqueues; i++) {
        if (!ops_bufview_is_ns(v.stats->queues[i].queue, ns)) continue;
        entries += v.stats->queues[i].entries;
        tasks += v.stats->queues[i].tasks;
    }
    if (json) {
        printf("{\"namespace\":");
        ops_json_str(stdout, ns, strlen(ns));
        printf(",\"would_send\":{\"entries\":%" PRIu64 ",\"tasks\":%" PRIu64 "},\"buffer\":",
               entries, tasks);
        ops_bufview_json(stdout, &v, ns, now);
        printf("}\n");
    } else {
        ops_bufview_text(stdout, &v, ns, now);
        printf("would send %" PRIu64 " entries (%" PRIu64 " tasks) of namespace %s; nothing sent "
               "(--dry-run)\n", entries, tasks, ns);
    }
    ops_bufview_free(&v);
    if (rc < 0) {
        ops_error("recover", "%s", v.err);
        return CGA_EXIT_FAILURE;
    }
    return fflush(stdout) == 0 ? CGA_EXIT_OK : CGA_EXIT_FAILURE;
}

int ops_cmd_recover(cga_app_t *a) {
    const cga_config_t *cfg = cga_app_config(a);
    const char *ns = cga_app_ns(a);
    const char *path = cga_config_str(cfg, "OPS_BUFFER_PATH");
    if (!path) path = CGA_BUFFER_DEFAULT_PATH;
    if (cga_config_bool(cfg, "OPS_DRY_RUN"))
        return dry_run(path, ns, cga_config_bool(cfg, "OPS_JSON"));

    struct stat sb;
    if (stat(path, &sb) != 0 && errno == ENOENT) {
        printf("no task buffer at %s: nothing to recover\n", path);
        return CGA_EXIT_OK;
    }
    recover_t rec;
    recover_t *r = &rec;
    memset(r, 0, sizeof *r);
    r->app = a;
    r->loop = cga_app_loop(a);
    int code = ops_open_buffer(cfg, "recover", 0, &r->buf);
    if (code >= 0) return code;

    char keys[2][CGA_KEY_MAX];
    uint64_t other = 0;
    cga_buffer_stats_t *s = NULL;
    if (cga_buffer_stats(r->buf, &s) != CGA_OK) {
        ops_error("recover", "%s", cga_buffer_errmsg(r->buf));
        cga_buffer_free(r->buf);
        return CGA_EXIT_FAILURE;
    }
    for (int i = 0; i < 2; i++)
        cga_key(keys[i], sizeof keys[i], ns, CGA_KIND_QUEUE, queue_names[i], NULL);
    for (size_t i = 0; i < s->nqueues; i++) {
        const cga_buffer_queue_stats_t *qs = &s->queues[i];
        if (strcmp(qs->queue, keys[0]) == 0 || strcmp(qs->queue, keys[1]) == 0) {
            r->total_entries += qs->entries;
            r->total_tasks += qs->tasks;
        } else {
            other += qs->entries;
        }
    }
    cga_buffer_stats_free(s);
    if (r->total_entries == 0) {
        printf("nothing to recover in %s for namespace %s", path, ns);
        if (other) printf(" (%" PRIu64 " entries of other queues or namespaces: see --dry-run)",
                          other);
        printf("\n");
        cga_buffer_free(r->buf);
        return CGA_EXIT_OK;
    }
    int rc = cga_buffer_drain_lock(r->buf, LEASE_MS);
    if (rc != CGA_OK) {
        ops_error("recover", "%s; try again later", cga_buffer_errmsg(r->buf));
        cga_buffer_free(r->buf);
        return CGA_EXIT_FAILURE;
    }
    code = ops_connect(a, "recover");
    if (code >= 0) {
        cga_buffer_free(r->buf);
        return code;
    }
    cga_app_on_signal(a, on_signal, r);
    size_t window = (size_t)cga_config_int(cfg, "OPS_MAX_INFLIGHT");
    r->progress = cga_config_bool(cfg, "OPS_PROGRESS") && isatty(2);
    r->t0_us = cga_clock_wall_us();
    for (int i = 0; i < 2 && !r->fail && !r->interrupted; i++) {
        cga_queue_opts_t o;
        cga_queue_opts_init(&o);
        o.ns = ns;
        o.name = queue_names[i];
        o.redis_flags = CGA_REDIS_FAILFAST;
        rc = cga_queue_create(&r->q[i], r->loop, cga_app_redis(a), &o);
        if (rc != CGA_OK) {
            ops_error("recover", "cannot create queue %s: %s", queue_names[i], cga_strerror(rc));
            r->fail = rc;
            break;
        }
        drain_queue(r, r->q[i], keys[i], window);
    }
    if (r->shown) fputs("\r\033[K", stderr);
    for (int i = 0; i < 2; i++) {
        if (!r->q[i]) continue;
        r->closes++;
        cga_queue_close(r->q[i], on_closed, r);
    }
    while (r->closes > 0) uv_run(r->loop, UV_RUN_ONCE);
    delete_accepted(r);
    cga_buffer_drain_unlock(r->buf);

    double secs = (double)(cga_clock_wall_us() - r->t0_us) / 1e6;
    printf("recovered %" PRIu64 " entries (%" PRIu64 " tasks) from %s in %.3f s (%.0f tasks/s)",
           r->ok_entries, r->ok_tasks, path, secs, secs > 0 ? (double)r->ok_tasks / secs : 0.0);
    if (r->ok_entries < r->total_entries)
        printf(", %" PRIu64 " entries left", r->total_entries - r->ok_entries);
    if (r->interrupted) printf(" (interrupted)");
    printf("\n");
    fflush(stdout);
    code = CGA_EXIT_OK;
    if (r->fail) {
        ops_error("recover", "Redis did not accept an entry (%s): stopped; what is left stays in "
                  "%s", cga_strerror(r->fail), path);
        code = cga_app_exit_code(r->fail);
        if (code == CGA_EXIT_OK || code == CGA_EXIT_USAGE) code = CGA_EXIT_FAILURE;
    } else if (r->interrupted) {
        code = CGA_EXIT_FAILURE;
    }
    free(r->fly);
    free(r->dels);
    cga_buffer_free(r->buf);
    return code;
}

/* `dead list|requeue|purge`: the operator's dead-letter tools. */
#define CGA_LOG_COMPONENT "dead"
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cgalpha/alloc.h"
#include "cgalpha/app.h"
#include "cgalpha/config.h"
#include "cgalpha/err.h"
#include "cgalpha/keys.h"
#include "cgalpha/log.h"
#include "cgalpha/queue.h"
#include "cgalpha/redis.h"
#include "ops.h"

#define PAGE 500

typedef struct dead_s {
    cga_app_t *app;
    cga_queue_t *q;
    const char *queue;
    int reports;
    int json;
    char **ids;
    size_t nids;
    int *found;
    size_t limit, shown, nfound;
    int err;
    uint64_t count;
    char last[48];
    cga_proto_reader_t *reader;
    int xdel_out; /* an XDEL is out: its answer still comes */
} dead_t;

static void done(dead_t *d, int status) {
    if (status < 0 && !d->err) d->err = status;
    cga_app_stop(d->app);
}

/* The first task id of an entry value (or the task id of its first report), or NULL. */
static int first_task(dead_t *d, const char *data, size_t len, cga_str_t *out) {
    if (!data) return -1;
    const cga_str_t *msgs;
    size_t n;
    if (cga_proto_split(d->reader, data, len, &msgs, &n) < 0 || n == 0) return -1;
    cga_str_t m = msgs[0];
    size_t k;
    if (d->reports) {
        const cga_report_t *r;
        if (cga_proto_decode_reports(d->reader, m.ptr, m.len, &r, &k) < 0 || k == 0) return -1;
        *out = r[0].task_id;
    } else {
        const cga_task_t *t;
        if (cga_proto_decode_tasks(d->reader, m.ptr, m.len, &t, &k) < 0 || k == 0) return -1;
        *out = t[0].id;
    }
    return 0;
}

static size_t messages(dead_t *d, const char *data, size_t len) {
    const cga_str_t *msgs;
    size_t n;
    if (!data || cga_proto_split(d->reader, data, len, &msgs, &n) < 0) return 0;
    return n;
}

static int wanted(dead_t *d, const char *id) {
    if (d->nids == 0) return 1;
    for (size_t i = 0; i < d->nids; i++) {
        if (strcmp(d->ids[i], id) == 0) {
            if (!d->found[i]) {
                d->found[i] = 1;
                d->nfound++;
            }
            return 1;
        }
    }
    return 0;
}

static void print_one(dead_t *d, const cga_dead_letter_t *x) {
    cga_str_t task = {NULL, 0};
    int has_task = first_task(d, x->data, x->len, &task) == 0;
    size_t nmsg = messages(d, x->data, x->len);
    const char *reason = x->reason ? x->reason : "";
    if (d->json) {
        printf("{\"id\":\"%s\",\"src\":\"%s\",\"deliveries\":%" PRIu64 ",\"ts_ms\":%" PRIu64
               ",\"messages\":%zu,\"first_task\":", x->id, x->src, x->deliveries, x->ts_ms, nmsg);
        if (has_task)
            ops_json_str(stdout, task.ptr, task.len);
        else
            fputs("null", stdout);
        fputs(",\"reason\":", stdout);
        ops_json_str(stdout, reason, strlen(reason));
        fputs("}\n", stdout);
    } else {
        char t[200];
        if (has_task)
            snprintf(t, sizeof t, "%.*s", (int)(task.len < 190 ? task.len : 190), task.ptr);
        else
            snprintf(t, sizeof t, "%s", x->data ? "(undecodable)" : "(no data)");
        printf("%-22s %-22s %10" PRIu64 " %5zu  %-36s %s\n", x->id, x->src, x->deliveries, nmsg,
               t, reason);
    }
}

static void on_list(int status, const cga_dead_letter_t *dl, size_t n, void *arg) {
    dead_t *d = arg;
    if (status < 0) {
        done(d, status);
        return;
    }
    for (size_t i = 0; i < n && d->shown < d->limit; i++) {
        if (!wanted(d, dl[i].id)) continue;
        print_one(d, &dl[i]);
        d->shown++;
    }
    if (n > 0) snprintf(d->last, sizeof d->last, "%s", dl[n - 1].id);
    int more = n == PAGE && d->shown < d->limit && (d->nids == 0 || d->nfound < d->nids);
    if (!more) {
        done(d, CGA_OK);
        return;
    }
    int rc = cga_queue_dead_list(d->q, d->last, PAGE, on_list, d);
    if (rc < 0) done(d, rc);
}

static void on_count(int status, uint64_t n, void *arg) {
    dead_t *d = arg;
    d->count = n;
    done(d, status);
}

static void on_xdel(int status, struct redisReply *r, void *arg) {
    dead_t *d = arg;
    d->xdel_out = 0;
    if (status == CGA_OK && r && r->type == REDIS_REPLY_INTEGER) d->count = (uint64_t)r->integer;
    done(d, status);
}

static void on_closed(void *arg) {
    int *open = arg;
    *open = 0;
}

int ops_cmd_dead(cga_app_t *a) {
    const cga_config_t *cfg = cga_app_config(a);
    size_t npos;
    char *const *pos = cga_config_positionals(cfg, &npos);
    if (npos != 1 || (strcmp(pos[0], "list") && strcmp(pos[0], "requeue") &&
                      strcmp(pos[0], "purge"))) {
        if (npos == 0)
            ops_error("dead", "missing action: list, requeue or purge");
        else
            ops_error("dead", "expected one action (list, requeue or purge), got '%s'",
                      pos[npos > 1 ? 1 : 0]);
        return CGA_EXIT_USAGE;
    }
    const char *action = pos[0];
    dead_t dd;
    dead_t *d = &dd;
    memset(d, 0, sizeof *d);
    d->app = a;
    d->queue = cga_config_str(cfg, "OPS_DEAD_QUEUE");
    d->reports = strcmp(d->queue, CGA_QUEUE_REPORTS) == 0;
    d->json = cga_config_bool(cfg, "OPS_JSON");
    d->limit = (size_t)cga_config_int(cfg, "OPS_DEAD_LIMIT");
    size_t nitems;
    const char *const *items = cga_config_list(cfg, "OPS_DEAD_ID", &nitems);
    for (size_t i = 0; i < nitems; i++) {
        const char *s = items[i];
        while (*s) {
            const char *e = strchr(s, ',');
            size_t len = e ? (size_t)(e - s) : strlen(s);
            if (len > 0) {
                d->ids = cga_realloc(d->ids, (d->nids + 1) * sizeof *d->ids);
                d->ids[d->nids++] = cga_strndup(s, len);
            }
            s += len;
            if (*s == ',') s++;
        }
    }
    d->found = cga_calloc(d->nids ? d->nids : 1, sizeof *d->found);
    int code = -1;
    if (strcmp(action, "purge") == 0 && !cga_config_bool(cfg, "OPS_DEAD_PURGE_YES")) {
        ops_error("dead", "purge deletes dead letters for good: add --yes to confirm");
        code = CGA_EXIT_USAGE;
        goto out;
    }
    code = ops_connect(a, "dead");
    if (code >= 0) goto out;

    uv_loop_t *loop = cga_app_loop(a);
    cga_redis_t *redis = cga_app_redis(a);
    const char *ns = cga_app_ns(a);
    cga_queue_opts_t o;
    cga_queue_opts_init(&o);
    o.ns = ns;
    o.name = d->queue;
    int rc = cga_queue_create(&d->q, loop, redis, &o);
    if (rc < 0) {
        ops_error("dead", "cannot open queue %s: %s", d->queue, cga_strerror(rc));
        code = CGA_EXIT_FAILURE;
        goto out;
    }
    cga_proto_reader_create(&d->reader, NULL);
    if (strcmp(action, "list") == 0) {
        if (!d->json)
            printf("%-22s %-22s %10s %5s  %-36s %s\n", "ID", "SRC", "DELIVERIES", "MSGS",
                   "FIRST TASK", "REASON");
        rc = cga_queue_dead_list(d->q, "-", PAGE, on_list, d);
    } else if (strcmp(action, "requeue") == 0) {
        rc = cga_queue_dead_requeue(d->q, (const char *const *)d->ids, d->nids, on_count, d);
    } else if (d->nids == 0) {
        rc = cga_queue_dead_purge(d->q, on_count, d);
    } else {
        char key[CGA_KEY_MAX];
        cga_key(key, sizeof key, ns, CGA_KIND_QUEUE, d->queue, "dead");
        size_t argc = d->nids + 2;
        const char **argv = cga_malloc(argc * sizeof *argv);
        size_t *lens = cga_malloc(argc * sizeof *lens);
        argv[0] = "XDEL";
        argv[1] = key;
        for (size_t i = 0; i < d->nids; i++) argv[i + 2] = d->ids[i];
        for (size_t i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
        rc = cga_redis_commandv(redis, CGA_REDIS_WAIT, 0, on_xdel, d, (int)argc, argv, lens);
        if (rc == CGA_OK) d->xdel_out = 1;
        free(argv);
        free(lens);
    }
    if (rc < 0)
        d->err = rc;
    else
        cga_app_run(a);
    /* Left early (a signal): the queue's operations end with its close; the XDEL still answers
     * into d, which lives on this stack. */
    while (d->xdel_out) uv_run(loop, UV_RUN_ONCE);
    int open = 1;
    cga_queue_close(d->q, on_closed, &open);
    while (open) uv_run(loop, UV_RUN_ONCE);

    if (d->err) {
        code = cga_app_exit_code(d->err);
        if (code == CGA_EXIT_OK) code = CGA_EXIT_FAILURE;
        ops_error("dead", "%s failed: %s", action, cga_strerror(d->err));
        goto out;
    }
    char key[CGA_KEY_MAX];
    cga_key(key, sizeof key, ns, CGA_KIND_QUEUE, d->queue, NULL);
    if (strcmp(action, "list") == 0) {
        if (!d->json) printf("%zu dead letters shown (%s:dead)\n", d->shown, key);
        for (size_t i = 0; i < d->nids; i++)
            if (!d->found[i]) ops_error("dead", "no dead letter %s in %s:dead", d->ids[i], key);
    } else if (strcmp(action, "requeue") == 0) {
        printf("requeued %" PRIu64 " dead letters to %s\n", d->count, key);
    } else {
        printf("purged %" PRIu64 " dead letters from %s:dead\n", d->count, key);
    }
    code = fflush(stdout) == 0 ? CGA_EXIT_OK : CGA_EXIT_FAILURE;
out:
    cga_proto_reader_free(d->reader);
    for (size_t i = 0; i < d->nids; i++) free(d->ids[i]);
    free(d->ids);
    free(d->found);
    return code;
}

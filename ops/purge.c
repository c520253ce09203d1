/* `purge --yes`: deletes every key of the namespace (<ns>:*), found with SCAN (never KEYS, which
 * blocks Redis for the whole keyspace), deleted page by page, and says how many. Without --yes
 * it only counts them and refuses (exit 2). Keys outside the namespace are never touched. */
#define CGA_LOG_COMPONENT "purge"
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cgalpha/alloc.h"
#include "cgalpha/app.h"
#include "cgalpha/err.h"
#include "cgalpha/keys.h"
#include "cgalpha/redis.h"
#include "ops.h"

#define PAGE "1000"

typedef struct purge_s {
    cga_app_t *app;
    cga_redis_t *redis;
    char pattern[CGA_KEY_MAX];
    char cursor[32];
    int yes;
    uint64_t found, deleted;
    int err;
    int inflight; /* a command is out: its callback still comes (p lives on ops_cmd_purge's stack) */
    int finished; /* done() ran */
    int stop;     /* the loop was left (a signal): answers start nothing new */
} purge_t;

static int next_page(purge_t *p);

static void done(purge_t *p, int err) {
    p->err = err;
    p->finished = 1;
    cga_app_stop(p->app);
}

static void on_del(int status, redisReply *reply, void *arg) {
    purge_t *p = arg;
    p->inflight = 0;
    if (status == CGA_OK && reply->type == REDIS_REPLY_INTEGER)
        p->deleted += (uint64_t)reply->integer;
    if (p->stop) return;
    if (status != CGA_OK || reply->type != REDIS_REPLY_INTEGER) {
        done(p, status != CGA_OK ? status : CGA_EPROTO);
        return;
    }
    if (strcmp(p->cursor, "0") == 0) {
        done(p, CGA_OK);
        return;
    }
    int rc = next_page(p);
    if (rc != CGA_OK) done(p, rc);
}

static void on_scan(int status, redisReply *reply, void *arg) {
    purge_t *p = arg;
    p->inflight = 0;
    if (p->stop) return;
    if (status != CGA_OK || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_ARRAY) {
        done(p, status != CGA_OK ? status : CGA_EPROTO);
        return;
    }
    snprintf(p->cursor, sizeof p->cursor, "%s", reply->element[0]->str);
    const redisReply *keys = reply->element[1];
    p->found += keys->elements;
    if (p->yes && keys->elements > 0) {
        /* SCAN may return a key twice: DEL counts what it really deleted */
        size_t argc = keys->elements + 1;
        const char **argv = cga_malloc(argc * sizeof *argv);
        size_t *argl = cga_malloc(argc * sizeof *argl);
        argv[0] = "DEL";
        argl[0] = 3;
        for (size_t i = 0; i < keys->elements; i++) {
            argv[i + 1] = keys->element[i]->str;
            argl[i + 1] = keys->element[i]->len;
        }
        int rc = cga_redis_commandv(p->redis, CGA_REDIS_WAIT, 0, on_del, p, (int)argc, argv,
                                    argl);
        free(argv);
        free(argl);
        if (rc == CGA_OK) p->inflight = 1;
        else done(p, rc);
        return;
    }
    if (strcmp(p->cursor, "0") == 0) {
        done(p, CGA_OK);
        return;
    }
    int rc = next_page(p);
    if (rc != CGA_OK) done(p, rc);
}

static int next_page(purge_t *p) {
    int rc = cga_redis_command(p->redis, CGA_REDIS_WAIT, on_scan, p, "SCAN %s MATCH %s COUNT %s",
                               p->cursor, p->pattern, PAGE);
    if (rc == CGA_OK) p->inflight = 1;
    return rc;
}

int ops_cmd_purge(cga_app_t *a) {
    purge_t pp;
    purge_t *p = &pp;
    memset(p, 0, sizeof *p);
    p->app = a;
    p->redis = cga_app_redis(a);
    p->yes = cga_config_bool(cga_app_config(a), "OPS_YES");
    /* the namespace is [A-Za-z0-9_.-]+ (validated): no glob character to escape */
    snprintf(p->pattern, sizeof p->pattern, "%s:*", cga_app_ns(a));
    snprintf(p->cursor, sizeof p->cursor, "0");
    int code = ops_connect(a, "purge");
    if (code >= 0) return code;
    int rc = next_page(p);
    if (rc == CGA_OK) cga_app_run(a);
    else p->err = rc;
    /* Left early (a signal): the command out still answers (or times out) into p. */
    p->stop = 1;
    while (p->inflight) uv_run(cga_app_loop(a), UV_RUN_ONCE);
    if (!p->finished && !p->err) p->err = CGA_ECANCELED;
    if (p->err) {
        ops_error("purge", "%s after %" PRIu64 " keys deleted: %s", p->yes ? "stopped" : "failed",
                  p->deleted, cga_strerror(p->err));
        code = cga_app_exit_code(p->err);
        return code == CGA_EXIT_OK ? CGA_EXIT_FAILURE : code;
    }
    if (!p->yes) {
        ops_error("purge", "%" PRIu64 " keys match %s; nothing deleted without --yes",
                  p->found, p->pattern);
        return CGA_EXIT_USAGE;
    }
    printf("purged %" PRIu64 " keys of namespace %s\n", p->deleted, cga_app_ns(a));
    return fflush(stdout) == 0 ? CGA_EXIT_OK : CGA_EXIT_FAILURE;
}

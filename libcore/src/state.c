#define CGA_LOG_COMPONENT "state"

#include "cgalpha/state.h"

#include <hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cgalpha/alloc.h"
#include "cgalpha/err.h"
#include "cgalpha/keys.h"
#include "cgalpha/redis.h"

#define SCAN_COUNT "500"

struct cga_state_s {
    cga_redis_t *redis;
    char ns[CGA_NAMESPACE_MAX + 1];
    uint64_t hits, misses;
    unsigned gets_pending; /* GETs in flight: they update the counters */
    int freed;             /* cga_state_free() was called; freed when gets_pending is 0 */
};

typedef struct {
    cga_state_set_cb cb;
    void *arg;
} set_op_t;

typedef struct {
    cga_state_t *s;
    cga_state_get_cb cb;
    void *arg;
} get_op_t;

typedef struct {
    cga_redis_t *redis;
    cga_state_scan_cb cb;
    void *arg;
    char *match;       /* <ns>:state:<pattern> */
    size_t prefix_len; /* strlen("<ns>:state:") */
    char cursor[32];
    char **names;
    size_t n, cap;
} scan_op_t;

int cga_state_create(cga_state_t **out, cga_redis_t *redis, const char *ns) {
    if (!out || !redis) return CGA_EINVAL;
    *out = NULL;
    if (cga_namespace_validate(ns) != CGA_OK) return CGA_EINVAL;
    cga_state_t *s = cga_calloc(1, sizeof *s);
    s->redis = redis;
    snprintf(s->ns, sizeof s->ns, "%s", ns);
    *out = s;
    return CGA_OK;
}

void cga_state_free(cga_state_t *s) {
    if (!s) return;
    s->freed = 1;
    if (s->gets_pending == 0) free(s);
}

/* --- set ---------------------------------------------------------------------------------- */

static void on_set(int status, redisReply *reply, void *arg) {
    set_op_t *op = arg;
    if (status == CGA_OK && (!reply || reply->type != REDIS_REPLY_STATUS)) status = CGA_EPROTO;
    if (op->cb) op->cb(status, op->arg);
    free(op);
}

int cga_state_set(cga_state_t *s, const char *name, const char *data, size_t len,
                  unsigned ttl_ms, cga_state_set_cb cb, void *arg) {
    if (!s || s->freed || !name || !*name || (!data && len)) return CGA_EINVAL;
    char key[CGA_KEY_MAX];
    int rc = cga_key(key, sizeof key, s->ns, CGA_KIND_STATE, name, NULL);
    if (rc < 0) return rc;
    char ttl[16];
    snprintf(ttl, sizeof ttl, "%u", ttl_ms);
    const char *argv[5] = {"SET", key, data ? data : "", "PX", ttl};
    size_t argvlen[5] = {3, (size_t)rc, len, 2, strlen(ttl)};
    set_op_t *op = cga_malloc(sizeof *op);
    op->cb = cb;
    op->arg = arg;
    rc = cga_redis_commandv(s->redis, CGA_REDIS_WAIT, 0, on_set, op, ttl_ms ? 5 : 3, argv,
                            argvlen);
    if (rc != CGA_OK) free(op);
    return rc;
}

/* --- get ---------------------------------------------------------------------------------- */

static void on_get(int status, redisReply *reply, void *arg) {
    get_op_t *op = arg;
    cga_state_t *s = op->s;
    const char *data = NULL;
    size_t len = 0;
    if (status == CGA_OK) {
        if (reply && reply->type == REDIS_REPLY_STRING) {
            data = reply->str;
            len = (size_t)reply->len;
            s->hits++;
        } else if (reply && reply->type == REDIS_REPLY_NIL) {
            status = CGA_ENOTFOUND;
            s->misses++;
        } else {
            status = CGA_EPROTO;
        }
    }
    s->gets_pending--;
    if (op->cb) op->cb(status, data, len, op->arg);
    free(op);
    if (s->freed && s->gets_pending == 0) free(s);
}

int cga_state_get(cga_state_t *s, const char *name, cga_state_get_cb cb, void *arg) {
    if (!s || s->freed || !name || !*name || !cb) return CGA_EINVAL;
    char key[CGA_KEY_MAX];
    int rc = cga_key(key, sizeof key, s->ns, CGA_KIND_STATE, name, NULL);
    if (rc < 0) return rc;
    const char *argv[2] = {"GET", key};
    size_t argvlen[2] = {3, (size_t)rc};
    get_op_t *op = cga_malloc(sizeof *op);
    op->s = s;
    op->cb = cb;
    op->arg = arg;
    rc = cga_redis_commandv(s->redis, CGA_REDIS_WAIT, 0, on_get, op, 2, argv, argvlen);
    if (rc != CGA_OK) {
        free(op);
        return rc;
    }
    s->gets_pending++;
    return CGA_OK;
}

/* --- scan --------------------------------------------------------------------------------- */

static void scan_op_free(scan_op_t *op) {
    for (size_t i = 0; i < op->n; i++) free(op->names[i]);
    free(op->names);
    free(op->match);
    free(op);
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void scan_finish(scan_op_t *op, int status) {
    if (status != CGA_OK) {
        op->cb(status, NULL, 0, op->arg);
        scan_op_free(op);
        return;
    }
    /* SCAN may return a key more than once (rehashing): sort and drop duplicates. */
    if (op->n > 1) {
        qsort(op->names, op->n, sizeof *op->names, cmp_names);
        size_t w = 1;
        for (size_t i = 1; i < op->n; i++) {
            if (strcmp(op->names[i], op->names[w - 1]) == 0) {
                free(op->names[i]);
                continue;
            }
            op->names[w++] = op->names[i];
        }
        op->n = w;
    }
    op->cb(CGA_OK, (const char *const *)op->names, op->n, op->arg);
    scan_op_free(op);
}

static int scan_send(scan_op_t *op);

static void on_scan(int status, redisReply *reply, void *arg) {
    scan_op_t *op = arg;
    if (status != CGA_OK) {
        scan_finish(op, status);
        return;
    }
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_ARRAY ||
        (size_t)reply->element[0]->len >= sizeof op->cursor) {
        scan_finish(op, CGA_EPROTO);
        return;
    }
    const redisReply *keys = reply->element[1];
    for (size_t i = 0; i < keys->elements; i++) {
        const redisReply *k = keys->element[i];
        if (k->type != REDIS_REPLY_STRING || (size_t)k->len < op->prefix_len) continue;
        cga_grow((void **)&op->names, &op->cap, op->n + 1, sizeof *op->names);
        op->names[op->n++] = cga_strndup(k->str + op->prefix_len, (size_t)k->len - op->prefix_len);
    }
    memcpy(op->cursor, reply->element[0]->str, (size_t)reply->element[0]->len);
    op->cursor[reply->element[0]->len] = '\0';
    if (strcmp(op->cursor, "0") == 0) {
        scan_finish(op, CGA_OK);
        return;
    }
    int rc = scan_send(op);
    if (rc != CGA_OK) scan_finish(op, rc);
}

static int scan_send(scan_op_t *op) {
    const char *argv[6] = {"SCAN", op->cursor, "MATCH", op->match, "COUNT", SCAN_COUNT};
    size_t argvlen[6] = {4, strlen(op->cursor), 5, strlen(op->match), 5, strlen(SCAN_COUNT)};
    return cga_redis_commandv(op->redis, CGA_REDIS_WAIT, 0, on_scan, op, 6, argv, argvlen);
}

int cga_state_scan(cga_state_t *s, const char *pattern, cga_state_scan_cb cb, void *arg) {
    if (!s || s->freed || !pattern || !*pattern || !cb) return CGA_EINVAL;
    char match[CGA_KEY_MAX];
    int rc = cga_key(match, sizeof match, s->ns, CGA_KIND_STATE, pattern, NULL);
    if (rc < 0) return rc;
    scan_op_t *op = cga_calloc(1, sizeof *op);
    op->redis = s->redis;
    op->cb = cb;
    op->arg = arg;
    op->match = cga_strdup(match);
    op->prefix_len = strlen(s->ns) + strlen(":" CGA_KIND_STATE ":");
    snprintf(op->cursor, sizeof op->cursor, "0");
    rc = scan_send(op);
    if (rc != CGA_OK) scan_op_free(op);
    return rc;
}

void cga_state_stats(const cga_state_t *s, uint64_t *hits, uint64_t *misses) {
    if (hits) *hits = s ? s->hits : 0;
    if (misses) *misses = s ? s->misses : 0;
}

#define CGA_LOG_COMPONENT "pubsub"

#include "cgalpha/pubsub.h"

#include <hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cgalpha/alloc.h"
#include "cgalpha/err.h"
#include "cgalpha/keys.h"
#include "cgalpha/redis.h"

/* One subscription: the arg given to cga_redis_subscribe(), removed with
 * cga_redis_unsubscribe() when p is freed. */
typedef struct sub_s sub_t;
struct sub_s {
    sub_t *next;
    char channel[CGA_KEY_MAX];
    cga_pubsub_message_cb cb;
    void *arg;
};

struct cga_pubsub_s {
    cga_redis_t *cmd;
    cga_redis_t *sub;
    char ns[CGA_NAMESPACE_MAX + 1];
    sub_t *subs;
};

typedef struct {
    cga_pubsub_published_cb cb;
    void *arg;
} pub_op_t;

static void on_message(const char *channel, const char *payload, size_t len, void *arg) {
    const sub_t *s = arg;
    s->cb(payload, len, s->arg);
}

int cga_pubsub_create(cga_pubsub_t **out, cga_redis_t *cmd, cga_redis_t *sub, const char *ns) {
    if (!out || !cmd || cmd == sub) return CGA_EINVAL;
    *out = NULL;
    if (cga_namespace_validate(ns) != CGA_OK) return CGA_EINVAL;
    cga_pubsub_t *p = cga_calloc(1, sizeof *p);
    p->cmd = cmd;
    p->sub = sub;
    snprintf(p->ns, sizeof p->ns, "%s", ns);
    *out = p;
    return CGA_OK;
}

void cga_pubsub_free(cga_pubsub_t *p) {
    if (!p) return;
    while (p->subs) {
        sub_t *s = p->subs;
        p->subs = s->next;
        (void)cga_redis_unsubscribe(p->sub, s->channel, on_message, s);
        free(s);
    }
    free(p);
}

static void on_published(int status, redisReply *reply, void *arg) {
    pub_op_t *op = arg;
    long long receivers = 0;
    if (status == CGA_OK) {
        if (reply && reply->type == REDIS_REPLY_INTEGER) receivers = reply->integer;
        else status = CGA_EPROTO;
    }
    op->cb(status, receivers, op->arg);
    free(op);
}

int cga_pubsub_publish(cga_pubsub_t *p, const char *channel, const char *data, size_t len,
                       cga_pubsub_published_cb cb, void *arg) {
    if (!p || !channel || !*channel || (!data && len)) return CGA_EINVAL;
    char key[CGA_KEY_MAX];
    int rc = cga_key(key, sizeof key, p->ns, CGA_KIND_CHANNEL, channel, NULL);
    if (rc < 0) return rc;
    const char *argv[3] = {"PUBLISH", key, data ? data : ""};
    size_t argvlen[3] = {7, (size_t)rc, len};
    pub_op_t *op = NULL;
    if (cb) {
        op = cga_malloc(sizeof *op);
        op->cb = cb;
        op->arg = arg;
    }
    rc = cga_redis_commandv(p->cmd, CGA_REDIS_WAIT, 0, cb ? on_published : NULL, op, 3, argv,
                            argvlen);
    if (rc != CGA_OK) free(op);
    return rc;
}

int cga_pubsub_subscribe(cga_pubsub_t *p, const char *channel, cga_pubsub_message_cb cb,
                         void *arg) {
    if (!p || !p->sub || !channel || !*channel || !cb) return CGA_EINVAL;
    char key[CGA_KEY_MAX];
    int rc = cga_key(key, sizeof key, p->ns, CGA_KIND_CHANNEL, channel, NULL);
    if (rc < 0) return rc;
    sub_t *s = cga_calloc(1, sizeof *s);
    memcpy(s->channel, key, (size_t)rc + 1);
    s->cb = cb;
    s->arg = arg;
    rc = cga_redis_subscribe(p->sub, s->channel, on_message, s);
    if (rc != CGA_OK) {
        free(s);
        return rc;
    }
    s->next = p->subs;
    p->subs = s;
    return CGA_OK;
}

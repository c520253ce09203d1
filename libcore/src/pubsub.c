#define CGA_LOG_COMPONENT "pubsub"

#include "cgalpha/pubsub.h"

#include <hiredis.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cgalpha/alloc.h"
#include "cgalpha/err.h"
#include "cgalpha/keys.h"
#include "cgalpha/redis.h"

/* redis.h has no way to unsubscribe: a connection keeps calling a subscription's callback with
 * the arg it was given until the connection is closed, which may be after this module's object
 * is freed. So the arg given to cga_redis_subscribe() is not a pointer but an id, looked up in a
 * process-wide table; cga_pubsub_free() removes its entries and later messages for them are
 * dropped. */
typedef struct {
    uintptr_t id;
    cga_pubsub_t *owner;
    cga_pubsub_message_cb cb;
    void *arg;
} sub_entry_t;

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static sub_entry_t *reg;
static size_t reg_n, reg_cap;
static uintptr_t reg_next_id = 1;

struct cga_pubsub_s {
    cga_redis_t *cmd;
    cga_redis_t *sub;
    char ns[CGA_NAMESPACE_MAX + 1];
};

typedef struct {
    cga_pubsub_published_cb cb;
    void *arg;
} pub_op_t;

static uintptr_t reg_add(cga_pubsub_t *owner, cga_pubsub_message_cb cb, void *arg) {
    pthread_mutex_lock(&reg_mu);
    cga_grow((void **)&reg, &reg_cap, reg_n + 1, sizeof *reg);
    uintptr_t id = reg_next_id++;
    reg[reg_n++] = (sub_entry_t){.id = id, .owner = owner, .cb = cb, .arg = arg};
    pthread_mutex_unlock(&reg_mu);
    return id;
}

static void reg_remove(uintptr_t id) {
    pthread_mutex_lock(&reg_mu);
    for (size_t i = 0; i < reg_n; i++) {
        if (reg[i].id == id) {
            reg[i] = reg[--reg_n];
            break;
        }
    }
    if (reg_n == 0) {
        free(reg);
        reg = NULL;
        reg_cap = 0;
    }
    pthread_mutex_unlock(&reg_mu);
}

static void reg_remove_owner(const cga_pubsub_t *owner) {
    pthread_mutex_lock(&reg_mu);
    for (size_t i = 0; i < reg_n;) {
        if (reg[i].owner == owner) reg[i] = reg[--reg_n];
        else i++;
    }
    if (reg_n == 0) {
        free(reg);
        reg = NULL;
        reg_cap = 0;
    }
    pthread_mutex_unlock(&reg_mu);
}

/* Copies the entry out: the callback may free its pubsub (and so the entry). */
static int reg_find(uintptr_t id, sub_entry_t *out) {
    int found = 0;
    pthread_mutex_lock(&reg_mu);
    for (size_t i = 0; i < reg_n; i++) {
        if (reg[i].id == id) {
            *out = reg[i];
            found = 1;
            break;
        }
    }
    pthread_mutex_unlock(&reg_mu);
    return found;
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
    reg_remove_owner(p);
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

static void on_message(const char *channel, const char *payload, size_t len, void *arg) {
    sub_entry_t e;
    if (!reg_find((uintptr_t)arg, &e)) return; /* its pubsub was freed */
    e.cb(payload, len, e.arg);
}

int cga_pubsub_subscribe(cga_pubsub_t *p, const char *channel, cga_pubsub_message_cb cb,
                         void *arg) {
    if (!p || !p->sub || !channel || !*channel || !cb) return CGA_EINVAL;
    char key[CGA_KEY_MAX];
    int rc = cga_key(key, sizeof key, p->ns, CGA_KIND_CHANNEL, channel, NULL);
    if (rc < 0) return rc;
    uintptr_t id = reg_add(p, cb, arg);
    rc = cga_redis_subscribe(p->sub, key, on_message, (void *)id);
    if (rc != CGA_OK) reg_remove(id);
    return rc;
}

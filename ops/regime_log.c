#define CGA_LOG_COMPONENT "regime_log"
#include "regime_log.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>

#include "cgalpha/alloc.h"
#include "cgalpha/err.h"
#include "cgalpha/keys.h"
#include "cgalpha/log.h"

#define PAGE "1000"

typedef struct rlog_read_s {
    cga_redis_t *redis;
    cga_proto_reader_t *reader;
    ops_rlog_each_cb each;
    ops_rlog_done_cb done;
    void *arg;
    char key[CGA_KEY_MAX];
    char start[64]; /* "-" first, then "(<last id>" */
    uint64_t entries, undecodable;
} rlog_read_t;

static int fetch(rlog_read_t *r);

static void finish(rlog_read_t *r, int status) {
    r->done(status, r->entries, r->undecodable, r->arg);
    cga_proto_reader_free(r->reader);
    free(r);
}

static const redisReply *field_m(const redisReply *fields) {
    if (!fields || fields->type != REDIS_REPLY_ARRAY) return NULL;
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *k = fields->element[i];
        if (k->type == REDIS_REPLY_STRING && k->len == 1 && k->str[0] == CGA_PROTO_FIELD[0])
            return fields->element[i + 1]->type == REDIS_REPLY_STRING ? fields->element[i + 1]
                                                                      : NULL;
    }
    return NULL;
}

int ops_rlog_decode(cga_proto_reader_t *reader, const struct redisReply *entry,
                    cga_regime_change_t *out, const char **why) {
    *why = "not a stream entry";
    if (entry->type != REDIS_REPLY_ARRAY || entry->elements < 2 ||
        entry->element[0]->type != REDIS_REPLY_STRING)
        return CGA_EPROTO;
    const redisReply *m = field_m(entry->element[1]);
    if (!m) {
        *why = "no field m";
        return CGA_EPROTO;
    }
    if (cga_proto_decode_regime_change(reader, m->str, m->len, out) != CGA_OK) {
        *why = cga_proto_reader_error(reader);
        return CGA_EPROTO;
    }
    *why = NULL;
    return CGA_OK;
}

static void on_range(int status, redisReply *reply, void *arg) {
    rlog_read_t *r = arg;
    if (status != CGA_OK || reply->type != REDIS_REPLY_ARRAY) {
        finish(r, status != CGA_OK ? status : CGA_EPROTO);
        return;
    }
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
            e->element[0]->type != REDIS_REPLY_STRING)
            continue;
        snprintf(r->start, sizeof r->start, "(%s", e->element[0]->str);
        r->entries++;
        cga_regime_change_t rc;
        const char *why;
        if (ops_rlog_decode(r->reader, e, &rc, &why) != CGA_OK) {
            if (r->undecodable++ == 0)
                CGA_LOG(CGA_LOG_WARN, 0,
                        "%s entry %s does not decode: %s (further ones only counted)", r->key,
                        e->element[0]->str, why);
            continue;
        }
        r->each(&rc, r->arg);
    }
    if (reply->elements == 0) {
        finish(r, CGA_OK);
        return;
    }
    int rc = fetch(r);
    if (rc != CGA_OK) finish(r, rc);
}

static int fetch(rlog_read_t *r) {
    return cga_redis_command(r->redis, CGA_REDIS_WAIT, on_range, r, "XRANGE %s %s + COUNT %s",
                             r->key, r->start, PAGE);
}

int ops_rlog_read(cga_redis_t *redis, const char *ns, ops_rlog_each_cb each, ops_rlog_done_cb done,
                  void *arg) {
    rlog_read_t *r = cga_calloc(1, sizeof *r);
    r->redis = redis;
    r->each = each;
    r->done = done;
    r->arg = arg;
    cga_key(r->key, sizeof r->key, ns, CGA_KIND_STATE, "regime_log", NULL);
    snprintf(r->start, sizeof r->start, "-");
    int rc = cga_proto_reader_create(&r->reader, NULL);
    if (rc == CGA_OK) rc = fetch(r);
    if (rc != CGA_OK) {
        cga_proto_reader_free(r->reader);
        free(r);
    }
    return rc;
}

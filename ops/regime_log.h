#ifndef CGA_OPS_REGIME_LOG_H
#define CGA_OPS_REGIME_LOG_H

/* Reading <ns>:state:regime_log, the durable log of RegimeChange messages that nexus appends
 * (proto/SCHEMA.md): used by `accuracy` and by `watch` to fill gaps in what pub/sub delivered. */

#include <stdint.h>

#include "cgalpha/proto.h"
#include "cgalpha/redis.h"

/* Called for every decodable change, oldest first; m's strings live during the call only. */
typedef void (*ops_rlog_each_cb)(const cga_regime_change_t *m, void *arg);
/* Called once at the end: status CGA_OK, or the Redis error that stopped the read. */
typedef void (*ops_rlog_done_cb)(int status, uint64_t entries, uint64_t undecodable, void *arg);

/* Reads the whole log in pages of 1000 (XRANGE), asynchronously on redis's loop. The first
 * undecodable entry is logged as a warning, later ones only counted. Returns CGA_OK (done will
 * be called) or the error that refused the first page (done will not be called). */
int ops_rlog_read(cga_redis_t *redis, const char *ns, ops_rlog_each_cb each, ops_rlog_done_cb done,
                  void *arg);

/* Decodes one entry of an XRANGE/XREVRANGE reply of the log (field "m"). Returns CGA_OK with
 * *out (its strings point into entry and the reader), or CGA_EPROTO with *why. */
int ops_rlog_decode(cga_proto_reader_t *reader, const struct redisReply *entry,
                    cga_regime_change_t *out, const char **why);

#endif

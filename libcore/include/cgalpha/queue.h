#ifndef CGALPHA_QUEUE_H
#define CGALPHA_QUEUE_H

/* A stream queue: <ns>:queue:<name>, read by a consumer group, with a dead-letter stream
 * <ns>:queue:<name>:dead. See ../shared/DESIGN.md "Delivery" and proto/SCHEMA.md.
 *
 * Producer side: messages are packed into entries of up to batch_max messages (field "m",
 * a msgpack array) and flushed when full or after linger_us; entries leave in pipelines.
 * Consumer side: claim (XREADGROUP COUNT/BLOCK), complete (reports + XACK in one MULTI/EXEC),
 * reclaim (entries idle past the lease, with their delivery counts), split (a redelivered
 * multi-message entry becomes single-message entries), dead-letter (with the reason). The
 * coordinator trims with XTRIM MINID up to the oldest entry any group still needs. */

#include <stddef.h>
#include <stdint.h>
#include "cgalpha/export.h"
#include "cgalpha/proto.h"

struct uv_loop_s;
struct cga_redis_s;

typedef struct cga_queue_s cga_queue_t;

typedef struct cga_queue_opts_s {
    const char *ns;            /* namespace (validated) */
    const char *name;          /* queue name: CGA_QUEUE_ANALYSIS or CGA_QUEUE_REPORTS */
    const char *group;         /* consumer group; NULL for a producer-only handle */
    const char *consumer;      /* this consumer's name (unique per process); NULL if producing */
    size_t batch_max;          /* messages per entry, default 32 (at most limits.max_batch) */
    size_t batch_max_bytes;    /* an entry is sent once it holds this many bytes (it may pass it
                                  by its last message), default 512 KiB */
    unsigned linger_us;        /* while entries are in flight, flush a partial batch this long
                                  after its first message, default 1000 (below 500: at the next
                                  loop turn); with none in flight it leaves at the next loop
                                  turn (adaptive, as Nagle's algorithm; whatever was pushed in
                                  the current turn goes together) */
    unsigned lease_ms;         /* entries idle longer than this may be reclaimed, default 30000 */
    unsigned max_deliveries;   /* deliveries before dead-lettering, default 5 */
    size_t dead_max;           /* the dead-letter stream is capped near this, default 100000 */
    cga_proto_limits_t limits; /* message limits (cga_proto_limits_init() by opts_init) */
    unsigned redis_flags;      /* CGA_REDIS_WAIT (default) or CGA_REDIS_FAILFAST: how this
                                  handle's commands behave while Redis is down (redis.h) */
    unsigned command_timeout_ms; /* the redis connection's command_timeout_ms, default 5000: a
                                  claim's deadline is its block_ms plus this */
} cga_queue_opts_t;

CGA_EXTERN void cga_queue_opts_init(cga_queue_opts_t *o);

/* Creates a queue handle that borrows redis and loop (both must outlive it). Copies opts.
 * Registers its Lua scripts with redis. Returns owned *out; close with cga_queue_close(). */
CGA_EXTERN int cga_queue_create(cga_queue_t **out, struct uv_loop_s *loop,
                                struct cga_redis_s *redis, const cga_queue_opts_t *opts);

/* Flushes nothing: entries not yet sent fail their sent callback with CGA_ECANCELED (so the
 * caller can buffer them; this happens inside cga_queue_close), closes the timers and frees q;
 * done(arg) runs after. Commands already given to redis still end normally first (sent
 * callbacks with their real outcome, complete/ack/... callbacks with theirs), except claims and
 * reclaims: those answer CGA_ECANCELED and drop what they got (it stays pending and comes back
 * by reclaim). So done runs when the last of them has answered (a blocked claim: within its
 * block_ms), or at once when nothing is outstanding. Every other call on a closing q fails with
 * CGA_ECLOSED. NULL q is a no-op. */
CGA_EXTERN void cga_queue_close(cga_queue_t *q, void (*done)(void *arg), void *arg);

/* The stream key, e.g. "cgalpha:queue:analysis". */
CGA_EXTERN const char *cga_queue_key(const cga_queue_t *q);

typedef void (*cga_queue_done_cb)(int status, void *arg);

/* XGROUP CREATE <key> <group> 0 MKSTREAM; an existing group is success. */
CGA_EXTERN int cga_queue_ensure_group(cga_queue_t *q, cga_queue_done_cb cb, void *arg);

/* ---- producing --------------------------------------------------------------------------- */

/* Outcome of one entry: status CGA_OK with its stream id, or an error (CGA_EOOM, CGA_ENOTCONN,
 * CGA_ECONNLOST, CGA_ETIMEDOUT, CGA_EBREAKER, CGA_ECANCELED, ...) with the entry's bytes (a
 * msgpack array of count messages, split with cga_proto_split) so that nothing is lost: the
 * caller buffers or retries them. data is valid only during the call (it is also given on
 * success; entry_id is NULL on error). Called once per entry, from the loop, never from inside
 * push/flush/send_entry (an entry Redis refused up front is reported at the next loop turn),
 * except from inside cga_queue_close (CGA_ECANCELED). With CGA_REDIS_FAILFAST an entry fails
 * with CGA_ENOTCONN as soon as Redis is down; with CGA_REDIS_WAIT it waits for the reconnect
 * up to the connection's queue_timeout_ms, then fails with CGA_ETIMEDOUT. CGA_ECONNLOST means
 * the entry may have been added all the same (buffering it may duplicate it: at least once). */
typedef void (*cga_queue_sent_cb)(int status, const char *entry_id, const char *data, size_t len,
                                  size_t count, void *arg);

/* Sets the callback for every entry this handle sends (NULL to ignore outcomes). */
CGA_EXTERN void cga_queue_on_sent(cga_queue_t *q, cga_queue_sent_cb cb, void *arg);

/* Appends one message to the current batch; sends the batch when it is full, otherwise
 * within linger_us. CGA_EINVAL / CGA_ETOOBIG for a message that breaks the schema or the
 * size limit (nothing queued: the caller reports it); CGA_ECLOSED once closing. Each entry is
 * XADD <key> * m <batch>; entries sent in one loop turn leave in one pipeline. */
CGA_EXTERN int cga_queue_push_task(cga_queue_t *q, const cga_task_t *t);
CGA_EXTERN int cga_queue_push_report(cga_queue_t *q, const cga_report_t *r);
/* An already encoded message (one msgpack map). */
CGA_EXTERN int cga_queue_push_raw(cga_queue_t *q, const char *msg, size_t len);

/* Why the last push failed, one line (the codec's reason, e.g. "task.bars[3][0]: ..."); ""
 * after a success. Valid until the next push. */
CGA_EXTERN const char *cga_queue_push_error(const cga_queue_t *q);

/* Sends the partial batch now. */
CGA_EXTERN void cga_queue_flush(cga_queue_t *q);

/* Sends one ready-made entry value (a message or a msgpack array of them) as one entry,
 * bypassing the batcher (used to drain a buffer). Copies data. Outcome through the sent
 * callback (count is handed back there). CGA_EINVAL for len 0, CGA_ECLOSED once closing. */
CGA_EXTERN int cga_queue_send_entry(cga_queue_t *q, const char *data, size_t len, size_t count);

/* Entries sent and not yet answered (and their bytes), and messages waiting in the current
 * batch. */
CGA_EXTERN size_t cga_queue_entries_in_flight(const cga_queue_t *q);
CGA_EXTERN size_t cga_queue_bytes_in_flight(const cga_queue_t *q);
CGA_EXTERN size_t cga_queue_messages_pending(const cga_queue_t *q);

/* ---- consuming --------------------------------------------------------------------------- */

typedef struct cga_queue_entry_s {
    char id[48];         /* stream id, "1700000000000-0" */
    const char *data;    /* the "m" field's bytes (owned by the batch); NULL if the field is
                            missing: such an entry is malformed */
    size_t len;
    uint64_t deliveries; /* 1 on first delivery */
} cga_queue_entry_t;

typedef struct cga_queue_batch_s {
    cga_queue_entry_t *entries;
    size_t n;
} cga_queue_batch_t;

/* Frees a batch handed to a claim callback. NULL is a no-op. */
CGA_EXTERN void cga_queue_batch_free(cga_queue_batch_t *b);

/* batch is owned by the callee (free it with cga_queue_batch_free) and is NULL on error.
 * A batch may be empty (n = 0) when BLOCK timed out. */
typedef void (*cga_queue_claim_cb)(int status, cga_queue_batch_t *batch, void *arg);

/* XREADGROUP GROUP g c COUNT count BLOCK block_ms STREAMS key > (block_ms 0: do not block).
 * Each entry has deliveries = 1; data is NULL when the entry has no field "m" (dead-letter it),
 * and data may be any bytes (decode, and dead-letter what does not decode).
 * If the stream or the group vanished (NOGROUP: the key was deleted, Redis restarted without
 * its data), the group is created again (XGROUP CREATE <key> <group> 0 MKSTREAM) before cb gets
 * CGA_ENOTFOUND: claim again. Note that BLOCK holds the connection: commands issued on the same
 * redis connection after the claim wait until it returns (keep block_ms short there, or claim
 * on a connection of its own). Needs group and consumer (CGA_EINVAL otherwise). */
CGA_EXTERN int cga_queue_claim(cga_queue_t *q, size_t count, unsigned block_ms,
                               cga_queue_claim_cb cb, void *arg);

/* Takes over up to count entries of the group idle longer than lease_ms (from any consumer,
 * this one included), with their delivery counts (each claim counts one), oldest first; one
 * Lua script (XPENDING IDLE + XCLAIM). Entries deleted from the stream but still pending are
 * acknowledged and dropped, never returned. May return fewer than count (even none) while more
 * are idle: call again. NOGROUP is handled as by cga_queue_claim (CGA_ENOTFOUND). */
CGA_EXTERN int cga_queue_reclaim(cga_queue_t *q, size_t count, cga_queue_claim_cb cb, void *arg);

/* Atomically (MULTI/EXEC): XADD the reports entry value `reports` (len bytes, count messages) to
 * `out` and XACK ids[0..n) on q. Either both happen or neither. cb gets CGA_OK or the error;
 * on error nothing was acknowledged and the tasks stay pending (they come back by reclaim).
 * CGA_EOOM when Redis is out of memory (the transaction was aborted). CGA_ECONNLOST: the
 * outcome is unknown (both or neither happened). The four commands leave in one pipeline.
 * A transaction never waits for a reconnect, whatever redis_flags says: while Redis is down
 * the call fails up front with CGA_ENOTCONN (or CGA_EBREAKER) and cb is not called (keep the
 * reports and retry, or let the tasks come back by reclaim). */
CGA_EXTERN int cga_queue_complete(cga_queue_t *q, cga_queue_t *out, const char *reports,
                                  size_t len, size_t count, const char *const *ids, size_t n,
                                  cga_queue_done_cb cb, void *arg);

/* XACK without output (an entry fully handled otherwise). n >= 1. */
CGA_EXTERN int cga_queue_ack(cga_queue_t *q, const char *const *ids, size_t n,
                             cga_queue_done_cb cb, void *arg);

/* Atomically: XADD each message of the entry as its own single-message entry, then XACK the
 * original. For a redelivered multi-message entry, so one poison task cannot take its
 * neighbours to the dead letters. The new entries are fresh (deliveries start again at 1), so
 * a one-message entry is refused with CGA_EINVAL (as is data NULL); an entry that does not
 * split (not msgpack) with CGA_EPROTO: dead-letter those. cb gets CGA_ENOTFOUND (and nothing
 * is done) when the entry is no longer pending for this consumer (acknowledged, or reclaimed
 * by another consumer after the lease). */
CGA_EXTERN int cga_queue_split(cga_queue_t *q, const cga_queue_entry_t *e, cga_queue_done_cb cb,
                               void *arg);

/* Atomically: XADD the entry to the dead-letter stream (fields m, reason, src, deliveries, ts;
 * MAXLEN ~ dead_max) and XACK it here. reason is one line (cut at 1024 bytes). The entry stays
 * in the stream until trimmed (other groups may still need it). cb gets CGA_ENOTFOUND (and
 * nothing is done) when the entry is no longer pending for this consumer. */
CGA_EXTERN int cga_queue_dead_letter(cga_queue_t *q, const cga_queue_entry_t *e,
                                     const char *reason, cga_queue_done_cb cb, void *arg);

/* ---- coordinator and operator ------------------------------------------------------------ */

/* XTRIM MINID to the oldest entry any consumer group of the stream still needs (pending, or
 * not yet delivered); no groups: nothing is trimmed. cb's arg gets the number trimmed.
 * One Lua script: for each group (XINFO GROUPS) its oldest pending id (XPENDING), or when
 * nothing is pending the id right after its last-delivered-id; the minimum of those. Never
 * MAXLEN. Needs no group or consumer on the handle. */
typedef void (*cga_queue_count_cb)(int status, uint64_t n, void *arg);
CGA_EXTERN int cga_queue_trim(cga_queue_t *q, cga_queue_count_cb cb, void *arg);

typedef struct cga_queue_info_s {
    uint64_t length;   /* XLEN */
    uint64_t lag;      /* entries not yet delivered to the group (this handle's group) */
    uint64_t pending;  /* delivered, not acknowledged */
    uint64_t dead;     /* XLEN of the dead-letter stream */
    uint64_t groups;   /* consumer groups on the stream */
    uint64_t consumers;/* consumers in this handle's group */
} cga_queue_info_t;
/* A missing stream reads as all zeros; lag/pending/consumers are 0 when the handle has no
 * group or its group does not exist. */
typedef void (*cga_queue_info_cb)(int status, const cga_queue_info_t *info, void *arg);
CGA_EXTERN int cga_queue_info(cga_queue_t *q, cga_queue_info_cb cb, void *arg);

/* Dead letters, oldest first: up to count of them after start (exclusive; "-" or NULL for the
 * first; pass the last id seen to page on). d[0..n) and everything it points to are valid only
 * during the callback. */
typedef struct cga_dead_letter_s {
    char id[48];          /* id in the dead-letter stream */
    char src[48];         /* id it had in the queue */
    const char *reason;   /* NUL-terminated */
    uint64_t deliveries;
    uint64_t ts_ms;
    const char *data;     /* the entry value (may be NULL when the original had none) */
    size_t len;
} cga_dead_letter_t;
typedef void (*cga_queue_dead_cb)(int status, const cga_dead_letter_t *d, size_t n, void *arg);
CGA_EXTERN int cga_queue_dead_list(cga_queue_t *q, const char *start, size_t count,
                                   cga_queue_dead_cb cb, void *arg);

/* Atomically moves dead letters back to the queue (as fresh entries with the same "m") and
 * deletes them from the dead-letter stream: the given ids, or all of them when n == 0. Works in
 * chunks of 1000 (each chunk atomic; an error stops, chunks done stay done). Dead letters
 * without "m" cannot be re-queued and stay (purge them); unknown ids are skipped.
 * cb gets the number moved. */
CGA_EXTERN int cga_queue_dead_requeue(cga_queue_t *q, const char *const *ids, size_t n,
                                      cga_queue_count_cb cb, void *arg);

/* Deletes the dead-letter stream; cb gets the number of dead letters removed. */
CGA_EXTERN int cga_queue_dead_purge(cga_queue_t *q, cga_queue_count_cb cb, void *arg);

#endif

#ifndef CGA_OPS_COORD_H
#define CGA_OPS_COORD_H

/* The coordinator duties of `run` while it holds <ns>:lock:ops, and the semaphore follower of
 * `enqueue`.
 *
 * Coordinator: every state_interval_ms reads the analysis queue (cga_queue_info: lag + pending
 * of group "labs"), the live labs (<ns>:state:worker:* keys) and INFO memory, computes the
 * level (level.h), publishes the ResourceState at <ns>:state:global_resources with a TTL of
 * three intervals, and reports level changes (each logged once). Every trim_interval_ms trims
 * both queues (cga_queue_trim). A round that cannot read Redis publishes nothing and keeps the
 * last level.
 * OOM: while Redis refuses writes for want of memory (a write was answered OOM, or
 * used_memory >= maxmemory with maxmemory-policy noeviction) the level is red with a reason
 * starting "OOM", until used_memory falls below min(yellow %, 95 %) of maxmemory or maxmemory is
 * raised or unset (ops_level_oom_latch); a write answered OOM starts a round at once. Since
 * Redis refuses SET then, that semaphore is published by a Lua script flagged allow-oom (Redis
 * >= 7.0), which overwrites the small key all the same.
 * Follower: every state_interval_ms reads <ns>:state:global_resources; a missing key is green. */

#include <stdint.h>
#include "cgalpha/proto.h"
#include "level.h"

struct uv_loop_s;
struct cga_redis_s;
struct cga_queue_s;
struct cga_state_s;
struct cga_metrics_s;

typedef struct ops_coord_s ops_coord_t;

typedef struct ops_coord_opts_s {
    const char *ns;              /* namespace (the semaphore's key) */
    int follow;                  /* 1: follower only (read the semaphore) */
    unsigned state_interval_ms;  /* default 5000 */
    unsigned trim_interval_ms;   /* default 10000 */
    ops_level_limits_t limits;
    double batch;                /* tasks per entry assumed before any was sent */
    /* The mean tasks per entry the producer has sent (0 if none yet). */
    double (*tasks_per_entry)(void *arg);
    void *tpe_arg;
} ops_coord_opts_t;

/* Borrows everything. analysis/reports/state may be NULL for a follower (state is needed). */
int ops_coord_create(ops_coord_t **out, struct uv_loop_s *loop, struct cga_redis_s *redis,
                     struct cga_queue_s *analysis, struct cga_queue_s *reports,
                     struct cga_state_s *state, struct cga_metrics_s *metrics,
                     const ops_coord_opts_t *o);

/* The outcome of a write to Redis (the producer's entries): CGA_EOOM marks Redis out of
 * memory. */
void ops_coord_note_write(ops_coord_t *c, int status);

/* cb(level, arg) at each change of level. */
void ops_coord_on_level(ops_coord_t *c, void (*cb)(cga_level_t level, void *arg), void *arg);

/* Starts the timers (a round runs at once) / stops them. */
void ops_coord_start(ops_coord_t *c);
void ops_coord_stop(ops_coord_t *c);

/* Stops, waits for the requests in flight, frees; done(arg) after. */
void ops_coord_close(ops_coord_t *c, void (*done)(void *arg), void *arg);

cga_level_t ops_coord_level(const ops_coord_t *c);

#endif

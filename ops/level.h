#ifndef CGA_OPS_LEVEL_H
#define CGA_OPS_LEVEL_H

/* The resource semaphore's rule (pure).
 *   red     backlog >= red_backlog, or maxmemory set and used_memory >= red_mem_pct % of it
 *   yellow  backlog >= yellow_backlog, or maxmemory set and used_memory >= yellow_mem_pct %
 *   green   otherwise
 * backlog counts tasks (see docs/OPS.md: entries waiting times the mean tasks per entry). */

#include <stddef.h>
#include <stdint.h>
#include "cgalpha/proto.h"

typedef struct ops_level_limits_s {
    uint64_t yellow_backlog, red_backlog; /* tasks */
    unsigned yellow_mem_pct, red_mem_pct; /* percent of maxmemory */
} ops_level_limits_t;

/* Returns the level and writes a one-line reason into reason[n]. */
cga_level_t ops_level_eval(const ops_level_limits_t *l, uint64_t backlog, uint64_t used,
                           uint64_t maxmem, char *reason, size_t n);

/* The same, then OOM: when Redis refuses writes for want of memory, the level is red whatever
 * the rest says, with a reason that starts with "OOM". Redis is taken as out of memory when oom
 * (the caller's latch, see ops_level_oom_latch) or when maxmemory is set, used_memory >=
 * maxmemory and policy (maxmemory_policy) is "noeviction". */
cga_level_t ops_level_eval_oom(const ops_level_limits_t *l, uint64_t backlog, uint64_t used,
                               uint64_t maxmem, const char *policy, int oom, char *reason,
                               size_t n);

/* The OOM latch after a round: set by an OOM reply (the caller) or a full memory as above; it
 * holds (hysteresis, so that the level does not flap at the edge of maxmemory) until
 * used_memory falls below min(yellow_mem_pct, 95) % of maxmemory, or maxmemory is unset.
 * Returns the new latch. */
int ops_level_oom_latch(const ops_level_limits_t *l, int oom, uint64_t used, uint64_t maxmem,
                        const char *policy);

/* Reads "name:<text>" from an INFO reply into out[n] (up to the line end). Returns 0, or -1 if
 * absent. */
int ops_info_str(const char *info, size_t len, const char *name, char *out, size_t n);

/* Reads "name:<unsigned>" from an INFO reply (a line starting with name followed by ':').
 * Returns 0 and *out, or -1 if absent or not a number. */
int ops_info_u64(const char *info, size_t len, const char *name, uint64_t *out);

/* Backlog in tasks from entries waiting (lag + pending) and the mean tasks per entry (when
 * tpe <= 0, fallback is used). Rounded to the nearest task. */
uint64_t ops_backlog_tasks(uint64_t entries, double tpe, double fallback);

#endif

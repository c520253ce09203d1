#ifndef CGA_OPS_PRODUCER_H
#define CGA_OPS_PRODUCER_H

/* The producer of `run` and `enqueue`: reads a source, cuts windows, pushes one Task per window
 * and lab through a cga_queue batcher, and keeps every entry Redis did not accept.
 *
 * Flow control: at most max_inflight entries are sent and unanswered at a time. Entries whose
 * sent callback reports an error are kept in memory in the order the failures arrive and are
 * sent again (cga_queue_send_entry) once Redis is connected, at most once a second while it
 * keeps failing; nothing new is produced while any are kept. The first failure of an outage
 * is logged once, and the recovery once. (The SQLite buffer will replace the memory list.)
 *
 * Levels (the semaphore): green produces at full speed; yellow halves a paced rate, or pauses
 * 10 ms after each batch of an unpaced source; red pauses production until the level drops. */

#include <stddef.h>
#include <stdint.h>
#include "cgalpha/proto.h"
#include "source.h"

struct uv_loop_s;
struct cga_redis_s;
struct cga_queue_s;
struct cga_metrics_s;

typedef struct ops_producer_s ops_producer_t;

typedef struct ops_producer_opts_s {
    ops_source_t *source;        /* borrowed */
    size_t window, step;         /* bars per window, bars between window starts */
    const char *const *labs;     /* borrowed: one task per window and lab */
    size_t nlabs;
    size_t batch;                /* tasks per entry (the queue's batch_max): the yellow pause
                                    comes after this many tasks */
    unsigned bar_rate;           /* synthetic only: bars/s per symbol, 0 = unpaced */
    size_t max_inflight;         /* entries sent and unanswered at most, default 64 */
    unsigned max_bad_logged;     /* bad rows logged one by one (the rest only counted),
                                    default 100 */
} ops_producer_opts_t;

typedef struct ops_producer_stats_s {
    uint64_t rows;           /* rows accepted (used for windows) */
    uint64_t bad_rows;       /* rows refused (bad data, time not ascending) */
    uint64_t windows;        /* windows cut */
    uint64_t tasks;          /* tasks pushed */
    uint64_t rejected;       /* tasks the encoder refused (should not happen) */
    uint64_t entries_ok;     /* entries Redis accepted (re-sent ones included) */
    uint64_t tasks_ok;       /* tasks in those entries */
    uint64_t entries_failed; /* failed sends (each later re-send counted again) */
    size_t kept_entries;     /* entries kept for a retry now */
    uint64_t kept_tasks;
    int source_done;         /* the source is exhausted (or failed) */
    int source_error;        /* the source failed (read error) */
} ops_producer_stats_t;

/* Borrows loop, redis, q (whose sent callback it takes over) and metrics (may be NULL). The
 * producer starts inactive. */
int ops_producer_create(ops_producer_t **out, struct uv_loop_s *loop, struct cga_redis_s *redis,
                        struct cga_queue_s *q, struct cga_metrics_s *metrics,
                        const ops_producer_opts_t *o);

/* Closes the handles and frees; done(arg) after. Kept entries are dropped: read the stats
 * first. Close the queue first (its ECANCELED callbacks still arrive here). */
void ops_producer_close(ops_producer_t *p, void (*done)(void *arg), void *arg);

/* Starts or pauses new production (the lock). Kept entries are re-sent either way. */
void ops_producer_set_active(ops_producer_t *p, int active);
void ops_producer_set_level(ops_producer_t *p, cga_level_t level);

/* Stops reading the source for good and flushes the partial batch (shutdown). */
void ops_producer_stop(ops_producer_t *p);

/* Nothing in the batch, nothing in flight, nothing kept. */
int ops_producer_is_idle(const ops_producer_t *p);

/* Mean tasks per accepted entry so far (0 before the first). */
double ops_producer_tasks_per_entry(const ops_producer_t *p);

void ops_producer_stats(const ops_producer_t *p, ops_producer_stats_t *s);

/* cb(arg) runs (from the loop) after anything that may change is_idle or source_done. */
void ops_producer_on_change(ops_producer_t *p, void (*cb)(void *arg), void *arg);

#endif

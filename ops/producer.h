#ifndef CGA_OPS_PRODUCER_H
#define CGA_OPS_PRODUCER_H

/* The producer of `run` and `enqueue`: reads a source, cuts windows, encodes one Task per window
 * and lab into stream entries (up to `batch` tasks, sent after `linger_us`), and gets every entry
 * into Redis, or into the task buffer (buffer.h) while Redis does not take it. Nothing is
 * dropped.
 *
 * Where an entry goes, in order:
 *   - straight to Redis (XADD) while Redis is connected, no row of this queue waits in the
 *     buffer and nothing waits in memory; at most max_inflight entries unanswered at a time;
 *   - otherwise to the buffer: while Redis is down (production does not wait for it), while the
 *     buffer still holds older rows (new entries go behind them, never ahead), and when Redis
 *     refused an entry (connection lost, timeout, OOM, READONLY, breaker open, ...: the refused
 *     entries go to the buffer in the order they were produced, then what came after them).
 *     Entries are appended with cga_buffer_append_many, one transaction per loop turn.
 * Entries wait in memory only until the older ones sent to Redis are answered (at most one
 * command timeout), or while the buffer itself refuses them (disk full, read-only): then they
 * are kept in memory (at most max(max_inflight, 64) entries: production pauses) and both Redis
 * (when no older row waits in the buffer) and the buffer are retried every second; the first
 * failure is logged as an ERROR once, the recovery once.
 *
 * Drain: while rows of this queue wait in the buffer and Redis is connected, the producer takes
 * the buffer's drain lease (another process draining: it waits), sends the rows oldest first
 * (cga_queue_send_entry, at most max_inflight unanswered) and deletes them once Redis accepted
 * them (a crash in between sends them again: duplicates, never a loss). A refused row stops the
 * pass; the drain retries every second, one row at a time until one is accepted (rows accepted
 * after a refused one in the same pipeline are deleted, so the refused one goes after them).
 * When the buffer holds nothing more of this queue, entries go straight to Redis again.
 * Leftovers of an earlier run are drained first (they are older than anything produced now).
 *
 * Tasks whose encoding exceeds max_task_bytes are refused (logged with their id and size,
 * counted in too_big) and the rest goes on. The drain ignores the semaphore (its tasks exist
 * already); production follows it: green full speed; yellow halves a paced rate, or pauses
 * 10 ms after each batch of an unpaced source; red pauses. */

#include <stddef.h>
#include <stdint.h>
#include "cgalpha/proto.h"
#include "source.h"

struct uv_loop_s;
struct cga_redis_s;
struct cga_queue_s;
struct cga_metrics_s;
struct cga_buffer_s;

typedef struct ops_producer_s ops_producer_t;

typedef struct ops_producer_opts_s {
    ops_source_t *source;        /* borrowed */
    size_t window, step;         /* bars per window, bars between window starts */
    const char *const *labs;     /* borrowed: one task per window and lab */
    size_t nlabs;
    size_t batch;                /* tasks per entry, default 32: the yellow pause comes after
                                    this many tasks */
    unsigned linger_us;          /* a partial entry leaves this long after its first task,
                                    default 1000 (below 500: at the next loop turn) */
    unsigned bar_rate;           /* synthetic only: bars/s per symbol, 0 = unpaced */
    size_t max_inflight;         /* entries sent and unanswered at most, default 64 */
    size_t max_inflight_bytes;   /* and their bytes at most (one entry always goes), default
                                    512 KiB: hiredis 0.14 moves its whole unsent output after
                                    every partial write, so a long output costs its square */
    size_t max_task_bytes;       /* one encoded task at most, default 1 MiB */
    unsigned max_bad_logged;     /* bad rows (and too big tasks) logged one by one (the rest
                                    only counted), default 100 */
    /* Called with the outcome of every entry sent to Redis (CGA_OK or the error), so that the
     * coordinator learns of OOM replies. May be NULL. */
    void (*on_write)(int status, void *arg);
    void *on_write_arg;
} ops_producer_opts_t;

typedef struct ops_producer_stats_s {
    uint64_t rows;             /* rows accepted (used for windows) */
    uint64_t bad_rows;         /* rows refused (bad data, time not ascending) */
    uint64_t windows;          /* windows cut */
    uint64_t tasks;            /* tasks encoded */
    uint64_t too_big;          /* tasks refused: encoded size over max_task_bytes */
    uint64_t rejected;         /* tasks the encoder refused otherwise (should not happen) */
    uint64_t entries_ok;       /* entries Redis accepted (drained ones included) */
    uint64_t tasks_ok;         /* tasks in those entries */
    uint64_t entries_failed;   /* sends Redis did not accept (each later attempt counted) */
    uint64_t buffered_entries; /* entries appended to the buffer by this process */
    uint64_t buffered_tasks;
    uint64_t drained_entries;  /* rows sent from the buffer and accepted (any process's) */
    uint64_t drained_tasks;
    uint64_t store_errors;     /* failed appends to the buffer */
    size_t held_entries;       /* entries in memory now, neither in Redis nor in the buffer */
    uint64_t held_tasks;
    int buffer_pending;        /* rows of this queue may still wait in the buffer */
    int store_failing;         /* the last append to the buffer failed (entries held) */
    int source_done;           /* the source is exhausted (or failed) */
    int source_error;          /* the source failed (read error) */
} ops_producer_stats_t;

/* Borrows loop, redis, q (whose sent callback it takes over), buffer and metrics (may be NULL).
 * Looks for rows of q's key left in the buffer (they are drained first). The producer starts
 * inactive (it drains the buffer all the same). */
int ops_producer_create(ops_producer_t **out, struct uv_loop_s *loop, struct cga_redis_s *redis,
                        struct cga_queue_s *q, struct cga_buffer_s *buffer,
                        struct cga_metrics_s *metrics, const ops_producer_opts_t *o);

/* Shutdown, step 1 (before closing q): no more sends, drains or production; outcomes of what
 * is in flight are still collected (refused entries are held in memory). */
void ops_producer_quiesce(ops_producer_t *p);

/* Shutdown, step 2 (after q was closed): puts the partial entry and every held entry into the
 * buffer, deletes the rows Redis accepted, gives the drain lease up. Returns the tasks that
 * could be stored nowhere (lost; also logged as an ERROR), 0 normally. */
uint64_t ops_producer_finish(ops_producer_t *p);

/* Closes the handles and frees; done(arg) after. */
void ops_producer_close(ops_producer_t *p, void (*done)(void *arg), void *arg);

/* Starts or pauses new production (the lock). The buffer is drained either way. */
void ops_producer_set_active(ops_producer_t *p, int active);
void ops_producer_set_level(ops_producer_t *p, cga_level_t level);

/* Stops reading the source for good and sends the partial entry (shutdown). */
void ops_producer_stop(ops_producer_t *p);

/* Everything produced is in Redis: nothing in memory, in flight, or in the buffer (rows of this
 * queue, whoever appended them). */
int ops_producer_is_idle(const ops_producer_t *p);

/* Everything produced is in Redis or in the buffer: nothing in memory or in flight. */
int ops_producer_is_settled(const ops_producer_t *p);

/* Mean tasks per accepted entry so far (0 before the first). */
double ops_producer_tasks_per_entry(const ops_producer_t *p);

void ops_producer_stats(const ops_producer_t *p, ops_producer_stats_t *s);

/* cb(arg) runs (from the loop) after anything that may change is_idle, is_settled,
 * store_failing or source_done. */
void ops_producer_on_change(ops_producer_t *p, void (*cb)(void *arg), void *arg);

#endif

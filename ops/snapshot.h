#ifndef CGA_OPS_SNAPSHOT_H
#define CGA_OPS_SNAPSHOT_H

/* One reading of the namespace, as `status`, `monitor` and the dashboard show it: both queues
 * (length, lag, pending, dead letters), the published semaphore, the labs' heartbeats, the
 * current regime of every symbol and, on request, the most recent regime changes from the
 * regime log. A snapper reads them asynchronously on the loop, every request in flight at
 * once, and calls back once with the whole snapshot. */

#include <stdint.h>
#include <stdio.h>

#include "cgalpha/proto.h"
#include "cgalpha/queue.h"

struct uv_loop_s;
struct cga_redis_s;

#define OPS_SNAP_TXT 160

typedef struct ops_lab_row_s {
    char id[OPS_SNAP_TXT], host[OPS_SNAP_TXT], plugins[OPS_SNAP_TXT];
    uint32_t pid;
    uint64_t processed, failed, started_us, ts_us, last_ack_us;
    uint32_t inflight;
    int stalled;
} ops_lab_row_t;

typedef struct ops_regime_row_s {
    char symbol[OPS_SNAP_TXT];
    cga_regime_t regime, from;
    uint64_t seq, ts_us;
    int64_t ws;
    double conf;
} ops_regime_row_t;

enum { OPS_Q_ANALYSIS = 0, OPS_Q_REPORTS = 1, OPS_NQUEUES = 2 };
extern const char *const ops_queue_names[OPS_NQUEUES];

typedef struct ops_snapshot_s {
    int err;                             /* CGA_OK, or the first Redis error (rest partial) */
    uint64_t taken_us;                   /* wall clock when the last answer came */
    cga_queue_info_t queues[OPS_NQUEUES];
    int sem_found;                       /* a semaphore is published */
    cga_resource_state_t sem;            /* .reason points into sem_reason */
    char sem_reason[2 * OPS_SNAP_TXT];
    ops_lab_row_t *labs;                 /* sorted by id */
    size_t nlabs;
    ops_regime_row_t *regimes;           /* current regime per symbol, sorted by symbol */
    size_t nregimes;
    ops_regime_row_t *changes;           /* recent changes, oldest first (opts.recent of them) */
    size_t nchanges;
    int with_changes;                    /* changes were asked for (recent > 0) */
    size_t undecodable;                  /* state values that did not decode (logged once) */
} ops_snapshot_t;

typedef struct ops_snapper_s ops_snapper_t;

/* The snapshot is owned by the snapper and valid during the call only. */
typedef void (*ops_snap_cb)(const ops_snapshot_t *s, void *arg);

/* Borrows loop and redis; copies ns. recent: how many of the latest regime changes to read
 * from the regime log with each snapshot (0: none). Returns CGA_OK and *out. */
int ops_snapper_create(ops_snapper_t **out, struct uv_loop_s *loop, struct cga_redis_s *redis,
                       const char *ns, size_t recent);

/* Starts a reading; cb runs once when every answer came (err says if any failed). Returns
 * CGA_OK, CGA_EEXIST while a reading is in flight, or the error that refused the first request
 * (cb is then not called). */
int ops_snapper_take(ops_snapper_t *sn, ops_snap_cb cb, void *arg);

/* 1 while a reading is in flight. */
int ops_snapper_busy(const ops_snapper_t *sn);

/* Stops: a reading in flight completes without calling back; done(arg) (may be NULL) runs
 * once everything is released. NULL is a no-op. */
void ops_snapper_close(ops_snapper_t *sn, void (*done)(void *arg), void *arg);

/* Writes the snapshot's members as JSON, without braces around them:
 * "queues":{..},"semaphore":{..}|null,"labs":[..],"regimes":[..],"changes":[..],
 * "undecodable":N   (ages relative to now_us; "changes" only when recent > 0). */
void ops_snapshot_json(FILE *f, const ops_snapshot_t *s, uint64_t now_us);

/* The semaphore as status and monitor print it, in one line (no newline): level, backlog, labs,
 * memory and age, or that none is published. Its reason is s->sem_reason. */
void ops_semaphore_line(char *out, size_t n, const ops_snapshot_t *s, uint64_t now_us);

/* Seconds from ts_us to now_us (0 when ts_us is 0 or later). */
double ops_age_s(uint64_t ts_us, uint64_t now_us);

#endif

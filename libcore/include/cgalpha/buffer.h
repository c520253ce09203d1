#ifndef CGALPHA_BUFFER_H
#define CGALPHA_BUFFER_H

/* The task buffer: a SQLite file (WAL) where ops keeps the stream entries Redis did not accept
 * (unreachable, breaker open, OOM, READONLY), with their task ids, in order, until it can send
 * them again. Nothing is dropped: an append returns CGA_OK only once the entry is durable, and
 * a row is deleted only after Redis accepted it (a crash between the two re-sends it: duplicates
 * are possible, never a loss).
 *
 * What is stored: ENTRIES, each exactly the value that would be XADDed in field "m" (a msgpack
 * array of `count` messages, see proto.h), with the queue name, the first and last task ids (for
 * `recover --dry-run` and status) and the wall-clock time of the append. A drain re-sends the
 * same bytes with cga_queue_send_entry().
 *
 * File: default CGA_BUFFER_DEFAULT_PATH under the working directory; missing folders are
 * created (mode 0700). Schema versioned by PRAGMA user_version (1) and marked by PRAGMA
 * application_id 0x43474131 ("CGA1"); a file of another application or a newer schema is
 * refused, never rewritten. journal_mode=WAL, busy_timeout (default 5000 ms), and
 * synchronous=FULL by default:
 *   In WAL mode NORMAL fsyncs only at checkpoints, so on a power loss or an OS crash the last
 *   transactions before it may vanish (the file is never corrupted; a process crash loses
 *   nothing with either level). The rows here are tasks Redis refused: once an append returned
 *   OK the producer forgets them, so a vanished row is a lost task. FULL fsyncs the WAL at every
 *   commit, which is what "durable" means. Its price, measured on the team machine (ext4 on a
 *   virtio disk, 2 shared cores under load ~3; 1000 appends per run, 6 runs):
 *     one append, 1-task entry (1.8 KiB):  FULL median 0.13-0.22 ms (p99 0.4-0.7 ms),
 *                                          NORMAL 0.025-0.03 ms: the fsync costs ~0.15 ms;
 *     one append, 32-task entry (57 KiB):  FULL median 0.23-0.30 ms, NORMAL 0.06-0.09 ms; means
 *                                          0.35-1 ms vs 0.2-0.3 ms, p99 6-8 ms with either
 *                                          level (WAL checkpoints every ~4 MiB);
 *     append_many(), 64 entries per call:  9-20 us (1 task) or 0.19-0.28 ms (32 tasks) per
 *                                          entry with EITHER level: one fsync per call, the
 *                                          rest is bandwidth;
 *     drain (peek 64 + delete_upto):       10-20 us (1 task) or 0.34-0.52 ms (32 tasks) per
 *                                          entry, i.e. 60-95k tasks/s for the biggest entries.
 *   So FULL allows ~5000 single appends/s (~2000/s of 32-task entries, ~64k tasks/s). The
 *   buffer is written only while Redis refuses entries and the producer slows down then, so
 *   FULL stays the default; use append_many() when several entries fail together.
 *
 * When to open: at process start, not lazily at the first failure. Opening creates the folders
 * and the file, sets WAL and takes the write lock once, so an unwritable path, a corrupt or
 * foreign file or a lock that never comes free is reported before any task is at stake (ops can
 * refuse to start then); and rows left by an earlier run are visible at once (drain them before
 * producing new tasks: they are older). A disk that fills up later is only seen by the append
 * that needs the space: that append fails (CGA_BUFFER_EFULL) and the caller keeps the entry.
 *
 * Several processes: SQLite's locking keeps the file consistent when several processes use it
 * (ops active + standby, `cgalpha-ops recover`, `status`); a writer waits up to busy_timeout_ms
 * for another's transaction. Every write is one BEGIN IMMEDIATE transaction. Draining is
 * exclusive by a DRAIN LEASE kept in the file (cga_buffer_drain_lock): only the holder drains,
 * so two processes never send the same rows concurrently and the order holds. The lease lapses
 * when its holder stops renewing it (a crashed drainer), by the wall clock.
 *
 * Drain pattern (ops):
 *     cga_buffer_drain_lock(b, 10000)          -> CGA_ELOCKED: someone else drains; wait
 *     cga_buffer_peek(b, NULL, after, 64, 4 MiB, &batch)
 *     for each entry: cga_queue_send_entry(q_of(e->queue), e->data, e->len, e->count)
 *     as sent callbacks report success: cga_buffer_delete(b, seqs, n) (or delete_upto)
 *     on the first failure: stop, keep the rest, retry later; renew the lease (call
 *     drain_lock again) at least every lease_ms / 3 while draining; when empty:
 *     cga_buffer_drain_unlock(b).
 *   Entries accepted after a refused one in the same pipeline are deleted too, so the refused one
 *   is re-sent after them: strict order needs one entry in flight at a time.
 *
 * Threads: a handle is used by one thread at a time (ops: its loop thread), and never across
 * fork() (open it again in the child). Every call is synchronous and short (one local
 * transaction).
 *
 * Errors: CGA_EINVAL for bad arguments, CGA_EBUFFER for any failure of the file (disk full,
 * read-only, cannot open, corrupt, busy, I/O) with the detail in cga_buffer_errmsg() and the kind
 * in cga_buffer_errkind(); a failed write leaves nothing behind (never half a row). This module
 * does not log: the caller logs the errmsg once. */

#include <stddef.h>
#include <stdint.h>
#include "cgalpha/export.h"

#define CGA_BUFFER_DEFAULT_PATH "aipha_memory/temporary/task_buffer.db"
#define CGA_BUFFER_SCHEMA_VERSION 1

typedef struct cga_buffer_s cga_buffer_t;

enum cga_buffer_sync {
    CGA_BUFFER_SYNC_FULL = 0,   /* fsync the WAL at every commit (default) */
    CGA_BUFFER_SYNC_NORMAL = 1, /* fsync at checkpoints only: may lose the last commits on power
                                   loss or OS crash (never corrupts) */
};

typedef struct cga_buffer_opts_s {
    int sync;                 /* enum cga_buffer_sync, default CGA_BUFFER_SYNC_FULL */
    unsigned busy_timeout_ms; /* wait for another process's lock, default 5000 */
    uint64_t max_bytes;       /* size limit of the database file (rounded down to pages; at
                                 least a few pages), 0 = none (default). Past it an append fails
                                 like on a full disk (CGA_BUFFER_EFULL) */
    int readonly;             /* open an existing file read-only (status, recover --dry-run):
                                 creates nothing; a missing file is CGA_ENOTFOUND; every write
                                 fails with CGA_EBUFFER (CGA_BUFFER_EREADONLY) */
} cga_buffer_opts_t;

/* Kind of the last failure, for callers that act on it (the text is in cga_buffer_errmsg). */
enum cga_buffer_errkind {
    CGA_BUFFER_ENONE = 0,
    CGA_BUFFER_EFULL,      /* disk full, or max_bytes reached (SQLITE_FULL) */
    CGA_BUFFER_EREADONLY,  /* the file, its folder or the handle is read-only */
    CGA_BUFFER_ECANTOPEN,  /* cannot create the folders or open the file */
    CGA_BUFFER_ECORRUPT,   /* not a SQLite file, corrupt, another application's file, or a
                              newer schema */
    CGA_BUFFER_EBUSY,      /* another process held the lock for longer than busy_timeout_ms */
    CGA_BUFFER_EIO,        /* an I/O error (the errno is in the text) */
    CGA_BUFFER_EOTHER,
};

CGA_EXTERN void cga_buffer_opts_init(cga_buffer_opts_t *o);

/* Opens (creating if needed, unless readonly) the buffer at path (NULL: CGA_BUFFER_DEFAULT_PATH;
 * ":memory:" for a private in-memory buffer without WAL, for tests). Creates the missing
 * folders (0700), sets the pragmas, creates or checks the schema, and takes and releases the
 * write lock once so that an unwritable file fails here. opts may be NULL (defaults; copied).
 * Returns CGA_OK and owned *out (free with cga_buffer_free), or an error with *out = NULL and,
 * when errbuf is not NULL, a one-line reason naming the path in errbuf (errlen bytes, always
 * NUL-terminated): CGA_EINVAL (empty path, bad option), CGA_ENOTFOUND (readonly and no file),
 * CGA_EBUFFER (cannot create a folder, cannot open, not a database, corrupt, another
 * application's file, newer schema, read-only, disk full, busy). */
CGA_EXTERN int cga_buffer_open(cga_buffer_t **out, const char *path, const cga_buffer_opts_t *opts,
                               char *errbuf, size_t errlen);

/* Closes the database (checkpointing the WAL; SQLite removes the -wal and -shm files when it is
 * the last connection), releases the drain lease if held, and frees b. NULL is a no-op. */
CGA_EXTERN void cga_buffer_free(cga_buffer_t *b);

/* The path given to open (or the default). Valid while b lives. */
CGA_EXTERN const char *cga_buffer_path(const cga_buffer_t *b);

/* One line about the last failed call on b, naming the path and the reason, e.g.
 * "task buffer aipha_memory/temporary/task_buffer.db: disk full (database or disk is full)";
 * "" if no call failed yet. Valid until the next call on b. */
CGA_EXTERN const char *cga_buffer_errmsg(const cga_buffer_t *b);
/* enum cga_buffer_errkind of the last failed call (CGA_BUFFER_ENONE if none failed yet). */
CGA_EXTERN int cga_buffer_errkind(const cga_buffer_t *b);

/* ---- writing ----------------------------------------------------------------------------- */

/* One entry to append (append_many) or as read back (peek). */
typedef struct cga_buffer_entry_s {
    int64_t seq;          /* read: position in the buffer (ascending, never reused); ignored
                             when appending */
    const char *queue;    /* queue name ("analysis", "reports"), 1..255 bytes */
    const char *data;     /* the entry value as XADDed in field "m" */
    size_t len;           /* >= 1 */
    uint64_t count;       /* messages in data; 0 when appending: counted with cga_proto_split
                             (1 if data does not split) */
    const char *first_id; /* id of the first and last message (task "id", or report "task");
                             NULL when appending: read from data with proto's decoders ("" when
                             data does not decode) */
    const char *last_id;
    uint64_t created_ms;  /* read: wall-clock ms of the append; ignored when appending */
} cga_buffer_entry_t;

/* Appends one entry in its own transaction. Borrows everything (copied into the file). Returns
 * CGA_OK only once the row is committed (durable per opts.sync: with FULL, fsynced); otherwise
 * nothing was written (never half a row) and the caller still owns the task: CGA_EINVAL (queue
 * empty or too long, len 0, data NULL), CGA_EBUFFER (disk full, read-only, busy, I/O: see
 * errmsg/errkind). first_id/last_id/count as in cga_buffer_entry_t (NULL/0: derived). */
CGA_EXTERN int cga_buffer_append(cga_buffer_t *b, const char *queue, const char *data, size_t len,
                                 uint64_t count, const char *first_id, const char *last_id);

/* Appends e[0..n) in order in ONE transaction (one fsync): all or none. Same errors. n = 0 is
 * CGA_OK. */
CGA_EXTERN int cga_buffer_append_many(cga_buffer_t *b, const cga_buffer_entry_t *e, size_t n);

/* ---- reading and draining ---------------------------------------------------------------- */

/* A batch returned by peek: entries in seq order. Owned by the caller; every pointer in it stays
 * valid until cga_buffer_batch_free. */
typedef struct cga_buffer_batch_s {
    cga_buffer_entry_t *entries;
    size_t n;
    uint64_t tasks;       /* sum of count */
    size_t bytes;         /* sum of len */
} cga_buffer_batch_t;

CGA_EXTERN void cga_buffer_batch_free(cga_buffer_batch_t *batch); /* NULL is a no-op */

/* The oldest entries with seq > after_seq (0: from the start), of queue (NULL: every queue), in
 * seq order, without deleting them: at most max entries (>= 1) and, past the first, at most
 * max_bytes of data in all (0: no byte limit). Returns CGA_OK with owned *out (n may be 0 when
 * nothing is left), or CGA_EINVAL / CGA_EBUFFER with *out = NULL. */
CGA_EXTERN int cga_buffer_peek(cga_buffer_t *b, const char *queue, int64_t after_seq, size_t max,
                               size_t max_bytes, cga_buffer_batch_t **out);

/* Deletes the rows seqs[0..n) (those Redis accepted) in one transaction; unknown seqs are
 * skipped (deleted by another drainer, or twice). *deleted (may be NULL) gets the rows removed.
 * Space is returned to the file system once enough pages are free. */
CGA_EXTERN int cga_buffer_delete(cga_buffer_t *b, const int64_t *seqs, size_t n,
                                 uint64_t *deleted);

/* Deletes every row (of every queue) with seq <= seq, in one transaction. */
CGA_EXTERN int cga_buffer_delete_upto(cga_buffer_t *b, int64_t seq, uint64_t *deleted);

/* Rows and tasks in the buffer (all queues), from running totals kept by the appends and
 * deletes: O(1), cheap enough for a gauge or "anything to drain?". Either pointer may be NULL. */
CGA_EXTERN int cga_buffer_count(cga_buffer_t *b, uint64_t *entries, uint64_t *tasks);

/* ---- the drain lease ---------------------------------------------------------------------- */

/* Takes the drain lease for lease_ms (>= 100; 0: 10000), or renews it when this handle holds it.
 * One holder per file across processes. CGA_OK when held now; CGA_ELOCKED when another handle
 * holds an unexpired lease (errmsg names it: "pid 4242 on host a, 7.5 s left"); CGA_EBUFFER on a
 * file error (read-only handles cannot take it). The lease lapses lease_ms after the last renewal
 * (wall clock), so a crashed drainer is replaced after at most lease_ms. */
CGA_EXTERN int cga_buffer_drain_lock(cga_buffer_t *b, unsigned lease_ms);

/* Gives the lease up if this handle holds it (CGA_OK also when it did not). */
CGA_EXTERN int cga_buffer_drain_unlock(cga_buffer_t *b);

/* ---- statistics (status, recover --dry-run) ---------------------------------------------- */

typedef struct cga_buffer_queue_stats_s {
    char *queue;
    uint64_t entries;     /* rows */
    uint64_t tasks;       /* sum of count */
    uint64_t bytes;       /* sum of len */
    int64_t first_seq, last_seq;
    char *first_id;       /* first_id of the oldest row of this queue */
    char *last_id;        /* last_id of the newest row */
    uint64_t first_ms, last_ms; /* created_ms of the oldest and newest rows */
} cga_buffer_queue_stats_t;

typedef struct cga_buffer_stats_s {
    cga_buffer_queue_stats_t *queues; /* ordered by queue name */
    size_t nqueues;
    uint64_t entries, tasks, bytes;   /* totals */
    uint64_t file_bytes;              /* database pages in use and free (page_count*page_size) */
    uint64_t free_bytes;              /* pages free inside the file (freelist) */
} cga_buffer_stats_t;

/* Fills owned *out (free with cga_buffer_stats_free) in one read transaction (a consistent
 * snapshot). Reads every row's metadata (not the data): ~0.1 s for 100k rows here, so for
 * status and recover, not for a loop (use cga_buffer_count there). */
CGA_EXTERN int cga_buffer_stats(cga_buffer_t *b, cga_buffer_stats_t **out);
CGA_EXTERN void cga_buffer_stats_free(cga_buffer_stats_t *s); /* NULL is a no-op */

#endif

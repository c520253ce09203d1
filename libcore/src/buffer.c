/* The SQLite task buffer (see cgalpha/buffer.h). The only file that includes sqlite3.h. */
#include "cgalpha/buffer.h"

#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <uv.h>

#include "cgalpha/alloc.h"
#include "cgalpha/clock.h"
#include "cgalpha/err.h"
#include "cgalpha/proto.h"

#define APP_ID 0x43474131        /* "CGA1" */
#define QUEUE_MAX 255            /* bytes in a queue name */
#define MIN_PAGES 16             /* max_bytes never limits the file below this */
#define VACUUM_PAGES 256         /* free pages that trigger an incremental vacuum (1 MiB) */
#define WAL_LIMIT (8 << 20)      /* the WAL is truncated to this after a checkpoint */
#define DEFAULT_LEASE_MS 10000

static const char SCHEMA[] =
    "CREATE TABLE entries("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT," /* never reused, even once the table is empty */
    " queue TEXT NOT NULL,"
    " first_id TEXT NOT NULL,"
    " last_id TEXT NOT NULL,"
    " count INTEGER NOT NULL,"
    " len INTEGER NOT NULL,"
    " created_ms INTEGER NOT NULL,"
    " data BLOB NOT NULL);" /* last: reading the other columns never touches its overflow pages */
    "CREATE INDEX entries_queue ON entries(queue, seq);"
    /* Running totals, so that counting is O(1) however many rows wait. */
    "CREATE TABLE totals("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " entries INTEGER NOT NULL,"
    " tasks INTEGER NOT NULL,"
    " bytes INTEGER NOT NULL);"
    "INSERT INTO totals VALUES(1, 0, 0, 0);"
    "CREATE TRIGGER entries_added AFTER INSERT ON entries BEGIN"
    " UPDATE totals SET entries = entries + 1, tasks = tasks + NEW.count,"
    "  bytes = bytes + NEW.len WHERE id = 1; END;"
    "CREATE TRIGGER entries_removed AFTER DELETE ON entries BEGIN"
    " UPDATE totals SET entries = entries - 1, tasks = tasks - OLD.count,"
    "  bytes = bytes - OLD.len WHERE id = 1; END;"
    "CREATE TABLE drain_lease("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " token TEXT NOT NULL,"
    " holder TEXT NOT NULL,"
    " until_ms INTEGER NOT NULL);";

enum {
    ST_INSERT,
    ST_PEEK_ALL,
    ST_PEEK_QUEUE,
    ST_DELETE,
    ST_DELETE_UPTO,
    ST_COUNT,
    ST_LEASE_GET,
    ST_LEASE_PUT,
    ST_LEASE_DEL,
    ST__N
};

static const char *const SQL[ST__N] = {
    [ST_INSERT] = "INSERT INTO entries(queue, first_id, last_id, count, len, created_ms, data)"
                  " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_PEEK_ALL] = "SELECT seq, queue, first_id, last_id, count, created_ms, data FROM entries"
                    " WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    [ST_PEEK_QUEUE] = "SELECT seq, queue, first_id, last_id, count, created_ms, data FROM entries"
                      " WHERE queue = ?3 AND seq > ?1 ORDER BY seq LIMIT ?2",
    [ST_DELETE] = "DELETE FROM entries WHERE seq = ?1",
    [ST_DELETE_UPTO] = "DELETE FROM entries WHERE seq <= ?1",
    [ST_COUNT] = "SELECT entries, tasks FROM totals WHERE id = 1",
    [ST_LEASE_GET] = "SELECT token, holder, until_ms FROM drain_lease WHERE id = 1",
    [ST_LEASE_PUT] = "INSERT OR REPLACE INTO drain_lease(id, token, holder, until_ms)"
                     " VALUES(1, ?1, ?2, ?3)",
    [ST_LEASE_DEL] = "DELETE FROM drain_lease WHERE id = 1 AND token = ?1",
};

struct cga_buffer_s {
    sqlite3 *db;
    char *path;
    cga_buffer_opts_t o;
    int memory;                /* ":memory:" */
    sqlite3_stmt *st[ST__N];
    cga_proto_reader_t *reader; /* to read ids from entries appended without them (lazy) */
    char token[33];            /* drain lease token of this handle */
    char holder[128];          /* "pid N on host H" */
    int leased;
    int errkind;
    char err[768];
};

void cga_buffer_opts_init(cga_buffer_opts_t *o) {
    memset(o, 0, sizeof *o);
    o->sync = CGA_BUFFER_SYNC_FULL;
    o->busy_timeout_ms = 5000;
}

/* ---- errors ------------------------------------------------------------------------------ */

static int kind_of(int sqlite_rc) {
    switch (sqlite_rc & 0xff) {
    case SQLITE_OK: case SQLITE_DONE: case SQLITE_ROW: return CGA_BUFFER_ENONE;
    case SQLITE_FULL: return CGA_BUFFER_EFULL;
    case SQLITE_READONLY: case SQLITE_PERM: case SQLITE_AUTH: return CGA_BUFFER_EREADONLY;
    case SQLITE_CANTOPEN: return CGA_BUFFER_ECANTOPEN;
    case SQLITE_CORRUPT: case SQLITE_NOTADB: return CGA_BUFFER_ECORRUPT;
    case SQLITE_BUSY: case SQLITE_LOCKED: return CGA_BUFFER_EBUSY;
    case SQLITE_IOERR: return CGA_BUFFER_EIO;
    default: return CGA_BUFFER_EOTHER;
    }
}

/* Records a failure of kind `kind`: "task buffer <path>: <what>: <phrase> (<detail>)". */
static int fail(cga_buffer_t *b, int kind, const char *what, const char *detail) {
    const char *phrase = "";
    switch (kind) {
    case CGA_BUFFER_EFULL: phrase = "disk full"; break;
    case CGA_BUFFER_EREADONLY: phrase = "read-only"; break;
    case CGA_BUFFER_ECANTOPEN: phrase = "cannot open"; break;
    case CGA_BUFFER_ECORRUPT: phrase = "corrupt or not a SQLite database"; break;
    case CGA_BUFFER_EBUSY: phrase = "locked by another process"; break;
    case CGA_BUFFER_EIO: phrase = "I/O error"; break;
    default: phrase = "error"; break;
    }
    b->errkind = kind;
    snprintf(b->err, sizeof b->err, "task buffer %s: %s%s%s%s%s%s", b->path, what ? what : "",
             what ? ": " : "", phrase, detail && *detail ? " (" : "", detail ? detail : "",
             detail && *detail ? ")" : "");
    return CGA_EBUFFER;
}

/* Records a failure with its own text: "task buffer <path>: <text>". */
static int fail_text(cga_buffer_t *b, int kind, const char *fmt, ...) CGA_PRINTF(3, 4);
static int fail_text(cga_buffer_t *b, int kind, const char *fmt, ...) {
    int n = snprintf(b->err, sizeof b->err, "task buffer %s: ", b->path);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < sizeof b->err)
        vsnprintf(b->err + n, sizeof b->err - (size_t)n, fmt, ap);
    va_end(ap);
    b->errkind = kind;
    return CGA_EBUFFER;
}

/* The operation of an extended I/O error code, for the message. */
static const char *io_op(int ext) {
    switch (ext) {
    case SQLITE_IOERR_READ: case SQLITE_IOERR_SHORT_READ: return "read";
    case SQLITE_IOERR_WRITE: return "write";
    case SQLITE_IOERR_FSYNC: case SQLITE_IOERR_DIR_FSYNC: return "fsync";
    case SQLITE_IOERR_TRUNCATE: return "truncate";
    case SQLITE_IOERR_FSTAT: return "fstat";
    case SQLITE_IOERR_LOCK: case SQLITE_IOERR_UNLOCK: case SQLITE_IOERR_RDLOCK: return "lock";
    case SQLITE_IOERR_SHMOPEN: case SQLITE_IOERR_SHMSIZE: case SQLITE_IOERR_SHMMAP: return "shm";
    default: return NULL;
    }
}

/* Records the database's last error (rc is the failing call's result). */
static int fail_db(cga_buffer_t *b, int rc, const char *what) {
    int saved_errno = errno; /* what SQLite's unix VFS itself reports as "the last error" */
    char detail[384];
    int kind = kind_of(rc);
    const char *msg = b->db ? sqlite3_errmsg(b->db) : sqlite3_errstr(rc);
    int sys = b->db ? sqlite3_system_errno(b->db) : 0;
    /* SQLite 3.40 records the errno for errors of open, not always for I/O errors of a step. */
    if (!sys && kind == CGA_BUFFER_EIO) sys = saved_errno;
    size_t n = (size_t)snprintf(detail, sizeof detail, "%s", msg);
    const char *op = kind == CGA_BUFFER_EIO ? io_op(rc) : NULL;
    if (op && n < sizeof detail) n += (size_t)snprintf(detail + n, sizeof detail - n, ": %s", op);
    if (sys && (kind == CGA_BUFFER_EIO || kind == CGA_BUFFER_ECANTOPEN ||
                kind == CGA_BUFFER_EREADONLY) && n < sizeof detail)
        n += (size_t)snprintf(detail + n, sizeof detail - n, ": %s", strerror(sys));
    if (kind == CGA_BUFFER_EBUSY && n < sizeof detail)
        n += (size_t)snprintf(detail + n, sizeof detail - n, " for more than %u ms",
                              b->o.busy_timeout_ms);
    if (kind == CGA_BUFFER_EFULL && b->o.max_bytes && n < sizeof detail)
        snprintf(detail + n, sizeof detail - n, "; size limit %" PRIu64 " bytes", b->o.max_bytes);
    if (kind == CGA_BUFFER_ENONE) kind = CGA_BUFFER_EOTHER;
    return fail(b, kind, what, detail);
}

const char *cga_buffer_errmsg(const cga_buffer_t *b) {
    return b ? b->err : "";
}

int cga_buffer_errkind(const cga_buffer_t *b) {
    return b ? b->errkind : CGA_BUFFER_ENONE;
}

const char *cga_buffer_path(const cga_buffer_t *b) {
    return b->path;
}

/* ---- small SQL helpers ------------------------------------------------------------------- */

static int exec(cga_buffer_t *b, const char *sql, const char *what) {
    int rc = sqlite3_exec(b->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? CGA_OK : fail_db(b, rc, what);
}

/* Runs a one-row PRAGMA or SELECT returning an integer. */
static int query_int(cga_buffer_t *b, const char *sql, int64_t *out, const char *what) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(b->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE) {
            *out = 0;
            rc = SQLITE_OK;
        }
    }
    if (rc != SQLITE_OK) {
        int r = fail_db(b, rc, what);
        sqlite3_finalize(st);
        return r;
    }
    sqlite3_finalize(st);
    return CGA_OK;
}

static int begin(cga_buffer_t *b, const char *what) {
    return exec(b, "BEGIN IMMEDIATE", what);
}

/* Ends a write transaction: COMMIT when rc is CGA_OK (a failed COMMIT is recorded), otherwise
 * (or when COMMIT failed) ROLLBACK if SQLite has not rolled back by itself already. */
static int end(cga_buffer_t *b, int rc, const char *what) {
    if (rc == CGA_OK) {
        int s = sqlite3_exec(b->db, "COMMIT", NULL, NULL, NULL);
        if (s == SQLITE_OK) return CGA_OK;
        rc = fail_db(b, s, what);
    }
    if (!sqlite3_get_autocommit(b->db)) sqlite3_exec(b->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static sqlite3_stmt *stmt(cga_buffer_t *b, int which) {
    sqlite3_stmt *st = b->st[which];
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

/* ---- open / free ------------------------------------------------------------------------- */

/* mkdir -p of the folder part of path, new folders 0700. */
static int make_folders(cga_buffer_t *b, const char *path) {
    char *dir = cga_strdup(path);
    char *slash = strrchr(dir, '/');
    int rc = CGA_OK;
    if (!slash || slash == dir) goto done; /* in the working directory, or directly under / */
    *slash = '\0';
    for (char *p = dir + 1;; p++) {
        int last = *p == '\0';
        if (*p != '/' && !last) continue;
        *p = '\0';
        if (mkdir(dir, 0700) != 0) {
            int e = errno;
            struct stat sb;
            if (e == EEXIST && stat(dir, &sb) == 0 && !S_ISDIR(sb.st_mode)) e = ENOTDIR;
            if (e != EEXIST) {
                rc = fail_text(b, CGA_BUFFER_ECANTOPEN, "cannot create folder %s: %s", dir,
                               strerror(e));
                goto done;
            }
        }
        if (last) break;
        *p = '/';
    }
done:
    free(dir);
    return rc;
}

/* What the file is: ours (1), empty (0: a new or 0-byte file, no tables), or an error (the file
 * is refused as it is, never modified). Reads the header only. */
static int classify(cga_buffer_t *b, int *ours) {
    int64_t app = 0, ver = 0, tables = 0;
    int rc;
    *ours = 0;
    /* The three reads must see one snapshot: read apart, another process creating the schema
     * meanwhile makes a new buffer look like tables without our id (another application's). */
    int own_tx = sqlite3_get_autocommit(b->db);
    if (own_tx && (rc = exec(b, "BEGIN", "opening"))) return rc;
    if ((rc = query_int(b, "PRAGMA application_id", &app, "opening")) ||
        (rc = query_int(b, "PRAGMA user_version", &ver, "opening")) ||
        (rc = query_int(b, "SELECT count(*) FROM sqlite_master", &tables, "opening"))) {
        if (own_tx && !sqlite3_get_autocommit(b->db))
            sqlite3_exec(b->db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    if (own_tx && (rc = exec(b, "COMMIT", "opening"))) return rc;
    if (app == APP_ID && ver == CGA_BUFFER_SCHEMA_VERSION) {
        *ours = 1;
        return CGA_OK;
    }
    if (app == APP_ID && ver > CGA_BUFFER_SCHEMA_VERSION)
        return fail_text(b, CGA_BUFFER_ECORRUPT,
                         "schema %" PRId64 " written by a newer cgalpha (this one knows %d)", ver,
                         CGA_BUFFER_SCHEMA_VERSION);
    if (app == 0 && ver == 0 && tables == 0) return CGA_OK; /* empty */
    return fail_text(b, CGA_BUFFER_ECORRUPT,
                     "not a cgalpha task buffer (a SQLite database of another application); "
                     "move it aside or choose another path");
}

static int set_wal(cga_buffer_t *b) {
    sqlite3_stmt *st = NULL;
    int s = sqlite3_prepare_v2(b->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
    if (s == SQLITE_OK) s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        const char *mode = (const char *)sqlite3_column_text(st, 0);
        int rc = CGA_OK;
        if (!mode || strcmp(mode, "wal") != 0)
            rc = fail_text(b, CGA_BUFFER_EOTHER, "cannot use WAL (journal mode stays %s)",
                           mode ? mode : "?");
        sqlite3_finalize(st);
        return rc;
    }
    int rc = fail_db(b, s, "opening");
    sqlite3_finalize(st);
    return rc;
}

/* Checks the file, sets the pragmas, and creates the schema in an empty file. Nothing is
 * written to a file that is not ours. */
static int setup(cga_buffer_t *b) {
    int ours = 0, rc;
    if ((rc = classify(b, &ours))) return rc;
    if (b->o.readonly) {
        if (ours) return CGA_OK;
        b->errkind = CGA_BUFFER_ECANTOPEN;
        snprintf(b->err, sizeof b->err, "task buffer %s: empty file, no buffer", b->path);
        return CGA_ENOTFOUND;
    }
    /* auto_vacuum only takes effect before the file's first page is written (WAL writes it). */
    if (!ours && (rc = exec(b, "PRAGMA auto_vacuum = INCREMENTAL", "opening"))) return rc;
    if (!b->memory && (rc = set_wal(b))) return rc;
    char sql[160];
    snprintf(sql, sizeof sql, "PRAGMA synchronous = %s; PRAGMA journal_size_limit = %d",
             b->o.sync == CGA_BUFFER_SYNC_FULL ? "FULL" : "NORMAL", WAL_LIMIT);
    if ((rc = exec(b, sql, "opening"))) return rc;
    if (ours) return CGA_OK;
    /* Under the write lock, look again: another process may have created it meanwhile. */
    if ((rc = begin(b, "creating the schema"))) return rc;
    if (!(rc = classify(b, &ours)) && !ours) {
        snprintf(sql, sizeof sql, "PRAGMA application_id = %d; PRAGMA user_version = %d", APP_ID,
                 CGA_BUFFER_SCHEMA_VERSION);
        if (!(rc = exec(b, SCHEMA, "creating the schema")))
            rc = exec(b, sql, "creating the schema");
    }
    return end(b, rc, "creating the schema");
}

static void make_identity(cga_buffer_t *b) {
    unsigned char rnd[16];
    if (uv_random(NULL, NULL, rnd, sizeof rnd, 0, NULL) != 0) {
        uint64_t x = cga_clock_wall_us() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)b;
        for (size_t i = 0; i < sizeof rnd; i++) rnd[i] = (unsigned char)(x >> (8 * (i % 8)) ^ i);
    }
    for (size_t i = 0; i < sizeof rnd; i++) snprintf(b->token + 2 * i, 3, "%02x", rnd[i]);
    char host[65];
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "?");
    host[sizeof host - 1] = '\0';
    snprintf(b->holder, sizeof b->holder, "pid %ld on host %s", (long)getpid(), host);
}

static void copy_err(const cga_buffer_t *b, char *errbuf, size_t errlen) {
    if (errbuf && errlen) snprintf(errbuf, errlen, "%s", b->err);
}

int cga_buffer_open(cga_buffer_t **out, const char *path, const cga_buffer_opts_t *opts,
                    char *errbuf, size_t errlen) {
    cga_buffer_opts_t o;
    if (opts)
        o = *opts;
    else
        cga_buffer_opts_init(&o);
    *out = NULL;
    if (errbuf && errlen) errbuf[0] = '\0';
    if (!path) path = CGA_BUFFER_DEFAULT_PATH;
    if (!*path || (o.sync != CGA_BUFFER_SYNC_FULL && o.sync != CGA_BUFFER_SYNC_NORMAL)) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "task buffer: %s", !*path ? "empty path" : "bad sync level");
        return CGA_EINVAL;
    }

    cga_buffer_t *b = cga_calloc(1, sizeof *b);
    b->path = cga_strdup(path);
    b->o = o;
    b->memory = strcmp(path, ":memory:") == 0;
    make_identity(b);
    int rc = CGA_OK, s;

    if (o.readonly && !b->memory) {
        struct stat sb;
        if (stat(path, &sb) != 0) {
            int e = errno;
            if (e == ENOENT) {
                b->errkind = CGA_BUFFER_ECANTOPEN;
                snprintf(b->err, sizeof b->err, "task buffer %s: no such file", path);
                rc = CGA_ENOTFOUND;
            } else {
                rc = fail_text(b, CGA_BUFFER_ECANTOPEN, "cannot open: %s", strerror(e));
            }
            goto fail;
        }
    } else if (!b->memory && (rc = make_folders(b, path))) {
        goto fail;
    }

    int flags = (o.readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
                SQLITE_OPEN_NOMUTEX;
    s = sqlite3_open_v2(path, &b->db, flags, NULL);
    if (s != SQLITE_OK) {
        rc = fail_db(b, s, "opening");
        goto fail;
    }
    sqlite3_extended_result_codes(b->db, 1);
    sqlite3_busy_timeout(b->db, (int)o.busy_timeout_ms);
    if (!o.readonly && sqlite3_db_readonly(b->db, "main") == 1) {
        rc = fail_text(b, CGA_BUFFER_EREADONLY, "read-only: the file is not writable");
        goto fail;
    }

    /* Changing a new file's journal mode needs the exclusive lock, and SQLite answers BUSY at
     * once (no busy handler: it would deadlock) when another process is creating the same file
     * at the same moment. Every step of setup() can be redone, so try again for the busy timeout. */
    for (uint64_t t0 = cga_clock_mono_ms();;) {
        if (!(rc = setup(b)) || b->errkind != CGA_BUFFER_EBUSY ||
            cga_clock_mono_ms() - t0 >= b->o.busy_timeout_ms)
            break;
        uv_sleep(5 + (unsigned)(cga_clock_mono_us() % 16));
    }
    if (rc) goto fail;

    if (o.max_bytes) {
        int64_t page = 0, cur = 0;
        if ((rc = query_int(b, "PRAGMA page_size", &page, "opening"))) goto fail;
        uint64_t pages = o.max_bytes / (uint64_t)(page > 0 ? page : 4096);
        if (pages < MIN_PAGES) pages = MIN_PAGES;
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA max_page_count = %" PRIu64, pages);
        if ((rc = query_int(b, sql, &cur, "opening"))) goto fail;
    }
    for (int i = 0; i < ST__N; i++) {
        s = sqlite3_prepare_v3(b->db, SQL[i], -1, SQLITE_PREPARE_PERSISTENT, &b->st[i], NULL);
        if (s != SQLITE_OK) {
            rc = fail_db(b, s, "opening");
            goto fail;
        }
    }
    /* Take the write lock once: a file that cannot be written (or stays locked) fails now. */
    if (!o.readonly && (rc = end(b, begin(b, "opening"), "opening"))) goto fail;

    b->errkind = CGA_BUFFER_ENONE;
    b->err[0] = '\0';
    *out = b;
    return CGA_OK;
fail:
    copy_err(b, errbuf, errlen);
    cga_buffer_free(b);
    return rc;
}

void cga_buffer_free(cga_buffer_t *b) {
    if (!b) return;
    if (b->leased) cga_buffer_drain_unlock(b);
    for (int i = 0; i < ST__N; i++) sqlite3_finalize(b->st[i]);
    if (b->db) sqlite3_close(b->db);
    cga_proto_reader_free(b->reader);
    free(b->path);
    free(b);
}

/* ---- append ------------------------------------------------------------------------------ */

/* The id of one message: a task's "id", or a report's "task"; empty when neither decodes. */
static cga_str_t message_id(cga_proto_reader_t *r, cga_str_t msg) {
    const cga_task_t *t;
    const cga_report_t *rep;
    size_t n;
    if (cga_proto_decode_tasks(r, msg.ptr, msg.len, &t, &n) == CGA_OK && n == 1) return t->id;
    if (cga_proto_decode_reports(r, msg.ptr, msg.len, &rep, &n) == CGA_OK && n == 1)
        return rep->task_id;
    return (cga_str_t){"", 0};
}

static int insert_one(cga_buffer_t *b, const cga_buffer_entry_t *e, uint64_t now_ms) {
    cga_str_t first = cga_str(e->first_id), last = cga_str(e->last_id);
    uint64_t count = e->count;
    if (!e->first_id || !e->last_id || !count) {
        const cga_str_t *msgs;
        size_t n = 0;
        if (!b->reader) cga_proto_reader_create(&b->reader, NULL);
        if (cga_proto_split(b->reader, e->data, e->len, &msgs, &n) == CGA_OK && n > 0) {
            cga_str_t m0 = msgs[0], mn = msgs[n - 1];
            if (!e->first_id) first = message_id(b->reader, m0);
            if (!e->last_id) last = n == 1 ? first : message_id(b->reader, mn);
        } else {
            n = 1;
            if (!e->first_id) first = (cga_str_t){"", 0};
            if (!e->last_id) last = (cga_str_t){"", 0};
        }
        if (!count) count = n;
    }
    sqlite3_stmt *st = stmt(b, ST_INSERT);
    sqlite3_bind_text(st, 1, e->queue, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, first.ptr ? first.ptr : "", (int)first.len, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, last.ptr ? last.ptr : "", (int)last.len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)count);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)e->len);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)now_ms);
    sqlite3_bind_blob64(st, 7, e->data, e->len, SQLITE_STATIC);
    int s = sqlite3_step(st);
    int rc = s == SQLITE_DONE ? CGA_OK : fail_db(b, s, "appending");
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

static int valid_entry(const cga_buffer_entry_t *e) {
    if (!e->queue || !*e->queue || strlen(e->queue) > QUEUE_MAX) return 0;
    if (!e->data || e->len == 0 || e->len > (size_t)INT32_MAX) return 0;
    if ((e->first_id && strlen(e->first_id) > INT32_MAX / 2) ||
        (e->last_id && strlen(e->last_id) > INT32_MAX / 2))
        return 0;
    return 1;
}

int cga_buffer_append_many(cga_buffer_t *b, const cga_buffer_entry_t *e, size_t n) {
    if (!b || (n && !e)) return CGA_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!valid_entry(&e[i])) {
            b->errkind = CGA_BUFFER_EOTHER;
            snprintf(b->err, sizeof b->err, "task buffer %s: appending: invalid entry %zu "
                     "(queue 1..%d bytes, data not empty)", b->path, i, QUEUE_MAX);
            return CGA_EINVAL;
        }
    if (n == 0) return CGA_OK;
    int rc = begin(b, "appending");
    if (rc) return rc;
    uint64_t now = cga_clock_wall_ms();
    for (size_t i = 0; i < n && rc == CGA_OK; i++) rc = insert_one(b, &e[i], now);
    return end(b, rc, "appending");
}

int cga_buffer_append(cga_buffer_t *b, const char *queue, const char *data, size_t len,
                      uint64_t count, const char *first_id, const char *last_id) {
    cga_buffer_entry_t e = {.queue = queue, .data = data, .len = len, .count = count,
                            .first_id = first_id, .last_id = last_id};
    return cga_buffer_append_many(b, &e, 1);
}

/* ---- peek / delete / count --------------------------------------------------------------- */

void cga_buffer_batch_free(cga_buffer_batch_t *batch) {
    if (!batch) return;
    for (size_t i = 0; i < batch->n; i++) free((void *)batch->entries[i].queue); /* one block */
    free(batch->entries);
    free(batch);
}

/* Copies the current row of a peek statement into e: one block holding the queue name, the
 * ids and the data. */
static void copy_row(sqlite3_stmt *st, cga_buffer_entry_t *e) {
    const char *q = (const char *)sqlite3_column_text(st, 1);
    size_t ql = (size_t)sqlite3_column_bytes(st, 1);
    const char *f = (const char *)sqlite3_column_text(st, 2);
    size_t fl = (size_t)sqlite3_column_bytes(st, 2);
    const char *l = (const char *)sqlite3_column_text(st, 3);
    size_t ll = (size_t)sqlite3_column_bytes(st, 3);
    const void *d = sqlite3_column_blob(st, 6);
    size_t dl = (size_t)sqlite3_column_bytes(st, 6);
    char *blk = cga_malloc(ql + fl + ll + 3 + dl);
    char *p = blk;
    e->seq = sqlite3_column_int64(st, 0);
    e->queue = p;
    if (ql) memcpy(p, q, ql);
    p[ql] = '\0';
    p += ql + 1;
    e->first_id = p;
    if (fl) memcpy(p, f, fl);
    p[fl] = '\0';
    p += fl + 1;
    e->last_id = p;
    if (ll) memcpy(p, l, ll);
    p[ll] = '\0';
    p += ll + 1;
    e->data = p;
    e->len = dl;
    if (dl) memcpy(p, d, dl);
    e->count = (uint64_t)sqlite3_column_int64(st, 4);
    e->created_ms = (uint64_t)sqlite3_column_int64(st, 5);
}

int cga_buffer_peek(cga_buffer_t *b, const char *queue, int64_t after_seq, size_t max,
                    size_t max_bytes, cga_buffer_batch_t **out) {
    if (!out) return CGA_EINVAL;
    *out = NULL;
    if (!b || max == 0) return CGA_EINVAL;
    if (max > INT32_MAX) max = INT32_MAX;
    sqlite3_stmt *st = stmt(b, queue ? ST_PEEK_QUEUE : ST_PEEK_ALL);
    sqlite3_bind_int64(st, 1, after_seq);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
    if (queue) sqlite3_bind_text(st, 3, queue, -1, SQLITE_STATIC);
    cga_buffer_batch_t *batch = cga_calloc(1, sizeof *batch);
    size_t cap = 0;
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        size_t dl = (size_t)sqlite3_column_bytes(st, 6);
        if (batch->n > 0 && max_bytes && batch->bytes + dl > max_bytes) {
            s = SQLITE_DONE;
            break;
        }
        cga_grow((void **)&batch->entries, &cap, batch->n + 1, sizeof *batch->entries);
        cga_buffer_entry_t *e = &batch->entries[batch->n++];
        copy_row(st, e);
        batch->bytes += e->len;
        batch->tasks += e->count;
    }
    int rc = s == SQLITE_DONE ? CGA_OK : fail_db(b, s, "reading");
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc) {
        cga_buffer_batch_free(batch);
        return rc;
    }
    *out = batch;
    return CGA_OK;
}

/* Gives free pages back to the file system once there are enough of them (best effort: the
 * rows are gone either way; a failure here only leaves the file larger). */
static void maybe_vacuum(cga_buffer_t *b) {
    int64_t free_pages = 0;
    if (query_int(b, "PRAGMA freelist_count", &free_pages, NULL) == CGA_OK &&
        free_pages >= VACUUM_PAGES)
        sqlite3_exec(b->db, "PRAGMA incremental_vacuum", NULL, NULL, NULL);
    b->errkind = CGA_BUFFER_ENONE;
    b->err[0] = '\0';
}

static int delete_rows(cga_buffer_t *b, int which, const int64_t *seqs, size_t n,
                       uint64_t *deleted) {
    uint64_t total = 0;
    int rc = begin(b, "deleting");
    if (rc) return rc;
    for (size_t i = 0; i < n && rc == CGA_OK; i++) {
        sqlite3_stmt *st = stmt(b, which);
        sqlite3_bind_int64(st, 1, seqs[i]);
        int s = sqlite3_step(st);
        if (s == SQLITE_DONE)
            total += (uint64_t)sqlite3_changes(b->db);
        else
            rc = fail_db(b, s, "deleting");
        sqlite3_reset(st);
    }
    if ((rc = end(b, rc, "deleting"))) return rc;
    if (deleted) *deleted = total;
    if (total) maybe_vacuum(b);
    return CGA_OK;
}

int cga_buffer_delete(cga_buffer_t *b, const int64_t *seqs, size_t n, uint64_t *deleted) {
    if (deleted) *deleted = 0;
    if (!b || (n && !seqs)) return CGA_EINVAL;
    if (n == 0) return CGA_OK;
    return delete_rows(b, ST_DELETE, seqs, n, deleted);
}

int cga_buffer_delete_upto(cga_buffer_t *b, int64_t seq, uint64_t *deleted) {
    if (deleted) *deleted = 0;
    if (!b) return CGA_EINVAL;
    return delete_rows(b, ST_DELETE_UPTO, &seq, 1, deleted);
}

int cga_buffer_count(cga_buffer_t *b, uint64_t *entries, uint64_t *tasks) {
    if (!b) return CGA_EINVAL;
    sqlite3_stmt *st = stmt(b, ST_COUNT);
    int s = sqlite3_step(st);
    int rc = CGA_OK;
    if (s == SQLITE_ROW) {
        if (entries) *entries = (uint64_t)sqlite3_column_int64(st, 0);
        if (tasks) *tasks = (uint64_t)sqlite3_column_int64(st, 1);
    } else {
        rc = s == SQLITE_DONE ? fail_text(b, CGA_BUFFER_ECORRUPT, "counting: no totals row")
                              : fail_db(b, s, "counting");
    }
    sqlite3_reset(st);
    return rc;
}

/* ---- drain lease ------------------------------------------------------------------------- */

int cga_buffer_drain_lock(cga_buffer_t *b, unsigned lease_ms) {
    if (!b || (lease_ms && lease_ms < 100)) return CGA_EINVAL;
    if (!lease_ms) lease_ms = DEFAULT_LEASE_MS;
    int rc = begin(b, "taking the drain lease");
    if (rc) return rc;
    uint64_t now = cga_clock_wall_ms();
    sqlite3_stmt *st = stmt(b, ST_LEASE_GET);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        const char *tok = (const char *)sqlite3_column_text(st, 0);
        int64_t until = sqlite3_column_int64(st, 2);
        if ((!tok || strcmp(tok, b->token) != 0) && until > (int64_t)now) {
            const char *who = (const char *)sqlite3_column_text(st, 1);
            b->errkind = CGA_BUFFER_EBUSY;
            snprintf(b->err, sizeof b->err,
                     "task buffer %s: being drained by %s (lease: %.1f s left)", b->path,
                     who ? who : "?", (double)(until - (int64_t)now) / 1000.0);
            rc = CGA_ELOCKED;
        }
        s = SQLITE_DONE;
    }
    if (s != SQLITE_DONE) rc = fail_db(b, s, "taking the drain lease");
    sqlite3_reset(st);
    if (rc == CGA_OK) {
        st = stmt(b, ST_LEASE_PUT);
        sqlite3_bind_text(st, 1, b->token, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, b->holder, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)(now + lease_ms));
        s = sqlite3_step(st);
        if (s != SQLITE_DONE) rc = fail_db(b, s, "taking the drain lease");
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
    rc = end(b, rc, "taking the drain lease");
    if (rc == CGA_OK) b->leased = 1;
    return rc;
}

int cga_buffer_drain_unlock(cga_buffer_t *b) {
    if (!b) return CGA_EINVAL;
    sqlite3_stmt *st = stmt(b, ST_LEASE_DEL);
    sqlite3_bind_text(st, 1, b->token, -1, SQLITE_STATIC);
    int s = sqlite3_step(st); /* one statement: its own transaction */
    int rc = s == SQLITE_DONE ? CGA_OK : fail_db(b, s, "giving up the drain lease");
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc == CGA_OK) b->leased = 0;
    return rc;
}

/* ---- stats ------------------------------------------------------------------------------- */

void cga_buffer_stats_free(cga_buffer_stats_t *s) {
    if (!s) return;
    for (size_t i = 0; i < s->nqueues; i++) {
        free(s->queues[i].queue);
        free(s->queues[i].first_id);
        free(s->queues[i].last_id);
    }
    free(s->queues);
    free(s);
}

static char *col_strdup(sqlite3_stmt *st, int col) {
    const char *t = (const char *)sqlite3_column_text(st, col);
    return cga_strndup(t ? t : "", t ? (size_t)sqlite3_column_bytes(st, col) : 0);
}

static int stats_queues(cga_buffer_t *b, cga_buffer_stats_t *s) {
    static const char sql[] =
        "SELECT e.queue, g.n, g.tasks, g.bytes, g.lo, g.hi,"
        "       e.first_id, e.created_ms, h.last_id, h.created_ms"
        "  FROM (SELECT queue, count(*) AS n, total(count) AS tasks,"
        "               total(len) AS bytes, min(seq) AS lo, max(seq) AS hi"
        "          FROM entries GROUP BY queue) AS g"
        "  JOIN entries AS e ON e.seq = g.lo JOIN entries AS h ON h.seq = g.hi"
        " ORDER BY e.queue";
    sqlite3_stmt *st = NULL;
    int rc = CGA_OK;
    size_t cap = 0;
    int r = sqlite3_prepare_v2(b->db, sql, -1, &st, NULL);
    if (r == SQLITE_OK) {
        while ((r = sqlite3_step(st)) == SQLITE_ROW) {
            cga_grow((void **)&s->queues, &cap, s->nqueues + 1, sizeof *s->queues);
            cga_buffer_queue_stats_t *q = &s->queues[s->nqueues++];
            q->queue = col_strdup(st, 0);
            q->entries = (uint64_t)sqlite3_column_int64(st, 1);
            q->tasks = (uint64_t)sqlite3_column_double(st, 2);
            q->bytes = (uint64_t)sqlite3_column_double(st, 3);
            q->first_seq = sqlite3_column_int64(st, 4);
            q->last_seq = sqlite3_column_int64(st, 5);
            q->first_id = col_strdup(st, 6);
            q->first_ms = (uint64_t)sqlite3_column_int64(st, 7);
            q->last_id = col_strdup(st, 8);
            q->last_ms = (uint64_t)sqlite3_column_int64(st, 9);
            s->entries += q->entries;
            s->tasks += q->tasks;
            s->bytes += q->bytes;
        }
    }
    if (r != SQLITE_DONE) rc = fail_db(b, r, "reading statistics");
    sqlite3_finalize(st);
    return rc;
}

int cga_buffer_stats(cga_buffer_t *b, cga_buffer_stats_t **out) {
    if (!out) return CGA_EINVAL;
    *out = NULL;
    if (!b) return CGA_EINVAL;
    cga_buffer_stats_t *s = cga_calloc(1, sizeof *s);
    int64_t page = 0, pages = 0, free_pages = 0;
    int rc = exec(b, "BEGIN", "reading statistics"); /* one snapshot for all the queries */
    if (rc == CGA_OK) {
        if (!(rc = stats_queues(b, s)) &&
            !(rc = query_int(b, "PRAGMA page_size", &page, "reading statistics")) &&
            !(rc = query_int(b, "PRAGMA page_count", &pages, "reading statistics")))
            rc = query_int(b, "PRAGMA freelist_count", &free_pages, "reading statistics");
        sqlite3_exec(b->db, "COMMIT", NULL, NULL, NULL); /* read only: nothing to keep */
    }
    if (rc) {
        cga_buffer_stats_free(s);
        return rc;
    }
    s->file_bytes = (uint64_t)(page * pages);
    s->free_bytes = (uint64_t)(page * free_pages);
    *out = s;
    return CGA_OK;
}

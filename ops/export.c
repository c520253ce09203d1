/* `export FILE [--force]` and `import FILE [--replace]`: back up a namespace and restore it,
 * into the same namespace or another one, on the same Redis or another one.
 *
 * export finds the namespace's keys with SCAN MATCH <ns>:* (never KEYS), skips the locks
 * (<ns>:lock:*: a restored lock would hold off the new processes) and saves each key with DUMP
 * and PTTL, so a stream keeps its consumer groups, pending entries and delivery counts. A key
 * that disappears between SCAN and DUMP is skipped and counted. The file is written beside FILE
 * (FILE.tmp-<pid>), flushed to disk and renamed over FILE when complete.
 *
 * The file (format version 1), every number big-endian as msgpack has it:
 *   "CGALPHA-EXPORT 1\n"
 *   header   msgpack array(3) [namespace (str), redis_version (str), created_ms (int)]
 *   records  msgpack array(3) [key name without "<ns>:" (bin), pttl ms (int, -1: no TTL),
 *                               DUMP payload (bin)]            one per key, no name twice
 *   trailer  msgpack array(4) [nil, records (uint), bytes before the trailer (uint),
 *                               CRC-32 of those bytes (uint; IEEE, as zlib's crc32)]
 * and nothing after the trailer.
 *
 * import reads the whole file and checks it (magic, every record decoded with bounds checks,
 * no repeated name, the trailer's count, length and CRC) before it touches Redis: a bad file
 * is refused with one line and exit 5. Then, unless --replace, it checks with EXISTS that no
 * key to restore exists (else one line, exit 1, nothing changed), and runs RESTORE
 * <ns>:<name> <pttl or 0> <payload> [REPLACE] for every record (pipelined, a window at a time).
 * When a RESTORE fails without --replace, the keys restored before it are deleted again, so a
 * failed import changes nothing. */
#define CGA_LOG_COMPONENT "export"
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <limits.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cgalpha/alloc.h"
#include "cgalpha/app.h"
#include "cgalpha/config.h"
#include "cgalpha/err.h"
#include "cgalpha/keys.h"
#include "cgalpha/redis.h"
#include "ops.h"

#define MAGIC "CGALPHA-EXPORT "
#define FORMAT_VERSION 1
#define PAGE "1000"
#define WINDOW 256                  /* import: commands in flight at most */
#define WINDOW_BYTES (64u << 20)    /* import: RESTORE payload bytes in flight at most */
#define NAME_SHOWN 120              /* key names in messages are cut to this */

/* ---- helpers shared by both commands --------------------------------------------------- */

static uint32_t crc_table[256];

static uint32_t crc32_update(uint32_t crc, const void *data, size_t n) {
    if (!crc_table[1]) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            crc_table[i] = c;
        }
    }
    const unsigned char *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* A set of byte strings (key names), open addressing; copies what it keeps. */
typedef struct name_s {
    char *p;
    size_t n;
    uint64_t h;
} name_t;

typedef struct nameset_s {
    name_t *slots;
    size_t cap, count;
} nameset_t;

static uint64_t hash_bytes(const char *p, size_t n) {
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211u;
    return h;
}

static void nameset_put(name_t *slots, size_t cap, name_t e) {
    size_t i = (size_t)e.h & (cap - 1);
    while (slots[i].p) i = (i + 1) & (cap - 1);
    slots[i] = e;
}

/* Returns 1 when added, 0 when it was there already. */
static int nameset_add(nameset_t *s, const char *p, size_t n) {
    if ((s->count + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        name_t *slots = cga_calloc(cap, sizeof *slots);
        for (size_t i = 0; i < s->cap; i++)
            if (s->slots[i].p) nameset_put(slots, cap, s->slots[i]);
        free(s->slots);
        s->slots = slots;
        s->cap = cap;
    }
    uint64_t h = hash_bytes(p, n);
    for (size_t i = (size_t)h & (s->cap - 1); s->slots[i].p; i = (i + 1) & (s->cap - 1)) {
        const name_t *e = &s->slots[i];
        if (e->h == h && e->n == n && memcmp(e->p, p, n) == 0) return 0;
    }
    name_t e = {cga_malloc(n + 1), n, h};
    memcpy(e.p, p, n);
    e.p[n] = '\0';
    nameset_put(s->slots, s->cap, e);
    s->count++;
    return 1;
}

static void nameset_free(nameset_t *s) {
    for (size_t i = 0; i < s->cap; i++) free(s->slots[i].p);
    free(s->slots);
    memset(s, 0, sizeof *s);
}

/* A key name fit for a message: non-printable bytes as '?', cut after NAME_SHOWN. */
static const char *shown(char *out, size_t outsz, const char *pre, const char *p, size_t n) {
    size_t o = (size_t)snprintf(out, outsz, "%s", pre);
    if (o >= outsz) o = outsz - 1;
    for (size_t i = 0; i < n && o + 4 < outsz; i++) {
        if (i == NAME_SHOWN) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        unsigned char c = (unsigned char)p[i];
        out[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    out[o] = '\0';
    return out;
}

/* Copies a Redis error reply's text (or "") into out. */
static void reply_text(char *out, size_t outsz, const redisReply *reply) {
    out[0] = '\0';
    if (reply && reply->type == REDIS_REPLY_ERROR && reply->str)
        snprintf(out, outsz, "%.*s", (int)reply->len, reply->str);
}

/* Exactly one positional FILE, else one line and CGA_EXIT_USAGE (returns -1 when fine). */
static int one_file(cga_app_t *a, const char *command, const char **file) {
    size_t n = 0;
    char *const *pos = cga_config_positionals(cga_app_config(a), &n);
    if (n != 1 || pos[0][0] == '\0') {
        ops_error(command, "%s (usage: " OPS_PROG " %s FILE%s)",
                  n == 0 || pos[0][0] == '\0' ? "missing FILE" : "takes exactly one FILE",
                  command, strcmp(command, "export") == 0 ? " [--force]" : " [--replace]");
        return CGA_EXIT_USAGE;
    }
    *file = pos[0];
    return -1;
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- export ------------------------------------------------------------------------------ */

typedef struct ex_s ex_t;

typedef struct ex_item_s {
    ex_t *ex;
    char *name; /* full key name (owned) */
    size_t len;
    char *dump; /* DUMP payload until PTTL answers (owned), or NULL */
    size_t dumplen;
    int has_dump;
} ex_item_t;

struct ex_s {
    cga_app_t *app;
    cga_redis_t *redis;
    const char *ns;
    const char *path;
    char prefix[CGA_KEY_MAX], lock_prefix[CGA_KEY_MAX], pattern[CGA_KEY_MAX];
    size_t prefixlen, lock_prefixlen;
    char cursor[32];
    char *tmp;     /* FILE.tmp-<pid> (owned), or NULL for stdout */
    FILE *f;
    msgpack_packer pk;
    uint32_t crc;
    uint64_t bytes; /* bytes written so far */
    int werr;       /* first write error (-errno) */
    int ioerr;      /* err is a file error: 1 writing, 2 renaming */
    uint64_t count, vanished;
    nameset_t seen;
    ex_item_t *page;
    size_t npage, outstanding;
    int complete;
    int err;                    /* first error */
    char errkey[NAME_SHOWN + 32]; /* the key it concerns, or "" */
    char errmsg[256];           /* Redis' message, or "" */
};

static int ex_write(void *data, const char *buf, size_t len) {
    ex_t *ex = data;
    if (ex->werr) return -1;
    errno = 0;
    if (len > 0 && fwrite(buf, 1, len, ex->f) != len) {
        ex->werr = errno ? -errno : -EIO;
        return -1;
    }
    ex->crc = crc32_update(ex->crc, buf, len);
    ex->bytes += len;
    return 0;
}

static void ex_fail(ex_t *ex, int status, const redisReply *reply, const ex_item_t *it) {
    if (ex->err) return;
    ex->err = status;
    ex->ioerr = status == ex->werr;
    reply_text(ex->errmsg, sizeof ex->errmsg, reply);
    if (it) shown(ex->errkey, sizeof ex->errkey, "", it->name, it->len);
}

static void ex_next(ex_t *ex);

static void ex_page_done(ex_t *ex) {
    for (size_t i = 0; i < ex->npage; i++) {
        free(ex->page[i].name);
        free(ex->page[i].dump);
    }
    free(ex->page);
    ex->page = NULL;
    ex->npage = 0;
    ex_next(ex);
}

static void ex_on_dump(int status, redisReply *reply, void *arg) {
    ex_item_t *it = arg;
    ex_t *ex = it->ex;
    ex->outstanding--;
    if (status != CGA_OK) {
        ex_fail(ex, status, reply, it);
    } else if (reply->type == REDIS_REPLY_STRING) {
        it->dump = cga_memdup(reply->str, reply->len);
        it->dumplen = reply->len;
        it->has_dump = 1;
    } else if (reply->type != REDIS_REPLY_NIL) { /* NIL: gone since SCAN */
        ex_fail(ex, CGA_EPROTO, NULL, it);
    }
    if (ex->outstanding == 0) ex_page_done(ex);
}

static void ex_write_record(ex_t *ex, const ex_item_t *it, int64_t pttl) {
    const char *rel = it->name + ex->prefixlen;
    size_t rellen = it->len - ex->prefixlen;
    msgpack_pack_array(&ex->pk, 3);
    msgpack_pack_bin(&ex->pk, rellen);
    msgpack_pack_bin_body(&ex->pk, rel, rellen);
    msgpack_pack_int64(&ex->pk, pttl);
    msgpack_pack_bin(&ex->pk, it->dumplen);
    msgpack_pack_bin_body(&ex->pk, it->dump, it->dumplen);
    if (ex->werr) ex_fail(ex, ex->werr, NULL, NULL);
    else ex->count++;
}

static void ex_on_pttl(int status, redisReply *reply, void *arg) {
    ex_item_t *it = arg;
    ex_t *ex = it->ex;
    ex->outstanding--;
    if (status != CGA_OK) {
        ex_fail(ex, status, reply, it);
    } else if (reply->type != REDIS_REPLY_INTEGER) {
        ex_fail(ex, CGA_EPROTO, NULL, it);
    } else if (!ex->err) {
        long long pttl = reply->integer;
        /* -2: gone since DUMP; 0: expiring now */
        if (it->has_dump && (pttl == -1 || pttl > 0)) ex_write_record(ex, it, pttl);
        else ex->vanished++;
    }
    free(it->dump);
    it->dump = NULL;
    if (ex->outstanding == 0) ex_page_done(ex);
}

static void ex_on_scan(int status, redisReply *reply, void *arg) {
    ex_t *ex = arg;
    if (status != CGA_OK || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_ARRAY) {
        ex_fail(ex, status != CGA_OK ? status : CGA_EPROTO, reply, NULL);
        ex_next(ex);
        return;
    }
    snprintf(ex->cursor, sizeof ex->cursor, "%s", reply->element[0]->str);
    if (strcmp(ex->cursor, "0") == 0) ex->complete = 1;
    const redisReply *keys = reply->element[1];
    ex->page = cga_calloc(keys->elements ? keys->elements : 1, sizeof *ex->page);
    for (size_t i = 0; i < keys->elements; i++) {
        const redisReply *k = keys->element[i];
        if (k->type != REDIS_REPLY_STRING || k->len < ex->prefixlen ||
            memcmp(k->str, ex->prefix, ex->prefixlen) != 0)
            continue;
        if (k->len >= ex->lock_prefixlen &&
            memcmp(k->str, ex->lock_prefix, ex->lock_prefixlen) == 0)
            continue;
        if (!nameset_add(&ex->seen, k->str, k->len)) continue; /* SCAN may repeat a key */
        ex_item_t *it = &ex->page[ex->npage++];
        it->ex = ex;
        it->name = cga_memdup(k->str, k->len);
        it->len = k->len;
    }
    if (ex->err) { /* interrupted while SCAN was in flight */
        ex_page_done(ex);
        return;
    }
    for (size_t i = 0; i < ex->npage; i++) {
        ex_item_t *it = &ex->page[i];
        const char *argv[2] = {"DUMP", it->name};
        size_t argl[2] = {4, it->len};
        int rc = cga_redis_commandv(ex->redis, CGA_REDIS_WAIT, 0, ex_on_dump, it, 2, argv, argl);
        if (rc == CGA_OK) {
            ex->outstanding++;
            argv[0] = "PTTL";
            rc = cga_redis_commandv(ex->redis, CGA_REDIS_WAIT, 0, ex_on_pttl, it, 2, argv, argl);
            if (rc == CGA_OK) ex->outstanding++;
        }
        if (rc != CGA_OK) {
            ex_fail(ex, rc, NULL, it);
            break;
        }
    }
    if (ex->outstanding == 0) ex_page_done(ex);
}

/* With nothing in flight: the next SCAN page, or stop. */
static void ex_next(ex_t *ex) {
    if (ex->err || ex->complete) {
        cga_app_stop(ex->app);
        return;
    }
    int rc = cga_redis_command(ex->redis, CGA_REDIS_WAIT, ex_on_scan, ex,
                               "SCAN %s MATCH %s COUNT %s", ex->cursor, ex->pattern, PAGE);
    if (rc != CGA_OK) {
        ex_fail(ex, rc, NULL, NULL);
        cga_app_stop(ex->app);
    }
}

static void ex_on_info(int status, redisReply *reply, void *arg) {
    ex_t *ex = arg;
    if (status != CGA_OK || reply->type != REDIS_REPLY_STRING) {
        ex_fail(ex, status != CGA_OK ? status : CGA_EPROTO, reply, NULL);
        cga_app_stop(ex->app);
        return;
    }
    char version[64] = "";
    const char *v = strstr(reply->str, "redis_version:");
    if (v) {
        v += strlen("redis_version:");
        size_t n = strcspn(v, "\r\n");
        snprintf(version, sizeof version, "%.*s", (int)(n < 63 ? n : 63), v);
    }
    char magic[32];
    snprintf(magic, sizeof magic, MAGIC "%d\n", FORMAT_VERSION);
    ex_write(ex, magic, strlen(magic));
    msgpack_pack_array(&ex->pk, 3);
    msgpack_pack_str(&ex->pk, strlen(ex->ns));
    msgpack_pack_str_body(&ex->pk, ex->ns, strlen(ex->ns));
    msgpack_pack_str(&ex->pk, strlen(version));
    msgpack_pack_str_body(&ex->pk, version, strlen(version));
    msgpack_pack_int64(&ex->pk, now_ms());
    if (ex->werr) ex_fail(ex, ex->werr, NULL, NULL);
    ex_next(ex);
}

static void ex_on_signal(int signum, void *arg) {
    (void)signum;
    ex_t *ex = arg;
    /* the callback of the command in flight sees it and stops once nothing is in flight */
    if (!ex->err) ex->err = CGA_ECANCELED;
}

/* Trailer, flush, fsync, rename. Returns CGA_OK or -errno (the temp file is then removed by
 * the caller). */
static int ex_finish_file(ex_t *ex) {
    uint64_t before = ex->bytes;
    uint32_t crc = ex->crc;
    msgpack_pack_array(&ex->pk, 4);
    msgpack_pack_nil(&ex->pk);
    msgpack_pack_uint64(&ex->pk, ex->count);
    msgpack_pack_uint64(&ex->pk, before);
    msgpack_pack_uint32(&ex->pk, crc);
    if (ex->werr) return ex->werr;
    if (fflush(ex->f) != 0) return -errno;
    if (!ex->tmp) return CGA_OK;
    if (fsync(fileno(ex->f)) != 0) return -errno;
    FILE *f = ex->f;
    ex->f = NULL;
    if (fclose(f) != 0) return -errno;
    if (rename(ex->tmp, ex->path) != 0) {
        ex->ioerr = 2;
        return -errno;
    }
    /* the rename itself is durable once the folder is synced */
    char *dir = cga_strdup(ex->path);
    char *slash = strrchr(dir, '/');
    if (slash) *(slash == dir ? slash + 1 : slash) = '\0';
    int fd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY);
    free(dir);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    return CGA_OK;
}

int ops_cmd_export(cga_app_t *a) {
    const char *path = NULL;
    int code = one_file(a, "export", &path);
    if (code >= 0) return code;
    int to_stdout = strcmp(path, "-") == 0;
    if (to_stdout && isatty(STDOUT_FILENO)) {
        ops_error("export", "will not write the binary export to a terminal (redirect stdout, "
                  "or give a FILE)");
        return CGA_EXIT_USAGE;
    }
    struct stat st;
    if (!to_stdout && !cga_config_bool(cga_app_config(a), "OPS_FORCE") && stat(path, &st) == 0) {
        ops_error("export", "%s exists; nothing written (--force overwrites it)", path);
        return CGA_EXIT_USAGE;
    }
    code = ops_connect(a, "export");
    if (code >= 0) return code;

    ex_t exs;
    ex_t *ex = &exs;
    memset(ex, 0, sizeof *ex);
    ex->app = a;
    ex->redis = cga_app_redis(a);
    ex->ns = cga_app_ns(a);
    ex->path = path;
    /* the namespace is [A-Za-z0-9_.-]+ (validated): no glob character to escape */
    ex->prefixlen = (size_t)snprintf(ex->prefix, sizeof ex->prefix, "%s:", ex->ns);
    ex->lock_prefixlen = (size_t)snprintf(ex->lock_prefix, sizeof ex->lock_prefix, "%s:%s:",
                                          ex->ns, CGA_KIND_LOCK);
    snprintf(ex->pattern, sizeof ex->pattern, "%s:*", ex->ns);
    snprintf(ex->cursor, sizeof ex->cursor, "0");
    if (to_stdout) {
        ex->f = stdout;
    } else {
        size_t n = strlen(path) + 32;
        ex->tmp = cga_malloc(n);
        snprintf(ex->tmp, n, "%s.tmp-%ld", path, (long)getpid());
        int fd = open(ex->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || !(ex->f = fdopen(fd, "wb"))) {
            int e = errno;
            if (fd >= 0) close(fd);
            ops_error("export", "cannot create %s: %s", ex->tmp, strerror(e));
            free(ex->tmp);
            return CGA_EXIT_FAILURE;
        }
    }
    msgpack_packer_init(&ex->pk, ex, ex_write);
    cga_app_on_signal(a, ex_on_signal, ex);
    int rc = cga_redis_command(ex->redis, CGA_REDIS_WAIT, ex_on_info, ex, "INFO server");
    if (rc == CGA_OK) cga_app_run(a);
    else ex->err = rc;
    cga_app_on_signal(a, NULL, NULL);

    if (!ex->err) {
        ex->err = ex_finish_file(ex);
        if (ex->err && !ex->ioerr) ex->ioerr = 1;
    }
    if (ex->f && !to_stdout) fclose(ex->f);
    else if (ex->f) fflush(stdout);
    if (ex->err && ex->tmp) unlink(ex->tmp);
    nameset_free(&ex->seen);

    if (ex->err) {
        char what[NAME_SHOWN + 64], left[PATH_MAX + 64];
        snprintf(what, sizeof what, "%s%.*s", ex->errkey[0] ? " at " : "",
                 (int)sizeof ex->errkey, ex->errkey);
        snprintf(left, sizeof left, "%s%s", to_stdout ? "the export on stdout is incomplete" : path,
                 to_stdout ? "" : " not written");
        if (ex->err == CGA_ECANCELED)
            ops_error("export", "interrupted after %" PRIu64 " keys; %s", ex->count, left);
        else if (ex->ioerr == 2)
            ops_error("export", "cannot rename %s to %s: %s; %s", ex->tmp, path,
                      cga_strerror(ex->err), left);
        else if (ex->ioerr)
            ops_error("export", "cannot write %s: %s; %s", to_stdout ? "stdout" : ex->tmp,
                      cga_strerror(ex->err), left);
        else
            ops_error("export", "failed after %" PRIu64 " keys%s: %s%s%s; %s", ex->count, what,
                      cga_strerror(ex->err), ex->errmsg[0] ? ": " : "", ex->errmsg, left);
        free(ex->tmp);
        code = ex->err == CGA_ECANCELED ? CGA_EXIT_FAILURE : cga_app_exit_code(ex->err);
        return code == CGA_EXIT_OK ? CGA_EXIT_FAILURE : code;
    }
    free(ex->tmp);
    FILE *out = to_stdout ? stderr : stdout;
    fprintf(out, "exported %" PRIu64 " keys (%" PRIu64 " bytes) of namespace %s to %s", ex->count,
            ex->bytes, ex->ns, to_stdout ? "stdout" : path);
    if (ex->vanished) fprintf(out, " (%" PRIu64 " keys vanished during the export)", ex->vanished);
    fputc('\n', out);
    return fflush(out) == 0 ? CGA_EXIT_OK : CGA_EXIT_FAILURE;
}

/* ---- import: reading and checking the file ----------------------------------------------- */

enum { RD_OK = 0, RD_TRUNC = 1, RD_BAD = 2 };

typedef struct rd_s {
    const unsigned char *p;
    size_t n, off;
} rd_t;

static uint64_t be(const unsigned char *p, int k) {
    uint64_t v = 0;
    for (int i = 0; i < k; i++) v = v << 8 | p[i];
    return v;
}

/* Reads k bytes of length/number after the type byte; RD_TRUNC when they are not there. */
static int rd_fixed(rd_t *r, int k, uint64_t *v) {
    if (r->n - r->off < (size_t)k) return RD_TRUNC;
    *v = be(r->p + r->off, k);
    r->off += (size_t)k;
    return RD_OK;
}

static int rd_array(rd_t *r, uint64_t *count) {
    if (r->off >= r->n) return RD_TRUNC;
    unsigned char t = r->p[r->off];
    if (t >= 0x90 && t <= 0x9f) {
        r->off++;
        *count = t & 0x0f;
        return RD_OK;
    }
    if (t != 0xdc && t != 0xdd) return RD_BAD;
    r->off++;
    return rd_fixed(r, t == 0xdc ? 2 : 4, count);
}

/* str or bin: *p points into the buffer, checked to hold *n bytes. */
static int rd_bytes(rd_t *r, const char **p, size_t *n) {
    if (r->off >= r->n) return RD_TRUNC;
    unsigned char t = r->p[r->off];
    uint64_t len;
    int rc = RD_OK;
    if (t >= 0xa0 && t <= 0xbf) {
        r->off++;
        len = t & 0x1f;
    } else if (t == 0xd9 || t == 0xc4) {
        r->off++;
        rc = rd_fixed(r, 1, &len);
    } else if (t == 0xda || t == 0xc5) {
        r->off++;
        rc = rd_fixed(r, 2, &len);
    } else if (t == 0xdb || t == 0xc6) {
        r->off++;
        rc = rd_fixed(r, 4, &len);
    } else {
        return RD_BAD;
    }
    if (rc != RD_OK) return rc;
    if (r->n - r->off < len) return RD_TRUNC;
    *p = (const char *)r->p + r->off;
    *n = (size_t)len;
    r->off += (size_t)len;
    return RD_OK;
}

static int rd_int(rd_t *r, int64_t *v) {
    if (r->off >= r->n) return RD_TRUNC;
    unsigned char t = r->p[r->off];
    uint64_t u;
    int rc;
    if (t <= 0x7f) {
        r->off++;
        *v = t;
        return RD_OK;
    }
    if (t >= 0xe0) {
        r->off++;
        *v = (int64_t)t - 256;
        return RD_OK;
    }
    int k;
    switch (t) {
    case 0xcc: case 0xd0: k = 1; break;
    case 0xcd: case 0xd1: k = 2; break;
    case 0xce: case 0xd2: k = 4; break;
    case 0xcf: case 0xd3: k = 8; break;
    default: return RD_BAD;
    }
    r->off++;
    if ((rc = rd_fixed(r, k, &u)) != RD_OK) return rc;
    if (t >= 0xd0) { /* signed: sign-extend k bytes */
        int sh = 64 - 8 * k;
        *v = sh ? (int64_t)(u << sh) >> sh : (int64_t)u;
    } else {
        if (u > (uint64_t)INT64_MAX) return RD_BAD;
        *v = (int64_t)u;
    }
    return RD_OK;
}

typedef struct im_s im_t;

enum { REC_NEW = 0, REC_RESTORED, REC_UNKNOWN, REC_FAILED, REC_SKIPPED };

typedef struct rec_s {
    im_t *im;
    const char *rel; /* points into im->buf */
    size_t rellen;
    int64_t pttl;
    const char *dump;
    size_t dumplen;
    int state;
} rec_t;

enum { PH_CHECK, PH_RESTORE, PH_ROLLBACK, PH_DONE };

struct im_s {
    cga_app_t *app;
    cga_redis_t *redis;
    const char *ns;
    const char *path;
    int replace;
    char *buf;
    size_t len;
    rec_t *recs;
    size_t n;
    char src_ns[96], src_version[96];
    /* engine */
    int phase, halt, err_phase;
    size_t next, inflight, inflight_bytes;
    char *key;
    size_t keycap;
    /* outcome */
    size_t existing, first_existing;
    size_t restored, unknown, expired, deleted;
    int err, rollback_err, interrupted;
    size_t err_rec;
    char errmsg[256];
};

/* Reads the whole file (or stdin for "-"). Returns CGA_OK or -errno. */
static int read_all(const char *path, char **out, size_t *outlen) {
    int fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct stat st;
    size_t cap = 1 << 16, len = 0;
    if (fstat(fd, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            if (fd != STDIN_FILENO) close(fd);
            return -EISDIR;
        }
        if (S_ISREG(st.st_mode) && st.st_size > 0) cap = (size_t)st.st_size + 1;
    }
    char *buf = cga_malloc(cap);
    int rc = CGA_OK;
    for (;;) {
        if (len == cap) cga_grow((void **)&buf, &cap, len + 1, 1);
        ssize_t k = read(fd, buf + len, cap - len);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            rc = -errno;
            break;
        }
        if (k == 0) break;
        len += (size_t)k;
    }
    if (fd != STDIN_FILENO) close(fd);
    if (rc != CGA_OK) {
        free(buf);
        return rc;
    }
    *out = buf;
    *outlen = len;
    return CGA_OK;
}

static const char *rd_problem(int rc) { return rc == RD_TRUNC ? "truncated" : "malformed"; }

/* Checks im->buf and fills im->recs. Returns 0, or -1 with the problem in msg. */
static int im_parse(im_t *im, char *msg, size_t msgsz) {
    const size_t mlen = strlen(MAGIC);
    if (im->len < mlen || memcmp(im->buf, MAGIC, mlen) != 0) {
        snprintf(msg, msgsz, "not a cgalpha export (it does not start with \"%s\")",
                 MAGIC "1");
        return -1;
    }
    size_t eol = mlen;
    while (eol < im->len && eol < mlen + 16 && im->buf[eol] != '\n') eol++;
    if (eol >= im->len || im->buf[eol] != '\n') {
        snprintf(msg, msgsz, "not a cgalpha export (bad first line)");
        return -1;
    }
    if (eol - mlen != 1 || im->buf[mlen] != '0' + FORMAT_VERSION) {
        char v[32];
        snprintf(msg, msgsz, "export format version %s is not supported (this " OPS_PROG
                 " reads version %d)", shown(v, sizeof v, "", im->buf + mlen, eol - mlen),
                 FORMAT_VERSION);
        return -1;
    }
    rd_t r = {(const unsigned char *)im->buf, im->len, eol + 1};
    uint64_t count;
    const char *s1, *s2;
    size_t n1, n2;
    int64_t created;
    int rc = rd_array(&r, &count);
    if (rc == RD_OK && count != 3) rc = RD_BAD;
    if (rc == RD_OK) rc = rd_bytes(&r, &s1, &n1);
    if (rc == RD_OK) rc = rd_bytes(&r, &s2, &n2);
    if (rc == RD_OK) rc = rd_int(&r, &created);
    if (rc != RD_OK) {
        snprintf(msg, msgsz, "the header is %s", rd_problem(rc));
        return -1;
    }
    shown(im->src_ns, sizeof im->src_ns, "", s1, n1);
    shown(im->src_version, sizeof im->src_version, "", s2, n2);

    nameset_t seen = {0};
    size_t cap = 0;
    int ret = -1;
    for (;;) {
        size_t at = r.off, recno = im->n + 1;
        if (r.off == r.n) {
            snprintf(msg, msgsz, "incomplete: the file ends after %zu records without the "
                     "trailer (truncated copy?)", im->n);
            goto out;
        }
        rc = rd_array(&r, &count);
        if (rc == RD_OK && count == 4 && r.off == r.n) {
            snprintf(msg, msgsz, "the trailer is truncated");
            goto out;
        }
        if (rc == RD_OK && count == 4 && r.p[r.off] == 0xc0) { /* trailer */
            uint32_t crc = crc32_update(0, im->buf, at);
            int64_t tcount, tbytes, tcrc;
            r.off++;
            rc = rd_int(&r, &tcount);
            if (rc == RD_OK) rc = rd_int(&r, &tbytes);
            if (rc == RD_OK) rc = rd_int(&r, &tcrc);
            if (rc != RD_OK) {
                snprintf(msg, msgsz, "the trailer is %s", rd_problem(rc));
                goto out;
            }
            if ((uint64_t)tcount != im->n || (uint64_t)tbytes != at) {
                snprintf(msg, msgsz, "the trailer announces %" PRId64 " records in %" PRId64
                         " bytes, the file has %zu in %zu", tcount, tbytes, im->n, at);
                goto out;
            }
            if ((uint64_t)tcrc != crc) {
                snprintf(msg, msgsz, "checksum mismatch (CRC-32 %08" PRIx64 " in the trailer, "
                         "%08" PRIx32 " computed): the file is corrupted", tcrc, crc);
                goto out;
            }
            if (r.off != r.n) {
                snprintf(msg, msgsz, "%zu unexpected bytes after the trailer", r.n - r.off);
                goto out;
            }
            ret = 0;
            goto out;
        }
        if (rc == RD_OK && count != 3) rc = RD_BAD;
        rec_t rec = {.im = im};
        if (rc == RD_OK) rc = rd_bytes(&r, &rec.rel, &rec.rellen);
        if (rc == RD_OK) rc = rd_int(&r, &rec.pttl);
        if (rc == RD_OK) rc = rd_bytes(&r, &rec.dump, &rec.dumplen);
        if (rc != RD_OK) {
            snprintf(msg, msgsz, "record %zu (at byte %zu) is %s", recno, at, rd_problem(rc));
            goto out;
        }
        if (!nameset_add(&seen, rec.rel, rec.rellen)) {
            char name[NAME_SHOWN + 8];
            snprintf(msg, msgsz, "record %zu repeats the key %s", recno,
                     shown(name, sizeof name, "", rec.rel, rec.rellen));
            goto out;
        }
        if (rec.pttl == 0 || rec.pttl < -1) rec.state = REC_SKIPPED; /* had expired */
        if (im->n == cap) cga_grow((void **)&im->recs, &cap, im->n + 1, sizeof *im->recs);
        im->recs[im->n++] = rec;
    }
out:
    nameset_free(&seen);
    return ret;
}

/* ---- import: talking to Redis ------------------------------------------------------------ */

static const char *im_key(im_t *im, const rec_t *rec, size_t *len) {
    size_t nslen = strlen(im->ns);
    *len = nslen + 1 + rec->rellen;
    if (*len + 1 > im->keycap) cga_grow((void **)&im->key, &im->keycap, *len + 1, 1);
    memcpy(im->key, im->ns, nslen);
    im->key[nslen] = ':';
    memcpy(im->key + nslen + 1, rec->rel, rec->rellen);
    im->key[*len] = '\0';
    return im->key;
}

static void im_fail(im_t *im, int status, const redisReply *reply, const rec_t *rec) {
    im->halt = 1;
    if (im->phase == PH_ROLLBACK) {
        if (!im->rollback_err) im->rollback_err = status;
        return;
    }
    if (im->err) return;
    im->err = status;
    im->err_phase = im->phase;
    im->err_rec = rec ? (size_t)(rec - im->recs) : SIZE_MAX;
    reply_text(im->errmsg, sizeof im->errmsg, reply);
}

static void im_pump(im_t *im);

static void im_start(im_t *im, int phase) {
    im->phase = phase;
    im->halt = 0;
    im->next = 0;
    im_pump(im);
}

static void im_phase_done(im_t *im) {
    int phase = im->phase;
    im->phase = PH_DONE;
    if (phase == PH_CHECK && !im->err && im->existing == 0) {
        im_start(im, PH_RESTORE);
        return;
    }
    if (phase == PH_RESTORE && im->err && !im->replace && im->restored + im->unknown > 0) {
        im_start(im, PH_ROLLBACK);
        return;
    }
    cga_app_stop(im->app);
}

static void im_on_reply(int status, redisReply *reply, void *arg) {
    rec_t *rec = arg;
    im_t *im = rec->im;
    im->inflight--;
    switch (im->phase) {
    case PH_CHECK:
        if (status != CGA_OK || reply->type != REDIS_REPLY_INTEGER) {
            im_fail(im, status != CGA_OK ? status : CGA_EPROTO, reply, rec);
        } else if (reply->integer > 0) {
            if (im->existing++ == 0) im->first_existing = (size_t)(rec - im->recs);
        }
        break;
    case PH_RESTORE:
        im->inflight_bytes -= rec->dumplen;
        if (status == CGA_OK) {
            rec->state = REC_RESTORED;
            im->restored++;
        } else {
            /* written, then the connection went: Redis may have run it */
            int maybe = status == CGA_ECONNLOST || status == CGA_ETIMEDOUT;
            rec->state = maybe ? REC_UNKNOWN : REC_FAILED;
            if (maybe) im->unknown++;
            im_fail(im, status, reply, rec);
        }
        break;
    case PH_ROLLBACK:
        if (status != CGA_OK || reply->type != REDIS_REPLY_INTEGER)
            im_fail(im, status != CGA_OK ? status : CGA_EPROTO, reply, rec);
        else
            im->deleted += (size_t)reply->integer;
        break;
    }
    im_pump(im);
}

static void im_pump(im_t *im) {
    while (!im->halt && im->next < im->n && im->inflight < WINDOW &&
           (im->inflight_bytes < WINDOW_BYTES || im->inflight == 0)) {
        rec_t *rec = &im->recs[im->next++];
        if (rec->state == REC_SKIPPED) continue;
        if (im->phase == PH_ROLLBACK && rec->state != REC_RESTORED && rec->state != REC_UNKNOWN)
            continue;
        size_t keylen;
        const char *key = im_key(im, rec, &keylen);
        char ttl[24];
        snprintf(ttl, sizeof ttl, "%" PRId64, rec->pttl > 0 ? rec->pttl : 0); /* 0: none */
        const char *cmd = im->phase == PH_CHECK      ? "EXISTS"
                          : im->phase == PH_ROLLBACK ? "DEL"
                                                     : "RESTORE";
        const char *argv[5] = {cmd, key, ttl, rec->dump, "REPLACE"};
        size_t argl[5] = {strlen(cmd), keylen, strlen(ttl), rec->dumplen, 7};
        int argc = im->phase != PH_RESTORE ? 2 : im->replace ? 5 : 4;
        int rc = cga_redis_commandv(im->redis, CGA_REDIS_WAIT, 0, im_on_reply, rec, argc, argv,
                                    argl);
        if (rc != CGA_OK) {
            im_fail(im, rc, NULL, rec);
            break;
        }
        im->inflight++;
        if (im->phase == PH_RESTORE) im->inflight_bytes += rec->dumplen;
    }
    if (im->inflight == 0 && (im->halt || im->next >= im->n)) im_phase_done(im);
}

static void im_on_signal(int signum, void *arg) {
    (void)signum;
    im_t *im = arg;
    im->interrupted = 1;
    /* a rollback under way goes on (a second signal exits at once) */
    if (im->phase == PH_CHECK || im->phase == PH_RESTORE) im_fail(im, CGA_ECANCELED, NULL, NULL);
}

/* The line about what a failed RESTORE phase left behind. */
static void im_left(const im_t *im, char *out, size_t outsz) {
    const char *before = im->interrupted ? "before the signal" : "before it";
    if (im->replace) {
        snprintf(out, outsz, "%zu of %zu keys were restored (replaced) %s", im->restored,
                 im->n - im->expired, before);
    } else if (im->restored + im->unknown == 0) {
        snprintf(out, outsz, "nothing changed");
    } else if (!im->rollback_err) {
        snprintf(out, outsz, "the %zu keys restored %s were deleted again: nothing changed",
                 im->restored + im->unknown, before);
    } else {
        snprintf(out, outsz, "%zu keys were restored %s and only %zu deleted again (%s)",
                 im->restored + im->unknown, before, im->deleted, cga_strerror(im->rollback_err));
    }
}

int ops_cmd_import(cga_app_t *a) {
    const char *path = NULL;
    int code = one_file(a, "import", &path);
    if (code >= 0) return code;
    const char *name = strcmp(path, "-") == 0 ? "stdin" : path;

    im_t ims;
    im_t *im = &ims;
    memset(im, 0, sizeof *im);
    im->app = a;
    im->redis = cga_app_redis(a);
    im->ns = cga_app_ns(a);
    im->path = path;
    im->replace = cga_config_bool(cga_app_config(a), "OPS_REPLACE");
    im->first_existing = SIZE_MAX;
    int rc = read_all(path, &im->buf, &im->len);
    if (rc != CGA_OK) {
        ops_error("import", "cannot read %s: %s", name, cga_strerror(rc));
        return CGA_EXIT_USAGE; /* like any missing or unreadable input file */
    }
    char msg[512];
    if (im_parse(im, msg, sizeof msg) != 0) {
        ops_error("import", "%s: %s; nothing imported", name, msg);
        code = CGA_EXIT_DATA;
        goto out;
    }
    for (size_t i = 0; i < im->n; i++) im->expired += im->recs[i].state == REC_SKIPPED;
    code = ops_connect(a, "import");
    if (code >= 0) goto out;

    cga_app_on_signal(a, im_on_signal, im);
    im_start(im, im->replace ? PH_RESTORE : PH_CHECK);
    if (im->phase != PH_DONE) cga_app_run(a);
    cga_app_on_signal(a, NULL, NULL);

    char key[NAME_SHOWN + CGA_NAMESPACE_MAX + 8] = "";
    char prefix[CGA_NAMESPACE_MAX + 2];
    snprintf(prefix, sizeof prefix, "%s:", im->ns);
    if (im->err < 0 && im->err_rec < im->n) {
        const rec_t *rec = &im->recs[im->err_rec];
        shown(key, sizeof key, prefix, rec->rel, rec->rellen);
    }
    char left[256];
    im_left(im, left, sizeof left);
    if (im->interrupted) {
        ops_error("import", "interrupted; %s", left);
        code = CGA_EXIT_FAILURE;
    } else if (im->err && im->err_phase == PH_CHECK) {
        ops_error("import", "cannot check whether %s exists: %s%s%s; nothing changed",
                  key[0] ? key : "the keys", cga_strerror(im->err), im->errmsg[0] ? ": " : "",
                  im->errmsg);
        code = cga_app_exit_code(im->err);
    } else if (im->err) {
        char hint[256] = "";
        if (strstr(im->errmsg, "payload version"))
            snprintf(hint, sizeof hint, " (the export was written by Redis %.64s: import needs "
                     "a Redis at least as new)", im->src_version[0] ? im->src_version : "?");
        if (key[0])
            ops_error("import", "cannot restore %s: %s%s; %s", key,
                      im->errmsg[0] ? im->errmsg : cga_strerror(im->err), hint, left);
        else
            ops_error("import", "failed: %s; %s", cga_strerror(im->err), left);
        code = cga_app_exit_code(im->err);
    } else if (im->existing > 0) {
        const rec_t *rec = &im->recs[im->first_existing];
        shown(key, sizeof key, prefix, rec->rel, rec->rellen);
        ops_error("import", "%zu of the %zu keys to restore exist already in namespace %s "
                  "(first: %s); nothing changed (--replace overwrites them)", im->existing,
                  im->n - im->expired, im->ns, key);
        code = CGA_EXIT_FAILURE;
    } else {
        printf("imported %zu keys into namespace %s", im->restored, im->ns);
        if (im->expired) printf(" (%zu keys that had expired skipped)", im->expired);
        putchar('\n');
        code = fflush(stdout) == 0 ? CGA_EXIT_OK : CGA_EXIT_FAILURE;
    }
    if (code == CGA_EXIT_OK && (im->err || im->existing || im->interrupted))
        code = CGA_EXIT_FAILURE;
out:
    free(im->key);
    free(im->recs);
    free(im->buf);
    return code;
}

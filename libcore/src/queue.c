/* Stream queue on Redis: batched producer, batch claim, reclaim with delivery counts,
 * atomic complete / split / dead-letter, trim by MINID, dead-letter tools. See queue.h.
 *
 * Memory on the hot paths:
 *   - producing: messages are encoded straight into a cga_proto_writer; a full batch is not
 *     copied: its writer moves into a send record and the record's spare writer becomes the
 *     current one. Records (and their writers) are pooled, so steady state allocates nothing.
 *   - claiming: one allocation per claim holds the batch, its entries and every entry's "m"
 *     bytes (copied once from the reply, which dies after the callback).
 *   - operations are pooled too; argv arrays are on the stack or in one scratch array reused
 *     by every variable-length command (cga_redis_commandv copies its arguments). */

#define CGA_LOG_COMPONENT "queue"

#include "cgalpha/queue.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cgalpha/alloc.h"
#include "cgalpha/clock.h"
#include "cgalpha/err.h"
#include "cgalpha/keys.h"
#include "cgalpha/log.h"
#include "cgalpha/redis.h"

#define REC_POOL_MAX 16      /* idle send records kept (each keeps its writer's memory) */
#define OP_POOL_MAX 64       /* idle operations kept */
#define REQUEUE_CHUNK 1000   /* dead letters moved per script call */
#define REASON_MAX 1024      /* a dead letter's reason is cut here */
#define ID_MAX 48            /* sizeof cga_queue_entry_t.id */

/* ---- Lua scripts ---------------------------------------------------------------------------
 * Registered once per handle, loaded by redis.c on every connect, run by EVALSHA. Each one is
 * a single command, hence atomic; each does its first write before anything else can fail
 * after it, so under OOM (the first write refused) nothing at all happens. */

/* Stream ids as decimal strings: Lua numbers are doubles and cannot hold 64-bit sequences. */
#define LUA_ID_HELPERS                                                                      \
    "local function parse(id) return string.match(id, '^(%d+)-(%d+)$') end\n"            \
    "local function numcmp(a, b)\n"                                                         \
    "  if #a ~= #b then return #a < #b and -1 or 1 end\n"                                   \
    "  if a == b then return 0 end\n"                                                       \
    "  return a < b and -1 or 1\n"                                                          \
    "end\n"                                                                                 \
    "local function idcmp(x, y)\n"                                                          \
    "  local xa, xb = parse(x)\n"                                                           \
    "  local ya, yb = parse(y)\n"                                                           \
    "  local c = numcmp(xa, ya)\n"                                                          \
    "  if c ~= 0 then return c end\n"                                                       \
    "  return numcmp(xb, yb)\n"                                                             \
    "end\n"                                                                                 \
    "local function incr(s)\n"                                                              \
    "  local i, tail = #s, ''\n"                                                            \
    "  while i > 0 do\n"                                                                    \
    "    local d = string.byte(s, i) - 48\n"                                                \
    "    if d < 9 then return string.sub(s, 1, i - 1) .. string.char(d + 49) .. tail end\n" \
    "    tail = '0' .. tail\n"                                                              \
    "    i = i - 1\n"                                                                       \
    "  end\n"                                                                               \
    "  return '1' .. tail\n"                                                                \
    "end\n"                                                                                 \
    "local function succ(id)\n"                                                             \
    "  local a, b = parse(id)\n"                                                            \
    "  if b == '18446744073709551615' then return incr(a) .. '-0' end\n"                  \
    "  return a .. '-' .. incr(b)\n"                                                        \
    "end\n"                                                                                 \
    "local function field(t, name)\n"                                                       \
    "  for j = 1, #t, 2 do if t[j] == name then return t[j + 1] end end\n"                  \
    "  return nil\n"                                                                        \
    "end\n"

/* KEYS[1] stream; ARGV group, consumer, min idle ms, count.
 * Returns {{id, deliveries, fields}, ...}. XCLAIM counts the delivery (+1 on XPENDING's
 * count). An entry deleted from the stream but still pending comes back from XCLAIM as nothing
 * (Redis 7 also drops it from the PEL) or as a nil entry (6.x): acknowledge it so that it never
 * loops. */
static const char LUA_RECLAIM[] =
    "local pend = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[3], '-', '+', ARGV[4])\n"
    "local out = {}\n"
    "for i = 1, #pend do\n"
    "  local id = pend[i][1]\n"
    "  local c = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], id)\n"
    "  local e = c[1]\n"
    "  if e and e[2] then\n"
    "    out[#out + 1] = {e[1], pend[i][4] + 1, e[2]}\n"
    "  else\n"
    "    redis.call('XACK', KEYS[1], ARGV[1], id)\n"
    "  end\n"
    "end\n"
    "return out\n";

/* Is ARGV[3] (an id) pending for consumer ARGV[2] in group ARGV[1]? (split, dead-letter) */
#define LUA_OWNED                                                                           \
    "local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)\n"            \
    "if #p == 0 or p[1][2] ~= ARGV[2] then return -1 end\n"

/* KEYS[1] stream; ARGV group, consumer, id, msg... Returns the number of entries added, or
 * -1 when the entry is not pending for this consumer. */
static const char LUA_SPLIT[] =
    LUA_OWNED
    "for i = 4, #ARGV do redis.call('XADD', KEYS[1], '*', 'm', ARGV[i]) end\n"
    "redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])\n"
    "return #ARGV - 3\n";

/* KEYS[1] stream, KEYS[2] dead; ARGV group, consumer, id, reason, deliveries, ts, maxlen[, m].
 * Returns 1, or -1 when the entry is not pending for this consumer. */
static const char LUA_DEAD[] =
    LUA_OWNED
    "if ARGV[8] then\n"
    "  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*', 'm', ARGV[8], 'reason', ARGV[4],\n"
    "             'src', ARGV[3], 'deliveries', ARGV[5], 'ts', ARGV[6])\n"
    "else\n"
    "  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*', 'reason', ARGV[4],\n"
    "             'src', ARGV[3], 'deliveries', ARGV[5], 'ts', ARGV[6])\n"
    "end\n"
    "redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])\n"
    "return 1\n";

/* KEYS[1] stream. For every group: its oldest pending id, or when nothing is pending the id
 * right after last-delivered-id (entries up to it are done, those after it are still to be
 * delivered). XTRIM MINID to the smallest; returns the number trimmed (0 without groups).
 * XINFO GROUPS is a read-only command, allowed in scripts (checked on Redis 7.0). */
static const char LUA_TRIM[] =
    LUA_ID_HELPERS
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
    "local groups = redis.call('XINFO', 'GROUPS', KEYS[1])\n"
    "local min = nil\n"
    "for i = 1, #groups do\n"
    "  local g = groups[i]\n"
    "  local need\n"
    "  if field(g, 'pending') > 0 then\n"
    "    need = redis.call('XPENDING', KEYS[1], field(g, 'name'))[2]\n"
    "  else\n"
    "    need = succ(field(g, 'last-delivered-id'))\n"
    "  end\n"
    "  if min == nil or idcmp(need, min) < 0 then min = need end\n"
    "end\n"
    "if min == nil then return 0 end\n"
    "return redis.call('XTRIM', KEYS[1], 'MINID', min)\n";

/* KEYS[1] stream, KEYS[2] dead; ARGV group ('' for none).
 * Returns {length, dead, groups, lag, pending, consumers}. When Redis cannot tell a group's lag
 * (nil after XDELs inside its range) it is counted with XRANGE after last-delivered-id. */
static const char LUA_INFO[] =
    LUA_ID_HELPERS
    "local len = redis.call('XLEN', KEYS[1])\n"
    "local dead = redis.call('XLEN', KEYS[2])\n"
    "local ngroups, lag, pending, consumers = 0, 0, 0, 0\n"
    "if redis.call('EXISTS', KEYS[1]) == 1 then\n"
    "  local groups = redis.call('XINFO', 'GROUPS', KEYS[1])\n"
    "  ngroups = #groups\n"
    "  for i = 1, #groups do\n"
    "    local g = groups[i]\n"
    "    if field(g, 'name') == ARGV[1] then\n"
    "      pending = field(g, 'pending')\n"
    "      consumers = field(g, 'consumers')\n"
    "      lag = field(g, 'lag')\n"
    "      if not lag then\n"
    "        lag = 0\n"
    "        local start = '(' .. field(g, 'last-delivered-id')\n"
    "        while true do\n"
    "          local r = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', 1000)\n"
    "          lag = lag + #r\n"
    "          if #r < 1000 then break end\n"
    "          start = '(' .. r[#r][1]\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return {len, dead, ngroups, lag, pending, consumers}\n";

/* KEYS[1] queue, KEYS[2] dead.
 *   ARGV 'ids', id...            moves those dead letters;
 *   ARGV 'all', start, count     moves up to count of them from start (inclusive, or '(id').
 * Returns {moved, scanned, last id scanned or ''}. A dead letter without m stays. */
static const char LUA_REQUEUE[] =
    "local moved = 0\n"
    "local function move(e)\n"
    "  local f = e[2]\n"
    "  for j = 1, #f, 2 do\n"
    "    if f[j] == 'm' then\n"
    "      redis.call('XADD', KEYS[1], '*', 'm', f[j + 1])\n"
    "      redis.call('XDEL', KEYS[2], e[1])\n"
    "      moved = moved + 1\n"
    "      return\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if ARGV[1] == 'all' then\n"
    "  local r = redis.call('XRANGE', KEYS[2], ARGV[2], '+', 'COUNT', ARGV[3])\n"
    "  for i = 1, #r do move(r[i]) end\n"
    "  local last = ''\n"
    "  if #r > 0 then last = r[#r][1] end\n"
    "  return {moved, #r, last}\n"
    "end\n"
    "for i = 2, #ARGV do\n"
    "  local r = redis.call('XRANGE', KEYS[2], ARGV[i], ARGV[i])\n"
    "  if #r > 0 then move(r[1]) end\n"
    "end\n"
    "return {moved, #ARGV - 1, ''}\n";

/* KEYS[1] dead. Returns how many there were. */
static const char LUA_PURGE[] =
    "local n = redis.call('XLEN', KEYS[1])\n"
    "redis.call('DEL', KEYS[1])\n"
    "return n\n";

/* ---- types --------------------------------------------------------------------------------- */

/* One entry on its way to Redis (or refused and waiting to be reported). */
typedef struct rec_s {
    cga_queue_t *q;
    cga_proto_writer_t *w; /* the batch it carries, or a spare writer; may be NULL */
    char *buf;             /* send_entry's copy */
    size_t cap;
    const char *data;      /* into w or buf */
    size_t len;
    size_t count;
    int status;            /* refused up front: reported by the defer timer */
    struct rec_s *next;
} rec_t;

enum op_kind {
    OP_GROUP,
    OP_CLAIM,
    OP_RECLAIM,
    OP_COMPLETE,
    OP_ACK,
    OP_SPLIT,
    OP_DEAD,
    OP_TRIM,
    OP_INFO,
    OP_DLIST,
    OP_REQUEUE,
    OP_PURGE,
};

typedef struct op_s {
    cga_queue_t *q;
    int kind;
    union {
        cga_queue_done_cb done;
        cga_queue_claim_cb claim;
        cga_queue_count_cb count;
        cga_queue_info_cb info;
        cga_queue_dead_cb dead;
    } cb;
    void *arg;
    int status;          /* the first error of a multi-command operation */
    int recovering;      /* claim/reclaim: XGROUP CREATE after NOGROUP */
    size_t left;         /* callbacks still to come (complete: 4; requeue ids: chunks) */
    uint64_t total;      /* requeue: moved so far */
    char cursor[ID_MAX + 2]; /* requeue all: "(<last id>" */
    struct op_s *next;   /* free list */
} op_t;

struct cga_queue_s {
    uv_loop_t *loop;
    cga_redis_t *redis;
    cga_queue_opts_t opts; /* strings point to the copies below */
    char *ns, *name, *group, *consumer;
    size_t grouplen, consumerlen;
    char key[CGA_KEY_MAX];
    size_t keylen;
    char dead[CGA_KEY_MAX];
    size_t deadlen;
    uint64_t linger_ms;    /* 0: the next loop turn */

    cga_proto_writer_t *w; /* the batch being filled */
    cga_proto_reader_t *reader;
    uv_timer_t linger;     /* flushes the partial batch */
    uv_timer_t defer;      /* reports entries refused up front */
    cga_queue_sent_cb sent_cb;
    void *sent_arg;
    rec_t *rec_free;
    size_t nrec_free;
    rec_t *def_head, *def_tail;
    size_t in_flight;      /* entries given to redis or refused, not yet reported */
    size_t in_flight_bytes;/* and their bytes */

    op_t *op_free;
    size_t nop_free;
    size_t cmds;           /* redis commands whose callback is still to come */
    const char **argv;     /* scratch for variable-length commands */
    size_t *argvlen;
    size_t argcap;

    cga_redis_script_t *s_reclaim, *s_split, *s_dead, *s_trim, *s_info, *s_requeue, *s_purge;

    int handles;           /* uv handles not yet closed */
    int closing;
    void (*done)(void *arg);
    void *done_arg;
};

/* ---- small helpers ------------------------------------------------------------------------- */

static int reply_is_err(const redisReply *r, const char *prefix) {
    size_t n = strlen(prefix);
    return r && r->type == REDIS_REPLY_ERROR && (size_t)r->len >= n &&
           memcmp(r->str, prefix, n) == 0;
}

static int reply_u64(const redisReply *r, uint64_t *out) {
    if (r && r->type == REDIS_REPLY_INTEGER && r->integer >= 0) {
        *out = (uint64_t)r->integer;
        return CGA_OK;
    }
    return CGA_EPROTO;
}

static uint64_t parse_u64(const char *s, size_t len) {
    uint64_t v = 0;
    for (size_t i = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++)
        v = v * 10 + (uint64_t)(s[i] - '0');
    return v;
}

static void scratch(cga_queue_t *q, size_t n) {
    if (n <= q->argcap) return;
    size_t cap = q->argcap * 2 > n ? q->argcap * 2 : n;
    q->argv = cga_realloc(q->argv, cap * sizeof *q->argv);
    q->argvlen = cga_realloc(q->argvlen, cap * sizeof *q->argvlen);
    q->argcap = cap;
}

static void set_arg(cga_queue_t *q, size_t i, const char *s, size_t len) {
    q->argv[i] = s;
    q->argvlen[i] = len;
}

static op_t *op_get(cga_queue_t *q, int kind, void *arg) {
    op_t *op = q->op_free;
    if (op) {
        q->op_free = op->next;
        q->nop_free--;
    } else {
        op = cga_malloc(sizeof *op);
    }
    memset(op, 0, sizeof *op);
    op->q = q;
    op->kind = kind;
    op->arg = arg;
    return op;
}

static void op_put(cga_queue_t *q, op_t *op) {
    if (q->nop_free < OP_POOL_MAX) {
        op->next = q->op_free;
        q->op_free = op;
        q->nop_free++;
    } else {
        free(op);
    }
}

static rec_t *rec_get(cga_queue_t *q) {
    rec_t *r = q->rec_free;
    if (r) {
        q->rec_free = r->next;
        q->nrec_free--;
    } else {
        r = cga_calloc(1, sizeof *r);
        r->q = q;
    }
    r->next = NULL;
    r->status = CGA_OK;
    return r;
}

static void rec_destroy(rec_t *r) {
    cga_proto_writer_free(r->w);
    free(r->buf);
    free(r);
}

static void rec_put(cga_queue_t *q, rec_t *r) {
    r->data = NULL;
    r->len = r->count = 0;
    if (q->nrec_free < REC_POOL_MAX && !q->closing) {
        r->next = q->rec_free;
        q->rec_free = r;
        q->nrec_free++;
    } else {
        rec_destroy(r);
    }
}

static void free_queue(cga_queue_t *q) {
    while (q->rec_free) {
        rec_t *r = q->rec_free;
        q->rec_free = r->next;
        rec_destroy(r);
    }
    while (q->op_free) {
        op_t *op = q->op_free;
        q->op_free = op->next;
        free(op);
    }
    cga_proto_writer_free(q->w);
    cga_proto_reader_free(q->reader);
    free(q->argv);
    free(q->argvlen);
    free(q->ns);
    free(q->name);
    free(q->group);
    free(q->consumer);
    free(q);
}

/* Frees q once it is closing, its handles are closed and no redis callback is due. */
static void maybe_finish(cga_queue_t *q) {
    if (!q->closing || q->handles > 0 || q->cmds > 0) return;
    void (*done)(void *) = q->done;
    void *arg = q->done_arg;
    free_queue(q);
    if (done) done(arg);
}

/* Every redis callback ends with this (after the user's callback: a close inside it must not
 * free q under our feet). */
static void cmd_done(cga_queue_t *q) {
    q->cmds--;
    maybe_finish(q);
}

static int issue_flags(cga_queue_t *q, unsigned flags, op_t *op, unsigned timeout_ms,
                       cga_redis_reply_cb cb, int argc, const char **argv,
                       const size_t *argvlen) {
    int rc = cga_redis_commandv(q->redis, flags, timeout_ms, cb, op, argc, argv, argvlen);
    if (rc == CGA_OK) q->cmds++;
    return rc;
}

static int issue(cga_queue_t *q, op_t *op, unsigned timeout_ms, cga_redis_reply_cb cb, int argc,
                 const char **argv, const size_t *argvlen) {
    return issue_flags(q, q->opts.redis_flags, op, timeout_ms, cb, argc, argv, argvlen);
}

static int issue_script(cga_queue_t *q, cga_redis_script_t *s, op_t *op, cga_redis_reply_cb cb,
                        int nkeys, int argc, const char **argv, const size_t *argvlen) {
    int rc = cga_redis_evalsha(q->redis, s, q->opts.redis_flags, cb, op, nkeys, argc, argv,
                               argvlen);
    if (rc == CGA_OK) q->cmds++;
    return rc;
}

/* ---- create / close ------------------------------------------------------------------------ */

void cga_queue_opts_init(cga_queue_opts_t *o) {
    memset(o, 0, sizeof *o);
    o->ns = CGA_NAMESPACE_DEFAULT;
    o->batch_max = 32;
    o->batch_max_bytes = 512 * 1024;
    o->linger_us = 1000;
    o->lease_ms = 30000;
    o->max_deliveries = 5;
    o->dead_max = 100000;
    cga_proto_limits_init(&o->limits);
    o->redis_flags = CGA_REDIS_WAIT;
    o->command_timeout_ms = 5000;
}

static void on_linger(uv_timer_t *t);
static void on_defer(uv_timer_t *t);

int cga_queue_create(cga_queue_t **out, struct uv_loop_s *loop, struct cga_redis_s *redis,
                     const cga_queue_opts_t *opts) {
    if (!out || !loop || !redis || !opts || !opts->name || !*opts->name) return CGA_EINVAL;
    *out = NULL;
    if (cga_namespace_validate(opts->ns) != CGA_OK) return CGA_ECONFIG;
    if (opts->batch_max == 0 || opts->batch_max > opts->limits.max_batch ||
        opts->batch_max_bytes == 0 || opts->lease_ms == 0 || opts->dead_max == 0)
        return CGA_EINVAL;
    if ((opts->group && !*opts->group) || (opts->consumer && !*opts->consumer))
        return CGA_EINVAL;

    cga_queue_t *q = cga_calloc(1, sizeof *q);
    int rc;
    q->loop = loop;
    q->redis = redis;
    q->opts = *opts;
    q->ns = cga_strdup(opts->ns);
    q->name = cga_strdup(opts->name);
    q->group = cga_strdup(opts->group);
    q->consumer = cga_strdup(opts->consumer);
    q->opts.ns = q->ns;
    q->opts.name = q->name;
    q->opts.group = q->group;
    q->opts.consumer = q->consumer;
    q->grouplen = q->group ? strlen(q->group) : 0;
    q->consumerlen = q->consumer ? strlen(q->consumer) : 0;
    /* libuv timers count whole milliseconds: round linger to the nearest one. Below half a
     * millisecond the batch leaves at the next loop turn: a 0 ms timer does not busy-loop (it
     * fires once, at the start of the next iteration, and only keeps that iteration's poll from
     * blocking), lets everything pushed in the current turn (all the I/O callbacks of one poll)
     * join the batch, and at low rates costs one loop turn rather than a rounded-up 1 ms. A
     * uv_check handle would flush a little earlier (end of this turn) but misses pushes made
     * after it ran, or before uv_run, until some unrelated event wakes the loop; uv_idle spins. */
    q->linger_ms = ((uint64_t)opts->linger_us + 500) / 1000;

    rc = cga_key(q->key, sizeof q->key, q->ns, CGA_KIND_QUEUE, q->name, NULL);
    if (rc < 0) goto fail;
    q->keylen = (size_t)rc;
    rc = cga_key(q->dead, sizeof q->dead, q->ns, CGA_KIND_QUEUE, q->name, "dead");
    if (rc < 0) goto fail;
    q->deadlen = (size_t)rc;

    rc = cga_proto_writer_create(&q->w, &q->opts.limits);
    if (rc != CGA_OK) goto fail;
    rc = cga_proto_reader_create(&q->reader, &q->opts.limits);
    if (rc != CGA_OK) goto fail;

    struct {
        const char *lua;
        cga_redis_script_t **out;
    } scripts[] = {
        {LUA_RECLAIM, &q->s_reclaim}, {LUA_SPLIT, &q->s_split},     {LUA_DEAD, &q->s_dead},
        {LUA_TRIM, &q->s_trim},       {LUA_INFO, &q->s_info},       {LUA_REQUEUE, &q->s_requeue},
        {LUA_PURGE, &q->s_purge},
    };
    for (size_t i = 0; i < sizeof scripts / sizeof scripts[0]; i++) {
        rc = cga_redis_script_register(redis, scripts[i].lua, scripts[i].out);
        if (rc != CGA_OK) goto fail; /* registered ones belong to redis */
    }
    scratch(q, 16);

    /* Last: nothing can fail after the handles exist (uv_timer_init cannot fail). */
    uv_timer_init(loop, &q->linger);
    uv_timer_init(loop, &q->defer);
    q->linger.data = q;
    q->defer.data = q;
    q->handles = 2;
    *out = q;
    return CGA_OK;

fail:
    free_queue(q);
    return rc;
}

const char *cga_queue_key(const cga_queue_t *q) {
    return q->key;
}

void cga_queue_on_sent(cga_queue_t *q, cga_queue_sent_cb cb, void *arg) {
    q->sent_cb = cb;
    q->sent_arg = arg;
}

static void report_rec(cga_queue_t *q, rec_t *r, int status, const char *id) {
    q->in_flight--;
    q->in_flight_bytes -= r->len;
    if (q->sent_cb)
        q->sent_cb(status, status == CGA_OK ? id : NULL, r->data, r->len, r->count, q->sent_arg);
    rec_put(q, r);
}

static void on_handle_closed(uv_handle_t *h) {
    cga_queue_t *q = h->data;
    q->handles--;
    maybe_finish(q);
}

void cga_queue_close(cga_queue_t *q, void (*done)(void *arg), void *arg) {
    if (!q || q->closing) return;
    q->closing = 1;
    q->done = done;
    q->done_arg = arg;
    uv_timer_stop(&q->linger);
    uv_timer_stop(&q->defer);
    /* Entries refused up front and not yet reported, with their own status. */
    while (q->def_head) {
        rec_t *r = q->def_head;
        q->def_head = r->next;
        if (!q->def_head) q->def_tail = NULL;
        report_rec(q, r, r->status, NULL);
    }
    /* The partial batch: never sent. */
    if (cga_proto_writer_count(q->w) > 0) {
        rec_t *r = rec_get(q);
        cga_proto_writer_finish(q->w, &r->data, &r->len);
        r->count = cga_proto_writer_count(q->w);
        q->in_flight++;
        q->in_flight_bytes += r->len;
        report_rec(q, r, CGA_ECANCELED, NULL);
        cga_proto_writer_reset(q->w);
    }
    uv_close((uv_handle_t *)&q->linger, on_handle_closed);
    uv_close((uv_handle_t *)&q->defer, on_handle_closed);
}

/* ---- producing ----------------------------------------------------------------------------- */

static void on_sent(int status, redisReply *reply, void *arg) {
    rec_t *r = arg;
    cga_queue_t *q = r->q;
    const char *id = NULL;
    if (status == CGA_OK) {
        if (reply && reply->type == REDIS_REPLY_STRING) id = reply->str;
        else status = CGA_EPROTO;
    }
    if (status != CGA_OK)
        CGA_LOG(CGA_LOG_DEBUG, status, "%s: entry of %zu message(s) not added", q->key, r->count);
    report_rec(q, r, status, id);
    cmd_done(q);
}

static void on_defer(uv_timer_t *t) {
    cga_queue_t *q = t->data;
    rec_t *r = q->def_head;
    q->def_head = q->def_tail = NULL;
    while (r) {
        rec_t *next = r->next;
        report_rec(q, r, r->status, NULL);
        r = next;
    }
}

/* Gives r (data/len/count set) to redis; a refusal is reported at the next loop turn. */
static void send_rec(cga_queue_t *q, rec_t *r) {
    const char *argv[5] = {"XADD", q->key, "*", CGA_PROTO_FIELD, r->data};
    size_t len[5] = {4, q->keylen, 1, 1, r->len};
    q->in_flight++;
    q->in_flight_bytes += r->len;
    int rc = cga_redis_commandv(q->redis, q->opts.redis_flags, 0, on_sent, r, 5, argv, len);
    if (rc == CGA_OK) {
        q->cmds++;
        return;
    }
    r->status = rc;
    r->next = NULL;
    if (q->def_tail) q->def_tail->next = r;
    else q->def_head = r;
    q->def_tail = r;
    uv_timer_start(&q->defer, on_defer, 0, 0);
}

static void send_batch(cga_queue_t *q) {
    uv_timer_stop(&q->linger);
    size_t count = cga_proto_writer_count(q->w);
    if (count == 0) return;
    rec_t *r = rec_get(q);
    cga_proto_writer_t *spare = r->w;
    if (!spare && cga_proto_writer_create(&spare, &q->opts.limits) != CGA_OK) {
        /* cannot happen: the same limits made q->w. Keep the batch here rather than lose it. */
        rec_put(q, r);
        return;
    }
    r->w = q->w;
    q->w = spare;
    cga_proto_writer_reset(q->w);
    cga_proto_writer_finish(r->w, &r->data, &r->len);
    r->count = count;
    send_rec(q, r);
}

static void on_linger(uv_timer_t *t) {
    send_batch(t->data);
}

static int pushed(cga_queue_t *q, int rc) {
    if (rc != CGA_OK) return rc;
    size_t n = cga_proto_writer_count(q->w);
    if (n >= q->opts.batch_max || cga_proto_writer_size(q->w) >= q->opts.batch_max_bytes)
        send_batch(q);
    else if (n == 1)
        /* Adaptive linger (as Nagle's algorithm): with nothing in flight there is nothing to
         * wait behind, so the batch leaves at the next loop turn (still collecting what this
         * turn pushes); while entries are in flight it lingers and fills. Low rates get the
         * latency of a loop turn, high rates full batches. */
        uv_timer_start(&q->linger, on_linger, q->in_flight ? q->linger_ms : 0, 0);
    return CGA_OK;
}

int cga_queue_push_task(cga_queue_t *q, const cga_task_t *t) {
    if (!q || !t) return CGA_EINVAL;
    if (q->closing) return CGA_ECLOSED;
    return pushed(q, cga_proto_write_task(q->w, t));
}

int cga_queue_push_report(cga_queue_t *q, const cga_report_t *r) {
    if (!q || !r) return CGA_EINVAL;
    if (q->closing) return CGA_ECLOSED;
    return pushed(q, cga_proto_write_report(q->w, r));
}

int cga_queue_push_raw(cga_queue_t *q, const char *msg, size_t len) {
    if (!q || !msg || len == 0) return CGA_EINVAL;
    if (q->closing) return CGA_ECLOSED;
    return pushed(q, cga_proto_write_raw(q->w, msg, len));
}

const char *cga_queue_push_error(const cga_queue_t *q) {
    return cga_proto_writer_error(q->w);
}

void cga_queue_flush(cga_queue_t *q) {
    if (q && !q->closing) send_batch(q);
}

int cga_queue_send_entry(cga_queue_t *q, const char *data, size_t len, size_t count) {
    if (!q || !data || len == 0) return CGA_EINVAL;
    if (q->closing) return CGA_ECLOSED;
    rec_t *r = rec_get(q);
    if (r->cap < len) {
        free(r->buf);
        r->buf = cga_malloc(len);
        r->cap = len;
    }
    memcpy(r->buf, data, len);
    r->data = r->buf;
    r->len = len;
    r->count = count;
    send_rec(q, r);
    return CGA_OK;
}

size_t cga_queue_entries_in_flight(const cga_queue_t *q) {
    return q->in_flight;
}

size_t cga_queue_bytes_in_flight(const cga_queue_t *q) {
    return q->in_flight_bytes;
}

size_t cga_queue_messages_pending(const cga_queue_t *q) {
    return cga_proto_writer_count(q->w);
}

/* ---- group --------------------------------------------------------------------------------- */

static void on_group(int status, redisReply *reply, void *arg) {
    op_t *op = arg;
    cga_queue_t *q = op->q;
    if (status == CGA_EREPLY && reply_is_err(reply, "BUSYGROUP")) status = CGA_OK;
    if (op->recovering) {
        if (status == CGA_OK)
            CGA_LOG(CGA_LOG_WARN, 0, "%s: stream or group %s had vanished; group created again",
                    q->key, q->group);
        else
            CGA_LOG(CGA_LOG_WARN, status, "%s: group %s vanished and could not be created again",
                    q->key, q->group);
        op->cb.claim(CGA_ENOTFOUND, NULL, op->arg);
    } else if (op->cb.done) {
        op->cb.done(status, op->arg);
    }
    op_put(q, op);
    cmd_done(q);
}

static int send_group_create(cga_queue_t *q, op_t *op) {
    const char *argv[6] = {"XGROUP", "CREATE", q->key, q->group, "0", "MKSTREAM"};
    size_t len[6] = {6, 6, q->keylen, q->grouplen, 1, 8};
    return issue(q, op, 0, on_group, 6, argv, len);
}

int cga_queue_ensure_group(cga_queue_t *q, cga_queue_done_cb cb, void *arg) {
    if (!q || !q->group) return CGA_EINVAL;
    if (q->closing) return CGA_ECLOSED;
    op_t *op = op_get(q, OP_GROUP, arg);
    op->cb.done = cb;
    int rc = send_group_create(q, op);
    if (rc != CGA_OK) op_put(q, op);
    return rc;
}

/* ---- claiming ------------------------------------------------------------------------------ */

typedef struct {
    cga_queue_batch_t b;
    cga_queue_entry_t e[];
} batch_block_t;

void cga_queue_batch_free(cga_queue_batch_t *b) {
    free(b); /* b is the start of its batch_block_t */
}

/* One entry of an XREADGROUP reply ([id, fields]) or of the reclaim script ([id, n, fields]). */
static int entry_view(const redisReply *e, int reclaim, const redisReply **id,
                      const redisReply **m, uint64_t *deliveries) {
    const redisReply *fields;
    if (!e || e->type != REDIS_REPLY_ARRAY) return CGA_EPROTO;
    if (reclaim) {
        if (e->elements != 3 || reply_u64(e->element[1], deliveries) != CGA_OK)
            return CGA_EPROTO;
        fields = e->element[2];
    } else {
        if (e->elements != 2) return CGA_EPROTO;
        *deliveries = 1;
        fields = e->element[1];
    }
    *id = e->element[0];
    if ((*id)->type != REDIS_REPLY_STRING || (size_t)(*id)->len >= ID_MAX) return CGA_EPROTO;
    *m = NULL;
    if (fields->type == REDIS_REPLY_NIL) return CGA_OK; /* deleted entry (history reads) */
    if (fields->type != REDIS_REPLY_ARRAY) return CGA_EPROTO;
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *f = fields->element[i], *v = fields->element[i + 1];
        if (f->type == REDIS_REPLY_STRING && f->len == 1 && f->str[0] == CGA_PROTO_FIELD[0]) {
            if (v->type == REDIS_REPLY_STRING) *m = v;
            break;
        }
    }
    return CGA_OK;
}

/* Builds a batch from a list of entries: one allocation, each "m" copied once. */
static int build_batch(const redisReply *list, int reclaim, cga_queue_batch_t **out) {
    size_t n = list ? list->elements : 0, bytes = 0;
    const redisReply *id, *m;
    uint64_t deliveries;
    for (size_t i = 0; i < n; i++) {
        int rc = entry_view(list->element[i], reclaim, &id, &m, &deliveries);
        if (rc != CGA_OK) return rc;
        if (m) bytes += (size_t)m->len;
    }
    batch_block_t *blk = cga_malloc(sizeof *blk + n * sizeof blk->e[0] + bytes);
    char *data = (char *)&blk->e[n];
    blk->b.entries = blk->e;
    blk->b.n = n;
    for (size_t i = 0; i < n; i++) {
        cga_queue_entry_t *e = &blk->e[i];
        entry_view(list->element[i], reclaim, &id, &m, &deliveries);
        memcpy(e->id, id->str, (size_t)id->len);
        e->id[id->len] = '\0';
        e->deliveries = deliveries;
        if (m) {
            memcpy(data, m->str, (size_t)m->len);
            e->data = data;
            e->len = (size_t)m->len;
            data += m->len;
        } else {
            e->data = NULL;
            e->len = 0;
        }
    }
    *out = &blk->b;
    return CGA_OK;
}

/* XREADGROUP: nil (BLOCK timed out) or [[key, [entry, ...]]]. */
static int parse_read(const redisReply *reply, cga_queue_batch_t **out) {
    if (reply->type == REDIS_REPLY_NIL) return build_batch(NULL, 0, out);
    if (reply->type != REDIS_REPLY_ARRAY) return CGA_EPROTO;
    if (reply->elements == 0) return build_batch(NULL, 0, out);
    const redisReply *s = reply->element[0];
    if (reply->elements != 1 || s->type != REDIS_REPLY_ARRAY || s->elements != 2) return CGA_EPROTO;
    const redisReply *list = s->element[1];
    if (list->type == REDIS_REPLY_NIL) return build_batch(NULL, 0, out);
    if (list->type != REDIS_REPLY_ARRAY) return CGA_EPROTO;
    return build_batch(list, 0, out);
}

static void on_claimed(int status, redisReply *reply, void *arg) {
    op_t *op = arg;
    cga_queue_t *q = op->q;
    cga_queue_batch_t *b = NULL;
    if (status == CGA_OK) {
        status = op->kind == OP_CLAIM ? parse_read(reply, &b)
                 : reply->type == REDIS_REPLY_ARRAY ? build_batch(reply, 1, &b)
                                                    : CGA_EPROTO;
        if (status == CGA_EPROTO)
            CGA_LOG(CGA_LOG_ERROR, status, "%s: unexpected reply to %s", q->key,
                    op->kind == OP_CLAIM ? "XREADGROUP" : "reclaim");
    } else if ((reply_is_err(reply, "NOGROUP") || reply_is_err(reply, "UNBLOCKED")) &&
               !q->closing) {
        /* The stream or the group is gone: make it again, then let the caller retry. Never
         * stop consuming silently. A claim blocked while the key is deleted gets "UNBLOCKED the
         * stream key no longer exists" (Redis 7.0), the next one NOGROUP. */
        op->recovering = 1;
        int rc = send_group_create(q, op);
        if (rc == CGA_OK) {
            cmd_done(q);
            return;
        }
        CGA_LOG(CGA_LOG_WARN, rc, "%s: group %s vanished and could not be created again",
                q->key, q->group);
        status = CGA_ENOTFOUND;
    }
    if (q->closing && b) {
        cga_queue_batch_free(b); /* stays pending: comes back by reclaim */
        b = NULL;
        status = CGA_ECANCELED;
    }
    op->cb.claim(status, b, op->arg);
    op_put(q, op);
    cmd_done(q);
}

static int consumer_ok(const cga_queue_t *q) {
    return q->group && q->consumer;
}

int cga_queue_claim(cga_queue_t *q, size_t count, unsigned block_ms, cga_queue_claim_cb cb,
                    void *arg) {
    if (!q || !cb || count == 0 || !consumer_ok(q)) return CGA_EINVAL;
    if (q->closing) return CGA_ECLOSED;
    char cnt[24], blk[24];
    int cntlen = snprintf(cnt, sizeof cnt, "%zu", count);
    int blklen = snprintf(blk, sizeof blk, "%u", block_ms);
    const char *argv[11];
    size_t len[11];
    int argc = 0;
#define ARG(s, l) (argv[argc] = (s), len[argc] = (size_t)(l), argc++)
    ARG("XREADGROUP", 10);
    ARG("GROUP", 5);
    ARG(q->group, q->grouplen);
    ARG(q->consumer, q->consumerlen);
    ARG("COUNT", 5);
    ARG(cnt, cntlen);
    if (block_ms > 0) {
        ARG("BLOCK", 5);
        ARG(blk, blklen);
    }
    ARG("STREAMS", 7);
    ARG(q->key, q->keylen);
    ARG(">", 1);
#undef ARG
    unsigned timeout = 0;
    if (block_ms > 0) {
        uint64_t t = (uint64_t)block_ms + q->opts.command_timeout_ms;
        timeout = t > UINT32_MAX ? UINT32_MAX : (unsigned)t;
    }
    op_t *op = op_get(q, OP_CLAIM, arg);
    op->cb.claim = cb;
    int rc = issue(q, op, timeout, on_claimed, argc, argv, len);
    if (rc != CGA_OK) op_put(q, op);
    return rc;
}

int cga_queue_reclaim(cga_queue_t *q, size_t count, cga_queue_claim_cb cb, void *arg) {
    if (!q || !cb || count == 0 || !consumer_ok(q)) return CGA_EINVAL;
    if (q->closing) return CGA_ECLOSED;
    char lease[24], cnt[24];
    int leaselen = snprintf(lease, sizeof lease, "%u", q->opts.lease_ms);
    int cntlen = snprintf(cnt, sizeof cnt, "%zu", count);
    const char *argv[5] = {q->key, q->group, q->consumer, lease, cnt};
    size_t len[5] = {q->keylen, q->grouplen, q->consumerlen, (size_t)leaselen, (size_t)cntlen};
    op_t *op = op_get(q, OP_RECLAIM, arg);
    op->cb.claim = cb;
    int rc = issue_script(q, q->s_reclaim, op, on_claimed, 1, 5, argv, len);
    if (rc != CGA_OK) op_put(q, op);
    return rc;
}

/* ---- complete / ack ------------------------------------------------------------------------ */

static int error_status(const redisReply *r) {
    return reply_is_err(r, "OOM") ? CGA_EOOM : reply_is_err(r, "READONLY") ? CGA_EREADONLY
                                                                           : CGA_EREPLY;
}

/* MULTI, XADD, XACK and EXEC each call this (op->left counts them down); EXEC's reply
 * decides, unless a command was refused on the way (EXEC then answers EXECABORT, and the
 * refusal, e.g. OOM, is the reason to give). */
static void on_complete_step(int status, redisReply *reply, void *arg) {
    op_t *op = arg;
    cga_queue_t *q = op->q;
    if (--op->left > 0) { /* MULTI / XADD / XACK: +OK / +QUEUED, or why it was refused */
        if (status != CGA_OK && op->status == CGA_OK) op->status = status;
        cmd_done(q);
        return;
    }
    if (op->status != CGA_OK) {
        status = op->status;
    } else if (status == CGA_OK) {
        /* EXEC ran the transaction: [xadd id, xack count]. */
        const redisReply *x = reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1
                                  ? reply->element[0]
                                  : NULL;
        if (x && x->type == REDIS_REPLY_STRING) status = CGA_OK;
        else if (x && x->type == REDIS_REPLY_ERROR) status = error_status(x);
        else status = CGA_EPROTO;
    }
    if (op->cb.done) op->cb.done(status, op->arg);
    op_put(q, op);
    cmd_done(q);
}

int cga_queue_complete(cga_queue_t *q, cga_queue_t *out, const char *reports, size_t len,
                       size_t count, const char *const *ids, size_t n, cga_queue_done_cb cb,
                       void *arg) {
    (void)count;
    if (!q || !out || !reports || len == 0 || (n > 0 && !ids) || !q->group) return CGA_EINVAL;
    if (q->closing || out->closing) return CGA_ECLOSED;
    if (n > (size_t)INT32_MAX - 3) return CGA_EINVAL;
    /* The four commands are issued together and leave in one pipeline. They never wait for a
     * reconnect (FAILFAST whatever redis_flags says): the wait queue is bounded, so MULTI could
     * be queued and the rest refused (EQUEUEFULL), leaving a MULTI open that would swallow
     * other modules' commands after the reconnect. With FAILFAST, while the connection is down
     * MULTI is refused (nothing issued) and while it is up nothing is refused. */
    const unsigned flags = q->opts.redis_flags | CGA_REDIS_FAILFAST;
    op_t *op = op_get(q, OP_COMPLETE, arg);
    op->cb.done = cb;
    const char *multi[1] = {"MULTI"}, *exec[1] = {"EXEC"};
    size_t multilen[1] = {5}, execlen[1] = {4};
    int rc = issue_flags(q, flags, op, 0, on_complete_step, 1, multi, multilen);
    if (rc != CGA_OK) {
        op_put(q, op);
        return rc;
    }
    op->left = 1; /* callbacks to come; none runs before we return */
    const char *xadd[5] = {"XADD", out->key, "*", CGA_PROTO_FIELD, reports};
    size_t xaddlen[5] = {4, out->keylen, 1, 1, len};
    rc = issue_flags(q, flags, op, 0, on_complete_step, 5, xadd, xaddlen);
    if (rc == CGA_OK && n > 0) {
        op->left++;
        scratch(q, n + 3);
        set_arg(q, 0, "XACK", 4);
        set_arg(q, 1, q->key, q->keylen);
        set_arg(q, 2, q->group, q->grouplen);
        for (size_t i = 0; i < n; i++) set_arg(q, 3 + i, ids[i], strlen(ids[i]));
        rc = issue_flags(q, flags, op, 0, on_complete_step, (int)(n + 3), q->argv, q->argvlen);
    }
    if (rc == CGA_OK) {
        op->left++;
        rc = issue_flags(q, flags, op, 0, on_complete_step, 1, exec, execlen);
    }
    if (rc == CGA_OK) {
        op->left++;
        return CGA_OK;
    }
    /* Should not happen (see above). Close the transaction without running it: DISCARD's
     * reply comes last in place of EXEC's, and the operation ends with this error. */
    CGA_LOG(CGA_LOG_ERROR, rc, "%s: complete refused half-way; discarding", q->key);
    op->status = rc;
    const char *discard[1] = {"DISCARD"};
    size_t discardlen[1] = {7};
    if (issue_flags(q, flags, op, 0, on_complete_step, 1, discard, discardlen) == CGA_OK)
        op->left++;
    return CGA_OK;
}

static void on_done_reply(int status, redisReply *reply, void *arg) {
    op_t *op = arg;
    cga_queue_t *q = op->q;
    if (op->cb.done) op->cb.done(status, op->arg);
    op_put(q, op);
    cmd_done(q);
}

int cga_queue_ack(cga_queue_t *q, const char *const *ids, size_t n, cga_queue_done_cb cb,
                  void *arg) {
    if (!q || !ids || n == 0 || !q->group || n > (size_t)INT32_MAX - 3) return CGA_EINVAL;
    if (q->closing) return CGA_ECLOSED;
    scratch(q, n + 3);
    set_arg(q, 0, "XACK", 4);
    set_arg(q, 1, q->key, q->keylen);
    set_arg(q, 2, q->group, q->grouplen);
    for (size_t i = 0; i < n; i++) set_arg(q, 3 + i, ids[i], strlen(ids[i]));
    op_t *op = op_get(q, OP_ACK, arg);
    op->cb.done = cb;
    int rc = issue(q, op, 0, on_done_reply, (int)(n + 3), q->argv, q->argvlen);
    if (rc != CGA_OK) op_put(q, op);
    return rc;
}

/* ---- split / dead letter ------------------------------------------------------------------- */

/* Scripts answering an integer, -1 meaning "not pending for this consumer". */
static void on_owned_reply(int status, redisReply *reply, void *arg) {
    op_t *op = arg;
    cga_queue_t *q = op->q;
    if (status == CGA_OK) {
        if (reply->type != REDIS_REPLY_INTEGER) status = CGA_EPROTO;
        else if (reply->integer < 0) status = CGA_ENOTFOUND;
    }
    if (op->cb.done) op->cb.done(status, op->arg);
    op_put(q, op);
    cmd_done(q);
}

int cga_queue_split(cga_queue_t *q, const cga_queue_entry_t *e, cga_queue_done_cb cb, void *arg) {
    if (!q || !e || !e->data || !consumer_ok(q)) return CGA_EINVAL;
    if (q->closing) return CGA_ECLOSED;
    const cga_str_t *msgs;
    size_t n;
    int rc = cga_proto_split(q->reader, e->data, e->len, &msgs, &n);
    if (rc != CGA_OK) return rc;
    if (n < 2 || n > (size_t)INT32_MAX - 4) return CGA_EINVAL;
    scratch(q, n + 4);
    set_arg(q, 0, q->key, q->keylen);
    set_arg(q, 1, q->group, q->grouplen);
    set_arg(q, 2, q->consumer, q->consumerlen);
    set_arg(q, 3, e->id, strlen(e->id));
    for (size_t i = 0; i < n; i++) set_arg(q, 4 + i, msgs[i].ptr, msgs[i].len);
    op_t *op = op_get(q, OP_SPLIT, arg);
    op->cb.done = cb;
    rc = issue_script(q, q->s_split, op, on_owned_reply, 1, (int)(n + 4), q->argv, q->argvlen);
    if (rc != CGA_OK) op_put(q, op);
    return rc;
}

int cga_queue_dead_letter(cga_queue_t *q, const cga_queue_entry_t *e, const char *reason,
                          cga_queue_done_cb cb, void *arg) {
    if (!q || !e || !consumer_ok(q)) return CGA_EINVAL;
    if (q->closing) return CGA_ECLOSED;
    if (!reason) reason = "";
    size_t rlen = strnlen(reason, REASON_MAX);
    char deliv[24], ts[24], maxlen[24];
    int dl = snprintf(deliv, sizeof deliv, "%" PRIu64, e->deliveries);
    int tl = snprintf(ts, sizeof ts, "%" PRIu64, cga_clock_wall_ms());
    int ml = snprintf(maxlen, sizeof maxlen, "%zu", q->opts.dead_max);
    const char *argv[10] = {q->key,  q->dead, q->group, q->consumer, e->id,
                            reason,  deliv,   ts,       maxlen,      e->data};
    size_t len[10] = {q->keylen, q->deadlen,  q->grouplen, q->consumerlen, strlen(e->id),
                      rlen,      (size_t)dl, (size_t)tl,  (size_t)ml,     e->len};
    op_t *op = op_get(q, OP_DEAD, arg);
    op->cb.done = cb;
    int rc = issue_script(q, q->s_dead, op, on_owned_reply, 2, e->data ? 10 : 9, argv, len);
    if (rc != CGA_OK) op_put(q, op);
    return rc;
}

/* ---- trim / info --------------------------------------------------------------------------- */

static void on_count_reply(int status, redisReply *reply, void *arg) {
    op_t *op = arg;
    cga_queue_t *q = op->q;
    uint64_t n = 0;
    if (status == CGA_OK) status = reply_u64(reply, &n);
    if (op->cb.count) op->cb.count(status, n, op->arg);
    op_put(q, op);
    cmd_done(q);
}

int cga_queue_trim(cga_queue_t *q, cga_queue_count_cb cb, void *arg) {
    if (!q) return CGA_EINVAL;
    if (q->closing) return CGA_ECLOSED;
    const char *argv[1] = {q->key};
    size_t len[1] = {q->keylen};
    op_t *op = op_get(q, OP_TRIM, arg);
    op->cb.count = cb;
    int rc = issue_script(q, q->s_trim, op, on_count_reply, 1, 1, argv, len);
    if (rc != CGA_OK) op_put(q, op);
    return rc;
}

static void on_info_reply(int status, redisReply *reply, void *arg) {
    op_t *op = arg;
    cga_queue_t *q = op->q;
    cga_queue_info_t info;
    memset(&info, 0, sizeof info);
    if (status == CGA_OK) {
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 6) {
            status = CGA_EPROTO;
        } else {
            uint64_t *f[6] = {&info.length, &info.dead,    &info.groups,
                              &info.lag,    &info.pending, &info.consumers};
            for (size_t i = 0; i < 6 && status == CGA_OK; i++)
                status = reply_u64(reply->element[i], f[i]);
        }
    }
    if (op->cb.info) op->cb.info(status, status == CGA_OK ? &info : NULL, op->arg);
    op_put(q, op);
    cmd_done(q);
}

int cga_queue_info(cga_queue_t *q, cga_queue_info_cb cb, void *arg) {
    if (!q || !cb) return CGA_EINVAL;
    if (q->closing) return CGA_ECLOSED;
    const char *argv[3] = {q->key, q->dead, q->group ? q->group : ""};
    size_t len[3] = {q->keylen, q->deadlen, q->grouplen};
    op_t *op = op_get(q, OP_INFO, arg);
    op->cb.info = cb;
    int rc = issue_script(q, q->s_info, op, on_info_reply, 2, 3, argv, len);
    if (rc != CGA_OK) op_put(q, op);
    return rc;
}

/* ---- dead letters -------------------------------------------------------------------------- */

static const redisReply *find_field(const redisReply *fields, const char *name) {
    size_t n = strlen(name);
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *f = fields->element[i], *v = fields->element[i + 1];
        if (f->type == REDIS_REPLY_STRING && (size_t)f->len == n && memcmp(f->str, name, n) == 0)
            return v->type == REDIS_REPLY_STRING ? v : NULL;
    }
    return NULL;
}

static int dead_view(const redisReply *e, const redisReply **fields) {
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) return CGA_EPROTO;
    const redisReply *id = e->element[0];
    if (id->type != REDIS_REPLY_STRING || (size_t)id->len >= ID_MAX) return CGA_EPROTO;
    *fields = e->element[1];
    if ((*fields)->type != REDIS_REPLY_ARRAY) return CGA_EPROTO;
    return CGA_OK;
}

static int parse_dead(const redisReply *reply, cga_dead_letter_t **out, size_t *count) {
    if (reply->type != REDIS_REPLY_ARRAY) return CGA_EPROTO;
    size_t n = reply->elements, bytes = 0;
    const redisReply *fields, *v;
    for (size_t i = 0; i < n; i++) {
        if (dead_view(reply->element[i], &fields) != CGA_OK) return CGA_EPROTO;
        if ((v = find_field(fields, "reason"))) bytes += (size_t)v->len;
        if ((v = find_field(fields, "m"))) bytes += (size_t)v->len;
        bytes += 1;
    }
    cga_dead_letter_t *d = cga_malloc(n * sizeof *d + bytes + 1);
    char *p = (char *)(d + n);
    for (size_t i = 0; i < n; i++) {
        const redisReply *id = reply->element[i]->element[0];
        dead_view(reply->element[i], &fields);
        memset(&d[i], 0, sizeof d[i]);
        memcpy(d[i].id, id->str, (size_t)id->len);
        if ((v = find_field(fields, "src")) && (size_t)v->len < sizeof d[i].src)
            memcpy(d[i].src, v->str, (size_t)v->len);
        if ((v = find_field(fields, "deliveries"))) d[i].deliveries = parse_u64(v->str, v->len);
        if ((v = find_field(fields, "ts"))) d[i].ts_ms = parse_u64(v->str, v->len);
        d[i].reason = p;
        if ((v = find_field(fields, "reason"))) {
            memcpy(p, v->str, (size_t)v->len);
            p += v->len;
        }
        *p++ = '\0';
        if ((v = find_field(fields, "m"))) {
            memcpy(p, v->str, (size_t)v->len);
            d[i].data = p;
            d[i].len = (size_t)v->len;
            p += v->len;
        }
    }
    *out = d;
    *count = n;
    return CGA_OK;
}

static void on_dead_list(int status, redisReply *reply, void *arg) {
    op_t *op = arg;
    cga_queue_t *q = op->q;
    cga_dead_letter_t *d = NULL;
    size_t n = 0;
    if (status == CGA_OK) status = parse_dead(reply, &d, &n);
    if (op->cb.dead) op->cb.dead(status, d, n, op->arg);
    free(d);
    op_put(q, op);
    cmd_done(q);
}

int cga_queue_dead_list(cga_queue_t *q, const char *start, size_t count, cga_queue_dead_cb cb,
                        void *arg) {
    if (!q || !cb || count == 0) return CGA_EINVAL;
    if (q->closing) return CGA_ECLOSED;
    char from[ID_MAX + 2] = "-", cnt[24];
    if (start && strcmp(start, "-") != 0) {
        if (strlen(start) >= ID_MAX) return CGA_EINVAL;
        snprintf(from, sizeof from, "(%s", start);
    }
    int cntlen = snprintf(cnt, sizeof cnt, "%zu", count);
    const char *argv[6] = {"XRANGE", q->dead, from, "+", "COUNT", cnt};
    size_t len[6] = {6, q->deadlen, strlen(from), 1, 5, (size_t)cntlen};
    op_t *op = op_get(q, OP_DLIST, arg);
    op->cb.dead = cb;
    int rc = issue(q, op, 0, on_dead_list, 6, argv, len);
    if (rc != CGA_OK) op_put(q, op);
    return rc;
}

static int send_requeue_all(cga_queue_t *q, op_t *op);

static void on_requeue(int status, redisReply *reply, void *arg) {
    op_t *op = arg;
    cga_queue_t *q = op->q;
    uint64_t moved = 0, scanned = 0;
    const redisReply *last = NULL;
    if (status == CGA_OK) {
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
            reply_u64(reply->element[0], &moved) != CGA_OK ||
            reply_u64(reply->element[1], &scanned) != CGA_OK ||
            reply->element[2]->type != REDIS_REPLY_STRING ||
            (size_t)reply->element[2]->len >= ID_MAX)
            status = CGA_EPROTO;
        else
            last = reply->element[2];
    }
    op->total += moved;
    if (status != CGA_OK && op->status == CGA_OK) op->status = status;
    if (op->cursor[0]) { /* all: go on while chunks come back full */
        if (op->status == CGA_OK && scanned == REQUEUE_CHUNK && !q->closing) {
            snprintf(op->cursor, sizeof op->cursor, "(%.*s", (int)last->len, last->str);
            int rc = send_requeue_all(q, op);
            if (rc == CGA_OK) {
                cmd_done(q);
                return;
            }
            op->status = rc;
        }
        op->left = 1;
    }
    if (--op->left == 0) {
        if (op->cb.count) op->cb.count(op->status, op->total, op->arg);
        op_put(q, op);
    }
    cmd_done(q);
}

static int send_requeue_all(cga_queue_t *q, op_t *op) {
    char cnt[24];
    int cntlen = snprintf(cnt, sizeof cnt, "%d", REQUEUE_CHUNK);
    const char *argv[5] = {q->key, q->dead, "all", op->cursor, cnt};
    size_t len[5] = {q->keylen, q->deadlen, 3, strlen(op->cursor), (size_t)cntlen};
    return issue_script(q, q->s_requeue, op, on_requeue, 2, 5, argv, len);
}

int cga_queue_dead_requeue(cga_queue_t *q, const char *const *ids, size_t n,
                           cga_queue_count_cb cb, void *arg) {
    if (!q || (n > 0 && !ids)) return CGA_EINVAL;
    if (q->closing) return CGA_ECLOSED;
    op_t *op = op_get(q, OP_REQUEUE, arg);
    op->cb.count = cb;
    int rc = CGA_OK;
    if (n == 0) {
        strcpy(op->cursor, "-");
        rc = send_requeue_all(q, op);
        if (rc != CGA_OK) op_put(q, op);
        return rc;
    }
    /* Chunks leave together (one pipeline); each is atomic. */
    scratch(q, REQUEUE_CHUNK + 3);
    for (size_t at = 0; at < n; at += REQUEUE_CHUNK) {
        size_t k = n - at < REQUEUE_CHUNK ? n - at : REQUEUE_CHUNK;
        set_arg(q, 0, q->key, q->keylen);
        set_arg(q, 1, q->dead, q->deadlen);
        set_arg(q, 2, "ids", 3);
        for (size_t i = 0; i < k; i++) set_arg(q, 3 + i, ids[at + i], strlen(ids[at + i]));
        rc = issue_script(q, q->s_requeue, op, on_requeue, 2, (int)(k + 3), q->argv, q->argvlen);
        if (rc != CGA_OK) break;
        op->left++;
    }
    if (op->left == 0) { /* the first chunk was refused: nothing issued, no callback */
        op_put(q, op);
        return rc;
    }
    if (rc != CGA_OK) op->status = rc; /* later chunks refused: reported through cb */
    return CGA_OK;
}

int cga_queue_dead_purge(cga_queue_t *q, cga_queue_count_cb cb, void *arg) {
    if (!q) return CGA_EINVAL;
    if (q->closing) return CGA_ECLOSED;
    const char *argv[1] = {q->dead};
    size_t len[1] = {q->deadlen};
    op_t *op = op_get(q, OP_PURGE, arg);
    op->cb.count = cb;
    int rc = issue_script(q, q->s_purge, op, on_count_reply, 1, 1, argv, len);
    if (rc != CGA_OK) op_put(q, op);
    return rc;
}

#define CGA_LOG_COMPONENT "redis"

#include "cgalpha/redis.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <uv.h>

#include "cgalpha/alloc.h"
#include "cgalpha/breaker.h"
#include "cgalpha/err.h"
#include "cgalpha/log.h"

/* How it works
 *
 * One hiredis async context at a time (r->ac, NULL while down). Every command is formatted by us
 * into one buffer (so that it can wait in a queue) and carried by one record (rec_t). While the
 * connection is ready a record is written at once with redisAsyncFormattedCommand: hiredis
 * appends it to its output buffer and the libuv poll handle writes everything appended in one
 * loop turn with one write(2) - a pipeline. Sent records sit in r->inflight in the order
 * they were written; Redis answers in that order, so hiredis calls on_reply() for the head.
 * While down, records wait in r->queue (bounded in size and time) and are written after the
 * next handshake.
 *
 * Deadlines: one periodic timer (r->tick, TICK_MS) looks at the head of r->inflight only (a
 * later command cannot be answered before it) and at the head of r->queue (they wait in
 * arrival order with the same queue_timeout_ms). No per-command timers.
 *
 * hiredis 0.14 rules followed here:
 *   - when a context goes away (our redisAsyncFree, or an error), hiredis first calls every
 *     pending reply callback with reply == NULL, then (if it was connected) onDisconnect. We set
 *     r->ac = NULL *before* freeing a context ourselves, so "ac != r->ac" in a callback means
 *     "a context we already let go of"; a NULL reply with ac == r->ac means hiredis is tearing
 *     the connection down on its own (EOF, reset), seen before onDisconnect;
 *   - redisAsyncFree() from inside a reply callback is deferred until the callback returns;
 *     from inside onConnect it is not (use-after-free in hiredis), so onConnect never calls
 *     user code: the connection becomes ready, and user state callbacks run, from the reply
 *     callback of the last handshake command;
 *   - onConnect(REDIS_ERR) is followed by hiredis freeing the context (no onDisconnect);
 *   - freeing a context that never connected calls neither onConnect nor onDisconnect;
 *   - subscription callbacks are persistent (one per channel, hiredis keeps them in a dict) and
 *     get every "subscribe" confirmation and "message" push, and NULL on teardown.
 *
 * The libuv glue is ours (ev_attach below), not hiredis 0.14's adapters/libuv.h: that adapter
 * ignores the error status of the poll callback, and libuv reports POLLERR exactly that way
 * (status UV_EBADF, handle stopped), so a refused TCP connect would hang until the connect
 * timeout instead of failing at once with ECONNREFUSED; it also leaks on uv_poll_init failure,
 * restarts the poll on every command, and gives no way to know when its handle is closed.
 *
 * Closing: cga_redis_close() frees the context (hiredis asks our glue to close the poll handle)
 * and closes both timers; r is freed and done() called in the last of those close callbacks
 * (r->open_handles and r->open_polls count them), so uv_loop_close() then succeeds. */

#define TICK_MS 100
#define MAX_LISTENERS 8
#define FREELIST_MAX 4096
#define ERRTEXT_MAX 160

typedef struct rec_s rec_t;
struct rec_s {
    rec_t *next;
    cga_redis_reply_cb cb;      /* NULL for internal commands and callers that ignore replies */
    void *arg;
    char *buf;                  /* formatted command; freed once written unless script != NULL */
    size_t len;
    uint64_t deadline;          /* uv_now() ms: queue deadline while waiting, reply deadline */
    unsigned timeout_ms;        /* reply deadline once written */
    cga_redis_script_t *script; /* EVALSHA of this script: buf kept for the NOSCRIPT retry */
    unsigned char retried;      /* NOSCRIPT retry done */
    unsigned char timed_out;    /* failed by the watchdog: complete with CGA_ETIMEDOUT */
};

typedef struct {
    rec_t *head, *tail;
    size_t n;
} fifo_t;

struct cga_redis_script_s {
    cga_redis_script_t *next;
    char *lua;
    size_t len;
    char sha[41];
};

typedef struct sub_s sub_t;
struct sub_s {
    sub_t *next;
    char *channel;
    size_t len;
    cga_redis_message_cb cb; /* NULL once unsubscribed (freed when no dispatch is running) */
    void *arg;
};

enum conn_state {
    ST_DOWN,       /* no context; r->timer schedules the next attempt */
    ST_RESOLVING,  /* uv_getaddrinfo of the host name; r->timer is the connect deadline */
    ST_CONNECTING, /* context created, waiting for onConnect; r->timer is the connect deadline */
    ST_HANDSHAKE,  /* AUTH/SELECT/SETNAME/SCRIPT LOAD written, waiting for their replies */
    ST_READY,      /* commands flow */
    ST_CLOSED,     /* cga_redis_close() called */
};

enum hs_step { HS_AUTH = 1, HS_SELECT, HS_SETNAME, HS_SCRIPT, HS_PING };

/* Our libuv glue for one hiredis context (see the top). */
typedef struct evs_s {
    redisAsyncContext *ac; /* NULL once hiredis asked for the cleanup */
    cga_redis_t *r;
    uv_poll_t handle;
    int events; /* UV_READABLE | UV_WRITABLE that hiredis wants */
    int active; /* the poll handle runs with `events` */
} evs_t;

struct cga_redis_s {
    uv_loop_t *loop;
    redisAsyncContext *ac; /* ac->data == this; NULL while down; never touched once let go */
    uv_timer_t timer;      /* DOWN: next attempt; CONNECTING/HANDSHAKE: connect deadline */
    uv_timer_t tick;       /* deadlines of r->inflight's head and r->queue's head */
    int state;
    int closing;
    cga_redis_opts_t o; /* string fields point to the copies below */
    char *host, *unix_path, *username, *password, *client_name;
    char where[160]; /* "unix:/path" or "host:port", for logs */
    cga_breaker_t *breaker;
    fifo_t inflight; /* written, waiting for the reply, in write order */
    fifo_t queue;    /* waiting for a connection, in arrival order */
    rec_t *freelist;
    size_t nfree;
    cga_redis_script_t *scripts, *scripts_tail;
    sub_t *subs;
    int subscriber;  /* cga_redis_subscribe() was called: no other commands from then on */
    int dispatching; /* depth of message dispatch (unsubscribe frees lazily) */
    struct {
        cga_redis_state_cb cb;
        void *arg;
    } listeners[MAX_LISTENERS];
    int nlisteners;
    unsigned hs_pending;   /* handshake replies still expected */
    unsigned attempt;      /* failed attempts since the last connect: backoff exponent */
    unsigned series;       /* failed attempts in the current outage (0: none) */
    int series_rc;         /* error of the last WARN line of this outage */
    uint64_t down_since;   /* uv_now() when the outage began */
    int last_error;
    int ever_connected;
    char errtext[ERRTEXT_MAX]; /* Redis' own words for a refused handshake, for the log */
    uint32_t rng;
    cga_redis_stats_t stats;
    int numeric_host;      /* host is an IP address: no resolution */
    uv_getaddrinfo_t *gai; /* resolution of this attempt, or NULL */
    int open_handles;      /* our timers not yet closed */
    int open_polls;        /* poll handles of hiredis contexts not yet closed */
    int open_reqs;         /* uv_getaddrinfo requests whose callback has not run */
    void (*done)(void *);
    void *done_arg;
};

static void release(cga_redis_t *r);

/* Frees r (and calls done) once closing and the last handle and request are gone. */
static void maybe_release(cga_redis_t *r) {
    if (r->closing && !r->open_handles && !r->open_polls && !r->open_reqs) release(r);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata);
static void on_sub_reply(redisAsyncContext *ac, void *reply, void *privdata);
static void on_timer(uv_timer_t *t);
static void attempt_failed(cga_redis_t *r, int rc);

/* ---------------------------------------------------------------- small helpers */

static uint32_t rnd32(cga_redis_t *r) { /* xorshift32: jitter only */
    uint32_t x = r->rng;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return r->rng = x;
}

static void fifo_push(fifo_t *f, rec_t *rec) {
    rec->next = NULL;
    if (f->tail) f->tail->next = rec;
    else f->head = rec;
    f->tail = rec;
    f->n++;
}

static rec_t *fifo_pop(fifo_t *f) {
    rec_t *rec = f->head;
    if (!rec) return NULL;
    f->head = rec->next;
    if (!f->head) f->tail = NULL;
    f->n--;
    rec->next = NULL;
    return rec;
}

/* Unlinks rec wherever it is (hiredis answers in order, so this is the head in practice). */
static void fifo_remove(fifo_t *f, rec_t *rec) {
    if (f->head == rec) {
        fifo_pop(f);
        return;
    }
    for (rec_t *p = f->head; p; p = p->next) {
        if (p->next == rec) {
            p->next = rec->next;
            if (f->tail == rec) f->tail = p;
            f->n--;
            rec->next = NULL;
            return;
        }
    }
}

static rec_t *rec_get(cga_redis_t *r) {
    rec_t *rec = r->freelist;
    if (rec) {
        r->freelist = rec->next;
        r->nfree--;
        memset(rec, 0, sizeof *rec);
        return rec;
    }
    return cga_calloc(1, sizeof *rec);
}

static void rec_put(cga_redis_t *r, rec_t *rec) {
    if (rec->buf) redisFreeCommand(rec->buf);
    rec->buf = NULL;
    if (r->nfree >= FREELIST_MAX) {
        free(rec);
        return;
    }
    rec->next = r->freelist;
    r->freelist = rec;
    r->nfree++;
}

/* Recycles rec, then runs its callback (which may issue commands or close r). */
static void finish(cga_redis_t *r, rec_t *rec, int status, redisReply *reply) {
    cga_redis_reply_cb cb = rec->cb;
    void *arg = rec->arg;
    if (status == CGA_ETIMEDOUT) r->stats.timeouts++;
    rec_put(r, rec);
    if (cb) cb(status, reply, arg);
}

/* Fails every waiting command with status (the queue is detached first: callbacks may issue
 * new commands, which are then refused or queued anew by the rules of the moment). */
static void fail_queue(cga_redis_t *r, int status) {
    fifo_t q = r->queue;
    memset(&r->queue, 0, sizeof r->queue);
    rec_t *rec;
    while ((rec = fifo_pop(&q))) finish(r, rec, status, NULL);
}

static void notify(cga_redis_t *r, int up, int status) {
    int n = r->nlisteners;
    for (int i = 0; i < n && !r->closing; i++)
        if (r->listeners[i].cb) r->listeners[i].cb(up, status, r->listeners[i].arg);
}

/* ---------------------------------------------------------------- error mapping */

static int reply_error_code(const char *s) {
    if (!s) return CGA_EREPLY;
    if (strncmp(s, "NOAUTH", 6) == 0 || strncmp(s, "WRONGPASS", 9) == 0 ||
        strncmp(s, "ERR invalid password", 20) == 0 ||
        strstr(s, "invalid username-password pair") != NULL)
        return CGA_EAUTH;
    if (strncmp(s, "OOM", 3) == 0) return CGA_EOOM;
    if (strncmp(s, "READONLY", 8) == 0) return CGA_EREADONLY;
    return CGA_EREPLY;
}

/* hiredis reports connect and I/O errors as text only (c->errstr): strerror() text for I/O
 * errors, gai_strerror() text for name resolution. Map them back to codes. */
static int context_error_code(const redisContext *c) {
    static const int errnos[] = {ECONNREFUSED, ENOENT,      ECONNRESET, ETIMEDOUT, EHOSTUNREACH,
                                 ENETUNREACH,  EACCES,      EPIPE,      ECONNABORTED, ENOTCONN,
                                 EADDRNOTAVAIL, ENETDOWN,   EHOSTDOWN,  EPERM,      EMFILE,
                                 ENFILE,       ENOTSOCK,    EINVAL,     ENAMETOOLONG};
    static const struct {
        int eai;
        int uv;
    } gai[] = {{EAI_NONAME, UV_EAI_NONAME},   {EAI_AGAIN, UV_EAI_AGAIN},
               {EAI_FAIL, UV_EAI_FAIL},       {EAI_SERVICE, UV_EAI_SERVICE},
               {EAI_FAMILY, UV_EAI_FAMILY},   {EAI_MEMORY, UV_EAI_MEMORY},
               {EAI_SOCKTYPE, UV_EAI_SOCKTYPE}};
    switch (c->err) {
    case 0:
    case REDIS_ERR_EOF: return CGA_ECONNLOST;
    case REDIS_ERR_PROTOCOL: return CGA_EPROTO;
    case REDIS_ERR_OOM: return -ENOMEM;
    case REDIS_ERR_IO:
        for (size_t i = 0; i < sizeof errnos / sizeof errnos[0]; i++)
            if (strcmp(c->errstr, strerror(errnos[i])) == 0) return -errnos[i];
        return -EIO;
    default: break;
    }
    for (size_t i = 0; i < sizeof gai / sizeof gai[0]; i++)
        if (strcmp(c->errstr, gai_strerror(gai[i].eai)) == 0) return gai[i].uv;
    if (strcmp(c->errstr, "No address associated with hostname") == 0) return UV_EAI_NODATA;
    /* an unsolicited error reply ("ERR max number of clients reached", "LOADING ...") */
    if (c->errstr[0] >= 'A' && c->errstr[0] <= 'Z') return reply_error_code(c->errstr);
    return -EIO;
}

/* ---------------------------------------------------------------- SHA-1 (script ids) */

static uint32_t rol32(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1_block(uint32_t h[5], const unsigned char *p) {
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5A827999u;
        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ED9EBA1u;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8F1BBCDCu;
        } else {
            f = b ^ c ^ d;
            k = 0xCA62C1D6u;
        }
        uint32_t t = rol32(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol32(b, 30);
        b = a;
        a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

/* Lower-case hex SHA-1 of data, as Redis names scripts. */
static void sha1_hex(const char *data, size_t len, char out[41]) {
    uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
    const unsigned char *p = (const unsigned char *)data;
    size_t i = 0;
    for (; i + 64 <= len; i += 64) sha1_block(h, p + i);
    unsigned char tail[128] = {0};
    size_t rest = len - i;
    memcpy(tail, p + i, rest);
    tail[rest] = 0x80;
    size_t tl = rest + 1 + 8 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8u;
    for (int j = 0; j < 8; j++) tail[tl - 1 - (size_t)j] = (unsigned char)(bits >> (8 * j));
    sha1_block(h, tail);
    if (tl == 128) sha1_block(h, tail + 64);
    static const char hex[] = "0123456789abcdef";
    for (int j = 0; j < 20; j++) {
        unsigned char byte = (unsigned char)(h[j / 4] >> (24 - 8 * (j % 4)));
        out[2 * j] = hex[byte >> 4];
        out[2 * j + 1] = hex[byte & 15];
    }
    out[40] = '\0';
}

/* ---------------------------------------------------------------- libuv glue */

static void ev_poll_cb(uv_poll_t *h, int status, int events) {
    evs_t *p = h->data;
    if (status < 0) {
        /* POLLERR: libuv stopped the handle; let hiredis meet the error by doing what it was
         * waiting for (getsockopt(SO_ERROR) while connecting, read/write after) */
        p->active = 0;
        events = p->events;
    }
    if (p->ac && (events & UV_READABLE)) redisAsyncHandleRead(p->ac);
    if (p->ac && (events & UV_WRITABLE)) redisAsyncHandleWrite(p->ac);
}

static void ev_set(evs_t *p, int events) {
    if (!p || (events == p->events && p->active == (events != 0))) return;
    p->events = events;
    if (events) {
        uv_poll_start(&p->handle, events, ev_poll_cb);
        p->active = 1;
    } else {
        uv_poll_stop(&p->handle);
        p->active = 0;
    }
}

static void ev_add_read(void *d) {
    evs_t *p = d;
    if (p) ev_set(p, p->events | UV_READABLE);
}

static void ev_del_read(void *d) {
    evs_t *p = d;
    if (p) ev_set(p, p->events & ~UV_READABLE);
}

static void ev_add_write(void *d) {
    evs_t *p = d;
    if (p) ev_set(p, p->events | UV_WRITABLE);
}

static void ev_del_write(void *d) {
    evs_t *p = d;
    if (p) ev_set(p, p->events & ~UV_WRITABLE);
}

static void ev_closed(uv_handle_t *h) {
    evs_t *p = h->data;
    cga_redis_t *r = p->r;
    free(p);
    r->open_polls--;
    maybe_release(r);
}

/* hiredis is freeing the context: close the poll handle (once). */
static void ev_cleanup(void *d) {
    evs_t *p = d;
    if (!p || !p->ac) return;
    p->ac->ev.data = NULL; /* any later hook gets NULL and does nothing */
    p->ac = NULL;
    uv_close((uv_handle_t *)&p->handle, ev_closed);
}

static int ev_attach(cga_redis_t *r, redisAsyncContext *ac) {
    if (ac->ev.data) return REDIS_ERR;
    evs_t *p = cga_calloc(1, sizeof *p);
    if (uv_poll_init(r->loop, &p->handle, ac->c.fd) != 0) {
        free(p);
        return REDIS_ERR;
    }
    p->ac = ac;
    p->r = r;
    p->handle.data = p;
    r->open_polls++;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    ac->ev.data = p;
    return REDIS_OK;
}

/* ---------------------------------------------------------------- sending */

/* Writes rec on the ready connection and appends it to r->inflight. Returns 0, or -1 if hiredis
 * refused (the context is going away; rec is untouched). */
static int send_rec(cga_redis_t *r, rec_t *rec, uint64_t now) {
    if (redisAsyncFormattedCommand(r->ac, on_reply, rec, rec->buf, rec->len) != REDIS_OK)
        return -1;
    rec->deadline = now + rec->timeout_ms;
    fifo_push(&r->inflight, rec);
    r->stats.commands_sent++;
    if (!rec->script) {
        redisFreeCommand(rec->buf);
        rec->buf = NULL;
    }
    return 0;
}

static void enqueue(cga_redis_t *r, rec_t *rec, uint64_t now) {
    rec->deadline = now + r->o.queue_timeout_ms;
    fifo_push(&r->queue, rec);
}

/* Takes buf (a formatted command). The single entry point of every caller command. */
static int submit(cga_redis_t *r, unsigned flags, unsigned timeout_ms, cga_redis_reply_cb cb,
                  void *arg, char *buf, size_t len, cga_redis_script_t *script) {
    int rc = CGA_OK;
    uint64_t now = uv_now(r->loop);
    if (r->closing) {
        rc = CGA_ECLOSED;
    } else if (r->subscriber) {
        rc = CGA_EINVAL; /* a subscriber connection carries nothing else */
    } else if (r->state != ST_READY) {
        if (cga_breaker_state(r->breaker, now) == CGA_BREAKER_OPEN) rc = CGA_EBREAKER;
        else if (flags & CGA_REDIS_FAILFAST) rc = CGA_ENOTCONN;
        else if (r->queue.n >= r->o.max_queued) rc = CGA_EQUEUEFULL;
    }
    if (rc != CGA_OK) {
        redisFreeCommand(buf);
        return rc;
    }
    rec_t *rec = rec_get(r);
    rec->cb = cb;
    rec->arg = arg;
    rec->buf = buf;
    rec->len = len;
    rec->timeout_ms = timeout_ms ? timeout_ms : r->o.command_timeout_ms;
    rec->script = script;
    if (r->state != ST_READY || send_rec(r, rec, now) != 0) enqueue(r, rec, now);
    return CGA_OK;
}

/* SCRIPT LOAD of s on the ready connection, reply ignored (failures show on EVALSHA). */
static int send_script_load(cga_redis_t *r, cga_redis_script_t *s, uint64_t now) {
    const char *argv[3] = {"SCRIPT", "LOAD", s->lua};
    size_t lens[3] = {6, 4, s->len};
    char *buf;
    int len = redisFormatCommandArgv(&buf, 3, argv, lens);
    if (len < 0) return -1;
    rec_t *rec = rec_get(r);
    rec->buf = buf;
    rec->len = (size_t)len;
    rec->timeout_ms = r->o.command_timeout_ms;
    if (send_rec(r, rec, now) != 0) {
        rec_put(r, rec);
        return -1;
    }
    return 0;
}

/* NOSCRIPT on an EVALSHA: load the script and send the same EVALSHA again, once. */
static int retry_evalsha(cga_redis_t *r, rec_t *rec) {
    uint64_t now = uv_now(r->loop);
    if (send_script_load(r, rec->script, now) != 0) return -1;
    rec->retried = 1;
    return send_rec(r, rec, now);
}

static void send_subscriptions(cga_redis_t *r) {
    size_t n = 0;
    for (sub_t *s = r->subs; s; s = s->next) n++;
    if (!n) return;
    const char **argv = cga_malloc((n + 1) * sizeof *argv);
    size_t *lens = cga_malloc((n + 1) * sizeof *lens);
    int argc = 0;
    argv[argc] = "SUBSCRIBE";
    lens[argc++] = 9;
    for (sub_t *s = r->subs; s; s = s->next) {
        if (!s->cb) continue;
        int dup = 0;
        for (int i = 1; i < argc && !dup; i++)
            dup = lens[i] == s->len && memcmp(argv[i], s->channel, s->len) == 0;
        if (dup) continue;
        argv[argc] = s->channel;
        lens[argc++] = s->len;
    }
    if (argc > 1) redisAsyncCommandArgv(r->ac, on_sub_reply, r, argc, argv, lens);
    free(argv);
    free(lens);
}

/* ---------------------------------------------------------------- connection life */

static void schedule_attempt(cga_redis_t *r) {
    uint64_t delay = cga_backoff_delay_ms(r->o.backoff_base_ms, r->o.backoff_cap_ms, r->attempt,
                                          rnd32(r));
    r->state = ST_DOWN;
    uv_timer_start(&r->timer, on_timer, delay, 0);
}

/* Counts a failure on the breaker; if that opened it, says so once and fails what waits. */
static void breaker_failure(cga_redis_t *r) {
    uint64_t now = uv_now(r->loop);
    uint64_t trips = cga_breaker_trips(r->breaker);
    int trial = cga_breaker_state(r->breaker, now) == CGA_BREAKER_HALF_OPEN;
    cga_breaker_failure(r->breaker, now);
    if (cga_breaker_trips(r->breaker) == trips) return;
    if (trial)
        CGA_LOG(CGA_LOG_WARN, 0,
                "circuit breaker open again (the trial connect failed): commands fail fast for "
                "%u ms", r->o.breaker_open_ms);
    else
        CGA_LOG(CGA_LOG_WARN, 0,
                "circuit breaker open after %u consecutive failures: commands fail fast for %u ms",
                r->o.breaker_failures, r->o.breaker_open_ms);
    fail_queue(r, CGA_EBREAKER);
}

/* The ready connection is gone. to_free: the context to free (our decision), or NULL when
 * hiredis is already freeing it. */
static void conn_lost(cga_redis_t *r, int rc, redisAsyncContext *to_free, const char *why) {
    uint64_t now = uv_now(r->loop);
    r->ac = NULL;
    r->state = ST_DOWN;
    r->stats.disconnects++;
    r->last_error = rc;
    r->down_since = now;
    r->attempt = 0;
    r->series = 1;    /* this WARN starts the outage; failed attempts that follow are DEBUG */
    r->series_rc = 0; /* ... whatever their reason, until it changes */
    if (why)
        CGA_LOG(CGA_LOG_ERROR, 0, "Redis connection failed: connection to %s lost (%s), reconnecting",
                r->where, why);
    /* in-flight commands fail with CGA_ECONNLOST (or CGA_ETIMEDOUT for the one that timed out),
     * now or, inside a hiredis callback, as soon as it returns */
    if (to_free) redisAsyncFree(to_free);
    if (r->closing) return;
    breaker_failure(r);
    notify(r, 0, rc);
    if (!r->closing) schedule_attempt(r);
}

/* hiredis is tearing down r->ac on its own (EOF, reset, error): first sign of it. */
static void ac_gone(cga_redis_t *r, redisAsyncContext *ac) {
    int rc = context_error_code(&ac->c);
    CGA_LOG(CGA_LOG_DEBUG, 0, "hiredis: %s", ac->c.errstr[0] ? ac->c.errstr : "disconnected");
    if (r->state == ST_READY) {
        conn_lost(r, rc, NULL, ac->c.errstr[0] ? ac->c.errstr : cga_strerror(rc));
    } else {
        r->ac = NULL;
        attempt_failed(r, rc);
    }
}

static void attempt_failed(cga_redis_t *r, int rc) {
    uint64_t now = uv_now(r->loop);
    uv_timer_stop(&r->timer);
    r->state = ST_DOWN;
    r->last_error = rc;
    if (r->attempt < 64) r->attempt++;
    if (r->series == 0) r->down_since = now;
    if (r->o.final_auth_at_start && !r->ever_connected &&
        (rc == CGA_EAUTH || rc == CGA_ESELECT)) {
        r->series_rc = rc;
        r->series++;
        if (!r->closing) notify(r, 0, rc); /* the caller gives up and says why */
        return;
    }
    if (r->series == 0 || (r->series_rc != 0 && rc != r->series_rc)) {
        if (r->errtext[0])
            CGA_LOG(CGA_LOG_ERROR, rc,
                    "Redis connection failed: cannot connect to %s (Redis said: %s), retrying",
                    r->where,
                    r->errtext);
        else
            CGA_LOG(CGA_LOG_ERROR, rc, "Redis connection failed: cannot connect to %s, retrying",
                    r->where);
    } else {
        CGA_LOG(CGA_LOG_DEBUG, rc, "attempt %u to connect to %s failed", r->series + 1,
                r->where);
    }
    r->series_rc = rc;
    r->series++;
    if (r->closing) return;
    breaker_failure(r);
    notify(r, 0, rc);
    if (!r->closing) schedule_attempt(r);
}

/* Drops the context of a failed attempt (we are inside one of its callbacks, or in a timer). */
static void drop_attempt(cga_redis_t *r, int rc) {
    redisAsyncContext *ac = r->ac;
    r->ac = NULL;
    if (ac) redisAsyncFree(ac);
    attempt_failed(r, rc);
}

static void became_ready(cga_redis_t *r) {
    uint64_t now = uv_now(r->loop);
    uv_timer_stop(&r->timer);
    r->state = ST_READY;
    cga_breaker_reset(r->breaker); /* a ready connection is proof enough, whatever the state */
    r->stats.connects++;
    r->last_error = 0;
    if (!r->ever_connected)
        CGA_LOG(CGA_LOG_INFO, 0, "connected to %s", r->where);
    else
        CGA_LOG(CGA_LOG_INFO, 0, "reconnected to %s after %.1f s (%u failed attempts)", r->where,
                (double)(now - r->down_since) / 1000.0, r->series ? r->series - 1 : 0);
    r->ever_connected = 1;
    r->attempt = 0;
    r->series = 0;
    /* commands that waited first, in order; then the subscriptions */
    rec_t *rec;
    while ((rec = r->queue.head)) {
        fifo_pop(&r->queue);
        if (send_rec(r, rec, now) != 0) { /* context going away: keep waiting */
            rec->next = r->queue.head;
            r->queue.head = rec;
            if (!r->queue.tail) r->queue.tail = rec;
            r->queue.n++;
            break;
        }
    }
    send_subscriptions(r);
    notify(r, 1, 0);
}

static void on_hs_reply(redisAsyncContext *ac, void *reply_, void *privdata) {
    cga_redis_t *r = ac->data;
    redisReply *reply = reply_;
    if (ac != r->ac || r->state != ST_HANDSHAKE) return; /* a context we let go of */
    if (!reply) {
        ac_gone(r, ac);
        return;
    }
    int step = (int)(uintptr_t)privdata;
    if (reply->type == REDIS_REPLY_ERROR) {
        /* an error may also be unsolicited ("ERR max number of clients reached" arrives as the
         * answer to whatever was sent first): only what speaks of the password or the db
         * index becomes CGA_EAUTH / CGA_ESELECT; anything else is retried like any failure */
        int rc = reply_error_code(reply->str);
        if (rc == CGA_EREPLY) {
            if (step == HS_AUTH && (strstr(reply->str, "AUTH") || strstr(reply->str, "password"))) {
                rc = CGA_EAUTH;
            } else if (step == HS_SELECT &&
                       (strstr(reply->str, "DB") || strstr(reply->str, "SELECT"))) {
                rc = CGA_ESELECT;
            } else if (step == HS_SCRIPT && strstr(reply->str, "ompil")) {
                /* a script that does not compile is the caller's bug, not the connection's:
                 * its EVALSHA calls will fail with the error; the connection goes on */
                CGA_LOG(CGA_LOG_ERROR, 0, "SCRIPT LOAD refused: %s", reply->str);
                rc = CGA_OK;
            }
        }
        if (rc != CGA_OK) {
            snprintf(r->errtext, sizeof r->errtext, "%s", reply->str);
            drop_attempt(r, rc); /* freed when this callback returns */
            return;
        }
    } else if (step == HS_SCRIPT && reply->type == REDIS_REPLY_STRING) {
        int known = 0;
        for (cga_redis_script_t *s = r->scripts; s && !known; s = s->next)
            known = reply->len == 40 && memcmp(reply->str, s->sha, 40) == 0;
        if (!known) CGA_LOG(CGA_LOG_ERROR, 0, "SCRIPT LOAD returned an unexpected id");
    }
    if (--r->hs_pending == 0) became_ready(r);
}

static void hs_send(cga_redis_t *r, int step, int argc, const char **argv, const size_t *lens) {
    if (redisAsyncCommandArgv(r->ac, on_hs_reply, (void *)(uintptr_t)step, argc, argv, lens) ==
        REDIS_OK)
        r->hs_pending++;
}

static void hs_script(cga_redis_t *r, const cga_redis_script_t *s) {
    const char *argv[3] = {"SCRIPT", "LOAD", s->lua};
    size_t lens[3] = {6, 4, s->len};
    hs_send(r, HS_SCRIPT, 3, argv, lens);
}

/* AUTH, SELECT, CLIENT SETNAME, SCRIPT LOADs, in one write; PING if none of them applies (it
 * also catches a server that wants a password we do not have: NOAUTH). */
static void send_handshake(cga_redis_t *r) {
    r->hs_pending = 0;
    if (r->password || r->username) {
        const char *argv[3] = {"AUTH", NULL, NULL};
        size_t lens[3] = {4, 0, 0};
        int argc = 1;
        if (r->username) {
            argv[argc] = r->username;
            lens[argc++] = strlen(r->username);
        }
        argv[argc] = r->password ? r->password : "";
        lens[argc] = strlen(argv[argc]);
        argc++;
        hs_send(r, HS_AUTH, argc, argv, lens);
    }
    if (r->o.db != 0) {
        char db[16];
        snprintf(db, sizeof db, "%d", r->o.db);
        const char *argv[2] = {"SELECT", db};
        size_t lens[2] = {6, strlen(db)};
        hs_send(r, HS_SELECT, 2, argv, lens);
    }
    if (r->client_name) {
        const char *argv[3] = {"CLIENT", "SETNAME", r->client_name};
        size_t lens[3] = {6, 7, strlen(r->client_name)};
        hs_send(r, HS_SETNAME, 3, argv, lens);
    }
    for (cga_redis_script_t *s = r->scripts; s; s = s->next) hs_script(r, s);
    if (r->hs_pending == 0) {
        const char *argv[1] = {"PING"};
        size_t lens[1] = {4};
        hs_send(r, HS_PING, 1, argv, lens);
    }
}

/* hiredis: the socket is connected (or failed). Never calls user code (see the top). */
static void on_connect(const redisAsyncContext *cac, int status) {
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    cga_redis_t *r = ac->data;
    if (ac != r->ac) return;
    if (status != REDIS_OK) {
        int rc = context_error_code(&ac->c);
        CGA_LOG(CGA_LOG_DEBUG, 0, "hiredis: %s", ac->c.errstr);
        r->ac = NULL; /* hiredis frees it when we return */
        attempt_failed(r, rc);
        return;
    }
    r->state = ST_HANDSHAKE;
    send_handshake(r);
}

static void on_disconnect(const redisAsyncContext *cac, int status) {
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    cga_redis_t *r = ac->data;
    if (ac != r->ac) return; /* let go of by us, or already handled on its first NULL reply */
    (void)status;
    ac_gone(r, ac);
}

/* Creates the hiredis context for the unix socket, or for ip (numeric) and the port. */
static void connect_to(cga_redis_t *r, const char *ip) {
    redisAsyncContext *ac = r->unix_path ? redisAsyncConnectUnix(r->unix_path)
                                         : redisAsyncConnect(ip, r->o.port);
    if (!ac) {
        attempt_failed(r, -ENOMEM);
        return;
    }
    if (ac->c.err) {
        int rc = context_error_code(&ac->c);
        CGA_LOG(CGA_LOG_DEBUG, 0, "hiredis: %s", ac->c.errstr);
        redisAsyncFree(ac);
        attempt_failed(r, rc);
        return;
    }
    ac->data = r;
    if (ev_attach(r, ac) != REDIS_OK) {
        redisAsyncFree(ac);
        attempt_failed(r, -EIO);
        return;
    }
    if (!r->unix_path) redisEnableKeepAlive(&ac->c);
    r->ac = ac;
    r->state = ST_CONNECTING;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
}

/* hiredis 0.14 resolves host names with a blocking getaddrinfo() on the loop thread (seconds
 * when DNS is down, on every attempt); we resolve on libuv's thread pool and give hiredis the
 * address. IPv4 first, as hiredis does. */
static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
    cga_redis_t *r = req->data;
    int current = req == r->gai;
    if (current) r->gai = NULL;
    char ip[64] = "";
    const struct addrinfo *pick = NULL;
    for (const struct addrinfo *a = status == 0 ? res : NULL; a && !pick; a = a->ai_next)
        if (a->ai_family == AF_INET) pick = a;
    for (const struct addrinfo *a = status == 0 ? res : NULL; a && !pick; a = a->ai_next)
        if (a->ai_family == AF_INET6) pick = a;
    if (pick && pick->ai_family == AF_INET)
        uv_ip4_name((const struct sockaddr_in *)pick->ai_addr, ip, sizeof ip);
    else if (pick)
        uv_ip6_name((const struct sockaddr_in6 *)pick->ai_addr, ip, sizeof ip);
    uv_freeaddrinfo(res);
    free(req);
    r->open_reqs--;
    if (r->closing) {
        maybe_release(r);
        return;
    }
    if (!current || r->state != ST_RESOLVING) return; /* timed out meanwhile */
    if (status < 0 || !ip[0]) {
        attempt_failed(r, status < 0 ? status : UV_EAI_NODATA);
        return;
    }
    CGA_LOG(CGA_LOG_DEBUG, 0, "%s is %s", r->host, ip);
    connect_to(r, ip);
}

static void start_attempt(cga_redis_t *r) {
    r->errtext[0] = '\0';
    /* one deadline for the whole attempt: resolution, connect and handshake */
    uv_timer_start(&r->timer, on_timer, r->o.connect_timeout_ms, 0);
    if (r->unix_path || r->numeric_host) {
        connect_to(r, r->host);
        return;
    }
    uv_getaddrinfo_t *req = cga_malloc(sizeof *req);
    req->data = r;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = uv_getaddrinfo(r->loop, req, on_resolved, r->host, NULL, &hints);
    if (rc < 0) {
        free(req);
        attempt_failed(r, rc);
        return;
    }
    r->gai = req;
    r->open_reqs++;
    r->state = ST_RESOLVING;
}

static void on_timer(uv_timer_t *t) {
    cga_redis_t *r = t->data;
    switch (r->state) {
    case ST_DOWN: start_attempt(r); break;
    case ST_RESOLVING:
        uv_cancel((uv_req_t *)r->gai); /* its callback still runs, and is ignored */
        r->gai = NULL;
        snprintf(r->errtext, sizeof r->errtext, "name resolution took over %u ms",
                 r->o.connect_timeout_ms);
        attempt_failed(r, CGA_ETIMEDOUT);
        break;
    case ST_CONNECTING:
    case ST_HANDSHAKE:
        /* not connected and ready within connect_timeout_ms (a stopped server accepts TCP in
         * its backlog but never answers) */
        snprintf(r->errtext, sizeof r->errtext, "no answer within %u ms",
                 r->o.connect_timeout_ms);
        drop_attempt(r, CGA_ETIMEDOUT);
        break;
    default: break;
    }
}

static void on_tick(uv_timer_t *t) {
    cga_redis_t *r = t->data;
    uint64_t now = uv_now(r->loop);
    while (r->queue.head && r->queue.head->deadline <= now && !r->closing)
        finish(r, fifo_pop(&r->queue), CGA_ETIMEDOUT, NULL);
    if (r->closing || r->state != ST_READY) return;
    rec_t *head = r->inflight.head;
    if (!head || head->deadline > now) return;
    head->timed_out = 1;
    CGA_LOG(CGA_LOG_WARN, CGA_ETIMEDOUT, "no reply from %s within %u ms, reconnecting", r->where,
            head->timeout_ms);
    conn_lost(r, CGA_ETIMEDOUT, r->ac, NULL); /* logged above */
}

/* ---------------------------------------------------------------- replies */

static void on_reply(redisAsyncContext *ac, void *reply_, void *privdata) {
    cga_redis_t *r = ac->data;
    rec_t *rec = privdata;
    redisReply *reply = reply_;
    fifo_remove(&r->inflight, rec);
    if (!reply) {
        int status = rec->timed_out ? CGA_ETIMEDOUT : r->closing ? CGA_ECANCELED : CGA_ECONNLOST;
        if (ac == r->ac) ac_gone(r, ac);
        finish(r, rec, status, NULL);
        return;
    }
    r->stats.replies++;
    int status = CGA_OK;
    if (reply->type == REDIS_REPLY_ERROR) {
        if (rec->script && !rec->retried && strncmp(reply->str, "NOSCRIPT", 8) == 0 &&
            ac == r->ac && r->state == ST_READY && retry_evalsha(r, rec) == 0)
            return;
        status = reply_error_code(reply->str);
    }
    finish(r, rec, status, reply);
}

static void free_dead_subs(cga_redis_t *r) {
    sub_t **pp = &r->subs;
    while (*pp) {
        sub_t *s = *pp;
        if (s->cb) {
            pp = &s->next;
            continue;
        }
        *pp = s->next;
        free(s->channel);
        free(s);
    }
}

/* Persistent subscription callback (one per channel in hiredis): "subscribe" confirmations and
 * "message" pushes; NULL when the context goes away. Never under a command deadline. */
static void on_sub_reply(redisAsyncContext *ac, void *reply_, void *privdata) {
    cga_redis_t *r = ac->data;
    redisReply *reply = reply_;
    (void)privdata;
    if (!reply) {
        if (ac == r->ac) ac_gone(r, ac);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3) return;
    redisReply *kind = reply->element[0], *ch = reply->element[1], *msg = reply->element[2];
    if (kind->type != REDIS_REPLY_STRING || strcasecmp(kind->str, "message") != 0) return;
    if (ch->type != REDIS_REPLY_STRING || msg->type != REDIS_REPLY_STRING) return;
    r->dispatching++;
    for (sub_t *s = r->subs; s && !r->closing; s = s->next)
        if (s->cb && s->len == ch->len && memcmp(s->channel, ch->str, ch->len) == 0)
            s->cb(s->channel, msg->str, msg->len, s->arg);
    if (--r->dispatching == 0 && !r->closing) free_dead_subs(r);
}

/* ---------------------------------------------------------------- public API */

void cga_redis_opts_init(cga_redis_opts_t *o) {
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 6379;
    o->connect_timeout_ms = 2000;
    o->command_timeout_ms = 5000;
    o->backoff_base_ms = 100;
    o->backoff_cap_ms = 5000;
    o->max_queued = 100000;
    o->queue_timeout_ms = 10000;
    o->breaker_failures = 5;
    o->breaker_open_ms = 30000;
}

static char *dup_nonempty(const char *s) { return s && *s ? cga_strdup(s) : NULL; }

static int client_name_ok(const char *s) {
    for (; s && *s; s++)
        if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 127) return 0;
    return 1;
}

int cga_redis_create(cga_redis_t **out, uv_loop_t *loop, const cga_redis_opts_t *opts) {
    if (!out || !loop) return CGA_EINVAL;
    *out = NULL;
    cga_redis_opts_t d;
    cga_redis_opts_init(&d);
    const cga_redis_opts_t *o = opts ? opts : &d;
    int tcp = !(o->unix_path && *o->unix_path);
    if ((tcp && (o->port < 0 || o->port > 65535)) || o->db < 0 || !client_name_ok(o->client_name))
        return CGA_EINVAL;

    cga_redis_t *r = cga_calloc(1, sizeof *r);
    r->loop = loop;
    r->o = *o;
#define DEFAULT(field) \
    if (!r->o.field) r->o.field = d.field
    DEFAULT(port);
    DEFAULT(connect_timeout_ms);
    DEFAULT(command_timeout_ms);
    DEFAULT(backoff_base_ms);
    DEFAULT(backoff_cap_ms);
    DEFAULT(max_queued);
    DEFAULT(queue_timeout_ms);
    DEFAULT(breaker_failures);
    DEFAULT(breaker_open_ms);
#undef DEFAULT
    if (r->o.backoff_cap_ms < r->o.backoff_base_ms) r->o.backoff_cap_ms = r->o.backoff_base_ms;
    r->host = cga_strdup(o->host && *o->host ? o->host : d.host);
    r->unix_path = dup_nonempty(o->unix_path);
    r->username = dup_nonempty(o->username);
    r->password = dup_nonempty(o->password);
    r->client_name = dup_nonempty(o->client_name);
    r->o.host = r->host;
    r->o.unix_path = r->unix_path;
    r->o.username = r->username;
    r->o.password = r->password;
    r->o.client_name = r->client_name;
    if (r->password) cga_log_add_secret(r->password);
    if (r->unix_path)
        snprintf(r->where, sizeof r->where, "unix:%s", r->unix_path);
    else if (strchr(r->host, ':')) /* IPv6 */
        snprintf(r->where, sizeof r->where, "[%s]:%d", r->host, r->o.port);
    else
        snprintf(r->where, sizeof r->where, "%s:%d", r->host, r->o.port);
    unsigned char addr[sizeof(struct in6_addr)];
    r->numeric_host =
        inet_pton(AF_INET, r->host, addr) == 1 || inet_pton(AF_INET6, r->host, addr) == 1;
    r->rng = (uint32_t)(uv_hrtime() ^ ((uintptr_t)r >> 4) ^ ((uint32_t)getpid() * 2654435761u));
    if (!r->rng) r->rng = 0x9E3779B9u;

    int rc = cga_breaker_create(&r->breaker, r->o.breaker_failures, r->o.breaker_open_ms);
    if (rc != CGA_OK) goto fail;
    uv_timer_init(loop, &r->timer); /* cannot fail */
    uv_timer_init(loop, &r->tick);
    r->open_handles = 2;
    r->timer.data = r;
    r->tick.data = r;
    uv_timer_start(&r->tick, on_tick, TICK_MS, TICK_MS);
    uv_unref((uv_handle_t *)&r->tick); /* the connection's own handles keep the loop alive */
    r->state = ST_DOWN;
    uv_timer_start(&r->timer, on_timer, 0, 0); /* first attempt on the next loop turn, after the
                                                  caller has added its state listeners */
    *out = r;
    return CGA_OK;

fail:
    cga_breaker_free(r->breaker);
    free(r->host);
    free(r->unix_path);
    free(r->username);
    free(r->password);
    free(r->client_name);
    free(r);
    return rc;
}

static void release(cga_redis_t *r) {
    rec_t *rec;
    while ((rec = fifo_pop(&r->inflight))) finish(r, rec, CGA_ECANCELED, NULL); /* none, normally */
    while ((rec = fifo_pop(&r->queue))) finish(r, rec, CGA_ECANCELED, NULL);
    while ((rec = r->freelist)) {
        r->freelist = rec->next;
        free(rec);
    }
    while (r->scripts) {
        cga_redis_script_t *s = r->scripts;
        r->scripts = s->next;
        free(s->lua);
        free(s);
    }
    while (r->subs) {
        sub_t *s = r->subs;
        r->subs = s->next;
        free(s->channel);
        free(s);
    }
    cga_breaker_free(r->breaker);
    free(r->host);
    free(r->unix_path);
    free(r->username);
    if (r->password) {
        explicit_bzero(r->password, strlen(r->password));
        free(r->password);
    }
    free(r->client_name);
    void (*done)(void *) = r->done;
    void *arg = r->done_arg;
    free(r);
    if (done) done(arg);
}

static void on_handle_closed(uv_handle_t *h) {
    cga_redis_t *r = h->data;
    r->open_handles--;
    maybe_release(r);
}

void cga_redis_close(cga_redis_t *r, void (*done)(void *arg), void *arg) {
    if (!r || r->closing) return;
    r->closing = 1;
    r->done = done;
    r->done_arg = arg;
    r->state = ST_CLOSED;
    uv_timer_stop(&r->timer);
    uv_timer_stop(&r->tick);
    CGA_LOG(CGA_LOG_DEBUG, 0, "closing the connection to %s", r->where);
    fail_queue(r, CGA_ECANCELED);
    redisAsyncContext *ac = r->ac;
    r->ac = NULL;
    if (ac) redisAsyncFree(ac); /* in-flight commands get CGA_ECANCELED */
    if (r->gai) {
        uv_cancel((uv_req_t *)r->gai); /* r is freed after its callback */
        r->gai = NULL;
    }
    uv_close((uv_handle_t *)&r->timer, on_handle_closed);
    uv_close((uv_handle_t *)&r->tick, on_handle_closed);
}

int cga_redis_on_state(cga_redis_t *r, cga_redis_state_cb cb, void *arg) {
    if (!r || !cb) return CGA_EINVAL;
    for (int i = 0; i < r->nlisteners; i++) {
        if (!r->listeners[i].cb) { /* a slot given back by cga_redis_off_state */
            r->listeners[i].cb = cb;
            r->listeners[i].arg = arg;
            return CGA_OK;
        }
    }
    if (r->nlisteners >= MAX_LISTENERS) return CGA_EINVAL;
    r->listeners[r->nlisteners].cb = cb;
    r->listeners[r->nlisteners].arg = arg;
    r->nlisteners++;
    return CGA_OK;
}

void cga_redis_off_state(cga_redis_t *r, cga_redis_state_cb cb, void *arg) {
    if (!r) return;
    for (int i = 0; i < r->nlisteners; i++) /* cleared, not moved: safe inside notify() */
        if (r->listeners[i].cb == cb && r->listeners[i].arg == arg) r->listeners[i].cb = NULL;
}

int cga_redis_is_connected(const cga_redis_t *r) { return r && r->state == ST_READY; }

int cga_redis_last_error(const cga_redis_t *r) { return r ? r->last_error : CGA_EINVAL; }

struct cga_breaker_s *cga_redis_breaker(cga_redis_t *r) { return r ? r->breaker : NULL; }

int cga_redis_command(cga_redis_t *r, unsigned flags, cga_redis_reply_cb cb, void *arg,
                      const char *fmt, ...) {
    if (!r || !fmt) return CGA_EINVAL;
    if (r->closing) return CGA_ECLOSED;
    char *buf = NULL;
    va_list ap;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&buf, fmt, ap);
    va_end(ap);
    if (len <= 0) {
        if (buf) redisFreeCommand(buf);
        return CGA_EINVAL;
    }
    return submit(r, flags, 0, cb, arg, buf, (size_t)len, NULL);
}

int cga_redis_commandv(cga_redis_t *r, unsigned flags, unsigned timeout_ms,
                       cga_redis_reply_cb cb, void *arg, int argc, const char **argv,
                       const size_t *argvlen) {
    if (!r || argc <= 0 || !argv || !argvlen) return CGA_EINVAL;
    if (r->closing) return CGA_ECLOSED;
    char *buf = NULL;
    int len = redisFormatCommandArgv(&buf, argc, argv, argvlen);
    if (len <= 0) return CGA_EINVAL;
    return submit(r, flags, timeout_ms, cb, arg, buf, (size_t)len, NULL);
}

int cga_redis_script_register(cga_redis_t *r, const char *lua, cga_redis_script_t **out) {
    if (!r || !lua || !out) return CGA_EINVAL;
    if (r->closing) return CGA_ECLOSED;
    char sha[41];
    size_t len = strlen(lua);
    sha1_hex(lua, len, sha);
    for (cga_redis_script_t *s = r->scripts; s; s = s->next) {
        if (memcmp(s->sha, sha, 40) == 0) {
            *out = s;
            return CGA_OK;
        }
    }
    cga_redis_script_t *s = cga_calloc(1, sizeof *s);
    s->lua = cga_memdup(lua, len + 1);
    s->len = len;
    memcpy(s->sha, sha, sizeof sha);
    if (r->scripts_tail) r->scripts_tail->next = s;
    else r->scripts = s;
    r->scripts_tail = s;
    if (r->state == ST_READY) send_script_load(r, s, uv_now(r->loop));
    else if (r->state == ST_HANDSHAKE) hs_script(r, s);
    *out = s;
    return CGA_OK;
}

const char *cga_redis_script_sha(const cga_redis_script_t *s) { return s ? s->sha : NULL; }

int cga_redis_evalsha(cga_redis_t *r, cga_redis_script_t *s, unsigned flags,
                      cga_redis_reply_cb cb, void *arg, int nkeys, int argc, const char **argv,
                      const size_t *argvlen) {
    if (!r || !s || nkeys < 0 || argc < 0 || nkeys > argc || (argc && (!argv || !argvlen)))
        return CGA_EINVAL;
    if (r->closing) return CGA_ECLOSED;
    const char *sv[64];
    size_t sl[64];
    size_t n = (size_t)argc + 3;
    const char **av = n <= 64 ? sv : cga_malloc(n * sizeof *av);
    size_t *al = n <= 64 ? sl : cga_malloc(n * sizeof *al);
    char nk[16];
    snprintf(nk, sizeof nk, "%d", nkeys);
    av[0] = "EVALSHA";
    al[0] = 7;
    av[1] = s->sha;
    al[1] = 40;
    av[2] = nk;
    al[2] = strlen(nk);
    for (int i = 0; i < argc; i++) {
        av[i + 3] = argv[i];
        al[i + 3] = argvlen[i];
    }
    char *buf = NULL;
    int len = redisFormatCommandArgv(&buf, (int)n, av, al);
    if (av != sv) free(av);
    if (al != sl) free(al);
    if (len <= 0) return CGA_EINVAL;
    return submit(r, flags, 0, cb, arg, buf, (size_t)len, s);
}

int cga_redis_subscribe(cga_redis_t *r, const char *channel, cga_redis_message_cb cb,
                        void *arg) {
    if (!r || !channel || !*channel || !cb) return CGA_EINVAL;
    if (r->closing) return CGA_ECLOSED;
    if (r->inflight.n || r->queue.n) return CGA_EINVAL; /* a subscriber connection only */
    size_t len = strlen(channel);
    int known = 0;
    for (sub_t *s = r->subs; s && !known; s = s->next)
        known = s->cb && s->len == len && memcmp(s->channel, channel, len) == 0;
    sub_t *s = cga_calloc(1, sizeof *s);
    s->channel = cga_strndup(channel, len);
    s->len = len;
    s->cb = cb;
    s->arg = arg;
    sub_t **pp = &r->subs;
    while (*pp) pp = &(*pp)->next;
    *pp = s;
    r->subscriber = 1;
    if (r->state == ST_READY && !known) {
        const char *argv[2] = {"SUBSCRIBE", s->channel};
        size_t lens[2] = {9, len};
        redisAsyncCommandArgv(r->ac, on_sub_reply, r, 2, argv, lens);
    }
    return CGA_OK;
}

int cga_redis_unsubscribe(cga_redis_t *r, const char *channel, cga_redis_message_cb cb,
                          void *arg) {
    if (!r || !channel || !cb) return CGA_EINVAL;
    size_t len = strlen(channel);
    int found = 0, left = 0;
    for (sub_t *s = r->subs; s; s = s->next) {
        if (!s->cb || s->len != len || memcmp(s->channel, channel, len) != 0) continue;
        if (!found && s->cb == cb && s->arg == arg) {
            s->cb = NULL;
            found = 1;
        } else {
            left = 1;
        }
    }
    if (!found) return CGA_ENOTFOUND;
    if (!left && r->state == ST_READY) {
        const char *argv[2] = {"UNSUBSCRIBE", channel};
        size_t lens[2] = {11, len};
        redisAsyncCommandArgv(r->ac, NULL, NULL, 2, argv, lens);
    }
    if (!r->dispatching) free_dead_subs(r);
    return CGA_OK;
}

void cga_redis_stats(const cga_redis_t *r, cga_redis_stats_t *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!r) return;
    *out = r->stats;
    out->queued = r->queue.n;
    out->in_flight = r->inflight.n;
}

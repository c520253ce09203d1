#define CGA_LOG_COMPONENT "lock"

#include "cgalpha/lock.h"

#include <errno.h>
#include <fcntl.h>
#include <hiredis.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <uv.h>

#include "cgalpha/alloc.h"
#include "cgalpha/clock.h"
#include "cgalpha/err.h"
#include "cgalpha/keys.h"
#include "cgalpha/log.h"
#include "cgalpha/redis.h"

#define TOKEN_BYTES 16
#define TOKEN_HEX (2 * TOKEN_BYTES + 1)
#define TTL_MIN_MS 300u
#define TTL_DEFAULT_MS 30000u
#define RETRY_DEFAULT_MS 1000u

/* SET NX PX, except that a key already holding our token counts as ours (and is extended): an
 * attempt whose reply was lost (CGA_ECONNLOST) may have set it, and the next attempt must not
 * take our own key for another holder's. 1 = held by us, 0 = held by another. */
static const char ACQUIRE_LUA[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end\n"
    "if v then return 0 end\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
    "return 1\n";

/* Compare-and-extend: 1 = extended, 0 = the key is gone or holds another token. */
static const char RENEW_LUA[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  return redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "end\n"
    "return 0\n";

/* Compare-and-delete: 1 = deleted, 0 = not ours (or no key). */
static const char RELEASE_LUA[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  return redis.call('DEL', KEYS[1])\n"
    "end\n"
    "return 0\n";

enum op_kind {
    OP_ACQUIRE,       /* cga_lock_acquire(): user callback */
    OP_CAMPAIGN,      /* one attempt of the campaign */
    OP_SINGLE,        /* periodic attempt while running as the single instance */
    OP_RENEW,         /* periodic renewal while held */
    OP_RELEASE,       /* cga_lock_release(): user callback */
    OP_CLOSE_RELEASE, /* release on close: the lock is freed after its reply */
};

/* One command in flight (or refused up front and completing on the next loop turn). It carries
 * copies of the key and token it was sent with: replies are matched to the holding period they
 * belong to, and an acquisition that succeeds after the lock was freed can still undo itself. */
typedef struct lock_op_s lock_op_t;
struct lock_op_s {
    lock_op_t *prev, *next; /* in l->ops while linked */
    cga_lock_t *l;          /* NULL once detached (the lock was freed before the reply) */
    enum op_kind kind;
    int linked;
    int renew_check; /* an attempt made while held: sent as a renewal, 0 means lost */
    int deferred;    /* refused up front: completes from the kick handle with status */
    int status;
    cga_lock_cb cb;
    void *arg;
    uint64_t sent_ms; /* monotonic, taken before the command was issued */
    cga_redis_t *redis;
    cga_redis_script_t *release_script;
    char token[TOKEN_HEX];
    char key[CGA_KEY_MAX];
};

struct cga_lock_s {
    uv_loop_t *loop;
    cga_redis_t *redis;
    cga_redis_script_t *acquire_script, *renew_script, *release_script;
    char key[CGA_KEY_MAX];
    char token[TOKEN_HEX];
    unsigned ttl_ms;
    int single_instance; /* configured */

    int held;            /* we hold the lock (in Redis, or as the single instance) */
    int single;          /* held only as the single instance: Redis could not be asked */
    int single_logged;
    uint64_t last_ok_ms; /* send time of the last command that confirmed our key */

    uv_timer_t renew_timer; /* renewals while held; SET NX attempts while single */
    uv_timer_t retry_timer; /* campaign attempts */
    uv_idle_t kick;         /* completes ops refused up front, on the next loop turn */

    int campaigning;
    int campaign_failing; /* the last campaign attempt failed (log a failing streak once) */
    unsigned retry_ms;
    cga_lock_cb campaign_cb;
    void *campaign_arg;

    void (*lost_cb)(void *arg);
    void *lost_arg;

    lock_op_t *ops; /* ops linked to this lock */

    int closing;
    int handles_open;
    int close_release_pending;
    void (*done_cb)(void *arg);
    void *done_arg;
};

static void renew_tick(uv_timer_t *t);
static void retry_tick(uv_timer_t *t);
static void kick_cb(uv_idle_t *h);

/* --- tokens ------------------------------------------------------------------------------- */

static int random_bytes(unsigned char *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(buf + got, n - got, 0);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR) continue;
        break;
    }
    if (got == n) return CGA_OK;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR) continue;
        int rc = r < 0 ? -errno : -EIO;
        close(fd);
        return rc;
    }
    close(fd);
    return CGA_OK;
}

static int new_token(char out[TOKEN_HEX]) {
    static const char hex[] = "0123456789abcdef";
    unsigned char b[TOKEN_BYTES];
    int rc = random_bytes(b, sizeof b);
    if (rc != CGA_OK) return rc;
    for (size_t i = 0; i < TOKEN_BYTES; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[2 * TOKEN_BYTES] = '\0';
    return CGA_OK;
}

/* A fresh token for the next holding period, so that replies to commands sent under the old
 * one are recognised as stale. */
static void rotate_token(cga_lock_t *l) {
    char t[TOKEN_HEX];
    int rc = new_token(t);
    if (rc != CGA_OK) {
        CGA_LOG(CGA_LOG_WARN, rc, "%s: no randomness for a new token, keeping the old one",
                l->key);
        return;
    }
    memcpy(l->token, t, sizeof t);
}

/* --- ops ---------------------------------------------------------------------------------- */

static void op_link(cga_lock_t *l, lock_op_t *op) {
    op->prev = NULL;
    op->next = l->ops;
    if (l->ops) l->ops->prev = op;
    l->ops = op;
    op->linked = 1;
}

static void op_unlink(cga_lock_t *l, lock_op_t *op) {
    if (!op->linked) return;
    if (op->prev) op->prev->next = op->next;
    else l->ops = op->next;
    if (op->next) op->next->prev = op->prev;
    op->prev = op->next = NULL;
    op->linked = 0;
}

static lock_op_t *op_new(cga_lock_t *l, enum op_kind kind, cga_lock_cb cb, void *arg) {
    lock_op_t *op = cga_calloc(1, sizeof *op);
    op->l = l;
    op->kind = kind;
    op->cb = cb;
    op->arg = arg;
    op->redis = l->redis;
    op->release_script = l->release_script;
    memcpy(op->token, l->token, sizeof op->token);
    memcpy(op->key, l->key, sizeof op->key);
    op_link(l, op);
    return op;
}

static void on_reply(int status, redisReply *reply, void *arg);

/* Runs script for op (KEYS[1] = key, ARGV = token [, ttl]) with FAILFAST: a lock decision must
 * not wait in a queue. Returns 1 if sent; a refusal up front completes the op on the next loop
 * turn with that status (or, while closing, leaves it for close to cancel) and returns 0. */
static int op_send(cga_lock_t *l, lock_op_t *op, cga_redis_script_t *script, int with_ttl) {
    char ttl[16];
    snprintf(ttl, sizeof ttl, "%u", l->ttl_ms);
    const char *argv[3] = {op->key, op->token, ttl};
    size_t argvlen[3] = {strlen(op->key), strlen(op->token), strlen(ttl)};
    op->sent_ms = cga_clock_mono_ms();
    int rc = cga_redis_evalsha(l->redis, script, CGA_REDIS_FAILFAST, on_reply, op, 1,
                               with_ttl ? 3 : 2, argv, argvlen);
    if (rc == CGA_OK) return 1;
    op->deferred = 1;
    op->status = rc;
    if (!l->closing) uv_idle_start(&l->kick, kick_cb);
    return 0;
}

/* Compare-and-delete of key/token, outcome ignored. */
static void release_quietly(cga_redis_t *redis, cga_redis_script_t *script, const char *key,
                            const char *token) {
    const char *argv[2] = {key, token};
    size_t argvlen[2] = {strlen(key), strlen(token)};
    (void)cga_redis_evalsha(redis, script, CGA_REDIS_FAILFAST, NULL, NULL, 1, 2, argv, argvlen);
}

static int is_unreachable(int status) {
    return status == CGA_ENOTCONN || status == CGA_ECONNLOST || status == CGA_ETIMEDOUT ||
           status == CGA_EBREAKER;
}

/* The script's answer: 1 or 0, or -1 with *status set when there is none. */
static int script_result(int *status, const redisReply *reply) {
    if (*status != CGA_OK) return -1;
    if (!reply || reply->type != REDIS_REPLY_INTEGER) {
        *status = CGA_EPROTO;
        return -1;
    }
    return reply->integer ? 1 : 0;
}

/* --- holding ------------------------------------------------------------------------------ */

static unsigned renew_interval(const cga_lock_t *l) {
    return l->ttl_ms / 3;
}

/* Next renewal tick: every ttl/3, but never after the local deadline (last confirmation +
 * ttl), where the lock must be given up if nothing confirmed it since. */
static void arm_renewal(cga_lock_t *l) {
    uint64_t delay = renew_interval(l);
    if (!l->single) {
        uint64_t now = cga_clock_mono_ms();
        uint64_t deadline = l->last_ok_ms + l->ttl_ms;
        uint64_t left = deadline > now ? deadline - now : 0;
        if (left < delay) delay = left;
    }
    if (delay == 0) delay = 1; /* never a 0 ms timer re-armed from its own callback */
    uv_timer_start(&l->renew_timer, renew_tick, delay, 0);
}

static void enter_single(cga_lock_t *l, int status) {
    l->held = 1;
    l->single = 1;
    if (!l->single_logged) {
        CGA_LOG(CGA_LOG_WARN, status,
                "%s: Redis unreachable; running as the single instance (single_instance set), "
                "lock assumed held",
                l->key);
        l->single_logged = 1;
    } else {
        CGA_LOG(CGA_LOG_DEBUG, status, "%s: running as the single instance again", l->key);
    }
    arm_renewal(l);
}

/* Gives the lock up: stops renewing, forgets the token and tells the owner (once). */
static void lose(cga_lock_t *l, const char *why, int release_old) {
    char old[TOKEN_HEX];
    memcpy(old, l->token, sizeof old);
    l->held = 0;
    l->single = 0;
    uv_timer_stop(&l->renew_timer);
    /* Our key may still be there (Redis unreachable): delete it, if still ours, as soon as
     * Redis answers again, so that a standby need not wait for it to expire. */
    if (release_old) release_quietly(l->redis, l->release_script, l->key, old);
    rotate_token(l);
    CGA_LOG(CGA_LOG_WARN, 0, "%s: lock lost: %s", l->key, why);
    if (l->lost_cb) l->lost_cb(l->lost_arg);
}

/* Applies the outcome of an acquisition attempt (OP_ACQUIRE, OP_CAMPAIGN, OP_SINGLE) to the
 * lock; returns acquired and sets *status to what the caller reports. May call the lost
 * callback. */
static int apply_attempt(cga_lock_t *l, lock_op_t *op, int res, int *status) {
    if (strcmp(op->token, l->token) != 0) {
        /* Sent under a token given up since (released or lost): not ours any more. */
        if (res == 1) release_quietly(op->redis, op->release_script, op->key, op->token);
        *status = CGA_OK;
        return 0;
    }
    if (res == 1) {
        *status = CGA_OK;
        if (!l->held || l->single) {
            if (l->single) CGA_LOG(CGA_LOG_INFO, 0, "%s: Redis reachable again, lock held there",
                                   l->key);
            else CGA_LOG(CGA_LOG_INFO, 0, "%s: lock acquired", l->key);
            l->held = 1;
            l->single = 0;
            l->last_ok_ms = op->sent_ms;
            arm_renewal(l);
        } else if (op->sent_ms > l->last_ok_ms) {
            l->last_ok_ms = op->sent_ms;
        }
        return 1;
    }
    if (res == 0) {
        *status = CGA_OK;
        if (op->renew_check && l->single) return 1; /* expired during the outage: re-SET soon */
        if (l->held)
            lose(l, l->single ? "held by another process although running as the single instance"
                              : "taken by another holder or expired",
                 0);
        return 0;
    }
    /* No answer. */
    if (l->held) {
        *status = CGA_OK; /* still ours: until the local deadline, or as the single instance */
        return 1;
    }
    if (is_unreachable(*status) && l->single_instance) {
        if (!l->held) enter_single(l, *status);
        *status = CGA_OK;
        return 1;
    }
    return 0;
}

static void issue_attempt(cga_lock_t *l, enum op_kind kind, cga_lock_cb cb, void *arg) {
    lock_op_t *op = op_new(l, kind, cb, arg);
    if (l->held && !l->single) {
        op->renew_check = 1;
        op_send(l, op, l->renew_script, 1);
    } else {
        op_send(l, op, l->acquire_script, 1);
    }
}

static void renew_tick(uv_timer_t *t) {
    cga_lock_t *l = t->data;
    if (!l->held || l->closing) return;
    if (l->single) {
        issue_attempt(l, OP_SINGLE, NULL, NULL);
        arm_renewal(l);
        return;
    }
    uint64_t now = cga_clock_mono_ms();
    if (now >= l->last_ok_ms + l->ttl_ms) {
        if (l->single_instance) {
            enter_single(l, CGA_ETIMEDOUT);
            return;
        }
        lose(l, "no renewal succeeded for a whole ttl (Redis unreachable?)", 1);
        return;
    }
    lock_op_t *op = op_new(l, OP_RENEW, NULL, NULL);
    op_send(l, op, l->renew_script, 1);
    arm_renewal(l);
}

/* --- campaign ----------------------------------------------------------------------------- */

static void retry_tick(uv_timer_t *t) {
    cga_lock_t *l = t->data;
    if (!l->campaigning || l->closing) return;
    issue_attempt(l, OP_CAMPAIGN, NULL, NULL);
}

static void campaign_result(cga_lock_t *l, int status, int acquired) {
    if (!l->campaigning || l->closing) return;
    if (acquired) {
        l->campaigning = 0;
        if (l->campaign_failing)
            CGA_LOG(CGA_LOG_INFO, 0, "%s: campaign: Redis answers again", l->key);
        l->campaign_failing = 0;
        l->campaign_cb(CGA_OK, 1, l->campaign_arg);
        return;
    }
    if (status != CGA_OK && !l->campaign_failing) {
        CGA_LOG(CGA_LOG_WARN, status, "%s: campaign: cannot ask Redis, retrying every %u ms",
                l->key, l->retry_ms);
        l->campaign_failing = 1;
    } else if (status == CGA_OK && l->campaign_failing) {
        CGA_LOG(CGA_LOG_INFO, 0, "%s: campaign: Redis answers again, lock held elsewhere",
                l->key);
        l->campaign_failing = 0;
    }
    uv_timer_start(&l->retry_timer, retry_tick, l->retry_ms, 0);
}

/* --- completion --------------------------------------------------------------------------- */

static void maybe_finish(cga_lock_t *l);

/* Completes a linked op with the command's outcome (reply is NULL unless status is CGA_OK or a
 * Redis error); frees op. */
static void op_complete(lock_op_t *op, int status, redisReply *reply) {
    cga_lock_t *l = op->l;
    op_unlink(l, op);
    int res = script_result(&status, reply);
    int acquired = 0;
    switch (op->kind) {
    case OP_ACQUIRE:
    case OP_CAMPAIGN:
    case OP_SINGLE:
        acquired = apply_attempt(l, op, res, &status);
        if (op->kind == OP_ACQUIRE) {
            op->cb(status, acquired, op->arg);
        } else if (op->kind == OP_CAMPAIGN) {
            campaign_result(l, status, acquired);
        }
        break;
    case OP_RENEW:
        if (!l->held || l->single || strcmp(op->token, l->token) != 0) break; /* stale */
        if (res == 1) {
            if (op->sent_ms > l->last_ok_ms) l->last_ok_ms = op->sent_ms;
        } else if (res == 0) {
            lose(l, "renewal found the key gone or holding another token", 0);
        } else {
            CGA_LOG(CGA_LOG_DEBUG, status, "%s: renewal failed", l->key);
        }
        break;
    case OP_RELEASE:
        if (op->cb) op->cb(status, 0, op->arg);
        break;
    case OP_CLOSE_RELEASE:
        if (status != CGA_OK)
            CGA_LOG(CGA_LOG_DEBUG, status, "%s: release on close failed", l->key);
        l->close_release_pending = 0;
        free(op);
        maybe_finish(l); /* may free l */
        return;
    }
    free(op);
}

static void on_reply(int status, redisReply *reply, void *arg) {
    lock_op_t *op = arg;
    if (op->l) {
        op_complete(op, status, reply);
        return;
    }
    /* The lock was freed meanwhile: an acquisition that succeeded now must be undone. */
    int res = script_result(&status, reply);
    if (res == 1 && op->kind != OP_RENEW && op->kind != OP_RELEASE &&
        op->kind != OP_CLOSE_RELEASE)
        release_quietly(op->redis, op->release_script, op->key, op->token);
    free(op);
}

/* An idle handle rather than a 0 ms timer: with libuv < 1.45 a 0 ms timer started from a timer
 * callback runs again in the same pass, so a caller retrying from its callback would starve
 * I/O. */
static void kick_cb(uv_idle_t *h) {
    cga_lock_t *l = h->data;
    uv_idle_stop(h);
    /* Take this turn's deferred ops first: callbacks may defer new ones (for the next turn). */
    lock_op_t *batch = NULL;
    for (lock_op_t *op = l->ops, *next; op; op = next) {
        next = op->next;
        if (!op->deferred) continue;
        op_unlink(l, op);
        op->next = batch;
        batch = op;
    }
    while (batch) {
        lock_op_t *op = batch;
        batch = op->next;
        op->next = NULL;
        if (l->closing) { /* let close cancel it */
            op_link(l, op);
            continue;
        }
        op->deferred = 0;
        op_link(l, op);
        op_complete(op, op->status, NULL);
    }
}

/* --- close -------------------------------------------------------------------------------- */

static void finish(cga_lock_t *l) {
    lock_op_t *list = l->ops;
    l->ops = NULL;
    while (list) {
        lock_op_t *op = list;
        list = op->next;
        op->prev = op->next = NULL;
        op->linked = 0;
        op->l = NULL; /* an op still in Redis' hands completes later in on_reply */
        cga_lock_cb cb = op->cb;
        void *arg = op->arg;
        int deferred = op->deferred;
        op->cb = NULL;
        if (deferred) free(op);
        if (cb) cb(CGA_ECANCELED, 0, arg);
    }
    void (*done)(void *) = l->done_cb;
    void *done_arg = l->done_arg;
    free(l);
    if (done) done(done_arg);
}

static void maybe_finish(cga_lock_t *l) {
    if (l->handles_open == 0 && !l->close_release_pending) finish(l);
}

static void on_handle_closed(uv_handle_t *h) {
    cga_lock_t *l = h->data;
    l->handles_open--;
    maybe_finish(l);
}

/* --- API ---------------------------------------------------------------------------------- */

int cga_lock_create(cga_lock_t **out, uv_loop_t *loop, cga_redis_t *redis, const char *ns,
                    const char *resource, unsigned ttl_ms, int single_instance) {
    if (!out || !loop || !redis || !resource || !*resource) return CGA_EINVAL;
    *out = NULL;
    if (cga_namespace_validate(ns) != CGA_OK) return CGA_EINVAL;
    if (ttl_ms == 0) ttl_ms = TTL_DEFAULT_MS;
    if (ttl_ms < TTL_MIN_MS) return CGA_EINVAL;
    int rc;
    cga_lock_t *l = cga_calloc(1, sizeof *l);
    l->loop = loop;
    l->redis = redis;
    l->ttl_ms = ttl_ms;
    l->single_instance = single_instance ? 1 : 0;
    l->retry_ms = RETRY_DEFAULT_MS;
    rc = cga_key(l->key, sizeof l->key, ns, CGA_KIND_LOCK, resource, NULL);
    if (rc < 0) goto fail;
    if ((rc = new_token(l->token)) != CGA_OK) goto fail;
    if ((rc = cga_redis_script_register(redis, ACQUIRE_LUA, &l->acquire_script)) != CGA_OK)
        goto fail;
    if ((rc = cga_redis_script_register(redis, RENEW_LUA, &l->renew_script)) != CGA_OK) goto fail;
    if ((rc = cga_redis_script_register(redis, RELEASE_LUA, &l->release_script)) != CGA_OK)
        goto fail;
    /* Nothing can fail past this point: the timers need uv_close() to go away. */
    uv_timer_init(loop, &l->renew_timer);
    uv_timer_init(loop, &l->retry_timer);
    uv_idle_init(loop, &l->kick);
    l->renew_timer.data = l->retry_timer.data = l->kick.data = l;
    l->handles_open = 3;
    *out = l;
    return CGA_OK;
fail:
    free(l); /* script handles belong to redis */
    return rc;
}

void cga_lock_close(cga_lock_t *l, void (*done)(void *arg), void *arg) {
    if (!l || l->closing) return;
    l->closing = 1;
    l->done_cb = done;
    l->done_arg = arg;
    l->campaigning = 0;
    if (l->held && !l->single) {
        lock_op_t *op = op_new(l, OP_CLOSE_RELEASE, NULL, NULL);
        if (op_send(l, op, l->release_script, 0)) l->close_release_pending = 1;
    }
    l->held = 0;
    l->single = 0;
    uv_close((uv_handle_t *)&l->renew_timer, on_handle_closed);
    uv_close((uv_handle_t *)&l->retry_timer, on_handle_closed);
    uv_close((uv_handle_t *)&l->kick, on_handle_closed);
}

int cga_lock_acquire(cga_lock_t *l, cga_lock_cb cb, void *arg) {
    if (!l || !cb) return CGA_EINVAL;
    if (l->closing) return CGA_ECLOSED;
    issue_attempt(l, OP_ACQUIRE, cb, arg);
    return CGA_OK;
}

int cga_lock_campaign(cga_lock_t *l, unsigned retry_ms, cga_lock_cb cb, void *arg) {
    if (!l || !cb) return CGA_EINVAL;
    if (l->closing) return CGA_ECLOSED;
    if (l->campaigning) return CGA_EEXIST;
    l->campaigning = 1;
    l->campaign_failing = 0;
    l->retry_ms = retry_ms ? retry_ms : RETRY_DEFAULT_MS;
    l->campaign_cb = cb;
    l->campaign_arg = arg;
    issue_attempt(l, OP_CAMPAIGN, NULL, NULL);
    return CGA_OK;
}

int cga_lock_release(cga_lock_t *l, cga_lock_cb cb, void *arg) {
    if (!l) return CGA_EINVAL;
    if (l->closing) return CGA_ECLOSED;
    l->campaigning = 0;
    uv_timer_stop(&l->retry_timer);
    if (l->held) CGA_LOG(CGA_LOG_INFO, 0, "%s: releasing lock", l->key);
    l->held = 0;
    l->single = 0;
    uv_timer_stop(&l->renew_timer);
    lock_op_t *op = op_new(l, OP_RELEASE, cb, arg);
    op_send(l, op, l->release_script, 0);
    rotate_token(l);
    return CGA_OK;
}

void cga_lock_on_lost(cga_lock_t *l, void (*cb)(void *arg), void *arg) {
    if (!l) return;
    l->lost_cb = cb;
    l->lost_arg = arg;
}

int cga_lock_is_held(const cga_lock_t *l) {
    return l && l->held;
}

const char *cga_lock_token(const cga_lock_t *l) {
    return l ? l->token : "";
}

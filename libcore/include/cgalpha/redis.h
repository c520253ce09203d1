#ifndef CGALPHA_REDIS_H
#define CGALPHA_REDIS_H

#include <stddef.h>
#include <stdint.h>
#include "cgalpha/export.h"

/* One asynchronous Redis connection on a libuv loop (hiredis 0.14 underneath).
 *
 * A process owns one for commands (and a second one for subscriptions where it subscribes);
 * every module borrows it. The connection connects by itself, runs AUTH / SELECT /
 * CLIENT SETNAME / SCRIPT LOAD on every connect, and reconnects after any loss with
 * exponential backoff and full jitter. Callers never see the reconnects, only the outcome
 * of each command:
 *   - commands issued while connected are written at the next loop turn; everything issued in
 *     the same turn leaves in one write (a pipeline) and the replies come back in order;
 *   - commands issued while disconnected wait in a bounded queue (CGA_REDIS_WAIT, default) and
 *     are sent after the next successful connect, or fail with CGA_ETIMEDOUT when they waited
 *     longer than queue_timeout_ms, or fail at once (CGA_REDIS_FAILFAST) with CGA_ENOTCONN;
 *   - commands already written when the connection drops fail with CGA_ECONNLOST: Redis may or
 *     may not have run them, and the caller decides whether a retry is safe;
 *   - every command has a deadline (command_timeout_ms, or the explicit one given), counted from
 *     the moment it is written (time spent in the queue is bounded by queue_timeout_ms); a
 *     command past its deadline fails with CGA_ETIMEDOUT and, because Redis answers in order,
 *     the connection is then treated as broken and reconnected (the commands written after it
 *     fail with CGA_ECONNLOST). Deadlines are checked every 100 ms, on the oldest command only
 *     (the ones behind it cannot be answered first), so a command fails between its deadline
 *     and 100 ms later;
 *   - while the circuit breaker is open every call fails at once with CGA_EBREAKER.
 *
 * Circuit breaker (cga_redis_breaker(), see breaker.h), exactly:
 *   - failures: every failed connect attempt (refused, unknown host, connect_timeout_ms passed
 *     before the handshake finished, AUTH/SELECT refused, ...), every loss of a ready
 *     connection, and every command timeout (which drops the connection: counted once);
 *   - breaker_failures consecutive failures open it. While OPEN, cga_redis_command*() and
 *     cga_redis_evalsha() return CGA_EBREAKER at once (the callback is not called); commands
 *     that were waiting in the queue when it opened get their callback with CGA_EBREAKER;
 *   - after breaker_open_ms it is HALF_OPEN: commands issued while still disconnected queue or
 *     fail fast as usual;
 *   - a connect whose handshake finished (the connection became ready) closes it at once,
 *     from any state: the breaker is always CLOSED while connected.
 *   The breaker protects the callers (they fail fast instead of waiting on a dead Redis); it
 *   does not hold back the reconnect attempts, which go on at the backoff schedule while it is
 *   open. A classic breaker that also gated the probes would notice a Redis that came back only
 *   after breaker_open_ms (30 s by default), and consumers must resume within seconds.
 *
 * Reconnects: attempt n (0-based, reset by every successful connect) waits
 * cga_backoff_delay_ms(backoff_base_ms, backoff_cap_ms, n, random). The first attempt runs on
 * the loop turn after cga_redis_create().
 * An attempt (host name resolution on libuv's thread pool, connect, handshake) that is not
 * ready within connect_timeout_ms fails with CGA_ETIMEDOUT. Connect errors come as codes whose
 * cga_strerror() says what happened: -ECONNREFUSED, -ENOENT (no unix socket), UV_EAI_NONAME
 * ("unknown node or service"), CGA_ETIMEDOUT, CGA_EAUTH, CGA_ESELECT, CGA_EREPLY (another
 * error reply during the handshake, e.g. LOADING), ... While connected, a connection that
 * dies is reported with CGA_ECONNLOST (or the errno of the failed read/write).
 *
 * The connection keeps its loop alive until cga_redis_close() (a socket or a retry timer is
 * always active).
 *
 * Logging: INFO on every (re)connect; one WARN per lost connection or per series of failed
 * attempts (again if the reason changes); DEBUG for each further attempt. The password is
 * registered with cga_log_add_secret() and never logged.
 *
 * hiredis appears only in redis.c and in the modules that read replies; this header only
 * forward-declares the reply type. Not thread-safe: use from the loop thread only. */

struct uv_loop_s;
struct redisReply;
struct cga_breaker_s;

typedef struct cga_redis_s cga_redis_t;
typedef struct cga_redis_script_s cga_redis_script_t;

typedef struct cga_redis_opts_s {
    const char *host;            /* default "127.0.0.1"; ignored when unix_path is set */
    int port;                    /* default 6379 */
    const char *unix_path;       /* unix socket path, or NULL for TCP */
    const char *username;        /* ACL user, or NULL for the default user */
    const char *password;        /* NULL or "" for none; never logged */
    int db;                      /* SELECT index, default 0 */
    const char *client_name;     /* CLIENT SETNAME, or NULL */
    unsigned connect_timeout_ms; /* default 2000 */
    unsigned command_timeout_ms; /* default 5000 */
    unsigned backoff_base_ms;    /* default 100 */
    unsigned backoff_cap_ms;     /* default 5000 */
    size_t max_queued;           /* commands allowed to wait while down, default 100000 */
    unsigned queue_timeout_ms;   /* how long a queued command may wait, default 10000 */
    unsigned breaker_failures;   /* consecutive failures that open the breaker, default 5 */
    unsigned breaker_open_ms;    /* open -> half-open after this, default 30000 */
    int final_auth_at_start;     /* until the first connect, a rejected password or database
                                    (CGA_EAUTH, CGA_ESELECT) is final: no retry and no log
                                    here (listeners hear it; the caller reports it); 0: retried
                                    like any failure */
} cga_redis_opts_t;
/* In cga_redis_create(), a 0 (or NULL host) in any numeric field means its default; a
 * backoff_cap_ms below backoff_base_ms is raised to it. */

/* Fills o with the defaults above. */
CGA_EXTERN void cga_redis_opts_init(cga_redis_opts_t *o);

/* Flags for cga_redis_command*(). */
enum cga_redis_flags {
    CGA_REDIS_WAIT = 0,     /* while disconnected: wait in the queue (bounded in size and time) */
    CGA_REDIS_FAILFAST = 1, /* while disconnected: fail at once with CGA_ENOTCONN */
};

/* Reply callback. status is checked first:
 *   CGA_OK        reply is a non-error reply;
 *   CGA_EREPLY    reply is an error reply (reply->str holds Redis' message); the specific
 *                 errors OOM, READONLY and NOAUTH/WRONGPASS come as CGA_EOOM, CGA_EREADONLY and
 *                 CGA_EAUTH, also with the reply;
 *   anything else (CGA_ETIMEDOUT, CGA_ENOTCONN, CGA_ECONNLOST, CGA_EQUEUEFULL, CGA_EBREAKER,
 *                 CGA_ECANCELED when the connection is closed): reply is NULL.
 * The reply lives only during the callback: copy what you keep. Called exactly once per
 * accepted command, always from the loop thread, never from inside cga_redis_command*(). */
typedef void (*cga_redis_reply_cb)(int status, struct redisReply *reply, void *arg);

/* Connection state changes: up = 1 when connected and ready (AUTH/SELECT done), 0 when lost.
 * status says why it went down, or why a connect attempt failed (CGA_EAUTH for a rejected
 * password, CGA_ESELECT for a bad db, -ECONNREFUSED, CGA_ETIMEDOUT, ...); called after every
 * failed attempt too (up = 0), so a process can give up at start-up on CGA_EAUTH. */
typedef void (*cga_redis_state_cb)(int up, int status, void *arg);

/* Creates a connection on loop and starts connecting (on the next loop turn, so that state
 * listeners added right after this call see the first outcome). Copies every string in opts;
 * opts NULL means all defaults. Returns CGA_OK and *out (owned by the caller, released with
 * cga_redis_close()), or CGA_EINVAL (bad port or db, client_name with spaces or control
 * characters). */
CGA_EXTERN int cga_redis_create(cga_redis_t **out, struct uv_loop_s *loop,
                                const cga_redis_opts_t *opts);

/* Fails every pending and queued command with CGA_ECANCELED, disconnects, closes the uv handles
 * and frees r; done(arg) runs once everything is released (it may be NULL), after the last
 * close callback of the connection's handles (hiredis' included), so uv_loop_close() succeeds
 * once the loop has run. May be called from inside any of r's callbacks (reply, state,
 * message): r stays valid until that callback returns. Later calls on r return CGA_ECLOSED
 * until done runs; a second close is ignored. NULL is a no-op. */
CGA_EXTERN void cga_redis_close(cga_redis_t *r, void (*done)(void *arg), void *arg);

/* Adds a state listener (up to 8). Borrows arg. Returns CGA_OK or CGA_EINVAL when full. */
CGA_EXTERN int cga_redis_on_state(cga_redis_t *r, cga_redis_state_cb cb, void *arg);

/* Removes a listener added with the same cb and arg (a module shorter-lived than the
 * connection must, before it goes). Safe from inside a state callback. */
CGA_EXTERN void cga_redis_off_state(cga_redis_t *r, cga_redis_state_cb cb, void *arg);

/* 1 when connected and ready for commands. */
CGA_EXTERN int cga_redis_is_connected(const cga_redis_t *r);

/* Last connect or connection error (0 if none since the last successful connect). */
CGA_EXTERN int cga_redis_last_error(const cga_redis_t *r);

/* The breaker in front of this connection (owned by r): its state is readable for health. */
CGA_EXTERN struct cga_breaker_s *cga_redis_breaker(cga_redis_t *r);

/* Sends a command (printf-like format as hiredis: %s string, %b binary with size_t length).
 * Returns CGA_OK when accepted (cb will be called exactly once, later), or a negative code when
 * refused up front (cb will not be called): CGA_ENOTCONN (FAILFAST while down), CGA_EQUEUEFULL,
 * CGA_EBREAKER, CGA_EINVAL, CGA_ECLOSED. cb may be NULL to ignore the outcome. */
CGA_EXTERN int cga_redis_command(cga_redis_t *r, unsigned flags, cga_redis_reply_cb cb, void *arg,
                                 const char *fmt, ...);

/* The same with an argument vector (lengths required: binary safe), and a deadline:
 * timeout_ms = 0 uses command_timeout_ms. A blocking command (XREADGROUP BLOCK t) passes
 * t + command_timeout_ms so that its wait is not taken for a dead connection. */
CGA_EXTERN int cga_redis_commandv(cga_redis_t *r, unsigned flags, unsigned timeout_ms,
                                  cga_redis_reply_cb cb, void *arg, int argc, const char **argv,
                                  const size_t *argvlen);

/* Registers a Lua script with r (r owns the returned handle; valid until r is freed). It is
 * SCRIPT LOADed on every connect, before queued commands are sent (and at once when r is
 * connected). Registering the same text twice returns the same handle. Copies lua. */
CGA_EXTERN int cga_redis_script_register(cga_redis_t *r, const char *lua, cga_redis_script_t **out);

/* The script's SHA-1 (40 lower-case hex digits, as SCRIPT LOAD returns it), owned by s. */
CGA_EXTERN const char *cga_redis_script_sha(const cga_redis_script_t *s);

/* EVALSHA of a registered script: argv holds the keys then the args (nkeys of them keys).
 * On a NOSCRIPT reply (SCRIPT FLUSH, a restarted Redis) the script is loaded again and the call
 * retried once, invisibly to the caller. Same return and callback rules as cga_redis_commandv. */
CGA_EXTERN int cga_redis_evalsha(cga_redis_t *r, cga_redis_script_t *s, unsigned flags,
                                 cga_redis_reply_cb cb, void *arg, int nkeys, int argc,
                                 const char **argv, const size_t *argvlen);

/* Subscriber use (a connection dedicated to it): subscribes to channel and calls cb for every
 * message (status CGA_OK, payload/len valid only during the call). Resubscribes by itself after
 * every reconnect (messages published while disconnected are lost: pub/sub). Copies channel.
 * Several subscriptions may share a channel; each gets every message. Once a connection has
 * subscribed, cga_redis_command*() / cga_redis_evalsha() on it return CGA_EINVAL; subscribing
 * on a connection with commands in flight or queued returns CGA_EINVAL too. No command
 * deadline applies to subscriptions. */
typedef void (*cga_redis_message_cb)(const char *channel, const char *payload, size_t len,
                                     void *arg);
CGA_EXTERN int cga_redis_subscribe(cga_redis_t *r, const char *channel, cga_redis_message_cb cb,
                                   void *arg);

/* Removes the subscription made with exactly (channel, cb, arg); cb is not called for it from
 * the return on (even from inside a message callback). UNSUBSCRIBE is sent when no other
 * subscription is left on the channel. Returns CGA_OK or CGA_ENOTFOUND. */
CGA_EXTERN int cga_redis_unsubscribe(cga_redis_t *r, const char *channel,
                                     cga_redis_message_cb cb, void *arg);

/* Counters for tests, status and benchmarks. */
typedef struct cga_redis_stats_s {
    uint64_t commands_sent;  /* commands written to the socket */
    uint64_t replies;        /* replies received (errors included) */
    uint64_t timeouts;       /* commands failed with CGA_ETIMEDOUT */
    uint64_t connects;       /* successful connects (reconnects included) */
    uint64_t disconnects;    /* connections lost */
    size_t queued;           /* commands waiting for a connection now */
    size_t in_flight;        /* commands written, reply not yet received */
} cga_redis_stats_t;
CGA_EXTERN void cga_redis_stats(const cga_redis_t *r, cga_redis_stats_t *out);

/* Delay before reconnect attempt number attempt (0-based): a random value in
 * [0, min(cap, base * 2^attempt)] ("full jitter"), but at least 1 ms. rnd is a uniformly random
 * 32-bit value (the caller's PRNG) so that the schedule is testable. */
CGA_EXTERN unsigned cga_backoff_delay_ms(unsigned base_ms, unsigned cap_ms, unsigned attempt,
                                         uint32_t rnd);

#endif

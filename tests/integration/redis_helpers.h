#ifndef CGA_TEST_REDIS_HELPERS_H
#define CGA_TEST_REDIS_HELPERS_H

/* Helpers shared by the test_redis*.c integration tests: a loop that is driven until a flag is
 * set (with a deadline), reply and state recorders, and a synchronous close. */

#include <hiredis.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "cgalpha/clock.h"
#include "cgalpha/err.h"
#include "cgalpha/redis.h"
#include "redis_server.h"
#include "test.h"

/* The servers of the running test, stopped at exit even when an assertion fails (exit(1)), so
 * that no redis-server outlives its test. */
static cga_test_redis_t *helpers_servers[8];

static inline void helpers_stop_servers(void) {
    for (int i = 0; i < 8; i++)
        if (helpers_servers[i]) cga_test_redis_stop(helpers_servers[i]);
}

/* cga_test_redis_start, remembered for the exit handler. */
static inline void server_start(cga_test_redis_t *s, const char *extra_conf) {
    static int registered;
    if (!registered) {
        atexit(helpers_stop_servers);
        registered = 1;
    }
    cga_test_redis_start(s, extra_conf);
    for (int i = 0; i < 8; i++) {
        if (!helpers_servers[i]) {
            helpers_servers[i] = s;
            return;
        }
    }
    CGA_FAIL_("too many test servers");
}

/* cga_test_redis_stop, forgotten by the exit handler. */
static inline void server_stop(cga_test_redis_t *s) {
    cga_test_redis_stop(s);
    for (int i = 0; i < 8; i++)
        if (helpers_servers[i] == s) helpers_servers[i] = NULL;
}

typedef struct {
    uv_loop_t loop;
    uv_timer_t guard; /* wakes uv_run(UV_RUN_ONCE) so that deadlines are checked */
} env_t;

static inline void env_guard_cb(uv_timer_t *t) { (void)t; }

static inline void env_init(env_t *e) {
    CGA_ASSERT_OK(uv_loop_init(&e->loop));
    uv_timer_init(&e->loop, &e->guard);
    uv_timer_start(&e->guard, env_guard_cb, 5, 5);
}

/* Runs the loop until *flag != 0 or timeout_ms pass; returns *flag. */
static inline int run_until(env_t *e, const int *flag, unsigned timeout_ms) {
    uint64_t end = cga_clock_mono_ms() + timeout_ms;
    while (!*flag && cga_clock_mono_ms() < end) uv_run(&e->loop, UV_RUN_ONCE);
    return *flag;
}

/* Runs the loop until *counter >= target or timeout_ms pass; returns *counter >= target. */
static inline int run_until_ge(env_t *e, const int *counter, int target, unsigned timeout_ms) {
    uint64_t end = cga_clock_mono_ms() + timeout_ms;
    while (*counter < target && cga_clock_mono_ms() < end) uv_run(&e->loop, UV_RUN_ONCE);
    return *counter >= target;
}

/* Runs the loop for ms milliseconds. */
static inline void run_for(env_t *e, unsigned ms) {
    int never = 0;
    run_until(e, &never, ms);
}

/* Closes the guard, runs the loop dry and asserts that it closes. */
static inline void env_close(env_t *e) {
    uv_close((uv_handle_t *)&e->guard, NULL);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    CGA_ASSERT_EQ(uv_loop_close(&e->loop), 0);
}

static inline void set_flag_cb(void *arg) { (*(int *)arg)++; }

/* cga_redis_close and wait for its done callback. */
static inline void close_redis(env_t *e, cga_redis_t *r) {
    int done = 0;
    cga_redis_close(r, set_flag_cb, &done);
    CGA_ASSERT(run_until(e, &done, 2000));
    CGA_ASSERT_EQ(done, 1);
}

/* One reply, copied. */
typedef struct {
    int done;           /* callbacks received (must end at 1) */
    int status;
    int type;           /* reply type, or -1 without reply */
    long long integer;
    char str[256];
    size_t len;
    size_t elements;
    uint64_t at_ms;     /* cga_clock_mono_ms() at the callback */
} res_t;

static inline void res_cb(int status, struct redisReply *reply, void *arg) {
    res_t *r = arg;
    r->done++;
    r->status = status;
    r->type = reply ? reply->type : -1;
    r->at_ms = cga_clock_mono_ms();
    if (!reply) return;
    r->integer = reply->integer;
    r->elements = reply->elements;
    if (reply->str) {
        r->len = reply->len;
        size_t n = reply->len < sizeof r->str - 1 ? reply->len : sizeof r->str - 1;
        memcpy(r->str, reply->str, n);
        r->str[n] = '\0';
    }
}

/* Every state callback, recorded. */
typedef struct {
    int n;
    int ups, downs;
    int up[256];
    int status[256];
} states_t;

static inline void states_cb(int up, int status, void *arg) {
    states_t *s = arg;
    if (s->n < 256) {
        s->up[s->n] = up;
        s->status[s->n] = status;
    }
    s->n++;
    if (up) s->ups++;
    else s->downs++;
}

/* Options for the test server's unix socket with quick retries. */
static inline void opts_unix(cga_redis_opts_t *o, const cga_test_redis_t *srv) {
    cga_redis_opts_init(o);
    o->unix_path = srv->sock;
    o->backoff_base_ms = 10;
    o->backoff_cap_ms = 50;
    o->connect_timeout_ms = 1000;
}

/* Creates a connection and waits until it is ready. */
static inline cga_redis_t *connect_ready(env_t *e, const cga_redis_opts_t *o, states_t *st) {
    cga_redis_t *r = NULL;
    CGA_ASSERT_OK(cga_redis_create(&r, &e->loop, o));
    CGA_ASSERT_OK(cga_redis_on_state(r, states_cb, st));
    CGA_ASSERT(run_until(e, &st->ups, 3000));
    CGA_ASSERT(cga_redis_is_connected(r));
    return r;
}

/* A blocking command on a side connection; returns the reply (caller frees). */
static inline redisReply *side_cmd(redisContext *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    CGA_ASSERT(rep != NULL);
    return rep;
}

/* Captures what is written to fd 2 between stderr_begin and stderr_end into buf (and then
 * shows it on the real stderr). */
static inline int stderr_begin(char *path, size_t n) {
    snprintf(path, n, "/tmp/cga-stderr-XXXXXX");
    int fd = mkstemp(path);
    CGA_ASSERT(fd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    CGA_ASSERT(saved >= 0);
    CGA_ASSERT(dup2(fd, STDERR_FILENO) >= 0);
    close(fd);
    return saved;
}

static inline void stderr_end(int saved, const char *path, char *buf, size_t n) {
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    FILE *f = fopen(path, "r");
    CGA_ASSERT(f != NULL);
    size_t got = fread(buf, 1, n - 1, f);
    buf[got] = '\0';
    fclose(f);
    unlink(path);
    fputs(buf, stderr); /* show what was captured */
}

static inline int count_str(const char *hay, const char *needle) {
    int c = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) c++;
    return c;
}

#endif

/* State values against a real redis-server: round trip with TTL, misses, expiry, SCAN listing. */

#include <hiredis.h>
#include <stdint.h>
#include <unistd.h>
#include <uv.h>

#include "cgalpha/clock.h"
#include "cgalpha/err.h"
#include "cgalpha/keys.h"
#include "cgalpha/log.h"
#include "cgalpha/redis.h"
#include "cgalpha/state.h"
#include "redis_server.h"
#include "test.h"
#include "uv_wait.h"

#define NS "cgalpha"

static cga_test_redis_t srv;


static cga_redis_t *connect_redis(uv_loop_t *loop) {
    cga_redis_opts_t o;
    cga_redis_opts_init(&o);
    o.unix_path = srv.sock;
    cga_redis_t *r = NULL;
    CGA_ASSERT_OK(cga_redis_create(&r, loop, &o));
    RUN_UNTIL(loop, cga_redis_is_connected(r), 5000);
    CGA_ASSERT(cga_redis_is_connected(r));
    return r;
}

static void on_done(void *arg) {
    (*(int *)arg)++;
}

static void close_redis(uv_loop_t *loop, cga_redis_t *r) {
    int done = 0;
    cga_redis_close(r, on_done, &done);
    RUN_UNTIL(loop, done, 5000);
    CGA_ASSERT_EQ(done, 1);
}

static void finish_loop(uv_loop_t *loop) {
    for (int i = 0; i < 10; i++) uv_run(loop, UV_RUN_NOWAIT);
    CGA_ASSERT_EQ(uv_loop_close(loop), 0);
}

static long long pttl(redisContext *c, const char *key) {
    redisReply *r = redisCommand(c, "PTTL %s", key);
    CGA_ASSERT(r != NULL && r->type == REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

static void command_ok(redisContext *c, const char *cmd) {
    redisReply *r = redisCommand(c, cmd);
    CGA_ASSERT(r != NULL && r->type != REDIS_REPLY_ERROR);
    freeReplyObject(r);
}

typedef struct {
    int done;
    int status;
    char data[256];
    size_t len;
} res_t;

static void on_set(int status, void *arg) {
    res_t *r = arg;
    r->done++;
    r->status = status;
}

static void on_get(int status, const char *data, size_t len, void *arg) {
    res_t *r = arg;
    r->done++;
    r->status = status;
    r->len = len;
    CGA_ASSERT(status == CGA_OK ? data != NULL : data == NULL);
    CGA_ASSERT(len <= sizeof r->data);
    if (len) memcpy(r->data, data, len);
}

static int set_sync(uv_loop_t *loop, cga_state_t *s, const char *name, const char *data,
                    size_t len, unsigned ttl_ms) {
    res_t r = {0};
    CGA_ASSERT_OK(cga_state_set(s, name, data, len, ttl_ms, on_set, &r));
    RUN_UNTIL(loop, r.done, 5000);
    CGA_ASSERT_EQ(r.done, 1);
    return r.status;
}

static res_t get_sync(uv_loop_t *loop, cga_state_t *s, const char *name) {
    res_t r = {0};
    CGA_ASSERT_OK(cga_state_get(s, name, on_get, &r));
    RUN_UNTIL(loop, r.done, 5000);
    CGA_ASSERT_EQ(r.done, 1);
    return r;
}

static void expect_stats(const cga_state_t *s, uint64_t hits, uint64_t misses) {
    uint64_t h = 99, m = 99;
    cga_state_stats(s, &h, &m);
    CGA_ASSERT_EQ(h, hits);
    CGA_ASSERT_EQ(m, misses);
}

static void test_round_trip_ttl_and_misses(void) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    redisContext *c = cga_test_redis_connect(&srv, NULL);
    command_ok(c, "FLUSHALL");
    cga_redis_t *r = connect_redis(&loop);
    cga_state_t *s;
    CGA_ASSERT_OK(cga_state_create(&s, r, NS));
    expect_stats(s, 0, 0);

    static const char blob[] = {(char)0x82, (char)0xa1, 'x', 0x00, (char)0xff, 0x00, 'y'};
    CGA_ASSERT_OK(set_sync(&loop, s, "global_resources", blob, sizeof blob, 15000));
    long long t = pttl(c, NS ":state:global_resources");
    CGA_ASSERT_OP(t, >, 14000);
    CGA_ASSERT_OP(t, <=, 15000);
    res_t g = get_sync(&loop, s, "global_resources");
    CGA_ASSERT_OK(g.status);
    CGA_ASSERT_MEMEQ(g.data, g.len, blob, sizeof blob);
    expect_stats(s, 1, 0);

    /* ttl 0: no expiry; an empty value is a hit, not a miss. */
    CGA_ASSERT_OK(set_sync(&loop, s, "regime:BTCUSD", "", 0, 0));
    CGA_ASSERT_EQ(pttl(c, NS ":state:regime:BTCUSD"), -1);
    g = get_sync(&loop, s, "regime:BTCUSD");
    CGA_ASSERT_OK(g.status);
    CGA_ASSERT_EQ(g.len, 0);
    expect_stats(s, 2, 0);

    g = get_sync(&loop, s, "nothing-here");
    CGA_ASSERT_EQ(g.status, CGA_ENOTFOUND);
    CGA_ASSERT_EQ(g.len, 0);
    g = get_sync(&loop, s, "worker:none");
    CGA_ASSERT_EQ(g.status, CGA_ENOTFOUND);
    expect_stats(s, 2, 2);

    /* A Redis error is neither a hit nor a miss. */
    command_ok(c, "RPUSH " NS ":state:alist x");
    g = get_sync(&loop, s, "alist");
    CGA_ASSERT_EQ(g.status, CGA_EREPLY);
    expect_stats(s, 2, 2);

    /* Rejected up front: the callback does not run. */
    char longname[CGA_KEY_MAX];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    res_t never = {0};
    CGA_ASSERT_EQ(cga_state_set(s, longname, "x", 1, 0, on_set, &never), CGA_ETOOBIG);
    CGA_ASSERT_EQ(cga_state_get(s, longname, on_get, &never), CGA_ETOOBIG);
    CGA_ASSERT_EQ(cga_state_get(s, "x", NULL, NULL), CGA_EINVAL);
    CGA_ASSERT_EQ(cga_state_set(s, "", "x", 1, 0, on_set, &never), CGA_EINVAL);
    RUN_FOR(&loop, 20);
    CGA_ASSERT_EQ(never.done, 0);

    cga_state_free(s);
    close_redis(&loop, r);
    redisFree(c);
    finish_loop(&loop);
}

static void test_expiry(void) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    redisContext *c = cga_test_redis_connect(&srv, NULL);
    command_ok(c, "FLUSHALL");
    cga_redis_t *r = connect_redis(&loop);
    cga_state_t *s;
    CGA_ASSERT_OK(cga_state_create(&s, r, NS));
    CGA_ASSERT_OK(set_sync(&loop, s, "worker:w1", "alive", 5, 100));
    long long t = pttl(c, NS ":state:worker:w1");
    CGA_ASSERT_OP(t, >, 0);
    CGA_ASSERT_OP(t, <=, 100);
    res_t g = get_sync(&loop, s, "worker:w1");
    CGA_ASSERT_OK(g.status);
    CGA_ASSERT_MEMEQ(g.data, g.len, "alive", 5);
    RUN_FOR(&loop, 250);
    g = get_sync(&loop, s, "worker:w1");
    CGA_ASSERT_EQ(g.status, CGA_ENOTFOUND);
    expect_stats(s, 1, 1);

    /* A rewrite replaces the value and the TTL (the heartbeat pattern). */
    CGA_ASSERT_OK(set_sync(&loop, s, "worker:w1", "v1", 2, 100));
    CGA_ASSERT_OK(set_sync(&loop, s, "worker:w1", "v2", 2, 10000));
    RUN_FOR(&loop, 200);
    g = get_sync(&loop, s, "worker:w1");
    CGA_ASSERT_OK(g.status);
    CGA_ASSERT_MEMEQ(g.data, g.len, "v2", 2);

    /* Freed with a GET in flight: the callback still runs, nothing leaks. */
    res_t late = {0};
    CGA_ASSERT_OK(cga_state_get(s, "worker:w1", on_get, &late));
    cga_state_free(s);
    RUN_UNTIL(&loop, late.done, 5000);
    CGA_ASSERT_EQ(late.done, 1);
    CGA_ASSERT_OK(late.status);
    close_redis(&loop, r);
    redisFree(c);
    finish_loop(&loop);
}

typedef struct {
    int done;
    int status;
    size_t n;
    char **names;
} scan_res_t;

static void on_scan(int status, const char *const *names, size_t n, void *arg) {
    scan_res_t *r = arg;
    r->done++;
    r->status = status;
    r->n = n;
    r->names = calloc(n ? n : 1, sizeof *r->names);
    for (size_t i = 0; i < n; i++) r->names[i] = strdup(names[i]);
}

static void scan_res_free(scan_res_t *r) {
    for (size_t i = 0; i < r->n; i++) free(r->names[i]);
    free(r->names);
}

static scan_res_t scan_sync(uv_loop_t *loop, cga_state_t *s, const char *pattern) {
    scan_res_t r = {0};
    CGA_ASSERT_OK(cga_state_scan(s, pattern, on_scan, &r));
    RUN_UNTIL(loop, r.done, 10000);
    CGA_ASSERT_EQ(r.done, 1);
    return r;
}

static int count_set;

static void on_set_count(int status, void *arg) {
    (void)arg;
    CGA_ASSERT_OK(status);
    count_set++;
}

static void test_scan(void) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    redisContext *c = cga_test_redis_connect(&srv, NULL);
    command_ok(c, "FLUSHALL");
    cga_redis_t *r = connect_redis(&loop);
    cga_state_t *s;
    CGA_ASSERT_OK(cga_state_create(&s, r, NS));

    const int n = 1000;
    count_set = 0;
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "worker:w%04d", i);
        CGA_ASSERT_OK(cga_state_set(s, name, "hb", 2, 60000, on_set_count, NULL));
    }
    RUN_UNTIL(&loop, count_set == n, 10000);
    CGA_ASSERT_EQ(count_set, n);
    /* Neighbours that must not be listed. */
    command_ok(c, "SET " NS ":state:regime:BTCUSD x");
    command_ok(c, "SET " NS ":state:global_resources x");
    command_ok(c, "SET other:state:worker:w9999 x");
    command_ok(c, "SET " NS ":queue:worker:w9999 x");
    command_ok(c, "SET " NS ":state:workers x");

    scan_res_t res = scan_sync(&loop, s, "worker:*");
    CGA_ASSERT_OK(res.status);
    CGA_ASSERT_EQ(res.n, n);
    for (int i = 0; i < n; i++) {
        char want[32];
        snprintf(want, sizeof want, "worker:w%04d", i);
        CGA_ASSERT_STREQ(res.names[i], want); /* sorted, exact, no prefix, no duplicates */
    }
    scan_res_free(&res);

    res = scan_sync(&loop, s, "regime:*");
    CGA_ASSERT_OK(res.status);
    CGA_ASSERT_EQ(res.n, 1);
    CGA_ASSERT_STREQ(res.names[0], "regime:BTCUSD");
    scan_res_free(&res);

    res = scan_sync(&loop, s, "nothing:*");
    CGA_ASSERT_OK(res.status);
    CGA_ASSERT_EQ(res.n, 0);
    scan_res_free(&res);

    cga_state_free(s);
    close_redis(&loop, r);
    redisFree(c);
    finish_loop(&loop);
}

int main(void) {
    cga_log_set_process("test_state");
    cga_test_redis_start(&srv, NULL);
    CGA_RUN(test_round_trip_ttl_and_misses);
    CGA_RUN(test_expiry);
    CGA_RUN(test_scan);
    cga_test_redis_stop(&srv);
    fprintf(stderr, "OK\n");
    return 0;
}

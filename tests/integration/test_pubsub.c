/* Publish / subscribe against a real redis-server: order, namespace, resubscription after the
 * server is killed and restarted, free stops delivery. */

#include <hiredis.h>
#include <signal.h>
#include <stdint.h>
#include <unistd.h>
#include <uv.h>

#include "cgalpha/clock.h"
#include "cgalpha/err.h"
#include "cgalpha/log.h"
#include "cgalpha/pubsub.h"
#include "cgalpha/redis.h"
#include "redis_server.h"
#include "test.h"
#include "uv_wait.h"

#define NS "cgalpha"
#define CHANNEL_KEY NS ":channel:market_regime"

static cga_test_redis_t srv;


static cga_redis_t *connect_redis(uv_loop_t *loop) {
    cga_redis_opts_t o;
    cga_redis_opts_init(&o);
    o.unix_path = srv.sock;
    o.connect_timeout_ms = 500;
    o.backoff_base_ms = 20;
    o.backoff_cap_ms = 200;
    o.breaker_failures = 100000; /* reconnection is under test here, not the breaker */
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

/* Subscribers to the channel according to the server. */
static long long numsub(redisContext *c) {
    redisReply *r = redisCommand(c, "PUBSUB NUMSUB %s", CHANNEL_KEY);
    CGA_ASSERT(r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2);
    long long n = r->element[1]->integer;
    freeReplyObject(r);
    return n;
}

#define MAX_MSGS 512

typedef struct {
    size_t n;
    char *msgs[MAX_MSGS];
    size_t lens[MAX_MSGS];
} inbox_t;

static void on_message(const char *data, size_t len, void *arg) {
    inbox_t *in = arg;
    CGA_ASSERT(in->n < MAX_MSGS);
    in->msgs[in->n] = malloc(len ? len : 1);
    if (len) memcpy(in->msgs[in->n], data, len);
    in->lens[in->n++] = len;
}

static void inbox_free(inbox_t *in) {
    for (size_t i = 0; i < in->n; i++) free(in->msgs[i]);
    in->n = 0;
}

typedef struct {
    int done;
    int status;
    long long receivers;
} pub_res_t;

static void on_published(int status, long long receivers, void *arg) {
    pub_res_t *r = arg;
    r->done++;
    r->status = status;
    r->receivers = receivers;
}

static void test_publish_subscribe_in_order(void) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    redisContext *c = cga_test_redis_connect(&srv, NULL);
    cga_redis_t *cmd = connect_redis(&loop), *sub = connect_redis(&loop);
    cga_pubsub_t *pub_only, *p;
    CGA_ASSERT_OK(cga_pubsub_create(&pub_only, cmd, NULL, NS));
    CGA_ASSERT_OK(cga_pubsub_create(&p, cmd, sub, NS));
    inbox_t in = {0};
    CGA_ASSERT_EQ(cga_pubsub_subscribe(pub_only, "market_regime", on_message, &in), CGA_EINVAL);
    CGA_ASSERT_OK(cga_pubsub_subscribe(p, "market_regime", on_message, &in));
    RUN_UNTIL(&loop, numsub(c) == 1, 3000);
    CGA_ASSERT_EQ(numsub(c), 1);

    /* Not ours: another namespace, another channel. */
    redisReply *rr = redisCommand(c, "PUBLISH other:channel:market_regime x");
    freeReplyObject(rr);
    rr = redisCommand(c, "PUBLISH " NS ":channel:other x");
    freeReplyObject(rr);

    const int n = 200;
    pub_res_t last = {0};
    for (int i = 0; i < n; i++) {
        char msg[32];
        int len = snprintf(msg, sizeof msg, "m%03d-", i);
        msg[len - 1] = (char)(i % 2 ? 0 : 'x'); /* binary safe */
        CGA_ASSERT_OK(cga_pubsub_publish(pub_only, "market_regime", msg, (size_t)len,
                                         i == n - 1 ? on_published : NULL, &last));
    }
    RUN_UNTIL(&loop, last.done && in.n == (size_t)n, 5000);
    CGA_ASSERT_OK(last.status);
    CGA_ASSERT_EQ(last.receivers, 1);
    CGA_ASSERT_EQ(in.n, n);
    for (int i = 0; i < n; i++) {
        char want[32];
        int len = snprintf(want, sizeof want, "m%03d-", i);
        want[len - 1] = (char)(i % 2 ? 0 : 'x');
        CGA_ASSERT_MEMEQ(in.msgs[i], in.lens[i], want, (size_t)len);
    }
    inbox_free(&in);

    /* An empty payload is a message too. */
    CGA_ASSERT_OK(cga_pubsub_publish(p, "market_regime", NULL, 0, NULL, NULL));
    RUN_UNTIL(&loop, in.n == 1, 3000);
    CGA_ASSERT_EQ(in.n, 1);
    CGA_ASSERT_EQ(in.lens[0], 0);
    inbox_free(&in);

    /* Freed: no more deliveries, and the connection unsubscribed. */
    cga_pubsub_free(p);
    pub_res_t after = {0};
    CGA_ASSERT_OK(cga_pubsub_publish(pub_only, "market_regime", "late", 4, on_published, &after));
    RUN_UNTIL(&loop, after.done, 3000);
    CGA_ASSERT_OK(after.status);
    RUN_FOR(&loop, 100);
    CGA_ASSERT_EQ(in.n, 0);
    RUN_UNTIL(&loop, numsub(c) == 0, 3000);
    CGA_ASSERT_EQ(numsub(c), 0);

    cga_pubsub_free(pub_only);
    close_redis(&loop, sub);
    close_redis(&loop, cmd);
    redisFree(c);
    finish_loop(&loop);
}

typedef struct {
    cga_pubsub_t *p;
    int got;
} self_free_t;

static void on_message_free_self(const char *data, size_t len, void *arg) {
    self_free_t *sf = arg;
    sf->got++;
    cga_pubsub_free(sf->p);
    sf->p = NULL;
}

static void test_two_subscribers_free_in_callback(void) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    redisContext *c = cga_test_redis_connect(&srv, NULL);
    cga_redis_t *cmd = connect_redis(&loop), *sub = connect_redis(&loop);
    cga_pubsub_t *p1, *p2;
    CGA_ASSERT_OK(cga_pubsub_create(&p1, cmd, sub, NS));
    CGA_ASSERT_OK(cga_pubsub_create(&p2, cmd, sub, NS));
    cga_pubsub_t *bad = NULL;
    CGA_ASSERT_EQ(cga_pubsub_create(&bad, cmd, cmd, NS), CGA_EINVAL);
    CGA_ASSERT_EQ(cga_pubsub_create(&bad, cmd, sub, "bad ns"), CGA_EINVAL);
    CGA_ASSERT(bad == NULL);
    self_free_t sf = {p1, 0};
    inbox_t in = {0};
    CGA_ASSERT_OK(cga_pubsub_subscribe(p1, "market_regime", on_message_free_self, &sf));
    CGA_ASSERT_OK(cga_pubsub_subscribe(p2, "market_regime", on_message, &in));
    RUN_UNTIL(&loop, numsub(c) == 1, 3000);
    CGA_ASSERT_EQ(numsub(c), 1); /* one connection, subscribed once */
    for (int i = 0; i < 3; i++)
        CGA_ASSERT_OK(cga_pubsub_publish(p2, "market_regime", "x", 1, NULL, NULL));
    RUN_UNTIL(&loop, in.n == 3, 3000);
    CGA_ASSERT_EQ(in.n, 3);  /* every subscription gets every message ... */
    CGA_ASSERT_EQ(sf.got, 1); /* ... until it is freed */
    inbox_free(&in);
    cga_pubsub_free(p2);
    RUN_UNTIL(&loop, numsub(c) == 0, 3000);
    CGA_ASSERT_EQ(numsub(c), 0);
    close_redis(&loop, sub);
    close_redis(&loop, cmd);
    redisFree(c);
    finish_loop(&loop);
}

typedef struct {
    cga_pubsub_t *p;
    int seq;
    inbox_t *in;
} ticker_t;

static void publish_tick(uv_timer_t *t) {
    ticker_t *tk = t->data;
    char msg[32];
    int len = snprintf(msg, sizeof msg, "after-%d", tk->seq++);
    /* The command connection reconnects too; refusals while it is down are fine here. */
    (void)cga_pubsub_publish(tk->p, "market_regime", msg, (size_t)len, NULL, NULL);
}

static int received_after(const inbox_t *in) {
    for (size_t i = 0; i < in->n; i++)
        if (in->lens[i] >= 6 && memcmp(in->msgs[i], "after-", 6) == 0) return 1;
    return 0;
}

static void test_resubscribe_after_restart(void) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    cga_redis_t *cmd = connect_redis(&loop), *sub = connect_redis(&loop);
    cga_pubsub_t *p;
    CGA_ASSERT_OK(cga_pubsub_create(&p, cmd, sub, NS));
    inbox_t in = {0};
    CGA_ASSERT_OK(cga_pubsub_subscribe(p, "market_regime", on_message, &in));
    redisContext *c = cga_test_redis_connect(&srv, NULL);
    RUN_UNTIL(&loop, numsub(c) == 1, 3000);
    CGA_ASSERT_EQ(numsub(c), 1);
    redisFree(c);
    CGA_ASSERT_OK(cga_pubsub_publish(p, "market_regime", "before", 6, NULL, NULL));
    RUN_UNTIL(&loop, in.n == 1, 3000);
    CGA_ASSERT_EQ(in.n, 1);
    CGA_ASSERT_MEMEQ(in.msgs[0], in.lens[0], "before", 6);

    cga_test_redis_signal(&srv, SIGKILL);
    RUN_UNTIL(&loop, !cga_redis_is_connected(sub), 3000);
    CGA_ASSERT_EQ(cga_redis_is_connected(sub), 0);
    RUN_FOR(&loop, 300); /* a few failed reconnect attempts */
    cga_test_redis_restart(&srv);
    uint64_t t0 = cga_clock_mono_ms();

    /* Publish every 50 ms until one arrives: the test never subscribes again. */
    ticker_t tk = {p, 0, &in};
    uv_timer_t pub_timer;
    uv_timer_init(&loop, &pub_timer);
    pub_timer.data = &tk;
    uv_timer_start(&pub_timer, publish_tick, 0, 50);
    RUN_UNTIL(&loop, received_after(&in), 5000);
    uint64_t took = cga_clock_mono_ms() - t0;
    uv_close((uv_handle_t *)&pub_timer, NULL);
    CGA_ASSERT(received_after(&in));
    fprintf(stderr, "   subscriber received again %llu ms after the restart\n",
            (unsigned long long)took);
    CGA_ASSERT_OP(took, <, 5000);
    c = cga_test_redis_connect(&srv, NULL);
    CGA_ASSERT_EQ(numsub(c), 1); /* subscribed once, not twice */
    redisFree(c);
    inbox_free(&in);

    cga_pubsub_free(p);
    close_redis(&loop, sub);
    close_redis(&loop, cmd);
    finish_loop(&loop);
}

int main(void) {
    cga_log_set_process("test_pubsub");
    cga_test_redis_start(&srv, NULL);
    CGA_RUN(test_publish_subscribe_in_order);
    CGA_RUN(test_two_subscribers_free_in_callback);
    CGA_RUN(test_resubscribe_after_restart);
    cga_test_redis_stop(&srv);
    fprintf(stderr, "OK\n");
    return 0;
}

/* redis.c when the server goes away: reconnect after SIGKILL + restart (queued, fail-fast and
 * in-flight commands), queue limits and timeout, command timeout on a stopped server (SIGSTOP)
 * and connect timeout, the circuit breaker, subscriptions across a restart. */

#include <signal.h>
#include <stdio.h>

#include "cgalpha/breaker.h"
#include "cgalpha/log.h"
#include "redis_helpers.h"

static void ping_ok(env_t *e, cga_redis_t *r) {
    res_t res = {0};
    CGA_ASSERT_OK(cga_redis_command(r, CGA_REDIS_WAIT, res_cb, &res, "PING"));
    CGA_ASSERT(run_until(e, &res.done, 3000));
    CGA_ASSERT_OK(res.status);
    CGA_ASSERT_STREQ(res.str, "PONG");
}

/* ---------------------------------------------------------------- reconnect */

static void test_reconnect_after_kill(void) {
    cga_test_redis_t srv;
    server_start(&srv, NULL);
    env_t e;
    env_init(&e);
    cga_redis_opts_t o;
    opts_unix(&o, &srv);
    o.breaker_failures = 1000;
    states_t st = {0};
    cga_redis_t *r = connect_ready(&e, &o, &st);

    /* a command written and waiting for its reply when the server dies */
    const char *argv[3] = {"BLPOP", "nolist", "0"};
    size_t lens[3] = {5, 6, 1};
    res_t blocked = {0};
    CGA_ASSERT_OK(cga_redis_commandv(r, 0, 60000, res_cb, &blocked, 3, argv, lens));
    run_for(&e, 50);
    cga_redis_stats_t s;
    cga_redis_stats(r, &s);
    CGA_ASSERT_EQ(s.in_flight, 1);
    CGA_ASSERT_EQ(blocked.done, 0);

    int level = cga_log_level_current;
    cga_log_set_level(CGA_LOG_INFO);
    char path[64], log[16384];
    int saved = stderr_begin(path, sizeof path);
    cga_test_redis_signal(&srv, SIGKILL);
    int ok = run_until(&e, &blocked.done, 2000) && run_until(&e, &st.downs, 2000);
    CGA_ASSERT(ok);
    CGA_ASSERT_EQ(blocked.status, CGA_ECONNLOST);
    CGA_ASSERT_EQ(blocked.type, -1);
    CGA_ASSERT_EQ(st.up[1], 0);
    CGA_ASSERT(!cga_redis_is_connected(r));
    CGA_ASSERT_NE(cga_redis_last_error(r), 0);

    /* during the outage: WAIT commands queue (in order), FAILFAST ones fail at once */
    res_t set = {0}, get = {0};
    CGA_ASSERT_OK(cga_redis_command(r, CGA_REDIS_WAIT, res_cb, &set, "SET k after"));
    CGA_ASSERT_OK(cga_redis_command(r, CGA_REDIS_WAIT, res_cb, &get, "GET k"));
    CGA_ASSERT_EQ(cga_redis_command(r, CGA_REDIS_FAILFAST, res_cb, &set, "PING"), CGA_ENOTCONN);
    run_for(&e, 300); /* several refused attempts */
    CGA_ASSERT_OP(st.downs, >=, 3);
    CGA_ASSERT_EQ(set.done, 0);
    cga_redis_stats(r, &s);
    CGA_ASSERT_EQ(s.queued, 2);

    cga_test_redis_restart(&srv);
    ok = run_until(&e, &get.done, 3000);
    stderr_end(saved, path, log, sizeof log);
    cga_log_set_level(level);
    CGA_ASSERT(ok);
    CGA_ASSERT_OK(set.status);
    CGA_ASSERT_OK(get.status);
    CGA_ASSERT_STREQ(get.str, "after");
    CGA_ASSERT_EQ(st.ups, 2);
    CGA_ASSERT_EQ(cga_redis_last_error(r), 0);
    cga_redis_stats(r, &s);
    CGA_ASSERT_EQ(s.connects, 2);
    CGA_ASSERT_EQ(s.disconnects, 1);
    CGA_ASSERT_EQ(s.queued, 0);
    /* one ERROR ("Redis connection failed") for the whole outage, one INFO when back */
    CGA_ASSERT_EQ(count_str(log, " ERROR "), 1);
    CGA_ASSERT_EQ(count_str(log, "Redis connection failed"), 1);
    CGA_ASSERT(strstr(log, "lost") != NULL);
    CGA_ASSERT_EQ(count_str(log, "reconnected to"), 1);
    ping_ok(&e, r);
    close_redis(&e, r);
    env_close(&e);
    server_stop(&srv);
}

static void test_queue_limits(void) {
    cga_test_redis_t srv;
    server_start(&srv, NULL);
    env_t e;
    env_init(&e);
    cga_redis_opts_t o;
    opts_unix(&o, &srv);
    o.max_queued = 2;
    o.queue_timeout_ms = 300;
    o.breaker_failures = 1000;
    states_t st = {0};
    cga_redis_t *r = connect_ready(&e, &o, &st);
    cga_test_redis_signal(&srv, SIGKILL);
    CGA_ASSERT(run_until(&e, &st.downs, 2000));

    res_t a = {0}, b = {0};
    uint64_t t0 = cga_clock_mono_ms();
    CGA_ASSERT_OK(cga_redis_command(r, 0, res_cb, &a, "PING"));
    CGA_ASSERT_OK(cga_redis_command(r, 0, res_cb, &b, "PING"));
    CGA_ASSERT_EQ(cga_redis_command(r, 0, res_cb, &a, "PING"), CGA_EQUEUEFULL);
    CGA_ASSERT(run_until(&e, &b.done, 2000));
    CGA_ASSERT_EQ(a.done, 1);
    CGA_ASSERT_EQ(a.status, CGA_ETIMEDOUT);
    CGA_ASSERT_EQ(b.status, CGA_ETIMEDOUT);
    uint64_t waited = b.at_ms - t0;
    fprintf(stderr, "queue timeout 300 ms: failed after %llu ms\n", (unsigned long long)waited);
    CGA_ASSERT_OP(waited, >=, 290);
    CGA_ASSERT_OP(waited, <=, 500);
    cga_redis_stats_t s;
    cga_redis_stats(r, &s);
    CGA_ASSERT_EQ(s.timeouts, 2);
    CGA_ASSERT_EQ(s.queued, 0);
    close_redis(&e, r);
    env_close(&e);
    server_stop(&srv);
}

/* ---------------------------------------------------------------- timeouts */

static void test_command_and_connect_timeout(void) {
    cga_test_redis_t srv;
    server_start(&srv, NULL);
    env_t e;
    env_init(&e);
    cga_redis_opts_t o;
    opts_unix(&o, &srv);
    o.command_timeout_ms = 500;
    o.connect_timeout_ms = 300;
    o.breaker_failures = 1000;
    states_t st = {0};
    cga_redis_t *r = connect_ready(&e, &o, &st);

    /* a blocking command with its longer deadline is not taken for a dead connection */
    const char *argv[3] = {"BLPOP", "nolist", "1"};
    size_t lens[3] = {5, 6, 1};
    res_t blpop = {0};
    uint64_t t0 = cga_clock_mono_ms();
    CGA_ASSERT_OK(cga_redis_commandv(r, 0, 1000 + o.command_timeout_ms, res_cb, &blpop, 3, argv,
                                     lens));
    CGA_ASSERT(run_until(&e, &blpop.done, 3000));
    CGA_ASSERT_OK(blpop.status);
    CGA_ASSERT_EQ(blpop.type, REDIS_REPLY_NIL);
    CGA_ASSERT_OP(blpop.at_ms - t0, >=, 900);
    CGA_ASSERT_EQ(st.downs, 0);

    /* the server stops answering: the head command fails at its deadline, the one behind it
     * with CGA_ECONNLOST, the connection is dropped */
    cga_test_redis_signal(&srv, SIGSTOP);
    res_t get = {0}, behind = {0};
    t0 = cga_clock_mono_ms();
    CGA_ASSERT_OK(cga_redis_command(r, 0, res_cb, &get, "GET k"));
    CGA_ASSERT_OK(cga_redis_command(r, 0, res_cb, &behind, "GET k"));
    CGA_ASSERT(run_until(&e, &get.done, 3000));
    uint64_t took = get.at_ms - t0;
    fprintf(stderr, "command timeout 500 ms: failed after %llu ms\n", (unsigned long long)took);
    CGA_ASSERT_EQ(get.status, CGA_ETIMEDOUT);
    CGA_ASSERT_OP(took, >=, 500);
    CGA_ASSERT_OP(took, <=, 700);
    CGA_ASSERT_EQ(behind.done, 1);
    CGA_ASSERT_EQ(behind.status, CGA_ECONNLOST);
    CGA_ASSERT_EQ(st.downs, 1);
    CGA_ASSERT_EQ(st.status[1], CGA_ETIMEDOUT);
    cga_redis_stats_t s;
    cga_redis_stats(r, &s);
    CGA_ASSERT_EQ(s.timeouts, 1);

    /* reconnect attempts reach the stopped server's backlog but get no answer: each fails at
     * the connect deadline */
    uint64_t t1 = cga_clock_mono_ms();
    CGA_ASSERT(run_until_ge(&e, &st.downs, 3, 3000));
    CGA_ASSERT_EQ(st.status[2], CGA_ETIMEDOUT);
    CGA_ASSERT_OP(cga_clock_mono_ms() - t1, >=, 2 * 300);
    CGA_ASSERT_EQ(st.ups, 1);

    cga_test_redis_signal(&srv, SIGCONT);
    CGA_ASSERT(run_until_ge(&e, &st.ups, 2, 3000));
    ping_ok(&e, r);
    close_redis(&e, r);
    env_close(&e);
    server_stop(&srv);
}

/* ---------------------------------------------------------------- breaker */

static void test_breaker(void) {
    cga_test_redis_t srv;
    server_start(&srv, NULL);
    env_t e;
    env_init(&e);
    cga_redis_opts_t o;
    opts_unix(&o, &srv);
    o.breaker_failures = 3;
    o.breaker_open_ms = 30000; /* the default: recovery must not wait for it */
    o.backoff_base_ms = 5;
    o.backoff_cap_ms = 50;
    states_t st = {0};
    cga_redis_t *r = connect_ready(&e, &o, &st);
    cga_breaker_t *b = cga_redis_breaker(r);

    cga_test_redis_signal(&srv, SIGKILL);
    CGA_ASSERT(run_until(&e, &st.downs, 2000)); /* failure 1: the loss */
    res_t queued = {0};
    CGA_ASSERT_OK(cga_redis_command(r, 0, res_cb, &queued, "PING"));

    /* two refused attempts more open it; what waited fails with CGA_EBREAKER */
    CGA_ASSERT(run_until(&e, &queued.done, 2000));
    CGA_ASSERT_EQ(queued.status, CGA_EBREAKER);
    CGA_ASSERT_OP(st.downs, >=, 3);
    CGA_ASSERT_EQ(cga_breaker_state(b, cga_clock_mono_ms()), CGA_BREAKER_OPEN);
    CGA_ASSERT_EQ(cga_breaker_trips(b), 1);

    /* open: calls fail at once, callback not called; the reconnect attempts go on */
    res_t never = {0};
    CGA_ASSERT_EQ(cga_redis_command(r, 0, res_cb, &never, "PING"), CGA_EBREAKER);
    CGA_ASSERT_EQ(cga_redis_command(r, CGA_REDIS_FAILFAST, res_cb, &never, "PING"),
                  CGA_EBREAKER);
    int downs = st.downs;
    run_for(&e, 300);
    CGA_ASSERT_EQ(never.done, 0);
    CGA_ASSERT_OP(st.downs, >, downs);
    CGA_ASSERT_EQ(cga_breaker_state(b, cga_clock_mono_ms()), CGA_BREAKER_OPEN);

    /* server back: the next attempt connects within the backoff cap and closes the breaker,
     * long before breaker_open_ms */
    uint64_t back = cga_clock_mono_ms();
    cga_test_redis_restart(&srv);
    CGA_ASSERT(run_until_ge(&e, &st.ups, 2, 2000));
    CGA_ASSERT_OP(cga_clock_mono_ms() - back, <, 1000);
    CGA_ASSERT_EQ(cga_breaker_state(b, cga_clock_mono_ms()), CGA_BREAKER_CLOSED);
    CGA_ASSERT_EQ(cga_breaker_trips(b), 1);
    ping_ok(&e, r);
    close_redis(&e, r);
    env_close(&e);
    server_stop(&srv);
}

/* ---------------------------------------------------------------- subscriptions */

typedef struct {
    int n;
    char channel[64];
    char payload[64];
    size_t len;
    cga_redis_t *close_me;
    int closed;
} msgs_t;

static void msg_cb(const char *channel, const char *payload, size_t len, void *arg) {
    msgs_t *m = arg;
    m->n++;
    snprintf(m->channel, sizeof m->channel, "%s", channel);
    m->len = len < sizeof m->payload ? len : sizeof m->payload;
    memcpy(m->payload, payload, m->len);
    if (m->close_me) {
        cga_redis_close(m->close_me, set_flag_cb, &m->closed);
        m->close_me = NULL;
    }
}

static long long numsub(redisContext *side, const char *channel) {
    redisReply *rep = side_cmd(side, "PUBSUB NUMSUB %s", channel);
    long long n = rep->element[1]->integer;
    freeReplyObject(rep);
    return n;
}

/* Waits until Redis counts n subscribers on channel. */
static void wait_numsub(env_t *e, redisContext *side, const char *channel, long long n) {
    for (int i = 0; i < 300 && numsub(side, channel) != n; i++) run_for(e, 10);
    CGA_ASSERT_EQ(numsub(side, channel), n);
}

static void publish(redisContext *side, const char *channel, const char *data, size_t len) {
    freeReplyObject(side_cmd(side, "PUBLISH %s %b", channel, data, len));
}

static void test_subscribe(void) {
    cga_test_redis_t srv;
    server_start(&srv, NULL);
    env_t e;
    env_init(&e);
    cga_redis_opts_t o;
    opts_unix(&o, &srv);
    o.command_timeout_ms = 200; /* does not apply to subscriptions */
    o.breaker_failures = 1000;
    states_t st = {0};
    cga_redis_t *r = connect_ready(&e, &o, &st);
    msgs_t m1 = {0}, m2 = {0}, m3 = {0};
    CGA_ASSERT_OK(cga_redis_subscribe(r, "chan", msg_cb, &m1));
    CGA_ASSERT_OK(cga_redis_subscribe(r, "chan", msg_cb, &m2));
    CGA_ASSERT_OK(cga_redis_subscribe(r, "other", msg_cb, &m3));
    CGA_ASSERT_EQ(cga_redis_command(r, 0, NULL, NULL, "PING"), CGA_EINVAL);

    redisContext *side = cga_test_redis_connect(&srv, NULL);
    wait_numsub(&e, side, "chan", 1);
    wait_numsub(&e, side, "other", 1);
    publish(side, "chan", "he\0llo", 6);
    CGA_ASSERT(run_until(&e, &m2.n, 2000));
    CGA_ASSERT_EQ(m1.n, 1);
    CGA_ASSERT_STREQ(m1.channel, "chan");
    CGA_ASSERT_MEMEQ(m1.payload, m1.len, "he\0llo", 6);
    CGA_ASSERT_MEMEQ(m2.payload, m2.len, "he\0llo", 6);
    CGA_ASSERT_EQ(m3.n, 0);
    publish(side, "other", "x", 1);
    CGA_ASSERT(run_until(&e, &m3.n, 2000));
    CGA_ASSERT_STREQ(m3.channel, "other");

    run_for(&e, 500); /* idle subscriber, 200 ms command deadline: still connected */
    CGA_ASSERT_EQ(st.downs, 0);

    /* server restarted: resubscribed by itself */
    redisFree(side);
    cga_test_redis_signal(&srv, SIGKILL);
    cga_test_redis_restart(&srv);
    CGA_ASSERT(run_until_ge(&e, &st.ups, 2, 3000));
    side = cga_test_redis_connect(&srv, NULL);
    wait_numsub(&e, side, "chan", 1);
    publish(side, "chan", "again", 5);
    CGA_ASSERT(run_until_ge(&e, &m2.n, 2, 2000));
    CGA_ASSERT_EQ(m1.n, 2);
    CGA_ASSERT_MEMEQ(m1.payload, m1.len, "again", 5);

    /* unsubscribe one of two: the other still hears; the last one: UNSUBSCRIBE */
    CGA_ASSERT_OK(cga_redis_unsubscribe(r, "chan", msg_cb, &m1));
    CGA_ASSERT_EQ(cga_redis_unsubscribe(r, "chan", msg_cb, &m1), CGA_ENOTFOUND);
    publish(side, "chan", "third", 5);
    CGA_ASSERT(run_until_ge(&e, &m2.n, 3, 2000));
    CGA_ASSERT_EQ(m1.n, 2);
    CGA_ASSERT_OK(cga_redis_unsubscribe(r, "chan", msg_cb, &m2));
    wait_numsub(&e, side, "chan", 0);
    wait_numsub(&e, side, "other", 1);

    /* close from inside a message callback */
    msgs_t mc = {0};
    mc.close_me = r;
    CGA_ASSERT_OK(cga_redis_subscribe(r, "closer", msg_cb, &mc));
    wait_numsub(&e, side, "closer", 1);
    publish(side, "closer", "bye", 3);
    CGA_ASSERT(run_until(&e, &mc.closed, 2000));
    CGA_ASSERT_EQ(mc.n, 1);
    redisFree(side);
    env_close(&e);
    server_stop(&srv);
}

int main(void) {
    CGA_RUN(test_reconnect_after_kill);
    CGA_RUN(test_queue_limits);
    CGA_RUN(test_command_and_connect_timeout);
    CGA_RUN(test_breaker);
    CGA_RUN(test_subscribe);
    return 0;
}

/* redis.c against a real redis-server: connect (unix, TCP), AUTH, ACL users, SELECT, CLIENT
 * SETNAME, connect errors, error mapping, a 10,000-command pipeline, scripts and their reload
 * after SCRIPT FLUSH, close from inside callbacks. Failover cases: test_redis_failover.c. */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cgalpha/breaker.h"
#include "cgalpha/log.h"
#include "redis_helpers.h"

/* ---------------------------------------------------------------- connect and PING */

static void ping_ok(env_t *e, cga_redis_t *r) {
    res_t res = {0};
    CGA_ASSERT_OK(cga_redis_command(r, CGA_REDIS_WAIT, res_cb, &res, "PING"));
    CGA_ASSERT_EQ(res.done, 0); /* never called from inside the call */
    CGA_ASSERT(run_until(e, &res.done, 2000));
    CGA_ASSERT_OK(res.status);
    CGA_ASSERT_EQ(res.type, REDIS_REPLY_STATUS);
    CGA_ASSERT_STREQ(res.str, "PONG");
}

static void test_unix_ping(void) {
    cga_test_redis_t srv;
    server_start(&srv, NULL);
    env_t e;
    env_init(&e);
    cga_redis_opts_t o;
    opts_unix(&o, &srv);
    states_t st = {0};
    cga_redis_t *r = NULL;
    CGA_ASSERT_OK(cga_redis_create(&r, &e.loop, &o));
    CGA_ASSERT_OK(cga_redis_on_state(r, states_cb, &st));
    CGA_ASSERT(!cga_redis_is_connected(r));
    /* issued before the first connect: waits, then goes */
    res_t early = {0};
    CGA_ASSERT_OK(cga_redis_command(r, CGA_REDIS_WAIT, res_cb, &early, "ECHO %s", "early"));
    CGA_ASSERT(run_until(&e, &early.done, 2000));
    CGA_ASSERT_OK(early.status);
    CGA_ASSERT_STREQ(early.str, "early");
    CGA_ASSERT_EQ(st.ups, 1);
    CGA_ASSERT_EQ(st.downs, 0);
    CGA_ASSERT_EQ(st.status[0], 0);
    CGA_ASSERT(cga_redis_is_connected(r));
    CGA_ASSERT_EQ(cga_redis_last_error(r), 0);
    ping_ok(&e, r);

    /* binary-safe argv */
    const char *argv[3] = {"SET", "bin", "a\0b\r\nc"};
    size_t lens[3] = {3, 3, 6};
    res_t set = {0}, get = {0};
    CGA_ASSERT_OK(cga_redis_commandv(r, 0, 0, res_cb, &set, 3, argv, lens));
    CGA_ASSERT_OK(cga_redis_command(r, 0, res_cb, &get, "GET %b", "bin", (size_t)3));
    CGA_ASSERT(run_until(&e, &get.done, 2000));
    CGA_ASSERT_EQ(set.done, 1);
    CGA_ASSERT_MEMEQ(get.str, get.len, "a\0b\r\nc", 6);

    cga_redis_stats_t s;
    cga_redis_stats(r, &s);
    CGA_ASSERT_EQ(s.connects, 1);
    CGA_ASSERT_EQ(s.disconnects, 0);
    CGA_ASSERT_EQ(s.commands_sent, 4);
    CGA_ASSERT_EQ(s.replies, 4);
    CGA_ASSERT_EQ(s.in_flight, 0);
    CGA_ASSERT_EQ(s.queued, 0);
    CGA_ASSERT_EQ(cga_breaker_state(cga_redis_breaker(r), cga_clock_mono_ms()),
                  CGA_BREAKER_CLOSED);
    /* bad arguments are refused up front */
    CGA_ASSERT_EQ(cga_redis_command(r, 0, NULL, NULL, NULL), CGA_EINVAL);
    CGA_ASSERT_EQ(cga_redis_commandv(r, 0, 0, NULL, NULL, 0, argv, lens), CGA_EINVAL);
    close_redis(&e, r);
    env_close(&e);
    server_stop(&srv);
}

static void test_tcp_ping(void) {
    cga_test_redis_t srv;
    server_start(&srv, NULL);
    env_t e;
    env_init(&e);
    cga_redis_opts_t o;
    cga_redis_opts_init(&o);
    o.host = "127.0.0.1";
    o.port = srv.port;
    states_t st = {0};
    cga_redis_t *r = connect_ready(&e, &o, &st);
    ping_ok(&e, r);
    /* the server sees a TCP client */
    res_t info = {0};
    CGA_ASSERT_OK(cga_redis_command(r, 0, res_cb, &info, "CLIENT INFO"));
    CGA_ASSERT(run_until(&e, &info.done, 2000));
    CGA_ASSERT(strstr(info.str, "addr=127.0.0.1:") != NULL);
    close_redis(&e, r);

    /* "localhost" resolves too */
    o.host = "localhost";
    states_t st2 = {0};
    r = connect_ready(&e, &o, &st2);
    ping_ok(&e, r);
    close_redis(&e, r);
    env_close(&e);
    server_stop(&srv);
}

/* ---------------------------------------------------------------- connect errors */

/* Creates a connection, waits for n failed attempts, returns the status of the last one. */
static int failing_attempts(env_t *e, const cga_redis_opts_t *o, int n, states_t *st) {
    cga_redis_t *r = NULL;
    CGA_ASSERT_OK(cga_redis_create(&r, &e->loop, o));
    CGA_ASSERT_OK(cga_redis_on_state(r, states_cb, st));
    CGA_ASSERT(run_until_ge(e, &st->downs, n, 5000));
    CGA_ASSERT_EQ(st->ups, 0);
    CGA_ASSERT(st->downs >= n);
    int last = st->status[st->downs - 1];
    CGA_ASSERT_EQ(cga_redis_last_error(r), last);
    CGA_ASSERT(!cga_redis_is_connected(r));
    /* while down: FAILFAST refused at once, WAIT queued (bounded) */
    CGA_ASSERT_EQ(cga_redis_command(r, CGA_REDIS_FAILFAST, NULL, NULL, "PING"), CGA_ENOTCONN);
    res_t q = {0};
    CGA_ASSERT_OK(cga_redis_command(r, CGA_REDIS_WAIT, res_cb, &q, "PING"));
    close_redis(e, r);
    CGA_ASSERT_EQ(q.done, 1);
    CGA_ASSERT_EQ(q.status, CGA_ECANCELED);
    return last;
}

static void test_connect_errors(void) {
    env_t e;
    env_init(&e);
    cga_redis_opts_t o;
    cga_redis_opts_init(&o);
    o.backoff_base_ms = 5;
    o.backoff_cap_ms = 10;
    o.breaker_failures = 1000;

    /* refused TCP port */
    o.host = "127.0.0.1";
    o.port = cga_test_free_port();
    states_t st = {0};
    int rc = failing_attempts(&e, &o, 3, &st);
    CGA_ASSERT_EQ(rc, -ECONNREFUSED);
    for (int i = 0; i < st.downs; i++) CGA_ASSERT_EQ(st.status[i], -ECONNREFUSED);

    /* missing unix socket */
    o.unix_path = "/tmp/cga-no-such-dir/redis.sock";
    states_t st2 = {0};
    CGA_ASSERT_EQ(failing_attempts(&e, &o, 2, &st2), -ENOENT);
    o.unix_path = NULL;

    /* unknown host: a getaddrinfo code whose text says so */
    o.host = "no-such-host.invalid";
    states_t st3 = {0};
    rc = failing_attempts(&e, &o, 1, &st3);
    fprintf(stderr, "unknown host -> %d %s: %s\n", rc, cga_errname(rc), cga_strerror(rc));
    CGA_ASSERT(rc == UV_EAI_NONAME || rc == UV_EAI_AGAIN || rc == UV_EAI_NODATA ||
               rc == UV_EAI_FAIL);
    CGA_ASSERT(strcmp(cga_strerror(rc), "unknown error") != 0);

    /* bad options */
    cga_redis_t *r = NULL;
    cga_redis_opts_init(&o);
    o.client_name = "has space";
    CGA_ASSERT_EQ(cga_redis_create(&r, &e.loop, &o), CGA_EINVAL);
    cga_redis_opts_init(&o);
    o.db = -1;
    CGA_ASSERT_EQ(cga_redis_create(&r, &e.loop, &o), CGA_EINVAL);
    CGA_ASSERT(r == NULL);
    env_close(&e);
}

/* ---------------------------------------------------------------- AUTH, ACL, SELECT */

static void test_auth_password(void) {
    const char *good = "g00d-Pa55word";
    const char *bad = "wr0ng-Pa55word";
    cga_test_redis_t srv;
    server_start(&srv, "requirepass g00d-Pa55word\n");
    env_t e;
    env_init(&e);
    cga_redis_opts_t o;
    opts_unix(&o, &srv);
    o.password = good;
    states_t st = {0};
    cga_redis_t *r = connect_ready(&e, &o, &st);
    ping_ok(&e, r);
    close_redis(&e, r);

    /* wrong password: state callback with CGA_EAUTH on every attempt, the password nowhere in
     * the log (even at DEBUG), one ERROR line ("Redis connection failed") for the whole series */
    int level = cga_log_level_current;
    cga_log_set_level(CGA_LOG_DEBUG);
    char path[64], log[16384];
    int saved = stderr_begin(path, sizeof path);
    o.password = bad;
    states_t st2 = {0};
    int rc = failing_attempts(&e, &o, 3, &st2);
    stderr_end(saved, path, log, sizeof log);
    cga_log_set_level(level);
    CGA_ASSERT_EQ(rc, CGA_EAUTH);
    for (int i = 0; i < st2.downs; i++) CGA_ASSERT_EQ(st2.status[i], CGA_EAUTH);
    CGA_ASSERT(strstr(log, "Redis authentication failed") != NULL);
    CGA_ASSERT(strstr(log, bad) == NULL);
    CGA_ASSERT(strstr(log, "wr0ng") == NULL);
    CGA_ASSERT(strstr(log, good) == NULL);
    CGA_ASSERT_EQ(count_str(log, " ERROR "), 1);
    CGA_ASSERT_EQ(count_str(log, "Redis connection failed"), 1);

    /* no password at all: NOAUTH is an authentication failure too */
    o.password = NULL;
    states_t st3 = {0};
    CGA_ASSERT_EQ(failing_attempts(&e, &o, 1, &st3), CGA_EAUTH);
    env_close(&e);
    server_stop(&srv);
}

static void test_acl_user(void) {
    cga_test_redis_t srv;
    server_start(&srv, NULL);
    redisContext *side = cga_test_redis_connect(&srv, NULL);
    freeReplyObject(side_cmd(side, "ACL SETUSER alice on >alice-Pw ~* &* +@all"));
    env_t e;
    env_init(&e);
    cga_redis_opts_t o;
    opts_unix(&o, &srv);
    o.username = "alice";
    o.password = "alice-Pw";
    states_t st = {0};
    cga_redis_t *r = connect_ready(&e, &o, &st);
    res_t who = {0};
    CGA_ASSERT_OK(cga_redis_command(r, 0, res_cb, &who, "ACL WHOAMI"));
    CGA_ASSERT(run_until(&e, &who.done, 2000));
    CGA_ASSERT_STREQ(who.str, "alice");
    close_redis(&e, r);

    o.password = "alice-wrong";
    states_t st2 = {0};
    CGA_ASSERT_EQ(failing_attempts(&e, &o, 1, &st2), CGA_EAUTH);
    o.username = "nobody";
    o.password = "alice-Pw";
    states_t st3 = {0};
    CGA_ASSERT_EQ(failing_attempts(&e, &o, 1, &st3), CGA_EAUTH);
    env_close(&e);
    redisFree(side);
    server_stop(&srv);
}

static void test_select_and_name(void) {
    cga_test_redis_t srv;
    server_start(&srv, NULL);
    env_t e;
    env_init(&e);
    cga_redis_opts_t o;
    opts_unix(&o, &srv);
    o.db = 3;
    o.client_name = "cga-test:1";
    states_t st = {0};
    cga_redis_t *r = connect_ready(&e, &o, &st);
    res_t set = {0}, name = {0};
    CGA_ASSERT_OK(cga_redis_command(r, 0, res_cb, &set, "SET where db3"));
    CGA_ASSERT_OK(cga_redis_command(r, 0, res_cb, &name, "CLIENT GETNAME"));
    CGA_ASSERT(run_until(&e, &name.done, 2000));
    CGA_ASSERT_OK(set.status);
    CGA_ASSERT_STREQ(name.str, "cga-test:1");
    redisContext *side = cga_test_redis_connect(&srv, NULL);
    redisReply *rep = side_cmd(side, "GET where");
    CGA_ASSERT_EQ(rep->type, REDIS_REPLY_NIL); /* not in db 0 */
    freeReplyObject(rep);
    freeReplyObject(side_cmd(side, "SELECT 3"));
    rep = side_cmd(side, "GET where");
    CGA_ASSERT_STREQ(rep->str, "db3");
    freeReplyObject(rep);
    redisFree(side);
    close_redis(&e, r);

    /* a db index the server does not have */
    o.db = 99;
    states_t st2 = {0};
    CGA_ASSERT_EQ(failing_attempts(&e, &o, 2, &st2), CGA_ESELECT);
    for (int i = 0; i < st2.downs; i++) CGA_ASSERT_EQ(st2.status[i], CGA_ESELECT);
    env_close(&e);
    server_stop(&srv);
}

/* ---------------------------------------------------------------- replies and errors */

static void test_error_mapping(void) {
    cga_test_redis_t srv;
    server_start(&srv, NULL);
    env_t e;
    env_init(&e);
    cga_redis_opts_t o;
    opts_unix(&o, &srv);
    states_t st = {0};
    cga_redis_t *r = connect_ready(&e, &o, &st);
    res_t a = {0}, b = {0}, c = {0}, d = {0}, f = {0}, g = {0}, h = {0};
    cga_redis_command(r, 0, res_cb, &a, "SET s x");
    cga_redis_command(r, 0, res_cb, &b, "INCR s");
    cga_redis_command(r, 0, res_cb, &c, "CONFIG SET maxmemory 1");
    cga_redis_command(r, 0, res_cb, &d, "SET big x");
    cga_redis_command(r, 0, res_cb, &f, "CONFIG SET maxmemory 0");
    int port = cga_test_free_port();
    cga_redis_command(r, 0, res_cb, &g, "REPLICAOF 127.0.0.1 %d", port);
    cga_redis_command(r, 0, res_cb, &h, "SET ro x");
    CGA_ASSERT(run_until(&e, &h.done, 2000));
    CGA_ASSERT_OK(a.status);
    CGA_ASSERT_EQ(b.status, CGA_EREPLY);
    CGA_ASSERT_EQ(b.type, REDIS_REPLY_ERROR);
    CGA_ASSERT(strncmp(b.str, "ERR value is not an integer", 27) == 0);
    CGA_ASSERT_OK(c.status);
    CGA_ASSERT_EQ(d.status, CGA_EOOM);
    CGA_ASSERT(strncmp(d.str, "OOM", 3) == 0);
    CGA_ASSERT_OK(f.status);
    CGA_ASSERT_OK(g.status);
    CGA_ASSERT_EQ(h.status, CGA_EREADONLY);
    CGA_ASSERT(strncmp(h.str, "READONLY", 8) == 0);
    res_t back = {0};
    cga_redis_command(r, 0, res_cb, &back, "REPLICAOF NO ONE");
    CGA_ASSERT(run_until(&e, &back.done, 2000));
    CGA_ASSERT_OK(back.status);
    /* an error reply is not a connection failure */
    CGA_ASSERT(cga_redis_is_connected(r));
    CGA_ASSERT_EQ(st.downs, 0);
    close_redis(&e, r);
    env_close(&e);
    server_stop(&srv);
}

/* ---------------------------------------------------------------- pipelining */

typedef struct {
    int n, bad, done;
    long long next; /* expected INCR result */
} pipe_t;

static void pipe_cb(int status, struct redisReply *reply, void *arg) {
    pipe_t *p = arg;
    p->n++;
    if (status != CGA_OK || !reply || reply->type != REDIS_REPLY_INTEGER ||
        reply->integer != p->next)
        p->bad++;
    p->next++;
    if (p->n == 10000) p->done = 1;
}

static void test_pipeline_10000(void) {
    cga_test_redis_t srv;
    server_start(&srv, NULL);
    env_t e;
    env_init(&e);
    cga_redis_opts_t o;
    opts_unix(&o, &srv);
    states_t st = {0};
    cga_redis_t *r = connect_ready(&e, &o, &st);
    cga_redis_stats_t s0, s1;
    cga_redis_stats(r, &s0);
    pipe_t p = {.next = 1};
    uint64_t t0 = cga_clock_mono_us();
    for (int i = 0; i < 10000; i++)
        CGA_ASSERT_OK(cga_redis_command(r, 0, pipe_cb, &p, "INCR %s", "counter"));
    uint64_t t1 = cga_clock_mono_us();
    cga_redis_stats(r, &s1);
    /* all accepted in this turn, none answered yet */
    CGA_ASSERT_EQ(s1.in_flight, 10000);
    CGA_ASSERT_EQ(s1.commands_sent - s0.commands_sent, 10000);
    CGA_ASSERT_EQ(p.n, 0);
    CGA_ASSERT(run_until(&e, &p.done, 10000));
    uint64_t t2 = cga_clock_mono_us();
    CGA_ASSERT_EQ(p.n, 10000);
    CGA_ASSERT_EQ(p.bad, 0);
    fprintf(stderr, "10000 INCR: issue %.1f ms, replies after %.1f ms\n", (t1 - t0) / 1000.0,
            (t2 - t0) / 1000.0);
    res_t get = {0};
    cga_redis_command(r, 0, res_cb, &get, "GET counter");
    CGA_ASSERT(run_until(&e, &get.done, 2000));
    CGA_ASSERT_STREQ(get.str, "10000");
    /* pipelined, not one round trip each: well under what 10,000 round trips would take */
    CGA_ASSERT_OP((t2 - t0) / 1000.0, <, 3000);
    cga_redis_stats(r, &s1);
    CGA_ASSERT_EQ(s1.in_flight, 0);
    close_redis(&e, r);
    env_close(&e);
    server_stop(&srv);
}

/* ---------------------------------------------------------------- scripts */

static long long info_field(redisContext *side, const char *section, const char *field) {
    redisReply *rep = side_cmd(side, "INFO %s", section);
    const char *p = strstr(rep->str, field);
    long long v = p ? atoll(p + strlen(field)) : 0;
    freeReplyObject(rep);
    return v;
}

static void test_scripts(void) {
    cga_test_redis_t srv;
    server_start(&srv, NULL);
    redisContext *side = cga_test_redis_connect(&srv, NULL);
    env_t e;
    env_init(&e);
    cga_redis_opts_t o;
    opts_unix(&o, &srv);
    cga_redis_t *r = NULL;
    CGA_ASSERT_OK(cga_redis_create(&r, &e.loop, &o));
    states_t st = {0};
    CGA_ASSERT_OK(cga_redis_on_state(r, states_cb, &st));
    const char *lua = "return KEYS[1] .. ':' .. ARGV[1]";
    cga_redis_script_t *s = NULL, *s2 = NULL;
    CGA_ASSERT_OK(cga_redis_script_register(r, lua, &s)); /* before the first connect */
    CGA_ASSERT_OK(cga_redis_script_register(r, lua, &s2));
    CGA_ASSERT(s == s2);
    /* our SHA-1 is the one Redis computes */
    redisReply *rep = side_cmd(side, "SCRIPT LOAD %s", lua);
    CGA_ASSERT_STREQ(cga_redis_script_sha(s), rep->str);
    freeReplyObject(rep);
    freeReplyObject(side_cmd(side, "SCRIPT FLUSH"));

    /* an EVALSHA issued before the connect waits for the handshake's SCRIPT LOAD */
    const char *args[2] = {"k", "v"};
    size_t lens[2] = {1, 1};
    res_t r1 = {0};
    CGA_ASSERT_OK(cga_redis_evalsha(r, s, 0, res_cb, &r1, 1, 2, args, lens));
    CGA_ASSERT(run_until(&e, &r1.done, 3000));
    CGA_ASSERT_OK(r1.status);
    CGA_ASSERT_STREQ(r1.str, "k:v");
    CGA_ASSERT_EQ(info_field(side, "errorstats", "errorstat_NOSCRIPT:count="), 0);
    rep = side_cmd(side, "SCRIPT EXISTS %s", cga_redis_script_sha(s));
    CGA_ASSERT_EQ(rep->element[0]->integer, 1);
    freeReplyObject(rep);

    /* SCRIPT FLUSH from another connection: reload and one retry, unseen by the caller */
    freeReplyObject(side_cmd(side, "SCRIPT FLUSH"));
    res_t r2 = {0}, after = {0};
    args[1] = "w";
    CGA_ASSERT_OK(cga_redis_evalsha(r, s, 0, res_cb, &r2, 1, 2, args, lens));
    CGA_ASSERT_OK(cga_redis_command(r, 0, res_cb, &after, "PING"));
    CGA_ASSERT(run_until(&e, &r2.done, 3000));
    CGA_ASSERT_OK(r2.status);
    CGA_ASSERT_STREQ(r2.str, "k:w");
    CGA_ASSERT_EQ(r2.done, 1);
    CGA_ASSERT_EQ(info_field(side, "errorstats", "errorstat_NOSCRIPT:count="), 1);

    /* registered while connected: loaded at once */
    cga_redis_script_t *s3 = NULL;
    CGA_ASSERT_OK(cga_redis_script_register(r, "return #KEYS + #ARGV", &s3));
    res_t r3 = {0};
    CGA_ASSERT_OK(cga_redis_evalsha(r, s3, 0, res_cb, &r3, 1, 2, args, lens));
    CGA_ASSERT(run_until(&e, &r3.done, 3000));
    CGA_ASSERT_OK(r3.status);
    CGA_ASSERT_EQ(r3.integer, 2);
    CGA_ASSERT_EQ(info_field(side, "errorstats", "errorstat_NOSCRIPT:count="), 1);

    /* a script that does not compile: the call fails with the error, the connection stays */
    cga_redis_script_t *bad = NULL;
    CGA_ASSERT_OK(cga_redis_script_register(r, "return +", &bad));
    res_t r4 = {0};
    CGA_ASSERT_OK(cga_redis_evalsha(r, bad, 0, res_cb, &r4, 0, 0, NULL, NULL));
    CGA_ASSERT(run_until(&e, &r4.done, 3000));
    CGA_ASSERT_EQ(r4.status, CGA_EREPLY);
    CGA_ASSERT_EQ(r4.done, 1);
    CGA_ASSERT(cga_redis_is_connected(r));
    CGA_ASSERT_EQ(cga_redis_evalsha(r, s, 0, NULL, NULL, 3, 2, args, lens), CGA_EINVAL);

    /* after a reconnect the handshake loads the scripts again (the bad one logs and is
     * skipped) */
    rep = side_cmd(side, "CLIENT KILL TYPE normal SKIPME yes");
    freeReplyObject(rep);
    freeReplyObject(side_cmd(side, "SCRIPT FLUSH"));
    CGA_ASSERT(run_until(&e, &st.downs, 2000));
    CGA_ASSERT(run_until_ge(&e, &st.ups, 2, 2000));
    rep = side_cmd(side, "SCRIPT EXISTS %s %s", cga_redis_script_sha(s), cga_redis_script_sha(s3));
    CGA_ASSERT_EQ(rep->element[0]->integer, 1);
    CGA_ASSERT_EQ(rep->element[1]->integer, 1);
    freeReplyObject(rep);
    close_redis(&e, r);
    env_close(&e);
    redisFree(side);
    server_stop(&srv);
}

/* ---------------------------------------------------------------- close from callbacks */

typedef struct {
    cga_redis_t *r;
    int closed;
    int done;
    int after_close_rc;
    res_t res;
} closer_t;

static void closer_done(void *arg) { ((closer_t *)arg)->done++; }

static void close_in_reply_cb(int status, struct redisReply *reply, void *arg) {
    closer_t *c = arg;
    res_cb(status, reply, &c->res);
    cga_redis_close(c->r, closer_done, c);
    cga_redis_close(c->r, closer_done, c); /* a second close is ignored */
    c->closed = 1;
    c->after_close_rc = cga_redis_command(c->r, 0, NULL, NULL, "PING");
}

static void close_in_state_cb(int up, int status, void *arg) {
    closer_t *c = arg;
    if (!up) return;
    cga_redis_close(c->r, closer_done, c);
    c->closed = 1;
}

static void test_close_from_callbacks(void) {
    cga_test_redis_t srv;
    server_start(&srv, NULL);
    cga_redis_opts_t o;
    opts_unix(&o, &srv);

    /* from a reply callback, with more commands in flight behind it */
    {
        env_t e;
        env_init(&e);
        closer_t c = {0};
        states_t st = {0};
        c.r = connect_ready(&e, &o, &st);
        res_t rest[3] = {{0}};
        CGA_ASSERT_OK(cga_redis_command(c.r, 0, close_in_reply_cb, &c, "PING"));
        for (int i = 0; i < 3; i++)
            CGA_ASSERT_OK(cga_redis_command(c.r, 0, res_cb, &rest[i], "PING"));
        CGA_ASSERT(run_until(&e, &c.done, 2000));
        CGA_ASSERT_EQ(c.done, 1);
        CGA_ASSERT_OK(c.res.status);
        CGA_ASSERT_EQ(c.after_close_rc, CGA_ECLOSED);
        for (int i = 0; i < 3; i++) {
            CGA_ASSERT_EQ(rest[i].done, 1);
            CGA_ASSERT_EQ(rest[i].status, CGA_ECANCELED);
        }
        env_close(&e);
    }
    /* from the state callback of the first connect */
    {
        env_t e;
        env_init(&e);
        closer_t c = {0};
        CGA_ASSERT_OK(cga_redis_create(&c.r, &e.loop, &o));
        CGA_ASSERT_OK(cga_redis_on_state(c.r, close_in_state_cb, &c));
        res_t q = {0};
        CGA_ASSERT_OK(cga_redis_command(c.r, 0, res_cb, &q, "PING")); /* sent at connect */
        CGA_ASSERT(run_until(&e, &c.done, 2000));
        CGA_ASSERT_EQ(q.done, 1);
        CGA_ASSERT_EQ(q.status, CGA_ECANCELED);
        env_close(&e);
    }
    /* right after create, before anything ran */
    {
        env_t e;
        env_init(&e);
        cga_redis_t *r = NULL;
        CGA_ASSERT_OK(cga_redis_create(&r, &e.loop, &o));
        close_redis(&e, r);
        env_close(&e);
    }
    /* while connecting: the connect deadline is not waited for */
    {
        env_t e;
        env_init(&e);
        cga_redis_t *r = NULL;
        CGA_ASSERT_OK(cga_redis_create(&r, &e.loop, &o));
        uv_run(&e.loop, UV_RUN_NOWAIT); /* the attempt starts */
        close_redis(&e, r);
        env_close(&e);
    }
    /* while a host name is being resolved (on the thread pool) */
    {
        env_t e;
        env_init(&e);
        cga_redis_opts_t t;
        cga_redis_opts_init(&t);
        t.host = "localhost";
        t.port = srv.port;
        cga_redis_t *r = NULL;
        CGA_ASSERT_OK(cga_redis_create(&r, &e.loop, &t));
        uv_run(&e.loop, UV_RUN_NOWAIT); /* the attempt starts */
        close_redis(&e, r);
        env_close(&e);
    }
    cga_redis_close(NULL, NULL, NULL);
    server_stop(&srv);
}

int main(void) {
    CGA_RUN(test_unix_ping);
    CGA_RUN(test_tcp_ping);
    CGA_RUN(test_connect_errors);
    CGA_RUN(test_auth_password);
    CGA_RUN(test_acl_user);
    CGA_RUN(test_select_and_name);
    CGA_RUN(test_error_mapping);
    CGA_RUN(test_pipeline_10000);
    CGA_RUN(test_scripts);
    CGA_RUN(test_close_from_callbacks);
    return 0;
}

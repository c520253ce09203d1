/* Distributed lock against a real redis-server: mutual exclusion, token-checked release,
 * renewal, loss (overwritten key, Redis stalled), fail-over to a standby after the holder's
 * process is killed, single-instance mode. */

#include <errno.h>
#include <hiredis.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "cgalpha/clock.h"
#include "cgalpha/err.h"
#include "cgalpha/lock.h"
#include "cgalpha/log.h"
#include "cgalpha/redis.h"
#include "redis_server.h"
#include "test.h"
#include "uv_wait.h"

#define NS "cgalpha"

static cga_test_redis_t srv;

/* --- helpers ------------------------------------------------------------------------------ */


static cga_redis_t *connect_redis(uv_loop_t *loop, unsigned command_timeout_ms) {
    cga_redis_opts_t o;
    cga_redis_opts_init(&o);
    o.unix_path = srv.sock;
    o.connect_timeout_ms = 300;
    o.command_timeout_ms = command_timeout_ms;
    o.backoff_base_ms = 20;
    o.backoff_cap_ms = 100;
    o.breaker_failures = 100000; /* these tests are about the lock, not the breaker */
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

static void close_lock(uv_loop_t *loop, cga_lock_t *l) {
    int done = 0;
    cga_lock_close(l, on_done, &done);
    RUN_UNTIL(loop, done, 6000);
    CGA_ASSERT_EQ(done, 1);
}

static void finish_loop(uv_loop_t *loop) {
    for (int i = 0; i < 10; i++) uv_run(loop, UV_RUN_NOWAIT);
    CGA_ASSERT_EQ(uv_loop_close(loop), 0);
}

typedef struct {
    int done;
    int status;
    int acquired;
} res_t;

static void on_lock(int status, int acquired, void *arg) {
    res_t *r = arg;
    r->done++;
    r->status = status;
    r->acquired = acquired;
}

static res_t acquire(uv_loop_t *loop, cga_lock_t *l) {
    res_t r = {0, 0, 0};
    CGA_ASSERT_OK(cga_lock_acquire(l, on_lock, &r));
    RUN_UNTIL(loop, r.done, 6000);
    CGA_ASSERT_EQ(r.done, 1);
    return r;
}

static res_t release(uv_loop_t *loop, cga_lock_t *l) {
    res_t r = {0, 0, 0};
    CGA_ASSERT_OK(cga_lock_release(l, on_lock, &r));
    RUN_UNTIL(loop, r.done, 6000);
    CGA_ASSERT_EQ(r.done, 1);
    return r;
}

static void on_lost(void *arg) {
    (*(int *)arg)++;
}

/* The key's value ("" when absent). */
static void get_key(redisContext *c, const char *key, char *out, size_t n) {
    redisReply *r = redisCommand(c, "GET %s", key);
    CGA_ASSERT(r != NULL);
    if (r->type == REDIS_REPLY_STRING) snprintf(out, n, "%s", r->str);
    else out[0] = '\0';
    freeReplyObject(r);
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

/* --- tests -------------------------------------------------------------------------------- */

static void test_mutual_exclusion_and_release(void) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    redisContext *c = cga_test_redis_connect(&srv, NULL);
    command_ok(c, "FLUSHALL");
    cga_redis_t *ra = connect_redis(&loop, 2000), *rb = connect_redis(&loop, 2000);
    cga_lock_t *a, *b;
    CGA_ASSERT_OK(cga_lock_create(&a, &loop, ra, NS, "ops", 5000, 0));
    CGA_ASSERT_OK(cga_lock_create(&b, &loop, rb, NS, "ops", 5000, 0));
    CGA_ASSERT_EQ(strlen(cga_lock_token(a)), 32);
    CGA_ASSERT(strcmp(cga_lock_token(a), cga_lock_token(b)) != 0);

    res_t r = acquire(&loop, a);
    CGA_ASSERT_OK(r.status);
    CGA_ASSERT_EQ(r.acquired, 1);
    CGA_ASSERT_EQ(cga_lock_is_held(a), 1);
    char v[64];
    get_key(c, NS ":lock:ops", v, sizeof v);
    CGA_ASSERT_STREQ(v, cga_lock_token(a));
    long long t = pttl(c, NS ":lock:ops");
    CGA_ASSERT_OP(t, >, 0);
    CGA_ASSERT_OP(t, <=, 5000);

    r = acquire(&loop, b);
    CGA_ASSERT_OK(r.status);
    CGA_ASSERT_EQ(r.acquired, 0);
    CGA_ASSERT_EQ(cga_lock_is_held(b), 0);

    /* Acquire while held: still ours. */
    r = acquire(&loop, a);
    CGA_ASSERT_OK(r.status);
    CGA_ASSERT_EQ(r.acquired, 1);

    /* A release by the non-holder deletes nothing. */
    r = release(&loop, b);
    CGA_ASSERT_OK(r.status);
    CGA_ASSERT_EQ(r.acquired, 0);
    get_key(c, NS ":lock:ops", v, sizeof v);
    CGA_ASSERT_STREQ(v, cga_lock_token(a));

    /* The holder's release lets the other one in; the token changes for the next period. */
    char old_token[40];
    snprintf(old_token, sizeof old_token, "%s", cga_lock_token(a));
    int lost = 0;
    cga_lock_on_lost(a, on_lost, &lost);
    r = release(&loop, a);
    CGA_ASSERT_OK(r.status);
    CGA_ASSERT_EQ(cga_lock_is_held(a), 0);
    CGA_ASSERT(strcmp(old_token, cga_lock_token(a)) != 0);
    get_key(c, NS ":lock:ops", v, sizeof v);
    CGA_ASSERT_STREQ(v, "");
    r = acquire(&loop, b);
    CGA_ASSERT_OK(r.status);
    CGA_ASSERT_EQ(r.acquired, 1);
    get_key(c, NS ":lock:ops", v, sizeof v);
    CGA_ASSERT_STREQ(v, cga_lock_token(b));
    r = acquire(&loop, a);
    CGA_ASSERT_EQ(r.acquired, 0);
    RUN_FOR(&loop, 200);
    CGA_ASSERT_EQ(lost, 0); /* a release is not a loss */

    /* Close releases the lock. */
    close_lock(&loop, b);
    get_key(c, NS ":lock:ops", v, sizeof v);
    CGA_ASSERT_STREQ(v, "");
    close_lock(&loop, a);
    close_redis(&loop, ra);
    close_redis(&loop, rb);
    redisFree(c);
    finish_loop(&loop);
}

static void test_campaign_in_process(void) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    redisContext *c = cga_test_redis_connect(&srv, NULL);
    command_ok(c, "FLUSHALL");
    cga_redis_t *ra = connect_redis(&loop, 2000), *rb = connect_redis(&loop, 2000);
    cga_lock_t *a, *b;
    CGA_ASSERT_OK(cga_lock_create(&a, &loop, ra, NS, "nexus", 3000, 0));
    CGA_ASSERT_OK(cga_lock_create(&b, &loop, rb, NS, "nexus", 3000, 0));
    CGA_ASSERT_EQ(acquire(&loop, a).acquired, 1);
    res_t standby = {0, 0, 0};
    CGA_ASSERT_OK(cga_lock_campaign(b, 50, on_lock, &standby));
    CGA_ASSERT_EQ(cga_lock_campaign(b, 50, on_lock, &standby), CGA_EEXIST);
    RUN_FOR(&loop, 300);
    CGA_ASSERT_EQ(standby.done, 0);
    uint64_t t0 = cga_clock_mono_ms();
    CGA_ASSERT_OK(release(&loop, a).status);
    RUN_UNTIL(&loop, standby.done, 2000);
    CGA_ASSERT_EQ(standby.done, 1);
    CGA_ASSERT_OK(standby.status);
    CGA_ASSERT_EQ(standby.acquired, 1);
    CGA_ASSERT_OP(cga_clock_mono_ms() - t0, <, 500);
    CGA_ASSERT_EQ(cga_lock_is_held(b), 1);

    /* A campaign on a lock already held ends at once; a campaign stopped by close never calls
     * back. */
    res_t again = {0, 0, 0};
    CGA_ASSERT_OK(cga_lock_campaign(b, 50, on_lock, &again));
    RUN_UNTIL(&loop, again.done, 2000);
    CGA_ASSERT_EQ(again.acquired, 1);
    res_t never = {0, 0, 0};
    CGA_ASSERT_OK(cga_lock_campaign(a, 50, on_lock, &never));
    RUN_FOR(&loop, 200);
    close_lock(&loop, a);
    CGA_ASSERT_EQ(never.done, 0);
    close_lock(&loop, b);
    close_redis(&loop, ra);
    close_redis(&loop, rb);
    redisFree(c);
    finish_loop(&loop);
}

static void test_renewal_keeps_lock(void) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    redisContext *c = cga_test_redis_connect(&srv, NULL);
    command_ok(c, "FLUSHALL");
    cga_redis_t *r = connect_redis(&loop, 2000);
    cga_lock_t *l;
    CGA_ASSERT_EQ(cga_lock_create(&l, &loop, r, NS, "ops", 299, 0), CGA_EINVAL);
    CGA_ASSERT_OK(cga_lock_create(&l, &loop, r, NS, "ops", 300, 0));
    int lost = 0;
    cga_lock_on_lost(l, on_lost, &lost);
    CGA_ASSERT_EQ(acquire(&loop, l).acquired, 1);
    RUN_FOR(&loop, 1200); /* four ttls */
    CGA_ASSERT_EQ(lost, 0);
    CGA_ASSERT_EQ(cga_lock_is_held(l), 1);
    char v[64];
    get_key(c, NS ":lock:ops", v, sizeof v);
    CGA_ASSERT_STREQ(v, cga_lock_token(l));
    long long t = pttl(c, NS ":lock:ops");
    CGA_ASSERT_OP(t, >, 0);
    CGA_ASSERT_OP(t, <=, 300);
    close_lock(&loop, l);
    get_key(c, NS ":lock:ops", v, sizeof v);
    CGA_ASSERT_STREQ(v, "");
    close_redis(&loop, r);
    redisFree(c);
    finish_loop(&loop);
}

static void test_lost_when_overwritten(void) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    redisContext *c = cga_test_redis_connect(&srv, NULL);
    command_ok(c, "FLUSHALL");
    cga_redis_t *r = connect_redis(&loop, 2000);
    cga_lock_t *l;
    CGA_ASSERT_OK(cga_lock_create(&l, &loop, r, NS, "ops", 300, 0));
    int lost = 0;
    cga_lock_on_lost(l, on_lost, &lost);
    CGA_ASSERT_EQ(acquire(&loop, l).acquired, 1);
    command_ok(c, "SET " NS ":lock:ops someone-else PX 10000");
    uint64_t t0 = cga_clock_mono_ms();
    RUN_UNTIL(&loop, lost, 2000);
    CGA_ASSERT_EQ(lost, 1);
    CGA_ASSERT_OP(cga_clock_mono_ms() - t0, <, 300); /* the next renewal (ttl/3) notices */
    CGA_ASSERT_EQ(cga_lock_is_held(l), 0);
    RUN_FOR(&loop, 400);
    CGA_ASSERT_EQ(lost, 1); /* once, and renewals stopped */
    char v[64];
    get_key(c, NS ":lock:ops", v, sizeof v);
    CGA_ASSERT_STREQ(v, "someone-else"); /* never deletes another holder's key */
    close_lock(&loop, l);
    get_key(c, NS ":lock:ops", v, sizeof v);
    CGA_ASSERT_STREQ(v, "someone-else");
    close_redis(&loop, r);
    redisFree(c);
    finish_loop(&loop);
}

static void test_lost_when_redis_stalls(void) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    redisContext *c = cga_test_redis_connect(&srv, NULL);
    command_ok(c, "FLUSHALL");
    cga_redis_t *r = connect_redis(&loop, 2000);
    cga_lock_t *l;
    CGA_ASSERT_OK(cga_lock_create(&l, &loop, r, NS, "ops", 300, 0));
    int lost = 0;
    cga_lock_on_lost(l, on_lost, &lost);
    CGA_ASSERT_EQ(acquire(&loop, l).acquired, 1);
    RUN_FOR(&loop, 250);
    CGA_ASSERT_EQ(lost, 0);
    cga_test_redis_signal(&srv, SIGSTOP);
    uint64_t t0 = cga_clock_mono_ms();
    RUN_UNTIL(&loop, lost, 1500);
    uint64_t waited = cga_clock_mono_ms() - t0;
    CGA_ASSERT_EQ(lost, 1);
    /* At most one ttl after the last confirmed renewal, which preceded the stop. */
    CGA_ASSERT_OP(waited, <=, 300 + 100);
    CGA_ASSERT_EQ(cga_lock_is_held(l), 0);
    RUN_FOR(&loop, 300); /* stopped for well over a ttl */
    cga_test_redis_signal(&srv, SIGCONT);
    RUN_FOR(&loop, 300);
    CGA_ASSERT_EQ(lost, 1);
    /* The process may campaign again once Redis answers. */
    res_t back = {0, 0, 0};
    CGA_ASSERT_OK(cga_lock_campaign(l, 50, on_lock, &back));
    RUN_UNTIL(&loop, back.done, 5000);
    CGA_ASSERT_EQ(back.acquired, 1);
    char v[64];
    get_key(c, NS ":lock:ops", v, sizeof v);
    CGA_ASSERT_STREQ(v, cga_lock_token(l));
    close_lock(&loop, l);
    close_redis(&loop, r);
    redisFree(c);
    finish_loop(&loop);
}

/* A child process takes the lock, tells its token through a pipe and renews until killed. */
static pid_t spawn_holder(const char *resource, unsigned ttl_ms, char *token, size_t n) {
    int fds[2];
    CGA_ASSERT_OK(pipe(fds));
    pid_t pid = fork();
    CGA_ASSERT(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        uv_loop_t loop;
        uv_loop_init(&loop);
        cga_redis_t *r = connect_redis(&loop, 2000);
        cga_lock_t *l;
        CGA_ASSERT_OK(cga_lock_create(&l, &loop, r, NS, resource, ttl_ms, 0));
        res_t got = acquire(&loop, l);
        if (got.acquired != 1) _exit(2);
        const char *t = cga_lock_token(l);
        if (write(fds[1], t, strlen(t)) != (ssize_t)strlen(t)) _exit(3);
        RUN_FOR(&loop, 20000); /* renewing until killed */
        _exit(0);
    }
    close(fds[1]);
    struct pollfd p = {.fd = fds[0], .events = POLLIN};
    CGA_ASSERT_EQ(poll(&p, 1, 5000), 1);
    ssize_t got = read(fds[0], token, n - 1);
    close(fds[0]);
    CGA_ASSERT_EQ(got, 32);
    token[got] = '\0';
    return pid;
}

static void test_standby_takes_over_after_kill(void) {
    const unsigned ttl = 600, retry = 100;
    char child_token[64];
    pid_t child = spawn_holder("nexus", ttl, child_token, sizeof child_token);

    uv_loop_t loop;
    uv_loop_init(&loop);
    redisContext *c = cga_test_redis_connect(&srv, NULL);
    cga_redis_t *r = connect_redis(&loop, 2000);
    cga_lock_t *l;
    CGA_ASSERT_OK(cga_lock_create(&l, &loop, r, NS, "nexus", 3000, 0));
    res_t standby = {0, 0, 0};
    CGA_ASSERT_OK(cga_lock_campaign(l, retry, on_lock, &standby));
    RUN_FOR(&loop, 2 * ttl); /* the child renews: the standby waits */
    CGA_ASSERT_EQ(standby.done, 0);
    char v[64];
    get_key(c, NS ":lock:nexus", v, sizeof v);
    CGA_ASSERT_STREQ(v, child_token);

    kill(child, SIGKILL);
    uint64_t t0 = cga_clock_mono_ms();
    int st;
    CGA_ASSERT_EQ(waitpid(child, &st, 0), child);
    RUN_UNTIL(&loop, standby.done, 5000);
    uint64_t took = cga_clock_mono_ms() - t0;
    CGA_ASSERT_EQ(standby.done, 1);
    CGA_ASSERT_OK(standby.status);
    CGA_ASSERT_EQ(standby.acquired, 1);
    fprintf(stderr, "   standby took over %llu ms after the kill (ttl %u, retry %u)\n",
            (unsigned long long)took, ttl, retry);
    CGA_ASSERT_OP(took, <=, ttl + retry + 100);
    /* Not before the dead holder's key could expire: its last renewal was at most ttl/3 ago. */
    CGA_ASSERT_OP(took, >=, ttl / 2);
    get_key(c, NS ":lock:nexus", v, sizeof v);
    CGA_ASSERT_STREQ(v, cga_lock_token(l));
    close_lock(&loop, l);
    close_redis(&loop, r);
    redisFree(c);
    finish_loop(&loop);
}

static void test_single_instance(void) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    redisContext *c = cga_test_redis_connect(&srv, NULL);
    command_ok(c, "FLUSHALL");
    redisFree(c);
    cga_redis_t *r = connect_redis(&loop, 300);
    cga_lock_t *single, *plain;
    CGA_ASSERT_OK(cga_lock_create(&single, &loop, r, NS, "ops", 600, 1));
    CGA_ASSERT_OK(cga_lock_create(&plain, &loop, r, NS, "ops", 600, 0));

    /* Redis gone: the single instance goes ahead, the plain lock reports the error. */
    cga_test_redis_signal(&srv, SIGKILL);
    RUN_UNTIL(&loop, !cga_redis_is_connected(r), 3000);
    CGA_ASSERT_EQ(cga_redis_is_connected(r), 0);
    res_t p = acquire(&loop, plain);
    CGA_ASSERT_EQ(p.acquired, 0);
    CGA_ASSERT(p.status == CGA_ENOTCONN || p.status == CGA_ECONNLOST ||
               p.status == CGA_ETIMEDOUT || p.status == CGA_EBREAKER);
    res_t s = acquire(&loop, single);
    CGA_ASSERT_OK(s.status);
    CGA_ASSERT_EQ(s.acquired, 1);
    CGA_ASSERT_EQ(cga_lock_is_held(single), 1);
    int lost = 0;
    cga_lock_on_lost(single, on_lost, &lost);
    RUN_FOR(&loop, 900); /* longer than a ttl without Redis: still held */
    CGA_ASSERT_EQ(lost, 0);
    CGA_ASSERT_EQ(cga_lock_is_held(single), 1);

    /* Redis back: the single instance takes the key there. */
    cga_test_redis_restart(&srv);
    c = cga_test_redis_connect(&srv, NULL);
    char v[64] = "";
    uint64_t end = cga_clock_mono_ms() + 3000;
    while (cga_clock_mono_ms() < end) {
        RUN_FOR(&loop, 50);
        get_key(c, NS ":lock:ops", v, sizeof v);
        if (strcmp(v, cga_lock_token(single)) == 0) break;
    }
    CGA_ASSERT_STREQ(v, cga_lock_token(single));
    CGA_ASSERT_EQ(lost, 0);
    RUN_UNTIL(&loop, cga_redis_is_connected(r), 3000);
    CGA_ASSERT_EQ(acquire(&loop, plain).acquired, 0);
    CGA_ASSERT_OK(release(&loop, single).status);

    /* Redis stalled while another process holds the key: the single instance goes ahead (the
     * attempt times out), then loses the lock as soon as Redis answers and shows the other
     * holder. */
    command_ok(c, "SET " NS ":lock:ops other-process");
    cga_test_redis_signal(&srv, SIGSTOP);
    s = acquire(&loop, single);
    CGA_ASSERT_OK(s.status);
    CGA_ASSERT_EQ(s.acquired, 1);
    cga_test_redis_signal(&srv, SIGCONT);
    RUN_UNTIL(&loop, lost, 3000);
    CGA_ASSERT_EQ(lost, 1);
    CGA_ASSERT_EQ(cga_lock_is_held(single), 0);
    get_key(c, NS ":lock:ops", v, sizeof v);
    CGA_ASSERT_STREQ(v, "other-process");

    close_lock(&loop, single);
    close_lock(&loop, plain);
    close_redis(&loop, r);
    redisFree(c);
    finish_loop(&loop);
}

static void test_close_cancels_pending(void) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    redisContext *c = cga_test_redis_connect(&srv, NULL);
    command_ok(c, "FLUSHALL");
    cga_redis_t *r = connect_redis(&loop, 2000);
    cga_lock_t *l;
    CGA_ASSERT_OK(cga_lock_create(&l, &loop, r, NS, "ops", 5000, 0));
    res_t pending = {0, 0, 0};
    CGA_ASSERT_OK(cga_lock_acquire(l, on_lock, &pending));
    int done = 0;
    cga_lock_close(l, on_done, &done);
    CGA_ASSERT_EQ(cga_lock_acquire(l, on_lock, &pending), CGA_ECLOSED);
    RUN_UNTIL(&loop, done, 3000);
    CGA_ASSERT_EQ(done, 1);
    CGA_ASSERT_EQ(pending.done, 1);
    CGA_ASSERT_EQ(pending.status, CGA_ECANCELED);
    CGA_ASSERT_EQ(pending.acquired, 0);
    /* The attempt reached Redis after the lock was freed: it undid itself. */
    RUN_FOR(&loop, 200);
    char v[64];
    get_key(c, NS ":lock:ops", v, sizeof v);
    CGA_ASSERT_STREQ(v, "");
    close_redis(&loop, r);
    redisFree(c);
    finish_loop(&loop);
}

int main(void) {
    cga_log_set_process("test_lock");
    cga_test_redis_start(&srv, NULL);
    CGA_RUN(test_mutual_exclusion_and_release);
    CGA_RUN(test_campaign_in_process);
    CGA_RUN(test_renewal_keeps_lock);
    CGA_RUN(test_lost_when_overwritten);
    CGA_RUN(test_lost_when_redis_stalls);
    CGA_RUN(test_standby_takes_over_after_kill);
    CGA_RUN(test_single_instance);
    CGA_RUN(test_close_cancels_pending);
    cga_test_redis_stop(&srv);
    fprintf(stderr, "OK\n");
    return 0;
}

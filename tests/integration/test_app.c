/* The process scaffolding against a real redis-server: --help/--version, configuration errors,
 * connecting, a wrong password (exit 4, no secret in the logs), nothing listening (exit 3),
 * signals. */
#include <ctype.h>
#include <fcntl.h>
#include <hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "cgalpha/app.h"
#include "cgalpha/clock.h"
#include "cgalpha/err.h"
#include "cgalpha/log.h"
#include "cgalpha/redis.h"
#include "redis_server.h"
#include "test.h"

static pid_t main_pid;

static const cga_setting_t test_settings[] = {
    {"TEST_WIDGETS", "widgets", CGA_SET_INT, "3", "how many widgets", 1, 10, 0, NULL},
};

static const cga_app_info_t info = {
    .name = "cgalpha-test",
    .command = "run",
    .summary = "Exercises the app scaffolding.",
    .usage = "cgalpha-test run [OPTIONS]",
    .details = "Details paragraph.",
    .settings = test_settings,
    .nsettings = 1,
};

/* ---- capturing stdout / stderr --------------------------------------------------------- */

typedef struct capture_s {
    int fd;
    int saved;
    char path[64];
} capture_t;

static void cap_begin(capture_t *c, int fd) {
    fflush(fd == 1 ? stdout : stderr);
    snprintf(c->path, sizeof c->path, "/tmp/cga-app-cap-XXXXXX");
    int tmp = mkstemp(c->path);
    CGA_ASSERT(tmp >= 0);
    c->fd = fd;
    c->saved = dup(fd);
    CGA_ASSERT(c->saved >= 0);
    CGA_ASSERT(dup2(tmp, fd) == fd);
    close(tmp);
}

/* Restores the stream; returns what was written (malloc'd), and echoes it to stderr. */
static char *cap_end(capture_t *c) {
    fflush(c->fd == 1 ? stdout : stderr);
    CGA_ASSERT(dup2(c->saved, c->fd) == c->fd);
    close(c->saved);
    FILE *f = fopen(c->path, "r");
    CGA_ASSERT(f != NULL);
    char *buf = calloc(1, 65536);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    unlink(c->path);
    fprintf(stderr, "%s", buf);
    return buf;
}

/* Every app test ends with this: cga_app_free logs "BUG: event loop not closed cleanly" when
 * uv_loop_close() fails, so the captured log must not hold "BUG:". */
static void free_and_check(cga_app_t *a) {
    capture_t cap;
    cap_begin(&cap, 2);
    cga_app_free(a);
    char *log = cap_end(&cap);
    CGA_ASSERT(strstr(log, "BUG:") == NULL);
    free(log);
}

static int argc_of(char **argv) {
    int n = 0;
    while (argv[n]) n++;
    return n;
}

static cga_app_t *create(char **argv, int *code) {
    cga_app_t *a = NULL;
    cga_app_create(&a, code, &info, argc_of(argv), argv);
    return a;
}

static cga_test_redis_t srv;
static cga_test_redis_t auth_srv;

static void stop_servers(void) {
    if (getpid() != main_pid) return; /* not in a forked child */
    cga_test_redis_stop(&srv);
    cga_test_redis_stop(&auth_srv);
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_help_and_version(void) {
    int code = 99;
    capture_t cap;
    cap_begin(&cap, 1);
    cga_app_t *a = create((char *[]){"--redis-port", "1", "--help", NULL}, &code);
    char *out = cap_end(&cap);
    CGA_ASSERT(a == NULL);
    CGA_ASSERT_EQ(code, CGA_EXIT_OK);
    static const char *const want[] = {
        "Usage: cgalpha-test run [OPTIONS]\n",
        "Exercises the app scaffolding.",
        "Details paragraph.",
        "--redis-url VALUE",
        "REDIS_PASSWORD (secret)",
        "REDIS_PORT (default: 6379; 1..65535)",
        "--widgets N",
        "TEST_WIDGETS (default: 3; 1..10)",
        "--version",
        "--env-file PATH",
        ("Exit codes:\n  0  success\n  1  runtime failure\n  2  bad usage or configuration\n"
         "  3  Redis unreachable"),
        "  4  Redis rejected the credentials or the database index\n  5  bad input data",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (!strstr(out, want[i])) fprintf(stderr, "--help lacks \"%s\"\n", want[i]);
        CGA_ASSERT(strstr(out, want[i]) != NULL);
    }
    free(out);

    cap_begin(&cap, 1);
    a = create((char *[]){"-h", NULL}, &code);
    out = cap_end(&cap);
    CGA_ASSERT(a == NULL);
    CGA_ASSERT_EQ(code, CGA_EXIT_OK);
    CGA_ASSERT(strncmp(out, "Usage: ", 7) == 0);
    free(out);

    cap_begin(&cap, 1);
    a = create((char *[]){"--version", NULL}, &code);
    out = cap_end(&cap);
    CGA_ASSERT(a == NULL);
    CGA_ASSERT_EQ(code, CGA_EXIT_OK);
    CGA_ASSERT_STREQ(out, "cgalpha-test " CGA_VERSION_STRING "\n");
    free(out);

    /* after "--" they are positionals: the app starts */
    capture_t err;
    cap_begin(&err, 2);
    char port[16];
    snprintf(port, sizeof port, "%d", srv.port);
    a = create((char *[]){"--redis-port", port, "--", "--help", NULL}, &code);
    free(cap_end(&err));
    CGA_ASSERT(a != NULL);
    CGA_ASSERT_EQ(code, -1);
    size_t n;
    char *const *pos = cga_config_positionals(cga_app_config(a), &n);
    CGA_ASSERT_EQ(n, 1);
    CGA_ASSERT_STREQ(pos[0], "--help");
    free_and_check(a);
}

static void test_bad_config(void) {
    static const struct {
        char *argv[4];
        const char *want;
    } bad[] = {
        {{"--redis-port", "abc"}, "cgalpha-test: REDIS_PORT: 'abc' is not a number (from "
                                  "--redis-port)\n"},
        {{"--widgets=11"}, "cgalpha-test: TEST_WIDGETS: '11' is out of range (1..10) (from "
                           "--widgets)\n"},
        {{"--bogus=hunter2"}, "cgalpha-test: unknown option --bogus (see --help)\n"},
        {{"--redis-url", "rediss://:hunter2@h:6380"},
         "cgalpha-test: REDIS_URL: rediss:// (TLS) is not supported by this build (from "
         "--redis-url)\n"},
        {{"--redis-url", "redis://:hunter2@h:0"},
         "cgalpha-test: REDIS_URL: bad port '0' (1..65535) (from --redis-url)\n"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int code = 99;
        capture_t cap, out;
        cap_begin(&out, 1);
        cap_begin(&cap, 2);
        cga_app_t *a = create((char **)bad[i].argv, &code);
        char *text = cap_end(&cap);
        char *stdout_text = cap_end(&out);
        CGA_ASSERT(a == NULL);
        CGA_ASSERT_EQ(code, CGA_EXIT_USAGE);
        CGA_ASSERT_STREQ(text, bad[i].want); /* exactly one line, on stderr */
        CGA_ASSERT_STREQ(stdout_text, "");
        CGA_ASSERT(strstr(text, "hunter2") == NULL);
        free(text);
        free(stdout_text);
    }
    /* the environment is a layer too */
    setenv("REDIS_DB", "-3", 1);
    int code = 99;
    capture_t cap;
    cap_begin(&cap, 2);
    cga_app_t *a = create((char *[]){NULL}, &code);
    char *text = cap_end(&cap);
    unsetenv("REDIS_DB");
    CGA_ASSERT(a == NULL);
    CGA_ASSERT_EQ(code, CGA_EXIT_USAGE);
    CGA_ASSERT_STREQ(text,
                     "cgalpha-test: REDIS_DB: '-3' is out of range (0..2147483647) (from "
                     "environment)\n");
    free(text);
}

static int instance_id_ok(const char *id) {
    char host[80];
    if (gethostname(host, sizeof host) != 0) return 0;
    host[sizeof host - 1] = '\0';
    char want[128];
    snprintf(want, sizeof want, "-%ld-", (long)getpid());
    const char *p = strstr(id, want);
    if (!p || p == id) return 0;
    p += strlen(want);
    if (strlen(p) != 4) return 0;
    for (int i = 0; i < 4; i++)
        if (!isxdigit((unsigned char)p[i]) || isupper((unsigned char)p[i])) return 0;
    return 1;
}

static char *client_list(const char *password) {
    redisContext *rc = cga_test_redis_connect(&srv, password);
    redisReply *r = redisCommand(rc, "CLIENT LIST");
    CGA_ASSERT(r && r->type == REDIS_REPLY_STRING);
    char *s = strdup(r->str);
    freeReplyObject(r);
    redisFree(rc);
    return s;
}

typedef struct deadline_s {
    int fired;
} deadline_t;

static void on_deadline(uv_timer_t *t) {
    ((deadline_t *)t->data)->fired = 1;
}

/* Runs the loop until the connection is up or ms pass. */
static int run_until_connected(uv_loop_t *loop, cga_redis_t *r, unsigned ms) {
    deadline_t d = {0};
    uv_timer_t t;
    uv_timer_init(loop, &t);
    t.data = &d;
    uv_timer_start(&t, on_deadline, ms, 0);
    while (!cga_redis_is_connected(r) && !d.fired) uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return cga_redis_is_connected(r);
}

static void test_connect(void) {
    char port[16];
    snprintf(port, sizeof port, "%d", srv.port);
    int code = 99;
    capture_t cap;
    cap_begin(&cap, 2);
    cga_app_t *a = create((char *[]){"--redis-port", port, "--namespace", "apptest",
                                     "--log-level", "debug", NULL},
                          &code);
    CGA_ASSERT(a != NULL);
    CGA_ASSERT_EQ(code, -1);
    uint64_t t0 = cga_clock_mono_ms();
    int rc = cga_app_wait_connected(a, 5000);
    char *log = cap_end(&cap);
    CGA_ASSERT_OK(rc);
    CGA_ASSERT_OP(cga_clock_mono_ms() - t0, <, 2000);
    CGA_ASSERT_EQ(cga_app_exit_code(rc), CGA_EXIT_OK);
    char want[128];
    snprintf(want, sizeof want, "DEBUG cgalpha-test[%ld] redis: ready: 127.0.0.1:%d (db 0)",
             (long)getpid(), srv.port);
    CGA_ASSERT(strstr(log, want) != NULL);
    free(log);
    CGA_ASSERT(cga_redis_is_connected(cga_app_redis(a)));
    CGA_ASSERT_STREQ(cga_app_ns(a), "apptest");
    CGA_ASSERT(cga_app_loop(a) != NULL);
    CGA_ASSERT(cga_app_loop(a) != uv_default_loop());
    const char *id = cga_app_instance_id(a);
    if (!instance_id_ok(id)) fprintf(stderr, "bad instance id %s\n", id);
    CGA_ASSERT(instance_id_ok(id));
    CGA_ASSERT(cga_app_instance_id(a) == id); /* static, stable */
    CGA_ASSERT_EQ(cga_app_signaled(a), 0);
    CGA_ASSERT_EQ(cga_app_is_stopped(a), 0);

    /* the subscription connection: created once, same settings, its own client name */
    cga_redis_t *sub = cga_app_redis_sub(a);
    CGA_ASSERT(sub != NULL);
    CGA_ASSERT(cga_app_redis_sub(a) == sub);
    CGA_ASSERT(run_until_connected(cga_app_loop(a), sub, 3000));
    char *clients = client_list(NULL);
    char name[256];
    snprintf(name, sizeof name, "name=cgalpha-test:%s ", id);
    CGA_ASSERT(strstr(clients, name) != NULL);
    snprintf(name, sizeof name, "name=cgalpha-test:%s:sub ", id);
    CGA_ASSERT(strstr(clients, name) != NULL);
    free(clients);
    /* waiting when already connected returns at once */
    CGA_ASSERT_OK(cga_app_wait_connected(a, 1));
    free_and_check(a);

    /* over the unix socket, from REDIS_URL in the environment */
    char url[200];
    snprintf(url, sizeof url, "unix://%s?db=2", srv.sock);
    setenv("REDIS_URL", url, 1);
    a = create((char *[]){NULL}, &code);
    unsetenv("REDIS_URL");
    CGA_ASSERT(a != NULL);
    CGA_ASSERT_OK(cga_app_wait_connected(a, 5000));
    free_and_check(a);
}

static void test_wrong_password(void) {
    cga_test_redis_t *auth = &auth_srv;
    cga_test_redis_start(auth, "requirepass Right-Pw-77\n");
    char port[16], url[200];
    snprintf(port, sizeof port, "%d", auth->port);
    static const char *const wrong[] = {"Wrong-Pw-1", "Wrong-Pw-2"};
    for (int variant = 0; variant < 2; variant++) {
        cga_log_clear_secrets();
        int code = 99;
        capture_t cap;
        cap_begin(&cap, 2);
        cga_app_t *a;
        if (variant == 0) {
            setenv("REDIS_PASSWORD", wrong[0], 1);
            a = create((char *[]){"--redis-port", port, NULL}, &code);
            unsetenv("REDIS_PASSWORD");
        } else {
            snprintf(url, sizeof url, "redis://:%s@127.0.0.1:%d/0", wrong[1], auth->port);
            a = create((char *[]){"--redis-url", url, "--log-level", "debug", NULL}, &code);
        }
        CGA_ASSERT(a != NULL);
        uint64_t t0 = cga_clock_mono_ms();
        int rc = cga_app_wait_connected(a, 8000);
        uint64_t took = cga_clock_mono_ms() - t0;
        cga_app_free(a);
        char *log = cap_end(&cap);
        CGA_ASSERT_EQ(rc, CGA_EAUTH);
        CGA_ASSERT_EQ(cga_app_exit_code(rc), CGA_EXIT_AUTH);
        CGA_ASSERT_OP(took, <, 4000); /* gives up on the refusal, not at the timeout */
        char want[160];
        snprintf(want, sizeof want,
                 "ERROR cgalpha-test[%ld] redis: cannot connect to 127.0.0.1:%d: authentication "
                 "failed (check REDIS_PASSWORD / REDIS_URL)",
                 (long)getpid(), auth->port);
        CGA_ASSERT(strstr(log, want) != NULL);
        CGA_ASSERT(strstr(log, wrong[variant]) == NULL);
        CGA_ASSERT(strstr(log, "Right-Pw-77") == NULL);
        CGA_ASSERT(strstr(log, "BUG:") == NULL);
        free(log);
    }
    /* the right password from a file works */
    char pwfile[4096];
    snprintf(pwfile, sizeof pwfile, "%s/pw", auth->dir);
    FILE *f = fopen(pwfile, "w");
    fputs("Right-Pw-77\n", f);
    fclose(f);
    setenv("REDIS_PASSWORD_FILE", pwfile, 1);
    int code;
    cga_app_t *a = create((char *[]){"--redis-port", port, NULL}, &code);
    unsetenv("REDIS_PASSWORD_FILE");
    CGA_ASSERT(a != NULL);
    CGA_ASSERT_OK(cga_app_wait_connected(a, 5000));
    free_and_check(a);
    cga_test_redis_stop(auth);
    cga_log_clear_secrets();
}

static void test_bad_db(void) {
    char port[16];
    snprintf(port, sizeof port, "%d", srv.port);
    int code;
    capture_t cap;
    cap_begin(&cap, 2);
    cga_app_t *a = create((char *[]){"--redis-port", port, "--redis-db", "999", NULL}, &code);
    CGA_ASSERT(a != NULL);
    int rc = cga_app_wait_connected(a, 5000);
    cga_app_free(a);
    char *log = cap_end(&cap);
    CGA_ASSERT_EQ(rc, CGA_ESELECT);
    CGA_ASSERT_EQ(cga_app_exit_code(rc), CGA_EXIT_AUTH);
    CGA_ASSERT(strstr(log, "database 999 rejected (check REDIS_DB / REDIS_URL") != NULL);
    CGA_ASSERT(strstr(log, "BUG:") == NULL);
    free(log);
}

static void test_refused(void) {
    int free_port = cga_test_free_port(); /* nothing listens there */
    char port[16];
    snprintf(port, sizeof port, "%d", free_port);
    int code;
    capture_t cap;
    cap_begin(&cap, 2);
    cga_app_t *a = create((char *[]){"--redis-port", port, "--redis-connect-timeout-ms", "300",
                                     "--redis-backoff-base-ms", "20", NULL},
                          &code);
    CGA_ASSERT(a != NULL);
    uint64_t t0 = cga_clock_mono_ms();
    int rc = cga_app_wait_connected(a, 1200);
    uint64_t took = cga_clock_mono_ms() - t0;
    cga_app_free(a);
    char *log = cap_end(&cap);
    CGA_ASSERT_NE(rc, CGA_OK);
    CGA_ASSERT_EQ(cga_app_exit_code(rc), CGA_EXIT_UNAVAILABLE);
    CGA_ASSERT_OP(took, >=, 1150); /* it kept trying for the whole timeout */
    CGA_ASSERT_OP(took, <, 3000);
    char want[128];
    snprintf(want, sizeof want, "redis: cannot connect to 127.0.0.1:%d: ", free_port);
    CGA_ASSERT(strstr(log, want) != NULL);
    CGA_ASSERT(strstr(log, "(gave up after 1200 ms)") != NULL);
    CGA_ASSERT(strstr(log, "BUG:") == NULL);
    free(log);
}

static void test_exit_codes(void) {
    CGA_ASSERT_EQ(cga_app_exit_code(CGA_OK), 0);
    CGA_ASSERT_EQ(cga_app_exit_code(CGA_ECANCELED), 0);
    CGA_ASSERT_EQ(cga_app_exit_code(CGA_EAUTH), 4);
    CGA_ASSERT_EQ(cga_app_exit_code(CGA_ESELECT), 4);
    CGA_ASSERT_EQ(cga_app_exit_code(UV_ECONNREFUSED), 3);
    CGA_ASSERT_EQ(cga_app_exit_code(UV_EAI_NONAME), 3);
    CGA_ASSERT_EQ(cga_app_exit_code(CGA_ETIMEDOUT), 3);
    CGA_ASSERT_EQ(cga_app_exit_code(CGA_ENOTCONN), 3);
    CGA_ASSERT_EQ(cga_app_exit_code(CGA_EBREAKER), 3);
    CGA_ASSERT_EQ(cga_app_exit_code(CGA_ECONFIG), 2);
    CGA_ASSERT_EQ(cga_app_exit_code(CGA_ETLS), 2);
    CGA_ASSERT_EQ(cga_app_exit_code(CGA_EOOM), 1);
    CGA_ASSERT_EQ(cga_app_exit_code(CGA_EPROTO), 1);
}

static void on_timer_stop(uv_timer_t *t) {
    cga_app_stop(t->data);
}

static void test_run_and_stop(void) {
    char port[16];
    snprintf(port, sizeof port, "%d", srv.port);
    int code;
    cga_app_t *a = create((char *[]){"--redis-port", port, NULL}, &code);
    CGA_ASSERT(a != NULL);
    CGA_ASSERT_OK(cga_app_wait_connected(a, 5000));
    uv_timer_t t;
    uv_timer_init(cga_app_loop(a), &t);
    t.data = a;
    uv_timer_start(&t, on_timer_stop, 50, 0);
    uint64_t t0 = cga_clock_mono_ms();
    CGA_ASSERT_OK(cga_app_run(a)); /* the Redis connection keeps the loop alive until the stop */
    uint64_t took = cga_clock_mono_ms() - t0;
    CGA_ASSERT_OP(took, >=, 45);
    CGA_ASSERT_OP(took, <, 2000);
    CGA_ASSERT_EQ(cga_app_is_stopped(a), 1);
    CGA_ASSERT_OK(cga_app_run(a)); /* sticky: returns at once */
    CGA_ASSERT_EQ(cga_app_wait_connected(a, 1000), CGA_ECANCELED);
    uv_close((uv_handle_t *)&t, NULL);
    free_and_check(a);
}

/* A first SIGINT without a callback stops the app; wait_connected returns CGA_ECANCELED. */
static void test_signal_stops_wait(void) {
    int free_port = cga_test_free_port();
    char port[16];
    snprintf(port, sizeof port, "%d", free_port);
    int code;
    capture_t cap;
    cap_begin(&cap, 2);
    cga_app_t *a = create((char *[]){"--redis-port", port, NULL}, &code);
    CGA_ASSERT(a != NULL);
    raise(SIGINT); /* libuv's handler records it; the loop delivers it */
    uint64_t t0 = cga_clock_mono_ms();
    int rc = cga_app_wait_connected(a, 5000);
    uint64_t took = cga_clock_mono_ms() - t0;
    char *log = cap_end(&cap);
    CGA_ASSERT_EQ(rc, CGA_ECANCELED);
    CGA_ASSERT_EQ(cga_app_exit_code(rc), CGA_EXIT_OK);
    CGA_ASSERT_OP(took, <, 1000);
    CGA_ASSERT_EQ(cga_app_signaled(a), SIGINT);
    CGA_ASSERT_EQ(cga_app_is_stopped(a), 1);
    CGA_ASSERT(strstr(log, "SIGINT received: shutting down") != NULL);
    free(log);
    free_and_check(a);
}

typedef struct sigstate_s {
    int calls;
    int signum;
    cga_app_t *app;
} sigstate_t;

static void on_test_signal(int signum, void *arg) {
    sigstate_t *s = arg;
    s->calls++;
    s->signum = signum;
    cga_app_stop(s->app);
}

/* In a child: the callback runs once for the first SIGTERM; a second SIGTERM exits 1 at once. */
static void test_second_signal_exits(void) {
    int fds[2];
    CGA_ASSERT_OK(pipe(fds));
    fflush(stderr);
    pid_t pid = fork();
    CGA_ASSERT(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        char port[16];
        snprintf(port, sizeof port, "%d", srv.port);
        int code;
        cga_app_t *a = create((char *[]){"--redis-port", port, NULL}, &code);
        if (!a) _exit(40);
        sigstate_t s = {0, 0, a};
        cga_app_on_signal(a, on_test_signal, &s);
        if (cga_app_wait_connected(a, 5000) != CGA_OK) _exit(41);
        kill(getpid(), SIGTERM);
        cga_app_run(a); /* returns through the callback's cga_app_stop */
        char msg[32];
        int n = snprintf(msg, sizeof msg, "calls=%d sig=%d", s.calls, s.signum);
        if (write(fds[1], msg, (size_t)n) != n) _exit(42);
        close(fds[1]);
        kill(getpid(), SIGTERM);
        for (int i = 0; i < 200; i++) uv_run(cga_app_loop(a), UV_RUN_NOWAIT), usleep(10000);
        _exit(43); /* not reached: the second signal exits 1 */
    }
    close(fds[1]);
    char buf[64] = {0};
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    close(fds[0]);
    int st = 0;
    CGA_ASSERT_EQ(waitpid(pid, &st, 0), pid);
    CGA_ASSERT(n > 0);
    char want[32];
    snprintf(want, sizeof want, "calls=1 sig=%d", SIGTERM);
    CGA_ASSERT_STREQ(buf, want);
    CGA_ASSERT(WIFEXITED(st));
    CGA_ASSERT_EQ(WEXITSTATUS(st), 1);
}

static const char *const common_env[] = {
    "REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_DB", "REDIS_USERNAME", "REDIS_PASSWORD",
    "REDIS_PASSWORD_FILE", "REDIS_CONNECT_TIMEOUT_MS", "REDIS_COMMAND_TIMEOUT_MS",
    "REDIS_BACKOFF_BASE_MS", "REDIS_BACKOFF_CAP_MS", "BREAKER_FAILURES", "BREAKER_OPEN_MS",
    "CGALPHA_NAMESPACE", "CGALPHA_LOG_LEVEL", "CGALPHA_SINGLE_INSTANCE", "CGALPHA_ENV_FILE",
    "TEST_WIDGETS",
};

int main(void) {
    for (size_t i = 0; i < sizeof common_env / sizeof common_env[0]; i++) unsetenv(common_env[i]);
    main_pid = getpid();
    atexit(stop_servers);
    cga_test_redis_start(&srv, NULL);
    CGA_ASSERT_OK(chdir(srv.dir)); /* no stray ./.env */
    CGA_RUN(test_help_and_version);
    CGA_RUN(test_bad_config);
    CGA_RUN(test_connect);
    CGA_RUN(test_wrong_password);
    CGA_RUN(test_bad_db);
    CGA_RUN(test_refused);
    CGA_RUN(test_exit_codes);
    CGA_RUN(test_run_and_stop);
    CGA_RUN(test_signal_stops_wait);
    CGA_RUN(test_second_signal_exits);
    CGA_ASSERT_OK(chdir("/"));
    fprintf(stderr, "ok\n");
    return 0;
}

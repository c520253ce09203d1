#include "redis_server.h"

#include <errno.h>
#include <fcntl.h>
#include <hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) {
    fprintf(stderr, "FAIL redis test harness: %s: %s\n", what, strerror(errno));
    exit(1);
}

int cga_test_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) die("bind");
    socklen_t len = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &len) != 0) die("getsockname");
    close(fd);
    return ntohs(a.sin_port);
}

/* Servers still running when the test exits (a failed assertion exits at once) are stopped and
 * their folders removed by an atexit handler. Copies, not pointers: the test's struct may live
 * in a stack frame that is gone by then. */
#define MAX_LIVE 16
static struct {
    pid_t pid;
    char dir[64];
} live[MAX_LIVE];
static pid_t owner; /* the test process that started them (a forked child that exits does not) */

static void rm_dir(const char *dir);

static void stop_live_at_exit(void) {
    if (getpid() != owner) return;
    for (int i = 0; i < MAX_LIVE; i++) {
        if (live[i].pid > 0) {
            kill(live[i].pid, SIGKILL);
            waitpid(live[i].pid, NULL, 0);
        }
        if (live[i].dir[0]) rm_dir(live[i].dir);
        live[i].pid = 0;
        live[i].dir[0] = '\0';
    }
}

static void track(const cga_test_redis_t *s) {
    static int registered;
    if (!registered) {
        owner = getpid();
        atexit(stop_live_at_exit);
        registered = 1;
    }
    int slot = -1;
    for (int i = 0; i < MAX_LIVE; i++) {
        if (strcmp(live[i].dir, s->dir) == 0) { slot = i; break; }
        if (slot < 0 && !live[i].dir[0]) slot = i;
    }
    if (slot < 0) return;
    live[slot].pid = s->pid;
    snprintf(live[slot].dir, sizeof live[slot].dir, "%s", s->dir);
}

static void untrack(const char *dir, int keep_dir) {
    for (int i = 0; i < MAX_LIVE; i++) {
        if (strcmp(live[i].dir, dir) != 0) continue;
        live[i].pid = 0;
        if (!keep_dir) live[i].dir[0] = '\0';
    }
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int ping_ok(const cga_test_redis_t *s) {
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectUnixWithTimeout(s->sock, tv);
    if (!c || c->err) {
        if (c) redisFree(c);
        return 0;
    }
    redisReply *r = redisCommand(c, "PING");
    /* NOAUTH also proves the server is up */
    int ok = r && (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR);
    if (r) freeReplyObject(r);
    redisFree(c);
    return ok;
}

static void write_conf(const cga_test_redis_t *s) {
    char path[128];
    snprintf(path, sizeof path, "%s/redis.conf", s->dir);
    FILE *f = fopen(path, "w");
    if (!f) die("write redis.conf");
    fprintf(f,
            "bind 127.0.0.1\nport %d\nunixsocket %s\nunixsocketperm 700\nsave \"\"\n"
            "appendonly no\ndaemonize no\ndir %s\nlogfile %s/redis.log\n%s\n",
            s->port, s->sock, s->dir, s->dir, s->extra);
    fclose(f);
}

static int spawn(cga_test_redis_t *s) {
    const char *bin = getenv("REDIS_SERVER");
    if (!bin || !*bin) bin = "redis-server";
    char conf[128];
    snprintf(conf, sizeof conf, "%s/redis.conf", s->dir);
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        /* The server dies with the test, whatever way the test ends (a failed assertion
         * exits at once), and never holds the test's stdout/stderr open for ctest. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() == 1) _exit(1);
        int errfd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, STDOUT_FILENO);
            dup2(devnull, STDERR_FILENO);
            close(devnull);
        }
        execlp(bin, bin, conf, (char *)NULL);
        dprintf(errfd, "FAIL cannot run %s: %s (install redis-server)\n", bin, strerror(errno));
        _exit(127);
    }
    s->pid = pid;
    for (int i = 0; i < 250; i++) { /* 5 s */
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            s->pid = 0;
            fprintf(stderr, "FAIL redis-server exited at start (see %s/redis.log)\n", s->dir);
            exit(1);
        }
        if (ping_ok(s)) {
            track(s);
            return 0;
        }
        sleep_ms(20);
    }
    fprintf(stderr, "FAIL redis-server did not answer PING within 5 s\n");
    exit(1);
}

int cga_test_redis_start(cga_test_redis_t *s, const char *extra_conf) {
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "/tmp/cga-redis-XXXXXX");
    if (!mkdtemp(s->dir)) die("mkdtemp");
    snprintf(s->sock, sizeof s->sock, "%s/redis.sock", s->dir);
    snprintf(s->extra, sizeof s->extra, "%s", extra_conf ? extra_conf : "");
    s->port = cga_test_free_port();
    write_conf(s);
    signal(SIGPIPE, SIG_IGN);
    return spawn(s);
}

void cga_test_redis_signal(cga_test_redis_t *s, int sig) {
    if (s->pid <= 0) return;
    kill(s->pid, sig);
    if (sig == SIGSTOP || sig == SIGCONT) return;
    int st;
    waitpid(s->pid, &st, 0);
    s->pid = 0;
    untrack(s->dir, 1);
}

int cga_test_redis_restart(cga_test_redis_t *s) {
    if (s->pid > 0) cga_test_redis_signal(s, SIGKILL);
    unlink(s->sock);
    return spawn(s);
}

static void rm_dir(const char *dir) {
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
}

void cga_test_redis_stop(cga_test_redis_t *s) {
    if (s->pid > 0) {
        kill(s->pid, SIGCONT);
        kill(s->pid, SIGTERM);
        int st;
        for (int i = 0; i < 500; i++) {
            if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
                s->pid = 0;
                break;
            }
            sleep_ms(10);
        }
        if (s->pid > 0) cga_test_redis_signal(s, SIGKILL);
    }
    if (s->dir[0]) {
        untrack(s->dir, 0);
        rm_dir(s->dir);
        s->dir[0] = '\0';
    }
}

redisContext *cga_test_redis_connect(const cga_test_redis_t *s, const char *password) {
    redisContext *c = redisConnectUnix(s->sock);
    if (!c || c->err) {
        fprintf(stderr, "FAIL connect to test redis: %s\n", c ? c->errstr : "alloc");
        exit(1);
    }
    if (password) {
        redisReply *r = redisCommand(c, "AUTH %s", password);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "FAIL AUTH to test redis\n");
            exit(1);
        }
        freeReplyObject(r);
    }
    return c;
}

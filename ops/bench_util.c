/* `cgalpha-ops bench` helpers: a blocking Redis client, INFO snapshots, /proc, latencies,
 * child processes. See bench.h. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <hiredis/hiredis.h>

#include "bench.h"
#include "cgalpha/alloc.h"
#include "cgalpha/redis.h"

/* ---- Redis ----------------------------------------------------------------------------- */

redisContext *bench_connect(const cga_config_t *cfg, char *err, size_t errlen) {
    cga_redis_opts_t o;
    if (cga_config_redis_opts(cfg, &o, err, errlen) != 0) return NULL;
    unsigned ms = o.connect_timeout_ms ? o.connect_timeout_ms : 2000;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    redisContext *c = o.unix_path ? redisConnectUnixWithTimeout(o.unix_path, tv)
                                  : redisConnectWithTimeout(o.host ? o.host : "127.0.0.1",
                                                            o.port ? o.port : 6379, tv);
    if (!c || c->err) {
        snprintf(err, errlen, "cannot connect to Redis: %s", c ? c->errstr : "out of memory");
        if (c) redisFree(c);
        return NULL;
    }
    struct timeval cmd = {60, 0}; /* INFO on a big server, XREAD BLOCK 100 */
    redisSetTimeout(c, cmd);
    redisReply *r = NULL;
    if (o.password && *o.password) {
        r = o.username ? redisCommand(c, "AUTH %s %s", o.username, o.password)
                       : redisCommand(c, "AUTH %s", o.password);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "Redis refused the credentials");
            goto fail;
        }
        freeReplyObject(r);
    }
    if (o.db) {
        r = redisCommand(c, "SELECT %d", o.db);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "Redis refused database %d", o.db);
            goto fail;
        }
        freeReplyObject(r);
    }
    r = redisCommand(c, "CLIENT SETNAME cgalpha-ops:bench");
    if (r) freeReplyObject(r);
    return c;
fail:
    if (r) freeReplyObject(r);
    redisFree(c);
    return NULL;
}

void bench_disconnect(redisContext *c) {
    if (c) redisFree(c);
}

redisReply *bench_cmdv(redisContext *c, int argc, const char **argv, const size_t *len) {
    return redisCommandArgv(c, argc, argv, len);
}

redisReply *bench_cmd(redisContext *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    return r;
}

/* ---- INFO ------------------------------------------------------------------------------ */

static double field_d(const char *text, const char *key, int *found) {
    size_t n = strlen(key);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, key, n) == 0 && p[n] == ':') {
            if (found) *found = 1;
            return strtod(p + n + 1, NULL);
        }
    }
    if (found) *found = 0;
    return 0;
}

static void parse_cmdstats(const char *text, bench_info_t *out) {
    out->ncmds = 0;
    static const char pre[] = "cmdstat_";
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, pre, sizeof pre - 1) != 0 || out->ncmds >= BENCH_MAX_CMDS) continue;
        const char *name = p + sizeof pre - 1;
        const char *colon = strchr(name, ':');
        if (!colon) continue;
        bench_cmdstat_t *s = &out->cmds[out->ncmds];
        size_t len = (size_t)(colon - name);
        if (len >= sizeof s->name) len = sizeof s->name - 1;
        memcpy(s->name, name, len);
        s->name[len] = '\0';
        const char *c = strstr(colon, "calls=");
        const char *u = strstr(colon, "usec=");
        const char *eol = strchr(colon, '\n');
        if (!c || !u || (eol && (c > eol || u > eol))) continue;
        s->calls = strtoull(c + 6, NULL, 10);
        s->usec = strtoull(u + 5, NULL, 10);
        out->ncmds++;
    }
}

int bench_info(redisContext *c, bench_info_t *out) {
    memset(out, 0, sizeof *out);
    const char *sections[] = {"server", "cpu", "memory", "commandstats"};
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++) {
        redisReply *r = redisCommand(c, "INFO %s", sections[i]);
        if (!r || r->type != REDIS_REPLY_STRING) {
            if (r) freeReplyObject(r);
            return -1;
        }
        const char *t = r->str;
        int found = 0;
        switch (i) {
        case 0:
            out->pid = (long)field_d(t, "process_id", NULL);
            break;
        case 1: {
            out->cpu_total_s = field_d(t, "used_cpu_sys", NULL) + field_d(t, "used_cpu_user", NULL);
            double m = field_d(t, "used_cpu_sys_main_thread", &found);
            out->cpu_main_s = found ? m + field_d(t, "used_cpu_user_main_thread", NULL)
                                    : out->cpu_total_s;
            break;
        }
        case 2:
            out->used_memory_peak = (uint64_t)field_d(t, "used_memory_peak", NULL);
            break;
        default:
            parse_cmdstats(t, out);
        }
        freeReplyObject(r);
    }
    return 0;
}

static const bench_cmdstat_t *find_cmd(const bench_info_t *i, const char *name) {
    for (size_t k = 0; k < i->ncmds; k++)
        if (strcmp(i->cmds[k].name, name) == 0) return &i->cmds[k];
    return NULL;
}

static uint64_t calls_of(const bench_info_t *a, const bench_info_t *b, const char *name,
                         uint64_t *usec) {
    const bench_cmdstat_t *x = find_cmd(a, name), *y = find_cmd(b, name);
    uint64_t c0 = x ? x->calls : 0, u0 = x ? x->usec : 0;
    uint64_t c1 = y ? y->calls : 0, u1 = y ? y->usec : 0;
    if (usec) *usec = u1 >= u0 ? u1 - u0 : 0;
    return c1 >= c0 ? c1 - c0 : 0;
}

uint64_t bench_info_calls(const bench_info_t *a, const bench_info_t *b, const char *name,
                          uint64_t *usec) {
    /* Redis 7 counts subcommands apart ("xinfo|groups"): a bare name sums them. */
    size_t n = strlen(name);
    uint64_t calls = 0, us = 0;
    for (size_t k = 0; k < b->ncmds; k++) {
        const char *c = b->cmds[k].name;
        if (strncmp(c, name, n) != 0 || (c[n] != '\0' && (c[n] != '|' || strchr(name, '|'))))
            continue;
        uint64_t u = 0;
        calls += calls_of(a, b, c, &u);
        us += u;
    }
    if (usec) *usec = us;
    return calls;
}

uint64_t bench_info_total_calls(const bench_info_t *a, const bench_info_t *b) {
    uint64_t n = 0;
    for (size_t k = 0; k < b->ncmds; k++) n += calls_of(a, b, b->cmds[k].name, NULL);
    return n;
}

/* ---- /proc ----------------------------------------------------------------------------- */

long bench_proc_kib(pid_t pid, const char *field) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long v = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            v = strtol(line + n + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

int bench_proc_is(pid_t pid, const char *name) {
    char path[64], comm[64] = "";
    snprintf(path, sizeof path, "/proc/%ld/comm", (long)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int ok = fgets(comm, sizeof comm, f) && strncmp(comm, name, strlen(name)) == 0;
    fclose(f);
    return ok;
}

/* ---- children -------------------------------------------------------------------------- */

pid_t bench_spawn(const char *path, char *const argv[], char *const envp[], const char *logpath) {
    int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    if (pid == 0) {
#ifdef __linux__
        prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
        int in = open("/dev/null", O_RDONLY);
        if (in >= 0) dup2(in, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        /* The parent ignores SIGPIPE (the app does); a child starts with the default. */
        signal(SIGPIPE, SIG_DFL);
        execve(path, argv, envp);
        dprintf(2, "cgalpha-ops bench: cannot run %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    close(fd);
    return pid;
}

int bench_child_exited(pid_t pid, int *status) {
    int st = 0;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) {
        if (status) *status = st;
        return 1;
    }
    return r < 0; /* not our child (any more) */
}

int bench_stop_child(pid_t pid, unsigned timeout_ms) {
    if (pid <= 0) return -1;
    kill(pid, SIGTERM);
    int st = 0;
    for (unsigned waited = 0; waited < timeout_ms; waited += 10) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) return st;
        if (r < 0) return -1;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    return waitpid(pid, &st, 0) == pid ? st : -1;
}

/* ---- latencies ------------------------------------------------------------------------- */

void bench_lat_init(bench_lat_t *l, size_t cap) {
    memset(l, 0, sizeof *l);
    l->cap = cap;
    l->us = cga_malloc((cap ? cap : 1) * sizeof *l->us);
}

void bench_lat_free(bench_lat_t *l) {
    free(l->us);
    memset(l, 0, sizeof *l);
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

void bench_lat_sort(bench_lat_t *l) {
    if (l->n > 1) qsort(l->us, l->n, sizeof *l->us, cmp_u32);
}

double bench_lat_q(const bench_lat_t *l, double q) {
    if (l->n == 0) return NAN;
    double rank = ceil(q * (double)l->n);
    size_t i = rank < 1 ? 0 : (size_t)rank - 1;
    if (i >= l->n) i = l->n - 1;
    return (double)l->us[i] / 1000.0;
}

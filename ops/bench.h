#ifndef CGA_OPS_BENCH_H
#define CGA_OPS_BENCH_H

/* `cgalpha-ops bench`: the end-to-end benchmark (see docs/PERFORMANCE.md).
 *
 * bench.c        the command: options, runs, spawning labs and nexus, the pipeline phase (its
 *                producer is a cga_queue on the app's loop), results, JSON, medians
 * bench_bare.c   the bare transport phase: the same Redis commands with the same batch sizes
 *                and opaque payloads, no codec and no plugin (threads, hiredis sync)
 * bench_util.c   shared helpers: a blocking Redis client, INFO snapshots, /proc, latencies,
 *                child processes */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cgalpha/app.h"
#include "cgalpha/config.h"

#define OPS_BENCH_NSETTINGS 23
extern const cga_setting_t ops_bench_settings[OPS_BENCH_NSETTINGS];
int ops_cmd_bench(cga_app_t *a);

/* ---- a blocking Redis client (hiredis sync) --------------------------------------------- */

struct redisContext;
struct redisReply;

/* Connects with the app's Redis settings (URL or host/port/unix, user, password, db).
 * Returns the context or NULL with a message in err. */
struct redisContext *bench_connect(const cga_config_t *cfg, char *err, size_t errlen);
void bench_disconnect(struct redisContext *c);

/* One command (argv form, binary safe). Returns the reply (free with freeReplyObject) or NULL
 * on a connection error. */
struct redisReply *bench_cmdv(struct redisContext *c, int argc, const char **argv,
                              const size_t *len);
/* A printf-style command (hiredis format). */
struct redisReply *bench_cmd(struct redisContext *c, const char *fmt, ...);

/* ---- Redis INFO snapshots --------------------------------------------------------------- */

#define BENCH_MAX_CMDS 96

typedef struct bench_cmdstat_s {
    char name[40];  /* "xadd", "xreadgroup", "evalsha", ... */
    uint64_t calls;
    uint64_t usec;
} bench_cmdstat_t;

typedef struct bench_info_s {
    double cpu_main_s;   /* used_cpu_sys_main_thread + used_cpu_user_main_thread (7.0), or the
                            process totals when the server does not split them */
    double cpu_total_s;  /* used_cpu_sys + used_cpu_user (every thread) */
    long pid;            /* process_id */
    uint64_t used_memory_peak;
    bench_cmdstat_t cmds[BENCH_MAX_CMDS];
    size_t ncmds;
} bench_info_t;

/* INFO server + cpu + memory + commandstats. Returns 0 or -1. */
int bench_info(struct redisContext *c, bench_info_t *out);
/* Calls (and usec) of command name between a and b (0 if absent). */
uint64_t bench_info_calls(const bench_info_t *a, const bench_info_t *b, const char *name,
                          uint64_t *usec);
/* Total calls between a and b. */
uint64_t bench_info_total_calls(const bench_info_t *a, const bench_info_t *b);

/* ---- processes -------------------------------------------------------------------------- */

/* VmHWM (peak) and VmRSS (now) of pid in KiB from /proc/<pid>/status; -1 when unknown. */
long bench_proc_kib(pid_t pid, const char *field);
/* 1 when /proc/<pid>/comm starts with name. */
int bench_proc_is(pid_t pid, const char *name);

/* Starts path with argv and envp (NULL-terminated), stdin from /dev/null, stdout and stderr
 * to logpath; the child dies with us (PDEATHSIG). Returns the pid or -1 (errno). */
pid_t bench_spawn(const char *path, char *const argv[], char *const envp[], const char *logpath);
/* SIGTERM, then waits up to timeout_ms (then SIGKILL). Returns the wait status, or -1. */
int bench_stop_child(pid_t pid, unsigned timeout_ms);
/* 1 when the child has exited (its status in *status, reaped). */
int bench_child_exited(pid_t pid, int *status);

/* ---- latencies -------------------------------------------------------------------------- */

typedef struct bench_lat_s {
    uint32_t *us;  /* one sample per task, µs (saturated) */
    size_t n, cap;
    uint64_t dropped; /* samples beyond cap */
} bench_lat_t;

void bench_lat_init(bench_lat_t *l, size_t cap);
void bench_lat_free(bench_lat_t *l);
static inline void bench_lat_add(bench_lat_t *l, uint64_t us) {
    if (l->n < l->cap)
        l->us[l->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    else
        l->dropped++;
}
/* Sorts the samples; then bench_lat_q gives the exact quantile (nearest rank), in ms, or NAN
 * without samples. */
void bench_lat_sort(bench_lat_t *l);
double bench_lat_q(const bench_lat_t *l, double q);

/* ---- the bare transport ----------------------------------------------------------------- */

typedef struct bench_bare_opts_s {
    const cga_config_t *cfg;  /* Redis settings */
    const char *akey, *rkey;  /* the two streams (deleted before and after) */
    uint64_t tasks;
    size_t batch;             /* tasks per entry */
    size_t labs;              /* consumer threads of the first stream */
    size_t lab_claim;         /* entries per XREADGROUP (labs) */
    size_t nexus_claim;       /* entries per XREADGROUP (the report consumer) */
    size_t task_bytes;        /* bytes of one task / one report in their entries */
    size_t report_bytes;
    uint64_t rate;            /* tasks/s, 0 = as fast as possible */
    size_t max_inflight;      /* entries sent and unanswered by the producer, at most */
    size_t max_inflight_bytes;/* and their bytes, at most (one entry always goes) */
    unsigned timeout_s;
    volatile int *interrupted; /* set by the caller on SIGINT */
} bench_bare_opts_t;

typedef struct bench_bare_result_s {
    double e2e_s;          /* first XADD to the last report read and acknowledged */
    double enqueue_s;      /* first XADD to the last XADD answered */
    uint64_t reports;      /* reports read by the report consumer */
    bench_lat_t lat;       /* enqueue -> report read, per task (owned: bench_lat_free) */
    uint64_t bench_calls;  /* commands it sent (for checks) */
    int ok;
    char err[256];
} bench_bare_result_t;

/* Runs the bare transport once (blocking). The result's lat must be freed. */
void bench_bare_run(const bench_bare_opts_t *o, bench_bare_result_t *r);

#endif

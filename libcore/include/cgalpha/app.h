#ifndef CGALPHA_APP_H
#define CGALPHA_APP_H

/* What every cgalpha executable does the same way: --help and --version, configuration
 * (config.h), logging, one libuv loop, one Redis command connection, SIGINT/SIGTERM, exit
 * codes. A main() is then only its own wiring. */

#include <stddef.h>
#include "cgalpha/config.h"
#include "cgalpha/export.h"

struct uv_loop_s;
struct cga_redis_s;

/* Exit codes, documented in every --help. */
enum cga_exit_code {
    CGA_EXIT_OK = 0,          /* success */
    CGA_EXIT_FAILURE = 1,     /* runtime failure */
    CGA_EXIT_USAGE = 2,       /* bad usage or configuration */
    CGA_EXIT_UNAVAILABLE = 3, /* Redis unreachable (refused, unknown host, timed out) */
    CGA_EXIT_AUTH = 4,        /* Redis rejected the credentials or the database index */
    CGA_EXIT_DATA = 5,        /* bad input data (some rows refused; the rest processed) */
};

typedef struct cga_app_s cga_app_t;

typedef struct cga_app_info_s {
    const char *name;        /* "cgalpha-lab": log process name and --help title */
    const char *command;     /* subcommand ("run") or NULL */
    const char *summary;     /* one line */
    const char *usage;       /* "cgalpha-lab [OPTIONS] --plugin NAME ..." */
    const char *details;     /* more --help text, or NULL */
    const cga_setting_t *settings; /* the process's own settings (the common ones are added) */
    size_t nsettings;
} cga_app_info_t;

/* Parses argv (argv[0..argc) are arguments, no program name), loads the configuration, sets
 * up logging, creates the loop and the Redis connection (which starts connecting). On --help
 * (or -h) or --version prints to stdout and returns CGA_EXIT_OK through *exit_code with *out
 * NULL; on a bad configuration prints one line "<name>: <message>" to stderr and returns
 * CGA_EXIT_USAGE the same way. Otherwise returns with *out set and *exit_code -1.
 * Also ignores SIGPIPE and watches SIGINT/SIGTERM (see cga_app_on_signal). The Redis client
 * name is "<name>:<instance id>" (":sub" appended for the subscription connection). */
CGA_EXTERN void cga_app_create(cga_app_t **out, int *exit_code, const cga_app_info_t *info,
                               int argc, char **argv);

/* Closes the Redis connection(s) and every handle, runs the loop until they are gone, checks
 * that the loop closes cleanly, frees. NULL is a no-op. */
CGA_EXTERN void cga_app_free(cga_app_t *a);

CGA_EXTERN struct uv_loop_s *cga_app_loop(cga_app_t *a);
CGA_EXTERN const cga_config_t *cga_app_config(const cga_app_t *a);
CGA_EXTERN struct cga_redis_s *cga_app_redis(cga_app_t *a);
CGA_EXTERN const char *cga_app_ns(const cga_app_t *a);
/* A second connection for subscriptions, created on first call (same settings). */
CGA_EXTERN struct cga_redis_s *cga_app_redis_sub(cga_app_t *a);

/* Runs the loop until Redis is connected (CGA_OK), or a connect attempt fails with an error
 * that waiting will not fix (CGA_EAUTH, CGA_ESELECT), or timeout_ms pass (the last error, or
 * CGA_ETIMEDOUT), or SIGINT/SIGTERM arrives or cga_app_stop is called (CGA_ECANCELED).
 * timeout_ms 0 waits without a limit: long-running services treat Redis absent at start like
 * any other outage and start working when it answers. Logs the outcome in one line, without
 * secrets. */
CGA_EXTERN int cga_app_wait_connected(cga_app_t *a, unsigned timeout_ms);

/* The exit code for an error from cga_app_wait_connected or a Redis call: CGA_OK and
 * CGA_ECANCELED (a shutdown asked for) -> 0; CGA_EAUTH, CGA_ESELECT -> 4; refused, reset,
 * unreachable, unknown host, timed out, not connected, breaker open -> 3; CGA_ECONFIG,
 * CGA_ETLS -> 2; anything else -> 1. */
CGA_EXTERN int cga_app_exit_code(int rc);

/* cb runs on the loop thread at the first SIGINT or SIGTERM (a second one exits at once with
 * code 1). Without a callback the first signal calls cga_app_stop. The signal handles do not
 * keep the loop alive. */
CGA_EXTERN void cga_app_on_signal(cga_app_t *a, void (*cb)(int signum, void *arg), void *arg);

/* The first signal received (SIGINT or SIGTERM), or 0. */
CGA_EXTERN int cga_app_signaled(const cga_app_t *a);

/* Runs the loop until cga_app_stop or until nothing is left to run. Returns CGA_OK.
 * cga_app_stop is sticky: once called, cga_app_run returns at once (drain with
 * uv_run(cga_app_loop(a), ...) if you need the loop after a stop). */
CGA_EXTERN int cga_app_run(cga_app_t *a);
CGA_EXTERN void cga_app_stop(cga_app_t *a);
/* 1 once cga_app_stop has been called. */
CGA_EXTERN int cga_app_is_stopped(const cga_app_t *a);

/* A unique id for this process: "<host>-<pid>-<4 random hex>" (the same for every app of one
 * process; recomputed after fork). Static storage. */
CGA_EXTERN const char *cga_app_instance_id(cga_app_t *a);

#endif

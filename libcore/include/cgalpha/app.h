#ifndef CGALPHA_APP_H
#define CGALPHA_APP_H

/* What every cgalpha executable does the same way: --help and --version, configuration
 * (config.h), logging, one libuv loop, one Redis command connection, SIGINT/SIGTERM, exit
 * codes, and for services the /health and /metrics endpoints. A main() is then only its own
 * wiring. */

#include <stddef.h>
#include <stdint.h>
#include "cgalpha/config.h"
#include "cgalpha/export.h"

struct uv_loop_s;
struct cga_redis_s;
struct cga_metrics_s;
struct cga_http_s;
struct cga_state_s;

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
    /* 1 for a long-running service (lab, nexus, ops run): adds the settings CGALPHA_HTTP_ADDR
     * (--http-addr, default 127.0.0.1), CGALPHA_HTTP_PORT (--http-port, default 0: off) and
     * CGALPHA_HTTP_ALLOW_REMOTE (--http-allow-remote, default false: a non-loopback address is
     * a configuration error unless this is set, since the endpoints have no authentication),
     * and serves /health and /metrics (see below) when the port is not 0. One-shot tools
     * (status, recover, ...) leave it 0, so that an environment shared with a service never
     * makes them compete for its port. */
    int serve_http;
} cga_app_info_t;

/* Parses argv (argv[0..argc) are arguments, no program name), loads the configuration, sets
 * up logging, creates the loop and the Redis connection (which starts connecting), and, for a
 * service with CGALPHA_HTTP_PORT set, starts the HTTP server (a port in use or an address
 * this host does not have is a configuration error: one line, CGA_EXIT_USAGE). On --help
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

/* ---- HTTP endpoints and metrics ------------------------------------------------------------
 *
 * A service (info->serve_http) with CGALPHA_HTTP_PORT != 0 serves on CGALPHA_HTTP_ADDR (HTTP,
 * no authentication, GET/HEAD only; 404 for other paths, 405 for other methods):
 *
 *   /metrics  Prometheus text format 0.0.4 ("text/plain; version=0.0.4; charset=utf-8"):
 *             everything in cga_app_metrics(a), after cga_app_metrics_refresh(a), which adds:
 *               cgalpha_build_info{process,version} 1, cgalpha_uptime_seconds,
 *               cgalpha_redis_connected{conn}, cgalpha_redis_breaker_state{conn,state} (1 for
 *               the current state of closed/open/half-open), cgalpha_redis_breaker_trips_total,
 *               cgalpha_redis_commands_sent_total, _replies_total, _command_timeouts_total,
 *               _connects_total, _disconnects_total, cgalpha_redis_commands_queued,
 *               cgalpha_redis_commands_in_flight (conn="cmd" for the command connection,
 *               conn="sub" for the subscription one once it exists), and the Redis INFO gauges
 *               when cga_app_enable_redis_info() was called.
 *   /health   JSON, 200 when "status" is "ok" or "degraded", 503 when "down":
 *               {"status":"ok","version":"0.1.0","process":"cgalpha-lab","instance":"<id>",
 *                "redis":{"connected":true,"breaker":"closed","last_error":null},
 *                "uptime_s":12.5, <the process's fields>}
 *             plus "reason":"..." when the status is not ok. Down when the Redis command
 *             connection is not connected (last_error then says why), or when the process's
 *             health callback says so (a stalled lab); degraded only through the callback.
 *
 * Handlers run on the loop thread, between the process's own callbacks. */

/* The app's metrics registry, created on the first call, freed by cga_app_free: every process
 * registers its counters, gauges and histograms here (updates are atomics, safe from any
 * thread). Never NULL. */
CGA_EXTERN struct cga_metrics_s *cga_app_metrics(cga_app_t *a);

/* Updates the app-level metrics listed above in cga_app_metrics(a) and runs the collectors
 * (cga_app_on_metrics). /metrics calls it before each render; a process that writes its
 * metrics to a file calls it before cga_metrics_write_file(). Loop thread. */
CGA_EXTERN void cga_app_metrics_refresh(cga_app_t *a);

/* Adds a collector, run on the loop thread by cga_app_metrics_refresh (so before each
 * scrape): it sets values that are cheaper to read on demand than to keep current (queue
 * lengths, a state cache's hit and miss counts, a buffer's depth). Up to 8. Borrows arg.
 * Returns CGA_OK or CGA_EINVAL when full. */
CGA_EXTERN int cga_app_on_metrics(cga_app_t *a, void (*cb)(struct cga_metrics_s *m, void *arg),
                                  void *arg);
/* Removes the collector added with the same cb and arg (before arg goes away). */
CGA_EXTERN void cga_app_off_metrics(cga_app_t *a, void (*cb)(struct cga_metrics_s *m, void *arg),
                                    void *arg);

/* Exports the hit and miss counts of the process's state cache (state.h) as the counters
 * cgalpha_state_cache_hits_total and cgalpha_state_cache_misses_total, brought up to date by
 * each cga_app_metrics_refresh. One state object at a time (a later call replaces it, and all
 * its counts add to the totals); NULL stops, and must come before the state object is freed.
 * Borrows s. */
CGA_EXTERN void cga_app_track_state(cga_app_t *a, const struct cga_state_s *s);

/* Runs INFO memory, INFO clients and INFO stats on the command connection every interval_ms
 * (the first at once; skipped while Redis is not connected: the gauges keep their last
 * values, and cgalpha_redis_connected says they are stale) and sets in cga_app_metrics(a):
 * cgalpha_redis_used_memory_bytes, cgalpha_redis_maxmemory_bytes (0: no limit),
 * cgalpha_redis_mem_fragmentation_ratio, cgalpha_redis_connected_clients (gauges) and
 * cgalpha_redis_evicted_keys_total (a counter: the evictions seen, a Redis restart included).
 * Redis-wide values, so one process per deployment enables it: ops, the coordinator. Calling it
 * again changes the interval; 0 stops it. The timer does not keep the loop alive. */
CGA_EXTERN void cga_app_enable_redis_info(cga_app_t *a, unsigned interval_ms);

/* The HTTP server, or NULL when the app serves none: ops adds routes with cga_http_route(). */
CGA_EXTERN struct cga_http_s *cga_app_http(cga_app_t *a);

/* /health: the process adds its own fields through a callback run for each request. */
typedef struct cga_health_s cga_health_t;

typedef enum cga_health_status {
    CGA_HEALTH_OK = 0,
    CGA_HEALTH_DEGRADED = 1, /* still 200: working, with a problem worth a look */
    CGA_HEALTH_DOWN = 2,     /* 503: a health check should fail (restart, alert, reroute) */
} cga_health_status_t;

/* cb (NULL to remove) runs on the loop thread for each /health request. Borrows arg. The
 * server answers until cga_app_free, so a process whose teardown runs the loop after freeing
 * what arg points to removes its callback first (cga_app_set_health(a, NULL, NULL)), as it
 * removes its collectors (cga_app_off_metrics). */
CGA_EXTERN void cga_app_set_health(cga_app_t *a, void (*cb)(cga_health_t *h, void *arg),
                                   void *arg);

/* Raises the status to s (never lowers it); reason (copied, may be NULL) becomes "reason"
 * when s is the highest status given. */
CGA_EXTERN void cga_health_status(cga_health_t *h, cga_health_status_t s, const char *reason);
/* Add "key": value to the JSON object (key and string value are escaped; value NULL is null;
 * a non-finite number is null). Keys should be unique and not those listed above. */
CGA_EXTERN void cga_health_str(cga_health_t *h, const char *key, const char *value);
CGA_EXTERN void cga_health_int(cga_health_t *h, const char *key, int64_t value);
CGA_EXTERN void cga_health_num(cga_health_t *h, const char *key, double value);
CGA_EXTERN void cga_health_bool(cga_health_t *h, const char *key, int value);

/* A unique id for this process: "<host>-<pid>-<4 random hex>" (the same for every app of one
 * process; recomputed after fork). Static storage. */
CGA_EXTERN const char *cga_app_instance_id(cga_app_t *a);

#endif

#ifndef CGALPHA_LAB_WORKER_H
#define CGALPHA_LAB_WORKER_H

/* The lab's engine: claims analysis entries, runs the plugins on the libuv thread pool, writes
 * one report per task and acknowledges, reclaims entries of dead labs, dead-letters what
 * cannot be run, heartbeats, and shuts down gracefully. See docs/LAB.md. Loop thread only
 * (except the plugin runs, which happen on pool threads inside this module). */

#include <stddef.h>
#include <stdint.h>

#include "cgalpha/app.h"
#include "cgalpha/plugin.h"

typedef struct lab_worker_s lab_worker_t;

typedef struct lab_worker_opts_s {
    const char *id;           /* worker id: consumer name and heartbeat key (copied) */
    unsigned concurrency;     /* pool threads (UV_THREADPOOL_SIZE is set by the caller) */
    size_t claim_count;       /* entries per XREADGROUP */
    unsigned block_ms;        /* XREADGROUP BLOCK while idle */
    unsigned lease_ms;        /* reclaim entries idle longer than this */
    unsigned max_deliveries;  /* dead-letter past this many deliveries */
    unsigned grace_ms;        /* shutdown: time allowed for in-flight tasks */
    size_t max_inflight;      /* tasks held at once (claimed, not yet acknowledged) */
    const char *metrics_file; /* Prometheus text written every heartbeat, or NULL (copied) */
    unsigned stall_ms;        /* work waiting and no progress for this long: stalled (0: off) */
} lab_worker_opts_t;

/* 1 when the worker is stalled (see stall_ms): for /health and the heartbeat. */
int lab_worker_is_stalled(const lab_worker_t *w);

/* Creates the worker on the app's loop and Redis connection. Takes the plugins (the array is
 * copied; the plugins are freed by lab_worker_free). On failure the plugins are freed too.
 * Returns CGA_OK or a negative code. */
int lab_worker_create(lab_worker_t **out, cga_app_t *app, const lab_worker_opts_t *o,
                      cga_plugin_t **plugins, size_t nplugins);

/* Starts: ensures the group, reclaims, claims, heartbeats. Redis should be connected. */
void lab_worker_start(lab_worker_t *w);

/* Graceful stop (idempotent): stop claiming, let in-flight tasks finish within the grace
 * period, write their reports and acks, delete the heartbeat, then close every handle and
 * call cga_app_stop(). If the grace period expires while a plugin is still running, logs
 * what is left pending and exits the process with code 0 (the tasks come back by reclaim). */
void lab_worker_stop(lab_worker_t *w);

/* Frees the worker after the loop has stopped (plugins' fini runs here). NULL is a no-op. */
void lab_worker_free(lab_worker_t *w);

/* Exit code for main() once the loop has returned (CGA_EXIT_OK). */
int lab_worker_exit_code(const lab_worker_t *w);

#endif

#ifndef CGA_OPS_DASHBOARD_H
#define CGA_OPS_DASHBOARD_H

/* The operator's dashboard, served by `cgalpha-ops run` on its HTTP server (CGALPHA_HTTP_PORT):
 *
 *   /  (and /index.html), /app.js, /style.css   the page, built into the binary (ops/dashboard/,
 *                          embedded at build time by ops/dashboard/embed.cmake; nothing is
 *                          fetched from elsewhere)
 *   /api/snapshot          the latest reading of the namespace as one JSON object:
 *                          {"namespace":..,"taken_ms":..,"served_ms":..,"interval_ms":1000,
 *                           "redis":{"connected":..},"stale":..,"error":..|null,
 *                           <ops_snapshot_json members, with "changes">}
 *   /api/history           the readings of the last five minutes, for a page that opens:
 *                          {"interval_ms":1000,"fields":[..],"points":[[t_ms,analysis_depth,
 *                           reports_depth,processed],..]} (depth: lag + pending; processed: the
 *                           sum over the live labs), oldest first
 *
 * HTTP handlers are synchronous, so a uv timer takes a snapshot (snapshot.h) every second (a tick
 * is skipped while a reading is in flight or Redis is not connected) and keeps it rendered; a
 * request only copies it. "stale" is true when the last reading failed, Redis is not connected,
 * or the reading is older than three intervals; "error" then says why, and the members are those
 * of the last good reading (or empty ones). The page polls it every second and computes the
 * rates itself.
 *
 * Each reading also sets gauges in the app's metrics registry (served on /metrics):
 * cgalpha_queue_length, cgalpha_queue_lag, cgalpha_queue_pending, cgalpha_queue_dead_letters,
 * cgalpha_queue_consumers (each with queue="analysis" and queue="reports") and
 * cgalpha_labs_alive. */

#include <stddef.h>

#include "cgalpha/app.h"

typedef struct ops_dashboard_s ops_dashboard_t;

/* Starts the dashboard on cga_app_http(a), reading Redis through cga_app_redis(a) in namespace
 * cga_app_ns(a). Borrows a (which must outlive the dashboard). When the app serves no HTTP,
 * does nothing: returns CGA_OK with *out NULL. Otherwise CGA_OK and *out (owned, released with
 * ops_dashboard_close), or an error from the snapshot reader or the routes. The routes stay on
 * the server (it has no way to remove them) and answer 503 once the dashboard is closed. One
 * dashboard per process at a time. */
int ops_dashboard_start(ops_dashboard_t **out, cga_app_t *a);

/* Stops the timer and the reader; done(arg) (may be NULL) runs once every handle is closed and
 * d is freed, so that uv_loop_close() succeeds once the loop has run. NULL is a no-op (done is
 * then not called). */
void ops_dashboard_close(ops_dashboard_t *d, void (*done)(void *arg), void *arg);

/* The embedded assets, generated at build time from ops/dashboard/ (dashboard_assets.c in the
 * build directory). */
typedef struct ops_dash_asset_s {
    const char *name;           /* file name: "index.html", "app.js", "style.css" */
    const unsigned char *data;  /* the file's bytes (not NUL-terminated) */
    size_t len;
} ops_dash_asset_t;

extern const ops_dash_asset_t ops_dash_assets[];
extern const size_t ops_dash_nassets;

#endif

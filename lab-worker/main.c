/* cgalpha-lab: the worker. Claims analysis tasks, runs lab plugins on a thread pool, writes one
 * report per task. Wiring only: the engine is worker.c, the --summary command summary.c. */
#define CGA_LOG_COMPONENT "lab"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cgalpha/alloc.h"
#include "cgalpha/app.h"
#include "cgalpha/config.h"
#include "cgalpha/err.h"
#include "cgalpha/log.h"
#include "cgalpha/plugin.h"
#include "summary.h"
#include "worker.h"

#ifndef CGA_PLUGIN_INSTALL_DIR
#define CGA_PLUGIN_INSTALL_DIR "/usr/local/lib/cgalpha/plugins"
#endif

#define ID_MAX 64

static const cga_setting_t lab_settings[] = {
    /* A common setting with the lab's own default: after an outage the lab must be consuming
     * again within a few seconds of Redis' return (reconnects are jittered up to this). */
    {"REDIS_BACKOFF_CAP_MS", "redis-backoff-cap-ms", CGA_SET_INT, "2000",
     "longest reconnect delay in ms (the lab reconnects within this after Redis returns)", 1,
     3600000, 0, NULL},
    {"LAB_PLUGINS", "plugin", CGA_SET_LIST, NULL,
     "plugin to load: NAME or PATH, optionally =CONFIG (repeatable; comma-separated in env)",
     0, 0, 0, NULL},
    {"CGALPHA_PLUGIN_DIRS", "plugin-dir", CGA_SET_LIST, NULL,
     "folders where a plugin NAME is looked up, in order (default: <bin>/../lib/cgalpha/plugins, "
     "then " CGA_PLUGIN_INSTALL_DIR ")",
     0, 0, 0, NULL},
    {"LAB_CONCURRENCY", "concurrency", CGA_SET_INT, "0",
     "threads running plugins (0: one per CPU); UV_THREADPOOL_SIZE is set to this + 1", 0, 1024,
     0, NULL},
    {"LAB_CLAIM_COUNT", "claim-count", CGA_SET_INT, "16", "stream entries claimed per XREADGROUP",
     1, 10000, 0, NULL},
    {"LAB_BLOCK_MS", "block-ms", CGA_SET_INT, "1000",
     "XREADGROUP BLOCK while idle, ms (at most half of REDIS_COMMAND_TIMEOUT_MS)", 0, 60000, 0,
     NULL},
    {"LAB_LEASE_MS", "lease-ms", CGA_SET_INT, "30000",
     "entries idle this long (their lab died) are reclaimed, ms", 100, 86400000, 0, NULL},
    {"LAB_MAX_DELIVERIES", "max-deliveries", CGA_SET_INT, "5",
     "an entry delivered more often goes to the dead letters", 1, 1000, 0, NULL},
    {"LAB_GRACE_MS", "grace-ms", CGA_SET_INT, "10000",
     "on SIGTERM/SIGINT, time allowed for in-flight tasks, ms", 0, 3600000, 0, NULL},
    {"LAB_ID", "id", CGA_SET_STR, NULL,
     "worker id: consumer name and heartbeat key (default: <host>-<pid>-<hex>)", 0, 0, 0, NULL},
    {"LAB_MAX_INFLIGHT", "max-inflight", CGA_SET_INT, "0",
     "tasks claimed and not yet acknowledged, at most (0: the larger of 4 x concurrency x 32 "
     "and 2 x claim-count x 32)", 0, 10000000,
     0, NULL},
    {"LAB_METRICS_FILE", "metrics-file", CGA_SET_STR, NULL,
     "write the metrics (Prometheus text) to this file every 2 s and at exit", 0, 0, 0, NULL},
    {"LAB_STALL_MS", "stall-ms", CGA_SET_INT, "60000",
     "stalled when work waits (tasks held, or a backlog in the queue) and nothing was "
     "acknowledged or claimed for this long: said in the heartbeat and the log (0: never)",
     0, 86400000, 0, NULL},
    {"LAB_SUMMARY", "summary", CGA_SET_BOOL, "0",
     "print counts of reports, pending entries and dead letters, then exit (for tests)",
     0, 0, 0, NULL},
};
#define NSETTINGS (sizeof lab_settings / sizeof lab_settings[0])

static const char details[] =
    "Claims entries of <ns>:queue:analysis (group \"labs\") in batches, runs each task's plugin\n"
    "on a thread pool, writes one report per task to <ns>:queue:reports and acknowledges in\n"
    "the same MULTI/EXEC. Entries idle longer than the lease are reclaimed from dead labs; an\n"
    "entry that cannot be decoded, or was delivered more than --max-deliveries times, goes to\n"
    "<ns>:queue:analysis:dead with the reason. Heartbeat: <ns>:state:worker:<id> every 2 s.\n"
    "SIGTERM/SIGINT: stop claiming, finish in-flight tasks within --grace-ms, exit 0.\n"
    "A plugin that cannot be loaded exits 2; a signal exits 0 (also when the grace period\n"
    "expires: what is left pending is reclaimed by another lab after the lease).\n"
    "See docs/LAB.md.\n";

static unsigned cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1u;
}

/* The thread pool reads UV_THREADPOOL_SIZE once, when first used. Read --concurrency before
 * anything could use it (errors are left for cga_app_create to report). One thread more than
 * the plugins get: the Redis connection resolves host names on the same pool, and a busy or
 * hung plugin must not hold up a reconnect. */
/* --summary makes this run a tool, not the service: no HTTP endpoints (the service may hold
 * the port). Looked at before the configuration is loaded, like the pool size below. */
static int summary_requested(int argc, char **argv) {
    for (int i = 0; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--summary") == 0) return 1;
        if (strncmp(argv[i], "--summary=", 10) == 0) return strchr("1tTyY", argv[i][10]) != NULL;
        if (strcmp(argv[i], "--no-summary") == 0) return 0;
    }
    const char *e = getenv("LAB_SUMMARY");
    return e && *e && strchr("1tTyY", e[0]) != NULL;
}

static void set_threadpool_size(int argc, char **argv) {
    size_t ncommon = 0;
    const cga_setting_t *common = cga_config_common_settings(&ncommon);
    const cga_setting_t *const tables[] = {common, lab_settings};
    const size_t counts[] = {ncommon, NSETTINGS};
    cga_config_t *c = NULL;
    char err[256];
    unsigned n = 0;
    if (cga_config_create(&c, tables, counts, 2) == CGA_OK &&
        cga_config_load(c, argc, argv, NULL, err, sizeof err) == CGA_OK)
        n = (unsigned)cga_config_int(c, "LAB_CONCURRENCY");
    cga_config_free(c);
    if (n == 0) n = cpu_count();
    char buf[16];
    snprintf(buf, sizeof buf, "%u", n + 1);
    setenv("UV_THREADPOOL_SIZE", buf, 1);
}

static int valid_id(const char *id) {
    size_t n = strlen(id);
    if (n == 0 || n > ID_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = id[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '-' || ch == '_' || ch == '.' || ch == '@';
        if (!ok) return 0;
    }
    return 1;
}

/* <dir of the executable>/../lib/cgalpha/plugins, or NULL. Returns owned. */
static char *exe_plugin_dir(void) {
    char path[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n <= 0) return NULL;
    path[n] = '\0';
    char *slash = strrchr(path, '/');
    if (!slash) return NULL;
    *slash = '\0';
    size_t len = strlen(path) + sizeof "/../lib/cgalpha/plugins";
    char *dir = cga_malloc(len);
    snprintf(dir, len, "%s/../lib/cgalpha/plugins", path);
    char *real = realpath(dir, NULL);
    if (real) {
        free(dir);
        return real;
    }
    return dir;
}

static void free_plugins(cga_plugin_t **p, size_t n) {
    for (size_t i = 0; i < n; i++) cga_plugin_free(p[i]);
    free(p);
}

/* Loads every --plugin. Returns CGA_EXIT_OK, or CGA_EXIT_USAGE after one log line. */
static int load_plugins(const cga_config_t *cfg, cga_plugin_t ***out, size_t *nout) {
    size_t nspecs = 0, ndirs = 0;
    const char *const *specs = cga_config_list(cfg, "LAB_PLUGINS", &nspecs);
    const char *const *dirs = cga_config_list(cfg, "CGALPHA_PLUGIN_DIRS", &ndirs);
    const char *defdirs[2];
    char *exedir = NULL;
    if (ndirs == 0) {
        exedir = exe_plugin_dir();
        if (exedir) defdirs[ndirs++] = exedir;
        defdirs[ndirs++] = CGA_PLUGIN_INSTALL_DIR;
        dirs = defdirs;
    }
    *out = NULL;
    *nout = 0;
    if (nspecs == 0) {
        CGA_LOG(CGA_LOG_ERROR, 0, "no plugin to run: give --plugin NAME (or LAB_PLUGINS)");
        free(exedir);
        return CGA_EXIT_USAGE;
    }
    cga_plugin_t **p = cga_calloc(nspecs, sizeof *p);
    size_t n = 0;
    int code = CGA_EXIT_OK;
    for (size_t i = 0; i < nspecs; i++) {
        char err[512] = "";
        int rc = cga_plugin_load(&p[n], specs[i], dirs, ndirs, err, sizeof err);
        if (rc != CGA_OK) {
            CGA_LOG(CGA_LOG_ERROR, 0, "%s", err[0] ? err : cga_strerror(rc));
            code = CGA_EXIT_USAGE;
            break;
        }
        const char *name = cga_plugin_name(p[n]);
        n++;
        for (size_t k = 0; k + 1 < n; k++) {
            if (strcmp(cga_plugin_name(p[k]), name) == 0) {
                CGA_LOG(CGA_LOG_ERROR, 0, "plugin %s is given twice (%s)", name, specs[i]);
                code = CGA_EXIT_USAGE;
                break;
            }
        }
        if (code != CGA_EXIT_OK) break;
        CGA_LOG(CGA_LOG_INFO, 0, "plugin %s %s loaded from %s", name,
                cga_plugin_desc(p[n - 1])->version ? cga_plugin_desc(p[n - 1])->version : "",
                cga_plugin_path(p[n - 1]));
    }
    free(exedir);
    if (code != CGA_EXIT_OK) {
        free_plugins(p, n);
        return code;
    }
    *out = p;
    *nout = n;
    return CGA_EXIT_OK;
}

static void on_signal(int signum, void *arg) {
    (void)signum;
    lab_worker_stop(arg);
}

int main(int argc, char **argv) {
    set_threadpool_size(argc - 1, argv + 1);

    cga_app_info_t info = {
        .name = "cgalpha-lab",
        .command = NULL,
        .summary = "the cgalpha lab worker: runs lab plugins on analysis tasks",
        .usage = "cgalpha-lab [OPTIONS] --plugin NAME_OR_PATH[=CONFIG] [--plugin ...]",
        .details = details,
        .settings = lab_settings,
        .nsettings = NSETTINGS,
        .serve_http = !summary_requested(argc - 1, argv + 1), /* a tool, not the service */
    };
    cga_app_t *app = NULL;
    int code = -1;
    cga_app_create(&app, &code, &info, argc - 1, argv + 1);
    if (!app) return code;
    const cga_config_t *cfg = cga_app_config(app);

    size_t npos = 0;
    char *const *pos = cga_config_positionals(cfg, &npos);
    if (npos > 0) {
        CGA_LOG(CGA_LOG_ERROR, 0, "unexpected argument '%s' (see --help)", pos[0]);
        cga_app_free(app);
        return CGA_EXIT_USAGE;
    }
    unsigned wait_ms = (unsigned)cga_config_int(cfg, "REDIS_CONNECT_TIMEOUT_MS");

    if (cga_config_bool(cfg, "LAB_SUMMARY")) {
        int rc = cga_app_wait_connected(app, wait_ms);
        code = rc == CGA_OK ? lab_summary_run(app, stdout) : cga_app_exit_code(rc);
        cga_app_free(app);
        return code;
    }

    const char *id = cga_config_str(cfg, "LAB_ID");
    if (!id) id = cga_app_instance_id(app);
    if (!valid_id(id)) {
        CGA_LOG(CGA_LOG_ERROR, 0, "LAB_ID: '%s' is not 1..%d characters of [A-Za-z0-9_.@-]", id,
                ID_MAX);
        cga_app_free(app);
        return CGA_EXIT_USAGE;
    }

    cga_plugin_t **plugins = NULL;
    size_t nplugins = 0;
    code = load_plugins(cfg, &plugins, &nplugins);
    if (code != CGA_EXIT_OK) {
        cga_app_free(app);
        return code;
    }

    /* a service: Redis absent at start is an outage like any other (0: wait without limit;
     * rejected credentials still end it with 4) */
    int rc = cga_app_wait_connected(app, 0);
    if (rc != CGA_OK || cga_app_signaled(app)) {
        /* refused, or SIGTERM/SIGINT came with the connection: nothing was claimed yet */
        free_plugins(plugins, nplugins);
        cga_app_free(app);
        return rc != CGA_OK ? cga_app_exit_code(rc) : CGA_EXIT_OK;
    }

    unsigned conc = (unsigned)cga_config_int(cfg, "LAB_CONCURRENCY");
    lab_worker_opts_t o = {
        .id = id,
        .concurrency = conc ? conc : cpu_count(),
        .claim_count = (size_t)cga_config_int(cfg, "LAB_CLAIM_COUNT"),
        .block_ms = (unsigned)cga_config_int(cfg, "LAB_BLOCK_MS"),
        .lease_ms = (unsigned)cga_config_int(cfg, "LAB_LEASE_MS"),
        .max_deliveries = (unsigned)cga_config_int(cfg, "LAB_MAX_DELIVERIES"),
        .grace_ms = (unsigned)cga_config_int(cfg, "LAB_GRACE_MS"),
        .max_inflight = (size_t)cga_config_int(cfg, "LAB_MAX_INFLIGHT"),
        .metrics_file = cga_config_str(cfg, "LAB_METRICS_FILE"),
        .stall_ms = (unsigned)cga_config_int(cfg, "LAB_STALL_MS"),
    };
    lab_worker_t *w = NULL;
    rc = lab_worker_create(&w, app, &o, plugins, nplugins); /* takes the plugins */
    free(plugins);
    if (rc != CGA_OK) {
        CGA_LOG(CGA_LOG_ERROR, rc, "cannot start the lab");
        cga_app_free(app);
        return CGA_EXIT_FAILURE;
    }
    cga_app_on_signal(app, on_signal, w);
    lab_worker_start(w);
    cga_app_run(app);
    code = lab_worker_exit_code(w);
    /* The app closes Redis first (pending callbacks still find w), then w goes; the app must
     * not call into w (health, state counters) once w is gone. */
    cga_app_set_health(app, NULL, NULL);
    cga_app_track_state(app, NULL);
    cga_app_free(app);
    lab_worker_free(w);
    return code;
}

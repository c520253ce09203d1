#define CGA_LOG_COMPONENT "app"
#include "cgalpha/app.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <hiredis.h>
#include <unistd.h>
#include <uv.h>

#include "cgalpha/alloc.h"
#include "cgalpha/breaker.h"
#include "cgalpha/clock.h"
#include "cgalpha/err.h"
#include "cgalpha/http.h"
#include "cgalpha/keys.h"
#include "cgalpha/log.h"
#include "cgalpha/metrics.h"
#include "cgalpha/redis.h"
#include "cgalpha/state.h"

#define MAX_COLLECTORS 8
#define PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define JSON_CONTENT_TYPE "application/json"

typedef struct collector_s {
    void (*cb)(cga_metrics_t *m, void *arg);
    void *arg;
} collector_t;

/* App-level metrics of one Redis connection, registered on the first refresh. */
typedef struct conn_metrics_s {
    cga_gauge_t *connected;
    cga_gauge_t *breaker[3]; /* by cga_breaker_state_t */
    cga_counter_t *trips, *sent, *replies, *timeouts, *connects, *disconnects;
    cga_gauge_t *queued, *in_flight;
} conn_metrics_t;

struct cga_app_s {
    char *name;
    uv_loop_t *loop;            /* our own, never the default loop */
    cga_config_t *cfg;
    cga_redis_opts_t ropts;     /* strings point into cfg and the names below */
    char client_name[192];
    char sub_client_name[200];
    char addr[300];             /* "127.0.0.1:6379", "[::1]:6379" or "unix:/path" for logs */
    char ns[CGA_NAMESPACE_MAX + 1];
    cga_redis_t *redis;
    cga_redis_t *sub;
    uv_signal_t sigint, sigterm;
    uv_timer_t wait_timer;
    int handles_open;           /* the three handles above were initialised */
    void (*sig_cb)(int signum, void *arg);
    void *sig_arg;
    int signaled;               /* first signal received */
    int stopped;
    int waiting, wait_done, wait_rc;
    int last_rc;                /* last connect error seen by the state listener */
    int pending_closes;
    uint64_t start_us;          /* cga_clock_mono_us() at create: uptime */
    char http_where[64];        /* "127.0.0.1:9100" or "[::1]:9100" for messages */

    /* HTTP endpoints and metrics */
    cga_http_t *http;           /* NULL when not serving */
    cga_metrics_t *metrics;     /* created on demand */
    collector_t collectors[MAX_COLLECTORS];
    size_t ncollectors;
    void (*health_cb)(cga_health_t *h, void *arg);
    void *health_arg;
    int app_metrics_registered;
    cga_gauge_t *g_build, *g_uptime;
    conn_metrics_t cm[2];       /* [0] command connection, [1] subscription connection */

    /* the state cache's hits and misses (cga_app_track_state) */
    const cga_state_t *state;
    uint64_t state_hits, state_misses; /* the state's counts already added */
    cga_counter_t *c_hits, *c_misses;

    /* Redis INFO gauges (cga_app_enable_redis_info) */
    uv_timer_t info_timer;
    int info_open;              /* info_timer initialised */
    int info_pending;           /* INFO commands in flight */
    cga_gauge_t *g_used_memory, *g_maxmemory, *g_frag, *g_clients;
    cga_counter_t *c_evicted;
    uint64_t last_evicted;
    int have_evicted;
};

struct cga_health_s {
    char *p;                    /* the process's fields: ,"key":value... */
    size_t len, cap;
    cga_health_status_t status;
    char *reason;
};

/* ---- instance id ----------------------------------------------------------------------- */

static char instance_id[128];
static pid_t instance_pid;

static const char *make_instance_id(void) {
    pid_t pid = getpid();
    if (instance_pid == pid && instance_id[0]) return instance_id;
    char host[65];
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "host");
    host[sizeof host - 1] = '\0';
    for (char *p = host; *p; p++) { /* client names and keys: no spaces, no colons */
        int ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                 (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_';
        if (!ok) *p = '-';
    }
    unsigned char rnd[2];
    if (uv_random(NULL, NULL, rnd, sizeof rnd, 0, NULL) != 0) {
        unsigned x = (unsigned)time(NULL) ^ (unsigned)pid ^ (unsigned)clock();
        rnd[0] = (unsigned char)x;
        rnd[1] = (unsigned char)(x >> 8);
    }
    snprintf(instance_id, sizeof instance_id, "%s-%ld-%02x%02x", host, (long)pid, rnd[0], rnd[1]);
    instance_pid = pid;
    return instance_id;
}

const char *cga_app_instance_id(cga_app_t *a) {
    (void)a;
    return make_instance_id();
}

/* ---- HTTP settings (services only) ----------------------------------------------------- */

static const char *check_http_addr(const char *v) {
    return cga_http_addr_parse(v, NULL) == CGA_OK
               ? NULL
               : "is not an IP address (127.0.0.1, ::1, 0.0.0.0, ... or localhost)";
}

static const cga_setting_t http_settings[] = {
    {"CGALPHA_HTTP_ADDR", "http-addr", CGA_SET_STR, "127.0.0.1",
     "IP address of the /health and /metrics endpoints; they have no authentication, so an "
     "address other than loopback is refused unless CGALPHA_HTTP_ALLOW_REMOTE is set", 0, 0, 0,
     check_http_addr},
    {"CGALPHA_HTTP_PORT", "http-port", CGA_SET_INT, "0",
     "TCP port of the /health and /metrics endpoints; 0: no HTTP server", 0, 65535, 0, NULL},
    {"CGALPHA_HTTP_ALLOW_REMOTE", "http-allow-remote", CGA_SET_BOOL, "false",
     "allow a non-loopback CGALPHA_HTTP_ADDR (e.g. 0.0.0.0 in a container): whoever reaches it "
     "reads health and metrics", 0, 0, 0, NULL},
};

/* ---- help ------------------------------------------------------------------------------ */

static void print_help(const cga_app_info_t *info, const char *name, const cga_config_t *cfg,
                       FILE *out) {
    if (info->usage)
        fprintf(out, "Usage: %s\n", info->usage);
    else
        fprintf(out, "Usage: %s%s%s [OPTIONS]\n", name, info->command ? " " : "",
                info->command ? info->command : "");
    if (info->summary) fprintf(out, "\n%s\n", info->summary);
    if (info->details) {
        size_t n = strlen(info->details);
        fprintf(out, "\n%s%s", info->details, n && info->details[n - 1] == '\n' ? "" : "\n");
    }
    fprintf(out,
            "\nOptions (each also an environment variable and a .env key; a flag wins over the\n"
            "environment, which wins over the .env file, which wins over the default):\n"
            "  -h, --help                      show this help and exit\n"
            "  --version                       show the version and exit\n");
    cga_config_print_help(cfg, out);
    fprintf(out,
            "\nExit codes:\n"
            "  0  success\n"
            "  1  runtime failure\n"
            "  2  bad usage or configuration\n"
            "  3  Redis unreachable (refused, unknown host, timed out)\n"
            "  4  Redis rejected the credentials or the database index\n"
            "  5  bad input data (some rows refused; the rest processed)\n");
}

/* ---- signals --------------------------------------------------------------------------- */

static const char *signal_name(int signum) {
    return signum == SIGINT ? "SIGINT" : signum == SIGTERM ? "SIGTERM" : "signal";
}

static void finish_wait(cga_app_t *a, int rc) {
    if (!a->waiting || a->wait_done) return;
    a->wait_done = 1;
    a->wait_rc = rc;
    uv_timer_stop(&a->wait_timer);
}

static void on_signal(uv_signal_t *h, int signum) {
    cga_app_t *a = h->data;
    if (a->signaled) {
        CGA_LOG(CGA_LOG_WARN, 0, "second %s: exiting at once", signal_name(signum));
        _exit(CGA_EXIT_FAILURE);
    }
    a->signaled = signum;
    CGA_LOG(CGA_LOG_INFO, 0, "%s received: shutting down (send it again to exit at once)",
            signal_name(signum));
    finish_wait(a, CGA_ECANCELED);
    if (a->sig_cb)
        a->sig_cb(signum, a->sig_arg);
    else
        cga_app_stop(a);
}

void cga_app_on_signal(cga_app_t *a, void (*cb)(int signum, void *arg), void *arg) {
    a->sig_cb = cb;
    a->sig_arg = arg;
}

int cga_app_signaled(const cga_app_t *a) {
    return a->signaled;
}

/* ---- create / free --------------------------------------------------------------------- */

static void on_state(int up, int status, void *arg) {
    cga_app_t *a = arg;
    a->last_rc = up ? 0 : status;
    if (up)
        finish_wait(a, CGA_OK);
    else if (status == CGA_EAUTH || status == CGA_ESELECT)
        finish_wait(a, status);
}

static void describe_addr(cga_app_t *a) {
    const cga_redis_opts_t *o = &a->ropts;
    if (o->unix_path)
        snprintf(a->addr, sizeof a->addr, "unix:%s", o->unix_path);
    else if (o->host && strchr(o->host, ':'))
        snprintf(a->addr, sizeof a->addr, "[%s]:%d", o->host, o->port);
    else
        snprintf(a->addr, sizeof a->addr, "%s:%d", o->host ? o->host : "127.0.0.1", o->port);
}

/* Prints "<name>: <message>" on stderr. The message comes from config.c, which never puts a
 * secret in it. */
static void usage_error(const char *name, const char *msg) {
    fprintf(stderr, "%s: %s\n", name, msg);
    fflush(stderr);
}

/* ---- HTTP endpoints -------------------------------------------------------------------- */

/* A non-loopback address needs CGALPHA_HTTP_ALLOW_REMOTE. */
static int check_http_config(cga_app_t *a, char *err, size_t errlen) {
    if (cga_config_int(a->cfg, "CGALPHA_HTTP_PORT") == 0) return CGA_OK;
    const char *addr = cga_config_str(a->cfg, "CGALPHA_HTTP_ADDR");
    int loopback = 0;
    if (cga_http_addr_parse(addr, &loopback) != CGA_OK) { /* the setting's check ran already */
        snprintf(err, errlen, "CGALPHA_HTTP_ADDR: '%s' is not an IP address", addr);
        return CGA_ECONFIG;
    }
    if (loopback || cga_config_bool(a->cfg, "CGALPHA_HTTP_ALLOW_REMOTE")) return CGA_OK;
    snprintf(err, errlen,
             "CGALPHA_HTTP_ADDR: '%s' is not a loopback address (from %s): /health and /metrics "
             "have no authentication; set CGALPHA_HTTP_ALLOW_REMOTE=true (--http-allow-remote) "
             "to serve them on the network",
             addr, cga_config_origin(a->cfg, "CGALPHA_HTTP_ADDR"));
    return CGA_ECONFIG;
}

static void on_metrics_request(const char *path, cga_http_response_t *res, void *arg);
static void on_health_request(const char *path, cga_http_response_t *res, void *arg);

static int start_http(cga_app_t *a, char *err, size_t errlen) {
    const char *addr = cga_config_str(a->cfg, "CGALPHA_HTTP_ADDR");
    int port = (int)cga_config_int(a->cfg, "CGALPHA_HTTP_PORT");
    if (strcmp(addr, "localhost") == 0) addr = "127.0.0.1";
    snprintf(a->http_where, sizeof a->http_where, strchr(addr, ':') ? "[%s]:%d" : "%s:%d", addr,
             port);
    int rc = cga_http_create(&a->http, a->loop, addr, port);
    if (rc != CGA_OK) {
        const char *which = rc == -EADDRNOTAVAIL ? "CGALPHA_HTTP_ADDR" : "CGALPHA_HTTP_PORT";
        snprintf(err, errlen, "%s: cannot listen on %s: %s (from %s)", which, a->http_where,
                 cga_strerror(rc), cga_config_origin(a->cfg, which));
        a->http = NULL;
        return rc;
    }
    cga_http_route(a->http, "/metrics", on_metrics_request, a);
    cga_http_route(a->http, "/health", on_health_request, a);
    return CGA_OK;
}

/* A password given as a flag shows in ps and /proc/<pid>/cmdline (the process title): once the
 * configuration holds its own copy, overwrite it in place with '*'. In a --redis-url only the
 * password part is masked. */
static void scrub_secret_flags(int argc, char **argv) {
    for (int i = 0; i < argc && strcmp(argv[i], "--") != 0; i++) {
        char *arg = argv[i], *v = NULL;
        int url = 0;
        if (strcmp(arg, "--redis-password") == 0 || strcmp(arg, "--redis-url") == 0) {
            url = arg[8] == 'u';
            if (i + 1 < argc) v = argv[++i];
        } else if (strncmp(arg, "--redis-password=", 17) == 0) {
            v = arg + 17;
        } else if (strncmp(arg, "--redis-url=", 12) == 0) {
            v = arg + 12;
            url = 1;
        }
        if (!v) continue;
        if (!url) {
            memset(v, '*', strlen(v));
            continue;
        }
        char *s = strstr(v, "://");
        if (!s) continue;
        s += 3;
        char *at = NULL;
        for (char *q = s; *q && *q != '/'; q++)
            if (*q == '@') at = q;
        if (!at) continue;
        char *colon = memchr(s, ':', (size_t)(at - s));
        char *pw = colon ? colon + 1 : s; /* redis://PASSWORD@host: a lone userinfo */
        memset(pw, '*', (size_t)(at - pw));
    }
}

void cga_app_create(cga_app_t **out, int *exit_code, const cga_app_info_t *info, int argc,
                    char **argv) {
    *out = NULL;
    *exit_code = -1;
    const char *name = info->name ? info->name : "cgalpha";
    size_t ncommon;
    const cga_setting_t *common = cga_config_common_settings(&ncommon);
    /* the process's own table last: it may redefine a common setting's default */
    const cga_setting_t *tables[3] = {common};
    size_t counts[3] = {ncommon};
    size_t ntables = 1;
    if (info->serve_http) {
        tables[ntables] = http_settings;
        counts[ntables++] = sizeof http_settings / sizeof http_settings[0];
    }
    if (info->settings && info->nsettings) {
        tables[ntables] = info->settings;
        counts[ntables++] = info->nsettings;
    }
    cga_config_t *cfg = NULL;
    if (cga_config_create(&cfg, tables, counts, ntables) != CGA_OK) {
        usage_error(name, "BUG: invalid settings table");
        *exit_code = CGA_EXIT_FAILURE;
        return;
    }
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) break;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_help(info, name, cfg, stdout);
            fflush(stdout);
            cga_config_free(cfg);
            *exit_code = CGA_EXIT_OK;
            return;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("%s %s\n", name, CGA_VERSION_STRING);
            fflush(stdout);
            cga_config_free(cfg);
            *exit_code = CGA_EXIT_OK;
            return;
        }
    }

    char err[512];
    if (cga_config_load(cfg, argc, argv, NULL, err, sizeof err) != CGA_OK) {
        usage_error(name, err);
        cga_config_free(cfg);
        *exit_code = CGA_EXIT_USAGE;
        return;
    }
    scrub_secret_flags(argc, argv);
    cga_app_t *a = cga_calloc(1, sizeof *a);
    a->name = cga_strdup(name);
    a->cfg = cfg;
    a->start_us = cga_clock_mono_us();
    int fail_code = CGA_EXIT_FAILURE;
    int rc = cga_config_redis_opts(cfg, &a->ropts, err, sizeof err);
    if (rc != CGA_OK) {
        usage_error(name, err);
        cga_app_free(a);
        *exit_code = CGA_EXIT_USAGE;
        return;
    }
    if (info->serve_http && check_http_config(a, err, sizeof err) != CGA_OK) {
        usage_error(name, err);
        cga_app_free(a);
        *exit_code = CGA_EXIT_USAGE;
        return;
    }

    int level = CGA_LOG_INFO;
    cga_log_level_parse(cga_config_str(cfg, "CGALPHA_LOG_LEVEL"), &level); /* validated */
    cga_log_set_level(level);
    cga_log_set_process(name);
    snprintf(a->ns, sizeof a->ns, "%s", cga_config_str(cfg, "CGALPHA_NAMESPACE"));
    const char *id = make_instance_id();
    snprintf(a->client_name, sizeof a->client_name, "%s:%s", name, id);
    snprintf(a->sub_client_name, sizeof a->sub_client_name, "%s:sub", a->client_name);
    a->ropts.client_name = a->client_name;
    a->ropts.final_auth_at_start = 1; /* a wrong password at start: one line, exit 4 */
    describe_addr(a);
    signal(SIGPIPE, SIG_IGN);

    a->loop = cga_malloc(sizeof *a->loop);
    if ((rc = uv_loop_init(a->loop)) != 0) {
        CGA_LOG(CGA_LOG_ERROR, rc, "cannot create the event loop");
        free(a->loop);
        a->loop = NULL;
        goto fail;
    }
    uv_signal_init(a->loop, &a->sigint);
    uv_signal_init(a->loop, &a->sigterm);
    uv_timer_init(a->loop, &a->wait_timer);
    a->sigint.data = a->sigterm.data = a->wait_timer.data = a;
    a->handles_open = 1;
    if ((rc = uv_signal_start(&a->sigint, on_signal, SIGINT)) != 0 ||
        (rc = uv_signal_start(&a->sigterm, on_signal, SIGTERM)) != 0) {
        CGA_LOG(CGA_LOG_ERROR, rc, "cannot watch SIGINT/SIGTERM");
        goto fail;
    }
    uv_unref((uv_handle_t *)&a->sigint); /* signals alone do not keep the loop running */
    uv_unref((uv_handle_t *)&a->sigterm);

    if (info->serve_http && cga_config_int(cfg, "CGALPHA_HTTP_PORT") != 0) {
        if (start_http(a, err, sizeof err) != CGA_OK) {
            usage_error(name, err);
            fail_code = CGA_EXIT_USAGE;
            goto fail;
        }
    }

    if ((rc = cga_redis_create(&a->redis, a->loop, &a->ropts)) != CGA_OK) {
        CGA_LOG(CGA_LOG_ERROR, rc, "cannot set up the Redis connection to %s", a->addr);
        goto fail;
    }
    cga_redis_on_state(a->redis, on_state, a);
    CGA_LOG(CGA_LOG_INFO, 0, "%s %s starting: instance %s, namespace %s, Redis %s db %d",
            name, CGA_VERSION_STRING, id, a->ns, a->addr, a->ropts.db);
    if (a->http)
        CGA_LOG(CGA_LOG_INFO, 0, "serving /health and /metrics on http://%s", a->http_where);
    *out = a;
    return;
fail:
    cga_app_free(a);
    *exit_code = fail_code;
}

static void on_closed(void *arg) {
    cga_app_t *a = arg;
    a->pending_closes--;
}

static void on_handle_closed(uv_handle_t *h) {
    on_closed(h->data);
}

typedef struct walk_s {
    char names[200];
    size_t len;
    int count;
} walk_t;

static void walk_cb(uv_handle_t *h, void *arg) {
    walk_t *w = arg;
    w->count++;
    if (w->len + 32 < sizeof w->names) {
        int n = snprintf(w->names + w->len, sizeof w->names - w->len, "%s%s%s",
                         w->len ? ", " : "", uv_handle_type_name(uv_handle_get_type(h)),
                         uv_is_closing(h) ? " (closing)" : "");
        if (n > 0) w->len += (size_t)n;
    }
}

void cga_app_free(cga_app_t *a) {
    if (!a) return;
    if (a->loop) {
        if (a->http) { /* first: no request is served during the teardown */
            a->pending_closes++;
            cga_http_close(a->http, on_closed, a);
            a->http = NULL;
        }
        if (a->info_open) {
            a->pending_closes++;
            uv_close((uv_handle_t *)&a->info_timer, on_handle_closed);
            a->info_open = 0;
        }
        if (a->sub) {
            a->pending_closes++;
            cga_redis_close(a->sub, on_closed, a);
            a->sub = NULL;
        }
        if (a->redis) {
            a->pending_closes++;
            cga_redis_close(a->redis, on_closed, a);
            a->redis = NULL;
        }
        if (a->handles_open) {
            a->pending_closes += 3;
            uv_close((uv_handle_t *)&a->sigint, on_handle_closed);
            uv_close((uv_handle_t *)&a->sigterm, on_handle_closed);
            uv_close((uv_handle_t *)&a->wait_timer, on_handle_closed);
            a->handles_open = 0;
        }
        while (a->pending_closes > 0) {
            if (uv_run(a->loop, UV_RUN_ONCE) == 0 && a->pending_closes > 0) {
                CGA_LOG(CGA_LOG_ERROR, 0, "BUG: %d close callback(s) never ran",
                        a->pending_closes);
                break;
            }
        }
        uv_run(a->loop, UV_RUN_NOWAIT);
        int rc = uv_loop_close(a->loop);
        if (rc == 0) {
            free(a->loop);
        } else {
            walk_t w = {.len = 0};
            uv_walk(a->loop, walk_cb, &w);
            CGA_LOG(CGA_LOG_ERROR, rc,
                    "BUG: event loop not closed cleanly: %d handle(s) still open (%s)", w.count,
                    w.names);
            /* the loop is left allocated: its handles still point at it */
        }
        a->loop = NULL;
    }
    cga_metrics_free(a->metrics); /* after the connections: INFO replies set its gauges */
    cga_config_free(a->cfg);
    free(a->name);
    free(a);
}

/* ---- accessors ------------------------------------------------------------------------- */

struct uv_loop_s *cga_app_loop(cga_app_t *a) {
    return a->loop;
}

const cga_config_t *cga_app_config(const cga_app_t *a) {
    return a->cfg;
}

struct cga_redis_s *cga_app_redis(cga_app_t *a) {
    return a->redis;
}

const char *cga_app_ns(const cga_app_t *a) {
    return a->ns;
}

struct cga_redis_s *cga_app_redis_sub(cga_app_t *a) {
    if (a->sub) return a->sub;
    cga_redis_opts_t o = a->ropts;
    o.client_name = a->sub_client_name;
    int rc = cga_redis_create(&a->sub, a->loop, &o);
    if (rc != CGA_OK) {
        CGA_LOG(CGA_LOG_ERROR, rc, "cannot set up the Redis subscription connection to %s",
                a->addr);
        a->sub = NULL;
    }
    return a->sub;
}

struct cga_http_s *cga_app_http(cga_app_t *a) {
    return a->http;
}

/* ---- metrics --------------------------------------------------------------------------- */

cga_metrics_t *cga_app_metrics(cga_app_t *a) {
    if (!a->metrics) cga_metrics_create(&a->metrics);
    return a->metrics;
}

/* Counters follow a monotonic source: add what it gained since the last refresh. */
static void counter_follow(cga_counter_t *c, uint64_t v) {
    uint64_t cur = cga_counter_value(c);
    if (v > cur) cga_counter_add(c, v - cur);
}

static void register_conn_metrics(cga_metrics_t *m, conn_metrics_t *cm, const char *conn) {
    char l[64] = "";
    cga_metrics_label_append(l, sizeof l, "conn", conn);
    cm->connected = cga_metrics_gauge(m, "cgalpha_redis_connected",
                                      "1 when the Redis connection is up and ready", l);
    static const cga_breaker_state_t states[3] = {CGA_BREAKER_CLOSED, CGA_BREAKER_OPEN,
                                                  CGA_BREAKER_HALF_OPEN};
    for (size_t i = 0; i < 3; i++) {
        char ls[96];
        snprintf(ls, sizeof ls, "%s", l);
        cga_metrics_label_append(ls, sizeof ls, "state", cga_breaker_state_name(states[i]));
        cm->breaker[states[i]] = cga_metrics_gauge(
            m, "cgalpha_redis_breaker_state",
            "1 for the current state of the circuit breaker in front of Redis", ls);
    }
    cm->trips = cga_metrics_counter(m, "cgalpha_redis_breaker_trips_total",
                                    "Times the circuit breaker opened", l);
    cm->sent = cga_metrics_counter(m, "cgalpha_redis_commands_sent_total",
                                   "Redis commands written to the socket", l);
    cm->replies = cga_metrics_counter(m, "cgalpha_redis_replies_total",
                                      "Redis replies received (errors included)", l);
    cm->timeouts = cga_metrics_counter(m, "cgalpha_redis_command_timeouts_total",
                                       "Redis commands failed by their deadline", l);
    cm->connects = cga_metrics_counter(m, "cgalpha_redis_connects_total",
                                       "Successful Redis connects (reconnects included)", l);
    cm->disconnects = cga_metrics_counter(m, "cgalpha_redis_disconnects_total",
                                          "Redis connections lost", l);
    cm->queued = cga_metrics_gauge(m, "cgalpha_redis_commands_queued",
                                   "Redis commands waiting for a connection", l);
    cm->in_flight = cga_metrics_gauge(m, "cgalpha_redis_commands_in_flight",
                                      "Redis commands written, reply not yet received", l);
}

static void update_conn_metrics(cga_app_t *a, conn_metrics_t *cm, cga_redis_t *r) {
    cga_redis_stats_t st;
    cga_redis_stats(r, &st);
    cga_breaker_t *b = cga_redis_breaker(r);
    cga_breaker_state_t bs = cga_breaker_state(b, uv_now(a->loop));
    cga_gauge_set(cm->connected, cga_redis_is_connected(r) ? 1 : 0);
    for (int i = 0; i < 3; i++) cga_gauge_set(cm->breaker[i], (int)bs == i ? 1 : 0);
    counter_follow(cm->trips, cga_breaker_trips(b));
    counter_follow(cm->sent, st.commands_sent);
    counter_follow(cm->replies, st.replies);
    counter_follow(cm->timeouts, st.timeouts);
    counter_follow(cm->connects, st.connects);
    counter_follow(cm->disconnects, st.disconnects);
    cga_gauge_set(cm->queued, (double)st.queued);
    cga_gauge_set(cm->in_flight, (double)st.in_flight);
}

/* Adds what the tracked state's counts gained since the last call. */
static void follow_state(cga_app_t *a) {
    if (!a->state) return;
    uint64_t hits = 0, misses = 0;
    cga_state_stats(a->state, &hits, &misses);
    if (hits > a->state_hits) cga_counter_add(a->c_hits, hits - a->state_hits);
    if (misses > a->state_misses) cga_counter_add(a->c_misses, misses - a->state_misses);
    a->state_hits = hits;
    a->state_misses = misses;
}

void cga_app_metrics_refresh(cga_app_t *a) {
    cga_metrics_t *m = cga_app_metrics(a);
    if (!a->app_metrics_registered) {
        char l[160] = "";
        cga_metrics_label_append(l, sizeof l, "process", a->name);
        cga_metrics_label_append(l, sizeof l, "version", CGA_VERSION_STRING);
        a->g_build = cga_metrics_gauge(m, "cgalpha_build_info",
                                       "Always 1; the labels name the process and version", l);
        cga_gauge_set(a->g_build, 1);
        a->g_uptime = cga_metrics_gauge(m, "cgalpha_uptime_seconds",
                                        "Seconds since the process started", NULL);
        register_conn_metrics(m, &a->cm[0], "cmd");
        a->app_metrics_registered = 1;
    }
    cga_gauge_set(a->g_uptime, (double)(cga_clock_mono_us() - a->start_us) / 1e6);
    if (a->redis) update_conn_metrics(a, &a->cm[0], a->redis);
    if (a->sub) {
        if (!a->cm[1].connected) register_conn_metrics(m, &a->cm[1], "sub");
        update_conn_metrics(a, &a->cm[1], a->sub);
    }
    follow_state(a);
    for (size_t i = 0; i < a->ncollectors; i++)
        a->collectors[i].cb(m, a->collectors[i].arg);
}

void cga_app_track_state(cga_app_t *a, const cga_state_t *s) {
    follow_state(a); /* the old one's last counts */
    a->state = s;
    a->state_hits = a->state_misses = 0;
    if (!s || a->c_hits) return;
    cga_metrics_t *m = cga_app_metrics(a);
    a->c_hits = cga_metrics_counter(m, "cgalpha_state_cache_hits_total",
                                    "State GETs answered with a value", NULL);
    a->c_misses = cga_metrics_counter(m, "cgalpha_state_cache_misses_total",
                                      "State GETs answered with nothing", NULL);
}

int cga_app_on_metrics(cga_app_t *a, void (*cb)(cga_metrics_t *m, void *arg), void *arg) {
    if (!cb || a->ncollectors >= MAX_COLLECTORS) return CGA_EINVAL;
    a->collectors[a->ncollectors++] = (collector_t){cb, arg};
    return CGA_OK;
}

void cga_app_off_metrics(cga_app_t *a, void (*cb)(cga_metrics_t *m, void *arg), void *arg) {
    for (size_t i = 0; i < a->ncollectors; i++) {
        if (a->collectors[i].cb == cb && a->collectors[i].arg == arg) {
            memmove(&a->collectors[i], &a->collectors[i + 1],
                    (a->ncollectors - i - 1) * sizeof a->collectors[0]);
            a->ncollectors--;
            return;
        }
    }
}

static void on_metrics_request(const char *path, cga_http_response_t *res, void *arg) {
    cga_app_t *a = arg;
    (void)path;
    cga_app_metrics_refresh(a);
    char *text = NULL;
    size_t len = 0;
    if (cga_metrics_render(a->metrics, &text, &len) != CGA_OK) {
        cga_http_respond(res, 500, NULL, "cannot render the metrics\n");
        return;
    }
    res->content_type = PROM_CONTENT_TYPE;
    res->body = text;
    res->len = len;
}

/* ---- Redis INFO gauges ----------------------------------------------------------------- */

static void info_set(cga_app_t *a, const char *key, size_t klen, const char *val) {
#define KEY_IS(k) (klen == sizeof(k) - 1 && memcmp(key, k, klen) == 0)
    char *end;
    if (KEY_IS("used_memory")) {
        cga_gauge_set(a->g_used_memory, strtod(val, &end));
    } else if (KEY_IS("maxmemory")) {
        cga_gauge_set(a->g_maxmemory, strtod(val, &end));
    } else if (KEY_IS("mem_fragmentation_ratio")) {
        cga_gauge_set(a->g_frag, strtod(val, &end));
    } else if (KEY_IS("connected_clients")) {
        cga_gauge_set(a->g_clients, strtod(val, &end));
    } else if (KEY_IS("evicted_keys")) {
        uint64_t v = strtoull(val, &end, 10);
        /* a value below the last one: Redis restarted and counts from 0 again */
        cga_counter_add(a->c_evicted, a->have_evicted && v >= a->last_evicted
                                          ? v - a->last_evicted
                                          : v);
        a->last_evicted = v;
        a->have_evicted = 1;
    }
#undef KEY_IS
}

static void on_info(int status, redisReply *reply, void *arg) {
    cga_app_t *a = arg;
    a->info_pending--;
    if (status != CGA_OK || !reply || reply->type != REDIS_REPLY_STRING) return;
    const char *p = reply->str, *end = reply->str + reply->len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (colon && *p != '#') {
            char val[64];
            size_t vlen = (size_t)(le - colon - 1);
            while (vlen > 0 && (colon[vlen] == '\r' || colon[vlen] == ' ')) vlen--;
            if (vlen < sizeof val) {
                memcpy(val, colon + 1, vlen);
                val[vlen] = '\0';
                info_set(a, p, (size_t)(colon - p), val);
            }
        }
        p = nl ? nl + 1 : end;
    }
}

static void on_info_timer(uv_timer_t *t) {
    cga_app_t *a = t->data;
    if (a->info_pending > 0 || !a->redis || !cga_redis_is_connected(a->redis)) return;
    static const char *const sections[] = {"memory", "clients", "stats"};
    for (size_t i = 0; i < 3; i++)
        if (cga_redis_command(a->redis, CGA_REDIS_FAILFAST, on_info, a, "INFO %s",
                              sections[i]) == CGA_OK)
            a->info_pending++;
}

void cga_app_enable_redis_info(cga_app_t *a, unsigned interval_ms) {
    cga_metrics_t *m = cga_app_metrics(a);
    if (!a->g_used_memory) {
        a->g_used_memory = cga_metrics_gauge(m, "cgalpha_redis_used_memory_bytes",
                                             "Redis INFO used_memory", NULL);
        a->g_maxmemory = cga_metrics_gauge(m, "cgalpha_redis_maxmemory_bytes",
                                           "Redis INFO maxmemory (0: no limit)", NULL);
        a->g_frag = cga_metrics_gauge(m, "cgalpha_redis_mem_fragmentation_ratio",
                                      "Redis INFO mem_fragmentation_ratio", NULL);
        a->g_clients = cga_metrics_gauge(m, "cgalpha_redis_connected_clients",
                                         "Redis INFO connected_clients", NULL);
        a->c_evicted = cga_metrics_counter(
            m, "cgalpha_redis_evicted_keys_total",
            "Keys Redis evicted for maxmemory (INFO evicted_keys; restarts included)", NULL);
    }
    if (!a->info_open) {
        uv_timer_init(a->loop, &a->info_timer);
        a->info_timer.data = a;
        uv_unref((uv_handle_t *)&a->info_timer);
        a->info_open = 1;
    }
    if (interval_ms == 0)
        uv_timer_stop(&a->info_timer);
    else
        uv_timer_start(&a->info_timer, on_info_timer, 0, interval_ms);
}

/* ---- health ---------------------------------------------------------------------------- */

static void hb_printf(cga_health_t *h, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void hb_printf(cga_health_t *h, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0) return;
    cga_grow((void **)&h->p, &h->cap, h->len + (size_t)n + 1, 1);
    va_start(ap, fmt);
    vsnprintf(h->p + h->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    h->len += (size_t)n;
}

/* A JSON string: quotes, \\ and control characters escaped; other bytes as given (UTF-8). */
static void hb_str(cga_health_t *h, const char *s) {
    if (!s) {
        hb_printf(h, "null");
        return;
    }
    hb_printf(h, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            hb_printf(h, "\\%c", *p);
        else if (*p == '\n')
            hb_printf(h, "\\n");
        else if (*p < 0x20 || *p == 0x7f)
            hb_printf(h, "\\u%04x", *p);
        else
            hb_printf(h, "%c", *p);
    }
    hb_printf(h, "\"");
}

static void hb_key(cga_health_t *h, const char *key) {
    hb_printf(h, ",");
    hb_str(h, key ? key : "");
    hb_printf(h, ":");
}

void cga_health_status(cga_health_t *h, cga_health_status_t s, const char *reason) {
    if (s < h->status) return;
    if (s > h->status || !h->reason) {
        free(h->reason);
        h->reason = cga_strdup(reason);
    }
    h->status = s;
}

void cga_health_str(cga_health_t *h, const char *key, const char *value) {
    hb_key(h, key);
    hb_str(h, value);
}

void cga_health_int(cga_health_t *h, const char *key, int64_t value) {
    hb_key(h, key);
    hb_printf(h, "%" PRId64, value);
}

void cga_health_num(cga_health_t *h, const char *key, double value) {
    hb_key(h, key);
    if (isfinite(value))
        hb_printf(h, "%.15g", value);
    else
        hb_printf(h, "null");
}

void cga_health_bool(cga_health_t *h, const char *key, int value) {
    hb_key(h, key);
    hb_printf(h, "%s", value ? "true" : "false");
}

void cga_app_set_health(cga_app_t *a, void (*cb)(cga_health_t *h, void *arg), void *arg) {
    a->health_cb = cb;
    a->health_arg = arg;
}

static void on_health_request(const char *path, cga_http_response_t *res, void *arg) {
    cga_app_t *a = arg;
    (void)path;
    cga_health_t fields = {.status = CGA_HEALTH_OK};
    int connected = a->redis && cga_redis_is_connected(a->redis);
    int last = a->redis ? cga_redis_last_error(a->redis) : 0;
    if (!connected) {
        char why[160];
        snprintf(why, sizeof why, "Redis not connected%s%s%s", last ? " (" : "",
                 last ? cga_strerror(last) : "", last ? ")" : "");
        cga_health_status(&fields, CGA_HEALTH_DOWN, why);
    }
    if (a->health_cb) a->health_cb(&fields, a->health_arg);

    static const char *const names[] = {"ok", "degraded", "down"};
    cga_health_t out = {.status = CGA_HEALTH_OK};
    hb_printf(&out, "{\"status\":\"%s\"", names[fields.status]);
    if (fields.status != CGA_HEALTH_OK) cga_health_str(&out, "reason", fields.reason);
    cga_health_str(&out, "version", CGA_VERSION_STRING);
    cga_health_str(&out, "process", a->name);
    cga_health_str(&out, "instance", make_instance_id());
    cga_breaker_state_t bs =
        a->redis ? cga_breaker_state(cga_redis_breaker(a->redis), uv_now(a->loop))
                 : CGA_BREAKER_CLOSED;
    hb_printf(&out, ",\"redis\":{\"connected\":%s,\"breaker\":\"%s\",\"last_error\":",
              connected ? "true" : "false", cga_breaker_state_name(bs));
    hb_str(&out, last ? cga_strerror(last) : NULL);
    hb_printf(&out, "}");
    cga_health_num(&out, "uptime_s", (double)((cga_clock_mono_us() - a->start_us) / 1000) / 1e3);
    if (fields.len) hb_printf(&out, "%s", fields.p);
    hb_printf(&out, "}\n");
    res->status = fields.status == CGA_HEALTH_DOWN ? 503 : 200;
    res->content_type = JSON_CONTENT_TYPE;
    res->body = out.p;
    res->len = out.len;
    free(fields.p);
    free(fields.reason);
}

/* ---- waiting for Redis ----------------------------------------------------------------- */

static void on_wait_timeout(uv_timer_t *t) {
    cga_app_t *a = t->data;
    int rc = cga_redis_last_error(a->redis);
    if (!rc) rc = a->last_rc;
    finish_wait(a, rc ? rc : CGA_ETIMEDOUT);
}

#define REDIS_LOG(level, ...)                                                            \
    do {                                                                                 \
        if ((level) >= cga_log_level_current) cga_log_write((level), "redis", 0, __VA_ARGS__); \
    } while (0)

int cga_app_wait_connected(cga_app_t *a, unsigned timeout_ms) {
    int rc;
    int last = cga_redis_last_error(a->redis);
    if (a->stopped || a->signaled) {
        rc = CGA_ECANCELED;
    } else if (cga_redis_is_connected(a->redis)) {
        rc = CGA_OK;
    } else if (last == CGA_EAUTH || last == CGA_ESELECT) {
        rc = last; /* already refused: waiting will not help */
    } else {
        a->waiting = 1;
        a->wait_done = 0;
        a->wait_rc = CGA_ETIMEDOUT;
        if (timeout_ms > 0) uv_timer_start(&a->wait_timer, on_wait_timeout, timeout_ms, 0);
        while (!a->wait_done) uv_run(a->loop, UV_RUN_ONCE);
        uv_timer_stop(&a->wait_timer);
        a->waiting = 0;
        rc = a->wait_rc;
    }
    const char *user_hint = a->ropts.username ? "REDIS_USERNAME / " : "";
    switch (rc) {
    case CGA_OK:
        /* redis.c logs every connect at INFO already */
        REDIS_LOG(CGA_LOG_DEBUG, "ready: %s (db %d)", a->addr, a->ropts.db);
        break;
    case CGA_ECANCELED:
        REDIS_LOG(CGA_LOG_INFO, "stopped while connecting to %s", a->addr);
        break;
    case CGA_EAUTH:
        REDIS_LOG(CGA_LOG_ERROR,
                  "cannot connect to %s: authentication failed (check %sREDIS_PASSWORD / "
                  "REDIS_URL)",
                  a->addr, user_hint);
        break;
    case CGA_ESELECT:
        REDIS_LOG(CGA_LOG_ERROR,
                  "cannot connect to %s: database %d rejected (check REDIS_DB / REDIS_URL and "
                  "'databases' in redis.conf)",
                  a->addr, a->ropts.db);
        break;
    default:
        REDIS_LOG(CGA_LOG_ERROR, "cannot connect to %s: %s (gave up after %u ms)", a->addr,
                  cga_strerror(rc), timeout_ms);
        break;
    }
    return rc;
}

int cga_app_exit_code(int rc) {
    switch (rc) {
    case CGA_OK:
    case CGA_ECANCELED:
        return CGA_EXIT_OK;
    case CGA_EAUTH:
    case CGA_ESELECT:
        return CGA_EXIT_AUTH;
    case CGA_ECONFIG:
    case CGA_ETLS:
        return CGA_EXIT_USAGE;
    case CGA_ENOTCONN:
    case CGA_ECONNLOST:
    case CGA_ETIMEDOUT:
    case CGA_EBREAKER:
    case CGA_EQUEUEFULL:
    case UV_ECONNREFUSED:
    case UV_ECONNRESET:
    case UV_ECONNABORTED:
    case UV_ETIMEDOUT:
    case UV_EHOSTUNREACH:
    case UV_ENETUNREACH:
    case UV_ENETDOWN:
    case UV_EPIPE:
    case UV_ENOENT: /* unix socket absent */
    case UV_EADDRNOTAVAIL:
    case UV_EAI_NONAME:
    case UV_EAI_AGAIN:
    case UV_EAI_FAIL:
    case UV_EAI_NODATA:
    case UV_EAI_ADDRFAMILY:
        return CGA_EXIT_UNAVAILABLE;
    default:
        return CGA_EXIT_FAILURE;
    }
}

/* ---- running --------------------------------------------------------------------------- */

int cga_app_run(cga_app_t *a) {
    while (!a->stopped)
        if (uv_run(a->loop, UV_RUN_DEFAULT) == 0) break;
    return CGA_OK;
}

void cga_app_stop(cga_app_t *a) {
    a->stopped = 1;
    finish_wait(a, CGA_ECANCELED);
    uv_stop(a->loop);
}

int cga_app_is_stopped(const cga_app_t *a) {
    return a->stopped;
}

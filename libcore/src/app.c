#define CGA_LOG_COMPONENT "app"
#include "cgalpha/app.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "cgalpha/alloc.h"
#include "cgalpha/err.h"
#include "cgalpha/keys.h"
#include "cgalpha/log.h"
#include "cgalpha/redis.h"

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

void cga_app_create(cga_app_t **out, int *exit_code, const cga_app_info_t *info, int argc,
                    char **argv) {
    *out = NULL;
    *exit_code = -1;
    const char *name = info->name ? info->name : "cgalpha";
    size_t ncommon;
    const cga_setting_t *common = cga_config_common_settings(&ncommon);
    const cga_setting_t *tables[2] = {common, info->settings};
    size_t counts[2] = {ncommon, info->nsettings};
    cga_config_t *cfg = NULL;
    if (cga_config_create(&cfg, tables, counts, info->settings && info->nsettings ? 2 : 1) !=
        CGA_OK) {
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
    cga_app_t *a = cga_calloc(1, sizeof *a);
    a->name = cga_strdup(name);
    a->cfg = cfg;
    int rc = cga_config_redis_opts(cfg, &a->ropts, err, sizeof err);
    if (rc != CGA_OK) {
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

    if ((rc = cga_redis_create(&a->redis, a->loop, &a->ropts)) != CGA_OK) {
        CGA_LOG(CGA_LOG_ERROR, rc, "cannot set up the Redis connection to %s", a->addr);
        goto fail;
    }
    cga_redis_on_state(a->redis, on_state, a);
    CGA_LOG(CGA_LOG_INFO, 0, "%s %s starting: instance %s, namespace %s, Redis %s db %d",
            name, CGA_VERSION_STRING, id, a->ns, a->addr, a->ropts.db);
    *out = a;
    return;
fail:
    cga_app_free(a);
    *exit_code = CGA_EXIT_FAILURE;
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

#include "cgalpha/plugin.h"

#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cgalpha/alloc.h"
#include "cgalpha/err.h"

/* The loader returns errors, it never logs: the lab says what happened, once. Every message is
 * one line that starts with "plugin <what the user asked for>:". */

#define NAME_MAX_LEN 32

struct cga_plugin_s {
    void *dl;
    cga_lab_plugin_t desc; /* copy of the plugin's descriptor; version/description never NULL */
    void *state;           /* from init() */
    char *path;            /* the file loaded */
};

/* Replaces control characters so that a message stays on one line. */
static void one_line(char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) *s = ' ';
}

CGA_PRINTF(3, 4) static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    one_line(err);
}

static int is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

static int is_valid_name(const char *s, size_t n) {
    if (n == 0 || n > NAME_MAX_LEN) return 0;
    for (size_t i = 0; i < n; i++)
        if (!is_name_char(s[i])) return 0;
    return 1;
}

/* A plugin-provided string, for a message: at most 40 bytes, printable. */
static void quote_untrusted(char *out, size_t n, const char *s) {
    size_t i = 0;
    for (; s[i] && i < 40 && i + 1 < n; i++)
        out[i] = ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f) ? '?' : s[i];
    out[i] = '\0';
}

/* Finds <dir>/<name>.so in dirs, first match wins. Returns an owned path or NULL. */
static char *find_by_name(const char *name, const char *const *dirs, size_t ndirs) {
    for (size_t i = 0; i < ndirs; i++) {
        if (!dirs[i] || !*dirs[i]) continue;
        size_t n = strlen(dirs[i]) + strlen(name) + 5;
        char *path = cga_malloc(n);
        snprintf(path, n, "%s/%s.so", dirs[i], name);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) return path;
        free(path);
    }
    return NULL;
}

static void not_found_msg(char *err, size_t errlen, const char *name, const char *const *dirs,
                          size_t ndirs) {
    char list[512] = "";
    size_t len = 0;
    for (size_t i = 0; i < ndirs && len + 1 < sizeof list; i++) {
        if (!dirs[i] || !*dirs[i]) continue;
        int w = snprintf(list + len, sizeof list - len, "%s%s", len ? ", " : "", dirs[i]);
        if (w < 0) break;
        len += (size_t)w;
        if (len >= sizeof list) len = sizeof list - 1;
    }
    if (len)
        set_err(err, errlen, "plugin %s: not found (no %s.so in %s)", name, name, list);
    else
        set_err(err, errlen, "plugin %s: not found (no plugin directories to search)", name);
}

int cga_plugin_load(cga_plugin_t **out, const char *spec, const char *const *dirs, size_t ndirs,
                    char *err, size_t errlen) {
    *out = NULL;
    if (err && errlen) err[0] = '\0';
    if (!spec) spec = "";
    const char *eq = strchr(spec, '=');
    size_t wlen = eq ? (size_t)(eq - spec) : strlen(spec);
    char *what = cga_strndup(spec, wlen); /* NAME or PATH */
    const char *config = eq ? eq + 1 : NULL;
    int by_name = memchr(what, '/', wlen) == NULL;
    char *path = NULL;
    void *dl = NULL;
    void *state = NULL;
    int rc;

    if (by_name) {
        if (!is_valid_name(what, wlen)) {
            char q[48];
            quote_untrusted(q, sizeof q, what);
            set_err(err, errlen,
                    "plugin \"%s\": not a plugin name ([a-z0-9_-]{1,%d}) nor a path "
                    "(containing '/')",
                    q, NAME_MAX_LEN);
            rc = CGA_EINVAL;
            goto fail;
        }
        path = find_by_name(what, dirs, ndirs);
        if (!path) {
            not_found_msg(err, errlen, what, dirs, ndirs);
            rc = CGA_ENOTFOUND;
            goto fail;
        }
    } else {
        struct stat st;
        if (stat(what, &st) != 0 && (errno == ENOENT || errno == ENOTDIR)) {
            set_err(err, errlen, "plugin %s: no such file", what);
            rc = CGA_ENOTFOUND;
            goto fail;
        }
        path = cga_strdup(what);
    }

    dlerror();
    dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        const char *de = dlerror();
        set_err(err, errlen, "plugin %s: cannot load: %s", what, de ? de : "dlopen failed");
        rc = CGA_EPLUGIN;
        goto fail;
    }
    dlerror();
    void *sym = dlsym(dl, CGA_LAB_ENTRY_SYMBOL);
    if (!sym) {
        const char *de = dlerror();
        set_err(err, errlen, "plugin %s: not a lab plugin: %s", what,
                de ? de : "entry symbol " CGA_LAB_ENTRY_SYMBOL " is NULL");
        rc = CGA_EPLUGIN;
        goto fail;
    }
    cga_lab_plugin_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry); /* object pointer to function pointer, as POSIX allows */
    const cga_lab_plugin_t *d = entry();
    if (!d) {
        set_err(err, errlen, "plugin %s: %s() returned NULL", what, CGA_LAB_ENTRY_SYMBOL);
        rc = CGA_EPLUGIN;
        goto fail;
    }
    /* abi_version is the first field in every ABI version: the only one read before this. */
    if (d->abi_version != CGA_LAB_ABI_VERSION) {
        set_err(err, errlen,
                "plugin %s: ABI version %u, this lab speaks %u (rebuild the plugin against "
                "this cgalpha's lab.h)",
                what, (unsigned)d->abi_version, (unsigned)CGA_LAB_ABI_VERSION);
        rc = CGA_EABI;
        goto fail;
    }
    if (!d->name || !is_valid_name(d->name, strnlen(d->name, NAME_MAX_LEN + 1))) {
        char q[48];
        quote_untrusted(q, sizeof q, d->name ? d->name : "(null)");
        set_err(err, errlen, "plugin %s: invalid name \"%s\" (want [a-z0-9_-]{1,%d})", what, q,
                NAME_MAX_LEN);
        rc = CGA_EPLUGIN;
        goto fail;
    }
    if (by_name && strcmp(d->name, what) != 0) {
        set_err(err, errlen,
                "plugin %s: %s declares the name \"%s\" (rename the file or load it by path)",
                what, path, d->name);
        rc = CGA_EPLUGIN;
        goto fail;
    }
    if (!d->analyze) {
        set_err(err, errlen, "plugin %s: analyze is NULL (it is required)", what);
        rc = CGA_EPLUGIN;
        goto fail;
    }
    if (!d->init && config && *config) {
        /* The configuration itself is not repeated: it may hold a secret. */
        set_err(err, errlen, "plugin %s: takes no configuration (it has no init)", what);
        rc = CGA_EPLUGIN;
        goto fail;
    }
    if (d->init) {
        char ierr[CGA_LAB_ERROR_MAX];
        memset(ierr, 0, sizeof ierr);
        int irc = d->init(&state, config, ierr, sizeof ierr);
        if (irc != 0) {
            ierr[sizeof ierr - 1] = '\0';
            if (ierr[0])
                set_err(err, errlen, "plugin %s: init failed: %s", what, ierr);
            else
                set_err(err, errlen, "plugin %s: init failed (code %d)", what, irc);
            rc = CGA_EPLUGIN;
            goto fail; /* a plugin whose init failed gets no fini: init cleans up itself */
        }
    }

    cga_plugin_t *p = cga_calloc(1, sizeof *p);
    p->dl = dl;
    p->desc = *d;
    if (!p->desc.version) p->desc.version = "";
    if (!p->desc.description) p->desc.description = "";
    p->state = state;
    p->path = path;
    free(what);
    *out = p;
    return CGA_OK;

fail:
    if (dl) dlclose(dl);
    free(path);
    free(what);
    return rc;
}

void cga_plugin_free(cga_plugin_t *p) {
    if (!p) return;
    if (p->desc.fini) p->desc.fini(p->state);
    dlclose(p->dl);
    free(p->path);
    free(p);
}

const cga_lab_plugin_t *cga_plugin_desc(const cga_plugin_t *p) {
    return &p->desc;
}

const char *cga_plugin_name(const cga_plugin_t *p) {
    return p->desc.name;
}

const char *cga_plugin_path(const cga_plugin_t *p) {
    return p->path;
}

static int is_metric_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.';
}

/* What is wrong with a successful output, written into out->error; 0 when nothing. */
static int check_output(cga_lab_output_t *out) {
    char *e = out->error;
    size_t n = sizeof out->error;
    long long regime = (long long)out->regime;
    if (regime < 0 || regime >= CGA_REGIME_COUNT) {
        snprintf(e, n, "invalid output: regime %lld (want 0..%d)", regime, CGA_REGIME_COUNT - 1);
        return -1;
    }
    if (!isfinite(out->confidence) || out->confidence < 0 || out->confidence > 1) {
        snprintf(e, n, "invalid output: confidence %g (want a finite value in [0,1])",
                 out->confidence);
        return -1;
    }
    if (out->nmetrics > CGA_LAB_MAX_METRICS) {
        snprintf(e, n, "invalid output: %zu metrics (at most %d)", out->nmetrics,
                 CGA_LAB_MAX_METRICS);
        return -1;
    }
    for (size_t i = 0; i < out->nmetrics; i++) {
        const cga_lab_metric_t *m = &out->metrics[i];
        size_t len = strnlen(m->name, sizeof m->name);
        if (len == sizeof m->name) {
            snprintf(e, n, "invalid output: metric %zu: name not NUL-terminated within %d bytes",
                     i, CGA_LAB_METRIC_NAME_MAX);
            return -1;
        }
        size_t j = 0;
        while (j < len && is_metric_char(m->name[j])) j++;
        if (len == 0 || j != len) {
            char q[48];
            quote_untrusted(q, sizeof q, m->name);
            snprintf(e, n, "invalid output: metric %zu: name \"%s\" (want [a-z0-9_.]+)", i, q);
            return -1;
        }
        if (!isfinite(m->value)) {
            snprintf(e, n, "invalid output: metric %s = %g (want a finite value)", m->name,
                     m->value);
            return -1;
        }
    }
    return 0;
}

int cga_plugin_analyze(const cga_plugin_t *p, const cga_lab_input_t *in,
                       cga_lab_output_t *out) {
    memset(out, 0, sizeof *out);
    int prc = p->desc.analyze(p->state, in, out);
    int bad;
    if (prc != 0) {
        out->error[sizeof out->error - 1] = '\0';
        one_line(out->error);
        if (!out->error[0])
            snprintf(out->error, sizeof out->error, "analyze failed (code %d)", prc);
        bad = 1;
    } else {
        bad = check_output(out) != 0;
        if (!bad) out->error[0] = '\0';
    }
    if (bad) {
        out->regime = CGA_REGIME_UNKNOWN;
        out->confidence = 0;
        out->nmetrics = 0;
        return CGA_EPLUGIN;
    }
    return CGA_OK;
}

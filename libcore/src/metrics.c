#include "cgalpha/metrics.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cgalpha/alloc.h"
#include "cgalpha/err.h"

/* Updates are relaxed atomics: each value is a statistic on its own, nothing is published
 * through it. Doubles live in uint64 bit patterns (C11 has no portable atomic double add),
 * updated with a compare-and-swap loop. A histogram keeps one non-cumulative count per bucket;
 * _count is their sum, so a render always ends with a +Inf bucket equal to _count, even while
 * other threads observe. */

enum kind { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM };

static const char *const kind_names[] = {"counter", "gauge", "histogram"};

struct cga_counter_s {
    _Atomic uint64_t v;
};

struct cga_gauge_s {
    _Atomic uint64_t bits;
};

struct cga_histogram_s {
    double *bounds;            /* strictly ascending, finite */
    size_t nbounds;            /* >= 1 */
    _Atomic uint64_t *buckets; /* nbounds + 1: buckets[nbounds] is (bounds[nbounds-1], +Inf] */
    _Atomic uint64_t sum_bits;
};

typedef struct series_s {
    char *labels; /* "" when none */
    void *metric; /* cga_counter_t / cga_gauge_t / cga_histogram_t, by the family's kind */
} series_t;

typedef struct family_s {
    char *name;
    char *help; /* "" when none */
    enum kind kind;
    series_t *series;
    size_t nseries, cap;
} family_t;

struct cga_metrics_s {
    pthread_mutex_t mu; /* registration and rendering; never updates */
    family_t *fams;
    size_t nfams, cap;
};

/* 50 µs .. 10 s, roughly 1-2.5-5 per decade. */
static const double default_bounds[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                        0.005,   0.01,   0.025,   0.05,   0.1,   0.25,
                                        0.5,     1,      2.5,     5,      10};

static double bits2d(uint64_t b) {
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

static uint64_t d2bits(double d) {
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

static void atomic_add_double(_Atomic uint64_t *bits, double delta) {
    uint64_t old = atomic_load_explicit(bits, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(bits, &old, d2bits(bits2d(old) + delta),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

/* Misuse of the registration API is a programming error: say what, then abort (like OOM). */
CGA_PRINTF(1, 2) static void die(const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "cgalpha: metrics: %s\n", msg);
    abort();
}

/* ---- validation ---- */

static int is_alpha_(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_digit(char c) {
    return c >= '0' && c <= '9';
}

static int valid_metric_name(const char *s) {
    if (!s || !(is_alpha_(s[0]) || s[0] == ':')) return 0;
    for (const char *p = s + 1; *p; p++)
        if (!(is_alpha_(*p) || is_digit(*p) || *p == ':')) return 0;
    return 1;
}

/* Length of a label name at s ([a-zA-Z_][a-zA-Z0-9_]*), 0 if none. */
static size_t label_name_len(const char *s) {
    if (!is_alpha_(s[0])) return 0;
    size_t n = 1;
    while (is_alpha_(s[n]) || is_digit(s[n])) n++;
    return n;
}

/* A preformatted label list: name="value"{,name="value"}, values escaped (\\ \" \n only, no
 * raw newline), names not reserved ("__" prefix) and, for histograms, not "le". */
static int valid_labels(const char *s, int histogram) {
    const char *p = s;
    if (!*p) return 1;
    for (;;) {
        size_t n = label_name_len(p);
        if (n == 0 || (n >= 2 && p[0] == '_' && p[1] == '_')) return 0;
        if (histogram && n == 2 && p[0] == 'l' && p[1] == 'e') return 0;
        p += n;
        if (*p++ != '=') return 0;
        if (*p++ != '"') return 0;
        for (;; p++) {
            if (*p == '\0' || *p == '\n') return 0;
            if (*p == '"') break;
            if (*p == '\\') {
                p++;
                if (*p != '\\' && *p != '"' && *p != 'n') return 0;
            }
        }
        p++; /* closing quote */
        if (*p == '\0') return 1;
        if (*p++ != ',') return 0;
    }
}

int cga_metrics_label_append(char *buf, size_t n, const char *name, const char *value) {
    if (!buf || !name || !value || label_name_len(name) != strlen(name) ||
        (name[0] == '_' && name[1] == '_'))
        return CGA_EINVAL;
    size_t len = strnlen(buf, n);
    if (len == n) return CGA_ETOOBIG;
    size_t need = len + (len ? 1 : 0) + strlen(name) + 2; /* [,]name=" */
    for (const char *v = value; *v; v++) need += (*v == '\\' || *v == '"' || *v == '\n') ? 2 : 1;
    need += 2; /* closing quote and NUL */
    if (need > n) return CGA_ETOOBIG;
    char *p = buf + len;
    if (len) *p++ = ',';
    size_t nl = strlen(name);
    memcpy(p, name, nl);
    p += nl;
    *p++ = '=';
    *p++ = '"';
    for (const char *v = value; *v; v++) {
        if (*v == '\\' || *v == '"') {
            *p++ = '\\';
            *p++ = *v;
        } else if (*v == '\n') {
            *p++ = '\\';
            *p++ = 'n';
        } else {
            *p++ = *v;
        }
    }
    *p++ = '"';
    *p = '\0';
    return CGA_OK;
}

/* ---- registry ---- */

int cga_metrics_create(cga_metrics_t **out) {
    cga_metrics_t *m = cga_calloc(1, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    *out = m;
    return CGA_OK;
}

static void metric_free(enum kind kind, void *metric) {
    if (kind == KIND_HISTOGRAM) {
        cga_histogram_t *h = metric;
        free(h->bounds);
        free(h->buckets);
    }
    free(metric);
}

void cga_metrics_free(cga_metrics_t *m) {
    if (!m) return;
    for (size_t i = 0; i < m->nfams; i++) {
        family_t *f = &m->fams[i];
        for (size_t j = 0; j < f->nseries; j++) {
            metric_free(f->kind, f->series[j].metric);
            free(f->series[j].labels);
        }
        free(f->series);
        free(f->name);
        free(f->help);
    }
    free(m->fams);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static void *metric_new(enum kind kind, const double *bounds, size_t nbounds) {
    switch (kind) {
    case KIND_COUNTER: {
        cga_counter_t *c = cga_malloc(sizeof *c);
        atomic_init(&c->v, 0);
        return c;
    }
    case KIND_GAUGE: {
        cga_gauge_t *g = cga_malloc(sizeof *g);
        atomic_init(&g->bits, d2bits(0.0));
        return g;
    }
    case KIND_HISTOGRAM: {
        cga_histogram_t *h = cga_malloc(sizeof *h);
        h->bounds = cga_memdup(bounds, nbounds * sizeof *bounds);
        h->nbounds = nbounds;
        h->buckets = cga_malloc((nbounds + 1) * sizeof *h->buckets);
        for (size_t i = 0; i <= nbounds; i++) atomic_init(&h->buckets[i], 0);
        atomic_init(&h->sum_bits, d2bits(0.0));
        return h;
    }
    }
    return NULL;
}

static void *reg(cga_metrics_t *m, enum kind kind, const char *name, const char *help,
                 const char *labels, const double *bounds, size_t nbounds) {
    if (!labels) labels = "";
    if (!help) help = "";
    if (!valid_metric_name(name)) die("invalid metric name \"%s\"", name ? name : "(null)");
    size_t nlen = strlen(name);
    if (kind == KIND_COUNTER && (nlen < 6 || strcmp(name + nlen - 6, "_total") != 0))
        die("counter %s: the name must end in _total", name);
    if (!valid_labels(labels, kind == KIND_HISTOGRAM))
        die("%s: invalid label list {%s}", name, labels);
    if (kind == KIND_HISTOGRAM) {
        if (!bounds) {
            bounds = default_bounds;
            nbounds = sizeof default_bounds / sizeof default_bounds[0];
        }
        if (nbounds == 0) die("histogram %s: no bucket bounds", name);
        for (size_t i = 0; i < nbounds; i++)
            if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
                die("histogram %s: bucket bounds must be finite and strictly ascending", name);
    }

    pthread_mutex_lock(&m->mu);
    family_t *f = NULL;
    for (size_t i = 0; i < m->nfams; i++)
        if (strcmp(m->fams[i].name, name) == 0) f = &m->fams[i];
    if (f && f->kind != kind)
        die("%s registered as a %s, then as a %s", name, kind_names[f->kind], kind_names[kind]);
    if (!f) {
        cga_grow((void **)&m->fams, &m->cap, m->nfams + 1, sizeof *m->fams);
        f = &m->fams[m->nfams++];
        memset(f, 0, sizeof *f);
        f->name = cga_strdup(name);
        f->help = cga_strdup(help);
        f->kind = kind;
    }
    void *metric = NULL;
    for (size_t j = 0; j < f->nseries && !metric; j++)
        if (strcmp(f->series[j].labels, labels) == 0) metric = f->series[j].metric;
    if (metric && kind == KIND_HISTOGRAM) {
        const cga_histogram_t *h = metric;
        if (h->nbounds != nbounds || memcmp(h->bounds, bounds, nbounds * sizeof *bounds) != 0)
            die("histogram %s{%s} registered again with other bucket bounds", name, labels);
    }
    if (!metric) {
        cga_grow((void **)&f->series, &f->cap, f->nseries + 1, sizeof *f->series);
        metric = metric_new(kind, bounds, nbounds);
        f->series[f->nseries].labels = cga_strdup(labels);
        f->series[f->nseries].metric = metric;
        f->nseries++;
    }
    pthread_mutex_unlock(&m->mu);
    return metric;
}

cga_counter_t *cga_metrics_counter(cga_metrics_t *m, const char *name, const char *help,
                                   const char *labels) {
    return reg(m, KIND_COUNTER, name, help, labels, NULL, 0);
}

cga_gauge_t *cga_metrics_gauge(cga_metrics_t *m, const char *name, const char *help,
                               const char *labels) {
    return reg(m, KIND_GAUGE, name, help, labels, NULL, 0);
}

cga_histogram_t *cga_metrics_histogram(cga_metrics_t *m, const char *name, const char *help,
                                       const char *labels, const double *bounds,
                                       size_t nbounds) {
    return reg(m, KIND_HISTOGRAM, name, help, labels, bounds, nbounds);
}

/* ---- updates (lock-free) ---- */

void cga_counter_add(cga_counter_t *c, uint64_t n) {
    atomic_fetch_add_explicit(&c->v, n, memory_order_relaxed);
}

uint64_t cga_counter_value(const cga_counter_t *c) {
    return atomic_load_explicit(&((cga_counter_t *)c)->v, memory_order_relaxed);
}

void cga_gauge_set(cga_gauge_t *g, double v) {
    atomic_store_explicit(&g->bits, d2bits(v), memory_order_relaxed);
}

void cga_gauge_add(cga_gauge_t *g, double d) {
    atomic_add_double(&g->bits, d);
}

double cga_gauge_value(const cga_gauge_t *g) {
    return bits2d(atomic_load_explicit(&((cga_gauge_t *)g)->bits, memory_order_relaxed));
}

void cga_histogram_observe(cga_histogram_t *h, double v) {
    if (isnan(v)) return;
    size_t lo = 0, hi = h->nbounds; /* first bound >= v; nbounds is the +Inf bucket */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v <= h->bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    atomic_fetch_add_explicit(&h->buckets[lo], 1, memory_order_relaxed);
    atomic_add_double(&h->sum_bits, v);
}

/* Copies the per-bucket counts into snap (nbounds + 1) and returns their total. */
static uint64_t histogram_snapshot(const cga_histogram_t *h, uint64_t *snap) {
    uint64_t total = 0;
    for (size_t i = 0; i <= h->nbounds; i++) {
        snap[i] = atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        total += snap[i];
    }
    return total;
}

uint64_t cga_histogram_count(const cga_histogram_t *h) {
    uint64_t total = 0;
    for (size_t i = 0; i <= h->nbounds; i++)
        total += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
    return total;
}

double cga_histogram_sum(const cga_histogram_t *h) {
    return bits2d(atomic_load_explicit(&((cga_histogram_t *)h)->sum_bits, memory_order_relaxed));
}

double cga_histogram_quantile(const cga_histogram_t *h, double q) {
    uint64_t stack[32];
    uint64_t *snap = h->nbounds < 32 ? stack : cga_malloc((h->nbounds + 1) * sizeof *snap);
    uint64_t total = histogram_snapshot(h, snap);
    double r = 0;
    if (total > 0) {
        if (!(q > 0)) q = 0; /* also NaN */
        if (q > 1) q = 1;
        double rank = q * (double)total;
        uint64_t cum = 0;
        size_t i = 0;
        for (; i <= h->nbounds; i++) {
            if (snap[i] == 0) continue;
            if ((double)(cum + snap[i]) >= rank) break;
            cum += snap[i];
        }
        if (i >= h->nbounds) { /* the +Inf bucket: no upper bound to interpolate to */
            r = h->bounds[h->nbounds - 1];
        } else {
            double upper = h->bounds[i];
            double lower = i > 0 ? h->bounds[i - 1] : (upper > 0 ? 0 : upper);
            r = lower + (upper - lower) * ((rank - (double)cum) / (double)snap[i]);
        }
    }
    if (snap != stack) free(snap);
    return r;
}

/* ---- rendering ---- */

typedef struct sbuf_s {
    char *p;
    size_t len, cap;
} sbuf_t;

CGA_PRINTF(2, 3) static void sb_printf(sbuf_t *b, const char *fmt, ...) {
    for (;;) {
        size_t room = b->cap - b->len;
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(b->p + b->len, room, fmt, ap);
        va_end(ap);
        if (w < 0) return; /* cannot happen with our formats */
        if ((size_t)w < room) {
            b->len += (size_t)w;
            return;
        }
        cga_grow((void **)&b->p, &b->cap, b->len + (size_t)w + 1, 1);
    }
}

static void sb_putc(sbuf_t *b, char c) {
    cga_grow((void **)&b->p, &b->cap, b->len + 2, 1);
    b->p[b->len++] = c;
    b->p[b->len] = '\0';
}

/* As Go's strconv.FormatFloat(v, 'g', -1, 64), which the Prometheus clients use: the fewest
 * digits that read back as the same double, in exponent form only when the exponent is < -4
 * or >= 6 (so 10 is "10", 5e-05 stays "5e-05"); NaN, +Inf and -Inf spelled as Prometheus
 * parses them. */
static void fmt_double(char *buf, size_t n, double v) {
    if (isnan(v)) {
        snprintf(buf, n, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, n, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    int prec = 0; /* digits after the point in exponent form */
    for (; prec < 17; prec++) {
        snprintf(buf, n, "%.*e", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    snprintf(buf, n, "%.*e", prec, v);
    const char *e = strchr(buf, 'e');
    int exp10 = e ? atoi(e + 1) : 0;
    if (exp10 < -4 || exp10 >= 6) return;
    int decimals = prec - exp10;
    snprintf(buf, n, "%.*f", decimals > 0 ? decimals : 0, v);
}

/* name{labels[,extra]} value */
static void sample(sbuf_t *b, const char *name, const char *suffix, const char *labels,
                   const char *extra, const char *value) {
    sb_printf(b, "%s%s", name, suffix);
    if (*labels || extra) {
        sb_printf(b, "{%s%s%s}", labels, *labels && extra ? "," : "", extra ? extra : "");
    }
    sb_printf(b, " %s\n", value);
}

static void render_family(sbuf_t *b, const family_t *f) {
    if (*f->help) {
        sb_printf(b, "# HELP %s ", f->name);
        for (const char *c = f->help; *c; c++) {
            if (*c == '\\')
                sb_printf(b, "\\\\");
            else if (*c == '\n')
                sb_printf(b, "\\n");
            else
                sb_putc(b, *c);
        }
        sb_putc(b, '\n');
    }
    sb_printf(b, "# TYPE %s %s\n", f->name, kind_names[f->kind]);
    char v[64];
    for (size_t j = 0; j < f->nseries; j++) {
        const series_t *s = &f->series[j];
        switch (f->kind) {
        case KIND_COUNTER:
            snprintf(v, sizeof v, "%llu", (unsigned long long)cga_counter_value(s->metric));
            sample(b, f->name, "", s->labels, NULL, v);
            break;
        case KIND_GAUGE:
            fmt_double(v, sizeof v, cga_gauge_value(s->metric));
            sample(b, f->name, "", s->labels, NULL, v);
            break;
        case KIND_HISTOGRAM: {
            const cga_histogram_t *h = s->metric;
            uint64_t *snap = cga_malloc((h->nbounds + 1) * sizeof *snap);
            uint64_t total = histogram_snapshot(h, snap);
            uint64_t cum = 0;
            char le[80], bound[64];
            for (size_t i = 0; i <= h->nbounds; i++) {
                cum += snap[i];
                if (i < h->nbounds)
                    fmt_double(bound, sizeof bound, h->bounds[i]);
                else
                    snprintf(bound, sizeof bound, "+Inf");
                snprintf(le, sizeof le, "le=\"%s\"", bound);
                snprintf(v, sizeof v, "%llu", (unsigned long long)cum);
                sample(b, f->name, "_bucket", s->labels, le, v);
            }
            fmt_double(v, sizeof v, cga_histogram_sum(h));
            sample(b, f->name, "_sum", s->labels, NULL, v);
            snprintf(v, sizeof v, "%llu", (unsigned long long)total);
            sample(b, f->name, "_count", s->labels, NULL, v);
            free(snap);
            break;
        }
        }
    }
}

int cga_metrics_render(cga_metrics_t *m, char **out, size_t *len) {
    sbuf_t b = {cga_malloc(4096), 0, 4096};
    b.p[0] = '\0';
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->nfams; i++) render_family(&b, &m->fams[i]);
    pthread_mutex_unlock(&m->mu);
    *out = b.p;
    if (len) *len = b.len;
    return CGA_OK;
}

static int errno_rc(void) { return errno ? -errno : CGA_EINVAL; }

int cga_metrics_write_file(cga_metrics_t *m, const char *path) {
    char *text = NULL;
    size_t len = 0;
    int rc = cga_metrics_render(m, &text, &len);
    if (rc != CGA_OK) return rc;
    size_t n = strlen(path) + 5;
    char *tmp = cga_malloc(n);
    snprintf(tmp, n, "%s.tmp", path);
    errno = 0;
    FILE *f = fopen(tmp, "w");
    if (!f) {
        rc = errno_rc();
    } else {
        if (fwrite(text, 1, len, f) != len) rc = errno_rc();
        if (fclose(f) != 0 && rc == CGA_OK) rc = errno_rc();
        if (rc == CGA_OK && rename(tmp, path) != 0) rc = errno_rc();
        if (rc != CGA_OK) unlink(tmp);
    }
    free(tmp);
    free(text);
    return rc;
}

/* metrics: exact totals under concurrent updates, the Prometheus text exposition format 0.0.4
 * (checked by a small line-by-line validator and against exact expected text), quantiles. */

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgalpha/err.h"
#include "cgalpha/metrics.h"
#include "test.h"

/* ---- a validator for the text format (what a Prometheus scraper checks) ---- */

typedef struct hseries_s {
    char labels[256]; /* the series' labels without le */
    double last_le;
    double last_cum;
    int nbuckets;
    int saw_inf;
    double inf_count;
    int saw_sum;
} hseries_t;

typedef struct validator_s {
    char fam[128];      /* the family of the last # TYPE */
    char type[16];
    char seen[64][128]; /* families already closed: none may come back */
    int nseen;
    char helped[128];   /* family of the last # HELP */
    hseries_t h;        /* current histogram series */
    int in_hseries;
    int samples;
    int line;
} validator_t;

#define VFAIL(v, ...)                                                                      \
    do {                                                                                   \
        fprintf(stderr, "exposition line %d: ", (v)->line);                                \
        CGA_FAIL_(__VA_ARGS__);                                                            \
    } while (0)

static int is_name_start(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}

static int is_name_char(char c) {
    return is_name_start(c) || (c >= '0' && c <= '9');
}

/* Parses a metric name at *p into out; advances *p. */
static void parse_name(validator_t *v, const char **p, char *out, size_t n, int label) {
    const char *s = *p;
    size_t i = 0;
    if (!is_name_start(*s) || (label && *s == ':')) VFAIL(v, "bad name start '%c'", *s);
    while (is_name_char(*s) && !(label && *s == ':')) {
        if (i + 1 >= n) VFAIL(v, "name too long");
        out[i++] = *s++;
    }
    out[i] = '\0';
    *p = s;
}

/* A sample value or le: a Go float (strtod) or +Inf, -Inf, NaN. */
static double parse_value(validator_t *v, const char *s, size_t n) {
    char buf[64];
    if (n == 0 || n >= sizeof buf) VFAIL(v, "bad value length %zu", n);
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (strcmp(buf, "+Inf") == 0) return INFINITY;
    if (strcmp(buf, "-Inf") == 0) return -INFINITY;
    if (strcmp(buf, "NaN") == 0) return NAN;
    char *end;
    double d = strtod(buf, &end);
    if (*end != '\0' || strstr(buf, "inf") || strstr(buf, "nan"))
        VFAIL(v, "value \"%s\" is not a float", buf);
    return d;
}

static void close_hseries(validator_t *v) {
    if (!v->in_hseries) return;
    hseries_t *h = &v->h;
    if (!h->saw_inf) VFAIL(v, "histogram %s{%s}: no +Inf bucket", v->fam, h->labels);
    if (!h->saw_sum) VFAIL(v, "histogram %s{%s}: no _sum", v->fam, h->labels);
    VFAIL(v, "histogram %s{%s}: no _count", v->fam, h->labels);
}

static void close_family(validator_t *v) {
    if (!v->fam[0]) return;
    if (v->in_hseries) close_hseries(v);
    CGA_ASSERT(v->nseen < 64);
    /* memcpy, not snprintf: GCC's -Wrestrict takes two arrays of one struct for overlapping */
    size_t n = strnlen(v->fam, sizeof v->seen[0] - 1);
    memcpy(v->seen[v->nseen], v->fam, n);
    v->seen[v->nseen++][n] = '\0';
    v->fam[0] = '\0';
}

static void check_help_text(validator_t *v, const char *s) {
    for (; *s; s++)
        if (*s == '\\' && s[1] != '\\' && s[1] != 'n') VFAIL(v, "bad escape in HELP");
        else if (*s == '\\') s++;
}

static void validate_comment(validator_t *v, const char *l) {
    char name[128];
    const char *p;
    if (strncmp(l, "# HELP ", 7) == 0) {
        p = l + 7;
        parse_name(v, &p, name, sizeof name, 0);
        if (*p != ' ') VFAIL(v, "HELP: no space after the name");
        check_help_text(v, p + 1);
        if (strcmp(name, v->helped) == 0) VFAIL(v, "second HELP for %s", name);
        for (int i = 0; i < v->nseen; i++)
            if (strcmp(v->seen[i], name) == 0) VFAIL(v, "HELP for %s after its samples", name);
        snprintf(v->helped, sizeof v->helped, "%s", name);
    } else if (strncmp(l, "# TYPE ", 7) == 0) {
        p = l + 7;
        parse_name(v, &p, name, sizeof name, 0);
        if (*p != ' ') VFAIL(v, "TYPE: no space after the name");
        p++;
        if (strcmp(p, "counter") && strcmp(p, "gauge") && strcmp(p, "histogram") &&
            strcmp(p, "summary") && strcmp(p, "untyped"))
            VFAIL(v, "TYPE %s: unknown type \"%s\"", name, p);
        if (strcmp(name, v->fam) == 0) VFAIL(v, "second TYPE for %s", name);
        for (int i = 0; i < v->nseen; i++)
            if (strcmp(v->seen[i], name) == 0) VFAIL(v, "family %s comes back", name);
        if (v->helped[0] && strcmp(v->helped, name) != 0 && strcmp(v->helped, v->fam) != 0)
            VFAIL(v, "HELP for %s is not followed by its TYPE", v->helped);
        close_family(v);
        snprintf(v->fam, sizeof v->fam, "%s", name);
        snprintf(v->type, sizeof v->type, "%s", p);
    }
}

static void validate_sample(validator_t *v, const char *l) {
    char name[128], lname[128], labels[256] = "", le[64] = "";
    const char *p = l;
    parse_name(v, &p, name, sizeof name, 0);
    if (!v->fam[0]) VFAIL(v, "sample %s without a preceding TYPE", name);
    size_t fl = strlen(v->fam);
    const char *suffix = "";
    if (strcmp(name, v->fam) != 0) {
        if (strcmp(v->type, "histogram") != 0 || strncmp(name, v->fam, fl) != 0)
            VFAIL(v, "sample %s does not belong to the family %s of the last TYPE", name, v->fam);
        suffix = name + fl;
        if (strcmp(suffix, "_bucket") && strcmp(suffix, "_sum") && strcmp(suffix, "_count"))
            VFAIL(v, "sample %s: unknown histogram suffix", name);
    } else if (strcmp(v->type, "histogram") == 0) {
        VFAIL(v, "histogram sample %s without _bucket/_sum/_count", name);
    }
    if (strcmp(v->type, "counter") == 0 &&
        (strlen(name) < 6 || strcmp(name + strlen(name) - 6, "_total") != 0))
        VFAIL(v, "counter sample %s does not end in _total", name);
    if (*p == '{') {
        p++;
        while (*p != '}') {
            parse_name(v, &p, lname, sizeof lname, 1);
            if (*p++ != '=') VFAIL(v, "label %s: no '='", lname);
            if (*p++ != '"') VFAIL(v, "label %s: no opening quote", lname);
            const char *val = p;
            while (*p != '"') {
                if (*p == '\0') VFAIL(v, "label %s: unterminated value", lname);
                if (*p == '\\') {
                    p++;
                    if (*p != '\\' && *p != '"' && *p != 'n')
                        VFAIL(v, "label %s: bad escape", lname);
                }
                p++;
            }
            size_t vlen = (size_t)(p - val);
            p++;
            if (strcmp(lname, "le") == 0) {
                if (vlen >= sizeof le) VFAIL(v, "le too long");
                memcpy(le, val, vlen);
                le[vlen] = '\0';
            } else {
                size_t used = strlen(labels);
                snprintf(labels + used, sizeof labels - used, "%s%s=\"%.*s\"", used ? "," : "",
                         lname, (int)vlen, val);
            }
            if (*p == ',') p++;
            else if (*p != '}') VFAIL(v, "label list: want ',' or '}', got '%c'", *p);
        }
        p++;
    }
    if (*p != ' ') VFAIL(v, "sample %s: no space before the value", name);
    p++;
    const char *sp = strchr(p, ' ');
    if (sp) VFAIL(v, "sample %s: unexpected timestamp or trailing text", name);
    double value = parse_value(v, p, strlen(p));
    v->samples++;

    if (strcmp(v->type, "counter") == 0 && !(value >= 0)) VFAIL(v, "counter %s < 0", name);
    if (strcmp(v->type, "histogram") != 0) {
        if (le[0]) VFAIL(v, "le label outside a histogram");
        return;
    }
    hseries_t *h = &v->h;
    if (strcmp(suffix, "_bucket") == 0) {
        if (!le[0]) VFAIL(v, "bucket without le");
        double bound = parse_value(v, le, strlen(le));
        if (!v->in_hseries || strcmp(h->labels, labels) != 0) {
            if (v->in_hseries) close_hseries(v);
            memset(h, 0, sizeof *h);
            snprintf(h->labels, sizeof h->labels, "%s", labels);
            h->last_le = -INFINITY;
            v->in_hseries = 1;
        }
        if (h->saw_inf) VFAIL(v, "bucket after +Inf");
        if (!(bound > h->last_le)) VFAIL(v, "le %s not ascending", le);
        if (value < h->last_cum)
            VFAIL(v, "buckets not cumulative: %g after %g", value, h->last_cum);
        if (value != floor(value)) VFAIL(v, "bucket count %g not an integer", value);
        h->last_le = bound;
        h->last_cum = value;
        h->nbuckets++;
        if (isinf(bound)) {
            h->saw_inf = 1;
            h->inf_count = value;
        }
    } else {
        if (le[0]) VFAIL(v, "le on %s", name);
        if (!v->in_hseries || strcmp(h->labels, labels) != 0)
            VFAIL(v, "%s{%s} before its buckets", name, labels);
        if (!h->saw_inf) VFAIL(v, "%s before the +Inf bucket", name);
        if (strcmp(suffix, "_sum") == 0) {
            h->saw_sum = 1;
        } else {
            if (!h->saw_sum) VFAIL(v, "_count before _sum");
            if (value != h->inf_count)
                VFAIL(v, "%s = %g but the +Inf bucket is %g", name, value, h->inf_count);
            v->in_hseries = 0;
        }
    }
}

/* Validates a whole exposition; returns the number of samples. */
static int validate(const char *text) {
    validator_t v;
    memset(&v, 0, sizeof v);
    size_t n = strlen(text);
    if (n && text[n - 1] != '\n') CGA_FAIL_("exposition does not end with a newline");
    const char *s = text;
    while (*s) {
        const char *nl = strchr(s, '\n');
        char line[1024];
        size_t len = (size_t)(nl - s);
        CGA_ASSERT(len < sizeof line);
        memcpy(line, s, len);
        line[len] = '\0';
        v.line++;
        if (len == 0) VFAIL(&v, "empty line");
        if (line[0] == '#')
            validate_comment(&v, line);
        else
            validate_sample(&v, line);
        s = nl + 1;
    }
    close_family(&v);
    return v.samples;
}

/* ---- concurrency ---- */

#define NTHREADS 8
#define NITER 100000

typedef struct shared_s {
    cga_metrics_t *m;
    cga_counter_t *c;
    cga_gauge_t *g;
    cga_histogram_t *h;
    atomic_int stop;
} shared_t;

static void *updater(void *arg) {
    shared_t *s = arg;
    for (int i = 0; i < NITER; i++) {
        cga_counter_add(s->c, 1);
        cga_gauge_add(s->g, 0.5);
        cga_gauge_add(s->g, -0.25); /* net +0.25 a round: exact in binary */
        cga_histogram_observe(s->h, (i % 4) * 0.25); /* 0, .25, .5, .75: exact sums */
    }
    return NULL;
}

/* Renders while the updaters run: every render must be valid, +Inf == _count included. */
static void *renderer(void *arg) {
    shared_t *s = arg;
    int renders = 0;
    while (!atomic_load(&s->stop) || renders == 0) {
        char *text;
        size_t len;
        CGA_ASSERT_OK(cga_metrics_render(s->m, &text, &len));
        CGA_ASSERT_EQ(strlen(text), len);
        validate(text);
        free(text);
        renders++;
    }
    return NULL;
}

static void test_threads_add_up(void) {
    shared_t s = {0};
    CGA_ASSERT_OK(cga_metrics_create(&s.m));
    s.c = cga_metrics_counter(s.m, "t_events_total", "events", NULL);
    s.g = cga_metrics_gauge(s.m, "t_level", "level", NULL);
    const double bounds[] = {0.1, 0.3, 0.6};
    s.h = cga_metrics_histogram(s.m, "t_sizes", "sizes", NULL, bounds, 3);
    pthread_t th[NTHREADS], r;
    CGA_ASSERT_EQ(pthread_create(&r, NULL, renderer, &s), 0);
    for (int i = 0; i < NTHREADS; i++) CGA_ASSERT_EQ(pthread_create(&th[i], NULL, updater, &s), 0);
    for (int i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
    atomic_store(&s.stop, 1);
    pthread_join(r, NULL);

    CGA_ASSERT_EQ(cga_counter_value(s.c), (uint64_t)NTHREADS * NITER);
    CGA_ASSERT_OP(cga_gauge_value(s.g), ==, NTHREADS * NITER * 0.25);
    CGA_ASSERT_EQ(cga_histogram_count(s.h), (uint64_t)NTHREADS * NITER);
    /* per thread: NITER/4 rounds of 0 + .25 + .5 + .75 = 1.5 */
    CGA_ASSERT_OP(cga_histogram_sum(s.h), ==, NTHREADS * (NITER / 4) * 1.5);

    char *text;
    CGA_ASSERT_OK(cga_metrics_render(s.m, &text, NULL));
    char want[128];
    snprintf(want, sizeof want, "t_events_total %d\n", NTHREADS * NITER);
    CGA_ASSERT(strstr(text, want) != NULL);
    /* buckets: <=0.1 gets 0 (1/4), <=0.3 adds .25 (2/4), <=0.6 adds .5 (3/4), +Inf all */
    snprintf(want, sizeof want, "t_sizes_bucket{le=\"0.1\"} %d\n", NTHREADS * NITER / 4);
    CGA_ASSERT(strstr(text, want) != NULL);
    snprintf(want, sizeof want, "t_sizes_bucket{le=\"0.6\"} %d\n", NTHREADS * NITER / 4 * 3);
    CGA_ASSERT(strstr(text, want) != NULL);
    snprintf(want, sizeof want, "t_sizes_bucket{le=\"+Inf\"} %d\n", NTHREADS * NITER);
    CGA_ASSERT(strstr(text, want) != NULL);
    free(text);
    cga_metrics_free(s.m);
}

/* ---- the exact text ---- */

static void test_render_exact(void) {
    cga_metrics_t *m;
    CGA_ASSERT_OK(cga_metrics_create(&m));
    char l1[128] = "", l2[128] = "";
    CGA_ASSERT_OK(cga_metrics_label_append(l1, sizeof l1, "queue", "analysis"));
    CGA_ASSERT_OK(cga_metrics_label_append(l2, sizeof l2, "queue", "re\"p\\or\nts"));
    CGA_ASSERT_OK(cga_metrics_label_append(l2, sizeof l2, "lab", "trend"));
    CGA_ASSERT_STREQ(l2, "queue=\"re\\\"p\\\\or\\nts\",lab=\"trend\"");

    cga_counter_t *c1 = cga_metrics_counter(m, "cga_tasks_total", "Tasks done.\nBy queue \\ x",
                                            l1);
    cga_counter_t *c2 = cga_metrics_counter(m, "cga_tasks_total", "ignored: first help wins", l2);
    CGA_ASSERT(c1 != c2);
    CGA_ASSERT(cga_metrics_counter(m, "cga_tasks_total", NULL, l1) == c1);
    cga_counter_add(c1, 3);
    cga_counter_add(c2, 1);
    cga_gauge_t *g = cga_metrics_gauge(m, "cga_backlog", "Backlog.", NULL);
    cga_gauge_set(g, 0.1);
    cga_gauge_t *gi = cga_metrics_gauge(m, "cga_odd", NULL, "k=\"inf\"");
    cga_gauge_set(gi, INFINITY);
    cga_gauge_t *gn = cga_metrics_gauge(m, "cga_odd", NULL, "k=\"nan\"");
    cga_gauge_set(gn, NAN);
    cga_gauge_t *gm = cga_metrics_gauge(m, "cga_odd", NULL, "k=\"neg\"");
    cga_gauge_set(gm, -1.5e-7);
    const double b[] = {0.25, 0.5, 1};
    cga_histogram_t *h = cga_metrics_histogram(m, "cga_latency_seconds", "Latency.", l1, b, 3);
    cga_histogram_observe(h, 0.125);
    cga_histogram_observe(h, 0.25); /* le is inclusive */
    cga_histogram_observe(h, 0.75);
    cga_histogram_observe(h, 3);
    cga_histogram_observe(h, NAN); /* ignored */
    cga_histogram_t *h0 = cga_metrics_histogram(m, "cga_empty", "Nothing yet.", NULL, b, 3);
    (void)h0;

    char *text;
    size_t len;
    CGA_ASSERT_OK(cga_metrics_render(m, &text, &len));
    const char *want =
        "# HELP cga_tasks_total Tasks done.\\nBy queue \\\\ x\n"
        "# TYPE cga_tasks_total counter\n"
        "cga_tasks_total{queue=\"analysis\"} 3\n"
        "cga_tasks_total{queue=\"re\\\"p\\\\or\\nts\",lab=\"trend\"} 1\n"
        "# HELP cga_backlog Backlog.\n"
        "# TYPE cga_backlog gauge\n"
        "cga_backlog 0.1\n"
        "# TYPE cga_odd gauge\n"
        "cga_odd{k=\"inf\"} +Inf\n"
        "cga_odd{k=\"nan\"} NaN\n"
        "cga_odd{k=\"neg\"} -1.5e-07\n"
        "# HELP cga_latency_seconds Latency.\n"
        "# TYPE cga_latency_seconds histogram\n"
        "cga_latency_seconds_bucket{queue=\"analysis\",le=\"0.25\"} 2\n"
        "cga_latency_seconds_bucket{queue=\"analysis\",le=\"0.5\"} 2\n"
        "cga_latency_seconds_bucket{queue=\"analysis\",le=\"1\"} 3\n"
        "cga_latency_seconds_bucket{queue=\"analysis\",le=\"+Inf\"} 4\n"
        "cga_latency_seconds_sum{queue=\"analysis\"} 4.125\n"
        "cga_latency_seconds_count{queue=\"analysis\"} 4\n"
        "# HELP cga_empty Nothing yet.\n"
        "# TYPE cga_empty histogram\n"
        "cga_empty_bucket{le=\"0.25\"} 0\n"
        "cga_empty_bucket{le=\"0.5\"} 0\n"
        "cga_empty_bucket{le=\"1\"} 0\n"
        "cga_empty_bucket{le=\"+Inf\"} 0\n"
        "cga_empty_sum 0\n"
        "cga_empty_count 0\n";
    CGA_ASSERT_STREQ(text, want);
    CGA_ASSERT_EQ(len, strlen(want));
    CGA_ASSERT_EQ(validate(text), 18);
    free(text);

    /* The default buckets: 50 µs .. 10 s. */
    cga_histogram_t *d = cga_metrics_histogram(m, "cga_default_seconds", "d", NULL, NULL, 0);
    cga_histogram_observe(d, 0.00004);
    cga_histogram_observe(d, 11);
    CGA_ASSERT_OK(cga_metrics_render(m, &text, &len));
    CGA_ASSERT(strstr(text, "cga_default_seconds_bucket{le=\"5e-05\"} 1\n"));
    CGA_ASSERT(strstr(text, "cga_default_seconds_bucket{le=\"10\"} 1\n"));
    CGA_ASSERT(strstr(text, "cga_default_seconds_bucket{le=\"+Inf\"} 2\n"));
    validate(text);
    free(text);
    cga_metrics_free(m);
}

static void test_label_append(void) {
    char small[12] = "";
    CGA_ASSERT_OK(cga_metrics_label_append(small, sizeof small, "a", "12345")); /* a="12345" */
    CGA_ASSERT_STREQ(small, "a=\"12345\"");
    CGA_ASSERT_EQ(cga_metrics_label_append(small, sizeof small, "b", "x"), CGA_ETOOBIG);
    CGA_ASSERT_STREQ(small, "a=\"12345\""); /* unchanged */
    char buf[64] = "";
    CGA_ASSERT_EQ(cga_metrics_label_append(buf, sizeof buf, "9x", "v"), CGA_EINVAL);
    CGA_ASSERT_EQ(cga_metrics_label_append(buf, sizeof buf, "__x", "v"), CGA_EINVAL);
    CGA_ASSERT_EQ(cga_metrics_label_append(buf, sizeof buf, "a-b", "v"), CGA_EINVAL);
    CGA_ASSERT_EQ(cga_metrics_label_append(buf, sizeof buf, "x", NULL), CGA_EINVAL);
    CGA_ASSERT_OK(cga_metrics_label_append(buf, sizeof buf, "x", ""));
    CGA_ASSERT_STREQ(buf, "x=\"\"");
}

/* ---- quantiles ---- */

static void test_quantiles(void) {
    cga_metrics_t *m;
    CGA_ASSERT_OK(cga_metrics_create(&m));
    double bounds[100];
    for (int i = 0; i < 100; i++) bounds[i] = i + 1; /* 1, 2, .., 100: resolution 1 */
    cga_histogram_t *h = cga_metrics_histogram(m, "q_uniform", "u", NULL, bounds, 100);
    CGA_ASSERT_OP(cga_histogram_quantile(h, 0.5), ==, 0); /* empty */
    for (int i = 1; i <= 10000; i++) cga_histogram_observe(h, i / 100.0); /* uniform (0,100] */
    static const double qs[] = {0.01, 0.1, 0.25, 0.5, 0.9, 0.99, 1.0};
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
        double got = cga_histogram_quantile(h, qs[i]), want = qs[i] * 100;
        CGA_ASSERT_OP(fabs(got - want), <=, 1.0);
    }
    CGA_ASSERT_OP(cga_histogram_quantile(h, 0), <=, 1.0);
    CGA_ASSERT_OP(cga_histogram_quantile(h, 2), ==, cga_histogram_quantile(h, 1)); /* clamped */

    /* Latencies on the default buckets: 90% at 2 ms, 10% at 200 ms. The median lies in
     * (1 ms, 2.5 ms], p95 in (100 ms, 250 ms]. */
    cga_histogram_t *l = cga_metrics_histogram(m, "q_latency_seconds", "l", NULL, NULL, 0);
    for (int i = 0; i < 900; i++) cga_histogram_observe(l, 0.002);
    for (int i = 0; i < 100; i++) cga_histogram_observe(l, 0.2);
    double p50 = cga_histogram_quantile(l, 0.5), p95 = cga_histogram_quantile(l, 0.95);
    CGA_ASSERT_OP(p50, >, 0.001);
    CGA_ASSERT_OP(p50, <=, 0.0025);
    CGA_ASSERT_OP(p95, >, 0.1);
    CGA_ASSERT_OP(p95, <=, 0.25);

    /* Beyond the last bound: the highest finite bound (no upper edge to interpolate to). */
    cga_histogram_t *o = cga_metrics_histogram(m, "q_over", "o", NULL, bounds, 3);
    cga_histogram_observe(o, 50);
    CGA_ASSERT_OP(cga_histogram_quantile(o, 0.5), ==, 3);
    cga_metrics_free(m);
}

/* ---- misuse aborts ---- */

/* Runs fn in a child; want_abort: it must die of SIGABRT, else exit 0. */
static void expect_outcome(void (*fn)(cga_metrics_t *), int want_abort) {
    pid_t pid = fork();
    CGA_ASSERT(pid >= 0);
    if (pid == 0) {
        FILE *f = freopen("/dev/null", "w", stderr);
        (void)f;
        cga_metrics_t *m;
        cga_metrics_create(&m);
        fn(m);
        cga_metrics_free(m);
        _exit(0);
    }
    int st = 0;
    CGA_ASSERT_EQ(waitpid(pid, &st, 0), pid);
    if (want_abort) {
        CGA_ASSERT(WIFSIGNALED(st));
        CGA_ASSERT_EQ(WTERMSIG(st), SIGABRT);
    } else {
        CGA_ASSERT(WIFEXITED(st));
        CGA_ASSERT_EQ(WEXITSTATUS(st), 0);
    }
}
#define expect_abort(fn) expect_outcome(fn, 1)

static void counter_without_total(cga_metrics_t *m) {
    cga_metrics_counter(m, "cga_tasks", "x", NULL);
}
static void type_clash(cga_metrics_t *m) {
    cga_metrics_gauge(m, "cga_x", "x", NULL);
    cga_metrics_histogram(m, "cga_x", "x", NULL, NULL, 0);
}
static void bad_name(cga_metrics_t *m) {
    cga_metrics_gauge(m, "cga-x", "x", NULL);
}
static void bad_labels(cga_metrics_t *m) {
    cga_metrics_gauge(m, "cga_x", "x", "a=\"unterminated");
}
static void le_on_histogram(cga_metrics_t *m) {
    cga_metrics_histogram(m, "cga_h", "x", "le=\"1\"", NULL, 0);
}
static void unsorted_bounds(cga_metrics_t *m) {
    const double b[] = {1, 0.5};
    cga_metrics_histogram(m, "cga_h", "x", NULL, b, 2);
}
static void valid_use(cga_metrics_t *m) {
    cga_metrics_gauge(m, "cga_x", "x", "a=\"q\\\"\\n\\\\\",b_2=\"\"");
    cga_metrics_counter(m, "cga_x_total", "x", NULL);
    cga_metrics_histogram(m, "cga_h", "x", "lex=\"1\"", NULL, 0);
}

static void test_misuse_aborts(void) {
    expect_abort(counter_without_total);
    expect_abort(type_clash);
    expect_abort(bad_name);
    expect_abort(bad_labels);
    expect_abort(le_on_histogram);
    expect_abort(unsorted_bounds);
    expect_outcome(valid_use, 0);
    /* and the validator itself catches what it should */
    pid_t pid = fork();
    if (pid == 0) {
        FILE *f = freopen("/dev/null", "w", stderr);
        (void)f;
        validate("# TYPE a histogram\na_bucket{le=\"1\"} 2\na_bucket{le=\"+Inf\"} 1\n"
                 "a_sum 1\na_count 1\n");
        _exit(0);
    }
    int st = 0;
    CGA_ASSERT_EQ(waitpid(pid, &st, 0), pid);
    CGA_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 1);
}

int main(void) {
    CGA_RUN(test_render_exact);
    CGA_RUN(test_label_append);
    CGA_RUN(test_threads_add_up);
    CGA_RUN(test_quantiles);
    CGA_RUN(test_misuse_aborts);
    return 0;
}

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
#include "prom_check.h"
#include "test.h"

/* The text format is checked line by line by tests/support/prom_check.c (what a Prometheus
 * scraper checks), shared with the HTTP test. */

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
        cga_prom_validate(text);
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
    CGA_ASSERT_EQ(cga_prom_validate(text), 18);
    free(text);

    /* The default buckets: 50 µs .. 10 s. */
    cga_histogram_t *d = cga_metrics_histogram(m, "cga_default_seconds", "d", NULL, NULL, 0);
    cga_histogram_observe(d, 0.00004);
    cga_histogram_observe(d, 11);
    CGA_ASSERT_OK(cga_metrics_render(m, &text, &len));
    CGA_ASSERT(strstr(text, "cga_default_seconds_bucket{le=\"5e-05\"} 1\n"));
    CGA_ASSERT(strstr(text, "cga_default_seconds_bucket{le=\"10\"} 1\n"));
    CGA_ASSERT(strstr(text, "cga_default_seconds_bucket{le=\"+Inf\"} 2\n"));
    cga_prom_validate(text);
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
        cga_prom_validate("# TYPE a histogram\na_bucket{le=\"1\"} 2\na_bucket{le=\"+Inf\"} 1\n"
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

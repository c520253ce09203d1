/* The synthetic market, the window cutter, the semaphore rule, the accuracy computation and the
 * progress line of cgalpha-ops (pure modules, compiled in from ops/). */
#include <math.h>

#include "../../ops/accuracy.c"
#include "../../ops/level.c"
#include "../../ops/market.c"
#include "../../ops/progress.c"
#include "../../ops/window.c"
#include "cgalpha/err.h"
#include "test.h"

/* ---- synthetic market -------------------------------------------------------------------- */

static void test_determinism(void) {
    ops_synth_t a, b, c;
    ops_synth_init(&a, 42, 3, OPS_SYNTH_T0_MS);
    ops_synth_init(&b, 42, 3, OPS_SYNTH_T0_MS);
    ops_synth_init(&c, 43, 3, OPS_SYNTH_T0_MS);
    int differs = 0;
    for (int i = 0; i < 5000; i++) {
        cga_bar_t x, y, z;
        cga_regime_t rx, ry, rz;
        ops_synth_next(&a, &x, &rx);
        ops_synth_next(&b, &y, &ry);
        ops_synth_next(&c, &z, &rz);
        CGA_ASSERT(memcmp(&x, &y, sizeof x) == 0);
        CGA_ASSERT_EQ(rx, ry);
        if (z.close != x.close) differs = 1;
    }
    CGA_ASSERT(differs);
    /* Another symbol of the same seed is another series. */
    ops_synth_t s0, s1;
    ops_synth_init(&s0, 42, 0, OPS_SYNTH_T0_MS);
    ops_synth_init(&s1, 42, 1, OPS_SYNTH_T0_MS);
    cga_bar_t x, y;
    cga_regime_t r;
    ops_synth_next(&s0, &x, &r);
    ops_synth_next(&s1, &y, &r);
    CGA_ASSERT(x.close != y.close);
    /* A fixed value pins the generator across platforms and refactorings. */
    ops_synth_t g;
    ops_synth_init(&g, 1, 0, OPS_SYNTH_T0_MS);
    uint64_t first = ops_synth_u64(&g);
    ops_synth_init(&g, 1, 0, OPS_SYNTH_T0_MS);
    CGA_ASSERT(ops_synth_u64(&g) == first);
    char name[16];
    ops_synth_symbol(name, sizeof name, 12);
    CGA_ASSERT_STREQ(name, "SYN12");
}

static void test_bar_shape(void) {
    ops_synth_t g;
    ops_synth_init(&g, 7, 0, OPS_SYNTH_T0_MS);
    double prev_close = OPS_SYNTH_START_PRICE;
    int64_t t = OPS_SYNTH_T0_MS;
    for (int i = 0; i < 20000; i++) {
        cga_bar_t b;
        cga_regime_t r;
        ops_synth_next(&g, &b, &r);
        CGA_ASSERT_EQ(b.t, t);
        t += OPS_SYNTH_BAR_MS;
        CGA_ASSERT(b.open == prev_close);
        CGA_ASSERT(b.high >= b.open && b.high >= b.close);
        CGA_ASSERT(b.low <= b.open && b.low <= b.close);
        CGA_ASSERT(b.low > 0 && isfinite(b.high));
        CGA_ASSERT(b.volume > 0);
        CGA_ASSERT(r >= CGA_REGIME_BULL && r <= CGA_REGIME_TURBULENT);
        prev_close = b.close;
    }
}

static void test_regime_durations(void) {
    for (unsigned sym = 0; sym < 4; sym++) {
        ops_synth_t g;
        ops_synth_init(&g, 2024, sym, OPS_SYNTH_T0_MS);
        cga_regime_t cur = CGA_REGIME_UNKNOWN;
        unsigned run = 0, runs = 0;
        int seen[CGA_REGIME_COUNT] = {0};
        for (int i = 0; i < 100000; i++) {
            cga_bar_t b;
            cga_regime_t r;
            ops_synth_next(&g, &b, &r);
            seen[r] = 1;
            if (r != cur) {
                if (cur != CGA_REGIME_UNKNOWN) {
                    CGA_ASSERT_OP(run, >=, OPS_SYNTH_RUN_MIN);
                    CGA_ASSERT_OP(run, <=, OPS_SYNTH_RUN_MAX);
                    runs++;
                }
                cur = r;
                run = 0;
            }
            run++;
        }
        CGA_ASSERT_OP(run, <=, OPS_SYNTH_RUN_MAX); /* the last run, possibly cut short */
        /* 100000 bars of runs averaging 275: about 364 switches. */
        CGA_ASSERT_OP(runs, >, 300);
        CGA_ASSERT_OP(runs, <, 450);
        for (int r = CGA_REGIME_BULL; r <= CGA_REGIME_TURBULENT; r++) CGA_ASSERT(seen[r]);
    }
}

static void test_regime_statistics(void) {
    double sum[CGA_REGIME_COUNT] = {0}, sum2[CGA_REGIME_COUNT] = {0};
    double n[CGA_REGIME_COUNT] = {0};
    for (unsigned sym = 0; sym < 4; sym++) {
        ops_synth_t g;
        ops_synth_init(&g, 99, sym, OPS_SYNTH_T0_MS);
        for (int i = 0; i < 100000; i++) {
            cga_bar_t b;
            cga_regime_t r;
            ops_synth_next(&g, &b, &r);
            double lr = log(b.close / b.open);
            sum[r] += lr;
            sum2[r] += lr * lr;
            n[r] += 1;
        }
    }
    for (int r = CGA_REGIME_BULL; r <= CGA_REGIME_TURBULENT; r++) {
        double mu, sigma;
        ops_synth_params((cga_regime_t)r, &mu, &sigma);
        CGA_ASSERT_OP(n[r], >, 50000);
        double mean = sum[r] / n[r];
        double sd = sqrt(sum2[r] / n[r] - mean * mean);
        double se = sigma / sqrt(n[r]);
        fprintf(stderr, "   %-9s n=%6.0f mean=%+.5f (mu %+.4f)  sd=%.5f (sigma %.4f)\n",
                cga_regime_name((cga_regime_t)r), n[r], mean, mu, sd, sigma);
        CGA_ASSERT_OP(fabs(mean - mu), <, 4 * se);
        CGA_ASSERT_OP(fabs(sd / sigma - 1), <, 0.03);
    }
    double mu, sigma;
    ops_synth_params(CGA_REGIME_BULL, &mu, &sigma);
    CGA_ASSERT(mu == 0.003 && sigma == 0.006);
    ops_synth_params(CGA_REGIME_BEAR, &mu, &sigma);
    CGA_ASSERT(mu == -0.003 && sigma == 0.006);
    ops_synth_params(CGA_REGIME_SIDEWAYS, &mu, &sigma);
    CGA_ASSERT(mu == 0 && sigma == 0.003);
    ops_synth_params(CGA_REGIME_TURBULENT, &mu, &sigma);
    CGA_ASSERT(mu == 0 && sigma == 0.03);
}

static void test_normal(void) {
    ops_synth_t g;
    ops_synth_init(&g, 5, 0, 0);
    double s = 0, s2 = 0;
    const int n = 200000;
    for (int i = 0; i < n; i++) {
        double x = ops_synth_normal(&g);
        CGA_ASSERT(isfinite(x));
        s += x;
        s2 += x * x;
    }
    CGA_ASSERT_OP(fabs(s / n), <, 0.01);
    CGA_ASSERT_OP(fabs(s2 / n - 1), <, 0.02);
    for (int i = 0; i < 1000; i++) {
        double u = ops_synth_uniform(&g);
        CGA_ASSERT(u >= 0 && u < 1);
    }
}

/* ---- windows ----------------------------------------------------------------------------- */

static cga_bar_t bar_at(int64_t t) {
    cga_bar_t b = {t, 1, 1, 1, 1, 0};
    return b;
}

/* Pushes bars t = 1..n of sym; records the first t of every window. Returns the count. */
static int cut(ops_cutter_t *c, const char *sym, int n, int64_t *starts, size_t window) {
    int k = 0;
    for (int i = 1; i <= n; i++) {
        cga_bar_t b = bar_at(i);
        const cga_bar_t *bars;
        const char *s;
        int rc = ops_cutter_push(c, sym, strlen(sym), &b, &bars, &s);
        CGA_ASSERT(rc == 0 || rc == 1);
        if (rc == 1) {
            CGA_ASSERT_STREQ(s, sym);
            for (size_t j = 1; j < window; j++) CGA_ASSERT_EQ(bars[j].t, bars[0].t + (int64_t)j);
            CGA_ASSERT_EQ(bars[window - 1].t, i);
            starts[k++] = bars[0].t;
        }
    }
    return k;
}

static void test_windows(void) {
    ops_cutter_t *c;
    int64_t st[64];
    CGA_ASSERT_OK(ops_cutter_create(&c, 4, 2));
    CGA_ASSERT_EQ(cut(c, "A", 10, st, 4), 4);
    CGA_ASSERT_EQ(st[0], 1);
    CGA_ASSERT_EQ(st[1], 3);
    CGA_ASSERT_EQ(st[3], 7);
    CGA_ASSERT_EQ(ops_window_count(10, 4, 2), 4);
    ops_cutter_free(c);

    /* step > window: the bars in between belong to no window. */
    CGA_ASSERT_OK(ops_cutter_create(&c, 3, 5));
    CGA_ASSERT_EQ(cut(c, "A", 13, st, 3), 3);
    CGA_ASSERT_EQ(st[0], 1);
    CGA_ASSERT_EQ(st[1], 6);
    CGA_ASSERT_EQ(st[2], 11);
    CGA_ASSERT_EQ(ops_window_count(13, 3, 5), 3);
    ops_cutter_free(c);

    /* step == window: back to back. */
    CGA_ASSERT_OK(ops_cutter_create(&c, 32, 32));
    CGA_ASSERT_EQ(cut(c, "A", 100, st, 32), 3);
    CGA_ASSERT_EQ(st[2], 65);
    ops_cutter_free(c);

    /* The defaults on the default synthetic series: 2000 bars -> 124 windows. */
    CGA_ASSERT_EQ(ops_window_count(2000, 32, 16), 124);
    CGA_ASSERT_EQ(ops_window_count(31, 32, 16), 0);
    CGA_ASSERT_EQ(ops_window_count(32, 32, 16), 1);
    CGA_ASSERT_EQ(ops_window_count(5, 0, 1), 0);
    CGA_ASSERT_EQ(ops_cutter_create(&c, 0, 1), CGA_EINVAL);
    CGA_ASSERT_EQ(ops_cutter_create(&c, 1, 0), CGA_EINVAL);
}

static void test_windows_interleaved(void) {
    ops_cutter_t *c;
    CGA_ASSERT_OK(ops_cutter_create(&c, 4, 2));
    int wins[2] = {0, 0};
    for (int i = 1; i <= 10; i++) {
        for (int s = 0; s < 2; s++) {
            const char *sym = s ? "BBB" : "A";
            cga_bar_t b = bar_at(i * 10 + s);
            const cga_bar_t *bars;
            const char *name;
            int rc = ops_cutter_push(c, sym, strlen(sym), &b, &bars, &name);
            if (rc == 1) {
                CGA_ASSERT_STREQ(name, sym);
                for (int j = 0; j < 4; j++) CGA_ASSERT_EQ(bars[j].t % 10, s);
                wins[s]++;
            }
        }
    }
    CGA_ASSERT_EQ(wins[0], 4);
    CGA_ASSERT_EQ(wins[1], 4);
    CGA_ASSERT_EQ(ops_cutter_symbols(c), 2);
    ops_cutter_free(c);
}

static void test_windows_refuse_time_going_back(void) {
    ops_cutter_t *c;
    CGA_ASSERT_OK(ops_cutter_create(&c, 3, 1));
    const cga_bar_t *bars;
    const char *s;
    cga_bar_t b = bar_at(10);
    CGA_ASSERT_EQ(ops_cutter_push(c, "X", 1, &b, &bars, &s), 0);
    b = bar_at(10); /* same time */
    CGA_ASSERT_EQ(ops_cutter_push(c, "X", 1, &b, &bars, &s), CGA_EINVAL);
    b = bar_at(5); /* earlier */
    CGA_ASSERT_EQ(ops_cutter_push(c, "X", 1, &b, &bars, &s), CGA_EINVAL);
    CGA_ASSERT_EQ(ops_cutter_last_t(c, "X", 1), 10);
    CGA_ASSERT_EQ(ops_cutter_last_t(c, "Y", 1), 0);
    /* Refused bars left no trace: the window is 10, 11, 12. */
    b = bar_at(11);
    CGA_ASSERT_EQ(ops_cutter_push(c, "X", 1, &b, &bars, &s), 0);
    b = bar_at(12);
    CGA_ASSERT_EQ(ops_cutter_push(c, "X", 1, &b, &bars, &s), 1);
    CGA_ASSERT_EQ(bars[0].t, 10);
    CGA_ASSERT_EQ(bars[2].t, 12);
    /* Another symbol may go back in time. */
    b = bar_at(1);
    CGA_ASSERT_EQ(ops_cutter_push(c, "Y", 1, &b, &bars, &s), 0);
    /* Symbol length limits. */
    CGA_ASSERT_EQ(ops_cutter_push(c, "", 0, &b, &bars, &s), CGA_EINVAL);
    char big[OPS_SYMBOL_MAX + 1];
    memset(big, 'a', sizeof big);
    CGA_ASSERT_EQ(ops_cutter_push(c, big, sizeof big, &b, &bars, &s), CGA_EINVAL);
    CGA_ASSERT_EQ(ops_cutter_push(c, big, OPS_SYMBOL_MAX, &b, &bars, &s), 0);
    ops_cutter_free(c);
}

static void test_windows_many_symbols(void) {
    ops_cutter_t *c;
    CGA_ASSERT_OK(ops_cutter_create(&c, 2, 1));
    int wins = 0;
    for (int round = 1; round <= 3; round++) {
        for (int s = 0; s < 1000; s++) {
            char sym[16];
            int n = snprintf(sym, sizeof sym, "S%d", s);
            cga_bar_t b = bar_at(round);
            const cga_bar_t *bars;
            const char *name;
            int rc = ops_cutter_push(c, sym, (size_t)n, &b, &bars, &name);
            CGA_ASSERT(rc >= 0);
            if (rc == 1) {
                CGA_ASSERT_STREQ(name, sym);
                wins++;
            }
        }
    }
    CGA_ASSERT_EQ(ops_cutter_symbols(c), 1000);
    CGA_ASSERT_EQ(wins, 2000);
    ops_cutter_free(c);
}

/* ---- semaphore rule ---------------------------------------------------------------------- */

static void test_level(void) {
    ops_level_limits_t l = {.yellow_backlog = 50000, .red_backlog = 200000,
                            .yellow_mem_pct = 75, .red_mem_pct = 90};
    char why[200];
    CGA_ASSERT_EQ(ops_level_eval(&l, 0, 1000, 0, why, sizeof why), CGA_LEVEL_GREEN);
    CGA_ASSERT_STREQ(why, "backlog 0 tasks, no maxmemory");
    CGA_ASSERT_EQ(ops_level_eval(&l, 49999, 0, 0, why, sizeof why), CGA_LEVEL_GREEN);
    CGA_ASSERT_EQ(ops_level_eval(&l, 50000, 0, 0, why, sizeof why), CGA_LEVEL_YELLOW);
    CGA_ASSERT_STREQ(why, "backlog 50000 tasks >= 50000");
    CGA_ASSERT_EQ(ops_level_eval(&l, 200000, 0, 0, why, sizeof why), CGA_LEVEL_RED);
    CGA_ASSERT_STREQ(why, "backlog 200000 tasks >= 200000");
    /* Memory. */
    CGA_ASSERT_EQ(ops_level_eval(&l, 0, 74, 100, why, sizeof why), CGA_LEVEL_GREEN);
    CGA_ASSERT_STREQ(why, "backlog 0 tasks, memory 74% of maxmemory");
    CGA_ASSERT_EQ(ops_level_eval(&l, 0, 75, 100, why, sizeof why), CGA_LEVEL_YELLOW);
    CGA_ASSERT_STREQ(why, "memory 75% of maxmemory >= 75%");
    CGA_ASSERT_EQ(ops_level_eval(&l, 0, 95, 100, why, sizeof why), CGA_LEVEL_RED);
    CGA_ASSERT_EQ(ops_level_eval(&l, 300000, 95, 100, why, sizeof why), CGA_LEVEL_RED);
    CGA_ASSERT(strstr(why, "backlog 300000") && strstr(why, "memory 95%"));
    /* No maxmemory: memory never decides. */
    CGA_ASSERT_EQ(ops_level_eval(&l, 0, UINT64_C(1) << 40, 0, why, sizeof why),
                  CGA_LEVEL_GREEN);
    /* Backlog estimate. */
    CGA_ASSERT_EQ(ops_backlog_tasks(10, 32, 1), 320);
    CGA_ASSERT_EQ(ops_backlog_tasks(10, 0, 32), 320);
    CGA_ASSERT_EQ(ops_backlog_tasks(3, 1.5, 32), 5);
    CGA_ASSERT_EQ(ops_backlog_tasks(0, 32, 32), 0);
}

static void test_info_parse(void) {
    const char *info = "# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\n"
                       "used_memory_rss:5\r\nmaxmemory:0\r\nmaxmemory_human:0B\r\n";
    uint64_t v = 1;
    CGA_ASSERT_EQ(ops_info_u64(info, strlen(info), "used_memory", &v), 0);
    CGA_ASSERT_EQ(v, 1048576);
    CGA_ASSERT_EQ(ops_info_u64(info, strlen(info), "maxmemory", &v), 0);
    CGA_ASSERT_EQ(v, 0);
    CGA_ASSERT_EQ(ops_info_u64(info, strlen(info), "used_memory_human", &v), -1);
    CGA_ASSERT_EQ(ops_info_u64(info, strlen(info), "absent", &v), -1);
    CGA_ASSERT_EQ(ops_info_u64("x:99999999999999999999999\n", 26, "x", &v), -1);
    CGA_ASSERT_EQ(ops_info_u64("x:12", 4, "x", &v), 0); /* no line end */
    CGA_ASSERT_EQ(v, 12);
}

/* ---- accuracy ---------------------------------------------------------------------------- */

static void test_accuracy(void) {
    ops_acc_t *a;
    ops_acc_create(&a);
    char sym[40], err[100];
    int64_t t;
    cga_regime_t r;
    CGA_ASSERT_EQ(ops_acc_parse_truth("symbol,t,regime\n", 16, sym, sizeof sym, &t, &r, err,
                                      sizeof err), 0);
    CGA_ASSERT_EQ(ops_acc_parse_truth("\n", 1, sym, sizeof sym, &t, &r, err, sizeof err), 0);
    CGA_ASSERT_EQ(ops_acc_parse_truth("A,120,bull\r\n", 12, sym, sizeof sym, &t, &r, err,
                                      sizeof err), 1);
    CGA_ASSERT_STREQ(sym, "A");
    CGA_ASSERT_EQ(t, 120);
    CGA_ASSERT_EQ(r, CGA_REGIME_BULL);
    CGA_ASSERT_EQ(ops_acc_parse_truth("A,12x,bull", 10, sym, sizeof sym, &t, &r, err,
                                      sizeof err), CGA_EINVAL);
    CGA_ASSERT_EQ(ops_acc_parse_truth("A,12,happy", 10, sym, sizeof sym, &t, &r, err,
                                      sizeof err), CGA_EINVAL);
    CGA_ASSERT_STREQ(err, "'happy' is not a regime");
    CGA_ASSERT_EQ(ops_acc_parse_truth("A,12", 4, sym, sizeof sym, &t, &r, err, sizeof err),
                  CGA_EINVAL);
    CGA_ASSERT_EQ(ops_acc_parse_truth("A,1,bull,x", 10, sym, sizeof sym, &t, &r, err,
                                      sizeof err), CGA_EINVAL);

    /* A: truth bull for t 0..9, bear for 10..19. Detections: bull at ws 2, bear at ws 12
     * (given out of order), so t 0,1 are skipped; 2..9 right; 10,11 wrong (still bull);
     * 12..19 right. */
    for (int i = 0; i < 20; i++)
        ops_acc_add_truth(a, "A", i, i < 10 ? CGA_REGIME_BULL : CGA_REGIME_BEAR);
    ops_acc_add_change(a, "A", 1, 12, 2, CGA_REGIME_BEAR);
    ops_acc_add_change(a, "A", 1, 2, 1, CGA_REGIME_BULL);
    /* B: never detected. C: detections only (no truth): not scored. */
    for (int i = 0; i < 5; i++) ops_acc_add_truth(a, "B", i, CGA_REGIME_SIDEWAYS);
    ops_acc_add_change(a, "C", 1, 0, 1, CGA_REGIME_BULL);
    const ops_acc_result_t *per;
    size_t n;
    ops_acc_result_t all;
    ops_acc_compute(a, &per, &n, &all);
    CGA_ASSERT_EQ(n, 2);
    CGA_ASSERT_STREQ(per[0].symbol, "A");
    CGA_ASSERT_EQ(per[0].bars, 18);
    CGA_ASSERT_EQ(per[0].skipped, 2);
    CGA_ASSERT_EQ(per[0].correct, 16);
    CGA_ASSERT_EQ(per[0].changes, 2);
    CGA_ASSERT_STREQ(per[1].symbol, "B");
    CGA_ASSERT_EQ(per[1].bars, 0);
    CGA_ASSERT_EQ(per[1].skipped, 5);
    CGA_ASSERT_EQ(all.bars, 18);
    CGA_ASSERT_EQ(all.correct, 16);
    /* Same ws: the higher seq wins. */
    ops_acc_add_change(a, "B", 1, 3, 1, CGA_REGIME_BULL);
    ops_acc_add_change(a, "B", 1, 3, 2, CGA_REGIME_SIDEWAYS);
    ops_acc_compute(a, &per, &n, &all);
    CGA_ASSERT_STREQ(per[1].symbol, "B");
    CGA_ASSERT_EQ(per[1].bars, 2);
    CGA_ASSERT_EQ(per[1].correct, 2);
    ops_acc_free(a);

    /* Many symbols (the hash grows). */
    ops_acc_create(&a);
    for (int s = 0; s < 500; s++) {
        char name[16];
        snprintf(name, sizeof name, "S%03d", s);
        ops_acc_add_change(a, name, strlen(name), 0, 1, CGA_REGIME_BULL);
        for (int i = 0; i < 4; i++)
            ops_acc_add_truth(a, name, i, i % 2 ? CGA_REGIME_BULL : CGA_REGIME_BEAR);
    }
    ops_acc_compute(a, &per, &n, &all);
    CGA_ASSERT_EQ(n, 500);
    CGA_ASSERT_STREQ(per[499].symbol, "S499");
    CGA_ASSERT_EQ(all.bars, 2000);
    CGA_ASSERT_EQ(all.correct, 1000);
    ops_acc_free(a);
}

static void test_progress(void) {
    char line[160];
    ops_progress_format(line, sizeof line, 50, 100, 1234, 2.0);
    CGA_ASSERT_STREQ(line, "[############------------]  50%  1234 tasks  617 tasks/s");
    ops_progress_format(line, sizeof line, 150, 100, 10, 0);
    CGA_ASSERT_STREQ(line, "[########################] 100%  10 tasks  0 tasks/s");
    ops_progress_format(line, sizeof line, 5, 0, 10, 1.0);
    CGA_ASSERT_STREQ(line, "10 tasks  10 tasks/s");
    char small[8];
    ops_progress_format(small, sizeof small, 5, 10, 10, 1.0);
    CGA_ASSERT_EQ(strlen(small), 7);
}

int main(void) {
    CGA_RUN(test_determinism);
    CGA_RUN(test_bar_shape);
    CGA_RUN(test_regime_durations);
    CGA_RUN(test_regime_statistics);
    CGA_RUN(test_normal);
    CGA_RUN(test_windows);
    CGA_RUN(test_windows_interleaved);
    CGA_RUN(test_windows_refuse_time_going_back);
    CGA_RUN(test_windows_many_symbols);
    CGA_RUN(test_level);
    CGA_RUN(test_info_parse);
    CGA_RUN(test_accuracy);
    CGA_RUN(test_progress);
    fprintf(stderr, "ok\n");
    return 0;
}

/* nexus's regime fold (pure). */
#include "../../nexus/fold.c"

#include <stdio.h>

#include "cgalpha/err.h"
#include "test.h"

static cga_report_t rep(const char *sym, const char *lab, int64_t ws, cga_regime_t reg,
                        double conf) {
    cga_report_t r;
    memset(&r, 0, sizeof r);
    r.symbol = cga_str(sym);
    r.lab = cga_str(lab);
    r.task_id = cga_str("t");
    r.wstart = ws;
    r.regime = reg;
    r.confidence = conf;
    r.status = CGA_REPORT_OK;
    return r;
}

/* Feeds one window's votes from two labs; returns the number of changes seen. */
static int window(nx_fold_t *f, const char *sym, int64_t ws, cga_regime_t a, cga_regime_t b,
                  nx_change_t *last) {
    int n = 0;
    cga_report_t r1 = rep(sym, "trend", ws, a, 0.8), r2 = rep(sym, "volatility", ws, b, 0.6);
    nx_change_t ch;
    if (nx_fold_apply(f, &r1, &ch)) { n++; *last = ch; }
    if (nx_fold_apply(f, &r2, &ch)) { n++; *last = ch; }
    return n;
}

static void test_hysteresis_and_seq(void) {
    nx_fold_t *f;
    CGA_ASSERT_OK(nx_fold_create(&f, 2, 16));
    nx_change_t ch;
    CGA_ASSERT_EQ(window(f, "BTC", 0, CGA_REGIME_BULL, CGA_REGIME_UNKNOWN, &ch), 0);
    CGA_ASSERT_EQ(window(f, "BTC", 1000, CGA_REGIME_BULL, CGA_REGIME_UNKNOWN, &ch), 1);
    CGA_ASSERT_EQ(ch.from, CGA_REGIME_UNKNOWN);
    CGA_ASSERT_EQ(ch.to, CGA_REGIME_BULL);
    CGA_ASSERT_EQ(ch.seq, 1);
    CGA_ASSERT_EQ(ch.wstart, 0); /* the streak's first window */
    CGA_ASSERT_MEMEQ(ch.symbol, ch.symbol_len, "BTC", 3);
    /* one noisy window does not flip it */
    CGA_ASSERT_EQ(window(f, "BTC", 2000, CGA_REGIME_BEAR, CGA_REGIME_UNKNOWN, &ch), 0);
    CGA_ASSERT_EQ(window(f, "BTC", 3000, CGA_REGIME_BULL, CGA_REGIME_UNKNOWN, &ch), 0);
    /* two agreeing windows do */
    CGA_ASSERT_EQ(window(f, "BTC", 4000, CGA_REGIME_BEAR, CGA_REGIME_BEAR, &ch), 0);
    CGA_ASSERT_EQ(window(f, "BTC", 5000, CGA_REGIME_BEAR, CGA_REGIME_UNKNOWN, &ch), 1);
    CGA_ASSERT_EQ(ch.from, CGA_REGIME_BULL);
    CGA_ASSERT_EQ(ch.to, CGA_REGIME_BEAR);
    CGA_ASSERT_EQ(ch.seq, 2);
    uint64_t seq;
    CGA_ASSERT_EQ(nx_fold_current(f, cga_str("BTC"), &seq), CGA_REGIME_BEAR);
    CGA_ASSERT_EQ(seq, 2);
    nx_fold_free(f);
}

static void test_duplicates_change_nothing(void) {
    nx_fold_t *f;
    CGA_ASSERT_OK(nx_fold_create(&f, 2, 16));
    nx_change_t ch;
    int changes = 0;
    for (int rep_i = 0; rep_i < 3; rep_i++) /* every report delivered three times */
        for (int64_t w = 0; w < 6; w++)
            changes += window(f, "ETH", w * 1000, w < 3 ? CGA_REGIME_SIDEWAYS : CGA_REGIME_BULL,
                              CGA_REGIME_UNKNOWN, &ch);
    CGA_ASSERT_EQ(changes, 2); /* unknown -> sideways, sideways -> bull; duplicates add none */
    uint64_t seq;
    CGA_ASSERT_EQ(nx_fold_current(f, cga_str("ETH"), &seq), CGA_REGIME_BULL);
    CGA_ASSERT_EQ(seq, 2);
    nx_fold_free(f);
}

static void test_reordered_reports_same_outcome(void) {
    /* The same reports in two orders end in the same regime. */
    enum { W = 12 };
    cga_report_t reps[W * 2];
    for (int w = 0; w < W; w++) {
        cga_regime_t r = w < 6 ? CGA_REGIME_BEAR : CGA_REGIME_TURBULENT;
        reps[2 * w] = rep("SOL", "trend", w * 1000, r, 0.7);
        reps[2 * w + 1] = rep("SOL", "volatility", w * 1000, r, 0.9);
    }
    nx_fold_t *a, *b;
    CGA_ASSERT_OK(nx_fold_create(&a, 2, 16));
    CGA_ASSERT_OK(nx_fold_create(&b, 2, 16));
    nx_change_t ch;
    for (int i = 0; i < W * 2; i++) nx_fold_apply(a, &reps[i], &ch);
    unsigned seed = 7;
    for (int i = W * 2 - 1; i > 0; i--) { /* deterministic shuffle */
        seed = seed * 1103515245u + 12345u;
        int j = (int)((seed >> 16) % (unsigned)(i + 1));
        cga_report_t t = reps[i];
        reps[i] = reps[j];
        reps[j] = t;
    }
    for (int i = 0; i < W * 2; i++) nx_fold_apply(b, &reps[i], &ch);
    CGA_ASSERT_EQ(nx_fold_current(a, cga_str("SOL"), NULL), CGA_REGIME_TURBULENT);
    CGA_ASSERT_EQ(nx_fold_current(b, cga_str("SOL"), NULL), CGA_REGIME_TURBULENT);
    nx_fold_free(a);
    nx_fold_free(b);
}

static void test_unsettled_window_waits_for_every_lab(void) {
    nx_fold_t *f;
    CGA_ASSERT_OK(nx_fold_create(&f, 1, 16));
    nx_change_t ch;
    cga_report_t t0 = rep("X", "trend", 0, CGA_REGIME_BULL, 0.9);
    cga_report_t v0 = rep("X", "volatility", 0, CGA_REGIME_TURBULENT, 1.0);
    CGA_ASSERT_EQ(nx_fold_apply(f, &t0, &ch), 1); /* only lab seen so far: settled */
    CGA_ASSERT_EQ(ch.to, CGA_REGIME_BULL);
    CGA_ASSERT_EQ(nx_fold_apply(f, &v0, &ch), 1); /* the window now decides turbulent */
    CGA_ASSERT_EQ(ch.to, CGA_REGIME_TURBULENT);
    /* next window: trend alone is not settled (two labs report on X) */
    cga_report_t t1 = rep("X", "trend", 1000, CGA_REGIME_BULL, 0.9);
    CGA_ASSERT_EQ(nx_fold_apply(f, &t1, &ch), 0);
    cga_report_t v1 = rep("X", "volatility", 1000, CGA_REGIME_UNKNOWN, 0);
    CGA_ASSERT_EQ(nx_fold_apply(f, &v1, &ch), 1);
    CGA_ASSERT_EQ(ch.to, CGA_REGIME_BULL);
    nx_fold_free(f);
}

static void test_errors_and_old_windows_ignored(void) {
    nx_fold_t *f;
    CGA_ASSERT_OK(nx_fold_create(&f, 1, 2));
    nx_change_t ch;
    cga_report_t e = rep("Y", "trend", 0, CGA_REGIME_BULL, 1);
    e.status = CGA_REPORT_ERROR;
    CGA_ASSERT_EQ(nx_fold_apply(f, &e, &ch), 0);
    cga_report_t longsym = rep("THIS-SYMBOL-IS-FAR-TOO-LONG-TO-BE-A-SYMBOL", "trend", 0,
                               CGA_REGIME_BULL, 1);
    CGA_ASSERT_EQ(nx_fold_apply(f, &longsym, &ch), 0);
    cga_report_t a = rep("Y", "trend", 5000, CGA_REGIME_BEAR, 1);
    cga_report_t b = rep("Y", "trend", 6000, CGA_REGIME_BEAR, 1);
    CGA_ASSERT_EQ(nx_fold_apply(f, &a, &ch), 1);
    CGA_ASSERT_EQ(nx_fold_apply(f, &b, &ch), 0);
    cga_report_t old = rep("Y", "trend", 1000, CGA_REGIME_BULL, 1); /* older than all kept */
    CGA_ASSERT_EQ(nx_fold_apply(f, &old, &ch), 0);
    CGA_ASSERT_EQ(nx_fold_current(f, cga_str("Y"), NULL), CGA_REGIME_BEAR);
    CGA_ASSERT_EQ(nx_fold_create(&f, 0, 2), CGA_EINVAL);
    nx_fold_free(f);
}

static void test_restore_continues_sequence(void) {
    nx_fold_t *f;
    CGA_ASSERT_OK(nx_fold_create(&f, 1, 16));
    nx_fold_restore(f, cga_str("Z"), CGA_REGIME_BULL, 41);
    nx_fold_restore(f, cga_str("Z"), CGA_REGIME_BEAR, 7); /* older: ignored */
    nx_change_t ch;
    cga_report_t same = rep("Z", "trend", 0, CGA_REGIME_BULL, 1);
    CGA_ASSERT_EQ(nx_fold_apply(f, &same, &ch), 0); /* already bull */
    cga_report_t other = rep("Z", "trend", 1000, CGA_REGIME_SIDEWAYS, 1);
    CGA_ASSERT_EQ(nx_fold_apply(f, &other, &ch), 1);
    CGA_ASSERT_EQ(ch.seq, 42);
    CGA_ASSERT_EQ(ch.from, CGA_REGIME_BULL);
    nx_fold_free(f);
}

static void count_cb(cga_str_t s, cga_regime_t r, uint64_t seq, void *arg) {
    (void)s;
    (void)r;
    CGA_ASSERT_EQ(seq, 1);
    (*(int *)arg)++;
}

static void test_many_symbols(void) {
    nx_fold_t *f;
    CGA_ASSERT_OK(nx_fold_create(&f, 1, 4));
    nx_change_t ch;
    char sym[16];
    for (int i = 0; i < 5000; i++) {
        snprintf(sym, sizeof sym, "S%d", i);
        cga_report_t r = rep(sym, "trend", 0, (cga_regime_t)(1 + i % 4), 0.5);
        CGA_ASSERT_EQ(nx_fold_apply(f, &r, &ch), 1);
    }
    CGA_ASSERT_EQ(nx_fold_symbols(f), 5000);
    for (int i = 0; i < 5000; i += 97) {
        snprintf(sym, sizeof sym, "S%d", i);
        CGA_ASSERT_EQ(nx_fold_current(f, cga_str(sym), NULL), 1 + i % 4);
    }
    int n = 0;
    nx_fold_each(f, count_cb, &n);
    CGA_ASSERT_EQ(n, 5000);
    nx_fold_clear(f);
    CGA_ASSERT_EQ(nx_fold_symbols(f), 0);
    nx_fold_free(f);
}

int main(void) {
    CGA_RUN(test_hysteresis_and_seq);
    CGA_RUN(test_duplicates_change_nothing);
    CGA_RUN(test_reordered_reports_same_outcome);
    CGA_RUN(test_unsettled_window_waits_for_every_lab);
    CGA_RUN(test_errors_and_old_windows_ignored);
    CGA_RUN(test_restore_continues_sequence);
    CGA_RUN(test_many_symbols);
    return 0;
}

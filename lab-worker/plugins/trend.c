/* trend: votes by the t-statistic of the mean log return.
 *
 * For a window of n >= 3 bars with closes c[0..n), the k = n - 1 log returns
 * r[i] = ln(c[i] / c[i-1]) have mean m and sample standard deviation s (k - 1 in the
 * denominator). t = m / (s / sqrt(k)) asks "is the drift distinguishable from zero?":
 *
 *   t >  2   bull      confidence min(1, t / 4)       0.5 at the threshold, 1 from |t| = 4
 *   t < -2   bear      confidence min(1, -t / 4)
 *   else     sideways  confidence 0.4 * (1 - |t| / 4)  0.4 at t = 0, 0.2 at the threshold
 *
 * In the synthetic market (bull/bear: |mu| = 0.003, sigma = 0.006 per bar) a 32-bar window has
 * an expected |t| of 0.5 * sqrt(31) = 2.8: it votes the right direction about 3 times in 4 and
 * sideways otherwise. Without drift (sideways, turbulent) |t| < 2 about 95% of the time, so
 * trend votes sideways in a turbulent market too: telling turbulence apart is volatility's job.
 * That is why a sideways vote is weak (at most 0.4): "no drift seen" is also what a turbulent
 * window looks like, and two weak sideways votes must not outweigh one confident turbulent
 * vote when nexus sums the confidences.
 *
 * A window whose returns are all equal has s = 0; t is then taken as +-1000 (0 if m = 0), and
 * |t| is capped at 1000 in any case so that the metric stays finite.
 *
 * Metrics: mean_ret, stdev_ret, t_stat, n_returns.
 * Errors (returned, never a crash): fewer than 3 bars; a close that is not positive and finite.
 * Thread-safety: no state, no globals; analyze() only reads its input.
 *
 * Built exactly as a third-party plugin: it includes only cgalpha/lab.h and the C library. */

#include <math.h>
#include <stdio.h>

#include "cgalpha/lab.h"

#define T_THRESHOLD 2.0
#define T_FULL 4.0 /* |t| at which confidence reaches 1 */
#define SIDEWAYS_WEIGHT 0.4 /* the most a "no drift" vote weighs (see above) */
#define T_CAP 1000.0

/* Checks the window; returns 0 or -1 with out->error set. */
static int check_window(const cga_lab_input_t *in, cga_lab_output_t *out) {
    if (in->nbars < 3) {
        snprintf(out->error, sizeof out->error, "need at least 3 bars, got %zu", in->nbars);
        return -1;
    }
    for (size_t i = 0; i < in->nbars; i++) {
        double c = in->bars[i].close;
        if (!(c > 0) || !isfinite(c)) {
            snprintf(out->error, sizeof out->error,
                     "bar %zu (t=%lld): close %g is not a positive finite price", i,
                     (long long)in->bars[i].t, c);
            return -1;
        }
    }
    return 0;
}

static int trend_analyze(void *state, const cga_lab_input_t *in, cga_lab_output_t *out) {
    (void)state;
    if (check_window(in, out) != 0) return -1;

    /* Welford: mean and sum of squared deviations in one stable pass. */
    double mean = 0, m2 = 0;
    size_t k = 0;
    for (size_t i = 1; i < in->nbars; i++) {
        /* a difference of logs: the ratio of two extreme prices could overflow */
        double r = log(in->bars[i].close) - log(in->bars[i - 1].close);
        k++;
        double d = r - mean;
        mean += d / (double)k;
        m2 += d * (r - mean);
    }
    double sd = sqrt(m2 / (double)(k - 1));
    double t;
    if (sd > 0)
        t = mean / (sd / sqrt((double)k));
    else
        t = mean > 0 ? T_CAP : (mean < 0 ? -T_CAP : 0);
    if (t > T_CAP) t = T_CAP;
    if (t < -T_CAP) t = -T_CAP;

    if (t > T_THRESHOLD) {
        out->regime = CGA_REGIME_BULL;
        out->confidence = fmin(1.0, t / T_FULL);
    } else if (t < -T_THRESHOLD) {
        out->regime = CGA_REGIME_BEAR;
        out->confidence = fmin(1.0, -t / T_FULL);
    } else {
        out->regime = CGA_REGIME_SIDEWAYS;
        out->confidence = SIDEWAYS_WEIGHT * (1.0 - fabs(t) / T_FULL);
    }
    cga_lab_metric(out, "mean_ret", mean);
    cga_lab_metric(out, "stdev_ret", sd);
    cga_lab_metric(out, "t_stat", t);
    cga_lab_metric(out, "n_returns", (double)k);
    return 0;
}

static const cga_lab_plugin_t trend_plugin = {
    .abi_version = CGA_LAB_ABI_VERSION,
    .name = "trend",
    .version = "1.0.0",
    .description = "t-statistic of the mean log return: bull > 2, bear < -2, else sideways",
    .init = NULL,
    .analyze = trend_analyze,
    .fini = NULL,
};

CGA_LAB_PLUGIN const cga_lab_plugin_t *cga_lab_plugin_entry(void);
CGA_LAB_PLUGIN const cga_lab_plugin_t *cga_lab_plugin_entry(void) {
    return &trend_plugin;
}

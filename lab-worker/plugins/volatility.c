/* volatility: votes by the standard deviation of the log returns.
 *
 * For a window of n >= 3 bars with closes c[0..n), sigma is the sample standard deviation
 * (k - 1 in the denominator) of the k = n - 1 log returns r[i] = ln(c[i] / c[i-1]):
 *
 *   sigma >  0.012    turbulent  confidence min(1, sigma / 0.024)    0.5 at the threshold,
 *                                                                    1 from twice it
 *   sigma <  0.0045   sideways   confidence min(1, 0.00225 / sigma)  0.5 at the threshold,
 *                                                                    1 from half of it
 *   else              unknown    confidence 0
 *
 * The thresholds sit between the synthetic market's per-bar volatilities (sideways 0.003,
 * bull/bear 0.006, turbulent 0.03): a 32-bar window's sigma lands within about 15% of the true
 * value, so turbulent and sideways windows are recognised nearly always, and bull/bear windows
 * (whose volatility says nothing of their direction) get no vote.
 *
 * Metrics: sigma, n_returns.
 * Errors (returned, never a crash): fewer than 3 bars; a close that is not positive and finite.
 * Thread-safety: no state, no globals; analyze() only reads its input.
 *
 * Built exactly as a third-party plugin: it includes only cgalpha/lab.h and the C library. */

#include <math.h>
#include <stdio.h>

#include "cgalpha/lab.h"

#define SIGMA_TURBULENT 0.012
#define SIGMA_CALM 0.0045

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

static int volatility_analyze(void *state, const cga_lab_input_t *in, cga_lab_output_t *out) {
    (void)state;
    if (check_window(in, out) != 0) return -1;

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
    double sigma = sqrt(m2 / (double)(k - 1));

    if (sigma > SIGMA_TURBULENT) {
        out->regime = CGA_REGIME_TURBULENT;
        out->confidence = fmin(1.0, sigma / (2 * SIGMA_TURBULENT));
    } else if (sigma < SIGMA_CALM) {
        out->regime = CGA_REGIME_SIDEWAYS;
        out->confidence = sigma <= SIGMA_CALM / 2 ? 1.0 : (SIGMA_CALM / 2) / sigma;
    } else {
        out->regime = CGA_REGIME_UNKNOWN;
        out->confidence = 0;
    }
    cga_lab_metric(out, "sigma", sigma);
    cga_lab_metric(out, "n_returns", (double)k);
    return 0;
}

static const cga_lab_plugin_t volatility_plugin = {
    .abi_version = CGA_LAB_ABI_VERSION,
    .name = "volatility",
    .version = "1.0.0",
    .description = "stdev of log returns: turbulent > 0.012, sideways < 0.0045, else unknown",
    .init = NULL,
    .analyze = volatility_analyze,
    .fini = NULL,
};

CGA_LAB_PLUGIN const cga_lab_plugin_t *cga_lab_plugin_entry(void);
CGA_LAB_PLUGIN const cga_lab_plugin_t *cga_lab_plugin_entry(void) {
    return &volatility_plugin;
}

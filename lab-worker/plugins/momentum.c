/* momentum: votes by the window's total log return measured in standard deviations.
 *
 * For a window of n >= 3 bars with closes c[0..n), the k = n - 1 log returns
 * r[i] = ln(c[i] / c[i-1]) add up to the total move R = ln(c[n-1] / c[0]). Were the returns
 * driftless noise of per-bar volatility sigma, R would be about sigma * sqrt(k), so
 *
 *     z = R / (sigma * sqrt(k))
 *
 * says how unusual the move is. sigma is the window's realized volatility
 * sqrt(mean(r[i]^2)) - taken about zero, not about the mean: the drift is what momentum
 * measures, so it is not removed from the yardstick (unlike trend's t-statistic, which uses
 * the stdev about the mean). Then |z| <= sqrt(k) always, and z = 0 for a flat window.
 *
 *   z >  1.5   bull      confidence min(1, z / 3)       0.5 at the threshold, 1 from |z| = 3
 *   z < -1.5   bear      confidence min(1, -z / 3)
 *   else       sideways  confidence 0.4 * (1 - |z| / 3) 0.4 at z = 0, 0.2 at the threshold
 *   (a sideways vote is weak for the reason given in trend.c: no drift is also turbulence)
 *
 * In the synthetic market a 32-bar bull/bear window (|mu| = 0.003, sigma = 0.006) has an
 * expected |z| of about 2.5; a driftless one has |z| < 1.5 about 87% of the time.
 *
 * Configuration (--plugin momentum=CONFIG), items separated by ':' (not ',': LAB_PLUGINS is a
 * comma-separated list), both optional, e.g. momentum=sigma=0.006:threshold=2
 *   sigma=X      use a fixed per-bar volatility X > 0 instead of the realized one
 *   threshold=X  vote bull/bear beyond |z| > X (X > 0; default 1.5; confidence 1 from 2X)
 *
 * Metrics: total_ret, sigma, z, n_returns.
 * Errors (returned, never a crash): fewer than 3 bars; a close that is not positive and finite.
 * Thread-safety: the state made by init() is only read by analyze().
 *
 * Built exactly as a third-party plugin: it includes only cgalpha/lab.h and the C library. */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cgalpha/lab.h"

typedef struct momentum_cfg_s {
    double sigma;     /* 0: the window's realized volatility */
    double threshold; /* |z| beyond which it votes a direction */
} momentum_cfg_t;

/* Parses one "key=value" of length n into cfg; 0 or -1 with err set. */
static int parse_item(momentum_cfg_t *cfg, const char *s, size_t n, char *err, size_t errlen) {
    char item[64];
    if (n >= sizeof item) {
        snprintf(err, errlen, "configuration item too long: \"%.20s...\"", s);
        return -1;
    }
    memcpy(item, s, n);
    item[n] = '\0';
    char *eq = strchr(item, '=');
    if (!eq) {
        snprintf(err, errlen, "\"%s\": want key=value (keys: sigma, threshold)", item);
        return -1;
    }
    *eq = '\0';
    const char *val = eq + 1;
    char *end;
    double v = strtod(val, &end);
    if (end == val || *end != '\0' || !isfinite(v) || !(v > 0)) {
        snprintf(err, errlen, "%s: \"%s\" is not a positive number", item, val);
        return -1;
    }
    if (strcmp(item, "sigma") == 0) {
        cfg->sigma = v;
    } else if (strcmp(item, "threshold") == 0) {
        cfg->threshold = v;
    } else {
        snprintf(err, errlen, "unknown key \"%s\" (keys: sigma, threshold)", item);
        return -1;
    }
    return 0;
}

static int momentum_init(void **state, const char *config, char *err, size_t errlen) {
    momentum_cfg_t cfg = {.sigma = 0, .threshold = 1.5};
    if (config) {
        const char *p = config;
        while (*p) {
            size_t n = strcspn(p, ":");
            if (n > 0 && parse_item(&cfg, p, n, err, errlen) != 0) return -1;
            p += n;
            if (*p == ':') p++;
        }
    }
    momentum_cfg_t *s = malloc(sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    *s = cfg;
    *state = s;
    return 0;
}

static void momentum_fini(void *state) {
    free(state);
}

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

static int momentum_analyze(void *state, const cga_lab_input_t *in, cga_lab_output_t *out) {
    const momentum_cfg_t *cfg = state;
    if (check_window(in, out) != 0) return -1;

    double total = 0, sumsq = 0;
    size_t k = in->nbars - 1;
    for (size_t i = 1; i < in->nbars; i++) {
        /* a difference of logs: the ratio of two extreme prices could overflow */
        double r = log(in->bars[i].close) - log(in->bars[i - 1].close);
        total += r;
        sumsq += r * r;
    }
    double sigma = cfg->sigma > 0 ? cfg->sigma : sqrt(sumsq / (double)k);
    double z = sigma > 0 ? total / (sigma * sqrt((double)k)) : 0;
    if (!isfinite(z)) z = z > 0 ? 1e6 : -1e6; /* a tiny fixed sigma and a huge move */

    double th = cfg->threshold;
    if (z > th) {
        out->regime = CGA_REGIME_BULL;
        out->confidence = fmin(1.0, z / (2 * th));
    } else if (z < -th) {
        out->regime = CGA_REGIME_BEAR;
        out->confidence = fmin(1.0, -z / (2 * th));
    } else {
        out->regime = CGA_REGIME_SIDEWAYS;
        out->confidence = 0.4 * (1.0 - fabs(z) / (2 * th));
    }
    cga_lab_metric(out, "total_ret", total);
    cga_lab_metric(out, "sigma", sigma);
    cga_lab_metric(out, "z", z);
    cga_lab_metric(out, "n_returns", (double)k);
    return 0;
}

static const cga_lab_plugin_t momentum_plugin = {
    .abi_version = CGA_LAB_ABI_VERSION,
    .name = "momentum",
    .version = "1.0.0",
    .description = "total log return over sigma*sqrt(n): bull > 1.5, bear < -1.5, else sideways",
    .init = momentum_init,
    .analyze = momentum_analyze,
    .fini = momentum_fini,
};

CGA_LAB_PLUGIN const cga_lab_plugin_t *cga_lab_plugin_entry(void);
CGA_LAB_PLUGIN const cga_lab_plugin_t *cga_lab_plugin_entry(void) {
    return &momentum_plugin;
}

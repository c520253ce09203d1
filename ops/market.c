#include "market.h"

#include <math.h>
#include <stdio.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

uint64_t ops_synth_u64(ops_synth_t *g) {
    uint64_t *s = g->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double ops_synth_uniform(ops_synth_t *g) {
    return (double)(ops_synth_u64(g) >> 11) * 0x1.0p-53;
}

/* Box-Muller, one value per call (no cached spare: the state stays four words). */
double ops_synth_normal(ops_synth_t *g) {
    double u1 = 1.0 - ops_synth_uniform(g); /* (0, 1]: log() stays finite */
    double u2 = ops_synth_uniform(g);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Uniform integer in [lo, hi] (hi - lo small: the modulo bias is below 1e-16). */
static unsigned uniform_int(ops_synth_t *g, unsigned lo, unsigned hi) {
    return lo + (unsigned)(ops_synth_u64(g) % (uint64_t)(hi - lo + 1));
}

void ops_synth_params(cga_regime_t r, double *mu, double *sigma) {
    switch (r) {
    case CGA_REGIME_BULL: *mu = 0.003; *sigma = 0.006; return;
    case CGA_REGIME_BEAR: *mu = -0.003; *sigma = 0.006; return;
    case CGA_REGIME_SIDEWAYS: *mu = 0.0; *sigma = 0.003; return;
    case CGA_REGIME_TURBULENT: *mu = 0.0; *sigma = 0.03; return;
    default: *mu = 0.0; *sigma = 0.0; return;
    }
}

static void next_regime(ops_synth_t *g) {
    if (g->regime == CGA_REGIME_UNKNOWN) {
        g->regime = (cga_regime_t)uniform_int(g, CGA_REGIME_BULL, CGA_REGIME_TURBULENT);
    } else {
        /* One of the three others: skip over the current one. */
        unsigned r = uniform_int(g, CGA_REGIME_BULL, CGA_REGIME_TURBULENT - 1);
        if (r >= (unsigned)g->regime) r++;
        g->regime = (cga_regime_t)r;
    }
    g->left = uniform_int(g, OPS_SYNTH_RUN_MIN, OPS_SYNTH_RUN_MAX);
}

void ops_synth_init(ops_synth_t *g, uint64_t seed, unsigned symbol, int64_t t0_ms) {
    uint64_t x = seed ^ ((uint64_t)(symbol + 1) * UINT64_C(0xD1B54A32D192ED03));
    for (int i = 0; i < 4; i++) g->s[i] = splitmix64(&x);
    g->price = OPS_SYNTH_START_PRICE;
    g->t = t0_ms;
    g->regime = CGA_REGIME_UNKNOWN;
    g->left = 0;
    g->index = 0;
    next_regime(g);
}

void ops_synth_next(ops_synth_t *g, cga_bar_t *bar, cga_regime_t *regime) {
    if (g->left == 0) next_regime(g);
    double mu, sigma;
    ops_synth_params(g->regime, &mu, &sigma);
    double r = mu + sigma * ops_synth_normal(g);
    double open = g->price;
    double close = open * exp(r);
    /* Wicks: half a sigma-scaled half-normal beyond the body on each side. */
    double up = fabs(ops_synth_normal(g)) * sigma * 0.5;
    double down = fabs(ops_synth_normal(g)) * sigma * 0.5;
    double vol_scale = g->regime == CGA_REGIME_TURBULENT ? 3.0 : 1.0;
    bar->t = g->t;
    bar->open = open;
    bar->close = close;
    bar->high = (open > close ? open : close) * exp(up);
    bar->low = (open < close ? open : close) * exp(-down);
    bar->volume = round(1000.0 * vol_scale * exp(0.3 * ops_synth_normal(g)));
    *regime = g->regime;
    g->price = close;
    g->t += OPS_SYNTH_BAR_MS;
    g->left--;
    g->index++;
}

void ops_synth_symbol(char *out, size_t n, unsigned i) {
    snprintf(out, n, "SYN%u", i);
}

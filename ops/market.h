#ifndef CGA_OPS_MARKET_H
#define CGA_OPS_MARKET_H

/* The synthetic market of `cgalpha-ops --source synthetic` (pure: no I/O, no clock).
 *
 * Each symbol is a random walk of 1-minute bars whose log returns ln(close/open) are normal
 * with a drift and a volatility that depend on the current regime:
 *     bull      mu = +0.003  sigma = 0.006
 *     bear      mu = -0.003  sigma = 0.006
 *     sideways  mu =  0      sigma = 0.003
 *     turbulent mu =  0      sigma = 0.03
 * A regime lasts a random 150..400 bars (both included); the next regime is drawn among the
 * three others. Everything comes from a xoshiro256** generator seeded from (seed, symbol
 * index), so the same seed gives the same bars on every machine, and each symbol's series does
 * not depend on how many other symbols are generated. A bar opens at the previous close. */

#include <stddef.h>
#include <stdint.h>
#include "cgalpha/types.h"

#define OPS_SYNTH_BAR_MS 60000
#define OPS_SYNTH_RUN_MIN 150
#define OPS_SYNTH_RUN_MAX 400
#define OPS_SYNTH_START_PRICE 100.0
/* 2024-01-01T00:00:00Z, the default time of every symbol's first bar. */
#define OPS_SYNTH_T0_MS INT64_C(1704067200000)

typedef struct ops_synth_s {
    uint64_t s[4];        /* xoshiro256** state */
    double price;         /* last close */
    int64_t t;            /* next bar's time, ms */
    cga_regime_t regime;  /* current regime */
    unsigned left;        /* bars left in the current regime */
    uint64_t index;       /* bars generated */
} ops_synth_t;

/* Starts symbol number `symbol` (0-based) of the market seeded by seed; its first bar is at
 * t0_ms. */
void ops_synth_init(ops_synth_t *g, uint64_t seed, unsigned symbol, int64_t t0_ms);

/* Generates the next bar into *bar and the regime it was drawn from into *regime. */
void ops_synth_next(ops_synth_t *g, cga_bar_t *bar, cga_regime_t *regime);

/* The drift and volatility of a regime (unknown: 0, 0). */
void ops_synth_params(cga_regime_t r, double *mu, double *sigma);

/* The generator's primitives, exposed for tests: a uniform 64-bit value, a uniform double in
 * [0, 1), a standard normal value. */
uint64_t ops_synth_u64(ops_synth_t *g);
double ops_synth_uniform(ops_synth_t *g);
double ops_synth_normal(ops_synth_t *g);

/* "SYN<i>" into out[n]. */
void ops_synth_symbol(char *out, size_t n, unsigned i);

#endif

#ifndef CGA_NEXUS_FOLD_H
#define CGA_NEXUS_FOLD_H

/* The regime fold: reports in, regime changes out. Pure (no I/O, no clock), deterministic.
 *
 * For each symbol it keeps the most recent windows (keyed by the window's start, wstart) and,
 * in each window, the latest vote of each lab (regime + confidence). A window's decision is the
 * regime with the largest summed confidence (ties and no votes: unknown). A window is settled
 * once it holds as many votes as the most any of the symbol's kept windows holds, i.e. every
 * lab that reports on the symbol has voted. The symbol's regime changes to X when its latest
 * `hysteresis` settled windows all decide X, so that one noisy window does not flip it.
 *
 * Keyed by (symbol, wstart, lab), never by arrival: a duplicated report rewrites the same slot
 * and changes nothing; a late report for an old window changes only that window's decision. */

#include <stddef.h>
#include <stdint.h>

#include "cgalpha/proto.h"

typedef struct nx_fold_s nx_fold_t;

typedef struct nx_change_s {
    char symbol[40];
    size_t symbol_len;
    uint64_t seq;        /* per-symbol, 1, 2, 3 ... */
    cga_regime_t from;
    cga_regime_t to;
    int64_t wstart;      /* start of the first window of the deciding streak */
    double confidence;   /* mean winning share of the deciding windows, 0..1 */
} nx_change_t;

#define NX_FOLD_MAX_LABS 32
#define NX_FOLD_MAX_WINDOWS 64

/* hysteresis: 1..8 windows; keep: windows kept per symbol, hysteresis..NX_FOLD_MAX_WINDOWS. */
int nx_fold_create(nx_fold_t **out, unsigned hysteresis, unsigned keep);
void nx_fold_free(nx_fold_t *f);

/* Sets a symbol's current regime and last sequence number (state reloaded at takeover).
 * A larger seq than known wins; the regime is set only when seq is the largest seen. */
void nx_fold_restore(nx_fold_t *f, cga_str_t symbol, cga_regime_t current, uint64_t seq);

/* Folds one report. Returns 1 and fills *change when the symbol's regime changed, else 0.
 * Reports with an error status, an empty symbol or a symbol over 32 bytes change nothing. */
int nx_fold_apply(nx_fold_t *f, const cga_report_t *r, nx_change_t *change);

/* The symbol's current regime (UNKNOWN if never decided) and seq (0 if none). */
cga_regime_t nx_fold_current(const nx_fold_t *f, cga_str_t symbol, uint64_t *seq);

/* Calls cb for every symbol with a decided regime. */
void nx_fold_each(const nx_fold_t *f,
                  void (*cb)(cga_str_t symbol, cga_regime_t regime, uint64_t seq, void *arg),
                  void *arg);

size_t nx_fold_symbols(const nx_fold_t *f);

/* Forgets everything (a nexus that lost leadership reloads from Redis on its next term). */
void nx_fold_clear(nx_fold_t *f);

#endif

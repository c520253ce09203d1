#ifndef CGA_OPS_WINDOW_H
#define CGA_OPS_WINDOW_H

/* Cutting each symbol's bars into overlapping windows (pure: no I/O).
 *
 * Bars arrive one at a time, symbols interleaved in any way. For each symbol the cutter keeps
 * the last `window` bars; a window is complete at the symbol's window-th bar, then every `step`
 * bars after it (bars 0..w-1, step..step+w-1, ...). When step > window the bars between two
 * windows belong to none. Bars left at the end that do not complete a window are not emitted.
 * A bar whose time is not after the symbol's previous bar is refused (a task's bars must be
 * strictly ascending). */

#include <stddef.h>
#include <stdint.h>
#include "cgalpha/types.h"

#define OPS_SYMBOL_MAX 32

typedef struct ops_cutter_s ops_cutter_t;

/* window >= 1, step >= 1. Returns CGA_OK and owned *out, or CGA_EINVAL. */
int ops_cutter_create(ops_cutter_t **out, size_t window, size_t step);
void ops_cutter_free(ops_cutter_t *c);

/* Adds one bar of symbol sym (1..OPS_SYMBOL_MAX bytes, not NUL-terminated). Returns 1 when this
 * bar completes a window: *bars (window bars, ascending) and *symbol (NUL-terminated) stay valid
 * until the next call; 0 when it does not; CGA_EINVAL when the bar's time is not after the
 * symbol's previous bar (the bar is ignored) or sym has a bad length. */
int ops_cutter_push(ops_cutter_t *c, const char *sym, size_t symlen, const cga_bar_t *bar,
                    const cga_bar_t **bars, const char **symbol);

/* The last time accepted for sym, for error messages; 0 when unknown. */
int64_t ops_cutter_last_t(const ops_cutter_t *c, const char *sym, size_t symlen);

/* Distinct symbols seen. */
size_t ops_cutter_symbols(const ops_cutter_t *c);

/* Windows a series of n bars yields. */
uint64_t ops_window_count(uint64_t n, size_t window, size_t step);

#endif

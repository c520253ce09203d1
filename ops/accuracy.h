#ifndef CGA_OPS_ACCURACY_H
#define CGA_OPS_ACCURACY_H

/* Accuracy of the detected regimes against the synthetic truth (pure).
 *
 * For each symbol the detected regime at time t is the `to` of the last change with ws <= t
 * (changes ordered by ws, then seq). Bars before the symbol's first change are skipped; the
 * others count as correct when the detected regime equals the truth. */

#include <stddef.h>
#include <stdint.h>
#include "cgalpha/types.h"

typedef struct ops_acc_s ops_acc_t;

typedef struct ops_acc_result_s {
    const char *symbol;
    uint64_t bars;     /* bars compared */
    uint64_t correct;
    uint64_t skipped;  /* bars before the first detection */
    uint64_t changes;  /* regime changes seen */
} ops_acc_result_t;

int ops_acc_create(ops_acc_t **out);
void ops_acc_free(ops_acc_t *a);

/* Parses one truth line "symbol,t,regime". Returns 1 for a row, 0 for the header or a blank
 * line, CGA_EINVAL with the reason in err. */
int ops_acc_parse_truth(const char *line, size_t len, char *sym, size_t symcap, int64_t *t,
                        cga_regime_t *regime, char *err, size_t errlen);

void ops_acc_add_truth(ops_acc_t *a, const char *sym, int64_t t, cga_regime_t regime);
void ops_acc_add_change(ops_acc_t *a, const char *sym, size_t symlen, int64_t ws, uint64_t seq,
                        cga_regime_t to);

/* Computes; results per truth symbol (sorted by name) and overall (symbol "overall"). Valid
 * until the next call or free. */
void ops_acc_compute(ops_acc_t *a, const ops_acc_result_t **per, size_t *n,
                     ops_acc_result_t *overall);

#endif

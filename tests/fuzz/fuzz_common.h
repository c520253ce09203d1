#ifndef CGA_FUZZ_COMMON_H
#define CGA_FUZZ_COMMON_H

/* Shared by the proto fuzzers: checks that abort (so libFuzzer reports them) and field-by-field
 * comparisons. Floats compare bit for bit: a decoded value re-encodes as float64 exactly. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cgalpha/err.h"
#include "cgalpha/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Undefined behaviour is a finding: stop at the first report (the build does not pass
 * -fno-sanitize-recover to the fuzzers). Read by the UBSan runtime at start. */
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void) {
    return "halt_on_error=1:print_stacktrace=1";
}

#define FZ_CHECK(cond, r)                                                                  \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: check failed: %s (%s)\n", __FILE__, __LINE__, #cond,   \
                    (r) ? (r) : "");                                                       \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

/* Decoders fail only with these codes, and always say why. */
static inline void fz_check_failure(int rc, const char *err) {
    FZ_CHECK(rc == CGA_EPROTO || rc == CGA_ETOOBIG || rc == CGA_EDEPTH, err);
    FZ_CHECK(err && err[0] != '\0', "empty error text");
}

static inline int fz_str_eq(cga_str_t a, cga_str_t b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static inline int fz_dbl_eq(double a, double b) {
    return memcmp(&a, &b, sizeof a) == 0;
}

static inline int fz_task_eq(const cga_task_t *a, const cga_task_t *b) {
    if (!fz_str_eq(a->id, b->id) || !fz_str_eq(a->lab, b->lab) ||
        !fz_str_eq(a->symbol, b->symbol) || a->enq_us != b->enq_us || a->nbars != b->nbars)
        return 0;
    for (size_t i = 0; i < a->nbars; i++) {
        const cga_bar_t *x = &a->bars[i], *y = &b->bars[i];
        if (x->t != y->t || !fz_dbl_eq(x->open, y->open) || !fz_dbl_eq(x->high, y->high) ||
            !fz_dbl_eq(x->low, y->low) || !fz_dbl_eq(x->close, y->close) ||
            !fz_dbl_eq(x->volume, y->volume))
            return 0;
    }
    return 1;
}

static inline int fz_report_eq(const cga_report_t *a, const cga_report_t *b) {
    if (!fz_str_eq(a->task_id, b->task_id) || !fz_str_eq(a->lab, b->lab) ||
        !fz_str_eq(a->symbol, b->symbol) || !fz_str_eq(a->worker, b->worker) ||
        a->wstart != b->wstart || a->wend != b->wend || a->enq_us != b->enq_us ||
        a->done_us != b->done_us || a->run_us != b->run_us || a->status != b->status ||
        !fz_str_eq(a->error, b->error) || a->regime != b->regime ||
        !fz_dbl_eq(a->confidence, b->confidence) || a->nmetrics != b->nmetrics)
        return 0;
    for (size_t i = 0; i < a->nmetrics; i++)
        if (!fz_str_eq(a->metrics[i].name, b->metrics[i].name) ||
            !fz_dbl_eq(a->metrics[i].value, b->metrics[i].value))
            return 0;
    return 1;
}

/* Limits for re-encoding: a decoded message may grow when re-encoded (ints become float64),
 * so the round trip must not trip over max_message_bytes. */
static inline cga_proto_limits_t fz_roomy_limits(void) {
    cga_proto_limits_t l;
    cga_proto_limits_init(&l);
    l.max_message_bytes = (size_t)1 << 30;
    return l;
}

#endif

#ifndef CGALPHA_BREAKER_H
#define CGALPHA_BREAKER_H

#include <stdint.h>
#include "cgalpha/export.h"

/* Circuit breaker, pure (no I/O, no clock of its own: callers pass now in ms).
 *   CLOSED    calls pass; `failures` consecutive failures open it.
 *   OPEN      calls fail fast; after open_ms it becomes HALF_OPEN.
 *   HALF_OPEN one trial call passes (others fail fast); success closes, failure re-opens. */
typedef struct cga_breaker_s cga_breaker_t;

typedef enum cga_breaker_state {
    CGA_BREAKER_CLOSED = 0,
    CGA_BREAKER_OPEN = 1,
    CGA_BREAKER_HALF_OPEN = 2,
} cga_breaker_state_t;

/* failures >= 1, open_ms >= 1. Returns owned *out; CGA_EINVAL on bad arguments. */
CGA_EXTERN int cga_breaker_create(cga_breaker_t **out, unsigned failures, uint64_t open_ms);
CGA_EXTERN void cga_breaker_free(cga_breaker_t *b);

/* 1 if a call may go ahead now (and, in HALF_OPEN, marks the trial as taken), else 0. */
CGA_EXTERN int cga_breaker_allow(cga_breaker_t *b, uint64_t now_ms);

/* Records the outcome of a call that was allowed. */
CGA_EXTERN void cga_breaker_success(cga_breaker_t *b, uint64_t now_ms);
CGA_EXTERN void cga_breaker_failure(cga_breaker_t *b, uint64_t now_ms);

/* State at now_ms (OPEN turns HALF_OPEN once open_ms have passed). */
CGA_EXTERN cga_breaker_state_t cga_breaker_state(cga_breaker_t *b, uint64_t now_ms);

/* "closed", "open" or "half-open". */
CGA_EXTERN const char *cga_breaker_state_name(cga_breaker_state_t s);

/* Times the breaker opened since creation. */
CGA_EXTERN uint64_t cga_breaker_trips(const cga_breaker_t *b);

#endif

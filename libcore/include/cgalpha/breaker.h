#ifndef CGALPHA_BREAKER_H
#define CGALPHA_BREAKER_H

#include <stdint.h>
#include "cgalpha/export.h"

/* Circuit breaker, pure (no I/O, no clock of its own: callers pass now in ms, any monotonic
 * clock, e.g. cga_clock_mono_ms(); uv_now() of a loop is the same clock).
 *   CLOSED    calls pass; `failures` consecutive failures open it (a success resets the count).
 *   OPEN      calls fail fast; after open_ms it becomes HALF_OPEN.
 *   HALF_OPEN one trial call passes (others fail fast); success closes, failure re-opens.
 * Outcomes reported while OPEN (a call allowed before it opened) change nothing. A success
 * in HALF_OPEN closes it even if reported by a call other than the trial. Not thread-safe. */
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

/* Closes the breaker whatever its state (the protected resource proved healthy by other
 * means: for Redis, a connection that became ready). */
CGA_EXTERN void cga_breaker_reset(cga_breaker_t *b);

/* State at now_ms (OPEN turns HALF_OPEN once open_ms have passed). */
CGA_EXTERN cga_breaker_state_t cga_breaker_state(cga_breaker_t *b, uint64_t now_ms);

/* "closed", "open" or "half-open". */
CGA_EXTERN const char *cga_breaker_state_name(cga_breaker_state_t s);

/* Times the breaker opened since creation. */
CGA_EXTERN uint64_t cga_breaker_trips(const cga_breaker_t *b);

/* Milliseconds from now_ms until an OPEN breaker turns HALF_OPEN; 0 when it is not OPEN
 * (CLOSED, or HALF_OPEN already). Lets a caller schedule its trial. */
CGA_EXTERN uint64_t cga_breaker_retry_in_ms(const cga_breaker_t *b, uint64_t now_ms);

#endif

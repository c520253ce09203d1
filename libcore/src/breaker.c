#include "cgalpha/breaker.h"

#include <stdlib.h>

#include "cgalpha/alloc.h"
#include "cgalpha/err.h"

struct cga_breaker_s {
    unsigned threshold;      /* consecutive failures that open it */
    uint64_t open_ms;        /* OPEN -> HALF_OPEN after this */
    cga_breaker_state_t state;
    unsigned failures;       /* consecutive failures while CLOSED */
    uint64_t opened_at;      /* now_ms when it last opened */
    int trial_taken;         /* HALF_OPEN: the single trial has been handed out */
    uint64_t trips;
};

int cga_breaker_create(cga_breaker_t **out, unsigned failures, uint64_t open_ms) {
    if (!out || failures < 1 || open_ms < 1) return CGA_EINVAL;
    cga_breaker_t *b = cga_calloc(1, sizeof *b);
    b->threshold = failures;
    b->open_ms = open_ms;
    b->state = CGA_BREAKER_CLOSED;
    *out = b;
    return CGA_OK;
}

void cga_breaker_free(cga_breaker_t *b) { free(b); }

/* OPEN turns HALF_OPEN once open_ms have passed (a clock that went back counts as not yet). */
static void advance(cga_breaker_t *b, uint64_t now_ms) {
    if (b->state == CGA_BREAKER_OPEN && now_ms >= b->opened_at &&
        now_ms - b->opened_at >= b->open_ms) {
        b->state = CGA_BREAKER_HALF_OPEN;
        b->trial_taken = 0;
    }
}

static void trip(cga_breaker_t *b, uint64_t now_ms) {
    b->state = CGA_BREAKER_OPEN;
    b->opened_at = now_ms;
    b->trial_taken = 0;
    b->failures = 0;
    b->trips++;
}

int cga_breaker_allow(cga_breaker_t *b, uint64_t now_ms) {
    advance(b, now_ms);
    switch (b->state) {
    case CGA_BREAKER_CLOSED: return 1;
    case CGA_BREAKER_OPEN: return 0;
    case CGA_BREAKER_HALF_OPEN:
        if (b->trial_taken) return 0;
        b->trial_taken = 1;
        return 1;
    }
    return 0;
}

void cga_breaker_success(cga_breaker_t *b, uint64_t now_ms) {
    advance(b, now_ms);
    if (b->state == CGA_BREAKER_OPEN) return;
    b->state = CGA_BREAKER_CLOSED;
    b->failures = 0;
    b->trial_taken = 0;
}

void cga_breaker_reset(cga_breaker_t *b) {
    b->state = CGA_BREAKER_CLOSED;
    b->failures = 0;
    b->trial_taken = 0;
}

void cga_breaker_failure(cga_breaker_t *b, uint64_t now_ms) {
    advance(b, now_ms);
    switch (b->state) {
    case CGA_BREAKER_CLOSED:
        if (++b->failures >= b->threshold) trip(b, now_ms);
        break;
    case CGA_BREAKER_HALF_OPEN: trip(b, now_ms); break;
    case CGA_BREAKER_OPEN: break;
    }
}

cga_breaker_state_t cga_breaker_state(cga_breaker_t *b, uint64_t now_ms) {
    advance(b, now_ms);
    return b->state;
}

const char *cga_breaker_state_name(cga_breaker_state_t s) {
    switch (s) {
    case CGA_BREAKER_CLOSED: return "closed";
    case CGA_BREAKER_OPEN: return "open";
    case CGA_BREAKER_HALF_OPEN: return "half-open";
    }
    return "unknown";
}

uint64_t cga_breaker_trips(const cga_breaker_t *b) { return b->trips; }

uint64_t cga_breaker_retry_in_ms(const cga_breaker_t *b, uint64_t now_ms) {
    if (b->state != CGA_BREAKER_OPEN) return 0;
    if (now_ms < b->opened_at) return b->open_ms;
    uint64_t elapsed = now_ms - b->opened_at;
    return elapsed >= b->open_ms ? 0 : b->open_ms - elapsed;
}

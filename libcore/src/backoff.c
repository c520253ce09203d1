#include "cgalpha/redis.h"

/* Exponential backoff with full jitter (see redis.h): uniform in [0, min(cap, base * 2^attempt)],
 * at least 1 ms. Overflow-safe for any attempt. */
unsigned cga_backoff_delay_ms(unsigned base_ms, unsigned cap_ms, unsigned attempt, uint32_t rnd) {
    uint64_t ceiling = cap_ms;
    if (attempt < 32 && ((uint64_t)base_ms << attempt) < ceiling)
        ceiling = (uint64_t)base_ms << attempt;
    /* rnd scaled onto [0, ceiling] without modulo bias worth speaking of */
    uint64_t d = ((uint64_t)rnd * (ceiling + 1)) >> 32;
    return d < 1 ? 1u : (unsigned)d;
}

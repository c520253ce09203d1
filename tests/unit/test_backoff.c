#include <limits.h>

#include "cgalpha/redis.h"
#include "test.h"

/* rnd = 0 gives the floor (1 ms), rnd = UINT32_MAX the ceiling min(cap, base * 2^attempt). */
static void test_bounds_and_growth(void) {
    unsigned want[] = {100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000};
    for (unsigned a = 0; a < sizeof want / sizeof want[0]; a++) {
        CGA_ASSERT_EQ(cga_backoff_delay_ms(100, 5000, a, 0), 1);
        CGA_ASSERT_EQ(cga_backoff_delay_ms(100, 5000, a, UINT32_MAX), want[a]);
    }
    /* midpoint scales with the ceiling */
    CGA_ASSERT_EQ(cga_backoff_delay_ms(100, 5000, 0, 0x80000000u), 50);
    CGA_ASSERT_EQ(cga_backoff_delay_ms(100, 5000, 3, 0x80000000u), 400);
}

static void test_overflow_safe(void) {
    unsigned attempts[] = {31, 32, 33, 63, 64, 1000, UINT_MAX};
    for (size_t i = 0; i < sizeof attempts / sizeof attempts[0]; i++) {
        CGA_ASSERT_EQ(cga_backoff_delay_ms(100, 5000, attempts[i], UINT32_MAX), 5000);
        CGA_ASSERT_EQ(cga_backoff_delay_ms(UINT_MAX, UINT_MAX, attempts[i], UINT32_MAX),
                      UINT_MAX);
    }
    CGA_ASSERT_EQ(cga_backoff_delay_ms(UINT_MAX, UINT_MAX, 0, UINT32_MAX), UINT_MAX);
    /* degenerate settings still give at least 1 ms */
    CGA_ASSERT_EQ(cga_backoff_delay_ms(0, 0, 5, UINT32_MAX), 1);
    CGA_ASSERT_EQ(cga_backoff_delay_ms(0, 5000, 5, UINT32_MAX), 1);
    CGA_ASSERT_EQ(cga_backoff_delay_ms(100, 0, 5, UINT32_MAX), 1);
}

/* Full jitter: with a uniform rnd the delays cover [1, ceiling] evenly, not just the top. */
static void test_jitter_range(void) {
    uint32_t x = 12345;
    unsigned lo = UINT_MAX, hi = 0;
    double sum = 0;
    int buckets[4] = {0};
    const int n = 20000;
    for (int i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        unsigned d = cga_backoff_delay_ms(100, 5000, 4, x); /* ceiling 1600 */
        CGA_ASSERT_OP(d, >=, 1);
        CGA_ASSERT_OP(d, <=, 1600);
        if (d < lo) lo = d;
        if (d > hi) hi = d;
        sum += d;
        buckets[d * 4 / 1601]++;
    }
    CGA_ASSERT_OP(lo, <, 20);
    CGA_ASSERT_OP(hi, >, 1580);
    CGA_ASSERT_OP(sum / n, >, 750);
    CGA_ASSERT_OP(sum / n, <, 850);
    for (int b = 0; b < 4; b++) CGA_ASSERT_OP(buckets[b], >, n / 4 - n / 20);
}

int main(void) {
    CGA_RUN(test_bounds_and_growth);
    CGA_RUN(test_overflow_safe);
    CGA_RUN(test_jitter_range);
    return 0;
}

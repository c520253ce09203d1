#include "cgalpha/breaker.h"
#include "cgalpha/err.h"
#include "test.h"

static void test_create_validation(void) {
    cga_breaker_t *b = NULL;
    CGA_ASSERT_EQ(cga_breaker_create(&b, 0, 100), CGA_EINVAL);
    CGA_ASSERT_EQ(cga_breaker_create(&b, 3, 0), CGA_EINVAL);
    CGA_ASSERT_EQ(cga_breaker_create(NULL, 3, 100), CGA_EINVAL);
    CGA_ASSERT_OK(cga_breaker_create(&b, 3, 100));
    CGA_ASSERT_EQ(cga_breaker_state(b, 0), CGA_BREAKER_CLOSED);
    CGA_ASSERT_EQ(cga_breaker_trips(b), 0);
    cga_breaker_free(b);
    cga_breaker_free(NULL);
}

/* CLOSED stays closed below the threshold; a success resets the consecutive count. */
static void test_closed_counts_consecutive(void) {
    cga_breaker_t *b;
    CGA_ASSERT_OK(cga_breaker_create(&b, 3, 1000));
    for (int round = 0; round < 5; round++) {
        CGA_ASSERT(cga_breaker_allow(b, 10));
        cga_breaker_failure(b, 10);
        CGA_ASSERT(cga_breaker_allow(b, 10));
        cga_breaker_failure(b, 10);
        CGA_ASSERT_EQ(cga_breaker_state(b, 10), CGA_BREAKER_CLOSED);
        cga_breaker_success(b, 10); /* resets: 2 + 2 failures never open it */
    }
    CGA_ASSERT_EQ(cga_breaker_trips(b), 0);
    cga_breaker_free(b);
}

static void test_full_cycle(void) {
    cga_breaker_t *b;
    CGA_ASSERT_OK(cga_breaker_create(&b, 3, 1000));
    uint64_t t = 5000;
    for (int i = 0; i < 3; i++) {
        CGA_ASSERT(cga_breaker_allow(b, t));
        cga_breaker_failure(b, t);
    }
    /* closed -> open after N failures */
    CGA_ASSERT_EQ(cga_breaker_state(b, t), CGA_BREAKER_OPEN);
    CGA_ASSERT_EQ(cga_breaker_trips(b), 1);
    CGA_ASSERT_STREQ(cga_breaker_state_name(cga_breaker_state(b, t)), "open");
    CGA_ASSERT_EQ(cga_breaker_retry_in_ms(b, t), 1000);
    CGA_ASSERT_EQ(cga_breaker_retry_in_ms(b, t + 400), 600);

    /* open fails fast until open_ms have passed */
    CGA_ASSERT_EQ(cga_breaker_allow(b, t), 0);
    CGA_ASSERT_EQ(cga_breaker_allow(b, t + 999), 0);
    CGA_ASSERT_EQ(cga_breaker_state(b, t + 999), CGA_BREAKER_OPEN);

    /* half-open: exactly one trial */
    CGA_ASSERT_EQ(cga_breaker_state(b, t + 1000), CGA_BREAKER_HALF_OPEN);
    CGA_ASSERT_EQ(cga_breaker_retry_in_ms(b, t + 1000), 0);
    CGA_ASSERT_STREQ(cga_breaker_state_name(CGA_BREAKER_HALF_OPEN), "half-open");
    CGA_ASSERT_EQ(cga_breaker_allow(b, t + 1000), 1);
    CGA_ASSERT_EQ(cga_breaker_allow(b, t + 1001), 0);
    CGA_ASSERT_EQ(cga_breaker_allow(b, t + 5000), 0);

    /* trial fails: open again, from the failure's time */
    cga_breaker_failure(b, t + 1200);
    CGA_ASSERT_EQ(cga_breaker_state(b, t + 1200), CGA_BREAKER_OPEN);
    CGA_ASSERT_EQ(cga_breaker_trips(b), 2);
    CGA_ASSERT_EQ(cga_breaker_allow(b, t + 2199), 0);
    CGA_ASSERT_EQ(cga_breaker_state(b, t + 2200), CGA_BREAKER_HALF_OPEN);

    /* trial succeeds: closed, count reset */
    CGA_ASSERT_EQ(cga_breaker_allow(b, t + 2200), 1);
    cga_breaker_success(b, t + 2300);
    CGA_ASSERT_EQ(cga_breaker_state(b, t + 2300), CGA_BREAKER_CLOSED);
    CGA_ASSERT_STREQ(cga_breaker_state_name(CGA_BREAKER_CLOSED), "closed");
    CGA_ASSERT(cga_breaker_allow(b, t + 2300));
    CGA_ASSERT(cga_breaker_allow(b, t + 2300));
    cga_breaker_failure(b, t + 2400);
    cga_breaker_failure(b, t + 2400);
    CGA_ASSERT_EQ(cga_breaker_state(b, t + 2400), CGA_BREAKER_CLOSED);
    cga_breaker_failure(b, t + 2400);
    CGA_ASSERT_EQ(cga_breaker_state(b, t + 2400), CGA_BREAKER_OPEN);
    CGA_ASSERT_EQ(cga_breaker_trips(b), 3);
    cga_breaker_free(b);
}

/* Outcomes reported while OPEN (calls allowed before it opened) change nothing. */
static void test_late_outcomes_while_open(void) {
    cga_breaker_t *b;
    CGA_ASSERT_OK(cga_breaker_create(&b, 1, 100));
    CGA_ASSERT(cga_breaker_allow(b, 0));
    CGA_ASSERT(cga_breaker_allow(b, 0));
    cga_breaker_failure(b, 0);
    CGA_ASSERT_EQ(cga_breaker_state(b, 0), CGA_BREAKER_OPEN);
    cga_breaker_success(b, 50);
    CGA_ASSERT_EQ(cga_breaker_state(b, 50), CGA_BREAKER_OPEN);
    cga_breaker_failure(b, 60); /* does not push the half-open time back */
    CGA_ASSERT_EQ(cga_breaker_state(b, 100), CGA_BREAKER_HALF_OPEN);
    CGA_ASSERT_EQ(cga_breaker_trips(b), 1);
    cga_breaker_free(b);
}

/* A clock that goes backwards never makes an open breaker half-open early. */
static void test_clock_backwards(void) {
    cga_breaker_t *b;
    CGA_ASSERT_OK(cga_breaker_create(&b, 1, 100));
    cga_breaker_failure(b, 1000);
    CGA_ASSERT_EQ(cga_breaker_state(b, 10), CGA_BREAKER_OPEN);
    CGA_ASSERT_EQ(cga_breaker_allow(b, 10), 0);
    CGA_ASSERT_EQ(cga_breaker_retry_in_ms(b, 10), 100);
    CGA_ASSERT_EQ(cga_breaker_state(b, 1100), CGA_BREAKER_HALF_OPEN);
    cga_breaker_free(b);
}

/* reset closes from any state (Redis: a ready connection proves it healthy). */
static void test_reset(void) {
    cga_breaker_t *b;
    CGA_ASSERT_OK(cga_breaker_create(&b, 2, 1000));
    cga_breaker_failure(b, 0);
    cga_breaker_failure(b, 0);
    CGA_ASSERT_EQ(cga_breaker_state(b, 10), CGA_BREAKER_OPEN);
    CGA_ASSERT_EQ(cga_breaker_allow(b, 10), 0);
    cga_breaker_reset(b);
    CGA_ASSERT_EQ(cga_breaker_state(b, 10), CGA_BREAKER_CLOSED);
    CGA_ASSERT_EQ(cga_breaker_allow(b, 10), 1);
    cga_breaker_failure(b, 20); /* the count starts again from zero */
    CGA_ASSERT_EQ(cga_breaker_state(b, 20), CGA_BREAKER_CLOSED);
    CGA_ASSERT_EQ(cga_breaker_trips(b), 1);
    cga_breaker_free(b);
}

int main(void) {
    CGA_RUN(test_reset);
    CGA_RUN(test_create_validation);
    CGA_RUN(test_closed_counts_consecutive);
    CGA_RUN(test_full_cycle);
    CGA_RUN(test_late_outcomes_while_open);
    CGA_RUN(test_clock_backwards);
    return 0;
}

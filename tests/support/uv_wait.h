#ifndef CGA_TEST_UV_WAIT_H
#define CGA_TEST_UV_WAIT_H

/* Running a test's uv loop until something happens, with a deadline. */

#include <uv.h>

#include "cgalpha/clock.h"

static inline void cga_test_tick_cb(uv_timer_t *t) { (void)t; }

/* Runs loop until cond holds or ms have passed (a 5 ms tick keeps uv_run from blocking). */
#define RUN_UNTIL(loop, cond, ms)                                                          \
    do {                                                                                   \
        uv_timer_t tick_;                                                                  \
        uv_timer_init((loop), &tick_);                                                     \
        uv_timer_start(&tick_, cga_test_tick_cb, 5, 5);                                    \
        uint64_t end_ = cga_clock_mono_ms() + (ms);                                        \
        while (!(cond) && cga_clock_mono_ms() < end_) uv_run((loop), UV_RUN_ONCE);         \
        uv_close((uv_handle_t *)&tick_, NULL);                                             \
        uv_run((loop), UV_RUN_NOWAIT);                                                     \
    } while (0)

#define RUN_FOR(loop, ms) RUN_UNTIL(loop, 0, ms)

#endif

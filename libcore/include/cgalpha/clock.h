#ifndef CGALPHA_CLOCK_H
#define CGALPHA_CLOCK_H

#include <stdint.h>
#include "cgalpha/export.h"

/* Monotonic time (never jumps; for timeouts, latencies, rates). */
CGA_EXTERN uint64_t cga_clock_mono_us(void);
CGA_EXTERN uint64_t cga_clock_mono_ms(void);

/* Wall-clock time since the Unix epoch (for timestamps that cross processes). */
CGA_EXTERN uint64_t cga_clock_wall_us(void);
CGA_EXTERN uint64_t cga_clock_wall_ms(void);

#endif

#ifndef CGALPHA_TYPES_H
#define CGALPHA_TYPES_H

/* Plain types shared by the wire protocol (proto.h) and the lab plugin ABI (lab.h).
 * No functions, no dependencies: a plugin author includes this through lab.h. */

#include <stddef.h>
#include <stdint.h>

/* A byte string that is not NUL-terminated (a view into a buffer someone else owns). */
typedef struct cga_str_s {
    const char *ptr;
    size_t len;
} cga_str_t;

/* One market-data bar (OHLCV). t is the bar's open time in ms since the Unix epoch. */
typedef struct cga_bar_s {
    int64_t t;
    double open;
    double high;
    double low;
    double close;
    double volume;
} cga_bar_t;

/* Market regimes. On the wire they are the lower-case strings of cga_regime_name(). */
typedef enum cga_regime {
    CGA_REGIME_UNKNOWN = 0,
    CGA_REGIME_BULL = 1,
    CGA_REGIME_BEAR = 2,
    CGA_REGIME_SIDEWAYS = 3,
    CGA_REGIME_TURBULENT = 4,
} cga_regime_t;
#define CGA_REGIME_COUNT 5

#endif

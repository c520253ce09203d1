/* Small formatting helpers shared by the commands that print tables (status, monitor). */
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "ops.h"

void ops_fmt_bytes(char *out, size_t n, uint64_t b) {
    if (b >= (UINT64_C(1) << 30))
        snprintf(out, n, "%.1f GiB", (double)b / (double)(UINT64_C(1) << 30));
    else if (b >= (UINT64_C(1) << 20))
        snprintf(out, n, "%.1f MiB", (double)b / (double)(UINT64_C(1) << 20));
    else
        snprintf(out, n, "%.1f KiB", (double)b / 1024.0);
}

void ops_fmt_utc(char *out, size_t n, int64_t ms, int seconds) {
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (gmtime_r(&t, &tm))
        strftime(out, n, seconds ? "%Y-%m-%dT%H:%M:%SZ" : "%Y-%m-%dT%H:%MZ", &tm);
    else
        snprintf(out, n, "%lld", (long long)ms);
}

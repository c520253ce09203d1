#include "progress.h"

#include <stdio.h>

#define BAR_WIDTH 24

void ops_progress_format(char *out, size_t n, uint64_t done, uint64_t total, uint64_t tasks,
                         double secs) {
    double rate = secs > 0 ? (double)tasks / secs : 0;
    if (n == 0) return;
    if (total == 0) {
        snprintf(out, n, "%llu tasks  %.0f tasks/s", (unsigned long long)tasks, rate);
        return;
    }
    if (done > total) done = total;
    double frac = (double)done / (double)total;
    char bar[BAR_WIDTH + 1];
    int full = (int)(frac * BAR_WIDTH);
    for (int i = 0; i < BAR_WIDTH; i++) bar[i] = i < full ? '#' : '-';
    bar[BAR_WIDTH] = '\0';
    snprintf(out, n, "[%s] %3d%%  %llu tasks  %.0f tasks/s", bar, (int)(frac * 100),
             (unsigned long long)tasks, rate);
}

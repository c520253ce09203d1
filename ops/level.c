#include "level.h"

#include <stdio.h>
#include <string.h>

static unsigned pct(uint64_t used, uint64_t maxmem) {
    if (maxmem == 0) return 0;
    double p = (double)used * 100.0 / (double)maxmem;
    return p > 1000.0 ? 1000u : (unsigned)p;
}

cga_level_t ops_level_eval(const ops_level_limits_t *l, uint64_t backlog, uint64_t used,
                           uint64_t maxmem, char *reason, size_t n) {
    int mem_known = maxmem > 0;
    unsigned p = pct(used, maxmem);
    int b_red = backlog >= l->red_backlog;
    int b_yellow = backlog >= l->yellow_backlog;
    int m_red = mem_known && p >= l->red_mem_pct;
    int m_yellow = mem_known && p >= l->yellow_mem_pct;
    cga_level_t lvl = (b_red || m_red)         ? CGA_LEVEL_RED
                      : (b_yellow || m_yellow) ? CGA_LEVEL_YELLOW
                                               : CGA_LEVEL_GREEN;
    char mem[64];
    if (mem_known)
        snprintf(mem, sizeof mem, "memory %u%% of maxmemory", p);
    else
        snprintf(mem, sizeof mem, "no maxmemory");
    if (lvl == CGA_LEVEL_RED) {
        if (b_red && m_red)
            snprintf(reason, n, "backlog %llu tasks >= %llu and %s >= %u%%",
                     (unsigned long long)backlog, (unsigned long long)l->red_backlog, mem,
                     l->red_mem_pct);
        else if (b_red)
            snprintf(reason, n, "backlog %llu tasks >= %llu", (unsigned long long)backlog,
                     (unsigned long long)l->red_backlog);
        else
            snprintf(reason, n, "%s >= %u%%", mem, l->red_mem_pct);
    } else if (lvl == CGA_LEVEL_YELLOW) {
        if (b_yellow && m_yellow)
            snprintf(reason, n, "backlog %llu tasks >= %llu and %s >= %u%%",
                     (unsigned long long)backlog, (unsigned long long)l->yellow_backlog, mem,
                     l->yellow_mem_pct);
        else if (b_yellow)
            snprintf(reason, n, "backlog %llu tasks >= %llu", (unsigned long long)backlog,
                     (unsigned long long)l->yellow_backlog);
        else
            snprintf(reason, n, "%s >= %u%%", mem, l->yellow_mem_pct);
    } else {
        snprintf(reason, n, "backlog %llu tasks, %s", (unsigned long long)backlog, mem);
    }
    return lvl;
}

static void mib(char *out, size_t n, uint64_t b) {
    snprintf(out, n, "%.1f MiB", (double)b / (1024.0 * 1024.0));
}

cga_level_t ops_level_eval_oom(const ops_level_limits_t *l, uint64_t backlog, uint64_t used,
                               uint64_t maxmem, const char *policy, int oom, char *reason,
                               size_t n) {
    cga_level_t lvl = ops_level_eval(l, backlog, used, maxmem, reason, n);
    int full = maxmem > 0 && used >= maxmem && policy && strcmp(policy, "noeviction") == 0;
    if (!full && !oom) return lvl;
    char u[32], m[32];
    mib(u, sizeof u, used);
    mib(m, sizeof m, maxmem);
    if (full)
        snprintf(reason, n, "OOM: Redis refuses writes (used_memory %s >= maxmemory %s, "
                 "noeviction)", u, m);
    else if (maxmem > 0)
        snprintf(reason, n, "OOM: Redis answered a write with OOM (used_memory %s of maxmemory "
                 "%s)", u, m);
    else
        snprintf(reason, n, "OOM: Redis answered a write with OOM");
    return CGA_LEVEL_RED;
}

int ops_level_oom_latch(const ops_level_limits_t *l, int oom, uint64_t used, uint64_t maxmem,
                        const char *policy) {
    if (maxmem == 0) return 0;
    if (used >= maxmem && policy && strcmp(policy, "noeviction") == 0) return 1;
    if (!oom) return 0;
    unsigned low = l->yellow_mem_pct < 95 ? l->yellow_mem_pct : 95;
    return pct(used, maxmem) >= low;
}

int ops_info_str(const char *info, size_t len, const char *name, char *out, size_t n) {
    size_t nl = strlen(name);
    size_t i = 0;
    while (i < len) {
        size_t e = i;
        while (e < len && info[e] != '\n') e++;
        if (e - i > nl && memcmp(info + i, name, nl) == 0 && info[i + nl] == ':') {
            size_t k = i + nl + 1, end = e;
            if (end > k && info[end - 1] == '\r') end--;
            size_t m = end - k < n - 1 ? end - k : n - 1;
            memcpy(out, info + k, m);
            out[m] = '\0';
            return 0;
        }
        i = e + 1;
    }
    return -1;
}

int ops_info_u64(const char *info, size_t len, const char *name, uint64_t *out) {
    size_t nl = strlen(name);
    size_t i = 0;
    while (i < len) {
        size_t e = i;
        while (e < len && info[e] != '\n') e++;
        if (e - i > nl && memcmp(info + i, name, nl) == 0 && info[i + nl] == ':') {
            size_t k = i + nl + 1;
            if (k >= e || info[k] < '0' || info[k] > '9') return -1;
            uint64_t v = 0;
            for (; k < e && info[k] >= '0' && info[k] <= '9'; k++) {
                if (v > (UINT64_MAX - 9) / 10) return -1;
                v = v * 10 + (uint64_t)(info[k] - '0');
            }
            if (k < e && info[k] != '\r') return -1;
            *out = v;
            return 0;
        }
        i = e + 1;
    }
    return -1;
}

uint64_t ops_backlog_tasks(uint64_t entries, double tpe, double fallback) {
    double m = tpe > 0 ? tpe : fallback;
    if (m <= 0) m = 1;
    return (uint64_t)((double)entries * m + 0.5);
}

/* `accuracy --truth FILE`: detected regimes (the regime log) against the synthetic truth. */
#define CGA_LOG_COMPONENT "accuracy"
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "accuracy.h"
#include "cgalpha/alloc.h"
#include "cgalpha/app.h"
#include "cgalpha/config.h"
#include "cgalpha/err.h"
#include "cgalpha/keys.h"
#include "cgalpha/log.h"
#include "cgalpha/proto.h"
#include "cgalpha/redis.h"
#include "ops.h"
#include "regime_log.h"

typedef struct acc_cmd_s {
    cga_app_t *app;
    ops_acc_t *acc;
    char key[CGA_KEY_MAX];
    uint64_t entries, undecodable;
    int err;
    int reading; /* the regime log read is out: its callbacks still come */
} acc_cmd_t;

static void on_change(const cga_regime_change_t *m, void *arg) {
    acc_cmd_t *c = arg;
    ops_acc_add_change(c->acc, m->symbol.ptr, m->symbol.len, m->wstart, m->seq, m->to);
}

static void on_log_read(int status, uint64_t entries, uint64_t undecodable, void *arg) {
    acc_cmd_t *c = arg;
    c->reading = 0;
    c->err = status;
    c->entries = entries;
    c->undecodable = undecodable;
    cga_app_stop(c->app);
}

static int read_truth(acc_cmd_t *c, const char *path, uint64_t *bad) {
    FILE *f = fopen(path, "r");
    if (!f) {
        ops_error("accuracy", "cannot read the truth file %s: %s", path, strerror(errno));
        return CGA_EXIT_USAGE;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    uint64_t lineno = 0, rows = 0;
    while ((n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        char sym[64], err[128];
        int64_t t;
        cga_regime_t r;
        int rc = ops_acc_parse_truth(line, (size_t)n, sym, sizeof sym, &t, &r, err, sizeof err);
        if (rc < 0) {
            if (++*bad <= 100)
                ops_error("accuracy", "%s: line %" PRIu64 ": %s", path, lineno, err);
            continue;
        }
        if (rc == 1) {
            ops_acc_add_truth(c->acc, sym, t, r);
            rows++;
        }
    }
    int rerr = ferror(f);
    free(line);
    fclose(f);
    if (rerr) {
        ops_error("accuracy", "reading %s failed", path);
        return CGA_EXIT_FAILURE;
    }
    if (rows == 0) {
        ops_error("accuracy", "%s holds no truth rows (symbol,t,regime)", path);
        return CGA_EXIT_DATA;
    }
    return -1;
}

static void print_pct(FILE *f, uint64_t correct, uint64_t bars) {
    if (bars)
        fprintf(f, "%7.1f%%", 100.0 * (double)correct / (double)bars);
    else
        fprintf(f, "%8s", "-");
}

int ops_cmd_accuracy(cga_app_t *a) {
    const cga_config_t *cfg = cga_app_config(a);
    const char *truth = cga_config_str(cfg, "OPS_TRUTH");
    int json = cga_config_bool(cfg, "OPS_JSON");
    if (!truth || !*truth) {
        ops_error("accuracy", "OPS_TRUTH: --truth FILE is required");
        return CGA_EXIT_USAGE;
    }
    acc_cmd_t cc;
    acc_cmd_t *c = &cc;
    memset(c, 0, sizeof *c);
    c->app = a;
    ops_acc_create(&c->acc);
    uint64_t bad = 0;
    int code = read_truth(c, truth, &bad);
    if (code >= 0) goto out;
    code = ops_connect(a, "accuracy");
    if (code >= 0) goto out;
    cga_key(c->key, sizeof c->key, cga_app_ns(a), CGA_KIND_STATE, "regime_log", NULL);
    int rc = ops_rlog_read(cga_app_redis(a), cga_app_ns(a), on_change, on_log_read, c);
    if (rc < 0) {
        c->err = rc;
    } else {
        c->reading = 1;
        cga_app_run(a);
        /* Left early (a signal): the read still calls back into c, which lives on this stack. */
        while (c->reading) uv_run(cga_app_loop(a), UV_RUN_ONCE);
    }
    if (c->err) {
        code = cga_app_exit_code(c->err);
        if (code == CGA_EXIT_OK) code = CGA_EXIT_FAILURE;
        ops_error("accuracy", "reading %s failed: %s", c->key, cga_strerror(c->err));
        goto out;
    }
    const ops_acc_result_t *per;
    size_t n;
    ops_acc_result_t all;
    ops_acc_compute(c->acc, &per, &n, &all);
    if (json) {
        printf("{\"regime_log_entries\":%" PRIu64 ",\"undecodable\":%" PRIu64 ",\"symbols\":[",
               c->entries, c->undecodable);
        for (size_t i = 0; i < n; i++) {
            fputs(i ? ",{\"symbol\":" : "{\"symbol\":", stdout);
            ops_json_str(stdout, per[i].symbol, strlen(per[i].symbol));
            printf(",\"bars\":%" PRIu64 ",\"correct\":%" PRIu64 ",\"skipped\":%" PRIu64
                   ",\"changes\":%" PRIu64 ",\"accuracy\":", per[i].bars, per[i].correct,
                   per[i].skipped, per[i].changes);
            if (per[i].bars)
                printf("%.6f}", (double)per[i].correct / (double)per[i].bars);
            else
                fputs("null}", stdout);
        }
        printf("],\"overall\":{\"bars\":%" PRIu64 ",\"correct\":%" PRIu64 ",\"skipped\":%" PRIu64
               ",\"changes\":%" PRIu64 ",\"accuracy\":", all.bars, all.correct, all.skipped,
               all.changes);
        if (all.bars)
            printf("%.6f}}\n", (double)all.correct / (double)all.bars);
        else
            fputs("null}}\n", stdout);
    } else {
        printf("%-16s %10s %10s %10s %8s %9s\n", "SYMBOL", "BARS", "CORRECT", "SKIPPED",
               "CHANGES", "ACCURACY");
        for (size_t i = 0; i < n; i++) {
            printf("%-16s %10" PRIu64 " %10" PRIu64 " %10" PRIu64 " %8" PRIu64 " ",
                   per[i].symbol, per[i].bars, per[i].correct, per[i].skipped, per[i].changes);
            print_pct(stdout, per[i].correct, per[i].bars);
            putchar('\n');
        }
        printf("%-16s %10" PRIu64 " %10" PRIu64 " %10" PRIu64 " %8" PRIu64 " ", "overall",
               all.bars, all.correct, all.skipped, all.changes);
        print_pct(stdout, all.correct, all.bars);
        putchar('\n');
        if (all.bars == 0)
            printf("no regime detected yet (%s has %" PRIu64 " entries)\n", c->key, c->entries);
    }
    code = fflush(stdout) == 0 ? (bad ? CGA_EXIT_DATA : CGA_EXIT_OK) : CGA_EXIT_FAILURE;
out:
    ops_acc_free(c->acc);
    return code;
}

#ifndef CGALPHA_LAB_H
#define CGALPHA_LAB_H

/* The lab plugin ABI. A plugin is a shared object that exports one function,
 *
 *     CGA_LAB_PLUGIN const cga_lab_plugin_t *cga_lab_plugin_entry(void);
 *
 * returning a pointer to a static descriptor. The loader (cgalpha-lab) checks abi_version
 * against CGA_LAB_ABI_VERSION and refuses a mismatch with a clear message. A plugin needs only
 * this header (and types.h, which it includes): it does not link against libcgalpha.
 *
 * Thread-safety contract
 *   - init() and fini() are called once each, on the lab's main thread, with no analyze() running.
 *   - analyze() is called concurrently from up to --concurrency worker threads, each call with
 *     its own in/out. The state returned by init() is shared by all of them: treat it as
 *     read-only in analyze(), or protect it yourself.
 *   - analyze() must not keep pointers into in after it returns: the bars are reused.
 *   - analyze() should return in bounded time; a plugin that hangs holds a worker thread, and its
 *     task is given to another lab after the lease.
 *
 * Errors: analyze() returns 0 on success, or non-zero with a message written into out->error
 * (NUL-terminated, truncated to its size). The task then gets a report with status "error": it
 * is not retried, not lost, and the lab goes on. A plugin that crashes takes its lab down; its
 * tasks come back after the lease and end in dead letters after the delivery limit. */

#include <stddef.h>
#include <stdint.h>
#include "cgalpha/types.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CGA_LAB_ABI_VERSION 1u
#define CGA_LAB_ENTRY_SYMBOL "cga_lab_plugin_entry"
#define CGA_LAB_MAX_METRICS 16
#define CGA_LAB_METRIC_NAME_MAX 32
#define CGA_LAB_ERROR_MAX 200

#if defined(__GNUC__)
#define CGA_LAB_PLUGIN __attribute__((visibility("default")))
#else
#define CGA_LAB_PLUGIN
#endif

/* What analyze() is given. Valid only during the call. */
typedef struct cga_lab_input_s {
    const char *task_id;   /* NUL-terminated */
    const char *symbol;    /* NUL-terminated */
    const cga_bar_t *bars; /* the window, t ascending */
    size_t nbars;          /* >= 1 */
} cga_lab_input_t;

typedef struct cga_lab_metric_s {
    char name[CGA_LAB_METRIC_NAME_MAX]; /* NUL-terminated, [a-z0-9_.] */
    double value;                       /* finite */
} cga_lab_metric_t;

/* What analyze() fills in. Zeroed by the caller before each call (regime UNKNOWN,
 * confidence 0, no metrics, empty error). */
typedef struct cga_lab_output_s {
    cga_regime_t regime;      /* this lab's vote for the window, or CGA_REGIME_UNKNOWN */
    double confidence;        /* 0..1: how strongly it votes */
    size_t nmetrics;          /* 0..CGA_LAB_MAX_METRICS */
    cga_lab_metric_t metrics[CGA_LAB_MAX_METRICS];
    char error[CGA_LAB_ERROR_MAX]; /* set when returning non-zero */
} cga_lab_output_t;

typedef struct cga_lab_plugin_s {
    /* CGA_LAB_ABI_VERSION. Stays the first field in every future ABI version: the loader reads
     * it before it trusts anything else in the descriptor. */
    uint32_t abi_version;
    const char *name;         /* [a-z0-9_-]{1,32}: what tasks name in their "lab" field */
    const char *version;      /* the plugin's own version, free text */
    const char *description;  /* one line */
    /* Optional (NULL): called once before any analyze(). config is the text after "=" in
     * --plugin NAME=CONFIG, or NULL. Return 0, or non-zero with a message in err[errlen]
     * to refuse to start. *state is passed to analyze() and fini(). */
    int (*init)(void **state, const char *config, char *err, size_t errlen);
    /* Required. See the thread-safety contract above. */
    int (*analyze)(void *state, const cga_lab_input_t *in, cga_lab_output_t *out);
    /* Optional (NULL): called once after the last analyze(). */
    void (*fini)(void *state);
} cga_lab_plugin_t;

typedef const cga_lab_plugin_t *(*cga_lab_plugin_entry_fn)(void);

/* The one symbol a plugin exports (declared here so that plugins build with
 * -Wmissing-prototypes). */
CGA_LAB_PLUGIN const cga_lab_plugin_t *cga_lab_plugin_entry(void);

/* Adds a metric to out if there is room; returns 0, or -1 when full. Header-only helper. */
static inline int cga_lab_metric(cga_lab_output_t *out, const char *name, double value) {
    if (out->nmetrics >= CGA_LAB_MAX_METRICS) return -1;
    cga_lab_metric_t *m = &out->metrics[out->nmetrics++];
    size_t i = 0;
    for (; name[i] && i + 1 < sizeof m->name; i++) m->name[i] = name[i];
    m->name[i] = '\0';
    m->value = value;
    return 0;
}

#ifdef __cplusplus
}
#endif

#endif

#ifndef CGALPHA_METRICS_H
#define CGALPHA_METRICS_H

/* Counters, gauges and latency histograms, rendered as Prometheus text (exposition format
 * 0.0.4). Updates are lock-free atomics, safe from any thread (plugins run on worker threads);
 * registration and rendering take a mutex. Metric objects are owned by the registry. */

#include <stddef.h>
#include <stdint.h>
#include "cgalpha/export.h"

typedef struct cga_metrics_s cga_metrics_t;
typedef struct cga_counter_s cga_counter_t;
typedef struct cga_gauge_s cga_gauge_t;
typedef struct cga_histogram_s cga_histogram_t;

CGA_EXTERN int cga_metrics_create(cga_metrics_t **out);
CGA_EXTERN void cga_metrics_free(cga_metrics_t *m);

/* Registers (or returns the existing) metric. name: [a-zA-Z_:][a-zA-Z0-9_:]*, counters end
 * in "_total". labels: NULL or a preformatted label list such as `queue="analysis"` (build it
 * with cga_metrics_label_append, which escapes values). One name is one metric family: # HELP
 * and # TYPE are rendered once, then one sample (set) per label list, in registration order;
 * the first help given wins. The same name with another type, an invalid name or label list,
 * or a histogram label named "le" aborts (programming errors). */
CGA_EXTERN cga_counter_t *cga_metrics_counter(cga_metrics_t *m, const char *name,
                                              const char *help, const char *labels);
CGA_EXTERN cga_gauge_t *cga_metrics_gauge(cga_metrics_t *m, const char *name, const char *help,
                                          const char *labels);
/* bounds: strictly ascending finite upper bounds (seconds for latencies), copied; NULL for the
 * default latency buckets (50 µs .. 10 s). The +Inf bucket is implicit. Registering an existing
 * histogram (same name and labels) with other bounds aborts. */
CGA_EXTERN cga_histogram_t *cga_metrics_histogram(cga_metrics_t *m, const char *name,
                                                  const char *help, const char *labels,
                                                  const double *bounds, size_t nbounds);

CGA_EXTERN void cga_counter_add(cga_counter_t *c, uint64_t n);
CGA_EXTERN uint64_t cga_counter_value(const cga_counter_t *c);
CGA_EXTERN void cga_gauge_set(cga_gauge_t *g, double v);
CGA_EXTERN void cga_gauge_add(cga_gauge_t *g, double d);
CGA_EXTERN double cga_gauge_value(const cga_gauge_t *g);
/* Counts v in the first bucket whose bound is >= v (NaN is ignored). */
CGA_EXTERN void cga_histogram_observe(cga_histogram_t *h, double v);
CGA_EXTERN uint64_t cga_histogram_count(const cga_histogram_t *h);
CGA_EXTERN double cga_histogram_sum(const cga_histogram_t *h);
/* Estimate of quantile q (0..1) by linear interpolation inside the bucket (the first bucket
 * starts at 0, or at its bound if that is <= 0); a quantile in the +Inf bucket is the highest
 * finite bound, as Prometheus' histogram_quantile(). 0 when empty. */
CGA_EXTERN double cga_histogram_quantile(const cga_histogram_t *h, double q);

/* Renders every metric (# HELP, # TYPE, samples; histograms with _bucket{le=...}, _sum,
 * _count). Returns an owned NUL-terminated string in *out (free()) and its length. */
CGA_EXTERN int cga_metrics_render(cga_metrics_t *m, char **out, size_t *len);

/* Renders the metrics into path atomically (written to path.tmp, then renamed), so that a
 * reader never sees half a file. Returns CGA_OK or a negative errno. */
CGA_EXTERN int cga_metrics_write_file(cga_metrics_t *m, const char *path);

/* Appends name="value" to the label list in buf (capacity n, NUL-terminated; start with ""),
 * after a comma when buf is not empty, escaping \\, " and newline in value as the exposition
 * format requires. name: [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__". Returns CGA_OK,
 * CGA_EINVAL (bad name or NULL value) or CGA_ETOOBIG (buf left unchanged). */
CGA_EXTERN int cga_metrics_label_append(char *buf, size_t n, const char *name,
                                        const char *value);

#endif

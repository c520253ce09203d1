#ifndef CGALPHA_PROTO_H
#define CGALPHA_PROTO_H

/* cgalpha wire messages (msgpack) and their codecs. proto/SCHEMA.md is the contract, byte by
 * byte; this header is its C face.
 *
 * A stream entry carries its messages in one field, CGA_PROTO_FIELD ("m"): either one message
 * (a msgpack map) or a batch (a msgpack array of maps). Every message is a map with string keys
 * and a schema version "v"; decoders ignore unknown keys, check every type and size, and return
 * an error with a message on anything malformed (never crash, never read out of bounds).
 *
 * Decoded strings are views (cga_str_t) into the caller's input buffer, which must outlive them;
 * arrays (bars, metrics, the batch itself) live in the reader and stay valid until the next call
 * on that reader. Readers and writers reuse their memory: no allocation per message in steady
 * state. msgpack-c is used only inside proto/src. */

#include <stddef.h>
#include <stdint.h>
#include "cgalpha/export.h"
#include "cgalpha/types.h"

#define CGA_PROTO_VERSION 1
#define CGA_PROTO_FIELD "m"

/* Limits; each is checked by encoders and decoders. */
typedef struct cga_proto_limits_s {
    size_t max_message_bytes; /* one encoded message, default 1 MiB */
    size_t max_batch;         /* messages in one entry, default 4096 */
    size_t max_bars;          /* bars in one task, default 10000 */
    size_t max_metrics;       /* metrics in one report, default 32 */
    size_t max_string;        /* any string field, default 256 (ids, names, errors) */
} cga_proto_limits_t;

CGA_EXTERN void cga_proto_limits_init(cga_proto_limits_t *l);

/* ---- messages ---------------------------------------------------------------------------- */

/* Task: one analysis task (queue "analysis"). */
typedef struct cga_task_s {
    cga_str_t id;           /* "id":  unique task id, 1..max_string bytes */
    cga_str_t lab;          /* "lab": plugin that must run it, 1..64 bytes */
    cga_str_t symbol;       /* "sym": market symbol, 1..32 bytes */
    uint64_t enq_us;        /* "ts":  wall-clock µs at enqueue (latency accounting) */
    const cga_bar_t *bars;  /* "bars": array of [t, open, high, low, close, volume] */
    size_t nbars;           /*        1..max_bars, t ascending */
} cga_task_t;

typedef struct cga_metric_s {
    cga_str_t name; /* 1..64 bytes */
    double value;
} cga_metric_t;

typedef enum cga_report_status {
    CGA_REPORT_OK = 0,    /* the plugin produced a result */
    CGA_REPORT_ERROR = 1, /* the plugin returned an error: see error */
} cga_report_status_t;

/* Report: one lab's result for one task (queue "reports"). */
typedef struct cga_report_s {
    cga_str_t task_id;      /* "task" */
    cga_str_t lab;          /* "lab"  */
    cga_str_t symbol;       /* "sym"  */
    cga_str_t worker;       /* "wrk": id of the lab process that ran it */
    int64_t wstart;         /* "ws":  first bar's t (ms) */
    int64_t wend;           /* "we":  last bar's t (ms) */
    uint64_t enq_us;        /* "ets": the task's enq_us, carried for end-to-end latency */
    uint64_t done_us;       /* "ts":  wall-clock µs when the report was written */
    uint32_t run_us;        /* "dur": plugin run time, µs */
    cga_report_status_t status; /* "st": 0 ok, 1 error */
    cga_str_t error;        /* "err": error text when status is error (may be empty otherwise) */
    cga_regime_t regime;    /* "reg": the plugin's regime vote ("unknown" for none) */
    double confidence;      /* "conf": 0..1 */
    const cga_metric_t *metrics; /* "met": map of name -> float64 */
    size_t nmetrics;
} cga_report_t;

/* RegimeChange: published on <ns>:channel:market_regime and appended to the regime log. */
typedef struct cga_regime_change_s {
    cga_str_t symbol;    /* "sym" */
    uint64_t seq;        /* "seq": per-symbol sequence number, 1, 2, 3, ... with no gaps */
    cga_regime_t from;   /* "from" */
    cga_regime_t to;     /* "to" */
    int64_t wstart;      /* "ws": start (ms) of the window that decided it */
    double confidence;   /* "conf" */
    uint64_t ts_us;      /* "ts" */
} cga_regime_change_t;

typedef enum cga_level {
    CGA_LEVEL_GREEN = 0,
    CGA_LEVEL_YELLOW = 1,
    CGA_LEVEL_RED = 2,
} cga_level_t;

/* ResourceState: the semaphore at <ns>:state:global_resources. */
typedef struct cga_resource_state_s {
    cga_level_t level;    /* "level": "green" | "yellow" | "red" */
    uint64_t backlog;     /* "backlog": tasks waiting (lag + pending of the analysis group) */
    uint64_t labs;        /* "labs": live lab processes (heartbeats) */
    uint64_t used_memory; /* "mem": Redis used_memory, bytes */
    uint64_t maxmemory;   /* "maxmem": Redis maxmemory, bytes (0 = none) */
    cga_str_t reason;     /* "why": what decided the level, human-readable */
    uint64_t ts_us;       /* "ts" */
} cga_resource_state_t;

/* WorkerState: a lab's heartbeat at <ns>:state:worker:<id>. */
typedef struct cga_worker_state_s {
    cga_str_t id;         /* "id" */
    cga_str_t host;       /* "host" */
    uint32_t pid;         /* "pid" */
    cga_str_t plugins;    /* "plugins": comma-separated plugin names */
    uint64_t started_us;  /* "start" */
    uint64_t processed;   /* "done": tasks completed (ok or error) */
    uint64_t failed;      /* "fail": tasks whose report has status error */
    uint32_t inflight;    /* "busy": tasks being run now */
    uint64_t ts_us;       /* "ts" */
    uint64_t last_ack_us; /* "ack" (optional): wall-clock µs of its last acknowledgement, 0 none */
    int stalled;          /* "stall" (optional, bool): work waits and nothing was acknowledged
                             for the lab's stall limit (see docs/LAB.md) */
} cga_worker_state_t;

/* ---- names ------------------------------------------------------------------------------- */

/* "unknown", "bull", "bear", "sideways", "turbulent". */
CGA_EXTERN const char *cga_regime_name(cga_regime_t r);
/* Parses the name (exact, lower case). Returns CGA_OK or CGA_EPROTO. */
CGA_EXTERN int cga_regime_parse(const char *s, size_t len, cga_regime_t *out);
/* "green", "yellow", "red". */
CGA_EXTERN const char *cga_level_name(cga_level_t l);
CGA_EXTERN int cga_level_parse(const char *s, size_t len, cga_level_t *out);

/* A C string as a view. */
static inline cga_str_t cga_str(const char *s) {
    cga_str_t v = {s, 0};
    if (s)
        while (s[v.len]) v.len++;
    return v;
}

/* ---- writer: encodes batches ------------------------------------------------------------- */

typedef struct cga_proto_writer_s cga_proto_writer_t;

/* lim may be NULL for the defaults (copied; a zero field takes its default). Returns owned
 * *out. */
CGA_EXTERN int cga_proto_writer_create(cga_proto_writer_t **out, const cga_proto_limits_t *lim);
CGA_EXTERN void cga_proto_writer_free(cga_proto_writer_t *w);

/* Starts a new batch (keeps the memory). */
CGA_EXTERN void cga_proto_writer_reset(cga_proto_writer_t *w);

/* Appends one message to the batch. CGA_EINVAL if a field breaks the schema (empty id, bad
 * regime, ...), CGA_ETOOBIG if the message or the batch would exceed the limits; the batch is
 * then unchanged. */
CGA_EXTERN int cga_proto_write_task(cga_proto_writer_t *w, const cga_task_t *t);
CGA_EXTERN int cga_proto_write_report(cga_proto_writer_t *w, const cga_report_t *r);

/* Appends an already encoded message (one msgpack map, as from cga_proto_split()) as is. */
CGA_EXTERN int cga_proto_write_raw(cga_proto_writer_t *w, const char *msg, size_t len);

CGA_EXTERN size_t cga_proto_writer_count(const cga_proto_writer_t *w); /* messages so far */
/* Bytes so far: what finish would return now (array header included). */
CGA_EXTERN size_t cga_proto_writer_size(const cga_proto_writer_t *w);

/* Why the last write or encode call failed, one line (for example "task.bars[3][0]: t 60000 not
 * after the previous bar's 60000"); "" after a success. Static storage in w. */
CGA_EXTERN const char *cga_proto_writer_error(const cga_proto_writer_t *w);

/* Finishes the batch: *data, *len = one msgpack array holding the messages, valid until the
 * next reset, write or free. An empty batch is the empty array (0x90). */
CGA_EXTERN void cga_proto_writer_finish(cga_proto_writer_t *w, const char **data, size_t *len);

/* Single messages (not batched): encode into w's memory (resetting it); *data valid as above. */
CGA_EXTERN int cga_proto_encode_regime_change(cga_proto_writer_t *w, const cga_regime_change_t *m,
                                              const char **data, size_t *len);
CGA_EXTERN int cga_proto_encode_resource_state(cga_proto_writer_t *w,
                                               const cga_resource_state_t *m, const char **data,
                                               size_t *len);
CGA_EXTERN int cga_proto_encode_worker_state(cga_proto_writer_t *w, const cga_worker_state_t *m,
                                             const char **data, size_t *len);

/* ---- reader: decodes --------------------------------------------------------------------- */

typedef struct cga_proto_reader_s cga_proto_reader_t;

/* lim as for the writer. Returns owned *out. */
CGA_EXTERN int cga_proto_reader_create(cga_proto_reader_t **out, const cga_proto_limits_t *lim);
CGA_EXTERN void cga_proto_reader_free(cga_proto_reader_t *r);

/* Every decode call returns CGA_OK, or CGA_EPROTO / CGA_ETOOBIG / CGA_EDEPTH with a one-line
 * reason in cga_proto_reader_error(r) (for example "task[3].bars[2][4]: expected float, got
 * str"). Results are valid until the next call on r; strings point into data. */
CGA_EXTERN const char *cga_proto_reader_error(const cga_proto_reader_t *r);

/* Splits an entry's value (one message or an array of them) into the byte ranges of its
 * messages, without decoding them (to re-batch, or to split a redelivered entry). */
CGA_EXTERN int cga_proto_split(cga_proto_reader_t *r, const char *data, size_t len,
                               const cga_str_t **msgs, size_t *n);

/* Decodes an entry's value (one message or a batch). Fails as a whole if any message is bad. */
CGA_EXTERN int cga_proto_decode_tasks(cga_proto_reader_t *r, const char *data, size_t len,
                                      const cga_task_t **tasks, size_t *n);
CGA_EXTERN int cga_proto_decode_reports(cga_proto_reader_t *r, const char *data, size_t len,
                                        const cga_report_t **reports, size_t *n);

CGA_EXTERN int cga_proto_decode_regime_change(cga_proto_reader_t *r, const char *data, size_t len,
                                              cga_regime_change_t *out);
CGA_EXTERN int cga_proto_decode_resource_state(cga_proto_reader_t *r, const char *data,
                                               size_t len, cga_resource_state_t *out);
CGA_EXTERN int cga_proto_decode_worker_state(cga_proto_reader_t *r, const char *data, size_t len,
                                             cga_worker_state_t *out);

#endif

/* cgalpha wire messages: encoders (msgpack-c's packer writing into our own buffer) and
 * decoders (a private bounds-checked cursor, mpack_read.h). proto/SCHEMA.md is the contract;
 * its "Implementation note" explains the choices made here. Pure module: never logs. */

#include "cgalpha/proto.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "cgalpha/alloc.h"
#include "cgalpha/err.h"
#include "mpack_read.h"

/* Containers may nest this deep inside one message, the message's own map being level 1
 * (bars = 2, a bar = 3); the batch array around messages does not count, so batching never
 * changes whether a message is accepted. */
#define MSG_MAX_DEPTH 16

/* Fixed field limits (also capped by max_string). */
#define LAB_MAX 64
#define SYM_MAX 32
#define METRIC_NAME_MAX 64

#define ERR_MAX 256

static const char EMPTY[] = "";

/* ---- limits and names -------------------------------------------------------------------- */

void cga_proto_limits_init(cga_proto_limits_t *l) {
    l->max_message_bytes = 1u << 20;
    l->max_batch = 4096;
    l->max_bars = 10000;
    l->max_metrics = 32;
    l->max_string = 256;
}

/* Copies lim (NULL: defaults); zero fields take their defaults. */
static void limits_copy(cga_proto_limits_t *dst, const cga_proto_limits_t *lim) {
    cga_proto_limits_t def;
    cga_proto_limits_init(&def);
    *dst = lim ? *lim : def;
    if (!dst->max_message_bytes) dst->max_message_bytes = def.max_message_bytes;
    if (!dst->max_batch) dst->max_batch = def.max_batch;
    if (!dst->max_bars) dst->max_bars = def.max_bars;
    if (!dst->max_metrics) dst->max_metrics = def.max_metrics;
    if (!dst->max_string) dst->max_string = def.max_string;
    /* Counts travel as msgpack array/map lengths (32 bits). */
    if (dst->max_batch > UINT32_MAX) dst->max_batch = UINT32_MAX;
    if (dst->max_bars > UINT32_MAX) dst->max_bars = UINT32_MAX;
    if (dst->max_metrics > UINT32_MAX) dst->max_metrics = UINT32_MAX;
}

static size_t min_sz(size_t a, size_t b) {
    return a < b ? a : b;
}

static const char *const REGIME_NAMES[CGA_REGIME_COUNT] = {"unknown", "bull", "bear", "sideways",
                                                           "turbulent"};
static const uint8_t REGIME_LENS[CGA_REGIME_COUNT] = {7, 4, 4, 8, 9};
static const char *const LEVEL_NAMES[3] = {"green", "yellow", "red"};
static const uint8_t LEVEL_LENS[3] = {5, 6, 3};

const char *cga_regime_name(cga_regime_t r) {
    return (unsigned)r < CGA_REGIME_COUNT ? REGIME_NAMES[r] : "invalid";
}

int cga_regime_parse(const char *s, size_t len, cga_regime_t *out) {
    for (int i = 0; i < CGA_REGIME_COUNT; i++) {
        if (len == REGIME_LENS[i] && memcmp(s, REGIME_NAMES[i], len) == 0) {
            *out = (cga_regime_t)i;
            return CGA_OK;
        }
    }
    return CGA_EPROTO;
}

const char *cga_level_name(cga_level_t l) {
    return (unsigned)l < 3 ? LEVEL_NAMES[l] : "invalid";
}

int cga_level_parse(const char *s, size_t len, cga_level_t *out) {
    for (int i = 0; i < 3; i++) {
        if (len == LEVEL_LENS[i] && memcmp(s, LEVEL_NAMES[i], len) == 0) {
            *out = (cga_level_t)i;
            return CGA_OK;
        }
    }
    return CGA_EPROTO;
}

/* Appends s (n bytes) to dst (a NUL-terminated string in cap bytes), printable ASCII only:
 * anything else becomes '?', and more than 32 bytes are cut with "...". */
static void append_sane(char *dst, size_t cap, const char *s, size_t n) {
    size_t at = strlen(dst);
    size_t shown = n > 32 ? 32 : n;
    for (size_t i = 0; i < shown && at + 1 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        dst[at++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    for (size_t i = 0; n > shown && i < 3 && at + 1 < cap; i++) dst[at++] = '.';
    dst[at] = '\0';
}

/* ================================ writer ================================================== */

/* The batch array's header is written at finish, right before the payload: bytes
 * [0, HDR_RESERVE) are kept free for its largest form (array32), the payload starts at
 * HDR_RESERVE, and finish writes the minimal header ending there, so the payload never moves. */
#define HDR_RESERVE 5

struct cga_proto_writer_s {
    cga_proto_limits_t lim;
    char *buf;
    size_t cap;
    size_t len; /* HDR_RESERVE + payload bytes */
    size_t count;
    char err[ERR_MAX];
};

static size_t array_hdr_len(size_t n) {
    return n < 16 ? 1 : n < 65536 ? 3 : 5;
}

int cga_proto_writer_create(cga_proto_writer_t **out, const cga_proto_limits_t *lim) {
    cga_proto_writer_t *w = cga_calloc(1, sizeof *w);
    limits_copy(&w->lim, lim);
    w->cap = 4096;
    w->buf = cga_malloc(w->cap);
    w->len = HDR_RESERVE;
    *out = w;
    return CGA_OK;
}

void cga_proto_writer_free(cga_proto_writer_t *w) {
    if (!w) return;
    free(w->buf);
    free(w);
}

void cga_proto_writer_reset(cga_proto_writer_t *w) {
    w->len = HDR_RESERVE;
    w->count = 0;
    w->err[0] = '\0';
}

size_t cga_proto_writer_count(const cga_proto_writer_t *w) {
    return w->count;
}

size_t cga_proto_writer_size(const cga_proto_writer_t *w) {
    return array_hdr_len(w->count) + (w->len - HDR_RESERVE);
}

const char *cga_proto_writer_error(const cga_proto_writer_t *w) {
    return w->err;
}

void cga_proto_writer_finish(cga_proto_writer_t *w, const char **data, size_t *len) {
    size_t n = w->count, h = array_hdr_len(n);
    unsigned char *p = (unsigned char *)w->buf + HDR_RESERVE - h;
    if (h == 1) {
        p[0] = (unsigned char)(0x90 | n);
    } else if (h == 3) {
        p[0] = 0xdc;
        p[1] = (unsigned char)(n >> 8);
        p[2] = (unsigned char)n;
    } else {
        p[0] = 0xdd;
        p[1] = (unsigned char)(n >> 24);
        p[2] = (unsigned char)(n >> 16);
        p[3] = (unsigned char)(n >> 8);
        p[4] = (unsigned char)n;
    }
    *data = (const char *)p;
    *len = h + (w->len - HDR_RESERVE);
}

static int wfail(cga_proto_writer_t *w, int rc, const char *fmt, ...) CGA_PRINTF(3, 4);
static int wfail(cga_proto_writer_t *w, int rc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->err, sizeof w->err, fmt, ap);
    va_end(ap);
    return rc;
}

static void __attribute__((noinline)) writer_grow(cga_proto_writer_t *w, size_t need) {
    void *b = w->buf;
    cga_grow(&b, &w->cap, need, 1);
    w->buf = b;
}

static void reserve(cga_proto_writer_t *w, size_t more) {
    if (more > w->cap - w->len) writer_grow(w, w->len + more);
}

/* msgpack_packer's write callback: appends to the writer's buffer. Never fails. The packer
 * calls it once per token with a handful of bytes, so the usual sizes are copied with constant
 * lengths (inline moves) rather than through a memcpy call each. */
static int pk_write(void *data, const char *p, size_t n) {
    cga_proto_writer_t *w = data;
    if (__builtin_expect(n > w->cap - w->len, 0)) writer_grow(w, w->len + n);
    char *dst = w->buf + w->len;
    w->len += n;
    switch (n) {
    case 1: *dst = *p; break;
    case 2: memcpy(dst, p, 2); break;
    case 3: memcpy(dst, p, 3); break;
    case 4: memcpy(dst, p, 4); break;
    case 5: memcpy(dst, p, 5); break;
    case 9: memcpy(dst, p, 9); break;
    default: memcpy(dst, p, n); break;
    }
    return 0;
}

/* Keys are written pre-encoded (fixstr header + bytes) in one append. */
#define PK_KEY(pk, enc) ((void)(pk)->callback((pk)->data, enc, sizeof(enc) - 1))

static inline void pk_str(msgpack_packer *pk, cga_str_t s) {
    (void)msgpack_pack_str(pk, s.len);
    if (s.len) (void)msgpack_pack_str_body(pk, s.ptr, s.len);
}

static inline void pk_name(msgpack_packer *pk, const char *name, size_t len) {
    (void)msgpack_pack_str(pk, len);
    (void)msgpack_pack_str_body(pk, name, len);
}

/* ---- validation at encode ---------------------------------------------------------------- */

static int check_str(cga_proto_writer_t *w, const char *where, cga_str_t s, size_t min,
                     size_t max) {
    if (s.len && !s.ptr) return wfail(w, CGA_EINVAL, "%s: NULL with length %zu", where, s.len);
    if (s.len < min) return wfail(w, CGA_EINVAL, "%s: must not be empty", where);
    if (s.len > max)
        return wfail(w, CGA_EINVAL, "%s: too long (%zu bytes, max %zu)", where, s.len, max);
    return CGA_OK;
}

static int check_finite(cga_proto_writer_t *w, const char *where, double v) {
    if (!isfinite(v)) return wfail(w, CGA_EINVAL, "%s: not finite (%g)", where, v);
    return CGA_OK;
}

static int check_conf(cga_proto_writer_t *w, const char *where, double v) {
    if (!(v >= 0.0 && v <= 1.0)) return wfail(w, CGA_EINVAL, "%s: %g out of range 0..1", where, v);
    return CGA_OK;
}

static int check_regime(cga_proto_writer_t *w, const char *where, cga_regime_t r) {
    if ((unsigned)r >= CGA_REGIME_COUNT)
        return wfail(w, CGA_EINVAL, "%s: invalid regime %d", where, (int)r);
    return CGA_OK;
}

static int check_task(cga_proto_writer_t *w, const cga_task_t *t) {
    const cga_proto_limits_t *l = &w->lim;
    int rc;
    if ((rc = check_str(w, "task.id", t->id, 1, l->max_string)) ||
        (rc = check_str(w, "task.lab", t->lab, 1, min_sz(LAB_MAX, l->max_string))) ||
        (rc = check_str(w, "task.sym", t->symbol, 1, min_sz(SYM_MAX, l->max_string))))
        return rc;
    if (t->nbars == 0 || !t->bars) return wfail(w, CGA_EINVAL, "task.bars: must not be empty");
    if (t->nbars > l->max_bars)
        return wfail(w, CGA_EINVAL, "task.bars: %zu bars exceed max_bars %zu", t->nbars,
                     l->max_bars);
    for (size_t i = 0; i < t->nbars; i++) {
        const cga_bar_t *b = &t->bars[i];
        if (i > 0 && b->t <= b[-1].t)
            return wfail(w, CGA_EINVAL, "task.bars[%zu][0]: t %" PRId64
                         " not after the previous bar's %" PRId64, i, b->t, b[-1].t);
        const double v[5] = {b->open, b->high, b->low, b->close, b->volume};
        for (int k = 0; k < 5; k++)
            if (!isfinite(v[k]))
                return wfail(w, CGA_EINVAL, "task.bars[%zu][%d]: not finite (%g)", i, k + 1, v[k]);
    }
    return CGA_OK;
}

static int check_report(cga_proto_writer_t *w, const cga_report_t *r) {
    const cga_proto_limits_t *l = &w->lim;
    int rc;
    if ((rc = check_str(w, "report.task", r->task_id, 1, l->max_string)) ||
        (rc = check_str(w, "report.lab", r->lab, 1, min_sz(LAB_MAX, l->max_string))) ||
        (rc = check_str(w, "report.sym", r->symbol, 1, min_sz(SYM_MAX, l->max_string))) ||
        (rc = check_str(w, "report.wrk", r->worker, 1, l->max_string)) ||
        (rc = check_str(w, "report.err", r->error, 0, l->max_string)) ||
        (rc = check_regime(w, "report.reg", r->regime)) ||
        (rc = check_conf(w, "report.conf", r->confidence)))
        return rc;
    if (r->wstart > r->wend)
        return wfail(w, CGA_EINVAL, "report: ws %" PRId64 " > we %" PRId64, r->wstart, r->wend);
    if ((unsigned)r->status > CGA_REPORT_ERROR)
        return wfail(w, CGA_EINVAL, "report.st: invalid status %d", (int)r->status);
    if (r->nmetrics > l->max_metrics)
        return wfail(w, CGA_EINVAL, "report.met: %zu metrics exceed max_metrics %zu", r->nmetrics,
                     l->max_metrics);
    if (r->nmetrics && !r->metrics) return wfail(w, CGA_EINVAL, "report.met: NULL");
    size_t name_max = min_sz(METRIC_NAME_MAX, l->max_string);
    for (size_t i = 0; i < r->nmetrics; i++) {
        const cga_metric_t *m = &r->metrics[i];
        int bad = !m->name.ptr || m->name.len == 0 || m->name.len > name_max ||
                  !isfinite(m->value);
        for (size_t j = 0; j < i && !bad; j++) /* earlier names are valid by now */
            bad = r->metrics[j].name.len == m->name.len &&
                  memcmp(r->metrics[j].name.ptr, m->name.ptr, m->name.len) == 0;
        if (bad) {
            char where[48]; /* formatted only on the way out */
            snprintf(where, sizeof where, "report.met[%zu]", i);
            if ((rc = check_str(w, where, m->name, 1, name_max)) ||
                (rc = check_finite(w, where, m->value)))
                return rc;
            return wfail(w, CGA_EINVAL, "%s: duplicate name \"%.*s\"", where,
                         (int)min_sz(m->name.len, 64), m->name.ptr);
        }
    }
    return CGA_OK;
}

static int check_regime_change(cga_proto_writer_t *w, const cga_regime_change_t *m) {
    size_t sym_max = min_sz(SYM_MAX, w->lim.max_string);
    int rc;
    if ((rc = check_str(w, "regime_change.sym", m->symbol, 1, sym_max)) ||
        (rc = check_regime(w, "regime_change.from", m->from)) ||
        (rc = check_regime(w, "regime_change.to", m->to)) ||
        (rc = check_conf(w, "regime_change.conf", m->confidence)))
        return rc;
    if (m->seq == 0) return wfail(w, CGA_EINVAL, "regime_change.seq: must be >= 1");
    return CGA_OK;
}

static int check_resource_state(cga_proto_writer_t *w, const cga_resource_state_t *m) {
    if ((unsigned)m->level > CGA_LEVEL_RED)
        return wfail(w, CGA_EINVAL, "resource_state.level: invalid level %d", (int)m->level);
    return check_str(w, "resource_state.why", m->reason, 0, w->lim.max_string);
}

static int check_worker_state(cga_proto_writer_t *w, const cga_worker_state_t *m) {
    const cga_proto_limits_t *l = &w->lim;
    int rc;
    if ((rc = check_str(w, "worker_state.id", m->id, 1, l->max_string)) ||
        (rc = check_str(w, "worker_state.host", m->host, 0, l->max_string)) ||
        (rc = check_str(w, "worker_state.plugins", m->plugins, 0, l->max_string)))
        return rc;
    return CGA_OK;
}

/* ---- encoders ---------------------------------------------------------------------------- */

static void enc_task(cga_proto_writer_t *w, const cga_task_t *t) {
    msgpack_packer pk_, *pk = &pk_;
    msgpack_packer_init(pk, w, pk_write);
    (void)msgpack_pack_map(pk, 6);
    PK_KEY(pk, "\xa1v\x01");
    PK_KEY(pk, "\xa2id");
    pk_str(pk, t->id);
    PK_KEY(pk, "\xa3lab");
    pk_str(pk, t->lab);
    PK_KEY(pk, "\xa3sym");
    pk_str(pk, t->symbol);
    PK_KEY(pk, "\xa2ts");
    (void)msgpack_pack_uint64(pk, t->enq_us);
    PK_KEY(pk, "\xa4" "bars");
    (void)msgpack_pack_array(pk, t->nbars);
    for (size_t i = 0; i < t->nbars; i++) {
        const cga_bar_t *b = &t->bars[i];
        (void)msgpack_pack_array(pk, 6);
        (void)msgpack_pack_int64(pk, b->t);
        (void)msgpack_pack_double(pk, b->open);
        (void)msgpack_pack_double(pk, b->high);
        (void)msgpack_pack_double(pk, b->low);
        (void)msgpack_pack_double(pk, b->close);
        (void)msgpack_pack_double(pk, b->volume);
    }
}

static void enc_report(cga_proto_writer_t *w, const cga_report_t *r) {
    msgpack_packer pk_, *pk = &pk_;
    msgpack_packer_init(pk, w, pk_write);
    int has_err = r->error.len > 0;
    (void)msgpack_pack_map(pk, 14 + has_err);
    PK_KEY(pk, "\xa1v\x01");
    PK_KEY(pk, "\xa4task");
    pk_str(pk, r->task_id);
    PK_KEY(pk, "\xa3lab");
    pk_str(pk, r->lab);
    PK_KEY(pk, "\xa3sym");
    pk_str(pk, r->symbol);
    PK_KEY(pk, "\xa3wrk");
    pk_str(pk, r->worker);
    PK_KEY(pk, "\xa2ws");
    (void)msgpack_pack_int64(pk, r->wstart);
    PK_KEY(pk, "\xa2we");
    (void)msgpack_pack_int64(pk, r->wend);
    PK_KEY(pk, "\xa3" "ets");
    (void)msgpack_pack_uint64(pk, r->enq_us);
    PK_KEY(pk, "\xa2ts");
    (void)msgpack_pack_uint64(pk, r->done_us);
    PK_KEY(pk, "\xa3" "dur");
    (void)msgpack_pack_uint32(pk, r->run_us);
    PK_KEY(pk, "\xa2st");
    (void)msgpack_pack_uint8(pk, (uint8_t)r->status);
    if (has_err) {
        PK_KEY(pk, "\xa3" "err");
        pk_str(pk, r->error);
    }
    PK_KEY(pk, "\xa3reg");
    pk_name(pk, REGIME_NAMES[r->regime], REGIME_LENS[r->regime]);
    PK_KEY(pk, "\xa4" "conf");
    (void)msgpack_pack_double(pk, r->confidence);
    PK_KEY(pk, "\xa3met");
    (void)msgpack_pack_map(pk, r->nmetrics);
    for (size_t i = 0; i < r->nmetrics; i++) {
        pk_str(pk, r->metrics[i].name);
        (void)msgpack_pack_double(pk, r->metrics[i].value);
    }
}

static void enc_regime_change(cga_proto_writer_t *w, const cga_regime_change_t *m) {
    msgpack_packer pk_, *pk = &pk_;
    msgpack_packer_init(pk, w, pk_write);
    (void)msgpack_pack_map(pk, 8);
    PK_KEY(pk, "\xa1v\x01");
    PK_KEY(pk, "\xa3sym");
    pk_str(pk, m->symbol);
    PK_KEY(pk, "\xa3seq");
    (void)msgpack_pack_uint64(pk, m->seq);
    PK_KEY(pk, "\xa4" "from");
    pk_name(pk, REGIME_NAMES[m->from], REGIME_LENS[m->from]);
    PK_KEY(pk, "\xa2to");
    pk_name(pk, REGIME_NAMES[m->to], REGIME_LENS[m->to]);
    PK_KEY(pk, "\xa2ws");
    (void)msgpack_pack_int64(pk, m->wstart);
    PK_KEY(pk, "\xa4" "conf");
    (void)msgpack_pack_double(pk, m->confidence);
    PK_KEY(pk, "\xa2ts");
    (void)msgpack_pack_uint64(pk, m->ts_us);
}

static void enc_resource_state(cga_proto_writer_t *w, const cga_resource_state_t *m) {
    msgpack_packer pk_, *pk = &pk_;
    msgpack_packer_init(pk, w, pk_write);
    (void)msgpack_pack_map(pk, 8);
    PK_KEY(pk, "\xa1v\x01");
    PK_KEY(pk, "\xa5level");
    pk_name(pk, LEVEL_NAMES[m->level], LEVEL_LENS[m->level]);
    PK_KEY(pk, "\xa7" "backlog");
    (void)msgpack_pack_uint64(pk, m->backlog);
    PK_KEY(pk, "\xa4labs");
    (void)msgpack_pack_uint64(pk, m->labs);
    PK_KEY(pk, "\xa3mem");
    (void)msgpack_pack_uint64(pk, m->used_memory);
    PK_KEY(pk, "\xa6maxmem");
    (void)msgpack_pack_uint64(pk, m->maxmemory);
    PK_KEY(pk, "\xa3why");
    pk_str(pk, m->reason);
    PK_KEY(pk, "\xa2ts");
    (void)msgpack_pack_uint64(pk, m->ts_us);
}

static void enc_worker_state(cga_proto_writer_t *w, const cga_worker_state_t *m) {
    msgpack_packer pk_, *pk = &pk_;
    msgpack_packer_init(pk, w, pk_write);
    /* the optional fields only when set, so that older readers see the same bytes */
    (void)msgpack_pack_map(pk, 10 + (m->last_ack_us != 0) + (m->stalled != 0));
    PK_KEY(pk, "\xa1v\x01");
    PK_KEY(pk, "\xa2id");
    pk_str(pk, m->id);
    PK_KEY(pk, "\xa4host");
    pk_str(pk, m->host);
    PK_KEY(pk, "\xa3pid");
    (void)msgpack_pack_uint32(pk, m->pid);
    PK_KEY(pk, "\xa7plugins");
    pk_str(pk, m->plugins);
    PK_KEY(pk, "\xa5start");
    (void)msgpack_pack_uint64(pk, m->started_us);
    PK_KEY(pk, "\xa4" "done");
    (void)msgpack_pack_uint64(pk, m->processed);
    PK_KEY(pk, "\xa4" "fail");
    (void)msgpack_pack_uint64(pk, m->failed);
    PK_KEY(pk, "\xa4" "busy");
    (void)msgpack_pack_uint32(pk, m->inflight);
    PK_KEY(pk, "\xa2ts");
    (void)msgpack_pack_uint64(pk, m->ts_us);
    if (m->last_ack_us) {
        PK_KEY(pk, "\xa3" "ack");
        (void)msgpack_pack_uint64(pk, m->last_ack_us);
    }
    if (m->stalled) {
        PK_KEY(pk, "\xa5stall");
        (void)msgpack_pack_true(pk);
    }
}

/* Upper bounds of the encoded sizes, reserved up front so that the packer's appends do not
 * reallocate one by one. */
static size_t est_task(const cga_task_t *t) {
    return 64 + t->id.len + t->lab.len + t->symbol.len + t->nbars * (1 + 9 + 5 * 9);
}

static size_t est_report(const cga_report_t *r) {
    return 192 + r->task_id.len + r->lab.len + r->symbol.len + r->worker.len + r->error.len +
           r->nmetrics * (5 + 9 + METRIC_NAME_MAX);
}

/* After a message was appended at start: enforce max_message_bytes (rolling back). */
static int finish_msg(cga_proto_writer_t *w, size_t start, const char *kind) {
    size_t n = w->len - start;
    if (n > w->lim.max_message_bytes) {
        w->len = start;
        return wfail(w, CGA_ETOOBIG, "%s: message of %zu bytes exceeds max_message_bytes %zu",
                     kind, n, w->lim.max_message_bytes);
    }
    return CGA_OK;
}

static int batch_room(cga_proto_writer_t *w, const char *kind) {
    if (w->count >= w->lim.max_batch)
        return wfail(w, CGA_ETOOBIG, "%s: batch full (max_batch %zu)", kind, w->lim.max_batch);
    return CGA_OK;
}

int cga_proto_write_task(cga_proto_writer_t *w, const cga_task_t *t) {
    int rc;
    w->err[0] = '\0';
    if (!t) return wfail(w, CGA_EINVAL, "task: NULL");
    if ((rc = check_task(w, t)) || (rc = batch_room(w, "task"))) return rc;
    size_t start = w->len;
    reserve(w, est_task(t));
    enc_task(w, t);
    if ((rc = finish_msg(w, start, "task"))) return rc;
    w->count++;
    return CGA_OK;
}

int cga_proto_write_report(cga_proto_writer_t *w, const cga_report_t *r) {
    int rc;
    w->err[0] = '\0';
    if (!r) return wfail(w, CGA_EINVAL, "report: NULL");
    if ((rc = check_report(w, r)) || (rc = batch_room(w, "report"))) return rc;
    size_t start = w->len;
    reserve(w, est_report(r));
    enc_report(w, r);
    if ((rc = finish_msg(w, start, "report"))) return rc;
    w->count++;
    return CGA_OK;
}

int cga_proto_write_raw(cga_proto_writer_t *w, const char *msg, size_t len) {
    int rc;
    w->err[0] = '\0';
    if (!msg || len == 0) return wfail(w, CGA_EINVAL, "raw: empty");
    if (len > w->lim.max_message_bytes)
        return wfail(w, CGA_ETOOBIG, "raw: message of %zu bytes exceeds max_message_bytes %zu",
                     len, w->lim.max_message_bytes);
    if ((rc = batch_room(w, "raw"))) return rc;
    /* Exactly one well-formed map, so that the batch stays well-formed. */
    mp_cur_t c = {(const uint8_t *)msg, (const uint8_t *)msg + len};
    mp_tok_t t;
    if (mp_next(&c, &t) != MP_OK || t.type != MP_MAP ||
        cga__mp_skip_items(&c, &t, MSG_MAX_DEPTH - 1) != MP_OK || mp_left(&c) != 0)
        return wfail(w, CGA_EINVAL, "raw: not exactly one well-formed msgpack map");
    reserve(w, len);
    memcpy(w->buf + w->len, msg, len);
    w->len += len;
    w->count++;
    return CGA_OK;
}

/* Single messages: encoded at the payload's start; the batch itself stays empty. */
#define ENCODE_SINGLE(w, m, data, len, check, enc, kind, est)                                  \
    do {                                                                                       \
        int rc_;                                                                               \
        cga_proto_writer_reset(w);                                                             \
        *(data) = NULL;                                                                        \
        *(len) = 0;                                                                            \
        if (!(m)) return wfail(w, CGA_EINVAL, "%s: NULL", kind);                               \
        if ((rc_ = check(w, m))) return rc_;                                                   \
        reserve(w, est);                                                                       \
        enc(w, m);                                                                             \
        if ((rc_ = finish_msg(w, HDR_RESERVE, kind))) return rc_;                              \
        *(data) = w->buf + HDR_RESERVE;                                                        \
        *(len) = w->len - HDR_RESERVE;                                                         \
        w->len = HDR_RESERVE;                                                                  \
        return CGA_OK;                                                                         \
    } while (0)

int cga_proto_encode_regime_change(cga_proto_writer_t *w, const cga_regime_change_t *m,
                                   const char **data, size_t *len) {
    ENCODE_SINGLE(w, m, data, len, check_regime_change, enc_regime_change, "regime_change",
                  128 + m->symbol.len);
}

int cga_proto_encode_resource_state(cga_proto_writer_t *w, const cga_resource_state_t *m,
                                    const char **data, size_t *len) {
    ENCODE_SINGLE(w, m, data, len, check_resource_state, enc_resource_state, "resource_state",
                  128 + m->reason.len);
}

int cga_proto_encode_worker_state(cga_proto_writer_t *w, const cga_worker_state_t *m,
                                  const char **data, size_t *len) {
    ENCODE_SINGLE(w, m, data, len, check_worker_state, enc_worker_state, "worker_state",
                  160 + m->id.len + m->host.len + m->plugins.len);
}

/* ================================ reader ================================================== */

struct cga_proto_reader_s {
    cga_proto_limits_t lim;
    char err[ERR_MAX];
    cga_task_t *tasks;
    size_t tasks_cap;
    cga_report_t *reports;
    size_t reports_cap;
    size_t *offs; /* per message: first bar / metric in bars / metrics, fixed up at the end */
    size_t offs_cap;
    cga_bar_t *bars;
    size_t bars_cap;
    size_t bars_used;
    cga_metric_t *metrics;
    size_t metrics_cap;
    size_t metrics_used;
    cga_str_t *spans;
    size_t spans_cap;
};

int cga_proto_reader_create(cga_proto_reader_t **out, const cga_proto_limits_t *lim) {
    cga_proto_reader_t *r = cga_calloc(1, sizeof *r);
    limits_copy(&r->lim, lim);
    *out = r;
    return CGA_OK;
}

void cga_proto_reader_free(cga_proto_reader_t *r) {
    if (!r) return;
    free(r->tasks);
    free(r->reports);
    free(r->offs);
    free(r->bars);
    free(r->metrics);
    free(r->spans);
    free(r);
}

const char *cga_proto_reader_error(const cga_proto_reader_t *r) {
    return r->err;
}

/* Grows the array arr (capacity cap) to hold need elements. */
#define GROW_TO(arr, cap, need)                                                                \
    do {                                                                                       \
        if ((need) > (cap)) {                                                                  \
            void *p_ = (arr);                                                                  \
            cga_grow(&p_, &(cap), (need), sizeof *(arr));                                      \
            (arr) = p_;                                                                        \
        }                                                                                      \
    } while (0)

/* Decoding state: the cursor and where we are, for error messages such as
 * "task[3].bars[2][4]: expected float, got str". */
typedef struct dec_s {
    cga_proto_reader_t *r;
    mp_cur_t c;
    const char *kind; /* "task", "report", ..., or "entry" for the outer value */
    long idx;         /* message index in the batch; -1 for a single message */
    const char *field; /* key being read (not NUL-terminated), or NULL */
    size_t field_len;
    long i1, i2; /* indices inside the field; -1 when unused */
    int hint;    /* where rd_key starts looking: after the last key found */
} dec_t;

static void dec_init(dec_t *d, cga_proto_reader_t *r, const char *data, size_t len,
                     const char *kind) {
    d->r = r;
    d->c.p = (const uint8_t *)data;
    d->c.end = data ? (const uint8_t *)data + len : NULL; /* NULL input: empty */
    d->kind = kind;
    d->idx = -1;
    d->field = NULL;
    d->field_len = 0;
    d->i1 = d->i2 = -1;
    d->hint = 0;
    r->err[0] = '\0';
}

static int dfail(dec_t *d, int rc, const char *fmt, ...) CGA_PRINTF(3, 4);
static int dfail(dec_t *d, int rc, const char *fmt, ...) {
    char *e = d->r->err;
    size_t cap = sizeof d->r->err, at;
    snprintf(e, cap, "%s", d->kind);
    if (d->idx >= 0) {
        at = strlen(e);
        snprintf(e + at, cap - at, "[%ld]", d->idx);
    }
    if (d->field) {
        at = strlen(e);
        snprintf(e + at, cap - at, ".");
        append_sane(e, cap, d->field, d->field_len);
    }
    if (d->i1 >= 0) {
        at = strlen(e);
        snprintf(e + at, cap - at, "[%ld]", d->i1);
    }
    if (d->i2 >= 0) {
        at = strlen(e);
        snprintf(e + at, cap - at, "[%ld]", d->i2);
    }
    at = strlen(e);
    snprintf(e + at, cap - at, ": ");
    at = strlen(e);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e + at, cap - at, fmt, ap);
    va_end(ap);
    return rc;
}

static int __attribute__((noinline)) dfail_mp(dec_t *d, int mprc) {
    if (mprc == MP_EDEPTH)
        return dfail(d, CGA_EDEPTH, "nested deeper than %d levels", MSG_MAX_DEPTH);
    if (mprc == MP_EBADBYTE) return dfail(d, CGA_EPROTO, "invalid byte 0xc1");
    return dfail(d, CGA_EPROTO, "truncated input");
}

static int __attribute__((noinline)) dfail_type(dec_t *d, const mp_tok_t *t, const char *want) {
    return dfail(d, CGA_EPROTO, "expected %s, got %s", want, cga__mp_type_name(t->type));
}

static inline int rd_tok(dec_t *d, mp_tok_t *t) {
    int rc = mp_next(&d->c, t);
    if (__builtin_expect(rc != MP_OK, 0)) {
        dfail_mp(d, rc);
        return rc == MP_EDEPTH ? CGA_EDEPTH : CGA_EPROTO; /* visibly non-zero for the compiler */
    }
    return CGA_OK;
}

/* A string field (str or bin). nil_ok: nil reads as "" (optional fields). */
static int rd_str(dec_t *d, cga_str_t *out, size_t min, size_t max, int nil_ok) {
    mp_tok_t t;
    int rc = rd_tok(d, &t);
    if (rc) return rc;
    if (t.type == MP_STR || t.type == MP_BIN) {
        if (t.n < min) return dfail(d, CGA_EPROTO, "must not be empty");
        if (t.n > max)
            return dfail(d, CGA_EPROTO, "too long (%" PRIu32 " bytes, max %zu)", t.n, max);
        out->ptr = t.n ? t.ptr : EMPTY;
        out->len = t.n;
        return CGA_OK;
    }
    if (t.type == MP_NIL && nil_ok) {
        out->ptr = EMPTY;
        out->len = 0;
        return CGA_OK;
    }
    return dfail_type(d, &t, "str");
}

/* An unsigned integer field, any width, at most max. */
static int rd_uint(dec_t *d, uint64_t *out, uint64_t max) {
    mp_tok_t t;
    int rc = rd_tok(d, &t);
    if (rc) return rc;
    if (t.type == MP_UINT) {
        if (t.v.u > max)
            return dfail(d, CGA_EPROTO, "%" PRIu64 " out of range 0..%" PRIu64, t.v.u, max);
        *out = t.v.u;
        return CGA_OK;
    }
    if (t.type == MP_INT)
        return dfail(d, CGA_EPROTO, "%" PRId64 " out of range 0..%" PRIu64, t.v.i, max);
    return dfail_type(d, &t, "int");
}

static int rd_int64(dec_t *d, int64_t *out) {
    mp_tok_t t;
    int rc = rd_tok(d, &t);
    if (rc) return rc;
    if (t.type == MP_INT) {
        *out = t.v.i;
        return CGA_OK;
    }
    if (t.type == MP_UINT) {
        if (t.v.u > (uint64_t)INT64_MAX)
            return dfail(d, CGA_EPROTO, "%" PRIu64 " out of range for int64", t.v.u);
        *out = (int64_t)t.v.u;
        return CGA_OK;
    }
    return dfail_type(d, &t, "int");
}

/* A float field: float64, float32 or any int; finite. */
static inline int rd_f64(dec_t *d, double *out) {
    double v;
    if (!mp_try_f64(&d->c, &v)) {
        mp_tok_t t;
        int rc = rd_tok(d, &t);
        if (rc) return rc;
        if (t.type == MP_FLOAT)
            v = t.v.f;
        else if (t.type == MP_UINT)
            v = (double)t.v.u;
        else if (t.type == MP_INT)
            v = (double)t.v.i;
        else
            return dfail_type(d, &t, "float");
    }
    if (!isfinite(v)) return dfail(d, CGA_EPROTO, "not finite (%g)", v);
    *out = v;
    return CGA_OK;
}

static int rd_conf(dec_t *d, double *out) {
    int rc = rd_f64(d, out);
    if (rc) return rc;
    if (!(*out >= 0.0 && *out <= 1.0)) return dfail(d, CGA_EPROTO, "%g out of range 0..1", *out);
    return CGA_OK;
}

static int rd_regime(dec_t *d, cga_regime_t *out) {
    cga_str_t s;
    int rc = rd_str(d, &s, 0, SIZE_MAX, 0);
    if (rc) return rc;
    if (cga_regime_parse(s.ptr, s.len, out) != CGA_OK) {
        char name[48] = "";
        append_sane(name, sizeof name, s.ptr, s.len);
        return dfail(d, CGA_EPROTO, "unknown regime \"%s\"", name);
    }
    return CGA_OK;
}

static int rd_level(dec_t *d, cga_level_t *out) {
    cga_str_t s;
    int rc = rd_str(d, &s, 0, SIZE_MAX, 0);
    if (rc) return rc;
    if (cga_level_parse(s.ptr, s.len, out) != CGA_OK) {
        char name[48] = "";
        append_sane(name, sizeof name, s.ptr, s.len);
        return dfail(d, CGA_EPROTO, "unknown level \"%s\"", name);
    }
    return CGA_OK;
}

/* "v": an int >= 1. Newer versions are accepted (see SCHEMA.md "Versioning"). */
static int rd_version(dec_t *d) {
    uint64_t v;
    int rc = rd_uint(d, &v, UINT64_MAX);
    if (rc) return rc;
    if (v < 1) return dfail(d, CGA_EPROTO, "unsupported version 0 (must be >= 1)");
    return CGA_OK;
}

/* ---- message maps ------------------------------------------------------------------------ */

typedef struct field_key_s {
    const char *name;
    uint8_t len;
} field_key_t;

#define KEY(s) {s, sizeof(s) - 1}

/* Reads a key and looks it up in keys[0..n). Unknown keys: their value is skipped and *f is
 * -1. Known keys: *f is the index, d->field names it (the caller reads the value). Duplicate
 * known keys are an error. */
/* Keys are a few bytes: a loop beats a call to memcmp. */
static inline int key_eq(const char *a, const char *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

static int rd_key(dec_t *d, const field_key_t *keys, int n, uint32_t *seen, int *f) {
    mp_tok_t t;
    int rc = rd_tok(d, &t);
    if (rc) return rc;
    if (t.type != MP_STR) return dfail(d, CGA_EPROTO, "expected str key, got %s",
                                       cga__mp_type_name(t.type));
    /* Start where the previous key matched + 1: in the canonical order every key matches at
     * the first try. */
    for (int k = 0, i = d->hint; k < n; k++, i = i + 1 == n ? 0 : i + 1) {
        if (keys[i].len == t.n && key_eq(keys[i].name, t.ptr, t.n)) {
            if (*seen & (1u << i))
                return dfail(d, CGA_EPROTO, "duplicate key \"%s\"", keys[i].name);
            *seen |= 1u << i;
            *f = i;
            d->hint = i + 1 == n ? 0 : i + 1;
            d->field = keys[i].name;
            d->field_len = keys[i].len;
            return CGA_OK;
        }
    }
    d->field = t.ptr;
    d->field_len = t.n;
    rc = cga__mp_skip(&d->c, MSG_MAX_DEPTH - 1);
    if (rc) return dfail_mp(d, rc);
    d->field = NULL;
    *f = -1;
    return CGA_OK;
}

static int check_required(dec_t *d, const field_key_t *keys, int n, uint32_t seen,
                          uint32_t required) {
    d->field = NULL;
    uint32_t missing = required & ~seen;
    if (!missing) return CGA_OK;
    for (int i = 0; i < n; i++)
        if (missing & (1u << i)) return dfail(d, CGA_EPROTO, "missing \"%s\"", keys[i].name);
    return CGA_EPROTO; /* not reached */
}

/* Each key/value pair takes at least 2 bytes. */
static int check_fields(dec_t *d, uint32_t nfields) {
    if (!mp_fits(&d->c, nfields, 2)) return dfail(d, CGA_EPROTO, "truncated input");
    return CGA_OK;
}

enum { T_V, T_ID, T_LAB, T_SYM, T_TS, T_BARS, T_N };
static const field_key_t TASK_KEYS[T_N] = {KEY("v"),   KEY("id"), KEY("lab"),
                                           KEY("sym"), KEY("ts"), KEY("bars")};

static inline int finite_bits(uint64_t u) {
    return ((u >> 52) & 0x7ff) != 0x7ff;
}

/* The canonical bar, as cgalpha writes it when t >= 2^32 (every real timestamp in ms):
 * 96 cf <t:8> then five cb <f64:8>. Reads it in one go when it is valid; anything else (other
 * encodings, and every error) goes to the general path, which says what is wrong. */
static inline int fast_bar(mp_cur_t *c, cga_bar_t *b, int64_t prev_t, int first) {
    const uint8_t *p = c->p;
    if (mp_left(c) < 55 || p[0] != 0x96 || p[1] != 0xcf || p[10] != 0xcb || p[19] != 0xcb ||
        p[28] != 0xcb || p[37] != 0xcb || p[46] != 0xcb)
        return 0;
    uint64_t t = mp_be64(p + 2), o = mp_be64(p + 11), h = mp_be64(p + 20), l = mp_be64(p + 29),
             cl = mp_be64(p + 38), v = mp_be64(p + 47);
    if (t > (uint64_t)INT64_MAX || (!first && (int64_t)t <= prev_t) || !finite_bits(o) ||
        !finite_bits(h) || !finite_bits(l) || !finite_bits(cl) || !finite_bits(v))
        return 0;
    b->t = (int64_t)t;
    memcpy(&b->open, &o, 8);
    memcpy(&b->high, &h, 8);
    memcpy(&b->low, &l, 8);
    memcpy(&b->close, &cl, 8);
    memcpy(&b->volume, &v, 8);
    c->p = p + 55;
    return 1;
}

static int rd_bars(dec_t *d, cga_task_t *t, size_t *boff) {
    cga_proto_reader_t *r = d->r;
    mp_tok_t a;
    int rc = rd_tok(d, &a);
    if (rc) return rc;
    if (a.type != MP_ARRAY) return dfail_type(d, &a, "array");
    if (a.n == 0) return dfail(d, CGA_EPROTO, "must not be empty");
    if (a.n > r->lim.max_bars)
        return dfail(d, CGA_EPROTO, "%" PRIu32 " bars exceed max_bars %zu", a.n, r->lim.max_bars);
    /* Nothing is sized from a count the input cannot hold (max_bars caps it too). */
    if (!mp_fits(&d->c, a.n, 1)) return dfail(d, CGA_EPROTO, "truncated input");
    size_t base = r->bars_used;
    GROW_TO(r->bars, r->bars_cap, base + a.n);
    cga_bar_t *bars = r->bars + base;
    for (uint32_t j = 0; j < a.n; j++) {
        cga_bar_t *b = &bars[j];
        if (fast_bar(&d->c, b, j ? b[-1].t : INT64_MIN, j == 0)) continue;
        mp_tok_t e;
        d->i1 = j;
        if ((rc = rd_tok(d, &e))) return rc;
        if (e.type != MP_ARRAY || e.n != 6) {
            if (e.type == MP_ARRAY)
                return dfail(d, CGA_EPROTO, "expected array of 6, got array of %" PRIu32, e.n);
            return dfail_type(d, &e, "array of 6");
        }
        d->i2 = 0;
        if ((rc = rd_int64(d, &b->t))) return rc;
        if (j > 0 && b->t <= b[-1].t)
            return dfail(d, CGA_EPROTO, "t %" PRId64 " not after the previous bar's %" PRId64,
                         b->t, b[-1].t);
        d->i2 = 1;
        if ((rc = rd_f64(d, &b->open))) return rc;
        d->i2 = 2;
        if ((rc = rd_f64(d, &b->high))) return rc;
        d->i2 = 3;
        if ((rc = rd_f64(d, &b->low))) return rc;
        d->i2 = 4;
        if ((rc = rd_f64(d, &b->close))) return rc;
        d->i2 = 5;
        if ((rc = rd_f64(d, &b->volume))) return rc;
    }
    d->i1 = d->i2 = -1;
    r->bars_used = base + a.n;
    t->nbars = a.n;
    *boff = base;
    return CGA_OK;
}

static int dec_task(dec_t *d, uint32_t nfields, cga_task_t *t, size_t *boff) {
    const cga_proto_limits_t *l = &d->r->lim;
    uint32_t seen = 0;
    int rc = check_fields(d, nfields);
    if (rc) return rc;
    for (uint32_t i = 0; i < nfields; i++) {
        int f = -1;
        if ((rc = rd_key(d, TASK_KEYS, T_N, &seen, &f))) return rc;
        switch (f) {
        case T_V: rc = rd_version(d); break;
        case T_ID: rc = rd_str(d, &t->id, 1, l->max_string, 0); break;
        case T_LAB: rc = rd_str(d, &t->lab, 1, min_sz(LAB_MAX, l->max_string), 0); break;
        case T_SYM: rc = rd_str(d, &t->symbol, 1, min_sz(SYM_MAX, l->max_string), 0); break;
        case T_TS: rc = rd_uint(d, &t->enq_us, UINT64_MAX); break;
        case T_BARS: rc = rd_bars(d, t, boff); break;
        default: break;
        }
        if (rc) return rc;
        d->field = NULL;
    }
    return check_required(d, TASK_KEYS, T_N, seen, (1u << T_N) - 1);
}

enum {
    R_V, R_TASK, R_LAB, R_SYM, R_WRK, R_WS, R_WE, R_ETS, R_TS, R_DUR, R_ST, R_ERR, R_REG, R_CONF,
    R_MET, R_N
};
static const field_key_t REPORT_KEYS[R_N] = {
    KEY("v"),  KEY("task"), KEY("lab"), KEY("sym"), KEY("wrk"), KEY("ws"),   KEY("we"), KEY("ets"),
    KEY("ts"), KEY("dur"),  KEY("st"),  KEY("err"), KEY("reg"), KEY("conf"), KEY("met")};

static int rd_metrics(dec_t *d, cga_report_t *rep, size_t *moff) {
    cga_proto_reader_t *r = d->r;
    mp_tok_t m;
    int rc = rd_tok(d, &m);
    if (rc) return rc;
    if (m.type == MP_NIL) m.n = 0;
    else if (m.type != MP_MAP) return dfail_type(d, &m, "map");
    if (m.n == 0) { /* nothing to size: the array may still be NULL */
        rep->nmetrics = 0;
        return CGA_OK;
    }
    if (m.n > r->lim.max_metrics)
        return dfail(d, CGA_EPROTO, "%" PRIu32 " metrics exceed max_metrics %zu", m.n,
                     r->lim.max_metrics);
    if (!mp_fits(&d->c, m.n, 2)) return dfail(d, CGA_EPROTO, "truncated input");
    size_t base = r->metrics_used;
    GROW_TO(r->metrics, r->metrics_cap, base + m.n);
    cga_metric_t *ms = r->metrics + base;
    size_t name_max = min_sz(METRIC_NAME_MAX, r->lim.max_string);
    for (uint32_t j = 0; j < m.n; j++) {
        mp_tok_t k;
        d->i1 = j;
        if ((rc = rd_tok(d, &k))) return rc;
        if (k.type != MP_STR) return dfail(d, CGA_EPROTO, "expected str key, got %s",
                                           cga__mp_type_name(k.type));
        if (k.n == 0) return dfail(d, CGA_EPROTO, "empty metric name");
        if (k.n > name_max)
            return dfail(d, CGA_EPROTO, "metric name too long (%" PRIu32 " bytes, max %zu)", k.n,
                         name_max);
        for (uint32_t q = 0; q < j; q++)
            if (ms[q].name.len == k.n && memcmp(ms[q].name.ptr, k.ptr, k.n) == 0) {
                char name[48] = "";
                append_sane(name, sizeof name, k.ptr, k.n);
                return dfail(d, CGA_EPROTO, "duplicate metric \"%s\"", name);
            }
        ms[j].name.ptr = k.ptr;
        ms[j].name.len = k.n;
        if ((rc = rd_f64(d, &ms[j].value))) return rc;
    }
    d->i1 = -1;
    r->metrics_used = base + m.n;
    rep->nmetrics = m.n;
    *moff = base;
    return CGA_OK;
}

static int dec_report(dec_t *d, uint32_t nfields, cga_report_t *rep, size_t *moff) {
    const cga_proto_limits_t *l = &d->r->lim;
    uint32_t seen = 0;
    uint64_t u;
    int rc = check_fields(d, nfields);
    if (rc) return rc;
    rep->error.ptr = EMPTY;
    rep->error.len = 0;
    rep->nmetrics = 0;
    *moff = d->r->metrics_used;
    for (uint32_t i = 0; i < nfields; i++) {
        int f = -1;
        if ((rc = rd_key(d, REPORT_KEYS, R_N, &seen, &f))) return rc;
        switch (f) {
        case R_V: rc = rd_version(d); break;
        case R_TASK: rc = rd_str(d, &rep->task_id, 1, l->max_string, 0); break;
        case R_LAB: rc = rd_str(d, &rep->lab, 1, min_sz(LAB_MAX, l->max_string), 0); break;
        case R_SYM: rc = rd_str(d, &rep->symbol, 1, min_sz(SYM_MAX, l->max_string), 0); break;
        case R_WRK: rc = rd_str(d, &rep->worker, 1, l->max_string, 0); break;
        case R_WS: rc = rd_int64(d, &rep->wstart); break;
        case R_WE: rc = rd_int64(d, &rep->wend); break;
        case R_ETS: rc = rd_uint(d, &rep->enq_us, UINT64_MAX); break;
        case R_TS: rc = rd_uint(d, &rep->done_us, UINT64_MAX); break;
        case R_DUR:
            rc = rd_uint(d, &u, UINT32_MAX);
            rep->run_us = (uint32_t)u;
            break;
        case R_ST:
            rc = rd_uint(d, &u, CGA_REPORT_ERROR);
            rep->status = (cga_report_status_t)u;
            break;
        case R_ERR: rc = rd_str(d, &rep->error, 0, l->max_string, 1); break;
        case R_REG: rc = rd_regime(d, &rep->regime); break;
        case R_CONF: rc = rd_conf(d, &rep->confidence); break;
        case R_MET: rc = rd_metrics(d, rep, moff); break;
        default: break;
        }
        if (rc) return rc;
        d->field = NULL;
    }
    uint32_t required = ((1u << R_N) - 1) & ~(1u << R_ERR | 1u << R_MET);
    if ((rc = check_required(d, REPORT_KEYS, R_N, seen, required))) return rc;
    if (rep->wstart > rep->wend)
        return dfail(d, CGA_EPROTO, "ws %" PRId64 " > we %" PRId64, rep->wstart, rep->wend);
    return CGA_OK;
}

enum { C_V, C_SYM, C_SEQ, C_FROM, C_TO, C_WS, C_CONF, C_TS, C_N };
static const field_key_t CHANGE_KEYS[C_N] = {KEY("v"),  KEY("sym"), KEY("seq"),  KEY("from"),
                                             KEY("to"), KEY("ws"),  KEY("conf"), KEY("ts")};

static int dec_regime_change(dec_t *d, uint32_t nfields, cga_regime_change_t *m) {
    uint32_t seen = 0;
    int rc = check_fields(d, nfields);
    if (rc) return rc;
    for (uint32_t i = 0; i < nfields; i++) {
        int f = -1;
        if ((rc = rd_key(d, CHANGE_KEYS, C_N, &seen, &f))) return rc;
        switch (f) {
        case C_V: rc = rd_version(d); break;
        case C_SYM:
            rc = rd_str(d, &m->symbol, 1, min_sz(SYM_MAX, d->r->lim.max_string), 0);
            break;
        case C_SEQ:
            rc = rd_uint(d, &m->seq, UINT64_MAX);
            if (!rc && m->seq == 0) rc = dfail(d, CGA_EPROTO, "must be >= 1");
            break;
        case C_FROM: rc = rd_regime(d, &m->from); break;
        case C_TO: rc = rd_regime(d, &m->to); break;
        case C_WS: rc = rd_int64(d, &m->wstart); break;
        case C_CONF: rc = rd_conf(d, &m->confidence); break;
        case C_TS: rc = rd_uint(d, &m->ts_us, UINT64_MAX); break;
        default: break;
        }
        if (rc) return rc;
        d->field = NULL;
    }
    return check_required(d, CHANGE_KEYS, C_N, seen, (1u << C_N) - 1);
}

enum { S_V, S_LEVEL, S_BACKLOG, S_LABS, S_MEM, S_MAXMEM, S_WHY, S_TS, S_N };
static const field_key_t RESOURCE_KEYS[S_N] = {KEY("v"),      KEY("level"), KEY("backlog"),
                                               KEY("labs"),   KEY("mem"),   KEY("maxmem"),
                                               KEY("why"),    KEY("ts")};

static int dec_resource_state(dec_t *d, uint32_t nfields, cga_resource_state_t *m) {
    uint32_t seen = 0;
    int rc = check_fields(d, nfields);
    if (rc) return rc;
    m->reason.ptr = EMPTY;
    m->reason.len = 0;
    for (uint32_t i = 0; i < nfields; i++) {
        int f = -1;
        if ((rc = rd_key(d, RESOURCE_KEYS, S_N, &seen, &f))) return rc;
        switch (f) {
        case S_V: rc = rd_version(d); break;
        case S_LEVEL: rc = rd_level(d, &m->level); break;
        case S_BACKLOG: rc = rd_uint(d, &m->backlog, UINT64_MAX); break;
        case S_LABS: rc = rd_uint(d, &m->labs, UINT64_MAX); break;
        case S_MEM: rc = rd_uint(d, &m->used_memory, UINT64_MAX); break;
        case S_MAXMEM: rc = rd_uint(d, &m->maxmemory, UINT64_MAX); break;
        case S_WHY: rc = rd_str(d, &m->reason, 0, d->r->lim.max_string, 1); break;
        case S_TS: rc = rd_uint(d, &m->ts_us, UINT64_MAX); break;
        default: break;
        }
        if (rc) return rc;
        d->field = NULL;
    }
    return check_required(d, RESOURCE_KEYS, S_N, seen, ((1u << S_N) - 1) & ~(1u << S_WHY));
}

enum {
    W_V, W_ID, W_HOST, W_PID, W_PLUGINS, W_START, W_DONE, W_FAIL, W_BUSY, W_TS, W_ACK, W_STALL,
    W_N
};
static const field_key_t WORKER_KEYS[W_N] = {KEY("v"),     KEY("id"),      KEY("host"),
                                             KEY("pid"),   KEY("plugins"), KEY("start"),
                                             KEY("done"),  KEY("fail"),    KEY("busy"),
                                             KEY("ts"),    KEY("ack"),     KEY("stall")};

static int rd_bool(dec_t *d, int *out) {
    mp_tok_t t;
    int rc = rd_tok(d, &t);
    if (rc) return rc;
    if (t.type != MP_BOOL) return dfail_type(d, &t, "bool");
    *out = t.v.b;
    return CGA_OK;
}

static int dec_worker_state(dec_t *d, uint32_t nfields, cga_worker_state_t *m) {
    const cga_proto_limits_t *l = &d->r->lim;
    uint32_t seen = 0;
    uint64_t u;
    int rc = check_fields(d, nfields);
    if (rc) return rc;
    for (uint32_t i = 0; i < nfields; i++) {
        int f = -1;
        if ((rc = rd_key(d, WORKER_KEYS, W_N, &seen, &f))) return rc;
        switch (f) {
        case W_V: rc = rd_version(d); break;
        case W_ID: rc = rd_str(d, &m->id, 1, l->max_string, 0); break;
        case W_HOST: rc = rd_str(d, &m->host, 0, l->max_string, 0); break;
        case W_PID:
            rc = rd_uint(d, &u, UINT32_MAX);
            m->pid = (uint32_t)u;
            break;
        case W_PLUGINS: rc = rd_str(d, &m->plugins, 0, l->max_string, 0); break;
        case W_START: rc = rd_uint(d, &m->started_us, UINT64_MAX); break;
        case W_DONE: rc = rd_uint(d, &m->processed, UINT64_MAX); break;
        case W_FAIL: rc = rd_uint(d, &m->failed, UINT64_MAX); break;
        case W_BUSY:
            rc = rd_uint(d, &u, UINT32_MAX);
            m->inflight = (uint32_t)u;
            break;
        case W_TS: rc = rd_uint(d, &m->ts_us, UINT64_MAX); break;
        case W_ACK: rc = rd_uint(d, &m->last_ack_us, UINT64_MAX); break;
        case W_STALL: rc = rd_bool(d, &m->stalled); break;
        default: break;
        }
        if (rc) return rc;
        d->field = NULL;
    }
    return check_required(d, WORKER_KEYS, W_N, seen,
                          ((1u << W_N) - 1) & ~(1u << W_ACK) & ~(1u << W_STALL));
}

/* ---- entries and single messages --------------------------------------------------------- */

/* Reads the outer value's header: a map is a lone message (batch of one; the map header is
 * left for msg_begin), an array is a batch. */
static int entry_begin(dec_t *d, size_t *count) {
    mp_cur_t save = d->c;
    mp_tok_t t;
    const char *kind = d->kind;
    d->kind = "entry";
    int rc = rd_tok(d, &t);
    if (rc) return rc;
    if (t.type == MP_MAP) {
        d->c = save;
        *count = 1;
    } else if (t.type == MP_ARRAY) {
        if (!mp_fits(&d->c, t.n, 1)) return dfail(d, CGA_EPROTO, "truncated input");
        if (t.n > d->r->lim.max_batch)
            return dfail(d, CGA_ETOOBIG, "batch of %" PRIu32 " messages exceeds max_batch %zu",
                         t.n, d->r->lim.max_batch);
        *count = t.n;
    } else {
        return dfail_type(d, &t, "map or array of maps");
    }
    d->kind = kind;
    return CGA_OK;
}

static int msg_begin(dec_t *d, uint32_t *nfields) {
    mp_tok_t t;
    d->hint = 0;
    int rc = rd_tok(d, &t);
    if (rc) return rc;
    if (t.type != MP_MAP) return dfail_type(d, &t, "map");
    *nfields = t.n;
    return CGA_OK;
}

static int msg_end(dec_t *d, const uint8_t *start) {
    size_t n = (size_t)(d->c.p - start);
    d->field = NULL;
    d->i1 = d->i2 = -1;
    if (n > d->r->lim.max_message_bytes)
        return dfail(d, CGA_ETOOBIG, "message of %zu bytes exceeds max_message_bytes %zu", n,
                     d->r->lim.max_message_bytes);
    return CGA_OK;
}

static int entry_end(dec_t *d, const char *what) {
    size_t left = mp_left(&d->c);
    if (left) {
        d->idx = -1;
        return dfail(d, CGA_EPROTO, "%zu unexpected byte(s) after the %s", left, what);
    }
    return CGA_OK;
}

int cga_proto_split(cga_proto_reader_t *r, const char *data, size_t len, const cga_str_t **msgs,
                    size_t *n) {
    dec_t d;
    size_t count;
    int rc;
    dec_init(&d, r, data, len, "message");
    *msgs = NULL;
    *n = 0;
    if ((rc = entry_begin(&d, &count))) return rc;
    GROW_TO(r->spans, r->spans_cap, count);
    for (size_t i = 0; i < count; i++) {
        const uint8_t *start = d.c.p;
        mp_tok_t t;
        d.idx = (long)i;
        if ((rc = rd_tok(&d, &t))) return rc;
        if (t.type != MP_MAP) return dfail_type(&d, &t, "map");
        if ((rc = cga__mp_skip_items(&d.c, &t, MSG_MAX_DEPTH - 1))) return dfail_mp(&d, rc);
        if ((rc = msg_end(&d, start))) return rc;
        r->spans[i].ptr = (const char *)start;
        r->spans[i].len = (size_t)(d.c.p - start);
    }
    d.kind = "entry";
    if ((rc = entry_end(&d, "value"))) return rc;
    *msgs = r->spans;
    *n = count;
    return CGA_OK;
}

int cga_proto_decode_tasks(cga_proto_reader_t *r, const char *data, size_t len,
                           const cga_task_t **tasks, size_t *n) {
    dec_t d;
    size_t count;
    int rc;
    dec_init(&d, r, data, len, "task");
    *tasks = NULL;
    *n = 0;
    if ((rc = entry_begin(&d, &count))) return rc;
    GROW_TO(r->tasks, r->tasks_cap, count);
    GROW_TO(r->offs, r->offs_cap, count);
    r->bars_used = 0;
    for (size_t i = 0; i < count; i++) {
        const uint8_t *start = d.c.p;
        uint32_t nfields = 0;
        cga_task_t *t = &r->tasks[i];
        memset(t, 0, sizeof *t);
        d.idx = (long)i;
        if ((rc = msg_begin(&d, &nfields)) || (rc = dec_task(&d, nfields, t, &r->offs[i])) ||
            (rc = msg_end(&d, start)))
            return rc;
    }
    d.kind = "entry";
    if ((rc = entry_end(&d, "value"))) return rc;
    /* The bars array may have moved while growing: point the tasks at it only now. */
    for (size_t i = 0; i < count; i++) r->tasks[i].bars = r->bars + r->offs[i];
    *tasks = r->tasks;
    *n = count;
    return CGA_OK;
}

int cga_proto_decode_reports(cga_proto_reader_t *r, const char *data, size_t len,
                             const cga_report_t **reports, size_t *n) {
    dec_t d;
    size_t count;
    int rc;
    dec_init(&d, r, data, len, "report");
    *reports = NULL;
    *n = 0;
    if ((rc = entry_begin(&d, &count))) return rc;
    GROW_TO(r->reports, r->reports_cap, count);
    GROW_TO(r->offs, r->offs_cap, count);
    r->metrics_used = 0;
    for (size_t i = 0; i < count; i++) {
        const uint8_t *start = d.c.p;
        uint32_t nfields = 0;
        cga_report_t *rep = &r->reports[i];
        memset(rep, 0, sizeof *rep);
        d.idx = (long)i;
        if ((rc = msg_begin(&d, &nfields)) || (rc = dec_report(&d, nfields, rep, &r->offs[i])) ||
            (rc = msg_end(&d, start)))
            return rc;
    }
    d.kind = "entry";
    if ((rc = entry_end(&d, "value"))) return rc;
    for (size_t i = 0; i < count; i++)
        r->reports[i].metrics = r->reports[i].nmetrics ? r->metrics + r->offs[i] : NULL;
    *reports = r->reports;
    *n = count;
    return CGA_OK;
}

#define DECODE_SINGLE(type, r, data, len, out, kind, dec)                                      \
    do {                                                                                       \
        dec_t d_;                                                                              \
        uint32_t nfields_ = 0;                                                                 \
        int rc_;                                                                               \
        type m_;                                                                               \
        memset(&m_, 0, sizeof m_);                                                             \
        dec_init(&d_, r, data, len, kind);                                                     \
        if ((rc_ = msg_begin(&d_, &nfields_)) || (rc_ = dec(&d_, nfields_, &m_)) ||            \
            (rc_ = msg_end(&d_, (const uint8_t *)(data))) ||                                   \
            (rc_ = entry_end(&d_, "message")))                                                 \
            return rc_;                                                                        \
        *(out) = m_;                                                                           \
        return CGA_OK;                                                                         \
    } while (0)

int cga_proto_decode_regime_change(cga_proto_reader_t *r, const char *data, size_t len,
                                   cga_regime_change_t *out) {
    DECODE_SINGLE(cga_regime_change_t, r, data, len, out, "regime_change", dec_regime_change);
}

int cga_proto_decode_resource_state(cga_proto_reader_t *r, const char *data, size_t len,
                                    cga_resource_state_t *out) {
    DECODE_SINGLE(cga_resource_state_t, r, data, len, out, "resource_state", dec_resource_state);
}

int cga_proto_decode_worker_state(cga_proto_reader_t *r, const char *data, size_t len,
                                  cga_worker_state_t *out) {
    DECODE_SINGLE(cga_worker_state_t, r, data, len, out, "worker_state", dec_worker_state);
}

/* Wire protocol codecs (proto.h): round trips, every accepted encoding, every rejection with
 * its exact message, truncation at every byte, hostile lengths and depths, limits, split, and
 * the examples of proto/SCHEMA.md (so that the document cannot drift from the code).
 *
 *   test_proto                  runs the tests
 *   test_proto --examples       prints the hex dumps pasted in proto/SCHEMA.md
 *   test_proto --seeds DIR      writes fuzzer seeds into DIR/fuzz_{tasks,reports,small}/ */

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cgalpha/err.h"
#include "cgalpha/proto.h"
#include "test.h"

/* ---- a tiny msgpack builder, to craft exactly the bytes a test needs ---------------------- */

typedef struct mb_s {
    uint8_t *b;
    size_t n, cap;
} mb_t;

static void mb_raw(mb_t *m, const void *p, size_t n) {
    if (m->n + n > m->cap) {
        m->cap = (m->n + n) * 2 + 64;
        m->b = realloc(m->b, m->cap);
        CGA_ASSERT(m->b != NULL);
    }
    if (n) memcpy(m->b + m->n, p, n);
    m->n += n;
}

static void mb_u8(mb_t *m, unsigned v) {
    uint8_t c = (uint8_t)v;
    mb_raw(m, &c, 1);
}

static void mb_be(mb_t *m, uint64_t v, int bytes) {
    for (int i = bytes - 1; i >= 0; i--) mb_u8(m, (unsigned)(v >> (8 * i)) & 0xff);
}

static void mb_hdr(mb_t *m, uint8_t fix, uint8_t c16, uint8_t c32, uint32_t n, uint32_t fixmax) {
    if (n <= fixmax)
        mb_u8(m, fix | n);
    else if (n <= 0xffff) {
        mb_u8(m, c16);
        mb_be(m, n, 2);
    } else {
        mb_u8(m, c32);
        mb_be(m, n, 4);
    }
}

static void mb_map(mb_t *m, uint32_t n) {
    mb_hdr(m, 0x80, 0xde, 0xdf, n, 15);
}

static void mb_arr(mb_t *m, uint32_t n) {
    mb_hdr(m, 0x90, 0xdc, 0xdd, n, 15);
}

static void mb_strn(mb_t *m, const char *s, size_t n) {
    if (n < 32)
        mb_u8(m, 0xa0 | (unsigned)n);
    else if (n < 256) {
        mb_u8(m, 0xd9);
        mb_u8(m, (unsigned)n);
    } else {
        mb_u8(m, 0xda);
        mb_be(m, n, 2);
    }
    mb_raw(m, s, n);
}

static void mb_str(mb_t *m, const char *s) {
    mb_strn(m, s, strlen(s));
}

static void mb_uint(mb_t *m, uint64_t v) {
    if (v < 128)
        mb_u8(m, (unsigned)v);
    else if (v < 256) {
        mb_u8(m, 0xcc);
        mb_be(m, v, 1);
    } else if (v < 65536) {
        mb_u8(m, 0xcd);
        mb_be(m, v, 2);
    } else if (v <= UINT32_MAX) {
        mb_u8(m, 0xce);
        mb_be(m, v, 4);
    } else {
        mb_u8(m, 0xcf);
        mb_be(m, v, 8);
    }
}

static void mb_int(mb_t *m, int64_t v) {
    if (v >= 0) {
        mb_uint(m, (uint64_t)v);
    } else if (v >= -32) {
        mb_u8(m, (unsigned)(v & 0xff));
    } else if (v >= -128) {
        mb_u8(m, 0xd0);
        mb_be(m, (uint64_t)v, 1);
    } else if (v >= -32768) {
        mb_u8(m, 0xd1);
        mb_be(m, (uint64_t)v, 2);
    } else if (v >= INT32_MIN) {
        mb_u8(m, 0xd2);
        mb_be(m, (uint64_t)v, 4);
    } else {
        mb_u8(m, 0xd3);
        mb_be(m, (uint64_t)v, 8);
    }
}

static void mb_f64(mb_t *m, double d) {
    uint64_t u;
    memcpy(&u, &d, 8);
    mb_u8(m, 0xcb);
    mb_be(m, u, 8);
}

static void mb_f32(mb_t *m, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    mb_u8(m, 0xca);
    mb_be(m, u, 4);
}

#define RAW(m, lit) mb_raw(m, lit, sizeof(lit) - 1)

static void mb_free(mb_t *m) {
    free(m->b);
    memset(m, 0, sizeof *m);
}

static void mb_reset(mb_t *m) {
    m->n = 0;
}

/* ---- standard messages, built by hand ----------------------------------------------------- */

/* Overrides one field of a standard message: the key's value bytes become val (val NULL: the
 * field is left out), and extra key/value pairs (bytes, npairs of them) are appended. */
typedef struct over_s {
    const char *key;
    const mb_t *val;
    const mb_t *extra;
    uint32_t extra_pairs;
} over_t;

static void put_field(mb_t *m, const over_t *o, const char *key, const mb_t *std) {
    if (o && o->key && strcmp(o->key, key) == 0) {
        if (!o->val) return;
        mb_str(m, key);
        mb_raw(m, o->val->b, o->val->n);
        return;
    }
    mb_str(m, key);
    mb_raw(m, std->b, std->n);
}

static uint32_t field_count(const over_t *o, uint32_t n) {
    if (o && o->key && !o->val) n--;
    return n + (o ? o->extra_pairs : 0);
}

static void put_extra(mb_t *m, const over_t *o) {
    if (o && o->extra) mb_raw(m, o->extra->b, o->extra->n);
}

/* Task: v 1, id "T1", lab "trend", sym "BTC", ts 1000, bars t 60000/120000/180000. */
static void put_task(mb_t *m, const over_t *o) {
    mb_t v = {0};
    mb_map(m, field_count(o, 6));
    mb_uint(&v, 1);
    put_field(m, o, "v", &v);
    mb_reset(&v);
    mb_str(&v, "T1");
    put_field(m, o, "id", &v);
    mb_reset(&v);
    mb_str(&v, "trend");
    put_field(m, o, "lab", &v);
    mb_reset(&v);
    mb_str(&v, "BTC");
    put_field(m, o, "sym", &v);
    mb_reset(&v);
    mb_uint(&v, 1000);
    put_field(m, o, "ts", &v);
    mb_reset(&v);
    mb_arr(&v, 3);
    for (int i = 0; i < 3; i++) {
        mb_arr(&v, 6);
        mb_uint(&v, 60000u * (unsigned)(i + 1));
        mb_f64(&v, 100 + i);
        mb_f64(&v, 101 + i);
        mb_f64(&v, 99 + i);
        mb_f64(&v, 100.5 + i);
        mb_f64(&v, 10 * (i + 1));
    }
    put_field(m, o, "bars", &v);
    put_extra(m, o);
    mb_free(&v);
}

/* Report: all required fields, no err, no met. */
static void put_report(mb_t *m, const over_t *o) {
    mb_t v = {0};
    mb_map(m, field_count(o, 13));
#define STD(key, stmt)                                                                     \
    do {                                                                                   \
        mb_reset(&v);                                                                      \
        stmt;                                                                              \
        put_field(m, o, key, &v);                                                          \
    } while (0)
    STD("v", mb_uint(&v, 1));
    STD("task", mb_str(&v, "T1"));
    STD("lab", mb_str(&v, "trend"));
    STD("sym", mb_str(&v, "BTC"));
    STD("wrk", mb_str(&v, "lab-1"));
    STD("ws", mb_uint(&v, 60000));
    STD("we", mb_uint(&v, 180000));
    STD("ets", mb_uint(&v, 1000));
    STD("ts", mb_uint(&v, 2000));
    STD("dur", mb_uint(&v, 5));
    STD("st", mb_uint(&v, 0));
    STD("reg", mb_str(&v, "bull"));
    STD("conf", mb_f64(&v, 0.5));
#undef STD
    put_extra(m, o);
    mb_free(&v);
}

/* ---- fixed examples (also in proto/SCHEMA.md) ---------------------------------------------- */

static const cga_bar_t EX_BARS[2] = {
    {1700000000000, 100.0, 101.5, 99.25, 101.0, 12.5},
    {1700000060000, 101.0, 102.0, 100.5, 101.75, 8.0},
};

static cga_task_t ex_task(void) {
    cga_task_t t = {cga_str("BTCUSD/1700000000000/trend"), cga_str("trend"), cga_str("BTCUSD"),
                    1700000000123456u, EX_BARS, 2};
    return t;
}

static const cga_metric_t EX_METRICS[2] = {{{"t", 1}, 2.5}, {{"mean", 4}, 0.0012}};

static cga_report_t ex_report(void) {
    cga_report_t r;
    memset(&r, 0, sizeof r);
    r.task_id = cga_str("BTCUSD/1700000000000/trend");
    r.lab = cga_str("trend");
    r.symbol = cga_str("BTCUSD");
    r.worker = cga_str("lab-host1-4242");
    r.wstart = 1700000000000;
    r.wend = 1700000060000;
    r.enq_us = 1700000000123456u;
    r.done_us = 1700000000125000u;
    r.run_us = 42;
    r.status = CGA_REPORT_OK;
    r.error = cga_str("");
    r.regime = CGA_REGIME_BULL;
    r.confidence = 0.75;
    r.metrics = EX_METRICS;
    r.nmetrics = 2;
    return r;
}

static cga_regime_change_t ex_change(void) {
    cga_regime_change_t c = {cga_str("BTCUSD"), 7, CGA_REGIME_SIDEWAYS, CGA_REGIME_BULL,
                             1700000000000, 0.8, 1700000000200000u};
    return c;
}

static cga_resource_state_t ex_resource(void) {
    cga_resource_state_t s = {CGA_LEVEL_YELLOW, 60000, 3, 734003200, 1073741824,
                              cga_str("backlog 60000 > 50000"), 1700000000300000u};
    return s;
}

static cga_worker_state_t ex_worker(void) {
    cga_worker_state_t w = {cga_str("lab-host1-4242"), cga_str("host1"), 4242,
                            cga_str("volatility,trend,momentum"), 1699999000000000u, 1000, 2, 4,
                            1700000000400000u, 0, 0};
    return w;
}

/* The optional "ack" and "stall" fields: absent when unset (the bytes of ex_worker() stay as
 * SCHEMA.md shows them), round-tripped when set, and a non-bool "stall" is refused. */
static void test_worker_optional_fields(void) {
    cga_proto_writer_t *w;
    cga_proto_reader_t *r;
    CGA_ASSERT_OK(cga_proto_writer_create(&w, NULL));
    CGA_ASSERT_OK(cga_proto_reader_create(&r, NULL));
    cga_worker_state_t in = ex_worker(), out;
    const char *data;
    size_t len, plain_len;
    CGA_ASSERT_OK(cga_proto_encode_worker_state(w, &in, &data, &plain_len));
    CGA_ASSERT_OK(cga_proto_decode_worker_state(r, data, plain_len, &out));
    CGA_ASSERT_EQ(out.last_ack_us, 0);
    CGA_ASSERT_EQ(out.stalled, 0);
    in.last_ack_us = 1700000000500000u;
    in.stalled = 1;
    CGA_ASSERT_OK(cga_proto_encode_worker_state(w, &in, &data, &len));
    CGA_ASSERT_EQ(len, plain_len + 4 + 9 + 6 + 1);
    CGA_ASSERT_OK(cga_proto_decode_worker_state(r, data, len, &out));
    CGA_ASSERT_EQ(out.last_ack_us, 1700000000500000u);
    CGA_ASSERT_EQ(out.stalled, 1);
    CGA_ASSERT_EQ(out.processed, in.processed);
    /* "stall": 1 (an int, not a bool) */
    char bad[512];
    memcpy(bad, data, len);
    CGA_ASSERT(bad[len - 1] == (char)0xc3);
    bad[len - 1] = 0x01;
    CGA_ASSERT_EQ(cga_proto_decode_worker_state(r, bad, len, &out), CGA_EPROTO);
    CGA_ASSERT(strstr(cga_proto_reader_error(r), "stall") != NULL);
    cga_proto_writer_free(w);
    cga_proto_reader_free(r);
}

/* ---- helpers -------------------------------------------------------------------------------- */

static cga_proto_writer_t *writer(const cga_proto_limits_t *l) {
    cga_proto_writer_t *w = NULL;
    CGA_ASSERT_OK(cga_proto_writer_create(&w, l));
    return w;
}

static cga_proto_reader_t *reader(const cga_proto_limits_t *l) {
    cga_proto_reader_t *r = NULL;
    CGA_ASSERT_OK(cga_proto_reader_create(&r, l));
    return r;
}

#define ASSERT_STR(got, want) CGA_ASSERT_MEMEQ((got).ptr, (got).len, (want).ptr, (want).len)

static int inside(const void *p, const char *data, size_t len) {
    return (const char *)p >= data && (const char *)p < data + len;
}

static void assert_task_eq(const cga_task_t *a, const cga_task_t *b) {
    ASSERT_STR(a->id, b->id);
    ASSERT_STR(a->lab, b->lab);
    ASSERT_STR(a->symbol, b->symbol);
    CGA_ASSERT_EQ(a->enq_us, b->enq_us);
    CGA_ASSERT_EQ(a->nbars, b->nbars);
    for (size_t i = 0; i < a->nbars; i++) {
        CGA_ASSERT_EQ(a->bars[i].t, b->bars[i].t);
        CGA_ASSERT(a->bars[i].open == b->bars[i].open);
        CGA_ASSERT(a->bars[i].high == b->bars[i].high);
        CGA_ASSERT(a->bars[i].low == b->bars[i].low);
        CGA_ASSERT(a->bars[i].close == b->bars[i].close);
        CGA_ASSERT(a->bars[i].volume == b->bars[i].volume);
    }
}

static void assert_report_eq(const cga_report_t *a, const cga_report_t *b) {
    ASSERT_STR(a->task_id, b->task_id);
    ASSERT_STR(a->lab, b->lab);
    ASSERT_STR(a->symbol, b->symbol);
    ASSERT_STR(a->worker, b->worker);
    CGA_ASSERT_EQ(a->wstart, b->wstart);
    CGA_ASSERT_EQ(a->wend, b->wend);
    CGA_ASSERT_EQ(a->enq_us, b->enq_us);
    CGA_ASSERT_EQ(a->done_us, b->done_us);
    CGA_ASSERT_EQ(a->run_us, b->run_us);
    CGA_ASSERT_EQ(a->status, b->status);
    ASSERT_STR(a->error, b->error);
    CGA_ASSERT_EQ(a->regime, b->regime);
    CGA_ASSERT(a->confidence == b->confidence);
    CGA_ASSERT_EQ(a->nmetrics, b->nmetrics);
    for (size_t i = 0; i < a->nmetrics; i++) {
        ASSERT_STR(a->metrics[i].name, b->metrics[i].name);
        CGA_ASSERT(a->metrics[i].value == b->metrics[i].value);
    }
}

/* Decodes data as tasks; asserts the return code and, on failure, the error text. */
static void expect_tasks(cga_proto_reader_t *r, const mb_t *m, int want_rc, const char *want_err) {
    const cga_task_t *t;
    size_t n;
    int rc = cga_proto_decode_tasks(r, (const char *)m->b, m->n, &t, &n);
    if (rc != want_rc) fprintf(stderr, "error: %s\n", cga_proto_reader_error(r));
    CGA_ASSERT_EQ(rc, want_rc);
    if (want_err) CGA_ASSERT_STREQ(cga_proto_reader_error(r), want_err);
    if (rc == CGA_OK) CGA_ASSERT_STREQ(cga_proto_reader_error(r), "");
}

static void expect_reports(cga_proto_reader_t *r, const mb_t *m, int want_rc,
                           const char *want_err) {
    const cga_report_t *rep;
    size_t n;
    int rc = cga_proto_decode_reports(r, (const char *)m->b, m->n, &rep, &n);
    if (rc != want_rc) fprintf(stderr, "error: %s\n", cga_proto_reader_error(r));
    CGA_ASSERT_EQ(rc, want_rc);
    if (want_err) CGA_ASSERT_STREQ(cga_proto_reader_error(r), want_err);
}

/* A task with a one-field override, decoded alone; returns the decoded task (valid until the
 * next call on r). */
static const cga_task_t *task_with(cga_proto_reader_t *r, mb_t *m, const char *key,
                                   const mb_t *val) {
    over_t o = {key, val, NULL, 0};
    const cga_task_t *t;
    size_t n;
    mb_reset(m);
    put_task(m, &o);
    int rc = cga_proto_decode_tasks(r, (const char *)m->b, m->n, &t, &n);
    if (rc) fprintf(stderr, "error: %s\n", cga_proto_reader_error(r));
    CGA_ASSERT_OK(rc);
    CGA_ASSERT_EQ(n, 1);
    return t;
}

/* Fills bars[0..n) with a simple ascending series. */
static void fill_bars(cga_bar_t *bars, size_t n, int64_t t0) {
    for (size_t i = 0; i < n; i++) {
        bars[i].t = t0 + (int64_t)i * 60000;
        bars[i].open = 100 + (double)i * 0.25;
        bars[i].high = bars[i].open + 1;
        bars[i].low = bars[i].open - 1;
        bars[i].close = bars[i].open + 0.5;
        bars[i].volume = (double)(i % 7) * 1.5;
    }
}

/* ---- names -------------------------------------------------------------------------------- */

static void test_names(void) {
    const char *regimes[] = {"unknown", "bull", "bear", "sideways", "turbulent"};
    for (int i = 0; i < CGA_REGIME_COUNT; i++) {
        cga_regime_t r;
        CGA_ASSERT_STREQ(cga_regime_name((cga_regime_t)i), regimes[i]);
        CGA_ASSERT_OK(cga_regime_parse(regimes[i], strlen(regimes[i]), &r));
        CGA_ASSERT_EQ(r, i);
    }
    cga_regime_t r;
    CGA_ASSERT_EQ(cga_regime_parse("Bull", 4, &r), CGA_EPROTO);
    CGA_ASSERT_EQ(cga_regime_parse("bul", 3, &r), CGA_EPROTO);
    CGA_ASSERT_EQ(cga_regime_parse("bulls", 5, &r), CGA_EPROTO);
    CGA_ASSERT_STREQ(cga_regime_name((cga_regime_t)9), "invalid");
    const char *levels[] = {"green", "yellow", "red"};
    for (int i = 0; i < 3; i++) {
        cga_level_t l;
        CGA_ASSERT_STREQ(cga_level_name((cga_level_t)i), levels[i]);
        CGA_ASSERT_OK(cga_level_parse(levels[i], strlen(levels[i]), &l));
        CGA_ASSERT_EQ(l, i);
    }
    cga_level_t l;
    CGA_ASSERT_EQ(cga_level_parse("RED", 3, &l), CGA_EPROTO);
    cga_proto_limits_t lim;
    cga_proto_limits_init(&lim);
    CGA_ASSERT_EQ(lim.max_message_bytes, 1 << 20);
    CGA_ASSERT_EQ(lim.max_batch, 4096);
    CGA_ASSERT_EQ(lim.max_bars, 10000);
    CGA_ASSERT_EQ(lim.max_metrics, 32);
    CGA_ASSERT_EQ(lim.max_string, 256);
}

/* ---- round trips -------------------------------------------------------------------------- */

/* n tasks of varying sizes in one batch; decoded back equal, strings point into the entry. */
static void roundtrip_tasks(size_t n, const cga_proto_limits_t *lim) {
    cga_proto_writer_t *w = writer(lim);
    cga_proto_reader_t *r = reader(lim);
    cga_task_t *in = calloc(n, sizeof *in);
    char (*ids)[64] = calloc(n, 64);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += 1 + i % 40;
    cga_bar_t *bars = calloc(total, sizeof *bars);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        size_t nb = 1 + i % 40;
        fill_bars(bars + at, nb, 1700000000000 + (int64_t)i * 60000);
        int len = snprintf(ids[i], 64, "SYM%zu/%lld/trend", i % 5,
                           (long long)(1700000000000 + (int64_t)i * 60000));
        in[i].id = (cga_str_t){ids[i], (size_t)len};
        in[i].lab = cga_str(i % 2 ? "trend" : "volatility");
        in[i].symbol = (cga_str_t){ids[i], 4};
        in[i].enq_us = (uint64_t)i * 1000003u;
        in[i].bars = bars + at;
        in[i].nbars = nb;
        at += nb;
        CGA_ASSERT_OK(cga_proto_write_task(w, &in[i]));
        CGA_ASSERT_EQ(cga_proto_writer_count(w), i + 1);
    }
    const char *data;
    size_t len;
    size_t size = cga_proto_writer_size(w);
    cga_proto_writer_finish(w, &data, &len);
    CGA_ASSERT_EQ(len, size);
    const cga_task_t *out;
    size_t nout;
    /* Twice: the second decode reuses the reader's memory and must give the same. */
    for (int pass = 0; pass < 2; pass++) {
        int rc = cga_proto_decode_tasks(r, data, len, &out, &nout);
        if (rc) fprintf(stderr, "error: %s\n", cga_proto_reader_error(r));
        CGA_ASSERT_OK(rc);
        CGA_ASSERT_EQ(nout, n);
        for (size_t i = 0; i < n; i++) {
            assert_task_eq(&out[i], &in[i]);
            CGA_ASSERT(inside(out[i].id.ptr, data, len)); /* zero-copy */
            CGA_ASSERT(inside(out[i].symbol.ptr, data, len));
        }
    }
    /* Split gives the same messages, which decode alone. */
    const cga_str_t *spans;
    size_t nspans;
    CGA_ASSERT_OK(cga_proto_split(r, data, len, &spans, &nspans));
    CGA_ASSERT_EQ(nspans, n);
    size_t sum = 0;
    for (size_t i = 0; i < n; i++) sum += spans[i].len;
    CGA_ASSERT_EQ(sum + (n < 16 ? 1 : n < 65536 ? 3 : 5), len);
    free(bars);
    free(ids);
    free(in);
    cga_proto_writer_free(w);
    cga_proto_reader_free(r);
}

static void test_task_roundtrip(void) {
    roundtrip_tasks(1, NULL);
    roundtrip_tasks(32, NULL);
    roundtrip_tasks(4096, NULL); /* max_batch by default */
    /* Extreme values survive. */
    cga_proto_writer_t *w = writer(NULL);
    cga_proto_reader_t *r = reader(NULL);
    cga_bar_t bars[3] = {{INT64_MIN, -1e308, 0.0, -0.0, 5e-324, 0},
                         {-1, 1.5, 2.5, 3.5, 4.5, 5.5},
                         {INT64_MAX, 1e308, DBL_MIN, 0, 0, 1e-300}};
    cga_task_t t = {cga_str("x"), cga_str("l"), cga_str("s"), UINT64_MAX, bars, 3};
    CGA_ASSERT_OK(cga_proto_write_task(w, &t));
    const char *data;
    size_t len, n;
    cga_proto_writer_finish(w, &data, &len);
    const cga_task_t *out;
    CGA_ASSERT_OK(cga_proto_decode_tasks(r, data, len, &out, &n));
    assert_task_eq(out, &t);
    CGA_ASSERT(signbit(out->bars[0].low)); /* -0.0 kept */
    cga_proto_writer_free(w);
    cga_proto_reader_free(r);
}

static void test_report_roundtrip(void) {
    cga_proto_writer_t *w = writer(NULL);
    cga_proto_reader_t *r = reader(NULL);
    cga_report_t a = ex_report();
    cga_report_t b = ex_report(); /* error status, text, no metrics */
    b.status = CGA_REPORT_ERROR;
    b.error = cga_str("window too short: 3 bars");
    b.regime = CGA_REGIME_UNKNOWN;
    b.confidence = 0;
    b.metrics = NULL;
    b.nmetrics = 0;
    cga_metric_t many[32];
    char names[32][8];
    for (int i = 0; i < 32; i++) {
        snprintf(names[i], sizeof names[i], "m%d", i);
        many[i].name = cga_str(names[i]);
        many[i].value = i * -0.5;
    }
    cga_report_t c = ex_report(); /* max_metrics metrics */
    c.metrics = many;
    c.nmetrics = 32;
    c.regime = CGA_REGIME_TURBULENT;
    c.confidence = 1;
    c.wstart = c.wend = -5;
    const cga_report_t *in[3] = {&a, &b, &c};
    for (int i = 0; i < 3; i++) CGA_ASSERT_OK(cga_proto_write_report(w, in[i]));
    const char *data;
    size_t len, n;
    cga_proto_writer_finish(w, &data, &len);
    const cga_report_t *out;
    CGA_ASSERT_OK(cga_proto_decode_reports(r, data, len, &out, &n));
    CGA_ASSERT_EQ(n, 3);
    for (int i = 0; i < 3; i++) assert_report_eq(&out[i], in[i]);
    CGA_ASSERT(out[1].metrics == NULL);
    CGA_ASSERT(out[0].error.ptr != NULL && out[0].error.len == 0); /* "" when absent */
    CGA_ASSERT(inside(out[2].metrics[31].name.ptr, data, len));
    cga_proto_writer_free(w);
    cga_proto_reader_free(r);
}

static void test_small_roundtrip(void) {
    cga_proto_writer_t *w = writer(NULL);
    cga_proto_reader_t *r = reader(NULL);
    const char *data;
    size_t len;

    cga_regime_change_t c = ex_change(), c2;
    CGA_ASSERT_OK(cga_proto_encode_regime_change(w, &c, &data, &len));
    CGA_ASSERT_OK(cga_proto_decode_regime_change(r, data, len, &c2));
    ASSERT_STR(c2.symbol, c.symbol);
    CGA_ASSERT_EQ(c2.seq, c.seq);
    CGA_ASSERT_EQ(c2.from, c.from);
    CGA_ASSERT_EQ(c2.to, c.to);
    CGA_ASSERT_EQ(c2.wstart, c.wstart);
    CGA_ASSERT(c2.confidence == c.confidence);
    CGA_ASSERT_EQ(c2.ts_us, c.ts_us);
    CGA_ASSERT_EQ(cga_proto_writer_count(w), 0); /* single messages leave the batch empty */

    cga_resource_state_t s = ex_resource(), s2;
    CGA_ASSERT_OK(cga_proto_encode_resource_state(w, &s, &data, &len));
    CGA_ASSERT_OK(cga_proto_decode_resource_state(r, data, len, &s2));
    CGA_ASSERT_EQ(s2.level, s.level);
    CGA_ASSERT_EQ(s2.backlog, s.backlog);
    CGA_ASSERT_EQ(s2.labs, s.labs);
    CGA_ASSERT_EQ(s2.used_memory, s.used_memory);
    CGA_ASSERT_EQ(s2.maxmemory, s.maxmemory);
    ASSERT_STR(s2.reason, s.reason);
    CGA_ASSERT_EQ(s2.ts_us, s.ts_us);

    cga_worker_state_t k = ex_worker(), k2;
    k.host = cga_str(""); /* may be empty */
    CGA_ASSERT_OK(cga_proto_encode_worker_state(w, &k, &data, &len));
    CGA_ASSERT_OK(cga_proto_decode_worker_state(r, data, len, &k2));
    ASSERT_STR(k2.id, k.id);
    ASSERT_STR(k2.host, k.host);
    CGA_ASSERT_EQ(k2.pid, k.pid);
    ASSERT_STR(k2.plugins, k.plugins);
    CGA_ASSERT_EQ(k2.started_us, k.started_us);
    CGA_ASSERT_EQ(k2.processed, k.processed);
    CGA_ASSERT_EQ(k2.failed, k.failed);
    CGA_ASSERT_EQ(k2.inflight, k.inflight);
    CGA_ASSERT_EQ(k2.ts_us, k.ts_us);

    /* A single message is not a task entry, and a task entry is not a single message. */
    const cga_task_t *t;
    size_t n;
    CGA_ASSERT_EQ(cga_proto_decode_tasks(r, data, len, &t, &n), CGA_EPROTO);
    CGA_ASSERT_STREQ(cga_proto_reader_error(r), "task[0]: missing \"lab\"");
    CGA_ASSERT_EQ(cga_proto_decode_worker_state(r, "\x90", 1, &k2), CGA_EPROTO);
    CGA_ASSERT_STREQ(cga_proto_reader_error(r), "worker_state: expected map, got array");
    cga_proto_writer_free(w);
    cga_proto_reader_free(r);
}

/* ---- the batch header ---------------------------------------------------------------------- */

static void test_batch_header(void) {
    cga_proto_limits_t lim;
    cga_proto_limits_init(&lim);
    lim.max_batch = 70000;
    cga_proto_writer_t *w = writer(&lim);
    cga_proto_reader_t *r = reader(&lim);
    const char *data;
    size_t len;
    cga_proto_writer_finish(w, &data, &len);
    CGA_ASSERT_MEMEQ(data, len, "\x90", 1);
    static const char msg[] = "\x81\xa1v\x01"; /* {"v": 1} */
    for (size_t i = 1; i <= 65536; i++) {
        CGA_ASSERT_OK(cga_proto_write_raw(w, msg, 4));
        if (i != 15 && i != 16 && i != 65535 && i != 65536) continue;
        size_t size = cga_proto_writer_size(w);
        cga_proto_writer_finish(w, &data, &len);
        CGA_ASSERT_EQ(len, size);
        size_t h = i < 16 ? 1 : i < 65536 ? 3 : 5;
        CGA_ASSERT_EQ(len, h + 4 * i);
        CGA_ASSERT_MEMEQ(data + h, 4, msg, 4);
        if (h == 1) CGA_ASSERT_EQ((unsigned char)data[0], 0x90 | i);
        if (h == 3) CGA_ASSERT_MEMEQ(data, 3, i == 16 ? "\xdc\x00\x10" : "\xdc\xff\xff", 3);
        if (h == 5) CGA_ASSERT_MEMEQ(data, 5, "\xdd\x00\x01\x00\x00", 5);
        const cga_str_t *spans;
        size_t n;
        CGA_ASSERT_OK(cga_proto_split(r, data, len, &spans, &n));
        CGA_ASSERT_EQ(n, i);
        CGA_ASSERT_MEMEQ(spans[n - 1].ptr, spans[n - 1].len, msg, 4);
    }
    /* The header goes in front of the payload, which stays where it was written: with the
     * memory already grown, payloads of 15, 16 and 65536 messages start at the same address. */
    const char *payload = data + 5;
    cga_proto_writer_reset(w);
    CGA_ASSERT_EQ(cga_proto_writer_count(w), 0);
    CGA_ASSERT_EQ(cga_proto_writer_size(w), 1);
    for (int i = 0; i < 15; i++) CGA_ASSERT_OK(cga_proto_write_raw(w, msg, 4));
    cga_proto_writer_finish(w, &data, &len);
    CGA_ASSERT(data + 1 == payload);
    /* Writing after finish appends to the same batch. */
    CGA_ASSERT_OK(cga_proto_write_raw(w, msg, 4));
    cga_proto_writer_finish(w, &data, &len);
    CGA_ASSERT(data + 3 == payload);
    CGA_ASSERT_EQ(len, 3 + 16 * 4);
    cga_proto_writer_reset(w);
    CGA_ASSERT_OK(cga_proto_write_raw(w, msg, 4));
    CGA_ASSERT_OK(cga_proto_write_raw(w, msg, 4));
    cga_proto_writer_finish(w, &data, &len);
    CGA_ASSERT_MEMEQ(data, len, "\x92\x81\xa1v\x01\x81\xa1v\x01", 9);
    cga_proto_writer_free(w);
    cga_proto_reader_free(r);
}

/* ---- every encoding a stock library may produce ------------------------------------------ */

static void test_int_widths(void) {
    cga_proto_reader_t *r = reader(NULL);
    mb_t m = {0}, v = {0};
    /* "ts" = 100 in every int encoding, and larger values in the wider ones. */
    struct {
        const char *bytes;
        size_t n;
        uint64_t want;
    } ts[] = {
        {"\x64", 1, 100},
        {"\xcc\x64", 2, 100},
        {"\xcd\x00\x64", 3, 100},
        {"\xce\x00\x00\x00\x64", 5, 100},
        {"\xcf\x00\x00\x00\x00\x00\x00\x00\x64", 9, 100},
        {"\xd0\x64", 2, 100},
        {"\xd1\x00\x64", 3, 100},
        {"\xd2\x00\x00\x00\x64", 5, 100},
        {"\xd3\x00\x00\x00\x00\x00\x00\x00\x64", 9, 100},
        {"\xcc\xff", 2, 255},
        {"\xcd\xff\xff", 3, 65535},
        {"\xce\xff\xff\xff\xff", 5, 4294967295u},
        {"\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 9, UINT64_MAX},
        {"\xd3\x7f\xff\xff\xff\xff\xff\xff\xff", 9, INT64_MAX},
    };
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
        mb_reset(&v);
        mb_raw(&v, ts[i].bytes, ts[i].n);
        const cga_task_t *t = task_with(r, &m, "ts", &v);
        CGA_ASSERT_EQ(t->enq_us == ts[i].want, 1);
    }
    /* Negative bar times in every signed encoding (ascending), floats as float32 and as ints
     * of every width and sign. */
    mb_reset(&v);
    int64_t times[] = {INT64_MIN, -3000000000LL, -40000, -200, -5, 0, 127, 128, 70000};
    size_t nt = sizeof times / sizeof times[0];
    mb_arr(&v, (uint32_t)nt);
    for (size_t i = 0; i < nt; i++) {
        mb_arr(&v, 6);
        mb_int(&v, times[i]);
        mb_f32(&v, 1.5f);                           /* float32 */
        mb_int(&v, -(int64_t)i - 1);                /* negative fixint, ... */
        mb_raw(&v, "\xd0\x85", 2);                  /* int8 -123 */
        mb_raw(&v, "\xcd\x01\x00", 3);              /* uint16 256 */
        mb_raw(&v, "\xd3\xff\xff\xff\xff\xff\xff\xff\xfe", 9); /* int64 -2 */
    }
    const cga_task_t *t = task_with(r, &m, "bars", &v);
    CGA_ASSERT_EQ(t->nbars, nt);
    for (size_t i = 0; i < nt; i++) {
        CGA_ASSERT_EQ(t->bars[i].t, times[i]);
        CGA_ASSERT(t->bars[i].open == 1.5);
        CGA_ASSERT(t->bars[i].high == -(double)i - 1);
        CGA_ASSERT(t->bars[i].low == -123);
        CGA_ASSERT(t->bars[i].close == 256);
        CGA_ASSERT(t->bars[i].volume == -2);
    }
    /* A uint64 float field keeps its magnitude. */
    mb_reset(&v);
    mb_arr(&v, 1);
    mb_arr(&v, 6);
    mb_uint(&v, 1);
    mb_raw(&v, "\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 9);
    for (int k = 0; k < 4; k++) mb_f64(&v, 1);
    t = task_with(r, &m, "bars", &v);
    CGA_ASSERT(t->bars[0].open == 18446744073709551615.0);
    mb_free(&m);
    mb_free(&v);
    cga_proto_reader_free(r);
}

static void test_string_forms(void) {
    cga_proto_reader_t *r = reader(NULL);
    mb_t m = {0}, v = {0};
    struct {
        uint8_t code;
        int lenbytes;
    } forms[] = {{0xa0, 0}, {0xd9, 1}, {0xda, 2}, {0xdb, 4}, {0xc4, 1}, {0xc5, 2}, {0xc6, 4}};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        mb_reset(&v);
        if (forms[i].lenbytes == 0) {
            mb_u8(&v, 0xa0 | 5);
        } else {
            mb_u8(&v, forms[i].code);
            mb_be(&v, 5, forms[i].lenbytes);
        }
        mb_raw(&v, "ab/cd", 5);
        const cga_task_t *t = task_with(r, &m, "id", &v);
        CGA_ASSERT_MEMEQ(t->id.ptr, t->id.len, "ab/cd", 5);
    }
    /* Optional strings: nil and absent read as "". */
    mb_t e = {0};
    mb_str(&e, "err");
    mb_u8(&e, 0xc0);
    mb_str(&e, "met");
    mb_u8(&e, 0xc0);
    over_t o = {NULL, NULL, &e, 2};
    mb_reset(&m);
    put_report(&m, &o);
    const cga_report_t *rep;
    size_t n;
    CGA_ASSERT_OK(cga_proto_decode_reports(r, (const char *)m.b, m.n, &rep, &n));
    CGA_ASSERT_EQ(rep[0].error.len, 0);
    CGA_ASSERT_EQ(rep[0].nmetrics, 0);
    mb_free(&e);
    mb_free(&m);
    mb_free(&v);
    cga_proto_reader_free(r);
}

static void test_unknown_keys_and_versions(void) {
    cga_proto_reader_t *r = reader(NULL);
    mb_t m = {0}, e = {0}, v = {0};
    /* Unknown keys of every type, including near-misses of real keys, are skipped. */
    mb_str(&e, "i");
    mb_str(&e, "not the id");
    mb_str(&e, "idx");
    mb_u8(&e, 0xc0);
    mb_str(&e, "bars2");
    mb_arr(&e, 2);
    mb_map(&e, 1);
    mb_str(&e, "k");
    mb_arr(&e, 0);
    RAW(&e, "\xc7\x03\x05xyz"); /* ext8 */
    mb_str(&e, "t");
    RAW(&e, "\xd6\xff\x00\x00\x00\x01"); /* timestamp ext */
    mb_str(&e, "b");
    RAW(&e, "\xc5\x00\x02zz"); /* bin16 */
    mb_str(&e, "f");
    mb_raw(&e, "\xc3", 1);
    over_t o = {NULL, NULL, &e, 6};
    put_task(&m, &o);
    const cga_task_t *t;
    size_t n;
    int rc = cga_proto_decode_tasks(r, (const char *)m.b, m.n, &t, &n);
    if (rc) fprintf(stderr, "error: %s\n", cga_proto_reader_error(r));
    CGA_ASSERT_OK(rc);
    CGA_ASSERT_MEMEQ(t->id.ptr, t->id.len, "T1", 2);
    CGA_ASSERT_EQ(t->nbars, 3);
    /* Any key order. */
    mb_reset(&m);
    mb_map(&m, 6);
    mb_str(&m, "bars");
    RAW(&m, "\x91\x96\x01\x01\x01\x01\x01\x01");
    mb_str(&m, "ts");
    mb_uint(&m, 7);
    mb_str(&m, "sym");
    mb_str(&m, "S");
    mb_str(&m, "id");
    mb_str(&m, "I");
    mb_str(&m, "lab");
    mb_str(&m, "L");
    mb_str(&m, "v");
    mb_uint(&m, 1);
    rc = cga_proto_decode_tasks(r, (const char *)m.b, m.n, &t, &n);
    CGA_ASSERT_OK(rc);
    CGA_ASSERT_MEMEQ(t->id.ptr, t->id.len, "I", 1);
    CGA_ASSERT_MEMEQ(t->lab.ptr, t->lab.len, "L", 1);
    CGA_ASSERT_MEMEQ(t->symbol.ptr, t->symbol.len, "S", 1);
    CGA_ASSERT_EQ(t->enq_us, 7);
    CGA_ASSERT_EQ(t->bars[0].t, 1);
    /* Newer versions are read (unknown fields ignored); 0 is not a version. */
    mb_reset(&v);
    mb_uint(&v, 2);
    task_with(r, &m, "v", &v);
    mb_reset(&v);
    mb_uint(&v, 0);
    over_t ov = {"v", &v, NULL, 0};
    mb_reset(&m);
    put_task(&m, &ov);
    expect_tasks(r, &m, CGA_EPROTO, "task[0].v: unsupported version 0 (must be >= 1)");
    mb_free(&m);
    mb_free(&e);
    mb_free(&v);
    cga_proto_reader_free(r);
}

/* ---- rejections with their exact messages ------------------------------------------------ */

typedef struct bad_s {
    const char *key;   /* field replaced (NULL: none) */
    const char *val;   /* its new value bytes (NULL with key: the field is removed) */
    size_t val_len;
    const char *extra; /* appended key/value pairs */
    size_t extra_len;
    uint32_t extra_pairs;
    int rc;
    const char *err;
} bad_t;

#define B(s) s, sizeof(s) - 1

static void check_bad_tasks(cga_proto_reader_t *r, const bad_t *cases, size_t n) {
    for (size_t i = 0; i < n; i++) {
        mb_t m = {0}, v = {0}, e = {0};
        if (cases[i].val) mb_raw(&v, cases[i].val, cases[i].val_len);
        if (cases[i].extra) mb_raw(&e, cases[i].extra, cases[i].extra_len);
        over_t o = {cases[i].key, cases[i].val ? &v : NULL, &e, cases[i].extra_pairs};
        put_task(&m, &o);
        fprintf(stderr, "   case %zu: %s\n", i, cases[i].err);
        expect_tasks(r, &m, cases[i].rc, cases[i].err);
        mb_free(&m);
        mb_free(&v);
        mb_free(&e);
    }
}

static void test_task_rejections(void) {
    cga_proto_reader_t *r = reader(NULL);
    static const bad_t cases[] = {
        {"sym", NULL, 0, NULL, 0, 0, CGA_EPROTO, "task[0]: missing \"sym\""},
        {"v", NULL, 0, NULL, 0, 0, CGA_EPROTO, "task[0]: missing \"v\""},
        {"id", B("\x05"), NULL, 0, 0, CGA_EPROTO, "task[0].id: expected str, got int"},
        {"id", B("\xc0"), NULL, 0, 0, CGA_EPROTO, "task[0].id: expected str, got nil"},
        {"id", B("\xa0"), NULL, 0, 0, CGA_EPROTO, "task[0].id: must not be empty"},
        {"lab", B("\xc2"), NULL, 0, 0, CGA_EPROTO, "task[0].lab: expected str, got bool"},
        {"ts", B("\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00"), NULL, 0, 0, CGA_EPROTO,
         "task[0].ts: expected int, got float"},
        {"ts", B("\xff"), NULL, 0, 0, CGA_EPROTO,
         "task[0].ts: -1 out of range 0..18446744073709551615"},
        {"ts", B("\xa1" "1"), NULL, 0, 0, CGA_EPROTO, "task[0].ts: expected int, got str"},
        {"bars", B("\x90"), NULL, 0, 0, CGA_EPROTO, "task[0].bars: must not be empty"},
        {"bars", B("\x80"), NULL, 0, 0, CGA_EPROTO, "task[0].bars: expected array, got map"},
        {"bars", B("\x91\x95\x01\x01\x01\x01\x01"), NULL, 0, 0, CGA_EPROTO,
         "task[0].bars[0]: expected array of 6, got array of 5"},
        {"bars", B("\x91\x01"), NULL, 0, 0, CGA_EPROTO,
         "task[0].bars[0]: expected array of 6, got int"},
        {"bars", B("\x92\x96\x05\x01\x01\x01\x01\x01\x96\x05\x01\x01\x01\x01\x01"), NULL, 0, 0,
         CGA_EPROTO, "task[0].bars[1][0]: t 5 not after the previous bar's 5"},
        {"bars", B("\x91\x96\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00\x01\x01\x01\x01\x01"), NULL, 0,
         0, CGA_EPROTO, "task[0].bars[0][0]: expected int, got float"},
        {"bars", B("\x91\x96\xcf\x80\x00\x00\x00\x00\x00\x00\x00\x01\x01\x01\x01\x01"), NULL, 0,
         0, CGA_EPROTO, "task[0].bars[0][0]: 9223372036854775808 out of range for int64"},
        {"bars", B("\x91\x96\x01\x01\x01\x01\xc0\x01"), NULL, 0, 0, CGA_EPROTO,
         "task[0].bars[0][4]: expected float, got nil"},
        {"bars", B("\x91\x96\x01\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00\x01\x01\x01\x01"), NULL, 0,
         0, CGA_EPROTO, "task[0].bars[0][1]: not finite (nan)"},
        {"bars", B("\x91\x96\x01\x01\xca\xff\x80\x00\x00\x01\x01\x01"), NULL, 0, 0, CGA_EPROTO,
         "task[0].bars[0][2]: not finite (-inf)"},
        {"bars", B("\xdd\xff\xff\xff\xff"), NULL, 0, 0, CGA_EPROTO,
         "task[0].bars: 4294967295 bars exceed max_bars 10000"},
        {"bars", B("\xdc\x27\x10"), NULL, 0, 0, CGA_EPROTO, "task[0].bars: truncated input"},
        {"id", B("\xdb\xff\xff\xff\xff"), NULL, 0, 0, CGA_EPROTO, "task[0].id: truncated input"},
        {"id", B("\xc1"), NULL, 0, 0, CGA_EPROTO, "task[0].id: invalid byte 0xc1"},
        {NULL, NULL, 0, B("\xa2id\xa1x"), 1, CGA_EPROTO, "task[0]: duplicate key \"id\""},
        {NULL, NULL, 0, B("\x07\x01"), 1, CGA_EPROTO, "task[0]: expected str key, got int"},
        {NULL, NULL, 0, B("\xc4\x01x\x01"), 1, CGA_EPROTO, "task[0]: expected str key, got bin"},
        {NULL, NULL, 0, B("\xa1x\xdd\xff\xff\xff\xff"), 1, CGA_EPROTO,
         "task[0].x: truncated input"},
        {NULL, NULL, 0, B("\xa1x\xdf\xff\xff\xff\xff"), 1, CGA_EPROTO,
         "task[0].x: truncated input"},
        {NULL, NULL, 0, B("\xa3\x01\xff\x7f\xc1"), 1, CGA_EPROTO,
         "task[0].???: invalid byte 0xc1"},
    };
    check_bad_tasks(r, cases, sizeof cases / sizeof cases[0]);

    /* Bars in the layout cgalpha writes (uint64 t, float64 values) take a fast path; its
     * errors are reported exactly like the others. */
    static const bad_t canonical[] = {
        {"bars",
         B("\x92\x96\xcf\x00\x00\x01\x00\x00\x00\x00\x00"
           "\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00"
           "\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00"
           "\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00"
           "\x96\xcf\x00\x00\x01\x00\x00\x00\x00\x00"
           "\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00"
           "\xcb\x7f\xf0\x00\x00\x00\x00\x00\x00\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00"
           "\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00"),
         NULL, 0, 0, CGA_EPROTO, "task[0].bars[1][0]: t 1099511627776 not after the previous "
                                 "bar's 1099511627776"},
        {"bars",
         B("\x91\x96\xcf\x00\x00\x01\x00\x00\x00\x00\x00"
           "\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00"
           "\xcb\x7f\xf0\x00\x00\x00\x00\x00\x00\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00"
           "\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00"),
         NULL, 0, 0, CGA_EPROTO, "task[0].bars[0][3]: not finite (inf)"},
        {"bars",
         B("\x91\x96\xcf\xff\x00\x01\x00\x00\x00\x00\x00"
           "\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00"
           "\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00"
           "\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00"),
         NULL, 0, 0, CGA_EPROTO,
         "task[0].bars[0][0]: 18374687579183251456 out of range for int64"},
    };
    check_bad_tasks(r, canonical, sizeof canonical / sizeof canonical[0]);

    /* Long strings: at the limit is fine, one more is not. */
    mb_t m = {0}, v = {0};
    char big[300];
    memset(big, 'a', sizeof big);
    mb_strn(&v, big, 256);
    task_with(r, &m, "id", &v);
    mb_reset(&v);
    mb_strn(&v, big, 257);
    over_t o = {"id", &v, NULL, 0};
    mb_reset(&m);
    put_task(&m, &o);
    expect_tasks(r, &m, CGA_EPROTO, "task[0].id: too long (257 bytes, max 256)");
    mb_reset(&v);
    mb_strn(&v, big, 33);
    o.key = "sym";
    mb_reset(&m);
    put_task(&m, &o);
    expect_tasks(r, &m, CGA_EPROTO, "task[0].sym: too long (33 bytes, max 32)");
    mb_reset(&v);
    mb_strn(&v, big, 65);
    o.key = "lab";
    mb_reset(&m);
    put_task(&m, &o);
    expect_tasks(r, &m, CGA_EPROTO, "task[0].lab: too long (65 bytes, max 64)");

    /* The error names the message of the batch it is in: "task[3].bars[2][4]". */
    mb_reset(&m);
    mb_arr(&m, 4);
    for (int i = 0; i < 3; i++) put_task(&m, NULL);
    mb_reset(&v);
    mb_arr(&v, 3);
    for (int i = 0; i < 3; i++) {
        mb_arr(&v, 6);
        mb_uint(&v, (uint64_t)i + 1);
        mb_f64(&v, 1);
        mb_f64(&v, 1);
        mb_f64(&v, 1);
        if (i == 2)
            mb_str(&v, "1.5");
        else
            mb_f64(&v, 1);
        mb_f64(&v, 1);
    }
    o.key = "bars";
    put_task(&m, &o);
    expect_tasks(r, &m, CGA_EPROTO, "task[3].bars[2][4]: expected float, got str");

    /* Outer value. */
    mb_reset(&m);
    mb_u8(&m, 0x05);
    expect_tasks(r, &m, CGA_EPROTO, "entry: expected map or array of maps, got int");
    mb_reset(&m);
    expect_tasks(r, &m, CGA_EPROTO, "entry: truncated input");
    mb_reset(&m);
    mb_arr(&m, 2);
    put_task(&m, NULL);
    mb_arr(&m, 0);
    expect_tasks(r, &m, CGA_EPROTO, "task[1]: expected map, got array");
    mb_reset(&m);
    put_task(&m, NULL);
    mb_u8(&m, 0xc0);
    expect_tasks(r, &m, CGA_EPROTO, "entry: 1 unexpected byte(s) after the value");
    mb_reset(&m);
    mb_arr(&m, 1);
    put_task(&m, NULL);
    mb_raw(&m, "garbage", 7);
    expect_tasks(r, &m, CGA_EPROTO, "entry: 7 unexpected byte(s) after the value");
    mb_reset(&m);
    mb_raw(&m, "\xdd\xff\xff\xff\xff", 5);
    expect_tasks(r, &m, CGA_EPROTO, "entry: truncated input");
    mb_reset(&m);
    mb_raw(&m, "\xdf\xff\xff\xff\xff", 5); /* a map: the lone message */
    expect_tasks(r, &m, CGA_EPROTO, "task[0]: truncated input");
    mb_reset(&m);
    mb_arr(&m, 0);
    expect_tasks(r, &m, CGA_OK, NULL); /* an empty batch is valid */
    mb_free(&m);
    mb_free(&v);
    cga_proto_reader_free(r);
}

static void test_report_rejections(void) {
    cga_proto_reader_t *r = reader(NULL);
    struct {
        const char *key;
        const char *val;
        size_t val_len;
        const char *err;
    } cases[] = {
        {"reg", B("\xa5" "crash"), "report[0].reg: unknown regime \"crash\""},
        {"reg", B("\xa4" "Bull"), "report[0].reg: unknown regime \"Bull\""},
        {"reg", B("\x01"), "report[0].reg: expected str, got int"},
        {"conf", B("\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00"), "report[0].conf: 1.5 out of range 0..1"},
        {"conf", B("\xff"), "report[0].conf: -1 out of range 0..1"},
        {"st", B("\x02"), "report[0].st: 2 out of range 0..1"},
        {"dur", B("\xcf\x00\x00\x00\x01\x00\x00\x00\x00"),
         "report[0].dur: 4294967296 out of range 0..4294967295"},
        {"ws", B("\xce\x00\x03\x0d\x40"), "report[0]: ws 200000 > we 180000"},
        {"wrk", B("\xa0"), "report[0].wrk: must not be empty"},
        {"task", NULL, 0, "report[0]: missing \"task\""},
        {"conf", NULL, 0, "report[0]: missing \"conf\""},
    };
    mb_t m = {0}, v = {0}, e = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mb_reset(&m);
        mb_reset(&v);
        if (cases[i].val) mb_raw(&v, cases[i].val, cases[i].val_len);
        over_t o = {cases[i].key, cases[i].val ? &v : NULL, NULL, 0};
        put_report(&m, &o);
        expect_reports(r, &m, CGA_EPROTO, cases[i].err);
    }
    /* Metrics. */
    struct {
        const char *met;
        size_t len;
        const char *err;
    } mets[] = {
        {B("\x82\xa1" "a\x01\xa1" "a\x02"), "report[0].met[1]: duplicate metric \"a\""},
        {B("\x81\x01\x01"), "report[0].met[0]: expected str key, got int"},
        {B("\x81\xa0\x01"), "report[0].met[0]: empty metric name"},
        {B("\x81\xa1" "a\xa1" "b"), "report[0].met[0]: expected float, got str"},
        {B("\x91\x01"), "report[0].met: expected map, got array"},
        {B("\xde\x00\x21"), "report[0].met: 33 metrics exceed max_metrics 32"},
        {B("\xde\x00\x20"), "report[0].met: truncated input"},
    };
    for (size_t i = 0; i < sizeof mets / sizeof mets[0]; i++) {
        mb_reset(&m);
        mb_reset(&e);
        mb_str(&e, "met");
        mb_raw(&e, mets[i].met, mets[i].len);
        over_t o = {NULL, NULL, &e, 1};
        put_report(&m, &o);
        expect_reports(r, &m, CGA_EPROTO, mets[i].err);
    }
    mb_free(&m);
    mb_free(&v);
    mb_free(&e);
    cga_proto_reader_free(r);
}

static void test_small_rejections(void) {
    cga_proto_reader_t *r = reader(NULL);
    cga_regime_change_t c;
    cga_resource_state_t s;
    cga_worker_state_t k;
    mb_t m = {0};
    /* seq 0, regime names, levels, and trailing bytes. */
    mb_map(&m, 8);
    mb_str(&m, "v");
    mb_uint(&m, 1);
    mb_str(&m, "sym");
    mb_str(&m, "BTC");
    mb_str(&m, "seq");
    mb_uint(&m, 0);
    CGA_ASSERT_EQ(cga_proto_decode_regime_change(r, (const char *)m.b, m.n, &c), CGA_EPROTO);
    CGA_ASSERT_STREQ(cga_proto_reader_error(r), "regime_change.seq: must be >= 1");
    mb_reset(&m);
    mb_map(&m, 2);
    mb_str(&m, "v");
    mb_uint(&m, 1);
    mb_str(&m, "level");
    mb_str(&m, "orange");
    CGA_ASSERT_EQ(cga_proto_decode_resource_state(r, (const char *)m.b, m.n, &s), CGA_EPROTO);
    CGA_ASSERT_STREQ(cga_proto_reader_error(r), "resource_state.level: unknown level \"orange\"");
    mb_reset(&m);
    mb_map(&m, 1);
    mb_str(&m, "pid");
    mb_uint(&m, 1ull << 32);
    CGA_ASSERT_EQ(cga_proto_decode_worker_state(r, (const char *)m.b, m.n, &k), CGA_EPROTO);
    CGA_ASSERT_STREQ(cga_proto_reader_error(r),
                     "worker_state.pid: 4294967296 out of range 0..4294967295");
    /* A valid message followed by a byte. */
    cga_proto_writer_t *w = writer(NULL);
    const char *data;
    size_t len;
    cga_regime_change_t ex = ex_change();
    CGA_ASSERT_OK(cga_proto_encode_regime_change(w, &ex, &data, &len));
    mb_reset(&m);
    mb_raw(&m, data, len);
    mb_u8(&m, 0);
    CGA_ASSERT_EQ(cga_proto_decode_regime_change(r, (const char *)m.b, m.n, &c), CGA_EPROTO);
    CGA_ASSERT_STREQ(cga_proto_reader_error(r),
                     "regime_change: 1 unexpected byte(s) after the message");
    /* An unknown regime name in "to". */
    mb_reset(&m);
    mb_map(&m, 1);
    mb_str(&m, "to");
    mb_raw(&m, "\xa3\x00\x01\x02", 4);
    CGA_ASSERT_EQ(cga_proto_decode_regime_change(r, (const char *)m.b, m.n, &c), CGA_EPROTO);
    CGA_ASSERT_STREQ(cga_proto_reader_error(r), "regime_change.to: unknown regime \"???\"");
    cga_proto_writer_free(w);
    mb_free(&m);
    cga_proto_reader_free(r);
}

/* ---- truncation at every byte ------------------------------------------------------------ */

typedef int (*decode_fn)(cga_proto_reader_t *r, const char *data, size_t len);

static int dec_tasks(cga_proto_reader_t *r, const char *data, size_t len) {
    const cga_task_t *t;
    size_t n;
    return cga_proto_decode_tasks(r, data, len, &t, &n);
}

static int dec_reports(cga_proto_reader_t *r, const char *data, size_t len) {
    const cga_report_t *t;
    size_t n;
    return cga_proto_decode_reports(r, data, len, &t, &n);
}

static int dec_change(cga_proto_reader_t *r, const char *data, size_t len) {
    cga_regime_change_t m;
    return cga_proto_decode_regime_change(r, data, len, &m);
}

static int dec_resource(cga_proto_reader_t *r, const char *data, size_t len) {
    cga_resource_state_t m;
    return cga_proto_decode_resource_state(r, data, len, &m);
}

static int dec_worker(cga_proto_reader_t *r, const char *data, size_t len) {
    cga_worker_state_t m;
    return cga_proto_decode_worker_state(r, data, len, &m);
}

static int dec_split(cga_proto_reader_t *r, const char *data, size_t len) {
    const cga_str_t *s;
    size_t n;
    return cga_proto_split(r, data, len, &s, &n);
}

/* Every proper prefix fails with EPROTO; the full message decodes. Each prefix is copied into
 * a buffer of exactly its size, so that ASan catches any read past it. */
static void all_prefixes(const char *data, size_t len, decode_fn fn) {
    cga_proto_reader_t *r = reader(NULL);
    for (size_t k = 0; k <= len; k++) {
        char *p = malloc(k ? k : 1);
        memcpy(p, data, k);
        int rc = fn(r, p, k);
        if (k < len && rc != CGA_EPROTO)
            CGA_FAIL_("prefix %zu/%zu: got %d (%s)", k, len, rc, cga_proto_reader_error(r));
        if (k < len && !strstr(cga_proto_reader_error(r), "truncated input"))
            CGA_FAIL_("prefix %zu/%zu: %s", k, len, cga_proto_reader_error(r));
        if (k == len) CGA_ASSERT_OK(rc);
        free(p);
    }
    cga_proto_reader_free(r);
}

static void test_truncation(void) {
    cga_proto_writer_t *w = writer(NULL);
    const char *data;
    size_t len;
    cga_task_t t = ex_task();
    for (int i = 0; i < 3; i++) CGA_ASSERT_OK(cga_proto_write_task(w, &t));
    cga_proto_writer_finish(w, &data, &len);
    all_prefixes(data, len, dec_tasks);
    all_prefixes(data, len, dec_split);
    cga_proto_writer_reset(w);
    cga_report_t rep = ex_report();
    CGA_ASSERT_OK(cga_proto_write_report(w, &rep));
    rep.error = cga_str("boom");
    rep.status = CGA_REPORT_ERROR;
    CGA_ASSERT_OK(cga_proto_write_report(w, &rep));
    cga_proto_writer_finish(w, &data, &len);
    all_prefixes(data, len, dec_reports);
    /* A lone message (no array around it). */
    cga_proto_writer_reset(w);
    CGA_ASSERT_OK(cga_proto_write_task(w, &t));
    cga_proto_writer_finish(w, &data, &len);
    all_prefixes(data + 1, len - 1, dec_tasks);
    all_prefixes(data + 1, len - 1, dec_split);
    cga_regime_change_t c = ex_change();
    CGA_ASSERT_OK(cga_proto_encode_regime_change(w, &c, &data, &len));
    all_prefixes(data, len, dec_change);
    cga_resource_state_t s = ex_resource();
    CGA_ASSERT_OK(cga_proto_encode_resource_state(w, &s, &data, &len));
    all_prefixes(data, len, dec_resource);
    cga_worker_state_t k = ex_worker();
    CGA_ASSERT_OK(cga_proto_encode_worker_state(w, &k, &data, &len));
    all_prefixes(data, len, dec_worker);
    /* Unknown fields of every type, truncated anywhere. */
    mb_t m = {0}, e = {0};
    mb_str(&e, "x");
    RAW(&e, "\x93\xc7\x02\x01zz\xd8\x01" "0123456789abcdef\xc5\x00\x01z");
    mb_str(&e, "y");
    RAW(&e, "\x82\xa1" "a\xca\x3f\x80\x00\x00\xa1" "b\xd3\x00\x00\x00\x00\x00\x00\x00\x01");
    over_t o = {NULL, NULL, &e, 2};
    put_task(&m, &o);
    all_prefixes((const char *)m.b, m.n, dec_tasks);
    mb_free(&m);
    mb_free(&e);
    cga_proto_writer_free(w);
}

/* ---- depth --------------------------------------------------------------------------------- */

static void test_depth(void) {
    cga_proto_reader_t *r = reader(NULL);
    mb_t m = {0}, e = {0};
    const cga_task_t *t;
    size_t n;
    /* The message map is level 1: an unknown value may open levels 2..16. */
    for (int levels = 14; levels <= 16; levels++) {
        mb_reset(&e);
        mb_reset(&m);
        mb_str(&e, "deep");
        for (int i = 0; i < levels; i++) mb_arr(&e, 1);
        mb_u8(&e, 0x01);
        over_t o = {NULL, NULL, &e, 1};
        put_task(&m, &o);
        int rc = cga_proto_decode_tasks(r, (const char *)m.b, m.n, &t, &n);
        CGA_ASSERT_EQ(rc, levels <= 15 ? CGA_OK : CGA_EDEPTH);
        if (rc) CGA_ASSERT_STREQ(cga_proto_reader_error(r),
                                 "task[0].deep: nested deeper than 16 levels");
        /* The same inside a batch: batching does not change the verdict. */
        mb_t b = {0};
        mb_arr(&b, 1);
        mb_raw(&b, m.b, m.n);
        CGA_ASSERT_EQ(cga_proto_decode_tasks(r, (const char *)b.b, b.n, &t, &n), rc);
        const cga_str_t *spans;
        CGA_ASSERT_EQ(cga_proto_split(r, (const char *)b.b, b.n, &spans, &n), rc);
        mb_free(&b);
    }
    /* The same with a bar (an array of six 9-byte scalars, which the skipper takes in one
     * step) innermost: the bar counts as a level too. */
    for (int levels = 13; levels <= 15; levels++) {
        mb_reset(&e);
        mb_reset(&m);
        mb_str(&e, "deep");
        for (int i = 0; i < levels; i++) mb_arr(&e, 1);
        mb_arr(&e, 6);
        mb_uint(&e, 1ull << 40);
        for (int k = 0; k < 5; k++) mb_f64(&e, 1.5);
        over_t o = {NULL, NULL, &e, 1};
        put_task(&m, &o);
        int want = levels <= 14 ? CGA_OK : CGA_EDEPTH;
        CGA_ASSERT_EQ(cga_proto_decode_tasks(r, (const char *)m.b, m.n, &t, &n), want);
        const cga_str_t *spans;
        CGA_ASSERT_EQ(cga_proto_split(r, (const char *)m.b, m.n, &spans, &n), want);
    }
    /* A million levels: refused at level 17, without recursing further. */
    mb_reset(&m);
    mb_reset(&e);
    mb_str(&e, "deep");
    for (int i = 0; i < 1000000; i++) mb_u8(&e, 0x91);
    mb_u8(&e, 0x01);
    over_t o = {NULL, NULL, &e, 1};
    put_task(&m, &o);
    CGA_ASSERT_EQ(cga_proto_decode_tasks(r, (const char *)m.b, m.n, &t, &n), CGA_EDEPTH);
    mb_free(&m);
    mb_free(&e);
    cga_proto_reader_free(r);
}

/* ---- limits -------------------------------------------------------------------------------- */

static void assert_batch_is(cga_proto_writer_t *w, const char *want, size_t want_len) {
    const char *data;
    size_t len;
    cga_proto_writer_finish(w, &data, &len);
    CGA_ASSERT_MEMEQ(data, len, want, want_len);
}

static void test_encode_validation(void) {
    cga_proto_limits_t lim;
    cga_proto_limits_init(&lim);
    lim.max_batch = 2;
    lim.max_message_bytes = 300;
    cga_proto_writer_t *w = writer(&lim);
    cga_task_t t = ex_task();
    CGA_ASSERT_OK(cga_proto_write_task(w, &t));
    const char *d0;
    size_t l0;
    cga_proto_writer_finish(w, &d0, &l0);
    char *before = malloc(l0);
    memcpy(before, d0, l0);
    size_t before_len = l0;
#define REJECT(expr, rc, text)                                                             \
    do {                                                                                   \
        CGA_ASSERT_EQ((expr), rc);                                                         \
        CGA_ASSERT_STREQ(cga_proto_writer_error(w), text);                                 \
        CGA_ASSERT_EQ(cga_proto_writer_count(w), 1);                                       \
        assert_batch_is(w, before, before_len);                                            \
    } while (0)
    cga_task_t b = t;
    b.id = cga_str("");
    REJECT(cga_proto_write_task(w, &b), CGA_EINVAL, "task.id: must not be empty");
    b = t;
    b.symbol = cga_str("A_SYMBOL_OF_MORE_THAN_32_BYTES_XX");
    REJECT(cga_proto_write_task(w, &b), CGA_EINVAL, "task.sym: too long (33 bytes, max 32)");
    b = t;
    b.nbars = 0;
    REJECT(cga_proto_write_task(w, &b), CGA_EINVAL, "task.bars: must not be empty");
    cga_bar_t bars[3] = {EX_BARS[0], EX_BARS[1], EX_BARS[1]};
    b.bars = bars;
    b.nbars = 3;
    REJECT(cga_proto_write_task(w, &b), CGA_EINVAL,
           "task.bars[2][0]: t 1700000060000 not after the previous bar's 1700000060000");
    bars[2].t += 60000;
    bars[1].volume = NAN;
    REJECT(cga_proto_write_task(w, &b), CGA_EINVAL, "task.bars[1][5]: not finite (nan)");
    bars[1].volume = 1;
    bars[0].high = -INFINITY;
    REJECT(cga_proto_write_task(w, &b), CGA_EINVAL, "task.bars[0][2]: not finite (-inf)");
    bars[0].high = 1;
    /* Too big: 5 bars is about 300 bytes. */
    cga_bar_t many[5];
    fill_bars(many, 5, 0);
    b = t;
    b.bars = many;
    b.nbars = 5;
    REJECT(cga_proto_write_task(w, &b), CGA_ETOOBIG,
           "task: message of 322 bytes exceeds max_message_bytes 300");
    cga_proto_limits_t small = lim;
    small.max_bars = 4;
    cga_proto_writer_t *w2 = writer(&small);
    CGA_ASSERT_EQ(cga_proto_write_task(w2, &b), CGA_EINVAL);
    CGA_ASSERT_STREQ(cga_proto_writer_error(w2), "task.bars: 5 bars exceed max_bars 4");
    cga_proto_writer_free(w2);

    cga_report_t r = ex_report();
    cga_report_t rb = r;
    rb.regime = (cga_regime_t)5;
    REJECT(cga_proto_write_report(w, &rb), CGA_EINVAL, "report.reg: invalid regime 5");
    rb = r;
    rb.confidence = 1.0000001;
    REJECT(cga_proto_write_report(w, &rb), CGA_EINVAL, "report.conf: 1 out of range 0..1");
    rb = r;
    rb.confidence = NAN;
    REJECT(cga_proto_write_report(w, &rb), CGA_EINVAL, "report.conf: nan out of range 0..1");
    rb = r;
    rb.wend = rb.wstart - 1;
    REJECT(cga_proto_write_report(w, &rb), CGA_EINVAL,
           "report: ws 1700000000000 > we 1699999999999");
    rb = r;
    rb.status = (cga_report_status_t)2;
    REJECT(cga_proto_write_report(w, &rb), CGA_EINVAL, "report.st: invalid status 2");
    cga_metric_t dup[2] = {{{"a", 1}, 1}, {{"a", 1}, 2}};
    rb = r;
    rb.metrics = dup;
    REJECT(cga_proto_write_report(w, &rb), CGA_EINVAL, "report.met[1]: duplicate name \"a\"");
    dup[1].name = (cga_str_t){NULL, 1};
    REJECT(cga_proto_write_report(w, &rb), CGA_EINVAL, "report.met[1]: NULL with length 1");
    dup[1].name = cga_str("b");
    dup[1].value = INFINITY;
    REJECT(cga_proto_write_report(w, &rb), CGA_EINVAL, "report.met[1]: not finite (inf)");
    rb.nmetrics = 33;
    REJECT(cga_proto_write_report(w, &rb), CGA_EINVAL,
           "report.met: 33 metrics exceed max_metrics 32");
    rb = r;
    rb.worker = (cga_str_t){NULL, 3};
    REJECT(cga_proto_write_report(w, &rb), CGA_EINVAL, "report.wrk: NULL with length 3");
    REJECT(cga_proto_write_raw(w, "\x90", 1), CGA_EINVAL,
           "raw: not exactly one well-formed msgpack map");
    REJECT(cga_proto_write_raw(w, "\x81\xa1v", 3), CGA_EINVAL,
           "raw: not exactly one well-formed msgpack map");
    REJECT(cga_proto_write_raw(w, "\x80\x80", 2), CGA_EINVAL,
           "raw: not exactly one well-formed msgpack map");

    /* The batch is full at max_batch. */
    CGA_ASSERT_OK(cga_proto_write_task(w, &t));
    CGA_ASSERT_EQ(cga_proto_write_task(w, &t), CGA_ETOOBIG);
    CGA_ASSERT_STREQ(cga_proto_writer_error(w), "task: batch full (max_batch 2)");
    CGA_ASSERT_EQ(cga_proto_write_raw(w, "\x80", 1), CGA_ETOOBIG);
    CGA_ASSERT_EQ(cga_proto_writer_count(w), 2);
#undef REJECT

    /* Single messages. */
    const char *data;
    size_t len;
    cga_regime_change_t c = ex_change();
    c.seq = 0;
    CGA_ASSERT_EQ(cga_proto_encode_regime_change(w, &c, &data, &len), CGA_EINVAL);
    CGA_ASSERT_STREQ(cga_proto_writer_error(w), "regime_change.seq: must be >= 1");
    CGA_ASSERT(data == NULL && len == 0);
    c = ex_change();
    c.to = (cga_regime_t)-1;
    CGA_ASSERT_EQ(cga_proto_encode_regime_change(w, &c, &data, &len), CGA_EINVAL);
    CGA_ASSERT_STREQ(cga_proto_writer_error(w), "regime_change.to: invalid regime -1");
    cga_resource_state_t s = ex_resource();
    s.level = (cga_level_t)3;
    CGA_ASSERT_EQ(cga_proto_encode_resource_state(w, &s, &data, &len), CGA_EINVAL);
    CGA_ASSERT_STREQ(cga_proto_writer_error(w), "resource_state.level: invalid level 3");
    cga_worker_state_t k = ex_worker();
    k.id = cga_str("");
    CGA_ASSERT_EQ(cga_proto_encode_worker_state(w, &k, &data, &len), CGA_EINVAL);
    CGA_ASSERT_STREQ(cga_proto_writer_error(w), "worker_state.id: must not be empty");
    char longer[400];
    memset(longer, 'w', sizeof longer);
    k = ex_worker();
    k.plugins = (cga_str_t){longer, 250};
    k.host = (cga_str_t){longer, 250};
    CGA_ASSERT_EQ(cga_proto_encode_worker_state(w, &k, &data, &len), CGA_ETOOBIG);
    CGA_ASSERT_STREQ(cga_proto_writer_error(w),
                     "worker_state: message of 593 bytes exceeds max_message_bytes 300");
    k = ex_worker();
    CGA_ASSERT_OK(cga_proto_encode_worker_state(w, &k, &data, &len));
    CGA_ASSERT_STREQ(cga_proto_writer_error(w), "");
    free(before);
    cga_proto_writer_free(w);
}

static void test_decode_limits(void) {
    cga_proto_writer_t *w = writer(NULL);
    cga_bar_t bars[10];
    fill_bars(bars, 10, 0);
    cga_task_t t = ex_task();
    t.bars = bars;
    t.nbars = 10;
    for (int i = 0; i < 3; i++) CGA_ASSERT_OK(cga_proto_write_task(w, &t));
    const char *data;
    size_t len, n;
    cga_proto_writer_finish(w, &data, &len);
    cga_proto_limits_t lim;
    cga_proto_limits_init(&lim);
    lim.max_batch = 2;
    cga_proto_reader_t *r = reader(&lim);
    const cga_task_t *out;
    const cga_str_t *spans;
    CGA_ASSERT_EQ(cga_proto_decode_tasks(r, data, len, &out, &n), CGA_ETOOBIG);
    CGA_ASSERT_STREQ(cga_proto_reader_error(r), "entry: batch of 3 messages exceeds max_batch 2");
    CGA_ASSERT_EQ(cga_proto_split(r, data, len, &spans, &n), CGA_ETOOBIG);
    cga_proto_reader_free(r);
    lim.max_batch = 4096;
    lim.max_message_bytes = 500;
    r = reader(&lim);
    CGA_ASSERT_EQ(cga_proto_decode_tasks(r, data, len, &out, &n), CGA_ETOOBIG);
    CGA_ASSERT_STREQ(cga_proto_reader_error(r),
                     "task[0]: message of 577 bytes exceeds max_message_bytes 500");
    CGA_ASSERT_EQ(cga_proto_split(r, data, len, &spans, &n), CGA_ETOOBIG);
    CGA_ASSERT_STREQ(cga_proto_reader_error(r),
                     "message[0]: message of 577 bytes exceeds max_message_bytes 500");
    cga_proto_reader_free(r);
    lim.max_message_bytes = 577;
    lim.max_bars = 9;
    r = reader(&lim);
    CGA_ASSERT_EQ(cga_proto_decode_tasks(r, data, len, &out, &n), CGA_EPROTO);
    CGA_ASSERT_STREQ(cga_proto_reader_error(r), "task[0].bars: 10 bars exceed max_bars 9");
    cga_proto_reader_free(r);
    lim.max_bars = 10;
    r = reader(&lim);
    CGA_ASSERT_OK(cga_proto_decode_tasks(r, data, len, &out, &n));
    CGA_ASSERT_EQ(n, 3);
    cga_proto_reader_free(r);
    cga_proto_writer_free(w);
}

/* ---- split and raw ------------------------------------------------------------------------- */

static void test_split_and_raw(void) {
    cga_proto_writer_t *w = writer(NULL), *w2 = writer(NULL);
    cga_proto_reader_t *r = reader(NULL), *r2 = reader(NULL);
    cga_task_t t = ex_task();
    cga_bar_t bars[40];
    fill_bars(bars, 40, 0);
    for (int i = 0; i < 5; i++) {
        t.nbars = 1 + (size_t)i * 9;
        t.bars = bars;
        CGA_ASSERT_OK(cga_proto_write_task(w, &t));
    }
    const char *data, *data2;
    size_t len, len2, n;
    cga_proto_writer_finish(w, &data, &len);
    const cga_str_t *spans;
    CGA_ASSERT_OK(cga_proto_split(r, data, len, &spans, &n));
    CGA_ASSERT_EQ(n, 5);
    CGA_ASSERT(spans[0].ptr == data + 1);
    /* Each span is a lone message: it decodes as a batch of one (r2: spans stay valid). */
    for (size_t i = 0; i < n; i++) {
        const cga_task_t *one;
        size_t m;
        CGA_ASSERT(inside(spans[i].ptr, data, len));
        CGA_ASSERT_OK(cga_proto_decode_tasks(r2, spans[i].ptr, spans[i].len, &one, &m));
        CGA_ASSERT_EQ(m, 1);
        CGA_ASSERT_EQ(one->nbars, 1 + i * 9);
        CGA_ASSERT_OK(cga_proto_write_raw(w2, spans[i].ptr, spans[i].len));
    }
    /* Re-batching the raw messages gives the same bytes. */
    cga_proto_writer_finish(w2, &data2, &len2);
    CGA_ASSERT_MEMEQ(data2, len2, data, len);
    /* A lone map is one span: itself. */
    CGA_ASSERT_OK(cga_proto_split(r, data + 1, spans[0].len, &spans, &n));
    CGA_ASSERT_EQ(n, 1);
    CGA_ASSERT(spans[0].ptr == data + 1);
    /* Split does not decode: a map with wrong fields splits, but does not decode. */
    CGA_ASSERT_OK(cga_proto_split(r, "\x91\x81\xa2id\x05", 6, &spans, &n));
    CGA_ASSERT_EQ(n, 1);
    CGA_ASSERT_EQ(spans[0].len, 5);
    /* ...but it checks the structure. */
    CGA_ASSERT_EQ(cga_proto_split(r, "\x92\x80\x05", 3, &spans, &n), CGA_EPROTO);
    CGA_ASSERT_STREQ(cga_proto_reader_error(r), "message[1]: expected map, got int");
    CGA_ASSERT(spans == NULL && n == 0);
    CGA_ASSERT_EQ(cga_proto_split(r, "\x91\x80\x80", 3, &spans, &n), CGA_EPROTO);
    CGA_ASSERT_STREQ(cga_proto_reader_error(r), "entry: 1 unexpected byte(s) after the value");
    CGA_ASSERT_EQ(cga_proto_split(r, "\xa1x", 2, &spans, &n), CGA_EPROTO);
    CGA_ASSERT_STREQ(cga_proto_reader_error(r), "entry: expected map or array of maps, got str");
    CGA_ASSERT_EQ(cga_proto_split(r, NULL, 0, &spans, &n), CGA_EPROTO);
    cga_proto_writer_free(w);
    cga_proto_writer_free(w2);
    cga_proto_reader_free(r);
    cga_proto_reader_free(r2);
}

/* Many bars across a batch: the reader's bar array grows while decoding, and every task must
 * still see its own bars (pointers are fixed up after the whole batch). */
static void test_growth_fixup(void) {
    cga_proto_writer_t *w = writer(NULL);
    cga_proto_reader_t *r = reader(NULL);
    static cga_bar_t bars[2000];
    fill_bars(bars, 2000, 5);
    for (int i = 0; i < 100; i++) {
        cga_task_t t = ex_task();
        t.bars = bars + i * 10;
        t.nbars = 10 + (size_t)i * 10;
        if (i * 10 + t.nbars > 2000) t.nbars = 2000 - (size_t)i * 10;
        CGA_ASSERT_OK(cga_proto_write_task(w, &t));
    }
    const char *data;
    size_t len, n;
    cga_proto_writer_finish(w, &data, &len);
    const cga_task_t *out;
    CGA_ASSERT_OK(cga_proto_decode_tasks(r, data, len, &out, &n));
    CGA_ASSERT_EQ(n, 100);
    for (size_t i = 0; i < n; i++) {
        CGA_ASSERT_EQ(out[i].bars[0].t, bars[i * 10].t);
        CGA_ASSERT(out[i].bars[out[i].nbars - 1].close == bars[i * 10 + out[i].nbars - 1].close);
    }
    cga_proto_writer_free(w);
    cga_proto_reader_free(r);
}

/* ---- the examples of SCHEMA.md ------------------------------------------------------------- */

typedef struct example_s {
    const char *name;
    char *data;
    size_t len;
} example_t;

static void examples(example_t ex[5]) {
    cga_proto_writer_t *w = writer(NULL);
    const char *data;
    size_t len;
    cga_task_t t = ex_task();
    CGA_ASSERT_OK(cga_proto_write_task(w, &t));
    cga_proto_writer_finish(w, &data, &len);
    ex[0] = (example_t){"task", NULL, len};
    ex[0].data = malloc(len);
    memcpy(ex[0].data, data, len);
    cga_proto_writer_reset(w);
    cga_report_t r = ex_report();
    CGA_ASSERT_OK(cga_proto_write_report(w, &r));
    cga_proto_writer_finish(w, &data, &len);
    ex[1] = (example_t){"report", malloc(len), len};
    memcpy(ex[1].data, data, len);
    cga_regime_change_t c = ex_change();
    CGA_ASSERT_OK(cga_proto_encode_regime_change(w, &c, &data, &len));
    ex[2] = (example_t){"regime_change", malloc(len), len};
    memcpy(ex[2].data, data, len);
    cga_resource_state_t s = ex_resource();
    CGA_ASSERT_OK(cga_proto_encode_resource_state(w, &s, &data, &len));
    ex[3] = (example_t){"resource_state", malloc(len), len};
    memcpy(ex[3].data, data, len);
    cga_worker_state_t k = ex_worker();
    CGA_ASSERT_OK(cga_proto_encode_worker_state(w, &k, &data, &len));
    ex[4] = (example_t){"worker_state", malloc(len), len};
    memcpy(ex[4].data, data, len);
    cga_proto_writer_free(w);
}

static void print_hex(FILE *f, const char *data, size_t len) {
    for (size_t i = 0; i < len; i += 16) {
        fprintf(f, "%04zx:", i);
        for (size_t j = i; j < i + 16 && j < len; j++) fprintf(f, " %02x", (unsigned char)data[j]);
        fprintf(f, "\n");
    }
}

/* The bytes of the fenced block after "<!-- hex:NAME -->" in SCHEMA.md, lines "0000: 91 86 ..." */
static size_t schema_hex(const char *doc, const char *name, unsigned char *out, size_t cap) {
    char marker[64];
    snprintf(marker, sizeof marker, "<!-- hex:%s -->", name);
    const char *p = strstr(doc, marker);
    if (!p) CGA_FAIL_("SCHEMA.md has no %s", marker);
    p = strstr(p, "```");
    CGA_ASSERT(p != NULL);
    p = strchr(p, '\n') + 1;
    const char *end = strstr(p, "```");
    CGA_ASSERT(end != NULL);
    size_t n = 0;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        CGA_ASSERT(colon != NULL);
        for (const char *q = colon + 1; q < eol;) {
            while (q < eol && *q == ' ') q++;
            if (q >= eol) break;
            unsigned v;
            CGA_ASSERT(sscanf(q, "%2x", &v) == 1);
            CGA_ASSERT(n < cap);
            out[n++] = (unsigned char)v;
            q += 2;
        }
        p = eol + 1;
    }
    return n;
}

static void test_schema_examples(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/proto/SCHEMA.md", CGA_TEST_SOURCE_DIR);
    FILE *f = fopen(path, "rb");
    if (!f) CGA_FAIL_("open %s: %s", path, strerror(errno));
    static char doc[1 << 20];
    size_t dn = fread(doc, 1, sizeof doc - 1, f);
    doc[dn] = '\0';
    fclose(f);
    example_t ex[5];
    examples(ex);
    cga_proto_reader_t *r = reader(NULL);
    for (int i = 0; i < 5; i++) {
        unsigned char want[1024];
        size_t n = schema_hex(doc, ex[i].name, want, sizeof want);
        if (n != ex[i].len || memcmp(want, ex[i].data, n) != 0) {
            fprintf(stderr, "SCHEMA.md's %s example differs from the encoder's bytes:\n",
                    ex[i].name);
            print_hex(stderr, ex[i].data, ex[i].len);
            CGA_FAIL_("update proto/SCHEMA.md (test_proto --examples prints them)");
        }
        free(ex[i].data);
    }
    /* The document's bytes decode to the example values. */
    unsigned char bytes[1024];
    size_t n = schema_hex(doc, "task", bytes, sizeof bytes), nt;
    const cga_task_t *t;
    CGA_ASSERT_OK(cga_proto_decode_tasks(r, (const char *)bytes, n, &t, &nt));
    cga_task_t want = ex_task();
    assert_task_eq(t, &want);
    cga_proto_reader_free(r);
}

/* ---- tools: examples and seeds --------------------------------------------------------- */

static void write_file(const char *dir, const char *name, const void *data, size_t len) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) CGA_FAIL_("open %s: %s", path, strerror(errno));
    CGA_ASSERT_EQ(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void write_seeds(const char *root) {
    char dir[1024];
    example_t ex[5];
    examples(ex);
    cga_proto_writer_t *w = writer(NULL);
    const char *data;
    size_t len;

    snprintf(dir, sizeof dir, "%s/fuzz_tasks", root);
    mkdir(dir, 0755);
    write_file(dir, "example_batch", ex[0].data, ex[0].len);
    write_file(dir, "lone_map", ex[0].data + 1, ex[0].len - 1);
    cga_bar_t bars[20];
    fill_bars(bars, 20, -600000);
    cga_task_t t = ex_task();
    t.bars = bars;
    for (int i = 0; i < 4; i++) {
        t.nbars = 1 + (size_t)i * 6;
        CGA_ASSERT_OK(cga_proto_write_task(w, &t));
    }
    cga_proto_writer_finish(w, &data, &len);
    write_file(dir, "batch_of_4", data, len);
    mb_t m = {0}, e = {0};
    mb_str(&e, "x");
    RAW(&e, "\x92\xc7\x02\x01zz\x81\xa1k\xca\x3f\x80\x00\x00");
    over_t o = {NULL, NULL, &e, 1};
    mb_arr(&m, 2);
    put_task(&m, &o);
    put_task(&m, NULL);
    write_file(dir, "unknown_keys", m.b, m.n);
    mb_reset(&m);
    mb_t v = {0};
    RAW(&v, "\x92\x96\xd3\xff\xff\xff\xff\xff\xff\xff\x00\xca\x3f\x80\x00\x00\xd0\x85\xcd\x01"
            "\x00\xff\x01\x96\xcf\x00\x00\x00\x00\x00\x00\x00\x01\x01\x02\x03\x04\x05");
    o = (over_t){"bars", &v, NULL, 0};
    put_task(&m, &o);
    write_file(dir, "int_widths", m.b, m.n);

    snprintf(dir, sizeof dir, "%s/fuzz_reports", root);
    mkdir(dir, 0755);
    write_file(dir, "example_batch", ex[1].data, ex[1].len);
    cga_proto_writer_reset(w);
    cga_report_t r = ex_report();
    r.status = CGA_REPORT_ERROR;
    r.error = cga_str("plugin failed: window too short");
    r.nmetrics = 0;
    CGA_ASSERT_OK(cga_proto_write_report(w, &r));
    CGA_ASSERT_OK(cga_proto_write_report(w, &r));
    cga_proto_writer_finish(w, &data, &len);
    write_file(dir, "errors", data, len);
    mb_reset(&m);
    mb_reset(&e);
    mb_str(&e, "err");
    mb_u8(&e, 0xc0);
    o = (over_t){NULL, NULL, &e, 1};
    put_report(&m, &o);
    write_file(dir, "lone_map_nil_err", m.b, m.n);

    snprintf(dir, sizeof dir, "%s/fuzz_small", root);
    mkdir(dir, 0755);
    write_file(dir, "regime_change", ex[2].data, ex[2].len);
    write_file(dir, "resource_state", ex[3].data, ex[3].len);
    write_file(dir, "worker_state", ex[4].data, ex[4].len);
    for (int i = 0; i < 5; i++) free(ex[i].data);
    mb_free(&m);
    mb_free(&e);
    mb_free(&v);
    cga_proto_writer_free(w);
}

int main(int argc, char **argv) {
    CGA_RUN(test_worker_optional_fields);
    if (argc == 2 && strcmp(argv[1], "--examples") == 0) {
        example_t ex[5];
        examples(ex);
        for (int i = 0; i < 5; i++) {
            printf("<!-- hex:%s --> (%zu bytes)\n```\n", ex[i].name, ex[i].len);
            print_hex(stdout, ex[i].data, ex[i].len);
            printf("```\n\n");
            free(ex[i].data);
        }
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "--seeds") == 0) {
        write_seeds(argv[2]);
        return 0;
    }
    CGA_RUN(test_names);
    CGA_RUN(test_task_roundtrip);
    CGA_RUN(test_report_roundtrip);
    CGA_RUN(test_small_roundtrip);
    CGA_RUN(test_batch_header);
    CGA_RUN(test_int_widths);
    CGA_RUN(test_string_forms);
    CGA_RUN(test_unknown_keys_and_versions);
    CGA_RUN(test_task_rejections);
    CGA_RUN(test_report_rejections);
    CGA_RUN(test_small_rejections);
    CGA_RUN(test_truncation);
    CGA_RUN(test_depth);
    CGA_RUN(test_encode_validation);
    CGA_RUN(test_decode_limits);
    CGA_RUN(test_split_and_raw);
    CGA_RUN(test_growth_fixup);
    CGA_RUN(test_schema_examples);
    return 0;
}

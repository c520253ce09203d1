/* Fuzzes cga_proto_decode_tasks and cga_proto_split with arbitrary bytes. Properties:
 *   - decoding never crashes, never reads out of bounds, fails only with EPROTO / ETOOBIG /
 *     EDEPTH and a reason;
 *   - when it succeeds, split agrees on the count, each span decodes alone to the same task,
 *     the tasks re-encode, the encoding decodes to the same tasks, and encoding that again
 *     gives the same bytes (the encoder's output is canonical). */

#include "fuzz_common.h"

static cga_proto_reader_t *r_in, *r_span, *r_out, *r_split;
static cga_proto_writer_t *w1, *w2;

static void setup(void) {
    if (r_in) return;
    cga_proto_limits_t roomy = fz_roomy_limits();
    cga_proto_reader_create(&r_in, NULL); /* the real limits */
    cga_proto_reader_create(&r_split, NULL);
    cga_proto_reader_create(&r_span, NULL);
    cga_proto_reader_create(&r_out, &roomy);
    cga_proto_writer_create(&w1, &roomy);
    cga_proto_writer_create(&w2, &roomy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    setup();
    const char *in = (const char *)data;
    const cga_task_t *t;
    size_t n;
    int rc = cga_proto_decode_tasks(r_in, in, size, &t, &n);
    if (rc != CGA_OK) {
        fz_check_failure(rc, cga_proto_reader_error(r_in));
        return 0;
    }
    FZ_CHECK(cga_proto_reader_error(r_in)[0] == '\0', cga_proto_reader_error(r_in));

    const cga_str_t *spans;
    size_t ns;
    rc = cga_proto_split(r_split, in, size, &spans, &ns);
    FZ_CHECK(rc == CGA_OK && ns == n, cga_proto_reader_error(r_split));
    for (size_t i = 0; i < n; i++) {
        const cga_task_t *one;
        size_t m;
        FZ_CHECK(spans[i].ptr >= in && spans[i].ptr + spans[i].len <= in + size, "span");
        rc = cga_proto_decode_tasks(r_span, spans[i].ptr, spans[i].len, &one, &m);
        FZ_CHECK(rc == CGA_OK && m == 1, cga_proto_reader_error(r_span));
        FZ_CHECK(fz_task_eq(one, &t[i]), "span decodes to another task");
    }

    cga_proto_writer_reset(w1);
    for (size_t i = 0; i < n; i++) {
        FZ_CHECK(t[i].id.ptr >= in && t[i].id.ptr + t[i].id.len <= in + size, "zero-copy id");
        rc = cga_proto_write_task(w1, &t[i]);
        FZ_CHECK(rc == CGA_OK, cga_proto_writer_error(w1));
    }
    const char *enc;
    size_t elen;
    cga_proto_writer_finish(w1, &enc, &elen);

    const cga_task_t *t2;
    size_t n2;
    rc = cga_proto_decode_tasks(r_out, enc, elen, &t2, &n2);
    FZ_CHECK(rc == CGA_OK && n2 == n, cga_proto_reader_error(r_out));
    cga_proto_writer_reset(w2);
    for (size_t i = 0; i < n; i++) {
        FZ_CHECK(fz_task_eq(&t[i], &t2[i]), "round trip changed a task");
        FZ_CHECK(cga_proto_write_task(w2, &t2[i]) == CGA_OK, cga_proto_writer_error(w2));
    }
    const char *enc2;
    size_t elen2;
    cga_proto_writer_finish(w2, &enc2, &elen2);
    FZ_CHECK(elen2 == elen && memcmp(enc, enc2, elen) == 0, "encoding is not canonical");
    return 0;
}

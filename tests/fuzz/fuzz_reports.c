/* Fuzzes cga_proto_decode_reports with arbitrary bytes; the same properties as fuzz_tasks:
 * no crash, precise failures, and decode -> encode -> decode gives the same reports and the
 * same bytes the second time. */

#include "fuzz_common.h"

static cga_proto_reader_t *r_in, *r_out, *r_split;
static cga_proto_writer_t *w1, *w2;

static void setup(void) {
    if (r_in) return;
    cga_proto_limits_t roomy = fz_roomy_limits();
    cga_proto_reader_create(&r_in, NULL);
    cga_proto_reader_create(&r_split, NULL);
    cga_proto_reader_create(&r_out, &roomy);
    cga_proto_writer_create(&w1, &roomy);
    cga_proto_writer_create(&w2, &roomy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    setup();
    const char *in = (const char *)data;
    const cga_report_t *r;
    size_t n;
    int rc = cga_proto_decode_reports(r_in, in, size, &r, &n);
    if (rc != CGA_OK) {
        fz_check_failure(rc, cga_proto_reader_error(r_in));
        return 0;
    }
    const cga_str_t *spans;
    size_t ns;
    rc = cga_proto_split(r_split, in, size, &spans, &ns);
    FZ_CHECK(rc == CGA_OK && ns == n, cga_proto_reader_error(r_split));

    cga_proto_writer_reset(w1);
    for (size_t i = 0; i < n; i++) {
        FZ_CHECK(r[i].nmetrics == 0 || r[i].metrics != NULL, "metrics");
        FZ_CHECK(r[i].error.ptr != NULL, "error is never NULL");
        rc = cga_proto_write_report(w1, &r[i]);
        FZ_CHECK(rc == CGA_OK, cga_proto_writer_error(w1));
    }
    const char *enc;
    size_t elen;
    cga_proto_writer_finish(w1, &enc, &elen);

    const cga_report_t *r2;
    size_t n2;
    rc = cga_proto_decode_reports(r_out, enc, elen, &r2, &n2);
    FZ_CHECK(rc == CGA_OK && n2 == n, cga_proto_reader_error(r_out));
    cga_proto_writer_reset(w2);
    for (size_t i = 0; i < n; i++) {
        FZ_CHECK(fz_report_eq(&r[i], &r2[i]), "round trip changed a report");
        FZ_CHECK(cga_proto_write_report(w2, &r2[i]) == CGA_OK, cga_proto_writer_error(w2));
    }
    const char *enc2;
    size_t elen2;
    cga_proto_writer_finish(w2, &enc2, &elen2);
    FZ_CHECK(elen2 == elen && memcmp(enc, enc2, elen) == 0, "encoding is not canonical");
    return 0;
}

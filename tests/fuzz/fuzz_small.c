/* Fuzzes the single-message decoders (RegimeChange, ResourceState, WorkerState) with arbitrary
 * bytes: each input is tried as all three. Whatever decodes must re-encode, decode to the
 * same values, and re-encode to the same bytes. */

#include "fuzz_common.h"

static cga_proto_reader_t *rd;
static cga_proto_writer_t *w1, *w2;

static void setup(void) {
    if (rd) return;
    cga_proto_limits_t roomy = fz_roomy_limits();
    cga_proto_reader_create(&rd, NULL);
    cga_proto_writer_create(&w1, &roomy);
    cga_proto_writer_create(&w2, &roomy);
}

static void regime_change(const char *in, size_t size) {
    cga_regime_change_t a, b;
    int rc = cga_proto_decode_regime_change(rd, in, size, &a);
    if (rc != CGA_OK) {
        fz_check_failure(rc, cga_proto_reader_error(rd));
        return;
    }
    const char *e1, *e2;
    size_t l1, l2;
    FZ_CHECK(cga_proto_encode_regime_change(w1, &a, &e1, &l1) == CGA_OK,
             cga_proto_writer_error(w1));
    FZ_CHECK(cga_proto_decode_regime_change(rd, e1, l1, &b) == CGA_OK,
             cga_proto_reader_error(rd));
    FZ_CHECK(fz_str_eq(a.symbol, b.symbol) && a.seq == b.seq && a.from == b.from &&
                 a.to == b.to && a.wstart == b.wstart && fz_dbl_eq(a.confidence, b.confidence) &&
                 a.ts_us == b.ts_us,
             "round trip changed a RegimeChange");
    FZ_CHECK(cga_proto_encode_regime_change(w2, &b, &e2, &l2) == CGA_OK,
             cga_proto_writer_error(w2));
    FZ_CHECK(l1 == l2 && memcmp(e1, e2, l1) == 0, "encoding is not canonical");
}

static void resource_state(const char *in, size_t size) {
    cga_resource_state_t a, b;
    int rc = cga_proto_decode_resource_state(rd, in, size, &a);
    if (rc != CGA_OK) {
        fz_check_failure(rc, cga_proto_reader_error(rd));
        return;
    }
    const char *e1, *e2;
    size_t l1, l2;
    FZ_CHECK(cga_proto_encode_resource_state(w1, &a, &e1, &l1) == CGA_OK,
             cga_proto_writer_error(w1));
    FZ_CHECK(cga_proto_decode_resource_state(rd, e1, l1, &b) == CGA_OK,
             cga_proto_reader_error(rd));
    FZ_CHECK(a.level == b.level && a.backlog == b.backlog && a.labs == b.labs &&
                 a.used_memory == b.used_memory && a.maxmemory == b.maxmemory &&
                 fz_str_eq(a.reason, b.reason) && a.ts_us == b.ts_us,
             "round trip changed a ResourceState");
    FZ_CHECK(cga_proto_encode_resource_state(w2, &b, &e2, &l2) == CGA_OK,
             cga_proto_writer_error(w2));
    FZ_CHECK(l1 == l2 && memcmp(e1, e2, l1) == 0, "encoding is not canonical");
}

static void worker_state(const char *in, size_t size) {
    cga_worker_state_t a, b;
    int rc = cga_proto_decode_worker_state(rd, in, size, &a);
    if (rc != CGA_OK) {
        fz_check_failure(rc, cga_proto_reader_error(rd));
        return;
    }
    const char *e1, *e2;
    size_t l1, l2;
    FZ_CHECK(cga_proto_encode_worker_state(w1, &a, &e1, &l1) == CGA_OK,
             cga_proto_writer_error(w1));
    FZ_CHECK(cga_proto_decode_worker_state(rd, e1, l1, &b) == CGA_OK,
             cga_proto_reader_error(rd));
    FZ_CHECK(fz_str_eq(a.id, b.id) && fz_str_eq(a.host, b.host) && a.pid == b.pid &&
                 fz_str_eq(a.plugins, b.plugins) && a.started_us == b.started_us &&
                 a.processed == b.processed && a.failed == b.failed &&
                 a.inflight == b.inflight && a.ts_us == b.ts_us,
             "round trip changed a WorkerState");
    FZ_CHECK(cga_proto_encode_worker_state(w2, &b, &e2, &l2) == CGA_OK,
             cga_proto_writer_error(w2));
    FZ_CHECK(l1 == l2 && memcmp(e1, e2, l1) == 0, "encoding is not canonical");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    setup();
    regime_change((const char *)data, size);
    resource_state((const char *)data, size);
    worker_state((const char *)data, size);
    return 0;
}

/* CSV and JSON-lines parsing and the sources of cgalpha-ops (pure modules, compiled in from
 * ops/): good rows, every kind of bad row with its line number, quoting, the line reader on
 * files and pipes, the synthetic source and its truth file. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "../../ops/json.c"
#include "../../ops/market.c"
#include "../../ops/source.c"
#include "../../ops/window.c"
#include "cgalpha/err.h"
#include "test.h"

static ops_csv_header_t std_header(void) {
    ops_csv_header_t h;
    char err[200];
    const char *line = "symbol,timestamp,open,high,low,close,volume";
    CGA_ASSERT_OK(ops_csv_parse_header(line, strlen(line), &h, err, sizeof err));
    return h;
}

static int csv(const char *line, ops_row_t *row, char *err, size_t n) {
    ops_csv_header_t h = std_header();
    return ops_csv_parse_row(&h, line, strlen(line), row, err, n);
}

/* Expects the line to be refused with a reason containing want. */
static void csv_bad(const char *line, const char *want) {
    ops_row_t row;
    char err[256] = "";
    int rc = csv(line, &row, err, sizeof err);
    if (rc != CGA_EINVAL || !strstr(err, want)) {
        fprintf(stderr, "line: %s\n  rc %d err '%s', want '%s'\n", line, rc, err, want);
        CGA_ASSERT(0);
    }
}

static void test_csv_header(void) {
    ops_csv_header_t h;
    char err[200];
    const char *l1 = " Symbol , TIME,open,high,low,close,volume,extra";
    CGA_ASSERT_OK(ops_csv_parse_header(l1, strlen(l1), &h, err, sizeof err));
    CGA_ASSERT_EQ(h.ncols, 8);
    CGA_ASSERT_EQ(h.col[0], 0);
    CGA_ASSERT_EQ(h.col[1], 1);
    const char *l2 = "close,volume,ts,symbol,open,high,low";
    CGA_ASSERT_OK(ops_csv_parse_header(l2, strlen(l2), &h, err, sizeof err));
    CGA_ASSERT_EQ(h.col[0], 3);
    CGA_ASSERT_EQ(h.col[5], 0);
    const char *l3 = "symbol,timestamp,open,high,low,close";
    CGA_ASSERT_EQ(ops_csv_parse_header(l3, strlen(l3), &h, err, sizeof err), CGA_EINVAL);
    CGA_ASSERT(strstr(err, "no 'volume' column"));
    const char *l4 = "symbol,timestamp,open,high,low,close,volume,open";
    CGA_ASSERT_EQ(ops_csv_parse_header(l4, strlen(l4), &h, err, sizeof err), CGA_EINVAL);
    CGA_ASSERT(strstr(err, "'open' appears twice"));
    const char *l5 = "BTC,1,2,3,4,5,6";
    CGA_ASSERT_EQ(ops_csv_parse_header(l5, strlen(l5), &h, err, sizeof err), CGA_EINVAL);

    /* Rows follow the header's column order. */
    ops_row_t row;
    CGA_ASSERT_OK(ops_csv_parse_header(l2, strlen(l2), &h, err, sizeof err));
    const char *r = "10.5,7,1700000000000,ETH,10,11,9";
    CGA_ASSERT_OK(ops_csv_parse_row(&h, r, strlen(r), &row, err, sizeof err));
    CGA_ASSERT_STREQ(row.symbol, "ETH");
    CGA_ASSERT_EQ(row.bar.t, INT64_C(1700000000000));
    CGA_ASSERT(row.bar.close == 10.5 && row.bar.volume == 7 && row.bar.high == 11);
}

static void test_csv_rows(void) {
    ops_row_t row;
    char err[256];
    CGA_ASSERT_OK(csv("BTC-USD,1700000000000,100,110,90,105,12.5", &row, err, sizeof err));
    CGA_ASSERT_STREQ(row.symbol, "BTC-USD");
    CGA_ASSERT_EQ(row.symlen, 7);
    CGA_ASSERT_EQ(row.bar.t, INT64_C(1700000000000));
    CGA_ASSERT(row.bar.open == 100 && row.bar.high == 110 && row.bar.low == 90);
    CGA_ASSERT(row.bar.close == 105 && row.bar.volume == 12.5);
    /* Blanks, a leading '+', exponents, zero volume. */
    CGA_ASSERT_OK(csv(" X , 5 ,1e2, 1.1e2 ,9E1,+100,0", &row, err, sizeof err));
    CGA_ASSERT_STREQ(row.symbol, "X");
    CGA_ASSERT(row.bar.open == 100 && row.bar.high == 110 && row.bar.low == 90);
    /* Quoted fields, with "" inside and commas. */
    CGA_ASSERT_OK(csv("\"ES=F\",\"5\",\"1\",\"1\",\"1\",\"1\",\"1\"", &row, err, sizeof err));
    CGA_ASSERT_STREQ(row.symbol, "ES=F");
    csv_bad("\"A\"\"B\",5,1,1,1,1,1", "symbol: 'A\"B' has a character outside");
    csv_bad("\"A,B\",5,1,1,1,1,1", "symbol: 'A,B' has a character outside");
    CGA_ASSERT_OK(csv("\"^GSPC\" , \"5\" ,1,1,1,1,1", &row, err, sizeof err));
    CGA_ASSERT_STREQ(row.symbol, "^GSPC");
    CGA_ASSERT_EQ(row.bar.t, 5);
    csv_bad("A,5,1,1,1,1,\"1\"x", "field 7: text after the closing quote");
}

static void test_csv_bad_rows(void) {
    csv_bad("A,5,1,1,1,1", "expected 7 fields, got 6");
    csv_bad("A,5,1,1,1,1,1,1", "expected 7 fields, got 8");
    csv_bad("", "expected 7 fields, got 1");
    csv_bad(",5,1,1,1,1,1", "symbol: empty");
    csv_bad("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456,5,1,1,1,1,1", "longer than 32");
    csv_bad("A B,5,1,1,1,1,1", "character outside");
    csv_bad("A/B,5,1,1,1,1,1", "character outside");
    csv_bad("A,,1,1,1,1,1", "timestamp: empty");
    csv_bad("A,abc,1,1,1,1,1", "timestamp: 'abc' is not a number");
    csv_bad("A,1.5,1,1,1,1,1", "timestamp: '1.5' is not an integer");
    csv_bad("A,0,1,1,1,1,1", "timestamp: '0' is out of range");
    csv_bad("A,-5,1,1,1,1,1", "timestamp: '-5' is out of range");
    csv_bad("A,9007199254740993,1,1,1,1,1", "out of range");
    csv_bad("A,99999999999999999999999,1,1,1,1,1", "out of range");
    csv_bad("A,5,x,1,1,1,1", "open: 'x' is not a number");
    csv_bad("A,5,0x10,1,1,1,1", "open: '0x10' is not a number");
    csv_bad("A,5,1,nan,1,1,1", "high: 'nan' is not a number");
    csv_bad("A,5,1,1,inf,1,1", "low: 'inf' is not a number");
    csv_bad("A,5,1,1,1,1e999,1", "close: '1e999' is out of range");
    csv_bad("A,5,1,1,1,1,", "volume: empty");
    csv_bad("A,5,1.,1,1,1,1", "open: '1.' is not a number");
    csv_bad("A,5,0,1,0,1,1", "open: 0 is not a positive price");
    csv_bad("A,5,-1,1,1,1,1", "open: -1 is not a positive price");
    csv_bad("A,5,1,1,1,1,-2", "volume: -2 is negative");
    csv_bad("A,5,10,12,11,10.5,1", "low 11 is above min(open, close) 10");
    csv_bad("A,5,10,10.2,9,10.5,1", "high 10.2 is below max(open, close) 10.5");
    csv_bad("\"A,5,1,1,1,1,1", "field 1: unterminated quote");
    csv_bad("\"A\"x,5,1,1,1,1,1", "field 1: text after the closing quote");
    csv_bad("A,5\",1,1,1,1,1", "field 2: quote inside an unquoted field");
    /* More fields than the parser holds. */
    char many[400] = "A";
    for (int i = 0; i < 70; i++) strcat(many, ",1");
    csv_bad(many, "more than 64 fields");
}

static void json_bad(const char *line, const char *want) {
    ops_row_t row;
    char err[256] = "";
    int rc = ops_jsonl_parse_row(line, strlen(line), &row, err, sizeof err);
    if (rc != CGA_EINVAL || !strstr(err, want)) {
        fprintf(stderr, "line: %s\n  rc %d err '%s', want '%s'\n", line, rc, err, want);
        CGA_ASSERT(0);
    }
}

static void test_jsonl(void) {
    ops_row_t row;
    char err[256];
    const char *l = "{\"symbol\":\"BTC\",\"timestamp\":1700000000000,\"open\":1.5,\"high\":2,"
                    "\"low\":1,\"close\":1.75,\"volume\":3e2}";
    CGA_ASSERT_OK(ops_jsonl_parse_row(l, strlen(l), &row, err, sizeof err));
    CGA_ASSERT_STREQ(row.symbol, "BTC");
    CGA_ASSERT_EQ(row.bar.t, INT64_C(1700000000000));
    CGA_ASSERT(row.bar.open == 1.5 && row.bar.close == 1.75 && row.bar.volume == 300);
    /* Blanks, key order, aliases, escapes, unknown keys of every scalar type. */
    l = " { \"t\" : 5 , \"symbol\" : \"\\u0045T\\u0048\" , \"open\":1,\"high\":1,\"low\":1,"
        "\"close\":1,\"volume\":0, \"note\":\"a \\\"q\\\" \\n \\ud83d\\ude00\", \"ok\":true,"
        "\"x\":null,\"y\":false,\"z\":-0.5e-3 }\t";
    CGA_ASSERT_OK(ops_jsonl_parse_row(l, strlen(l), &row, err, sizeof err));
    CGA_ASSERT_STREQ(row.symbol, "ETH");
    CGA_ASSERT_EQ(row.bar.t, 5);
    l = "{\"ts\":6,\"symbol\":\"A\",\"open\":1,\"high\":1,\"low\":1,\"close\":1,\"volume\":0}";
    CGA_ASSERT_OK(ops_jsonl_parse_row(l, strlen(l), &row, err, sizeof err));
    CGA_ASSERT_EQ(row.bar.t, 6);

    json_bad("", "expected a JSON object");
    json_bad("[1,2]", "expected a JSON object");
    json_bad("{}", "missing key 'symbol'");
    json_bad("{\"symbol\":\"A\",\"timestamp\":5,\"open\":1,\"high\":1,\"low\":1,\"close\":1}",
             "missing key 'volume'");
    json_bad("{\"symbol\":\"A\",\"symbol\":\"B\"}", "duplicate key 'symbol'");
    json_bad("{\"symbol\":\"A\",\"t\":1,\"timestamp\":2}", "duplicate key 'timestamp'");
    json_bad("{\"symbol\":5}", "symbol: expected a string");
    json_bad("{\"open\":\"1.5\"}", "open: expected a number");
    json_bad("{\"timestamp\":1.5}", "timestamp: '1.5' is not an integer");
    json_bad("{\"timestamp\":-3}", "out of range");
    json_bad("{\"open\":01}", "leading zero");
    json_bad("{\"open\":+1}", "invalid value at column 9");
    json_bad("{\"open\":.5}", "invalid value");
    json_bad("{\"open\":NaN}", "invalid value");
    json_bad("{\"meta\":{\"a\":1}}", "nested object at column 9");
    json_bad("{\"list\":[1]}", "nested array");
    json_bad("{\"symbol\":\"A\"", "expected ',' or '}'");
    json_bad("{\"symbol\":\"A\",}", "expected a key");
    json_bad("{\"symbol\" \"A\"}", "expected ':'");
    json_bad("{\"symbol\":}", "invalid value");
    json_bad("{\"symbol\":", "missing value");
    json_bad("{\"symbol\":\"A", "unterminated string");
    json_bad("{\"symbol\":\"A\\x\"}", "bad escape '\\x'");
    json_bad("{\"symbol\":\"A\\u12\"}", "bad \\u escape");
    json_bad("{\"symbol\":\"\\ud800\"}", "unpaired surrogate");
    json_bad("{\"symbol\":\"\\udc00\"}", "unpaired surrogate");
    json_bad("{\"symbol\":\"A\tB\"}", "control character");
    json_bad("{\"symbol\":\"\\u00e9\"}", "character outside");
    json_bad("{\"symbol\":\"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\"}", "longer than 32");
    json_bad("{\"ok\":tru}", "invalid value");
    json_bad("{} x", "trailing data after the object at column 4");
    json_bad("{}{}", "trailing data");
    json_bad("{\"symbol\":\"A\",\"timestamp\":5,\"open\":1,\"high\":0.5,\"low\":1,\"close\":1,"
             "\"volume\":0}", "high 0.5 is below");
}

/* ---- sources ----------------------------------------------------------------------------- */

static char tmpdir[64];

static char *write_file(const char *name, const char *content, size_t len) {
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    CGA_ASSERT(f);
    CGA_ASSERT_EQ(fwrite(content, 1, len, f), len);
    fclose(f);
    return path;
}

typedef struct expect_s {
    int rc;
    const char *text; /* symbol for a row, error prefix for a bad row */
} expect_t;

static void expect_seq(ops_source_t *s, const expect_t *e, size_t n) {
    for (size_t i = 0; i < n; i++) {
        ops_row_t row;
        char err[320] = "";
        int rc = ops_source_next(s, &row, err, sizeof err);
        if (rc != e[i].rc) {
            fprintf(stderr, "step %zu: rc %d (%s), want %d\n", i, rc, err, e[i].rc);
            CGA_ASSERT(0);
        }
        if (rc == OPS_SOURCE_ROW) CGA_ASSERT_STREQ(row.symbol, e[i].text);
        if (rc == OPS_SOURCE_BAD && strncmp(err, e[i].text, strlen(e[i].text)) != 0) {
            fprintf(stderr, "step %zu: err '%s', want prefix '%s'\n", i, err, e[i].text);
            CGA_ASSERT(0);
        }
    }
}

static void test_csv_file(void) {
    static char big[70000], huge[200000], content[300000];
    memset(big, 'x', sizeof big);
    memset(huge, 'y', sizeof huge);
    size_t n = 0;
    n += (size_t)sprintf(content + n,
                         "\xEF\xBB\xBFsymbol,timestamp,open,high,low,close,volume\r\n");
    n += (size_t)sprintf(content + n, "A,1,1,1,1,1,1\r\n");          /* line 2 */
    n += (size_t)sprintf(content + n, "\n");                         /* line 3: blank */
    n += (size_t)sprintf(content + n, "B,1,1,1,1,1\n");              /* line 4: bad */
    memcpy(content + n, big, sizeof big);                            /* line 5: too long */
    n += sizeof big;
    content[n++] = '\n';
    n += (size_t)sprintf(content + n, "C,2,1,1,1,1,1\n");            /* line 6 */
    n += (size_t)sprintf(content + n, "D,x,1,1,1,1,1\n");            /* line 7: bad */
    memcpy(content + n, huge, sizeof huge);                          /* line 8: too long */
    n += sizeof huge;
    content[n++] = '\n';
    n += (size_t)sprintf(content + n, "E,3,1,1,1,1,1");              /* line 9, no newline */
    char *path = write_file("a.csv", content, n);
    char spec[160];
    snprintf(spec, sizeof spec, "csv:%s", path);
    ops_source_opts_t o = {.spec = spec};
    ops_source_t *s;
    char err[200];
    CGA_ASSERT_OK(ops_source_open(&s, &o, err, sizeof err));
    CGA_ASSERT_EQ(ops_source_kind(s), OPS_SOURCE_CSV);
    CGA_ASSERT_EQ(ops_source_poll_fd(s), -1);
    const expect_t e[] = {
        {OPS_SOURCE_ROW, "A"},
        {OPS_SOURCE_BAD, "line 4: expected 7 fields, got 6"},
        {OPS_SOURCE_BAD, "line 5: longer than 65536 bytes"},
        {OPS_SOURCE_ROW, "C"},
        {OPS_SOURCE_BAD, "line 7: timestamp: 'x' is not a number"},
        {OPS_SOURCE_BAD, "line 8: longer than 65536 bytes"},
        {OPS_SOURCE_ROW, "E"},
        {OPS_SOURCE_EOF, NULL},
        {OPS_SOURCE_EOF, NULL},
    };
    expect_seq(s, e, sizeof e / sizeof e[0]);
    CGA_ASSERT_EQ(ops_source_lines(s), 9);
    uint64_t done, total;
    ops_source_progress(s, &done, &total);
    CGA_ASSERT_EQ(done, n);
    CGA_ASSERT_EQ(total, n);
    ops_source_close(s);

    /* A bad header stops the file (every row would be misread). */
    path = write_file("b.csv", "sym,t\nA,1\n", 10);
    snprintf(spec, sizeof spec, "csv:%s", path);
    CGA_ASSERT_OK(ops_source_open(&s, &o, err, sizeof err));
    const expect_t e2[] = {{OPS_SOURCE_BAD, "line 1: bad header: no 'symbol' column"},
                           {OPS_SOURCE_EOF, NULL}};
    expect_seq(s, e2, 2);
    ops_source_close(s);

    /* An empty file has no header. */
    path = write_file("c.csv", "", 0);
    snprintf(spec, sizeof spec, "csv:%s", path);
    CGA_ASSERT_OK(ops_source_open(&s, &o, err, sizeof err));
    const expect_t e3[] = {{OPS_SOURCE_BAD, "line 1: no header"}, {OPS_SOURCE_EOF, NULL}};
    expect_seq(s, e3, 2);
    ops_source_close(s);

    /* Header only: no rows, no error. */
    path = write_file("d.csv", "symbol,timestamp,open,high,low,close,volume\n", 44);
    snprintf(spec, sizeof spec, "csv:%s", path);
    CGA_ASSERT_OK(ops_source_open(&s, &o, err, sizeof err));
    const expect_t e4[] = {{OPS_SOURCE_EOF, NULL}};
    expect_seq(s, e4, 1);
    ops_source_close(s);
}

static void test_jsonl_file(void) {
    const char *content =
        "{\"symbol\":\"A\",\"timestamp\":1,\"open\":1,\"high\":1,\"low\":1,\"close\":1,"
        "\"volume\":1}\n"
        "   \n"
        "{\"symbol\":\"B\"\n"
        "not json\n"
        "{\"symbol\":\"C\",\"timestamp\":1,\"open\":1,\"high\":1,\"low\":1,\"close\":1,"
        "\"volume\":1}\n";
    char *path = write_file("a.jsonl", content, strlen(content));
    char spec[160];
    snprintf(spec, sizeof spec, "jsonl:%s", path);
    ops_source_opts_t o = {.spec = spec};
    ops_source_t *s;
    char err[200];
    CGA_ASSERT_OK(ops_source_open(&s, &o, err, sizeof err));
    const expect_t e[] = {
        {OPS_SOURCE_ROW, "A"},
        {OPS_SOURCE_BAD, "line 3: expected ',' or '}'"},
        {OPS_SOURCE_BAD, "line 4: expected a JSON object"},
        {OPS_SOURCE_ROW, "C"},
        {OPS_SOURCE_EOF, NULL},
    };
    expect_seq(s, e, sizeof e / sizeof e[0]);
    ops_source_close(s);
}

static void test_source_specs(void) {
    ops_source_t *s;
    char err[300];
    ops_source_opts_t o = {.spec = "bogus"};
    CGA_ASSERT_EQ(ops_source_open(&s, &o, err, sizeof err), CGA_EINVAL);
    CGA_ASSERT(strstr(err, "'bogus' is not synthetic"));
    o.spec = "csv:";
    CGA_ASSERT_EQ(ops_source_open(&s, &o, err, sizeof err), CGA_EINVAL);
    CGA_ASSERT(strstr(err, "has no path"));
    o.spec = "jsonl:/nonexistent/x.jsonl";
    CGA_ASSERT_EQ(ops_source_open(&s, &o, err, sizeof err), -ENOENT);
    CGA_ASSERT(strstr(err, "cannot open /nonexistent/x.jsonl"));
    char spec[100];
    snprintf(spec, sizeof spec, "csv:%s", tmpdir);
    o.spec = spec;
    CGA_ASSERT_EQ(ops_source_open(&s, &o, err, sizeof err), -EISDIR);
    o.spec = "synthetic";
    o.symbols = 0;
    CGA_ASSERT_EQ(ops_source_open(&s, &o, err, sizeof err), CGA_EINVAL);
}

static void test_pipe(void) {
    int fds[2];
    CGA_ASSERT_EQ(pipe(fds), 0);
    int saved = dup(STDIN_FILENO);
    CGA_ASSERT_EQ(dup2(fds[0], STDIN_FILENO), STDIN_FILENO);
    close(fds[0]);
    ops_source_opts_t o = {.spec = "jsonl:-"};
    ops_source_t *s;
    char err[200];
    CGA_ASSERT_OK(ops_source_open(&s, &o, err, sizeof err));
    CGA_ASSERT_EQ(ops_source_poll_fd(s), STDIN_FILENO);
    ops_row_t row;
    /* Nothing read yet: the source asks to wait for readability, never blocks. */
    CGA_ASSERT_EQ(ops_source_next(s, &row, err, sizeof err), OPS_SOURCE_AGAIN);
    const char *part1 = "{\"symbol\":\"P\",\"timestamp\":1,\"open\":1,";
    const char *part2 = "\"high\":1,\"low\":1,\"close\":1,\"volume\":1}\n{\"sym";
    CGA_ASSERT_EQ(write(fds[1], part1, strlen(part1)), (ssize_t)strlen(part1));
    ops_source_readable(s);
    CGA_ASSERT_EQ(ops_source_next(s, &row, err, sizeof err), OPS_SOURCE_AGAIN);
    CGA_ASSERT_EQ(write(fds[1], part2, strlen(part2)), (ssize_t)strlen(part2));
    ops_source_readable(s);
    CGA_ASSERT_EQ(ops_source_next(s, &row, err, sizeof err), OPS_SOURCE_ROW);
    CGA_ASSERT_STREQ(row.symbol, "P");
    CGA_ASSERT_EQ(ops_source_next(s, &row, err, sizeof err), OPS_SOURCE_AGAIN);
    close(fds[1]);
    ops_source_readable(s);
    /* End of input: the unterminated last line is read, and is bad. */
    CGA_ASSERT_EQ(ops_source_next(s, &row, err, sizeof err), OPS_SOURCE_BAD);
    CGA_ASSERT(strncmp(err, "line 2: ", 8) == 0);
    CGA_ASSERT_EQ(ops_source_next(s, &row, err, sizeof err), OPS_SOURCE_EOF);
    ops_source_close(s);
    dup2(saved, STDIN_FILENO);
    close(saved);
}

static void test_synthetic_source(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/truth.csv", tmpdir);
    FILE *truth = fopen(path, "w");
    CGA_ASSERT(truth);
    ops_source_opts_t o = {.spec = "synthetic", .seed = 3, .symbols = 3, .bars = 5,
                           .t0_ms = 1000, .truth = truth};
    ops_source_t *s;
    char err[200];
    CGA_ASSERT_OK(ops_source_open(&s, &o, err, sizeof err));
    CGA_ASSERT_EQ(ops_source_symbols(s), 3);
    CGA_ASSERT_EQ(ops_source_poll_fd(s), -1);
    ops_row_t row;
    /* Interleaved: bar 0 of SYN0, SYN1, SYN2, then bar 1 ... */
    ops_synth_t ref;
    ops_synth_init(&ref, 3, 1, 1000);
    int n = 0;
    while (ops_source_next(s, &row, err, sizeof err) == OPS_SOURCE_ROW) {
        char want[16];
        snprintf(want, sizeof want, "SYN%d", n % 3);
        CGA_ASSERT_STREQ(row.symbol, want);
        CGA_ASSERT_EQ(row.bar.t, 1000 + (n / 3) * 60000);
        if (n % 3 == 1) {
            cga_bar_t b;
            cga_regime_t r;
            ops_synth_next(&ref, &b, &r);
            CGA_ASSERT(b.close == row.bar.close);
        }
        n++;
        uint64_t done, total;
        ops_source_progress(s, &done, &total);
        CGA_ASSERT_EQ(done, (uint64_t)n);
        CGA_ASSERT_EQ(total, 15);
    }
    CGA_ASSERT_EQ(n, 15);
    CGA_ASSERT_EQ(ops_source_next(s, &row, err, sizeof err), OPS_SOURCE_EOF);
    ops_source_close(s);
    fclose(truth);
    FILE *f = fopen(path, "r");
    char line[128];
    CGA_ASSERT(fgets(line, sizeof line, f));
    CGA_ASSERT_STREQ(line, "symbol,t,regime\n");
    int lines = 0;
    while (fgets(line, sizeof line, f)) {
        if (lines == 0) CGA_ASSERT(strncmp(line, "SYN0,1000,", 10) == 0);
        lines++;
    }
    fclose(f);
    CGA_ASSERT_EQ(lines, 15);
}

static void test_json_out(void) {
    char buf[256];
    FILE *f = fmemopen(buf, sizeof buf, "w");
    const char in[] = "a\"b\\c\n\x01\xc3\xa9\xff\xe2\x82";
    ops_json_str(f, in, sizeof in - 1);
    fclose(f);
    CGA_ASSERT_STREQ(buf, "\"a\\\"b\\\\c\\n\\u0001\xc3\xa9\\ufffd\\ufffd\\ufffd\"");
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cga-test-source-XXXXXX");
    CGA_ASSERT(mkdtemp(tmpdir));
    CGA_RUN(test_csv_header);
    CGA_RUN(test_csv_rows);
    CGA_RUN(test_csv_bad_rows);
    CGA_RUN(test_jsonl);
    CGA_RUN(test_csv_file);
    CGA_RUN(test_jsonl_file);
    CGA_RUN(test_source_specs);
    CGA_RUN(test_pipe);
    CGA_RUN(test_synthetic_source);
    CGA_RUN(test_json_out);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    CGA_ASSERT_EQ(system(cmd), 0);
    fprintf(stderr, "ok\n");
    return 0;
}

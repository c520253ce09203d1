#ifndef CGA_OPS_SOURCE_H
#define CGA_OPS_SOURCE_H

/* Market-data sources of `cgalpha-ops run|enqueue --source SPEC` (no event loop, no logging):
 *   synthetic      the synthetic market (market.h): --symbols series of --bars bars, bars of all
 *                  symbols interleaved (bar 0 of every symbol, then bar 1, ...)
 *   csv:PATH       CSV with the header  symbol,timestamp,open,high,low,close,volume  (columns in
 *                  any order, extra columns ignored), "-" for stdin
 *   jsonl:PATH     one flat JSON object per line with the same keys, "-" for stdin
 * Rows are validated one by one; a bad row is reported with its line number and reason and the
 * source goes on with the next one.
 *
 * A row: symbol 1..32 characters of [A-Za-z0-9._:=^-]; timestamp an integer in ms since the
 * epoch, 1..2^53; open, high, low, close finite and > 0 with low <= min(open, close) and
 * high >= max(open, close); volume finite and >= 0. */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "cgalpha/types.h"
#include "window.h"

typedef struct ops_row_s {
    char symbol[OPS_SYMBOL_MAX + 1]; /* NUL-terminated */
    size_t symlen;
    cga_bar_t bar;
} ops_row_t;

/* ---- pure parsers ------------------------------------------------------------------------ */

#define OPS_CSV_COLUMNS 7

/* Column index of each field (symbol, timestamp, open, high, low, close, volume) in the file,
 * and the number of columns of the header. */
typedef struct ops_csv_header_s {
    int col[OPS_CSV_COLUMNS];
    size_t ncols;
} ops_csv_header_t;

/* Parses a CSV header line (without its line end). Names are matched case-insensitively after
 * trimming blanks; "time" and "ts" are accepted for timestamp. Returns CGA_OK or CGA_EINVAL with
 * the reason in err. */
int ops_csv_parse_header(const char *line, size_t len, ops_csv_header_t *h, char *err,
                         size_t errlen);

/* Parses one CSV data line. Fields may be double-quoted ("" is a quote inside); blanks around a
 * field are ignored. Returns CGA_OK or CGA_EINVAL with the reason in err. */
int ops_csv_parse_row(const ops_csv_header_t *h, const char *line, size_t len, ops_row_t *row,
                      char *err, size_t errlen);

/* Parses one JSON line: a flat object with the keys symbol (string), timestamp (integer; "t"
 * and "ts" accepted too), open, high, low, close, volume (numbers). Other keys are ignored if
 * their value is a scalar; nested objects or arrays, duplicate keys, trailing data and invalid
 * JSON are errors. Returns CGA_OK or CGA_EINVAL with the reason in err. */
int ops_jsonl_parse_row(const char *line, size_t len, ops_row_t *row, char *err, size_t errlen);

/* Checks a row's values (the rules above). */
int ops_row_validate(const ops_row_t *row, char *err, size_t errlen);

/* ---- sources ----------------------------------------------------------------------------- */

typedef enum ops_source_kind {
    OPS_SOURCE_SYNTHETIC = 0,
    OPS_SOURCE_CSV = 1,
    OPS_SOURCE_JSONL = 2,
} ops_source_kind_t;

typedef struct ops_source_opts_s {
    const char *spec;     /* "synthetic", "csv:PATH", "jsonl:PATH", "jsonl:-" */
    uint64_t seed;        /* synthetic */
    unsigned symbols;     /* synthetic: number of symbols, >= 1 */
    uint64_t bars;        /* synthetic: bars per symbol */
    int64_t t0_ms;        /* synthetic: time of the first bar */
    FILE *truth;          /* synthetic: "symbol,t,regime" lines are written here (borrowed;
                             NULL for none; the header is written by ops_source_open) */
} ops_source_opts_t;

typedef struct ops_source_s ops_source_t;

/* Opens a source. Returns CGA_OK, CGA_EINVAL (bad spec) or -errno (file), with one line in err. */
int ops_source_open(ops_source_t **out, const ops_source_opts_t *o, char *err, size_t errlen);
void ops_source_close(ops_source_t *s);

ops_source_kind_t ops_source_kind(const ops_source_t *s);

enum ops_source_result {
    OPS_SOURCE_EOF = 0,   /* no more rows */
    OPS_SOURCE_ROW = 1,   /* *row holds the next row */
    OPS_SOURCE_BAD = 2,   /* a bad row: err holds "line N: reason"; call again for the next */
    OPS_SOURCE_AGAIN = 3, /* no complete line available without blocking: wait until
                             ops_source_fd() is readable, call ops_source_readable(), retry */
};

/* Next row. Returns one of enum ops_source_result, or a negative error (-errno from read, or
 * a write error on the truth file) with one line in err. */
int ops_source_next(ops_source_t *s, ops_row_t *row, char *err, size_t errlen);

/* For a source reading a pipe or terminal: the fd to watch for readability, else -1 (regular
 * files are read with plain blocking reads, which never wait long). */
int ops_source_poll_fd(const ops_source_t *s);

/* Tells the source that its fd is readable: the next read will not block. */
void ops_source_readable(ops_source_t *s);

/* Input position, for progress: bytes read so far and the total (0 when unknown). For the
 * synthetic source, bars generated and bars to generate. */
void ops_source_progress(const ops_source_t *s, uint64_t *done, uint64_t *total);

/* Lines read so far (header included). */
uint64_t ops_source_lines(const ops_source_t *s);

/* Synthetic: number of symbols (0 for the others). */
unsigned ops_source_symbols(const ops_source_t *s);

#endif

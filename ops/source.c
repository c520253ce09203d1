#include "source.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgalpha/alloc.h"
#include "cgalpha/err.h"
#include "cgalpha/proto.h"
#include "market.h"

#define LINE_MAX_BYTES 65536
#define READ_CHUNK 65536
#define TS_MAX INT64_C(9007199254740992) /* 2^53 */
#define CSV_MAX_FIELDS 64

static const char *const field_names[OPS_CSV_COLUMNS] = {
    "symbol", "timestamp", "open", "high", "low", "close", "volume",
};

static int fail(char *err, size_t errlen, const char *fmt, ...) CGA_PRINTF(3, 4);
static int fail(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return CGA_EINVAL;
}

/* Copies at most 40 bytes of s, with non-printable bytes as '?', for error messages. */
static const char *shown(const char *s, size_t n, char *buf, size_t cap) {
    size_t k = 0, max = cap - 4;
    for (size_t i = 0; i < n && k < max; i++) {
        unsigned char ch = (unsigned char)s[i];
        buf[k++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    if (n > max) {
        buf[k++] = '.';
        buf[k++] = '.';
        buf[k++] = '.';
    }
    buf[k] = '\0';
    return buf;
}

/* ---- numbers ----------------------------------------------------------------------------- */

/* JSON-like number: -?digits(.digits)?([eE][+-]?digits)? (a leading '+' and leading zeros are
 * tolerated in CSV). Returns the length of the valid prefix, 0 if none. *integer is set when
 * there is neither fraction nor exponent. */
static size_t scan_number(const char *s, size_t n, int allow_plus, int *integer) {
    size_t i = 0;
    *integer = 1;
    if (i < n && (s[i] == '-' || (allow_plus && s[i] == '+'))) i++;
    size_t d0 = i;
    while (i < n && isdigit((unsigned char)s[i])) i++;
    if (i == d0) return 0;
    if (i < n && s[i] == '.') {
        *integer = 0;
        size_t f0 = ++i;
        while (i < n && isdigit((unsigned char)s[i])) i++;
        if (i == f0) return 0;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        *integer = 0;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        size_t e0 = i;
        while (i < n && isdigit((unsigned char)s[i])) i++;
        if (i == e0) return 0;
    }
    return i;
}

static int parse_double(const char *name, const char *s, size_t n, double *out, char *err,
                        size_t errlen) {
    char buf[64], sh[48];
    int integer;
    if (n == 0) return fail(err, errlen, "%s: empty", name);
    if (n >= sizeof buf || scan_number(s, n, 1, &integer) != n)
        return fail(err, errlen, "%s: '%s' is not a number", name, shown(s, n, sh, sizeof sh));
    memcpy(buf, s, n);
    buf[n] = '\0';
    errno = 0;
    double v = strtod(buf, NULL);
    if (!isfinite(v) || errno == ERANGE)
        return fail(err, errlen, "%s: '%s' is out of range", name, buf);
    *out = v;
    return CGA_OK;
}

static int parse_ts(const char *s, size_t n, int64_t *out, char *err, size_t errlen) {
    char sh[48];
    int integer;
    if (n == 0) return fail(err, errlen, "timestamp: empty");
    if (scan_number(s, n, 1, &integer) != n)
        return fail(err, errlen, "timestamp: '%s' is not a number", shown(s, n, sh, sizeof sh));
    if (!integer)
        return fail(err, errlen, "timestamp: '%s' is not an integer (milliseconds since the "
                    "epoch)", shown(s, n, sh, sizeof sh));
    size_t i = 0;
    int neg = 0;
    if (s[0] == '-' || s[0] == '+') {
        neg = s[0] == '-';
        i++;
    }
    int64_t v = 0;
    for (; i < n; i++) {
        if (v > TS_MAX) break;
        v = v * 10 + (s[i] - '0');
    }
    if (neg || v < 1 || v > TS_MAX)
        return fail(err, errlen, "timestamp: '%s' is out of range (1..2^53 ms)",
                    shown(s, n, sh, sizeof sh));
    *out = v;
    return CGA_OK;
}

static int symbol_char_ok(unsigned char c) {
    return isalnum(c) || c == '.' || c == '_' || c == '-' || c == ':' || c == '=' || c == '^';
}

static int set_symbol(ops_row_t *row, const char *s, size_t n, char *err, size_t errlen) {
    char sh[48];
    if (n == 0) return fail(err, errlen, "symbol: empty");
    if (n > OPS_SYMBOL_MAX)
        return fail(err, errlen, "symbol: '%s' is longer than %d characters",
                    shown(s, n, sh, sizeof sh), OPS_SYMBOL_MAX);
    for (size_t i = 0; i < n; i++)
        if (!symbol_char_ok((unsigned char)s[i]))
            return fail(err, errlen, "symbol: '%s' has a character outside [A-Za-z0-9._:=^-]",
                        shown(s, n, sh, sizeof sh));
    memcpy(row->symbol, s, n);
    row->symbol[n] = '\0';
    row->symlen = n;
    return CGA_OK;
}

int ops_row_validate(const ops_row_t *row, char *err, size_t errlen) {
    const cga_bar_t *b = &row->bar;
    const double v[4] = {b->open, b->high, b->low, b->close};
    for (int i = 0; i < 4; i++)
        if (!(v[i] > 0.0) || !isfinite(v[i]))
            return fail(err, errlen, "%s: %g is not a positive price", field_names[2 + i], v[i]);
    if (!(b->volume >= 0.0) || !isfinite(b->volume))
        return fail(err, errlen, "volume: %g is negative", b->volume);
    double lo = b->open < b->close ? b->open : b->close;
    double hi = b->open > b->close ? b->open : b->close;
    if (b->low > lo) return fail(err, errlen, "low %g is above min(open, close) %g", b->low, lo);
    if (b->high < hi)
        return fail(err, errlen, "high %g is below max(open, close) %g", b->high, hi);
    if (b->t < 1 || b->t > TS_MAX) return fail(err, errlen, "timestamp: out of range");
    return CGA_OK;
}

/* Sets field number f (0..6) of row from text. */
static int set_field(ops_row_t *row, int f, const char *s, size_t n, char *err, size_t errlen) {
    switch (f) {
    case 0: return set_symbol(row, s, n, err, errlen);
    case 1: return parse_ts(s, n, &row->bar.t, err, errlen);
    case 2: return parse_double("open", s, n, &row->bar.open, err, errlen);
    case 3: return parse_double("high", s, n, &row->bar.high, err, errlen);
    case 4: return parse_double("low", s, n, &row->bar.low, err, errlen);
    case 5: return parse_double("close", s, n, &row->bar.close, err, errlen);
    default: return parse_double("volume", s, n, &row->bar.volume, err, errlen);
    }
}

/* ---- CSV --------------------------------------------------------------------------------- */

typedef struct field_s {
    const char *p;
    size_t n;
} field_t;

static int is_blank(char c) {
    return c == ' ' || c == '\t';
}

/* Splits a line into fields; quoted fields are unquoted into scratch (which must hold len
 * bytes). Returns the number of fields or CGA_EINVAL. */
static int csv_split(const char *s, size_t len, field_t *f, size_t max, char *scratch,
                     char *err, size_t errlen) {
    size_t i = 0, nf = 0, sk = 0;
    for (;;) {
        if (nf == max) return fail(err, errlen, "more than %zu fields", max);
        while (i < len && is_blank(s[i])) i++;
        if (i < len && s[i] == '"') {
            size_t start = sk;
            i++;
            for (;;) {
                if (i == len) return fail(err, errlen, "field %zu: unterminated quote", nf + 1);
                if (s[i] == '"') {
                    if (i + 1 < len && s[i + 1] == '"') {
                        scratch[sk++] = '"';
                        i += 2;
                        continue;
                    }
                    i++;
                    break;
                }
                scratch[sk++] = s[i++];
            }
            while (i < len && is_blank(s[i])) i++;
            if (i < len && s[i] != ',')
                return fail(err, errlen, "field %zu: text after the closing quote", nf + 1);
            f[nf].p = scratch + start;
            f[nf].n = sk - start;
        } else {
            size_t start = i;
            while (i < len && s[i] != ',') {
                if (s[i] == '"')
                    return fail(err, errlen, "field %zu: quote inside an unquoted field",
                                nf + 1);
                i++;
            }
            size_t end = i;
            while (end > start && is_blank(s[end - 1])) end--;
            f[nf].p = s + start;
            f[nf].n = end - start;
        }
        nf++;
        if (i == len) break;
        i++; /* the comma */
    }
    return (int)nf;
}

int ops_csv_parse_header(const char *line, size_t len, ops_csv_header_t *h, char *err,
                         size_t errlen) {
    field_t f[CSV_MAX_FIELDS];
    char *scratch = cga_malloc(len + 1);
    char e[160];
    int nf = csv_split(line, len, f, CSV_MAX_FIELDS, scratch, e, sizeof e);
    int rc = CGA_OK;
    if (nf < 0) {
        rc = fail(err, errlen, "bad header: %s", e);
        goto out;
    }
    for (int k = 0; k < OPS_CSV_COLUMNS; k++) h->col[k] = -1;
    for (int i = 0; i < nf; i++) {
        for (int k = 0; k < OPS_CSV_COLUMNS; k++) {
            size_t kn = strlen(field_names[k]);
            int match = f[i].n == kn && strncasecmp(f[i].p, field_names[k], kn) == 0;
            if (k == 1 && !match)
                match = (f[i].n == 4 && strncasecmp(f[i].p, "time", 4) == 0) ||
                        (f[i].n == 2 && strncasecmp(f[i].p, "ts", 2) == 0);
            if (!match) continue;
            if (h->col[k] >= 0) {
                rc = fail(err, errlen, "bad header: column '%s' appears twice", field_names[k]);
                goto out;
            }
            h->col[k] = i;
        }
    }
    for (int k = 0; k < OPS_CSV_COLUMNS; k++) {
        if (h->col[k] < 0) {
            rc = fail(err, errlen, "bad header: no '%s' column (expected "
                      "symbol,timestamp,open,high,low,close,volume)", field_names[k]);
            goto out;
        }
    }
    h->ncols = (size_t)nf;
out:
    free(scratch);
    return rc;
}

int ops_csv_parse_row(const ops_csv_header_t *h, const char *line, size_t len, ops_row_t *row,
                      char *err, size_t errlen) {
    field_t f[CSV_MAX_FIELDS];
    char scratch_small[512];
    char *scratch = len < sizeof scratch_small ? scratch_small : cga_malloc(len + 1);
    int rc = CGA_OK;
    int nf = csv_split(line, len, f, CSV_MAX_FIELDS, scratch, err, errlen);
    if (nf < 0) {
        rc = nf;
        goto out;
    }
    if ((size_t)nf != h->ncols) {
        rc = fail(err, errlen, "expected %zu fields, got %d", h->ncols, nf);
        goto out;
    }
    memset(row, 0, sizeof *row);
    for (int k = 0; k < OPS_CSV_COLUMNS && rc == CGA_OK; k++)
        rc = set_field(row, k, f[h->col[k]].p, f[h->col[k]].n, err, errlen);
    if (rc == CGA_OK) rc = ops_row_validate(row, err, errlen);
out:
    if (scratch != scratch_small) free(scratch);
    return rc;
}

/* ---- JSON lines -------------------------------------------------------------------------- */

typedef struct json_s {
    const char *s;
    size_t n, i;
    char *err;
    size_t errlen;
} json_t;

static void json_ws(json_t *j) {
    while (j->i < j->n) {
        char c = j->s[j->i];
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n') break;
        j->i++;
    }
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int json_hex4(json_t *j, unsigned *out) {
    if (j->n - j->i < 4) return -1;
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        int h = hexval(j->s[j->i + (size_t)k]);
        if (h < 0) return -1;
        v = v * 16 + (unsigned)h;
    }
    j->i += 4;
    *out = v;
    return 0;
}

/* Appends byte c to out (capacity cap); past cap only counts. */
static void put(char *out, size_t cap, size_t *k, char c) {
    if (*k < cap) out[*k] = c;
    (*k)++;
}

/* Parses a string at j->i (at the opening quote); decoded bytes go to out[cap] (the length may
 * exceed cap: then the value was truncated). */
static int json_string(json_t *j, char *out, size_t cap, size_t *outlen) {
    size_t k = 0;
    j->i++; /* opening quote */
    for (;;) {
        if (j->i >= j->n) return fail(j->err, j->errlen, "unterminated string");
        unsigned char c = (unsigned char)j->s[j->i++];
        if (c == '"') break;
        if (c < 0x20)
            return fail(j->err, j->errlen, "control character in a string at column %zu", j->i);
        if (c != '\\') {
            put(out, cap, &k, (char)c);
            continue;
        }
        if (j->i >= j->n) return fail(j->err, j->errlen, "unterminated string");
        char e = j->s[j->i++];
        switch (e) {
        case '"': put(out, cap, &k, '"'); break;
        case '\\': put(out, cap, &k, '\\'); break;
        case '/': put(out, cap, &k, '/'); break;
        case 'b': put(out, cap, &k, '\b'); break;
        case 'f': put(out, cap, &k, '\f'); break;
        case 'n': put(out, cap, &k, '\n'); break;
        case 'r': put(out, cap, &k, '\r'); break;
        case 't': put(out, cap, &k, '\t'); break;
        case 'u': {
            unsigned cp;
            if (json_hex4(j, &cp) < 0)
                return fail(j->err, j->errlen, "bad \\u escape at column %zu", j->i);
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned lo;
                if (j->n - j->i < 2 || j->s[j->i] != '\\' || j->s[j->i + 1] != 'u')
                    return fail(j->err, j->errlen, "unpaired surrogate at column %zu", j->i);
                j->i += 2;
                if (json_hex4(j, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF)
                    return fail(j->err, j->errlen, "unpaired surrogate at column %zu", j->i);
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return fail(j->err, j->errlen, "unpaired surrogate at column %zu", j->i);
            }
            if (cp < 0x80) {
                put(out, cap, &k, (char)cp);
            } else if (cp < 0x800) {
                put(out, cap, &k, (char)(0xC0 | (cp >> 6)));
                put(out, cap, &k, (char)(0x80 | (cp & 0x3F)));
            } else if (cp < 0x10000) {
                put(out, cap, &k, (char)(0xE0 | (cp >> 12)));
                put(out, cap, &k, (char)(0x80 | ((cp >> 6) & 0x3F)));
                put(out, cap, &k, (char)(0x80 | (cp & 0x3F)));
            } else {
                put(out, cap, &k, (char)(0xF0 | (cp >> 18)));
                put(out, cap, &k, (char)(0x80 | ((cp >> 12) & 0x3F)));
                put(out, cap, &k, (char)(0x80 | ((cp >> 6) & 0x3F)));
                put(out, cap, &k, (char)(0x80 | (cp & 0x3F)));
            }
            break;
        }
        default:
            return fail(j->err, j->errlen, "bad escape '\\%c' at column %zu",
                        isprint((unsigned char)e) ? e : '?', j->i);
        }
    }
    *outlen = k;
    return CGA_OK;
}

static int json_literal(json_t *j, const char *lit) {
    size_t n = strlen(lit);
    if (j->n - j->i < n || memcmp(j->s + j->i, lit, n) != 0)
        return fail(j->err, j->errlen, "invalid value at column %zu", j->i + 1);
    j->i += n;
    return CGA_OK;
}

enum { JV_STRING, JV_NUMBER, JV_OTHER };

typedef struct jvalue_s {
    int type;
    char str[OPS_SYMBOL_MAX + 8]; /* decoded string (truncated past its size) */
    size_t slen;                  /* full decoded length */
    const char *num;              /* number text */
    size_t nlen;
} jvalue_t;

static int json_value(json_t *j, jvalue_t *v) {
    if (j->i >= j->n) return fail(j->err, j->errlen, "missing value at end of line");
    char c = j->s[j->i];
    if (c == '"') {
        v->type = JV_STRING;
        return json_string(j, v->str, sizeof v->str, &v->slen);
    }
    if (c == '{' || c == '[')
        return fail(j->err, j->errlen, "nested %s at column %zu: only flat objects are read",
                    c == '{' ? "object" : "array", j->i + 1);
    if (c == 't' || c == 'f' || c == 'n') {
        v->type = JV_OTHER;
        return json_literal(j, c == 't' ? "true" : c == 'f' ? "false" : "null");
    }
    int integer;
    size_t len = scan_number(j->s + j->i, j->n - j->i, 0, &integer);
    if (len == 0) return fail(j->err, j->errlen, "invalid value at column %zu", j->i + 1);
    /* JSON forbids leading zeros ("012"). */
    const char *p = j->s + j->i;
    size_t d = p[0] == '-' ? 1 : 0;
    if (p[d] == '0' && d + 1 < len && isdigit((unsigned char)p[d + 1]))
        return fail(j->err, j->errlen, "number with a leading zero at column %zu", j->i + 1);
    v->type = JV_NUMBER;
    v->num = p;
    v->nlen = len;
    j->i += len;
    return CGA_OK;
}

/* Known key -> field number, or -1. */
static int json_field(const char *k, size_t n) {
    for (int f = 0; f < OPS_CSV_COLUMNS; f++)
        if (strlen(field_names[f]) == n && memcmp(field_names[f], k, n) == 0) return f;
    if ((n == 1 && k[0] == 't') || (n == 2 && memcmp(k, "ts", 2) == 0)) return 1;
    return -1;
}

int ops_jsonl_parse_row(const char *line, size_t len, ops_row_t *row, char *err, size_t errlen) {
    json_t j = {line, len, 0, err, errlen};
    int seen[OPS_CSV_COLUMNS] = {0};
    char e[160];
    memset(row, 0, sizeof *row);
    json_ws(&j);
    if (j.i >= j.n || j.s[j.i] != '{') return fail(err, errlen, "expected a JSON object");
    j.i++;
    json_ws(&j);
    if (j.i < j.n && j.s[j.i] == '}') {
        j.i++;
    } else {
        for (;;) {
            json_ws(&j);
            if (j.i >= j.n || j.s[j.i] != '"')
                return fail(err, errlen, "expected a key at column %zu", j.i + 1);
            char key[24];
            size_t klen;
            int rc = json_string(&j, key, sizeof key, &klen);
            if (rc < 0) return rc;
            int f = klen <= sizeof key ? json_field(key, klen) : -1;
            json_ws(&j);
            if (j.i >= j.n || j.s[j.i] != ':')
                return fail(err, errlen, "expected ':' at column %zu", j.i + 1);
            j.i++;
            json_ws(&j);
            jvalue_t v;
            rc = json_value(&j, &v);
            if (rc < 0) return rc;
            if (f >= 0) {
                if (seen[f]) return fail(err, errlen, "duplicate key '%s'", field_names[f]);
                seen[f] = 1;
                if (f == 0 && v.type != JV_STRING)
                    return fail(err, errlen, "symbol: expected a string");
                if (f != 0 && v.type != JV_NUMBER)
                    return fail(err, errlen, "%s: expected a number", field_names[f]);
                if (f == 0 && v.slen > OPS_SYMBOL_MAX)
                    return fail(err, errlen, "symbol: longer than %d characters",
                                OPS_SYMBOL_MAX);
                rc = f == 0 ? set_field(row, f, v.str, v.slen, e, sizeof e)
                            : set_field(row, f, v.num, v.nlen, e, sizeof e);
                if (rc < 0) return fail(err, errlen, "%s", e);
            }
            json_ws(&j);
            if (j.i < j.n && j.s[j.i] == ',') {
                j.i++;
                continue;
            }
            if (j.i < j.n && j.s[j.i] == '}') {
                j.i++;
                break;
            }
            return fail(err, errlen, "expected ',' or '}' at column %zu", j.i + 1);
        }
    }
    json_ws(&j);
    if (j.i != j.n) return fail(err, errlen, "trailing data after the object at column %zu",
                                j.i + 1);
    for (int f = 0; f < OPS_CSV_COLUMNS; f++)
        if (!seen[f]) return fail(err, errlen, "missing key '%s'", field_names[f]);
    return ops_row_validate(row, err, errlen);
}

/* ---- sources ----------------------------------------------------------------------------- */

struct ops_source_s {
    ops_source_kind_t kind;
    /* synthetic */
    ops_synth_t *gens;
    unsigned nsym;
    uint64_t bars, round;
    unsigned cur;
    FILE *truth;
    /* files */
    int fd;
    int own_fd;
    int pollable;
    int readable;
    int eof;
    int header_done;
    int discarding;    /* skipping the rest of an over-long line */
    int stop;          /* bad header: nothing more to read */
    ops_csv_header_t header;
    char *buf;
    size_t start, end, cap;
    uint64_t line;     /* number of the last line returned */
    uint64_t bytes, total;
};

static void skip_bom(ops_source_t *s) {
    if (s->line == 0 && s->end - s->start >= 3 &&
        memcmp(s->buf + s->start, "\xEF\xBB\xBF", 3) == 0)
        s->start += 3;
}

int ops_source_open(ops_source_t **out, const ops_source_opts_t *o, char *err, size_t errlen) {
    *out = NULL;
    const char *spec = o->spec ? o->spec : "";
    ops_source_t *s = cga_calloc(1, sizeof *s);
    s->fd = -1;
    const char *path = NULL;
    if (strcmp(spec, "synthetic") == 0) {
        s->kind = OPS_SOURCE_SYNTHETIC;
        if (o->symbols == 0) {
            free(s);
            return fail(err, errlen, "synthetic source: --symbols must be at least 1");
        }
        s->nsym = o->symbols;
        s->bars = o->bars;
        s->truth = o->truth;
        s->gens = cga_malloc(s->nsym * sizeof *s->gens);
        for (unsigned i = 0; i < s->nsym; i++) ops_synth_init(&s->gens[i], o->seed, i, o->t0_ms);
        if (s->truth && fputs("symbol,t,regime\n", s->truth) == EOF) {
            int rc = -errno;
            ops_source_close(s);
            snprintf(err, errlen, "writing the truth file: %s", strerror(-rc));
            return rc;
        }
        *out = s;
        return CGA_OK;
    } else if (strncmp(spec, "csv:", 4) == 0) {
        s->kind = OPS_SOURCE_CSV;
        path = spec + 4;
    } else if (strncmp(spec, "jsonl:", 6) == 0) {
        s->kind = OPS_SOURCE_JSONL;
        path = spec + 6;
    } else {
        free(s);
        return fail(err, errlen, "OPS_SOURCE: '%s' is not synthetic, csv:PATH or jsonl:PATH "
                    "(PATH - for stdin)", spec);
    }
    if (!*path) {
        free(s);
        return fail(err, errlen, "OPS_SOURCE: '%s' has no path (use - for stdin)", spec);
    }
    if (strcmp(path, "-") == 0) {
        s->fd = STDIN_FILENO;
    } else {
        s->fd = open(path, O_RDONLY | O_CLOEXEC);
        if (s->fd < 0) {
            int rc = -errno;
            snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
            free(s);
            return rc;
        }
        s->own_fd = 1;
    }
    struct stat st;
    if (fstat(s->fd, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            snprintf(err, errlen, "%s is a directory", path);
            ops_source_close(s);
            return -EISDIR;
        }
        if (S_ISREG(st.st_mode)) s->total = (uint64_t)st.st_size;
        s->pollable = S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || isatty(s->fd);
    }
    s->cap = LINE_MAX_BYTES + READ_CHUNK;
    s->buf = cga_malloc(s->cap);
    *out = s;
    return CGA_OK;
}

void ops_source_close(ops_source_t *s) {
    if (!s) return;
    if (s->own_fd && s->fd >= 0) close(s->fd);
    free(s->gens);
    free(s->buf);
    free(s);
}

ops_source_kind_t ops_source_kind(const ops_source_t *s) {
    return s->kind;
}

int ops_source_poll_fd(const ops_source_t *s) {
    return s->pollable ? s->fd : -1;
}

void ops_source_readable(ops_source_t *s) {
    s->readable = 1;
}

void ops_source_progress(const ops_source_t *s, uint64_t *done, uint64_t *total) {
    if (s->kind == OPS_SOURCE_SYNTHETIC) {
        *done = s->round * s->nsym + s->cur;
        *total = s->bars * s->nsym;
    } else {
        *done = s->bytes;
        *total = s->total;
    }
}

uint64_t ops_source_lines(const ops_source_t *s) {
    return s->line;
}

unsigned ops_source_symbols(const ops_source_t *s) {
    return s->kind == OPS_SOURCE_SYNTHETIC ? s->nsym : 0;
}

static int synth_next(ops_source_t *s, ops_row_t *row, char *err, size_t errlen) {
    if (s->round >= s->bars) return OPS_SOURCE_EOF;
    cga_regime_t reg;
    ops_synth_next(&s->gens[s->cur], &row->bar, &reg);
    ops_synth_symbol(row->symbol, sizeof row->symbol, s->cur);
    row->symlen = strlen(row->symbol);
    if (s->truth &&
        fprintf(s->truth, "%s,%lld,%s\n", row->symbol, (long long)row->bar.t,
                cga_regime_name(reg)) < 0) {
        int rc = errno ? -errno : -EIO;
        snprintf(err, errlen, "writing the truth file: %s", strerror(-rc));
        return rc;
    }
    if (++s->cur == s->nsym) {
        s->cur = 0;
        s->round++;
    }
    return OPS_SOURCE_ROW;
}

/* Gets the next line into *line and *len (no line end). Returns ROW, EOF, AGAIN, BAD (too long:
 * err set) or -errno. */
static int next_line(ops_source_t *s, const char **line, size_t *len, char *err,
                     size_t errlen) {
    for (;;) {
        char *nl = s->end > s->start ? memchr(s->buf + s->start, '\n', s->end - s->start) : NULL;
        if (nl || (s->eof && s->end > s->start)) {
            size_t n = nl ? (size_t)(nl - (s->buf + s->start)) : s->end - s->start;
            const char *p = s->buf + s->start;
            s->start += nl ? n + 1 : n;
            if (s->discarding) {
                s->discarding = 0;
                continue;
            }
            s->line++;
            if (n > LINE_MAX_BYTES) {
                snprintf(err, errlen, "line %llu: longer than %d bytes",
                         (unsigned long long)s->line, LINE_MAX_BYTES);
                return OPS_SOURCE_BAD;
            }
            if (n > 0 && p[n - 1] == '\r') n--;
            *line = p;
            *len = n;
            return OPS_SOURCE_ROW;
        }
        if (s->eof) return OPS_SOURCE_EOF;
        if (s->end - s->start >= LINE_MAX_BYTES) {
            /* No line end within the limit: drop what we have and the rest of the line. */
            int was = s->discarding;
            s->start = s->end = 0;
            s->discarding = 1;
            if (!was) {
                s->line++;
                snprintf(err, errlen, "line %llu: longer than %d bytes",
                         (unsigned long long)s->line, LINE_MAX_BYTES);
                return OPS_SOURCE_BAD;
            }
        }
        if (s->start > 0) {
            memmove(s->buf, s->buf + s->start, s->end - s->start);
            s->end -= s->start;
            s->start = 0;
        }
        if (s->pollable && !s->readable) return OPS_SOURCE_AGAIN;
        s->readable = 0;
        ssize_t r;
        do {
            r = read(s->fd, s->buf + s->end, s->cap - s->end);
        } while (r < 0 && errno == EINTR);
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return OPS_SOURCE_AGAIN;
            int rc = -errno;
            snprintf(err, errlen, "read error: %s", strerror(errno));
            return rc;
        }
        if (r == 0) s->eof = 1;
        s->end += (size_t)r;
        s->bytes += (uint64_t)r;
        skip_bom(s);
    }
}

static int only_blanks(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!is_blank(p[i])) return 0;
    return 1;
}

int ops_source_next(ops_source_t *s, ops_row_t *row, char *err, size_t errlen) {
    if (s->kind == OPS_SOURCE_SYNTHETIC) return synth_next(s, row, err, errlen);
    for (;;) {
        if (s->stop) return OPS_SOURCE_EOF;
        const char *line = NULL;
        size_t len = 0;
        int rc = next_line(s, &line, &len, err, errlen);
        if (rc != OPS_SOURCE_ROW) {
            if (rc == OPS_SOURCE_EOF && s->kind == OPS_SOURCE_CSV && !s->header_done) {
                s->stop = 1;
                snprintf(err, errlen, "line %llu: no header (expected "
                         "symbol,timestamp,open,high,low,close,volume)",
                         (unsigned long long)(s->line + 1));
                return OPS_SOURCE_BAD;
            }
            if (rc == OPS_SOURCE_BAD && s->kind == OPS_SOURCE_CSV && !s->header_done) {
                s->stop = 1;
            }
            return rc;
        }
        if (only_blanks(line, len)) continue;
        char e[200];
        if (s->kind == OPS_SOURCE_CSV && !s->header_done) {
            s->header_done = 1;
            if (ops_csv_parse_header(line, len, &s->header, e, sizeof e) < 0) {
                s->stop = 1;
                snprintf(err, errlen, "line %llu: %s", (unsigned long long)s->line, e);
                return OPS_SOURCE_BAD;
            }
            continue;
        }
        rc = s->kind == OPS_SOURCE_CSV ? ops_csv_parse_row(&s->header, line, len, row, e, sizeof e)
                                       : ops_jsonl_parse_row(line, len, row, e, sizeof e);
        if (rc < 0) {
            snprintf(err, errlen, "line %llu: %s", (unsigned long long)s->line, e);
            return OPS_SOURCE_BAD;
        }
        return OPS_SOURCE_ROW;
    }
}

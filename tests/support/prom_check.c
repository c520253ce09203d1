/* Checks Prometheus text exposition format 0.0.4 the way a scraper does, line by line (taken
 * from tests/unit/test_metrics.c's validator): names, label syntax and escapes, # HELP / # TYPE
 * order, one TYPE per family and no family split in two, counters ending in _total and >= 0,
 * histograms with ascending cumulative buckets, a +Inf bucket equal to _count, _sum before
 * _count, and a final newline. */
#include "prom_check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

/* ---- a validator for the text format (what a Prometheus scraper checks) ---- */

typedef struct hseries_s {
    char labels[256]; /* the series' labels without le */
    double last_le;
    double last_cum;
    int nbuckets;
    int saw_inf;
    double inf_count;
    int saw_sum;
} hseries_t;

typedef struct validator_s {
    char fam[128];      /* the family of the last # TYPE */
    char type[16];
    char seen[256][128]; /* families already closed: none may come back */
    int nseen;
    char helped[128];   /* family of the last # HELP */
    hseries_t h;        /* current histogram series */
    int in_hseries;
    int samples;
    int line;
} validator_t;

#define VFAIL(v, ...)                                                                      \
    do {                                                                                   \
        fprintf(stderr, "exposition line %d: ", (v)->line);                                \
        CGA_FAIL_(__VA_ARGS__);                                                            \
    } while (0)

static int is_name_start(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}

static int is_name_char(char c) {
    return is_name_start(c) || (c >= '0' && c <= '9');
}

/* Parses a metric name at *p into out; advances *p. */
static void parse_name(validator_t *v, const char **p, char *out, size_t n, int label) {
    const char *s = *p;
    size_t i = 0;
    if (!is_name_start(*s) || (label && *s == ':')) VFAIL(v, "bad name start '%c'", *s);
    while (is_name_char(*s) && !(label && *s == ':')) {
        if (i + 1 >= n) VFAIL(v, "name too long");
        out[i++] = *s++;
    }
    out[i] = '\0';
    *p = s;
}

/* A sample value or le: a Go float (strtod) or +Inf, -Inf, NaN. */
static double parse_value(validator_t *v, const char *s, size_t n) {
    char buf[64];
    if (n == 0 || n >= sizeof buf) VFAIL(v, "bad value length %zu", n);
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (strcmp(buf, "+Inf") == 0) return INFINITY;
    if (strcmp(buf, "-Inf") == 0) return -INFINITY;
    if (strcmp(buf, "NaN") == 0) return NAN;
    char *end;
    double d = strtod(buf, &end);
    if (*end != '\0' || strstr(buf, "inf") || strstr(buf, "nan"))
        VFAIL(v, "value \"%s\" is not a float", buf);
    return d;
}

static void close_hseries(validator_t *v) {
    if (!v->in_hseries) return;
    hseries_t *h = &v->h;
    if (!h->saw_inf) VFAIL(v, "histogram %s{%s}: no +Inf bucket", v->fam, h->labels);
    if (!h->saw_sum) VFAIL(v, "histogram %s{%s}: no _sum", v->fam, h->labels);
    VFAIL(v, "histogram %s{%s}: no _count", v->fam, h->labels);
}

static void close_family(validator_t *v) {
    if (!v->fam[0]) return;
    if (v->in_hseries) close_hseries(v);
    CGA_ASSERT(v->nseen < 256);
    /* memcpy, not snprintf: GCC's -Wrestrict takes two arrays of one struct for overlapping */
    size_t n = strnlen(v->fam, sizeof v->seen[0] - 1);
    memcpy(v->seen[v->nseen], v->fam, n);
    v->seen[v->nseen++][n] = '\0';
    v->fam[0] = '\0';
}

static void check_help_text(validator_t *v, const char *s) {
    for (; *s; s++)
        if (*s == '\\' && s[1] != '\\' && s[1] != 'n') VFAIL(v, "bad escape in HELP");
        else if (*s == '\\') s++;
}

static void validate_comment(validator_t *v, const char *l) {
    char name[128];
    const char *p;
    if (strncmp(l, "# HELP ", 7) == 0) {
        p = l + 7;
        parse_name(v, &p, name, sizeof name, 0);
        if (*p != ' ') VFAIL(v, "HELP: no space after the name");
        check_help_text(v, p + 1);
        if (strcmp(name, v->helped) == 0) VFAIL(v, "second HELP for %s", name);
        for (int i = 0; i < v->nseen; i++)
            if (strcmp(v->seen[i], name) == 0) VFAIL(v, "HELP for %s after its samples", name);
        snprintf(v->helped, sizeof v->helped, "%s", name);
    } else if (strncmp(l, "# TYPE ", 7) == 0) {
        p = l + 7;
        parse_name(v, &p, name, sizeof name, 0);
        if (*p != ' ') VFAIL(v, "TYPE: no space after the name");
        p++;
        if (strcmp(p, "counter") && strcmp(p, "gauge") && strcmp(p, "histogram") &&
            strcmp(p, "summary") && strcmp(p, "untyped"))
            VFAIL(v, "TYPE %s: unknown type \"%s\"", name, p);
        if (strcmp(name, v->fam) == 0) VFAIL(v, "second TYPE for %s", name);
        for (int i = 0; i < v->nseen; i++)
            if (strcmp(v->seen[i], name) == 0) VFAIL(v, "family %s comes back", name);
        if (v->helped[0] && strcmp(v->helped, name) != 0 && strcmp(v->helped, v->fam) != 0)
            VFAIL(v, "HELP for %s is not followed by its TYPE", v->helped);
        close_family(v);
        snprintf(v->fam, sizeof v->fam, "%s", name);
        snprintf(v->type, sizeof v->type, "%s", p);
    }
}

static void validate_sample(validator_t *v, const char *l) {
    char name[128], lname[128], labels[256] = "", le[64] = "";
    const char *p = l;
    parse_name(v, &p, name, sizeof name, 0);
    if (!v->fam[0]) VFAIL(v, "sample %s without a preceding TYPE", name);
    size_t fl = strlen(v->fam);
    const char *suffix = "";
    if (strcmp(name, v->fam) != 0) {
        if (strcmp(v->type, "histogram") != 0 || strncmp(name, v->fam, fl) != 0)
            VFAIL(v, "sample %s does not belong to the family %s of the last TYPE", name, v->fam);
        suffix = name + fl;
        if (strcmp(suffix, "_bucket") && strcmp(suffix, "_sum") && strcmp(suffix, "_count"))
            VFAIL(v, "sample %s: unknown histogram suffix", name);
    } else if (strcmp(v->type, "histogram") == 0) {
        VFAIL(v, "histogram sample %s without _bucket/_sum/_count", name);
    }
    if (strcmp(v->type, "counter") == 0 &&
        (strlen(name) < 6 || strcmp(name + strlen(name) - 6, "_total") != 0))
        VFAIL(v, "counter sample %s does not end in _total", name);
    if (*p == '{') {
        p++;
        while (*p != '}') {
            parse_name(v, &p, lname, sizeof lname, 1);
            if (*p++ != '=') VFAIL(v, "label %s: no '='", lname);
            if (*p++ != '"') VFAIL(v, "label %s: no opening quote", lname);
            const char *val = p;
            while (*p != '"') {
                if (*p == '\0') VFAIL(v, "label %s: unterminated value", lname);
                if (*p == '\\') {
                    p++;
                    if (*p != '\\' && *p != '"' && *p != 'n')
                        VFAIL(v, "label %s: bad escape", lname);
                }
                p++;
            }
            size_t vlen = (size_t)(p - val);
            p++;
            if (strcmp(lname, "le") == 0) {
                if (vlen >= sizeof le) VFAIL(v, "le too long");
                memcpy(le, val, vlen);
                le[vlen] = '\0';
            } else {
                size_t used = strlen(labels);
                snprintf(labels + used, sizeof labels - used, "%s%s=\"%.*s\"", used ? "," : "",
                         lname, (int)vlen, val);
            }
            if (*p == ',') p++;
            else if (*p != '}') VFAIL(v, "label list: want ',' or '}', got '%c'", *p);
        }
        p++;
    }
    if (*p != ' ') VFAIL(v, "sample %s: no space before the value", name);
    p++;
    const char *sp = strchr(p, ' ');
    if (sp) VFAIL(v, "sample %s: unexpected timestamp or trailing text", name);
    double value = parse_value(v, p, strlen(p));
    v->samples++;

    if (strcmp(v->type, "counter") == 0 && !(value >= 0)) VFAIL(v, "counter %s < 0", name);
    if (strcmp(v->type, "histogram") != 0) {
        if (le[0]) VFAIL(v, "le label outside a histogram");
        return;
    }
    hseries_t *h = &v->h;
    if (strcmp(suffix, "_bucket") == 0) {
        if (!le[0]) VFAIL(v, "bucket without le");
        double bound = parse_value(v, le, strlen(le));
        if (!v->in_hseries || strcmp(h->labels, labels) != 0) {
            if (v->in_hseries) close_hseries(v);
            memset(h, 0, sizeof *h);
            snprintf(h->labels, sizeof h->labels, "%s", labels);
            h->last_le = -INFINITY;
            v->in_hseries = 1;
        }
        if (h->saw_inf) VFAIL(v, "bucket after +Inf");
        if (!(bound > h->last_le)) VFAIL(v, "le %s not ascending", le);
        if (value < h->last_cum)
            VFAIL(v, "buckets not cumulative: %g after %g", value, h->last_cum);
        if (value != floor(value)) VFAIL(v, "bucket count %g not an integer", value);
        h->last_le = bound;
        h->last_cum = value;
        h->nbuckets++;
        if (isinf(bound)) {
            h->saw_inf = 1;
            h->inf_count = value;
        }
    } else {
        if (le[0]) VFAIL(v, "le on %s", name);
        if (!v->in_hseries || strcmp(h->labels, labels) != 0)
            VFAIL(v, "%s{%s} before its buckets", name, labels);
        if (!h->saw_inf) VFAIL(v, "%s before the +Inf bucket", name);
        if (strcmp(suffix, "_sum") == 0) {
            h->saw_sum = 1;
        } else {
            if (!h->saw_sum) VFAIL(v, "_count before _sum");
            if (value != h->inf_count)
                VFAIL(v, "%s = %g but the +Inf bucket is %g", name, value, h->inf_count);
            v->in_hseries = 0;
        }
    }
}

int cga_prom_validate(const char *text) {
    validator_t v;
    memset(&v, 0, sizeof v);
    size_t n = strlen(text);
    if (n && text[n - 1] != '\n') CGA_FAIL_("exposition does not end with a newline");
    const char *s = text;
    while (*s) {
        const char *nl = strchr(s, '\n');
        char line[2048];
        size_t len = (size_t)(nl - s);
        CGA_ASSERT(len < sizeof line);
        memcpy(line, s, len);
        line[len] = '\0';
        v.line++;
        if (len == 0) VFAIL(&v, "empty line");
        if (line[0] == '#')
            validate_comment(&v, line);
        else
            validate_sample(&v, line);
        s = nl + 1;
    }
    close_family(&v);
    return v.samples;
}

int cga_prom_value(const char *text, const char *series, double *out) {
    size_t n = strlen(series);
    for (const char *s = text; s && *s;) {
        const char *nl = strchr(s, '\n');
        if (*s != '#' && strncmp(s, series, n) == 0 && s[n] == ' ') {
            char *end;
            *out = strtod(s + n + 1, &end);
            return 1;
        }
        s = nl ? nl + 1 : NULL;
    }
    return 0;
}

#include "accuracy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cgalpha/alloc.h"
#include "cgalpha/err.h"
#include "cgalpha/proto.h"

typedef struct point_s {
    int64_t t;
    uint64_t seq;
    cga_regime_t r;
} point_t;

typedef struct sym_s {
    char *name;
    point_t *truth;
    size_t ntruth, captruth;
    point_t *chg;
    size_t nchg, capchg;
} sym_t;

struct ops_acc_s {
    sym_t *syms;
    size_t n, cap;
    size_t *slots;  /* hash of symbol -> index + 1 (0: empty); rebuilt after compute sorts */
    size_t nslots;
    int stale;
    ops_acc_result_t *res;
};

static uint64_t hash(const char *s, size_t n) {
    uint64_t h = UINT64_C(1469598103934665603);
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * UINT64_C(1099511628211);
    return h;
}

static void rehash(ops_acc_t *a, size_t nslots) {
    free(a->slots);
    a->nslots = nslots;
    a->slots = cga_calloc(nslots, sizeof *a->slots);
    for (size_t i = 0; i < a->n; i++) {
        size_t k = (size_t)hash(a->syms[i].name, strlen(a->syms[i].name)) & (nslots - 1);
        while (a->slots[k]) k = (k + 1) & (nslots - 1);
        a->slots[k] = i + 1;
    }
    a->stale = 0;
}

int ops_acc_create(ops_acc_t **out) {
    *out = cga_calloc(1, sizeof **out);
    return CGA_OK;
}

void ops_acc_free(ops_acc_t *a) {
    if (!a) return;
    for (size_t i = 0; i < a->n; i++) {
        free(a->syms[i].name);
        free(a->syms[i].truth);
        free(a->syms[i].chg);
    }
    free(a->syms);
    free(a->slots);
    free(a->res);
    free(a);
}

static sym_t *find(ops_acc_t *a, const char *s, size_t n) {
    if (a->stale || a->nslots == 0) rehash(a, a->nslots ? a->nslots : 64);
    size_t k = (size_t)hash(s, n) & (a->nslots - 1);
    while (a->slots[k]) {
        sym_t *x = &a->syms[a->slots[k] - 1];
        if (strlen(x->name) == n && memcmp(x->name, s, n) == 0) return x;
        k = (k + 1) & (a->nslots - 1);
    }
    cga_grow((void **)&a->syms, &a->cap, a->n + 1, sizeof *a->syms);
    sym_t *x = &a->syms[a->n++];
    memset(x, 0, sizeof *x);
    x->name = cga_strndup(s, n);
    a->slots[k] = a->n;
    if (a->n * 2 > a->nslots) rehash(a, a->nslots * 2);
    return x;
}

int ops_acc_parse_truth(const char *line, size_t len, char *sym, size_t symcap, int64_t *t,
                        cga_regime_t *regime, char *err, size_t errlen) {
    while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n' || line[len - 1] == ' '))
        len--;
    if (len == 0) return 0;
    if (len == 15 && memcmp(line, "symbol,t,regime", 15) == 0) return 0;
    const char *c1 = memchr(line, ',', len);
    const char *c2 = c1 ? memchr(c1 + 1, ',', len - (size_t)(c1 + 1 - line)) : NULL;
    if (!c1 || !c2 || memchr(c2 + 1, ',', len - (size_t)(c2 + 1 - line))) {
        snprintf(err, errlen, "expected symbol,t,regime");
        return CGA_EINVAL;
    }
    size_t sl = (size_t)(c1 - line);
    if (sl == 0 || sl >= symcap) {
        snprintf(err, errlen, "bad symbol");
        return CGA_EINVAL;
    }
    memcpy(sym, line, sl);
    sym[sl] = '\0';
    int64_t v = 0;
    const char *p = c1 + 1;
    if (p == c2) {
        snprintf(err, errlen, "empty t");
        return CGA_EINVAL;
    }
    for (; p < c2; p++) {
        if (*p < '0' || *p > '9' || v > INT64_MAX / 10 - 10) {
            snprintf(err, errlen, "t is not a timestamp in ms");
            return CGA_EINVAL;
        }
        v = v * 10 + (*p - '0');
    }
    *t = v;
    size_t rl = len - (size_t)(c2 + 1 - line);
    if (cga_regime_parse(c2 + 1, rl, regime) != CGA_OK) {
        snprintf(err, errlen, "'%.*s' is not a regime", (int)(rl > 20 ? 20 : rl), c2 + 1);
        return CGA_EINVAL;
    }
    return 1;
}

void ops_acc_add_truth(ops_acc_t *a, const char *sym, int64_t t, cga_regime_t regime) {
    sym_t *s = find(a, sym, strlen(sym));
    cga_grow((void **)&s->truth, &s->captruth, s->ntruth + 1, sizeof *s->truth);
    s->truth[s->ntruth++] = (point_t){t, 0, regime};
}

void ops_acc_add_change(ops_acc_t *a, const char *sym, size_t symlen, int64_t ws, uint64_t seq,
                        cga_regime_t to) {
    sym_t *s = find(a, sym, symlen);
    cga_grow((void **)&s->chg, &s->capchg, s->nchg + 1, sizeof *s->chg);
    s->chg[s->nchg++] = (point_t){ws, seq, to};
}

static int cmp_point(const void *x, const void *y) {
    const point_t *a = x, *b = y;
    if (a->t != b->t) return a->t < b->t ? -1 : 1;
    if (a->seq != b->seq) return a->seq < b->seq ? -1 : 1;
    return 0;
}

static int cmp_sym(const void *x, const void *y) {
    return strcmp(((const sym_t *)x)->name, ((const sym_t *)y)->name);
}

void ops_acc_compute(ops_acc_t *a, const ops_acc_result_t **per, size_t *n,
                     ops_acc_result_t *overall) {
    if (a->n > 1) qsort(a->syms, a->n, sizeof *a->syms, cmp_sym);
    a->stale = 1;
    free(a->res);
    a->res = cga_calloc(a->n ? a->n : 1, sizeof *a->res);
    size_t k = 0;
    memset(overall, 0, sizeof *overall);
    overall->symbol = "overall";
    for (size_t i = 0; i < a->n; i++) {
        sym_t *s = &a->syms[i];
        if (s->ntruth == 0) continue; /* detections of a symbol without truth: not scored */
        qsort(s->truth, s->ntruth, sizeof *s->truth, cmp_point);
        if (s->nchg > 1) qsort(s->chg, s->nchg, sizeof *s->chg, cmp_point);
        ops_acc_result_t *r = &a->res[k++];
        r->symbol = s->name;
        r->changes = s->nchg;
        size_t c = 0;
        for (size_t j = 0; j < s->ntruth; j++) {
            int64_t t = s->truth[j].t;
            while (c < s->nchg && s->chg[c].t <= t) c++;
            if (c == 0) {
                r->skipped++;
                continue;
            }
            r->bars++;
            if (s->chg[c - 1].r == s->truth[j].r) r->correct++;
        }
        overall->bars += r->bars;
        overall->correct += r->correct;
        overall->skipped += r->skipped;
        overall->changes += r->changes;
    }
    *per = a->res;
    *n = k;
}

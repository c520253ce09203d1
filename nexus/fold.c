#include "fold.h"

#include <stdlib.h>
#include <string.h>

#include "cgalpha/alloc.h"
#include "cgalpha/err.h"

#define SYMBOL_MAX 32
#define LAB_NAME_MAX 64

typedef struct vote_s {
    uint8_t lab;    /* index into f->labs */
    uint8_t regime; /* cga_regime_t */
    float confidence;
} vote_t;

typedef struct window_s {
    int64_t wstart;
    uint8_t nvotes;
    vote_t votes[NX_FOLD_MAX_LABS];
} window_t;

typedef struct sym_s {
    char name[SYMBOL_MAX + 1];
    uint8_t len;
    uint8_t current;  /* cga_regime_t */
    uint64_t seq;
    uint32_t nwin;    /* windows kept, sorted by wstart ascending */
    window_t *win;    /* keep slots */
} sym_t;

struct nx_fold_s {
    unsigned hysteresis;
    unsigned keep;
    sym_t **slots;    /* open addressing, power-of-two capacity */
    size_t cap;
    size_t count;
    char labs[NX_FOLD_MAX_LABS][LAB_NAME_MAX + 1];
    size_t nlabs;
};

static uint64_t hash_bytes(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

int nx_fold_create(nx_fold_t **out, unsigned hysteresis, unsigned keep) {
    if (hysteresis < 1 || hysteresis > 8 || keep < hysteresis || keep > NX_FOLD_MAX_WINDOWS)
        return CGA_EINVAL;
    nx_fold_t *f = cga_calloc(1, sizeof *f);
    f->hysteresis = hysteresis;
    f->keep = keep;
    f->cap = 64;
    f->slots = cga_calloc(f->cap, sizeof *f->slots);
    *out = f;
    return CGA_OK;
}

void nx_fold_clear(nx_fold_t *f) {
    for (size_t i = 0; i < f->cap; i++) {
        if (!f->slots[i]) continue;
        free(f->slots[i]->win);
        free(f->slots[i]);
        f->slots[i] = NULL;
    }
    f->count = 0;
}

void nx_fold_free(nx_fold_t *f) {
    if (!f) return;
    nx_fold_clear(f);
    free(f->slots);
    free(f);
}

static sym_t *find(const nx_fold_t *f, const char *name, size_t len) {
    size_t mask = f->cap - 1;
    for (size_t i = hash_bytes(name, len) & mask;; i = (i + 1) & mask) {
        sym_t *s = f->slots[i];
        if (!s) return NULL;
        if (s->len == len && memcmp(s->name, name, len) == 0) return s;
    }
}

static void insert_slot(sym_t **slots, size_t cap, sym_t *s) {
    size_t mask = cap - 1;
    size_t i = hash_bytes(s->name, s->len) & mask;
    while (slots[i]) i = (i + 1) & mask;
    slots[i] = s;
}

static sym_t *find_or_add(nx_fold_t *f, const char *name, size_t len) {
    sym_t *s = find(f, name, len);
    if (s) return s;
    if ((f->count + 1) * 4 > f->cap * 3) { /* load factor 0.75 */
        size_t ncap = f->cap * 2;
        sym_t **ns = cga_calloc(ncap, sizeof *ns);
        for (size_t i = 0; i < f->cap; i++)
            if (f->slots[i]) insert_slot(ns, ncap, f->slots[i]);
        free(f->slots);
        f->slots = ns;
        f->cap = ncap;
    }
    s = cga_calloc(1, sizeof *s);
    memcpy(s->name, name, len);
    s->len = (uint8_t)len;
    s->win = cga_calloc(f->keep, sizeof *s->win);
    insert_slot(f->slots, f->cap, s);
    f->count++;
    return s;
}

/* Index of a lab name; -1 when the table is full. */
static int lab_index(nx_fold_t *f, const char *name, size_t len) {
    if (len > LAB_NAME_MAX) len = LAB_NAME_MAX;
    for (size_t i = 0; i < f->nlabs; i++)
        if (strlen(f->labs[i]) == len && memcmp(f->labs[i], name, len) == 0) return (int)i;
    if (f->nlabs == NX_FOLD_MAX_LABS) return -1;
    memcpy(f->labs[f->nlabs], name, len);
    f->labs[f->nlabs][len] = '\0';
    return (int)f->nlabs++;
}

/* The window for wstart, inserted in order; NULL when it is older than everything kept and
 * there is no room (it can no longer change the outcome). */
static window_t *window_for(const nx_fold_t *f, sym_t *s, int64_t wstart) {
    uint32_t i = 0;
    while (i < s->nwin && s->win[i].wstart < wstart) i++;
    if (i < s->nwin && s->win[i].wstart == wstart) return &s->win[i];
    if (s->nwin == f->keep) {
        if (i == 0) return NULL;
        /* drop the oldest */
        memmove(&s->win[0], &s->win[1], (size_t)(i - 1) * sizeof s->win[0]);
        i--;
    } else {
        memmove(&s->win[i + 1], &s->win[i], (size_t)(s->nwin - i) * sizeof s->win[0]);
        s->nwin++;
    }
    memset(&s->win[i], 0, sizeof s->win[i]);
    s->win[i].wstart = wstart;
    return &s->win[i];
}

/* Decision of a window and the winner's share of the summed confidence. */
static cga_regime_t decide(const window_t *w, double *share) {
    double score[CGA_REGIME_COUNT] = {0};
    double total = 0;
    for (unsigned i = 0; i < w->nvotes; i++) {
        if (w->votes[i].regime == CGA_REGIME_UNKNOWN) continue;
        score[w->votes[i].regime] += w->votes[i].confidence;
        total += w->votes[i].confidence;
    }
    cga_regime_t best = CGA_REGIME_UNKNOWN;
    double bestv = 0;
    int tie = 0;
    for (int r = 1; r < CGA_REGIME_COUNT; r++) {
        if (score[r] > bestv) {
            best = (cga_regime_t)r;
            bestv = score[r];
            tie = 0;
        } else if (score[r] == bestv && bestv > 0) {
            tie = 1;
        }
    }
    if (tie || bestv <= 0) return CGA_REGIME_UNKNOWN;
    *share = total > 0 ? bestv / total : 0;
    return best;
}

static int evaluate(const nx_fold_t *f, sym_t *s, nx_change_t *change) {
    unsigned maxvotes = 0;
    for (uint32_t i = 0; i < s->nwin; i++)
        if (s->win[i].nvotes > maxvotes) maxvotes = s->win[i].nvotes;
    if (maxvotes == 0) return 0;

    cga_regime_t streak = CGA_REGIME_UNKNOWN;
    unsigned found = 0;
    double share_sum = 0;
    int64_t first_ws = 0;
    for (uint32_t k = s->nwin; k-- > 0 && found < f->hysteresis;) {
        const window_t *w = &s->win[k];
        if (w->nvotes < maxvotes) continue; /* not settled yet */
        double share = 0;
        cga_regime_t d = decide(w, &share);
        if (d == CGA_REGIME_UNKNOWN) return 0;
        if (found == 0) streak = d;
        else if (d != streak) return 0;
        share_sum += share;
        first_ws = w->wstart;
        found++;
    }
    if (found < f->hysteresis || streak == (cga_regime_t)s->current) return 0;

    memset(change, 0, sizeof *change);
    memcpy(change->symbol, s->name, s->len);
    change->symbol_len = s->len;
    change->from = (cga_regime_t)s->current;
    change->to = streak;
    change->seq = ++s->seq;
    change->wstart = first_ws;
    change->confidence = share_sum / found;
    s->current = (uint8_t)streak;
    return 1;
}

int nx_fold_apply(nx_fold_t *f, const cga_report_t *r, nx_change_t *change) {
    if (r->status != CGA_REPORT_OK) return 0;
    if (r->symbol.len == 0 || r->symbol.len > SYMBOL_MAX) return 0;
    if ((unsigned)r->regime >= CGA_REGIME_COUNT) return 0;
    int lab = lab_index(f, r->lab.ptr, r->lab.len);
    if (lab < 0) return 0;

    sym_t *s = find_or_add(f, r->symbol.ptr, r->symbol.len);
    window_t *w = window_for(f, s, r->wstart);
    if (!w) return 0;
    vote_t *v = NULL;
    for (unsigned i = 0; i < w->nvotes; i++)
        if (w->votes[i].lab == lab) v = &w->votes[i];
    if (!v) v = &w->votes[w->nvotes++];
    v->lab = (uint8_t)lab;
    v->regime = (uint8_t)r->regime;
    double c = r->confidence;
    v->confidence = (float)(c < 0 ? 0 : c > 1 ? 1 : c);
    return evaluate(f, s, change);
}

void nx_fold_restore(nx_fold_t *f, cga_str_t symbol, cga_regime_t current, uint64_t seq) {
    if (symbol.len == 0 || symbol.len > SYMBOL_MAX || (unsigned)current >= CGA_REGIME_COUNT)
        return;
    sym_t *s = find_or_add(f, symbol.ptr, symbol.len);
    if (seq >= s->seq) {
        s->seq = seq;
        s->current = (uint8_t)current;
    }
}

cga_regime_t nx_fold_current(const nx_fold_t *f, cga_str_t symbol, uint64_t *seq) {
    const sym_t *s = symbol.len <= SYMBOL_MAX ? find(f, symbol.ptr, symbol.len) : NULL;
    if (seq) *seq = s ? s->seq : 0;
    return s ? (cga_regime_t)s->current : CGA_REGIME_UNKNOWN;
}

void nx_fold_each(const nx_fold_t *f,
                  void (*cb)(cga_str_t symbol, cga_regime_t regime, uint64_t seq, void *arg),
                  void *arg) {
    for (size_t i = 0; i < f->cap; i++) {
        const sym_t *s = f->slots[i];
        if (!s || s->seq == 0) continue;
        cga_str_t name = {s->name, s->len};
        cb(name, (cga_regime_t)s->current, s->seq, arg);
    }
}

size_t nx_fold_symbols(const nx_fold_t *f) { return f->count; }

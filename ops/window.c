#include "window.h"

#include <stdlib.h>
#include <string.h>

#include "cgalpha/alloc.h"
#include "cgalpha/err.h"

typedef struct series_s {
    char sym[OPS_SYMBOL_MAX + 1];
    size_t symlen;
    uint64_t hash;
    cga_bar_t *bars;  /* window slots; bars[0..n) in time order */
    size_t n;
    size_t skip;      /* bars still to drop before the next window may start (step > window) */
    int emitted;      /* the last push completed a window: advance before the next one */
    int64_t last_t;
    int has_last;
} series_t;

struct ops_cutter_s {
    size_t window, step;
    series_t **slots; /* open addressing, power-of-two capacity */
    size_t cap, count;
};

static uint64_t hash_sym(const char *s, size_t n) {
    uint64_t h = UINT64_C(1469598103934665603); /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= UINT64_C(1099511628211);
    }
    return h;
}

int ops_cutter_create(ops_cutter_t **out, size_t window, size_t step) {
    *out = NULL;
    if (window == 0 || step == 0) return CGA_EINVAL;
    ops_cutter_t *c = cga_calloc(1, sizeof *c);
    c->window = window;
    c->step = step;
    c->cap = 16;
    c->slots = cga_calloc(c->cap, sizeof *c->slots);
    *out = c;
    return CGA_OK;
}

void ops_cutter_free(ops_cutter_t *c) {
    if (!c) return;
    for (size_t i = 0; i < c->cap; i++) {
        if (c->slots[i]) {
            free(c->slots[i]->bars);
            free(c->slots[i]);
        }
    }
    free(c->slots);
    free(c);
}

static series_t **find_slot(series_t **slots, size_t cap, const char *sym, size_t n,
                            uint64_t h) {
    size_t i = (size_t)h & (cap - 1);
    for (;;) {
        series_t *s = slots[i];
        if (!s || (s->hash == h && s->symlen == n && memcmp(s->sym, sym, n) == 0))
            return &slots[i];
        i = (i + 1) & (cap - 1);
    }
}

static void grow(ops_cutter_t *c) {
    size_t ncap = c->cap * 2;
    series_t **ns = cga_calloc(ncap, sizeof *ns);
    for (size_t i = 0; i < c->cap; i++) {
        series_t *s = c->slots[i];
        if (s) *find_slot(ns, ncap, s->sym, s->symlen, s->hash) = s;
    }
    free(c->slots);
    c->slots = ns;
    c->cap = ncap;
}

static series_t *lookup(const ops_cutter_t *c, const char *sym, size_t n) {
    return *find_slot(c->slots, c->cap, sym, n, hash_sym(sym, n));
}

int ops_cutter_push(ops_cutter_t *c, const char *sym, size_t symlen, const cga_bar_t *bar,
                    const cga_bar_t **bars, const char **symbol) {
    if (symlen == 0 || symlen > OPS_SYMBOL_MAX) return CGA_EINVAL;
    uint64_t h = hash_sym(sym, symlen);
    series_t **slot = find_slot(c->slots, c->cap, sym, symlen, h);
    series_t *s = *slot;
    if (!s) {
        if ((c->count + 1) * 4 > c->cap * 3) {
            grow(c);
            slot = find_slot(c->slots, c->cap, sym, symlen, h);
        }
        s = cga_calloc(1, sizeof *s);
        memcpy(s->sym, sym, symlen);
        s->symlen = symlen;
        s->hash = h;
        s->bars = cga_malloc(c->window * sizeof *s->bars);
        *slot = s;
        c->count++;
    }
    if (s->has_last && bar->t <= s->last_t) return CGA_EINVAL;
    s->last_t = bar->t;
    s->has_last = 1;
    if (s->emitted) {
        s->emitted = 0;
        if (c->step >= c->window) {
            s->n = 0;
            s->skip = c->step - c->window;
        } else {
            memmove(s->bars, s->bars + c->step, (c->window - c->step) * sizeof *s->bars);
            s->n = c->window - c->step;
        }
    }
    if (s->skip > 0) {
        s->skip--;
        return 0;
    }
    s->bars[s->n++] = *bar;
    if (s->n < c->window) return 0;
    s->emitted = 1;
    *bars = s->bars;
    *symbol = s->sym;
    return 1;
}

int64_t ops_cutter_last_t(const ops_cutter_t *c, const char *sym, size_t symlen) {
    if (symlen == 0 || symlen > OPS_SYMBOL_MAX) return 0;
    series_t *s = lookup(c, sym, symlen);
    return s && s->has_last ? s->last_t : 0;
}

size_t ops_cutter_symbols(const ops_cutter_t *c) {
    return c->count;
}

uint64_t ops_window_count(uint64_t n, size_t window, size_t step) {
    if (window == 0 || step == 0 || n < window) return 0;
    return (n - window) / step + 1;
}

#include "cgalpha/alloc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(size_t n) {
    fprintf(stderr, "cgalpha: out of memory allocating %zu bytes\n", n);
    abort();
}

void *cga_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *cga_calloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) oom(count * size);
    return p;
}

void *cga_realloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

char *cga_strdup(const char *s) {
    if (!s) return NULL;
    return cga_memdup(s, strlen(s) + 1);
}

char *cga_strndup(const char *s, size_t n) {
    char *d = cga_malloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

void *cga_memdup(const void *p, size_t n) {
    void *d = cga_malloc(n);
    if (n) memcpy(d, p, n);
    return d;
}

void cga_grow(void **buf, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return;
    size_t ncap = *cap ? *cap : 8;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2) oom(SIZE_MAX);
        ncap *= 2;
    }
    if (elem && ncap > SIZE_MAX / elem) oom(SIZE_MAX);
    *buf = cga_realloc(*buf, ncap * elem);
    *cap = ncap;
}
